//! `boxoffice bench`: throughput and memory on this machine (benchmarks, not tests).
//!
//! `bench ingest` runs three phases over the same events, each measured on its own because on a
//! 2-core machine a producer running beside the archivers takes CPU from them:
//! 1. the generator alone, writing NDJSON to a file;
//! 2. Bronze landing alone: that file through the `ingest` path (read, route, queue, validate,
//!    Arrow, Parquet, Delta commits), the path a backfill or another producer's export takes;
//! 3. end to end, as `up --fast` runs: generator, queue and archivers at once.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use anyhow::{Context, ensure};
use boxoffice_events::{Generator, GeneratorConfig};
use boxoffice_ingest::landing::{Landing, LandingConfig, LandingStats, LandingTotals};
use boxoffice_lake::Lake;
use serde::Serialize;
use tokio::io::BufReader;
use tokio::sync::watch;

use super::ingest::land_lines;
use super::produce;
use crate::cli::{BenchCommand, BenchIngestArgs, GlobalArgs};
use crate::config::{self, Pacing};
use crate::pacing::Pacer;
use crate::progress::{Progress, rate, thousands};

pub async fn run(global: &GlobalArgs, command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Ingest(args) => ingest(global, args).await,
        BenchCommand::Jobs(args) => super::bench_jobs::run(global, args).await,
        BenchCommand::Scale(args) => super::bench_scale::run(args).await,
        BenchCommand::Cdc(args) => super::bench_cdc::run(args).await,
        BenchCommand::Batch(args) => super::bench_cdc::batch(args).await,
        BenchCommand::Functions(args) => super::bench_functions::run(args).await,
        BenchCommand::Dashboard(args) => super::bench_dashboard::run(global, args).await,
        BenchCommand::Commits(args) => super::bench_commits::run(global, args).await,
        BenchCommand::CommitWriter(args) => super::bench_commit_writer::run(global, args).await,
    }
}

/// One phase's result.
#[derive(Debug, Serialize)]
struct Phase {
    events: u64,
    seconds: f64,
    events_per_sec: u64,
    /// Peak resident memory during the phase (Linux only).
    peak_rss_mb: Option<f64>,
}

impl Phase {
    fn new(events: u64, started: Instant, peak_rss_mb: Option<f64>) -> Phase {
        let seconds = started.elapsed().as_secs_f64();
        Phase {
            events,
            seconds,
            events_per_sec: (events as f64 / seconds) as u64,
            peak_rss_mb,
        }
    }
}

/// Results of `bench ingest`.
#[derive(Debug, Serialize)]
struct IngestReport {
    generator: Phase,
    generator_mb_per_sec: f64,
    landing: Phase,
    end_to_end: Phase,
    batches: u64,
    quarantined: u64,
}

async fn ingest(global: &GlobalArgs, args: BenchIngestArgs) -> anyhow::Result<()> {
    let file = config::load(global)?;
    let scratch = tempfile::tempdir().context("creating a scratch folder")?;
    let lake_for = |name: &str| -> anyhow::Result<Lake> {
        Ok(match &global.lake {
            Some(_) => config::lake(global, &file)?,
            None => Lake::local(&scratch.path().join(name))?,
        })
    };
    let generator_config = GeneratorConfig {
        seed: args.seed,
        start: config::fixed_start(),
        rate: 10_000.0,
        ..GeneratorConfig::default()
    };
    let n = args.events;

    // 1. The generator alone.
    eprintln!(
        "bench ingest 1/3: generating {} events to NDJSON ...",
        thousands(n)
    );
    let ndjson = scratch.path().join("events.ndjson");
    reset_peak_rss();
    let started = Instant::now();
    let bytes = write_events(&generator_config, n, &ndjson)?;
    let generator = Phase::new(n, started, peak_rss_mb());
    let generator_mb_per_sec = bytes as f64 / generator.seconds / 1e6;

    // 2. Bronze landing alone, from that file.
    let lake = lake_for("landing")?;
    eprintln!(
        "bench ingest 2/3: landing the file into {} ...",
        lake.describe()
    );
    let landing_config = config::landing(&lake, &args.landing, &file)?;
    reset_peak_rss();
    let started = Instant::now();
    let (landing, landed) = {
        let landing = Landing::start(&lake, landing_config).await?;
        let progress = show_progress("landing", landing.stats());
        let mut reader = BufReader::with_capacity(1 << 20, tokio::fs::File::open(&ndjson).await?);
        let lines = land_lines(
            &mut reader,
            landing.queue(),
            None,
            &AtomicU64::new(0),
            None,
            std::future::pending(),
        )
        .await?;
        let totals = landing.finish().await?;
        progress.finish().await;
        ensure!(lines.read == n, "read {} of {n} lines", lines.read);
        (Phase::new(n, started, peak_rss_mb()), totals)
    };
    ensure!(landed.events() == n, "landed {} of {n}", landed.events());

    // 3. End to end, generator and landing at once.
    let lake = lake_for("end-to-end")?;
    eprintln!(
        "bench ingest 3/3: generating and landing at once into {} ...",
        lake.describe()
    );
    let landing_config = config::landing(&lake, &args.landing, &file)?;
    reset_peak_rss();
    let started = Instant::now();
    let (end_to_end, totals) = end_to_end(&lake, landing_config, generator_config, n).await?;
    let end_to_end = Phase::new(end_to_end, started, peak_rss_mb());
    ensure!(totals.events() == n, "landed {} of {n}", totals.events());

    let report = IngestReport {
        generator,
        generator_mb_per_sec,
        landing,
        end_to_end,
        batches: landed.batches,
        quarantined: landed.quarantined,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

fn write_events(config: &GeneratorConfig, n: u64, path: &Path) -> anyhow::Result<usize> {
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut bytes = 0;
    for event in Generator::new(config.clone())?.take(n as usize) {
        bytes += event.body.len() + 1;
        out.write_all(event.body.as_bytes())?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(bytes)
}

pub(super) async fn end_to_end(
    lake: &Lake,
    landing_config: LandingConfig,
    generator_config: GeneratorConfig,
    n: u64,
) -> anyhow::Result<(u64, LandingTotals)> {
    let landing = Landing::start(lake, landing_config).await?;
    let progress = show_progress("end to end", landing.stats());
    let (_stop, stop_rx) = watch::channel(false);
    let sent = produce(
        Generator::new(generator_config)?,
        Pacer::new(Pacing::Unpaced, config::fixed_start()),
        Arc::clone(landing.queue()),
        stop_rx,
        Some(n),
    )
    .await?;
    let totals = landing.finish().await?;
    progress.finish().await;
    Ok((sent, totals))
}

fn show_progress(phase: &'static str, stats: &Arc<LandingStats>) -> Progress {
    let stats = Arc::clone(stats);
    Progress::start(move |elapsed| {
        let landed = stats.totals().events();
        format!(
            "bench ingest, {phase} {} | landed {} | {} events/s",
            config::short_duration(elapsed),
            thousands(landed),
            thousands(rate(landed, elapsed))
        )
    })
}

fn print_report(r: &IngestReport) {
    let mem = |p: &Phase| {
        p.peak_rss_mb
            .map_or("peak memory unavailable".to_string(), |mb| {
                format!("peak memory {mb:.0} MB")
            })
    };
    println!(
        "generator              {:>9} events/s   ({:.0} MB/s of NDJSON; {})",
        thousands(r.generator.events_per_sec),
        r.generator_mb_per_sec,
        mem(&r.generator)
    );
    println!(
        "bronze landing         {:>9} events/s   ({} events in {:.1} s, {} raw-table commits; {})",
        thousands(r.landing.events_per_sec),
        thousands(r.landing.events),
        r.landing.seconds,
        thousands(r.batches),
        mem(&r.landing)
    );
    println!(
        "end to end (up --fast) {:>9} events/s   ({:.1} s; {})",
        thousands(r.end_to_end.events_per_sec),
        r.end_to_end.seconds,
        mem(&r.end_to_end)
    );
    println!(
        "quarantined            {:>9} events",
        thousands(r.quarantined)
    );
}

/// Resets the process's peak resident memory, so each phase reports its own (Linux).
pub(super) fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The process's peak resident memory since the last reset, from /proc (Linux).
pub(super) fn peak_rss_mb() -> Option<f64> {
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

/// Whose CPU time [`cpu_seconds`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cpu {
    /// This process's own threads (`utime` and `stime`).
    Own,
    /// Its children that have exited and been waited for (`cutime` and `cstime`).
    Children,
}

/// Linux's USER_HZ: the unit of the CPU times in `/proc/<pid>/stat`.
const TICKS_PER_SECOND: f64 = 100.0;

/// User and system CPU seconds from `/proc/self/stat` (benchmarks measure CPU on Linux only).
pub(super) fn cpu_seconds(whose: Cpu) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")
        .context("reading /proc/self/stat (benchmarks measure CPU time on Linux only)")?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("/proc/self/stat has no command name")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime, stime, cutime and cstime are fields 14 to 17 of the whole line: 11 to 14 after
    // the name, counted from 0.
    let ticks = |i: usize| -> anyhow::Result<f64> {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .with_context(|| format!("/proc/self/stat has no field {}", i + 3))
    };
    let first = match whose {
        Cpu::Own => 11,
        Cpu::Children => 13,
    };
    Ok((ticks(first)? + ticks(first + 1)?) / TICKS_PER_SECOND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_time_of_the_process_and_its_children_is_read() {
        let spin = Instant::now();
        let mut x = 0u64;
        while spin.elapsed().as_millis() < 50 {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(cpu_seconds(Cpu::Own).expect("own") > 0.0);
        assert!(cpu_seconds(Cpu::Children).expect("children") >= 0.0);
    }
}
