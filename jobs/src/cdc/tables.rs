//! The CDC flow's tables (docs/tables.md): the booking service's own table in `ops`,
//! its changes in Bronze, the latest state and every version in Silver, insights in Gold.

use boxoffice_lake::{Layer, TableDef, column, utc_timestamp};
use deltalake::arrow::datatypes::{DataType, Field, Schema};

use crate::gold::tables::money;

/// `decimal(10,2)`: a ticket's price, as the booking service stores it.
pub fn ticket_price() -> DataType {
    DataType::Decimal128(10, 2)
}

/// The booking service's seven columns, shared by every table of the flow.
pub fn booking_columns() -> Vec<Field> {
    use DataType::{Int32, Utf8};
    vec![
        column("booking_id", Utf8, false),
        column("customer_id", Utf8, true),
        column("movie_id", Utf8, true),
        column("booking_date", utc_timestamp(), true),
        column("status", Utf8, true),
        column("ticket_count", Int32, true),
        column("ticket_price", ticket_price(), true),
    ]
}

fn cdc_events_schema() -> Schema {
    use DataType::{Boolean, Int64, Utf8};
    let mut fields = booking_columns();
    fields.extend([
        column("change_type", Utf8, false),
        column("is_update", Boolean, false),
        column("change_timestamp", utc_timestamp(), false),
        column("commit_version", Int64, false),
    ]);
    Schema::new(fields)
}

/// `bronze/movie_booking_cdc_events`: every change of the booking service's table, in the shape
/// of a Snowflake stream (an update is a DELETE of the old row and an INSERT of the new one).
pub const MOVIE_BOOKING_CDC_EVENTS: TableDef = TableDef {
    layer: Layer::Bronze,
    name: "movie_booking_cdc_events",
    description: "Every change of ops.raw_movie_bookings: INSERT or DELETE, is_update for the two halves of an update, the commit it came from",
    schema: cdc_events_schema,
    partition_columns: &[],
    properties: &[],
    blob_columns: &[],
    stats_columns: &[],
};

fn filtered_schema() -> Schema {
    let mut fields = booking_columns();
    fields.push(column("latest_change_timestamp", utc_timestamp(), false));
    fields.push(column("latest_commit_version", DataType::Int64, false));
    Schema::new(fields)
}

/// `silver/movie_bookings_filtered`: the latest state of every booking, deleted ones removed.
pub const MOVIE_BOOKINGS_FILTERED: TableDef = TableDef {
    layer: Layer::Silver,
    name: "movie_bookings_filtered",
    description: "Latest state per booking_id (deleted bookings removed), changes applied in commit order",
    schema: filtered_schema,
    partition_columns: &[],
    properties: &[],
    blob_columns: &[],
    stats_columns: &[],
};

fn history_schema() -> Schema {
    use DataType::{Boolean, Int64};
    let mut fields = booking_columns();
    fields.extend([
        column("valid_from", utc_timestamp(), false),
        column("valid_to", utc_timestamp(), true),
        column("is_current", Boolean, false),
        column("commit_version", Int64, false),
    ]);
    Schema::new(fields)
}

/// `silver/movie_bookings_history`: every version of every booking (a type 2 slowly changing
/// dimension): valid from its change until the next one, current while nothing replaced it.
pub const MOVIE_BOOKINGS_HISTORY: TableDef = TableDef {
    layer: Layer::Silver,
    name: "movie_bookings_history",
    description: "Every version of every booking: valid_from, valid_to (null while current), is_current; a delete closes the last version",
    schema: history_schema,
    partition_columns: &[],
    properties: &[],
    blob_columns: &[],
    stats_columns: &[],
};

fn insights_schema() -> Schema {
    use DataType::{Int64, Utf8};
    Schema::new(vec![
        column("movie_id", Utf8, true),
        column("total_bookings", Int64, false),
        column("total_tickets_sold", Int64, false),
        column("total_revenue", money(), false),
        column("total_cancellations", Int64, false),
        column("refresh_timestamp", utc_timestamp(), false),
    ])
}

/// `gold/movie_booking_insights`: per movie, from the latest state of its bookings.
pub const MOVIE_BOOKING_INSIGHTS: TableDef = TableDef {
    layer: Layer::Gold,
    name: "movie_booking_insights",
    description: "Per movie: current bookings, tickets sold and revenue (BOOKED and COMPLETED, ticket_count x ticket_price), cancellations",
    schema: insights_schema,
    partition_columns: &[],
    properties: &[],
    blob_columns: &[],
    stats_columns: &[],
};

/// Every table of the flow, source first.
pub const TABLES: [&TableDef; 5] = [
    &crate::ops::RAW_MOVIE_BOOKINGS,
    &MOVIE_BOOKING_CDC_EVENTS,
    &MOVIE_BOOKINGS_FILTERED,
    &MOVIE_BOOKINGS_HISTORY,
    &MOVIE_BOOKING_INSIGHTS,
];
