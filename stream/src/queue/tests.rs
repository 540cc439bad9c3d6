use std::time::Duration;

use super::*;

fn config(dir: &Path) -> QueueConfig {
    QueueConfig::new(dir)
}

async fn send_n(q: &Queue, hub: Hub, n: usize) -> Vec<Stamp> {
    let mut stamps = Vec::new();
    for i in 0..n {
        let key = format!("order_{i}");
        let stamp = q
            .send(hub, Some(&key), Source::Generator, format!("{{\"i\":{i}}}"))
            .await
            .expect("send");
        stamps.push(stamp);
    }
    stamps
}

#[tokio::test]
async fn sequence_numbers_start_at_zero_per_partition_without_gaps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = Queue::open(&config(dir.path()), |_, _| None).expect("open");
    let stamps = send_n(&q, Hub::Bookings, 200).await;
    for p in 0..2 {
        let seqs: Vec<i64> = stamps
            .iter()
            .filter(|s| s.partition == p)
            .map(|s| s.sequence_number)
            .collect();
        assert!(!seqs.is_empty(), "both partitions get events");
        assert_eq!(seqs, (0..seqs.len() as i64).collect::<Vec<_>>());
    }
    assert_eq!(q.accepted(), 200);
}

#[tokio::test]
async fn a_key_always_goes_to_the_same_partition() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = Queue::open(&config(dir.path()), |_, _| None).expect("open");
    let a = q
        .send(Hub::Payments, Some("order_7"), Source::Http, "{}".into())
        .await
        .expect("send");
    let b = q
        .send(Hub::Payments, Some("order_7"), Source::Http, "{}".into())
        .await
        .expect("send");
    assert_eq!(a.partition, b.partition);
    assert_eq!(b.sequence_number, a.sequence_number + 1);
    assert_eq!(a.partition, q.partition_for("order_7"));
}

/// Both hubs put an order at the same partition index: the co-partitioning rule.
#[tokio::test]
async fn an_order_sits_at_the_same_partition_index_of_both_hubs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.partitions = 8;
    let q = Queue::open(&cfg, |_, _| None).expect("open");
    let mut used = std::collections::BTreeSet::new();
    for n in 0..200 {
        let order = format!("order_k2x9-{n}");
        let booking = q
            .send(Hub::Bookings, Some(&order), Source::Http, "{}".into())
            .await
            .expect("send");
        let payment = q
            .send(Hub::Payments, Some(&order), Source::Http, "{}".into())
            .await
            .expect("send");
        assert_eq!(booking.partition, payment.partition, "{order}");
        assert_eq!(
            booking.partition,
            crate::partitioning::partition_index(&order, 8)
        );
        used.insert(booking.partition);
    }
    assert_eq!(used.len(), 8);
}

#[tokio::test]
async fn offsets_and_enqueued_times_are_stamped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = Queue::open(&config(dir.path()), |_, _| None).expect("open");
    let before = Utc::now();
    for body in ["{\"a\":1}", "{\"bb\":22}"] {
        q.send(Hub::Bookings, Some("k"), Source::Batch, body.into())
            .await
            .expect("send");
    }
    q.close();
    let p = q.partition(Hub::Bookings, q.partition_for("k"));
    let batch = p
        .next_batch(10, Duration::ZERO)
        .await
        .expect("batch")
        .expect("some");
    assert_eq!(batch[0].offset, 0);
    assert_eq!(batch[1].offset, 7, "offset advances by the body's bytes");
    assert!(batch[0].enqueued_time >= before && batch[1].enqueued_time >= batch[0].enqueued_time);
    assert_eq!(batch[0].partition_key.as_deref(), Some("k"));
    assert_eq!(batch[0].source, Source::Batch);
}

#[tokio::test]
async fn batches_come_by_size_then_by_time_then_drain_on_close() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = Queue::open(&config(dir.path()), |_, _| None).expect("open");
    for _ in 0..25 {
        q.send(Hub::Bookings, Some("same"), Source::Generator, "{}".into())
            .await
            .expect("send");
    }
    let p = Arc::clone(q.partition(Hub::Bookings, q.partition_for("same")));
    // By size: a full batch is ready at once, even with a long linger.
    let b = tokio::time::timeout(
        Duration::from_secs(5),
        p.next_batch(10, Duration::from_secs(3600)),
    )
    .await
    .expect("no wait for a full batch")
    .expect("ok")
    .expect("batch");
    assert_eq!(b.len(), 10);
    // By time: 15 left, fewer than 10 per batch needed only after the linger.
    let started = std::time::Instant::now();
    let b = p
        .next_batch(100, Duration::from_millis(200))
        .await
        .expect("ok")
        .expect("batch");
    assert_eq!(b.len(), 15);
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "waited for the linger"
    );
    q.close();
    assert!(
        p.next_batch(100, Duration::from_secs(1))
            .await
            .expect("ok")
            .is_none()
    );
    assert!(matches!(
        q.send(Hub::Bookings, None, Source::Generator, "{}".into())
            .await,
        Err(QueueError::Closed)
    ));
}

#[tokio::test]
async fn a_full_partition_makes_the_producer_wait() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.max_pending = 5;
    let q = Arc::new(Queue::open(&cfg, |_, _| None).expect("open"));
    for _ in 0..5 {
        q.send(Hub::Bookings, Some("k"), Source::Generator, "{}".into())
            .await
            .expect("send");
    }
    let q2 = Arc::clone(&q);
    let sixth = tokio::spawn(async move {
        q2.send(Hub::Bookings, Some("k"), Source::Generator, "{}".into())
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!sixth.is_finished(), "the sixth send waits for room");
    let p = q.partition(Hub::Bookings, q.partition_for("k"));
    let b = p
        .next_batch(5, Duration::ZERO)
        .await
        .expect("ok")
        .expect("batch");
    assert_eq!(b.len(), 5);
    let stamp = tokio::time::timeout(Duration::from_secs(5), sixth)
        .await
        .expect("released")
        .expect("joined")
        .expect("sent");
    assert_eq!(stamp.sequence_number, 5);
}

#[tokio::test]
async fn reopening_replays_what_is_not_archived_and_continues_the_sequence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stamps = {
        let q = Queue::open(&config(dir.path()), |_, _| None).expect("open");
        let stamps = send_n(&q, Hub::Payments, 40).await;
        // Hand a batch out so its records are flushed, as a consumer would before archiving.
        for p in 0..2 {
            let _ = q
                .partition(Hub::Payments, p)
                .next_batch(1000, Duration::ZERO)
                .await;
        }
        stamps
    };
    let in_p0 = stamps.iter().filter(|s| s.partition == 0).count() as i64;
    // Pretend Bronze holds partition 0 up to sequence 4 and nothing of partition 1.
    let q = Queue::open(&config(dir.path()), |hub, p| {
        (hub == Hub::Payments && p == 0).then_some(4)
    })
    .expect("reopen");
    q.close();
    let replay0 = q
        .partition(Hub::Payments, 0)
        .next_batch(1000, Duration::ZERO)
        .await
        .expect("ok")
        .expect("batch");
    assert_eq!(replay0.first().map(|e| e.sequence_number), Some(5));
    assert_eq!(replay0.len() as i64, in_p0 - 5);
    let replay1 = q
        .partition(Hub::Payments, 1)
        .next_batch(1000, Duration::ZERO)
        .await
        .expect("ok")
        .expect("batch");
    assert_eq!(replay1.first().map(|e| e.sequence_number), Some(0));
    drop(q);
    // New events continue after the last logged one.
    let q = Queue::open(&config(dir.path()), |_, _| Some(10_000)).expect("reopen");
    let s = q
        .send(Hub::Payments, Some("x"), Source::Generator, "{}".into())
        .await
        .expect("send");
    assert_eq!(
        s.sequence_number, 10_001,
        "never below the archived checkpoint"
    );
}

#[tokio::test]
async fn a_second_process_cannot_open_the_same_queue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _q = Queue::open(&config(dir.path()), |_, _| None).expect("open");
    assert!(matches!(
        Queue::open(&config(dir.path()), |_, _| None),
        Err(QueueError::Locked(_))
    ));
}

#[tokio::test]
async fn partition_count_is_fixed_per_queue_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(Queue::open(&config(dir.path()), |_, _| None).expect("open"));
    let mut cfg = config(dir.path());
    cfg.partitions = 4;
    assert!(matches!(
        Queue::open(&cfg, |_, _| None),
        Err(QueueError::PartitionCount {
            found: 2,
            wanted: 4,
            ..
        })
    ));
}

#[tokio::test]
async fn accepted_events_reach_the_os_within_the_flush_bound_without_a_consumer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = Queue::open(&config(dir.path()), |_, _| None).expect("open");
    let log_bytes = || -> u64 {
        let part = dir
            .path()
            .join(format!("bookings-{}", q.partition_for("k")));
        std::fs::read_dir(part)
            .expect("partition dir")
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum()
    };
    for _ in 0..10 {
        q.send(Hub::Bookings, Some("k"), Source::Generator, "{}".into())
            .await
            .expect("send");
    }
    tokio::time::sleep(LOG_FLUSH_EVERY + Duration::from_millis(20)).await;
    q.send(Hub::Bookings, Some("k"), Source::Generator, "{}".into())
        .await
        .expect("send");
    assert!(
        log_bytes() > 0,
        "the buffer went to the OS once it was older than the bound"
    );
}
