//! The `cdc` job: the booking service's change data feed, through Bronze, Silver and Gold
//! (the Snowflake demo's streams, tasks and dynamic tables, done so the result does not depend
//! on how often it runs).
//!
//! Each step reads from the step before it, by the source table's version, and records the
//! version it has reached in its own commit (application transaction `cdc:<layer.table>`):
//!
//! 1. [`movie_booking_cdc_events`]: the change feed from the last version taken, mapped to the
//!    Snowflake stream's shape, appended to Bronze.
//! 2. [`movie_bookings_filtered`]: Bronze changes applied, in commit order, to the latest state
//!    per booking (MERGE); changes that cannot be applied go to quarantine.
//! 3. [`movie_bookings_history`]: every version of every booking, valid from one change to the
//!    next (MERGE).
//! 4. [`movie_booking_insights`]: per movie, recomputed from the latest state for only the
//!    movies whose bookings changed (MERGE).
//!
//! A crash between steps leaves each at its own version; the next run brings the later ones up.
//! A change read twice is applied once, because every step skips versions it has recorded.

pub mod changes;
pub mod flow;
pub mod movie_booking_cdc_events;
pub mod movie_booking_insights;
pub mod movie_bookings_filtered;
pub mod movie_bookings_history;
pub mod tables;

pub use flow::Flow;

use std::collections::HashMap;

use boxoffice_lake::{Lake, TableDef, committed_version};
use deltalake::DeltaTable;
use deltalake::arrow::array::RecordBatch;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use serde_json::json;

use crate::JobError;

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CdcReport {
    /// Source versions taken into Bronze (`None`: nothing new).
    pub versions: Option<(i64, i64)>,
    /// Change rows appended to Bronze.
    pub changes: u64,
    /// Bookings inserted, updated or deleted in Silver's latest state.
    pub bookings_changed: u64,
    /// Versions added to the history.
    pub history_rows: u64,
    /// Changes refused (sent to quarantine).
    pub quarantined: u64,
    /// Movies whose Gold row was recomputed.
    pub movies_refreshed: u64,
    /// Wall time.
    pub millis: u128,
    /// Wall time of each step: Bronze, the latest state, the history, Gold.
    pub step_millis: [u128; 4],
}

/// The app id a step records its progress under.
pub(crate) fn app_id(def: &TableDef) -> String {
    format!("cdc:{}", def.qualified_name())
}

/// The source version a step has reached in `table` (`None`: none yet).
pub(crate) async fn reached(
    table: &mut DeltaTable,
    def: &TableDef,
) -> Result<Option<i64>, JobError> {
    committed_version(table, &app_id(def))
        .await
        .map_err(|e| cdc_error(def, e))
}

/// Commit properties recording that `def`'s step has reached source version `version`.
pub(crate) fn reaching(def: &TableDef, version: i64) -> CommitProperties {
    boxoffice_lake::commit_properties()
        .with_application_transaction(Transaction::new(app_id(def), version))
        .with_metadata(HashMap::from([("operation".to_string(), json!("cdc"))]))
}

/// Records that `def`'s step has reached `version` with a commit that changes no data (a run
/// whose changes left nothing to merge).
pub(crate) async fn record_reached(
    table: &mut DeltaTable,
    def: &TableDef,
    version: i64,
) -> Result<(), JobError> {
    boxoffice_lake::append_once(
        table,
        Vec::new(),
        &app_id(def),
        version,
        HashMap::from([("operation".to_string(), json!("cdc"))]),
        def.writer_properties(),
    )
    .await
    .map_err(|e| JobError::Commit {
        table: def.qualified_name(),
        source: Box::new(e),
    })?;
    Ok(())
}

/// After a MERGE: delta-rs makes no commit when a MERGE writes nothing (and so records no
/// progress), so record it then.
pub(crate) async fn ensure_reached(
    table: &mut DeltaTable,
    def: &TableDef,
    version: i64,
) -> Result<(), JobError> {
    if reached(table, def).await?.is_none_or(|v| v < version) {
        record_reached(table, def, version).await?;
    }
    Ok(())
}

pub(crate) fn cdc_error(def: &TableDef, e: impl std::fmt::Display) -> JobError {
    JobError::Cdc(format!("{}: {e}", def.qualified_name()))
}

/// Registers a Delta table in `ctx` under `name` (see [`crate::frames::register`]).
pub(crate) async fn register(
    ctx: &SessionContext,
    name: &str,
    def: &TableDef,
    table: &DeltaTable,
) -> Result<(), JobError> {
    crate::frames::register(ctx, name, def, Some(table), None)
        .await
        .map_err(|e| cdc_error(def, e))
}

/// Runs `sql` and collects its rows.
pub(crate) async fn query(
    ctx: &SessionContext,
    def: &TableDef,
    sql: &str,
) -> Result<Vec<RecordBatch>, JobError> {
    crate::frames::collect(ctx, sql)
        .await
        .map_err(|e| cdc_error(def, e))
}

/// A query's rows as `def`'s schema (see [`crate::frames::conform`]), empty batches left out.
pub(crate) fn conform(
    def: &TableDef,
    batches: Vec<RecordBatch>,
) -> Result<Vec<RecordBatch>, JobError> {
    batches
        .iter()
        .filter(|b| b.num_rows() > 0)
        .map(|b| crate::frames::conform(def, b, None).map_err(|e| cdc_error(def, e)))
        .collect()
}

/// Runs every step once over what is new, opening the flow's tables for this run only (a
/// caller that runs again and again holds a [`Flow`] instead).
pub async fn run(lake: &Lake) -> Result<CdcReport, JobError> {
    Flow::new(lake).run().await
}

/// Reads the Bronze changes after source version `after` through `through` back from `bronze`,
/// decoded, in order.
pub(crate) async fn read_changes(
    bronze: &DeltaTable,
    after: Option<i64>,
    through: i64,
) -> Result<Vec<changes::ChangeRow>, JobError> {
    use tables::MOVIE_BOOKING_CDC_EVENTS as BRONZE;
    let ctx = SessionContext::new();
    register(&ctx, "bronze", &BRONZE, bronze).await?;
    let after = after.unwrap_or(-1);
    let batches = query(
        &ctx,
        &BRONZE,
        &format!(
            "SELECT * FROM bronze WHERE commit_version > {after} AND commit_version <= {through}"
        ),
    )
    .await?;
    let mut rows = changes::decode(&batches)?;
    changes::in_apply_order(&mut rows);
    Ok(rows)
}

/// The source versions a step has still to take: after the version `table` has reached, through
/// the version the step before it (`before`) has reached; `None` when there are none.
pub(crate) async fn to_take(
    before: &mut DeltaTable,
    before_def: &TableDef,
    table: &mut DeltaTable,
    def: &TableDef,
) -> Result<Option<(Option<i64>, i64)>, JobError> {
    let Some(through) = reached(before, before_def).await? else {
        return Ok(None);
    };
    let after = reached(table, def).await?;
    Ok(after
        .is_none_or(|a| a < through)
        .then_some((after, through)))
}

#[cfg(test)]
mod tests;
