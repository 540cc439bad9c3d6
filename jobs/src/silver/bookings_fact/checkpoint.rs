//! The join's state, checkpointed with the batch it follows.
//!
//! One Parquet file per checkpoint: a row per kept booking or payment (with its body, parsed again
//! on load: the kept event's canonical JSON, since the state does not keep raw bodies) and per
//! remembered event_uid; the scalar parts (batch, positions, watermark
//! inputs, settings) travel in the file's key-value metadata, so a checkpoint is one atomic put.

use boxoffice_events::canonical::{booking_json, payment_json};
use boxoffice_events::uid::uid_key;
use foldhash::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use deltalake::arrow::array::{
    ArrayRef, AsArray, BooleanBuilder, Int32Builder, Int64Builder, RecordBatch, StringBuilder,
    UInt8Builder,
};
use deltalake::arrow::datatypes::{DataType, Field, Int32Type, Int64Type, Schema, UInt8Type};
use deltalake::parquet::arrow::ArrowWriter;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use deltalake::parquet::file::metadata::KeyValue;
use deltalake::parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use super::input::Positions;
use super::join::{
    ArrivalKey, BookingIn, EventUid, JoinConfig, JoinEvent, JoinState, Marks, Micros, PaymentIn,
    Pending,
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

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("kind", DataType::UInt8, false),
        Field::new("uid", DataType::Utf8, false),
        Field::new("arrival", DataType::Int64, true),
        Field::new("hub", DataType::UInt8, true),
        Field::new("partition", DataType::Int32, true),
        Field::new("sequence", DataType::Int64, true),
        Field::new("body", DataType::Utf8, true),
        Field::new("matched", DataType::Boolean, true),
        Field::new("time", DataType::Int64, true),
        Field::new("paid", DataType::Boolean, true),
    ]))
}

#[derive(Default)]
struct Columns {
    kind: UInt8Builder,
    uid: StringBuilder,
    arrival: Int64Builder,
    hub: UInt8Builder,
    partition: Int32Builder,
    sequence: Int64Builder,
    body: StringBuilder,
    matched: BooleanBuilder,
    time: Int64Builder,
    paid: BooleanBuilder,
}

impl Columns {
    fn event(&mut self, kind: u8, uid: &str, key: ArrivalKey, body: &str, flags: (bool, bool)) {
        let (matched, paid) = flags;
        self.kind.append_value(kind);
        self.uid.append_value(uid);
        self.arrival.append_value(key.at);
        self.hub.append_value(key.hub);
        self.partition.append_value(key.partition);
        self.sequence.append_value(key.sequence);
        self.body.append_value(body);
        self.matched.append_value(matched);
        self.time.append_null();
        self.paid.append_value(paid);
    }

    fn uid(&mut self, uid: &str, time: Micros) {
        self.kind.append_value(KIND_UID);
        self.uid.append_value(uid);
        self.arrival.append_null();
        self.hub.append_null();
        self.partition.append_null();
        self.sequence.append_null();
        self.body.append_null();
        self.matched.append_null();
        self.time.append_value(time);
        self.paid.append_null();
    }

    fn finish(mut self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.kind.finish()),
            Arc::new(self.uid.finish()),
            Arc::new(self.arrival.finish()),
            Arc::new(self.hub.finish()),
            Arc::new(self.partition.finish()),
            Arc::new(self.sequence.finish()),
            Arc::new(self.body.finish()),
            Arc::new(self.matched.finish()),
            Arc::new(self.time.finish()),
            Arc::new(self.paid.finish()),
        ]
    }
}

/// Serialises the state after `batch` into one Parquet file.
pub fn encode(batch: u64, positions: &Positions, state: &JoinState) -> Result<Bytes, String> {
    let mut c = Columns::default();
    for b in state.bookings.values().flatten() {
        c.event(
            KIND_BOOKING,
            &b.item.uid.text(),
            b.item.arrival,
            &booking_json(&b.item.booking),
            (b.matched, b.paid),
        );
    }
    for p in state.payments.values().flatten() {
        c.event(
            KIND_PAYMENT,
            &p.item.uid.text(),
            p.item.arrival,
            &payment_json(&p.item.payment),
            (p.matched, false),
        );
    }
    for (uid, time) in &state.seen {
        // Spelled on the stack: after a drain this is every uid of the last 10 minutes.
        c.uid(&EventUid::Uuid(*uid).text(), *time);
    }
    let header = Header {
        batch,
        positions: positions.iter().map(|(k, v)| (*k, *v)).collect(),
        marks: state.marks(),
        config: *state.config(),
    };
    let header = serde_json::to_string(&header).map_err(|e| e.to_string())?;
    let rows = RecordBatch::try_new(schema(), c.finish()).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let mut writer =
        ArrowWriter::try_new(&mut out, schema(), Some(properties())).map_err(|e| e.to_string())?;
    writer.write(&rows).map_err(|e| e.to_string())?;
    writer.append_key_value_metadata(KeyValue::new(META_KEY.to_string(), header));
    writer.close().map_err(|e| e.to_string())?;
    Ok(Bytes::from(out))
}

/// Millions of random uids and one JSON body per kept event: neither gets a dictionary or
/// statistics.
fn properties() -> WriterProperties {
    boxoffice_lake::blob_columns(WriterProperties::builder(), &["uid", "body"]).build()
}

/// Reads a checkpoint back, parsing each kept event's body again.
pub fn decode(bytes: Bytes) -> Result<Checkpoint, String> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| e.to_string())?;
    let header: Header = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == META_KEY))
        .and_then(|k| k.value.as_deref())
        .ok_or("no checkpoint header")
        .and_then(|v| serde_json::from_str(v).map_err(|_| "unreadable checkpoint header"))?;
    let (mut bookings, mut payments, mut seen) = (Vec::new(), Vec::new(), HashMap::default());
    for batch in builder.build().map_err(|e| e.to_string())? {
        let batch = batch.map_err(|e| e.to_string())?;
        if batch.schema().fields() != schema().fields() {
            return Err("the checkpoint was written by another version of boxoffice".into());
        }
        read_rows(&batch, &mut bookings, &mut payments, &mut seen)?;
    }
    Ok(Checkpoint {
        batch: header.batch,
        positions: header.positions.into_iter().collect(),
        state: JoinState::restore(header.config, header.marks, bookings, payments, seen),
    })
}

fn read_rows(
    batch: &RecordBatch,
    bookings: &mut Vec<Pending<BookingIn>>,
    payments: &mut Vec<Pending<PaymentIn>>,
    seen: &mut HashMap<u128, Micros>,
) -> Result<(), String> {
    let col = |i: usize| batch.column(i);
    let kind = col(0).as_primitive::<UInt8Type>();
    let uid = col(1).as_string::<i32>();
    let arrival = col(2).as_primitive::<Int64Type>();
    let hub = col(3).as_primitive::<UInt8Type>();
    let partition = col(4).as_primitive::<Int32Type>();
    let sequence = col(5).as_primitive::<Int64Type>();
    let body = col(6).as_string::<i32>();
    let matched = col(7).as_boolean();
    let time = col(8).as_primitive::<Int64Type>();
    let paid = col(9).as_boolean();
    for i in 0..batch.num_rows() {
        if kind.value(i) == KIND_UID {
            seen.insert(uid_key(uid.value(i)), time.value(i));
            continue;
        }
        let key = ArrivalKey {
            at: arrival.value(i),
            hub: hub.value(i),
            partition: partition.value(i),
            sequence: sequence.value(i),
        };
        let event = JoinEvent::parse(uid.value(i), key, body.value(i))
            .map_err(|e| format!("a kept event no longer parses: {e}"))?;
        match event {
            JoinEvent::Booking(item) => bookings.push(Pending {
                item,
                matched: matched.value(i),
                paid: paid.value(i),
            }),
            JoinEvent::Payment(item) => payments.push(Pending {
                item,
                matched: matched.value(i),
                paid: false,
            }),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::input::{BOOKINGS, PartitionId, Progress};
    use super::super::join::{JoinEvent, JoinOutput};
    use super::*;

    fn events(n: usize) -> Vec<JoinEvent> {
        super::super::join::tests::generated(77, n)
    }

    /// Matches, unpaid, orphans (each by uid, sorted), late count, duplicate count.
    type Summary = (Vec<(String, String)>, Vec<String>, Vec<String>, usize, u64);

    fn summary(out: &JoinOutput) -> Summary {
        let mut m: Vec<_> = out
            .matches
            .iter()
            .map(|m| (m.booking.uid.to_string(), m.payment.uid.to_string()))
            .collect();
        m.sort();
        let mut u: Vec<_> = out.unpaid.iter().map(|b| b.uid.to_string()).collect();
        u.sort();
        let mut o: Vec<_> = out.orphans.iter().map(|p| p.uid.to_string()).collect();
        o.sort();
        (m, u, o, out.late.len(), out.duplicates)
    }

    #[test]
    fn a_restored_state_continues_exactly_like_the_original() {
        let all = events(20_000);
        let (first, rest) = all.split_at(all.len() / 2);
        let mut original = JoinState::new(JoinConfig::default());
        let mut ignored = JoinOutput::default();
        for e in first {
            original.process(e.clone(), &mut ignored);
        }
        original.evict(&mut ignored);
        let positions: Positions = [(
            PartitionId {
                hub: BOOKINGS,
                partition: 1,
            },
            Progress {
                done: 41,
                arrival: 7,
            },
        )]
        .into();
        let bytes = encode(3, &positions, &original).expect("encode");
        let restored = decode(bytes).expect("decode");
        assert_eq!(restored.batch, 3);
        assert_eq!(restored.positions, positions);
        assert_eq!(restored.state.pending(), original.pending());
        assert_eq!(restored.state.marks(), original.marks());
        assert_eq!(restored.state.seen, original.seen);

        let mut continued = restored.state;
        let (mut a, mut b) = (JoinOutput::default(), JoinOutput::default());
        for e in rest {
            original.process(e.clone(), &mut a);
            continued.process(e.clone(), &mut b);
        }
        original.drain(&mut a);
        continued.drain(&mut b);
        assert!(!a.matches.is_empty() && !a.unpaid.is_empty());
        assert_eq!(summary(&a), summary(&b));
    }
}
