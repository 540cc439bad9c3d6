//! Group commits: many writers' batches land in one commit made by one committer at a time, as
//! stream processors commit many tasks' output (docs/commits.md).
//!
//! Each writer commits its own batch only in name. It writes the batch's Parquet files, then
//! *stages* them: a small manifest in the table's `_staged/` folder names the files and the
//! batch's application transaction `(app_id, version)`. Whoever holds the table's commit lease
//! (a writer that found it free) lists what is staged and commits all of it in one Delta
//! commit, with every writer's transaction, then leaves a receipt for each batch. A writer
//! waits for its receipt, taking the lease itself when it is free. So the table sees one commit
//! per round of staged batches instead of one per batch, and writers stop racing each other for
//! versions: only the committer refreshes the table, checks, and commits.
//!
//! Exactly once, as with [`crate::append_once`]: the committer skips a staged batch whose
//! stream already recorded that version (a rerun after a crash), commits at most one batch per
//! stream per commit, lowest version first, and a commit carrying a stream's transaction
//! conflicts with any other commit of that stream since the committer's snapshot, so even two
//! committers at once (a lease taken over from a stalled holder) never land a batch twice.
//! A committer that dies between its commit and the receipts leaves the manifests staged; the
//! next finds them committed and writes the receipts.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use deltalake::DeltaTable;
use deltalake::kernel::{Action, Add, Transaction};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::LakeError;
use crate::commit::{AppendError, AppendOutcome, Batch, PartitionRows, write_files};
use crate::files::Files;
use crate::hold::{CommitPolicy, CommitStats, commit_held, jitter};
use crate::lease::{HeldLease, Holder, Lease, LeaseError};
use crate::table::TableDef;
use crate::target::Lake;
use crate::txn_index::committed_versions;

/// Manifests and receipts read or written at once.
const CONCURRENT_FILES: usize = 16;

/// A waiting writer looks at the commit lease (two requests) every this many looks at its
/// receipt (one): most of the time a committer is at work and will take the batch, and fewer
/// requests leave the storage to the committer.
const LEASE_EVERY: u32 = 3;

/// A writer reports the committer's error when its own turns fail this many times in a row.
const FAILED_TURNS: u32 = 3;

/// Receipts older than this are a writer's that died before reading it; the committer removes them.
const STALE_RECEIPT: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// How a grouped append commits and waits.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupPolicy {
    /// How the committer's commit holds against writers that do not stage (compaction, others).
    pub commit: CommitPolicy,
    /// The commit lease's time to live: how long writers wait for a committer that died.
    pub lease_ttl: Duration,
    /// The first wait between looks at the receipt and the lease; doubles up to `max_poll`.
    pub first_poll: Duration,
    /// The longest wait between looks.
    pub max_poll: Duration,
    /// A writer gives up waiting for its receipt after this long.
    pub patience: Duration,
    /// The most batches in one commit (bounds a commit's size).
    pub max_batches: usize,
    /// A committer takes another turn while batches keep arriving, for up to this long.
    pub lead_for: Duration,
}

impl Default for GroupPolicy {
    fn default() -> Self {
        GroupPolicy {
            commit: CommitPolicy::default(),
            lease_ttl: Duration::from_secs(10),
            first_poll: Duration::from_millis(5),
            max_poll: Duration::from_millis(250),
            patience: Duration::from_secs(600),
            max_batches: 1_000,
            lead_for: Duration::from_secs(1),
        }
    }
}

/// What a grouped append cost.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GroupStats {
    /// Commits this writer made as the committer while waiting (0 when another committed).
    pub commits_led: u32,
    /// Batches (its own and others') in those commits.
    pub batches_led: u64,
    /// Those commits' contention.
    pub commit: CommitStats,
    /// Time from staging to the receipt.
    pub waited: Duration,
}

/// Why the staging area of a table could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    /// The staging folder could not be read or written.
    #[error(transparent)]
    Lake(#[from] LakeError),
    /// The commit lease could not be read or written.
    #[error(transparent)]
    Lease(#[from] LeaseError),
    /// A manifest could not be encoded.
    #[error("staging a batch of {app_id}: {detail}")]
    Encode {
        /// The stream.
        app_id: String,
        /// What went wrong.
        detail: String,
    },
    /// No receipt came within the policy's patience.
    #[error(
        "batch {version} of {app_id} was staged {waited:?} ago and is still not committed: is the lake reachable, and does the committer of this table log errors?"
    )]
    Timeout {
        /// The stream.
        app_id: String,
        /// The batch.
        version: i64,
        /// How long it waited.
        waited: Duration,
    },
}

/// A batch waiting for the committer.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Staged {
    app_id: String,
    version: i64,
    adds: Vec<Add>,
    metadata: HashMap<String, Value>,
    staged_at: DateTime<Utc>,
}

/// What the committer did with a staged batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Receipt {
    app_id: String,
    version: i64,
    /// The table version it landed in; `None` when it had landed before (a rerun).
    table_version: Option<u64>,
}

/// A table's staging folder and commit lease.
struct Staging {
    files: Files,
    lease: String,
    lease_files: Files,
}

impl Staging {
    fn of(lake: &Lake, def: &TableDef) -> Result<Staging, LakeError> {
        let lease = format!("commit/{}", def.qualified_name());
        Ok(Staging {
            files: lake.files(def.layer, &format!("{}/_staged", def.name))?,
            lease_files: Lease::folder(lake, &lease)?,
            lease,
        })
    }
}

/// Appends `rows` as batch `(app_id, version)` exactly once, in a commit shared with the other
/// writers staging batches for the same table: the drop-in for [`crate::append_once`] when many
/// processes append to one table. `table` is used to write the files and, when this writer
/// becomes the committer, to commit; it is not otherwise refreshed.
pub async fn append_grouped(
    lake: &Lake,
    def: &TableDef,
    table: &mut DeltaTable,
    rows: Vec<PartitionRows>,
    batch: Batch<'_>,
    policy: &GroupPolicy,
) -> Result<(AppendOutcome, GroupStats), AppendError> {
    let staging = Staging::of(lake, def).map_err(StagingError::from)?;
    let (app_id, version) = (batch.app_id, batch.version);
    let stem = stage(&staging, table, rows, batch).await?;
    let started = Instant::now();
    let mut stats = GroupStats::default();
    let mut poll = policy.first_poll;
    let holder = Holder::this_process(&format!("commit {}", def.qualified_name()));
    let mut look = 0u32;
    let mut failed_turns = 0;
    loop {
        let led = if look.is_multiple_of(LEASE_EVERY) {
            lead(&staging, table, &holder, policy).await
        } else {
            Ok(None)
        };
        match led {
            Ok(Some(led)) => {
                failed_turns = 0;
                stats.commits_led += led.commits;
                stats.batches_led += led.batches;
                stats.commit.rounds += led.commit.rounds;
                stats.commit.retries += led.commit.retries;
                stats.commit.waited += led.commit.waited;
            }
            Ok(None) => {}
            // The batch stays staged for the next committer: a storage hiccup costs a turn, and
            // only a failure that repeats is this writer's to report.
            Err(e) if failed_turns + 1 < FAILED_TURNS => {
                failed_turns += 1;
                tracing::warn!(table = %def.qualified_name(), "a commit turn failed, waiting on: {e}");
            }
            Err(e) => return Err(e),
        }
        let receipt = match receipt(&staging, &stem).await {
            Ok(receipt) => receipt,
            Err(e) => {
                tracing::warn!(table = %def.qualified_name(), "reading a receipt failed, looking again: {e}");
                None
            }
        };
        if let Some(receipt) = receipt {
            stats.waited = started.elapsed();
            let outcome = match receipt.table_version {
                Some(v) => AppendOutcome::Committed(v),
                None => AppendOutcome::AlreadyCommitted,
            };
            return Ok((outcome, stats));
        }
        if started.elapsed() >= policy.patience {
            return Err(StagingError::Timeout {
                app_id: app_id.to_string(),
                version,
                waited: started.elapsed(),
            }
            .into());
        }
        tokio::time::sleep(jitter(poll)).await;
        poll = (poll * 2).min(policy.max_poll);
        look = look.wrapping_add(1);
    }
}

/// Writes the batch's files and its manifest; returns the manifest's stem.
async fn stage(
    staging: &Staging,
    table: &DeltaTable,
    rows: Vec<PartitionRows>,
    batch: Batch<'_>,
) -> Result<String, AppendError> {
    let stem = stem(batch.app_id, batch.version);
    let adds = write_files(table, rows, batch.writer_properties).await?;
    let staged = Staged {
        app_id: batch.app_id.to_string(),
        version: batch.version,
        adds,
        metadata: batch.metadata,
        staged_at: Utc::now(),
    };
    let bytes = serde_json::to_vec(&staged).map_err(|e| StagingError::Encode {
        app_id: batch.app_id.to_string(),
        detail: e.to_string(),
    })?;
    // Already staged means a previous run of this batch got that far: its files stand.
    staging
        .files
        .put_new(&format!("{stem}.staged.json"), Bytes::from(bytes))
        .await
        .map_err(StagingError::from)?;
    Ok(stem)
}

/// Reads and removes this batch's receipt, if the committer left it.
async fn receipt(staging: &Staging, stem: &str) -> Result<Option<Receipt>, StagingError> {
    let name = format!("{stem}.done.json");
    let Some(bytes) = staging.files.get(&name).await? else {
        return Ok(None);
    };
    match serde_json::from_slice(&bytes) {
        Ok(receipt) => {
            staging.files.delete(&name).await?;
            Ok(Some(receipt))
        }
        // Unreadable means not yet fully visible on a store without atomic puts: look again.
        Err(_) => Ok(None),
    }
}

/// What turns as the committer did.
#[derive(Debug, Default)]
struct Led {
    commits: u32,
    batches: u64,
    commit: CommitStats,
}

impl Led {
    fn add(&mut self, turn: Led) {
        self.commits += turn.commits;
        self.batches += turn.batches;
        self.commit.rounds += turn.commit.rounds;
        self.commit.retries += turn.commit.retries;
        self.commit.waited += turn.commit.waited;
    }
}

/// Commits what is staged if the commit lease is free; `None` when someone else holds it. The
/// committer takes turns while batches keep arriving, up to the policy's `lead_for`: handing
/// the lease over costs more than a turn.
async fn lead(
    staging: &Staging,
    table: &mut DeltaTable,
    holder: &Holder,
    policy: &GroupPolicy,
) -> Result<Option<Led>, AppendError> {
    let acquired = Lease::acquire_in(
        &staging.lease_files,
        &staging.lease,
        holder,
        policy.lease_ttl,
    )
    .await;
    let lease = match acquired {
        Ok(lease) => HeldLease::keep(lease),
        Err(LeaseError::Held { .. }) => return Ok(None),
        Err(e) => return Err(StagingError::from(e).into()),
    };
    let started = Instant::now();
    let mut led = Led::default();
    let outcome = loop {
        match commit_staged(staging, table, policy).await {
            Ok(turn) if turn.batches > 0 && started.elapsed() < policy.lead_for => led.add(turn),
            Ok(turn) => {
                led.add(turn);
                break Ok(led);
            }
            Err(e) => break Err(e),
        }
        if let Some(why) = lease.lost() {
            tracing::warn!("{why}; leaving the staged batches to the new committer");
            break Ok(led);
        }
    };
    if let Err(e) = lease.release().await {
        // It expires by itself; the next committer only waits for that.
        tracing::warn!("releasing the {} lease: {e}", staging.lease);
    }
    outcome.map(Some)
}

/// The committer's turn: every stream's lowest staged batch not yet in the table, in one commit.
async fn commit_staged(
    staging: &Staging,
    table: &mut DeltaTable,
    policy: &GroupPolicy,
) -> Result<Led, AppendError> {
    let mut led = Led::default();
    let batches = staged_batches(staging, policy.max_batches).await?;
    if batches.is_empty() {
        return Ok(led);
    }
    crate::refresh::refresh(table, "group append").await?;
    let (landed, pending) = split_landed(table, batches).await?;
    let mut receipts: Vec<(Staged, Option<u64>)> = landed.into_iter().map(|b| (b, None)).collect();
    if !pending.is_empty() {
        let actions: Vec<Action> = pending
            .iter()
            .flat_map(|b| b.adds.iter().cloned().map(Action::Add))
            .collect();
        let txns: Vec<Transaction> = pending
            .iter()
            .map(|b| Transaction::new(&b.app_id, b.version))
            .collect();
        let metadata = merged_metadata(&pending);
        match commit_held(table, actions, &txns, metadata, &policy.commit).await {
            Ok((outcome, stats)) => {
                led.commits = 1;
                led.batches = pending.len() as u64;
                led.commit = stats;
                let version = match outcome {
                    AppendOutcome::Committed(v) => Some(v),
                    AppendOutcome::AlreadyCommitted => None,
                };
                receipts.extend(pending.into_iter().map(|b| (b, version)));
            }
            // Another committer got some of these in first: the next turn sorts them out.
            Err(AppendError::Conflict { app_id }) => {
                tracing::info!(%app_id, "another committer committed staged batches meanwhile");
            }
            Err(e) => return Err(e),
        }
    }
    write_receipts(staging, receipts).await?;
    Ok(led)
}

/// The staged batches to commit now: each stream's lowest version, at most `max` of them.
async fn staged_batches(staging: &Staging, max: usize) -> Result<Vec<Staged>, StagingError> {
    let listed = staging.files.list_meta("").await?;
    let now = Utc::now();
    let mut lowest: BTreeMap<String, String> = BTreeMap::new();
    for file in &listed {
        if let Some(stem) = file.name.strip_suffix(".staged.json") {
            let stream = stem.rsplit_once('@').map_or(stem, |(s, _)| s);
            // Names sort by version within a stream, so the first seen is the lowest.
            lowest
                .entry(stream.to_string())
                .or_insert_with(|| file.name.clone());
        } else if file.name.ends_with(".done.json") && now - file.modified > STALE_RECEIPT {
            staging.files.delete(&file.name).await?;
        }
    }
    let reads = futures::stream::iter(lowest.into_values().take(max))
        .map(|name| async move {
            let bytes = staging.files.get(&name).await?;
            Ok::<_, StagingError>((name, bytes))
        })
        .buffered(CONCURRENT_FILES)
        .collect::<Vec<_>>()
        .await;
    let mut batches = Vec::new();
    for read in reads {
        // Gone since the listing: another committer took care of it.
        let (name, Some(bytes)) = read? else {
            continue;
        };
        match serde_json::from_slice::<Staged>(&bytes) {
            Ok(batch) => batches.push(batch),
            Err(e) => tracing::error!(
                "the staged batch {name} is not readable ({e}); its writer waits until it is removed"
            ),
        }
    }
    Ok(batches)
}

/// Separates batches whose stream already recorded their version from those to commit.
async fn split_landed(
    table: &DeltaTable,
    batches: Vec<Staged>,
) -> Result<(Vec<Staged>, Vec<Staged>), AppendError> {
    let streams: Vec<&str> = batches.iter().map(|b| b.app_id.as_str()).collect();
    let done = committed_versions(table, &streams).await?;
    Ok(batches.into_iter().partition(|b| {
        done.get(&b.app_id)
            .copied()
            .flatten()
            .is_some_and(|v| v >= b.version)
    }))
}

/// Each batch's receipt, then its manifest removed (in that order: a committer that stops
/// between the two leaves a manifest the next one finds committed).
async fn write_receipts(
    staging: &Staging,
    receipts: Vec<(Staged, Option<u64>)>,
) -> Result<(), StagingError> {
    let results = futures::stream::iter(receipts)
        .map(|(batch, table_version)| async move {
            let stem = stem(&batch.app_id, batch.version);
            let receipt = Receipt {
                app_id: batch.app_id,
                version: batch.version,
                table_version,
            };
            let bytes = serde_json::to_vec(&receipt).map_err(|e| StagingError::Encode {
                app_id: receipt.app_id.clone(),
                detail: e.to_string(),
            })?;
            staging
                .files
                .put(&format!("{stem}.done.json"), Bytes::from(bytes))
                .await?;
            staging.files.delete(&format!("{stem}.staged.json")).await?;
            Ok::<_, StagingError>(())
        })
        .buffer_unordered(CONCURRENT_FILES)
        .collect::<Vec<_>>()
        .await;
    results.into_iter().collect()
}

/// The commit's metadata: each key's greatest value among the batches (the newest watermark,
/// the latest batch), and every batch's own under `batches`.
fn merged_metadata(batches: &[Staged]) -> HashMap<String, Value> {
    let mut merged: HashMap<String, Value> = HashMap::new();
    for batch in batches {
        for (key, value) in &batch.metadata {
            let greater = merged.get(key).is_none_or(|old| greater(value, old));
            if greater {
                merged.insert(key.clone(), value.clone());
            }
        }
    }
    let each: Vec<Value> = batches
        .iter()
        .map(|b| {
            serde_json::json!({"app_id": b.app_id, "version": b.version, "metadata": b.metadata})
        })
        .collect();
    merged.insert("batches".to_string(), Value::Array(each));
    merged
}

/// Numbers by value, text in order (RFC 3339 times in UTC sort as times), anything over null.
fn greater(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() > b.as_f64(),
        (Value::String(a), Value::String(b)) => a > b,
        (a, Value::Null) => !a.is_null(),
        _ => false,
    }
}

/// A batch's file name stem, `<stream>@<version>`: the stream spelled with letters, digits, `-`
/// and `_` as they are and any other byte as `.` and two hex digits, so no two streams share a
/// stem and every store accepts it; versions zero-padded so that names sort by version.
fn stem(app_id: &str, version: i64) -> String {
    let mut stem = String::with_capacity(app_id.len() + 21);
    for b in app_id.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            stem.push(b as char);
        } else {
            stem.push_str(&format!(".{b:02x}"));
        }
    }
    stem.push_str(&format!("@{version:020}"));
    stem
}

#[cfg(test)]
#[path = "group_tests.rs"]
mod tests;
