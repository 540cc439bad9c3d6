//! The lakehouse jobs through the binary: `job run bookings_fact`, `job run gold` and `sql`, on a
//! local-folder lake: the demos' worked example, exactly once across crashes at every commit
//! point, run-size independence, Gold's revenue, and expectations.

mod common;

use std::path::Path;

use common::{boxoffice, copy_dir, on, run_err, run_ok, sql_rows};

/// `boxoffice sql` as CSV.
fn sql(lake: &Path, query: &str) -> String {
    let out = run_ok(on(lake).args(["sql", "--format", "csv", query]));
    String::from_utf8(out.stdout).expect("utf-8")
}

/// One number from a one-cell query.
fn scalar(lake: &Path, query: &str) -> String {
    sql(lake, query)
        .lines()
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

/// Every output table's rows, sorted, without the processing time: what "the same tables" means.
fn snapshot(lake: &Path) -> Vec<(String, String)> {
    let tables = [
        (
            "silver.bookings_fact",
            "booking_event_uid, payment_event_uid, seat_number",
        ),
        ("silver.unpaid_bookings", "booking_event_uid"),
        ("silver.orphan_payments", "payment_event_uid"),
        ("silver.late_events", "event_uid"),
        ("gold.event_performance", "event_id, event_name"),
        (
            "gold.sales_by_category_hour",
            "booking_date, booking_hour, event_category",
        ),
        ("gold.payment_mix", "payment_method, payment_type"),
        ("gold.conversion", "booking_date, booking_hour"),
    ];
    tables
        .iter()
        .map(|(table, order)| {
            let except = if table.starts_with("gold") {
                "refreshed_at"
            } else {
                "processed_at"
            };
            let q = format!("select * exclude ({except}) from {table} order by {order}");
            (table.to_string(), sql(lake, &q))
        })
        .collect()
}

/// What Gold's revenue must be: `amount` summed once per successful payment.
fn distinct_successful_payments(lake: &Path) -> String {
    scalar(
        lake,
        "select cast(sum(amount) as decimal(18,2)) from (select distinct payment_event_uid, amount \
         from silver.bookings_fact where payment_status = 'Success')",
    )
}

/// A lake whose Bronze holds `n` seeded generated events (failed payments, retries, late and
/// duplicate events, unpaid bookings and malformed bodies included).
fn bronze_lake(dir: &Path, n: &str) -> std::path::PathBuf {
    let events = dir.join("events.ndjson");
    run_ok(
        boxoffice()
            .args([
                "generate", "--seed", "11", "--fast", "--rate", "5", "-n", n, "-o",
            ])
            .arg(&events),
    );
    let lake = dir.join("bronze-only");
    common::ingest(&lake, &events);
    lake
}

fn run_jobs(lake: &Path, config: Option<&Path>) {
    let mut cmd = on(lake);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    run_ok(cmd.args(["job", "run", "bookings_fact", "--drain"]));
    run_ok(on(lake).args(["job", "run", "gold"]));
}

const SMALL_BATCHES: &str = "[jobs]\nmax_events = 500\ncheckpoint_every = 2\n";

#[test]
fn the_demos_worked_example_gives_one_row_per_seat_with_derived_columns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let events = dir.path().join("example.ndjson");
    std::fs::write(
        &events,
        concat!(
            r#"{"order_id":"order_2000","booking_time":"2024-10-11T09:39:30Z","customer":{"customer_id":"cust1","name":"Ann Lee","email":"ann@example.com"},"event_details":{"event_id":"event7","event_name":"Concert","event_location":"1 Main St\nSpringfield","seats":[{"seat_number":"A1","price":60},{"seat_number":"B7","price":85}]}}"#,
            "\n",
            r#"{"payment_id":"payment_3000","order_id":"order_2000","payment_time":"2024-10-11T09:40:10Z","amount":150,"payment_method":"PayPal","payment_status":"Success"}"#,
            "\n"
        ),
    )
    .expect("write");
    let out = common::ingest(&lake, &events);
    assert_eq!(out.status.code(), Some(0), "every line is a valid event");
    run_jobs(&lake, None);
    let rows = sql(
        &lake,
        "select order_id, seat_number, seat_price, payment_id, amount, event_category, payment_type, \
         booking_day_of_week, booking_hour, payment_status from silver.bookings_fact order by seat_number",
    );
    assert_eq!(
        rows.lines().collect::<Vec<_>>(),
        [
            "order_id,seat_number,seat_price,payment_id,amount,event_category,payment_type,booking_day_of_week,booking_hour,payment_status",
            "order_2000,A1,60.0,payment_3000,150.0,Music,Online,Friday,9,Success",
            "order_2000,B7,85.0,payment_3000,150.0,Music,Online,Friday,9,Success",
        ]
    );
    // The demos' 20 columns come first, in their order.
    let header = sql(&lake, "select * from silver.bookings_fact limit 1");
    let first: Vec<&str> = header
        .lines()
        .next()
        .unwrap_or_default()
        .split(',')
        .take(20)
        .collect();
    assert_eq!(
        first,
        [
            "order_id",
            "booking_time",
            "customer_id",
            "customer_name",
            "customer_email",
            "event_id",
            "event_name",
            "event_location",
            "seat_number",
            "seat_price",
            "event_category",
            "booking_day_of_week",
            "booking_hour",
            "payment_id",
            "payment_time",
            "amount",
            "payment_method",
            "payment_type",
            "booking_event_time",
            "payment_event_time",
        ]
    );
    assert_eq!(
        sql(&lake, "select orders, seats_sold, revenue, avg_seat_price, failed_payments from gold.event_performance")
            .lines()
            .nth(1),
        Some("1,2,150.00,72.50,0")
    );
    assert_eq!(
        sql(
            &lake,
            "select bookings, paid, unpaid, conversion_rate from gold.conversion"
        )
        .lines()
        .nth(1),
        Some("1,1,0,1.0")
    );
}

#[test]
fn many_small_runs_give_the_same_tables_as_one_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bronze = bronze_lake(dir.path(), "6000");
    let whole = dir.path().join("whole");
    copy_dir(&bronze, &whole);
    run_jobs(&whole, None);

    let pieces = dir.path().join("pieces");
    copy_dir(&bronze, &pieces);
    let config = dir.path().join("small.toml");
    std::fs::write(&config, SMALL_BATCHES).expect("config");
    // Several runs without drain (each resumes from the state the last one kept), Gold refreshed
    // incrementally after each, then the drain.
    for run in 0..2 {
        let out =
            run_ok(
                on(&pieces)
                    .arg("--config")
                    .arg(&config)
                    .args(["job", "run", "bookings_fact"]),
            );
        let said = String::from_utf8_lossy(&out.stdout);
        if run == 0 {
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("batch 9:"),
                "small batches"
            );
        } else {
            assert!(
                !String::from_utf8_lossy(&out.stderr).contains("batch "),
                "nothing more to take"
            );
            assert!(said.contains("wait to be taken"), "{said}");
        }
        run_ok(on(&pieces).args(["job", "run", "gold"]));
    }
    run_jobs(&pieces, Some(&config));

    let expected = snapshot(&whole);
    assert!(
        expected[0].1.lines().count() > 1000,
        "the fact table has rows"
    );
    assert!(
        expected[1].1.lines().count() > 10,
        "some bookings stay unpaid"
    );
    assert!(expected[3].1.lines().count() > 10, "some events are late");
    for (a, b) in expected.iter().zip(snapshot(&pieces)) {
        assert_eq!(a.1, b.1, "{} differs between one run and many", a.0);
    }
    // An incremental Gold equals a full rebuild.
    run_ok(on(&pieces).args(["job", "run", "gold", "--full"]));
    for (a, b) in expected.iter().zip(snapshot(&pieces)) {
        assert_eq!(a.1, b.1, "{} differs after gold --full", a.0);
    }
}

/// A 3,000-event Bronze, a config of small batches, and the jobs run cleanly with it over a
/// copy: (Bronze, config, the clean lake), for the recovery tests to compare against.
fn small_batches_clean_run(
    dir: &Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let bronze = bronze_lake(dir, "3000");
    let config = dir.join("small.toml");
    std::fs::write(&config, SMALL_BATCHES).expect("config");
    let clean = dir.join("clean");
    copy_dir(&bronze, &clean);
    run_jobs(&clean, Some(&config));
    (bronze, config, clean)
}

#[test]
fn a_crash_at_any_commit_point_then_a_rerun_gives_the_same_tables_as_a_clean_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (bronze, config, clean) = small_batches_clean_run(dir.path());
    let expected = snapshot(&clean);

    let mut points: Vec<String> = [
        "bronze.quarantine",
        "silver.late_events",
        "silver.unpaid_bookings",
        "silver.orphan_payments",
        "_system.expectations",
        "silver.bookings_fact",
    ]
    .iter()
    .map(|t| format!("bookings_fact:before:{t}:2"))
    .collect();
    points.push("bookings_fact:after-commits:2".into());
    points.push("bookings_fact:before-checkpoint:2".into());
    points.push("bookings_fact:after-commits:5".into());
    for (i, point) in points.iter().enumerate() {
        let lake = dir.path().join(format!("crash{i}"));
        copy_dir(&bronze, &lake);
        let err = run_err(
            on(&lake)
                .arg("--config")
                .arg(&config)
                .env("BOXOFFICE_CRASH_AT", point)
                .args(["job", "run", "bookings_fact", "--drain"]),
        );
        assert!(err.contains("aborting"), "{point} was reached: {err}");
        run_jobs(&lake, Some(&config));
        for (a, b) in expected.iter().zip(snapshot(&lake)) {
            assert_eq!(a.1, b.1, "{} differs after a crash at {point}", a.0);
        }
    }
    // Gold: a crash between two Gold tables, then a refresh.
    let lake = dir.path().join("crash-gold");
    copy_dir(&bronze, &lake);
    run_ok(
        on(&lake)
            .arg("--config")
            .arg(&config)
            .args(["job", "run", "bookings_fact", "--drain"]),
    );
    run_err(
        on(&lake)
            .env("BOXOFFICE_CRASH_AT", "gold:before:gold.payment_mix")
            .args(["job", "run", "gold"]),
    );
    run_ok(on(&lake).args(["job", "run", "gold"]));
    for (a, b) in expected.iter().zip(snapshot(&lake)) {
        assert_eq!(a.1, b.1, "{} differs after a Gold crash", a.0);
    }
}

/// In a long-lived process (`up`), a run that fails part-way (here: a table's folder is a file,
/// so its commit fails after the others committed) leaves the job to finish that batch from its
/// plan at the next run, with the same tables as a clean run.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_that_fails_part_way_is_finished_by_the_next_run_in_the_same_process() {
    use boxoffice_jobs::silver::bookings_fact::{self, BookingsFact, Settings};
    let dir = tempfile::tempdir().expect("tempdir");
    let (bronze, _small_config, clean) = small_batches_clean_run(dir.path());

    let lake_dir = dir.path().join("failing");
    copy_dir(&bronze, &lake_dir);
    let blocker = lake_dir.join("silver").join("bookings_fact");
    std::fs::create_dir_all(blocker.parent().expect("silver")).expect("mkdir");
    std::fs::write(&blocker, "not a table").expect("blocker");
    let settings = Settings {
        max_events: 500,
        checkpoint_every: 2,
        ..Settings::default()
    };
    let declared = [(
        &boxoffice_jobs::silver::tables::BOOKINGS_FACT,
        bookings_fact::declared_expectations(&settings.join),
    )];
    let expectations =
        boxoffice_jobs::expectations::Expectations::compile(&declared, &Default::default())
            .expect("expectations");
    let lake = common::local(&lake_dir);
    let (mut job, _) = BookingsFact::open(&lake, settings, expectations)
        .await
        .expect("open");
    let err = job
        .run(true)
        .await
        .expect_err("the fact table cannot be written");
    assert!(err.to_string().contains("bookings_fact"), "{err}");
    assert_eq!(job.batch(), 0, "batch 1 did not finish");

    std::fs::remove_file(&blocker).expect("unblock");
    let reports = job.run(true).await.expect("the next run recovers");
    assert!(reports[0].replayed && reports[0].batch == 1, "{reports:?}");
    assert!(reports.len() > 5, "and goes on: {} batches", reports.len());
    run_ok(on(&lake_dir).args(["job", "run", "gold"]));
    for (a, b) in snapshot(&clean).iter().zip(snapshot(&lake_dir)) {
        assert_eq!(
            a.1, b.1,
            "{} differs after a failed run and its recovery",
            a.0
        );
    }
}

#[test]
fn gold_revenue_is_the_sum_of_distinct_successful_payments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = bronze_lake(dir.path(), "4000");
    run_jobs(&lake, None);
    let distinct = distinct_successful_payments(&lake);
    let seat_rows = scalar(
        &lake,
        "select cast(sum(amount) as decimal(18,2)) from silver.bookings_fact where payment_status = 'Success'",
    );
    assert_ne!(
        distinct, seat_rows,
        "summing seat rows would count a payment once per seat"
    );
    for table in [
        "gold.event_performance",
        "gold.sales_by_category_hour",
        "gold.booking_funnel",
    ] {
        assert_eq!(
            scalar(&lake, &format!("select sum(revenue) from {table}")),
            distinct,
            "{table}"
        );
    }
    let orphans = scalar(
        &lake,
        "select cast(coalesce(sum(amount), 0) as decimal(18,2)) from silver.orphan_payments where payment_status = 'Success'",
    );
    let mix: f64 = scalar(&lake, "select sum(amount) from gold.payment_mix")
        .parse()
        .expect("number");
    let want: f64 =
        distinct.parse::<f64>().expect("number") + orphans.parse::<f64>().expect("number");
    assert!(
        (mix - want).abs() < 0.005,
        "payment_mix amount {mix} = matched {distinct} + orphans {orphans}"
    );
    // The funnel counts each step as the table that specialises in it does.
    let same = [
        (
            "select sum(bookings), sum(paid) from gold.booking_funnel",
            "select sum(bookings), sum(paid) from gold.conversion",
        ),
        (
            "select sum(paid), sum(seats_sold) from gold.booking_funnel",
            "select sum(orders), sum(seats) from gold.sales_by_category_hour",
        ),
        (
            "select sum(failed_payments) from gold.booking_funnel",
            "select sum(failed_payments) from gold.event_performance",
        ),
    ];
    for (funnel, other) in same {
        assert_eq!(sql_rows(&lake, funnel), sql_rows(&lake, other), "{funnel}");
    }
    // Failed attempts are counted, never summed into revenue.
    assert!(
        scalar(
            &lake,
            "select sum(failed_payments) from gold.event_performance"
        )
        .parse::<u64>()
        .expect("n")
            > 0
    );
}

#[test]
fn a_fail_expectation_stops_the_run_names_itself_and_commits_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = bronze_lake(dir.path(), "1000");
    let config = dir.path().join("strict.toml");
    std::fs::write(
        &config,
        "[expectations.bookings_fact.cheap_seats_only]\ncondition = \"seat_price < 90\"\naction = \"fail\"\n",
    )
    .expect("config");
    let err = run_err(on(&lake).arg("--config").arg(&config).args([
        "job",
        "run",
        "bookings_fact",
        "--drain",
    ]));
    assert!(err.contains("cheap_seats_only"), "{err}");
    assert!(err.contains("seat_price < 90"), "{err}");
    assert!(err.contains("nothing was committed"), "{err}");
    assert!(
        err.contains("\"seat_price\""),
        "a sample row is shown: {err}"
    );
    for table in [
        "bookings_fact",
        "unpaid_bookings",
        "orphan_payments",
        "late_events",
    ] {
        assert!(
            !lake.join("silver").join(table).join("_delta_log").exists() || {
                scalar(&lake, &format!("select count(*) from silver.{table}")) == "0"
            },
            "{table} got rows"
        );
    }
}

#[test]
fn a_drop_expectation_quarantines_rows_with_the_reason_and_counts_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = bronze_lake(dir.path(), "2000");
    let config = dir.path().join("drop.toml");
    std::fs::write(
        &config,
        "[expectations.bookings_fact.cheap_seats_only]\ncondition = \"seat_price < 90\"\naction = \"drop\"\n\
         [expectations.bookings_fact.email_well_formed]\naction = \"warn\"\n",
    )
    .expect("config");
    run_ok(
        on(&lake)
            .arg("--config")
            .arg(&config)
            .args(["job", "run", "bookings_fact", "--drain"]),
    );
    assert_eq!(
        scalar(
            &lake,
            "select count(*) from silver.bookings_fact where seat_price >= 90"
        ),
        "0"
    );
    let dropped: u64 = scalar(
        &lake,
        "select count(*) from bronze.quarantine where stage = 'silver.bookings_fact' and reason like '%cheap_seats_only%'",
    )
    .parse()
    .expect("count");
    assert!(dropped > 0);
    let counted: u64 = scalar(
        &lake,
        "select sum(failed) from _system.expectations where expectation = 'cheap_seats_only'",
    )
    .parse()
    .expect("count");
    assert_eq!(
        counted, dropped,
        "every dropped row is counted and quarantined"
    );
}

#[test]
fn sql_prints_a_table_csv_and_json_and_explains_unknown_tables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = bronze_lake(dir.path(), "500");
    let table = run_ok(on(&lake).args(["sql", "select count(*) as n from bronze.bookings_raw"]));
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("| n "), "{text}");
    let json = run_ok(on(&lake).args(["sql", "--format", "json", "select 1 as one"]));
    assert_eq!(
        String::from_utf8_lossy(&json.stdout).trim(),
        r#"[{"one":1}]"#
    );
    let err = run_err(on(&lake).args(["sql", "select * from gold.nothing_here"]));
    assert!(
        err.contains("bronze.bookings_raw"),
        "lists the tables there are: {err}"
    );
}

#[test]
fn gold_follows_a_compacted_silver_without_double_counting_and_rebuilds_after_a_delete() {
    use boxoffice_jobs::silver::tables::BOOKINGS_FACT;
    let dir = tempfile::tempdir().expect("tempdir");
    let lake_dir = bronze_lake(dir.path(), "3000");
    let config = dir.path().join("small.toml");
    std::fs::write(&config, SMALL_BATCHES).expect("config");
    run_jobs(&lake_dir, Some(&config));
    let before = snapshot(&lake_dir);
    let lake = common::local(&lake_dir);

    // Compaction rewrites files (dataChange false): Gold must not count them again.
    common::block_on(async {
        let table = lake
            .open_table(&BOOKINGS_FACT)
            .await
            .expect("open")
            .expect("exists");
        let (_, metrics) = table.optimize().await.expect("optimize");
        assert!(metrics.num_files_removed > 1, "files were compacted");
    });
    run_ok(on(&lake_dir).args(["job", "run", "gold"]));
    assert_eq!(
        before,
        snapshot(&lake_dir),
        "a compaction changes nothing in Gold"
    );

    // New Silver rows compacted with older ones before Gold took them (as when Gold falls
    // behind a same-day compaction): their files are gone, so Gold rebuilds from Silver.
    let more = dir.path().join("more.ndjson");
    // An hour after the first events (the generator starts at 2025-01-01 by default).
    run_ok(
        boxoffice()
            .args([
                "generate", "--seed", "12", "--fast", "--rate", "5", "-n", "1000",
            ])
            .args(["--start", "2025-01-01T01:00:00Z", "-o"])
            .arg(&more),
    );
    common::ingest(&lake_dir, &more);
    // Small batches: several new files in the new day's partition, which the compaction merges.
    run_ok(on(&lake_dir).arg("--config").arg(&config).args([
        "job",
        "run",
        "bookings_fact",
        "--drain",
    ]));
    common::block_on(async {
        let table = lake
            .open_table(&BOOKINGS_FACT)
            .await
            .expect("open")
            .expect("exists");
        let (_, metrics) = table.optimize().await.expect("optimize");
        assert!(metrics.num_files_removed > 1, "files were compacted");
    });
    let out = run_ok(on(&lake_dir).args(["job", "run", "gold"]));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("compacted files added since the last refresh"),
        "{said}"
    );
    assert_eq!(
        scalar(&lake_dir, "select sum(revenue) from gold.event_performance"),
        distinct_successful_payments(&lake_dir)
    );

    // A delete removes rows: Gold cannot add it up, so it rebuilds, and says so.
    common::block_on(async {
        let table = lake
            .open_table(&BOOKINGS_FACT)
            .await
            .expect("open")
            .expect("exists");
        table
            .delete()
            .with_predicate("payment_method = 'PayPal'")
            .await
            .expect("delete");
    });
    let out = run_ok(on(&lake_dir).args(["job", "run", "gold"]));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("rebuilt from all of Silver"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let distinct = distinct_successful_payments(&lake_dir);
    assert_eq!(
        scalar(&lake_dir, "select sum(revenue) from gold.event_performance"),
        distinct
    );
}
