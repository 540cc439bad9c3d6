//! `boxoffice up`: the whole pipeline on this machine, until Ctrl-C or --duration.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use boxoffice_events::Generator;
use boxoffice_ingest::landing::Landing;
use boxoffice_ingest::queue::QueueError;
use tokio::sync::watch;

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
        "  generating {} events/s ({pace}, seed {}); flushing to Bronze every {} or {} events; Ctrl-C stops",
        generator_config.rate,
        generator_config.seed,
        humantime::format_duration(landing_config.linger),
        thousands(landing_config.max_batch as u64),
    );
    let landing = Landing::start(&lake, landing_config)
        .await
        .context("starting the landing pipeline")?;
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
    let progress = {
        let queue = Arc::clone(&queue);
        let stats = Arc::clone(&stats);
        Progress::start(move |elapsed| {
            let t = stats.totals();
            let rows = before.plus(&t);
            format!(
                "up {} | {} events/s | bookings_raw {} | payments_raw {} | quarantined {} | queued {} | bronze lag {:.1}s",
                config::short_duration(elapsed),
                thousands(rate(queue.accepted(), elapsed)),
                thousands(rows.bookings),
                thousands(rows.payments),
                thousands(rows.quarantined),
                thousands(queue.pending() as u64),
                t.last_lag_ms as f64 / 1000.0,
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
    Ok(())
}
