//! `boxoffice up`: the whole pipeline on this machine, until Ctrl-C or --duration.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use boxoffice_events::{Generator, GeneratorConfig};
use boxoffice_ingest::landing::{Landing, LandingConfig};
use boxoffice_ingest::queue::QueueError;
use boxoffice_jobs::silver::bookings_fact::BookingsFact;
use boxoffice_jobs::silver::shows_sold::last_show_sold;
use boxoffice_lake::Lake;
use tokio::sync::watch;

use super::booking_changes::{self, Beside};
use super::cycle_runs::CycleRuns;
use super::dashboard::Running;
use super::job::Cycle;
use super::up_jobs::{JobsStatus, Trigger, Vacuum, maintain_every, run_jobs};
use super::up_workers::Workers as UpWorkers;
use super::{BronzeRows, finish_landing, print_bronze_summary, produce, shutdown_signal};
use crate::cli::{GlobalArgs, UpArgs};
use crate::config::{self, Cadence, FileConfig, Pacing, StartDefault};
use crate::leases::{LANDING, Leases, Taking};

/// How often `up` compacts and checkpoints while its jobs run continuously. Every commit's
/// snapshot update replays each live file of its table, and a commit per hub every 200 ms leaves
/// hundreds of small files a minute: compacting every 15 s rather than every minute kept Gold
/// 0.7 s rather than 1.0 s behind in the fifth minute at 5,000 events/s (docs/performance.md).
const UP_MAINTENANCE_EVERY: Duration = Duration::from_secs(15);
use crate::pacing::Pacer;
use crate::progress::{Progress, rate, thousands};

/// Why `up` stopped.
enum Stop {
    Interrupted,
    LeaseLost(String),
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
    if let Some(bundle) = &bundle
        && !args.no_jobs
    {
        refuse_bundle_running_up_jobs(bundle)?;
    }
    let (generator_config, pacing) = config::generator(&args.generator, &file, StartDefault::Now)?;
    let mut landing_config = config::landing(&lake, &args.landing, &file)?;
    let cadence = config::job_cadence(&file, args.job_interval)?;
    // Run continuously, the join takes an event once every partition has committed past it:
    // the flush interval is most of Gold's lag, so it is shorter unless set.
    if cadence == Cadence::Continuous
        && !args.no_jobs
        && args.workers == 0
        && !config::flush_interval_set(&args.landing, &file)
    {
        landing_config.linger = config::CONTINUOUS_FLUSH;
    }
    // Refused settings stop up before anything starts; the generator itself is made once the
    // jobs are open (it starts after the shows the lake has sold).
    Generator::new(generator_config.clone()).context("generator settings")?;

    // Before anything is printed or started: a second `up` on this lake stops here.
    lake.prepare().await?;
    let mut names = vec![LANDING.to_string()];
    // With --workers, the workers take the jobs' leases, each its share of the join's shards.
    if !args.no_jobs && args.workers == 0 {
        names.extend(UP_JOBS.iter().map(|n| n.to_string()));
        for lease in crate::leases::join_leases(&lake, &file, None).await? {
            if !names.contains(&lease) {
                names.push(lease);
            }
        }
    }
    let leases =
        Arc::new(Leases::take(&lake, &names, "boxoffice up", Taking::refusing(&file)?).await?);
    let result = run_leased(
        &lake,
        &file,
        args,
        bundle,
        global,
        (generator_config, pacing, landing_config),
        Arc::clone(&leases),
    )
    .await;
    if let Ok(leases) = Arc::try_unwrap(leases) {
        leases.release().await?;
    }
    result
}

/// The jobs `up` runs every cycle, whose leases it holds while it runs.
const UP_JOBS: [&str; 4] = ["bookings_fact", "gold", "cdc", "batch_load"];

/// `up --bundle` with its own job cycle: a bundle task running one of the same jobs would be
/// refused by the lease `up` holds, every time it is scheduled.
fn refuse_bundle_running_up_jobs(bundle: &boxoffice_bundle::Bundle) -> anyhow::Result<()> {
    for job in boxoffice_bundle::schedule::scheduled(bundle) {
        if let Some(task) = job.tasks.iter().find(|t| UP_JOBS.contains(&t.job.as_str())) {
            anyhow::bail!(
                "the bundle's job '{}' runs {} (task '{}'), which up already runs every cycle; \
                 add --no-jobs to let the bundle's schedule run the jobs instead",
                job.key,
                task.job,
                task.key
            );
        }
    }
    Ok(())
}

/// What `up` runs once its leases are held.
async fn run_leased(
    lake: &Lake,
    file: &FileConfig,
    args: UpArgs,
    bundle: Option<boxoffice_bundle::Bundle>,
    global: &GlobalArgs,
    (mut generator_config, pacing, landing_config): (GeneratorConfig, Pacing, LandingConfig),
    leases: Arc<Leases>,
) -> anyhow::Result<()> {
    let lake = lake.clone();
    eprintln!("boxoffice up: lake {}", lake.describe());
    if let Some(note) = super::tables::long_tombstones_note(&lake).await? {
        eprintln!("  note: {note}");
    }
    let pace = match pacing {
        Pacing::RealTime { speed: 1.0 } => "real time".to_string(),
        Pacing::RealTime { speed } => format!("{speed}x compressed time"),
        Pacing::Unpaced => "unpaced".to_string(),
    };
    let cadence = config::job_cadence(file, args.job_interval)?;
    // Workers are other processes, which no landing notifies: they keep a timer.
    let interval = match cadence {
        Cadence::Every(d) => d,
        Cadence::Continuous if args.workers > 0 => config::job_interval(file, None)?,
        Cadence::Continuous => config::SIDE_JOBS_EVERY,
    };
    // The booking service's changes come with the side jobs, every `interval` either way.
    let cdc_changes = (args.cdc_rate as f64 * interval.as_secs_f64()).round() as usize;
    if args.workers > 0 {
        // A lake whose split the settings refuse stops up here, not in every worker.
        let settings = config::bookings_fact(file, None)?;
        let split = BookingsFact::check(&lake, &settings).await?;
        eprintln!(
            "  {} workers run the jobs every {} (the join as {}; the booking service makes {} changes/s for the cdc job)",
            args.workers,
            humantime::format_duration(interval),
            split.describe(),
            args.cdc_rate
        );
        if (split.shards as usize) < args.workers {
            eprintln!(
                "  note: only {} of them can join at once: set [jobs] shards (a divisor of \
                 partitions_per_hub) and rebuild with `boxoffice job run bookings_fact \
                 --full-refresh` to spread the join (docs/scale.md)",
                split.shards
            );
        }
    }
    let cycle = if args.no_jobs || args.workers > 0 {
        None
    } else {
        eprintln!(
            "  joining into Silver and refreshing Gold {}; batch_load and cdc every {}{}; the booking service makes {} changes/s for the cdc job",
            cadence.describe(),
            humantime::format_duration(interval),
            if cadence == Cadence::Continuous {
                " (cdc beside the join)"
            } else {
                ""
            },
            args.cdc_rate
        );
        Some(
            Cycle::open(&lake, file, cdc_changes)
                .await
                .context("opening the jobs")?,
        )
    };
    // No show is sold by two runs: this one starts after every show the lake has sold.
    let sold = last_show_sold(&lake, cycle.as_ref().map(Cycle::join)).await?;
    generator_config.first_show = generator_config.first_show.max(sold + 1);
    let generator = Generator::new(generator_config.clone()).context("generator settings")?;
    eprintln!(
        "  generating {} events/s ({pace}, seed {}, order ids order_{}-<n>, shows from event{}); flushing to Bronze every {} or {} events; Ctrl-C stops",
        generator_config.rate,
        generator_config.seed,
        generator.run_tag(),
        generator_config.first_show,
        humantime::format_duration(landing_config.linger),
        thousands(landing_config.max_batch as u64),
    );
    let (dashboard_stop_tx, dashboard_stop) = watch::channel(false);
    let dashboard = if args.no_dashboard {
        None
    } else {
        let running = Running::start(&lake, &args.dashboard, dashboard_stop).await?;
        eprintln!("  dashboard: {}", running.url);
        Some(running)
    };
    let queue_dir = landing_config.queue.dir.clone();
    let landing = Landing::start(&lake, landing_config)
        .await
        .context("starting the landing pipeline")?;
    let (schedule_stop_tx, schedule_stop) = watch::channel(false);
    let schedule = match bundle {
        Some(bundle) => {
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
    let workers = if args.workers > 0 {
        let logs = queue_dir.parent().map_or_else(
            || std::path::PathBuf::from("workers"),
            |p| p.join("workers"),
        );
        let started =
            UpWorkers::start(global, &lake, args.workers, interval, cdc_changes, &logs).await?;
        eprintln!(
            "  workers started (pids {:?}), logging to {}",
            started.pids(),
            logs.display()
        );
        Some(started)
    } else {
        None
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
    let jobs_stop_rx2 = jobs_stop_rx.clone();
    let job_task = cycle.map(|mut cycle| {
        let continuous = cadence == Cadence::Continuous;
        let runs = CycleRuns::new(lake.clone(), continuous);
        let trigger = Trigger {
            cadence,
            landed: landing.committed(),
        };
        // Run continuously, the booking service's changes and cdc go apart, so that none of
        // their turns holds back the events that land meanwhile.
        let changes = continuous
            .then(|| cycle.take_changes())
            .flatten()
            .map(|changes| {
                let beside = Beside {
                    every: config::SIDE_JOBS_EVERY,
                    status: Arc::clone(&jobs),
                    stop: jobs_stop_rx.clone(),
                    leases: Arc::clone(&leases),
                };
                booking_changes::spawn(changes, beside)
            });
        tokio::spawn(run_jobs(
            cycle,
            runs,
            trigger,
            Arc::clone(&jobs),
            jobs_stop_rx,
            Arc::clone(&leases),
            changes,
        ))
    });
    let maintenance_every = args.maintenance_every.unwrap_or(match cadence {
        Cadence::Continuous => UP_MAINTENANCE_EVERY,
        Cadence::Every(_) => Duration::ZERO,
    });
    let taking = Taking::refusing(file)?;
    let maintenance = (job_task.is_some() && !maintenance_every.is_zero()).then(|| {
        let vacuum = Vacuum {
            every: args.vacuum_every,
            retention: args.vacuum_retention,
        };
        let (lake, status) = (lake.clone(), Arc::clone(&jobs));
        boxoffice_jobs::background::spawn_async("maintenance", move || {
            maintain_every(
                lake,
                maintenance_every,
                vacuum,
                taking,
                status,
                jobs_stop_rx2,
            )
        })
    });
    let progress = {
        let queue = Arc::clone(&queue);
        let stats = Arc::clone(&stats);
        let jobs = Arc::clone(&jobs);
        let workers_line =
            (args.workers > 0).then(|| format!(" | jobs in {} workers", args.workers));
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
                match &workers_line {
                    Some(line) => line.clone(),
                    None => jobs.lock().map(|j| j.line()).unwrap_or_default(),
                },
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
        why = lease_lost(&leases) => (Stop::LeaseLost(why), None),
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
    // Everything accepted has landed: the workers' last cycle joins it.
    let worker_lines = match workers {
        Some(w) => w.finish().await?,
        None => Vec::new(),
    };
    let _ = schedule_stop_tx.send(true);
    if let Some(task) = schedule {
        let log = task.await.context("the bundle scheduler failed")?;
        println!(
            "  bundle: {} scheduled runs started, {} skipped (max_concurrent_runs); see `boxoffice bundle status`",
            log.started.len(),
            log.skipped.len()
        );
    }
    if let Some(task) = maintenance {
        task.await
            .context("the maintenance thread failed")?
            .context("the maintenance thread's runtime could not start")?;
    }
    let job_result = match job_task {
        Some(task) => Some(task.await.context("the job task failed")?),
        None => None,
    };
    let _ = dashboard_stop_tx.send(true);
    if let Some(dashboard) = dashboard {
        dashboard.finish().await?;
    }

    let why = match &stop {
        Stop::LeaseLost(why) => why.as_str(),
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
    for line in &worker_lines {
        println!("{line}");
    }
    if let Some(result) = job_result {
        result.context("the last job cycle")?;
        let mut status = jobs.lock().map(|j| j.clone()).unwrap_or_default();
        println!(
            "  silver.bookings_fact   +{} rows in {} job cycles",
            thousands(status.fact_rows),
            status.cycles
        );
        println!(
            "  jobs run {}: {} runs of the join and Gold refresh ({}/s), {} of them took new events in {} join batches",
            cadence.describe(),
            thousands(status.runs),
            per_second(status.runs, elapsed),
            thousands(status.cycles),
            thousands(status.batches)
        );
        if status.maintenance.0 > 0 {
            println!(
                "  maintenance every {}: {} turns compacted {} table files into {} and checkpointed every table",
                humantime::format_duration(maintenance_every),
                status.maintenance.0,
                thousands(status.maintenance.1),
                thousands(status.maintenance.2)
            );
            if !args.vacuum_every.is_zero() {
                println!(
                    "  vacuum every {} deleted {} replaced files at least {} old",
                    humantime::format_duration(args.vacuum_every),
                    thousands(status.vacuumed),
                    humantime::format_duration(args.vacuum_retention)
                );
            }
        }
        if let Some((p50, p95)) = status.lags.percentiles() {
            println!(
                "  freshness (a match's later event arriving -> in Gold): median {p50:.2}s, p95 {p95:.2}s over {} matches",
                thousands(status.lags.len())
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
            "  {} bookings and {} payments wait in the join's state for their match or the \
             watermark; the next `up` or `boxoffice job run bookings_fact` goes on with them \
             (--drain would resolve them now, as unpaid and orphans for good)",
            thousands(status.waiting.0 as u64),
            thousands(status.waiting.1 as u64)
        );
    }
    Ok(())
}

/// Resolves when one of `up`'s leases is lost (the lake was unreachable past the lease's expiry,
/// or another process took it over): `up` stops rather than write beside another writer.
async fn lease_lost(leases: &Leases) -> String {
    loop {
        if let Some(why) = leases.lost() {
            return why;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `n` per second over `elapsed`, with one decimal.
fn per_second(n: u64, elapsed: Duration) -> String {
    format!("{:.1}", n as f64 / elapsed.as_secs_f64().max(0.001))
}
