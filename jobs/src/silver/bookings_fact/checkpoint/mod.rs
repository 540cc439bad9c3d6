//! The join's state, checkpointed with the batch it follows.
//!
//! One Parquet file per checkpoint: a row per kept booking or payment and per remembered
//! event_uid (its 16-byte key, not its text). A kept event is stored by its place in Bronze (hub,
//! partition, sequence number) and its match flags, not by its body: Bronze holds every body at
//! that place, and bodies were three quarters of the file (750,000 of them in a state at 5,000
//! events/s, a 300 MB file stored every minute). [`Stored::restore`] puts the bodies read back
//! from Bronze ([`super::kept_events`]) in place. The scalar parts (batch, positions, watermark
//! inputs, settings) travel in the file's key-value metadata, so a checkpoint is one atomic put.
//!
//! Checkpoints written by earlier versions carry each kept event's JSON and are still read
//! ([`older`]), so a stop across an upgrade resumes from its checkpoint.

mod older;
#[cfg(test)]
mod tests;

use boxoffice_ingest::bronze::{BOOKINGS_RAW, PAYMENTS_RAW};
use foldhash::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use deltalake::arrow::array::{
    ArrayRef, AsArray, BooleanBuilder, Int32Builder, Int64Builder, RecordBatch, UInt8Builder,
};
use deltalake::arrow::datatypes::{DataType, Field, Int32Type, Int64Type, Schema, UInt8Type};
use deltalake::parquet::arrow::ArrowWriter;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use deltalake::parquet::file::metadata::KeyValue;
use deltalake::parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use super::input::{BOOKINGS, Positions};
use super::join::{
    ArrivalKey, BookingIn, JoinConfig, JoinEvent, JoinState, Marks, Micros, PaymentIn, Pending,
    TimeMode, booking_time, payment_time,
};

const META_KEY: &str = "boxoffice.bookings_fact.state";
const KIND_BOOKING: u8 = 0;
const KIND_PAYMENT: u8 = 1;
const KIND_UID: u8 = 2;

/// The scalar part of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// The last batch the state includes.
    pub batch: u64,
    /// How far each Bronze partition was read.
    pub positions: Vec<(super::input::PartitionId, super::input::Progress)>,
    /// The watermark's inputs.
    pub marks: Marks,
    /// The settings the state was built with.
    pub config: JoinConfig,
}

/// A loaded checkpoint.
pub struct Checkpoint {
    /// The last batch the state includes.
    pub batch: u64,
    /// How far each Bronze partition was read.
    pub positions: Positions,
    /// The join's state.
    pub state: JoinState,
}

/// A kept event as a checkpoint stores it: where its body is in Bronze, and how it has matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeptPlace {
    /// Its arrival key: hub, partition and sequence number name its Bronze row.
    pub key: ArrivalKey,
    /// Whether it has matched at least once.
    pub matched: bool,
    /// Whether it has matched a successful payment (bookings only).
    pub paid: bool,
}

/// Kept events read back from Bronze, by hub, partition and sequence number.
pub type KeptBodies = HashMap<(u8, i32, i64), JoinEvent>;

/// A checkpoint as read from its file: whole once its kept events' bodies are given to
/// [`restore`](Self::restore).
pub struct Stored {
    header: Header,
    /// Kept events whose checkpoint carried their bodies (written by earlier versions).
    bookings: Vec<Pending<BookingIn>>,
    payments: Vec<Pending<PaymentIn>>,
    seen: HashMap<u128, Micros>,
    /// Kept events stored by their place in Bronze.
    pub places: Vec<KeptPlace>,
}

impl Stored {
    /// The last batch the state includes.
    pub fn batch(&self) -> u64 {
        self.header.batch
    }

    /// The settings the state was built with.
    pub fn config(&self) -> &JoinConfig {
        &self.header.config
    }

    /// How far each Bronze partition was read.
    pub fn positions(&self) -> Positions {
        self.header.positions.iter().copied().collect()
    }

    /// The state, with each kept event's body taken from `bodies`. Fails, naming the first one,
    /// when a kept event is missing: its Bronze row is gone, and the state cannot be rebuilt
    /// without it.
    pub fn restore(self, mut bodies: KeptBodies) -> Result<Checkpoint, String> {
        let positions = self.positions();
        let Stored {
            header,
            mut bookings,
            mut payments,
            seen,
            places,
        } = self;
        let mode = header.config.mode;
        for place in places {
            let k = place.key;
            let Some(mut event) = bodies.remove(&(k.hub, k.partition, k.sequence)) else {
                let (kind, table) = if k.hub == BOOKINGS {
                    ("booking", BOOKINGS_RAW.qualified_name())
                } else {
                    ("payment", PAYMENTS_RAW.qualified_name())
                };
                return Err(format!(
                    "the join's state keeps the {kind} at partition {} sequence {} of {table}, \
                     which is no longer there",
                    k.partition, k.sequence
                ));
            };
            event.set_arrival(k);
            let flags = (place.matched, place.paid);
            keep(
                event.without_body(),
                flags,
                mode,
                &mut bookings,
                &mut payments,
            );
        }
        Ok(Checkpoint {
            batch: header.batch,
            positions,
            state: JoinState::restore(header.config, header.marks, bookings, payments, seen),
        })
    }
}

/// Adds a kept event to the bookings or payments a state is restored from.
fn keep(
    event: JoinEvent,
    (matched, paid): (bool, bool),
    mode: TimeMode,
    bookings: &mut Vec<Pending<BookingIn>>,
    payments: &mut Vec<Pending<PaymentIn>>,
) {
    match event {
        JoinEvent::Booking(item) => bookings.push(Pending {
            time: booking_time(mode, &item),
            item,
            matched,
            paid,
        }),
        JoinEvent::Payment(item) => payments.push(Pending {
            time: payment_time(mode, &item),
            item,
            matched,
            paid: false,
        }),
    }
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("kind", DataType::UInt8, false),
        // A remembered uid's 16-byte key as two numbers: Parquet's fixed-width binary path
        // copied a buffer handle per value.
        Field::new("uid_high", DataType::Int64, true),
        Field::new("uid_low", DataType::Int64, true),
        Field::new("arrival", DataType::Int64, true),
        Field::new("hub", DataType::UInt8, true),
        Field::new("partition", DataType::Int32, true),
        Field::new("sequence", DataType::Int64, true),
        Field::new("matched", DataType::Boolean, true),
        Field::new("time", DataType::Int64, true),
        Field::new("paid", DataType::Boolean, true),
    ]))
}

struct Columns {
    kind: UInt8Builder,
    uid_high: Int64Builder,
    uid_low: Int64Builder,
    arrival: Int64Builder,
    hub: UInt8Builder,
    partition: Int32Builder,
    sequence: Int64Builder,
    matched: BooleanBuilder,
    time: Int64Builder,
    paid: BooleanBuilder,
}

impl Columns {
    fn with_capacity(rows: usize) -> Self {
        Columns {
            kind: UInt8Builder::with_capacity(rows),
            uid_high: Int64Builder::with_capacity(rows),
            uid_low: Int64Builder::with_capacity(rows),
            arrival: Int64Builder::with_capacity(rows),
            hub: UInt8Builder::with_capacity(rows),
            partition: Int32Builder::with_capacity(rows),
            sequence: Int64Builder::with_capacity(rows),
            matched: BooleanBuilder::with_capacity(rows),
            time: Int64Builder::with_capacity(rows),
            paid: BooleanBuilder::with_capacity(rows),
        }
    }

    fn event(&mut self, kind: u8, key: ArrivalKey, (matched, paid): (bool, bool)) {
        self.kind.append_value(kind);
        self.uid_high.append_null();
        self.uid_low.append_null();
        self.arrival.append_value(key.at);
        self.hub.append_value(key.hub);
        self.partition.append_value(key.partition);
        self.sequence.append_value(key.sequence);
        self.matched.append_value(matched);
        self.time.append_null();
        self.paid.append_value(paid);
    }

    fn uid(&mut self, key: u128, time: Micros) {
        let (high, low) = split(key);
        self.kind.append_value(KIND_UID);
        self.uid_high.append_value(high);
        self.uid_low.append_value(low);
        self.arrival.append_null();
        self.hub.append_null();
        self.partition.append_null();
        self.sequence.append_null();
        self.matched.append_null();
        self.time.append_value(time);
        self.paid.append_null();
    }

    fn finish(mut self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.kind.finish()),
            Arc::new(self.uid_high.finish()),
            Arc::new(self.uid_low.finish()),
            Arc::new(self.arrival.finish()),
            Arc::new(self.hub.finish()),
            Arc::new(self.partition.finish()),
            Arc::new(self.sequence.finish()),
            Arc::new(self.matched.finish()),
            Arc::new(self.time.finish()),
            Arc::new(self.paid.finish()),
        ]
    }
}

/// A uid key's two halves, as stored.
fn split(key: u128) -> (i64, i64) {
    ((key >> 64) as u64 as i64, key as u64 as i64)
}

/// A uid key from its two stored halves.
fn join_halves(high: i64, low: i64) -> u128 {
    (u128::from(high as u64) << 64) | u128::from(low as u64)
}

/// Serialises the state after `batch` into one Parquet file.
pub fn encode(batch: u64, positions: &Positions, state: &JoinState) -> Result<Bytes, String> {
    let (bookings, payments) = state.pending();
    let mut c = Columns::with_capacity(bookings + payments + state.seen.len());
    for b in state.bookings.values().flatten() {
        c.event(KIND_BOOKING, b.item.arrival, (b.matched, b.paid));
    }
    for p in state.payments.values().flatten() {
        c.event(KIND_PAYMENT, p.item.arrival, (p.matched, false));
    }
    for (uid, time) in &state.seen {
        c.uid(*uid, *time);
    }
    let header = Header {
        batch,
        positions: positions.iter().map(|(k, v)| (*k, *v)).collect(),
        marks: state.marks(),
        config: *state.config(),
    };
    let rows = RecordBatch::try_new(schema(), c.finish()).map_err(|e| e.to_string())?;
    write(&header, &rows, properties())
}

/// One Parquet file of `rows`, `header` in its key-value metadata.
fn write(header: &Header, rows: &RecordBatch, props: WriterProperties) -> Result<Bytes, String> {
    let header = serde_json::to_string(header).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let mut writer =
        ArrowWriter::try_new(&mut out, rows.schema(), Some(props)).map_err(|e| e.to_string())?;
    writer.write(rows).map_err(|e| e.to_string())?;
    writer.append_key_value_metadata(KeyValue::new(META_KEY.to_string(), header));
    writer.close().map_err(|e| e.to_string())?;
    Ok(Bytes::from(out))
}

/// Millions of random uids: they get neither a dictionary nor statistics.
fn properties() -> WriterProperties {
    boxoffice_lake::blob_columns(
        WriterProperties::builder(),
        &["uid_high", "uid_low", "time"],
    )
    .build()
}

/// Reads a checkpoint back; its kept events stay places until [`Stored::restore`].
pub fn decode(bytes: Bytes) -> Result<Stored, String> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| e.to_string())?;
    let header: Header = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == META_KEY))
        .and_then(|k| k.value.as_deref())
        .ok_or("no checkpoint header")
        .and_then(|v| serde_json::from_str(v).map_err(|_| "unreadable checkpoint header"))?;
    let mut stored = Stored {
        header,
        bookings: Vec::new(),
        payments: Vec::new(),
        seen: HashMap::default(),
        places: Vec::new(),
    };
    for batch in builder.build().map_err(|e| e.to_string())? {
        let batch = batch.map_err(|e| e.to_string())?;
        if *batch.schema_ref().fields() == *schema().fields() {
            read_rows(&batch, &mut stored)?;
        } else if older::is_older(batch.schema_ref()) {
            older::read_rows(&batch, &mut stored)?;
        } else {
            return Err("the checkpoint was written by another version of boxoffice".into());
        }
    }
    Ok(stored)
}

fn read_rows(batch: &RecordBatch, stored: &mut Stored) -> Result<(), String> {
    let col = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| format!("the checkpoint has no {name} column"))
    };
    let kind = col("kind")?.as_primitive::<UInt8Type>();
    let high = col("uid_high")?.as_primitive::<Int64Type>();
    let low = col("uid_low")?.as_primitive::<Int64Type>();
    let arrival = col("arrival")?.as_primitive::<Int64Type>();
    let hub = col("hub")?.as_primitive::<UInt8Type>();
    let partition = col("partition")?.as_primitive::<Int32Type>();
    let sequence = col("sequence")?.as_primitive::<Int64Type>();
    let matched = col("matched")?.as_boolean();
    let time = col("time")?.as_primitive::<Int64Type>();
    let paid = col("paid")?.as_boolean();
    stored.seen.reserve(batch.num_rows());
    for i in 0..batch.num_rows() {
        if kind.value(i) == KIND_UID {
            let key = join_halves(high.value(i), low.value(i));
            stored.seen.insert(key, time.value(i));
            continue;
        }
        stored.places.push(KeptPlace {
            key: ArrivalKey {
                at: arrival.value(i),
                hub: hub.value(i),
                partition: partition.value(i),
                sequence: sequence.value(i),
            },
            matched: matched.value(i),
            paid: paid.value(i),
        });
    }
    Ok(())
}
