//! `gold/movie_booking_insights`: per movie, from the latest state of its bookings
//! (docs/semantics.md): total_bookings counts every current booking whatever its status,
//! total_cancellations the CANCELLED ones, tickets sold and revenue (ticket_count x
//! ticket_price) the BOOKED and COMPLETED ones. Only the movies whose bookings changed since the
//! last refresh are recomputed (a booking moved to another movie changes both); a movie left with
//! no booking loses its row.

use deltalake::DeltaTable;
use deltalake::arrow::array::{RecordBatch, StringArray};
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use deltalake::datafusion::prelude::SessionContext;

use super::flow::{Fresh, changes_between};
use super::tables::{MOVIE_BOOKING_INSIGHTS as INSIGHTS, MOVIE_BOOKINGS_FILTERED as FILTERED};
use super::{cdc_error, query, reaching, record_reached, register, to_take};
use crate::JobError;

/// The new rows of the movies in `changed`; `gone` marks a movie with no booking left.
const SQL: &str = "
SELECT c.movie_id,
       count(f.booking_id) AS total_bookings,
       CAST(coalesce(sum(CASE WHEN f.status IN ('BOOKED', 'COMPLETED') THEN f.ticket_count END), 0)
            AS BIGINT) AS total_tickets_sold,
       CAST(coalesce(sum(CASE WHEN f.status IN ('BOOKED', 'COMPLETED')
                              THEN CAST(f.ticket_price AS DECIMAL(18,2)) * f.ticket_count END), 0)
            AS DECIMAL(18,2)) AS total_revenue,
       CAST(count(CASE WHEN f.status = 'CANCELLED' THEN 1 END) AS BIGINT) AS total_cancellations,
       now() AS refresh_timestamp,
       count(f.booking_id) = 0 AS gone
FROM changed c LEFT JOIN filtered f ON f.movie_id = c.movie_id
GROUP BY c.movie_id
";

/// Recomputes the movies changed since the version this table has reached, through the version
/// the latest state has reached (`fresh`: what the Bronze step appended in this run); returns how
/// many.
pub(crate) async fn run(
    bronze: &DeltaTable,
    filtered: &mut DeltaTable,
    table: &mut DeltaTable,
    fresh: Option<&Fresh>,
) -> Result<u64, JobError> {
    let Some((after, through)) = to_take(filtered, &FILTERED, table, &INSIGHTS).await? else {
        return Ok(0);
    };
    let mut movies: Vec<String> = changes_between(bronze, fresh, after, through)
        .await?
        .into_iter()
        .filter_map(|row| row.booking.movie_id)
        .collect();
    movies.sort_unstable();
    movies.dedup();
    if movies.is_empty() {
        record_reached(table, &INSIGHTS, through).await?;
        return Ok(0);
    }
    let ctx = SessionContext::new();
    let changed = RecordBatch::try_new(
        std::sync::Arc::new(Schema::new(vec![Field::new(
            "movie_id",
            DataType::Utf8,
            false,
        )])),
        vec![std::sync::Arc::new(StringArray::from(movies.clone()))],
    )
    .map_err(|e| cdc_error(&INSIGHTS, e))?;
    ctx.register_batch("changed", changed)
        .map_err(|e| cdc_error(&INSIGHTS, e))?;
    register(&ctx, "filtered", &FILTERED, filtered).await?;
    let rows = query(&ctx, &INSIGHTS, SQL).await?;
    let source = ctx
        .read_batches(rows)
        .map_err(|e| cdc_error(&INSIGHTS, e))?;
    let columns: Vec<String> = INSIGHTS
        .arrow_schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    (*table, _) = table
        .clone()
        .merge(source, "target.movie_id = source.movie_id")
        .with_source_alias("source")
        .with_target_alias("target")
        .with_commit_properties(reaching(&INSIGHTS, through))
        .when_matched_delete(|d| d.predicate("source.gone"))
        .and_then(|m| {
            m.when_matched_update(|u| {
                columns.iter().fold(u.predicate("NOT source.gone"), |u, c| {
                    u.update(c.as_str(), format!("source.{c}"))
                })
            })
        })
        .and_then(|m| {
            m.when_not_matched_insert(|i| {
                columns.iter().fold(i.predicate("NOT source.gone"), |i, c| {
                    i.set(c.as_str(), format!("source.{c}"))
                })
            })
        })
        .map_err(|e| cdc_error(&INSIGHTS, e))?
        .await
        .map_err(|e| cdc_error(&INSIGHTS, e))?;
    super::ensure_reached(table, &INSIGHTS, through).await?;
    Ok(movies.len() as u64)
}
