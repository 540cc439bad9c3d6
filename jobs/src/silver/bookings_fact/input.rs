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

use boxoffice_ingest::bronze::{BOOKINGS_RAW, PAYMENTS_RAW};
use boxoffice_lake::{Lake, TableDef};
use deltalake::DeltaTable;
use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::datatypes::{Int32Type, Int64Type, TimestampMicrosecondType};
use deltalake::parquet::arrow::ProjectionMask;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};

use super::join::{ArrivalKey, Micros};
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

/// The Bronze tables, kept open between scans so each scan reads only the new commits of their
/// logs (a long `up` makes thousands of them).
#[derive(Default)]
pub struct BronzeTables {
    open: HashMap<&'static str, DeltaTable>,
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
    let mut rows: BTreeMap<PartitionId, Vec<(i64, Micros)>> = BTreeMap::new();
    for f in &files {
        let wanted = f.partitions.is_none_or(|(lo, hi)| {
            (lo..=hi).any(|p| {
                let id = PartitionId {
                    hub: f.hub,
                    partition: p,
                };
                let done = positions.get(&id).map_or(-1, |p| p.done);
                f.sequences.is_none_or(|(_, max)| max > done)
            })
        });
        if !wanted {
            continue;
        }
        for batch in read_file(f, &["partition_id", "sequence_number", "enqueued_time"]).await? {
            let (parts, seqs, times) = meta_columns(&batch)?;
            for i in 0..batch.num_rows() {
                let id = PartitionId {
                    hub: f.hub,
                    partition: parts.value(i),
                };
                if seqs.value(i) > positions.get(&id).map_or(-1, |p| p.done) {
                    rows.entry(id)
                        .or_default()
                        .push((seqs.value(i), times.value(i)));
                }
            }
        }
    }
    for r in rows.values_mut() {
        r.sort_unstable();
        r.dedup_by_key(|(seq, _)| *seq);
    }
    Ok(Landed { files, rows })
}

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

async fn read_file(f: &FileRef, columns: &[&str]) -> Result<Vec<RecordBatch>, JobError> {
    let bytes = f
        .store
        .get(&f.path)
        .await
        .map_err(|e| JobError::Bronze(format!("reading {}: {e}", f.path)))?
        .bytes()
        .await
        .map_err(|e| JobError::Bronze(format!("reading {}: {e}", f.path)))?;
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
                r.iter()
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
    let mut candidates: Vec<(ArrivalKey, PartitionId)> = arrivals
        .iter()
        .flat_map(|(id, rows)| {
            rows.iter()
                .filter(|(_, at)| *at < horizon || drain)
                .map(|&(seq, at)| {
                    let key = ArrivalKey {
                        at,
                        hub: id.hub,
                        partition: id.partition,
                        sequence: seq,
                    };
                    (key, *id)
                })
        })
        .collect();
    candidates.sort_unstable();
    let total_new: usize = arrivals.values().map(Vec::len).sum();
    let taken = candidates.len().min(max_events);
    let mut ranges: BTreeMap<PartitionId, Range> = BTreeMap::new();
    for (key, id) in &candidates[..taken] {
        let before = positions.get(id).copied().unwrap_or_default();
        let range = ranges.entry(*id).or_insert(Range {
            id: *id,
            before,
            after: before,
        });
        range.after = Progress {
            done: key.sequence,
            arrival: key.at,
        };
    }
    (ranges.into_values().collect(), taken == total_new)
}

/// A Bronze event as the job reads it.
#[derive(Debug, Clone)]
pub struct BronzeEvent {
    /// Its place in the arrival order.
    pub key: ArrivalKey,
    /// Its event_uid, as the archiver computed it.
    pub uid: String,
    /// The raw JSON.
    pub body: Arc<str>,
}

/// A Bronze row as read: sequence number, enqueued time, event_uid, body.
type RawRow = (i64, Micros, String, Arc<str>);

/// Reads the events of `ranges`, in arrival order. `landed` may come from any scan at least as
/// recent as the plan (after a crash, a new one): Bronze only grows.
pub async fn read(landed: &Landed, ranges: &[Range]) -> Result<Vec<BronzeEvent>, JobError> {
    let mut by_partition: HashMap<PartitionId, Vec<RawRow>> = HashMap::new();
    let wanted: HashMap<PartitionId, &Range> = ranges.iter().map(|r| (r.id, r)).collect();
    for f in &landed.files {
        if !ranges
            .iter()
            .any(|r| f.may_hold(r.id, r.before.done, r.after.done))
        {
            continue;
        }
        let columns = [
            "partition_id",
            "sequence_number",
            "enqueued_time",
            "event_uid",
            "body",
        ];
        for batch in read_file(f, &columns).await? {
            let (parts, seqs, times) = meta_columns(&batch)?;
            let uids = batch
                .column_by_name("event_uid")
                .and_then(|c| c.as_string_opt::<i32>())
                .ok_or_else(|| JobError::Bronze("event_uid is not a string".into()))?;
            let bodies = batch
                .column_by_name("body")
                .and_then(|c| c.as_string_opt::<i32>())
                .ok_or_else(|| JobError::Bronze("body is not a string".into()))?;
            for i in 0..batch.num_rows() {
                let id = PartitionId {
                    hub: f.hub,
                    partition: parts.value(i),
                };
                let seq = seqs.value(i);
                if let Some(r) = wanted.get(&id)
                    && seq > r.before.done
                    && seq <= r.after.done
                    && !uids.is_null(i)
                {
                    by_partition.entry(id).or_default().push((
                        seq,
                        times.value(i),
                        uids.value(i).to_string(),
                        Arc::from(bodies.value(i)),
                    ));
                }
            }
        }
    }
    let mut events = Vec::new();
    for r in ranges {
        // Sequence numbers of quarantined events are missing here: gaps are normal.
        let mut rows = by_partition.remove(&r.id).unwrap_or_default();
        rows.sort_unstable_by_key(|row| row.0);
        rows.dedup_by_key(|row| row.0);
        let mut at = r.before.arrival;
        for (seq, t, uid, body) in rows {
            at = at.max(t);
            events.push(BronzeEvent {
                key: ArrivalKey {
                    at,
                    hub: r.id.hub,
                    partition: r.id.partition,
                    sequence: seq,
                },
                uid,
                body,
            });
        }
    }
    events.sort_unstable_by_key(|e| e.key);
    Ok(events)
}
