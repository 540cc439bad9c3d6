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

/// The task of the rows of the booking service's changes and cdc, when they run apart from the
/// join (continuous mode).
pub const CHANGES_TASK: &str = "cdc";

/// Attempts not yet appended.
pub struct CycleRuns {
    lake: Lake,
    pending: Vec<Attempt>,
    flushed: Instant,
    /// Whether successful runs are merged (continuous mode).
    merging: bool,
    /// The tasks rows are recorded under: merged, and each on its own.
    tasks: (&'static str, &'static str),
}

impl CycleRuns {
    /// Nothing kept yet; `merging` successful runs into one row per append.
    pub fn new(lake: Lake, merging: bool) -> CycleRuns {
        CycleRuns {
            lake,
            pending: Vec::new(),
            flushed: Instant::now(),
            merging,
            tasks: (CONTINUOUS_TASK, "cycle"),
        }
    }

    /// Records every row under `task` instead of [`CONTINUOUS_TASK`] and `cycle`.
    pub fn for_task(mut self, task: &'static str) -> CycleRuns {
        self.tasks = (task, task);
        self
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
        let (merged_task, own_task) = self.tasks;
        if merged
            && let Some(last) = self
                .pending
                .last_mut()
                .filter(|a| a.task == merged_task && a.status == Outcome::Succeeded)
        {
            last.ended_at = Utc::now();
            last.stats.rows_in += stats.rows_in;
            last.stats.rows_out += stats.rows_out;
            return;
        }
        self.pending.push(Attempt {
            run_id: run_id(JOB, started_at),
            job: JOB.to_string(),
            task: if merged { merged_task } else { own_task }.to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn moved(cdc_changes: u64) -> anyhow::Result<CycleReport> {
        Ok(CycleReport {
            cdc_changes,
            ..CycleReport::default()
        })
    }

    #[test]
    fn the_turns_of_a_task_apart_are_merged_and_recorded_under_its_name() {
        let lake = Lake::local(std::path::Path::new("/tmp/never-written")).expect("lake");
        let mut runs = CycleRuns::new(lake, true).for_task(CHANGES_TASK);
        let at = Utc::now();
        runs.record(at, &moved(3));
        runs.record(at, &moved(0)); // moved nothing: not kept
        runs.record(at, &moved(4));
        runs.record(at, &Err(anyhow::anyhow!("ops table unreadable")));
        runs.record(at, &moved(5));
        let rows: Vec<_> = runs
            .pending
            .iter()
            .map(|a| (a.task.as_str(), a.status, a.stats.rows_in))
            .collect();
        assert_eq!(
            rows,
            [
                (CHANGES_TASK, Outcome::Succeeded, 7),
                (CHANGES_TASK, Outcome::Failed, 0),
                (CHANGES_TASK, Outcome::Succeeded, 5),
            ]
        );
    }
}
