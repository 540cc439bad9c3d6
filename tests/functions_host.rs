//! The archive functions under a double of the Functions host (tests/common/functions_host.rs):
//! the shipped host.json and function.json, several `boxoffice serve` processes, storage that
//! stops, an instance killed mid-batch. Every partition's sequence must end complete and unique
//! in Bronze; without the retry policy, the loss the host would cause must be recorded.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use boxoffice_events::{Generator, GeneratorConfig, Hub};
use boxoffice_ingest::bronze::ARCHIVE_GAPS;
use boxoffice_ingest::queue::{Queue, QueueConfig};
use boxoffice_ingest::{ReceivedEvent, Source};
use boxoffice_lake::Lake;
use boxoffice_testkit::Azurite;
use common::functions_host::{
    HostStats, Instances, TriggerSettings, invoke, serve_with, start_triggers, trigger_payload,
};
use common::{assert_no_duplicate_and_no_gap, rows, sequences};
use deltalake::arrow::array::{AsArray, RecordBatch};
use deltalake::arrow::datatypes::Int64Type;
use serde_json::Value;

/// Intervals of host.json and function.json, scaled down: 30 s waits become 1.5 s, the retry
/// policy's 1 s to 60 s backoff 50 ms to 3 s.
const TIME_SCALE: f64 = 0.05;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Sends `count` generated events into `queue` at `rate` events/s, keyed by order id; returns
/// the number of events per (hub, partition).
async fn produce(queue: Arc<Queue>, count: usize, rate: f64) -> BTreeMap<(String, i32), usize> {
    let generator = Generator::new(GeneratorConfig {
        seed: 11,
        ..GeneratorConfig::default()
    })
    .expect("generator");
    let started = Instant::now();
    let mut sent: BTreeMap<(String, i32), usize> = BTreeMap::new();
    for (i, event) in generator.take(count).enumerate() {
        let due = Duration::from_secs_f64(i as f64 / rate);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        let stamp = queue
            .send(
                event.hub,
                Some(&event.order_id),
                Source::Generator,
                event.body,
            )
            .await
            .expect("queued");
        *sent
            .entry((event.hub.as_str().to_string(), stamp.partition as i32))
            .or_default() += 1;
    }
    sent
}

fn azurite_lake(azurite: &Azurite, path: &str) -> (Vec<String>, Lake) {
    let endpoint = azurite.endpoint();
    let args = vec![
        "--lake".to_string(),
        format!("az://lake/{path}"),
        "--emulator".to_string(),
        "--emulator-endpoint".to_string(),
        endpoint.clone(),
    ];
    let lake = Lake::azurite(&format!("az://lake/{path}"), &endpoint).expect("lake");
    (args, lake)
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_host_loses_nothing_when_storage_stops_and_an_instance_is_killed_mid_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut azurite = Azurite::start_on_disk(&dir.path().join("azurite"));
    let (lake_args, lake) = azurite_lake(&azurite, "host");
    let args: Vec<&str> = lake_args.iter().map(String::as_str).collect();
    let mut first = serve_with(&args, &[]);
    let second = serve_with(&args, &[]);
    let instances = Instances::new(&[&first, &second]);

    let settings: BTreeMap<Hub, TriggerSettings> = Hub::ALL
        .into_iter()
        .map(|hub| {
            let s = TriggerSettings::shipped(&format!("archive_{hub}"), TIME_SCALE);
            (hub, s)
        })
        .collect();
    let retry = settings[&Hub::Bookings]
        .retry
        .expect("the shipped retry policy");
    assert_eq!(retry.max_retry_count, -1, "retries until success");
    assert!(
        settings[&Hub::Bookings].max_batch > 100,
        "batches beyond the default 100"
    );

    let mut config = QueueConfig::new(dir.path().join("queue"));
    config.partitions = 4;
    let queue = Arc::new(Queue::open(&config, |_, _| None).expect("queue"));
    let rt = runtime();
    let stats = Arc::new(HostStats::default());
    let triggers = start_triggers(&rt, &queue, &settings, &instances, &stats);
    let producer = rt.spawn(produce(Arc::clone(&queue), 12_000, 1_500.0));

    // Storage stops for 5 s while batches are being archived.
    wait_for("the first batches", Duration::from_secs(60), || {
        stats.batches.load(Ordering::Relaxed) >= 8
    });
    azurite.stop();
    std::thread::sleep(Duration::from_secs(5));
    azurite.restart();
    // Then an instance is killed in the middle of an invocation.
    wait_for(
        "an invocation on the first instance",
        Duration::from_secs(60),
        || instances.in_flight[0].load(Ordering::SeqCst) > 0,
    );
    first.kill();

    let produced = rt.block_on(producer).expect("producer");
    queue.close();
    rt.block_on(async {
        for t in triggers {
            tokio::time::timeout(Duration::from_secs(180), t)
                .await
                .expect("every partition drained")
                .expect("trigger task");
        }
    });
    drop(second);

    assert!(
        stats.failed.load(Ordering::Relaxed) > 0,
        "storage was down: some invocations failed"
    );
    assert!(stats.retried.load(Ordering::Relaxed) > 0);
    assert!(stats.redelivered_after_crash.load(Ordering::Relaxed) > 0);
    assert_eq!(stats.given_up.load(Ordering::Relaxed), 0);
    let total = assert_no_duplicate_and_no_gap(&lake);
    assert_eq!(total, 12_000, "every event once, in raw or quarantine");
    let landed: BTreeMap<(String, i32), usize> = sequences(&lake)
        .into_iter()
        .map(|(k, v)| (k, v.len()))
        .collect();
    assert_eq!(landed, produced, "every partition complete");
    assert!(rows(&lake, &ARCHIVE_GAPS).is_empty(), "no gap recorded");
}

#[test]
fn without_a_retry_policy_the_host_loses_failed_batches_and_the_archiver_records_each_gap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut azurite = Azurite::start_on_disk(&dir.path().join("azurite"));
    let (lake_args, lake) = azurite_lake(&azurite, "noretry");
    let args: Vec<&str> = lake_args.iter().map(String::as_str).collect();
    let server = serve_with(&args, &[]);
    let instances = Instances::new(&[&server]);
    // The shipped host.json with the function.json the project used to ship: no retry.
    let host: Value = serde_json::from_str(include_str!("../host.json")).expect("host.json");
    let no_retry = serde_json::json!({"bindings": []});
    let settings: BTreeMap<Hub, TriggerSettings> = Hub::ALL
        .into_iter()
        .map(|hub| (hub, TriggerSettings::from_json(&host, &no_retry, 0.01)))
        .collect();

    let mut config = QueueConfig::new(dir.path().join("queue"));
    config.partitions = 2;
    let queue = Arc::new(Queue::open(&config, |_, _| None).expect("queue"));
    let rt = runtime();
    let stats = Arc::new(HostStats::default());
    let triggers = start_triggers(&rt, &queue, &settings, &instances, &stats);
    let producer = rt.spawn(produce(Arc::clone(&queue), 4_000, 800.0));
    wait_for("the first batches", Duration::from_secs(60), || {
        stats.batches.load(Ordering::Relaxed) >= 4
    });
    azurite.stop();
    std::thread::sleep(Duration::from_secs(2));
    azurite.restart();
    rt.block_on(producer).expect("producer");
    queue.close();
    rt.block_on(async {
        for t in triggers {
            t.await.expect("trigger task");
        }
    });
    drop(server);

    assert!(
        stats.given_up.load(Ordering::Relaxed) > 0,
        "failed batches were checkpointed"
    );
    let gaps = rows(&lake, &ARCHIVE_GAPS);
    let landed = sequences(&lake);
    let mut ranges: BTreeMap<(String, i32), Vec<(i64, i64)>> = BTreeMap::new();
    for b in &gaps {
        let col = |name: &str| {
            b.column_by_name(name)
                .expect(name)
                .as_primitive::<Int64Type>()
                .clone()
        };
        let (expected, got) = (col("expected_sequence_number"), col("got_sequence_number"));
        let hubs = b
            .column_by_name("hub")
            .expect("hub")
            .as_string::<i32>()
            .clone();
        let parts = b
            .column_by_name("partition_id")
            .expect("partition")
            .as_primitive::<deltalake::arrow::datatypes::Int32Type>()
            .clone();
        for i in 0..b.num_rows() {
            let key = (hubs.value(i).to_string(), parts.value(i));
            let range = (expected.value(i), got.value(i));
            // A recorded range really misses events (a failed batch may have left its
            // quarantined events behind, but not all of it).
            let seqs = &landed[&key];
            assert!(
                (range.0..range.1).any(|s| seqs.binary_search(&s).is_err()),
                "{key:?}: gap {range:?} is complete in Bronze"
            );
            ranges.entry(key).or_default().push(range);
        }
    }
    assert!(
        !ranges.is_empty(),
        "lost batches followed by others are recorded as gaps"
    );
    // Nothing is missing silently: every hole before a partition's last landed event lies in a
    // recorded gap.
    for (key, seqs) in &landed {
        let last = *seqs.last().expect("events");
        for s in 0..last {
            if seqs.binary_search(&s).is_err() {
                let recorded = ranges
                    .get(key)
                    .is_some_and(|r| r.iter().any(|(from, to)| (*from..*to).contains(&s)));
                assert!(recorded, "{key:?}: {s} is missing and no gap says so");
            }
        }
    }
    assert_eq!(
        gaps.iter().map(RecordBatch::num_rows).sum::<usize>(),
        ranges.values().map(Vec::len).sum::<usize>()
    );
}

/// Two partitions' batches sent at once to one instance are archived at the same time (their
/// partition locks are held over overlapping intervals), while two deliveries of one partition's
/// batch take turns and land once.
#[test]
fn partitions_are_archived_concurrently_and_a_partition_redelivered_at_once_lands_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake_path = dir.path().join("lake");
    let server = serve_with(&["--lake", lake_path.to_str().expect("utf-8")], &[]);
    let generator = Generator::new(GeneratorConfig {
        seed: 5,
        ..GeneratorConfig::default()
    })
    .expect("generator");
    let bookings: Vec<String> = generator
        .filter(|e| e.hub == Hub::Bookings)
        .take(6_000)
        .map(|e| e.body)
        .collect();
    let batch = |partition: u32, bodies: &[String]| {
        let events: Vec<ReceivedEvent> = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| ReceivedEvent {
                sequence_number: i as i64,
                offset: i as i64 * 700,
                enqueued_time: chrono::Utc::now(),
                partition_key: None,
                source: Source::EventHub,
                body: body.clone(),
            })
            .collect();
        trigger_payload(Hub::Bookings, partition, &events)
    };
    let held = |reply: &Value| -> (String, String) {
        let log = reply["Logs"][0].as_str().expect("log");
        let (_, times) = log.split_once("partition lock held ").expect("lock times");
        let (from, to) = times.split_once(" to ").expect("to");
        (from.to_string(), to.to_string())
    };
    let payloads = [
        batch(0, &bookings[..3_000]),
        batch(1, &bookings[3_000..]),
        batch(2, &bookings[..2_000]),
        batch(2, &bookings[..2_000]),
    ];
    let at_once = |payloads: &[Value]| -> Vec<(u16, Value)> {
        let replies: Vec<(u16, Value)> = std::thread::scope(|s| {
            let handles: Vec<_> = payloads
                .iter()
                .map(|p| s.spawn(|| invoke(&server, "archive_bookings", p)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        for (status, reply) in &replies {
            assert_eq!(*status, 200, "{reply}");
        }
        replies
    };
    let replies = at_once(&payloads);
    let spans: Vec<(String, String)> = replies.iter().map(|(_, r)| held(r)).collect();
    // RFC 3339 UTC with microseconds sorts as text.
    let overlap = |a: &(String, String), b: &(String, String)| a.0 < b.1 && b.0 < a.1;
    // Two requests sent at once may still not overlap on a loaded machine (one finishes before
    // the other's thread runs), so up to two more fresh pairs of partitions are sent: partitions
    // archived one at a time never overlap in any of them.
    let mut pairs = vec![(spans[0].clone(), spans[1].clone())];
    let mut extra: Vec<i32> = Vec::new();
    while !pairs.iter().any(|(a, b)| overlap(a, b)) && pairs.len() < 3 {
        let first = 1 + 2 * u32::try_from(pairs.len()).expect("few");
        let pair = at_once(&[
            batch(first, &bookings[..3_000]),
            batch(first + 1, &bookings[3_000..]),
        ]);
        extra.extend([first, first + 1].map(|p| i32::try_from(p).expect("few")));
        pairs.push((held(&pair[0].1), held(&pair[1].1)));
    }
    assert!(
        pairs.iter().any(|(a, b)| overlap(a, b)),
        "two partitions in parallel in one of {} pairs: {pairs:?}",
        pairs.len()
    );
    assert!(
        !overlap(&spans[2], &spans[3]),
        "partition 2 one at a time: {spans:?}"
    );
    let logs: Vec<&str> = replies[2..]
        .iter()
        .map(|(_, r)| r["Logs"][0].as_str().expect("log"))
        .collect();
    assert!(
        logs.iter().any(|l| l.contains("2000 already landed")),
        "the second delivery found it landed: {logs:?}"
    );
    drop(server);
    let lake = common::local(&lake_path);
    let landed = sequences(&lake);
    for p in (0..3).chain(extra) {
        let seqs = &landed[&("bookings".to_string(), p)];
        let n = if p == 2 { 2_000 } else { 3_000 };
        assert_eq!(
            *seqs,
            (0..n).collect::<Vec<i64>>(),
            "partition {p} once each"
        );
    }
}
