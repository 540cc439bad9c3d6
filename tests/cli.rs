//! The command line as a user meets it: help, generate, ingest of bad input, tables, and errors.

mod common;

use std::io::Write;
use std::process::Stdio;

use boxoffice_ingest::bronze;
use common::*;

#[test]
fn help_explains_every_command() {
    let out = run_ok(boxoffice().arg("--help"));
    let help = String::from_utf8_lossy(&out.stdout);
    for command in ["up", "generate", "ingest", "tables", "job", "sql", "bench"] {
        assert!(
            help.contains(&format!("  {command} ")),
            "{command} missing from\n{help}"
        );
    }
    let out = run_ok(boxoffice().args(["up", "--help"]));
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--duration",
        "--rate",
        "--seed",
        "--speed",
        "--flush-interval",
        "--job-interval",
        "--lake",
    ] {
        assert!(help.contains(flag), "{flag} missing from up --help");
    }
    let out = run_ok(boxoffice().args(["job", "run", "--help"]));
    let help = String::from_utf8_lossy(&out.stdout);
    for text in [
        "bookings_fact",
        "gold",
        "--drain",
        "--full",
        "stream_analytics",
    ] {
        assert!(help.contains(text), "{text} missing from job run --help");
    }
}

#[test]
fn generate_with_a_seed_writes_the_same_bytes_every_time() {
    let generate = |seed: &str| {
        run_ok(boxoffice().args(["generate", "--seed", seed, "--count", "3000", "--fast"])).stdout
    };
    let a = generate("5");
    assert_eq!(a, generate("5"));
    assert_ne!(a, generate("6"));
    assert_eq!(a.iter().filter(|b| **b == b'\n').count(), 3000);
}

#[test]
fn generate_writes_a_file_and_compressed_time_is_fast() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("events.ndjson");
    let started = std::time::Instant::now();
    // 100 events/s simulated at 600x: 2,000 events span ~20 simulated s, ~0.03 real s.
    run_ok(
        boxoffice()
            .args([
                "generate", "--seed", "1", "--rate", "100", "--speed", "600", "-n", "2000", "-o",
            ])
            .arg(&file),
    );
    assert!(started.elapsed().as_secs() < 20);
    let text = std::fs::read_to_string(&file).expect("written");
    assert_eq!(text.lines().count(), 2000);
}

#[test]
fn generate_then_ingest_lands_every_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("events.ndjson");
    run_ok(
        boxoffice()
            .args(["generate", "--seed", "3", "-n", "4000", "--fast", "-o"])
            .arg(&file),
    );
    let lake_dir = dir.path().join("lake");
    let out = ingest(&lake_dir, &file);
    assert_eq!(out.status.code(), Some(3), "some lines were quarantined");
    let lake = local(&lake_dir);
    let landed = assert_no_duplicate_and_no_gap(&lake);
    let quarantined = count(&lake, &bronze::QUARANTINE);
    assert!(quarantined > 0, "the default malformed share shows up");
    assert_eq!(landed + quarantined, 4000, "every line is somewhere");
    // Each quarantined line says where it came from.
    let lines = strings(&lake, &bronze::QUARANTINE, "source_file");
    assert!(
        lines.iter().all(|f| *f == file.display().to_string()),
        "{lines:?}"
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("{quarantined} lines were not valid events")),
        "{said}"
    );
    // Sources say where the rows came from.
    assert!(
        strings(&lake, &bronze::BOOKINGS_RAW, "source")
            .iter()
            .all(|s| s == "batch")
    );
}

#[test]
fn bad_input_is_quarantined_with_its_reasons_and_nothing_is_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("mixed.ndjson");
    let booking = r#"{"order_id": "order_1", "booking_time": "2024-10-11T09:39:30Z", "customer": {"customer_id": "c1", "name": "A", "email": "a@b.c"}, "event_details": {"event_id": "event1", "event_name": "Concert", "event_location": "x", "seats": [{"seat_number": "A1", "price": 50}]}}"#;
    let payment = r#"{"payment_id": "payment_1", "order_id": "order_1", "payment_time": "2024-10-11T09:40:00Z", "amount": 50, "payment_method": "UPI", "payment_status": "Success"}"#;
    let big_name = "x".repeat(300 * 1024);
    let lines: Vec<Vec<u8>> = vec![
        booking.into(),
        payment.into(),
        br#"{"order_id": "order_2", "booking_time": "#.to_vec(),
        payment.replace("50,", "\"fifty\",").into(),
        booking.replace("\"A\"", &format!("\"{big_name}\"")).into(),
        booking.replace("09:39:30Z", "09:39:30").into(),
        Vec::new(),
        b"\xff\xfe not utf-8".to_vec(),
        booking
            .replace("Concert", "Play")
            .replace("\"price\": 50", "\"price\": -5")
            .into(),
    ];
    let mut f = std::fs::File::create(&file).expect("create");
    for l in &lines {
        f.write_all(l).expect("write");
        f.write_all(b"\n").expect("write");
    }
    drop(f);
    let lake_dir = dir.path().join("lake");
    let out = ingest(&lake_dir, &file);
    assert_eq!(out.status.code(), Some(3), "lines were quarantined");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("1 blank skipped"), "{stdout}");
    // The first refusals are shown by line number; the rows keep file and line.
    for line in [3, 4, 5, 6, 8, 9] {
        assert!(stdout.contains(&format!("  line {line}: ")), "{stdout}");
    }
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("Ctrl-C again"),
        "nobody pressed Ctrl-C"
    );

    let lake = local(&lake_dir);
    assert_eq!(count(&lake, &bronze::BOOKINGS_RAW), 1);
    assert_eq!(count(&lake, &bronze::PAYMENTS_RAW), 1);
    let reasons = strings(&lake, &bronze::QUARANTINE, "reason");
    assert_eq!(reasons.len(), 6, "{reasons:?}");
    for needle in [
        "malformed JSON",
        "wrong type: amount must be a number",
        "over the 262144-byte limit",
        "has no time zone",
        "price is negative",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(needle)),
            "{needle} not in {reasons:?}"
        );
    }
    assert_eq!(
        sql_rows(
            &lake_dir,
            "select line from bronze.quarantine where source_file is not null order by line"
        ),
        ["3", "4", "5", "6", "8", "9"]
    );
    // The oversized body is kept whole, not truncated.
    let bodies = strings(&lake, &bronze::QUARANTINE, "body");
    assert!(bodies.iter().any(|b| b.len() > 300 * 1024));
    assert_no_duplicate_and_no_gap(&lake);
}

#[test]
fn ingest_reads_stdin_and_honours_hub() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = boxoffice()
        .args(["ingest", "--hub", "payments", "--lake"])
        .arg(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    {
        let mut stdin = child.stdin.take().expect("stdin");
        // A booking sent to the payments hub is refused there, with that reason.
        writeln!(
            stdin,
            r#"{{"order_id": "o", "booking_time": "2024-10-11T09:39:30Z"}}"#
        )
        .expect("write");
    }
    let out = child.wait_with_output().expect("exits");
    assert_eq!(
        out.status.code(),
        Some(3),
        "a quarantined line: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lake = local(dir.path());
    let reasons = strings(&lake, &bronze::QUARANTINE, "reason");
    assert_eq!(
        reasons,
        vec!["a booking event sent to the payments hub".to_string()]
    );
    assert_eq!(
        strings(&lake, &bronze::QUARANTINE, "hub"),
        vec!["payments".to_string()]
    );
}

#[test]
fn tables_lists_every_table_before_and_after_landing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = |dir: &std::path::Path| -> serde_json::Value {
        let out = run_ok(boxoffice().args(["tables", "--json", "--lake"]).arg(dir));
        serde_json::from_slice(&out.stdout).expect("json")
    };
    let before = json(dir.path());
    let names: Vec<&str> = before
        .as_array()
        .expect("array")
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        [
            "bronze.bookings_raw",
            "bronze.payments_raw",
            "bronze.quarantine",
            "silver.bookings_fact",
            "silver.unpaid_bookings",
            "silver.orphan_payments",
            "silver.late_events",
            "_system.expectations",
            "gold.event_performance",
            "gold.sales_by_category_hour",
            "gold.payment_mix",
            "gold.conversion",
            "gold.event_occupancy",
            "gold.booking_funnel",
            "ops.raw_movie_bookings",
            "bronze.movie_booking_cdc_events",
            "silver.movie_bookings_filtered",
            "silver.movie_bookings_history",
            "gold.movie_booking_insights",
            "silver.event_catalog",
            "_system.batch_files",
            "_system.job_runs",
            "_system.archive_gaps",
        ]
    );
    assert!(
        before
            .as_array()
            .expect("array")
            .iter()
            .all(|t| t["state"]["status"] == "missing")
    );

    run_ok(
        boxoffice()
            .args(["up", "--count", "3000", "--fast", "--seed", "2", "--lake"])
            .arg(dir.path()),
    );
    let after = json(dir.path());
    let mut total = 0;
    for t in after.as_array().expect("array") {
        let name = t["name"].as_str().expect("name");
        if !name.starts_with("bronze.") || name == "bronze.movie_booking_cdc_events" {
            continue; // the jobs' tables: tests/jobs.rs and tests/cdc.rs
        }
        assert_eq!(t["state"]["status"], "present", "{t}");
        assert_eq!(t["state"]["protocol"], "1/2");
        assert!(t["state"]["version"].as_u64().expect("version") >= 1);
        assert!(t["state"]["last_commit"].is_string());
        total += t["state"]["rows"].as_u64().expect("rows");
    }
    assert_eq!(total, 3000);
    let text = run_ok(boxoffice().args(["tables", "--lake"]).arg(dir.path())).stdout;
    let text = String::from_utf8_lossy(&text);
    assert!(text.starts_with("TABLE"), "{text}");
    assert!(text.contains("bronze/bookings_raw/"), "{text}");
}

#[test]
fn bad_settings_get_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = run_err(boxoffice().args(["tables", "--lake", "s3://bucket/lake"]));
    assert!(err.contains("unsupported scheme s3://"), "{err}");
    let err = run_err(
        boxoffice()
            .args(["ingest", "/no/such/file.ndjson", "--lake"])
            .arg(dir.path()),
    );
    assert!(err.contains("opening /no/such/file.ndjson"), "{err}");
    let err = run_err(boxoffice().args(["generate", "--rate", "0", "-n", "1"]));
    assert!(err.contains("rate must be a positive number"), "{err}");
    let config = dir.path().join("boxoffice.toml");
    std::fs::write(&config, "[generator]\nrat = 5\n").expect("write");
    let err = run_err(
        boxoffice()
            .arg("--config")
            .arg(&config)
            .args(["generate", "-n", "1"]),
    );
    assert!(err.contains("rat"), "{err}");
    let err = run_err(boxoffice().args(["up", "--duration", "soon"]));
    assert!(err.contains("examples: 500ms"), "{err}");
    let err = run_err(boxoffice().args(["up", "--job-interval", "often"]));
    assert!(err.contains("`continuous`, or a duration"), "{err}");
    std::fs::write(&config, "[jobs]\ninterval = \"0s\"\n").expect("write");
    let err = run_err(
        boxoffice()
            .arg("--config")
            .arg(&config)
            .args(["up", "--no-dashboard", "--count", "1", "--lake"])
            .arg(dir.path().join("lake")),
    );
    assert!(
        err.contains("[jobs] interval = \"0s\"") && err.contains("more than 0"),
        "{err}"
    );
}

#[test]
fn settings_come_from_boxoffice_toml() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake_dir = dir.path().join("from-config");
    std::fs::write(
        dir.path().join("boxoffice.toml"),
        format!(
            "[lake]\nroot = {:?}\n[landing]\nflush_events = 100\n",
            lake_dir.display().to_string()
        ),
    )
    .expect("write");
    run_ok(
        boxoffice()
            .current_dir(dir.path())
            .args(["up", "--count", "1000", "--fast", "--seed", "8"]),
    );
    let lake = local(&lake_dir);
    assert_eq!(assert_no_duplicate_and_no_gap(&lake), 1000);
    let table = block_on(lake.open_table(&bronze::BOOKINGS_RAW))
        .expect("open")
        .expect("exists");
    // Batches of at most 100 events over 4 partitions: many commits.
    assert!(
        table.version().unwrap_or(0) >= 3,
        "version {:?}",
        table.version()
    );
}

/// `job run --help`'s list of the tables each job writes, as printed.
fn tables_listed_in_job_run_help() -> std::collections::BTreeMap<String, Vec<String>> {
    let out = run_ok(boxoffice().args(["job", "run", "--help"]));
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    let start = help
        .find("Tables each job writes")
        .unwrap_or_else(|| panic!("job run --help lists no tables:\n{help}"));
    let mut listed: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut job = String::new();
    for line in help[start..]
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("  "))
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() == 2 {
            job = words[0].to_string();
        }
        let table = words.last().expect("a table").to_string();
        listed.entry(job.clone()).or_default().push(table);
    }
    listed
}

/// The tables of `lake` that exist, from `boxoffice tables --json`.
fn present_tables(lake: &std::path::Path) -> std::collections::BTreeSet<String> {
    let out = run_ok(on(lake).args(["tables", "--json"]));
    let tables: serde_json::Value = serde_json::from_slice(&out.stdout).expect("tables --json");
    tables
        .as_array()
        .expect("an array")
        .iter()
        .filter(|t| t["state"]["status"] == "present")
        .map(|t| t["name"].as_str().expect("a name").to_string())
        .collect()
}

#[test]
fn job_run_help_names_every_table_each_job_creates() {
    let listed = tables_listed_in_job_run_help();
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let file = dir.path().join("events.ndjson");
    run_ok(
        boxoffice()
            .args(["generate", "--seed", "5", "-n", "3000", "--fast", "-o"])
            .arg(&file),
    );
    ingest(&lake, &file);
    // Each job after what it needs: the tables its run creates must be the ones the help lists.
    let steps: [(&str, &[&str], &[&str]); 5] = [
        ("bookings_fact", &["--drain", "--yes"], &[]),
        ("gold", &[], &[]),
        ("batch_load", &[], &["batch", "seed"]),
        ("gold", &[], &[]),
        ("cdc", &[], &["cdc", "apply", "--sample"]),
    ];
    let mut jobs_run = std::collections::BTreeSet::new();
    for (job, flags, before_it) in steps {
        if !before_it.is_empty() {
            run_ok(on(&lake).args(before_it));
        }
        let before = present_tables(&lake);
        run_ok(on(&lake).args(["job", "run", job]).args(flags));
        let created: Vec<String> = present_tables(&lake).difference(&before).cloned().collect();
        let names = listed.get(job).cloned().unwrap_or_default();
        assert!(!created.is_empty(), "job run {job} created no table");
        for table in &created {
            assert!(
                names.contains(table),
                "job run {job} created {table}, which `job run --help` does not list under {job}: {names:?}"
            );
        }
        jobs_run.insert(job.to_string());
    }
    let jobs_listed: std::collections::BTreeSet<String> = listed.keys().cloned().collect();
    assert_eq!(
        jobs_listed, jobs_run,
        "the help lists the jobs this test runs"
    );
}
