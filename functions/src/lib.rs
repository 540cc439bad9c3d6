//! The Azure Functions custom handler: the HTTP server the Functions host forwards invocations
//! to (docs/functions.md), one module per function.
//!
//! - [`generate`]: timer; generated bookings and payments to the Event Hub output bindings.
//! - [`ingest`]: HTTP POST `api/ingest/{hub}`; valid events to the Event Hub output, invalid
//!   ones to `bronze/quarantine`, and a 400 naming each.
//! - [`archive`]: Event Hub triggers; each partition's batch landed in Bronze exactly once.
//! - [`run_jobs`]: timer; the lakehouse jobs, once over what is new.
//!
//! The host POSTs `/<FunctionName>` with `{"Data", "Metadata"}` ([`protocol::Invocation`]) and
//! takes `{"Outputs", "Logs", "ReturnValue"}` back ([`protocol::Reply`]); a non-2xx reply fails the
//! invocation and writes no output, so an Event Hub batch is delivered again.

pub mod archive;
pub mod generate;
pub mod ingest;
pub mod protocol;
pub mod run_jobs;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use boxoffice_events::{Generator, Hub};
use boxoffice_ingest::bronze::BronzeArchiver;
use boxoffice_lake::Lake;
use tokio::sync::Mutex;

/// What the handler keeps between invocations.
pub struct Handler {
    /// Where Bronze, Silver and Gold live.
    pub lake: Lake,
    /// The generator the `generate` function draws from (events continue across ticks).
    pub generator: Mutex<Generator>,
    /// Events the `generate` function sends per tick.
    pub per_tick: usize,
    /// The archivers, one per hub, kept open so each batch reads only new log commits.
    pub archivers: Mutex<HashMap<Hub, BronzeArchiver>>,
    /// Set when `generate` sends over REST with partition keys instead of its output bindings.
    pub direct: Option<generate::DirectSend>,
    /// Set when `run_jobs` runs the bundle's due jobs instead of its fixed list.
    pub bundle: Option<run_jobs::BundleJobs>,
}

/// The routes the Functions host calls: `GET /` (its readiness ping) and one POST per function.
pub fn router(handler: Arc<Handler>) -> Router {
    Router::new()
        .route("/", get(|| async { "boxoffice custom handler" }))
        .route("/generate", post(generate::invoke))
        .route("/ingest", post(ingest::invoke))
        .route("/archive_bookings", post(archive::bookings))
        .route("/archive_payments", post(archive::payments))
        .route("/run_jobs", post(run_jobs::invoke))
        // Bodies over 1 MB get their 413 from `ingest` itself, inside the HTTP output.
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024 * 1024))
        .with_state(handler)
}
