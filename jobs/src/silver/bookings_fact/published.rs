//! What the job tells other commands after each run (how far it got, where the watermark is, how
//! much waits for it), in `progress.json` in each shard's folder (`_system/jobs/bookings_fact/`
//! for a lake of one shard): `ingest` warns from it when events are older than the watermark;
//! and what waits in Bronze, which `job run` explains. Readers combine the shards' files.

use boxoffice_lake::{Lake, Layer};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::input::{self, PartitionId};
use super::join::TimeMode;
use super::shard::Shard;
use super::sharding::{self, Sharding};
use super::{BookingsFact, checkpoint_error};
use crate::JobError;

/// The file, in each shard's folder.
pub(super) const FILE: &str = "progress.json";

/// The job's position after its last run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Published {
    /// The last batch processed (the highest of the shards', which number their own).
    pub batch: u64,
    /// The watermark: events older than this on arrival are late (the lowest of the shards').
    pub watermark: Option<DateTime<Utc>>,
    /// The newest event time seen.
    pub newest_event: Option<DateTime<Utc>>,
    /// Bookings kept in the state, waiting for a payment or for the watermark.
    pub waiting_bookings: u64,
    /// Payments kept in the state.
    pub waiting_payments: u64,
    /// The join's clock: in Stream Analytics mode, lateness is judged by arrival time.
    pub mode: TimeMode,
    /// When this was written (combined: the oldest shard's).
    pub updated_at: DateTime<Utc>,
}

impl Published {
    /// The shards' positions as one: the lowest watermark (an event older than it is late in
    /// every shard), the newest event, the waiting counts summed. `None` for no shard.
    pub fn combine(parts: &[Published]) -> Option<Published> {
        let first = parts.first()?;
        Some(Published {
            batch: parts.iter().map(|p| p.batch).max().unwrap_or(0),
            watermark: parts.iter().filter_map(|p| p.watermark).min(),
            newest_event: parts.iter().filter_map(|p| p.newest_event).max(),
            waiting_bookings: parts.iter().map(|p| p.waiting_bookings).sum(),
            waiting_payments: parts.iter().map(|p| p.waiting_payments).sum(),
            mode: first.mode,
            updated_at: parts.iter().map(|p| p.updated_at).min()?,
        })
    }
}

impl Shard {
    /// The shard's position now.
    pub fn position(&self) -> Published {
        let (bookings, payments) = self.pending();
        Published {
            batch: self.batch,
            watermark: self.watermark(),
            newest_event: self.newest_event(),
            waiting_bookings: bookings as u64,
            waiting_payments: payments as u64,
            mode: self.settings.join.mode,
            updated_at: Utc::now(),
        }
    }

    /// Writes [`position`](Self::position) for other commands to read.
    pub(super) async fn publish(&self) -> Result<(), JobError> {
        let text = serde_json::to_vec_pretty(&self.position()).map_err(checkpoint_error)?;
        self.files.put(FILE, Bytes::from(text)).await?;
        Ok(())
    }

    /// What landed in this shard's partitions that no batch has taken yet.
    pub async fn untaken(&mut self) -> Result<Untaken, JobError> {
        let landed = input::scan(&self.lake, &mut self.bronze, &self.positions, self.id).await?;
        let counts = landed.counts();
        let silent = self
            .expected()
            .into_iter()
            .filter(|id| !counts.contains_key(id))
            .collect();
        Ok(Untaken {
            events: counts.values().map(|n| *n as u64).sum(),
            silent_partitions: silent,
        })
    }
}

/// Bronze events no batch has taken yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untaken {
    /// How many.
    pub events: u64,
    /// Partitions with nothing untaken: until each lands something newer, later events of its
    /// shard wait (one could still land there in front of them).
    pub silent_partitions: Vec<PartitionId>,
}

impl BookingsFact {
    /// The position of the shards this process runs, combined.
    pub fn position(&self) -> Option<Published> {
        let parts: Vec<Published> = self.shards().map(Shard::position).collect();
        Published::combine(&parts)
    }

    /// What landed in Bronze that no batch has taken yet, and which partitions have landed
    /// nothing newer (a shard takes an event only once each of its partitions has landed
    /// something later).
    pub async fn untaken(&mut self) -> Result<Untaken, JobError> {
        let mut all = Untaken {
            events: 0,
            silent_partitions: Vec::new(),
        };
        for shard in &mut self.shards {
            let one = shard.untaken().await?;
            all.events += one.events;
            all.silent_partitions.extend(one.silent_partitions);
        }
        all.silent_partitions.sort();
        Ok(all)
    }
}

/// The position the job published after its last runs on `lake` (its shards' combined), if it
/// ever ran.
pub async fn published(lake: &Lake) -> Result<Option<Published>, JobError> {
    let split = sharding::recorded(lake).await?.unwrap_or(Sharding {
        shards: 1,
        partitions_per_hub: 0,
    });
    let mut parts = Vec::new();
    for shard in split.all() {
        let files = lake.files(Layer::System, &shard.folder())?;
        if let Some(bytes) = files.get(FILE).await? {
            parts.push(serde_json::from_slice(&bytes).map_err(checkpoint_error)?);
        }
    }
    Ok(Published::combine(&parts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_shards_positions_combine_to_the_lowest_watermark_and_the_sums() {
        let at = |s: i64| Utc.timestamp_opt(1_700_000_000 + s, 0).single();
        let part = |batch, watermark, newest, waiting, updated| Published {
            batch,
            watermark: at(watermark),
            newest_event: at(newest),
            waiting_bookings: waiting,
            waiting_payments: waiting * 2,
            mode: TimeMode::EventTime,
            updated_at: at(updated).expect("time"),
        };
        assert_eq!(Published::combine(&[]), None);
        let mut quiet = part(0, 0, 0, 0, 50);
        quiet.watermark = None; // a shard that has joined nothing yet
        let combined =
            Published::combine(&[part(7, 100, 130, 3, 60), part(9, 90, 120, 4, 55), quiet])
                .expect("combined");
        assert_eq!(combined.batch, 9);
        assert_eq!(combined.watermark, at(90), "late in every shard below it");
        assert_eq!(combined.newest_event, at(130));
        assert_eq!(
            (combined.waiting_bookings, combined.waiting_payments),
            (7, 14)
        );
        assert_eq!(
            Some(combined.updated_at),
            at(50),
            "as fresh as the stalest shard"
        );
    }
}
