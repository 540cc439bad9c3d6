//! The events a checkpoint keeps, read back from Bronze when a shard loads it.
//!
//! A checkpoint stores each kept booking and payment by its place (hub, partition, sequence
//! number), not its JSON ([`super::checkpoint`]). Bronze keeps every event at its place: compaction
//! rewrites files but keeps their rows, and nothing deletes rows. So loading reads, in each
//! partition holding a kept event, the sequence numbers from its earliest kept event to its
//! latest, and keeps the events the checkpoint names. An event is kept for the join's window and
//! the allowed lateness (2.5 minutes of event time by default), so that is a few minutes of Bronze.

use std::collections::{BTreeMap, HashSet};

use boxoffice_lake::Lake;

use super::checkpoint::{KeptBodies, KeptPlace};
use super::checkpoint_error;
use super::input::{self, BronzeTables, PartitionId, Positions, Progress, Range};
use super::join::Micros;
use super::sharding::ShardId;
use crate::JobError;

/// Reads the events at `places` from `shard`'s partitions of Bronze; `positions` are where the
/// checkpoint stopped reading. An event missing there is left out (the checkpoint's restore names
/// it); one that no longer passes validation is an error.
pub async fn read(
    lake: &Lake,
    tables: &mut BronzeTables,
    shard: ShardId,
    positions: &Positions,
    places: &[KeptPlace],
) -> Result<KeptBodies, JobError> {
    if places.is_empty() {
        return Ok(KeptBodies::default());
    }
    let started = std::time::Instant::now();
    let ranges = spans(places);
    let mut from = positions.clone();
    from.extend(ranges.iter().map(|r| (r.id, r.before)));
    let landed = input::scan(lake, tables, &from, shard).await?;
    let wanted: HashSet<(u8, i32, i64)> = places
        .iter()
        .map(|p| (p.key.hub, p.key.partition, p.key.sequence))
        .collect();
    let mut bodies = KeptBodies::default();
    let rows = input::read(&landed, &ranges).await?;
    let scanned = rows.len();
    for row in rows {
        let place = (row.key.hub, row.key.partition, row.key.sequence);
        if !wanted.contains(&place) {
            continue;
        }
        match row.event {
            Ok(event) => {
                bodies.insert(place, event);
            }
            Err(refused) => {
                return Err(checkpoint_error(format!(
                    "the join's state keeps the event at hub {} partition {} sequence {}, which \
                     no longer passes validation: {}",
                    place.0, place.1, place.2, refused.reason
                )));
            }
        }
    }
    tracing::info!(
        shard = shard.index,
        waiting = places.len(),
        found = bodies.len(),
        scanned,
        ms = started.elapsed().as_millis(),
        "read the waiting events of the join's checkpoint back from Bronze"
    );
    Ok(bodies)
}

/// In each partition holding a kept event, the sequence numbers from the earliest kept event to
/// the latest.
fn spans(places: &[KeptPlace]) -> Vec<Range> {
    let mut spans: BTreeMap<PartitionId, (i64, i64)> = BTreeMap::new();
    for p in places {
        let id = PartitionId {
            hub: p.key.hub,
            partition: p.key.partition,
        };
        let seq = p.key.sequence;
        let span = spans.entry(id).or_insert((seq, seq));
        *span = (span.0.min(seq), span.1.max(seq));
    }
    let at = |done| Progress {
        done,
        arrival: Micros::MIN,
    };
    spans
        .into_iter()
        .map(|(id, (first, last))| Range {
            id,
            before: at(first - 1),
            after: at(last),
        })
        .collect()
}
