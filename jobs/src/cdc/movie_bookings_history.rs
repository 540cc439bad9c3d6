//! `silver/movie_bookings_history`: every version of every booking (type 2 slowly changing
//! dimension). An insert or update opens a version valid from its commit; the next change to
//! the booking closes it (valid_to = that change's time, is_current false); a delete closes the
//! last one without opening another. Refused changes (see [`super::changes::refusal`]) open
//! nothing.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::arrow::array::{
    ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use deltalake::datafusion::prelude::SessionContext;

use super::changes::{Booking, refusal};
use super::flow::{Fresh, changes_between};
use super::tables::{MOVIE_BOOKING_CDC_EVENTS as BRONZE, MOVIE_BOOKINGS_HISTORY as HISTORY};
use super::{cdc_error, reaching, record_reached, to_take};
use crate::JobError;

/// One row of the MERGE source: a new version to insert, or the close of the version the
/// table holds as current.
struct Version {
    booking: Booking,
    valid_from: i64,
    valid_to: Option<i64>,
    commit_version: i64,
    close: bool,
}

/// Adds the versions of the Bronze changes after the version this table has reached, through
/// the version Bronze has reached (`fresh`: what the Bronze step appended in this run); returns
/// how many versions it added.
pub(crate) async fn run(
    bronze: &mut DeltaTable,
    table: &mut DeltaTable,
    fresh: Option<&Fresh>,
) -> Result<u64, JobError> {
    let Some((after, through)) = to_take(bronze, &BRONZE, table, &HISTORY).await? else {
        return Ok(0);
    };
    let rows = changes_between(bronze, fresh, after, through).await?;
    let mut out: Vec<Version> = Vec::new();
    // Per booking: the index in `out` of the version this run opened and left open.
    let mut open: HashMap<String, usize> = HashMap::new();
    let mut seen: HashSet<String> = HashSet::new();
    for row in &rows {
        let opens = row.sets_state() && refusal(row).is_none();
        if !opens && !row.deletes() {
            continue; // the old half of an update, or a refused change
        }
        let id = &row.booking.booking_id;
        if let Some(i) = open.remove(id) {
            out[i].valid_to = Some(row.change_timestamp);
        } else if seen.insert(id.clone()) {
            // The booking's first change this run closes the version the table holds.
            out.push(Version {
                booking: row.booking.clone(),
                valid_from: 0,
                valid_to: Some(row.change_timestamp),
                commit_version: row.commit_version,
                close: true,
            });
        }
        if opens {
            open.insert(id.clone(), out.len());
            out.push(Version {
                booking: row.booking.clone(),
                valid_from: row.change_timestamp,
                valid_to: None,
                commit_version: row.commit_version,
                close: false,
            });
        }
    }
    let added = out.iter().filter(|v| !v.close).count() as u64;
    if out.is_empty() {
        record_reached(table, &HISTORY, through).await?;
        return Ok(0);
    }
    let ctx = SessionContext::new();
    let source = ctx
        .read_batch(source_batch(&out)?)
        .map_err(|e| cdc_error(&HISTORY, e))?;
    let columns: Vec<String> = HISTORY
        .arrow_schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    (*table, _) = table
        .clone()
        .merge(
            source,
            "target.booking_id = source.booking_id AND target.is_current AND source.action = 'close'",
        )
        .with_source_alias("source")
        .with_target_alias("target")
        .with_commit_properties(reaching(&HISTORY, through))
        .when_matched_update(|u| {
            u.update("valid_to", "source.valid_to")
                .update("is_current", "false")
        })
        .and_then(|m| {
            m.when_not_matched_insert(|i| {
                columns
                    .iter()
                    .fold(i.predicate("source.action = 'insert'"), |i, c| {
                        i.set(c.as_str(), format!("source.{c}"))
                    })
            })
        })
        .map_err(|e| cdc_error(&HISTORY, e))?
        .await
        .map_err(|e| cdc_error(&HISTORY, e))?;
    super::ensure_reached(table, &HISTORY, through).await?;
    Ok(added)
}

fn source_batch(versions: &[Version]) -> Result<RecordBatch, JobError> {
    let mut columns = super::changes::booking_arrays(versions.iter().map(|v| &v.booking));
    columns.push(Arc::new(
        TimestampMicrosecondArray::from(versions.iter().map(|v| v.valid_from).collect::<Vec<_>>())
            .with_timezone("UTC"),
    ) as ArrayRef);
    columns.push(Arc::new(
        TimestampMicrosecondArray::from(versions.iter().map(|v| v.valid_to).collect::<Vec<_>>())
            .with_timezone("UTC"),
    ));
    columns.push(Arc::new(BooleanArray::from(
        versions
            .iter()
            .map(|v| v.valid_to.is_none())
            .collect::<Vec<_>>(),
    )));
    columns.push(Arc::new(Int64Array::from(
        versions
            .iter()
            .map(|v| v.commit_version)
            .collect::<Vec<_>>(),
    )));
    columns.push(Arc::new(StringArray::from(
        versions
            .iter()
            .map(|v| if v.close { "close" } else { "insert" })
            .collect::<Vec<_>>(),
    )));
    let mut fields: Vec<Field> = HISTORY
        .arrow_schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    fields.push(Field::new("action", DataType::Utf8, false));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| cdc_error(&HISTORY, e))
}
