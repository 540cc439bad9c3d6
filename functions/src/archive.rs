//! `archive_bookings` and `archive_payments`: Event Hub triggers (cardinality many) that land
//! each partition's batch in Bronze exactly once, through the same archiver as `up`. The batch
//! arrives as an array or as a string holding one; partition, sequence numbers, offsets,
//! enqueued times and partition keys come from the trigger metadata.
//!
//! The host checkpoints after every invocation, failed or not; it runs a failed batch again only
//! because the function.json files declare a retry policy that retries until success. So a
//! failure the next attempt may not meet (storage, a commit race) answers 500 and is retried,
//! and the archiver lands only what is new; a poison batch, whose metadata does not line up and
//! never will, is quarantined whole with its partition and sequence range and answered 200.
//!
//! Each (hub, partition) has its own archiver behind its own lock: batches of different
//! partitions on one instance are archived at the same time, while a redelivery of a partition's
//! batch waits for the one in flight and then lands only what is new.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use boxoffice_events::Hub;
use boxoffice_ingest::bronze::{BronzeArchiver, PoisonBatch, QuarantineRow};
use boxoffice_ingest::{ReceivedEvent, Source};
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::Handler;
use crate::protocol::{Failed, Invocation, Reply, unwrap_string};

/// The trigger binding's name in both function.json files.
pub const BINDING: &str = "events";

/// One partition's archiver, opened by its first batch.
type Slot = Arc<Mutex<Option<BronzeArchiver>>>;

/// One archiver per (hub, partition), each behind its own lock, opened on first use.
#[derive(Default)]
pub struct Archivers {
    slots: std::sync::Mutex<HashMap<(Hub, i32), Slot>>,
}

impl Archivers {
    fn slot(&self, hub: Hub, partition: i32) -> Slot {
        // Held only to look up or insert, never across an await.
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(slots.entry((hub, partition)).or_default())
    }
}

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

/// Why an invocation's batch cannot be archived event by event, with what could be read of it.
#[derive(Debug)]
pub struct Malformed {
    /// What is wrong.
    pub reason: String,
    /// The partition, when the metadata names one.
    pub partition: Option<i32>,
    /// The first and last sequence numbers, when the metadata has them.
    pub range: Option<(i64, i64)>,
}

fn sequence_range(metadata: &serde_json::Map<String, Value>) -> Option<(i64, i64)> {
    let numbers: Vec<i64> = match metadata.get("SequenceNumberArray").map(unwrap_string) {
        Some(Value::Array(items)) => items.iter().filter_map(number).collect(),
        _ => return None,
    };
    Some((*numbers.iter().min()?, *numbers.iter().max()?))
}

fn partition_of(metadata: &serde_json::Map<String, Value>) -> Option<i32> {
    metadata
        .get("PartitionContext")
        .map(unwrap_string)
        .and_then(|p| p.get("PartitionId").and_then(number))
        .and_then(|p| i32::try_from(p).ok())
}

/// The batch as the archiver takes it, or why it cannot be taken.
pub fn received(invocation: &Invocation) -> Result<(i32, Vec<ReceivedEvent>), Malformed> {
    read_batch(invocation).map_err(|Failed(reason)| Malformed {
        reason,
        partition: partition_of(&invocation.metadata),
        range: sequence_range(&invocation.metadata),
    })
}

fn read_batch(invocation: &Invocation) -> Result<(i32, Vec<ReceivedEvent>), Failed> {
    let bodies = match invocation.data.get(BINDING).map(unwrap_string) {
        Some(Value::Array(items)) => items,
        _ => return Err(Failed(format!("the invocation has no {BINDING} array"))),
    };
    let md = &invocation.metadata;
    let partition = partition_of(md)
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
    Ok((partition, events))
}

async fn archive(handler: &Handler, hub: Hub, invocation: &Invocation) -> Result<Reply, Failed> {
    let (partition, events) = match received(invocation) {
        Ok(batch) => batch,
        Err(malformed) => return quarantine_poison(handler, hub, invocation, malformed).await,
    };
    if events.is_empty() {
        return Ok(Reply::logged(format!(
            "archive_{hub}: partition {partition}, an empty batch"
        )));
    }
    let slot = handler.archivers.slot(hub, partition);
    let mut archiver = slot.lock().await;
    let locked_at = chrono::Utc::now();
    if archiver.is_none() {
        *archiver = Some(
            BronzeArchiver::open(&handler.lake, hub)
                .await
                .map_err(|e| Failed(e.to_string()))?,
        );
    }
    let Some(archiver) = archiver.as_mut() else {
        return Err(Failed("the archiver did not open".into()));
    };
    let report = archiver
        .archive(partition, &events)
        .await
        .map_err(|e| Failed(e.to_string()))?;
    let micros =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let held = format!(
        "; partition lock held {} to {}",
        micros(locked_at),
        micros(chrono::Utc::now())
    );
    let gap = report.gap.map_or_else(String::new, |g| {
        format!(
            "; GAP: expected sequence number {} but the batch starts at {} (recorded in _system.archive_gaps)",
            g.expected, g.got
        )
    });
    Ok(Reply::logged(format!(
        "archive_{hub}: partition {partition}, {} events: {} landed, {} quarantined, {} already landed{gap}{held}",
        events.len(),
        report.landed,
        report.quarantined,
        report.already_landed
    )))
}

/// Quarantines a batch that retrying cannot fix, whole, and answers 200 so the host moves on.
async fn quarantine_poison(
    handler: &Handler,
    hub: Hub,
    invocation: &Invocation,
    malformed: Malformed,
) -> Result<Reply, Failed> {
    let body =
        serde_json::json!({"Data": invocation.data, "Metadata": invocation.metadata}).to_string();
    tracing::error!(%hub, reason = %malformed.reason, "a poison batch: quarantined whole");
    match (malformed.partition, malformed.range) {
        (Some(partition), Some((first, last))) => {
            let poison = PoisonBatch {
                partition,
                first,
                last,
                body,
                reason: malformed.reason.clone(),
            };
            let slot = handler.archivers.slot(hub, partition);
            let mut archiver = slot.lock().await;
            if archiver.is_none() {
                *archiver = Some(
                    BronzeArchiver::open(&handler.lake, hub)
                        .await
                        .map_err(|e| Failed(e.to_string()))?,
                );
            }
            if let Some(archiver) = archiver.as_mut() {
                archiver
                    .archive_poison(&poison)
                    .await
                    .map_err(|e| Failed(e.to_string()))?;
            }
            Ok(Reply::logged(format!(
                "archive_{hub}: partition {partition}, sequence numbers {first} to {last}: a poison batch, quarantined whole: {}",
                malformed.reason
            )))
        }
        (partition, _) => {
            let row = QuarantineRow {
                received_at: chrono::Utc::now(),
                source: boxoffice_ingest::Source::EventHub.as_str().to_string(),
                hub: Some(hub.as_str().to_string()),
                reason: format!(
                    "poison batch without sequence numbers: {}",
                    malformed.reason
                ),
                body,
                stage: "archive".to_string(),
                partition_id: partition,
                sequence_number: None,
                event_uid: None,
                source_file: None,
                line: None,
            };
            handler.quarantine.write(vec![row]).await.map_err(Failed)?;
            Ok(Reply::logged(format!(
                "archive_{hub}: a poison batch without sequence numbers, quarantined whole: {}",
                malformed.reason
            )))
        }
    }
}
