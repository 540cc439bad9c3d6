//! One module per command.

pub mod batch;
pub mod bench;
pub mod bench_cdc;
pub mod bench_cdc_turns;
pub mod bench_commit_writer;
pub mod bench_commits;
pub mod bench_dashboard;
pub mod bench_functions;
pub mod bench_functions_archive;
pub mod bench_jobs;
pub mod bench_scale;
pub mod bench_scale_report;
pub mod booking_changes;
pub mod bundle;
pub mod bundle_tasks;
pub mod cdc;
pub mod cycle_runs;
pub mod dashboard;
pub mod generate;
pub mod ingest;
pub mod ingest_screen;
pub mod job;
pub mod job_bookings_fact;
pub mod produce;
pub mod serve;
pub mod sql;
pub mod table_writers;
pub mod tables;
pub mod up;
pub mod up_jobs;
pub mod up_workers;
pub mod worker;

use std::sync::Arc;

use boxoffice_events::Generator;
use boxoffice_ingest::Source;
use boxoffice_ingest::bronze;
use boxoffice_ingest::landing::{Landing, LandingTotals};
use boxoffice_ingest::queue::{Queue, QueueError};
use boxoffice_lake::{Lake, TableState};
use tokio::sync::watch;

use crate::pacing::Pacer;
use crate::progress::thousands;

/// Resolves on Ctrl-C or SIGTERM (how `docker stop`, systemd and CI ask a process to stop).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Sends generated events to the queue, paced, until `limit`, `stop`, or the queue closes.
/// Returns how many were accepted.
pub async fn produce(
    generator: Generator,
    pacer: Pacer,
    queue: Arc<Queue>,
    mut stop: watch::Receiver<bool>,
    limit: Option<u64>,
) -> Result<u64, QueueError> {
    let mut sent = 0u64;
    for event in generator {
        if limit.is_some_and(|l| sent >= l) || !pacer.wait(event.arrival, &mut stop).await {
            break;
        }
        queue
            .send(
                event.hub,
                Some(&event.order_id),
                Source::Generator,
                event.body,
            )
            .await?;
        sent += 1;
        if sent.is_multiple_of(4096) {
            // Unpaced, nothing else would give other tasks on this worker a turn.
            tokio::task::yield_now().await;
        }
    }
    Ok(sent)
}

/// Rows already in each Bronze table, so progress can show totals, not just this run's rows.
#[derive(Debug, Clone, Copy, Default)]
pub struct BronzeRows {
    pub bookings: u64,
    pub payments: u64,
    pub quarantined: u64,
}

impl BronzeRows {
    /// Counts from the tables' file statistics (cheap: no data is read).
    pub async fn count(lake: &Lake) -> BronzeRows {
        let rows = |def| async move {
            match lake.inspect(def).await {
                Ok(info) => match info.state {
                    TableState::Present { rows, .. } => rows.unwrap_or(0),
                    TableState::Missing => 0,
                },
                Err(_) => 0,
            }
        };
        BronzeRows {
            bookings: rows(&bronze::BOOKINGS_RAW).await,
            payments: rows(&bronze::PAYMENTS_RAW).await,
            quarantined: rows(&bronze::QUARANTINE).await,
        }
    }

    /// These counts plus what a landing run added.
    pub fn plus(&self, t: &LandingTotals) -> BronzeRows {
        BronzeRows {
            bookings: self.bookings + t.bookings,
            payments: self.payments + t.payments,
            quarantined: self.quarantined + t.quarantined,
        }
    }
}

/// Ends a command with an exit code other than 1, after it has said what happened.
#[derive(Debug)]
pub struct Exit {
    /// The process's exit code.
    pub code: u8,
    /// A last line for stderr.
    pub message: String,
}

impl Exit {
    /// An error that makes the process exit with `code`.
    pub fn with(code: u8, message: &str) -> anyhow::Error {
        anyhow::Error::new(Exit {
            code,
            message: message.to_string(),
        })
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

/// Finishes landing; Ctrl-C meanwhile exits at once (the queue log keeps what was not landed).
pub async fn finish_landing(landing: Landing) -> anyhow::Result<LandingTotals> {
    let pending = landing.queue().pending();
    if pending > 0 {
        eprintln!(
            "landing the {} events still queued (Ctrl-C exits at once: they stay in the queue log and land on the next start)",
            thousands(pending as u64)
        );
    }
    tokio::select! {
        result = landing.finish() => Ok(result?),
        _ = shutdown_signal() => {
            eprintln!("exiting without landing the queued events; the next `up` or `ingest` on this lake lands them first");
            std::process::exit(130);
        }
    }
}

/// A summary line per Bronze table: rows added and the table's total.
pub fn print_bronze_summary(before: &BronzeRows, totals: &LandingTotals) {
    let after = before.plus(totals);
    let lines = [
        ("bronze.bookings_raw", totals.bookings, after.bookings),
        ("bronze.payments_raw", totals.payments, after.payments),
        ("bronze.quarantine", totals.quarantined, after.quarantined),
    ];
    for (name, added, total) in lines {
        println!(
            "  {name:<22} {:>12} rows  ({} in all)",
            format!("+{}", thousands(added)),
            thousands(total)
        );
    }
    if totals.quarantined > 0 {
        println!(
            "  quarantined events keep every reason: see bronze.quarantine (`boxoffice tables` shows where)"
        );
    }
}
