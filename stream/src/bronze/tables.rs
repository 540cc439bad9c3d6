//! The Bronze tables (docs/tables.md): raw events as received, and quarantine.

use boxoffice_events::Hub;
use boxoffice_lake::{Layer, TableDef, column, utc_timestamp};
use deltalake::arrow::datatypes::{DataType, Schema};

fn raw_schema() -> Schema {
    Schema::new(vec![
        column("event_uid", DataType::Utf8, false),
        column("hub", DataType::Utf8, false),
        column("partition_id", DataType::Int32, false),
        column("sequence_number", DataType::Int64, false),
        column("offset", DataType::Int64, false),
        column("partition_key", DataType::Utf8, true),
        column("enqueued_time", utc_timestamp(), false),
        column("ingested_at", utc_timestamp(), false),
        column("source", DataType::Utf8, false),
        column("schema_version", DataType::Int32, false),
        column("body", DataType::Utf8, false),
        column("ingest_date", DataType::Date32, false),
    ])
}

/// The raw tables' columns with file statistics: the join's shards skip other partitions' files
/// by the first two, compaction keeps partitions apart by the first, and the dashboard reads the
/// newest event time.
const RAW_STATS_COLUMNS: &[&str] = &[
    "partition_id",
    "sequence_number",
    "enqueued_time",
    "ingested_at",
];

/// `bronze/bookings_raw`: every valid booking event, raw JSON plus its Event Hubs stamps.
pub const BOOKINGS_RAW: TableDef = TableDef {
    layer: Layer::Bronze,
    name: "bookings_raw",
    description: "Valid booking events exactly as received, with Event Hubs metadata; one row per (partition, sequence_number)",
    schema: raw_schema,
    partition_columns: &["ingest_date"],
    properties: &[],
    blob_columns: &["body", "event_uid"],
    stats_columns: RAW_STATS_COLUMNS,
};

/// `bronze/payments_raw`: every valid payment event, raw JSON plus its Event Hubs stamps.
pub const PAYMENTS_RAW: TableDef = TableDef {
    layer: Layer::Bronze,
    name: "payments_raw",
    description: "Valid payment events exactly as received, with Event Hubs metadata; one row per (partition, sequence_number)",
    schema: raw_schema,
    partition_columns: &["ingest_date"],
    properties: &[],
    blob_columns: &["body", "event_uid"],
    stats_columns: RAW_STATS_COLUMNS,
};

fn quarantine_schema() -> Schema {
    Schema::new(vec![
        column("received_at", utc_timestamp(), false),
        column("source", DataType::Utf8, false),
        column("hub", DataType::Utf8, true),
        column("reason", DataType::Utf8, false),
        column("body", DataType::Utf8, false),
        // Ours, beyond section 5: which stage refused it, and where it sat in its partition, so
        // a quarantined event can be traced and nothing is missing from a partition's sequence.
        column("stage", DataType::Utf8, false),
        column("partition_id", DataType::Int32, true),
        column("sequence_number", DataType::Int64, true),
        column("event_uid", DataType::Utf8, true),
        // Where a file's line came from (`boxoffice ingest FILE`, batch_load's landing files).
        column("source_file", DataType::Utf8, true),
        column("line", DataType::Int64, true),
    ])
}

/// `bronze/quarantine`: everything refused, with every reason; nothing invalid is dropped unseen.
pub const QUARANTINE: TableDef = TableDef {
    layer: Layer::Bronze,
    name: "quarantine",
    description: "Events refused by any stage, with every reason and the raw body",
    schema: quarantine_schema,
    partition_columns: &[],
    properties: &[],
    blob_columns: &["body", "reason"],
    // Where a row came from, which the join's refresh filters on, and when.
    stats_columns: &[
        "stage",
        "hub",
        "partition_id",
        "sequence_number",
        "received_at",
    ],
};

/// The raw table of a hub.
pub fn raw_table(hub: Hub) -> &'static TableDef {
    match hub {
        Hub::Bookings => &BOOKINGS_RAW,
        Hub::Payments => &PAYMENTS_RAW,
    }
}

/// Every Bronze table.
pub const TABLES: [&TableDef; 3] = [&BOOKINGS_RAW, &PAYMENTS_RAW, &QUARANTINE];
