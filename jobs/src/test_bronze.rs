//! Bronze landed the way the archivers land it, for the jobs' tests over a real lake.

use std::collections::BTreeMap;

use boxoffice_events::{Generator, GeneratorConfig, Hub, validate};
use boxoffice_ingest::bronze::BronzeArchiver;
use boxoffice_ingest::partitioning::partition_index;
use boxoffice_ingest::{ReceivedEvent, Source};
use boxoffice_lake::Lake;
use chrono::{DateTime, Utc};

/// Lands `events` (hub, partition, body, enqueued time) through the archivers, in batches of
/// `batch` per partition, numbering each partition's events from 0.
pub(crate) async fn land(lake: &Lake, events: &[(Hub, i32, String, DateTime<Utc>)], batch: usize) {
    let mut by_partition: BTreeMap<(u8, i32), Vec<ReceivedEvent>> = BTreeMap::new();
    for (hub, partition, body, at) in events {
        let rows = by_partition
            .entry((u8::from(*hub == Hub::Payments), *partition))
            .or_default();
        rows.push(ReceivedEvent {
            sequence_number: rows.len() as i64,
            offset: rows.len() as i64 * 100,
            enqueued_time: *at,
            partition_key: None,
            source: Source::Generator,
            body: body.clone(),
        });
    }
    for hub in [Hub::Bookings, Hub::Payments] {
        let mut archiver = BronzeArchiver::open(lake, hub).await.expect("archiver");
        for ((h, partition), rows) in &by_partition {
            if *h != u8::from(hub == Hub::Payments) {
                continue;
            }
            for chunk in rows.chunks(batch) {
                archiver.archive(*partition, chunk).await.expect("archive");
            }
        }
    }
}

/// `n` generated events, each on the partition the co-partitioning rule gives its order (a
/// malformed one, which has none, on partition 0).
pub(crate) fn generated(
    seed: u64,
    n: usize,
    partitions: u32,
) -> Vec<(Hub, i32, String, DateTime<Utc>)> {
    let config = GeneratorConfig {
        seed,
        rate: 12.0,
        ..GeneratorConfig::default()
    };
    Generator::new(config)
        .expect("config")
        .take(n)
        .map(|e| {
            let partition = validate(&e.body, Some(e.hub)).map_or(0, |v| {
                partition_index(v.event.order_id(), partitions) as i32
            });
            (e.hub, partition, e.body, e.arrival)
        })
        .collect()
}
