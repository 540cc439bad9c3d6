//! Checkpoints written by earlier versions, still read so that a stop across an upgrade resumes
//! from its checkpoint. Both carry each kept event's canonical JSON in a `body` column, parsed
//! again on load:
//! - the layout with bodies: remembered uids as two 64-bit halves;
//! - the layout before it: every row's uid as text, no halves.

use boxoffice_events::uid::uid_key;
use std::sync::Arc;

use deltalake::arrow::array::{AsArray, RecordBatch};
use deltalake::arrow::datatypes::{DataType, Field, Int32Type, Int64Type, Schema, UInt8Type};

use super::{KIND_UID, Stored, join_halves, keep};
use crate::silver::bookings_fact::join::{ArrivalKey, JoinEvent};

/// The layout with each kept event's body.
pub(super) fn with_bodies_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("kind", DataType::UInt8, false),
        Field::new("uid", DataType::Utf8, true),
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

/// The layout before remembered uids were stored as keys.
pub(super) fn text_uid_schema() -> Arc<Schema> {
    let fields: Vec<Field> = with_bodies_schema()
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

/// Whether `schema` is one of the layouts read here.
pub(super) fn is_older(schema: &Schema) -> bool {
    let fields = schema.fields();
    *fields == *with_bodies_schema().fields() || *fields == *text_uid_schema().fields()
}

/// Reads one batch of rows of either layout into `stored`, parsing each kept event's body.
pub(super) fn read_rows(batch: &RecordBatch, stored: &mut Stored) -> Result<(), String> {
    let col = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| format!("the checkpoint has no {name} column"))
    };
    let kind = col("kind")?.as_primitive::<UInt8Type>();
    let uid = col("uid")?.as_string::<i32>();
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
    let mode = stored.header.config.mode;
    stored.seen.reserve(batch.num_rows());
    for i in 0..batch.num_rows() {
        if kind.value(i) == KIND_UID {
            let key = match uid_halves {
                Some((high, low)) => join_halves(high.value(i), low.value(i)),
                None => uid_key(uid.value(i)),
            };
            stored.seen.insert(key, time.value(i));
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
        let flags = (matched.value(i), paid.value(i));
        keep(
            event,
            flags,
            mode,
            &mut stored.bookings,
            &mut stored.payments,
        );
    }
    Ok(())
}
