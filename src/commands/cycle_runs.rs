//! `up`'s job cycles in `_system/job_runs`, so the dashboard's job health and `bundle status`
//! see them beside the bundle's runs.
//!
//! A cycle runs every couple of seconds; a commit per cycle would fill the table with tiny
//! files, so attempts are kept and appended together every [`FLUSH_EVERY`] and when `up` stops.
//! Run continuously, the jobs run several times a second: their successful runs are merged into
//! one row per append (task `continuous`, from the first run's start to the last one's end, with
//! their rows summed), so the table grows by a few rows a minute either way. Failures keep a row
//! each.

use std::time::{Duration, Instant};

use boxoffice_bundle::history;
use boxoffice_bundle::manifest::Outcome;
use boxoffice_bundle::run::{Attempt, TaskStats, run_id};
use boxoffice_lake::Lake;
use chrono::{DateTime, Utc};

use super::job::CycleReport;

/// How often kept attempts are appended.
pub const FLUSH_EVERY: Duration = Duration::from_secs(30);

/// The job name `up`'s cycles are recorded under.
pub const JOB: &str = "up";

/// The task of a row merging continuous runs.
pub const CONTINUOUS_TASK: &str = "continuous";

/// Attempts not yet appended.
pub struct CycleRuns {
    lake: Lake,
    pending: Vec<Attempt>,
    flushed: Instant,
    /// Whether successful runs are merged (continuous mode).
    merging: bool,
}

impl CycleRuns {
    /// Nothing kept yet; `merging` successful runs into one row per append.
    pub fn new(lake: Lake, merging: bool) -> CycleRuns {
        CycleRuns {
            lake,
            pending: Vec::new(),
            flushed: Instant::now(),
            merging,
        }
    }

    /// Keeps one cycle's outcome: every failure, and every cycle that moved data.
    pub fn record(&mut self, started_at: DateTime<Utc>, result: &anyhow::Result<CycleReport>) {
        let (status, stats, error) = match result {
            Ok(r) if r.events + r.cdc_changes + r.batch_rows == 0 => return,
            Ok(r) => (
                Outcome::Succeeded,
                TaskStats {
                    rows_in: r.events + r.cdc_changes + r.batch_rows,
                    rows_out: r.fact_rows,
                },
                None,
            ),
            Err(e) => (
                Outcome::Failed,
                TaskStats::default(),
                Some(format!("{e:#}")),
            ),
        };
        let merged = self.merging && status == Outcome::Succeeded;
        if merged
            && let Some(last) = self
                .pending
                .last_mut()
                .filter(|a| a.task == CONTINUOUS_TASK && a.status == Outcome::Succeeded)
        {
            last.ended_at = Utc::now();
            last.stats.rows_in += stats.rows_in;
            last.stats.rows_out += stats.rows_out;
            return;
        }
        self.pending.push(Attempt {
            run_id: run_id(JOB, started_at),
            job: JOB.to_string(),
            task: if merged { CONTINUOUS_TASK } else { "cycle" }.to_string(),
            attempt: 1,
            started_at,
            ended_at: Utc::now(),
            status,
            stats,
            error,
        });
    }

    /// Appends what is kept when [`FLUSH_EVERY`] has passed (or `now`). A failed append keeps
    /// the attempts for the next one and says why.
    pub async fn flush(&mut self, now: bool) {
        if self.pending.is_empty() || (!now && self.flushed.elapsed() < FLUSH_EVERY) {
            return;
        }
        match history::append(&self.lake, &self.pending).await {
            Ok(()) => {
                self.pending.clear();
                self.flushed = Instant::now();
            }
            Err(e) => eprintln!(
                "\nrecording job cycles in _system/job_runs failed (kept for the next try): {e}"
            ),
        }
    }
}
