//! What the job tells other commands after each run (how far it got, where the watermark is, how
//! much waits for it), in `_system/jobs/bookings_fact/progress.json`: `ingest` warns from it when
//! events are older than the watermark, and `job run` explains what waits.

use boxoffice_lake::{Lake, Layer};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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
