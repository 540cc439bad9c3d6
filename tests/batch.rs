//! batch_load through the binary, beside the stream: box-office sales merged into
//! silver.bookings_fact leave no duplicate, and Gold gains occupancy from the catalog.

mod common;

use std::path::Path;

use common::{on, run_ok, sql_rows};

#[test]
fn box_office_sales_merged_beside_stream_rows_leave_no_duplicate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    run_ok(on(&lake).args([
        "up",
        "--count",
        "3000",
        "--fast",
        "--seed",
        "5",
        "--no-jobs",
    ]));
    run_ok(on(&lake).args(["job", "run", "bookings_fact", "--drain"]));
    run_ok(on(&lake).args(["batch", "seed"]));
    let stream_rows: usize = sql_rows(&lake, "select count(*) from silver.bookings_fact")[0]
        .parse()
        .expect("count");
    // Two seats the stream already has, exported again by the box office, and a new sale.
    let again = sql_rows(
        &lake,
        "select order_id, booking_time, event_id, seat_number, seat_price, payment_method, payment_id
         from silver.bookings_fact where payment_status = 'Success' order by order_id, seat_number limit 2",
    );
    let mut csv =
        String::from("sale_id,sold_at,event_id,seat_number,seat_price,payment_method,payment_id\n");
    for line in &again {
        csv.push_str(line);
        csv.push('\n');
    }
    csv.push_str("box9,2026-01-10T12:00:00Z,event3,A1,500,Cash,\n");
    csv.push_str("box9,2026-01-10T12:00:00Z,event3,A2,500,Cash,\n");
    let folder = lake.join("landing/box_office_sales");
    std::fs::create_dir_all(&folder).expect("mkdir");
    std::fs::write(folder.join("export.csv"), &csv).expect("write");

    let out = run_ok(on(&lake).args(["job", "run", "batch_load"]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("box_office_sales/export.csv: 4 rows loaded, 0 quarantined"),
        "{stdout}"
    );
    assert_eq!(
        sql_rows(
            &lake,
            "select count(*) from (select order_id, seat_number, payment_id from silver.bookings_fact
             group by order_id, seat_number, payment_id having count(*) > 1)"
        ),
        ["0"]
    );
    let total: usize = sql_rows(&lake, "select count(*) from silver.bookings_fact")[0]
        .parse()
        .expect("count");
    assert_eq!(
        total,
        stream_rows + 2,
        "only the new sale's two seats were added"
    );
    assert_eq!(
        sql_rows(
            &lake,
            "select source, count(*) from silver.bookings_fact where order_id = 'box9' group by source"
        ),
        ["batch,2"]
    );
    // Loading again takes nothing.
    let out = run_ok(on(&lake).args(["job", "run", "batch_load"]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no new landing file"));

    // Gold counts the box-office sale and measures occupancy against the catalog.
    run_ok(on(&lake).args(["job", "run", "gold"]));
    assert_eq!(
        sql_rows(&lake, "select count(*) from gold.event_occupancy"),
        ["100"]
    );
    assert_eq!(
        sql_rows(
            &lake,
            "select o.seats_sold = p.seats_sold, o.occupancy = round(cast(p.seats_sold as double) / o.capacity, 4)
             from gold.event_occupancy o join gold.event_performance p on p.event_id = o.event_id
             where o.event_id = 'event3'"
        ),
        ["true,true"]
    );
}

/// Every table batch_load writes, as sorted CSV lines without load times.
fn snapshot(lake: &Path) -> Vec<Vec<String>> {
    [
        "select order_id, seat_number, payment_id, cast(amount as varchar), source from silver.bookings_fact order by 1, 2",
        "select event_id, capacity from silver.event_catalog order by 1",
        "select reason from bronze.quarantine order by 1",
        "select path, rows_loaded, rows_quarantined from _system.batch_files order by 1",
    ]
    .iter()
    .map(|q| sql_rows(lake, q))
    .collect()
}

#[test]
fn a_crash_at_any_point_of_a_load_then_a_rerun_gives_the_same_tables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sales = "sale_id,sold_at,event_id,seat_number,seat_price,payment_method\n\
                 s1,2026-09-01T10:00:00Z,event1,A1,100,Cash\n\
                 s1,2026-09-01T10:00:00Z,event1,A2,100,Cash\n\
                 s2,2026-09-01T10:00:00Z,event404,A1,100,Cash\n";
    let prepare = |lake: &Path| {
        run_ok(on(lake).args(["batch", "seed"]));
        let folder = lake.join("landing/box_office_sales");
        std::fs::create_dir_all(&folder).expect("mkdir");
        std::fs::write(folder.join("day.csv"), sales).expect("write");
    };
    let clean = dir.path().join("clean");
    prepare(&clean);
    run_ok(on(&clean).args(["job", "run", "batch_load"]));
    let expected = snapshot(&clean);
    assert_eq!(expected[0].len(), 2, "{expected:?}");
    assert_eq!(expected[2].len(), 1, "{expected:?}");
    // Load 1 is the catalog, load 2 the sales file.
    for point in [
        "batch_load:before:silver.event_catalog:1",
        "batch_load:before:bronze.quarantine:2",
        "batch_load:before:silver.bookings_fact:2",
        "batch_load:before:_system.batch_files:2",
        "batch_load:after-commits:2",
    ] {
        let lake = dir.path().join(point.replace([':', '.'], "_"));
        prepare(&lake);
        let err = common::run_err(on(&lake).env("BOXOFFICE_CRASH_AT", point).args([
            "job",
            "run",
            "batch_load",
        ]));
        assert!(err.contains("aborting"), "{point} was reached: {err}");
        run_ok(on(&lake).args(["job", "run", "batch_load"]));
        run_ok(on(&lake).args(["job", "run", "batch_load"]));
        assert_eq!(snapshot(&lake), expected, "after a crash at {point}");
    }
}
