//! Exactly-once appends through Delta application transactions (docs/semantics.md).
//!
//! A writer names its stream (`app_id`, e.g. `archive:bookings:0`) and numbers its batches
//! (`version`, e.g. the batch's last sequence number). The data and the `(app_id, version)` pair
//! land in one atomic commit, so after a crash the writer reads back the last version it
//! committed and skips what is already there. delta-rs records the pair but does not skip by
//! itself: [`committed_version`] is the read, [`append_once`] the guarded write.

use std::collections::HashMap;

use delta_kernel::expressions::Scalar;
use deltalake::arrow::array::RecordBatch;
use deltalake::kernel::{Action, Add, Transaction};
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::writer::{DeltaWriter, RecordBatchWriter, WriteMode};
use deltalake::{DeltaTable, DeltaTableError};
use indexmap::IndexMap;

use crate::hold::{CommitPolicy, CommitStats, commit_held};

/// How an exactly-once append ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// The rows (possibly none) and the transaction landed at this table version.
    Committed(u64),
    /// `(app_id, version)` was already committed: nothing was written.
    AlreadyCommitted,
}

/// Why an exactly-once append did not land.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Another writer committed for the same `app_id` meanwhile: re-read and retry.
    #[error("another writer committed for {app_id} at the same time")]
    Conflict {
        /// The stream that raced.
        app_id: String,
    },
    /// Anything else delta-rs reported.
    #[error(transparent)]
    Delta(#[from] DeltaTableError),
    /// A grouped append could not use the table's staging folder or commit lease.
    #[error(transparent)]
    Staging(#[from] crate::group::StagingError),
}

/// The value of a partition column for a group of rows.
#[derive(Debug, Clone, PartialEq)]
pub enum PartitionValue {
    /// A `date` column, as days since 1970-01-01.
    Date(i32),
    /// A `string` column.
    Text(String),
}

/// Rows of one partition (or of an unpartitioned table, with no values).
///
/// Writers that know their rows' partitions say so, and each group goes straight to its file;
/// otherwise delta-rs would re-split every batch, copying every column of every row.
#[derive(Debug, Clone)]
pub struct PartitionRows {
    /// The rows, with or without their partition columns.
    pub batch: RecordBatch,
    /// Each partition column and its value for all these rows; empty when unpartitioned or
    /// unknown (then delta-rs splits the batch itself).
    pub values: Vec<(String, PartitionValue)>,
}

impl PartitionRows {
    /// Rows whose partition the writer leaves to delta-rs to work out.
    pub fn unsplit(batch: RecordBatch) -> Self {
        PartitionRows {
            batch,
            values: Vec::new(),
        }
    }
}

/// Days since 1970-01-01, as Arrow's Date32 and Delta's `date` partition values count them.
pub fn epoch_days(t: chrono::DateTime<chrono::Utc>) -> i32 {
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    (t.date_naive() - epoch).num_days() as i32
}

/// Groups rows by a date partition column, in date order, keeping each group's rows in order.
/// `build` turns one date's rows into a batch; the result is ready for [`append_once`].
pub fn partitioned_by_date<T, E>(
    column: &str,
    rows: impl IntoIterator<Item = T>,
    date: impl Fn(&T) -> i32,
    build: impl Fn(&[T]) -> Result<RecordBatch, E>,
) -> Result<Vec<PartitionRows>, E> {
    let mut by_date: std::collections::BTreeMap<i32, Vec<T>> = std::collections::BTreeMap::new();
    for row in rows {
        by_date.entry(date(&row)).or_default().push(row);
    }
    by_date
        .into_iter()
        .map(|(days, rows)| {
            Ok(PartitionRows {
                batch: build(&rows)?,
                values: vec![(column.to_string(), PartitionValue::Date(days))],
            })
        })
        .collect()
}

/// Refreshes the table and returns the last version committed by `app_id`, if any.
pub async fn committed_version(
    table: &mut DeltaTable,
    app_id: &str,
) -> Result<Option<i64>, DeltaTableError> {
    Ok(refreshed_versions(table, &[app_id]).await?.pop().flatten())
}

/// Refreshes the table and returns the last version each of `app_ids` committed, in order, all
/// from that one snapshot: for a writer that then commits them together
/// ([`append_streams_after_check`]).
pub async fn refreshed_versions(
    table: &mut DeltaTable,
    app_ids: &[&str],
) -> Result<Vec<Option<i64>>, DeltaTableError> {
    crate::refresh::refresh(table, "append check").await?;
    recorded_versions(table, app_ids).await
}

/// The last version each of `app_ids` committed, in order, as of the snapshot `table` already
/// holds, without refreshing it: for a writer that reads several streams' checkpoints on one
/// refresh and then commits them together ([`append_streams_after_check`]).
pub async fn recorded_versions(
    table: &DeltaTable,
    app_ids: &[&str],
) -> Result<Vec<Option<i64>>, DeltaTableError> {
    let state = table.snapshot()?;
    let mut found = Vec::with_capacity(app_ids.len());
    for app_id in app_ids {
        found.push(
            state
                .transaction_version(table.log_store().as_ref(), *app_id)
                .await?,
        );
    }
    Ok(found)
}

/// Refreshes the table and returns the last version committed by each of `app_ids`, in order.
/// Each is looked up in full once per process and table, then followed through the commits
/// made since (the index group commits use, [`crate::txn_index`]): for a reader that asks
/// again every few seconds, as Gold kept open by `up` does.
pub async fn committed_versions(
    table: &mut DeltaTable,
    app_ids: &[&str],
) -> Result<Vec<Option<i64>>, DeltaTableError> {
    crate::refresh::refresh(table, "append check").await?;
    let found = crate::txn_index::committed_versions(table, app_ids).await?;
    Ok(app_ids
        .iter()
        .map(|id| found.get(*id).copied().flatten())
        .collect())
}

/// Appends `rows` and records `(app_id, version)` in the same commit, unless that version (or a
/// later one) is already recorded. No rows still records the version, which is how a writer
/// marks a batch that produced no rows as done. Commits with [`CommitPolicy::default`], so it
/// holds when several writers append to the table at once.
pub async fn append_once(
    table: &mut DeltaTable,
    rows: Vec<PartitionRows>,
    app_id: &str,
    version: i64,
    metadata: HashMap<String, serde_json::Value>,
    writer_properties: WriterProperties,
) -> Result<AppendOutcome, AppendError> {
    let batch = Batch {
        app_id,
        version,
        metadata,
        writer_properties,
    };
    append_once_with(table, rows, batch, &CommitPolicy::default())
        .await
        .map(|(outcome, _)| outcome)
}

/// One exactly-once batch: the stream, its version, the commit's metadata and how its files
/// are written.
#[derive(Debug, Clone)]
pub struct Batch<'a> {
    /// The writer's stream, e.g. `bookings_fact:3`.
    pub app_id: &'a str,
    /// The batch's number in that stream; a later batch has a larger one.
    pub version: i64,
    /// Recorded in the commit (`commitInfo`), for readers and people.
    pub metadata: HashMap<String, serde_json::Value>,
    /// The table's Parquet settings.
    pub writer_properties: WriterProperties,
}

/// [`append_once`] with a chosen [`CommitPolicy`], also saying what the commit cost: for writers
/// that report contention (benchmarks).
pub async fn append_once_with(
    table: &mut DeltaTable,
    rows: Vec<PartitionRows>,
    batch: Batch<'_>,
    policy: &CommitPolicy,
) -> Result<(AppendOutcome, CommitStats), AppendError> {
    if committed_version(table, batch.app_id)
        .await?
        .is_some_and(|v| v >= batch.version)
    {
        return Ok((AppendOutcome::AlreadyCommitted, CommitStats::default()));
    }
    let actions = added(table, rows, batch.writer_properties).await?;
    let txns = [Transaction::new(batch.app_id, batch.version)];
    commit_held(table, actions, &txns, batch.metadata, policy).await
}

/// Appends on the snapshot the table already holds, without refreshing it: for a writer that
/// has just read [`committed_version`] from this same table and filtered its rows by it. If
/// another writer committed for `app_id` since that snapshot, Delta's conflict check refuses
/// this commit ([`AppendError::Conflict`]), so nothing lands twice. Returns the table version,
/// or `None` if, while waiting out other writers, the batch was found committed already.
pub async fn append_after_check(
    table: &mut DeltaTable,
    rows: Vec<PartitionRows>,
    app_id: &str,
    version: i64,
    metadata: HashMap<String, serde_json::Value>,
    writer_properties: WriterProperties,
) -> Result<Option<u64>, AppendError> {
    let stream = StreamRows {
        app_id,
        version,
        rows,
    };
    append_streams_after_check(table, vec![stream], metadata, writer_properties).await
}

/// One stream's share of a commit that several streams make together: its rows and the
/// application transaction `(app_id, version)` recorded for it.
#[derive(Debug)]
pub struct StreamRows<'a> {
    /// The stream, e.g. `archive:bookings:0`.
    pub app_id: &'a str,
    /// The batch's number in that stream.
    pub version: i64,
    /// Its rows; none still records the version.
    pub rows: Vec<PartitionRows>,
}

/// [`append_after_check`] for several streams in one commit, each stream's rows in files of
/// their own (readers that prune files by stream, such as the join's shards by Event Hubs
/// partition, still can), every stream's transaction recorded. One commit instead of one per
/// stream: fewer log entries, checkpoints and snapshot updates for every reader of the table.
/// If another writer committed for any of the streams since the snapshot the caller read their
/// versions from, the whole commit is refused ([`AppendError::Conflict`]) and nothing lands.
pub async fn append_streams_after_check(
    table: &mut DeltaTable,
    streams: Vec<StreamRows<'_>>,
    metadata: HashMap<String, serde_json::Value>,
    writer_properties: WriterProperties,
) -> Result<Option<u64>, AppendError> {
    let txns: Vec<Transaction> = streams
        .iter()
        .map(|s| Transaction::new(s.app_id, s.version))
        .collect();
    let snapshot: &DeltaTable = table;
    let written = futures::future::try_join_all(
        streams
            .into_iter()
            .map(|s| added(snapshot, s.rows, writer_properties.clone())),
    )
    .await?;
    let actions = written.into_iter().flatten().collect();
    let policy = CommitPolicy::default();
    let (outcome, _) = commit_held(table, actions, &txns, metadata, &policy).await?;
    Ok(match outcome {
        AppendOutcome::Committed(v) => Some(v),
        AppendOutcome::AlreadyCommitted => None,
    })
}

/// The rows written as Parquet files, as the `add` actions of a commit.
pub(crate) async fn added(
    table: &DeltaTable,
    rows: Vec<PartitionRows>,
    writer_properties: WriterProperties,
) -> Result<Vec<Action>, DeltaTableError> {
    Ok(write_files(table, rows, writer_properties)
        .await?
        .into_iter()
        .map(Action::Add)
        .collect())
}

/// Rows from which an append is encoded on every core, each writer making its own files: Parquet
/// encoding is most of a large append's time and runs on one core per writer. Smaller appends
/// (the archivers' batches, `up`'s cycles) keep one file per partition.
const SPLIT_ROWS: usize = 131_072;

/// Writes the rows' Parquet files (none for no rows) and returns their `add` actions.
pub(crate) async fn write_files(
    table: &DeltaTable,
    rows: Vec<PartitionRows>,
    writer_properties: WriterProperties,
) -> Result<Vec<Add>, DeltaTableError> {
    let rows: Vec<PartitionRows> = rows
        .into_iter()
        .filter(|r| r.batch.num_rows() > 0)
        .collect();
    let total: usize = rows.iter().map(|r| r.batch.num_rows()).sum();
    let writers = if total >= SPLIT_ROWS {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        1
    };
    let mut tasks = Vec::new();
    for share in shares(rows, writers) {
        let mut writer =
            RecordBatchWriter::for_table(table)?.with_writer_properties(writer_properties.clone());
        tasks.push(tokio::spawn(async move {
            for r in share {
                write_rows(&mut writer, r).await?;
            }
            writer.flush().await
        }));
    }
    let mut adds = Vec::new();
    for task in tasks {
        let written = task
            .await
            .map_err(|e| DeltaTableError::Generic(format!("a Parquet writer stopped: {e}")))?;
        adds.extend(written?);
    }
    Ok(adds)
}

async fn write_rows(
    writer: &mut RecordBatchWriter,
    r: PartitionRows,
) -> Result<(), DeltaTableError> {
    if r.values.is_empty() {
        return writer.write(r.batch).await;
    }
    let values: IndexMap<String, Scalar> = r
        .values
        .into_iter()
        .map(|(k, v)| (k, v.into_scalar()))
        .collect();
    writer
        .write_partition(r.batch, &values, WriteMode::Default)
        .await
        .map(|_| ())
}

/// Deals rows out to `writers` writers of about equal work: a partition holding a large share is
/// cut in slices (zero-copy), one per writer; smaller ones go whole to the least loaded writer.
fn shares(rows: Vec<PartitionRows>, writers: usize) -> Vec<Vec<PartitionRows>> {
    let mut shares: Vec<(usize, Vec<PartitionRows>)> =
        (0..writers.max(1)).map(|_| (0, Vec::new())).collect();
    let total: usize = rows.iter().map(|r| r.batch.num_rows()).sum();
    let target = total.div_ceil(shares.len());
    for r in rows {
        let n = r.batch.num_rows();
        if shares.len() > 1 && n > target / 2 {
            let slice = n.div_ceil(shares.len());
            for (k, (load, share)) in shares.iter_mut().enumerate() {
                let offset = k * slice;
                if offset >= n {
                    break;
                }
                let len = slice.min(n - offset);
                *load += len;
                share.push(PartitionRows {
                    batch: r.batch.slice(offset, len),
                    values: r.values.clone(),
                });
            }
        } else if let Some((load, share)) = shares.iter_mut().min_by_key(|(load, _)| *load) {
            *load += n;
            share.push(r);
        }
    }
    shares
        .into_iter()
        .map(|(_, share)| share)
        .filter(|share| !share.is_empty())
        .collect()
}

impl PartitionValue {
    fn into_scalar(self) -> Scalar {
        match self {
            PartitionValue::Date(days) => Scalar::Date(days),
            PartitionValue::Text(s) => Scalar::String(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use deltalake::arrow::array::{AsArray, Int64Array};
    use deltalake::arrow::datatypes::{DataType, Int64Type, Schema};

    use super::*;
    use crate::{Lake, Layer, TableDef, column, read_rows};

    fn numbers(from: i64, n: usize) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![column("n", DataType::Int64, false)]));
        let values = Int64Array::from_iter_values(from..from + n as i64);
        RecordBatch::try_new(schema, vec![Arc::new(values)]).expect("batch")
    }

    fn part(from: i64, n: usize, value: &str) -> PartitionRows {
        PartitionRows {
            batch: numbers(from, n),
            values: vec![("p".into(), PartitionValue::Text(value.into()))],
        }
    }

    fn in_order(shares: &[Vec<PartitionRows>]) -> Vec<i64> {
        let mut all: Vec<i64> = Vec::new();
        for share in shares {
            for r in share {
                let col = r.batch.column(0).as_primitive::<Int64Type>();
                all.extend(col.values().iter());
            }
        }
        all
    }

    #[test]
    fn shares_keep_every_row_once_and_balance_the_writers() {
        let rows = vec![part(0, 1000, "a"), part(1000, 10, "b"), part(1010, 7, "c")];
        let dealt = shares(rows, 2);
        assert_eq!(dealt.len(), 2);
        let loads: Vec<usize> = dealt
            .iter()
            .map(|s| s.iter().map(|r| r.batch.num_rows()).sum())
            .collect();
        assert_eq!(loads.iter().sum::<usize>(), 1017);
        assert!(loads.iter().all(|l| (500..=517).contains(l)), "{loads:?}");
        let mut all = in_order(&dealt);
        all.sort_unstable();
        assert_eq!(all, (0..1017).collect::<Vec<i64>>());
        // A slice keeps its partition.
        assert!(dealt.iter().flatten().all(|r| r.values.len() == 1));
        assert_eq!(shares(vec![part(0, 5, "a")], 1).len(), 1);
    }

    fn schema() -> Schema {
        Schema::new(vec![
            column("n", DataType::Int64, false),
            column("p", DataType::Utf8, false),
        ])
    }

    const NUMBERS: TableDef = TableDef {
        partition_columns: &["p"],
        ..TableDef::test(Layer::Silver, "numbers", schema)
    };

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_append_is_written_by_several_writers_and_lands_whole_and_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::local(dir.path()).expect("lake");
        let mut table = lake.ensure_table(&NUMBERS).await.expect("table");
        let n = SPLIT_ROWS + 5_000;
        let rows = vec![part(0, n, "big"), part(n as i64, 10, "small")];
        let outcome = append_once(
            &mut table,
            rows,
            "test",
            1,
            HashMap::new(),
            NUMBERS.writer_properties(),
        )
        .await
        .expect("append");
        assert!(matches!(outcome, AppendOutcome::Committed(_)));
        let writers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let files = table
            .snapshot()
            .expect("snapshot")
            .log_data()
            .iter()
            .count();
        assert_eq!(
            files,
            writers + 1,
            "one file per writer for the big partition"
        );
        let mut seen: Vec<i64> = read_rows(&table)
            .await
            .expect("read")
            .iter()
            .flat_map(|b| {
                let col = b
                    .column_by_name("n")
                    .expect("n")
                    .as_primitive::<Int64Type>();
                (0..col.len()).map(|i| col.value(i)).collect::<Vec<_>>()
            })
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..n as i64 + 10).collect::<Vec<i64>>());
        let again = append_once(
            &mut table,
            vec![part(0, n, "big")],
            "test",
            1,
            HashMap::new(),
            NUMBERS.writer_properties(),
        )
        .await
        .expect("append again");
        assert_eq!(again, AppendOutcome::AlreadyCommitted);
    }

    /// The versions whose Delta checkpoint is in `table`'s log.
    fn checkpoints(lake: &Lake, def: &TableDef) -> Vec<u64> {
        let log = lake
            .local_dir(def.layer)
            .expect("a local lake")
            .join(def.name)
            .join("_delta_log");
        let mut found: Vec<u64> = std::fs::read_dir(log)
            .expect("log")
            .filter_map(|e| {
                let name = e.expect("entry").file_name().into_string().ok()?;
                name.strip_suffix(".checkpoint.parquet")?.parse().ok()
            })
            .collect();
        found.sort_unstable();
        found
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tables_checkpoint_every_ten_commits_unless_their_definition_says_otherwise() {
        const OFTEN: TableDef = TableDef {
            name: "often",
            ..NUMBERS
        };
        const RARELY: TableDef = TableDef {
            name: "rarely",
            properties: &[("delta.checkpointInterval", "100")],
            ..NUMBERS
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::local(dir.path()).expect("lake");
        for def in [&OFTEN, &RARELY] {
            let mut table = lake.ensure_table(def).await.expect("table");
            // Version 0 created the table; appends make versions 1..=24.
            for batch in 1..=24 {
                append_once(
                    &mut table,
                    vec![part(batch, 1, "a")],
                    "test",
                    batch,
                    HashMap::new(),
                    def.writer_properties(),
                )
                .await
                .expect("append");
            }
        }
        // Delta checkpoints version v when v + 1 is a multiple of the interval.
        assert_eq!(checkpoints(&lake, &OFTEN), vec![9, 19]);
        assert!(checkpoints(&lake, &RARELY).is_empty(), "its own interval");
        let reopened = lake.open_table(&OFTEN).await.expect("open").expect("table");
        assert_eq!(reopened.version(), Some(24));
        let config = reopened
            .snapshot()
            .expect("snapshot")
            .metadata()
            .configuration()
            .clone();
        assert_eq!(
            config.get("delta.checkpointInterval").map(String::as_str),
            Some("10")
        );
    }
}
