//! The join's state, checkpointed with the batch it follows.
//!
//! One Parquet file per checkpoint: a row per kept booking or payment (with its body, parsed again
//! on load: the kept event's canonical JSON, since the state does not keep raw bodies) and per
//! remembered event_uid (its 16-byte key, not its text: after a drain there are millions, and
//! spelled as 36 characters they made the file twice as large). The scalar parts (batch,
//! positions, watermark inputs, settings) travel in the file's key-value metadata, so a checkpoint
//! is one atomic put.

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

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("kind", DataType::UInt8, false),
        Field::new("uid", DataType::Utf8, true),
        // A remembered uid's 16-byte key as two numbers: Parquet's fixed-width binary path
        // copied a buffer handle per value.
        Field::new("uid_high", DataType::Int64, true),
        Field::new("uid_low", DataType::Int64, true),
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

/// The layout before remembered uids were stored as keys: every row's uid as text. Still read,
/// so a stop across an upgrade resumes from its checkpoint.
fn text_uid_schema() -> Arc<Schema> {
    let fields: Vec<Field> = schema()
        .fields()
        .iter()
        .filter(|f| !f.name().starts_with("uid_"))
        .map(|f| match f.name().as_str() {
            "uid" => Field::new("uid", DataType::Utf8, false),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

struct Columns {
    kind: UInt8Builder,
    uid: StringBuilder,
    uid_high: Int64Builder,
    uid_low: Int64Builder,
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
    fn with_capacity(events: usize, uids: usize) -> Self {
        let rows = events + uids;
        Columns {
            kind: UInt8Builder::with_capacity(rows),
            uid: StringBuilder::with_capacity(rows, events * 36),
            uid_high: Int64Builder::with_capacity(rows),
            uid_low: Int64Builder::with_capacity(rows),
            arrival: Int64Builder::with_capacity(rows),
            hub: UInt8Builder::with_capacity(rows),
            partition: Int32Builder::with_capacity(rows),
            sequence: Int64Builder::with_capacity(rows),
            body: StringBuilder::with_capacity(rows, events * 400),
            matched: BooleanBuilder::with_capacity(rows),
            time: Int64Builder::with_capacity(rows),
            paid: BooleanBuilder::with_capacity(rows),
        }
    }

    fn event(&mut self, kind: u8, uid: &str, key: ArrivalKey, body: &str, flags: (bool, bool)) {
        let (matched, paid) = flags;
        self.kind.append_value(kind);
        self.uid.append_value(uid);
        self.uid_high.append_null();
        self.uid_low.append_null();
        self.arrival.append_value(key.at);
        self.hub.append_value(key.hub);
        self.partition.append_value(key.partition);
        self.sequence.append_value(key.sequence);
        self.body.append_value(body);
        self.matched.append_value(matched);
        self.time.append_null();
        self.paid.append_value(paid);
    }

    fn uid(&mut self, key: u128, time: Micros) {
        let (high, low) = split(key);
        self.kind.append_value(KIND_UID);
        self.uid.append_null();
        self.uid_high.append_value(high);
        self.uid_low.append_value(low);
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
            Arc::new(self.uid_high.finish()),
            Arc::new(self.uid_low.finish()),
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
    let mut c = Columns::with_capacity(bookings + payments, state.seen.len());
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
        c.uid(*uid, *time);
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

/// Millions of random uids and one JSON body per kept event: none gets a dictionary or
/// statistics.
fn properties() -> WriterProperties {
    boxoffice_lake::blob_columns(
        WriterProperties::builder(),
        &["uid", "uid_high", "uid_low", "time", "body"],
    )
    .build()
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
        let fields = batch.schema_ref().fields().clone();
        if fields != *schema().fields() && fields != *text_uid_schema().fields() {
            return Err("the checkpoint was written by another version of boxoffice".into());
        }
        read_rows(
            &batch,
            &mut bookings,
            &mut payments,
            &mut seen,
            header.config.mode,
        )?;
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
    mode: TimeMode,
) -> Result<(), String> {
    let col = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| format!("the checkpoint has no {name} column"))
    };
    let kind = col("kind")?.as_primitive::<UInt8Type>();
    let uid = col("uid")?.as_string::<i32>();
    // Absent from checkpoints written before uids were stored as keys.
    let uid_halves = match (
        batch.column_by_name("uid_high"),
        batch.column_by_name("uid_low"),
    ) {
        (Some(high), Some(low)) => Some((
            high.as_primitive::<Int64Type>(),
            low.as_primitive::<Int64Type>(),
        )),
        _ => None,
    };
    let arrival = col("arrival")?.as_primitive::<Int64Type>();
    let hub = col("hub")?.as_primitive::<UInt8Type>();
    let partition = col("partition")?.as_primitive::<Int32Type>();
    let sequence = col("sequence")?.as_primitive::<Int64Type>();
    let body = col("body")?.as_string::<i32>();
    let matched = col("matched")?.as_boolean();
    let time = col("time")?.as_primitive::<Int64Type>();
    let paid = col("paid")?.as_boolean();
    seen.reserve(batch.num_rows());
    for i in 0..batch.num_rows() {
        if kind.value(i) == KIND_UID {
            let key = match uid_halves {
                Some((high, low)) => join_halves(high.value(i), low.value(i)),
                None => uid_key(uid.value(i)),
            };
            seen.insert(key, time.value(i));
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
                time: booking_time(mode, &item),
                item,
                matched: matched.value(i),
                paid: paid.value(i),
            }),
            JoinEvent::Payment(item) => payments.push(Pending {
                time: payment_time(mode, &item),
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

    /// The same checkpoint in the layout written before remembered uids were stored as keys:
    /// each uid spelled as text in the `uid` column, no `uid_high` and `uid_low` columns.
    fn in_text_uid_layout(bytes: Bytes) -> Bytes {
        use deltalake::arrow::array::{Array, StringArray};
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).expect("reader");
        let header = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|k| k.key == META_KEY).cloned())
            .expect("header");
        let mut out = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut out, text_uid_schema(), None).expect("writer");
        for batch in builder.build().expect("batches") {
            let batch = batch.expect("batch");
            let uid = batch.column(1).as_string::<i32>();
            let high = batch.column(2).as_primitive::<Int64Type>();
            let low = batch.column(3).as_primitive::<Int64Type>();
            let spelled: StringArray = (0..batch.num_rows())
                .map(|i| {
                    if uid.is_null(i) {
                        let key = join_halves(high.value(i), low.value(i));
                        Some(super::super::join::EventUid::Uuid(key).to_string())
                    } else {
                        Some(uid.value(i).to_string())
                    }
                })
                .collect();
            let mut columns = batch.columns().to_vec();
            columns[1] = Arc::new(spelled);
            columns.drain(2..4);
            let old = RecordBatch::try_new(text_uid_schema(), columns).expect("old layout");
            writer.write(&old).expect("write");
        }
        writer.append_key_value_metadata(header);
        writer.close().expect("close");
        Bytes::from(out)
    }

    #[test]
    fn a_checkpoint_with_uids_as_text_still_loads() {
        let mut state = JoinState::new(JoinConfig::default());
        let mut ignored = JoinOutput::default();
        for e in events(4_000) {
            state.process(e, &mut ignored);
        }
        let bytes = encode(5, &Positions::new(), &state).expect("encode");
        let restored = decode(in_text_uid_layout(bytes)).expect("decode the old layout");
        assert_eq!(restored.batch, 5);
        assert!(state.seen.len() > 1_000);
        assert_eq!(restored.state.seen, state.seen);
        assert_eq!(restored.state.pending(), state.pending());
    }
}
