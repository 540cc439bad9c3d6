//! The generator through the real binary: runs on one lake never share keys, seeded files stay
//! reproducible, the catalog `batch seed` writes matches what `up` sells, and no show is oversold.

mod common;

use std::collections::HashSet;
use std::path::Path;

use common::*;

/// The `order_id`s of `generate`'s output.
fn order_ids(ndjson: &[u8]) -> HashSet<String> {
    String::from_utf8_lossy(ndjson)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["order_id"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn seeded_generate_is_reproducible_and_another_start_shares_no_order() {
    let generate = |extra: &[&str]| {
        run_ok(
            boxoffice()
                .args(["generate", "--seed", "7", "--count", "5000", "--fast"])
                .args(extra),
        )
        .stdout
    };
    let a = generate(&[]);
    assert_eq!(a, generate(&[]), "same seed, same (default) start");
    assert_eq!(
        a,
        generate(&["--start", "2025-01-01T00:00:00Z"]),
        "the default start of seeded generate is 2025-01-01"
    );
    let ids = order_ids(&a);
    assert!(ids.len() > 2_000);
    assert!(ids.iter().all(|id| id.starts_with("order_")), "{ids:?}");
    let later = order_ids(&generate(&["--start", "2025-01-01T00:00:01Z"]));
    assert!(ids.is_disjoint(&later), "a start a second later reuses ids");
}

/// Successful payments per order beyond the first, and payments whose amount is not their
/// order's seats (plus at most the 2% fee of v2): both 0 when every pair is one run's.
fn mismatched_pairs(lake: &Path) -> Vec<String> {
    sql_rows(
        lake,
        "select
           (select count(*) from (select order_id from silver.bookings_fact
             where payment_status = 'Success' group by order_id
             having count(distinct payment_id) > 1)) as paid_twice,
           (select count(*) from (select order_id, payment_id, max(amount) as amount,
                   sum(seat_price) as seats from silver.bookings_fact
             where payment_id is not null group by order_id, payment_id)
             where amount < seats - 0.005 or amount > seats * 1.02 + 0.01) as not_the_seats",
    )
}

#[test]
fn restarting_up_on_one_lake_never_pairs_two_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    // The same seed twice: `up` starts at now, so the runs differ only in their start.
    for _ in 0..2 {
        run_ok(on(&lake).args([
            "up",
            "--count",
            "6000",
            "--fast",
            "--seed",
            "5",
            "--no-jobs",
        ]));
    }
    run_ok(on(&lake).args(["job", "run", "bookings_fact", "--drain"]));
    assert_eq!(
        sql_rows(
            &lake,
            "select count(distinct split_part(order_id, '-', 1)) from silver.bookings_fact"
        ),
        ["2"],
        "two runs, two run tags"
    );
    assert_eq!(mismatched_pairs(&lake), ["0,0"]);
}

#[test]
fn batch_seed_dates_the_catalog_for_a_run_and_up_never_oversells_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let landed = lake.join("landing/event_catalog/event_catalog.csv");

    run_ok(on(&lake).args(["batch", "seed", "--start", "2025-01-01T00:00:00Z"]));
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data/event_catalog.csv"),
    )
    .expect("shipped catalog");
    assert_eq!(
        std::fs::read_to_string(&landed).expect("landed"),
        shipped,
        "for seeded generate's start, the shipped catalog"
    );

    // For a run starting now: every show starts after now, and after every booking of the run.
    run_ok(on(&lake).args(["batch", "seed"]));
    let seeded = std::fs::read_to_string(&landed).expect("landed");
    let now = chrono::Utc::now();
    for line in seeded.lines().skip(1) {
        let starts_at = line.rsplit(',').next().expect("starts_at");
        let starts_at = chrono::DateTime::parse_from_rfc3339(starts_at).expect("a time");
        assert!(starts_at > now + chrono::Duration::days(1), "{line}");
    }
    // 30,000 events over 10 simulated minutes sell out the most popular small venues early
    // enough for most of their orders to be paid before the run ends.
    run_ok(on(&lake).args([
        "up",
        "--count",
        "30000",
        "--rate",
        "50",
        "--fast",
        "--seed",
        "9",
        "--no-jobs",
    ]));
    for job in ["batch_load", "bookings_fact", "gold"] {
        run_ok(on(&lake).args(["job", "run", job]));
    }
    assert_eq!(mismatched_pairs(&lake), ["0,0"]);
    let shows = sql_rows(
        &lake,
        "select count(*), max(occupancy) <= 1, count(*) filter (where occupancy > 0.8)
         from gold.event_occupancy",
    );
    let [shows]: [String; 1] = shows.try_into().expect("one row");
    let parts: Vec<&str> = shows.split(',').collect();
    assert_eq!(parts[..2], ["100", "true"], "{shows}");
    assert!(
        parts[2].parse::<u32>().expect("a count") > 0,
        "no show sold out: {shows}"
    );
    // v2 bookings carry their show's date, the catalog's (the same day's run).
    assert_eq!(
        sql_rows(
            &lake,
            "select count(*) from silver.bookings_fact f
             join silver.event_catalog c on c.event_id = f.event_id
             where f.booking_time >= c.starts_at"
        ),
        ["0"]
    );
    assert_eq!(
        sql_rows(
            &lake,
            "select concat(job, ' ', action, ' ', cast(failed as varchar))
             from _system.expectations where expectation = 'occupancy_within_capacity'"
        ),
        ["gold warn 0"]
    );
}
