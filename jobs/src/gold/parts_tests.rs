//! The folded parts against the queries that define them, over crafted rows (the NULLs and
//! oddities SQL has rules for) and over the rows the join makes of generated events.

use deltalake::arrow::array::RecordBatch;
use deltalake::datafusion::prelude::SessionContext;

use super::{BOOKING_KEY, Parts};
use crate::expectations::Expectations;
use crate::silver::bookings_fact::{BookingsFact, Settings};
use crate::test_bronze::{generated, land};

/// `orders` by its definition: a booking's seat rows folded into one row first, so each booking
/// counts once.
fn orders_sql() -> String {
    format!(
        "
SELECT {BOOKING_KEY},
       CAST(sum(CASE WHEN first_match AND booking_event_uid IS NOT NULL THEN 1 ELSE 0 END)
            AS BIGINT) AS orders,
       CAST(sum(CASE WHEN sale AND booking_event_uid IS NOT NULL THEN 1 ELSE 0 END)
            AS BIGINT) AS paid,
       CAST(sum(seats) AS BIGINT) AS seats,
       sum(seats_value) AS seats_value
FROM (
    SELECT booking_event_uid, {BOOKING_KEY},
           bool_or(is_first_booking_match) AS first_match, bool_or(is_sale) AS sale,
           sum(CASE WHEN is_sale THEN 1 ELSE 0 END) AS seats,
           sum(CASE WHEN is_sale THEN CAST(seat_price AS DECIMAL(18,2))
                    ELSE CAST(0 AS DECIMAL(18,2)) END) AS seats_value
    FROM fact WHERE is_first_booking_match OR is_sale
    GROUP BY booking_event_uid, {BOOKING_KEY}
)
GROUP BY {BOOKING_KEY}
"
    )
}

/// `attempts` by its definition: distinct payments at their first match.
fn attempts_sql() -> String {
    format!(
        "
SELECT {BOOKING_KEY}, payment_method, payment_type, payment_status,
       count(*) AS attempts, sum(amount) AS amount
FROM (SELECT DISTINCT payment_event_uid, {BOOKING_KEY}, payment_method, payment_type,
             payment_status, CAST(amount AS DECIMAL(18,2)) AS amount
      FROM fact WHERE is_first_payment_match)
GROUP BY {BOOKING_KEY}, payment_method, payment_type, payment_status
"
    )
}

fn text(batches: &[RecordBatch]) -> Vec<String> {
    super::super::rows_as_text(batches, &[])
}

/// Runs a statement that creates a table.
async fn create(ctx: &SessionContext, sql: &str) {
    ctx.sql(sql)
        .await
        .expect("create")
        .collect()
        .await
        .expect("created");
}

/// Builds the parts of the rows registered in `silver` both ways and compares them.
async fn check(silver: &SessionContext) -> (usize, usize) {
    let parts = Parts::build(silver).await.expect("parts");
    let mut sizes = Vec::new();
    for (name, sql) in [("orders", orders_sql()), ("attempts", attempts_sql())] {
        let expected = silver
            .sql(&sql)
            .await
            .expect("sql")
            .collect()
            .await
            .expect("rows");
        let Some((_, _, folded)) = parts.tables.iter().find(|(n, _, _)| *n == name) else {
            panic!("no part {name}");
        };
        assert_eq!(text(folded), text(&expected), "part {name}");
        sizes.push(text(&expected).len());
    }
    (sizes[0], sizes[1])
}

/// Every column the parts read, for crafted rows.
const COLUMNS: &str = "booking_event_uid, event_id, event_name, event_category, booking_date,
    booking_hour, booking_day_of_week, is_first_booking_match, is_sale, seat_price,
    payment_event_uid, payment_method, payment_type, payment_status, amount,
    is_first_payment_match";

#[tokio::test]
async fn the_folds_give_what_the_queries_give_nulls_and_oddities_included() {
    let ctx = SessionContext::new();
    let d = "CAST('2026-12-05' AS DATE)";
    let rows = [
        // b1: two seats sold by p1; its first match was p0, which failed.
        format!(
            "('b1','e1','Rock Concert','Music',{d},20,'Saturday',true,false,50.5,'p0','Card','Card','Failed',101.0,true)"
        ),
        format!(
            "('b1','e1','Rock Concert','Music',{d},20,'Saturday',true,false,50.5,'p0','Card','Card','Failed',101.0,true)"
        ),
        format!(
            "('b1','e1','Rock Concert','Music',{d},20,'Saturday',false,true,50.5,'p1','Card','Card','Success',101.0,true)"
        ),
        format!(
            "('b1','e1','Rock Concert','Music',{d},20,'Saturday',false,true,50.5,'p1','Card','Card','Success',101.0,true)"
        ),
        // b2: sold at its first match, a seat without a price.
        format!(
            "('b2','e1','Rock Concert','Music',{d},20,'Saturday',true,true,NULL,'p2','PayPal','Online','Success',NULL,true)"
        ),
        // b3: the same uid under another key (counted under each, as SQL groups).
        format!(
            "('b3','e1','Rock Concert','Music',{d},21,'Saturday',true,true,10.0,'p3','Cash','Cash','Success',10.0,true)"
        ),
        format!(
            "('b3','e2','Hamlet Play','Theater',{d},21,'Saturday',true,true,10.0,'p3','Cash','Cash','Success',10.0,true)"
        ),
        // Rows without uids: counted as seats and attempts, never as orders.
        format!(
            "(NULL,'e2','Hamlet Play','Theater',{d},9,'Saturday',true,true,7.25,NULL,'Cash','Cash','Success',7.25,true)"
        ),
        format!(
            "(NULL,'e2','Hamlet Play','Theater',{d},9,'Saturday',true,true,7.25,NULL,'Cash','Cash','Success',7.25,true)"
        ),
        format!(
            "(NULL,'e2','Hamlet Play','Theater',{d},9,'Saturday',true,true,8.00,NULL,'Cash','Cash','Success',8.0,true)"
        ),
        // A key whose only seat price is NULL, and a NULL key column.
        format!(
            "('b4',NULL,'Movie Night','Cinema',{d},1,'Sunday',false,true,NULL,'p4','Card','Card','Success',NULL,true)"
        ),
        // p5 twice with two amounts: distinct rows.
        format!(
            "('b5','e3','Jazz Concert','Music',{d},2,'Sunday',true,false,3.0,'p5','Card','Card','Failed',3.0,true)"
        ),
        format!(
            "('b5','e3','Jazz Concert','Music',{d},2,'Sunday',true,false,3.0,'p5','Card','Card','Failed',4.0,true)"
        ),
        // Neither counted: no flag set.
        format!(
            "('b6','e3','Jazz Concert','Music',{d},2,'Sunday',false,false,9.0,'p6','Card','Card','Failed',9.0,false)"
        ),
    ];
    let sql = format!(
        "CREATE TABLE fact AS SELECT * FROM (VALUES {}) AS t({COLUMNS})",
        rows.join(",\n")
    );
    create(&ctx, &sql).await;
    create(
        &ctx,
        "CREATE TABLE unpaid AS SELECT * FROM fact WHERE false",
    )
    .await;
    create(
        &ctx,
        "CREATE TABLE orphans AS SELECT * FROM fact WHERE false",
    )
    .await;
    let (orders, attempts) = check(&ctx).await;
    assert_eq!((orders, attempts), (6, 8));

    // No rows at all: empty parts with the models' columns.
    let empty = SessionContext::new();
    for name in ["fact", "unpaid", "orphans"] {
        let sql = format!(
            "CREATE TABLE {name} AS SELECT * FROM (VALUES {}) AS t({COLUMNS}) WHERE false",
            rows[0]
        );
        create(&empty, &sql).await;
    }
    assert_eq!(check(&empty).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_folds_give_what_the_queries_give_over_the_joins_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = boxoffice_lake::Lake::local(dir.path()).expect("lake");
    land(&lake, &generated(5, 6_000, 2), 500).await;
    let settings = Settings {
        partitions_per_hub: 2,
        ..Settings::default()
    };
    let (mut job, _) = BookingsFact::open(&lake, settings, Expectations::none())
        .await
        .expect("open");
    job.run(true).await.expect("drain");
    let ctx = SessionContext::new();
    for (name, def) in super::super::INPUTS {
        let table = lake.open_table(def).await.expect("open");
        super::super::register(&ctx, name, def, table.as_ref(), None)
            .await
            .expect("register");
    }
    let (orders, attempts) = check(&ctx).await;
    assert!(
        orders > 50 && attempts > 50,
        "{orders} orders, {attempts} attempts rows"
    );
}
