//! What a table looks like from outside: version, rows, last commit, and whether the readers our
//! users pick (Power BI, Databricks, Synapse serverless) can open it.

use chrono::{DateTime, TimeZone, Utc};
use deltalake::DeltaTable;
use deltalake::kernel::DataType;

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
            Some(table) => describe(&table).map_err(|e| self.delta_error(def, e))?,
        };
        Ok(TableInfo {
            name: def.qualified_name(),
            location,
            state,
        })
    }
}

fn describe(table: &DeltaTable) -> Result<TableState, deltalake::DeltaTableError> {
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
    let last_commit = snapshot
        .version_timestamp(version)
        .and_then(|ms| Utc.timestamp_millis_opt(ms).single());
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
