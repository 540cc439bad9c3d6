//! The Silver tables (docs/tables.md) and the job bookkeeping tables in `_system`.

use boxoffice_lake::{Layer, TableDef, column, utc_timestamp};
use deltalake::arrow::datatypes::{DataType, Schema};

fn bookings_fact_schema() -> Schema {
    use DataType::{Boolean, Date32, Float64, Int32, Utf8};
    let ts = utc_timestamp;
    Schema::new(vec![
        // The demos' Synapse columns, in their order.
        column("order_id", Utf8, false),
        column("booking_time", ts(), true),
        column("customer_id", Utf8, true),
        column("customer_name", Utf8, true),
        column("customer_email", Utf8, true),
        column("event_id", Utf8, true),
        column("event_name", Utf8, true),
        column("event_location", Utf8, true),
        column("seat_number", Utf8, true),
        column("seat_price", Float64, true),
        column("event_category", Utf8, true),
        column("booking_day_of_week", Utf8, true),
        column("booking_hour", Int32, true),
        column("payment_id", Utf8, true),
        column("payment_time", ts(), true),
        column("amount", Float64, true),
        column("payment_method", Utf8, true),
        column("payment_type", Utf8, true),
        column("booking_event_time", ts(), true),
        column("payment_event_time", ts(), true),
        // Ours.
        column("payment_status", Utf8, true),
        column("currency", Utf8, true),
        column("channel", Utf8, true),
        column("city", Utf8, true),
        column("schema_version", Int32, true),
        column("source", Utf8, false),
        column("booking_event_uid", Utf8, true),
        column("payment_event_uid", Utf8, true),
        // Where Gold counts each thing once: the booking's first match (the order), the
        // payment's first match (the attempt and its amount), the booking's first successful
        // payment (the seats sold). Every seat row of that match carries the flag.
        column("is_first_booking_match", Boolean, false),
        column("is_first_payment_match", Boolean, false),
        column("is_sale", Boolean, false),
        column("processed_at", ts(), false),
        column("booking_date", Date32, false),
    ])
}

/// `silver/bookings_fact`: one row per seat of each booking, per payment it matched.
pub const BOOKINGS_FACT: TableDef = TableDef {
    layer: Layer::Silver,
    name: "bookings_fact",
    description: "Bookings joined with their payments in event time: one row per seat per matching payment; the demos' 20 columns first",
    schema: bookings_fact_schema,
    partition_columns: &["booking_date"],
    properties: &[],
    // Near-unique per order or customer, in no order: a dictionary overflows and falls back to
    // plain within each row group (so interning is wasted work) and min/max skips no file.
    blob_columns: &[
        "booking_event_uid",
        "payment_event_uid",
        "order_id",
        "payment_id",
        "customer_id",
        "customer_name",
        "customer_email",
    ],
    // What queries over Silver filter on: times, the event, when the job wrote the row.
    stats_columns: &[
        "booking_time",
        "booking_event_time",
        "payment_time",
        "event_id",
        "processed_at",
    ],
};

fn unpaid_bookings_schema() -> Schema {
    use DataType::{Date32, Float64, Int32, Utf8};
    Schema::new(vec![
        column("order_id", Utf8, false),
        column("booking_time", utc_timestamp(), false),
        column("customer_id", Utf8, true),
        column("customer_name", Utf8, true),
        column("customer_email", Utf8, true),
        column("event_id", Utf8, true),
        column("event_name", Utf8, true),
        column("event_category", Utf8, true),
        column("seats", Int32, false),
        column("seat_numbers", Utf8, true),
        column("total_price", Float64, false),
        column("booking_day_of_week", Utf8, true),
        column("booking_hour", Int32, true),
        column("booking_event_time", utc_timestamp(), false),
        column("channel", Utf8, true),
        column("city", Utf8, true),
        column("currency", Utf8, true),
        column("schema_version", Int32, true),
        column("booking_event_uid", Utf8, false),
        column("processed_at", utc_timestamp(), false),
        column("booking_date", Date32, false),
    ])
}

/// `silver/unpaid_bookings`: bookings no payment matched by the time the watermark passed the
/// end of their window; one row per booking.
pub const UNPAID_BOOKINGS: TableDef = TableDef {
    layer: Layer::Silver,
    name: "unpaid_bookings",
    description: "Bookings that no payment matched within the join window, resolved once the watermark passed it",
    schema: unpaid_bookings_schema,
    partition_columns: &["booking_date"],
    properties: &[],
    blob_columns: &[],
    stats_columns: &[
        "booking_time",
        "booking_event_time",
        "event_id",
        "processed_at",
    ],
};

fn orphan_payments_schema() -> Schema {
    use DataType::{Date32, Float64, Int32, Utf8};
    Schema::new(vec![
        column("payment_id", Utf8, false),
        column("order_id", Utf8, false),
        column("payment_time", utc_timestamp(), false),
        column("amount", Float64, false),
        column("payment_method", Utf8, true),
        column("payment_type", Utf8, true),
        column("payment_status", Utf8, true),
        column("currency", Utf8, true),
        column("fee", Float64, true),
        column("payment_event_time", utc_timestamp(), false),
        column("schema_version", Int32, true),
        column("payment_event_uid", Utf8, false),
        column("processed_at", utc_timestamp(), false),
        column("payment_date", Date32, false),
    ])
}

/// `silver/orphan_payments`: payments no booking matched by the time the watermark passed them.
pub const ORPHAN_PAYMENTS: TableDef = TableDef {
    layer: Layer::Silver,
    name: "orphan_payments",
    description: "Payments that no booking matched, resolved once the watermark passed their time",
    schema: orphan_payments_schema,
    partition_columns: &["payment_date"],
    properties: &[],
    blob_columns: &[],
    stats_columns: &["payment_time", "payment_event_time", "processed_at"],
};

fn late_events_schema() -> Schema {
    use DataType::{Float64, Int32, Int64, Utf8};
    Schema::new(vec![
        column("hub", Utf8, false),
        column("event_uid", Utf8, false),
        column("order_id", Utf8, true),
        column("event_time", utc_timestamp(), false),
        column("arrival_time", utc_timestamp(), false),
        column("watermark", utc_timestamp(), false),
        column("behind_seconds", Float64, false),
        column("partition_id", Int32, false),
        column("sequence_number", Int64, false),
        column("body", Utf8, false),
        column("processed_at", utc_timestamp(), false),
        // Set on events a backfill judged late even among the history it joined: a later
        // backfill does not take them again.
        column("backfill", Int64, true),
    ])
}

/// `silver/late_events`: events that arrived behind the watermark, kept whole, never dropped.
pub const LATE_EVENTS: TableDef = TableDef {
    layer: Layer::Silver,
    name: "late_events",
    description: "Events older than the watermark when they arrived, with how far behind they were",
    schema: late_events_schema,
    partition_columns: &[],
    properties: &[],
    blob_columns: &["body"],
    stats_columns: &[
        "hub",
        "partition_id",
        "sequence_number",
        "event_time",
        "arrival_time",
        "processed_at",
    ],
};

fn expectations_schema() -> Schema {
    use DataType::{Int64, Utf8};
    Schema::new(vec![
        column("job", Utf8, false),
        column("batch", Int64, false),
        column("table_name", Utf8, false),
        column("expectation", Utf8, false),
        column("condition", Utf8, false),
        column("action", Utf8, false),
        column("passed", Int64, false),
        column("failed", Int64, false),
        column("run_at", utc_timestamp(), false),
    ])
}

/// `_system/expectations`: for every run, how many rows passed and failed each expectation.
pub const EXPECTATIONS: TableDef = TableDef {
    layer: Layer::System,
    name: "expectations",
    description: "Per run and expectation: rows that passed and failed, and the action taken",
    schema: expectations_schema,
    partition_columns: &[],
    properties: &[],
    blob_columns: &[],
    stats_columns: &["run_at", "job", "table_name", "batch"],
};

/// Every table the Silver jobs write.
pub const TABLES: [&TableDef; 5] = [
    &BOOKINGS_FACT,
    &UNPAID_BOOKINGS,
    &ORPHAN_PAYMENTS,
    &LATE_EVENTS,
    &EXPECTATIONS,
];
