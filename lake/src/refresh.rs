//! Snapshot updates, timed. Every commit and every refresh of a table held open replays the
//! table's log into delta-rs's snapshot, at a cost that follows the table's live files and their
//! statistics; at trace level (`RUST_LOG=boxoffice_lake::refresh=trace`) each one is logged
//! with its table, versions and time, which is how the busiest tables' costs were found
//! (docs/performance.md).

use std::time::Instant;

use deltalake::{DeltaTable, DeltaTableError};

/// Brings `table` to its latest version, as `update_state` does, logging it under `site` (who
/// refreshed: `join`, `gold`, `commit`...).
pub async fn refresh(table: &mut DeltaTable, site: &'static str) -> Result<(), DeltaTableError> {
    let from = version(table);
    let started = Instant::now();
    let result = table.update_state().await;
    let to = version(table);
    logged("refresh", table, site, from, to, started);
    result
}

/// Logs the snapshot update delta-rs made after committing `to` on `table` (whose snapshot is
/// still the one the commit was prepared on), begun at `started`.
pub(crate) fn committed(table: &DeltaTable, site: &'static str, to: u64, started: Instant) {
    logged("commit", table, site, version(table), to as i64, started);
}

/// Logs a table opened afresh, begun at `started`.
pub(crate) fn loaded(table: &DeltaTable, started: Instant) {
    logged("load", table, "open", -1, version(table), started);
}

fn logged(
    what: &'static str,
    table: &DeltaTable,
    site: &'static str,
    from: i64,
    to: i64,
    started: Instant,
) {
    tracing::trace!(
        site,
        table = %table.table_url(),
        from,
        to,
        us = started.elapsed().as_micros() as u64,
        "{what}"
    );
}

/// The table's version, -1 before it is loaded.
fn version(table: &DeltaTable) -> i64 {
    table.version().map_or(-1, |v| v as i64)
}
