//! A batch in two stages: [`join_batch`] feeds its events to the join and takes what the
//! watermark releases (CPU only, on nothing but the state), and [`BookingsFact::write`] turns
//! that into rows and commits them.
//!
//! Overlapping them (writing batch N while N+1 is joined on another thread) was measured and
//! dropped: the read-ahead already keeps both cores busy, so the overlap only added contention
//! (9.5 s either way over 2M events, 10% more CPU).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use boxoffice_ingest::bronze::{QUARANTINE, QuarantineRow, quarantine_batch};
use boxoffice_lake::{
    AppendOutcome, Batch, GroupPolicy, PartitionRows, TableDef, append_grouped, append_once,
};
use chrono::{DateTime, TimeZone, Utc};
use deltalake::DeltaTable;
use serde_json::json;

use super::input::{self, PAYMENTS};
use super::join::{self, JoinOutput, JoinState};
use super::shard::Shard;
use super::{BatchReport, JOB, Plan, rows};
use crate::JobError;
use crate::silver::tables::{
    BOOKINGS_FACT, EXPECTATIONS, LATE_EVENTS, ORPHAN_PAYMENTS, UNPAID_BOOKINGS,
};

/// How a run's commits are named, and which quarantine rows it leaves out.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    /// Prefix of the application transactions (`bookings_fact` when `None`): a full refresh
    /// commits as `bookings_fact:refresh`, so its appends to the live `bronze.quarantine` never
    /// collide with the live job's numbering.
    pub app_prefix: Option<String>,
    /// Quarantine rows already written by an earlier run over the same events (see
    /// [`quarantine_key`]): a refresh does not write them twice.
    pub known_quarantine: Option<Arc<HashSet<String>>>,
}

/// What makes two quarantine rows of this job the same refusal: the event's place for events
/// refused on reading, else the stage, reason and row (without its processing time) for rows an
/// expectation dropped.
pub(crate) fn quarantine_key(row: &QuarantineRow) -> String {
    match (row.partition_id, row.sequence_number) {
        (Some(p), Some(s)) => format!(
            "{}|{}|{p}|{s}",
            row.stage,
            row.hub.as_deref().unwrap_or_default()
        ),
        _ => {
            let body = match serde_json::from_str::<serde_json::Value>(&row.body) {
                Ok(serde_json::Value::Object(mut fields)) => {
                    fields.remove("processed_at");
                    serde_json::Value::Object(fields).to_string()
                }
                _ => row.body.clone(),
            };
            format!("{}|{}|{body}", row.stage, row.reason)
        }
    }
}

/// A batch the join has processed and whose outputs are not written yet.
pub(super) struct Joined {
    /// Its plan.
    pub plan: Plan,
    out: JoinOutput,
    quarantine: Vec<QuarantineRow>,
    /// Filled in as far as the join can; the write adds rows and expectations.
    report: BatchReport,
    processed_at: DateTime<Utc>,
    /// The state's marks right after this batch, for the commits' metadata.
    marks: Freshness,
}

/// How far the join had got: what the commits tell readers (the dashboard's freshness panel).
#[derive(Debug, Clone, Copy)]
pub(super) struct Freshness {
    /// The watermark: Silver is resolved up to here.
    pub watermark: Option<DateTime<Utc>>,
    /// The newest event time seen.
    pub newest_event: Option<DateTime<Utc>>,
}

impl Freshness {
    /// The state's freshness now.
    pub fn of(state: &JoinState) -> Self {
        let marks = state.marks();
        let at = |t: Option<join::Micros>| t.and_then(|t| Utc.timestamp_micros(t).single());
        Freshness {
            watermark: at(state.watermark()),
            newest_event: at(marks.max_booking.max(marks.max_payment)),
        }
    }
}

/// Feeds one batch's events to the join (in their arrival order) and releases what its
/// watermark passed, or everything when the plan drains.
pub(super) fn join_batch(
    state: &mut JoinState,
    plan: Plan,
    events: Vec<input::BronzeEvent>,
) -> Joined {
    let processed_at = Utc::now();
    let mut phases = crate::Phases::new(plan.batch);
    let read_events = events.len() as u64;
    let mut out = JoinOutput::default();
    let mut quarantine = Vec::new();
    for e in events {
        match e.event {
            Ok(event) => state.process(event, &mut out),
            Err(refused) => quarantine.push(quarantine_row(e.key, *refused, processed_at)),
        }
    }
    phases.done("join");
    if plan.drain {
        state.drain(&mut out);
    } else {
        state.evict(&mut out);
    }
    phases.done("evict");
    let report = BatchReport {
        batch: plan.batch,
        events: read_events,
        matches: out.matches.len() as u64,
        unpaid: out.unpaid.len() as u64,
        orphans: out.orphans.len() as u64,
        late: out.late.len() as u64,
        duplicates: out.duplicates,
        match_arrivals: out
            .matches
            .iter()
            .map(|m| m.booking.arrival.at.max(m.payment.arrival.at))
            .collect(),
        ..BatchReport::default()
    };
    Joined {
        plan,
        out,
        quarantine,
        report,
        processed_at,
        marks: Freshness::of(state),
    }
}

/// A batch's rows for every output table, checked and ready to commit.
pub(super) struct BatchOutputs {
    /// The batch's plan (its number versions each commit).
    pub plan: Plan,
    /// The report, complete but for what committing adds.
    pub report: BatchReport,
    /// Each output table and its rows.
    pub tables: Vec<(&'static TableDef, Vec<PartitionRows>)>,
    marks: Freshness,
}

impl Shard {
    /// Builds a joined batch's rows, checks the expectations and commits every output table
    /// (each exactly once), then moves the job's positions past the batch.
    pub(super) async fn write(&mut self, joined: Joined) -> Result<BatchReport, JobError> {
        let outputs = self.outputs_of(joined)?;
        let ranges = outputs.plan.ranges.clone();
        let batch = outputs.plan.batch;
        let mut report = self.commit_outputs(outputs).await?;
        report.shard = Some(self.id);
        input::advance(&mut self.positions, &ranges);
        self.batch = batch;
        Ok(report)
    }

    /// Moves past a joined batch whose outputs were all committed before the last stop, without
    /// building them again: crash recovery rebuilding the join's state.
    pub(super) fn skip_written(&mut self, joined: Joined) {
        input::advance(&mut self.positions, &joined.plan.ranges);
        self.batch = joined.plan.batch;
        free_in_background(joined.out);
    }

    /// A joined batch's rows for every output table, with the expectations checked.
    pub(super) fn outputs_of(&self, joined: Joined) -> Result<BatchOutputs, JobError> {
        let Joined {
            plan,
            out,
            mut quarantine,
            mut report,
            processed_at,
            marks,
        } = joined;
        let mut phases = crate::Phases::new(plan.batch);
        let arrow = |table: &TableDef| {
            let name = table.qualified_name();
            move |source| JobError::Arrow {
                table: name.clone(),
                source,
            }
        };
        let fact = rows::fact_rows(&out.matches, processed_at).map_err(arrow(&BOOKINGS_FACT))?;
        phases.done("fact rows");
        let checked = self
            .expectations
            .check(&BOOKINGS_FACT, fact, processed_at)?;
        report.fact_rows = checked.kept_rows;
        quarantine.extend(checked.dropped);
        report.expectations = checked.results;
        phases.done("expectations");
        if let Some(known) = &self.outputs.known_quarantine {
            quarantine.retain(|row| !known.contains(&quarantine_key(row)));
        }
        report.quarantined = quarantine.len() as u64;

        let mut tables: Vec<(&'static TableDef, Vec<PartitionRows>)> = vec![
            (
                &LATE_EVENTS,
                vec![PartitionRows::unsplit(
                    rows::late_rows(&out.late, processed_at).map_err(arrow(&LATE_EVENTS))?,
                )],
            ),
            (
                &UNPAID_BOOKINGS,
                rows::unpaid_rows(&out.unpaid, processed_at).map_err(arrow(&UNPAID_BOOKINGS))?,
            ),
            (
                &ORPHAN_PAYMENTS,
                rows::orphan_rows(&out.orphans, processed_at).map_err(arrow(&ORPHAN_PAYMENTS))?,
            ),
            (
                &QUARANTINE,
                vec![PartitionRows::unsplit(
                    quarantine_batch(&quarantine).map_err(arrow(&QUARANTINE))?,
                )],
            ),
            (
                &EXPECTATIONS,
                vec![PartitionRows::unsplit(
                    crate::expectations::result_rows(
                        &self.id.app_prefix(JOB),
                        plan.batch,
                        &report.expectations,
                        processed_at,
                    )
                    .map_err(arrow(&EXPECTATIONS))?,
                )],
            ),
        ];
        tables.push((&BOOKINGS_FACT, checked.kept));
        free_in_background(out);
        phases.done("other outputs");
        Ok(BatchOutputs {
            plan,
            report,
            tables,
            marks,
        })
    }

    /// Commits each output table's rows exactly once, all tables at the same time: each commit
    /// carries its own application transaction, so whichever of them a crash lets through, the
    /// rerun completes the others, and waiting for one before starting the next only added
    /// their times up (most of a small batch's time is the commits).
    pub(super) async fn commit_outputs(
        &mut self,
        outputs: BatchOutputs,
    ) -> Result<BatchReport, JobError> {
        let BatchOutputs {
            plan,
            report,
            tables,
            marks,
        } = outputs;
        let mut open = Vec::new();
        for (def, rows) in tables {
            if rows.iter().all(|r| r.batch.num_rows() == 0) {
                crate::crash_point(&commit_point(def, plan.batch));
                continue;
            }
            let table = match self.tables.remove(def.name) {
                Some(t) => t,
                None => self.lake.ensure_table(def).await?,
            };
            open.push((def, rows, table));
        }
        let this = &*self;
        let committed = futures::future::join_all(
            open.into_iter()
                .map(|(def, rows, table)| this.commit(def, rows, table, &plan, marks)),
        )
        .await;
        let mut failed = None;
        for (def, table, outcome) in committed {
            self.tables.insert(def.name, table);
            if let Err(e) = outcome {
                failed.get_or_insert(e);
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        crate::crash_point(&format!("{JOB}:after-commits:{}", plan.batch));
        Ok(report)
    }

    /// Appends a batch's rows to one table exactly once, and hands the table back.
    async fn commit(
        &self,
        def: &'static TableDef,
        rows: Vec<PartitionRows>,
        mut table: DeltaTable,
        plan: &Plan,
        marks: Freshness,
    ) -> (&'static TableDef, DeltaTable, Result<(), JobError>) {
        crate::crash_point(&commit_point(def, plan.batch));
        let mut phases = crate::Phases::new(plan.batch);
        let prefix = self
            .id
            .app_prefix(self.outputs.app_prefix.as_deref().unwrap_or(JOB));
        let app_id = format!("{prefix}:{}", def.qualified_name());
        let mut metadata = HashMap::from([
            ("operation".to_string(), json!(JOB)),
            ("batch".to_string(), json!(plan.batch)),
            // Readers (the dashboard's freshness panel) learn how far Silver is resolved.
            (
                "watermark".to_string(),
                json!(marks.watermark.map(|w| w.to_rfc3339())),
            ),
            (
                "newest_event".to_string(),
                json!(marks.newest_event.map(|w| w.to_rfc3339())),
            ),
        ]);
        if self.id.of > 1 {
            // Readers combine the shards' marks: Silver is resolved up to the lowest watermark.
            metadata.insert("shard".to_string(), json!(self.id.index));
            metadata.insert("shards".to_string(), json!(self.id.of));
        }
        // Shards are separate processes appending to the same tables: their batches are staged
        // and committed together (docs/commits.md), so they never race each other for versions.
        // One writer commits on its own, which is quicker.
        let outcome = if self.id.of > 1 {
            let batch = Batch {
                app_id: &app_id,
                version: plan.batch as i64,
                metadata,
                writer_properties: def.writer_properties(),
            };
            append_grouped(
                &self.lake,
                def,
                &mut table,
                rows,
                batch,
                &GroupPolicy::default(),
            )
            .await
            .map(|(outcome, _)| outcome)
        } else {
            append_once(
                &mut table,
                rows,
                &app_id,
                plan.batch as i64,
                metadata,
                def.writer_properties(),
            )
            .await
        }
        .map_err(|e| JobError::Commit {
            table: def.qualified_name(),
            source: Box::new(e),
        });
        phases.done(&format!("commit {}", def.qualified_name()));
        if let Ok(AppendOutcome::AlreadyCommitted) = outcome {
            tracing::info!(table = %def.qualified_name(), batch = plan.batch, "already committed; skipped");
        }
        (def, table, outcome.map(|_| ()))
    }
}

/// The crash point before a table's commit of a batch (`BOXOFFICE_CRASH_AT`, for tests).
fn commit_point(def: &TableDef, batch: u64) -> String {
    format!("{JOB}:before:{}:{batch}", def.qualified_name())
}

/// Drops `value` on another thread: a batch's join output is millions of small strings, which
/// take a while to free, and nothing waits for them.
fn free_in_background<T: Send + 'static>(value: T) {
    // If no thread can be started, the value comes back inside the error and is freed here.
    let _ = std::thread::Builder::new()
        .name("free".into())
        .spawn(move || drop(value));
}

fn quarantine_row(
    key: join::ArrivalKey,
    refused: input::Refused,
    at: DateTime<Utc>,
) -> QuarantineRow {
    QuarantineRow {
        received_at: Utc.timestamp_micros(key.at).single().unwrap_or(at),
        source: "bronze".to_string(),
        hub: Some(
            if key.hub == PAYMENTS {
                "payments"
            } else {
                "bookings"
            }
            .to_string(),
        ),
        reason: refused.reason,
        body: refused.body.to_string(),
        stage: JOB.to_string(),
        partition_id: Some(key.partition),
        sequence_number: Some(key.sequence),
        event_uid: Some(refused.uid),
        source_file: None,
        line: None,
    }
}
