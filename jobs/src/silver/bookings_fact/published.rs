//! What the job tells other commands after each run (how far it got, where the watermark is, how
//! much waits for it), in `_system/jobs/bookings_fact/progress.json`: `ingest` warns from it when
//! events are older than the watermark; and what waits in Bronze, which `job run` explains.

use boxoffice_lake::{Lake, Layer};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::input::{self, BOOKINGS, PAYMENTS, PartitionId};
use super::join::TimeMode;
use super::{BookingsFact, JOB, checkpoint_error};
use crate::JobError;

/// The file, in the job's folder.
pub(super) const FILE: &str = "progress.json";

/// The job's position after its last run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Published {
    /// The last batch processed.
    pub batch: u64,
    /// The watermark: events older than this on arrival are late.
    pub watermark: Option<DateTime<Utc>>,
    /// The newest event time seen.
    pub newest_event: Option<DateTime<Utc>>,
    /// Bookings kept in the state, waiting for a payment or for the watermark.
    pub waiting_bookings: u64,
    /// Payments kept in the state.
    pub waiting_payments: u64,
    /// The join's clock: in Stream Analytics mode, lateness is judged by arrival time.
    pub mode: TimeMode,
    /// When this was written.
    pub updated_at: DateTime<Utc>,
}

impl BookingsFact {
    /// The job's position now.
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
}

/// Bronze events no batch has taken yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untaken {
    /// How many.
    pub events: u64,
    /// Partitions with nothing untaken: until each lands something newer, later events in the
    /// others wait (one could still land there in front of them).
    pub silent_partitions: Vec<PartitionId>,
}

impl BookingsFact {
    /// What landed in Bronze that no batch has taken yet, and which partitions have landed
    /// nothing newer (the join takes an event only once every partition has landed something
    /// later).
    pub async fn untaken(&mut self) -> Result<Untaken, JobError> {
        let landed = input::scan(&self.lake, &mut self.bronze, &self.positions).await?;
        let counts = landed.counts();
        let silent = [BOOKINGS, PAYMENTS]
            .into_iter()
            .flat_map(|hub| {
                (0..self.settings.partitions_per_hub as i32)
                    .map(move |partition| PartitionId { hub, partition })
            })
            .filter(|id| !counts.contains_key(id))
            .collect();
        Ok(Untaken {
            events: counts.values().map(|n| *n as u64).sum(),
            silent_partitions: silent,
        })
    }
}

/// The position the job published after its last run on `lake`, if it ever ran.
pub async fn published(lake: &Lake) -> Result<Option<Published>, JobError> {
    let files = lake.files(Layer::System, &format!("jobs/{JOB}"))?;
    match files.get(FILE).await? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(checkpoint_error),
        None => Ok(None),
    }
}
