//! The booking service the CDC flow reads: its own table (`ops/raw_movie_bookings`), changed
//! by scripts of SQL statements ([`script`]) or by a simulator ([`simulator`]). boxoffice stands
//! in for the service here; the `cdc` job reads only the table's change data feed, so any other
//! Delta writer can take its place.

pub mod script;
pub mod simulator;

use boxoffice_lake::{Layer, TableDef};
use deltalake::arrow::datatypes::Schema;

use crate::cdc::tables::booking_columns;

fn raw_movie_bookings_schema() -> Schema {
    Schema::new(booking_columns())
}

/// `ops/raw_movie_bookings`: the booking service's table, with its change data feed on; the
/// simulator and `cdc apply` write it, the `cdc` job only reads its changes.
pub const RAW_MOVIE_BOOKINGS: TableDef = TableDef {
    layer: Layer::Ops,
    name: "raw_movie_bookings",
    description: "The booking service's own table (change data feed on): one row per movie booking, updated in place",
    schema: raw_movie_bookings_schema,
    partition_columns: &[],
    properties: &[("delta.enableChangeDataFeed", "true")],
    blob_columns: &[],
    stats_columns: &[],
};
