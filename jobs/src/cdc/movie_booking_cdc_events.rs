//! `bronze/movie_booking_cdc_events`: the source table's change data feed, in the shape of a
//! Snowflake stream. insert -> INSERT, update_preimage -> DELETE with is_update, update_postimage
//! -> INSERT with is_update, delete -> DELETE. change_timestamp is the commit's own time, not
//! the time the job ran, so a rerun writes the same rows.

use std::collections::HashMap;

use boxoffice_lake::{PartitionRows, append_once};
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::physical_plan::collect;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::{DeltaTable, DeltaTableError};
use serde_json::json;

use super::changes::{decode, in_apply_order};
use super::flow::Fresh;
use super::tables::MOVIE_BOOKING_CDC_EVENTS as BRONZE;
use super::{app_id, cdc_error, conform, query, reached};
use crate::JobError;
use crate::ops::RAW_MOVIE_BOOKINGS as SOURCE;

/// What the step did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BronzeReport {
    /// Source versions taken.
    pub versions: Option<(i64, i64)>,
    /// Change rows written.
    pub rows: u64,
}

/// Takes the change feed from the version after the last one taken through the latest
/// version `source` holds; returns what it appended, decoded, for the later steps.
pub(crate) async fn run(
    source: &DeltaTable,
    bronze: &mut DeltaTable,
) -> Result<(BronzeReport, Option<Fresh>), JobError> {
    let Some(latest) = source.version().and_then(|v| i64::try_from(v).ok()) else {
        return Ok((BronzeReport::default(), None));
    };
    let after = reached(bronze, &BRONZE).await?;
    let from = after.map_or(0, |v| v + 1);
    if from > latest {
        return Ok((BronzeReport::default(), None));
    }
    let ctx = SessionContext::new();
    let plan = source
        .clone()
        .scan_cdf()
        .with_starting_version(from as u64)
        .with_ending_version(latest as u64)
        .build(&ctx.state(), None)
        .await
        .map_err(feed_error)?;
    let feed = collect(plan, ctx.task_ctx())
        .await
        .map_err(|e| cdc_error(&SOURCE, e))?;
    let rows = if let Some(first) = feed.first() {
        let table =
            MemTable::try_new(first.schema(), vec![feed]).map_err(|e| cdc_error(&BRONZE, e))?;
        ctx.register_table("feed", std::sync::Arc::new(table))
            .map_err(|e| cdc_error(&BRONZE, e))?;
        conform(&BRONZE, query(&ctx, &BRONZE, MAPPING).await?)?
    } else {
        Vec::new()
    };
    let mut fresh = decode(&rows)?;
    in_apply_order(&mut fresh);
    append_once(
        bronze,
        rows.into_iter().map(PartitionRows::unsplit).collect(),
        &app_id(&BRONZE),
        latest,
        HashMap::from([
            ("operation".to_string(), json!("cdc")),
            ("source_versions".to_string(), json!([from, latest])),
        ]),
        BRONZE.writer_properties(),
    )
    .await
    .map_err(|e| JobError::Commit {
        table: BRONZE.qualified_name(),
        source: Box::new(e),
    })?;
    let report = BronzeReport {
        versions: Some((from, latest)),
        rows: fresh.len() as u64,
    };
    let fresh = Fresh {
        after,
        through: latest,
        rows: fresh,
    };
    Ok((report, Some(fresh)))
}

/// The Snowflake stream's columns from delta-rs's change feed, in commit order (within a
/// commit, by booking, the old half of an update before the new).
const MAPPING: &str = "
SELECT booking_id, customer_id, movie_id, booking_date, status, ticket_count, ticket_price,
       CASE WHEN _change_type IN ('insert', 'update_postimage') THEN 'INSERT' ELSE 'DELETE' END
           AS change_type,
       _change_type IN ('update_preimage', 'update_postimage') AS is_update,
       _commit_timestamp AS change_timestamp,
       CAST(_commit_version AS BIGINT) AS commit_version
FROM feed
ORDER BY _commit_version, booking_id,
         CASE _change_type WHEN 'update_preimage' THEN 0 WHEN 'delete' THEN 1
                           WHEN 'update_postimage' THEN 2 ELSE 3 END
";

fn feed_error(e: DeltaTableError) -> JobError {
    match e {
        DeltaTableError::ChangeDataNotEnabled { version } => cdc_error(
            &SOURCE,
            format!(
                "its change data feed is off at version {version}; set delta.enableChangeDataFeed = true on the table"
            ),
        ),
        DeltaTableError::ChangeDataNotRecorded { version, .. } => cdc_error(
            &SOURCE,
            format!(
                "the change data feed was turned off at version {version}: changes after it are lost"
            ),
        ),
        other => cdc_error(&SOURCE, other),
    }
}
