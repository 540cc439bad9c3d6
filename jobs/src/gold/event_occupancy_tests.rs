//! The occupancy expectation on a real local lake: a hand-made catalog and event_performance,
//! one show within its venue, then one oversold.

use boxoffice_lake::{Lake, Layer, TableDef};
use bytes::Bytes;
use deltalake::arrow::array::{AsArray, RecordBatch};
use deltalake::arrow::datatypes::DataType;
use deltalake::datafusion::prelude::SessionContext;
use serde_json::json;

use super::super::tables::{EVENT_OCCUPANCY, EVENT_PERFORMANCE};
use super::WITHIN_CAPACITY;
use crate::silver::tables::EXPECTATIONS;

const CATALOG: &str = "event_id,event_name,venue,city,capacity,starts_at
event1,Rao Live Concert,Pune Arena,Pune,200,2026-09-22T19:00:00Z
event2,Iyer: The Movie,Kochi Cinema,Kochi,160,2026-09-23T14:30:00Z
";

/// Replaces gold.event_performance with these (event_id, seats sold) rows.
async fn performance(lake: &Lake, rows: &[(&str, i64)]) {
    let table = lake.ensure_table(&EVENT_PERFORMANCE).await.expect("table");
    let rows = rows.iter().map(|(id, seats)| {
        json!({
            "event_id": id, "event_name": "x", "event_category": "Music", "orders": 1,
            "seats_sold": seats, "revenue": "100.00", "avg_seat_price": "10.00",
            "failed_payments": 0, "seats_value": "100.00", "refreshed_at": "2026-09-01T00:00:00Z",
        })
    });
    let batches = crate::batch::rows_from_json(&EVENT_PERFORMANCE, rows).expect("performance rows");
    super::super::overwrite(table, &EVENT_PERFORMANCE, batches, Vec::new())
        .await
        .expect("written");
}

/// The first column of `sql` over table `t`, as text.
async fn lines(lake: &Lake, def: &TableDef, sql: &str) -> Vec<String> {
    let Some(table) = lake.open_table(def).await.expect("open") else {
        return Vec::new();
    };
    let ctx = SessionContext::new();
    crate::cdc::register(&ctx, "t", def, &table)
        .await
        .expect("register");
    let batches: Vec<RecordBatch> = crate::cdc::query(&ctx, def, sql).await.expect("query");
    batches
        .iter()
        .flat_map(|b| {
            let c = deltalake::arrow::compute::cast(b.column(0), &DataType::Utf8).expect("cast");
            c.as_string::<i32>()
                .iter()
                .map(|s| s.unwrap_or("NULL").to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The occupancy expectation's results, one line per rebuild.
async fn results(lake: &Lake) -> Vec<String> {
    let sql = format!(
        "SELECT concat_ws(',', job, CAST(batch AS VARCHAR), table_name, action, \
         CAST(passed AS VARCHAR), CAST(failed AS VARCHAR)) FROM t \
         WHERE expectation = '{WITHIN_CAPACITY}' ORDER BY batch"
    );
    lines(lake, &EXPECTATIONS, &sql).await
}

#[tokio::test]
async fn an_oversold_show_is_kept_and_recorded_as_a_broken_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = Lake::local(&dir.path().join("lake")).expect("lake");
    lake.files(Layer::Landing, "event_catalog")
        .expect("landing")
        .put("catalog.csv", Bytes::from_static(CATALOG.as_bytes()))
        .await
        .expect("put");
    crate::batch::run(&lake).await.expect("catalog loaded");

    // Both shows within their venues: the expectation holds for both.
    performance(&lake, &[("event1", 200), ("event2", 90)]).await;
    assert!(super::refresh(&lake).await.expect("refresh").is_some());
    let first = results(&lake).await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(
        first[0].starts_with("gold,") && first[0].ends_with(",gold.event_occupancy,warn,2,0"),
        "{first:?}"
    );

    // Nothing changed: no rebuild, nothing recorded.
    assert!(super::refresh(&lake).await.expect("refresh").is_none());
    assert_eq!(results(&lake).await, first);

    // 170 seats in a 160-seat cinema: warned, and the row is still written as measured.
    performance(&lake, &[("event1", 200), ("event2", 170)]).await;
    assert!(super::refresh(&lake).await.expect("refresh").is_some());
    let results = results(&lake).await;
    assert_eq!(results.len(), 2, "{results:?}");
    assert!(
        results[1].ends_with(",gold.event_occupancy,warn,1,1"),
        "{results:?}"
    );
    assert_ne!(results[0], results[1], "each rebuild is its own batch");
    assert_eq!(
        lines(
            &lake,
            &EVENT_OCCUPANCY,
            "SELECT concat_ws(',', event_id, CAST(seats_sold AS VARCHAR), CAST(occupancy AS VARCHAR)) FROM t ORDER BY event_id",
        )
        .await,
        ["event1,200,1.0", "event2,170,1.0625"]
    );
}

#[tokio::test]
async fn results_for_one_gold_version_are_recorded_once() {
    // A crash after the results but before the Gold overwrite reruns the same version.
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = Lake::local(&dir.path().join("lake")).expect("lake");
    let row = || {
        crate::batch::rows_from_json(
            &EVENT_OCCUPANCY,
            std::iter::once(json!({
                "event_id": "event1", "capacity": 10, "seats_sold": 11, "occupancy": 1.1,
                "refreshed_at": "2026-09-01T00:00:00Z",
            })),
        )
        .expect("row")
    };
    let now = chrono::Utc::now();
    for _ in 0..2 {
        let kept = super::check_expectations(&lake, row(), 7, now)
            .await
            .expect("checked");
        assert_eq!(kept.iter().map(RecordBatch::num_rows).sum::<usize>(), 1);
    }
    assert_eq!(
        results(&lake).await,
        ["gold,7,gold.event_occupancy,warn,0,1"]
    );
}
