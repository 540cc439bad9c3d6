//! The Gold tables: small aggregates Power BI and the dashboard read.
//!
//! Every Gold table keeps, beside its measures, the additive sums they are derived from (rates
//! and averages are recomputed from them), so a refresh can add what changed in Silver to what
//! the table already holds. Money is `decimal(18,2)`: sums are exact, so an incremental refresh
//! and a full rebuild agree to the cent.

use boxoffice_lake::{Layer, TableDef, column, utc_timestamp};
use deltalake::arrow::datatypes::{DataType, Schema};

/// `decimal(18,2)`: amounts in the payment currency.
pub fn money() -> DataType {
    DataType::Decimal128(18, 2)
}

fn event_performance_schema() -> Schema {
    use DataType::{Int64, Utf8};
    Schema::new(vec![
        column("event_id", Utf8, true),
        column("event_name", Utf8, true),
        column("event_category", Utf8, true),
        column("orders", Int64, false),
        column("seats_sold", Int64, false),
        column("revenue", money(), false),
        column("avg_seat_price", money(), true),
        column("failed_payments", Int64, false),
        column("seats_value", money(), false),
        column("refreshed_at", utc_timestamp(), false),
    ])
}

/// `gold/event_performance`: per event, orders booked, seats sold, revenue, the average price of
/// a sold seat and failed payment attempts.
pub const EVENT_PERFORMANCE: TableDef = TableDef {
    layer: Layer::Gold,
    name: "event_performance",
    description: "Per event: orders, seats sold, revenue (distinct successful payments), average seat price, failed payments",
    schema: event_performance_schema,
    partition_columns: &[],
    properties: &[],
    blob_columns: &[],
    stats_columns: &[],
};

fn sales_by_category_hour_schema() -> Schema {
    use DataType::{Date32, Int32, Int64, Utf8};
    Schema::new(vec![
        column("booking_date", Date32, true),
        column("booking_hour", Int32, true),
        column("booking_day_of_week", Utf8, true),
        column("event_category", Utf8, true),
        column("orders", Int64, false),
        column("seats", Int64, false),
        column("revenue", money(), false),
        column("refreshed_at", utc_timestamp(), false),
    ])
}

/// `gold/sales_by_category_hour`: paid orders, seats and revenue per booking date, hour, day of
/// week and event category.
pub const SALES_BY_CATEGORY_HOUR: TableDef = TableDef {
    layer: Layer::Gold,
    name: "sales_by_category_hour",
    description: "Per booking date, hour, day of week and category: paid orders, seats sold, revenue",
    schema: sales_by_category_hour_schema,
    partition_columns: &[],
    properties: &[],
    blob_columns: &[],
    stats_columns: &[],
};

fn payment_mix_schema() -> Schema {
    use DataType::{Float64, Int64, Utf8};
    Schema::new(vec![
        column("payment_method", Utf8, true),
        column("payment_type", Utf8, true),
        column("attempts", Int64, false),
        column("succeeded", Int64, false),
        column("failed", Int64, false),
        column("success_rate", Float64, true),
        column("amount", money(), false),
        column("refreshed_at", utc_timestamp(), false),
    ])
}

/// `gold/payment_mix`: payment attempts per method and type, matched or orphan, with the share
/// that succeeded and the amount they brought.
pub const PAYMENT_MIX: TableDef = TableDef {
    layer: Layer::Gold,
    name: "payment_mix",
    description: "Per payment method and type: attempts, succeeded, failed, success rate, amount succeeded",
    schema: payment_mix_schema,
    partition_columns: &[],
    properties: &[],
    blob_columns: &[],
    stats_columns: &[],
};

fn conversion_schema() -> Schema {
    use DataType::{Date32, Float64, Int32, Int64};
    Schema::new(vec![
        column("booking_date", Date32, true),
        column("booking_hour", Int32, true),
        column("bookings", Int64, false),
        column("paid", Int64, false),
        column("unpaid", Int64, false),
        column("conversion_rate", Float64, true),
        column("refreshed_at", utc_timestamp(), false),
    ])
}

/// `gold/conversion`: per booking date and hour, bookings resolved in Silver and how many were
/// paid.
pub const CONVERSION: TableDef = TableDef {
    layer: Layer::Gold,
    name: "conversion",
    description: "Per booking date and hour: bookings, paid, not paid, conversion rate",
    schema: conversion_schema,
    partition_columns: &[],
    properties: &[],
    blob_columns: &[],
    stats_columns: &[],
};

fn event_occupancy_schema() -> Schema {
    use DataType::{Float64, Int32, Int64, Utf8};
    Schema::new(vec![
        column("event_id", Utf8, false),
        column("event_name", Utf8, true),
        column("venue", Utf8, true),
        column("city", Utf8, true),
        column("capacity", Int32, true),
        column("seats_sold", Int64, false),
        column("occupancy", Float64, true),
        column("refreshed_at", utc_timestamp(), false),
    ])
}

/// `gold/event_occupancy`: per show in the catalog, seats sold (stream and box office) against
/// the venue's capacity.
pub const EVENT_OCCUPANCY: TableDef = TableDef {
    layer: Layer::Gold,
    name: "event_occupancy",
    description: "Per show in silver.event_catalog: seats sold (gold.event_performance) / capacity",
    schema: event_occupancy_schema,
    partition_columns: &[],
    properties: &[],
    blob_columns: &[],
    stats_columns: &[],
};

fn booking_funnel_schema() -> Schema {
    use DataType::{Date32, Int32, Int64, Utf8};
    Schema::new(vec![
        column("booking_date", Date32, true),
        column("booking_hour", Int32, true),
        column("event_category", Utf8, true),
        column("bookings", Int64, false),
        column("paid", Int64, false),
        column("seats_sold", Int64, false),
        column("revenue", money(), false),
        column("payment_attempts", Int64, false),
        column("failed_payments", Int64, false),
        column("refreshed_at", utc_timestamp(), false),
    ])
}

/// `gold/booking_funnel`: per booking date, hour and category, bookings, paid bookings, seats,
/// revenue and payment attempts: what the dashboard's KPI cards filter by date and category.
pub const BOOKING_FUNNEL: TableDef = TableDef {
    layer: Layer::Gold,
    name: "booking_funnel",
    description: "Per booking date, hour and category: bookings, paid, seats sold, revenue, payment attempts, failed payments",
    schema: booking_funnel_schema,
    partition_columns: &[],
    properties: &[],
    blob_columns: &[],
    stats_columns: &[],
};

/// Every Gold table.
pub const TABLES: [&TableDef; 6] = [
    &EVENT_PERFORMANCE,
    &SALES_BY_CATEGORY_HOUR,
    &PAYMENT_MIX,
    &CONVERSION,
    &EVENT_OCCUPANCY,
    &BOOKING_FUNNEL,
];
