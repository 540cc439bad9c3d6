//! Freshness from table metadata alone: no data file is read.

use chrono::{DateTime, Utc};
use deltalake::DeltaTable;
use futures::TryStreamExt;

use crate::DashboardError;

/// Commits looked at for the join's watermark: a compaction or vacuum may have come after its
/// last append.
const COMMITS: usize = 20;

/// The newest `enqueued_time` in a Bronze table, from its files' statistics.
pub fn newest_enqueued(table: &DeltaTable) -> Result<Option<DateTime<Utc>>, DashboardError> {
    let snapshot = table
        .snapshot()
        .map_err(|e| DashboardError::Read(e.to_string()))?;
    Ok(snapshot
        .log_data()
        .iter()
        .filter_map(|file| {
            let stats: serde_json::Value = serde_json::from_str(&file.stats()?).ok()?;
            let max = stats.get("maxValues")?.get("enqueued_time")?.as_str()?;
            DateTime::parse_from_rfc3339(max).ok()
        })
        .map(|t| t.with_timezone(&Utc))
        .max())
}

/// The join's progress as `bookings_fact` recorded it in its newest commits.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JoinProgress {
    /// The watermark (event time).
    pub watermark: Option<DateTime<Utc>>,
    /// The newest event time the join had seen.
    pub newest_event: Option<DateTime<Utc>>,
}

/// The newest of each mark in the last commits that carry them.
pub async fn join_progress(table: &DeltaTable) -> Result<JoinProgress, DashboardError> {
    let commits: Vec<_> = table
        .history(Some(COMMITS))
        .try_collect()
        .await
        .map_err(|e| DashboardError::Read(e.to_string()))?;
    let newest = |key: &str| {
        commits
            .iter()
            .filter_map(|c| c.info.get(key)?.as_str())
            .filter_map(|w| DateTime::parse_from_rfc3339(w).ok())
            .map(|t| t.with_timezone(&Utc))
            .max()
    };
    Ok(JoinProgress {
        watermark: newest("watermark"),
        newest_event: newest("newest_event"),
    })
}
