//! The batch flow's tables: the event catalog in Silver, and the ledger of landing files taken.

use boxoffice_lake::{Layer, TableDef, column, utc_timestamp};
use deltalake::arrow::datatypes::{DataType, Schema};

fn event_catalog_schema() -> Schema {
    use DataType::{Int32, Utf8};
    Schema::new(vec![
        column("event_id", Utf8, false),
        column("event_name", Utf8, true),
        column("event_category", Utf8, true),
        column("venue", Utf8, true),
        column("city", Utf8, true),
        column("capacity", Int32, true),
        column("starts_at", utc_timestamp(), true),
        column("updated_at", utc_timestamp(), false),
    ])
}

/// `silver/event_catalog`: every show on sale, upserted from catalog files in the landing area.
pub const EVENT_CATALOG: TableDef = TableDef {
    layer: Layer::Silver,
    name: "event_catalog",
    description: "Every show on sale (from landing/event_catalog files): name, category, venue, city, capacity, start",
    schema: event_catalog_schema,
    partition_columns: &[],
    properties: &[],
    blob_columns: &[],
    stats_columns: &[],
};

fn batch_files_schema() -> Schema {
    use DataType::{Int64, Utf8};
    Schema::new(vec![
        column("path", Utf8, false),
        column("kind", Utf8, false),
        column("size", Int64, false),
        column("modified", utc_timestamp(), false),
        column("etag", Utf8, true),
        column("load", Int64, false),
        column("rows_loaded", Int64, false),
        column("rows_quarantined", Int64, false),
        column("loaded_at", utc_timestamp(), false),
    ])
}

/// `_system/batch_files`: each landing file version taken by `batch_load`, once.
pub const BATCH_FILES: TableDef = TableDef {
    layer: Layer::System,
    name: "batch_files",
    description: "Each landing file version batch_load took (path, size, modified, ETag), with rows loaded and quarantined",
    schema: batch_files_schema,
    partition_columns: &[],
    properties: &[],
    blob_columns: &[],
    stats_columns: &[],
};

/// Both, for the catalog of tables.
pub const TABLES: [&TableDef; 2] = [&EVENT_CATALOG, &BATCH_FILES];
