//! Exactly-once appends through Delta application transactions (ARCHITECTURE.md section 6).
//!
//! A writer names its stream (`app_id`, e.g. `archive:bookings:0`) and numbers its batches
//! (`version`, e.g. the batch's last sequence number). The data and the `(app_id, version)` pair
//! land in one atomic commit, so after a crash the writer reads back the last version it
//! committed and skips what is already there. delta-rs records the pair but does not skip by
//! itself: [`committed_version`] is the read, [`append_once`] the guarded write.

use std::collections::HashMap;

use deltalake::arrow::array::RecordBatch;
use deltalake::kernel::transaction::{
    CommitBuilder, CommitConflictError, CommitProperties, TransactionError,
};
use deltalake::kernel::{Action, Transaction};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableError};

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

/// Appends `batches` and records `(app_id, version)` in the same commit, unless that version (or
/// a later one) is already recorded. An empty `batches` still records the version, which is how a
/// writer marks a batch that produced no rows as done.
pub async fn append_once(
    table: &mut DeltaTable,
    batches: Vec<RecordBatch>,
    app_id: &str,
    version: i64,
    metadata: HashMap<String, serde_json::Value>,
) -> Result<AppendOutcome, AppendError> {
    if committed_version(table, app_id)
        .await?
        .is_some_and(|v| v >= version)
    {
        return Ok(AppendOutcome::AlreadyCommitted);
    }
    let mut actions = Vec::new();
    if batches.iter().any(|b| b.num_rows() > 0) {
        let mut writer = RecordBatchWriter::for_table(table)?;
        for batch in batches.into_iter().filter(|b| b.num_rows() > 0) {
            writer.write(batch).await?;
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
            Ok(AppendOutcome::Committed(table_version))
        }
        Err(DeltaTableError::Transaction {
            source: TransactionError::CommitConflict(CommitConflictError::ConcurrentTransaction),
        }) => Err(AppendError::Conflict {
            app_id: app_id.to_string(),
        }),
        Err(e) => Err(e.into()),
    }
}
