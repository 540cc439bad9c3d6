//! `up`'s own jobs: the join and the Gold refresh, either each time the landing commits to
//! Bronze (continuous, the default) or on a timer, with the side jobs (batch_load, the booking
//! service's changes, cdc) between them, or, run continuously, batch_load between them and the
//! other two in a task of their own ([`super::booking_changes`]); and how fresh Gold is kept,
//! for the progress line, the summary and the dashboard.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use boxoffice_jobs::freshness::{self, GoldFreshness, LagHistogram, percentiles};
use boxoffice_lake::Lake;
use chrono::Utc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::cycle_runs::CycleRuns;
use super::job::{Cycle, CycleReport};
use crate::config::{Cadence, SIDE_JOBS_EVERY};
use crate::leases::{Leases, MAINTENANCE, Taking};
use crate::progress::thousands;

/// The window the dashboard's event-to-Gold figures cover.
const WINDOW: Duration = Duration::from_secs(60);

/// How often those figures are written to the lake.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// What the jobs have done so far, for the progress line and the summary.
#[derive(Debug, Default, Clone)]
pub struct JobsStatus {
    /// Runs of the join and Gold that took new events.
    pub cycles: u64,
    /// Every run, including those that found nothing new to take.
    pub runs: u64,
    /// Join batches committed.
    pub batches: u64,
    pub fact_rows: u64,
    pub cdc_changes: u64,
    pub batch_rows: u64,
    /// Freshness of every match so far.
    pub lags: LagHistogram,
    /// The latest figures over the last [`WINDOW`].
    pub recent: Option<GoldFreshness>,
    pub last_error: Option<String>,
    /// The last error of the booking service's changes and cdc, when they run apart.
    pub changes_error: Option<String>,
    /// How long the last run that took events took, to Gold refreshed.
    pub last_millis: u128,
    /// Bookings and payments in the join's state when it stopped.
    pub waiting: (usize, usize),
    /// Maintenance turns that compacted, and the table files they found and left.
    pub maintenance: (u64, u64, u64),
    /// Replaced files up's vacuum deleted.
    pub vacuumed: u64,
}

impl JobsStatus {
    /// The jobs' part of the progress line.
    pub fn line(&self) -> String {
        let fresh = match self
            .recent
            .as_ref()
            .and_then(|r| r.median_seconds.zip(r.p95_seconds))
        {
            Some((p50, p95)) => format!("{p50:.2}s (p95 {p95:.2}s)"),
            None => "-".to_string(),
        };
        let mut error = self
            .last_error
            .as_ref()
            .map_or(String::new(), |e| format!(" | job error: {e}"));
        if let Some(e) = &self.changes_error {
            error.push_str(&format!(" | cdc error: {e}"));
        }
        format!(
            " | silver fact {} | gold freshness {fresh} | cdc changes {} (join+gold {} ms){error}",
            thousands(self.fact_rows),
            thousands(self.cdc_changes),
            self.last_millis
        )
    }

    /// Takes in one run's outcome.
    fn add(&mut self, result: &anyhow::Result<CycleReport>) {
        self.runs += 1;
        let r = match result {
            Ok(r) => r,
            Err(e) => {
                self.last_error = Some(format!("{e:#}"));
                return;
            }
        };
        if r.batches > 0 {
            self.cycles += 1;
            self.last_millis = r.gold_millis;
        }
        self.batches += r.batches;
        self.fact_rows += r.fact_rows;
        self.cdc_changes += r.cdc_changes;
        self.batch_rows += r.batch_rows;
        self.lags.extend(&r.lags);
        self.last_error = None;
    }

    /// Takes in one turn of the booking service's changes and cdc, run apart.
    pub fn add_changes(&mut self, result: &anyhow::Result<CycleReport>) {
        match result {
            Ok(r) => {
                self.cdc_changes += r.cdc_changes;
                self.changes_error = None;
            }
            Err(e) => self.changes_error = Some(format!("{e:#}")),
        }
    }
}

/// Each match's lag and each run over the last [`WINDOW`], and when they were last published.
struct Recent {
    cadence: Cadence,
    lags: VecDeque<(Instant, f64)>,
    runs: VecDeque<Instant>,
    published: Option<Instant>,
}

impl Recent {
    fn new(cadence: Cadence) -> Recent {
        Recent {
            cadence,
            lags: VecDeque::new(),
            runs: VecDeque::new(),
            published: None,
        }
    }

    fn add(&mut self, lags: &[f64]) {
        let now = Instant::now();
        self.lags.extend(lags.iter().map(|l| (now, *l)));
        self.runs.push_back(now);
        while self
            .lags
            .front()
            .is_some_and(|(at, _)| at.elapsed() > WINDOW)
        {
            self.lags.pop_front();
        }
        while self.runs.front().is_some_and(|at| at.elapsed() > WINDOW) {
            self.runs.pop_front();
        }
    }

    /// The figures over the window, when [`PUBLISH_EVERY`] has passed (or `now`).
    fn due(&mut self, now: bool) -> Option<GoldFreshness> {
        if !now
            && self
                .published
                .is_some_and(|at| at.elapsed() < PUBLISH_EVERY)
        {
            return None;
        }
        self.published = Some(Instant::now());
        let mut lags: Vec<f64> = self.lags.iter().map(|(_, l)| *l).collect();
        let figures = percentiles(&mut lags);
        Some(GoldFreshness {
            measured_at: Utc::now(),
            cadence: match self.cadence {
                Cadence::Continuous => Cadence::CONTINUOUS.to_string(),
                Cadence::Every(d) => format!("every {}", humantime::format_duration(d)),
            },
            window_seconds: WINDOW.as_secs(),
            matches: lags.len() as u64,
            median_seconds: figures.map(|f| f.0),
            p95_seconds: figures.map(|f| f.1),
            runs: self.runs.len() as u64,
        })
    }
}

/// How the jobs are started: the cadence, and the landing's count of Bronze commits, which
/// changes after each one (continuous mode waits on it).
pub struct Trigger {
    pub cadence: Cadence,
    pub landed: watch::Receiver<u64>,
}

impl Trigger {
    /// Waits for the next run; true when it is the last one (`stop` said so). In continuous mode
    /// a run starts as soon as a Bronze commit came after the previous run started; commits
    /// during a run make one more run, not one each. `side_due` says when the side jobs are
    /// next due: a continuous run starts then too, even if nothing landed.
    async fn next(&mut self, stop: &mut watch::Receiver<bool>, side_due: Instant) -> (bool, bool) {
        match self.cadence {
            Cadence::Every(interval) => tokio::select! {
                _ = tokio::time::sleep(interval) => (false, true),
                _ = stop.changed() => (true, true),
            },
            Cadence::Continuous => {
                let landed = &mut self.landed;
                let commit = async {
                    // Once the landing has finished, only the stop is left to wait for.
                    if landed.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                };
                tokio::select! {
                    biased;
                    _ = stop.changed() => (true, true),
                    _ = tokio::time::sleep_until(side_due.into()) => (false, true),
                    _ = commit => (false, Instant::now() >= side_due),
                }
            }
        }
    }
}

/// Runs the join and the Gold refresh as `trigger` says until `stop`, then once more so Silver
/// and Gold take in everything landed. An error is shown and retried by the next run, except in
/// the last one, which is returned; then the error of the last turn of `changes` (the booking
/// service's changes and cdc, when they run apart), which stops with the same `stop`.
pub async fn run_jobs(
    mut cycle: Cycle,
    mut runs: CycleRuns,
    mut trigger: Trigger,
    status: Arc<Mutex<JobsStatus>>,
    mut stop: watch::Receiver<bool>,
    leases: Arc<Leases>,
    changes: Option<JoinHandle<anyhow::Result<()>>>,
) -> anyhow::Result<()> {
    let lake = cycle.lake().clone();
    let mut recent = Recent::new(trigger.cadence);
    let mut side_due = Instant::now() + SIDE_JOBS_EVERY;
    loop {
        let (stopping, side_jobs) = trigger.next(&mut stop, side_due).await;
        if side_jobs {
            side_due = Instant::now() + SIDE_JOBS_EVERY;
        }
        leases.check()?;
        let started_at = Utc::now();
        let result = cycle.run(side_jobs || stopping).await;
        runs.record(started_at, &result);
        runs.flush(stopping).await;
        if let Ok(r) = &result {
            recent.add(&r.lags);
        }
        let figures = recent.due(stopping);
        if let Ok(mut s) = status.lock() {
            s.add(&result);
            if figures.is_some() {
                s.recent = figures.clone();
            }
        }
        if let Some(figures) = figures
            && let Err(e) = freshness::write(&lake, &figures).await
        {
            tracing::warn!("writing Gold's freshness for the dashboard: {e}");
        }
        if stopping {
            result?;
            cycle.checkpoint().await?;
            if let Ok(mut s) = status.lock() {
                s.waiting = cycle.waiting();
            }
            return match changes {
                Some(task) => task
                    .await
                    .unwrap_or_else(|e| Err(anyhow::anyhow!("the cdc task ended: {e}"))),
                None => Ok(()),
            };
        }
    }
}

/// How up's maintenance deletes replaced files: a turn vacuums when `every` has passed since the
/// last one (the first turn always does), deleting what is `retention` old.
#[derive(Debug, Clone, Copy)]
pub struct Vacuum {
    /// Zero: never.
    pub every: Duration,
    pub retention: Duration,
}

/// Compacts today's small files and checkpoints every table every `every` until `stop`, beside
/// the jobs (a compaction never conflicts with appenders: docs/maintenance.md), and now and then
/// vacuums ([`Vacuum`]), under the maintenance lease, taken for each turn: a turn is skipped
/// while the bundle's maintenance or a worker holds it.
pub async fn maintain_every(
    lake: Lake,
    every: Duration,
    vacuum: Vacuum,
    taking: Taking,
    status: Arc<Mutex<JobsStatus>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut last_vacuum: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        let lease = match Leases::take(&lake, &[MAINTENANCE], "boxoffice up", taking).await {
            Ok(lease) => lease,
            Err(e) => {
                tracing::info!("maintenance skipped this turn: {e:#}");
                continue;
            }
        };
        match super::worker::compact_and_checkpoint(&lake).await {
            Ok((before, after)) => {
                if let Ok(mut s) = status.lock() {
                    s.maintenance.0 += 1;
                    s.maintenance.1 += before;
                    s.maintenance.2 += after;
                }
            }
            Err(e) => eprintln!("\nmaintenance failed: {e:#}; retried at its next turn"),
        }
        let due =
            !vacuum.every.is_zero() && last_vacuum.is_none_or(|t| t.elapsed() >= vacuum.every);
        if due {
            last_vacuum = Some(Instant::now());
            let vacuumed = vacuum_replaced(&lake, vacuum.retention).await;
            if let (Ok(vacuumed), Ok(mut s)) = (&vacuumed, status.lock()) {
                // Counted even when some tables failed.
                s.vacuumed += vacuumed.files_deleted();
            }
            if let Err(e) = vacuumed.and_then(|v| Ok(v.into_result()?)) {
                eprintln!("\nvacuum failed: {e:#}; retried at its next turn");
            }
        }
        if let Err(e) = lease.release().await {
            tracing::warn!("releasing the maintenance lease: {e:#}");
        }
    }
}

/// Vacuums the layers the shipped bundle's maintenance vacuums (not ops, whose change feed the
/// cdc job reads from older versions).
async fn vacuum_replaced(
    lake: &Lake,
    retention: Duration,
) -> anyhow::Result<boxoffice_jobs::maintenance::Vacuumed> {
    use boxoffice_lake::Layer::{Bronze, Gold, Silver, System};
    let tables = super::tables::in_layers(&[Bronze, Silver, Gold, System]);
    let retention = chrono::Duration::from_std(retention)?;
    Ok(boxoffice_jobs::maintenance::vacuum(lake, &tables, retention).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_counts_runs_and_matches_and_publishes_at_most_every_second() {
        let mut recent = Recent::new(Cadence::Continuous);
        recent.add(&[0.5, 0.25, 1.0]);
        recent.add(&[]);
        let figures = recent.due(false).expect("first figures");
        assert_eq!(figures.cadence, "continuous");
        assert_eq!((figures.matches, figures.runs), (3, 2));
        assert_eq!(figures.median_seconds, Some(0.5));
        assert_eq!(figures.p95_seconds, Some(1.0));
        assert!(recent.due(false).is_none(), "published a moment ago");
        assert!(recent.due(true).is_some(), "the last run always publishes");
        let timer = Recent::new(Cadence::Every(Duration::from_secs(2))).due(true);
        assert_eq!(timer.map(|f| f.cadence), Some("every 2s".to_string()));
    }
}
