//! A backfill: late events brought into Silver as if they had arrived before everything else.
//!
//! Events older than the watermark when they arrive go to `silver.late_events`, whole. When they
//! are history (yesterday's file ingested into a lake already running today), a backfill joins
//! the late events whose event time falls in a range in a join of their own: from an empty
//! state, in their arrival order, drained at the end, exactly as a run that had met them first
//! would have. Its matches, unpaid bookings and orphan payments are appended to Silver;
//! `silver.late_events` keeps only what is late even among them, marked with the backfill's
//! number so that no later backfill takes it again.
//!
//! Exactly once: a backfill has a number (one past the last recorded on `silver.late_events`)
//! and a plan, written create-only, naming its range and the version of `silver.late_events` it
//! reads. Each output commit records `bookings_fact:backfill:<table>` = that number, and
//! `silver.late_events` is rewritten last, in one commit that records it too. After a crash the
//! planned backfill is finished first: the same events give the same rows, and tables that have
//! them are skipped.

use std::collections::HashSet;
use std::sync::Arc;

use boxoffice_events::model::Hub;
use boxoffice_events::validate::validate_event;
use boxoffice_lake::{
    AppendOutcome, Files, Lake, Layer, PartitionRows, Replacement, committed_version, read_rows,
    replace_once, with_schema,
};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use deltalake::arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray};
use deltalake::arrow::compute::filter_record_batch;
use deltalake::arrow::datatypes::{Int32Type, Int64Type, TimestampMicrosecondType};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::input::{BOOKINGS, BronzeEvent, PAYMENTS};
use super::join::{ArrivalKey, JoinEvent, JoinState, RawBody};
use super::shard::Shard;
use super::sharding::ShardId;
use super::{BatchReport, JOB, Outputs, Plan, Settings, output};
use crate::JobError;
use crate::expectations::Expectations;
use crate::silver::tables::LATE_EVENTS;

/// Which late events a backfill takes: event times in `from..to` (either end open).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TimeRange {
    /// Inclusive start.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive end.
    pub to: Option<DateTime<Utc>>,
}

impl TimeRange {
    /// Whether `t` falls in the range.
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.from.is_none_or(|f| t >= f) && self.to.is_none_or(|e| t < e)
    }

    /// `2025-01-01T00:00:00Z..2025-01-02T00:00:00Z`, with empty ends left empty.
    pub fn describe(&self) -> String {
        let end = |t: Option<DateTime<Utc>>| {
            t.map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_default()
        };
        format!("{}..{}", end(self.from), end(self.to))
    }
}

/// A backfill's plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct BackfillPlan {
    number: u64,
    range: TimeRange,
    /// The version of `silver.late_events` whose rows it takes.
    late_version: u64,
}

/// What a backfill did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackfillReport {
    /// Its number.
    pub number: u64,
    /// Its range.
    pub range: TimeRange,
    /// Late events it took.
    pub taken: u64,
    /// It finished one a crash had interrupted.
    pub resumed: bool,
    /// What its join produced (`late`: events still late, which stay in late_events).
    pub batch: BatchReport,
}

fn error(detail: impl std::fmt::Display) -> JobError {
    JobError::Backfill {
        job: JOB,
        detail: detail.to_string(),
    }
}

fn app_prefix() -> String {
    format!("{JOB}:backfill")
}

fn plans(lake: &Lake) -> Result<Files, JobError> {
    Ok(lake.files(Layer::System, &format!("jobs/{JOB}/backfills"))?)
}

/// Finishes a backfill a crash interrupted, if any.
pub async fn finish_unfinished(
    lake: &Lake,
    settings: &Settings,
    expectations: &Expectations,
) -> Result<Option<BackfillReport>, JobError> {
    let files = plans(lake)?;
    let Some(name) = files.list("").await?.into_iter().next() else {
        return Ok(None);
    };
    let bytes = files
        .get(&name)
        .await?
        .ok_or_else(|| error(format!("{name} vanished")))?;
    let plan: BackfillPlan = serde_json::from_slice(&bytes).map_err(error)?;
    let mut report = execute(lake, settings, expectations, &plan).await?;
    files.delete(&name).await?;
    report.resumed = true;
    Ok(Some(report))
}

/// Joins the late events of `range` as history and brings the results into Silver.
pub async fn backfill(
    lake: &Lake,
    settings: &Settings,
    expectations: &Expectations,
    range: TimeRange,
) -> Result<BackfillReport, JobError> {
    let Some(mut late) = lake.open_table(&LATE_EVENTS).await? else {
        return Err(error(
            "silver.late_events does not exist yet: no event has arrived late on this lake",
        ));
    };
    let number = committed_version(
        &mut late,
        &format!("{}:{}", app_prefix(), LATE_EVENTS.qualified_name()),
    )
    .await
    .map_err(|e| lake.delta_error(&LATE_EVENTS, e))?
    .map_or(1, |v| v as u64 + 1);
    let plan = BackfillPlan {
        number,
        range,
        late_version: late.version().unwrap_or_default(),
    };
    let name = format!("{number:020}.json");
    let text = serde_json::to_vec_pretty(&plan).map_err(error)?;
    let files = plans(lake)?;
    if !files.put_new(&name, Bytes::from(text)).await? {
        return Err(JobError::Concurrent {
            job: JOB,
            shard: String::new(),
            batch: number,
        });
    }
    let report = execute(lake, settings, expectations, &plan).await?;
    files.delete(&name).await?;
    Ok(report)
}

/// Where a late event sat in Bronze: what identifies its row in late_events.
type Place = (String, i32, i64);

async fn execute(
    lake: &Lake,
    settings: &Settings,
    expectations: &Expectations,
    plan: &BackfillPlan,
) -> Result<BackfillReport, JobError> {
    let mut late = lake
        .open_table(&LATE_EVENTS)
        .await?
        .ok_or_else(|| error("silver.late_events is gone"))?;
    late.load_version(plan.late_version)
        .await
        .map_err(|e| lake.delta_error(&LATE_EVENTS, e))?;
    let rows = read_rows(&late)
        .await
        .map_err(|e| lake.delta_error(&LATE_EVENTS, e))?;
    let mut events = Vec::new();
    let mut taken: HashSet<Place> = HashSet::new();
    for batch in &rows {
        events_in(batch, plan.range, &mut events, &mut taken)?;
    }
    events.sort_unstable_by_key(|e: &BronzeEvent| e.key);

    let mut state = JoinState::new(settings.join);
    let joined_plan = Plan {
        batch: plan.number,
        ranges: Vec::new(),
        drain: true,
        join: settings.join,
    };
    let joined = output::join_batch(&mut state, joined_plan, events);
    let outputs = Outputs {
        app_prefix: Some(app_prefix()),
        known_quarantine: None,
    };
    // A backfill is one join of its own, whatever the live job's split: it writes as one shard.
    let whole = ShardId { index: 0, of: 1 };
    let mut writer = Shard::detached(lake, whole, settings.clone(), expectations.clone(), outputs)?;
    let mut batch_outputs = writer.outputs_of(joined)?;
    // Late events are not appended: late_events is rewritten last, with them in it.
    let still_late: Vec<PartitionRows> = batch_outputs
        .tables
        .iter()
        .position(|(def, _)| def.name == LATE_EVENTS.name)
        .map(|i| batch_outputs.tables.remove(i).1)
        .unwrap_or_default();
    let report = writer.commit_outputs(batch_outputs).await?;
    crate::crash_point(&format!("{JOB}:backfill:before-late-events"));
    // A compaction committing meanwhile makes the rewrite conflict: read again and retry.
    let mut tries = 0;
    loop {
        tries += 1;
        match rewrite_late_events(lake, plan, &taken, still_late.clone()).await {
            Err(e) if tries < 5 && super::refresh::is_commit_conflict(&e) => {
                tracing::info!("silver.late_events changed during the backfill; trying again");
            }
            other => break other?,
        }
    }
    Ok(BackfillReport {
        number: plan.number,
        range: plan.range,
        taken: taken.len() as u64,
        resumed: false,
        batch: report,
    })
}

/// The events of one late_events batch whose event time is in `range`, as the join reads them.
fn events_in(
    batch: &RecordBatch,
    range: TimeRange,
    events: &mut Vec<BronzeEvent>,
    taken: &mut HashSet<Place>,
) -> Result<(), JobError> {
    let col = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| error(format!("silver.late_events has no {name} column")))
    };
    let text = |name: &str| -> Result<StringArray, JobError> {
        col(name)?
            .as_string_opt::<i32>()
            .cloned()
            .ok_or_else(|| error(format!("{name} is not text")))
    };
    let (hubs, uids) = (text("hub")?, text("event_uid")?);
    let bodies = Arc::new(text("body")?);
    let times = col("event_time")?
        .as_primitive_opt::<TimestampMicrosecondType>()
        .ok_or_else(|| error("event_time is not a timestamp"))?;
    let arrivals = col("arrival_time")?
        .as_primitive_opt::<TimestampMicrosecondType>()
        .ok_or_else(|| error("arrival_time is not a timestamp"))?;
    let partitions = col("partition_id")?
        .as_primitive_opt::<Int32Type>()
        .ok_or_else(|| error("partition_id is not an int"))?;
    let sequences = col("sequence_number")?
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| error("sequence_number is not a long"))?;
    let judged = batch
        .column_by_name("backfill")
        .and_then(|c| c.as_primitive_opt::<Int64Type>());
    for i in 0..batch.num_rows() {
        let Some(time) = DateTime::from_timestamp_micros(times.value(i)) else {
            continue;
        };
        // Late even within an earlier backfill's history: that backfill's verdict stands.
        if !range.contains(time) || judged.is_some_and(|b| b.is_valid(i)) {
            continue;
        }
        let (hub, code) = match hubs.value(i) {
            "payments" => (Hub::Payments, PAYMENTS),
            _ => (Hub::Bookings, BOOKINGS),
        };
        let key = ArrivalKey {
            at: arrivals.value(i),
            hub: code,
            partition: partitions.value(i),
            sequence: sequences.value(i),
        };
        if !taken.insert((hubs.value(i).to_string(), key.partition, key.sequence)) {
            continue; // the same event twice in late_events (it never is, but once is enough)
        }
        // It was valid when it went to late_events; the same validation reads it again.
        let event = validate_event(bodies.value(i), Some(hub)).map_err(|invalid| {
            error(format!(
                "a late event at {} partition {} sequence {} no longer validates: {}",
                hubs.value(i),
                key.partition,
                key.sequence,
                invalid.reason()
            ))
        })?;
        events.push(BronzeEvent {
            key,
            event: Ok(JoinEvent::new(
                uids.value(i),
                key,
                event,
                Some(RawBody::new(Arc::clone(&bodies), i)),
            )),
        });
    }
    Ok(())
}

/// Late rows marked as judged by backfill `number`.
fn judged_by(rows: &RecordBatch, number: u64) -> Result<RecordBatch, JobError> {
    let schema = rows.schema();
    let columns = schema
        .fields()
        .iter()
        .zip(rows.columns())
        .map(|(field, column)| {
            if field.name() == "backfill" {
                Arc::new(Int64Array::from(vec![number as i64; rows.num_rows()])) as ArrayRef
            } else {
                Arc::clone(column)
            }
        })
        .collect();
    RecordBatch::try_new(schema, columns).map_err(error)
}

/// late_events without the rows the backfill took, plus those still late after it, in one
/// commit that records the backfill done.
async fn rewrite_late_events(
    lake: &Lake,
    plan: &BackfillPlan,
    taken: &HashSet<Place>,
    still_late: Vec<PartitionRows>,
) -> Result<(), JobError> {
    let mut late = lake.ensure_table(&LATE_EVENTS).await?;
    let mut keep = Vec::new();
    for batch in read_rows(&late)
        .await
        .map_err(|e| lake.delta_error(&LATE_EVENTS, e))?
    {
        let place = |i: usize| -> Option<Place> {
            let hub = batch.column_by_name("hub")?.as_string_opt::<i32>()?;
            let p = batch
                .column_by_name("partition_id")?
                .as_primitive_opt::<Int32Type>()?;
            let s = batch
                .column_by_name("sequence_number")?
                .as_primitive_opt::<Int64Type>()?;
            Some((hub.value(i).to_string(), p.value(i), s.value(i)))
        };
        let stays: deltalake::arrow::array::BooleanArray = (0..batch.num_rows())
            .map(|i| Some(place(i).is_none_or(|p| !taken.contains(&p))))
            .collect();
        let kept = filter_record_batch(&batch, &stays).map_err(error)?;
        if kept.num_rows() > 0 {
            let kept = with_schema(&kept, &LATE_EVENTS.arrow_schema()).map_err(error)?;
            keep.push(PartitionRows::unsplit(kept));
        }
    }
    for rows in still_late.into_iter().filter(|r| r.batch.num_rows() > 0) {
        keep.push(PartitionRows::unsplit(judged_by(&rows.batch, plan.number)?));
    }
    let app_id = format!("{}:{}", app_prefix(), LATE_EVENTS.qualified_name());
    let replacement = Replacement {
        from: None,
        keep,
        guard: (app_id, plan.number as i64),
        transactions: Vec::new(),
        metadata: [
            ("operation".to_string(), json!(format!("{JOB} backfill"))),
            ("backfill".to_string(), json!(plan.number)),
            ("range".to_string(), json!(plan.range.describe())),
        ]
        .into(),
    };
    match replace_once(&mut late, replacement, LATE_EVENTS.writer_properties()).await {
        Ok(AppendOutcome::Committed(_) | AppendOutcome::AlreadyCommitted) => Ok(()),
        Err(e) => Err(JobError::Commit {
            table: LATE_EVENTS.qualified_name(),
            source: Box::new(e.into()),
        }),
    }
}
