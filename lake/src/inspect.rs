//! What a table looks like from outside: version, rows, last commit, and whether the readers our
//! users pick (Power BI, Databricks, Synapse serverless) can open it.

use chrono::{DateTime, TimeZone, Utc};
use deltalake::DeltaTable;
use deltalake::kernel::DataType;
use deltalake::logstore::commit_uri_from_version;
use object_store::ObjectStoreExt;

use crate::LakeError;
use crate::table::TableDef;
use crate::target::Lake;

/// One row of `boxoffice tables`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TableInfo {
    /// `layer.table`.
    pub name: String,
    /// Its URL.
    pub location: String,
    /// What was found there.
    pub state: TableState,
}

/// A table's state, or its absence.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TableState {
    /// Not created yet (the job that writes it has not run).
    Missing,
    /// A Delta table.
    Present {
        /// Latest version.
        version: u64,
        /// Rows, summed from file statistics (`None` if a file has none).
        rows: Option<u64>,
        /// Data files.
        files: usize,
        /// When the latest version was committed.
        last_commit: Option<DateTime<Utc>>,
        /// "reader/writer".
        protocol: String,
        /// Why Power BI / Synapse could not read it (empty when they can).
        problems: Vec<String>,
    },
}

impl Lake {
    /// Describes one declared table.
    pub async fn inspect(&self, def: &TableDef) -> Result<TableInfo, LakeError> {
        let location = self.table_url(def.layer, def.name)?.to_string();
        let state = match self.open_table(def).await? {
            None => TableState::Missing,
            Some(table) => describe(&table)
                .await
                .map_err(|e| self.delta_error(def, e))?,
        };
        Ok(TableInfo {
            name: def.qualified_name(),
            location,
            state,
        })
    }
}

async fn describe(table: &DeltaTable) -> Result<TableState, deltalake::DeltaTableError> {
    let snapshot = table.snapshot()?;
    let version = snapshot.version();
    let mut rows = Some(0u64);
    let mut files = 0;
    for file in snapshot.log_data().iter() {
        files += 1;
        let n = file.stats().and_then(|s| {
            serde_json::from_str::<serde_json::Value>(&s)
                .ok()?
                .get("numRecords")?
                .as_u64()
        });
        rows = rows.zip(n).map(|(a, b)| a + b);
    }
    let last_commit = commit_time(table, version).await;
    let protocol = snapshot.protocol();
    Ok(TableState::Present {
        version,
        rows,
        files,
        last_commit,
        protocol: format!(
            "{}/{}",
            protocol.min_reader_version(),
            protocol.min_writer_version()
        ),
        problems: compatibility_problems(table)?,
    })
}

/// When `version` was committed: the time its log file was written, as Delta defines a commit's
/// timestamp. The snapshot knows it only for the commits it replayed from JSON; when a checkpoint
/// was written at `version` (maintenance does that), the replay starts from the checkpoint and
/// lists no commit file, so the file's time is asked of the store.
async fn commit_time(table: &DeltaTable, version: u64) -> Option<DateTime<Utc>> {
    let listed = table.snapshot().ok()?.version_timestamp(version);
    let ms = match listed {
        Some(ms) => ms,
        None => {
            let path = commit_uri_from_version(Some(version));
            let store = table.log_store().object_store(None);
            match store.head(&path).await {
                Ok(meta) => meta.last_modified.timestamp_millis(),
                Err(e) => {
                    tracing::debug!(%path, error = %e, "no commit time for the table's latest version");
                    return None;
                }
            }
        }
    };
    Utc.timestamp_millis_opt(ms).single()
}

/// Why Power BI's `DeltaLake.Table`, Synapse serverless or older Databricks runtimes could not
/// read this table: a protocol beyond reader 1 / writer 2 (writer 4 with the change data feed),
/// deletion vectors, column mapping, or zone-less timestamps. Empty when all can.
pub fn compatibility_problems(
    table: &DeltaTable,
) -> Result<Vec<String>, deltalake::DeltaTableError> {
    let snapshot = table.snapshot()?;
    let protocol = snapshot.protocol();
    let config = snapshot.metadata().configuration();
    let cdf = config
        .get("delta.enableChangeDataFeed")
        .is_some_and(|v| v == "true");
    let max_writer = if cdf { 4 } else { 2 };
    let mut problems = Vec::new();
    if protocol.min_reader_version() != 1 {
        problems.push(format!(
            "reader version {} (must be 1)",
            protocol.min_reader_version()
        ));
    }
    if protocol.min_writer_version() > max_writer {
        problems.push(format!(
            "writer version {} (must be at most {max_writer})",
            protocol.min_writer_version()
        ));
    }
    for key in ["delta.enableDeletionVectors", "delta.columnMapping.mode"] {
        if let Some(v) = config.get(key)
            && v != "false"
            && v != "none"
        {
            problems.push(format!("{key} = {v}"));
        }
    }
    for field in snapshot.schema().fields() {
        if *field.data_type() == DataType::TIMESTAMP_NTZ {
            problems.push(format!("{} is a timestamp without zone", field.name()));
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use deltalake::arrow::array::{Int64Array, RecordBatch};
    use deltalake::arrow::datatypes::{DataType as ArrowType, Schema};

    use super::*;
    use crate::{Layer, column};

    fn schema() -> Schema {
        Schema::new(vec![column("n", ArrowType::Int64, false)])
    }

    const NUMBERS: TableDef = TableDef::test(Layer::Silver, "numbers", schema);

    fn last_commit(info: &TableInfo) -> Option<DateTime<Utc>> {
        match &info.state {
            TableState::Present { last_commit, .. } => *last_commit,
            TableState::Missing => None,
        }
    }

    #[tokio::test]
    async fn the_last_commit_time_is_known_after_a_checkpoint_of_the_latest_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::local(dir.path()).expect("lake");
        let batch = RecordBatch::try_new(
            NUMBERS.arrow_schema(),
            vec![std::sync::Arc::new(Int64Array::from(vec![1, 2, 3]))],
        )
        .expect("batch");
        let table = lake.append(&NUMBERS, vec![batch]).await.expect("append");
        let before = last_commit(&lake.inspect(&NUMBERS).await.expect("inspect"));
        assert!(before.is_some());

        deltalake::protocol::checkpoints::create_checkpoint(&table, None)
            .await
            .expect("checkpoint");
        let after = lake.inspect(&NUMBERS).await.expect("inspect");
        assert_eq!(last_commit(&after), before, "{after:?}");
    }
}
