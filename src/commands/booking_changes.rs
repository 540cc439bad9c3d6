//! The booking service's changes and the cdc job that takes them into the lake: the simulator
//! changes the `ops` table, and cdc carries its change feed into Bronze, Silver and Gold. Neither
//! touches a table the join or the other Gold tables write, but for `bronze.quarantine`, which
//! every writer only appends to.
//!
//! On a timer they run at the end of each cycle. Run continuously, they run in a task of their
//! own every [`SIDE_JOBS_EVERY`](crate::config::SIDE_JOBS_EVERY), beside the join and Gold:
//! inside the loop, each of their turns (0.3 s in the first minute, 0.6-0.9 s after ten minutes
//! at 5,000 events/s) held back the next run, and with it every event that landed meanwhile.
//! batch_load stays in the loop, before the join: it merges box-office sales into
//! `silver.bookings_fact`, which the join appends to, and Gold then sees what it loaded in the
//! same run.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use boxoffice_jobs::cdc::{CdcReport, Flow};
use boxoffice_jobs::ops::simulator::Simulator;
use boxoffice_lake::Lake;
use chrono::Utc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::cycle_runs::{CHANGES_TASK, CycleRuns};
use super::job::CycleReport;
use super::up_jobs::JobsStatus;
use crate::leases::Leases;

/// Where `BOXOFFICE_SLOW_AT` can hold a turn, between the simulator's changes and cdc
/// ([`boxoffice_jobs::slow_point`]).
pub const SLOW_POINT: &str = "cdc:before";

/// The booking-service simulator (when it makes changes) and the cdc job, both holding their
/// tables open from one turn to the next.
pub struct BookingChanges {
    lake: Lake,
    /// The simulator and how many changes it makes per turn.
    simulator: Option<(Simulator, usize)>,
    cdc: Flow,
}

impl BookingChanges {
    /// Opens the simulator when it makes `changes` changes per turn (0: none; cdc still takes
    /// what others changed).
    pub async fn open(lake: &Lake, changes: usize) -> anyhow::Result<BookingChanges> {
        let simulator = if changes > 0 {
            let seed = Utc::now().timestamp_micros().unsigned_abs();
            Some((Simulator::open(lake, seed).await?, changes))
        } else {
            None
        };
        Ok(BookingChanges {
            lake: lake.clone(),
            simulator,
            cdc: Flow::new(lake),
        })
    }

    /// The simulator's changes, then cdc over them; returns what cdc did.
    pub async fn run(&mut self) -> anyhow::Result<CdcReport> {
        if let Some((simulator, changes)) = &mut self.simulator {
            simulator.tick(*changes).await?;
        }
        boxoffice_jobs::slow_point(SLOW_POINT).await;
        Ok(self.cdc.run().await?)
    }
}

/// What the changes' task shares with the rest of `up`.
pub struct Beside {
    pub every: Duration,
    pub status: Arc<Mutex<JobsStatus>>,
    pub stop: watch::Receiver<bool>,
    pub leases: Arc<Leases>,
}

/// Runs the changes every `every` in a task of their own until `stop`, then once more. An error
/// is shown (the progress line) and the turn retried at the next, except in the last turn, whose
/// error the task returns. Turns are recorded in `_system/job_runs` as job `up`, task `cdc`.
pub fn spawn(changes: BookingChanges, beside: Beside) -> JoinHandle<anyhow::Result<()>> {
    tokio::spawn(run_beside(changes, beside))
}

async fn run_beside(mut changes: BookingChanges, beside: Beside) -> anyhow::Result<()> {
    let Beside {
        every,
        status,
        mut stop,
        leases,
    } = beside;
    let mut runs = CycleRuns::new(changes.lake.clone(), true).for_task(CHANGES_TASK);
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(every) => false,
            _ = stop.changed() => true,
        };
        leases.check()?;
        let started_at = Utc::now();
        let result = changes.run().await.map(|cdc| CycleReport {
            cdc_changes: cdc.changes,
            ..CycleReport::default()
        });
        runs.record(started_at, &result);
        runs.flush(stopping).await;
        if let Ok(mut s) = status.lock() {
            s.add_changes(&result);
        }
        if stopping {
            return result.map(|_| ());
        }
    }
}
