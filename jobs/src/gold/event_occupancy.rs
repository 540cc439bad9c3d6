//! `gold/event_occupancy`: seats sold per show against its venue's capacity. It joins two small
//! tables (a row per show each), so it is rebuilt whole whenever either changed, which
//! `gold:event_occupancy:<input>` application transactions record.

use std::time::Instant;

use boxoffice_lake::{Lake, TableDef, committed_version};
use chrono::Utc;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::Transaction;

use super::tables::{EVENT_OCCUPANCY, EVENT_PERFORMANCE};
use super::{Refresh, RefreshReport, conform, gold_error, register};
use crate::JobError;
use crate::batch::tables::EVENT_CATALOG;

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
    let batches = conform(&EVENT_OCCUPANCY, batches, Utc::now())?;
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
