//! Which catalog shows a lake has already sold seats of: a new generator run starts after them,
//! so that no show is sold by two runs (each run knows only its own seat maps) and none is sold
//! beyond its venue's capacity.

use boxoffice_lake::Lake;
use deltalake::arrow::array::{Array, AsArray};
use deltalake::arrow::datatypes::Int64Type;
use deltalake::datafusion::prelude::SessionContext;

use super::bookings_fact::BookingsFact;
use super::tables::{BOOKINGS_FACT, UNPAID_BOOKINGS};
use crate::JobError;

/// The number of a catalog show id, `event17` -> 17.
pub fn show_number(event_id: &str) -> Option<u64> {
    event_id.strip_prefix("event")?.parse().ok()
}

/// The highest catalog show number with a booking in Silver (joined or unpaid) or waiting in
/// `job`'s state; 0 when none.
pub async fn last_show_sold(lake: &Lake, job: Option<&BookingsFact>) -> Result<u64, JobError> {
    let ctx = SessionContext::new();
    let text = |e: String| JobError::Gold(format!("reading the shows sold: {e}"));
    for (name, def) in [("fact", &BOOKINGS_FACT), ("unpaid", &UNPAID_BOOKINGS)] {
        let table = lake.open_table(def).await?;
        crate::frames::register(&ctx, name, def, table.as_ref(), None)
            .await
            .map_err(text)?;
    }
    let sql = "SELECT max(n) FROM (\
        SELECT try_cast(substr(event_id, 6) AS BIGINT) AS n FROM fact WHERE event_id LIKE 'event%' \
        UNION ALL \
        SELECT try_cast(substr(event_id, 6) AS BIGINT) AS n FROM unpaid WHERE event_id LIKE 'event%')";
    let batches = crate::frames::collect(&ctx, sql).await.map_err(text)?;
    let in_silver = batches
        .iter()
        .filter(|b| b.num_rows() > 0)
        .filter_map(|b| b.column(0).as_primitive_opt::<Int64Type>().cloned())
        .filter(|c| c.is_valid(0))
        .map(|c| c.value(0).max(0) as u64)
        .max()
        .unwrap_or(0);
    let waiting = job.map_or(0, BookingsFact::last_show_waiting);
    Ok(in_silver.max(waiting))
}
