//! The page and its assets, compiled into the binary: the dashboard works with no internet and
//! no files beside the binary.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("../web/index.html");
const APP_JS: &str = include_str!("../web/app.js");
const APP_CSS: &str = include_str!("../web/app.css");
/// Chart.js, from the npm package `web/package-lock.json` pins (see build.rs).
const CHART_JS: &str = include_str!(concat!(env!("OUT_DIR"), "/chart.umd.min.js"));

pub async fn index() -> Response {
    page(INDEX, "text/html; charset=utf-8")
}

pub async fn file(Path(name): Path<String>) -> Response {
    match name.as_str() {
        "app.js" => page(APP_JS, "text/javascript; charset=utf-8"),
        "app.css" => page(APP_CSS, "text/css; charset=utf-8"),
        "chart.umd.js" => page(CHART_JS, "text/javascript; charset=utf-8"),
        _ => (StatusCode::NOT_FOUND, format!("no asset '{name}'")).into_response(),
    }
}

fn page(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // The binary is the version: a rebuilt one must not be hidden by a cached page.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}
