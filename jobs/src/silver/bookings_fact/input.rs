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
use std::sync::atomic::{AtomicUsize, Ordering};

use boxoffice_events::model::Hub;
use boxoffice_events::validate::validate_event;
use boxoffice_ingest::bronze::{BOOKINGS_RAW, PAYMENTS_RAW};
use boxoffice_lake::{Lake, TableDef};
use bytes::Bytes;
use deltalake::DeltaTable;
use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::datatypes::{Int32Type, Int64Type, TimestampMicrosecondType};
use deltalake::parquet::arrow::ProjectionMask;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};

use super::join::{ArrivalKey, JoinEvent, Micros};
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

/// A Bronze file and what its statistics say about it.
#[derive(Debug, Clone)]
struct FileRef {
    hub: u8,
    store: Arc<dyn ObjectStore>,
    path: Path,
    partitions: Option<(i32, i32)>,
    sequences: Option<(i64, i64)>,
}

impl FileRef {
    /// Whether the file may hold sequence numbers above `done` in `partition`.
    fn may_hold(&self, id: PartitionId, after: i64, through: i64) -> bool {
        self.hub == id.hub
            && self
                .partitions
                .is_none_or(|(lo, hi)| (lo..=hi).contains(&id.partition))
            && self
                .sequences
                .is_none_or(|(lo, hi)| hi > after && lo <= through)
    }
}

/// What landed in Bronze after the given positions: the files, and each new row's partition,
/// sequence number and (raw) enqueued time.
pub struct Landed {
    files: Vec<FileRef>,
    rows: BTreeMap<PartitionId, Vec<(i64, Micros)>>,
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
            table
                .update_state()
                .await
                .map_err(|e| lake.delta_error(def, e))?;
        }
        Ok(self.open.get(def.name))
    }
}

/// Lists Bronze's files and reads the metadata of every row after `positions`.
pub async fn scan(
    lake: &Lake,
    tables: &mut BronzeTables,
    positions: &Positions,
) -> Result<Landed, JobError> {
    let mut files = Vec::new();
    for (hub, def) in [(BOOKINGS, &BOOKINGS_RAW), (PAYMENTS, &PAYMENTS_RAW)] {
        if let Some(table) = tables.current(lake, def).await? {
            files.extend(list_files(lake, table, hub, def)?);
        }
    }
    let wanted: Vec<&FileRef> = files
        .iter()
        .filter(|f| {
            f.partitions.is_none_or(|(lo, hi)| {
                (lo..=hi).any(|p| {
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
    let unread: Vec<&FileRef> = wanted
        .iter()
        .copied()
        .filter(|f| !tables.meta.contains_key(&f.path))
        .collect();
    let read = read_files(&unread, &META_COLUMNS, |_, batches| {
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
        for &(partition, seq, at) in meta.iter() {
            let id = PartitionId {
                hub: f.hub,
                partition,
            };
            if seq > positions.get(&id).map_or(-1, |p| p.done) {
                rows.entry(id).or_default().push((seq, at));
            }
        }
    }
    let kept: std::collections::HashSet<&Path> = wanted.iter().map(|f| &f.path).collect();
    tables.meta.retain(|path, _| kept.contains(path));
    for r in rows.values_mut() {
        r.sort_unstable();
        r.dedup_by_key(|(seq, _)| *seq);
    }
    Ok(Landed { files, rows })
}

/// The columns planning reads.
const META_COLUMNS: [&str; 3] = ["partition_id", "sequence_number", "enqueued_time"];

type MetaColumns<'a> = (
    &'a deltalake::arrow::array::PrimitiveArray<Int32Type>,
    &'a deltalake::arrow::array::PrimitiveArray<Int64Type>,
    &'a deltalake::arrow::array::PrimitiveArray<TimestampMicrosecondType>,
);

fn meta_columns(batch: &RecordBatch) -> Result<MetaColumns<'_>, JobError> {
    let col = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| JobError::Bronze(format!("a Bronze file has no {name} column")))
    };
    Ok((
        col("partition_id")?
            .as_primitive_opt::<Int32Type>()
            .ok_or_else(|| JobError::Bronze("partition_id is not an int".into()))?,
        col("sequence_number")?
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| JobError::Bronze("sequence_number is not a long".into()))?,
        col("enqueued_time")?
            .as_primitive_opt::<TimestampMicrosecondType>()
            .ok_or_else(|| JobError::Bronze("enqueued_time is not a timestamp".into()))?,
    ))
}

fn list_files(
    lake: &Lake,
    table: &DeltaTable,
    hub: u8,
    def: &TableDef,
) -> Result<Vec<FileRef>, JobError> {
    let store = table.object_store();
    let snapshot = table.snapshot().map_err(|e| lake.delta_error(def, e))?;
    Ok(snapshot
        .log_data()
        .iter()
        .map(|f| {
            let stats: Option<serde_json::Value> =
                f.stats().and_then(|s| serde_json::from_str(&s).ok());
            let range = |col: &str| {
                let s = stats.as_ref()?;
                Some((s["minValues"][col].as_i64()?, s["maxValues"][col].as_i64()?))
            };
            FileRef {
                hub,
                store: Arc::clone(&store),
                path: f.object_store_path(),
                partitions: range("partition_id").map(|(a, b)| (a as i32, b as i32)),
                sequences: range("sequence_number"),
            }
        })
        .collect())
}

async fn fetch(f: &FileRef) -> Result<Bytes, JobError> {
    f.store
        .get(&f.path)
        .await
        .map_err(|e| JobError::Bronze(format!("reading {}: {e}", f.path)))?
        .bytes()
        .await
        .map_err(|e| JobError::Bronze(format!("reading {}: {e}", f.path)))
}

fn decode(f: &FileRef, bytes: Bytes, columns: &[&str]) -> Result<Vec<RecordBatch>, JobError> {
    let parquet_err = |e: deltalake::parquet::errors::ParquetError| {
        JobError::Bronze(format!("decoding {}: {e}", f.path))
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(parquet_err)?;
    let mask = ProjectionMask::columns(builder.parquet_schema(), columns.iter().copied());
    let reader = builder
        .with_projection(mask)
        .with_batch_size(65_536)
        .build()
        .map_err(parquet_err)?;
    reader
        .map(|b| {
            b.and_then(boxoffice_lake::normalize)
                .map_err(|e| JobError::Bronze(format!("decoding {}: {e}", f.path)))
        })
        .collect()
}

/// Reads `columns` of `files` and hands each file's batches to `take`, returning what it made
/// in file order. Files are fetched a few at a time and decoded on every core: decoding Parquet
/// and copying rows out is most of a read, and files are independent.
async fn read_files<T: Send>(
    files: &[&FileRef],
    columns: &[&str],
    take: impl Fn(&FileRef, Vec<RecordBatch>) -> Result<T, JobError> + Sync,
) -> Result<Vec<T>, JobError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut made = Vec::with_capacity(files.len());
    for group in files.chunks(threads * 4) {
        let fetched = futures::future::try_join_all(group.iter().map(|f| fetch(f))).await?;
        let work: Vec<(&FileRef, Bytes)> = group.iter().copied().zip(fetched).collect();
        let next = AtomicUsize::new(0);
        let mut results: Vec<(usize, Result<T, JobError>)> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads.min(work.len()))
                .map(|_| {
                    scope.spawn(|| {
                        let mut done = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some((f, bytes)) = work.get(i) else {
                                break done;
                            };
                            done.push((
                                i,
                                decode(f, bytes.clone(), columns).and_then(|b| take(f, b)),
                            ));
                        }
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        results.sort_unstable_by_key(|(i, _)| *i);
        for (_, result) in results {
            made.push(result?);
        }
    }
    Ok(made)
}

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
    let read = read_files(&files, &EVENT_COLUMNS, |f, batches| {
        rows_in(f, &batches, &wanted)
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

/// The rows of one file's batches that `wanted` takes, each validated on the hub it landed on.
fn rows_in(
    f: &FileRef,
    batches: &[RecordBatch],
    wanted: &HashMap<PartitionId, &Range>,
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
                let (uid, body) = (uids.value(i).to_string(), bodies.value(i));
                // The arrival key is set once the partition's rows are ordered.
                let provisional = ArrivalKey {
                    at: times.value(i),
                    hub: f.hub,
                    partition: id.partition,
                    sequence,
                };
                let event = match validate_event(body, Some(hub)) {
                    Ok(event) => Ok(JoinEvent::new(uid, provisional, event, Arc::from(body))),
                    Err(invalid) => Err(Box::new(Refused {
                        uid,
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
