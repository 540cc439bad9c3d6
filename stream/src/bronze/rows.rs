//! Arrow batches for the Bronze tables.

use std::sync::Arc;

use boxoffice_events::Hub;
use boxoffice_lake::{PartitionRows, epoch_days, partitioned_by_date};
use chrono::{DateTime, Utc};
use deltalake::arrow::array::{
    ArrayRef, Date32Builder, Int32Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use deltalake::arrow::error::ArrowError;

use super::tables::{BOOKINGS_RAW, QUARANTINE};
use crate::ReceivedEvent;

/// A valid event and what validation learned of it.
pub struct RawRow<'a> {
    /// The event as the partition stamped it.
    pub event: &'a ReceivedEvent,
    /// Its stable identity.
    pub event_uid: String,
    /// 0 (legacy), 1 or 2.
    pub schema_version: i32,
}

/// An event refused by some stage.
#[derive(Debug, Clone, PartialEq)]
pub struct QuarantineRow {
    /// When it was received (its enqueued time when it went through a hub).
    pub received_at: DateTime<Utc>,
    /// Who produced it (`generator`, `http`, ...).
    pub source: String,
    /// The hub it was sent to, if any.
    pub hub: Option<String>,
    /// Every reason, `; `-separated.
    pub reason: String,
    /// The body exactly as received.
    pub body: String,
    /// The stage that refused it (`archive`, `ingest`, a job name).
    pub stage: String,
    /// Partition it sat in, when it went through a hub.
    pub partition_id: Option<i32>,
    /// Its sequence number there.
    pub sequence_number: Option<i64>,
    /// Its uid, when the body was JSON.
    pub event_uid: Option<String>,
    /// The file it was read from (`boxoffice ingest FILE`, a landing file), if any.
    pub source_file: Option<String>,
    /// Its line in that file, from 1.
    pub line: Option<i64>,
}

fn utc_micros() -> TimestampMicrosecondBuilder {
    TimestampMicrosecondBuilder::new().with_timezone("UTC")
}

/// Batches for `bronze/<hub>_raw`, one per ingest date (nearly always just one), each tagged
/// with its `ingest_date` partition value.
pub fn raw_partitions(
    hub: Hub,
    partition_id: i32,
    ingested_at: DateTime<Utc>,
    rows: &[&RawRow<'_>],
) -> Result<Vec<PartitionRows>, ArrowError> {
    partitioned_by_date(
        "ingest_date",
        rows.iter().copied(),
        |r| epoch_days(r.event.enqueued_time),
        |rows| raw_batch(hub, partition_id, ingested_at, rows),
    )
}

/// A batch for `bronze/<hub>_raw`.
fn raw_batch(
    hub: Hub,
    partition_id: i32,
    ingested_at: DateTime<Utc>,
    rows: &[&RawRow<'_>],
) -> Result<RecordBatch, ArrowError> {
    let n = rows.len();
    let body_bytes: usize = rows.iter().map(|r| r.event.body.len()).sum();
    let mut uid = StringBuilder::with_capacity(n, n * 36);
    let mut hub_col = StringBuilder::with_capacity(n, n * 8);
    let mut partition = Int32Builder::with_capacity(n);
    let mut seq = Int64Builder::with_capacity(n);
    let mut offset = Int64Builder::with_capacity(n);
    let mut key = StringBuilder::with_capacity(n, n * 12);
    let mut enqueued = utc_micros();
    let mut ingested = utc_micros();
    let mut source = StringBuilder::with_capacity(n, n * 9);
    let mut version = Int32Builder::with_capacity(n);
    let mut body = StringBuilder::with_capacity(n, body_bytes);
    let mut date = Date32Builder::with_capacity(n);
    for r in rows {
        let e = r.event;
        uid.append_value(&r.event_uid);
        hub_col.append_value(hub.as_str());
        partition.append_value(partition_id);
        seq.append_value(e.sequence_number);
        offset.append_value(e.offset);
        key.append_option(e.partition_key.as_deref());
        enqueued.append_value(e.enqueued_time.timestamp_micros());
        ingested.append_value(ingested_at.timestamp_micros());
        source.append_value(e.source.as_str());
        version.append_value(r.schema_version);
        body.append_value(&e.body);
        date.append_value(epoch_days(e.enqueued_time));
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(uid.finish()),
        Arc::new(hub_col.finish()),
        Arc::new(partition.finish()),
        Arc::new(seq.finish()),
        Arc::new(offset.finish()),
        Arc::new(key.finish()),
        Arc::new(enqueued.finish()),
        Arc::new(ingested.finish()),
        Arc::new(source.finish()),
        Arc::new(version.finish()),
        Arc::new(body.finish()),
        Arc::new(date.finish()),
    ];
    // Both raw tables share one schema.
    RecordBatch::try_new(BOOKINGS_RAW.arrow_schema(), columns)
}

/// A batch for `bronze/quarantine`.
pub fn quarantine_batch(rows: &[QuarantineRow]) -> Result<RecordBatch, ArrowError> {
    let n = rows.len();
    let mut received = utc_micros();
    let mut source = StringBuilder::new();
    let mut hub = StringBuilder::new();
    let mut reason = StringBuilder::new();
    let mut body = StringBuilder::new();
    let mut stage = StringBuilder::new();
    let mut partition = Int32Builder::with_capacity(n);
    let mut seq = Int64Builder::with_capacity(n);
    let mut uid = StringBuilder::new();
    let mut file = StringBuilder::new();
    let mut line = Int64Builder::with_capacity(n);
    for r in rows {
        received.append_value(r.received_at.timestamp_micros());
        source.append_value(&r.source);
        hub.append_option(r.hub.as_deref());
        reason.append_value(&r.reason);
        body.append_value(&r.body);
        stage.append_value(&r.stage);
        partition.append_option(r.partition_id);
        seq.append_option(r.sequence_number);
        uid.append_option(r.event_uid.as_deref());
        file.append_option(r.source_file.as_deref());
        line.append_option(r.line);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(received.finish()),
        Arc::new(source.finish()),
        Arc::new(hub.finish()),
        Arc::new(reason.finish()),
        Arc::new(body.finish()),
        Arc::new(stage.finish()),
        Arc::new(partition.finish()),
        Arc::new(seq.finish()),
        Arc::new(uid.finish()),
        Arc::new(file.finish()),
        Arc::new(line.finish()),
    ];
    RecordBatch::try_new(QUARANTINE.arrow_schema(), columns)
}
