//! The HTTP side: the page, its assets, and the JSON API (`dashboard/API.md`).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tokio::sync::watch;

use crate::assets;
use crate::filters::{Filters, Format, STATUSES};
use crate::panels::{self, PANELS};
use crate::snapshot::Snapshot;

/// What every handler reads: the newest snapshot and how often the page polls.
#[derive(Clone)]
pub struct Live {
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    /// Seconds between the page's refreshes.
    pub page_refresh_seconds: u64,
}

impl Live {
    fn now(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snapshot.borrow())
    }
}

/// The dashboard's routes.
pub fn router(live: Live) -> Router {
    Router::new()
        .route("/", get(assets::index))
        .route("/assets/{file}", get(assets::file))
        .route("/api/health", get(health))
        .route("/api/filters", get(filters))
        .route("/api/{panel}", get(panel))
        .with_state(live)
}

fn error(status: StatusCode, message: String) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

async fn health(State(live): State<Live>) -> Response {
    let s = live.now();
    let body = json!({
        "status": if s.loaded_at.is_some() { "ok" } else { "loading" },
        "generation": s.generation,
        "loaded_at": s.loaded_at,
        "last_error": s.last_error,
    });
    let status = if s.loaded_at.is_some() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn filters(State(live): State<Live>, RawQuery(query): RawQuery) -> Response {
    let s = live.now();
    if let Err(e) = Filters::parse(query.as_deref().unwrap_or(""), &s.categories) {
        return error(StatusCode::BAD_REQUEST, e.to_string());
    }
    let dates = s.funnel.iter().filter_map(|r| r.date);
    let range = dates
        .clone()
        .min()
        .zip(dates.max())
        .map(|(min, max)| json!({ "min": min, "max": max }));
    axum::Json(json!({
        "categories": s.categories.as_slice(),
        "statuses": STATUSES,
        "dates": range,
        "refresh_seconds": live.page_refresh_seconds,
        "generation": s.generation,
        "panels": PANELS.iter().map(|p| p.name).collect::<Vec<_>>(),
    }))
    .into_response()
}

async fn panel(
    State(live): State<Live>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(def) = panels::find(&name) else {
        let known: Vec<_> = PANELS.iter().map(|p| p.name).collect();
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "no panel '{name}' (panels: {}; also filters, health)",
                known.join(", ")
            ),
        );
    };
    let s = live.now();
    let filters = match Filters::parse(query.as_deref().unwrap_or(""), &s.categories) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let answer = def.answer(&s, &filters);
    match filters.format {
        Format::Json => axum::Json(answer).into_response(),
        Format::Csv => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{name}.csv\""),
                ),
            ],
            answer.csv(),
        )
            .into_response(),
    }
}
