//! The job bundle through the binary on a real local lake: the shipped bundle.yml validates and
//! runs, a broken one runs nothing, every attempt lands in _system.job_runs, and maintenance
//! compacts files without changing a row, even while a writer appends.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{assert_no_duplicate_and_no_gap, boxoffice, local, on, run_ok, sql_rows};

const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/bundle.yml");

fn bundle(lake: &Path) -> Command {
    let mut cmd = boxoffice();
    cmd.arg("bundle");
    cmd.env("BUNDLE_VAR_lake", lake);
    cmd
}

/// (files, rows) of each table, from `tables --json`.
fn tables(lake: &Path) -> Vec<(String, u64, u64)> {
    let out = run_ok(on(lake).args(["tables", "--json"]));
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    all.as_array()
        .expect("array")
        .iter()
        .filter_map(|t| {
            let state = &t["state"];
            (state["status"] == "present").then_some(())?;
            Some((
                t["name"].as_str()?.to_string(),
                state["files"].as_u64()?,
                state["rows"].as_u64().unwrap_or(0),
            ))
        })
        .collect()
}

#[test]
fn the_shipped_bundle_validates_for_every_target_it_can_resolve() {
    let dir = tempfile::tempdir().expect("tempdir");
    for target in ["local", "azurite"] {
        let out = run_ok(bundle(dir.path()).args(["validate", "--file", SHIPPED, "-t", target]));
        assert!(String::from_utf8_lossy(&out.stdout).contains("3 jobs"));
    }
    // azure needs its storage account: said with the line, not guessed.
    let out = boxoffice()
        .args(["bundle", "validate", "--file", SHIPPED, "-t", "azure"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("'storage_account' has no value"));
    run_ok(bundle(dir.path()).args([
        "validate",
        "--file",
        SHIPPED,
        "-t",
        "azure",
        "--var",
        "storage_account=acct",
    ]));
}

#[test]
fn a_broken_bundle_runs_nothing_and_says_where() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let broken = dir.path().join("bundle.yml");
    let text = std::fs::read_to_string(SHIPPED)
        .expect("read")
        .replace("job: gold", "job: golden");
    std::fs::write(&broken, text).expect("write");
    let out = bundle(&lake)
        .args(["run", "medallion", "--file"])
        .arg(&broken)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown job 'golden'") && stderr.contains("did you mean 'gold'?"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{}:", broken.display())),
        "names the file and line: {stderr}"
    );
    assert!(!lake.exists(), "nothing ran: the lake was not even created");
}

#[test]
fn medallion_runs_its_tasks_in_order_and_records_every_attempt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    run_ok(on(&lake).args([
        "up",
        "--count",
        "3000",
        "--fast",
        "--seed",
        "3",
        "--no-jobs",
    ]));
    let out = run_ok(bundle(&lake).args(["run", "medallion", "--file", SHIPPED]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("job 'medallion' succeeded"), "{stdout}");

    let rows = sql_rows(
        &lake,
        "select task, attempt, status, rows_in, rows_out, run_id from _system.job_runs order by started_at",
    );
    let tasks: Vec<&str> = rows
        .iter()
        .map(|r| r.split(',').next().unwrap_or_default())
        .collect();
    assert_eq!(
        tasks,
        ["bronze_compaction", "batch_load", "bookings_fact", "gold"],
        "{rows:?}"
    );
    assert!(rows.iter().all(|r| r.contains(",1,SUCCEEDED,")), "{rows:?}");
    let join: Vec<&str> = rows[2].split(',').collect();
    let landed = sql_rows(
        &lake,
        "select (select count(*) from bronze.bookings_raw) + (select count(*) from bronze.payments_raw)",
    );
    let (read, landed): (u64, u64) = (
        join[3].parse().expect("rows_in"),
        landed[0].parse().expect("count"),
    );
    // Without drain the join takes what is before its watermark: nearly all, never more.
    assert!(
        read <= landed && read > landed / 2,
        "rows_in {read} of {landed} landed"
    );
    assert!(sql_rows(&lake, "select count(*) from silver.bookings_fact")[0] != "0");
    assert!(sql_rows(&lake, "select count(*) from gold.event_performance")[0] != "0");

    let out = run_ok(bundle(&lake).args(["status", "--file", SHIPPED]));
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(
        status.contains("medallion:")
            && status.contains("succeeded")
            && status.contains("cdc: never run"),
        "{status}"
    );
}

const COMPACT_ALL: &str = "\
bundle: {name: t}
variables:
  lake: {default: ./lakehouse}
targets: {local: {default: true}}
jobs:
  maintenance:
    tasks:
      - task_key: compact
        boxoffice_task: {job: compact, parameters: {layers: 'bronze,silver', before: '2999-01-01'}}
      - task_key: checkpoint
        depends_on: [{task_key: compact}]
        boxoffice_task: {job: checkpoint, parameters: {layers: 'bronze,silver'}}
      - task_key: vacuum
        depends_on: [{task_key: checkpoint}]
        boxoffice_task: {job: vacuum, parameters: {layers: 'bronze,silver', retention_hours: '0'}}
";

#[test]
fn maintenance_reduces_the_files_and_keeps_every_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let manifest = dir.path().join("bundle.yml");
    std::fs::write(&manifest, COMPACT_ALL).expect("write");
    // Small commits: many small files.
    run_ok(on(&lake).args([
        "up",
        "--count",
        "4000",
        "--fast",
        "--seed",
        "9",
        "--no-jobs",
        "--flush-events",
        "200",
    ]));
    run_ok(on(&lake).args(["job", "run", "bookings_fact", "--drain"]));
    let before = tables(&lake);
    run_ok(
        bundle(&lake)
            .args(["run", "maintenance", "--file"])
            .arg(&manifest),
    );
    let after = tables(&lake);
    let files = |t: &[(String, u64, u64)], name: &str| {
        t.iter().find(|x| x.0 == name).map(|x| x.1).unwrap_or(0)
    };
    assert!(
        files(&after, "bronze.bookings_raw") < files(&before, "bronze.bookings_raw") / 4,
        "{before:?} -> {after:?}"
    );
    for (name, _, rows) in &before {
        let now = after.iter().find(|x| &x.0 == name).map(|x| x.2);
        assert_eq!(now, Some(*rows), "{name} rows changed");
    }
    assert_no_duplicate_and_no_gap(&local(&lake));
    let raw = sql_rows(&lake, "select count(*) from bronze.bookings_raw")[0].clone();
    assert_eq!(
        raw.parse::<u64>().ok(),
        before
            .iter()
            .find(|x| x.0 == "bronze.bookings_raw")
            .map(|x| x.2),
        "a full read agrees"
    );
}

#[test]
fn compaction_while_a_writer_appends_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let manifest = dir.path().join("bundle.yml");
    std::fs::write(
        &manifest,
        COMPACT_ALL
            .split("      - task_key: checkpoint")
            .next()
            .expect("compact only"),
    )
    .expect("write");
    run_ok(on(&lake).args([
        "up",
        "--count",
        "2000",
        "--fast",
        "--seed",
        "4",
        "--no-jobs",
        "--flush-events",
        "100",
    ]));
    let mut writer = on(&lake)
        .args([
            "up",
            "--count",
            "40000",
            "--fast",
            "--seed",
            "5",
            "--no-jobs",
            "--flush-events",
            "200",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("writer starts");
    let mut compactions = 0;
    while writer.try_wait().expect("wait").is_none() {
        // Today's partition packed whole as if closed, while the writer appends to it: neither
        // side may fail (tests/maintenance.rs covers the age rule for today's partition).
        let out = bundle(&lake)
            .args(["run", "maintenance", "--file"])
            .arg(&manifest)
            .output()
            .expect("runs");
        assert!(
            out.status.success(),
            "a compaction failed beside the writer: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        compactions += 1;
    }
    let out = writer.wait_with_output().expect("writer ends");
    assert!(
        out.status.success(),
        "the writer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        compactions > 0,
        "no compaction committed while the writer ran"
    );
    assert_eq!(assert_no_duplicate_and_no_gap(&local(&lake)), 42_000);
}

const EVERY_SECOND: &str = "bundle: {name: t}
variables: {lake: {default: ./lakehouse}}
targets: {dev: {default: true, mode: development}, prod: {mode: production}}
jobs:
  tidy:
    schedule: {quartz_cron_expression: '* * * * * ?', timezone_id: UTC}
    tasks: [{task_key: checkpoint, boxoffice_task: {job: checkpoint, parameters: {layers: bronze}}}]
";

#[test]
fn schedule_fires_a_job_every_second_until_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let manifest = dir.path().join("bundle.yml");
    std::fs::write(&manifest, EVERY_SECOND).expect("write");
    // A development target pauses every schedule: the scheduler says so rather than idling.
    let out = bundle(&lake)
        .args(["schedule", "--file"])
        .arg(&manifest)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("development target pauses them all"));

    let child = bundle(&lake)
        .args(["schedule", "-t", "prod", "--file"])
        .arg(&manifest)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    std::thread::sleep(std::time::Duration::from_millis(4500));
    run_ok(Command::new("kill").args(["-TERM", &child.id().to_string()]));
    let out = child.wait_with_output().expect("stops");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("scheduler stopped"), "{stderr}");
    let runs = sql_rows(&lake, "select count(distinct run_id) from _system.job_runs");
    let runs: u32 = runs[0].parse().expect("count");
    assert!(
        (2..=6).contains(&runs),
        "{runs} runs in 4.5 s of a per-second schedule: {stderr}"
    );
}

#[test]
fn up_runs_the_bundle_schedule_beside_landing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let manifest = dir.path().join("bundle.yml");
    std::fs::write(&manifest, EVERY_SECOND).expect("write");
    let out = run_ok(
        on(&lake)
            .args([
                "up",
                "--rate",
                "200",
                "--duration",
                "4s",
                "--no-jobs",
                "--bundle-target",
                "prod",
                "--bundle",
            ])
            .arg(&manifest),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("scheduled runs started"), "{stdout}");
    let runs: u32 = sql_rows(&lake, "select count(distinct run_id) from _system.job_runs")[0]
        .parse()
        .expect("count");
    assert!(
        runs >= 2,
        "{runs} runs of a per-second job in 4 s of up: {stdout}"
    );
    // A broken bundle stops up before it starts.
    std::fs::write(
        &manifest,
        EVERY_SECOND.replace("job: checkpoint", "job: checkpoints"),
    )
    .expect("write");
    let out = on(&dir.path().join("other"))
        .args(["up", "--count", "10", "--bundle"])
        .arg(&manifest)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(!dir.path().join("other").exists(), "nothing started");
}
