//! `gold/event_occupancy`: seats sold per show against its venue's capacity. It joins two small
//! tables (a row per show each), so it is rebuilt whole whenever either changed, which
//! `gold:event_occupancy:<input>` application transactions record.
//!
//! A show can never hold more seats than its venue, so every rebuild checks the expectation
//! [`WITHIN_CAPACITY`] (warn: the rows are written anyway, as measured) and records how many
//! shows passed and broke it in `_system/expectations`, job `gold`, batch = the Gold table
//! version the rebuild writes. Oversold shows mean the sales and the catalog disagree: two
//! generator runs selling the same shows into one lake, or a catalog whose capacities are not
//! the ones the shows were sold against.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use boxoffice_lake::{Lake, PartitionRows, TableDef, append_once, committed_version};
use chrono::{DateTime, Utc};
use deltalake::arrow::array::RecordBatch;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::Transaction;
use serde_json::json;

use super::tables::{EVENT_OCCUPANCY, EVENT_PERFORMANCE};
use super::{Refresh, RefreshReport, conform, gold_error, register};
use crate::JobError;
use crate::batch::tables::EVENT_CATALOG;
use crate::expectations::{Action, Expectation, Expectations, result_rows};
use crate::silver::tables::EXPECTATIONS;

/// The expectation every rebuild checks: no show has sold more seats than its venue holds.
pub const WITHIN_CAPACITY: &str = "occupancy_within_capacity";

/// The job name its results are recorded under in `_system/expectations`.
const JOB: &str = "gold";

/// The table's expectations (not changeable in `[expectations]`: a fixed warning).
pub fn declared_expectations() -> Vec<Expectation> {
    vec![Expectation {
        name: WITHIN_CAPACITY.to_string(),
        // Seats, not the rounded occupancy: one seat over a large venue still breaks it. A show
        // without a capacity cannot be over it.
        condition: "capacity IS NULL OR seats_sold <= capacity".to_string(),
        action: Action::Warn,
    }]
}

const SQL: &str = "
SELECT c.event_id, c.event_name, c.venue, c.city, c.capacity,
       CAST(coalesce(p.seats_sold, 0) AS BIGINT) AS seats_sold,
       CASE WHEN c.capacity > 0
            THEN round(CAST(coalesce(p.seats_sold, 0) AS DOUBLE) / c.capacity, 4) END AS occupancy
FROM catalog c LEFT JOIN performance p ON p.event_id = c.event_id
";

fn app_id(input: &TableDef) -> String {
    format!("gold:{}:{}", EVENT_OCCUPANCY.name, input.qualified_name())
}

/// Rebuilds the table if the catalog or event_performance changed since it was last built.
pub async fn refresh(lake: &Lake) -> Result<Option<RefreshReport>, JobError> {
    let started = Instant::now();
    let Some(catalog) = lake.open_table(&EVENT_CATALOG).await? else {
        return Ok(None); // no catalog loaded: nothing to measure against
    };
    let performance = lake.open_table(&EVENT_PERFORMANCE).await?;
    let mut gold = lake.ensure_table(&EVENT_OCCUPANCY).await?;
    let inputs = [
        (&EVENT_CATALOG, Some(&catalog)),
        (&EVENT_PERFORMANCE, performance.as_ref()),
    ];
    let mut current = Vec::new();
    let mut changed = false;
    for (def, table) in inputs {
        let version = table
            .and_then(|t| t.version())
            .and_then(|v| i64::try_from(v).ok());
        let recorded = committed_version(&mut gold, &app_id(def))
            .await
            .map_err(|e| gold_error(&EVENT_OCCUPANCY, e))?;
        changed |= version != recorded;
        current.push((def, version));
    }
    if !changed {
        return Ok(None);
    }
    let ctx = SessionContext::new();
    register(&ctx, "catalog", &EVENT_CATALOG, Some(&catalog), None).await?;
    register(
        &ctx,
        "performance",
        &EVENT_PERFORMANCE,
        performance.as_ref(),
        None,
    )
    .await?;
    let batches = ctx
        .sql(SQL)
        .await
        .map_err(|e| gold_error(&EVENT_OCCUPANCY, e))?
        .collect()
        .await
        .map_err(|e| gold_error(&EVENT_OCCUPANCY, e))?;
    let now = Utc::now();
    let batches = conform(&EVENT_OCCUPANCY, batches, now)?;
    // The version this rebuild's overwrite will be: results are recorded under it, before the
    // overwrite, so a crash between the two records them once (the rerun finds them there).
    let writes = gold.version().map_or(0, |v| v as i64 + 1);
    let batches = check_expectations(lake, batches, writes, now).await?;
    let rows = batches.iter().map(|b| b.num_rows()).sum();
    let txns = current
        .iter()
        .filter_map(|(def, v)| v.map(|v| Transaction::new(app_id(def), v)))
        .collect();
    super::overwrite(gold, &EVENT_OCCUPANCY, batches, txns).await?;
    Ok(Some(RefreshReport {
        table: EVENT_OCCUPANCY.qualified_name(),
        refresh: Refresh::Full {
            reason: "rebuilt whole: one row per show".to_string(),
        },
        rows,
        millis: started.elapsed().as_millis(),
    }))
}

/// Checks the rebuilt rows against [`declared_expectations`] and appends the counts to
/// `_system/expectations` once for Gold version `writes`; returns the rows (warn keeps all).
async fn check_expectations(
    lake: &Lake,
    batches: Vec<RecordBatch>,
    writes: i64,
    at: DateTime<Utc>,
) -> Result<Vec<RecordBatch>, JobError> {
    let declared = [(&EVENT_OCCUPANCY, declared_expectations())];
    let expectations = Expectations::compile(&declared, &BTreeMap::new())
        .map_err(|e| gold_error(&EVENT_OCCUPANCY, e))?;
    let rows = batches.into_iter().map(PartitionRows::unsplit).collect();
    let checked = expectations.check(&EVENT_OCCUPANCY, rows, at)?;
    let results = result_rows(JOB, writes as u64, &checked.results, at)
        .map_err(|e| gold_error(&EXPECTATIONS, e))?;
    let mut table = lake.ensure_table(&EXPECTATIONS).await?;
    let metadata = HashMap::from([
        ("operation".to_string(), json!(JOB)),
        ("table".to_string(), json!(EVENT_OCCUPANCY.qualified_name())),
    ]);
    append_once(
        &mut table,
        vec![PartitionRows::unsplit(results)],
        &format!("{JOB}:{}", EVENT_OCCUPANCY.qualified_name()),
        writes,
        metadata,
        EXPECTATIONS.writer_properties(),
    )
    .await
    .map_err(|e| JobError::Commit {
        table: EXPECTATIONS.qualified_name(),
        source: Box::new(e),
    })?;
    Ok(checked.kept.into_iter().map(|p| p.batch).collect())
}

#[cfg(test)]
#[path = "event_occupancy_tests.rs"]
mod tests;
