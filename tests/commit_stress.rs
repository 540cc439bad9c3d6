//! Commit stress through the real binary: 16 writer processes (as 16 join shards would be) append
//! small batches to one table as fast as they can for 60 s, each with its own application
//! transaction, committed in groups (docs/commits.md). No append may fail, and the table must
//! hold every writer's batches exactly once, 1 to its last with no gap, with its application
//! transaction at that last batch. The table is read here, not taken from the bench's report.

mod common;

use std::collections::BTreeMap;

use boxoffice_lake::{Lake, Layer, TableDef, column, committed_version, read_rows};
use boxoffice_testkit::Azurite;
use common::*;
use deltalake::arrow::array::AsArray;
use deltalake::arrow::datatypes::{DataType, Int32Type, Int64Type, Schema};

const WRITERS: i32 = 16;
const ROWS: usize = 5;

fn schema() -> Schema {
    Schema::new(vec![
        column("writer", DataType::Int32, false),
        column("batch", DataType::Int64, false),
        column("row", DataType::Int32, false),
    ])
}

/// The table `bench commits` writes, as declared here to read it.
const BENCH_TABLE: TableDef = TableDef {
    layer: Layer::Silver,
    name: "commit_bench",
    description: "bench commits",
    schema,
    partition_columns: &[],
    properties: &[],
    blob_columns: &[],
    stats_columns: &[],
};

/// `bench commits` with 16 grouped writers for 60 s against `lake_args`; its JSON report.
fn stress(lake_args: &[&str]) -> serde_json::Value {
    let out = run_ok(
        boxoffice()
            .args(lake_args)
            .args([
                "bench",
                "commits",
                "--policy",
                "grouped",
                "--duration",
                "60s",
            ])
            .args([
                "--writers",
                &WRITERS.to_string(),
                "--rows",
                &ROWS.to_string(),
            ])
            .arg("--json"),
    );
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    runs[0].clone()
}

/// Checks the run's table against the report, and returns (batches, table commits).
fn assert_every_batch_once(lake: &Lake, report: &serde_json::Value) -> (u64, u64) {
    assert_eq!(report["failures"], 0, "{report:#}");
    let (rows_per_batch, commits, version) = block_on(async {
        let mut table = lake
            .open_table(&BENCH_TABLE)
            .await
            .expect("open")
            .expect("the bench table");
        let mut rows: BTreeMap<(i32, i64), usize> = BTreeMap::new();
        for b in read_rows(&table).await.expect("read") {
            let w = b.column(0).as_primitive::<Int32Type>();
            let n = b.column(1).as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                *rows.entry((w.value(i), n.value(i))).or_default() += 1;
            }
        }
        let mut commits = BTreeMap::new();
        for writer in 0..WRITERS {
            let txn = committed_version(&mut table, &format!("bench:{writer}"))
                .await
                .expect("transaction");
            commits.insert(writer, txn);
        }
        (rows, commits, table.version().expect("version"))
    });
    let mut batches = 0;
    for writer in 0..WRITERS {
        let mine: Vec<(i64, usize)> = rows_per_batch
            .iter()
            .filter(|((w, _), _)| *w == writer)
            .map(|((_, b), n)| (*b, *n))
            .collect();
        let last = mine.last().map_or(0, |(b, _)| *b);
        assert!(last > 0, "writer {writer} landed nothing");
        assert_eq!(
            mine,
            (1..=last).map(|b| (b, ROWS)).collect::<Vec<_>>(),
            "writer {writer}: every batch 1..={last} once with {ROWS} rows"
        );
        assert_eq!(
            commits[&writer],
            Some(last),
            "writer {writer}'s application transaction"
        );
        batches += last as u64;
    }
    assert_eq!(rows_per_batch.len() as u64, batches, "no stray batches");
    assert_eq!(report["batches"], batches, "{report:#}");
    // Version 0 created the table; every later one is a commit some writer reported making.
    assert_eq!(report["commits"], version, "{report:#}");
    (batches, version)
}

#[test]
fn sixteen_writers_for_a_minute_on_a_local_lake_lose_and_repeat_no_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("lake");
    let report = stress(&["--lake", root.to_str().expect("utf-8 path")]);
    let lake = local(&root.join("commits-grouped-16"));
    let (batches, commits) = assert_every_batch_once(&lake, &report);
    assert!(
        batches > commits,
        "{batches} batches in {commits} commits: writers' batches were committed together"
    );
}

#[test]
fn sixteen_writers_for_a_minute_on_azurite_lose_and_repeat_no_batch() {
    let azurite = Azurite::start();
    let endpoint = azurite.endpoint();
    let report = stress(&[
        "--lake",
        "az://stress/run",
        "--emulator",
        "--emulator-endpoint",
        &endpoint,
    ]);
    let lake = Lake::azurite("az://stress/run/commits-grouped-16", &endpoint).expect("lake");
    let (batches, commits) = assert_every_batch_once(&lake, &report);
    assert!(
        batches > commits,
        "{batches} batches in {commits} commits: writers' batches were committed together"
    );
}
