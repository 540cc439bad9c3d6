//! The streams' committed versions as a group committer asks for them every turn.
//!
//! delta-rs answers for one stream at a time by replaying the log back from the newest commit,
//! reading commit files until it meets that stream (on object storage, a request each), so a
//! turn committing thirty streams' batches would read the log thirty times. Here each stream is
//! looked up once per process and table, and from then on the index follows the log: a turn
//! reads only the commits made since the last turn this process took, once, whichever streams
//! they carry. The newest `txn` of a stream is its version (Delta's rule), so a stream seen in
//! those commits needs no lookup at all. Streams' transactions never expire on boxoffice
//! tables (no `delta.setTransactionRetentionDuration`), so none is dropped.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use deltalake::logstore::LogStore;
use deltalake::{DeltaTable, DeltaTableError};
use futures::StreamExt;
use serde_json::Value;

/// Commit files read at once.
const CONCURRENT_READS: usize = 16;

/// What this process knows of one table's streams, as of a table version.
struct Known {
    version: u64,
    streams: HashMap<String, Option<i64>>,
}

/// Per table URL.
static KNOWN: LazyLock<Mutex<HashMap<String, Known>>> = LazyLock::new(Default::default);

fn known() -> std::sync::MutexGuard<'static, HashMap<String, Known>> {
    // A panic elsewhere while holding it leaves a map that is still valid.
    KNOWN.lock().unwrap_or_else(|e| e.into_inner())
}

/// The committed version of each of `streams` in `table`'s current snapshot.
pub(crate) async fn committed_versions(
    table: &DeltaTable,
    streams: &[&str],
) -> Result<HashMap<String, Option<i64>>, DeltaTableError> {
    let key = table.table_url().to_string();
    let current = table
        .version()
        .ok_or_else(|| DeltaTableError::Generic("the table is not loaded".into()))?;
    let taken = known().remove(&key);
    let mut index = match taken {
        Some(k) if k.version <= current => k,
        // None yet, or a table recreated behind this process's back: start afresh.
        _ => Known {
            version: current,
            streams: HashMap::new(),
        },
    };
    if index.version < current {
        match follow(table, index.version + 1, current).await {
            Ok(txns) => index
                .streams
                .extend(txns.into_iter().map(|(s, v)| (s, Some(v)))),
            // A commit gone (log cleanup after a long idle spell): look streams up afresh.
            Err(_) => index.streams.clear(),
        }
        index.version = current;
    }
    let snapshot = table.snapshot()?;
    for stream in streams {
        if !index.streams.contains_key(*stream) {
            let version = snapshot
                .transaction_version(table.log_store().as_ref(), *stream)
                .await?;
            index.streams.insert(stream.to_string(), version);
        }
    }
    let answer = streams
        .iter()
        .map(|s| (s.to_string(), index.streams.get(*s).copied().flatten()))
        .collect();
    known().insert(key, index);
    Ok(answer)
}

/// The streams' transactions in commits `from..=to`, oldest first.
async fn follow(
    table: &DeltaTable,
    from: u64,
    to: u64,
) -> Result<Vec<(String, i64)>, DeltaTableError> {
    let log = table.log_store();
    let reads = futures::stream::iter(from..=to)
        .map(|version| {
            let log = log.clone();
            async move { (version, log.read_commit_entry(version).await) }
        })
        .buffered(CONCURRENT_READS)
        .collect::<Vec<_>>()
        .await;
    let mut txns = Vec::new();
    for (version, read) in reads {
        let bytes = read?.ok_or_else(|| {
            DeltaTableError::Generic(format!("commit {version} is no longer in the log"))
        })?;
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let action: Value = serde_json::from_slice(line)?;
            if let Some(txn) = action.get("txn")
                && let (Some(app), Some(v)) = (
                    txn.get("appId").and_then(Value::as_str),
                    txn.get("version").and_then(Value::as_i64),
                )
            {
                txns.push((app.to_string(), v));
            }
        }
    }
    Ok(txns)
}
