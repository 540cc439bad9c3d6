//! The CDC flow against the Snowflake sample and section 6's counting rules, on a real local
//! lake.

use boxoffice_lake::{Lake, TableDef};
use deltalake::arrow::array::{AsArray, RecordBatch};
use deltalake::arrow::datatypes::Int64Type;
use deltalake::datafusion::prelude::SessionContext;

use super::tables::{MOVIE_BOOKING_INSIGHTS, MOVIE_BOOKINGS_FILTERED, MOVIE_BOOKINGS_HISTORY};
use super::{query, register};
use crate::ops::script::{self, Applier};

const SAMPLE: &str = include_str!("../../../samples/movie_bookings.sql");

/// When the cdc job runs while a script is applied. Runs hold the flow's tables open from one
/// to the next (as `up` does), but in `AfterEachStatementAfresh`, where each opens them anew
/// (as `boxoffice job cdc` does).
#[derive(Debug, Clone, Copy)]
enum Schedule {
    AtTheEnd,
    AfterEachStatement,
    AfterEachStatementAfresh,
    AfterEachRowChange,
}

async fn replay(lake: &Lake, script: &str, schedule: Schedule) {
    let statements = script::parse(script).expect("script parses");
    let mut applier = Applier::open(lake).await.expect("ops table");
    let mut flow = super::Flow::new(lake);
    for statement in &statements {
        let pieces = match schedule {
            Schedule::AfterEachRowChange => {
                applier.per_row(&statement.change).await.expect("split")
            }
            _ => vec![statement.change.clone()],
        };
        for piece in &pieces {
            applier.apply(piece).await.expect("apply");
            match schedule {
                Schedule::AtTheEnd => {}
                Schedule::AfterEachStatementAfresh => {
                    super::run(lake).await.expect("cdc run");
                }
                _ => {
                    flow.run().await.expect("cdc run");
                }
            }
        }
    }
    flow.run().await.expect("cdc run");
}

/// The first column of `batches` as text (NULL for nulls).
fn texts(batches: &[RecordBatch]) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let text = deltalake::arrow::compute::cast(
                b.column(0),
                &deltalake::arrow::datatypes::DataType::Utf8,
            )
            .expect("cast");
            text.as_string::<i32>()
                .iter()
                .map(|s| s.unwrap_or("NULL").to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

async fn rows(lake: &Lake, def: &TableDef, sql: &str) -> Vec<RecordBatch> {
    let ctx = SessionContext::new();
    let table = lake
        .open_table(def)
        .await
        .expect("open")
        .expect("table exists");
    register(&ctx, "t", def, &table).await.expect("register");
    query(&ctx, def, sql).await.expect("query")
}

/// Gold as (movie, bookings, tickets, revenue, cancellations) lines.
async fn insights(lake: &Lake) -> Vec<String> {
    let batches = rows(
        lake,
        &MOVIE_BOOKING_INSIGHTS,
        "SELECT movie_id || ' ' || CAST(total_bookings AS VARCHAR) || ' ' ||
                CAST(total_tickets_sold AS VARCHAR) || ' ' || CAST(total_revenue AS VARCHAR) || ' ' ||
                CAST(total_cancellations AS VARCHAR) AS line
         FROM t ORDER BY movie_id",
    )
    .await;
    texts(&batches)
}

async fn count(lake: &Lake, def: &TableDef, condition: &str) -> i64 {
    let batches = rows(
        lake,
        def,
        &format!("SELECT count(*) FROM t WHERE {condition}"),
    )
    .await;
    batches[0].column(0).as_primitive::<Int64Type>().value(0)
}

/// The Bronze step alone, on tables opened for it, as a run that stopped after it: what it
/// appended, and whether it handed changes on to the later steps.
async fn bronze_step(lake: &Lake) -> (super::movie_booking_cdc_events::BronzeReport, bool) {
    let source = lake
        .open_table(&crate::ops::RAW_MOVIE_BOOKINGS)
        .await
        .expect("open")
        .expect("the source exists");
    let mut bronze = lake
        .ensure_table(&super::tables::MOVIE_BOOKING_CDC_EVENTS)
        .await
        .expect("bronze");
    let (report, fresh) = super::movie_booking_cdc_events::run(&source, &mut bronze)
        .await
        .expect("bronze step");
    (report, fresh.is_some())
}

fn lake() -> (tempfile::TempDir, Lake) {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = Lake::local(&dir.path().join("lake")).expect("lake");
    (dir, lake)
}

const EXPECTED: [&str; 5] = [
    "M001 1 2 30.00 0",
    "M002 1 3 36.00 0",
    "M003 1 3 60.00 0",
    "M004 1 4 100.00 0",
    "M005 1 1 10.00 0",
];

#[tokio::test]
async fn the_snowflake_sample_gives_the_same_gold_whatever_the_schedule() {
    for schedule in [
        Schedule::AtTheEnd,
        Schedule::AfterEachStatement,
        Schedule::AfterEachStatementAfresh,
        Schedule::AfterEachRowChange,
    ] {
        let (_dir, lake) = lake();
        replay(&lake, SAMPLE, schedule).await;
        assert_eq!(insights(&lake).await, EXPECTED, "schedule {schedule:?}");
        assert_eq!(count(&lake, &MOVIE_BOOKINGS_FILTERED, "true").await, 5);
        assert_eq!(
            count(
                &lake,
                &MOVIE_BOOKINGS_FILTERED,
                "booking_id = 'B002' AND ticket_count = 3"
            )
            .await,
            1
        );
        // B001, B002, B003 were updated once: two versions each, one current.
        assert_eq!(
            count(&lake, &MOVIE_BOOKINGS_HISTORY, "true").await,
            8,
            "{schedule:?}"
        );
        assert_eq!(count(&lake, &MOVIE_BOOKINGS_HISTORY, "is_current").await, 5);
        assert_eq!(
            count(
                &lake,
                &MOVIE_BOOKINGS_HISTORY,
                "NOT is_current AND valid_to IS NOT NULL"
            )
            .await,
            3
        );
    }
}

#[tokio::test]
async fn every_table_of_the_flow_stays_readable_by_power_bi_and_synapse() {
    let (_dir, lake) = lake();
    replay(&lake, SAMPLE, Schedule::AtTheEnd).await;
    for def in super::tables::TABLES {
        let table = lake.open_table(def).await.expect("open").expect("exists");
        let problems = boxoffice_lake::compatibility_problems(&table).expect("protocol");
        assert!(
            problems.is_empty(),
            "{}: {problems:?}",
            def.qualified_name()
        );
    }
    let ops = lake
        .open_table(&crate::ops::RAW_MOVIE_BOOKINGS)
        .await
        .expect("open")
        .expect("exists");
    let protocol = ops.snapshot().expect("snapshot").protocol().clone();
    assert_eq!(
        (protocol.min_reader_version(), protocol.min_writer_version()),
        (1, 4)
    );
}

const CANCELLATIONS: &str = "
INSERT INTO raw_movie_bookings VALUES
    ('K1', 'C1', 'M1', '2025-01-01 18:00:00', 'BOOKED', 2, 10.00),
    ('K2', 'C2', 'M1', '2025-01-01 18:05:00', 'BOOKED', 3, 10.00),
    ('K3', 'C3', 'M1', '2025-01-01 18:10:00', 'COMPLETED', 1, 12.50),
    ('K4', 'C4', 'M2', '2025-01-01 18:15:00', 'BOOKED', 4, 8.00),
    ('K5', 'C5', 'M2', '2025-01-01 18:20:00', 'BOOKED', 1, 8.00);
UPDATE raw_movie_bookings SET status = 'CANCELLED' WHERE booking_id IN ('K2', 'K4');
DELETE FROM raw_movie_bookings WHERE booking_id = 'K5';
UPDATE raw_movie_bookings SET movie_id = 'M3' WHERE booking_id = 'K1';
";

#[tokio::test]
async fn cancellations_and_deletes_count_as_section_6_says_on_every_schedule() {
    for schedule in [
        Schedule::AtTheEnd,
        Schedule::AfterEachStatement,
        Schedule::AfterEachStatementAfresh,
        Schedule::AfterEachRowChange,
    ] {
        let (_dir, lake) = lake();
        replay(&lake, CANCELLATIONS, schedule).await;
        // M1: K2 cancelled (counted as a booking and a cancellation, no tickets), K3 completed;
        // K1 moved to M3. M2: K4 cancelled, K5 deleted (gone from every count).
        assert_eq!(
            insights(&lake).await,
            ["M1 2 1 12.50 1", "M2 1 0 0.00 1", "M3 1 2 20.00 0"],
            "{schedule:?}"
        );
        // The delete closed K5's only version, and nothing of K5 is current.
        assert_eq!(
            count(
                &lake,
                &MOVIE_BOOKINGS_HISTORY,
                "booking_id = 'K5' AND NOT is_current"
            )
            .await,
            1
        );
        assert_eq!(
            count(&lake, &MOVIE_BOOKINGS_FILTERED, "booking_id = 'K5'").await,
            0
        );
    }
}

#[tokio::test]
async fn a_movie_left_without_bookings_loses_its_gold_row() {
    let (_dir, lake) = lake();
    replay(&lake, CANCELLATIONS, Schedule::AfterEachStatement).await;
    replay(
        &lake,
        "DELETE FROM raw_movie_bookings WHERE movie_id = 'M2';",
        Schedule::AfterEachStatement,
    )
    .await;
    assert_eq!(insights(&lake).await, ["M1 2 1 12.50 1", "M3 1 2 20.00 0"]);
}

#[tokio::test]
async fn a_change_read_twice_is_applied_once() {
    let (_dir, lake) = lake();
    replay(&lake, SAMPLE, Schedule::AtTheEnd).await;
    // Bronze taken again, then every later step, as after a crash between them: nothing new.
    let (again, fresh) = bronze_step(&lake).await;
    assert_eq!((again.rows, fresh), (0, false));
    // A step whose progress was lost behind Bronze's (its table holds the changes, its app
    // transaction is older) reapplies them idempotently; here: run the whole job twice more.
    let report = super::run(&lake).await.expect("rerun");
    assert_eq!(report.changes, 0);
    assert_eq!(report.bookings_changed, 0);
    super::run(&lake).await.expect("rerun");
    assert_eq!(insights(&lake).await, EXPECTED);
    // 5 inserts, then 3 updates of two halves each.
    assert_eq!(
        count(&lake, &super::tables::MOVIE_BOOKING_CDC_EVENTS, "true").await,
        11
    );
    assert_eq!(count(&lake, &MOVIE_BOOKINGS_HISTORY, "true").await, 8);
}

#[tokio::test]
async fn a_step_behind_bronze_reads_its_changes_back_from_bronze() {
    let (_dir, lake) = lake();
    let statements = script::parse(SAMPLE).expect("script parses");
    let mut applier = Applier::open(&lake).await.expect("ops table");
    let (first, rest) = statements.split_at(statements.len() / 2);
    for statement in first {
        applier.apply(&statement.change).await.expect("apply");
    }
    // A run that stopped after the Bronze step: the later steps are behind.
    let (taken, _) = bronze_step(&lake).await;
    assert!(taken.rows > 0);
    for statement in rest {
        applier.apply(&statement.change).await.expect("apply");
    }
    // The next run appends only the rest to Bronze; the later steps need the first part too,
    // which they read back from Bronze.
    let report = super::Flow::new(&lake).run().await.expect("cdc");
    assert_eq!(report.changes + taken.rows, 11, "{report:?}");
    assert_eq!(insights(&lake).await, EXPECTED);
    assert_eq!(count(&lake, &MOVIE_BOOKINGS_HISTORY, "true").await, 8);
    assert_eq!(count(&lake, &MOVIE_BOOKINGS_FILTERED, "true").await, 5);
}

#[tokio::test]
async fn changes_that_cannot_be_applied_go_to_quarantine_and_the_rest_still_lands() {
    let (_dir, lake) = lake();
    replay(
        &lake,
        "INSERT INTO raw_movie_bookings VALUES
            ('Q1', 'C1', 'M9', '2025-01-01 18:00:00', 'PENDING', 2, 10.00),
            ('Q2', 'C2', 'M9', '2025-01-01 18:00:00', 'BOOKED', -1, 10.00),
            ('Q3', 'C3', 'M9', '2025-01-01 18:00:00', 'BOOKED', 2, 10.00);
         UPDATE raw_movie_bookings SET status = 'REFUNDED' WHERE booking_id = 'Q3';",
        Schedule::AfterEachStatement,
    )
    .await;
    // Q3 keeps its state from before the refused update.
    assert_eq!(insights(&lake).await, ["M9 1 2 20.00 0"]);
    let quarantine = rows(
        &lake,
        &boxoffice_ingest::bronze::QUARANTINE,
        "SELECT reason FROM t WHERE source = 'cdc' ORDER BY reason",
    )
    .await;
    let reasons: Vec<String> = texts(&quarantine);
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("\"PENDING\"")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("ticket_count -1 is negative")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("\"REFUNDED\"") && r.contains("version 2")),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn a_script_error_names_the_line_of_its_statement() {
    let err = script::parse(
        "INSERT INTO raw_movie_bookings VALUES ('B1');\n\nDROP TABLE raw_movie_bookings;",
    )
    .expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains("line 3") && text.contains("only INSERT, UPDATE and DELETE"),
        "{text}"
    );
    let err = script::parse("UPDATE other_table SET status = 'X';").expect_err("refused");
    assert!(err.to_string().contains("not other_table"), "{err}");
}

/// Gold computed straight from the source table's current rows: what the flow must arrive at.
async fn truth(lake: &Lake) -> Vec<String> {
    let batches = rows(
        lake,
        &crate::ops::RAW_MOVIE_BOOKINGS,
        "SELECT movie_id || ' ' || CAST(count(*) AS VARCHAR) || ' ' ||
                CAST(coalesce(sum(CASE WHEN status IN ('BOOKED','COMPLETED') THEN ticket_count END), 0) AS VARCHAR) || ' ' ||
                CAST(CAST(coalesce(sum(CASE WHEN status IN ('BOOKED','COMPLETED')
                     THEN CAST(ticket_price AS DECIMAL(18,2)) * ticket_count END), 0) AS DECIMAL(18,2)) AS VARCHAR) || ' ' ||
                CAST(count(CASE WHEN status = 'CANCELLED' THEN 1 END) AS VARCHAR)
         FROM t GROUP BY movie_id ORDER BY movie_id",
    )
    .await;
    texts(&batches)
}

#[tokio::test]
async fn the_simulated_service_and_gold_agree_whenever_the_job_runs() {
    use crate::ops::simulator::Simulator;
    let (_dir, lake) = lake();
    let mut sim = Simulator::open(&lake, 7).await.expect("simulator");
    // One flow held open, as `up` runs it; in round 4 another process's run comes between two
    // of its runs, and the held flow goes on from there.
    let mut flow = super::Flow::new(&lake);
    let (mut updated, mut deleted) = (0, 0);
    for round in 0..8 {
        let tick = sim.tick(200).await.expect("tick");
        updated += tick.updated;
        deleted += tick.deleted;
        if round == 4 {
            super::run(&lake).await.expect("another process's cdc");
        } else if round % 2 == 1 {
            flow.run().await.expect("cdc");
        }
    }
    // A restarted simulator continues the same table.
    let mut sim = Simulator::open(&lake, 8).await.expect("reopen");
    let tick = sim.tick(200).await.expect("tick");
    updated += tick.updated;
    deleted += tick.deleted;
    flow.run().await.expect("cdc");
    assert!(
        updated > 100 && deleted > 10,
        "{updated} updates, {deleted} deletes"
    );
    let gold = insights(&lake).await;
    assert!(gold.len() > 10);
    assert_eq!(gold, truth(&lake).await);
}

#[tokio::test]
async fn a_run_whose_merge_writes_nothing_still_records_its_progress() {
    let (_dir, lake) = lake();
    // Q1 is refused (unknown status), then deleted: the delete merges into nothing.
    replay(
        &lake,
        "INSERT INTO raw_movie_bookings VALUES ('Q1', 'C1', 'M1', '2025-01-01 18:00:00', 'PENDING', 2, 10.00);
         DELETE FROM raw_movie_bookings WHERE booking_id = 'Q1';",
        Schedule::AfterEachStatement,
    )
    .await;
    let again = super::run(&lake).await.expect("rerun");
    assert_eq!(
        (
            again.bookings_changed,
            again.history_rows,
            again.movies_refreshed
        ),
        (0, 0, 0),
        "{again:?}"
    );
}
