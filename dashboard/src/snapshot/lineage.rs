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
    let marks: Vec<(Option<u64>, DateTime<Utc>)> = commits
        .iter()
        .flat_map(|c| batch_metadata(&c.info))
        .filter_map(|m| {
            Some((
                m.get("shard").and_then(|s| s.as_u64()),
                time(&m, "watermark")?,
            ))
        })
        .collect();
    let watermark = resolved_up_to(&marks);
    Ok(JoinProgress {
        watermark,
        newest_event: commits
            .iter()
            .flat_map(|c| batch_metadata(&c.info))
            .filter_map(|m| time(&m, "newest_event"))
            .max(),
    })
}

/// A time recorded in a commit's metadata.
fn time(metadata: &Map, key: &str) -> Option<DateTime<Utc>> {
    let text = metadata.get(key)?.as_str()?;
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

type Map = std::collections::HashMap<String, serde_json::Value>;

/// The metadata of each batch a commit holds: its own, or, for a grouped commit (shards'
/// batches committed together), each batch's under `batches` (the commit's top-level keys are
/// then the greatest of them, which would credit one shard with another's watermark).
fn batch_metadata(info: &Map) -> Vec<Map> {
    match info.get("batches").and_then(|b| b.as_array()) {
        Some(batches) => batches
            .iter()
            .filter_map(|b| serde_json::from_value(b.get("metadata")?.clone()).ok())
            .collect(),
        None => vec![info.clone()],
    }
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

    #[test]
    fn a_grouped_commit_credits_each_shard_with_its_own_watermark() {
        let info: Map = serde_json::from_value(serde_json::json!({
            "operation": "WRITE",
            "shard": 1,
            "watermark": "2026-01-01T00:00:10+00:00",
            "batches": [
                {"app_id": "bookings_fact:0:silver.bookings_fact", "version": 3,
                 "metadata": {"shard": 0, "watermark": "2026-01-01T00:00:10+00:00"}},
                {"app_id": "bookings_fact:1:silver.bookings_fact", "version": 5,
                 "metadata": {"shard": 1, "watermark": "2026-01-01T00:00:04+00:00"}}
            ]
        }))
        .expect("info");
        let marks: Vec<_> = batch_metadata(&info)
            .iter()
            .filter_map(|m| {
                Some((
                    m.get("shard").and_then(|s| s.as_u64()),
                    time(m, "watermark")?,
                ))
            })
            .collect();
        let at = |s: i64| DateTime::from_timestamp(1_767_225_600 + s, 0).expect("time");
        assert_eq!(marks, vec![(Some(0), at(10)), (Some(1), at(4))]);
        assert_eq!(resolved_up_to(&marks), Some(at(4)));
        let single: Map =
            serde_json::from_value(serde_json::json!({"watermark": "x"})).expect("info");
        assert_eq!(batch_metadata(&single), vec![single.clone()]);
    }
}
