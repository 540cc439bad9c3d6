use std::collections::HashMap;

use boxoffice_events::Hub;
use boxoffice_lake::{Lake, PartitionRows, append_once, compatibility_problems, read_rows};
use chrono::{TimeZone, Utc};
use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::datatypes::{DataType, Int32Type, Int64Type, TimeUnit};

use super::*;
use crate::bronze::tables::{BOOKINGS_RAW, QUARANTINE};
use crate::{ReceivedEvent, Source};

pub(crate) fn booking(order: i64) -> String {
    format!(
        r#"{{"order_id": "order_{order}", "booking_time": "2024-10-11T09:39:30Z", "customer": {{"customer_id": "cust{order}", "name": "A", "email": "a@example.com"}}, "event_details": {{"event_id": "event1", "event_name": "Concert", "event_location": "x", "seats": [{{"seat_number": "A1", "price": 50}}]}}}}"#
    )
}

/// Events `from..=to` of one partition; every tenth is broken JSON.
pub(super) fn events(from: i64, to: i64) -> Vec<ReceivedEvent> {
    (from..=to)
        .map(|seq| ReceivedEvent {
            sequence_number: seq,
            offset: seq * 100,
            enqueued_time: Utc
                .timestamp_opt(1_728_639_570 + seq, 0)
                .single()
                .expect("time"),
            partition_key: Some(format!("order_{seq}")),
            source: Source::Generator,
            body: if seq % 10 == 9 {
                format!("{{\"order_id\": \"order_{seq}\", ")
            } else {
                booking(seq)
            },
        })
        .collect()
}

async fn rows(lake: &Lake, def: &boxoffice_lake::TableDef) -> Vec<RecordBatch> {
    let table = lake.open_table(def).await.expect("open").expect("exists");
    read_rows(&table).await.expect("read")
}

pub(super) async fn sequence_numbers(
    lake: &Lake,
    def: &boxoffice_lake::TableDef,
) -> Vec<(i32, i64)> {
    let mut out = Vec::new();
    for b in rows(lake, def).await {
        let p = b.column_by_name("partition_id").expect("partition_id");
        let s = b
            .column_by_name("sequence_number")
            .expect("sequence_number");
        let (p, s) = (p.as_primitive::<Int32Type>(), s.as_primitive::<Int64Type>());
        out.extend((0..b.num_rows()).map(|i| (p.value(i), s.value(i))));
    }
    out.sort_unstable();
    out
}

/// The broken events of `batch` (every tenth) as the archiver quarantines them: what a crashed
/// attempt had landed in quarantine.
pub(super) fn broken_as_quarantined(batch: &[ReceivedEvent], partition: i32) -> Vec<QuarantineRow> {
    batch
        .iter()
        .filter(|e| e.sequence_number % 10 == 9)
        .map(|e| QuarantineRow {
            received_at: e.enqueued_time,
            source: "generator".into(),
            hub: Some("bookings".into()),
            reason: "malformed JSON".into(),
            body: e.body.clone(),
            stage: "archive".into(),
            partition_id: Some(partition),
            sequence_number: Some(e.sequence_number),
            event_uid: None,
            source_file: None,
            line: None,
        })
        .collect()
}

pub(super) fn local_lake() -> (tempfile::TempDir, Lake) {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = Lake::local(dir.path()).expect("lake");
    (dir, lake)
}

#[tokio::test]
async fn valid_events_land_raw_and_invalid_ones_quarantined_with_reasons() {
    let (_dir, lake) = local_lake();
    let mut a = BronzeArchiver::open(&lake, Hub::Bookings)
        .await
        .expect("open");
    let report = a.archive(0, &events(0, 19)).await.expect("archive");
    assert_eq!(report.landed, 18);
    assert_eq!(report.quarantined, 2);
    assert_eq!(a.checkpoint(0).await.expect("cp"), Some(19));

    let raw = sequence_numbers(&lake, &BOOKINGS_RAW).await;
    assert_eq!(raw.len(), 18);
    assert!(!raw.contains(&(0, 9)) && !raw.contains(&(0, 19)));
    let q = rows(&lake, &QUARANTINE).await;
    let reasons: Vec<String> = q
        .iter()
        .flat_map(|b| {
            let r = b
                .column_by_name("reason")
                .expect("reason")
                .as_string::<i32>()
                .clone();
            (0..r.len()).map(move |i| r.value(i).to_string())
        })
        .collect();
    assert_eq!(reasons.len(), 2);
    assert!(
        reasons.iter().all(|r| r.starts_with("malformed JSON")),
        "{reasons:?}"
    );
    // Raw keeps the body byte for byte and the Event Hubs stamps.
    let b = &rows(&lake, &BOOKINGS_RAW).await[0];
    let body = b.column_by_name("body").expect("body").as_string::<i32>();
    assert_eq!(body.value(0), booking(0));
    let uid = b
        .column_by_name("event_uid")
        .expect("uid")
        .as_string::<i32>();
    assert_eq!(uid.value(0).len(), 36);
}

#[tokio::test]
async fn the_same_batch_archived_twice_lands_once() {
    let (_dir, lake) = local_lake();
    let mut a = BronzeArchiver::open(&lake, Hub::Bookings)
        .await
        .expect("open");
    let batch = events(0, 49);
    a.archive(1, &batch).await.expect("first");
    let again = a.archive(1, &batch).await.expect("redelivery");
    assert_eq!((again.landed, again.quarantined), (0, 0));
    assert_eq!(again.already_landed, 50);
    let raw = sequence_numbers(&lake, &BOOKINGS_RAW).await;
    assert_eq!(raw.len(), 45);
    let q = sequence_numbers(&lake, &QUARANTINE).await;
    assert_eq!(q.len(), 5);
}

#[tokio::test]
async fn an_overlapping_redelivery_lands_only_what_is_new() {
    let (_dir, lake) = local_lake();
    let mut a = BronzeArchiver::open(&lake, Hub::Bookings)
        .await
        .expect("open");
    a.archive(0, &events(0, 29)).await.expect("first");
    let report = a.archive(0, &events(20, 59)).await.expect("overlap");
    assert_eq!(report.already_landed, 10);
    let mut all = sequence_numbers(&lake, &BOOKINGS_RAW).await;
    all.extend(sequence_numbers(&lake, &QUARANTINE).await);
    all.sort_unstable();
    let expected: Vec<(i32, i64)> = (0..60).map(|s| (0, s)).collect();
    assert_eq!(
        all, expected,
        "every sequence number exactly once across raw and quarantine"
    );
}

#[tokio::test]
async fn a_crash_between_the_quarantine_and_raw_commits_is_completed_by_the_retry() {
    let (_dir, lake) = local_lake();
    let batch = events(0, 39);
    // The crashed attempt: quarantine committed (with its transaction), raw never written.
    let mut quarantine = lake.ensure_table(&QUARANTINE).await.expect("quarantine");
    let invalid = broken_as_quarantined(&batch, 0);
    let app = BronzeArchiver::app_id(Hub::Bookings, 0);
    append_once(
        &mut quarantine,
        vec![PartitionRows::unsplit(
            quarantine_batch(&invalid).expect("batch"),
        )],
        &app,
        39,
        HashMap::new(),
        QUARANTINE.writer_properties(),
    )
    .await
    .expect("quarantine commit");

    let mut a = BronzeArchiver::open(&lake, Hub::Bookings)
        .await
        .expect("open");
    assert_eq!(
        a.checkpoint(0).await.expect("cp"),
        None,
        "raw holds nothing: replay all"
    );
    let report = a.archive(0, &batch).await.expect("retry");
    assert_eq!((report.landed, report.quarantined), (36, 0));
    assert_eq!(sequence_numbers(&lake, &QUARANTINE).await.len(), 4);
    assert_eq!(sequence_numbers(&lake, &BOOKINGS_RAW).await.len(), 36);
}

#[tokio::test]
async fn an_all_invalid_batch_still_advances_the_checkpoint() {
    let (_dir, lake) = local_lake();
    let mut a = BronzeArchiver::open(&lake, Hub::Payments)
        .await
        .expect("open");
    let mut batch = events(0, 2);
    for e in &mut batch {
        e.body = "not json".into();
    }
    let report = a.archive(1, &batch).await.expect("archive");
    assert_eq!((report.landed, report.quarantined), (0, 3));
    assert_eq!(a.checkpoint(1).await.expect("cp"), Some(2));
}

#[tokio::test]
async fn concurrent_archivers_of_one_partition_land_each_event_once() {
    let (_dir, lake) = local_lake();
    let batch = events(0, 99);
    let mut handles = Vec::new();
    for _ in 0..3 {
        let lake = lake.clone();
        let batch = batch.clone();
        handles.push(tokio::spawn(async move {
            let mut a = BronzeArchiver::open(&lake, Hub::Bookings)
                .await
                .expect("open");
            a.archive(0, &batch).await.expect("archive")
        }));
    }
    let mut landed = 0;
    for h in handles {
        landed += h.await.expect("join").landed;
    }
    assert_eq!(landed, 90, "the winners' rows add up to the batch once");
    assert_eq!(sequence_numbers(&lake, &BOOKINGS_RAW).await.len(), 90);
    assert_eq!(sequence_numbers(&lake, &QUARANTINE).await.len(), 10);
}

#[tokio::test]
async fn bronze_tables_are_readable_by_power_bi() {
    let (_dir, lake) = local_lake();
    for hub in Hub::ALL {
        let mut a = BronzeArchiver::open(&lake, hub).await.expect("open");
        a.archive(0, &events(0, 9)).await.expect("archive");
    }
    for def in TABLES {
        let table = lake.open_table(def).await.expect("open").expect("exists");
        let snapshot = table.snapshot().expect("snapshot");
        assert_eq!(snapshot.protocol().min_reader_version(), 1, "{}", def.name);
        assert_eq!(snapshot.protocol().min_writer_version(), 2, "{}", def.name);
        assert_eq!(
            compatibility_problems(&table).expect("check"),
            Vec::<String>::new()
        );
        // Timestamps come back from the files as microseconds zoned UTC.
        for b in read_rows(&table).await.expect("read") {
            for f in b.schema().fields() {
                if let DataType::Timestamp(unit, tz) = f.data_type() {
                    assert_eq!(*unit, TimeUnit::Microsecond, "{}", f.name());
                    assert_eq!(tz.as_deref(), Some("UTC"), "{}", f.name());
                }
            }
        }
    }
}

#[tokio::test]
async fn on_azurite_tables_land_under_their_own_path_and_versions_count_writes() {
    let azurite = boxoffice_testkit::Azurite::start();
    let lake = Lake::azurite("az://lake/test", &azurite.endpoint()).expect("lake");
    lake.prepare().await.expect("container");
    let mut a = BronzeArchiver::open(&lake, Hub::Bookings)
        .await
        .expect("open");
    a.archive(0, &events(0, 9)).await.expect("first write");
    a.archive(0, &events(10, 19)).await.expect("second write");

    let raw = lake
        .open_table(&BOOKINGS_RAW)
        .await
        .expect("open")
        .expect("exists");
    assert_eq!(
        raw.table_url().as_str(),
        "az://lake/test/bronze/bookings_raw/"
    );
    // Version 0 is the creation; then one commit per archived batch.
    assert_eq!(raw.version(), Some(2));
    assert_eq!(sequence_numbers(&lake, &BOOKINGS_RAW).await.len(), 18);
    let q = lake
        .open_table(&QUARANTINE)
        .await
        .expect("open")
        .expect("exists");
    assert_eq!(q.table_url().as_str(), "az://lake/test/bronze/quarantine/");
    assert_eq!(
        q.version(),
        Some(2),
        "one quarantine commit per batch with a bad event"
    );
}

/// What Power BI's `DeltaLake.Table` and Synapse read is the log itself: check it without
/// delta-rs, straight from the JSON of the creating commit.
#[tokio::test]
async fn the_delta_log_declares_protocol_1_2_and_zoned_timestamps() {
    let (dir, lake) = local_lake();
    for hub in Hub::ALL {
        let mut a = BronzeArchiver::open(&lake, hub).await.expect("open");
        a.archive(0, &events(0, 9)).await.expect("archive");
    }
    for def in TABLES {
        let first = dir
            .path()
            .join("bronze")
            .join(def.name)
            .join("_delta_log/00000000000000000000.json");
        let text = std::fs::read_to_string(&first).expect("commit 0");
        let actions: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect();
        let protocol = actions
            .iter()
            .find_map(|a| a.get("protocol"))
            .expect("protocol action");
        assert_eq!(protocol["minReaderVersion"], 1, "{}", def.name);
        assert_eq!(protocol["minWriterVersion"], 2, "{}", def.name);
        assert!(
            protocol.get("readerFeatures").is_none() && protocol.get("writerFeatures").is_none()
        );
        let metadata = actions
            .iter()
            .find_map(|a| a.get("metaData"))
            .expect("metaData action");
        let schema: serde_json::Value =
            serde_json::from_str(metadata["schemaString"].as_str().expect("schemaString"))
                .expect("schema json");
        let types: Vec<&str> = schema["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .filter_map(|f| f["type"].as_str())
            .collect();
        assert!(types.contains(&"timestamp"), "{}: {types:?}", def.name);
        assert!(!types.contains(&"timestamp_ntz"), "{}: {types:?}", def.name);
        let config = &metadata["configuration"];
        assert!(config.get("delta.enableDeletionVectors").is_none());
        assert!(config.get("delta.columnMapping.mode").is_none());
    }
}

#[tokio::test]
async fn raw_files_are_partitioned_by_the_enqueued_date() {
    let (dir, lake) = local_lake();
    let mut a = BronzeArchiver::open(&lake, Hub::Bookings)
        .await
        .expect("open");
    // Sequence 86_430 onwards is enqueued after midnight UTC (the test clock starts 2024-10-11
    // at 09:39:30), so this batch spans two ingest dates.
    let mut batch = events(0, 4);
    batch.extend(events(86_430, 86_432));
    a.archive(0, &batch).await.expect("archive");
    let log = dir
        .path()
        .join("bronze/bookings_raw/_delta_log/00000000000000000001.json");
    let text = std::fs::read_to_string(log).expect("commit 1");
    let mut dates: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|a| a.get("add").cloned())
        .map(|add| {
            let date = add["partitionValues"]["ingest_date"]
                .as_str()
                .expect("value")
                .to_string();
            assert!(
                add["path"]
                    .as_str()
                    .expect("path")
                    .starts_with(&format!("ingest_date={date}/"))
            );
            date
        })
        .collect();
    dates.sort();
    assert_eq!(dates, ["2024-10-11", "2024-10-12"]);
    assert_eq!(sequence_numbers(&lake, &BOOKINGS_RAW).await.len(), 8);
}

#[tokio::test]
async fn a_batch_past_the_next_sequence_number_is_landed_and_its_gap_recorded_once() {
    let (_dir, lake) = local_lake();
    let mut a = BronzeArchiver::open(&lake, Hub::Payments)
        .await
        .expect("open");
    assert_eq!(a.archive(3, &events(0, 9)).await.expect("first").gap, None);
    let report = a.archive(3, &events(15, 24)).await.expect("after a gap");
    let gap = Gap {
        hub: Hub::Payments,
        partition: 3,
        expected: 10,
        got: 15,
    };
    assert_eq!(report.gap, Some(gap));
    assert_eq!(
        report.landed + report.quarantined,
        10,
        "the batch still lands"
    );
    // A redelivery of the same batch finds nothing new, and no gap (its events are in).
    let again = a.archive(3, &events(15, 24)).await.expect("again");
    assert_eq!((again.gap, again.already_landed), (None, 10));
    // The gap is recorded once even when the same gap is detected twice (a crash between
    // recording it and landing the batch).
    record_gap(&lake, &gap, Utc::now())
        .await
        .expect("record again");
    let recorded = rows(&lake, &ARCHIVE_GAPS).await;
    assert_eq!(recorded.iter().map(RecordBatch::num_rows).sum::<usize>(), 1);
    let b = &recorded[0];
    let col = |name: &str| {
        b.column_by_name(name)
            .expect(name)
            .as_primitive::<Int64Type>()
            .value(0)
    };
    assert_eq!(
        (
            col("expected_sequence_number"),
            col("got_sequence_number"),
            col("missing")
        ),
        (10, 15, 5)
    );
    assert_eq!(
        b.column_by_name("table_name")
            .expect("table")
            .as_string::<i32>()
            .value(0),
        "bronze.payments_raw"
    );
}

#[tokio::test]
async fn a_poison_batch_is_quarantined_whole_once_and_moves_the_checkpoint() {
    let (_dir, lake) = local_lake();
    let mut a = BronzeArchiver::open(&lake, Hub::Bookings)
        .await
        .expect("open");
    a.archive(2, &events(0, 9)).await.expect("first");
    let poison = PoisonBatch {
        partition: 2,
        first: 10,
        last: 19,
        body: "{\"Data\":{}}".into(),
        reason: "10 events but 9 sequence numbers".into(),
    };
    assert_eq!(
        a.archive_poison(&poison).await.expect("poison").quarantined,
        1
    );
    assert_eq!(
        a.archive_poison(&poison).await.expect("again").quarantined,
        0
    );
    assert_eq!(a.checkpoint(2).await.expect("cp"), Some(19));
    // The next batch follows on: no gap.
    assert_eq!(a.archive(2, &events(20, 29)).await.expect("next").gap, None);
    let q = rows(&lake, &QUARANTINE).await;
    let reasons: Vec<String> = q
        .iter()
        .flat_map(|b| {
            let r = b
                .column_by_name("reason")
                .expect("reason")
                .as_string::<i32>()
                .clone();
            (0..r.len()).map(move |i| r.value(i).to_string())
        })
        .filter(|r| r.starts_with("poison"))
        .collect();
    assert_eq!(
        reasons,
        [
            "poison batch of partition 2, sequence numbers 10 to 19: 10 events but 9 sequence numbers"
        ]
    );
}
