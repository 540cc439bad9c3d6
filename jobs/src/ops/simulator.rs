//! A booking service at work: it inserts bookings, moves them BOOKED -> COMPLETED or CANCELLED,
//! changes ticket counts, and sometimes deletes one. Each tick's changes are one MERGE, so one
//! commit of the change data feed holds inserts, update pre/post images and deletes together,
//! as a busy service's would. Deterministic under a seed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use boxoffice_lake::Lake;
use deltalake::DeltaTable;
use deltalake::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use deltalake::arrow::datatypes::{
    DataType, Decimal128Type, Field, Int32Type, Schema, TimestampMicrosecondType,
};
use deltalake::datafusion::prelude::SessionContext;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use super::RAW_MOVIE_BOOKINGS;
use crate::JobError;
use crate::cdc::changes::{Booking, booking_arrays};

/// Movies the simulator books.
const MOVIES: u32 = 40;

/// What one tick did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tick {
    /// Bookings inserted.
    pub inserted: u64,
    /// Bookings updated (status or ticket count).
    pub updated: u64,
    /// Bookings deleted.
    pub deleted: u64,
    /// The table version committed (`None`: nothing changed).
    pub version: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Insert,
    Update,
    Delete,
}

/// The simulated service, with the bookings it can still change.
pub struct Simulator {
    table: DeltaTable,
    rng: ChaCha8Rng,
    next: u64,
    /// Bookings still BOOKED (the ones that can change), by id.
    open: Vec<Booking>,
    start: i64,
}

impl Simulator {
    /// Opens (or creates) the table and learns which bookings it holds: numbering continues
    /// after the highest `S<n>` id, and only BOOKED bookings are changed later.
    pub async fn open(lake: &Lake, seed: u64) -> Result<Simulator, JobError> {
        let table = lake.ensure_table(&RAW_MOVIE_BOOKINGS).await?;
        let mut open = Vec::new();
        let mut next = 1;
        if table.snapshot().is_ok_and(|s| s.log_data().num_files() > 0) {
            let ctx = SessionContext::new();
            crate::cdc::register(&ctx, "t", &RAW_MOVIE_BOOKINGS, &table).await?;
            let batches = crate::cdc::query(
                &ctx,
                &RAW_MOVIE_BOOKINGS,
                "SELECT * FROM t ORDER BY booking_id",
            )
            .await?;
            for b in &batches {
                for booking in decode(b)? {
                    if let Some(n) = booking
                        .booking_id
                        .strip_prefix('S')
                        .and_then(|n| n.parse::<u64>().ok())
                    {
                        next = next.max(n + 1);
                    }
                    if booking.status.as_deref() == Some("BOOKED") {
                        open.push(booking);
                    }
                }
            }
        }
        Ok(Simulator {
            table,
            rng: ChaCha8Rng::seed_from_u64(seed),
            next,
            open,
            start: chrono::Utc::now().timestamp_micros(),
        })
    }

    /// Makes `changes` changes (about half of them inserts) and commits them as one MERGE.
    pub async fn tick(&mut self, changes: usize) -> Result<Tick, JobError> {
        let mut planned: HashMap<String, (Op, Booking)> = HashMap::new();
        let mut order = Vec::new();
        let mut touched = HashSet::new();
        let mut tick = Tick::default();
        for _ in 0..changes {
            let roll: f64 = self.rng.random();
            let pick = (roll >= 0.5 && !self.open.is_empty())
                .then(|| self.rng.random_range(0..self.open.len()))
                .filter(|&i| !touched.contains(&self.open[i].booking_id));
            let (op, booking) = match pick {
                None => {
                    tick.inserted += 1;
                    (Op::Insert, self.new_booking())
                }
                Some(i) => {
                    let mut b = self.open.swap_remove(i);
                    let op = if roll < 0.70 {
                        b.status = Some("COMPLETED".into());
                        Op::Update
                    } else if roll < 0.82 {
                        b.status = Some("CANCELLED".into());
                        Op::Update
                    } else if roll < 0.92 {
                        b.ticket_count = Some(self.rng.random_range(1..=8));
                        self.open.push(b.clone()); // still BOOKED
                        Op::Update
                    } else {
                        Op::Delete
                    };
                    if op == Op::Delete {
                        tick.deleted += 1;
                    } else {
                        tick.updated += 1;
                    }
                    (op, b)
                }
            };
            touched.insert(booking.booking_id.clone());
            if op == Op::Insert {
                self.open.push(booking.clone());
            }
            order.push(booking.booking_id.clone());
            planned.insert(booking.booking_id.clone(), (op, booking));
        }
        if planned.is_empty() {
            return Ok(tick);
        }
        let rows: Vec<(Op, Booking)> = order.iter().filter_map(|id| planned.remove(id)).collect();
        tick.version = self.commit(rows).await?;
        Ok(tick)
    }

    fn new_booking(&mut self) -> Booking {
        let id = self.next;
        self.next += 1;
        let movie = self.rng.random_range(1..=MOVIES);
        Booking {
            booking_id: format!("S{id:09}"),
            customer_id: Some(format!("C{:05}", self.rng.random_range(1..=20_000))),
            movie_id: Some(format!("M{movie:03}")),
            booking_date: Some(self.start + id as i64 * 1_000),
            status: Some("BOOKED".into()),
            ticket_count: Some(self.rng.random_range(1..=6)),
            // 8.00 to 20.00 in steps of 0.50, fixed per movie.
            ticket_price: Some(800 + (movie as i128 % 25) * 50),
        }
    }

    async fn commit(&mut self, rows: Vec<(Op, Booking)>) -> Result<Option<i64>, JobError> {
        let error = |e: &dyn std::fmt::Display| {
            JobError::Ops(format!("{}: {e}", RAW_MOVIE_BOOKINGS.qualified_name()))
        };
        let mut columns = booking_arrays(rows.iter().map(|(_, b)| b));
        columns.push(Arc::new(StringArray::from(
            rows.iter()
                .map(|(op, _)| match op {
                    Op::Insert => "insert",
                    Op::Update => "update",
                    Op::Delete => "delete",
                })
                .collect::<Vec<_>>(),
        )) as ArrayRef);
        let mut fields: Vec<Field> = RAW_MOVIE_BOOKINGS
            .arrow_schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("op", DataType::Utf8, false));
        let batch =
            RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| error(&e))?;
        let ctx = SessionContext::new();
        let source = ctx.read_batch(batch).map_err(|e| error(&e))?;
        let names: Vec<String> = RAW_MOVIE_BOOKINGS
            .arrow_schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let properties = boxoffice_lake::commit_properties().with_metadata(HashMap::from([(
            "operation".to_string(),
            json!("cdc simulate"),
        )]));
        let (table, _) = self
            .table
            .clone()
            .merge(source, "target.booking_id = source.booking_id")
            .with_source_alias("source")
            .with_target_alias("target")
            .with_commit_properties(properties)
            .when_matched_delete(|d| d.predicate("source.op = 'delete'"))
            .and_then(|m| {
                m.when_matched_update(|u| {
                    names
                        .iter()
                        .filter(|c| *c != "booking_id")
                        .fold(u.predicate("source.op = 'update'"), |u, c| {
                            u.update(c.as_str(), format!("source.{c}"))
                        })
                })
            })
            .and_then(|m| {
                m.when_not_matched_insert(|i| {
                    names
                        .iter()
                        .fold(i.predicate("source.op = 'insert'"), |i, c| {
                            i.set(c.as_str(), format!("source.{c}"))
                        })
                })
            })
            .map_err(|e| error(&e))?
            .await
            .map_err(|e| error(&e))?;
        self.table = table;
        Ok(self.table.version().and_then(|v| i64::try_from(v).ok()))
    }
}

/// The booking columns of a table scan.
fn decode(batch: &RecordBatch) -> Result<Vec<Booking>, JobError> {
    let text = |name: &str| -> Result<StringArray, JobError> {
        let column = batch
            .column_by_name(name)
            .ok_or_else(|| JobError::Ops(format!("no {name} column")))?;
        let cast = deltalake::arrow::compute::cast(column, &DataType::Utf8)
            .map_err(|e| JobError::Ops(format!("{name}: {e}")))?;
        Ok(cast.as_string::<i32>().clone())
    };
    let (ids, customers, movies, statuses) = (
        text("booking_id")?,
        text("customer_id")?,
        text("movie_id")?,
        text("status")?,
    );
    let counts = batch
        .column_by_name("ticket_count")
        .and_then(|c| c.as_primitive_opt::<Int32Type>())
        .ok_or_else(|| JobError::Ops("ticket_count is not an int".into()))?;
    let dates = batch
        .column_by_name("booking_date")
        .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
        .ok_or_else(|| JobError::Ops("booking_date is not a timestamp".into()))?;
    let prices = batch
        .column_by_name("ticket_price")
        .and_then(|c| c.as_primitive_opt::<Decimal128Type>())
        .ok_or_else(|| JobError::Ops("ticket_price is not a decimal".into()))?;
    let opt = |a: &StringArray, i: usize| a.is_valid(i).then(|| a.value(i).to_string());
    Ok((0..batch.num_rows())
        .map(|i| Booking {
            booking_id: ids.value(i).to_string(),
            customer_id: opt(&customers, i),
            movie_id: opt(&movies, i),
            booking_date: dates.is_valid(i).then(|| dates.value(i)),
            status: opt(&statuses, i),
            ticket_count: counts.is_valid(i).then(|| counts.value(i)),
            ticket_price: prices.is_valid(i).then(|| prices.value(i)),
        })
        .collect())
}
