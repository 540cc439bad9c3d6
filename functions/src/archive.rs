//! `archive_bookings` and `archive_payments`: Event Hub triggers (cardinality many) that land
//! each partition's batch in Bronze exactly once, through the same archiver as `up`. The batch
//! arrives as an array or as a string holding one; partition, sequence numbers, offsets,
//! enqueued times and partition keys come from the trigger metadata. A failure answers 500, so
//! the host delivers the batch again, and the archiver lands only what is new.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use boxoffice_events::Hub;
use boxoffice_ingest::bronze::BronzeArchiver;
use boxoffice_ingest::{ReceivedEvent, Source};
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::Handler;
use crate::protocol::{Failed, Invocation, Reply, unwrap_string};

/// The trigger binding's name in both function.json files.
pub const BINDING: &str = "events";

/// `POST /archive_bookings`.
pub async fn bookings(
    State(handler): State<Arc<Handler>>,
    Json(invocation): Json<Invocation>,
) -> Result<Reply, Failed> {
    archive(&handler, Hub::Bookings, &invocation).await
}

/// `POST /archive_payments`.
pub async fn payments(
    State(handler): State<Arc<Handler>>,
    Json(invocation): Json<Invocation>,
) -> Result<Reply, Failed> {
    archive(&handler, Hub::Payments, &invocation).await
}

fn array(metadata: &serde_json::Map<String, Value>, key: &str) -> Result<Vec<Value>, Failed> {
    match metadata.get(key).map(unwrap_string) {
        Some(Value::Array(items)) => Ok(items),
        _ => Err(Failed(format!("the trigger metadata has no {key}"))),
    }
}

fn number(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// The batch as the archiver takes it.
pub fn received(invocation: &Invocation) -> Result<(i32, Vec<ReceivedEvent>), Failed> {
    let bodies = match invocation.data.get(BINDING).map(unwrap_string) {
        Some(Value::Array(items)) => items,
        _ => return Err(Failed(format!("the invocation has no {BINDING} array"))),
    };
    let md = &invocation.metadata;
    let partition = md
        .get("PartitionContext")
        .map(unwrap_string)
        .and_then(|p| p.get("PartitionId").and_then(number))
        .ok_or_else(|| Failed("the trigger metadata has no PartitionContext.PartitionId".into()))?;
    let sequences = array(md, "SequenceNumberArray")?;
    let offsets = array(md, "OffsetArray")?;
    let times = array(md, "EnqueuedTimeUtcArray")?;
    let keys = array(md, "PartitionKeyArray").unwrap_or_default();
    if [sequences.len(), offsets.len(), times.len()] != [bodies.len(); 3] {
        return Err(Failed(format!(
            "{} events but {} sequence numbers, {} offsets, {} enqueued times",
            bodies.len(),
            sequences.len(),
            offsets.len(),
            times.len()
        )));
    }
    let mut events = Vec::with_capacity(bodies.len());
    for (i, body) in bodies.into_iter().enumerate() {
        let sequence_number = number(&sequences[i])
            .ok_or_else(|| Failed(format!("sequence number {i} is not a number")))?;
        let enqueued_time = times[i]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| Failed(format!("enqueued time {i} is not an RFC 3339 time")))?;
        events.push(ReceivedEvent {
            sequence_number,
            offset: number(&offsets[i]).unwrap_or(-1),
            enqueued_time,
            partition_key: keys.get(i).and_then(Value::as_str).map(str::to_string),
            source: Source::EventHub,
            body: match body {
                Value::String(s) => s,
                other => other.to_string(),
            },
        });
    }
    events.sort_by_key(|e| e.sequence_number);
    Ok((partition as i32, events))
}

async fn archive(handler: &Handler, hub: Hub, invocation: &Invocation) -> Result<Reply, Failed> {
    let (partition, events) = received(invocation)?;
    let mut archivers = handler.archivers.lock().await;
    let archiver = match archivers.entry(hub) {
        std::collections::hash_map::Entry::Occupied(open) => open.into_mut(),
        std::collections::hash_map::Entry::Vacant(slot) => slot.insert(
            BronzeArchiver::open(&handler.lake, hub)
                .await
                .map_err(|e| Failed(e.to_string()))?,
        ),
    };
    let report = archiver
        .archive(partition, &events)
        .await
        .map_err(|e| Failed(e.to_string()))?;
    Ok(Reply::logged(format!(
        "archive_{hub}: partition {partition}, {} events: {} landed, {} quarantined, {} already landed",
        events.len(),
        report.landed,
        report.quarantined,
        report.already_landed
    )))
}
