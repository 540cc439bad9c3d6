//! The CDC flow through the real binary: `cdc apply`, `job run cdc`, crashes between its steps,
//! and a change feed written by another Delta writer (the deltalake Python package).

mod common;

use std::path::Path;
use std::process::Command;

use common::{on, run_err, run_ok, sql_rows};

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/samples/movie_bookings.sql");

/// Gold's measures as CSV lines, without the refresh time.
fn insights(lake: &Path) -> Vec<String> {
    sql_rows(
        lake,
        "select movie_id, total_bookings, total_tickets_sold, total_revenue, total_cancellations
         from gold.movie_booking_insights order by movie_id",
    )
}

/// Silver's latest state and history, sorted, without processing times.
fn silver(lake: &Path) -> String {
    let out = run_ok(on(lake).args([
        "sql",
        "--format",
        "csv",
        "select booking_id, status, ticket_count, ticket_price from silver.movie_bookings_filtered
         order by booking_id",
    ]));
    let history = run_ok(on(lake).args([
        "sql",
        "--format",
        "csv",
        "select booking_id, commit_version, is_current, valid_to is null as open
         from silver.movie_bookings_history order by booking_id, commit_version",
    ]));
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&history.stdout)
    )
}

const EXPECTED: [&str; 5] = [
    "M001,1,2,30.00,0",
    "M002,1,3,36.00,0",
    "M003,1,3,60.00,0",
    "M004,1,4,100.00,0",
    "M005,1,1,10.00,0",
];

#[test]
fn cdc_apply_replays_the_snowflake_sample_row_by_row_to_the_expected_gold() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let out = run_ok(on(&lake).args(["cdc", "apply", SAMPLE, "--per-row", "--run-cdc"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // 5 inserts and 3 updates, one commit each.
    assert!(stderr.contains("in 8 commits"), "{stderr}");
    assert_eq!(insights(&lake), EXPECTED);
}

#[test]
fn a_crash_between_any_two_cdc_steps_then_a_rerun_gives_the_same_tables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clean = dir.path().join("clean");
    run_ok(on(&clean).args(["cdc", "apply", SAMPLE]));
    run_ok(on(&clean).args(["job", "run", "cdc"]));
    let expected = silver(&clean);
    assert_eq!(insights(&clean), EXPECTED);
    for point in [
        "cdc:before:silver.movie_bookings_filtered",
        "cdc:before:silver.movie_bookings_history",
        "cdc:before:gold.movie_booking_insights",
    ] {
        let lake = dir.path().join(point.replace(':', "_"));
        run_ok(on(&lake).args(["cdc", "apply", SAMPLE]));
        let err = run_err(
            on(&lake)
                .env("BOXOFFICE_CRASH_AT", point)
                .args(["job", "run", "cdc"]),
        );
        assert!(err.contains("aborting"), "{point} was reached: {err}");
        run_ok(on(&lake).args(["job", "run", "cdc"]));
        run_ok(on(&lake).args(["job", "run", "cdc"]));
        assert_eq!(silver(&lake), expected, "after a crash at {point}");
        assert_eq!(insights(&lake), EXPECTED, "after a crash at {point}");
    }
}

#[test]
fn a_change_feed_written_by_another_delta_writer_is_read_correctly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let python = std::env::var("BOXOFFICE_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/peers/write_ops_table.py"
    );
    let out = Command::new(&python)
        .arg(script)
        .arg(&lake)
        .output()
        .expect("python runs (./scripts/test installs the deltalake package)");
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    run_ok(on(&lake).args(["job", "run", "cdc"]));
    // The sample, plus B004 cancelled by that writer and B006 (M005) inserted then deleted.
    assert_eq!(
        insights(&lake),
        [
            "M001,1,2,30.00,0",
            "M002,1,3,36.00,0",
            "M003,1,3,60.00,0",
            "M004,1,0,0.00,1",
            "M005,1,1,10.00,0",
        ]
    );
}

#[test]
fn the_built_in_sample_works_from_any_directory_and_a_missing_script_says_where_it_looked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    // From a directory with no samples/ folder: the built-in copy is the repository's script.
    run_ok(
        on(&lake)
            .current_dir(dir.path())
            .args(["cdc", "apply", "--sample"]),
    );
    let from_file = dir.path().join("from_file");
    run_ok(on(&from_file).args(["cdc", "apply", SAMPLE]));
    run_ok(on(&lake).args(["job", "run", "cdc"]));
    run_ok(on(&from_file).args(["job", "run", "cdc"]));
    assert_eq!(insights(&lake).len(), 5, "M001 to M005");
    assert_eq!(insights(&lake), insights(&from_file));
    let err = run_err(on(&lake).current_dir(dir.path()).args([
        "cdc",
        "apply",
        "samples/movie_bookings.sql",
    ]));
    let here = dir.path().canonicalize().expect("canonical");
    assert!(
        err.contains("samples/movie_bookings.sql") && err.contains("--sample"),
        "{err}"
    );
    assert!(
        err.contains(&here.display().to_string())
            || err.contains(&dir.path().display().to_string()),
        "the error names the directory it read from: {err}"
    );
}
