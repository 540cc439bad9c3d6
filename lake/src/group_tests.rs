use std::collections::BTreeMap;
use std::sync::Arc;

use deltalake::arrow::array::{AsArray, Int32Array, Int64Array, RecordBatch};
use deltalake::arrow::datatypes::{DataType, Int32Type, Int64Type, Schema};
use serde_json::json;

use super::*;
use crate::{Layer, column, committed_version, read_rows};

fn schema() -> Schema {
    Schema::new(vec![
        column("writer", DataType::Int32, false),
        column("batch", DataType::Int64, false),
    ])
}

const BATCHES: TableDef = TableDef {
    layer: Layer::Silver,
    name: "batches",
    description: "test rows: one per batch",
    schema,
    partition_columns: &[],
    properties: &[],
    blob_columns: &[],
    stats_columns: &[],
};

fn app(writer: i32) -> String {
    format!("writer:{writer}")
}

/// Batch `batch` of `writer`: three identical rows.
fn rows(writer: i32, batch: i64) -> Vec<PartitionRows> {
    let rows = RecordBatch::try_new(
        BATCHES.arrow_schema(),
        vec![
            Arc::new(Int32Array::from(vec![writer; 3])),
            Arc::new(Int64Array::from(vec![batch; 3])),
        ],
    )
    .expect("batch");
    vec![PartitionRows::unsplit(rows)]
}

fn batch(app_id: &str, version: i64) -> Batch<'_> {
    Batch {
        app_id,
        version,
        metadata: HashMap::from([("batch".to_string(), json!(version))]),
        writer_properties: BATCHES.writer_properties(),
    }
}

/// Rows per (writer, batch) in the table.
async fn found(table: &DeltaTable) -> BTreeMap<(i32, i64), usize> {
    let mut found = BTreeMap::new();
    for b in read_rows(table).await.expect("read") {
        let w = b.column(0).as_primitive::<Int32Type>();
        let n = b.column(1).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            *found.entry((w.value(i), n.value(i))).or_default() += 1;
        }
    }
    found
}

async fn lake_and_table() -> (tempfile::TempDir, Lake, DeltaTable) {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = Lake::local(dir.path()).expect("lake");
    let table = lake.ensure_table(&BATCHES).await.expect("table");
    (dir, lake, table)
}

#[test]
fn stems_tell_streams_apart_and_sort_by_version() {
    let stems = [
        stem("bookings_fact:3", 7),
        stem("bookings_fact.3a", 7),
        stem("bookings_fact_3", 7),
        stem("a:b", 7),
        stem("a.3ab", 7),
    ];
    let distinct: std::collections::BTreeSet<&String> = stems.iter().collect();
    assert_eq!(distinct.len(), stems.len(), "{stems:?}");
    assert!(stems.iter().all(|s| s.matches('@').count() == 1));
    assert!(stem("s:1", 9) < stem("s:1", 10));
    assert!(stem("s:1", 99_999) < stem("s:1", 100_000));
}

#[test]
fn merged_metadata_keeps_each_keys_greatest_value_and_every_batch() {
    let staged = |app: &str, version: i64, metadata: Value| Staged {
        app_id: app.to_string(),
        version,
        adds: Vec::new(),
        metadata: serde_json::from_value(metadata).expect("map"),
        staged_at: Utc::now(),
    };
    let merged = merged_metadata(&[
        staged(
            "a",
            4,
            json!({"watermark": "2026-01-01T10:00:00+00:00", "batch": 4}),
        ),
        staged(
            "b",
            9,
            json!({"watermark": "2026-01-01T11:00:00+00:00", "batch": 9}),
        ),
        staged("c", 2, json!({"watermark": null, "batch": 2})),
    ]);
    assert_eq!(merged["watermark"], json!("2026-01-01T11:00:00+00:00"));
    assert_eq!(merged["batch"], json!(9));
    let each = merged["batches"].as_array().expect("batches");
    assert_eq!(each.len(), 3);
    assert_eq!(each[2]["app_id"], json!("c"));
    assert_eq!(each[2]["metadata"]["batch"], json!(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_turn_commits_every_streams_lowest_staged_batch_in_one_commit() {
    let (_dir, lake, mut table) = lake_and_table().await;
    let staging = Staging::of(&lake, &BATCHES).expect("staging");
    let before = table.version().expect("version");
    // Three streams; the first has two batches waiting.
    for (writer, n) in [(0, 1), (0, 2), (1, 1), (2, 1)] {
        let id = app(writer);
        stage(&staging, &table, rows(writer, n), batch(&id, n))
            .await
            .expect("stage");
    }
    let led = commit_staged(&staging, &mut table, &GroupPolicy::default())
        .await
        .expect("turn");
    assert_eq!(led.batches, 3);
    assert_eq!(table.version(), Some(before + 1), "one commit");
    let landed = found(&table).await;
    assert_eq!(
        landed.keys().copied().collect::<Vec<_>>(),
        vec![(0, 1), (1, 1), (2, 1)],
        "stream 0's second batch waits for the next turn"
    );
    for writer in 0..3 {
        assert_eq!(
            committed_version(&mut table, &app(writer))
                .await
                .expect("txn"),
            Some(1)
        );
    }
    // Receipts for the three, with the version they landed in.
    for writer in 0..3 {
        let r = receipt(&staging, &stem(&app(writer), 1))
            .await
            .expect("read")
            .expect("a receipt");
        assert_eq!(r.table_version, Some(before + 1));
    }
    let led = commit_staged(&staging, &mut table, &GroupPolicy::default())
        .await
        .expect("second turn");
    assert_eq!(led.batches, 1);
    assert_eq!(found(&table).await.get(&(0, 2)), Some(&3));
    assert!(
        staging.files.list("").await.expect("list").len() == 1,
        "only the last receipt"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_staged_again_after_it_landed_is_not_committed_again() {
    let (_dir, lake, mut table) = lake_and_table().await;
    let policy = GroupPolicy::default();
    let id = app(7);
    let (first, _) = append_grouped(
        &lake,
        &BATCHES,
        &mut table,
        rows(7, 1),
        batch(&id, 1),
        &policy,
    )
    .await
    .expect("append");
    assert!(matches!(first, AppendOutcome::Committed(_)));
    // A rerun of the same batch (its writer crashed before it noted the batch done).
    let (again, _) = append_grouped(
        &lake,
        &BATCHES,
        &mut table,
        rows(7, 1),
        batch(&id, 1),
        &policy,
    )
    .await
    .expect("rerun");
    assert_eq!(again, AppendOutcome::AlreadyCommitted);
    table.update_state().await.expect("refresh");
    assert_eq!(found(&table).await.get(&(7, 1)), Some(&3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_a_dead_committer_left_behind_gets_its_receipt_without_a_second_commit() {
    let (_dir, lake, mut table) = lake_and_table().await;
    let staging = Staging::of(&lake, &BATCHES).expect("staging");
    let id = app(3);
    let stem = stage(&staging, &table, rows(3, 5), batch(&id, 5))
        .await
        .expect("stage");
    // A committer commits it and dies before writing the receipt.
    let bytes = staging
        .files
        .get(&format!("{stem}.staged.json"))
        .await
        .expect("read")
        .expect("staged");
    let staged: Staged = serde_json::from_slice(&bytes).expect("manifest");
    let actions = staged.adds.into_iter().map(Action::Add).collect();
    commit_held(
        &mut table,
        actions,
        &[Transaction::new(&id, 5)],
        HashMap::new(),
        &CommitPolicy::default(),
    )
    .await
    .expect("the dead committer's commit");
    let version = table.version();

    let led = commit_staged(&staging, &mut table, &GroupPolicy::default())
        .await
        .expect("the next turn");
    assert_eq!(led.batches, 0);
    assert_eq!(table.version(), version, "no second commit");
    let r = receipt(&staging, &stem)
        .await
        .expect("read")
        .expect("receipt");
    assert_eq!(r.table_version, None);
    assert_eq!(found(&table).await.get(&(3, 5)), Some(&3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_land_every_batch_exactly_once_in_commits_they_make_themselves() {
    let (_dir, lake, table) = lake_and_table().await;
    let start = table.version().expect("version");
    let writers = 6;
    let per_writer = 8;
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let lake = lake.clone();
        tasks.push(tokio::spawn(async move {
            let mut table = lake
                .open_table(&BATCHES)
                .await
                .expect("open")
                .expect("table");
            let id = app(writer);
            let mut led = 0;
            for n in 1..=per_writer {
                let (outcome, stats) = append_grouped(
                    &lake,
                    &BATCHES,
                    &mut table,
                    rows(writer, n),
                    batch(&id, n),
                    &GroupPolicy::default(),
                )
                .await
                .expect("append");
                assert!(matches!(outcome, AppendOutcome::Committed(_)));
                led += stats.commits_led;
            }
            led
        }));
    }
    let mut led = 0;
    for task in tasks {
        led += task.await.expect("writer");
    }
    let mut table = lake
        .open_table(&BATCHES)
        .await
        .expect("open")
        .expect("table");
    let commits = table.version().expect("version") - start;
    assert_eq!(
        commits,
        u64::from(led),
        "every commit made by a writer as committer"
    );
    let found = found(&table).await;
    for writer in 0..writers {
        for n in 1..=per_writer {
            assert_eq!(
                found.get(&(writer, n)),
                Some(&3),
                "writer {writer} batch {n}"
            );
        }
        assert_eq!(
            committed_version(&mut table, &app(writer))
                .await
                .expect("txn"),
            Some(per_writer)
        );
    }
    assert_eq!(found.len(), (writers as i64 * per_writer) as usize);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committer_that_stops_holding_the_lease_is_taken_over_when_it_expires() {
    let (_dir, lake, mut table) = lake_and_table().await;
    let staging = Staging::of(&lake, &BATCHES).expect("staging");
    // A committer takes the lease and stops answering: no renewal, no release.
    let stalled = Lease::acquire_in(
        &staging.lease_files,
        &staging.lease,
        &Holder::this_process("a stalled committer"),
        Duration::from_millis(500),
    )
    .await
    .expect("lease");
    let policy = GroupPolicy {
        lease_ttl: Duration::from_millis(500),
        ..GroupPolicy::default()
    };
    let id = app(4);
    let (outcome, stats) = append_grouped(
        &lake,
        &BATCHES,
        &mut table,
        rows(4, 1),
        batch(&id, 1),
        &policy,
    )
    .await
    .expect("append");
    assert!(matches!(outcome, AppendOutcome::Committed(_)));
    assert_eq!(
        stats.commits_led, 1,
        "the writer committed once the lease expired"
    );
    assert_eq!(found(&table).await.get(&(4, 1)), Some(&3));
    drop(stalled);
}
