//! `bench scale`'s figures: each run's, the projection to more partitions, and how they print
//! (a table, JSON, Markdown).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::progress::thousands;

/// The sharding overhead the issue allows: CPU per event within 15% of one process.
const OVERHEAD_TARGET: f64 = 1.15;

/// The cycle of a live worker (`[jobs] interval`'s default), for the projection.
const INTERVAL_SECONDS: f64 = 2.0;

/// The partition counts the projection covers (besides the measured one).
const PROJECTED_PARTITIONS: [u32; 3] = [16, 32, 64];

/// Vcores of the worker the sizing assumes (a 2-vCPU container replica).
const WORKER_CORES: f64 = 2.0;

/// What is measured from outside a run's worker processes.
pub struct Measured {
    pub seconds: f64,
    pub cpu_seconds: f64,
}

/// Commits counted in a run's Silver logs.
#[derive(Debug, Default)]
pub struct Commits {
    /// Appends to silver.bookings_fact: one per shard batch, or per group of them.
    pub fact_appends: u64,
    /// Shard batches in those appends (their application transactions).
    pub fact_batches: u64,
    /// Appends to every Silver table.
    pub appends: u64,
    /// Retries delta-rs recorded in those commits (`operationMetrics.num_retries`).
    pub retries: u64,
}

/// One run: `workers` processes draining the same Bronze.
#[derive(Debug, Serialize)]
pub struct Run {
    pub workers: usize,
    pub seconds: f64,
    pub cpu_seconds: f64,
    pub cpu_seconds_per_million_events: f64,
    /// CPU per event against the first run's (1.0: no overhead).
    pub cpu_ratio: f64,
    pub events_per_sec: f64,
    /// Events/s over the cores the workers could use (at most one per process, at most the
    /// machine's).
    pub events_per_sec_per_core: f64,
    /// Appends to silver.bookings_fact: one per shard batch, fewer when a group commit took
    /// several batches at once.
    pub fact_commits: u64,
    /// Shard batches in those appends.
    pub fact_batches: u64,
    pub fact_commits_per_million_events: f64,
    /// Appends to the four Silver tables.
    pub silver_commits: u64,
    /// Retries delta-rs recorded in the Silver tables' commits (`operationMetrics.num_retries`).
    pub commit_retries: u64,
    pub retries_per_commit: f64,
    /// Rows of bookings_fact, unpaid_bookings, orphan_payments, late_events.
    pub silver_rows: Vec<u64>,
    pub gold_full_ms: f64,
    pub gold_idle_ms: f64,
}

impl Run {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        workers: usize,
        events: u64,
        measured: Measured,
        silver_rows: Vec<u64>,
        commits: Commits,
        gold_full_ms: f64,
        gold_idle_ms: f64,
    ) -> Run {
        let millions = events as f64 / 1e6;
        let events_per_sec = events as f64 / measured.seconds.max(1e-9);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Run {
            workers,
            seconds: measured.seconds,
            cpu_seconds: measured.cpu_seconds,
            cpu_seconds_per_million_events: measured.cpu_seconds / millions,
            cpu_ratio: 1.0,
            events_per_sec,
            events_per_sec_per_core: events_per_sec / workers.min(cores) as f64,
            fact_commits: commits.fact_appends,
            fact_batches: commits.fact_batches,
            fact_commits_per_million_events: commits.fact_appends as f64 / millions,
            silver_commits: commits.appends,
            commit_retries: commits.retries,
            retries_per_commit: commits.retries as f64 / commits.appends.max(1) as f64,
            silver_rows,
            gold_full_ms,
            gold_idle_ms,
        }
    }
}

/// One line of the projection: `partitions` per hub, as many shards, each partition receiving
/// `rate_per_partition` events/s.
#[derive(Debug, Serialize)]
pub struct Projected {
    pub partitions: u32,
    pub events_per_sec: f64,
    /// `shards * ceil(events per shard per cycle / max_events) / interval`.
    pub commits_per_sec_per_silver_table: f64,
    /// `gold_idle_ms + events per cycle * (gold_full_ms - gold_idle_ms) / events`.
    pub gold_refresh_ms_per_cycle: f64,
    /// `events/s / (events per CPU-second)`, at the worst measured overhead.
    pub cores: f64,
    /// 2-vCPU workers: `ceil(cores / 2)`.
    pub workers: u64,
}

/// The sizing and scaling implied by the runs.
#[derive(Debug, Serialize)]
pub struct Projection {
    pub rate_per_partition: f64,
    pub interval_seconds: f64,
    /// Events per CPU-second, from the run with the most CPU per event.
    pub events_per_cpu_second: f64,
    /// A 2-vCPU worker's events/s with both cores busy.
    pub events_per_sec_per_worker: f64,
    /// Partitions a 2-vCPU worker keeps up with at `rate_per_partition`.
    pub partitions_per_worker: f64,
    pub lines: Vec<Projected>,
}

/// What `bench scale` prints.
#[derive(Debug, Serialize)]
pub struct Report {
    pub events: u64,
    pub bookings: u64,
    pub payments: u64,
    pub partitions_per_hub: u32,
    pub shards: u32,
    pub max_events: usize,
    pub cores: usize,
    /// Every run left the Silver tables with the first run's row counts (a run that did not
    /// fails the benchmark before this report).
    pub rows_match: bool,
    pub runs: Vec<Run>,
    pub projection: Projection,
}

/// Sets each run's CPU ratio against the first's.
pub fn compare(runs: &mut [Run]) {
    let Some(first) = runs.first().map(|r| r.cpu_seconds_per_million_events) else {
        return;
    };
    for run in runs {
        run.cpu_ratio = run.cpu_seconds_per_million_events / first.max(1e-9);
    }
}

/// The projection from the measured runs to 16, 32 and 64 partitions (one shard each).
pub fn projection(
    runs: &[Run],
    measured_partitions: u32,
    max_events: usize,
    rate_per_partition: f64,
) -> Projection {
    let worst = runs
        .iter()
        .map(|r| r.cpu_seconds_per_million_events)
        .fold(0.0_f64, f64::max);
    let events_per_cpu_second = 1e6 / worst.max(1e-9);
    // Gold from the first run: a full build over all the events, and a refresh with none new.
    let (gold_full, gold_idle, events) = runs.first().map_or((0.0, 0.0, 1.0), |r| {
        (r.gold_full_ms, r.gold_idle_ms, r.events_per_sec * r.seconds)
    });
    let gold_per_event = (gold_full - gold_idle).max(0.0) / events.max(1.0);
    let mut partitions: Vec<u32> = vec![measured_partitions];
    partitions.extend(
        PROJECTED_PARTITIONS
            .iter()
            .filter(|p| **p > measured_partitions),
    );
    let lines = partitions
        .into_iter()
        .map(|p| {
            let events_per_sec = p as f64 * rate_per_partition;
            let per_shard_per_cycle = rate_per_partition * INTERVAL_SECONDS;
            let batches = (per_shard_per_cycle / max_events as f64).ceil().max(1.0);
            let cores = events_per_sec / events_per_cpu_second;
            Projected {
                partitions: p,
                events_per_sec,
                commits_per_sec_per_silver_table: p as f64 * batches / INTERVAL_SECONDS,
                gold_refresh_ms_per_cycle: gold_idle
                    + events_per_sec * INTERVAL_SECONDS * gold_per_event,
                cores,
                workers: (cores / WORKER_CORES).ceil() as u64,
            }
        })
        .collect();
    let events_per_sec_per_worker = events_per_cpu_second * WORKER_CORES;
    Projection {
        rate_per_partition,
        interval_seconds: INTERVAL_SECONDS,
        events_per_cpu_second,
        events_per_sec_per_worker,
        partitions_per_worker: (events_per_sec_per_worker / rate_per_partition.max(1.0)).floor(),
        lines,
    }
}

/// The report as Markdown tables.
pub fn markdown(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} events ({} bookings, {} payments), {} partitions per hub, {} shards, batches of up to {} events, {} cores. Silver row counts identical in every run: {}.\n",
        thousands(r.events),
        thousands(r.bookings),
        thousands(r.payments),
        r.partitions_per_hub,
        r.shards,
        thousands(r.max_events as u64),
        r.cores,
        if r.rows_match { "yes" } else { "NO" }
    );
    let _ = writeln!(
        s,
        "| workers | seconds | events/s | events/s per core | CPU-s per 1M events | CPU vs 1st run | fact commits per 1M events | retries per commit | Gold full / idle ms |"
    );
    let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for run in &r.runs {
        let _ = writeln!(
            s,
            "| {} | {:.2} | {} | {} | {:.2} | {:.2}{} | {:.1} | {:.3} | {:.0} / {:.0} |",
            run.workers,
            run.seconds,
            thousands(run.events_per_sec as u64),
            thousands(run.events_per_sec_per_core as u64),
            run.cpu_seconds_per_million_events,
            run.cpu_ratio,
            if run.cpu_ratio <= OVERHEAD_TARGET {
                ""
            } else {
                " (over 1.15)"
            },
            run.fact_commits_per_million_events,
            run.retries_per_commit,
            run.gold_full_ms,
            run.gold_idle_ms,
        );
    }
    let p = &r.projection;
    let _ = writeln!(
        s,
        "\nProjection at {} events/s per partition, one shard per partition, a cycle every {}s, {:.0} events per CPU-second (the most CPU per event measured): a 2-vCPU worker joins {} events/s, {} partitions.\n",
        thousands(p.rate_per_partition as u64),
        p.interval_seconds,
        p.events_per_cpu_second,
        thousands(p.events_per_sec_per_worker as u64),
        p.partitions_per_worker
    );
    let _ = writeln!(
        s,
        "| partitions (= shards) | events/s | commits/s per Silver table | Gold refresh ms per cycle | cores | 2-vCPU workers |"
    );
    let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|");
    for line in &p.lines {
        let _ = writeln!(
            s,
            "| {} | {} | {:.1} | {:.0} | {:.2} | {} |",
            line.partitions,
            thousands(line.events_per_sec as u64),
            line.commits_per_sec_per_silver_table,
            line.gold_refresh_ms_per_cycle,
            line.cores,
            line.workers
        );
    }
    s
}

/// Prints the report (the Markdown tables read well in a terminal too).
pub fn print_report(r: &Report) {
    print!("{}", markdown(r));
}

/// Writes the report's Markdown to `path`.
pub fn write_markdown(r: &Report, path: &Path) -> anyhow::Result<()> {
    std::fs::write(path, markdown(r)).with_context(|| format!("writing {}", path.display()))
}
