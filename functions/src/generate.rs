//! `generate`: a timer (every 10 s) that sends generated bookings and payments to the hubs
//! `bookings` and `payments`. The generator continues from tick to tick.
//!
//! Two ways out, because a custom handler cannot set an Event Hub output binding's partition
//! key (only .NET functions can; Azure/Azure-Functions#2430):
//! - by default, the output bindings `bookings` and `payments`, as JSON objects (the host may
//!   base64-decode a short string output; an object it never touches). No partition key: Event
//!   Hubs spreads the events round-robin.
//! - with [`DirectSend`] (`serve --generate-via rest`), the Event Hubs REST API with the
//!   partition key order_id, as the design asks, and no outputs.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use boxoffice_events::Hub;
use boxoffice_ingest::eventhub::{EventHubError, Sender, send_all};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::Handler;
use crate::protocol::{Failed, Invocation, Reply};

/// Sending straight to Event Hubs over REST, with partition keys.
pub struct DirectSend {
    /// One sender per hub (each keeps its SAS token until it nears expiry).
    pub senders: Mutex<HashMap<Hub, Sender>>,
    /// The most bytes per batch.
    pub max_batch_bytes: usize,
}

/// `POST /generate`.
pub async fn invoke(
    State(handler): State<Arc<Handler>>,
    Json(_timer): Json<Invocation>,
) -> Result<Reply, Failed> {
    let mut by_hub: HashMap<Hub, Vec<(String, String)>> = HashMap::new();
    {
        let mut generator = handler.generator.lock().await;
        for event in generator.by_ref().take(handler.per_tick) {
            by_hub
                .entry(event.hub)
                .or_default()
                .push((event.order_id, event.body));
        }
    }
    let count = |hub| by_hub.get(&hub).map_or(0, Vec::len);
    let line = format!(
        "generate: {} bookings, {} payments",
        count(Hub::Bookings),
        count(Hub::Payments)
    );
    match &handler.direct {
        Some(direct) => {
            send_direct(direct, &by_hub)
                .await
                .map_err(|e| Failed(e.to_string()))?;
            Ok(Reply::logged(format!(
                "{line}, sent over REST with partition keys"
            )))
        }
        None => {
            let mut reply = Reply::logged(line);
            for hub in Hub::ALL {
                let events = by_hub.remove(&hub).unwrap_or_default();
                reply = reply.output(hub.as_str(), as_objects(events)?);
            }
            Ok(reply)
        }
    }
}

async fn send_direct(
    direct: &DirectSend,
    by_hub: &HashMap<Hub, Vec<(String, String)>>,
) -> Result<(), EventHubError> {
    let mut senders = direct.senders.lock().await;
    for (hub, events) in by_hub {
        if let Some(sender) = senders.get_mut(hub) {
            send_all(sender, events, direct.max_batch_bytes).await?;
        }
    }
    Ok(())
}

fn as_objects(events: Vec<(String, String)>) -> Result<Value, Failed> {
    events
        .into_iter()
        .map(|(_, body)| {
            serde_json::from_str(&body).map_err(|e| {
                Failed(format!(
                    "the generator wrote an event that is not JSON: {e}"
                ))
            })
        })
        .collect::<Result<Vec<Value>, Failed>>()
        .map(Value::Array)
}
