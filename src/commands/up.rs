//! `boxoffice up`: the whole pipeline on this machine, until Ctrl-C or --duration.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use boxoffice_events::Generator;
use boxoffice_ingest::landing::Landing;
use boxoffice_ingest::queue::QueueError;
use tokio::sync::watch;

use super::cycle_runs::CycleRuns;
use super::dashboard::Running;
use super::job::{Cycle, percentiles};
use super::{BronzeRows, finish_landing, print_bronze_summary, produce, shutdown_signal};
use crate::cli::{GlobalArgs, UpArgs};
use crate::config::{self, Pacing, StartDefault};
use crate::pacing::Pacer;
use crate::progress::{Progress, rate, thousands};

/// Why `up` stopped.
enum Stop {
    Interrupted,
    DurationReached,
    CountReached,
    QueueClosed,
}

pub async fn run(global: &GlobalArgs, args: UpArgs) -> anyhow::Result<()> {
    let file = config::load(global)?;
    let lake = config::lake(global, &file)?;
    // A broken bundle stops up before anything starts.
    let bundle = match &args.bundle {
        Some(path) => Some(super::bundle::load(&crate::cli::BundleArgs {
            file: path.clone(),
            target: args.bundle_target.clone(),
            vars: Vec::new(),
        })?),
        None => None,
    };
    let (generator_config, pacing) = config::generator(&args.generator, &file, StartDefault::Now)?;
    let landing_config = config::landing(&lake, &args.landing, &file)?;
    let generator = Generator::new(generator_config.clone()).context("generator settings")?;

    eprintln!("boxoffice up: lake {}", lake.describe());
    let pace = match pacing {
        Pacing::RealTime { speed: 1.0 } => "real time".to_string(),
        Pacing::RealTime { speed } => format!("{speed}x compressed time"),
        Pacing::Unpaced => "unpaced".to_string(),
    };
    eprintln!(
        "  generating {} events/s ({pace}, seed {}, order ids order_{}-<n>); flushing to Bronze every {} or {} events; Ctrl-C stops",
        generator_config.rate,
        generator_config.seed,
        generator.run_tag(),
        humantime::format_duration(landing_config.linger),
        thousands(landing_config.max_batch as u64),
    );
    let interval = config::job_interval(&file, args.job_interval)?;
    let cycle = if args.no_jobs {
        None
    } else {
        eprintln!(
            "  joining into Silver and refreshing Gold every {}; the booking service makes {} changes/s for the cdc job",
            humantime::format_duration(interval),
            args.cdc_rate
        );
        lake.prepare().await?;
        let cdc_changes = (args.cdc_rate as f64 * interval.as_secs_f64()).round() as usize;
        Some(
            Cycle::open(&lake, &file, cdc_changes)
                .await
                .context("opening the jobs")?,
        )
    };
    let (dashboard_stop_tx, dashboard_stop) = watch::channel(false);
    let dashboard = if args.no_dashboard {
        None
    } else {
        let running = Running::start(&lake, &args.dashboard, dashboard_stop).await?;
        eprintln!("  dashboard: {}", running.url);
        Some(running)
    };
    let landing = Landing::start(&lake, landing_config)
        .await
        .context("starting the landing pipeline")?;
    let (schedule_stop_tx, schedule_stop) = watch::channel(false);
    let schedule = match bundle {
        Some(bundle) => {
            lake.prepare().await?;
            let jobs: Vec<String> = boxoffice_bundle::schedule::scheduled(&bundle)
                .iter()
                .map(|j| j.key.clone())
                .collect();
            eprintln!(
                "  bundle target '{}': scheduling {}",
                bundle.target.name,
                if jobs.is_empty() {
                    "nothing (its schedules are paused)".to_string()
                } else {
                    jobs.join(", ")
                }
            );
            let launch = super::bundle::launcher(lake.clone(), global, &bundle);
            Some(tokio::spawn(async move {
                boxoffice_bundle::schedule::run_schedule(
                    &bundle,
                    Arc::new(boxoffice_bundle::schedule::SystemClock),
                    launch,
                    schedule_stop,
                )
                .await
            }))
        }
        None => None,
    };
    let before = BronzeRows::count(&lake).await;
    let queue = Arc::clone(landing.queue());
    let stats = Arc::clone(landing.stats());

    let (stop_tx, stop_rx) = watch::channel(false);
    let pacer = Pacer::new(pacing, generator_config.start);
    let mut producer = tokio::spawn(produce(
        generator,
        pacer,
        Arc::clone(&queue),
        stop_rx,
        args.count,
    ));
    let jobs = Arc::new(Mutex::new(JobsStatus::default()));
    let (jobs_stop_tx, jobs_stop_rx) = watch::channel(false);
    let job_task = cycle.map(|cycle| {
        let runs = CycleRuns::new(lake.clone());
        tokio::spawn(run_jobs(
            cycle,
            runs,
            interval,
            Arc::clone(&jobs),
            jobs_stop_rx,
        ))
    });
    let progress = {
        let queue = Arc::clone(&queue);
        let stats = Arc::clone(&stats);
        let jobs = Arc::clone(&jobs);
        Progress::start(move |elapsed| {
            let t = stats.totals();
            let rows = before.plus(&t);
            format!(
                "up {} | {} events/s | bookings_raw {} | payments_raw {} | quarantined {} | queued {} | bronze lag {:.1}s{}",
                config::short_duration(elapsed),
                thousands(rate(queue.accepted(), elapsed)),
                thousands(rows.bookings),
                thousands(rows.payments),
                thousands(rows.quarantined),
                thousands(queue.pending() as u64),
                t.last_lag_ms as f64 / 1000.0,
                jobs.lock().map(|j| j.line()).unwrap_or_default(),
            )
        })
    };

    let started = Instant::now();
    let duration = args.duration;
    let until_duration = async move {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    let (stop, produced) = tokio::select! {
        _ = shutdown_signal() => (Stop::Interrupted, None),
        _ = until_duration => (Stop::DurationReached, None),
        r = &mut producer => (Stop::CountReached, Some(r)),
    };
    let _ = stop_tx.send(true);
    let produced = match produced {
        Some(r) => r,
        None => producer.await,
    };
    progress.finish().await;
    let stop = match produced.context("the producer task failed")? {
        Ok(_) => stop,
        // The queue closes itself when an archiver fails; its error is reported by finish.
        Err(QueueError::Closed) => Stop::QueueClosed,
        Err(e) => return Err(e.into()),
    };
    let elapsed = started.elapsed();
    let accepted = queue.accepted();
    let totals = finish_landing(landing).await?;
    let _ = jobs_stop_tx.send(true);
    let _ = schedule_stop_tx.send(true);
    if let Some(task) = schedule {
        let log = task.await.context("the bundle scheduler failed")?;
        println!(
            "  bundle: {} scheduled runs started, {} skipped (max_concurrent_runs); see `boxoffice bundle status`",
            log.started.len(),
            log.skipped.len()
        );
    }
    let job_result = match job_task {
        Some(task) => Some(task.await.context("the job task failed")?),
        None => None,
    };
    let _ = dashboard_stop_tx.send(true);
    if let Some(dashboard) = dashboard {
        dashboard.finish().await?;
    }

    let why = match stop {
        Stop::Interrupted => "interrupted",
        Stop::DurationReached => "duration reached",
        Stop::CountReached => "count reached",
        Stop::QueueClosed => "the queue closed",
    };
    let replayed = totals.events().saturating_sub(accepted);
    println!(
        "stopped after {} ({why}): {} events accepted, every one landed{}",
        config::short_duration(elapsed),
        thousands(accepted),
        if replayed > 0 {
            format!(
                ", plus {} replayed from an earlier run that stopped before landing them",
                thousands(replayed)
            )
        } else {
            String::new()
        }
    );
    print_bronze_summary(&before, &totals);
    if let Some(result) = job_result {
        result.context("the last job cycle")?;
        let mut status = jobs.lock().map(|j| j.clone()).unwrap_or_default();
        println!(
            "  silver.bookings_fact   +{} rows in {} job cycles",
            thousands(status.fact_rows),
            status.cycles
        );
        if let Some((p50, p95)) = percentiles(&mut status.lags) {
            println!(
                "  freshness (a match's later event arriving -> in Gold): median {p50:.1}s, p95 {p95:.1}s over {} matches",
                thousands(status.lags.len() as u64)
            );
        }
        println!(
            "  bronze.movie_booking_cdc_events +{} change rows (the simulated booking service, through Silver to gold.movie_booking_insights)",
            thousands(status.cdc_changes)
        );
        println!(
            "  batch_load: {} rows from landing files (landing/event_catalog, landing/box_office_sales)",
            thousands(status.batch_rows)
        );
        println!(
            "  bookings still waiting for a payment stay in the join's state; `boxoffice job run bookings_fact --drain` resolves them"
        );
    }
    Ok(())
}

/// What the job cycles have done so far, for the progress line and the summary.
#[derive(Debug, Default, Clone)]
struct JobsStatus {
    cycles: u64,
    fact_rows: u64,
    cdc_changes: u64,
    batch_rows: u64,
    /// Freshness of every match so far, seconds.
    lags: Vec<f64>,
    /// Median freshness of the last cycle with matches.
    last_p50: Option<f64>,
    last_error: Option<String>,
    /// How long the last cycle took.
    last_millis: u128,
}

impl JobsStatus {
    fn line(&self) -> String {
        let fresh = self
            .last_p50
            .map_or("-".to_string(), |p| format!("{p:.1}s"));
        let error = self
            .last_error
            .as_ref()
            .map_or(String::new(), |e| format!(" | job error: {e}"));
        format!(
            " | silver fact {} | gold freshness {fresh} | cdc changes {} (cycle {} ms){error}",
            thousands(self.fact_rows),
            thousands(self.cdc_changes),
            self.last_millis
        )
    }
}

/// Runs the join and the Gold refresh every `interval` until `stop`, then once more so Silver
/// and Gold take in everything landed. An error is shown and retried next cycle, except in the
/// last one, which is returned.
async fn run_jobs(
    mut cycle: Cycle,
    mut runs: CycleRuns,
    interval: Duration,
    status: Arc<Mutex<JobsStatus>>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(interval) => false,
            _ = stop.changed() => true,
        };
        let started_at = chrono::Utc::now();
        let result = cycle.run().await;
        runs.record(started_at, &result);
        runs.flush(stopping).await;
        if let Ok(mut s) = status.lock() {
            match &result {
                Ok(r) => {
                    s.cycles += 1;
                    s.last_millis = r.millis;
                    s.fact_rows += r.fact_rows;
                    s.cdc_changes += r.cdc_changes;
                    s.batch_rows += r.batch_rows;
                    let mut lags = r.lags.clone();
                    if let Some((p50, _)) = percentiles(&mut lags) {
                        s.last_p50 = Some(p50);
                    }
                    s.lags.extend(lags);
                    // Bounded: a long run keeps its most recent million matches.
                    if s.lags.len() > 2_000_000 {
                        s.lags.drain(..1_000_000);
                    }
                    s.last_error = None;
                }
                Err(e) => s.last_error = Some(format!("{e:#}")),
            }
        }
        if stopping {
            result?;
            return cycle.checkpoint().await;
        }
    }
}
