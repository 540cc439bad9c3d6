//! `up`'s continuous job cadence through the real binary: the join and Gold run as Bronze
//! commits, not when a timer fires; a timer remains a setting; the tables are those a single run
//! of the jobs makes over the same Bronze; and maintenance keeps the many small files in check.

mod common;

use std::path::Path;

use common::*;

/// One commit of a table, as its Delta log has it.
#[derive(Debug)]
struct Commit {
    version: u64,
    /// commitInfo's timestamp (ms, the writer's clock: every writer here is the same process).
    at: i64,
    /// Application transactions (app id, version).
    txns: Vec<(String, i64)>,
}

/// Every commit of the table at `dir`, in version order.
fn commits(dir: &Path) -> Vec<Commit> {
    let mut commits: Vec<Commit> = std::fs::read_dir(dir.join("_delta_log"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let version = name.strip_suffix(".json")?.parse().ok()?;
            let text = std::fs::read_to_string(e.path()).expect("commit");
            let actions: Vec<serde_json::Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).expect("action"))
                .collect();
            let at = actions
                .iter()
                .find_map(|a| a["commitInfo"]["timestamp"].as_i64())
                .unwrap_or_else(|| panic!("version {version} has no commit time"));
            let txns = actions
                .iter()
                .filter_map(|a| {
                    let txn = a.get("txn")?;
                    Some((txn["appId"].as_str()?.to_string(), txn["version"].as_i64()?))
                })
                .collect();
            Some(Commit { version, at, txns })
        })
        .collect();
    commits.sort_by_key(|c| c.version);
    commits
}

/// The time of the last commit to either Bronze raw table: when landing ended.
fn last_bronze_commit(lake: &Path) -> i64 {
    ["bookings_raw", "payments_raw"]
        .iter()
        .flat_map(|t| commits(&lake.join("bronze").join(t)))
        .map(|c| c.at)
        .max()
        .expect("Bronze has commits")
}

/// The Gold refreshes of `gold.booking_funnel` that took Silver rows: (commit time, the
/// versions of `silver.bookings_fact`, `unpaid_bookings` and `orphan_payments` consumed).
fn gold_refreshes(lake: &Path) -> Vec<(i64, Vec<Option<i64>>)> {
    commits(&lake.join("gold").join("booking_funnel"))
        .iter()
        .filter_map(|c| {
            let consumed = |input: &str| {
                let app = format!("gold:booking_funnel:silver.{input}");
                c.txns.iter().find(|(a, _)| *a == app).map(|(_, v)| *v)
            };
            consumed("bookings_fact")?;
            let versions = ["bookings_fact", "unpaid_bookings", "orphan_payments"].map(consumed);
            Some((c.at, versions.to_vec()))
        })
        .collect()
}

/// `up` over `lake` with these extra flags: 5,000 events at 80 a simulated second in ten-fold
/// compressed time (800 a second: about 6 s of landing), so payments follow their bookings
/// within it.
fn up(lake: &Path, seed: &str, extra: &[&str]) -> String {
    let out = run_ok(
        on(lake)
            .args(["up", "--no-dashboard", "--rate", "80", "--speed", "10"])
            .args(["--count", "5000", "--seed", seed, "--cdc-rate", "0"])
            .args(extra),
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `up` over `lake` at 200 events a second for `duration`, the booking service making no
/// changes, with these extra flags.
fn up_at_200(lake: &Path, duration: &str, extra: &[&str]) -> std::process::Output {
    run_ok(
        on(lake)
            .args([
                "up",
                "--no-dashboard",
                "--rate",
                "200",
                "--duration",
                duration,
            ])
            .args(["--cdc-rate", "0"])
            .args(extra),
    )
}

#[test]
fn continuous_up_refreshes_gold_while_bronze_lands_and_a_timer_waits_for_its_tick() {
    let dir = tempfile::tempdir().expect("tempdir");

    // Continuous (the default): Gold takes what the join took while events are still landing.
    let lake = dir.path().join("continuous");
    let summary = up(&lake, "31", &[]);
    assert!(
        summary.contains("jobs run each time Bronze commits (continuous)"),
        "{summary}"
    );
    let landed_until = last_bronze_commit(&lake);
    let refreshes = gold_refreshes(&lake);
    let during: Vec<_> = refreshes
        .iter()
        .filter(|(at, _)| *at < landed_until)
        .collect();
    assert!(
        during.len() >= 2,
        "Gold was refreshed {} times before landing ended: {refreshes:?}",
        during.len()
    );
    // Each refresh took Silver further: none ran twice over the same versions.
    assert!(
        refreshes
            .windows(2)
            .all(|w| w[0].1 != w[1].1 && w[0].1[0] <= w[1].1[0]),
        "{refreshes:?}"
    );
    // The figures the dashboard reads.
    let figures: serde_json::Value = serde_json::from_slice(
        &std::fs::read(lake.join("_system/jobs/up/freshness.json")).expect("freshness.json"),
    )
    .expect("json");
    assert_eq!(figures["cadence"], "continuous", "{figures}");
    assert!(figures["matches"].as_u64().unwrap_or(0) > 0, "{figures}");
    let (p50, p95) = (
        figures["median_seconds"].as_f64().expect("median"),
        figures["p95_seconds"].as_f64().expect("p95"),
    );
    assert!(0.0 < p50 && p50 <= p95, "{figures}");

    // A timer that never fires before the count is reached: Gold waits for the last run.
    let timed = dir.path().join("timer");
    let summary = up(&timed, "31", &["--job-interval", "1h"]);
    assert!(summary.contains("jobs run every 1h"), "{summary}");
    let landed_until = last_bronze_commit(&timed);
    let refreshes = gold_refreshes(&timed);
    assert_eq!(refreshes.len(), 1, "{refreshes:?}");
    assert!(refreshes[0].0 >= landed_until, "{refreshes:?}");
}

#[test]
fn a_slow_cdc_turn_does_not_hold_back_the_join_and_gold() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    // Every turn of the booking service's changes and cdc stalls 3 s between the simulator's
    // commit and cdc's, as a slow storage account or a long cdc run would. 8,000 events at 800 a
    // second land for about 10 s: the first turn comes 2 s in, so its stall falls within it.
    let out = run_ok(
        on(&lake)
            .env("BOXOFFICE_SLOW_AT", "cdc:before=3000")
            .args(["up", "--no-dashboard", "--rate", "80", "--speed", "10"])
            .args(["--count", "8000", "--seed", "34", "--cdc-rate", "20"]),
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    // The first turn's stall: from the simulator's first change to cdc's first commit after it.
    let changed = commits(&lake.join("ops").join("raw_movie_bookings"))
        .iter()
        .find(|c| c.version > 0)
        .map(|c| c.at)
        .unwrap_or_else(|| panic!("the simulator changed nothing\n{summary}"));
    let taken = commits(&lake.join("bronze").join("movie_booking_cdc_events"))
        .iter()
        .map(|c| c.at)
        .filter(|at| *at > changed)
        .min()
        .unwrap_or_else(|| panic!("cdc took nothing\n{summary}"));
    assert!(taken - changed >= 3000, "no stall: {changed} -> {taken}");
    assert!(
        changed < last_bronze_commit(&lake),
        "the stall began after landing ended\n{summary}"
    );
    // Gold went on meanwhile (with cdc inside the cycle, it would have waited for the stall).
    let refreshes = gold_refreshes(&lake);
    let during = refreshes
        .iter()
        .filter(|(at, _)| changed < *at && *at < taken)
        .count();
    assert!(
        during >= 1,
        "no Gold refresh during cdc's stall ({changed} -> {taken}): {refreshes:?}"
    );
    // Both recorded their runs.
    let tasks = sql_rows(
        &lake,
        "select distinct task from _system.job_runs where job = 'up' order by task",
    );
    assert_eq!(tasks, ["cdc", "continuous"], "{summary}");
}

#[test]
fn continuous_runs_give_the_tables_one_run_of_the_jobs_gives_over_the_same_bronze() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("continuous");
    up(&lake, "32", &[]);
    // The same Bronze, joined in one run.
    let once = dir.path().join("once");
    copy_dir(&lake.join("bronze"), &once.join("bronze"));
    for lake in [&lake, &once] {
        run_ok(on(lake).args(["job", "run", "bookings_fact", "--drain"]));
        run_ok(on(lake).args(["job", "run", "gold"]));
    }
    let expected = output_tables(&once);
    assert!(
        expected[0].1.lines().count() > 1000,
        "the fact table has rows"
    );
    assert_same_tables(&expected, &lake, "after continuous runs");
}

#[test]
fn a_continuous_run_with_maintenance_compacts_its_small_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    // Long enough for files to pass compaction's minimum age (20 s) before up's maintenance turn.
    let out = up_at_200(
        &lake,
        "30s",
        &[
            "--speed",
            "10",
            "--seed",
            "33",
            "--maintenance-every",
            "25s",
        ],
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    let line = summary
        .lines()
        .find(|l| l.contains("maintenance every 25s"))
        .unwrap_or_else(|| panic!("no maintenance turn in\n{summary}"));
    // "... 1 turns compacted 1,234 table files into 56 ..."
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.replace(',', "").parse().ok())
        .collect();
    assert!(
        numbers.len() >= 3 && numbers[2] < numbers[1],
        "the turn left as many files as it found: {line}"
    );

    // Once up has stopped, the same compaction with no minimum age leaves a few files per
    // Event Hubs partition, whatever the commits were.
    let raw = |t: &std::collections::HashMap<String, serde_json::Value>| -> u64 {
        ["bronze.bookings_raw", "bronze.payments_raw"]
            .iter()
            .map(|n| t[*n]["state"]["files"].as_u64().unwrap_or(0))
            .sum()
    };
    let before = tables(&lake);
    let manifest = maintenance_bundle(
        dir.path(),
        "compact",
        "      - task_key: compact
        boxoffice_task: {job: compact, parameters: {layers: 'bronze,silver', min_file_age: 0s}}
",
    );
    run_ok(
        boxoffice()
            .env("BUNDLE_VAR_lake", &lake)
            .args(["bundle", "run", "maintenance", "--file"])
            .arg(&manifest),
    );
    let after = tables(&lake);
    assert!(
        raw(&before) > 20,
        "few small files to start with: {}",
        raw(&before)
    );
    // Two hubs of two partitions each: a file per partition, and at most a smaller one beside.
    assert!(raw(&after) <= 8, "{} raw files left", raw(&after));
    for name in [
        "bronze.bookings_raw",
        "bronze.payments_raw",
        "silver.bookings_fact",
    ] {
        assert_eq!(
            after[name]["state"]["rows"], before[name]["state"]["rows"],
            "{name}: compaction changed the rows"
        );
    }

    // up's own vacuum deletes replaced files once they are old enough, even when no checkpoint
    // names them any more. Age every data file by two hours and let checkpoints drop tombstones
    // after a second, then run up again: its first maintenance turn vacuums.
    run_ok(on(&lake).args(["tables", "--set-tombstone-retention", "1s"]));
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    let aged = data_files(&lake);
    for file in &aged {
        let f = std::fs::File::options()
            .write(true)
            .open(file)
            .expect("open");
        f.set_modified(two_hours_ago).expect("set mtime");
    }
    let live: u64 = after
        .iter()
        .filter(|(name, _)| !name.starts_with("ops."))
        .map(|(_, t)| t["state"]["files"].as_u64().unwrap_or(0))
        .sum();
    assert!(
        aged.len() as u64 > live + 20,
        "{} files, {live} live: replaced files to vacuum",
        aged.len()
    );
    // Every table still reads whole: vacuum took no file a version still uses.
    let count = "SELECT (SELECT count(*) FROM bronze.bookings_raw) + (SELECT count(*) FROM bronze.payments_raw) + (SELECT count(*) FROM silver.bookings_fact)";
    let rows_before: u64 = sql_rows(&lake, count)[0].parse().expect("count");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = up_at_200(&lake, "10s", &["--seed", "34", "--maintenance-every", "5s"]);
    let summary = String::from_utf8_lossy(&out.stdout);
    let line = summary
        .lines()
        .find(|l| l.contains("vacuum every 5m deleted"))
        .unwrap_or_else(|| panic!("no vacuum in\n{summary}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let deleted: u64 = line
        .split_whitespace()
        .nth(4)
        .and_then(|w| w.replace(',', "").parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(deleted > 0, "{line}\n{stderr}");
    let rows_after: u64 = sql_rows(&lake, count)[0].parse().expect("count");
    assert!(rows_after >= rows_before, "{rows_before} -> {rows_after}");
    assert!(!stderr.contains("tombstones longer than"), "{stderr}");

    // Tables keeping tombstones an hour, as an earlier boxoffice made them: up names them when
    // it starts, and says how to shorten it.
    run_ok(on(&lake).args(["tables", "--set-tombstone-retention", "1h"]));
    let out = up_at_200(&lake, "2s", &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let note = stderr
        .lines()
        .find(|l| l.contains("tombstones longer than"))
        .unwrap_or_else(|| panic!("no note in\n{stderr}"));
    assert!(
        note.contains(
            "tables keep tombstones longer than the 5m new tables keep (bronze.bookings_raw 1h, "
        ) && note.contains(" more): ")
            && note.contains("`boxoffice tables --set-tombstone-retention 5m`"),
        "{note}"
    );
}

/// Every data file of the lake's Delta tables but ops' (not their logs).
fn data_files(lake: &Path) -> Vec<std::path::PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.ends_with("_delta_log") {
                continue;
            }
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|x| x == "parquet") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    for layer in ["bronze", "silver", "gold", "_system"] {
        for table in std::fs::read_dir(lake.join(layer))
            .into_iter()
            .flatten()
            .flatten()
        {
            // _system also holds files that are not tables (the join's state, leases).
            if table.path().join("_delta_log").is_dir() {
                walk(&table.path(), &mut out);
            }
        }
    }
    out
}

/// `tables --json`, by table name.
fn tables(lake: &Path) -> std::collections::HashMap<String, serde_json::Value> {
    let out = run_ok(on(lake).args(["tables", "--json"]));
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    all.as_array()
        .expect("array")
        .iter()
        .map(|t| (t["name"].as_str().expect("name").to_string(), t.clone()))
        .collect()
}
