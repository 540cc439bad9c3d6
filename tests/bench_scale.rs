//! `boxoffice bench scale` at a tiny size: 1 and 2 `worker --drain` processes over copies of the
//! same generated Bronze. Checks the report's structure and that both runs left the Silver
//! tables with the same row counts (the benchmark fails otherwise); no timings are asserted.

mod common;

use common::*;

#[test]
fn bench_scale_reports_every_worker_count_with_the_same_silver() {
    let dir = tempfile::tempdir().expect("tempdir");
    let markdown = dir.path().join("scale.md");
    let out = boxoffice()
        .current_dir(dir.path())
        .args([
            "bench",
            "scale",
            "--events",
            "20000",
            "--workers",
            "1,2",
            "--json",
        ])
        .arg("--markdown")
        .arg(&markdown)
        .output()
        .expect("run bench scale");
    assert!(
        out.status.success(),
        "bench scale failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("bench scale --json prints JSON");
    assert_eq!(report["rows_match"], true);
    assert_eq!(report["partitions_per_hub"], 8);
    assert_eq!(report["shards"], 8);
    let events = report["events"].as_u64().expect("events");
    assert!(events > 19_000, "{events} events landed of 20,000");
    assert_eq!(
        report["bookings"].as_u64().unwrap_or(0) + report["payments"].as_u64().unwrap_or(0),
        events
    );
    assert!(
        report["payments"].as_u64().unwrap_or(0) > events / 4,
        "payments landed"
    );

    let runs = report["runs"].as_array().expect("runs");
    let workers: Vec<u64> = runs.iter().filter_map(|r| r["workers"].as_u64()).collect();
    assert_eq!(workers, [1, 2]);
    let rows = &runs[0]["silver_rows"];
    assert_eq!(rows.as_array().map(Vec::len), Some(4), "four Silver tables");
    assert!(rows[0].as_u64().unwrap_or(0) > 0, "bookings_fact has rows");
    for run in runs {
        assert_eq!(&run["silver_rows"], rows, "the same Silver in every run");
        assert!(
            run["cpu_seconds"].as_f64().unwrap_or(0.0) > 0.0,
            "workers' CPU measured"
        );
        // At least one batch per shard; an append per batch, or per group of batches that
        // committed together; every Silver table alike.
        let batches = run["fact_batches"].as_u64().unwrap_or(0);
        assert!(batches >= 8, "{batches} bookings_fact batches for 8 shards");
        let fact = run["fact_commits"].as_u64().unwrap_or(0);
        assert!(
            (1..=batches).contains(&fact),
            "{fact} bookings_fact commits for {batches} batches"
        );
        assert!(run["silver_commits"].as_u64().unwrap_or(0) >= fact);
        assert!(run["retries_per_commit"].as_f64().is_some());
        assert!(run["events_per_sec_per_core"].as_f64().unwrap_or(0.0) > 0.0);
    }
    assert_eq!(runs[0]["cpu_ratio"].as_f64(), Some(1.0));

    let lines = report["projection"]["lines"]
        .as_array()
        .expect("projection");
    let partitions: Vec<u64> = lines
        .iter()
        .filter_map(|l| l["partitions"].as_u64())
        .collect();
    assert_eq!(partitions, [8, 16, 32, 64]);
    // One commit per shard per 2 s cycle while each partition's 2,000 events fit one batch.
    assert_eq!(
        lines[3]["commits_per_sec_per_silver_table"].as_f64(),
        Some(32.0)
    );
    assert!(
        report["projection"]["partitions_per_worker"]
            .as_f64()
            .is_some()
    );

    let md = std::fs::read_to_string(&markdown).expect("--markdown wrote the tables");
    assert!(md.contains("| workers |") && md.contains("| partitions (= shards) |"));
    assert!(md.contains("Silver row counts identical in every run: yes"));
}

/// `worker --drain` alone: joins everything landed, then exits by itself.
#[test]
fn a_draining_worker_exits_when_the_lake_is_joined() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let settings = dir.path().join("boxoffice.toml");
    std::fs::write(&settings, "[jobs]\npartitions_per_hub = 4\nshards = 4\n").expect("settings");
    let landed = boxoffice()
        .current_dir(dir.path())
        .arg("--lake")
        .arg(&lake)
        .arg("--config")
        .arg(&settings)
        .args([
            "up",
            "--no-jobs",
            "--no-dashboard",
            "--speed",
            "10",
            "--duration",
            "3s",
        ])
        .output()
        .expect("up");
    assert!(
        landed.status.success(),
        "{}",
        String::from_utf8_lossy(&landed.stderr)
    );
    let out = boxoffice()
        .current_dir(dir.path())
        .arg("--lake")
        .arg(&lake)
        .arg("--config")
        .arg(&settings)
        .args(["worker", "--drain", "--interval", "100ms", "--name", "w"])
        .output()
        .expect("worker");
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{log}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(log.contains("drained: every shard"), "{log}");
    assert!(log.contains("runs the lake jobs"), "{log}");
    let lake = local(&lake);
    assert!(count(&lake, &boxoffice_jobs::silver::tables::BOOKINGS_FACT) > 0);
    // Gold ran after the last shard's drain, by the worker holding the lake jobs.
    assert!(count(&lake, &boxoffice_jobs::gold::tables::EVENT_PERFORMANCE) > 0);
}
