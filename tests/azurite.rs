//! The binary against a real Azurite started from npm on a free port: the same commands land
//! the same tables under az://, `tables` reports them there, and maintenance compacts today's
//! Bronze while `up` appends to it.

mod common;

use boxoffice_lake::Lake;
use boxoffice_testkit::Azurite;
use common::*;

#[test]
fn up_and_tables_work_on_azurite() {
    let azurite = Azurite::start();
    let work = tempfile::tempdir().expect("tempdir");
    let endpoint = azurite.endpoint();
    let on_azurite = |args: &[&str]| {
        let mut cmd = boxoffice();
        cmd.current_dir(work.path()).args(args).args([
            "--lake",
            "az://lake/e2e",
            "--emulator",
            "--emulator-endpoint",
            &endpoint,
        ]);
        cmd
    };
    run_ok(&mut on_azurite(&[
        "up", "--count", "3000", "--fast", "--seed", "21",
    ]));
    // A second write: the version moves on, the rows add up.
    run_ok(&mut on_azurite(&[
        "up", "--count", "1000", "--fast", "--seed", "22",
    ]));

    let out = run_ok(&mut on_azurite(&["tables", "--json"]));
    let tables: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let mut total = 0;
    let mut present = Vec::new();
    for t in tables.as_array().expect("array") {
        let name = t["name"].as_str().expect("name");
        let (layer, table) = name.split_once('.').expect("layer.table");
        assert_eq!(t["location"], format!("az://lake/e2e/{layer}/{table}/"));
        if t["state"]["protocol"].is_null() {
            continue; // not created (e.g. no late events in so short a run)
        }
        // The booking service's table has its change data feed on: writer 4.
        let protocol = if name == "ops.raw_movie_bookings" {
            "1/4"
        } else {
            "1/2"
        };
        assert_eq!(t["state"]["protocol"], protocol, "{name}");
        present.push(name.to_string());
        if layer == "bronze" && name != "bronze.movie_booking_cdc_events" {
            total += t["state"]["rows"].as_u64().expect("rows");
        }
    }
    assert_eq!(total, 4000);
    // `up` ran the join and the Gold refresh on Azurite too.
    for name in [
        "silver.bookings_fact",
        "gold.payment_mix",
        "gold.conversion",
        "silver.movie_bookings_filtered",
        "gold.movie_booking_insights",
    ] {
        assert!(present.iter().any(|p| p == name), "{name} in {present:?}");
    }

    let lake = Lake::azurite("az://lake/e2e", &endpoint).expect("lake");
    assert_eq!(assert_no_duplicate_and_no_gap(&lake), 4000);
    // A remote lake keeps its queue log in a local folder of the working directory.
    assert!(work.path().join(".boxoffice/queue").is_dir());
}

#[test]
fn todays_partition_is_compacted_on_azurite_while_up_appends() {
    let azurite = Azurite::start();
    let work = tempfile::tempdir().expect("tempdir");
    let endpoint = azurite.endpoint();
    let on_azurite = |args: &[&str]| {
        let mut cmd = boxoffice();
        cmd.current_dir(work.path()).args(args).args([
            "--lake",
            "az://lake/compact",
            "--emulator",
            "--emulator-endpoint",
            &endpoint,
        ]);
        cmd
    };
    let manifest = maintenance_bundle(
        work.path(),
        "compact",
        "      - task_key: compact
        boxoffice_task: {job: compact, parameters: {layers: bronze, before: today, min_file_age: 1s}}
      - task_key: checkpoint
        depends_on: [{task_key: compact}]
        boxoffice_task: {job: checkpoint, parameters: {layers: bronze}}
",
    );
    let manifest = manifest.to_string_lossy().into_owned();
    let up = |seed: &str, count: &str| {
        on_azurite(&[
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
        ])
    };
    run_ok(&mut up("31", "1000"));
    let mut writer = up("32", "10000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("writer starts");
    let maintenance = ["bundle", "run", "maintenance", "--file", manifest.as_str()];
    let mut runs = 0;
    while writer.try_wait().expect("wait").is_none() {
        run_ok(&mut on_azurite(&maintenance));
        runs += 1;
    }
    let out = writer.wait_with_output().expect("writer ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the writer failed: {stderr}");
    assert!(!stderr.contains("archiving failed"), "{stderr}");
    assert!(runs > 0, "no compaction ran while the writer did");

    std::thread::sleep(std::time::Duration::from_millis(1100));
    run_ok(&mut on_azurite(&maintenance));
    let out = run_ok(&mut on_azurite(&["tables", "--json"]));
    let tables: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    for t in tables.as_array().expect("array") {
        let name = t["name"].as_str().expect("name");
        if name == "bronze.bookings_raw" || name == "bronze.payments_raw" {
            let files = t["state"]["files"].as_u64().expect("files");
            assert!(files <= 12, "{name}: {files} files");
            // The checkpoint is at the latest version: its time still shows.
            assert!(t["state"]["last_commit"].is_string(), "{t}");
        }
    }
    let lake = Lake::azurite("az://lake/compact", &endpoint).expect("lake");
    assert_eq!(assert_no_duplicate_and_no_gap(&lake), 11_000);
}
