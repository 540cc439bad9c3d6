//! Exactly-once appends through Delta application transactions (ARCHITECTURE.md section 6).
//!
//! A writer names its stream (`app_id`, e.g. `archive:bookings:0`) and numbers its batches
//! (`version`, e.g. the batch's last sequence number). The data and the `(app_id, version)` pair
//! land in one atomic commit, so after a crash the writer reads back the last version it
//! committed and skips what is already there. delta-rs records the pair but does not skip by
//! itself: [`committed_version`] is the read, [`append_once`] the guarded write.

use std::collections::HashMap;

use delta_kernel::expressions::Scalar;
use deltalake::arrow::array::RecordBatch;
use deltalake::kernel::transaction::{
    CommitBuilder, CommitConflictError, CommitProperties, TransactionError,
};
use deltalake::kernel::{Action, Transaction};
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter, WriteMode};
use deltalake::{DeltaTable, DeltaTableError};
use indexmap::IndexMap;

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
    table.update_state().await?;
    let state = table.snapshot()?;
    state
        .transaction_version(table.log_store().as_ref(), app_id)
        .await
}

/// Appends `rows` and records `(app_id, version)` in the same commit, unless that version (or a
/// later one) is already recorded. No rows still records the version, which is how a writer
/// marks a batch that produced no rows as done.
pub async fn append_once(
    table: &mut DeltaTable,
    rows: Vec<PartitionRows>,
    app_id: &str,
    version: i64,
    metadata: HashMap<String, serde_json::Value>,
    writer_properties: WriterProperties,
) -> Result<AppendOutcome, AppendError> {
    if committed_version(table, app_id)
        .await?
        .is_some_and(|v| v >= version)
    {
        return Ok(AppendOutcome::AlreadyCommitted);
    }
    append_after_check(table, rows, app_id, version, metadata, writer_properties)
        .await
        .map(AppendOutcome::Committed)
}

/// Appends on the snapshot the table already holds, without refreshing it: for a writer that
/// has just read [`committed_version`] from this same table and filtered its rows by it. If
/// another writer committed for `app_id` since that snapshot, Delta's conflict check refuses
/// this commit ([`AppendError::Conflict`]), so nothing lands twice. Returns the table version.
pub async fn append_after_check(
    table: &mut DeltaTable,
    rows: Vec<PartitionRows>,
    app_id: &str,
    version: i64,
    metadata: HashMap<String, serde_json::Value>,
    writer_properties: WriterProperties,
) -> Result<u64, AppendError> {
    let mut actions = Vec::new();
    if rows.iter().any(|r| r.batch.num_rows() > 0) {
        let mut writer =
            RecordBatchWriter::for_table(table)?.with_writer_properties(writer_properties);
        for r in rows.into_iter().filter(|r| r.batch.num_rows() > 0) {
            if r.values.is_empty() {
                writer.write(r.batch).await?;
            } else {
                let values: IndexMap<String, Scalar> = r
                    .values
                    .into_iter()
                    .map(|(k, v)| (k, v.into_scalar()))
                    .collect();
                writer
                    .write_partition(r.batch, &values, WriteMode::Default)
                    .await?;
            }
        }
        actions.extend(writer.flush().await?.into_iter().map(Action::Add));
    }
    let partition_by = {
        let cols = table.snapshot()?.metadata().partition_columns().to_vec();
        (!cols.is_empty()).then_some(cols)
    };
    let operation = DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by,
        predicate: None,
    };
    let properties = CommitProperties::default()
        .with_application_transaction(Transaction::new(app_id, version))
        .with_metadata(metadata);
    let committed = CommitBuilder::from(properties)
        .with_actions(actions)
        .build(Some(table.snapshot()?), table.log_store(), operation)
        .await;
    match committed {
        Ok(finalized) => {
            let table_version = finalized.version();
            table.state = Some(finalized.snapshot());
            Ok(table_version)
        }
        Err(DeltaTableError::Transaction {
            source: TransactionError::CommitConflict(CommitConflictError::ConcurrentTransaction),
        }) => Err(AppendError::Conflict {
            app_id: app_id.to_string(),
        }),
        Err(e) => Err(e.into()),
    }
}

impl PartitionValue {
    fn into_scalar(self) -> Scalar {
        match self {
            PartitionValue::Date(days) => Scalar::Date(days),
            PartitionValue::Text(s) => Scalar::String(s),
        }
    }
}
