//! Compaction: a partition's small files rewritten into fewer, larger ones, committed as one
//! OPTIMIZE that changes no data, so that writers appending at the same time never notice it.
//!
//! delta-rs's own `optimize()` takes every small file of a partition; this one lets the caller
//! pick which files may be rewritten (maintenance leaves the youngest alone) and guards the
//! commit itself:
//!
//! - Every add and remove says `dataChange: false` and the operation is OPTIMIZE, which reads
//!   no predicate and not the whole table. delta-rs's conflict checker (1.1) then finds nothing
//!   to object to in a concurrent blind append, either way round: the appender's new files are
//!   not files this commit should have read, and this commit's removes are not data changes
//!   that the appender read. Neither side fails; each is rebased on the other.
//! - That same checker ignores `dataChange: false` removes when it compares what two commits
//!   remove, so two compactions of the same files would both land and duplicate rows. Every
//!   compaction therefore records the application transaction [`COMPACTION_APP_ID`]: two
//!   compactions racing conflict on it, and the loser re-reads the table and commits only the
//!   groups whose files are all still live (its other rewritten files are deleted, never
//!   referenced). Right before each attempt the live files are checked the same way.
//! - A group's rows are counted on the way in and compared with the statistics of the files
//!   written before anything is committed.
//! - A table may name a column whose values are kept apart ([`compact_keeping_apart`]): files
//!   whose statistics show a single value of it are only grouped with files of that value, so
//!   readers that prune files by it (the join's shards read Bronze by `partition_id`) still can.

use std::collections::{BTreeMap, HashSet};

use chrono::Utc;
use delta_kernel::expressions::Scalar;
use deltalake::arrow::array::RecordBatch;
use deltalake::kernel::transaction::{CommitBuilder, TransactionError};
use deltalake::kernel::{Action, Add, DataType, Remove, Transaction};
use deltalake::parquet::arrow::ParquetRecordBatchStreamBuilder;
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::protocol::DeltaOperation;
use deltalake::writer::{DeltaWriter, RecordBatchWriter, WriteMode};
use deltalake::{DeltaTable, DeltaTableError};
use futures::TryStreamExt;
use indexmap::IndexMap;
use object_store::ObjectStoreExt;
use object_store::path::Path;

use crate::read::{StoredFile, normalize};

/// The application id every compaction commits under, so that two compactions of one table
/// conflict with each other (and with nothing else: archivers use their own ids).
pub const COMPACTION_APP_ID: &str = "boxoffice:compaction";

/// Attempts at committing one partition's compaction before giving up (each re-reads the table).
const COMMIT_ATTEMPTS: usize = 10;

/// Commit races delta-rs resolves by itself within one attempt (a version taken by an appender
/// between its conflict check and its write); appenders commit every second or so.
const COMMIT_RETRIES: usize = 100;

/// A partition's values, as the log records them: each partition column with its value (`None`:
/// null), in the table's order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Partition(pub Vec<(String, Option<String>)>);

impl Partition {
    /// The value of one partition column (`None`: null, or no such column).
    pub fn value(&self, column: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(c, _)| c == column)
            .and_then(|(_, v)| v.as_deref())
    }

    /// As a predicate, for the commit's operation parameters.
    fn predicate(&self) -> String {
        self.0
            .iter()
            .map(|(c, v)| format!("{c} = '{}'", v.as_deref().unwrap_or("null")))
            .collect::<Vec<_>>()
            .join(" AND ")
    }
}

/// How compaction treats a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Nothing appends to it any more: every small file is packed as tightly as the target allows.
    Closed,
    /// Still appended to: only files written at or before `written_by` (milliseconds since the
    /// epoch), and a file is only rewritten into one at least twice its size or a done one (see
    /// [`plan_groups`]), so frequent runs do not rewrite the same data again and again.
    Open {
        /// The newest `modificationTime` a file may have.
        written_by: i64,
    },
}

/// Encoded bytes per row group of a compacted file, as the Parquet writer estimates them. A row
/// group is held in memory until it is flushed: with the default of a million rows, compacting
/// Bronze took 680 MB for a 65 MB file; with this, 300 MB.
const ROW_GROUP_BYTES: usize = 8 * 1024 * 1024;

/// A live data file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DataFile {
    /// Path relative to the table root, as the log records it (decoded).
    path: String,
    /// Bytes.
    size: u64,
    /// When the file's data was written, milliseconds since the epoch (the add's
    /// `modificationTime`; for a compacted file, that of the newest file it was made from).
    modified: i64,
}

/// What compacting one table did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compaction {
    /// Files removed (rewritten into others).
    pub files_removed: u64,
    /// Files written in their place.
    pub files_added: u64,
    /// Commits made (one per partition compacted).
    pub commits: u64,
    /// Commit attempts repeated after another commit got in first (re-read, re-checked).
    pub retries: u64,
    /// Groups of files given up because another compaction rewrote some of them first.
    pub groups_lost: u64,
}

/// One file compaction will rewrite, and the remove that retires it.
#[derive(Debug, Clone)]
struct Input {
    file: DataFile,
    store_path: Path,
    rows: Option<u64>,
    remove: Remove,
}

/// A group of files rewritten together, and what they became.
struct Rewritten {
    inputs: Vec<Input>,
    outputs: Vec<Add>,
}

/// Compacts `table`: in each partition, the files smaller than `target_bytes` that its [`Rule`]
/// (from `rule`) takes are grouped in the order their data was written (see [`plan_groups`]),
/// each group is rewritten into files of up to `target_bytes` with `writer_properties` and
/// statistics, and each partition's groups are committed together. The table is left at its
/// latest version.
pub async fn compact(
    table: &mut DeltaTable,
    writer_properties: &WriterProperties,
    target_bytes: u64,
    rule: impl Fn(&Partition) -> Rule,
) -> Result<Compaction, DeltaTableError> {
    compact_keeping_apart(table, writer_properties, target_bytes, rule, None).await
}

/// As [`compact`], with the values of column `apart` kept apart: a file whose statistics show a
/// single value of it is rewritten only with files of the same value (files holding several
/// values, or without statistics, only with each other).
pub async fn compact_keeping_apart(
    table: &mut DeltaTable,
    writer_properties: &WriterProperties,
    target_bytes: u64,
    rule: impl Fn(&Partition) -> Rule,
    apart: Option<&str>,
) -> Result<Compaction, DeltaTableError> {
    prepare_keeping_apart(table, writer_properties, target_bytes, rule, apart)
        .await?
        .commit(table)
        .await
}

/// A compaction whose new files are written and not committed yet.
///
/// Dropped without [`Prepared::commit`], its files are referenced by no version: vacuum deletes
/// them once they are older than its retention.
pub struct Prepared {
    partitions: Vec<(Partition, Vec<Rewritten>)>,
    target_bytes: u64,
}

impl Prepared {
    /// Files the compaction has rewritten and would remove.
    pub fn files_to_remove(&self) -> usize {
        self.groups().map(|r| r.inputs.len()).sum()
    }

    fn groups(&self) -> impl Iterator<Item = &Rewritten> {
        self.partitions.iter().flat_map(|(_, groups)| groups)
    }

    /// Commits each partition's groups, on the table's latest version (see [`compact`]).
    pub async fn commit(self, table: &mut DeltaTable) -> Result<Compaction, DeltaTableError> {
        let mut report = Compaction::default();
        let mut partitions = self.partitions.into_iter();
        while let Some((partition, groups)) = partitions.next() {
            if let Err(e) = commit(table, &partition, groups, self.target_bytes, &mut report).await
            {
                let rest: Vec<Rewritten> = partitions.flat_map(|(_, g)| g).collect();
                forget(table, rest.iter().flat_map(|r| &r.outputs)).await;
                return Err(e);
            }
        }
        Ok(report)
    }
}

/// Chooses the files to compact (as [`compact`] does) and writes their replacements, committing
/// nothing.
pub async fn prepare(
    table: &mut DeltaTable,
    writer_properties: &WriterProperties,
    target_bytes: u64,
    rule: impl Fn(&Partition) -> Rule,
) -> Result<Prepared, DeltaTableError> {
    prepare_keeping_apart(table, writer_properties, target_bytes, rule, None).await
}

/// As [`prepare`], with the values of column `apart` kept apart (see [`compact_keeping_apart`]).
pub async fn prepare_keeping_apart(
    table: &mut DeltaTable,
    writer_properties: &WriterProperties,
    target_bytes: u64,
    rule: impl Fn(&Partition) -> Rule,
    apart: Option<&str>,
) -> Result<Prepared, DeltaTableError> {
    crate::refresh::refresh(table, "compact").await?;
    let mut prepared = Prepared {
        partitions: Vec::new(),
        target_bytes,
    };
    for (partition, sets) in candidates(table, target_bytes, &rule, apart)? {
        let open = matches!(rule(&partition), Rule::Open { .. });
        let groups: Vec<Vec<&Input>> = sets
            .values()
            .flat_map(|inputs| {
                let sizes: Vec<u64> = inputs.iter().map(|i| i.file.size).collect();
                plan_groups(&sizes, target_bytes, open)
                    .into_iter()
                    .map(|group| group.into_iter().map(|i| &inputs[i]).collect::<Vec<_>>())
            })
            .collect();
        if groups.is_empty() {
            continue;
        }
        let values = partition_scalars(table, &partition)?;
        let mut rewritten = Vec::with_capacity(groups.len());
        for group in groups {
            let group: Vec<Input> = group.into_iter().cloned().collect();
            match rewrite(table, &group, &values, writer_properties, target_bytes).await {
                Ok(outputs) => rewritten.push(Rewritten {
                    inputs: group,
                    outputs,
                }),
                Err(e) => {
                    let written = prepared.groups().chain(&rewritten).flat_map(|r| &r.outputs);
                    forget(table, written).await;
                    return Err(e);
                }
            }
        }
        prepared.partitions.push((partition, rewritten));
    }
    Ok(prepared)
}

/// Files that may be rewritten together, by the single value of the kept-apart column their
/// statistics show (`None`: several values, no statistics, or no such column).
type Sets = BTreeMap<Option<String>, Vec<Input>>;

/// The single value of `column` a file's statistics show, as JSON text.
fn single_value(stats: Option<&str>, column: &str) -> Option<String> {
    let stats: serde_json::Value = serde_json::from_str(stats?).ok()?;
    let (min, max) = (&stats["minValues"][column], &stats["maxValues"][column]);
    (!min.is_null() && min == max).then(|| min.to_string())
}

/// The files compaction may rewrite, by partition and, within one, by the value of `apart` they
/// hold, each set in the order its data was written.
fn candidates(
    table: &DeltaTable,
    target_bytes: u64,
    rule: &impl Fn(&Partition) -> Rule,
    apart: Option<&str>,
) -> Result<BTreeMap<Partition, Sets>, DeltaTableError> {
    let snapshot = table.snapshot()?;
    let columns = snapshot.metadata().partition_columns().to_vec();
    let mut by_partition: BTreeMap<Partition, Sets> = BTreeMap::new();
    for f in snapshot.log_data().iter() {
        // A file with a deletion vector is more than its Parquet rows; boxoffice never writes
        // one, and rewriting it would need the vector applied.
        if f.deletion_vector_descriptor().is_some() {
            continue;
        }
        let values = f.partition_values_map();
        let partition = Partition(
            columns
                .iter()
                .map(|c| (c.clone(), values.get(c).cloned().flatten()))
                .collect(),
        );
        let file = DataFile {
            path: f.path().to_string(),
            size: u64::try_from(f.size()).unwrap_or(u64::MAX),
            modified: f.modification_time(),
        };
        let taken = match rule(&partition) {
            Rule::Closed => true,
            Rule::Open { written_by } => file.modified <= written_by,
        };
        if file.size >= target_bytes || !taken {
            continue;
        }
        let set = apart.and_then(|column| single_value(f.stats().as_deref(), column));
        by_partition
            .entry(partition)
            .or_default()
            .entry(set)
            .or_default()
            .push(Input {
                store_path: f.object_store_path(),
                rows: f.num_records().map(|n| n as u64),
                remove: f.remove_action(false),
                file,
            });
    }
    for inputs in by_partition.values_mut().flat_map(|sets| sets.values_mut()) {
        inputs
            .sort_by(|a, b| (a.file.modified, &a.file.path).cmp(&(b.file.modified, &b.file.path)));
    }
    Ok(by_partition)
}

/// Groups files (given by size, in the order their data was written) for rewriting: runs of
/// consecutive files of at most `target` bytes together, and only groups of two files or more.
/// Files of three quarters of the target or more are done: they are left as they are, and the
/// smaller files on either side of one are consecutive.
///
/// In an `open` partition (still appended to), the largest file is left out of each run while it
/// outweighs all the others together, unless the group would make a done file: a file is
/// rewritten into one at least twice its size or into a done one. So a compacted file is not rewritten each time a few new small files
/// arrive, only once they add up to as much as it holds: each byte is rewritten about
/// log2(target / smallest file) times at most, and a partition settles at done files plus a few
/// smaller ones of about halving sizes.
pub fn plan_groups(sizes: &[u64], target: u64, open: bool) -> Vec<Vec<usize>> {
    let done = |bytes: u64| bytes.saturating_mul(4) >= target.saturating_mul(3);
    let mut groups = Vec::new();
    let mut run: Vec<usize> = Vec::new();
    let mut run_bytes = 0u64;
    for (i, &size) in sizes.iter().enumerate() {
        if done(size) {
            continue;
        }
        if !run.is_empty() && run_bytes.saturating_add(size) > target {
            groups.extend(worth_rewriting(std::mem::take(&mut run), sizes, open, done));
            run_bytes = 0;
        }
        run.push(i);
        run_bytes = run_bytes.saturating_add(size);
    }
    groups.extend(worth_rewriting(run, sizes, open, done));
    groups
}

/// The run, in an open partition without the files that outweigh the rest of it (unless it makes
/// a done file), if two files or more are left.
fn worth_rewriting(
    mut run: Vec<usize>,
    sizes: &[u64],
    open: bool,
    done: impl Fn(u64) -> bool,
) -> Option<Vec<usize>> {
    while run.len() >= 2 {
        if !open {
            return Some(run);
        }
        let total: u64 = run.iter().map(|&i| sizes[i]).sum();
        let (at, largest) = run
            .iter()
            .enumerate()
            .map(|(at, &i)| (at, sizes[i]))
            .max_by_key(|&(at, size)| (size, std::cmp::Reverse(at)))?;
        if largest <= total - largest || done(total) {
            return Some(run);
        }
        run.remove(at);
    }
    None
}

/// The partition's values typed as its columns are, for the writer.
fn partition_scalars(
    table: &DeltaTable,
    partition: &Partition,
) -> Result<IndexMap<String, Scalar>, DeltaTableError> {
    let schema = table.snapshot()?.schema();
    partition
        .0
        .iter()
        .map(|(column, raw)| {
            let data_type = schema
                .field(column)
                .map(|f| f.data_type().clone())
                .ok_or_else(|| {
                    DeltaTableError::Generic(format!(
                        "partition column {column} is not in the schema"
                    ))
                })?;
            let value = match (raw, &data_type) {
                (None, _) => Scalar::Null(data_type),
                (Some(raw), DataType::Primitive(p)) => p.parse_scalar(raw).map_err(|e| {
                    DeltaTableError::Generic(format!("partition value {column}={raw}: {e}"))
                })?,
                (Some(_), other) => {
                    return Err(DeltaTableError::Generic(format!(
                        "partition column {column} has the non-primitive type {other:?}"
                    )));
                }
            };
            Ok((column.clone(), value))
        })
        .collect()
}

/// Reads a group's files in order and writes their rows into new files of up to `target_bytes`,
/// whose adds say `dataChange: false`.
async fn rewrite(
    table: &DeltaTable,
    group: &[Input],
    partition: &IndexMap<String, Scalar>,
    writer_properties: &WriterProperties,
    target_bytes: u64,
) -> Result<Vec<Add>, DeltaTableError> {
    let store = table.object_store();
    // Row groups bounded by bytes, not the default million rows (see ROW_GROUP_BYTES).
    let properties = writer_properties
        .clone()
        .into_builder()
        .set_max_row_group_bytes(Some(ROW_GROUP_BYTES))
        .build();
    let mut writer = RecordBatchWriter::for_table(table)?
        .with_writer_properties(properties)
        .with_target_file_size(target_bytes);
    let mut rows_read = 0u64;
    for input in group {
        let context = |e: &dyn std::fmt::Display| {
            DeltaTableError::Generic(format!("compacting {}: {e}", input.file.path))
        };
        let reader = StoredFile {
            store: store.clone(),
            path: input.store_path.clone(),
            size: input.file.size,
        };
        let mut batches = ParquetRecordBatchStreamBuilder::new(reader)
            .await
            .map_err(|e| context(&e))?
            .with_batch_size(8_192)
            .build()
            .map_err(|e| context(&e))?;
        let mut rows_of_file = 0u64;
        while let Some(batch) = batches.try_next().await.map_err(|e| context(&e))? {
            let batch: RecordBatch = normalize(batch).map_err(|e| context(&e))?;
            rows_of_file += batch.num_rows() as u64;
            if partition.is_empty() {
                writer.write(batch).await?;
            } else {
                writer
                    .write_partition(batch, partition, WriteMode::Default)
                    .await?;
            }
        }
        if let Some(expected) = input.rows
            && expected != rows_of_file
        {
            writer.reset();
            return Err(context(&format!(
                "the log says {expected} rows, the file holds {rows_of_file}"
            )));
        }
        rows_read += rows_of_file;
    }
    let mut outputs = writer.flush().await?;
    let written: Option<u64> = outputs.iter().map(add_rows).sum();
    if written != Some(rows_read) {
        forget(table, outputs.iter()).await;
        return Err(DeltaTableError::Generic(format!(
            "compaction read {rows_read} rows but its files' statistics say {written:?}; nothing was committed"
        )));
    }
    // The new files hold data written up to the newest input's time: ordering files by this time
    // keeps them in the order their data arrived, and the age rule sees the data's age.
    let modified = group.iter().map(|i| i.file.modified).max().unwrap_or(0);
    for add in &mut outputs {
        add.data_change = false;
        add.modification_time = modified;
    }
    Ok(outputs)
}

/// Rows an add's statistics count.
fn add_rows(add: &Add) -> Option<u64> {
    let stats: serde_json::Value = serde_json::from_str(add.stats.as_deref()?).ok()?;
    stats.get("numRecords")?.as_u64()
}

/// Commits a partition's rewritten groups: removes and adds, `dataChange: false`, as an OPTIMIZE
/// under [`COMPACTION_APP_ID`], on the latest version. Groups whose files another commit removed
/// meanwhile are dropped (their new files deleted); a conflict re-reads and tries again.
async fn commit(
    table: &mut DeltaTable,
    partition: &Partition,
    mut pending: Vec<Rewritten>,
    target_bytes: u64,
    report: &mut Compaction,
) -> Result<(), DeltaTableError> {
    let predicate = partition.predicate();
    for attempt in 0..COMMIT_ATTEMPTS {
        if attempt > 0 {
            report.retries += 1;
        }
        crate::refresh::refresh(table, "compact").await?;
        let snapshot = table.snapshot()?;
        let live: HashSet<String> = snapshot
            .log_data()
            .iter()
            .map(|f| f.path().to_string())
            .collect();
        let (keep, lost): (Vec<Rewritten>, Vec<Rewritten>) = pending
            .into_iter()
            .partition(|r| r.inputs.iter().all(|i| live.contains(&i.file.path)));
        report.groups_lost += lost.len() as u64;
        forget(table, lost.iter().flat_map(|r| &r.outputs)).await;
        pending = keep;
        if pending.is_empty() {
            return Ok(());
        }
        let now = Utc::now().timestamp_millis();
        let mut actions = Vec::new();
        for r in &pending {
            actions.extend(r.inputs.iter().map(|i| {
                Action::Remove(Remove {
                    deletion_timestamp: Some(now),
                    ..i.remove.clone()
                })
            }));
            actions.extend(r.outputs.iter().cloned().map(Action::Add));
        }
        let properties = crate::commit_properties()
            .with_application_transaction(Transaction::new(COMPACTION_APP_ID, now))
            .with_metadata([("readVersion".to_string(), snapshot.version().into())]);
        let started = std::time::Instant::now();
        let committed = CommitBuilder::from(properties)
            .with_actions(actions)
            .with_max_retries(COMMIT_RETRIES)
            .build(
                Some(snapshot),
                table.log_store(),
                DeltaOperation::Optimize {
                    predicate: Some(predicate.clone()),
                    target_size: i64::try_from(target_bytes).unwrap_or(i64::MAX),
                },
            )
            .await;
        match committed {
            Ok(finalized) => {
                crate::refresh::committed(table, "compact", finalized.version(), started);
                table.state = Some(finalized.snapshot());
                report.commits += 1;
                for r in &pending {
                    report.files_removed += r.inputs.len() as u64;
                    report.files_added += r.outputs.len() as u64;
                }
                return Ok(());
            }
            // Nothing was written: another compaction got in first, or appenders kept taking
            // the next version. Re-read and try again with what is still live.
            Err(DeltaTableError::Transaction {
                source: TransactionError::CommitConflict(_) | TransactionError::MaxCommitAttempts(_),
            }) => {
                tracing::debug!(partition = %predicate, attempt, "compaction commit raced; re-reading the table");
            }
            // Whether anything landed is unknown: the new files stay for vacuum to judge.
            Err(e) => return Err(e),
        }
    }
    forget(table, pending.iter().flat_map(|r| &r.outputs)).await;
    Err(DeltaTableError::Generic(format!(
        "compacting {predicate}: the table kept changing under {COMMIT_ATTEMPTS} commit attempts; nothing was committed, run it again"
    )))
}

/// Deletes files this compaction wrote and will never commit (best effort: vacuum deletes any
/// left behind once they are older than its retention).
async fn forget<'a>(table: &DeltaTable, adds: impl Iterator<Item = &'a Add>) {
    let store = table.object_store();
    for add in adds {
        let path = Path::parse(&add.path).unwrap_or_else(|_| Path::from(add.path.as_str()));
        if let Err(e) = store.delete(&path).await {
            tracing::warn!(path = %add.path, error = %e, "could not delete a file compaction did not commit; vacuum will");
        }
    }
}

#[cfg(test)]
#[path = "compact_tests.rs"]
mod tests;
