//! Freshness from table metadata alone: no data file is read.

use chrono::{DateTime, Utc};
use deltalake::DeltaTable;
use futures::TryStreamExt;

use crate::DashboardError;

/// Commits looked at for the join's watermark: a compaction or vacuum may have come after its
/// last append, and a join split into shards commits once per shard and batch.
const COMMITS: usize = 40;

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

/// The newest of each mark in the last commits that carry them. When the join is split into
/// shards (its commits say which), each shard's newest watermark counts, and Silver is resolved
/// up to the lowest of them.
pub async fn join_progress(table: &DeltaTable) -> Result<JoinProgress, DashboardError> {
    let commits: Vec<_> = table
        .history(Some(COMMITS))
        .try_collect()
        .await
        .map_err(|e| DashboardError::Read(e.to_string()))?;
    let time = |c: &deltalake::kernel::CommitInfo, key: &str| {
        let text = c.info.get(key)?.as_str()?;
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    };
    let marks: Vec<(Option<u64>, DateTime<Utc>)> = commits
        .iter()
        .filter_map(|c| {
            let shard = c.info.get("shard").and_then(|s| s.as_u64());
            Some((shard, time(c, "watermark")?))
        })
        .collect();
    let watermark = resolved_up_to(&marks);
    Ok(JoinProgress {
        watermark,
        newest_event: commits.iter().filter_map(|c| time(c, "newest_event")).max(),
    })
}

/// Where Silver is resolved up to, from commits' (shard, watermark) marks: the lowest of the
/// shards' newest watermarks when the join is split into shards, else the newest watermark.
fn resolved_up_to(marks: &[(Option<u64>, DateTime<Utc>)]) -> Option<DateTime<Utc>> {
    let mut newest: std::collections::BTreeMap<Option<u64>, DateTime<Utc>> = Default::default();
    for (shard, w) in marks {
        let at = newest.entry(*shard).or_insert(*w);
        *at = (*at).max(*w);
    }
    let shards = newest.iter().filter(|(shard, _)| shard.is_some());
    shards
        .map(|(_, w)| *w)
        .min()
        .or_else(|| newest.get(&None).copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sharded_join_is_resolved_up_to_its_slowest_shard() {
        let at = |s: i64| DateTime::from_timestamp(1_700_000_000 + s, 0).expect("time");
        assert_eq!(resolved_up_to(&[]), None);
        assert_eq!(resolved_up_to(&[(None, at(5)), (None, at(9))]), Some(at(9)));
        let marks = [
            (Some(0), at(10)),
            (Some(1), at(4)),
            (Some(0), at(12)),
            (Some(1), at(7)),
            (None, at(1)),
        ];
        assert_eq!(resolved_up_to(&marks), Some(at(7)));
    }
}
