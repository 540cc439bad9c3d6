//! `run_jobs`: a timer (every minute) that runs the lakehouse jobs once over what is new.
//!
//! With a job bundle (`serve --bundle`), it runs the bundle's jobs that came due since the
//! timer's last tick (`ScheduleStatus.Last`), each once, through the same runner and run history
//! as `boxoffice bundle run`. Without one, it runs the join, the Gold refresh, the CDC flow and
//! batch loading. Each job resumes where it stopped, so a missed or overlapping tick loses and
//! repeats nothing. Under `boxoffice serve` every job runs through the [`JobRunner`]'s executor,
//! which holds the job's lease while it runs, so the function never works beside `up`, a worker or
//! a bundle run on the same job.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use boxoffice_bundle::history::LakeHistory;
use boxoffice_bundle::run::{Executor, run_id};
use boxoffice_bundle::schedule::due_between;
use boxoffice_bundle::{Bundle, Outcome, RunIf, Task, run_job};
use boxoffice_jobs::expectations::Expectations;
use boxoffice_jobs::silver::bookings_fact::{self, BookingsFact, Settings};
use boxoffice_jobs::silver::tables::BOOKINGS_FACT;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::Handler;
use crate::protocol::{Failed, Invocation, Reply};

/// What runs `run_jobs`'s jobs: an executor that takes each job's lease around it, and the
/// bundle whose due jobs it follows (without one, the four jobs once).
pub struct JobRunner {
    pub executor: Arc<dyn Executor>,
    pub bundle: Option<Bundle>,
}

/// The jobs run without a bundle, in this order, as tasks of the runner's executor.
const JOBS: [&str; 4] = ["bookings_fact", "gold", "cdc", "batch_load"];

/// `POST /run_jobs`.
pub async fn invoke(
    State(handler): State<Arc<Handler>>,
    Json(timer): Json<Invocation>,
) -> Result<Reply, Failed> {
    match &handler.jobs {
        Some(JobRunner {
            executor,
            bundle: Some(bundle),
        }) => run_due(&handler, bundle, executor, &timer).await,
        Some(JobRunner {
            executor,
            bundle: None,
        }) => run_tasks(executor).await,
        None => run_all(&handler).await,
    }
}

/// The bundle's jobs due since the timer last fired (a minute ago when it does not say).
async fn run_due(
    handler: &Handler,
    bundle: &Bundle,
    executor: &Arc<dyn Executor>,
    timer: &Invocation,
) -> Result<Reply, Failed> {
    let now = Utc::now();
    let last = timer
        .data
        .get("timer")
        .and_then(|t| t.pointer("/ScheduleStatus/Last"))
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .filter(|t| *t < now)
        .unwrap_or(now - chrono::Duration::minutes(1));
    let due = due_between(bundle, last, now);
    let mut lines = Vec::new();
    let mut failed = Vec::new();
    for job in due {
        let run_id = run_id(&job.key, now);
        let report = run_job(
            job,
            &run_id,
            Arc::clone(executor),
            Arc::new(LakeHistory::new(handler.lake.clone())),
            Arc::new(|_| {}),
        )
        .await;
        let line = format!("{} {}", job.key, report.outcome.as_str().to_lowercase());
        if report.outcome != Outcome::Succeeded {
            failed.push(line.clone());
        }
        lines.push(line);
    }
    if !failed.is_empty() {
        // The host logs a failed invocation; the history holds each attempt's error.
        return Err(Failed(format!(
            "run_jobs: {} (see _system.job_runs)",
            lines.join(", ")
        )));
    }
    Ok(Reply::logged(if lines.is_empty() {
        format!("run_jobs: nothing due since {}", last.to_rfc3339())
    } else {
        format!("run_jobs: {}", lines.join(", "))
    }))
}

/// Without a bundle: every job once, in order, each under its lease. A job whose lease another
/// process holds fails the invocation naming the holder; the next tick tries again.
async fn run_tasks(executor: &Arc<dyn Executor>) -> Result<Reply, Failed> {
    let mut done = Vec::new();
    for job in JOBS {
        let task = Task {
            key: job.to_string(),
            line: 0,
            job: job.to_string(),
            parameters: Vec::new(),
            depends_on: Vec::new(),
            run_if: RunIf::AllSuccess,
            max_retries: 0,
            min_retry_interval: std::time::Duration::ZERO,
            retry_on_timeout: false,
            timeout: None,
        };
        let stats = executor.run(&task).await.map_err(|e| {
            let before = if done.is_empty() {
                String::new()
            } else {
                format!(" (after {})", done.join(", "))
            };
            Failed(format!("run_jobs: {job} failed{before}: {e}"))
        })?;
        done.push(format!(
            "{job} {} in, {} out",
            stats.rows_in, stats.rows_out
        ));
    }
    Ok(Reply::logged(format!("run_jobs: {}", done.join(", "))))
}

/// Without a runner (in-process benchmarks and tests of the handler alone): every job once,
/// directly, without leases.
async fn run_all(handler: &Handler) -> Result<Reply, Failed> {
    let failed = |e: &dyn std::fmt::Display| Failed(e.to_string());
    let settings = Settings::default();
    let declared = [(
        &BOOKINGS_FACT,
        bookings_fact::declared_expectations(&settings.join),
    )];
    let expectations =
        Expectations::compile(&declared, &BTreeMap::new()).map_err(|e| failed(&e))?;
    let (mut job, _) = BookingsFact::open(&handler.lake, settings, expectations)
        .await
        .map_err(|e| failed(&e))?;
    let batches = job.run(false).await.map_err(|e| failed(&e))?;
    let gold = boxoffice_jobs::gold::refresh(&handler.lake, false)
        .await
        .map_err(|e| failed(&e))?;
    let cdc = boxoffice_jobs::cdc::run(&handler.lake)
        .await
        .map_err(|e| failed(&e))?;
    let files = boxoffice_jobs::batch::run(&handler.lake)
        .await
        .map_err(|e| failed(&e))?;
    Ok(Reply::logged(format!(
        "run_jobs: bookings_fact {} batches ({} events), gold {} tables, cdc {} changes, batch_load {} files",
        batches.len(),
        batches.iter().map(|b| b.events).sum::<u64>(),
        gold.len(),
        cdc.changes,
        files.len()
    )))
}
