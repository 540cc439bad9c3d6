//! One writer process of `boxoffice bench commits`: appends small batches to the bench table as
//! fast as it can, each batch numbered in its own application transaction (`bench:<writer>`),
//! the way a join shard commits its batches to a Silver table.
//!
//! It talks to `bench commits` over its standard streams: it prints `ready` once the table is
//! open, starts on the first line it reads, and prints its report as one JSON line at the end.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use boxoffice_lake::{
    AppendError, AppendOutcome, Batch, CommitPolicy, GroupPolicy, Lake, Layer, PartitionRows,
    TableDef, append_grouped, append_once_with, column, committed_version,
};
use deltalake::DeltaTable;
use deltalake::arrow::array::{Int32Array, Int64Array, RecordBatch};
use deltalake::arrow::datatypes::{DataType, Schema};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::cli::{BenchCommitWriterArgs, CommitPolicyName, GlobalArgs};
use crate::config;

fn bench_schema() -> Schema {
    Schema::new(vec![
        column("writer", DataType::Int32, false),
        column("batch", DataType::Int64, false),
        column("row", DataType::Int32, false),
    ])
}

/// The table every writer of a run appends to: which writer, which of its batches, which row.
pub const BENCH_TABLE: TableDef = TableDef {
    layer: Layer::Silver,
    name: "commit_bench",
    description: "bench commits: rows of numbered batches from concurrent writers",
    schema: bench_schema,
    partition_columns: &[],
    properties: &[],
    blob_columns: &[],
    stats_columns: &[],
};

/// The application transaction of `writer`.
pub fn app_id(writer: u32) -> String {
    format!("bench:{writer}")
}

/// What one writer did, printed as its last line.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct WriterReport {
    pub writer: u32,
    /// Its batches that landed.
    pub batches: u64,
    /// Table commits it made: one per batch, or, grouped, those it made as the committer.
    pub commits: u64,
    /// Batches found committed already when retried (a commit that landed but reported an error).
    pub already_committed: u64,
    /// Appends that returned an error (the batch was then tried again).
    pub failures: u64,
    /// The first error, word for word.
    pub first_failure: Option<String>,
    /// Versions lost to other writers, over all its commits.
    pub retries: u64,
    /// Backoff rounds beyond each commit's first.
    pub extra_rounds: u64,
    /// Time spent in backoff waits.
    pub waited_ms: f64,
    /// The last batch number committed (batches run 1, 2, ...).
    pub last_batch: i64,
    /// Each commit's time, from the start of the append to its end, in milliseconds.
    pub latencies_ms: Vec<f64>,
}

pub async fn run(global: &GlobalArgs, args: BenchCommitWriterArgs) -> anyhow::Result<()> {
    let file = config::load(global)?;
    let lake = config::lake(global, &file)?;
    let mut table = lake
        .open_table(&BENCH_TABLE)
        .await?
        .context("the bench table does not exist: `boxoffice bench commits` creates it")?;
    let app = app_id(args.writer);
    let mut report = WriterReport {
        writer: args.writer,
        last_batch: committed_version(&mut table, &app).await?.unwrap_or(0),
        ..WriterReport::default()
    };
    let policy = match args.policy {
        CommitPolicyName::Grouped => Policy::Grouped(GroupPolicy {
            commit: CommitPolicy {
                delta_retries: args.delta_retries,
                ..CommitPolicy::default()
            },
            ..GroupPolicy::default()
        }),
        CommitPolicyName::Held => Policy::Own(CommitPolicy {
            delta_retries: args.delta_retries,
            ..CommitPolicy::default()
        }),
        CommitPolicyName::Delta => Policy::Own(CommitPolicy::delta_only(args.delta_retries)),
    };
    println!("ready");
    let mut go = String::new();
    BufReader::new(tokio::io::stdin())
        .read_line(&mut go)
        .await
        .context("waiting for the start signal")?;

    let started = Instant::now();
    while started.elapsed() < args.duration {
        let next = report.last_batch + 1;
        let rows = rows(args.writer, next, args.rows)?;
        let batch = Batch {
            app_id: &app,
            version: next,
            metadata: HashMap::new(),
            writer_properties: BENCH_TABLE.writer_properties(),
        };
        let begun = Instant::now();
        match append(&lake, &mut table, rows, batch, &policy).await {
            Ok((outcome, cost)) => {
                report.latencies_ms.push(ms(begun.elapsed()));
                report.batches += 1;
                if outcome == AppendOutcome::AlreadyCommitted {
                    report.already_committed += 1;
                }
                report.commits += cost.commits;
                report.retries += cost.retries;
                report.extra_rounds += cost.extra_rounds;
                report.waited_ms += ms(cost.backoff);
                report.last_batch = next;
            }
            Err(e) => {
                report.failures += 1;
                report.first_failure.get_or_insert_with(|| e.to_string());
            }
        }
    }
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// How this writer commits.
enum Policy {
    /// Each batch its own commit.
    Own(CommitPolicy),
    /// Staged and committed in groups.
    Grouped(GroupPolicy),
}

/// What one append cost in table commits.
struct Cost {
    commits: u64,
    retries: u64,
    extra_rounds: u64,
    backoff: Duration,
}

async fn append(
    lake: &Lake,
    table: &mut DeltaTable,
    rows: RecordBatch,
    batch: Batch<'_>,
    policy: &Policy,
) -> Result<(AppendOutcome, Cost), AppendError> {
    let rows = vec![PartitionRows::unsplit(rows)];
    match policy {
        Policy::Own(policy) => {
            let (outcome, stats) = append_once_with(table, rows, batch, policy).await?;
            let committed = matches!(outcome, AppendOutcome::Committed(_));
            let cost = Cost {
                commits: u64::from(committed),
                retries: stats.retries,
                extra_rounds: u64::from(stats.rounds.saturating_sub(1)),
                backoff: stats.waited,
            };
            Ok((outcome, cost))
        }
        Policy::Grouped(policy) => {
            let (outcome, stats) =
                append_grouped(lake, &BENCH_TABLE, table, rows, batch, policy).await?;
            let cost = Cost {
                commits: u64::from(stats.commits_led),
                retries: stats.commit.retries,
                extra_rounds: u64::from(stats.commit.rounds.saturating_sub(stats.commits_led)),
                backoff: stats.commit.waited,
            };
            Ok((outcome, cost))
        }
    }
}

/// Batch `batch` of `writer`: `n` rows numbered 0..n.
fn rows(writer: u32, batch: i64, n: usize) -> anyhow::Result<RecordBatch> {
    let n = i32::try_from(n).context("too many rows per batch")?;
    Ok(RecordBatch::try_new(
        BENCH_TABLE.arrow_schema(),
        vec![
            Arc::new(Int32Array::from(vec![writer as i32; n as usize])),
            Arc::new(Int64Array::from(vec![batch; n as usize])),
            Arc::new(Int32Array::from_iter_values(0..n)),
        ],
    )?)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
