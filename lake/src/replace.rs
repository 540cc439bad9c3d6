//! Replacing a table's contents in one commit, for rebuilds (a job's full refresh).
//!
//! The new contents are a table built elsewhere (beside the live one, by the same job code) plus
//! rows of the live table to keep. Its data files are copied into the live table's folder, then
//! one commit removes every live file and adds the copies: a reader sees the old contents or the
//! new, never a mix. The commit records application transactions like any append, so a rerun
//! after a crash finds it done and skips it.

use std::collections::HashMap;

use deltalake::kernel::transaction::CommitBuilder;
use deltalake::kernel::{Action, Transaction};
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::{DeltaTable, DeltaTableError};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::path::Path;

use crate::commit::{AppendOutcome, PartitionRows, committed_version, write_files};

/// Files copied at once: enough to hide each request's latency on Azure.
const COPIES_IN_FLIGHT: usize = 8;

/// What a replacement brings and records.
pub struct Replacement<'a> {
    /// The table whose files become the live table's contents (`None`: no rows).
    pub from: Option<&'a DeltaTable>,
    /// Rows of the live table that stay (written anew into the replacement).
    pub keep: Vec<PartitionRows>,
    /// The application transaction that marks this replacement done; it is skipped when the
    /// table already records this version or a later one for the app id.
    pub guard: (String, i64),
    /// More application transactions to record in the same commit.
    pub transactions: Vec<(String, i64)>,
    /// The commit's metadata.
    pub metadata: HashMap<String, serde_json::Value>,
}

/// Replaces `table`'s contents with `replacement`'s, unless its guard is already recorded.
/// Fails with a conflict if another writer committed to the table meanwhile: the caller reads
/// the table again and retries (the rows it keeps may have changed).
pub async fn replace_once(
    table: &mut DeltaTable,
    replacement: Replacement<'_>,
    writer_properties: WriterProperties,
) -> Result<AppendOutcome, DeltaTableError> {
    let (app_id, version) = &replacement.guard;
    if committed_version(table, app_id)
        .await?
        .is_some_and(|v| v >= *version)
    {
        return Ok(AppendOutcome::AlreadyCommitted);
    }
    let snapshot = table.snapshot()?;
    let mut actions: Vec<Action> = snapshot
        .log_data()
        .iter()
        .map(|f| Action::Remove(f.remove_action(true)))
        .collect();
    if let Some(from) = replacement.from {
        actions.extend(copy_files(from, table).await?.into_iter().map(Action::Add));
    }
    actions.extend(
        write_files(table, replacement.keep, writer_properties)
            .await?
            .into_iter()
            .map(Action::Add),
    );
    let partition_by = {
        let cols = snapshot.metadata().partition_columns().to_vec();
        (!cols.is_empty()).then_some(cols)
    };
    let operation = DeltaOperation::Write {
        mode: SaveMode::Overwrite,
        partition_by,
        predicate: None,
    };
    let mut properties = crate::commit_properties()
        .with_application_transaction(Transaction::new(app_id, *version))
        .with_metadata(replacement.metadata);
    for (app, v) in replacement.transactions {
        properties = properties.with_application_transaction(Transaction::new(&app, v));
    }
    let finalized = CommitBuilder::from(properties)
        .with_actions(actions)
        .build(Some(table.snapshot()?), table.log_store(), operation)
        .await?;
    let committed = finalized.version();
    table.state = Some(finalized.snapshot());
    Ok(AppendOutcome::Committed(committed))
}

/// Copies every live data file of `from` into `to`'s folder under the same relative path, and
/// returns their `add` actions (statistics and partition values unchanged).
async fn copy_files(
    from: &DeltaTable,
    to: &DeltaTable,
) -> Result<Vec<deltalake::kernel::Add>, DeltaTableError> {
    #[allow(deprecated)] // the view's own conversion keeps every field of the add action
    let adds: Vec<deltalake::kernel::Add> = from
        .snapshot()?
        .log_data()
        .iter()
        .map(|f| f.add_action())
        .collect();
    let (source, target) = (from.object_store(), to.object_store());
    // Owned paths: futures borrowing from `adds` inside a stream would not be provably `Send`
    // to callers (rust-lang/rust#102211).
    let paths: Vec<String> = adds.iter().map(|add| add.path.clone()).collect();
    futures::stream::iter(paths.into_iter().map(move |path| {
        let (source, target) = (source.clone(), target.clone());
        async move {
            let location =
                Path::parse(&path).map_err(|e| DeltaTableError::Generic(format!("{path}: {e}")))?;
            let bytes = source.get(&location).await?.bytes().await?;
            target.put(&location, bytes.into()).await?;
            Ok::<(), DeltaTableError>(())
        }
    }))
    .buffer_unordered(COPIES_IN_FLIGHT)
    .try_collect::<Vec<()>>()
    .await?;
    Ok(adds)
}
