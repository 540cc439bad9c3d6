//! What the binary says in the cases a new user meets first, asserted on text and exit code: what
//! waits in Bronze and why, what a drain resolves (and its question at a terminal), a table not
//! created yet, ingest's exit code and line numbers, lake locations that cannot work.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use common::{boxoffice, ingest, on, run_ok, sql_rows};

const BOOKING: &str = r#"{"schema_version": 1, "event_id": "6f1c3c1e-8a4d-4b1e-9f3e-2d7a1b0c9e11", "order_id": "order_1", "booking_time": "2025-03-01T10:00:00Z", "customer": {"customer_id": "c1", "name": "Ann Lee", "email": "ann@example.com"}, "event_details": {"event_id": "event1", "event_name": "Big Concert", "event_location": "1 Main St", "seats": [{"seat_number": "A1", "price": 50.0}, {"seat_number": "A2", "price": 50.0}]}}"#;
const PAYMENT: &str = r#"{"schema_version": 1, "event_id": "0b6c2f4e-1d3a-4c5b-8e7f-9a0b1c2d3e4f", "payment_id": "payment_1", "order_id": "order_1", "payment_time": "2025-03-01T10:00:40Z", "amount": 100.0, "payment_method": "UPI", "payment_status": "Success"}"#;

fn file(dir: &Path, name: &str, lines: &[&str]) -> std::path::PathBuf {
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).expect("create");
    for l in lines {
        writeln!(f, "{l}").expect("write");
    }
    path
}

#[test]
fn a_booking_and_its_payment_in_bronze_are_said_to_wait_and_a_drain_joins_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let events = file(dir.path(), "two.ndjson", &[BOOKING, PAYMENT]);
    let out = ingest(&lake, &events);
    assert_eq!(out.status.code(), Some(0), "both are valid");

    let out = run_ok(on(&lake).args(["job", "run", "bookings_fact"]));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(!said.contains("nothing new in Bronze"), "{said}");
    assert!(
        said.contains("2 events landed in Bronze wait to be taken"),
        "{said}"
    );
    assert!(said.contains("landed nothing newer yet"), "{said}");
    assert!(said.contains("--drain takes them now"), "{said}");
    assert!(said.contains("no watermark yet"), "{said}");

    // Nothing waits in the state, so nothing is asked; the pair is joined (a row per seat).
    let out = run_ok(on(&lake).args(["job", "run", "bookings_fact", "--drain"]));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("silver.bookings_fact     +2 rows"), "{said}");
    assert!(
        said.contains("everything landed in Bronze is taken"),
        "{said}"
    );
}

/// A lake with bookings whose payments were not generated yet: what `up` stopped early leaves.
fn lake_with_waiting_bookings(dir: &Path) -> std::path::PathBuf {
    let events = dir.join("early.ndjson");
    run_ok(
        boxoffice()
            .args([
                "generate", "--seed", "5", "--fast", "-n", "600", "--rate", "100",
            ])
            .args(["--malformed-share", "0", "-o"])
            .arg(&events),
    );
    let lake = dir.join("lake");
    ingest(&lake, &events);
    run_ok(on(&lake).args(["job", "run", "bookings_fact"]));
    lake
}

/// "{n} bookings still waiting for a payment become unpaid" -> n
fn unpaid_said(said: &str) -> u64 {
    let at = said
        .find(" bookings still waiting for a payment become unpaid")
        .unwrap_or_else(|| panic!("no count of bookings that become unpaid: {said}"));
    let n = said[..at].rsplit(' ').next().expect("a number");
    n.replace(',', "").parse().expect("a number")
}

#[test]
fn a_drain_says_how_many_bookings_become_unpaid_and_asks_at_a_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = lake_with_waiting_bookings(dir.path());
    let binary = env!("CARGO_BIN_EXE_boxoffice");
    // At a terminal (script(1) gives the command one), "n" drains nothing.
    let command = format!(
        "{binary} --lake {} job run bookings_fact --drain",
        lake.display()
    );
    let mut child = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("BOXOFFICE_DASHBOARD_PORT", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script(1) runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"n\n")
        .expect("answer");
    let out = child.wait_with_output().expect("ends");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    let announced = unpaid_said(&said);
    assert!(announced > 0, "{said}");
    assert!(said.contains("Drain now? [y/N]"), "{said}");
    assert!(said.contains("nothing drained"), "{said}");
    assert_eq!(
        sql_rows(&lake, "select count(*) from silver.unpaid_bookings"),
        ["0"]
    );

    // Without a terminal (or with --yes) it drains, and the count it gave is what lands.
    let out = run_ok(on(&lake).args(["job", "run", "bookings_fact", "--drain", "--yes"]));
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(unpaid_said(&said), announced);
    assert_eq!(
        sql_rows(&lake, "select count(*) from silver.unpaid_bookings"),
        [announced.to_string()]
    );
}

#[test]
fn sql_on_a_table_not_created_yet_names_the_job_that_writes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    ingest(&lake, &file(dir.path(), "one.ndjson", &[BOOKING]));
    let out = run_ok(on(&lake).args(["sql", "select count(*) as n from silver.late_events"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "silver.late_events has not been created yet (it is written by `boxoffice job run bookings_fact`)"
        ),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("| 0 "));
    let out = on(&lake)
        .args(["sql", "select * from gold.no_such_table"])
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("gold.no_such_table"), "{err}");
    assert!(!err.contains("datafusion."), "{err}");
}

#[test]
fn ingest_exits_0_when_everything_landed_and_3_with_line_numbers_when_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let good = file(dir.path(), "good.ndjson", &[BOOKING, PAYMENT]);
    let out = on(&lake).arg("ingest").arg(&good).output().expect("runs");
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("Ctrl-C again"),
        "nobody pressed Ctrl-C: {err}"
    );

    let bad = file(
        dir.path(),
        "bad.ndjson",
        &[BOOKING, "{\"order_id\": 7}", PAYMENT, "not json"],
    );
    let out = on(&lake).arg("ingest").arg(&bad).output().expect("runs");
    assert_eq!(out.status.code(), Some(3));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("2 lines were not valid events"), "{said}");
    assert!(
        said.contains("  line 2: wrong type: order_id must be a string"),
        "{said}"
    );
    assert!(said.contains("  line 4: malformed JSON"), "{said}");
    assert_eq!(
        sql_rows(
            &lake,
            "select source_file, line from bronze.quarantine order by line"
        ),
        [
            format!("{},2", bad.display()),
            format!("{},4", bad.display())
        ]
    );
}

#[test]
fn lake_locations_that_cannot_work_say_what_to_do() {
    let out = boxoffice()
        .args(["--lake", "az://lake/dev", "tables"])
        .env_remove("AZURE_STORAGE_ACCOUNT_NAME")
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("no storage account"), "{err}");
    assert!(err.contains("--emulator"), "{err}");
    assert!(!err.contains("Account must be specified"), "{err}");

    let port = boxoffice_testkit::free_port();
    let started = std::time::Instant::now();
    let out = boxoffice()
        .args([
            "--lake",
            "az://lake/dev",
            "--emulator",
            "--emulator-endpoint",
        ])
        .arg(format!("http://127.0.0.1:{port}"))
        .arg("tables")
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains(&format!(
            "Azurite does not answer there (nothing listens on 127.0.0.1:{port})"
        )),
        "{err}"
    );
    assert!(err.contains("Start it"), "{err}");
    assert_eq!(err.matches("error:").count(), 1, "said once: {err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "it does not retry for minutes first"
    );
}
