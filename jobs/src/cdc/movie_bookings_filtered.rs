//! `silver/movie_bookings_filtered`: the latest state of every booking. Bronze changes are
//! applied in commit order; per booking only the last one counts (an insert or update sets the
//! row, a delete removes it), so one MERGE applies a whole run's changes. A change that cannot
//! be applied (unknown status, negative ticket count, no movie) goes to quarantine with its
//! reason, and the booking keeps its state from before it.

use std::collections::BTreeMap;
use std::sync::Arc;

use boxoffice_ingest::bronze::QuarantineRow;
use boxoffice_lake::Lake;
use chrono::{TimeZone, Utc};
use deltalake::DeltaTable;
use deltalake::arrow::array::{
    ArrayRef, BooleanArray, Int64Array, RecordBatch, TimestampMicrosecondArray,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use deltalake::datafusion::prelude::SessionContext;

use super::changes::{Booking, ChangeRow, booking_arrays, refusal, to_json};
use super::flow::{Fresh, changes_between};
use super::tables::{MOVIE_BOOKING_CDC_EVENTS as BRONZE, MOVIE_BOOKINGS_FILTERED as FILTERED};
use super::{app_id, cdc_error, reaching, to_take};
use crate::JobError;

/// What the step did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FilteredReport {
    /// Bookings set or removed.
    pub bookings: u64,
    /// Changes refused.
    pub quarantined: u64,
}

/// A booking's last change in a run.
enum Last {
    Set(Booking, i64, i64),
    Removed,
}

/// Applies the Bronze changes after the version this table has reached, through the version
/// Bronze has reached (`fresh`: what the Bronze step appended in this run).
pub(crate) async fn run(
    lake: &Lake,
    bronze: &mut DeltaTable,
    table: &mut DeltaTable,
    fresh: Option<&Fresh>,
) -> Result<FilteredReport, JobError> {
    let Some((after, through)) = to_take(bronze, &BRONZE, table, &FILTERED).await? else {
        return Ok(FilteredReport::default());
    };
    let rows = changes_between(bronze, fresh, after, through).await?;
    let mut last: BTreeMap<String, Last> = BTreeMap::new();
    let mut refused = Vec::new();
    for row in &rows {
        if row.deletes() {
            last.insert(row.booking.booking_id.clone(), Last::Removed);
        } else if row.sets_state() {
            match refusal(row) {
                None => {
                    last.insert(
                        row.booking.booking_id.clone(),
                        Last::Set(
                            row.booking.clone(),
                            row.change_timestamp,
                            row.commit_version,
                        ),
                    );
                }
                Some(reason) => refused.push(quarantine_row(row, reason)),
            }
        }
    }
    quarantine(lake, &refused, through).await?;
    let report = FilteredReport {
        bookings: last.len() as u64,
        quarantined: refused.len() as u64,
    };
    let properties = reaching(&FILTERED, through);
    if last.is_empty() {
        super::record_reached(table, &FILTERED, through).await?;
        return Ok(report);
    }
    let ctx = SessionContext::new();
    let source = ctx
        .read_batch(source_batch(&last)?)
        .map_err(|e| cdc_error(&FILTERED, e))?;
    let columns: Vec<String> = FILTERED
        .arrow_schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let merge = table
        .clone()
        .merge(source, "target.booking_id = source.booking_id")
        .with_source_alias("source")
        .with_target_alias("target")
        .with_commit_properties(properties)
        .when_matched_delete(|d| d.predicate("source.removed"))
        .and_then(|m| {
            m.when_matched_update(|u| {
                columns
                    .iter()
                    .fold(u.predicate("NOT source.removed"), |u, c| {
                        u.update(c.as_str(), format!("source.{c}"))
                    })
            })
        })
        .and_then(|m| {
            m.when_not_matched_insert(|i| {
                columns
                    .iter()
                    .fold(i.predicate("NOT source.removed"), |i, c| {
                        i.set(c.as_str(), format!("source.{c}"))
                    })
            })
        })
        .map_err(|e| cdc_error(&FILTERED, e))?;
    (*table, _) = merge.await.map_err(|e| cdc_error(&FILTERED, e))?;
    super::ensure_reached(table, &FILTERED, through).await?;
    Ok(report)
}

/// The MERGE source: one row per booking changed, with `removed` for deletes.
fn source_batch(last: &BTreeMap<String, Last>) -> Result<RecordBatch, JobError> {
    let empty = |id: &str| Booking {
        booking_id: id.to_string(),
        customer_id: None,
        movie_id: None,
        booking_date: None,
        status: None,
        ticket_count: None,
        ticket_price: None,
    };
    let mut bookings = Vec::new();
    let (mut times, mut versions, mut removed) = (Vec::new(), Vec::new(), Vec::new());
    for (id, change) in last {
        match change {
            Last::Set(b, at, version) => {
                bookings.push(b.clone());
                times.push(*at);
                versions.push(*version);
                removed.push(false);
            }
            Last::Removed => {
                bookings.push(empty(id));
                times.push(0);
                versions.push(0);
                removed.push(true);
            }
        }
    }
    let mut columns = booking_arrays(bookings.iter());
    columns.push(Arc::new(TimestampMicrosecondArray::from(times).with_timezone("UTC")) as ArrayRef);
    columns.push(Arc::new(Int64Array::from(versions)));
    columns.push(Arc::new(BooleanArray::from(removed)));
    let mut fields: Vec<Field> = FILTERED
        .arrow_schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    fields.push(Field::new("removed", DataType::Boolean, false));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| cdc_error(&FILTERED, e))
}

fn quarantine_row(row: &ChangeRow, reason: String) -> QuarantineRow {
    QuarantineRow {
        received_at: Utc
            .timestamp_micros(row.change_timestamp)
            .single()
            .unwrap_or_else(Utc::now),
        source: "cdc".to_string(),
        hub: None,
        reason,
        body: to_json(row),
        stage: FILTERED.qualified_name(),
        partition_id: None,
        sequence_number: Some(row.commit_version),
        event_uid: None,
        source_file: None,
        line: None,
    }
}

/// Records refused changes once per source version reached.
async fn quarantine(lake: &Lake, rows: &[QuarantineRow], through: i64) -> Result<(), JobError> {
    crate::quarantine::quarantine_once(lake, rows, &app_id(&FILTERED), through, "cdc").await
}
