//! batch_load on a real local lake: files taken once, changed files again, bad rows quarantined
//! with their lines, Parquet as well as CSV.

use boxoffice_lake::{Lake, Layer, TableDef};
use bytes::Bytes;
use deltalake::arrow::array::{AsArray, RecordBatch};
use deltalake::arrow::datatypes::DataType;
use deltalake::datafusion::prelude::SessionContext;

use super::event_catalog::SHIPPED;
use super::tables::EVENT_CATALOG;
use crate::silver::tables::BOOKINGS_FACT;

fn lake() -> (tempfile::TempDir, Lake) {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = Lake::local(&dir.path().join("lake")).expect("lake");
    (dir, lake)
}

async fn drop_file(lake: &Lake, path: &str, text: impl Into<Bytes>) {
    let (folder, name) = path.split_once('/').expect("folder/name");
    let landing = lake.files(Layer::Landing, folder).expect("landing");
    landing.put(name, text.into()).await.expect("put");
}

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

const SALES: &str = "sale_id,sold_at,event_id,seat_number,seat_price,payment_method,customer_id,customer_name,customer_email,currency
box1,2026-09-01T10:00:00Z,event1,A1,1200.00,Cash,cust1,Asha Rao,asha@example.com,INR
box1,2026-09-01T10:00:00Z,event1,A2,1200.00,Cash,cust1,Asha Rao,asha@example.com,INR
box2,2026-09-01T11:30:00+05:30,event2,C7,800.00,UPI,cust2,Ravi K,ravi@example.com,INR
";

#[tokio::test]
async fn the_same_file_twice_loads_once_and_a_changed_file_is_taken_again() {
    let (_dir, lake) = lake();
    drop_file(&lake, "event_catalog/catalog.csv", SHIPPED).await;
    drop_file(&lake, "box_office_sales/day1.csv", SALES).await;
    let first = super::run(&lake).await.expect("load");
    assert_eq!(first.iter().map(|r| r.loaded).collect::<Vec<_>>(), [100, 3]);
    assert!(
        super::run(&lake).await.expect("again").is_empty(),
        "nothing new"
    );
    let fact = "SELECT order_id || ' ' || seat_number || ' ' || CAST(amount AS VARCHAR) || ' ' || source || ' ' || event_name FROM t ORDER BY order_id, seat_number";
    let before = lines(&lake, &BOOKINGS_FACT, fact).await;
    assert_eq!(before.len(), 3);
    // The show's name comes from the catalog (event1 of the shipped one).
    let event1 = boxoffice_events::generator::catalog::Catalog::standard(1).shows()[0]
        .event_name
        .clone();
    assert_eq!(
        before[0],
        format!("box1 A1 2400.0 batch {event1}"),
        "{before:?}"
    );
    // The file is corrected: box2's seat price changes, a sale is added.
    let changed = SALES.replace("C7,800.00", "C7,850.00")
        + "box3,2026-09-02T09:00:00Z,event1,B4,1000,Debit Card,cust3,Mina,mina@example.com,INR\n";
    drop_file(&lake, "box_office_sales/day1.csv", changed).await;
    let again = super::run(&lake).await.expect("changed");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].loaded, 4);
    let after = lines(&lake, &BOOKINGS_FACT, fact).await;
    assert_eq!(after.len(), 4, "{after:?}");
    assert!(after[2].starts_with("box2 C7 850.0 batch"), "{after:?}");
    assert_eq!(
        lines(
            &lake,
            &super::tables::BATCH_FILES,
            "SELECT path FROM t ORDER BY load"
        )
        .await,
        [
            "event_catalog/catalog.csv",
            "box_office_sales/day1.csv",
            "box_office_sales/day1.csv"
        ]
    );
}

#[tokio::test]
async fn bad_rows_are_quarantined_with_their_line_and_the_good_rows_load() {
    let (_dir, lake) = lake();
    drop_file(&lake, "event_catalog/catalog.csv", SHIPPED).await;
    let bad = "sale_id,sold_at,event_id,seat_number,seat_price,payment_method,customer_id,customer_name,customer_email,currency
s1,2026-09-01T10:00:00Z,event1,A1,100,Cash,c,n,e@x.io,INR
s2,2026-09-01 10:00:00,event1,A2,100,Cash,c,n,e@x.io,INR
s3,2026-09-01T10:00:00Z,event999,A3,100,Cash,c,n,e@x.io,INR
s4,2026-09-01T10:00:00Z,event1,A4,-5,Barter,c,n,e@x.io,INR
s5,2026-09-01T10:00:00Z,event1,A5
s1,2026-09-01T10:00:00Z,event1,A1,100,Cash,c,n,e@x.io,INR
s6,2026-09-01T10:00:00Z,event1,A6,100,Cash,c,n,e@x.io,INR
";
    drop_file(&lake, "box_office_sales/bad.csv", bad).await;
    drop_file(&lake, "box_office_sales/notes.txt", "not data").await;
    drop_file(&lake, "box_office_sales/broken.parquet", "PAR1 not really").await;
    let reports = super::run(&lake).await.expect("load");
    let bad_report = reports
        .iter()
        .find(|r| r.path.ends_with("bad.csv"))
        .expect("bad.csv");
    assert_eq!((bad_report.loaded, bad_report.quarantined), (2, 5));
    let reasons = lines(
        &lake,
        &boxoffice_ingest::bronze::QUARANTINE,
        "SELECT reason FROM t WHERE source = 'batch' ORDER BY reason",
    )
    .await;
    let expect = [
        "box_office_sales/bad.csv line 3: sold_at \"2026-09-01 10:00:00\" is not a time with a zone",
        "box_office_sales/bad.csv line 4: event_id \"event999\" is not in silver.event_catalog",
        "box_office_sales/bad.csv line 5: seat_price \"-5\" is not a positive number; payment_method \"Barter\"",
        "box_office_sales/bad.csv line 6: has 4 fields where the header has 10",
        "box_office_sales/bad.csv line 7: seat A1 of sale s1 appears twice in the file",
        "box_office_sales/broken.parquet: not a readable Parquet file",
        "box_office_sales/notes.txt: not a CSV or Parquet file",
    ];
    assert_eq!(reasons.len(), expect.len(), "{reasons:#?}");
    for e in expect {
        assert!(
            reasons.iter().any(|r| r.starts_with(e)),
            "{e} in {reasons:#?}"
        );
    }
    assert_eq!(
        lines(
            &lake,
            &BOOKINGS_FACT,
            "SELECT order_id FROM t ORDER BY order_id"
        )
        .await,
        ["s1", "s6"]
    );
}

#[tokio::test]
async fn parquet_files_load_like_csv_and_catalog_rows_are_upserted() {
    let (_dir, lake) = lake();
    drop_file(&lake, "event_catalog/catalog.csv", SHIPPED).await;
    super::run(&lake).await.expect("catalog");
    // A second catalog file renames a show and changes its capacity.
    drop_file(
        &lake,
        "event_catalog/update.csv",
        "event_id,event_name,venue,city,capacity,starts_at\nevent1,Christiansen Farewell Concert,Bengaluru Arena,Bengaluru,500,2026-09-22T19:00:00Z\n",
    )
    .await;
    // Sales as Parquet.
    let batch = RecordBatch::try_from_iter([
        (
            "sale_id",
            std::sync::Arc::new(deltalake::arrow::array::StringArray::from(vec!["p1", "p1"])) as _,
        ),
        (
            "sold_at",
            std::sync::Arc::new(deltalake::arrow::array::StringArray::from(vec![
                "2026-09-03T18:00:00Z";
                2
            ])) as _,
        ),
        (
            "event_id",
            std::sync::Arc::new(deltalake::arrow::array::StringArray::from(vec![
                "event1";
                2
            ])) as _,
        ),
        (
            "seat_number",
            std::sync::Arc::new(deltalake::arrow::array::StringArray::from(vec!["J1", "J2"])) as _,
        ),
        (
            "seat_price",
            std::sync::Arc::new(deltalake::arrow::array::Float64Array::from(vec![
                300.0, 300.0,
            ])) as _,
        ),
        (
            "payment_method",
            std::sync::Arc::new(deltalake::arrow::array::StringArray::from(vec![
                "PayPal";
                2
            ])) as _,
        ),
    ])
    .expect("batch");
    let mut bytes = Vec::new();
    let mut writer =
        deltalake::parquet::arrow::ArrowWriter::try_new(&mut bytes, batch.schema(), None)
            .expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
    drop_file(&lake, "box_office_sales/online.parquet", bytes).await;
    let reports = super::run(&lake).await.expect("load");
    assert_eq!(reports.iter().map(|r| r.loaded).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(
        lines(&lake, &EVENT_CATALOG, "SELECT event_name || ' ' || CAST(capacity AS VARCHAR) || ' ' || event_category FROM t WHERE event_id = 'event1'").await,
        ["Christiansen Farewell Concert 500 Music"]
    );
    assert_eq!(
        lines(&lake, &EVENT_CATALOG, "SELECT count(*) FROM t").await,
        ["100"]
    );
    assert_eq!(
        lines(&lake, &BOOKINGS_FACT, "SELECT payment_type || ' ' || CAST(amount AS VARCHAR) || ' ' || event_name FROM t ORDER BY seat_number").await,
        ["Online 600.0 Christiansen Farewell Concert", "Online 600.0 Christiansen Farewell Concert"]
    );
}
