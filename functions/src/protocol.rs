//! The custom handler's invocation protocol, as the Functions host speaks it.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What the host POSTs: each input binding's value under its name, and the trigger's metadata.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Invocation {
    /// Input binding values by binding name.
    #[serde(rename = "Data", default)]
    pub data: Map<String, Value>,
    /// Trigger metadata (Event Hub arrays, the HTTP route parameters, `sys`).
    #[serde(rename = "Metadata", default)]
    pub metadata: Map<String, Value>,
}

/// What the handler answers: output binding values, log lines for the host (they reach
/// Application Insights), and the function's return value.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Reply {
    /// Output binding values by binding name; an array sends one message per element.
    #[serde(rename = "Outputs")]
    pub outputs: Map<String, Value>,
    /// Log lines.
    #[serde(rename = "Logs")]
    pub logs: Vec<String>,
    /// The return value (unused by our bindings).
    #[serde(rename = "ReturnValue")]
    pub return_value: Value,
}

impl Reply {
    /// A reply with one log line.
    pub fn logged(line: impl Into<String>) -> Reply {
        Reply {
            logs: vec![line.into()],
            ..Reply::default()
        }
    }

    /// Sets an output binding.
    pub fn output(mut self, binding: &str, value: Value) -> Reply {
        self.outputs.insert(binding.to_string(), value);
        self
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        (StatusCode::OK, Json(self)).into_response()
    }
}

/// A failed invocation: a 500 to the host, so it writes no output and redelivers a trigger
/// batch; the reason goes to the logs.
#[derive(Debug)]
pub struct Failed(pub String);

impl IntoResponse for Failed {
    fn into_response(self) -> Response {
        tracing::error!(reason = %self.0, "invocation failed");
        let reply = Reply::logged(format!("failed: {}", self.0));
        (StatusCode::INTERNAL_SERVER_ERROR, Json(reply)).into_response()
    }
}

/// An HTTP output binding's value.
pub fn http_response(status: u16, body: &Value) -> Value {
    serde_json::json!({
        "statusCode": status,
        "body": body.to_string(),
        "headers": {"Content-Type": "application/json"},
    })
}

/// An input value the host may send as JSON or as a string holding JSON (Event Hub batches
/// come both ways): the JSON.
pub fn unwrap_string(value: &Value) -> Value {
    match value {
        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| value.clone()),
        other => other.clone(),
    }
}
