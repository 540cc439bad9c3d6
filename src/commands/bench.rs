//! `boxoffice bench`: throughput and memory on this machine (benchmarks, not tests).

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, ensure};
use boxoffice_events::{Generator, GeneratorConfig};
use boxoffice_ingest::landing::Landing;
use boxoffice_lake::Lake;
use serde::Serialize;
use tokio::sync::watch;

use super::{BronzeRows, produce};
use crate::cli::{BenchCommand, BenchIngestArgs, GlobalArgs};
use crate::config::{self, Pacing};
use crate::pacing::Pacer;
use crate::progress::{Progress, rate, thousands};

pub async fn run(global: &GlobalArgs, command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Ingest(args) => ingest(global, args).await,
    }
}

/// Results of `bench ingest`.
#[derive(Debug, Serialize)]
struct IngestReport {
    events: u64,
    generator_events_per_sec: u64,
    generator_mb_per_sec: f64,
    landing_events_per_sec: u64,
    landing_seconds: f64,
    batches: u64,
    bookings_rows: u64,
    payments_rows: u64,
    quarantined_rows: u64,
    peak_rss_mb: Option<f64>,
    lake: String,
}

async fn ingest(global: &GlobalArgs, args: BenchIngestArgs) -> anyhow::Result<()> {
    let file = config::load(global)?;
    let scratch = tempfile::tempdir().context("creating a scratch lake")?;
    let lake = match &global.lake {
        Some(_) => config::lake(global, &file)?,
        None => Lake::local(scratch.path())?,
    };
    let landing_config = config::landing(&lake, &args.landing, &file)?;
    let generator_config = GeneratorConfig {
        seed: args.seed,
        start: config::fixed_start(),
        rate: 10_000.0,
        ..GeneratorConfig::default()
    };

    // 1. The generator alone.
    eprintln!(
        "bench ingest: generating {} events ...",
        thousands(args.events)
    );
    let started = Instant::now();
    let mut bytes = 0usize;
    for event in Generator::new(generator_config.clone())?.take(args.events as usize) {
        bytes += event.body.len();
    }
    let generator_secs = started.elapsed().as_secs_f64();

    // 2. End to end: generator -> queue -> archiver -> Delta, unpaced.
    eprintln!(
        "bench ingest: landing {} events into {} ...",
        thousands(args.events),
        lake.describe()
    );
    let landing = Landing::start(&lake, landing_config).await?;
    let before = BronzeRows::count(&lake).await;
    let stats = Arc::clone(landing.stats());
    let progress = Progress::start(move |elapsed| {
        let t = stats.totals();
        format!(
            "bench ingest {} | landed {} | {} events/s",
            config::short_duration(elapsed),
            thousands(t.events()),
            thousands(rate(t.events(), elapsed))
        )
    });
    let started = Instant::now();
    let (_stop_tx, stop_rx) = watch::channel(false);
    let sent = produce(
        Generator::new(generator_config)?,
        Pacer::new(Pacing::Unpaced, config::fixed_start()),
        Arc::clone(landing.queue()),
        stop_rx,
        Some(args.events),
    )
    .await?;
    let totals = landing.finish().await?;
    let landing_secs = started.elapsed().as_secs_f64();
    progress.finish().await;
    ensure!(
        totals.events() == sent,
        "landed {} events but sent {sent}",
        totals.events()
    );
    let after = before.plus(&totals);

    let report = IngestReport {
        events: sent,
        generator_events_per_sec: (args.events as f64 / generator_secs) as u64,
        generator_mb_per_sec: bytes as f64 / generator_secs / 1e6,
        landing_events_per_sec: (sent as f64 / landing_secs) as u64,
        landing_seconds: landing_secs,
        batches: totals.batches,
        bookings_rows: after.bookings,
        payments_rows: after.payments,
        quarantined_rows: after.quarantined,
        peak_rss_mb: peak_rss_mb(),
        lake: lake.describe(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("events                 {}", thousands(report.events));
        println!(
            "generator              {} events/s ({:.0} MB/s of JSON)",
            thousands(report.generator_events_per_sec),
            report.generator_mb_per_sec
        );
        println!(
            "bronze landing         {} events/s end to end ({:.1} s, {} batches committed)",
            thousands(report.landing_events_per_sec),
            report.landing_seconds,
            thousands(report.batches)
        );
        println!(
            "rows                   bookings_raw {}, payments_raw {}, quarantine {}",
            thousands(report.bookings_rows),
            thousands(report.payments_rows),
            thousands(report.quarantined_rows)
        );
        match report.peak_rss_mb {
            Some(mb) => println!("peak memory (RSS)      {mb:.0} MB"),
            None => println!("peak memory (RSS)      unavailable on this OS"),
        }
    }
    Ok(())
}

/// The process's peak resident memory, from /proc (Linux).
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}
