//! `generate`: a timer (every 10 s) that sends generated bookings and payments to the Event Hub
//! output bindings `bookings` and `payments`, as JSON objects (the host may base64-decode a short
//! string output; an object it never touches). The generator continues from tick to tick.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use boxoffice_events::Hub;
use serde_json::Value;

use crate::Handler;
use crate::protocol::{Failed, Invocation, Reply};

/// `POST /generate`.
pub async fn invoke(
    State(handler): State<Arc<Handler>>,
    Json(_timer): Json<Invocation>,
) -> Result<Reply, Failed> {
    let (mut bookings, mut payments) = (Vec::new(), Vec::new());
    let mut generator = handler.generator.lock().await;
    for event in generator.by_ref().take(handler.per_tick) {
        let body: Value = serde_json::from_str(&event.body).map_err(|e| {
            Failed(format!(
                "the generator wrote an event that is not JSON: {e}"
            ))
        })?;
        match event.hub {
            Hub::Bookings => bookings.push(body),
            Hub::Payments => payments.push(body),
        }
    }
    let line = format!(
        "generate: {} bookings, {} payments",
        bookings.len(),
        payments.len()
    );
    Ok(Reply::logged(line)
        .output("bookings", Value::Array(bookings))
        .output("payments", Value::Array(payments)))
}
