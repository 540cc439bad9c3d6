//! The Azure Functions custom handler: the HTTP server the Functions host forwards invocations
//! to, one module per function. docs/functions.md is the contract with the host.
//!
//! - [`generate`]: timer; the bookings and payments of the seconds since the last tick.
//! - [`ingest`]: HTTP POST `api/ingest/{hub}`; valid events to the hub, invalid ones to
//!   `bronze/quarantine`, and a 400 naming each.
//! - [`archive`]: Event Hub triggers; each partition's batch landed in Bronze exactly once.
//! - [`run_jobs`]: timer; the lakehouse jobs, once over what is new.
//! - [`send`]: co-partitioned sends to the hubs over REST, for `generate` and `ingest`.
//!
//! The host POSTs `/<FunctionName>` with `{"Data", "Metadata"}` ([`protocol::Invocation`]) and
//! takes `{"Outputs", "Logs", "ReturnValue"}` back ([`protocol::Reply`]); a non-2xx reply fails the
//! invocation and writes no output; an Event Hub batch is then delivered again only under the
//! function's retry policy.

pub mod archive;
pub mod generate;
pub mod ingest;
pub mod protocol;
pub mod quarantine;
pub mod run_jobs;
pub mod send;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use boxoffice_lake::Lake;

/// What the handler keeps between invocations.
pub struct Handler {
    /// Where Bronze, Silver and Gold live.
    pub lake: Lake,
    /// The `generate` function's rate and its generator between ticks.
    pub generating: generate::Generating,
    /// The archivers, one per (hub, partition), kept open so each batch reads only new log
    /// commits.
    pub archivers: archive::Archivers,
    /// The instance's one writer of `ingest`'s refused events.
    pub quarantine: quarantine::QuarantineWriter,
    /// Set when `generate` and `ingest` send co-partitioned over REST instead of their output
    /// bindings.
    pub direct: Option<send::DirectSend>,
    /// What runs `run_jobs`'s jobs under their leases (and the bundle it follows, if any);
    /// `None` runs them directly, for benchmarks of the handler alone.
    pub jobs: Option<run_jobs::JobRunner>,
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
