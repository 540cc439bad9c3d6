//! `boxoffice bench scale`: the join's cost when `boxoffice worker` processes share its shards.
//!
//! Generated events are landed once in a scratch Bronze; then, for each worker count, a fresh
//! copy of that Bronze is drained by that many `worker --drain` processes (shards only, started
//! together with `--min-workers`, so that the shares are balanced from the start). Each run is
//! measured from outside: wall time, the CPU time of the worker processes (the kernel's account
//! of this process's waited-for children), and the Silver tables' Delta logs (commits, and the
//! retries delta-rs records in each commit's `operationMetrics`). Every run must leave the Silver
//! tables with the row counts of the first run; otherwise the benchmark fails.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use boxoffice_events::GeneratorConfig;
use boxoffice_jobs::gold;
use boxoffice_jobs::silver::tables::{
    BOOKINGS_FACT, LATE_EVENTS, ORPHAN_PAYMENTS, UNPAID_BOOKINGS,
};
use boxoffice_lake::{Lake, Layer, TableDef, TableState};

use super::bench::{Cpu, cpu_seconds, end_to_end};
use super::bench_scale_report::{
    Commits, Measured, Report, Run, compare, print_report, projection, write_markdown,
};
use crate::cli::{BenchScaleArgs, LandingArgs};
use crate::config::{self, FileConfig};
use crate::progress::thousands;

/// The Silver tables whose row counts every run must reproduce (the expectations table holds one
/// row per batch and check, which depends on batch sizes, not results).
const SILVER: [&TableDef; 4] = [
    &BOOKINGS_FACT,
    &UNPAID_BOOKINGS,
    &ORPHAN_PAYMENTS,
    &LATE_EVENTS,
];

pub async fn run(args: BenchScaleArgs) -> anyhow::Result<()> {
    let partitions = args.partitions;
    let shards = args.shards.unwrap_or(partitions);
    ensure!(
        partitions > 0 && shards > 0 && partitions.is_multiple_of(shards),
        "--shards {shards} must divide --partitions {partitions}"
    );
    ensure!(
        !args.workers.is_empty() && args.workers.iter().all(|n| *n > 0),
        "--workers takes worker counts of at least 1, e.g. 1,2,4"
    );
    let scratch = tempfile::tempdir().context("creating a scratch folder")?;
    let settings = scratch.path().join("boxoffice.toml");
    let mut toml = format!("[jobs]\npartitions_per_hub = {partitions}\nshards = {shards}\n");
    if let Some(n) = args.max_events {
        toml.push_str(&format!("max_events = {n}\n"));
    }
    std::fs::write(&settings, &toml).context("writing the benchmark's settings")?;
    let file: FileConfig = toml::from_str(&toml).context("the benchmark's settings")?;
    let max_events = config::bookings_fact(&file, None)?.max_events;

    let steps = args.workers.len() + 1;
    eprintln!(
        "bench scale 1/{steps}: landing {} generated events in a Bronze of {partitions} partitions per hub ...",
        thousands(args.events)
    );
    let bronze = Lake::local(&scratch.path().join("bronze"))?;
    let landing = LandingArgs {
        queue_dir: Some(scratch.path().join("queue")),
        ..LandingArgs::default()
    };
    let generated = GeneratorConfig {
        seed: args.seed,
        start: config::fixed_start(),
        // A quarter of an hour of simulated sales whatever the size, so that most orders' payments
        // land (the join window is two minutes) and the join does its whole work.
        rate: (args.events as f64 / 900.0).max(10.0),
        ..GeneratorConfig::default()
    };
    let landing = config::landing(&bronze, &landing, &file)?;
    let (_, landed) = end_to_end(&bronze, landing, generated, args.events).await?;
    let events = landed.bookings + landed.payments;
    let bronze_dir = bronze
        .local_dir(Layer::Bronze)
        .context("the scratch lake is a local folder")?;

    let mut runs: Vec<Run> = Vec::new();
    for (i, &workers) in args.workers.iter().enumerate() {
        eprintln!(
            "bench scale {}/{steps}: {workers} worker processes drain {} shards over a fresh copy of Bronze ...",
            i + 2,
            shards
        );
        let dir = scratch
            .path()
            .join(format!("run-{}-workers-{workers}", i + 1));
        let lake = Lake::local(&dir.join("lake"))?;
        let target = lake
            .local_dir(Layer::Bronze)
            .context("the scratch lake is a local folder")?;
        copy_dir(&bronze_dir, &target)?;
        let measured = drain(&dir, &settings, workers, args.timeout).await?;
        let rows = silver_rows(&lake).await?;
        if let Some(first) = runs.first()
            && first.silver_rows != rows
        {
            bail!(
                "the Silver tables after {workers} workers differ from those after {} (rows per \
                 table {}: {:?} against {:?}): sharding changed the results; the workers' logs \
                 are in {}",
                first.workers,
                SILVER.map(|t| t.name).join(", "),
                rows,
                first.silver_rows,
                dir.display()
            );
        }
        let commits = commits(&lake)?;
        let started = Instant::now();
        gold::refresh(&lake, true).await?;
        let gold_full_ms = started.elapsed().as_secs_f64() * 1000.0;
        let started = Instant::now();
        gold::refresh(&lake, false).await?;
        let gold_idle_ms = started.elapsed().as_secs_f64() * 1000.0;
        runs.push(Run::new(
            workers,
            events,
            measured,
            rows,
            commits,
            gold_full_ms,
            gold_idle_ms,
        ));
    }
    compare(&mut runs);
    let report = Report {
        events,
        bookings: landed.bookings,
        payments: landed.payments,
        partitions_per_hub: partitions,
        shards,
        max_events,
        cores: cores(),
        rows_match: true,
        projection: projection(&runs, shards, max_events, args.rate_per_partition),
        runs,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    if let Some(path) = &args.markdown {
        write_markdown(&report, path)?;
    }
    Ok(())
}

/// Runs `workers` `boxoffice worker --drain` processes on the lake in `dir` until all exit.
async fn drain(
    dir: &Path,
    settings: &Path,
    workers: usize,
    timeout: std::time::Duration,
) -> anyhow::Result<Measured> {
    let exe = std::env::current_exe().context("finding the boxoffice binary")?;
    let before = cpu_seconds(Cpu::Children)?;
    let started = Instant::now();
    let mut children = Vec::with_capacity(workers);
    for i in 0..workers {
        let log = dir.join(format!("worker-{i}.log"));
        let out =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone().context("the worker's log")?;
        let child = tokio::process::Command::new(&exe)
            .arg("--lake")
            .arg(dir.join("lake"))
            .arg("--config")
            .arg(settings)
            .args([
                "worker",
                "--drain",
                "--shards-only",
                "--maintenance-every",
                "0s",
            ])
            .args(["--interval", "100ms", "--name", &format!("bench-{i}")])
            .args(["--min-workers", &workers.to_string()])
            .env_remove("BOXOFFICE_LAKE")
            .env_remove("BOXOFFICE_CONFIG")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting worker {i}"))?;
        children.push((log, child));
    }
    for (log, child) in &mut children {
        let status = tokio::time::timeout(timeout, child.wait())
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "a worker had not drained after {} (raise --timeout); see {}",
                    humantime::format_duration(timeout),
                    log.display()
                )
            })?
            .context("waiting for a worker")?;
        if !status.success() {
            let text = std::fs::read_to_string(&*log).unwrap_or_default();
            bail!(
                "a worker failed ({status}); its log, {}:\n{}",
                log.display(),
                tail(&text, 20)
            );
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Measured {
        seconds,
        cpu_seconds: cpu_seconds(Cpu::Children)? - before,
    })
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Row counts of the Silver tables, in [`SILVER`]'s order.
async fn silver_rows(lake: &Lake) -> anyhow::Result<Vec<u64>> {
    let mut rows = Vec::with_capacity(SILVER.len());
    for table in SILVER {
        rows.push(match lake.inspect(table).await?.state {
            TableState::Present { rows, .. } => rows.unwrap_or(0),
            TableState::Missing => 0,
        });
    }
    Ok(rows)
}

/// The appends to the Silver tables (one per table and shard batch) and the retries delta-rs
/// recorded in their logs.
fn commits(lake: &Lake) -> anyhow::Result<Commits> {
    let mut counted = Commits::default();
    for table in SILVER {
        let dir = lake
            .local_dir(table.layer)
            .context("the scratch lake is a local folder")?
            .join(table.name)
            .join("_delta_log");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path: PathBuf = entry?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let commit = commit_info(&text);
            counted.retries += commit.retries;
            if commit.write {
                counted.appends += 1;
                if std::ptr::eq(table, &BOOKINGS_FACT) {
                    counted.fact_appends += 1;
                    counted.fact_batches += commit.batches;
                }
            }
        }
    }
    Ok(counted)
}

/// What one commit file says, read in one pass over its actions.
#[derive(Default)]
struct CommitInfo {
    /// It is an append (`WRITE`).
    write: bool,
    /// The retries delta-rs recorded for it.
    retries: u64,
    /// The batches it holds: one application transaction each (a group commit holds several).
    batches: u64,
}

fn commit_info(text: &str) -> CommitInfo {
    let mut found = CommitInfo::default();
    for line in text.lines() {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if value.get("txn").is_some() {
            found.batches += 1;
        }
        if let Some(info) = value.get("commitInfo") {
            found.write = info.get("operation").and_then(|o| o.as_str()) == Some("WRITE");
            found.retries = info
                .get("operationMetrics")
                .and_then(|m| m.get("num_retries"))
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
        }
    }
    found
}

/// Copies a folder tree (a Bronze layer) to `to`.
fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("copying to {}", target.display()))?;
        }
    }
    Ok(())
}

/// The cores this process may use.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_info_reads_the_operation_the_retries_and_the_batches() {
        let facts = |text| {
            let c = commit_info(text);
            (c.write, c.retries, c.batches)
        };
        let retried = "{\"add\":{}}\n{\"commitInfo\":{\"operation\":\"WRITE\",\"operationMetrics\":{\"num_retries\":3}}}";
        assert_eq!(facts(retried), (true, 3, 0));
        let plain = "{\"commitInfo\":{\"operation\":\"CREATE TABLE\"}}";
        assert_eq!(facts(plain), (false, 0, 0));
        let grouped = "{\"commitInfo\":{\"operation\":\"WRITE\"}}\n{\"txn\":{\"appId\":\"a\",\"version\":1}}\n{\"txn\":{\"appId\":\"b\",\"version\":4}}\n{\"add\":{}}";
        assert_eq!(facts(grouped), (true, 0, 2));
    }
}
