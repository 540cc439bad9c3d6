//! Shards over a real (local-folder) lake, fed by the archiver: results that do not depend on
//! which shards a process runs or where its batches end, and events a shard cannot join
//! (their producer did not co-partition) quarantined with their partition and sequence number.

use boxoffice_events::Hub;
use boxoffice_ingest::bronze::QUARANTINE;
use boxoffice_ingest::partitioning::partition_index;
use boxoffice_lake::{Lake, TableDef, read_rows};
use chrono::{TimeZone, Utc};
use deltalake::arrow::array::{Array, AsArray};
use deltalake::arrow::datatypes::{Int32Type, Int64Type};

use super::super::{BookingsFact, Settings};
use crate::expectations::Expectations;
use crate::silver::bookings_fact::join::tests::{kept, without_bodies};
use crate::silver::tables::{BOOKINGS_FACT, LATE_EVENTS, ORPHAN_PAYMENTS, UNPAID_BOOKINGS};
use crate::test_bronze::{generated, land};

fn settings(shards: u32, partitions: u32, max_events: usize) -> Settings {
    Settings {
        partitions_per_hub: partitions,
        shards: Some(shards),
        max_events,
        checkpoint_every: 3,
        checkpoint_interval: std::time::Duration::ZERO,
        ..Settings::default()
    }
}

/// A table's rows as sorted text keys of the given columns.
async fn keys(lake: &Lake, def: &TableDef, columns: &[&str]) -> Vec<String> {
    let Some(table) = lake.open_table(def).await.expect("open") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for batch in read_rows(&table).await.expect("read") {
        let text: Vec<_> = columns
            .iter()
            .map(|c| {
                let column = batch.column_by_name(c).expect("column");
                deltalake::arrow::compute::cast(
                    column,
                    &deltalake::arrow::datatypes::DataType::Utf8,
                )
                .expect("as text")
            })
            .collect();
        for i in 0..batch.num_rows() {
            let key: Vec<&str> = text
                .iter()
                .map(|c| {
                    let c = c.as_string::<i32>();
                    if c.is_null(i) { "" } else { c.value(i) }
                })
                .collect();
            out.push(key.join("|"));
        }
    }
    out.sort();
    out
}

/// What "the same tables" means here: every output row by its identity.
async fn outputs(lake: &Lake) -> Vec<Vec<String>> {
    vec![
        keys(
            lake,
            &BOOKINGS_FACT,
            &["booking_event_uid", "payment_event_uid", "seat_number"],
        )
        .await,
        keys(lake, &UNPAID_BOOKINGS, &["booking_event_uid"]).await,
        keys(lake, &ORPHAN_PAYMENTS, &["payment_event_uid"]).await,
        keys(lake, &LATE_EVENTS, &["event_uid", "watermark"]).await,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_for_all_shards_or_one_per_shard_give_the_same_tables() {
    for seed in [1, 2, 3] {
        let dir = tempfile::tempdir().expect("tempdir");
        let events = generated(seed, 8_000, 4);
        let (whole, apart) = (
            Lake::local(&dir.path().join("whole")).expect("lake"),
            Lake::local(&dir.path().join("apart")).expect("lake"),
        );
        land(&whole, &events, 700).await;
        // The same events landed in other batches: other files, the same rows.
        land(&apart, &events, 230).await;

        let (mut job, _) =
            BookingsFact::open(&whole, settings(4, 4, 100_000), Expectations::none())
                .await
                .expect("open");
        job.run(true).await.expect("run");
        let expected = outputs(&whole).await;
        assert!(expected[0].len() > 1_000, "seed {seed}: matches");
        let counts: Vec<usize> = expected.iter().map(Vec::len).collect();
        assert!(counts.iter().all(|n| *n > 0), "seed {seed}: {counts:?}");

        // One "process" per shard, in another order, in small batches, each stopped twice
        // (opened again from its checkpoint) before its drain.
        for k in [2, 0, 3, 1] {
            for drain in [false, false, true] {
                let (mut shard, _) = BookingsFact::open_shards(
                    &apart,
                    settings(4, 4, 150 + 40 * k as usize),
                    Expectations::none(),
                    &[k],
                )
                .await
                .expect("open a shard");
                shard.run(drain).await.expect("run a shard");
            }
        }
        assert_eq!(outputs(&apart).await, expected, "seed {seed}");
    }
}

/// Two order ids: the first belongs to partition 0 of 2, the second to partition 1.
fn orders() -> (String, String) {
    let find = |p: u32| {
        (0..)
            .map(|n| format!("order_t-{n}"))
            .find(|o| partition_index(o, 2) == p)
            .expect("an order id")
    };
    (find(0), find(1))
}

fn booking(order: &str, seat: &str) -> String {
    format!(
        r#"{{"order_id":"{order}","booking_time":"2024-10-11T09:39:30Z","customer":{{"customer_id":"cust1","name":"Ann Lee","email":"ann@example.com"}},"event_details":{{"event_id":"event7","event_name":"Concert","event_location":"1 Main St","seats":[{{"seat_number":"{seat}","price":60}}]}}}}"#
    )
}

fn payment(order: &str, id: &str) -> String {
    format!(
        r#"{{"payment_id":"{id}","order_id":"{order}","payment_time":"2024-10-11T09:40:10Z","amount":60,"payment_method":"PayPal","payment_status":"Success"}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_quarantines_an_order_that_is_not_its_own_with_partition_and_sequence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = Lake::local(dir.path()).expect("lake");
    let (zero, one) = orders();
    let at = |s: i64| {
        Utc.timestamp_opt(1_728_639_570 + s, 0)
            .single()
            .expect("time")
    };
    land(
        &lake,
        &[
            (Hub::Bookings, 0, booking(&zero, "A1"), at(0)),
            (Hub::Bookings, 1, booking(&one, "B1"), at(1)),
            (Hub::Payments, 1, payment(&one, "payment_1"), at(2)),
            // Order `zero`'s payment on partition 1: a producer that does not co-partition.
            (Hub::Payments, 1, payment(&zero, "payment_0"), at(3)),
            (Hub::Payments, 0, payment(&zero, "payment_0b"), at(4)),
        ],
        10,
    )
    .await;
    let (mut job, _) = BookingsFact::open(&lake, settings(2, 2, 1_000), Expectations::none())
        .await
        .expect("open");
    let reports = job.run(true).await.expect("run");
    let sum = |f: fn(&super::super::BatchReport) -> u64| reports.iter().map(f).sum::<u64>();
    assert_eq!(sum(|r| r.quarantined), 1);
    assert_eq!(sum(|r| r.matches), 2, "each order matches in its own shard");

    let table = lake
        .open_table(&QUARANTINE)
        .await
        .expect("open")
        .expect("quarantine");
    let rows = read_rows(&table).await.expect("read");
    let batch = rows.iter().find(|b| b.num_rows() > 0).expect("a row");
    assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    let text = |c: &str| {
        batch
            .column_by_name(c)
            .expect(c)
            .as_string::<i32>()
            .value(0)
            .to_string()
    };
    assert_eq!(text("stage"), "bookings_fact");
    assert_eq!(text("hub"), "payments");
    assert!(text("body").contains("payment_0\""), "{}", text("body"));
    let reason = text("reason");
    assert!(
        reason.contains(&format!("order {zero} landed in partition 1"))
            && reason.contains("does not co-partition"),
        "{reason}"
    );
    let partition = batch.column_by_name("partition_id").expect("p");
    let sequence = batch.column_by_name("sequence_number").expect("s");
    assert_eq!(partition.as_primitive::<Int32Type>().value(0), 1);
    assert_eq!(sequence.as_primitive::<Int64Type>().value(0), 1);
    assert!(partition.is_valid(0) && sequence.is_valid(0));
}

/// The batches of the join's checkpoints under `lake`'s `_system/jobs/bookings_fact/<kind>/`
/// (`state` or `plans`).
fn stored_batches(lake: &std::path::Path, kind: &str) -> Vec<u64> {
    let folder = lake.join("_system/jobs/bookings_fact").join(kind);
    let mut batches: Vec<u64> = std::fs::read_dir(&folder)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter_map(|name| super::batch_of(&name))
                .collect()
        })
        .unwrap_or_default();
    batches.sort_unstable();
    batches
}

/// The tables one run over `events`, landed in files of 500 and drained, leaves in a lake at
/// `folder`: what every restart below must end with.
async fn drained_outputs(
    folder: &std::path::Path,
    events: &[(Hub, i32, String, chrono::DateTime<Utc>)],
) -> Vec<Vec<String>> {
    let clean = Lake::local(folder).expect("lake");
    land(&clean, events, 500).await;
    let (mut job, _) = BookingsFact::open(&clean, settings(1, 2, 100_000), Expectations::none())
        .await
        .expect("open");
    job.run(true).await.expect("run");
    outputs(&clean).await
}

/// Runs that follow each other (`up`, workers) store checkpoints behind the batches that
/// follow, never before a batch is committed: a process killed after such a store, or while it
/// was under way, restarts from the last checkpoint stored, replays the batches planned since,
/// and ends with the same tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_stored_behind_the_batches_restart_to_the_same_tables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let events = generated(7, 8_000, 2);
    let expected = drained_outputs(&dir.path().join("clean"), &events).await;

    for finished in [true, false] {
        let folder = dir.path().join(format!("finished-{finished}"));
        let lake = Lake::local(&folder).expect("lake");
        land(&lake, &events, 500).await;
        // Batches of 150 events, a checkpoint due after every one: many fall due while one is
        // stored, and the last batch leaves one being stored however fast the stores go.
        let every_batch = Settings {
            checkpoint_every: 1,
            ..settings(1, 2, 150)
        };
        let (mut job, _) = BookingsFact::open(&lake, every_batch, Expectations::none())
            .await
            .expect("open");
        let reports = job.run_landed().await.expect("run");
        let last = reports.len() as u64;
        assert!(last > 20, "{last} batches");
        let Some((at, storing)) = job.shards[0].storing.take() else {
            panic!("the run left no checkpoint being stored");
        };
        assert!(
            (1..=last).contains(&at),
            "checkpoint after {at} of {last} batches"
        );
        if finished {
            storing.await.expect("store task").expect("stored");
            assert_eq!(stored_batches(&folder, "state"), vec![at]);
            assert!(stored_batches(&folder, "plans").iter().all(|p| *p > at));
        } else {
            storing.abort();
            let _ = storing.await;
        }
        drop(job); // killed: no checkpoint at the stop
        let from = stored_batches(&folder, "state")
            .last()
            .copied()
            .unwrap_or(0);
        let (mut job, replayed) =
            BookingsFact::open(&lake, settings(1, 2, 150), Expectations::none())
                .await
                .expect("reopen");
        // The batches since the checkpoint rebuild the state; only the last planned one could
        // be unfinished, so only it goes through its commits again (finding them done).
        assert_eq!(job.shards[0].batch, last, "rebuilt from {from}");
        let rewritten: Vec<u64> = replayed.iter().map(|r| r.batch).collect();
        assert_eq!(rewritten, if last > from { vec![last] } else { vec![] });
        job.run(true).await.expect("drain");
        assert_eq!(outputs(&lake).await, expected, "finished: {finished}");
    }
}

/// A process whose runs follow each other checkpoints at most once per interval, so a restart
/// may find many batches planned since: it rebuilds the state from all of them, read again from
/// Bronze, and finishes the last one, which a failure left with some tables committed and one
/// not (here the unpaid table's folder is a file until the restart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_rebuilds_the_state_from_every_batch_since_the_checkpoint_and_finishes_the_last()
{
    let dir = tempfile::tempdir().expect("tempdir");
    let events = generated(11, 8_000, 2);
    let expected = drained_outputs(&dir.path().join("clean"), &events).await;

    let folder = dir.path().join("restarted");
    let lake = Lake::local(&folder).expect("lake");
    land(&lake, &events, 500).await;
    let blocker = folder.join("silver").join("unpaid_bookings");
    std::fs::create_dir_all(blocker.parent().expect("silver")).expect("silver");
    std::fs::write(&blocker, "not a table").expect("blocker");
    let hourly = Settings {
        checkpoint_interval: std::time::Duration::from_secs(3600),
        ..settings(1, 2, 150)
    };
    let (mut job, _) = BookingsFact::open(&lake, hourly.clone(), Expectations::none())
        .await
        .expect("open");
    job.run_batches(true)
        .await
        .expect_err("the first batch with unpaid bookings cannot be committed");
    let failed = job.shards[0].batch + 1;
    assert!(failed > 5, "batch {failed} failed");
    assert_eq!(stored_batches(&folder, "state"), Vec::<u64>::new());
    assert_eq!(
        stored_batches(&folder, "plans"),
        (1..=failed).collect::<Vec<_>>()
    );
    drop(job); // killed

    std::fs::remove_file(&blocker).expect("unblock");
    let (mut job, replayed) = BookingsFact::open(&lake, hourly, Expectations::none())
        .await
        .expect("reopen");
    assert_eq!(job.shards[0].batch, failed);
    let finished: Vec<u64> = replayed.iter().map(|r| r.batch).collect();
    assert_eq!(finished, vec![failed]);
    assert!(replayed[0].unpaid > 0, "{:?}", replayed[0]);
    assert_eq!(stored_batches(&folder, "state"), vec![failed]);
    job.run(true).await.expect("drain");
    assert_eq!(outputs(&lake).await, expected);
}

/// A checkpoint stores the events the join keeps by their place in Bronze, not their bodies; a
/// shard that opens it reads them back from Bronze, also after compaction rewrote Bronze's
/// files, and goes on to the same tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_events_are_read_back_from_bronze_at_their_place_after_compaction() {
    use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let dir = tempfile::tempdir().expect("tempdir");
    let events = generated(13, 8_000, 2);
    let expected = drained_outputs(&dir.path().join("clean"), &events).await;

    let folder = dir.path().join("restarted");
    let lake = Lake::local(&folder).expect("lake");
    land(&lake, &events, 500).await;
    let (mut job, _) = BookingsFact::open(&lake, settings(1, 2, 1_000), Expectations::none())
        .await
        .expect("open");
    job.run(false).await.expect("run");
    let before = without_bodies(kept(&job.shards[0].state));
    assert!(before.len() > 100, "{} kept events", before.len());
    drop(job);

    let state = stored_batches(&folder, "state");
    let file = folder
        .join("_system/jobs/bookings_fact")
        .join(super::checkpoint_name(state[state.len() - 1]));
    let bytes = bytes::Bytes::from(std::fs::read(&file).expect("checkpoint"));
    let columns = ParquetRecordBatchReaderBuilder::try_new(bytes).expect("parquet");
    assert!(columns.schema().field_with_name("body").is_err());

    let compaction = crate::maintenance::CompactSettings {
        before: chrono::NaiveDate::MAX,
        min_file_age: std::time::Duration::ZERO,
        target_bytes: 64 << 20,
    };
    let done = crate::maintenance::compact(
        &lake,
        &[&boxoffice_ingest::bronze::BOOKINGS_RAW],
        &compaction,
    )
    .await
    .expect("compact Bronze");
    assert!(done[0].files_after < done[0].files_before, "{done:?}");

    let (mut job, replayed) =
        BookingsFact::open(&lake, settings(1, 2, 1_000), Expectations::none())
            .await
            .expect("reopen");
    assert!(replayed.is_empty());
    assert_eq!(without_bodies(kept(&job.shards[0].state)), before);
    job.run(true).await.expect("drain");
    assert_eq!(outputs(&lake).await, expected);
}
