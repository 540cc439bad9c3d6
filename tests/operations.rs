//! Day-2 operations through the real binary, on local-folder lakes: leases keep one `up` and one
//! run of each job per lake, a killed holder is taken over, a full refresh equals a clean run
//! (after a crash at any of its commit points too) and readers never see it half done, and
//! history ingested after live data is backfilled into the rows it would have had first.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use boxoffice_jobs::silver::tables::BOOKINGS_FACT;
use boxoffice_lake::Lake;
use common::{boxoffice, copy_dir, count, ingest, local, on, run_err, run_ok, sql_rows};

/// Every Silver and Gold table's rows, sorted, without the columns a run stamps itself:
/// processing and refresh times, and (with `arrivals: false`) arrival times and places in a
/// partition's sequence, which differ when the same events were ingested at another moment.
fn snapshot(lake: &Path, arrivals: bool) -> Vec<(String, Vec<String>)> {
    let stamped = |table: &str| -> Vec<&str> {
        let mut cols = vec![if table.starts_with("gold") {
            "refreshed_at"
        } else {
            "processed_at"
        }];
        if !arrivals {
            cols.extend(match table {
                "silver.bookings_fact" => &["booking_event_time", "payment_event_time"][..],
                "silver.unpaid_bookings" => &["booking_event_time"][..],
                "silver.orphan_payments" => &["payment_event_time"][..],
                // And its place in its partition (it arrived at another place in the sequence),
                // and which backfill judged it late (none, where history came first).
                "silver.late_events" => &["arrival_time", "sequence_number", "backfill"][..],
                _ => &[][..],
            });
        }
        cols
    };
    [
        "silver.bookings_fact",
        "silver.unpaid_bookings",
        "silver.orphan_payments",
        "silver.late_events",
        "gold.event_performance",
        "gold.sales_by_category_hour",
        "gold.payment_mix",
        "gold.conversion",
        "gold.booking_funnel",
    ]
    .iter()
    .map(|table| {
        let q = format!(
            "select * exclude ({}) from {table}",
            stamped(table).join(", ")
        );
        let mut rows = sql_rows(lake, &q);
        rows.sort();
        (table.to_string(), rows)
    })
    .collect()
}

fn assert_same(expected: &[(String, Vec<String>)], lake: &Path, arrivals: bool, what: &str) {
    for (a, b) in expected.iter().zip(snapshot(lake, arrivals)) {
        assert_eq!(a.1.len(), b.1.len(), "{} row count differs {what}", a.0);
        assert!(a.1 == b.1, "{} differs {what}", a.0);
    }
}

/// A lake whose Bronze holds `n` seeded generated events.
fn bronze_lake(dir: &Path, n: &str) -> PathBuf {
    let events = dir.join("events.ndjson");
    run_ok(
        boxoffice()
            .args([
                "generate", "--seed", "21", "--fast", "--rate", "20", "-n", n, "-o",
            ])
            .arg(&events),
    );
    let lake = dir.join("bronze-only");
    ingest(&lake, &events);
    lake
}

/// The job's last batch, as it published it.
fn last_batch(lake: &Path) -> u64 {
    let text = std::fs::read_to_string(lake.join("_system/jobs/bookings_fact/progress.json"))
        .expect("the job published its position");
    let json: serde_json::Value = serde_json::from_str(&text).expect("json");
    json["batch"].as_u64().expect("batch")
}

fn job(lake: &Path, config: &Path, args: &[&str]) -> std::process::Output {
    run_ok(
        on(lake)
            .arg("--config")
            .arg(config)
            .args(["job", "run"])
            .args(args),
    )
}

/// Rows of the fact table's current snapshot, from the log: what a reader sees.
fn fact_rows(lake: &Lake) -> u64 {
    common::block_on(async {
        match lake.open_table(&BOOKINGS_FACT).await.expect("open") {
            Some(t) => t
                .snapshot()
                .expect("snapshot")
                .log_data()
                .iter()
                .filter_map(|f| f.num_records())
                .sum::<usize>() as u64,
            None => 0,
        }
    })
}

const SETTINGS: &str = "[jobs]\nmax_events = 500\nlease_ttl = \"3s\"\n";
/// The same with another join window: what a full refresh is for.
const NEW_WINDOW: &str = "[jobs]\nmax_events = 500\nlease_ttl = \"3s\"\n[join]\nwindow = \"60s\"\n";

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

#[test]
fn a_full_refresh_equals_a_clean_run_and_readers_never_see_it_half_done() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bronze = bronze_lake(dir.path(), "12000");
    let (old, new) = (
        write(dir.path(), "old.toml", SETTINGS),
        write(dir.path(), "new.toml", NEW_WINDOW),
    );
    let clean = dir.path().join("clean");
    copy_dir(&bronze, &clean);
    job(&clean, &new, &["bookings_fact"]);
    job(&clean, &new, &["gold"]);

    let live = dir.path().join("live");
    copy_dir(&bronze, &live);
    job(&live, &old, &["bookings_fact"]);
    job(&live, &old, &["gold"]);
    let quarantined = count(&local(&live), &boxoffice_ingest::bronze::QUARANTINE);
    let lake = local(&live);
    let before = fact_rows(&lake);

    // A reader polls the fact table all through the refresh.
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let (stop, seen, lake) = (Arc::clone(&stop), Arc::clone(&seen), lake.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let rows = fact_rows(&lake);
                seen.lock().expect("lock").push(rows);
            }
        })
    };
    let out = job(&live, &new, &["bookings_fact", "--full-refresh"]);
    stop.store(true, Ordering::Relaxed);
    reader.join().expect("reader");
    let after = fact_rows(&lake);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("full refresh"), "{said}");
    assert!(
        said.contains("rebuilt from all of Silver"),
        "Gold follows: {said}"
    );

    assert_ne!(before, after, "a 60 s window matches fewer payments");
    let seen = seen.lock().expect("lock").clone();
    assert!(seen.len() > 5, "the reader looked {} times", seen.len());
    assert!(
        seen.iter().all(|n| *n == before || *n == after),
        "a reader saw a partial table: {before} before, {after} after, seen {seen:?}"
    );
    assert_same(&snapshot(&clean, true), &live, true, "from a clean run");
    assert_eq!(
        count(&local(&live), &boxoffice_ingest::bronze::QUARANTINE),
        quarantined,
        "the refresh quarantines nothing twice"
    );
    // The job goes on from the rebuilt state: later runs find nothing more.
    let out = job(&live, &new, &["bookings_fact"]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("batch "));
    assert_same(&snapshot(&clean, true), &live, true, "after a later run");
}

#[test]
fn a_crash_at_any_point_of_a_full_refresh_is_finished_by_the_next_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bronze = bronze_lake(dir.path(), "3000");
    let (old, new) = (
        write(dir.path(), "old.toml", SETTINGS),
        write(dir.path(), "new.toml", NEW_WINDOW),
    );
    let clean = dir.path().join("clean");
    copy_dir(&bronze, &clean);
    job(&clean, &new, &["bookings_fact"]);
    job(&clean, &new, &["gold"]);
    let expected = snapshot(&clean, true);

    let live = dir.path().join("live");
    copy_dir(&bronze, &live);
    job(&live, &old, &["bookings_fact"]);
    let first = last_batch(&live) + 1;
    let points = [
        format!("bookings_fact:before:silver.bookings_fact:{}", first + 1),
        "bookings_fact:refresh:before-swap".to_string(),
        "bookings_fact:refresh:after-swap:silver.late_events".to_string(),
        "bookings_fact:refresh:after-swap:silver.bookings_fact".to_string(),
        "bookings_fact:refresh:before-done".to_string(),
    ];
    for (i, point) in points.iter().enumerate() {
        let lake = dir.path().join(format!("crash{i}"));
        copy_dir(&live, &lake);
        let err = run_err(
            on(&lake)
                .arg("--config")
                .arg(&new)
                .env("BOXOFFICE_CRASH_AT", point)
                .args(["job", "run", "bookings_fact", "--full-refresh"]),
        );
        assert!(err.contains("aborting"), "{point} was reached: {err}");
        // The next run of the job, without the flag, finishes the refresh first.
        let out = job(&lake, &new, &["bookings_fact"]);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("finishing the full refresh"),
            "{point}"
        );
        job(&lake, &new, &["gold"]);
        assert_same(&expected, &lake, true, &format!("after a crash at {point}"));
        assert!(
            !lake
                .join(format!("_system/refresh/bookings_fact/{first}"))
                .exists(),
            "the refresh's working folder is gone"
        );
    }
}

/// `FROM..TO` in ingest's warning.
fn suggested_range(said: &str) -> String {
    let at = said
        .find("--backfill ")
        .unwrap_or_else(|| panic!("no backfill suggested: {said}"));
    said[at + "--backfill ".len()..]
        .split_whitespace()
        .next()
        .expect("a range")
        .to_string()
}

#[test]
fn history_ingested_after_live_data_is_backfilled_into_the_rows_it_would_have_had_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let generate = |name: &str, seed: &str, start: &str, rate: &str| {
        let file = dir.path().join(name);
        run_ok(
            boxoffice()
                .args(["generate", "--fast", "-n", "3000", "--seed", seed])
                .args(["--start", start, "--rate", rate, "-o"])
                .arg(&file),
        );
        file
    };
    // A day of history (3,000 events over about 17 hours), ten minutes of live data, and the
    // live data that follows (which moves every partition past what came before).
    let day = generate("day.ndjson", "7", "2025-03-01T00:00:00Z", "0.05");
    let live = generate("live.ndjson", "8", "2025-03-02T12:00:00Z", "5");
    let later = generate("later.ndjson", "9", "2025-03-02T12:30:00Z", "5");
    let config = write(dir.path(), "jobs.toml", SETTINGS);

    // The way it should have been: history first.
    let first = dir.path().join("history-first");
    for file in [&day, &live, &later] {
        ingest(&first, file);
        job(&first, &config, &["bookings_fact"]);
    }
    job(&first, &config, &["gold"]);

    // The way it happened: live data first, then yesterday's file, then the backfill.
    let after = dir.path().join("history-after");
    ingest(&after, &live);
    job(&after, &config, &["bookings_fact"]);
    let out = ingest(&after, &day);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("older than the join's watermark"), "{said}");
    let range = suggested_range(&said);
    let out = job(&after, &config, &["bookings_fact", "--backfill", &range]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("backfill 1"), "{said}");
    ingest(&after, &later);
    job(&after, &config, &["bookings_fact"]);
    job(&after, &config, &["gold"]);

    let late_before = sql_rows(&after, "select count(*) from silver.late_events");
    assert_same(
        &snapshot(&first, false),
        &after,
        false,
        "from the lake that had the history first",
    );
    assert!(
        sql_rows(&first, "select count(*) from silver.bookings_fact")[0] != "0",
        "history matched"
    );
    // Done once: the same backfill again takes nothing (what is still late was judged late
    // among the history itself).
    let out = job(&after, &config, &["bookings_fact", "--backfill", &range]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("backfill 2 ") && said.contains(": 0 taken"),
        "{said}"
    );
    assert_eq!(
        sql_rows(&after, "select count(*) from silver.late_events"),
        late_before
    );
}

/// `up` on `lake` with `config`, its stderr read line by line until the banner shows.
fn start_up(lake: &Path, config: &Path) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut child = on(lake)
        .arg("--config")
        .arg(config)
        .args([
            "up",
            "--rate",
            "200",
            "--no-dashboard",
            "--duration",
            "120s",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("up starts");
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("up prints its banner");
        if line.contains("dashboard") || line.contains("joining into Silver") {
            break;
        }
    }
    (child, rx)
}

#[test]
fn one_up_and_one_run_of_each_job_per_lake_and_a_killed_holder_is_taken_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let config = write(dir.path(), "leases.toml", SETTINGS);
    let (mut up, _lines) = start_up(&lake, &config);
    let pid = up.id().to_string();

    // A second up stops before its banner; a job up runs is refused, naming up.
    let second = on(&lake)
        .arg("--config")
        .arg(&config)
        .args(["up", "--duration", "2s", "--no-dashboard"])
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert!(
        err.contains("refused: `boxoffice up`") && err.contains("is landing events into this lake"),
        "{err}"
    );
    assert!(err.contains("stop it first"), "up has no --wait: {err}");
    assert!(err.contains(&format!("pid {pid}")), "{err}");
    assert!(!err.contains("boxoffice up: lake"), "no banner: {err}");
    for name in ["bookings_fact", "gold", "cdc", "batch_load"] {
        let err = run_err(
            on(&lake)
                .arg("--config")
                .arg(&config)
                .args(["job", "run", name]),
        );
        assert!(
            err.contains(&format!(
                "refused: {name} is running in `boxoffice up` (pid {pid}"
            )),
            "{err}"
        );
        assert!(err.contains("--wait"), "says what to do: {err}");
    }
    let ingest = run_err(on(&lake).args(["ingest", "/dev/null"]));
    assert!(ingest.contains("`boxoffice up`"), "{ingest}");
    assert!(ingest.contains("--wait"), "ingest can wait: {ingest}");
    // A drain while up lands is refused: payments are still coming.
    let drain = run_err(on(&lake).arg("--config").arg(&config).args([
        "job",
        "run",
        "bookings_fact",
        "--drain",
        "--yes",
    ]));
    assert!(drain.contains("refused"), "{drain}");

    // One waits; up is killed; the waiter takes the lease (no need to wait for the expiry on the
    // machine where the holder died), and so does the next run.
    let waiter = on(&lake)
        .arg("--config")
        .arg(&config)
        .args(["job", "run", "gold", "--wait"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("waiter");
    std::thread::sleep(Duration::from_secs(2));
    up.kill().expect("SIGKILL");
    up.wait().expect("reaped");
    let killed = Instant::now();
    let out = waiter.wait_with_output().expect("the waiter ends");
    let waited = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{waited}");
    assert!(
        waited.contains("waiting for gold: it is running in `boxoffice up`"),
        "{waited}"
    );
    assert!(
        killed.elapsed() < Duration::from_secs(3) + Duration::from_secs(10),
        "taken over within the lease's expiry (3 s) and a poll"
    );
    job(&lake, &config, &["bookings_fact"]);
    // And up starts again on the same lake.
    let (mut again, _) = start_up(&lake, &config);
    again.kill().expect("kill");
    again.wait().expect("reaped");
}

#[test]
fn two_ups_on_one_lake_never_pair_events_of_different_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let run = || {
        run_ok(on(&lake).args([
            "up",
            "--rate",
            "300",
            "--duration",
            "20s",
            "--no-dashboard",
            "--cdc-rate",
            "0",
        ]))
    };
    run();
    std::thread::sleep(Duration::from_secs(5));
    let between = chrono::Utc::now().to_rfc3339();
    run();

    // Orders of the two runs are different orders.
    let keys = |op: &str| -> std::collections::BTreeSet<String> {
        sql_rows(
            &lake,
            &format!(
                "select distinct partition_key from bronze.bookings_raw \
                 where ingested_at {op} timestamp '{between}'"
            ),
        )
        .into_iter()
        .collect()
    };
    let (first, second) = (keys("<"), keys(">="));
    assert!(first.len() > 100 && second.len() > 100, "both runs booked");
    let shared: Vec<&String> = first.intersection(&second).take(5).collect();
    assert!(shared.is_empty(), "order ids in both runs: {shared:?}");

    // Every successful payment is for its own order's seats (v2 adds a 2% fee).
    let wrong = sql_rows(
        &lake,
        "select order_id, amount, seats from (\
           select order_id, booking_event_uid, payment_event_uid, max(amount) amount, \
                  sum(seat_price) seats, max(schema_version) v \
           from silver.bookings_fact where payment_status = 'Success' and source = 'stream' \
           group by order_id, booking_event_uid, payment_event_uid) \
         where abs(amount - seats - (case when v = 2 then round(seats * 2) / 100 else 0 end)) > 0.005",
    );
    assert!(
        wrong.is_empty(),
        "amounts that are not the seat total: {wrong:?}"
    );
    let matched: u64 = sql_rows(
        &lake,
        "select count(distinct payment_event_uid) from silver.bookings_fact where payment_status = 'Success'",
    )[0]
    .parse()
    .expect("count");
    assert!(matched > 100, "payments were matched: {matched}");
    let twice = sql_rows(
        &lake,
        "select booking_event_uid from silver.bookings_fact where payment_status = 'Success' \
         group by booking_event_uid having count(distinct payment_event_uid) > 1",
    );
    assert!(
        twice.is_empty(),
        "bookings with two successful payments: {twice:?}"
    );
    // And the second run sold other shows than the first: no seat of a show went to two orders.
    let resold = sql_rows(
        &lake,
        "select event_id, seat_number from silver.bookings_fact where source = 'stream' \
         group by event_id, seat_number having count(distinct order_id) > 1 limit 5",
    );
    assert!(resold.is_empty(), "seats sold twice: {resold:?}");
}

#[test]
fn the_run_jobs_function_takes_each_jobs_lease_and_runs_once_up_is_gone() {
    use common::functions_host::{invoke, serve_with, timer};
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let config = write(dir.path(), "leases.toml", SETTINGS);
    let (mut up, _lines) = start_up(&lake, &config);
    let lake_arg = lake.to_str().expect("utf-8 path");
    let config_arg = config.to_str().expect("utf-8 path");
    let server = serve_with(&["--lake", lake_arg, "--config", config_arg], &[]);

    // up holds the join's lease: the function fails naming the job and its holder, and writes
    // nothing (the next tick tries again).
    let (status, reply) = invoke(&server, "run_jobs", &timer());
    assert_ne!(status, 200, "run_jobs ran beside up: {reply}");
    let said = reply.to_string();
    assert!(said.contains("bookings_fact"), "{said}");
    assert!(
        said.contains(&format!("boxoffice up` (pid {}", up.id())),
        "{said}"
    );

    // With up gone (its leases released on SIGTERM), the same invocation runs every job.
    let pid = up.id().to_string();
    run_ok(std::process::Command::new("kill").args(["-TERM", &pid]));
    // Whether it stopped cleanly or (on a loaded machine, with a 3 s lease) gave up a lease it
    // could not renew in time, a gone holder's leases are taken over at once on this machine.
    up.wait().expect("up exits");
    let (status, reply) = invoke(&server, "run_jobs", &timer());
    assert_eq!(status, 200, "{reply}");
    let log = reply["Logs"][0].as_str().expect("a log line");
    for job in ["bookings_fact", "gold", "cdc", "batch_load"] {
        assert!(log.contains(job), "{job} missing from {log}");
    }
}
