//! `ingest`: HTTP POST `api/ingest/{hub}` with one event, a JSON array of them, or NDJSON.
//! Valid events go to the hub (co-partitioned over REST with a key or, in Azure, the managed
//! identity; else the Event Hub output binding), each as the exact text that was validated; invalid ones
//! to `bronze/quarantine` with every reason, through the instance's
//! [writer](crate::quarantine::QuarantineWriter), and the reply, sent once they are committed,
//! is 400 naming each by its index (the valid ones are still sent). Only an empty body (400), an
//! unknown hub (404) or a body over 1 MB (413) refuses a request whole.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use boxoffice_events::{Hub, validate};
use boxoffice_ingest::bronze::QuarantineRow;
use chrono::Utc;
use serde_json::{Value, json};

use crate::Handler;
use crate::protocol::{Failed, Invocation, Reply, http_response};

/// The largest body taken (an Event Hubs Standard event's limit).
pub const MAX_BODY: usize = 1024 * 1024;

fn hub_of(name: &str) -> Option<Hub> {
    match name {
        "bookings" => Some(Hub::Bookings),
        "payments" => Some(Hub::Payments),
        _ => None,
    }
}

/// The request's body as text (the host sends it as a string, or as JSON when it parsed it).
fn body_text(req: &Value) -> String {
    match req.get("Body") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => String::new(),
        Some(other) => other.to_string(),
    }
}

/// The events of a body: a JSON array's elements, else one per non-blank line.
fn events_of(body: &str) -> Vec<String> {
    let trimmed = body.trim();
    if trimmed.starts_with('[')
        && let Ok(Value::Array(items)) = serde_json::from_str::<Value>(trimmed)
    {
        return items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => s,
                other => other.to_string(),
            })
            .collect();
    }
    trimmed
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

fn reply(status: u16, body: Value) -> Reply {
    Reply::logged(format!("ingest: {status} {body}")).output("res", http_response(status, &body))
}

/// Handles one invocation.
pub async fn invoke(
    State(handler): State<Arc<Handler>>,
    Json(invocation): Json<Invocation>,
) -> Result<Reply, Failed> {
    let req = invocation.data.get("req").cloned().unwrap_or(Value::Null);
    let name = req
        .pointer("/Params/hub")
        .or_else(|| invocation.metadata.get("hub"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let Some(hub) = hub_of(&name) else {
        return Ok(reply(
            404,
            json!({"error": format!("unknown hub {name:?}: post to api/ingest/bookings or api/ingest/payments")}),
        ));
    };
    let body = body_text(&req);
    if body.len() > MAX_BODY {
        return Ok(reply(
            413,
            json!({"error": format!("the body is {} bytes; at most {MAX_BODY} are taken per request", body.len())}),
        ));
    }
    let events = events_of(&body);
    if events.is_empty() {
        return Ok(reply(
            400,
            json!({"error": "empty body: send one event, a JSON array of events, or NDJSON"}),
        ));
    }
    let mut valid = Vec::new();
    let mut rejected = Vec::new();
    let mut quarantine = Vec::new();
    let now = Utc::now();
    for (index, text) in events.iter().enumerate() {
        match validate(text, Some(hub)) {
            // The text itself, never a re-parse of it: what was validated is what is sent.
            Ok(event) => valid.push((event.event.order_id().to_string(), text.clone())),
            Err(invalid) => {
                rejected.push(json!({"index": index, "reasons": invalid.reasons}));
                quarantine.push(QuarantineRow {
                    received_at: now,
                    source: "http".to_string(),
                    hub: Some(hub.as_str().to_string()),
                    reason: invalid.reason(),
                    body: text.clone(),
                    stage: "ingest".to_string(),
                    partition_id: None,
                    sequence_number: None,
                    event_uid: invalid.event_uid.clone(),
                    source_file: None,
                    line: None,
                });
            }
        }
    }
    if !quarantine.is_empty() {
        handler.quarantine.write(quarantine).await.map_err(Failed)?;
    }
    let accepted = valid.len();
    let mut out = if rejected.is_empty() {
        reply(200, json!({"accepted": accepted}))
    } else {
        reply(400, json!({"accepted": accepted, "rejected": rejected}))
    };
    match &handler.direct {
        Some(direct) => direct
            .send(hub, &valid)
            .await
            .map_err(|e| Failed(e.to_string()))?,
        None if !valid.is_empty() => {
            // Strings, not objects: the host sends a string output as the message body as it
            // is (an event's text starts with `{`, so it is never mistaken for base64).
            let texts = valid.into_iter().map(|(_, text)| Value::String(text));
            out = out.output(hub.as_str(), Value::Array(texts.collect()));
        }
        None => {}
    }
    Ok(out)
}
