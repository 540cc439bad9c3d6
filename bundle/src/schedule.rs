//! The scheduler: fires each job whose schedule is unpaused at its cron times, never more than
//! `max_concurrent_runs` at once (a due run beyond that is skipped and logged, as Databricks
//! does), until told to stop; then it waits for the runs in flight. The clock is injected, so
//! tests run hours of schedule in milliseconds.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::manifest::{Bundle, Job, Outcome};
use crate::run::BoxFuture;

/// Time, as the scheduler sees it.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
    /// Resolves at `at` (at once when it has passed).
    fn sleep_until(&self, at: DateTime<Utc>) -> BoxFuture<()>;
}

/// The wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> BoxFuture<()> {
        let wait = (at - Utc::now()).to_std().unwrap_or_default();
        Box::pin(tokio::time::sleep(wait))
    }
}

/// Starts one run of a job and resolves when it ends.
pub type Launch = Arc<dyn Fn(Job, DateTime<Utc>) -> BoxFuture<Outcome> + Send + Sync>;

/// What the scheduler did, for its summary and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScheduleLog {
    /// (job, the time it was due) for each run started.
    pub started: Vec<(String, DateTime<Utc>)>,
    /// (job, due time) for each run skipped because max_concurrent_runs were running.
    pub skipped: Vec<(String, DateTime<Utc>)>,
}

/// The jobs a scheduler fires: those with an unpaused schedule.
pub fn scheduled(bundle: &Bundle) -> Vec<&Job> {
    bundle
        .jobs
        .iter()
        .filter(|j| j.schedule.as_ref().is_some_and(|s| !s.paused))
        .collect()
}

/// Jobs due in `(after, until]`, each once however many times it came due (a timer that
/// missed ticks catches up with one run, not many). For the `run_jobs` function's minute timer.
pub fn due_between(bundle: &Bundle, after: DateTime<Utc>, until: DateTime<Utc>) -> Vec<&Job> {
    scheduled(bundle)
        .into_iter()
        .filter(|j| fire_after(j, after).is_some_and(|next| next <= until))
        .collect()
}

/// Runs the schedule until `stop` turns true, then waits for the runs in flight.
pub async fn run_schedule(
    bundle: &Bundle,
    clock: Arc<dyn Clock>,
    launch: Launch,
    mut stop: watch::Receiver<bool>,
) -> ScheduleLog {
    let jobs = scheduled(bundle);
    let mut log = ScheduleLog::default();
    let running: HashMap<String, Arc<AtomicU32>> = jobs
        .iter()
        .map(|j| (j.key.clone(), Arc::new(AtomicU32::new(0))))
        .collect();
    let mut next: HashMap<String, DateTime<Utc>> = HashMap::new();
    let start = clock.now();
    for job in &jobs {
        if let Some(at) = fire_after(job, start) {
            next.insert(job.key.clone(), at);
        }
    }
    let mut in_flight = JoinSet::new();
    // Ends when nothing is scheduled (or every schedule's Quartz years run out), or on stop.
    while let Some(at) = next.values().min().copied() {
        tokio::select! {
            _ = clock.sleep_until(at) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        // Let runs that have just ended free their slots before this firing is decided.
        tokio::task::yield_now().await;
        while in_flight.try_join_next().is_some() {}
        for job in &jobs {
            if next.get(&job.key) != Some(&at) {
                continue;
            }
            let count = &running[&job.key];
            if count.load(Ordering::SeqCst) >= job.max_concurrent_runs {
                tracing::warn!(job = %job.key, due = %at, "skipped: max_concurrent_runs already running");
                log.skipped.push((job.key.clone(), at));
            } else {
                count.fetch_add(1, Ordering::SeqCst);
                log.started.push((job.key.clone(), at));
                let (count, run) = (Arc::clone(count), launch((*job).clone(), at));
                in_flight.spawn(async move {
                    let outcome = run.await;
                    count.fetch_sub(1, Ordering::SeqCst);
                    outcome
                });
            }
            match fire_after(job, at) {
                Some(later) => next.insert(job.key.clone(), later),
                None => next.remove(&job.key),
            };
        }
    }
    while in_flight.join_next().await.is_some() {}
    log
}

fn fire_after(job: &Job, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let s = job.schedule.as_ref()?;
    s.cron.next_after(after, s.timezone)
}
