use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::array::{AsArray, Int64Array, StringArray};
use deltalake::arrow::datatypes::{DataType as ArrowType, Int64Type, Schema};

use super::*;
use crate::{
    Lake, Layer, PartitionRows, PartitionValue, TableDef, append_after_check, append_once, column,
    committed_version, read_rows,
};

#[test]
fn groups_are_runs_up_to_the_target_of_two_files_or_more() {
    // Tiny files fill groups up to the target, in order; a lone file is left as it is.
    assert_eq!(
        plan_groups(&[3, 3, 3, 3, 3], 9, true),
        vec![vec![0, 1, 2], vec![3, 4]]
    );
    assert_eq!(plan_groups(&[3, 3, 3, 3], 9, true), vec![vec![0, 1, 2]]);
    assert!(plan_groups(&[5], 9, true).is_empty());
    assert!(plan_groups(&[], 9, true).is_empty());
    // A file that outweighs the rest of its run is left out of it, however placed.
    assert_eq!(plan_groups(&[50, 5, 2, 3], 128, true), vec![vec![1, 2, 3]]);
    assert_eq!(plan_groups(&[5, 50, 2, 3], 128, true), vec![vec![0, 2, 3]]);
    assert!(plan_groups(&[50, 20, 5], 128, true).is_empty());
    // Once the rest weighs as much, it is rewritten with them.
    assert_eq!(plan_groups(&[60, 40, 20], 128, true), vec![vec![0, 1, 2]]);
    // A group that makes a file of three quarters of the target or more is worth it anyway.
    assert_eq!(plan_groups(&[80, 20], 128, true), vec![vec![0, 1]]);
    // Such files are done; the small ones around them are grouped.
    assert_eq!(
        plan_groups(&[3, 100, 3, 120, 3], 128, true),
        vec![vec![0, 2, 4]]
    );
    // In a closed partition nothing arrives any more: runs are packed whatever their sizes.
    assert_eq!(plan_groups(&[50, 20, 5], 128, false), vec![vec![0, 1, 2]]);
    assert_eq!(
        plan_groups(&[60, 30, 15, 8, 4], 64, false),
        vec![vec![1, 2, 3, 4]]
    );
}

#[test]
fn repeated_compactions_settle_at_few_files_and_rewrite_each_byte_a_few_times() {
    // A day of small appends with a compaction after every 10 of them: files in data order, each
    // compacted group becoming one file where its newest input was.
    let target = 1024u64;
    let mut files: Vec<u64> = Vec::new();
    let (mut appended, mut rewritten) = (0u64, 0u64);
    for run in 0..2_000u64 {
        for k in 0..10 {
            let size = 1 + (run * 7 + k * 3) % 4;
            files.push(size);
            appended += size;
        }
        let groups = plan_groups(&files, target, true);
        let mut merged: Vec<Option<u64>> = files.iter().map(|&s| Some(s)).collect();
        for group in &groups {
            let total: u64 = group.iter().map(|&i| files[i]).sum();
            rewritten += total;
            for &i in group {
                merged[i] = None;
            }
            merged[*group.last().expect("a group has files")] = Some(total);
        }
        files = merged.into_iter().flatten().collect();
    }
    assert_eq!(
        files.iter().sum::<u64>(),
        appended,
        "no byte lost or doubled"
    );
    let full = appended.div_ceil(target);
    // Done files (three quarters of the target or more), and a few of halving sizes.
    let levels = u64::from(target.ilog2()) + 1;
    assert!(
        (files.len() as u64) * 3 <= 4 * full + 3 * levels,
        "{} files for {full} targets' worth",
        files.len()
    );
    assert!(
        rewritten <= appended * levels,
        "each byte rewritten {:.1} times",
        rewritten as f64 / appended as f64
    );
}

fn schema() -> Schema {
    Schema::new(vec![
        column("n", ArrowType::Int64, false),
        column("label", ArrowType::Utf8, true),
        column("day", ArrowType::Date32, false),
    ])
}

const NUMBERS: TableDef = TableDef {
    partition_columns: &["day"],
    blob_columns: &["label"],
    ..TableDef::test(Layer::Bronze, "numbers", schema)
};

/// Rows `from..from + n` of one day, as one append (one file).
async fn append(table: &mut DeltaTable, day: i32, from: i64, n: i64, app: &str) {
    let schema = Arc::new(Schema::new(vec![
        column("n", ArrowType::Int64, false),
        column("label", ArrowType::Utf8, true),
    ]));
    let values = Int64Array::from_iter_values(from..from + n);
    let labels = StringArray::from_iter_values((from..from + n).map(|i| format!("row {i}")));
    let batch =
        RecordBatch::try_new(schema, vec![Arc::new(values), Arc::new(labels)]).expect("batch");
    let rows = vec![PartitionRows {
        batch,
        values: vec![("day".into(), PartitionValue::Date(day))],
    }];
    let props = NUMBERS.writer_properties();
    append_once(table, rows, app, from + n, HashMap::new(), props)
        .await
        .expect("append");
}

/// Every `n`, sorted, and each row's label checked against it.
async fn numbers(table: &DeltaTable) -> Vec<i64> {
    let mut all = Vec::new();
    for b in read_rows(table).await.expect("read") {
        let n = b
            .column_by_name("n")
            .expect("n")
            .as_primitive::<Int64Type>();
        let label = b.column_by_name("label").expect("label").as_string::<i32>();
        for i in 0..b.num_rows() {
            assert_eq!(label.value(i), format!("row {}", n.value(i)));
            all.push(n.value(i));
        }
    }
    all.sort_unstable();
    all
}

fn live_files(table: &DeltaTable) -> Vec<DataFile> {
    let snapshot = table.snapshot().expect("snapshot");
    snapshot
        .log_data()
        .iter()
        .map(|f| DataFile {
            path: f.path().to_string(),
            size: f.size() as u64,
            modified: f.modification_time(),
        })
        .collect()
}

/// The actions of one commit, as JSON.
async fn commit_actions(table: &DeltaTable, version: u64) -> Vec<serde_json::Value> {
    let bytes = table
        .log_store()
        .read_commit_entry(version)
        .await
        .expect("read")
        .expect("commit exists");
    String::from_utf8_lossy(&bytes)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect()
}

const DAY1: i32 = 20_000;
const DAY2: i32 = 20_001;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_keeps_every_row_with_statistics_and_changes_no_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = Lake::local(dir.path()).expect("lake");
    let mut table = lake.ensure_table(&NUMBERS).await.expect("table");
    for k in 0..12 {
        append(&mut table, DAY1 + (k % 2) as i32, k * 100, 100, "a").await;
    }
    assert_eq!(live_files(&table).len(), 12);
    let before = numbers(&table).await;

    let report = compact(&mut table, &NUMBERS.writer_properties(), 1 << 20, |_| {
        Rule::Closed
    })
    .await
    .expect("compact");
    assert_eq!(report.files_removed, 12);
    assert_eq!(report.files_added, 2, "one file per day");
    assert_eq!(report.commits, 2, "one commit per partition");
    let mut reopened = lake
        .open_table(&NUMBERS)
        .await
        .expect("open")
        .expect("table");
    reopened.load().await.expect("load");
    assert_eq!(live_files(&reopened).len(), 2);
    assert_eq!(numbers(&reopened).await, before);

    let snapshot = reopened.snapshot().expect("snapshot");
    let protocol = snapshot.protocol();
    assert_eq!(
        (protocol.min_reader_version(), protocol.min_writer_version()),
        (1, 2)
    );
    for f in snapshot.log_data().iter() {
        let stats: serde_json::Value =
            serde_json::from_str(&f.stats().expect("stats")).expect("json");
        assert_eq!(stats["numRecords"], 600);
        // Each day's rows: n from 0 or 100, in steps of 200.
        let min = stats["minValues"]["n"].as_i64().expect("min n");
        let max = stats["maxValues"]["n"].as_i64().expect("max n");
        assert!(min == 0 || min == 100, "{stats}");
        assert_eq!(max, min + 1000 + 99, "{stats}");
    }
    let version = snapshot.version();
    let actions = commit_actions(&reopened, version).await;
    let info = actions
        .iter()
        .find_map(|a| a.get("commitInfo"))
        .expect("commitInfo");
    assert_eq!(info["operation"], "OPTIMIZE");
    let file_actions: Vec<&serde_json::Value> = actions
        .iter()
        .filter_map(|a| a.get("add").or_else(|| a.get("remove")))
        .collect();
    assert_eq!(file_actions.len(), 7, "6 removes and 1 add for one day");
    assert!(file_actions.iter().all(|a| a["dataChange"] == false));
    assert!(
        actions
            .iter()
            .any(|a| a["txn"]["appId"] == COMPACTION_APP_ID)
    );

    // Compacting again finds nothing worth rewriting.
    let again = compact(&mut table, &NUMBERS.writer_properties(), 1 << 20, |_| {
        Rule::Closed
    })
    .await
    .expect("compact again");
    assert_eq!(again, Compaction::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_an_open_partition_only_files_written_by_the_cutoff_are_rewritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = Lake::local(dir.path()).expect("lake");
    let mut table = lake.ensure_table(&NUMBERS).await.expect("table");
    for k in 0..5 {
        append(&mut table, DAY1, k * 10, 10, "a").await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let cutoff = Utc::now().timestamp_millis();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    for k in 5..9 {
        append(&mut table, DAY1, k * 10, 10, "a").await;
    }
    let young: Vec<String> = live_files(&table)
        .into_iter()
        .filter(|f| f.modified > cutoff)
        .map(|f| f.path)
        .collect();
    assert_eq!(young.len(), 4);

    let report = compact(&mut table, &NUMBERS.writer_properties(), 1 << 20, |p| {
        assert_eq!(p.value("day"), Some("2024-10-04"));
        Rule::Open { written_by: cutoff }
    })
    .await
    .expect("compact");
    assert_eq!((report.files_removed, report.files_added), (5, 1));
    let live: Vec<DataFile> = live_files(&table);
    assert_eq!(live.len(), 5);
    assert!(young.iter().all(|y| live.iter().any(|f| &f.path == y)));
    // The new file carries the time of the newest data in it, not of the compaction.
    assert!(
        live.iter()
            .all(|f| f.modified <= cutoff || young.contains(&f.path))
    );
    assert_eq!(numbers(&table).await, (0..90).collect::<Vec<i64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_on_either_side_of_a_compaction_commit_and_keep_every_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = Lake::local(dir.path()).expect("lake");
    let mut compactor = lake.ensure_table(&NUMBERS).await.expect("table");
    let mut appender = lake
        .open_table(&NUMBERS)
        .await
        .expect("open")
        .expect("table");
    for k in 0..6 {
        append(&mut appender, DAY2, k * 10, 10, "stream").await;
    }
    // The compaction reads and rewrites, then the appender commits to the same partition
    // before the compaction commits: the compaction lands on top of the appends.
    let prepared = prepare(
        &mut compactor,
        &NUMBERS.writer_properties(),
        1 << 20,
        |_| Rule::Closed,
    )
    .await
    .expect("prepare");
    assert_eq!(prepared.files_to_remove(), 6);
    for k in 6..9 {
        append(&mut appender, DAY2, k * 10, 10, "stream").await;
    }
    let report = prepared.commit(&mut compactor).await.expect("commit");
    assert_eq!((report.files_removed, report.files_added), (6, 1));
    assert!(report.retries == 0 && report.groups_lost == 0, "{report:?}");

    // An exactly-once append that read its checkpoint before a compaction committed, and
    // commits after it: it lands, and its own guard still works.
    let done = committed_version(&mut appender, "stream")
        .await
        .expect("checkpoint");
    assert_eq!(done, Some(90));
    let again = compact(
        &mut compactor,
        &NUMBERS.writer_properties(),
        1 << 20,
        |_| Rule::Closed,
    )
    .await
    .expect("compact again");
    assert!(again.files_removed >= 3, "the 3 appends: {again:?}");
    let schema = Arc::new(Schema::new(vec![
        column("n", ArrowType::Int64, false),
        column("label", ArrowType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(90..100)),
            Arc::new(StringArray::from_iter_values(
                (90..100).map(|i| format!("row {i}")),
            )),
        ],
    )
    .expect("batch");
    let rows = vec![PartitionRows {
        batch,
        values: vec![("day".into(), PartitionValue::Date(DAY2))],
    }];
    append_after_check(
        &mut appender,
        rows,
        "stream",
        100,
        HashMap::new(),
        NUMBERS.writer_properties(),
    )
    .await
    .expect("an append after a compaction it did not see");
    assert_eq!(numbers(&appender).await, (0..100).collect::<Vec<i64>>());
    assert_eq!(
        committed_version(&mut appender, "stream").await.expect("v"),
        Some(100)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_compactions_of_the_same_files_commit_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = Lake::local(dir.path()).expect("lake");
    let mut first = lake.ensure_table(&NUMBERS).await.expect("table");
    let mut second = lake
        .open_table(&NUMBERS)
        .await
        .expect("open")
        .expect("table");
    for k in 0..8 {
        append(&mut first, DAY1, k * 10, 10, "a").await;
    }
    let props = NUMBERS.writer_properties();
    let a = prepare(&mut first, &props, 1 << 20, |_| Rule::Closed)
        .await
        .expect("prepare a");
    let b = prepare(&mut second, &props, 1 << 20, |_| Rule::Closed)
        .await
        .expect("prepare b");
    let won = a.commit(&mut first).await.expect("a commits");
    assert_eq!(won.files_removed, 8);
    // b rewrote the same files: committing them too would double every row.
    let lost = b.commit(&mut second).await.expect("b gives up cleanly");
    assert_eq!(lost.files_removed, 0);
    assert_eq!(lost.groups_lost, 1);
    assert_eq!(numbers(&second).await, (0..80).collect::<Vec<i64>>());
    // b's unused file was deleted: what is on disk is what the table uses, and the 8 originals.
    let on_disk = walk(&dir.path().join("bronze/numbers"));
    assert_eq!(on_disk, 8 + 1, "{on_disk} parquet files");
}

/// Data files under `dir`: Parquet files outside `_delta_log` (where checkpoints are Parquet too).
fn walk(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .map(|e| {
            let path = e.path();
            if path.ends_with("_delta_log") {
                0
            } else if path.is_dir() {
                walk(&path)
            } else {
                usize::from(path.extension().is_some_and(|x| x == "parquet"))
            }
        })
        .sum()
}

/// `rows` rows of one day whose `n` is `value` throughout, as one append (one file).
async fn append_value(table: &mut DeltaTable, value: i64, rows: usize, version: i64) {
    let schema = Arc::new(Schema::new(vec![
        column("n", ArrowType::Int64, false),
        column("label", ArrowType::Utf8, true),
    ]));
    let values = Int64Array::from(vec![value; rows]);
    let labels = StringArray::from(vec![format!("row {value}"); rows]);
    let batch =
        RecordBatch::try_new(schema, vec![Arc::new(values), Arc::new(labels)]).expect("batch");
    let rows = vec![PartitionRows {
        batch,
        values: vec![("day".into(), PartitionValue::Date(DAY1))],
    }];
    let props = NUMBERS.writer_properties();
    append_once(table, rows, "values", version, HashMap::new(), props)
        .await
        .expect("append");
}

/// Each live file's (min, max) of `n`, sorted.
fn n_ranges(table: &DeltaTable) -> Vec<(i64, i64)> {
    let snapshot = table.snapshot().expect("snapshot");
    let mut ranges: Vec<(i64, i64)> = snapshot
        .log_data()
        .iter()
        .map(|f| {
            let stats: serde_json::Value =
                serde_json::from_str(&f.stats().expect("stats")).expect("json");
            (
                stats["minValues"]["n"].as_i64().expect("min"),
                stats["maxValues"]["n"].as_i64().expect("max"),
            )
        })
        .collect();
    ranges.sort_unstable();
    ranges
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_kept_apart_keeps_each_value_in_files_of_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = Lake::local(dir.path()).expect("lake");
    let mut table = lake.ensure_table(&NUMBERS).await.expect("table");
    // Three "partitions" appended in turn, as the archivers of three Event Hubs partitions do.
    for k in 0..9 {
        append_value(&mut table, k % 3, 50, k + 1).await;
    }
    let before = numbers(&table).await;
    let report = compact_keeping_apart(
        &mut table,
        &NUMBERS.writer_properties(),
        1 << 20,
        |_| Rule::Closed,
        Some("n"),
    )
    .await
    .expect("compact");
    assert_eq!((report.files_removed, report.files_added), (9, 3));
    assert_eq!(report.commits, 1, "one commit for the day's partition");
    assert_eq!(n_ranges(&table), [(0, 0), (1, 1), (2, 2)]);
    assert_eq!(numbers(&table).await, before);

    // A file holding several values is only ever compacted with other such files.
    append(&mut table, DAY1, 0, 3, "mixed").await;
    append(&mut table, DAY1, 1, 3, "mixed2").await;
    append_value(&mut table, 1, 50, 100).await;
    let report = compact_keeping_apart(
        &mut table,
        &NUMBERS.writer_properties(),
        1 << 20,
        |_| Rule::Closed,
        Some("n"),
    )
    .await
    .expect("compact");
    assert_eq!((report.files_removed, report.files_added), (4, 2));
    assert_eq!(n_ranges(&table), [(0, 0), (0, 3), (1, 1), (2, 2)]);

    // Without the column kept apart, everything goes into one file.
    compact(&mut table, &NUMBERS.writer_properties(), 1 << 20, |_| {
        Rule::Closed
    })
    .await
    .expect("compact");
    assert_eq!(n_ranges(&table), [(0, 3)]);
}
