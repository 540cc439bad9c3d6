//! Reading Bronze for the join: what landed since the last batch, in arrival order.
//!
//! The arrival order is (enqueued time, hub, partition, sequence number), with each partition's
//! enqueued times made non-decreasing by sequence. A batch takes only events that arrived before
//! every partition's latest landed event (the horizon): no event can land later in front of them,
//! so the order the join sees is a property of Bronze's contents, not of when a run happened.
//!
//! Planning reads only partition, sequence and enqueued time (a column projection), so a batch
//! can be capped to a number of events without loading their bodies; a [`Plan`] then names, per
//! partition, the sequence range to read, and is enough to read the same events again after a
//! crash.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use boxoffice_events::model::Hub;
use boxoffice_events::validate::validate_event;
use boxoffice_ingest::bronze::{BOOKINGS_RAW, PAYMENTS_RAW};
use boxoffice_lake::{Lake, TableDef};
use deltalake::DeltaTable;
use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use super::bronze_files::{FileRef, list_files, meta_columns, read_column_chunks, read_files};
use super::join::{ArrivalKey, JoinEvent, Micros, RawBody};
use super::sharding::ShardId;
use crate::JobError;

/// Hub number in arrival keys: bookings sort before payments at the same instant.
pub const BOOKINGS: u8 = 0;
/// Hub number of payments.
pub const PAYMENTS: u8 = 1;

/// One Event Hubs partition of one hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PartitionId {
    /// [`BOOKINGS`] or [`PAYMENTS`].
    pub hub: u8,
    /// The partition.
    pub partition: i32,
}

/// How far the join has read one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Last sequence number taken (-1: none yet).
    pub done: i64,
    /// Arrival time of that event (the floor for the next one's).
    pub arrival: Micros,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            done: -1,
            arrival: Micros::MIN,
        }
    }
}

/// Per-partition progress.
pub type Positions = BTreeMap<PartitionId, Progress>;

/// Moves `positions` past the events `ranges` take.
pub fn advance(positions: &mut Positions, ranges: &[Range]) {
    for r in ranges {
        positions.insert(r.id, r.after);
    }
}

/// The range of one partition a batch takes: sequence numbers `after+1 ..= through`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    /// The partition.
    pub id: PartitionId,
    /// Progress before the batch.
    pub before: Progress,
    /// Progress after it.
    pub after: Progress,
}

/// What landed in a shard's partitions of Bronze after the given positions: the files that may
/// hold its rows, and each new row's partition, sequence number and (raw) enqueued time.
pub struct Landed {
    shard: ShardId,
    files: Vec<FileRef>,
    rows: BTreeMap<PartitionId, Vec<(i64, Micros)>>,
}

impl Landed {
    /// How many events each partition has landed after the positions the scan started from.
    pub fn counts(&self) -> BTreeMap<PartitionId, usize> {
        self.rows
            .iter()
            .map(|(id, rows)| (*id, rows.len()))
            .collect()
    }
}

/// Each row of one Bronze file: partition, sequence number, enqueued time.
type MetaRows = Arc<Vec<(i32, i64, Micros)>>;

/// The Bronze tables, kept open between scans so each scan reads only the new commits of their
/// logs (a long `up` makes thousands of them).
#[derive(Default)]
pub struct BronzeTables {
    open: HashMap<&'static str, DeltaTable>,
    /// Each file's row metadata, read once: files never change, and a run of many batches would
    /// otherwise read every remaining file's metadata again for each batch. Files the join has
    /// passed (or that compaction removed) are forgotten.
    meta: HashMap<Path, MetaRows>,
}

impl BronzeTables {
    async fn current(
        &mut self,
        lake: &Lake,
        def: &TableDef,
    ) -> Result<Option<&DeltaTable>, JobError> {
        if !self.open.contains_key(def.name) {
            match lake.open_table(def).await? {
                Some(table) => self.open.insert(def.name, table),
                None => return Ok(None),
            };
        } else if let Some(table) = self.open.get_mut(def.name) {
            boxoffice_lake::refresh::refresh(table, "join input")
                .await
                .map_err(|e| lake.delta_error(def, e))?;
        }
        Ok(self.open.get(def.name))
    }
}

/// Lists Bronze's files and reads the metadata of every row of `shard`'s partitions after
/// `positions`. Files whose statistics show only other shards' partitions are not read: the
/// archivers write each partition's rows to files of their own, and compaction keeps them apart.
pub async fn scan(
    lake: &Lake,
    tables: &mut BronzeTables,
    positions: &Positions,
    shard: ShardId,
) -> Result<Landed, JobError> {
    let mut files = Vec::new();
    for (hub, def) in [(BOOKINGS, &BOOKINGS_RAW), (PAYMENTS, &PAYMENTS_RAW)] {
        if let Some(table) = tables.current(lake, def).await? {
            files.extend(
                list_files(lake, table, hub, def)?
                    .into_iter()
                    .filter(|f| f.partitions.is_none_or(|(lo, hi)| any_owned(shard, lo, hi))),
            );
        }
    }
    let mut wanted: Vec<&FileRef> = files
        .iter()
        .filter(|f| {
            f.partitions.is_none_or(|(lo, hi)| {
                (lo..=hi).filter(|p| shard.owns(*p)).any(|p| {
                    let id = PartitionId {
                        hub: f.hub,
                        partition: p,
                    };
                    let done = positions.get(&id).map_or(-1, |p| p.done);
                    f.sequences.is_none_or(|(_, max)| max > done)
                })
            })
        })
        .collect();
    // Files taken in sequence order, so each partition's rows usually come out sorted.
    wanted.sort_by_key(|f| f.sequences.map(|(lo, _)| lo));
    let unread: Vec<&FileRef> = wanted
        .iter()
        .copied()
        .filter(|f| !tables.meta.contains_key(&f.path))
        .collect();
    let read = read_column_chunks(&unread, &META_COLUMNS, |_, batches| {
        let mut rows = Vec::new();
        for batch in &batches {
            let (parts, seqs, times) = meta_columns(batch)?;
            rows.extend(
                (0..batch.num_rows()).map(|i| (parts.value(i), seqs.value(i), times.value(i))),
            );
        }
        Ok(Arc::new(rows))
    })
    .await?;
    for (f, meta) in unread.iter().zip(read) {
        tables.meta.insert(f.path.clone(), meta);
    }
    let mut rows: BTreeMap<PartitionId, Vec<(i64, Micros)>> = BTreeMap::new();
    for f in &wanted {
        let Some(meta) = tables.meta.get(&f.path) else {
            continue;
        };
        // A file's rows come in runs of one partition: one lookup per run, not per row.
        for run in meta.chunk_by(|a, b| a.0 == b.0) {
            if !shard.owns(run[0].0) {
                continue;
            }
            let id = PartitionId {
                hub: f.hub,
                partition: run[0].0,
            };
            let done = positions.get(&id).map_or(-1, |p| p.done);
            let into = rows.entry(id).or_default();
            into.reserve(run.len());
            into.extend(
                run.iter()
                    .filter(|(_, seq, _)| *seq > done)
                    .map(|&(_, seq, at)| (seq, at)),
            );
        }
    }
    let kept: std::collections::HashSet<&Path> = wanted.iter().map(|f| &f.path).collect();
    tables.meta.retain(|path, _| kept.contains(path));
    for r in rows.values_mut() {
        // Each file's rows are in sequence order, so a partition's rows are sorted already or
        // a few sorted runs, which the stable sort merges (the unstable one re-sorted them).
        if !r.is_sorted() {
            r.sort();
        }
        r.dedup_by_key(|(seq, _)| *seq);
    }
    Ok(Landed { shard, files, rows })
}

/// Whether any partition in `lo..=hi` is `shard`'s.
fn any_owned(shard: ShardId, lo: i32, hi: i32) -> bool {
    hi.saturating_sub(lo) >= shard.of as i32 - 1 || (lo..=hi).any(|p| shard.owns(p))
}

/// The columns planning reads.
const META_COLUMNS: [&str; 3] = ["partition_id", "sequence_number", "enqueued_time"];

/// Decides the next batch: up to `max_events` events, in arrival order, before the horizon
/// (every event when `drain`). `expected` lists partitions that must have landed something
/// before anything is taken (else an early event of theirs could still land in front).
/// Returns the ranges, and whether every landed event is taken.
pub fn plan(
    landed: &Landed,
    positions: &Positions,
    expected: &[PartitionId],
    max_events: usize,
    drain: bool,
) -> (Vec<Range>, bool) {
    let ids: BTreeSet<PartitionId> = expected
        .iter()
        .copied()
        .chain(positions.keys().copied())
        .chain(landed.rows.keys().copied())
        .collect();
    // Each new row's arrival, made non-decreasing within its partition.
    let mut arrivals: HashMap<PartitionId, Vec<(i64, Micros)>> = HashMap::new();
    let mut frontier: Option<Micros> = Some(Micros::MAX);
    for id in &ids {
        let before = positions.get(id).copied().unwrap_or_default();
        let mut at = before.arrival;
        let rows: Vec<(i64, Micros)> = landed
            .rows
            .get(id)
            .map(|r| {
                // A scan may be older than `positions` (the next batch is planned from the scan
                // of the current one): what they have passed is skipped.
                r.iter()
                    .filter(|(seq, _)| *seq > before.done)
                    .map(|&(seq, t)| {
                        at = at.max(t);
                        (seq, at)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let latest = (at != Micros::MIN).then_some(at);
        frontier = frontier.zip(latest).map(|(f, l)| f.min(l));
        arrivals.insert(*id, rows);
    }
    let horizon = if drain {
        Micros::MAX
    } else {
        frontier.unwrap_or(Micros::MIN)
    };
    // Each partition's rows are in arrival order and those before the horizon are a prefix (its
    // arrivals never decrease): the batch is the first `max_events` of their merge.
    let heads: Vec<(PartitionId, &[(i64, Micros)])> = arrivals
        .iter()
        .map(|(id, rows)| {
            let eligible = if drain {
                rows.len()
            } else {
                rows.partition_point(|(_, at)| *at < horizon)
            };
            (*id, &rows[..eligible])
        })
        .collect();
    let mut taken: Vec<usize> = heads.iter().map(|(_, rows)| rows.len()).collect();
    if taken.iter().sum::<usize>() > max_events {
        taken.iter_mut().for_each(|t| *t = 0);
        for _ in 0..max_events {
            let next = heads
                .iter()
                .enumerate()
                .filter(|(i, (_, rows))| taken[*i] < rows.len())
                .min_by_key(|(i, (id, rows))| {
                    let (sequence, at) = rows[taken[*i]];
                    (at, id.hub, id.partition, sequence)
                });
            match next {
                Some((i, _)) => taken[i] += 1,
                None => break,
            }
        }
    }
    let total_new: usize = arrivals.values().map(Vec::len).sum();
    let ranges = heads
        .iter()
        .zip(&taken)
        .filter(|(_, n)| **n > 0)
        .map(|((id, rows), n)| {
            let (done, arrival) = rows[n - 1];
            let range = Range {
                id: *id,
                before: positions.get(id).copied().unwrap_or_default(),
                after: Progress { done, arrival },
            };
            (*id, range)
        })
        .collect::<BTreeMap<PartitionId, Range>>();
    let all = taken.iter().sum::<usize>() == total_new;
    (ranges.into_values().collect(), all)
}

/// A Bronze event as the job reads it: its place in the arrival order, and the event ready for
/// the join or what the validator said of it (Bronze written by a producer that did not
/// validate, or a validator made stricter since).
#[derive(Debug, Clone)]
pub struct BronzeEvent {
    /// Its place in the arrival order.
    pub key: ArrivalKey,
    /// The validated event (small: the parsed event lives behind it, so ordering a batch moves
    /// pointers, not events).
    pub event: Result<JoinEvent, Box<Refused>>,
}

/// An event the validator refuses, with what quarantine keeps of it.
#[derive(Debug, Clone)]
pub struct Refused {
    /// Its event_uid, as the archiver computed it.
    pub uid: String,
    /// The raw JSON.
    pub body: Arc<str>,
    /// Every reason, as one line.
    pub reason: String,
}

/// A Bronze row as read, before the arrival order is known.
struct RawRow {
    id: PartitionId,
    sequence: i64,
    enqueued: Micros,
    event: Result<JoinEvent, Box<Refused>>,
}

/// The columns the join reads.
const EVENT_COLUMNS: [&str; 5] = [
    "partition_id",
    "sequence_number",
    "enqueued_time",
    "event_uid",
    "body",
];

/// Reads and validates the events of `ranges`, in arrival order. `landed` may come from any scan
/// at least as recent as the plan (after a crash, a new one): Bronze only grows. Validation runs
/// on the threads that decode, while each body is still in cache.
pub async fn read(landed: &Landed, ranges: &[Range]) -> Result<Vec<BronzeEvent>, JobError> {
    let wanted: HashMap<PartitionId, &Range> = ranges.iter().map(|r| (r.id, r)).collect();
    let files: Vec<&FileRef> = landed
        .files
        .iter()
        .filter(|f| {
            ranges
                .iter()
                .any(|r| f.may_hold(r.id, r.before.done, r.after.done))
        })
        .collect();
    let shard = landed.shard;
    let read = read_files(&files, &EVENT_COLUMNS, |f, batches| {
        rows_in(f, &batches, &wanted, shard)
    })
    .await?;
    let mut by_partition: HashMap<PartitionId, Vec<RawRow>> = HashMap::new();
    for row in read.into_iter().flatten() {
        by_partition.entry(row.id).or_default().push(row);
    }
    let mut events = Vec::with_capacity(by_partition.values().map(Vec::len).sum());
    for r in ranges {
        // Sequence numbers of quarantined events are missing here: gaps are normal.
        let mut rows = by_partition.remove(&r.id).unwrap_or_default();
        rows.sort_unstable_by_key(|row| row.sequence);
        rows.dedup_by_key(|row| row.sequence);
        let mut at = r.before.arrival;
        for mut row in rows {
            at = at.max(row.enqueued);
            let key = ArrivalKey {
                at,
                hub: r.id.hub,
                partition: r.id.partition,
                sequence: row.sequence,
            };
            if let Ok(event) = &mut row.event {
                event.set_arrival(key);
            }
            events.push(BronzeEvent {
                key,
                event: row.event,
            });
        }
    }
    events.sort_unstable_by_key(|e| e.key);
    Ok(events)
}

/// The rows of one file's batches that `wanted` takes, each validated on the hub it landed on,
/// and refused when its order is another shard's (its producer did not co-partition).
fn rows_in(
    f: &FileRef,
    batches: &[RecordBatch],
    wanted: &HashMap<PartitionId, &Range>,
    shard: ShardId,
) -> Result<Vec<RawRow>, JobError> {
    let hub = if f.hub == PAYMENTS {
        Hub::Payments
    } else {
        Hub::Bookings
    };
    let mut rows = Vec::new();
    for batch in batches {
        let (parts, seqs, times) = meta_columns(batch)?;
        let text = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_string_opt::<i32>())
                .ok_or_else(|| JobError::Bronze(format!("{name} is not a string")))
        };
        let (uids, bodies) = (text("event_uid")?, text("body")?);
        let column = Arc::new(bodies.clone());
        for i in 0..batch.num_rows() {
            let id = PartitionId {
                hub: f.hub,
                partition: parts.value(i),
            };
            let sequence = seqs.value(i);
            let taken = wanted
                .get(&id)
                .is_some_and(|r| sequence > r.before.done && sequence <= r.after.done);
            if taken && !uids.is_null(i) {
                let (uid, body) = (uids.value(i), bodies.value(i));
                // The arrival key is set once the partition's rows are ordered.
                let provisional = ArrivalKey {
                    at: times.value(i),
                    hub: f.hub,
                    partition: id.partition,
                    sequence,
                };
                let event = match validate_event(body, Some(hub)) {
                    Ok(event) if !shard.holds_order(event.order_id()) => Err(Box::new(Refused {
                        uid: uid.to_string(),
                        body: Arc::from(body),
                        reason: shard.misplaced(event.order_id(), id.partition),
                    })),
                    Ok(event) => Ok(JoinEvent::new(
                        uid,
                        provisional,
                        event,
                        Some(RawBody::new(Arc::clone(&column), i)),
                    )),
                    Err(invalid) => Err(Box::new(Refused {
                        uid: uid.to_string(),
                        body: Arc::from(body),
                        reason: invalid.reason(),
                    })),
                };
                rows.push(RawRow {
                    id,
                    sequence,
                    enqueued: times.value(i),
                    event,
                });
            }
        }
    }
    Ok(rows)
}

/// The batch after the current one: planned from the current batch's scan, and being read and
/// validated on other threads while the current one is joined and written.
pub struct Ahead {
    /// Its ranges.
    pub ranges: Vec<Range>,
    /// Whether it takes every event that scan found.
    pub all: bool,
    /// The scan it was planned from.
    pub landed: Arc<Landed>,
    /// Its events, when read.
    pub events: tokio::task::JoinHandle<Result<Vec<BronzeEvent>, JobError>>,
}

/// Plans the batch after the one taking `current` (from `positions`) out of the same scan, and
/// starts reading it. A plan made from an earlier scan is as valid as any: results do not depend
/// on where batches end. `None` when that scan holds nothing more.
pub fn read_ahead(
    landed: &Arc<Landed>,
    positions: &Positions,
    current: &[Range],
    expected: &[PartitionId],
    max_events: usize,
    drain: bool,
) -> Option<Ahead> {
    let mut after = positions.clone();
    advance(&mut after, current);
    let (ranges, all) = plan(landed, &after, expected, max_events, drain);
    if ranges.is_empty() {
        return None;
    }
    let (reader, taken) = (Arc::clone(landed), ranges.clone());
    Some(Ahead {
        ranges,
        all,
        landed: Arc::clone(landed),
        events: tokio::spawn(async move { read(&reader, &taken).await }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOOKINGS_0: PartitionId = PartitionId {
        hub: BOOKINGS,
        partition: 0,
    };
    const PAYMENTS_0: PartitionId = PartitionId {
        hub: PAYMENTS,
        partition: 0,
    };

    fn landed(rows: &[(PartitionId, i64, Micros)], positions: &Positions) -> Landed {
        let mut by_partition: BTreeMap<PartitionId, Vec<(i64, Micros)>> = BTreeMap::new();
        for &(id, seq, at) in rows {
            if seq > positions.get(&id).map_or(-1, |p| p.done) {
                by_partition.entry(id).or_default().push((seq, at));
            }
        }
        Landed {
            shard: ShardId { index: 0, of: 1 },
            files: Vec::new(),
            rows: by_partition,
        }
    }

    #[test]
    fn batches_take_the_earliest_arrivals_and_a_plan_from_an_older_scan_matches_a_fresh_one() {
        let rows = [
            (BOOKINGS_0, 0, 10),
            (BOOKINGS_0, 1, 20),
            (BOOKINGS_0, 2, 30),
            (PAYMENTS_0, 0, 15),
            (PAYMENTS_0, 1, 25),
        ];
        let expected = [BOOKINGS_0, PAYMENTS_0];
        let start = Positions::new();
        let scan = landed(&rows, &start);
        let (first, all) = plan(&scan, &start, &expected, 2, false);
        assert!(!all);
        let taken: Vec<(PartitionId, i64)> = first.iter().map(|r| (r.id, r.after.done)).collect();
        assert_eq!(taken, [(BOOKINGS_0, 0), (PAYMENTS_0, 0)]);

        let mut after = start.clone();
        for r in &first {
            after.insert(r.id, r.after);
        }
        let from_old = plan(&scan, &after, &expected, 2, false);
        let from_fresh = plan(&landed(&rows, &after), &after, &expected, 2, false);
        assert_eq!(from_old, from_fresh);
        // Before the horizon (the payments partition's latest arrival, 25) only booking 1 is left.
        let next: Vec<(PartitionId, i64)> =
            from_old.0.iter().map(|r| (r.id, r.after.done)).collect();
        assert_eq!(next, [(BOOKINGS_0, 1)]);

        let drained = plan(&scan, &after, &expected, 10, true);
        assert_eq!(
            drained,
            plan(&landed(&rows, &after), &after, &expected, 10, true)
        );
        assert!(drained.1, "a drain takes everything left");
    }
}
