//! The additive parts every Gold model sums, read from Silver once per refresh.
//!
//! The models all count the same few things (orders, paid bookings, seats and their value,
//! payment attempts and their amount) under different keys. Counting them straight from Silver
//! made every model scan `bookings_fact` and deduplicate its seat rows again: five scans and a
//! dozen hash aggregations over millions of rows. Instead, one pass over each Silver table
//! reduces it to the finest key any model groups by (the booking's event, date, hour and day of
//! week: the *booking key*, plus the payment's method, type and status for attempts); those
//! parts hold a few thousand rows, and each model sums them under its own key.
//!
//! The sums are exact re-groupings of the models' distinct counts because of the counting flags
//! (docs/semantics.md): a booking has one booking key, its first match and its sale are each one
//! match, and a payment's first match is one match of one booking, so a distinct count per
//! booking key adds up to the distinct count under any coarser key.

use std::sync::Arc;
use std::time::Instant;

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::prelude::SessionContext;

/// The key every part but `orphan_attempts` is grouped by.
const BOOKING_KEY: &str =
    "event_id, event_name, event_category, booking_date, booking_hour, booking_day_of_week";

/// One part: the name the models' SQL reads it under, and the query over Silver (`fact`,
/// `unpaid`, `orphans`) that builds it.
struct Part {
    name: &'static str,
    sql: fn() -> String,
}

/// Per booking key: `orders` (distinct bookings at their first match), `paid` (distinct bookings
/// with a sale), `seats` (seat rows of sales) and `seats_value` (their prices). A booking's seat
/// rows are folded into one row first, so each booking is counted once without a distinct count
/// per model.
fn orders_sql() -> String {
    format!(
        "
SELECT {BOOKING_KEY},
       CAST(sum(CASE WHEN first_match AND booking_event_uid IS NOT NULL THEN 1 ELSE 0 END)
            AS BIGINT) AS orders,
       CAST(sum(CASE WHEN sale AND booking_event_uid IS NOT NULL THEN 1 ELSE 0 END)
            AS BIGINT) AS paid,
       CAST(sum(seats) AS BIGINT) AS seats,
       sum(seats_value) AS seats_value
FROM (
    SELECT booking_event_uid, {BOOKING_KEY},
           bool_or(is_first_booking_match) AS first_match, bool_or(is_sale) AS sale,
           sum(CASE WHEN is_sale THEN 1 ELSE 0 END) AS seats,
           sum(CASE WHEN is_sale THEN CAST(seat_price AS DECIMAL(18,2))
                    ELSE CAST(0 AS DECIMAL(18,2)) END) AS seats_value
    FROM fact WHERE is_first_booking_match OR is_sale
    GROUP BY booking_event_uid, {BOOKING_KEY}
)
GROUP BY {BOOKING_KEY}
"
    )
}

/// Per booking key and payment method, type and status: `attempts` (distinct payments at their
/// first match) and `amount` (their amounts).
fn attempts_sql() -> String {
    format!(
        "
SELECT {BOOKING_KEY}, payment_method, payment_type, payment_status,
       count(*) AS attempts, sum(amount) AS amount
FROM (SELECT DISTINCT payment_event_uid, {BOOKING_KEY}, payment_method, payment_type,
             payment_status, CAST(amount AS DECIMAL(18,2)) AS amount
      FROM fact WHERE is_first_payment_match)
GROUP BY {BOOKING_KEY}, payment_method, payment_type, payment_status
"
    )
}

/// Per booking key: `bookings` released unpaid (one row each in Silver).
fn unpaid_orders_sql() -> String {
    format!(
        "
SELECT {BOOKING_KEY}, count(*) AS bookings FROM unpaid GROUP BY {BOOKING_KEY}
"
    )
}

/// Per payment method, type and status: `attempts` no booking matched and their `amount`.
fn orphan_attempts_sql() -> String {
    "
SELECT payment_method, payment_type, payment_status, count(*) AS attempts,
       sum(CAST(amount AS DECIMAL(18,2))) AS amount
FROM orphans GROUP BY payment_method, payment_type, payment_status
"
    .to_string()
}

const PARTS: [Part; 4] = [
    Part {
        name: "orders",
        sql: orders_sql,
    },
    Part {
        name: "attempts",
        sql: attempts_sql,
    },
    Part {
        name: "unpaid_orders",
        sql: unpaid_orders_sql,
    },
    Part {
        name: "orphan_attempts",
        sql: orphan_attempts_sql,
    },
];

/// The parts built from one selection of Silver's rows, ready to register for the models.
pub(crate) struct Parts {
    tables: Vec<(&'static str, SchemaRef, Vec<RecordBatch>)>,
}

impl Parts {
    /// Builds every part from the Silver tables registered in `silver` (as `fact`, `unpaid`,
    /// `orphans`). One after another: each query keeps both cores busy, and the largest hash
    /// tables (a row per booking, a row per payment) are not held at the same time.
    pub(crate) async fn build(silver: &SessionContext) -> Result<Parts, String> {
        let mut tables = Vec::new();
        for part in &PARTS {
            let started = Instant::now();
            let frame = silver
                .sql(&(part.sql)())
                .await
                .map_err(|e| format!("part {}: {e}", part.name))?;
            let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
            let batches = frame
                .collect()
                .await
                .map_err(|e| format!("part {}: {e}", part.name))?;
            tracing::debug!(
                part = part.name,
                rows = batches.iter().map(RecordBatch::num_rows).sum::<usize>(),
                ms = started.elapsed().as_millis(),
                "gold part built"
            );
            tables.push((part.name, schema, batches));
        }
        Ok(Parts { tables })
    }

    /// Registers every part in `ctx` under its name.
    pub(crate) fn register(&self, ctx: &SessionContext) -> Result<(), String> {
        for (name, schema, batches) in &self.tables {
            let table = MemTable::try_new(schema.clone(), vec![batches.clone()])
                .map_err(|e| format!("part {name}: {e}"))?;
            ctx.register_table(*name, Arc::new(table))
                .map_err(|e| format!("part {name}: {e}"))?;
        }
        Ok(())
    }
}
