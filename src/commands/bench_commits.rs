//! `boxoffice bench commits`: concurrent commits to one table, as join shards make them
//! (docs/commits.md).
//!
//! For each writer count, that many `bench commit-writer` processes append small batches to a
//! fresh table, each with its own application transaction, from the same start signal for the
//! same time. Processes rather than tasks, because shards are processes: each has its own
//! snapshot of the table and its own connection pool, and they share only the storage. Then the
//! table is read back: every writer's batches must be there exactly once, 1 to its last, and
//! its application transaction must say that last one.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use boxoffice_lake::{Lake, committed_version, read_rows};
use deltalake::arrow::array::AsArray;
use deltalake::arrow::datatypes::{Int32Type, Int64Type};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

use super::bench_commit_writer::{BENCH_TABLE, WriterReport, app_id};
use crate::cli::{BenchCommitsArgs, CommitPolicyName, GlobalArgs};
use crate::config;
use crate::progress::thousands;

/// One run's figures.
#[derive(Debug, Serialize)]
pub struct RunFigures {
    pub storage: String,
    pub policy: CommitPolicyName,
    pub writers: usize,
    pub seconds: f64,
    /// Batches that landed.
    pub batches: u64,
    pub batches_per_sec: f64,
    /// Table commits (each one version of the table).
    pub commits: u64,
    pub commits_per_sec: f64,
    pub batches_per_commit: f64,
    /// Versions lost to other writers per commit.
    pub retries_per_commit: f64,
    /// Backoff rounds beyond the first, per commit.
    pub extra_rounds_per_commit: f64,
    /// Commits that returned an error.
    pub failures: u64,
    pub first_failure: Option<String>,
    /// Batches found committed already on a retry.
    pub already_committed: u64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
    /// Batches missing from the table (up to a writer's last).
    pub lost_batches: u64,
    /// Batches found with other than --rows rows (landed twice).
    pub duplicated_batches: u64,
    /// Batches that landed though their append reported an error, when the run ended before
    /// the writer tried again (which finds them committed): at most one per failing writer.
    pub unconfirmed_batches: u64,
    /// Batches no writer can account for (should be 0).
    pub unexpected_batches: u64,
    /// Writers whose application transaction is not their newest batch in the table.
    pub wrong_transactions: u64,
    /// Table versions beyond its creation that no writer reported making, besides the
    /// unconfirmed batches' (should be 0).
    pub unexplained_versions: i64,
    /// Where the run's table is.
    pub table: String,
}

pub async fn run(global: &GlobalArgs, args: BenchCommitsArgs) -> anyhow::Result<()> {
    ensure!(args.rows > 0, "--rows must be at least 1");
    let file = config::load(global)?;
    let scratch = tempfile::tempdir().context("creating a scratch folder")?;
    let root = match &global.lake {
        Some(lake) => lake.trim_end_matches('/').to_string(),
        None => scratch.path().display().to_string(),
    };
    let mut runs = Vec::new();
    for &policy in &args.policy {
        for &writers in &args.writers {
            ensure!(writers > 0, "--writers counts must be at least 1");
            let name = serde_json::to_value(policy)?;
            let run_global = GlobalArgs {
                lake: Some(format!(
                    "{root}/commits-{}-{writers}",
                    name.as_str().unwrap_or("run")
                )),
                ..global.clone()
            };
            let lake = config::lake(&run_global, &file)?;
            eprintln!(
                "bench commits: {writers} writer(s), {policy:?} commits, {} on {} ...",
                humantime::format_duration(args.duration),
                lake.describe()
            );
            let figures = one_run(&run_global, &lake, &args, policy, writers).await?;
            if !args.json {
                print_run(&figures);
            }
            runs.push(figures);
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
    }
    Ok(())
}

async fn one_run(
    global: &GlobalArgs,
    lake: &Lake,
    args: &BenchCommitsArgs,
    policy: CommitPolicyName,
    writers: usize,
) -> anyhow::Result<RunFigures> {
    lake.prepare().await?;
    let table = lake.ensure_table(&BENCH_TABLE).await?;
    if table.version().unwrap_or(0) > 0 {
        bail!(
            "{} already holds a bench run: give a fresh --lake",
            lake.table_url(BENCH_TABLE.layer, BENCH_TABLE.name)?
        );
    }
    let mut children = Vec::new();
    for writer in 0..writers {
        children.push(spawn_writer(global, args, policy, writer as u32)?);
    }
    let mut outputs = Vec::new();
    for (child, writer) in children.iter_mut().zip(0..) {
        let stdout = child.stdout.take().context("a writer's output")?;
        let mut lines = BufReader::new(stdout).lines();
        match lines.next_line().await? {
            Some(line) if line == "ready" => outputs.push(lines),
            other => bail!("writer {writer} did not start (said {other:?}); see its errors above"),
        }
    }
    let started = Instant::now();
    for child in &mut children {
        let mut stdin = child.stdin.take().context("a writer's input")?;
        stdin.write_all(b"go\n").await?;
    }
    let mut reports = Vec::new();
    for (mut lines, child) in outputs.into_iter().zip(children.iter_mut()) {
        reports.push(report_of(&mut lines).await?);
        let status = child.wait().await?;
        ensure!(status.success(), "a writer exited with {status}");
    }
    let seconds = started.elapsed().as_secs_f64();
    let found = batches_found(lake).await?;
    figures(lake, policy, writers, seconds, args.rows, reports, found).await
}

fn spawn_writer(
    global: &GlobalArgs,
    args: &BenchCommitsArgs,
    policy: CommitPolicyName,
    writer: u32,
) -> anyhow::Result<Child> {
    let exe = std::env::current_exe().context("finding this program to start writers")?;
    let mut cmd = Command::new(exe);
    if let Some(lake) = &global.lake {
        cmd.arg("--lake").arg(lake);
    }
    if global.emulator {
        cmd.arg("--emulator");
    }
    if let Some(endpoint) = &global.emulator_endpoint {
        cmd.arg("--emulator-endpoint").arg(endpoint);
    }
    if let Some(config) = &global.config {
        cmd.arg("--config").arg(config);
    }
    let name = serde_json::to_value(policy)?;
    cmd.args(["bench", "commit-writer", "--writer"])
        .arg(writer.to_string())
        .arg("--duration")
        .arg(format!("{}ms", args.duration.as_millis()))
        .arg("--rows")
        .arg(args.rows.to_string())
        .arg("--policy")
        .arg(name.as_str().unwrap_or("held"))
        .arg("--delta-retries")
        .arg(args.delta_retries.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    cmd.spawn().context("starting a writer process")
}

async fn report_of(
    lines: &mut tokio::io::Lines<BufReader<ChildStdout>>,
) -> anyhow::Result<WriterReport> {
    let line = lines
        .next_line()
        .await?
        .context("a writer ended without its report; see its errors above")?;
    serde_json::from_str(&line).with_context(|| format!("a writer's report: {line}"))
}

/// Each (writer, batch) in the table and how many rows it has.
type Found = BTreeMap<(i32, i64), u64>;

async fn batches_found(lake: &Lake) -> anyhow::Result<Found> {
    let table = lake
        .open_table(&BENCH_TABLE)
        .await?
        .context("the bench table vanished")?;
    let mut found = Found::new();
    for batch in read_rows(&table).await? {
        let writer = batch
            .column_by_name("writer")
            .context("no writer column")?
            .as_primitive::<Int32Type>();
        let number = batch
            .column_by_name("batch")
            .context("no batch column")?
            .as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            *found.entry((writer.value(i), number.value(i))).or_default() += 1;
        }
    }
    Ok(found)
}

async fn figures(
    lake: &Lake,
    policy: CommitPolicyName,
    writers: usize,
    seconds: f64,
    rows: usize,
    reports: Vec<WriterReport>,
    found: Found,
) -> anyhow::Result<RunFigures> {
    let mut table = lake
        .open_table(&BENCH_TABLE)
        .await?
        .context("the bench table vanished")?;
    let mut check = Check::default();
    for r in &reports {
        check.writer(&found, r, rows as u64);
        let newest = newest(&found, r.writer as i32);
        if newest > 0 && committed_version(&mut table, &app_id(r.writer)).await? != Some(newest) {
            check.wrong_transactions += 1;
        }
    }
    check.unexpected += found
        .keys()
        .filter(|(w, _)| !reports.iter().any(|r| r.writer as i32 == *w))
        .count() as u64;
    let commits: u64 = reports.iter().map(|r| r.commits).sum();
    let batches: u64 = reports.iter().map(|r| r.batches).sum();
    let versions = table.version().unwrap_or(0);
    let per_commit = |n: u64| n as f64 / commits.max(1) as f64;
    let mut latencies: Vec<f64> = reports
        .iter()
        .flat_map(|r| r.latencies_ms.iter().copied())
        .collect();
    latencies.sort_by(f64::total_cmp);
    let percentile = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        latencies[((latencies.len() - 1) as f64 * p).round() as usize]
    };
    Ok(RunFigures {
        storage: format!("{:?}", lake.kind()).to_lowercase(),
        policy,
        writers,
        seconds,
        batches,
        batches_per_sec: batches as f64 / seconds,
        commits,
        commits_per_sec: commits as f64 / seconds,
        batches_per_commit: batches as f64 / commits.max(1) as f64,
        retries_per_commit: per_commit(reports.iter().map(|r| r.retries).sum()),
        extra_rounds_per_commit: per_commit(reports.iter().map(|r| r.extra_rounds).sum()),
        failures: reports.iter().map(|r| r.failures).sum(),
        first_failure: reports.iter().find_map(|r| r.first_failure.clone()),
        already_committed: reports.iter().map(|r| r.already_committed).sum(),
        latency_p50_ms: percentile(0.5),
        latency_p99_ms: percentile(0.99),
        latency_max_ms: percentile(1.0),
        lost_batches: check.lost,
        duplicated_batches: check.duplicated,
        unconfirmed_batches: check.unconfirmed,
        unexpected_batches: check.unexpected,
        wrong_transactions: check.wrong_transactions,
        unexplained_versions: versions as i64 - commits as i64 - check.unconfirmed as i64,
        table: lake
            .table_url(BENCH_TABLE.layer, BENCH_TABLE.name)?
            .to_string(),
    })
}

/// What reading a run's table back found.
#[derive(Debug, Default)]
struct Check {
    lost: u64,
    duplicated: u64,
    unconfirmed: u64,
    unexpected: u64,
    wrong_transactions: u64,
}

impl Check {
    /// Checks one writer's batches: each from 1 to its newest once, with `rows` rows.
    fn writer(&mut self, found: &Found, report: &WriterReport, rows: u64) {
        let writer = report.writer as i32;
        let newest = newest(found, writer);
        for batch in 1..=report.last_batch.max(newest) {
            match found.get(&(writer, batch)) {
                None => self.lost += 1,
                Some(&n) if n != rows => self.duplicated += 1,
                Some(_) => {}
            }
        }
        match newest - report.last_batch {
            past if past <= 0 => {}
            1 if report.failures > 0 => self.unconfirmed += 1,
            past => self.unexpected += past as u64,
        }
    }
}

/// A writer's newest batch in the table (0: none).
fn newest(found: &Found, writer: i32) -> i64 {
    found
        .range((writer, i64::MIN)..=(writer, i64::MAX))
        .next_back()
        .map_or(0, |((_, b), _)| *b)
}

fn print_run(f: &RunFigures) {
    println!(
        "{:>2} writers {:<7} {:<7} {:>7.1} batches/s {:>6.1} commits/s ({:.1} batches each) {:>5.2} retries/commit {:>5.3} backoff rounds/commit {} failed; latency p50 {:.0} ms p99 {:.0} ms max {:.0} ms",
        f.writers,
        format!("{:?}", f.policy).to_lowercase(),
        f.storage,
        f.batches_per_sec,
        f.commits_per_sec,
        f.batches_per_commit,
        f.retries_per_commit,
        f.extra_rounds_per_commit,
        thousands(f.failures),
        f.latency_p50_ms,
        f.latency_p99_ms,
        f.latency_max_ms,
    );
    println!(
        "   {} batches in {} commits over {:.1}s; lost {}, duplicated {}, unconfirmed {}, unexpected {}, wrong transactions {}, unexplained versions {}",
        thousands(f.batches),
        thousands(f.commits),
        f.seconds,
        f.lost_batches,
        f.duplicated_batches,
        f.unconfirmed_batches,
        f.unexpected_batches,
        f.wrong_transactions,
        f.unexplained_versions,
    );
    if let Some(e) = &f.first_failure {
        println!("   first failure: {e}");
    }
}
