//! Maintenance through the binary on a local-folder lake: today's partition compacted while `up`
//! appends to it (nothing lost, nothing failed, young files left alone), the join reading Bronze
//! across a same-day compaction, and what `tables` shows after maintenance.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{
    assert_no_duplicate_and_no_gap, boxoffice, local, maintenance_bundle, on, run_ok, sql_rows,
};

const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/bundle.yml");

fn bundle(lake: &Path) -> Command {
    let mut cmd = boxoffice();
    cmd.arg("bundle");
    cmd.env("BUNDLE_VAR_lake", lake);
    cmd
}

/// A bundle whose `maintenance` job is one compact task with these parameters.
fn compact_only(dir: &Path, name: &str, parameters: &str) -> PathBuf {
    let task = format!(
        "      - task_key: compact
        boxoffice_task: {{job: compact, parameters: {{{parameters}}}}}
"
    );
    maintenance_bundle(dir, name, &task)
}

fn run_maintenance(lake: &Path, manifest: &Path) -> std::process::Output {
    bundle(lake)
        .args(["run", "maintenance", "--file"])
        .arg(manifest)
        .output()
        .expect("bundle runs")
}

/// `tables --json`, by table name.
fn tables(lake: &Path) -> HashMap<String, serde_json::Value> {
    let out = run_ok(on(lake).args(["tables", "--json"]));
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    all.as_array()
        .expect("array")
        .iter()
        .map(|t| (t["name"].as_str().expect("name").to_string(), t.clone()))
        .collect()
}

fn files(tables: &HashMap<String, serde_json::Value>, name: &str) -> u64 {
    tables[name]["state"]["files"].as_u64().unwrap_or(0)
}

/// What a table's Delta log says about its compactions.
#[derive(Debug, Default)]
struct LogSummary {
    /// Versions of OPTIMIZE commits that removed files.
    compactions: Vec<u64>,
    /// Versions of the archivers' commits (those recording an `archive:` application transaction).
    appends: Vec<u64>,
    /// Files compaction removed.
    removed: usize,
    /// The youngest age, at its commit, of a file a compaction removed from the partition of the
    /// commit's own day (milliseconds).
    youngest_same_day: Option<i64>,
}

fn log_summary(table_dir: &Path) -> LogSummary {
    let log = table_dir.join("_delta_log");
    let mut commits: Vec<(u64, PathBuf)> = std::fs::read_dir(&log)
        .expect("log")
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let version = name.strip_suffix(".json")?.parse().ok()?;
            Some((version, e.path()))
        })
        .collect();
    commits.sort();
    let mut modified: HashMap<String, i64> = HashMap::new();
    let mut summary = LogSummary::default();
    for (version, path) in commits {
        let actions: Vec<serde_json::Value> = std::fs::read_to_string(&path)
            .expect("commit")
            .lines()
            .map(|l| serde_json::from_str(l).expect("action"))
            .collect();
        let info = actions.iter().find_map(|a| a.get("commitInfo"));
        let operation = info.and_then(|i| i["operation"].as_str()).unwrap_or("");
        let at = info.and_then(|i| i["timestamp"].as_i64()).unwrap_or(0);
        let day = chrono::DateTime::from_timestamp_millis(at)
            .expect("timestamp")
            .format("%Y-%m-%d")
            .to_string();
        let mut removed_here = 0;
        for a in &actions {
            if let Some(remove) = a.get("remove") {
                let file = remove["path"].as_str().expect("path");
                let born = *modified
                    .get(file)
                    .unwrap_or_else(|| panic!("{file} removed at {version} was never added"));
                assert_eq!(remove["dataChange"], false, "{version}: {remove}");
                if remove["partitionValues"]["ingest_date"] == day.as_str() {
                    let age = at - born;
                    summary.youngest_same_day =
                        Some(summary.youngest_same_day.map_or(age, |y| y.min(age)));
                }
                removed_here += 1;
            }
            if let Some(add) = a.get("add") {
                let file = add["path"].as_str().expect("path").to_string();
                if operation == "OPTIMIZE" {
                    // What the join reads Bronze by.
                    let stats: serde_json::Value =
                        serde_json::from_str(add["stats"].as_str().expect("stats")).expect("json");
                    assert!(
                        stats["numRecords"].as_u64().is_some_and(|n| n > 0),
                        "{stats}"
                    );
                    for column in ["partition_id", "sequence_number"] {
                        assert!(stats["minValues"][column].is_i64(), "{column}: {stats}");
                        assert!(stats["maxValues"][column].is_i64(), "{column}: {stats}");
                    }
                    assert_eq!(add["dataChange"], false, "{add}");
                }
                modified.insert(file, add["modificationTime"].as_i64().expect("mtime"));
            }
        }
        if operation == "OPTIMIZE" && removed_here > 0 {
            summary.compactions.push(version);
            summary.removed += removed_here;
        } else if actions.iter().any(|a| {
            a["txn"]["appId"]
                .as_str()
                .is_some_and(|id| id.starts_with("archive:"))
        }) {
            summary.appends.push(version);
        }
    }
    summary
}

#[test]
fn todays_partition_is_compacted_while_up_appends_to_it_and_young_files_are_left() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let manifest = compact_only(
        dir.path(),
        "today",
        "layers: bronze, before: today, min_file_age: 1s",
    );
    // Small flushes: many small files in today's partition.
    let small = |seed: &str, count: &str| {
        let mut cmd = on(&lake);
        cmd.args([
            "up",
            "--count",
            count,
            "--fast",
            "--seed",
            seed,
            "--no-jobs",
            "--no-dashboard",
            "--flush-events",
            "100",
        ]);
        cmd
    };
    run_ok(&mut small("4", "2000"));
    let mut writer = small("5", "40000")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("writer starts");
    let mut runs = 0;
    while writer.try_wait().expect("wait").is_none() {
        let out = run_maintenance(&lake, &manifest);
        assert!(
            out.status.success(),
            "a compaction failed beside the writer: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        runs += 1;
    }
    let out = writer.wait_with_output().expect("writer ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the writer failed: {stderr}");
    assert!(
        !stderr.contains("archiving failed"),
        "an archiver commit failed and was retried: {stderr}"
    );
    assert!(runs > 0, "no compaction ran while the writer did");
    assert_eq!(assert_no_duplicate_and_no_gap(&local(&lake)), 42_000);

    let table = lake.join("bronze").join("bookings_raw");
    let log = log_summary(&table);
    assert!(!log.compactions.is_empty(), "nothing compacted: {log:?}");
    // Archivers committed between compactions: they ran side by side.
    let (first, last) = (
        log.compactions[0],
        log.compactions[log.compactions.len() - 1],
    );
    assert!(
        log.appends.iter().any(|v| (first..=last).contains(v)) || log.compactions.len() == 1,
        "{log:?}"
    );
    assert!(
        log.appends.iter().any(|&v| v > first),
        "the writer appended after a compaction: {log:?}"
    );
    let youngest = log.youngest_same_day.expect("today's files were compacted");
    assert!(
        youngest >= 1000,
        "a compaction removed a file {youngest} ms old, younger than min_file_age"
    );

    // Once the writer stops and its files age, one more run leaves a handful: compacted files
    // of about halving sizes, each only rewritten once the data after it weighs as much.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let written = tables(&lake);
    run_ok(
        bundle(&lake)
            .args(["run", "maintenance", "--file"])
            .arg(&manifest),
    );
    let after = tables(&lake);
    for name in [
        "bronze.bookings_raw",
        "bronze.payments_raw",
        "bronze.quarantine",
    ] {
        assert!(
            files(&after, name) <= 12 && files(&after, name) <= files(&written, name),
            "{name}: {} files before the last run, {} after",
            files(&written, name),
            files(&after, name)
        );
    }
    assert!(
        log.appends.len() > 10 * files(&after, "bronze.bookings_raw") as usize,
        "{} appends left {} files",
        log.appends.len(),
        files(&after, "bronze.bookings_raw")
    );
    // The same partition as a closed day: packed whole, one file per Event Hubs partition (it
    // holds far less than 128 MB; each partition's rows stay apart for the join's shards).
    let closed = compact_only(
        dir.path(),
        "closed",
        "layers: bronze, before: '2999-01-01', min_file_age: 1h",
    );
    run_ok(
        bundle(&lake)
            .args(["run", "maintenance", "--file"])
            .arg(&closed),
    );
    let after = tables(&lake);
    for name in ["bronze.bookings_raw", "bronze.payments_raw"] {
        assert_eq!(files(&after, name), 2, "{name}");
    }
    assert_eq!(assert_no_duplicate_and_no_gap(&local(&lake)), 42_000);
    let rows: u64 = ["bronze.bookings_raw", "bronze.payments_raw"]
        .iter()
        .map(|n| after[*n]["state"]["rows"].as_u64().expect("rows"))
        .sum();
    let counted: u64 = sql_rows(
        &lake,
        "select (select count(*) from bronze.bookings_raw) + (select count(*) from bronze.payments_raw)",
    )[0]
    .parse()
    .expect("count");
    assert_eq!(rows, counted, "statistics and a full read agree");
}

/// Seeded events as NDJSON lines: bookings and payments with failures, retries, late and
/// duplicate events, unpaid bookings and malformed bodies.
fn generated(dir: &Path, n: &str) -> Vec<String> {
    let events = dir.join("events.ndjson");
    run_ok(
        boxoffice()
            .args([
                "generate", "--seed", "11", "--fast", "--rate", "5", "-n", n, "-o",
            ])
            .arg(&events),
    );
    std::fs::read_to_string(&events)
        .expect("events")
        .lines()
        .map(str::to_string)
        .collect()
}

fn ingest(lake: &Path, dir: &Path, lines: &[String]) {
    let part = dir.join("part.ndjson");
    std::fs::write(&part, lines.join("\n") + "\n").expect("write");
    let out = on(lake)
        .args(["ingest", "--flush-events", "50"])
        .arg(&part)
        .output()
        .expect("ingest runs");
    // 3: the generated lines include malformed ones, quarantined by ingest.
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The join's output tables, sorted, without the processing time.
fn silver(lake: &Path) -> Vec<Vec<String>> {
    [
        "select * exclude (processed_at) from silver.bookings_fact order by booking_event_uid, payment_event_uid, seat_number",
        "select * exclude (processed_at) from silver.unpaid_bookings order by booking_event_uid",
        "select * exclude (processed_at) from silver.orphan_payments order by payment_event_uid",
        "select * exclude (processed_at) from silver.late_events order by event_uid",
        "select reason, body from bronze.quarantine order by body, reason",
    ]
    .iter()
    .map(|q| sql_rows(lake, q))
    .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[test]
fn the_join_reads_every_event_once_across_a_same_day_compaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let events = generated(dir.path(), "6000");
    let (first, second) = events.split_at(events.len() / 2);
    let lake = dir.path().join("lake");
    let config = dir.path().join("small.toml");
    std::fs::write(&config, "[jobs]\nmax_events = 500\ncheckpoint_every = 2\n").expect("config");
    let join = |lake: &Path, drain: bool| {
        let mut cmd = on(lake);
        cmd.arg("--config")
            .arg(&config)
            .args(["job", "run", "bookings_fact"]);
        if drain {
            cmd.arg("--drain");
        }
        run_ok(&mut cmd);
    };
    ingest(&lake, dir.path(), first);
    join(&lake, false);
    ingest(&lake, dir.path(), second);
    let plain = dir.path().join("plain");
    copy_dir(&lake, &plain);

    // Today's Bronze compacted between the two runs: files the first run read and files it has
    // not read yet end up in the same new files.
    let manifest = compact_only(
        dir.path(),
        "today",
        "layers: bronze, before: today, min_file_age: 0s",
    );
    let before = tables(&lake);
    run_ok(
        bundle(&lake)
            .args(["run", "maintenance", "--file"])
            .arg(&manifest),
    );
    let after = tables(&lake);
    for name in ["bronze.bookings_raw", "bronze.payments_raw"] {
        assert!(
            files(&after, name) * 10 < files(&before, name),
            "{name}: {} files before, {} after",
            files(&before, name),
            files(&after, name)
        );
    }
    let compacted = log_summary(&lake.join("bronze").join("bookings_raw"));
    assert!(!compacted.compactions.is_empty());

    join(&lake, true);
    join(&plain, true);
    let (expected, got) = (silver(&plain), silver(&lake));
    assert!(expected[0].len() > 1000, "the fact table has rows");
    assert!(expected[1].len() > 10, "some bookings stay unpaid");
    for (i, (e, g)) in expected.iter().zip(&got).enumerate() {
        assert!(e == g, "output {i} differs after a compaction between runs");
    }
}

#[test]
fn tables_shows_the_last_commit_and_live_files_after_maintenance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    land_only(&lake, "3000", "9", "200");
    // The shipped maintenance: compaction (nothing is 5 minutes old yet), a checkpoint of every
    // table's latest version, vacuum.
    run_ok(bundle(&lake).args(["run", "maintenance", "--file", SHIPPED]));
    let raw = lake.join("bronze").join("bookings_raw");
    assert!(
        raw.join("_delta_log").join("_last_checkpoint").exists(),
        "maintenance wrote a checkpoint"
    );
    let out = run_ok(on(&lake).arg("tables"));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut present = 0;
    for line in text.lines().skip(1) {
        if line.contains("not created yet") {
            continue;
        }
        present += 1;
        let cells: Vec<&str> = line.split_whitespace().collect();
        // TABLE VERSION ROWS FILES DATE TIME PROTOCOL LOCATION
        let stamp = format!("{} {}", cells[4], cells[5]);
        assert!(
            chrono::NaiveDateTime::parse_from_str(&stamp, "%Y-%m-%d %H:%M:%S").is_ok(),
            "no last commit time: {line}"
        );
    }
    assert!(present >= 4, "{text}");

    // Compaction and vacuum (retention 0): FILES counts live files, which are all that is left.
    let manifest = maintenance_bundle(
        dir.path(),
        "all",
        "      - task_key: compact
        boxoffice_task: {job: compact, parameters: {layers: bronze, min_file_age: 0s}}
      - task_key: checkpoint
        depends_on: [{task_key: compact}]
        boxoffice_task: {job: checkpoint, parameters: {layers: bronze}}
      - task_key: vacuum
        depends_on: [{task_key: checkpoint}]
        boxoffice_task: {job: vacuum, parameters: {layers: bronze, retention_hours: '0'}}
",
    );
    let before = tables(&lake);
    run_ok(
        bundle(&lake)
            .args(["run", "maintenance", "--file"])
            .arg(&manifest),
    );
    let after = tables(&lake);
    let on_disk = parquet_files(&raw);
    assert_eq!(files(&after, "bronze.bookings_raw"), on_disk as u64);
    assert!(on_disk < files(&before, "bronze.bookings_raw") as usize);
    for (name, t) in &after {
        if t["state"]["status"] == "present" {
            assert!(t["state"]["last_commit"].is_string(), "{name}: {t}");
            // The run itself adds to _system.job_runs.
            if !name.starts_with("_system.") {
                assert_eq!(
                    t["state"]["rows"], before[name]["state"]["rows"],
                    "{name} rows changed"
                );
            }
        }
    }
}

/// `up` landing `count` generated events into Bronze as fast as it can, in commits of up to
/// `flush` events per partition, with no jobs.
fn land_only(lake: &Path, count: &str, seed: &str, flush: &str) {
    run_ok(
        on(lake)
            .args([
                "up",
                "--count",
                count,
                "--fast",
                "--seed",
                seed,
                "--no-jobs",
            ])
            .args(["--no-dashboard", "--flush-events", flush]),
    );
}

/// Data files under a table's folder (checkpoints in `_delta_log` are Parquet too).
fn parquet_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .map(|e| {
            let path = e.path();
            if path.ends_with("_delta_log") {
                0
            } else if path.is_dir() {
                parquet_files(&path)
            } else {
                usize::from(path.extension().is_some_and(|x| x == "parquet"))
            }
        })
        .sum()
}

#[test]
fn a_min_file_age_that_is_not_a_duration_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let manifest = compact_only(dir.path(), "bad", "layers: bronze, min_file_age: soon");
    let out = bundle(&lake)
        .args(["validate", "--file"])
        .arg(&manifest)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("min_file_age is 'soon': write a duration, 5m or 30s"),
        "{stderr}"
    );
}

/// The `.json` commits in a table's `_delta_log`.
fn log_commits(table: &Path) -> usize {
    std::fs::read_dir(table.join("_delta_log"))
        .expect("log")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".json"))
        })
        .count()
}

#[test]
fn tables_sets_a_log_retention_that_the_maintenance_checkpoint_then_applies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    land_only(&lake, "6000", "5", "50");
    let (bookings, payments) = (
        lake.join("bronze").join("bookings_raw"),
        lake.join("bronze").join("payments_raw"),
    );
    // Date every log entry two hours back, as if the lake had run that long ago.
    let past = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    for table in [&bookings, &payments] {
        for entry in std::fs::read_dir(table.join("_delta_log")).expect("log") {
            let path = entry.expect("entry").path();
            if path.is_file() {
                let file = std::fs::File::options()
                    .write(true)
                    .open(&path)
                    .expect("open");
                file.set_modified(past).expect("set mtime");
            }
        }
    }
    let before = (log_commits(&bookings), log_commits(&payments));
    assert!(before.0 > 12, "enough commits for a checkpoint: {before:?}");

    let set = [
        "tables",
        "--set-log-retention",
        "30m",
        "--table",
        "bronze.bookings_raw",
    ];
    let out = String::from_utf8_lossy(&run_ok(on(&lake).args(set)).stdout).to_string();
    assert!(
        out.contains("bronze.bookings_raw: log retention interval 30 days (Delta's default) -> interval 1800 seconds"),
        "{out}"
    );
    let again = String::from_utf8_lossy(&run_ok(on(&lake).args(set)).stdout).to_string();
    assert!(
        again.contains("bronze.bookings_raw: log retention already interval 1800 seconds"),
        "{again}"
    );
    let unknown = common::run_err(on(&lake).args([
        "tables",
        "--set-log-retention",
        "30m",
        "--table",
        "bronze.nope",
    ]));
    assert!(
        unknown.contains("no table bronze.nope") && unknown.contains("bronze.bookings_raw"),
        "{unknown}"
    );

    let count = "SELECT count(*) FROM bronze.bookings_raw";
    let rows_before = sql_rows(&lake, count);
    // The shipped maintenance's checkpoint step removes what expired, in that table only.
    run_ok(bundle(&lake).args(["run", "maintenance", "--file", SHIPPED]));
    let after = (log_commits(&bookings), log_commits(&payments));
    assert!(
        after.0 <= 12,
        "bookings_raw keeps the commits since its last checkpoint: {before:?} -> {after:?}"
    );
    assert!(
        after.1 >= before.1,
        "payments_raw keeps its 30 days: {before:?} -> {after:?}"
    );
    // Nothing was lost: the table reads whole from its checkpoint.
    assert_eq!(sql_rows(&lake, count), rows_before);
}

/// The `remove` rows (tombstones) of a table's last Delta checkpoint.
fn tombstones_in_last_checkpoint(table: &Path) -> usize {
    use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let log = table.join("_delta_log");
    let hint: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(log.join("_last_checkpoint")).expect("hint"))
            .expect("json");
    let version = hint["version"].as_u64().expect("version");
    let file =
        std::fs::File::open(log.join(format!("{version:020}.checkpoint.parquet"))).expect("file");
    ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet")
        .build()
        .expect("reader")
        .map(|b| {
            let b = b.expect("batch");
            let remove = b.column_by_name("remove").expect("remove column");
            remove.len() - remove.null_count()
        })
        .sum()
}

#[test]
fn checkpoints_drop_tombstones_after_the_tombstone_retention_and_vacuum_still_deletes_the_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    land_only(&lake, "3000", "4", "100");
    let (bookings, quarantine) = (
        lake.join("bronze").join("bookings_raw"),
        lake.join("bronze").join("quarantine"),
    );
    let created =
        std::fs::read_to_string(bookings.join("_delta_log").join(format!("{:020}.json", 0)))
            .expect("first commit");
    assert!(
        created.contains(r#""delta.deletedFileRetentionDuration":"interval 5 minutes""#),
        "tables are created with 5 minutes of tombstones: {created}"
    );
    let set = [
        "tables",
        "--set-tombstone-retention",
        "1s",
        "--table",
        "bronze.bookings_raw",
    ];
    let out = String::from_utf8_lossy(&run_ok(on(&lake).args(set)).stdout).to_string();
    assert!(
        out.contains(
            "bronze.bookings_raw: tombstone retention interval 5 minutes -> interval 1 seconds"
        ),
        "{out}"
    );
    let count = "SELECT count(*) FROM bronze.bookings_raw";
    let rows_before = sql_rows(&lake, count);

    let compact = compact_only(dir.path(), "compact", "layers: bronze, min_file_age: 0s");
    run_ok(
        bundle(&lake)
            .args(["run", "maintenance", "--file"])
            .arg(&compact),
    );
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let manifest = maintenance_bundle(
        dir.path(),
        "clean",
        "      - task_key: checkpoint
        boxoffice_task: {job: checkpoint, parameters: {layers: bronze}}
      - task_key: vacuum
        depends_on: [{task_key: checkpoint}]
        boxoffice_task: {job: vacuum, parameters: {layers: bronze, retention_hours: '0'}}
",
    );
    run_ok(
        bundle(&lake)
            .args(["run", "maintenance", "--file"])
            .arg(&manifest),
    );

    assert_eq!(
        tombstones_in_last_checkpoint(&bookings),
        0,
        "expired after 1s"
    );
    assert!(
        tombstones_in_last_checkpoint(&quarantine) > 0,
        "kept for 5 minutes"
    );
    // Vacuum deleted every replaced file, whether a checkpoint still named it or not.
    let after = tables(&lake);
    for (name, table) in [
        ("bronze.bookings_raw", &bookings),
        ("bronze.quarantine", &quarantine),
    ] {
        assert_eq!(files(&after, name), parquet_files(table) as u64, "{name}");
    }
    assert_eq!(sql_rows(&lake, count), rows_before);
}

#[test]
fn busy_tables_are_created_with_few_statistics_columns_and_tables_sets_them_on_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    land_only(&lake, "2000", "5", "100");
    let log = lake.join("bronze").join("bookings_raw").join("_delta_log");
    let created = std::fs::read_to_string(log.join(format!("{:020}.json", 0))).expect("create");
    assert!(
        created.contains(r#""delta.dataSkippingStatsColumns":"partition_id,sequence_number,enqueued_time,ingested_at""#),
        "{created}"
    );
    let appended = std::fs::read_to_string(log.join(format!("{:020}.json", 1))).expect("append");
    assert!(
        appended.contains(r#"\"maxValues\":{\"#) && !appended.contains(r#"\"partition_key\""#),
        "statistics on the declared columns only: {appended}"
    );

    let table = lake.join("bronze").join("bookings_raw");
    let commits = log_commits(&table);
    let out = run_ok(on(&lake).args(["tables", "--set-stats-columns"]));
    let out = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.contains(
            "bronze.bookings_raw: statistics already on partition_id,sequence_number,enqueued_time,ingested_at"
        ),
        "{out}"
    );
    let gold = [
        "tables",
        "--set-stats-columns",
        "--table",
        "gold.conversion",
    ];
    let out = String::from_utf8_lossy(&run_ok(on(&lake).args(gold)).stdout).to_string();
    assert!(
        out.contains("gold.conversion: declares no columns"),
        "{out}"
    );
    let unknown = common::run_err(on(&lake).args([
        "tables",
        "--set-stats-columns",
        "--table",
        "bronze.nope",
    ]));
    assert!(unknown.contains("no table bronze.nope"), "{unknown}");
    assert_eq!(
        log_commits(&table),
        commits,
        "nothing committed: the table already had its columns"
    );
}
