//! A full refresh: the job's tables and state rebuilt from all of Bronze beside the live ones,
//! then swapped in, each table in one commit. What Databricks calls a full refresh of a
//! streaming table, and what a changed setting or a fixed bug needs.
//!
//! 1. A marker, `_system/jobs/bookings_fact/refresh.json`, is written create-only. It names the
//!    refresh's first batch: one past the live job's last, so batch numbers, and the
//!    application transactions that carry them, keep growing across the swap.
//! 2. The job runs as usual over a lake whose Silver and `_system` layers are moved under
//!    `_system/refresh/bookings_fact/<first batch>/`, reading the live Bronze from an empty
//!    state: its plans, checkpoints and crash recovery are the job's own. Its quarantine rows go
//!    to the live `bronze.quarantine` as `bookings_fact:refresh:...`, less those an earlier run
//!    already wrote for the same events.
//! 3. The swap: each Silver table's contents are replaced by the rebuilt ones in one commit
//!    (batch_load's rows of `silver.bookings_fact` stay), recording `bookings_fact:<table>` = the
//!    refresh's last batch and `bookings_fact:refresh:<table>` = its first; `_system.expectations`
//!    gains the refresh's rows. Then the rebuilt state becomes the job's checkpoint and the
//!    marker goes.
//!
//! Readers see each table before or after its swap, never between. A crash anywhere leaves the
//! marker, and the next run of the job continues the refresh where it stopped
//! ([`finish_unfinished`]), then carries on as usual.
//!
//! With shards ([`super::sharding`]), every shard is rebuilt from the same first batch (its
//! commits to the live quarantine as `bookings_fact:refresh:<k>:...`), the swap records each
//! shard's last batch under its own application transaction, and each shard's state is adopted
//! into its folder. A refresh may change the split: it rebuilds under the one the settings ask
//! for, drops the old shards' state and records the new split, which is how a lake moves to
//! another shard or partition count.

use std::collections::HashSet;
use std::sync::Arc;

use boxoffice_ingest::bronze::{QUARANTINE, QuarantineRow};
use boxoffice_lake::{
    AppendOutcome, Files, Lake, Layer, PartitionRows, Replacement, TableDef, append_once,
    read_rows, replace_once,
};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::input::Positions;
use super::join::JoinState;
use super::output::quarantine_key;
use super::shard::{batch_of, checkpoint_name};
use super::sharding::{self, Sharding};
use super::{BatchReport, BookingsFact, JOB, Outputs, Settings, checkpoint, checkpoint_error};
use crate::JobError;
use crate::expectations::Expectations;
use crate::silver::tables::{
    BOOKINGS_FACT, EXPECTATIONS, LATE_EVENTS, ORPHAN_PAYMENTS, UNPAID_BOOKINGS,
};

/// The marker of an unfinished refresh, in the job's folder.
pub(super) const MARKER: &str = "refresh.json";

/// The tables a refresh replaces, in swap order (the fact table last: Gold reads it with the
/// others, and a reader of the fact table alone sees it change once).
const REPLACED: [&TableDef; 4] = [
    &LATE_EVENTS,
    &ORPHAN_PAYMENTS,
    &UNPAID_BOOKINGS,
    &BOOKINGS_FACT,
];

/// Tries of a table's swap when another writer (batch_load's MERGE) commits meanwhile.
const SWAP_TRIES: usize = 5;

/// An unfinished refresh, as its marker records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Marker {
    /// Its first batch number.
    pub first_batch: u64,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Whether it drains at the end (the input treated as complete).
    pub drain: bool,
    /// Set when the rebuild is complete: its last batch (the highest of the shards'), and the
    /// swap may be under way.
    pub last_batch: Option<u64>,
    /// The split it rebuilds under (absent in a marker from before shards: one shard).
    #[serde(default)]
    pub sharding: Option<Sharding>,
    /// Set with `last_batch`: each shard's last batch.
    #[serde(default)]
    pub shard_last: Vec<u64>,
}

/// What a refresh did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RefreshReport {
    /// Its first batch number.
    pub first_batch: u64,
    /// It continued one a crash had interrupted.
    pub resumed: bool,
    /// The rebuild's batches.
    pub batches: Vec<BatchReport>,
    /// Each table swapped: name and rows it holds now.
    pub swapped: Vec<(String, u64)>,
}

fn error(detail: impl std::fmt::Display) -> JobError {
    checkpoint_error(format!("full refresh: {detail}"))
}

fn job_files(lake: &Lake) -> Result<Files, JobError> {
    Ok(lake.files(Layer::System, &format!("jobs/{JOB}"))?)
}

/// The refresh that started and did not finish, if any.
pub async fn unfinished(lake: &Lake) -> Result<Option<Marker>, JobError> {
    match job_files(lake)?.get(MARKER).await? {
        Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(error),
        None => Ok(None),
    }
}

/// The lake the refresh of `first_batch` writes: Silver and `_system` moved under
/// `_system/refresh/bookings_fact/<first_batch>/`, everything else the live lake's.
fn shadow(lake: &Lake, first_batch: u64) -> Result<Lake, JobError> {
    let root = lake.table_url(Layer::System, &format!("refresh/{JOB}/{first_batch}"))?;
    let under = |dir: &str| root.join(dir).map_err(error);
    Ok(lake
        .with_layer(Layer::Silver, under("silver/")?)
        .with_layer(Layer::System, under("_system/")?))
}

/// Rebuilds the job's tables and state from all of Bronze and swaps them in; continues an
/// unfinished refresh instead of starting one. `on_batch` sees each batch as it completes.
pub async fn full_refresh<F: FnMut(&BatchReport) + Send>(
    lake: &Lake,
    settings: Settings,
    expectations: Expectations,
    drain: bool,
    on_batch: &mut F,
) -> Result<RefreshReport, JobError> {
    let (marker, resumed) = match unfinished(lake).await? {
        Some(marker) => (marker, true),
        None => (start(lake, &settings, drain).await?, false),
    };
    let mut report = run(lake, marker, settings, expectations, on_batch).await?;
    report.resumed = resumed;
    Ok(report)
}

/// Finishes a refresh a crash interrupted, if there is one.
pub async fn finish_unfinished<F: FnMut(&BatchReport) + Send>(
    lake: &Lake,
    settings: Settings,
    expectations: Expectations,
    on_batch: &mut F,
) -> Result<Option<RefreshReport>, JobError> {
    match unfinished(lake).await? {
        Some(marker) => {
            let mut report = run(lake, marker, settings, expectations, on_batch).await?;
            report.resumed = true;
            Ok(Some(report))
        }
        None => Ok(None),
    }
}

/// Whether `name` (in the job's folder) is a shard's plan, checkpoint or published position:
/// at the top for a lake of one shard, under `shards/<k>/` otherwise.
fn shard_file(name: &str) -> bool {
    let within = match name.strip_prefix("shards/") {
        Some(rest) => rest.split_once('/').map_or("", |(_, r)| r),
        None => name,
    };
    within.starts_with("state/") || within.starts_with("plans/") || within == super::published::FILE
}

/// Writes the marker of a new refresh, numbered after every batch any shard of the live job has
/// checkpointed or planned (a planned batch may have committed to some tables), under the split
/// `settings` ask for. The live state is not loaded: a refresh is how a change of settings is
/// applied, and the old state may not suit the new.
async fn start(lake: &Lake, settings: &Settings, drain: bool) -> Result<Marker, JobError> {
    let split = Sharding::wanted(settings, sharding::recorded(lake).await?);
    split.validate()?;
    let files = job_files(lake)?;
    let last = files
        .list("")
        .await?
        .iter()
        .filter(|n| shard_file(n))
        .filter_map(|n| batch_of(n))
        .max()
        .unwrap_or(0);
    let marker = Marker {
        first_batch: last + 1,
        started_at: Utc::now(),
        drain,
        last_batch: None,
        sharding: Some(split),
        shard_last: Vec::new(),
    };
    let text = serde_json::to_vec_pretty(&marker).map_err(error)?;
    if !job_files(lake)?.put_new(MARKER, Bytes::from(text)).await? {
        return Err(JobError::Concurrent {
            job: JOB,
            shard: String::new(),
            batch: marker.first_batch,
        });
    }
    Ok(marker)
}

async fn run<F: FnMut(&BatchReport) + Send>(
    lake: &Lake,
    mut marker: Marker,
    mut settings: Settings,
    expectations: Expectations,
    on_batch: &mut F,
) -> Result<RefreshReport, JobError> {
    let split = marker.sharding.unwrap_or(Sharding {
        shards: 1,
        partitions_per_hub: settings.partitions_per_hub,
    });
    // The rebuild and its resumption run under the marker's split, whatever the settings say now.
    settings.partitions_per_hub = split.partitions_per_hub;
    settings.shards = Some(split.shards);
    let shadow = shadow(lake, marker.first_batch)?;
    let mut report = RefreshReport {
        first_batch: marker.first_batch,
        ..RefreshReport::default()
    };
    if marker.last_batch.is_none() {
        let (batches, lasts) = rebuild(
            lake,
            &shadow,
            &marker,
            split,
            settings,
            expectations,
            on_batch,
        )
        .await?;
        report.batches = batches;
        marker.last_batch = lasts.iter().copied().max();
        marker.shard_last = lasts;
        let text = serde_json::to_vec_pretty(&marker).map_err(error)?;
        job_files(lake)?.put(MARKER, Bytes::from(text)).await?;
    }
    let lasts = match marker.shard_last.len() {
        0 => vec![marker.last_batch.unwrap_or(marker.first_batch)],
        _ => marker.shard_last.clone(),
    };
    crate::crash_point(&format!("{JOB}:refresh:before-swap"));
    report.swapped = swap(lake, &shadow, marker.first_batch, split, &lasts).await?;
    adopt_state(lake, &shadow, split, &lasts).await?;
    sharding::record(lake, split, true).await?;
    crate::crash_point(&format!("{JOB}:refresh:before-done"));
    job_files(lake)?.delete(MARKER).await?;
    let folder = lake.files(
        Layer::System,
        &format!("refresh/{JOB}/{}", marker.first_batch),
    )?;
    if let Err(e) = folder.delete_all().await {
        tracing::warn!("the refresh's working folder was left behind: {e}");
    }
    Ok(report)
}

/// Runs every shard over the shadow lake from an empty state numbered before the first batch,
/// to the end of Bronze; returns the batches and each shard's last batch number.
async fn rebuild<F: FnMut(&BatchReport) + Send>(
    lake: &Lake,
    shadow: &Lake,
    marker: &Marker,
    split: Sharding,
    settings: Settings,
    expectations: Expectations,
    on_batch: &mut F,
) -> Result<(Vec<BatchReport>, Vec<u64>), JobError> {
    sharding::record(shadow, split, true).await?;
    for shard in split.all() {
        let files = shadow.files(Layer::System, &shard.folder())?;
        if files.list("state/").await?.is_empty() && files.list("plans/").await?.is_empty() {
            let empty = JoinState::new(settings.join);
            let seed = checkpoint::encode(marker.first_batch - 1, &Positions::new(), &empty)
                .map_err(error)?;
            files
                .put(&checkpoint_name(marker.first_batch - 1), seed)
                .await?;
        }
    }
    let outputs = Outputs {
        app_prefix: Some(format!("{JOB}:refresh")),
        known_quarantine: Some(Arc::new(known_quarantine(lake).await?)),
    };
    let all: Vec<u32> = (0..split.shards).collect();
    let (mut job, mut batches) =
        BookingsFact::open_with(shadow, settings, expectations, outputs, split, &all).await?;
    batches.iter().for_each(&mut *on_batch);
    let more = job.run(marker.drain).await?;
    more.iter().for_each(&mut *on_batch);
    batches.extend(more);
    Ok((batches, job.shards().map(|s| s.batch()).collect()))
}

/// The keys ([`quarantine_key`]) of the rows this job has written to `bronze.quarantine`.
async fn known_quarantine(lake: &Lake) -> Result<HashSet<String>, JobError> {
    let Some(table) = lake.open_table(&QUARANTINE).await? else {
        return Ok(HashSet::new());
    };
    let ctx = SessionContext::new();
    crate::frames::register(&ctx, "q", &QUARANTINE, Some(&table), None)
        .await
        .map_err(error)?;
    let sql = format!(
        "SELECT stage, hub, partition_id, sequence_number, reason, body FROM q \
         WHERE stage IN ('{JOB}', '{}')",
        BOOKINGS_FACT.qualified_name()
    );
    let batches = crate::frames::collect(&ctx, &sql).await.map_err(error)?;
    let mut keys = HashSet::new();
    for batch in &batches {
        for row in quarantine_rows(batch)? {
            keys.insert(quarantine_key(&row));
        }
    }
    Ok(keys)
}

/// The columns [`quarantine_key`] reads, as rows.
fn quarantine_rows(batch: &RecordBatch) -> Result<Vec<QuarantineRow>, JobError> {
    let cast = |name: &str, to: &deltalake::arrow::datatypes::DataType| {
        let column = batch
            .column_by_name(name)
            .ok_or_else(|| error(format!("quarantine has no {name}")))?;
        deltalake::arrow::compute::cast(column, to).map_err(error)
    };
    use deltalake::arrow::datatypes::{DataType, Int32Type, Int64Type};
    let (stage, hub, reason, body) = (
        cast("stage", &DataType::Utf8)?,
        cast("hub", &DataType::Utf8)?,
        cast("reason", &DataType::Utf8)?,
        cast("body", &DataType::Utf8)?,
    );
    let (partition, sequence) = (
        cast("partition_id", &DataType::Int32)?,
        cast("sequence_number", &DataType::Int64)?,
    );
    let (stage, hub, reason, body) = (
        stage.as_string::<i32>(),
        hub.as_string::<i32>(),
        reason.as_string::<i32>(),
        body.as_string::<i32>(),
    );
    let partition = partition.as_primitive::<Int32Type>();
    let sequence = sequence.as_primitive::<Int64Type>();
    Ok((0..batch.num_rows())
        .map(|i| QuarantineRow {
            received_at: Utc::now(),
            source: String::new(),
            hub: hub.is_valid(i).then(|| hub.value(i).to_string()),
            reason: reason.value(i).to_string(),
            body: body.value(i).to_string(),
            stage: stage.value(i).to_string(),
            partition_id: partition.is_valid(i).then(|| partition.value(i)),
            sequence_number: sequence.is_valid(i).then(|| sequence.value(i)),
            event_uid: None,
            source_file: None,
            line: None,
        })
        .collect())
}

/// Replaces each live Silver table with its rebuilt one, and adds the rebuild's expectation
/// results to the run history. Each step is skipped when its table records it done.
async fn swap(
    lake: &Lake,
    shadow: &Lake,
    first: u64,
    split: Sharding,
    lasts: &[u64],
) -> Result<Vec<(String, u64)>, JobError> {
    let mut swapped = Vec::new();
    for def in REPLACED {
        let rebuilt = shadow.open_table(def).await?;
        let rows = replace_table(lake, def, rebuilt.as_ref(), first, split, lasts).await?;
        swapped.push((def.qualified_name(), rows));
        crate::crash_point(&format!(
            "{JOB}:refresh:after-swap:{}",
            def.qualified_name()
        ));
    }
    if let Some(results) = shadow.open_table(&EXPECTATIONS).await? {
        let rows: Vec<PartitionRows> = read_rows(&results)
            .await
            .map_err(error)?
            .into_iter()
            .map(PartitionRows::unsplit)
            .collect();
        let mut history = lake.ensure_table(&EXPECTATIONS).await?;
        append_once(
            &mut history,
            rows,
            &format!("{JOB}:refresh:{}", EXPECTATIONS.qualified_name()),
            first as i64,
            Default::default(),
            EXPECTATIONS.writer_properties(),
        )
        .await
        .map_err(|e| JobError::Commit {
            table: EXPECTATIONS.qualified_name(),
            source: Box::new(e),
        })?;
    }
    Ok(swapped)
}

/// One table's swap, tried again when another writer committed to it meanwhile. It records each
/// shard's last batch as that shard's application transaction on the table, so that each goes
/// on from there.
async fn replace_table(
    lake: &Lake,
    def: &'static TableDef,
    rebuilt: Option<&deltalake::DeltaTable>,
    first: u64,
    split: Sharding,
    lasts: &[u64],
) -> Result<u64, JobError> {
    let commit_error = |e: deltalake::DeltaTableError| JobError::Commit {
        table: def.qualified_name(),
        source: Box::new(e.into()),
    };
    let mut tries = 0;
    loop {
        tries += 1;
        let mut live = lake.ensure_table(def).await?;
        let keep = if def.name == BOOKINGS_FACT.name {
            batch_rows(&live).await?
        } else {
            Vec::new()
        };
        let replacement = Replacement {
            from: rebuilt,
            keep,
            guard: (
                format!("{JOB}:refresh:{}", def.qualified_name()),
                first as i64,
            ),
            transactions: split
                .all()
                .iter()
                .zip(lasts)
                .map(|(shard, last)| {
                    let id = format!("{}:{}", shard.app_prefix(JOB), def.qualified_name());
                    (id, *last as i64)
                })
                .collect(),
            metadata: [
                (
                    "operation".to_string(),
                    json!(format!("{JOB} full refresh")),
                ),
                ("batch".to_string(), json!(lasts.iter().max())),
            ]
            .into(),
        };
        match replace_once(&mut live, replacement, def.writer_properties()).await {
            Ok(AppendOutcome::Committed(_) | AppendOutcome::AlreadyCommitted) => {
                return Ok(rows_of(&live));
            }
            Err(e) if tries < SWAP_TRIES && is_conflict(&e) => {
                tracing::info!(table = %def.qualified_name(), "another writer committed during the swap; trying again");
            }
            Err(e) => return Err(commit_error(e)),
        }
    }
}

/// Whether a job's commit failed because another writer committed to the table meanwhile.
pub(super) fn is_commit_conflict(e: &JobError) -> bool {
    match e {
        JobError::Commit { source, .. } => match source.as_ref() {
            boxoffice_lake::AppendError::Conflict { .. } => true,
            boxoffice_lake::AppendError::Delta(e) => is_conflict(e),
            boxoffice_lake::AppendError::Staging(_) => false,
        },
        _ => false,
    }
}

fn is_conflict(e: &deltalake::DeltaTableError) -> bool {
    matches!(
        e,
        deltalake::DeltaTableError::Transaction {
            source: deltalake::kernel::transaction::TransactionError::CommitConflict(_)
        }
    )
}

/// The fact table's rows that batch_load merged in (`source = 'batch'`): not the job's to
/// rebuild, so they stay.
async fn batch_rows(live: &deltalake::DeltaTable) -> Result<Vec<PartitionRows>, JobError> {
    let ctx = SessionContext::new();
    crate::frames::register(&ctx, "fact", &BOOKINGS_FACT, Some(live), None)
        .await
        .map_err(error)?;
    let batches = crate::frames::collect(&ctx, "SELECT * FROM fact WHERE source = 'batch'")
        .await
        .map_err(error)?;
    batches
        .iter()
        .filter(|b| b.num_rows() > 0)
        .map(|b| {
            crate::frames::conform(&BOOKINGS_FACT, b, None)
                .map(PartitionRows::unsplit)
                .map_err(error)
        })
        .collect()
}

/// Rows of the table's current snapshot, from its file statistics.
fn rows_of(table: &deltalake::DeltaTable) -> u64 {
    table.snapshot().map_or(0, |s| {
        s.log_data()
            .iter()
            .filter_map(|f| f.num_records())
            .map(|n| n as u64)
            .sum()
    })
}

/// Makes the rebuilt states the live job's: each shard's checkpoint copied into its folder as
/// its latest, every other checkpoint, plan and published position of the live job (of this
/// split or an earlier one) forgotten, the rebuilt positions copied.
async fn adopt_state(
    lake: &Lake,
    shadow: &Lake,
    split: Sharding,
    lasts: &[u64],
) -> Result<(), JobError> {
    let mut adopted = HashSet::new();
    for (shard, last) in split.all().into_iter().zip(lasts) {
        let folder = shard.folder();
        let (live, rebuilt) = (
            lake.files(Layer::System, &folder)?,
            shadow.files(Layer::System, &folder)?,
        );
        let name = checkpoint_name(*last);
        if live.get(&name).await?.is_none() {
            let bytes = rebuilt
                .get(&name)
                .await?
                .ok_or_else(|| error(format!("the rebuilt state {folder}/{name} is missing")))?;
            live.put(&name, bytes).await?;
        }
        adopted.insert(shard.in_job_folder(&name));
        if let Some(position) = rebuilt.get(super::published::FILE).await? {
            live.put(super::published::FILE, position).await?;
            adopted.insert(shard.in_job_folder(super::published::FILE));
        }
    }
    let live = job_files(lake)?;
    for old in live.list("").await? {
        if shard_file(&old) && !adopted.contains(&old) {
            live.delete(&old).await?;
        }
    }
    Ok(())
}
