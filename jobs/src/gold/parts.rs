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
//!
//! `orders` and `attempts` count about a million distinct bookings and payments over a large
//! Silver: they are folded with 16-byte uids and numbered keys ([`super::fold`]), in far less
//! memory than a hash aggregation over the text columns (docs/performance.md#gold). The other
//! two are queries.

use std::sync::Arc;
use std::time::Instant;

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::prelude::SessionContext;

/// The key every part but `orphan_attempts` is grouped by.
const BOOKING_KEY: &str =
    "event_id, event_name, event_category, booking_date, booking_hour, booking_day_of_week";

/// One part: the name the models' SQL reads it under, and how it is built from Silver (`fact`,
/// `unpaid`, `orphans`).
struct Part {
    name: &'static str,
    build: Build,
}

/// How a part is built: a query, or a fold with compact keys ([`super::fold`]) for the two that
/// count a million distinct bookings or payments.
enum Build {
    Sql(fn() -> String),
    Orders,
    Attempts,
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
        build: Build::Orders,
    },
    Part {
        name: "attempts",
        build: Build::Attempts,
    },
    Part {
        name: "unpaid_orders",
        build: Build::Sql(unpaid_orders_sql),
    },
    Part {
        name: "orphan_attempts",
        build: Build::Sql(orphan_attempts_sql),
    },
];

impl Part {
    async fn build(
        &self,
        silver: &SessionContext,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), String> {
        match self.build {
            Build::Orders => super::fold::orders(silver, BOOKING_KEY).await,
            Build::Attempts => super::fold::attempts(silver, BOOKING_KEY).await,
            Build::Sql(sql) => {
                let frame = silver.sql(&sql()).await.map_err(|e| e.to_string())?;
                let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
                let batches = frame.collect().await.map_err(|e| e.to_string())?;
                Ok((schema, batches))
            }
        }
    }
}

/// The parts built from one selection of Silver's rows, ready to register for the models.
pub(crate) struct Parts {
    tables: Vec<(&'static str, SchemaRef, Vec<RecordBatch>)>,
}

impl Parts {
    /// Builds every part from the Silver tables registered in `silver` (as `fact`, `unpaid`,
    /// `orphans`), each in a task of its own: the two folds each keep one core busy, and their
    /// tables of compact keys are small enough to be held at the same time.
    pub(crate) async fn build(silver: &SessionContext) -> Result<Parts, String> {
        let tasks: Vec<_> = PARTS
            .iter()
            .map(|part| {
                let silver = silver.clone();
                tokio::spawn(async move {
                    let started = Instant::now();
                    let built = part.build(&silver).await;
                    if let Ok((_, batches)) = &built {
                        tracing::debug!(
                            part = part.name,
                            rows = batches.iter().map(RecordBatch::num_rows).sum::<usize>(),
                            ms = started.elapsed().as_millis(),
                            "gold part built"
                        );
                    }
                    built
                })
            })
            .collect();
        let mut tables = Vec::new();
        for (part, task) in PARTS.iter().zip(tasks) {
            let (schema, batches) = task
                .await
                .map_err(|e| format!("part {}: stopped: {e}", part.name))?
                .map_err(|e| format!("part {}: {e}", part.name))?;
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

#[cfg(test)]
#[path = "parts_tests.rs"]
mod tests;
