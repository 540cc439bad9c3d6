//! Table definitions and opening them: every lake table is declared once, with its schema, and
//! created on first use with a protocol that Power BI, Databricks and Synapse serverless can read.

use std::sync::Arc;

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::kernel::StructType;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::parquet::basic::Compression;
use deltalake::parquet::file::properties::{
    EnabledStatistics, WriterProperties, WriterPropertiesBuilder,
};
use deltalake::parquet::schema::types::ColumnPath;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};

use crate::LakeError;
use crate::layer::Layer;
use crate::target::{Lake, StoreKind};

/// A lake table as boxoffice declares it; the crate that writes a table owns its definition.
#[derive(Debug, Clone, Copy)]
pub struct TableDef {
    /// Layer it lives in.
    pub layer: Layer,
    /// Table name inside the layer.
    pub name: &'static str,
    /// One line for `boxoffice tables` and the table's Delta description.
    pub description: &'static str,
    /// Column layout (Arrow; timestamps are microseconds in UTC).
    pub schema: fn() -> Schema,
    /// Hive-style partition columns.
    pub partition_columns: &'static [&'static str],
    /// Delta table properties set at creation.
    pub properties: &'static [(&'static str, &'static str)],
    /// Columns written without dictionary encoding or min/max statistics, which cost time on
    /// every write and help no reader: large free text (raw bodies) and random identifiers.
    pub blob_columns: &'static [&'static str],
    /// The columns whose minimum and maximum Delta records for each file
    /// (`delta.dataSkippingStatsColumns`): the ones readers skip files by. Every snapshot update
    /// (each commit, each refresh of a table held open) parses every live file's statistics
    /// again, so each column recorded costs on every commit of a busy table. Empty: Delta's
    /// default, the first 32 columns.
    pub stats_columns: &'static [&'static str],
}

/// The Delta table property that names the columns with file statistics
/// ([`TableDef::stats_columns`]).
pub const STATS_COLUMNS: &str = "delta.dataSkippingStatsColumns";

/// The checkpoint interval every table is created with, unless its definition sets one: a Delta
/// checkpoint every 10 commits instead of Delta's default 100. `up` commits to Bronze up to five
/// times a second per partition and to Silver and Gold on every continuous run, and every writer
/// and reader that opens or updates a table replays the commits since its last checkpoint; with
/// 100, those replays took most of `up`'s CPU at 5,000 events/s and Gold trailed the events by
/// 3 s (1 s with 10). A standard Delta property, which Spark and Databricks honour too;
/// docs/performance.md has the measurements and what the checkpoints cost in storage.
pub const FREQUENT_CHECKPOINTS: (&str, &str) = ("delta.checkpointInterval", "10");

/// How long every table's Delta checkpoints keep tombstones (the `remove` entries of files that
/// compaction or a rewrite replaced), unless its definition sets it: 5 minutes instead of Delta's
/// 7 days. `up` replaces thousands of small files a minute, and each checkpoint (every 10
/// commits) copies every tombstone younger than this: with an hour, after 52 minutes of `up` at
/// 5,000 events/s 99% of each busy table's checkpoint was tombstones (25,902 beside 236 live
/// files in a raw table), every checkpoint written and every reader loading one paid for them,
/// and Gold fell behind; with 5 minutes the same lake kept Gold 0.62 s behind instead of 0.81 s
/// (docs/performance.md). The replaced files stay on storage until vacuum, which deletes them by
/// their age in full mode whether or not a checkpoint still names them; time travel reaches back
/// as far as they do (docs/lake.md).
pub const SHORT_TOMBSTONES: (&str, &str) =
    ("delta.deletedFileRetentionDuration", "interval 5 minutes");

/// [`SHORT_TOMBSTONES`] as a duration: what `up` and workers compare an existing lake's tables
/// with, to say when a table made by an earlier boxoffice keeps tombstones longer.
pub const SHORT_TOMBSTONES_KEPT: std::time::Duration = std::time::Duration::from_secs(5 * 60);

/// The properties every table is created with unless its definition sets them.
pub const DEFAULT_PROPERTIES: [(&str, &str); 2] = [FREQUENT_CHECKPOINTS, SHORT_TOMBSTONES];

#[cfg(test)]
impl TableDef {
    /// A table of test rows in `layer`: no partitions, properties, blob or statistics columns
    /// (a test sets what it needs with `..TableDef::test(...)`).
    pub(crate) const fn test(layer: Layer, name: &'static str, schema: fn() -> Schema) -> TableDef {
        TableDef {
            layer,
            name,
            description: "test rows",
            schema,
            partition_columns: &[],
            properties: &[],
            blob_columns: &[],
            stats_columns: &[],
        }
    }
}

impl TableDef {
    /// `layer.table`, the name `boxoffice sql` and the docs use.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.layer, self.name)
    }

    /// The value of [`STATS_COLUMNS`] this table is created with; `None` for Delta's default.
    pub fn stats_property(&self) -> Option<String> {
        (!self.stats_columns.is_empty()).then(|| self.stats_columns.join(","))
    }

    /// The Arrow schema, shared.
    pub fn arrow_schema(&self) -> SchemaRef {
        Arc::new((self.schema)())
    }

    /// How this table's Parquet files are written: Snappy (fast, and what every reader knows);
    /// statistics per column chunk, which are what Delta's file skipping reads, not per page;
    /// blob columns spared dictionaries and statistics altogether.
    pub fn writer_properties(&self) -> WriterProperties {
        let builder = WriterProperties::builder()
            .set_created_by(format!("boxoffice {}", env!("CARGO_PKG_VERSION")))
            .set_compression(Compression::SNAPPY)
            .set_statistics_enabled(EnabledStatistics::Chunk);
        blob_columns(builder, self.blob_columns).build()
    }
}

/// `columns` written with no dictionary and no statistics: for near-unique values in no order
/// (uids, JSON bodies), where a dictionary overflows after hashing each value and min/max skips
/// nothing. Shared by tables and by files that are not tables (the join's checkpoint).
pub fn blob_columns(
    mut builder: WriterPropertiesBuilder,
    columns: &[&str],
) -> WriterPropertiesBuilder {
    for column in columns {
        let path = ColumnPath::from(*column);
        builder = builder
            .set_column_dictionary_enabled(path.clone(), false)
            .set_column_statistics_enabled(path, EnabledStatistics::None);
    }
    builder
}

/// The timestamp type of every table: microseconds, zoned UTC (Delta `timestamp`, not NTZ).
pub fn utc_timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// A nullable or required column; a shorthand for schema declarations.
pub fn column(name: &str, data_type: DataType, nullable: bool) -> Field {
    Field::new(name, data_type, nullable)
}

impl Lake {
    /// Opens a table; `None` when it has not been created yet.
    pub async fn open_table(&self, def: &TableDef) -> Result<Option<DeltaTable>, LakeError> {
        // delta-rs refuses a handle on a local folder that does not exist yet.
        if let Some(dir) = self.local_dir(def.layer)
            && !dir.join(def.name).exists()
        {
            return Ok(None);
        }
        let mut table = self.table_handle(def)?;
        let started = std::time::Instant::now();
        match table.load().await {
            Ok(()) => {
                crate::refresh::loaded(&table, started);
                Ok(Some(table))
            }
            Err(DeltaTableError::NotATable(_)) => Ok(None),
            Err(e) => Err(self.delta_error(def, e)),
        }
    }

    /// Opens a table, creating it first if needed, and checks its schema matches `def`.
    pub async fn ensure_table(&self, def: &TableDef) -> Result<DeltaTable, LakeError> {
        let table = match self.open_table(def).await? {
            Some(t) => t,
            None => self.create_table(def).await?,
        };
        match check_schema(def, &table)? {
            Columns::Current => Ok(table),
            Columns::Older(added) => self.add_columns(def, table, added).await,
        }
    }

    /// Brings a table written by an older boxoffice up to `def`: the nullable columns it lacks
    /// are added (a metadata-only commit; its files read them as nulls).
    async fn add_columns(
        &self,
        def: &TableDef,
        table: DeltaTable,
        added: Vec<Field>,
    ) -> Result<DeltaTable, LakeError> {
        let fields: Vec<deltalake::kernel::StructField> = added
            .iter()
            .map(|f| f.try_into_kernel())
            .collect::<Result<_, _>>()
            .map_err(|e| self.delta_error(def, e.into()))?;
        let names: Vec<&str> = added.iter().map(|f| f.name().as_str()).collect();
        match table.add_columns().with_fields(fields).await {
            Ok(t) => {
                tracing::info!(table = %def.qualified_name(), columns = ?names, "added columns");
                Ok(t)
            }
            // Another writer added them first: use the table as it is now.
            Err(e) => match self.open_table(def).await? {
                Some(t) if matches!(check_schema(def, &t), Ok(Columns::Current)) => Ok(t),
                _ => Err(self.delta_error(def, e)),
            },
        }
    }

    /// Appends rows, creating the table if needed: for records that need no exactly-once
    /// guard (run history, an HTTP client's refused events). Jobs that may replay use
    /// [`crate::append_once`].
    pub async fn append(
        &self,
        def: &TableDef,
        batches: Vec<RecordBatch>,
    ) -> Result<DeltaTable, LakeError> {
        self.ensure_table(def)
            .await?
            .write(batches)
            .with_save_mode(SaveMode::Append)
            .with_writer_properties(def.writer_properties())
            .await
            .map_err(|e| self.delta_error(def, e))
    }

    async fn create_table(&self, def: &TableDef) -> Result<DeltaTable, LakeError> {
        if let Some(dir) = self.local_dir(def.layer) {
            let dir = dir.join(def.name);
            std::fs::create_dir_all(&dir).map_err(|e| LakeError::Io {
                path: dir.display().to_string(),
                source: e,
            })?;
        }
        let schema: StructType = def
            .arrow_schema()
            .as_ref()
            .try_into_kernel()
            .map_err(|e| self.delta_error(def, e.into()))?;
        let table = self.table_handle(def)?;
        let created = table
            .create()
            .with_table_name(def.name)
            .with_comment(def.description)
            .with_columns(schema.fields().cloned())
            .with_partition_columns(def.partition_columns.iter().copied())
            .with_configuration(
                def.properties
                    .iter()
                    .chain(
                        DEFAULT_PROPERTIES
                            .iter()
                            .filter(|(key, _)| !def.properties.iter().any(|(k, _)| k == key)),
                    )
                    .map(|(k, v)| (k.to_string(), Some(v.to_string())))
                    .chain(
                        def.stats_property()
                            .map(|v| (STATS_COLUMNS.to_string(), Some(v))),
                    ),
            )
            // No retry: delta-rs commits a create that lost the race for version 0 again as the
            // next version without checking it, a second metadata change that makes every append
            // planned on the winner's version fail. Losing, we use the winner's table below.
            .with_commit_properties(commit_properties().with_max_retries(0))
            .await;
        match created {
            Ok(t) => {
                tracing::info!(table = %def.qualified_name(), "created table");
                Ok(t)
            }
            // Another writer may have created it between our load and create (delta-rs reports
            // that as "version exists" or "table exists"): if it is there now, use theirs.
            Err(e) => match self.open_table(def).await {
                Ok(Some(theirs)) => Ok(theirs),
                _ => Err(self.delta_error(def, e)),
            },
        }
    }

    fn table_handle(&self, def: &TableDef) -> Result<DeltaTable, LakeError> {
        let url = self.table_url(def.layer, def.name)?;
        self.delta_builder(&url)
            .and_then(DeltaTableBuilder::build)
            .map_err(|e| self.delta_error(def, e))
    }

    /// A Delta builder for `url` with the lake's storage options and store: Azurite's emulator
    /// store, the local folder store ([`crate::folder_store`]), or delta-rs's own for Azure.
    pub(crate) fn delta_builder(
        &self,
        url: &url::Url,
    ) -> Result<DeltaTableBuilder, DeltaTableError> {
        let builder = DeltaTableBuilder::from_url(url.clone())?
            .with_storage_options(self.storage_options().clone());
        Ok(match self.kind() {
            StoreKind::Azurite => {
                let container = url.host_str().unwrap_or_default();
                let store = crate::azurite::emulator_store(self.emulator_endpoint(), container)?;
                builder.with_storage_backend(store, url.clone())
            }
            StoreKind::Local => builder
                .with_storage_backend(crate::folder_store::FolderStore::shared(), url.clone()),
            StoreKind::Azure => builder,
        })
    }

    /// Wraps a Delta error with the table's name and, for remote lakes, a hint.
    pub fn delta_error(&self, def: &TableDef, source: DeltaTableError) -> LakeError {
        let hint = match (self.kind(), &source) {
            (StoreKind::Azurite, DeltaTableError::ObjectStore { .. }) => Some(format!(
                "is Azurite running at {}?",
                self.emulator_endpoint()
            )),
            (StoreKind::Azure, DeltaTableError::ObjectStore { .. }) => Some(
                "check the container exists and that you are signed in (`az login`) with Storage Blob Data Contributor".to_string(),
            ),
            _ => None,
        };
        LakeError::Delta {
            table: def.qualified_name(),
            hint,
            source: Box::new(source),
        }
    }
}

/// How a table's columns compare with its definition.
enum Columns {
    /// As declared.
    Current,
    /// Written by an older boxoffice: the declared columns less these nullable ones at the end.
    Older(Vec<Field>),
}

/// Refuses a table whose columns differ from its definition (a table from another version),
/// unless it only lacks nullable columns declared after its own.
fn check_schema(def: &TableDef, table: &DeltaTable) -> Result<Columns, LakeError> {
    let snapshot = table.snapshot().map_err(|e| LakeError::Delta {
        table: def.qualified_name(),
        hint: None,
        source: Box::new(e),
    })?;
    let actual = snapshot.schema();
    let expected: Vec<String> = def
        .arrow_schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let found: Vec<String> = actual.fields().map(|f| f.name().clone()).collect();
    if expected == found {
        return Ok(Columns::Current);
    }
    let declared = def.arrow_schema();
    let missing: Vec<Field> = declared.fields()[found.len().min(expected.len())..]
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    if expected.starts_with(&found) && missing.iter().all(Field::is_nullable) {
        return Ok(Columns::Older(missing));
    }
    Err(LakeError::SchemaMismatch {
        table: def.qualified_name(),
        expected: expected.join(", "),
        found: found.join(", "),
    })
}

/// The properties every boxoffice commit starts from: Delta's defaults without the expired-log
/// cleanup delta-rs would otherwise run after each commit. That cleanup lists the table's whole
/// `_delta_log` folder, reading each entry's metadata, so with the log retention's 30 days of
/// commits a table taking a few commits a second pays more for every commit the longer it runs
/// (on a local lake an hour of `up` at 5,000 events/s tripled the kernel's time). Table
/// maintenance removes the expired entries instead, once a turn (`maintenance::checkpoint` in the
/// jobs), by the same rule: entries older than `delta.logRetentionDuration` and older than a
/// checkpoint.
pub fn commit_properties() -> deltalake::kernel::transaction::CommitProperties {
    deltalake::kernel::transaction::CommitProperties::default()
        .with_cleanup_expired_logs(Some(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::new(vec![Field::new("n", DataType::Int64, false)])
    }

    const RACED: TableDef = TableDef::test(Layer::Bronze, "raced", schema);

    /// Writers that find no table and create it at the same moment end with one table of one
    /// version, each using it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn writers_creating_a_table_at_once_leave_it_at_its_first_version() {
        for round in 0..20 {
            let dir = tempfile::tempdir().expect("tempdir");
            let lake = Lake::local(dir.path()).expect("lake");
            let start = Arc::new(tokio::sync::Barrier::new(4));
            let creators: Vec<_> = (0..4)
                .map(|_| {
                    let (lake, start) = (lake.clone(), Arc::clone(&start));
                    tokio::spawn(async move {
                        start.wait().await;
                        lake.ensure_table(&RACED).await.map(|t| t.version())
                    })
                })
                .collect();
            for creator in creators {
                let version = creator.await.expect("join").expect("create");
                assert_eq!(version, Some(0), "round {round}");
            }
            let mut log: Vec<String> =
                std::fs::read_dir(dir.path().join("bronze/raced/_delta_log"))
                    .expect("log")
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|name| name.ends_with(".json"))
                    .collect();
            log.sort();
            assert_eq!(log, vec!["00000000000000000000.json"], "round {round}");
        }
    }
}
