//! A plain-HTTP front for an HTTPS Azurite that takes Microsoft Entra tokens
//! ([`boxoffice_testkit::Azurite::start_with_tokens`]), standing in for a storage account's blob
//! endpoint in the tests of the Azure path (the lake reached with a managed identity, not
//! Azurite's well-known key).
//!
//! It forwards every request as it came (the `Authorization: Bearer` header included, which
//! Azurite checks) and does one thing Azure does and Azurite 3.35 does not: List Blobs'
//! `startFrom` (service version 2026-02-06), which object_store sends to a real account (not to
//! the emulator) when delta-rs lists a table's log from a version on. Azurite ignores the
//! parameter and lists from the start, which would hand delta-rs log files before the one it
//! asked for; the front drops those. It also records each request's method, path,
//! authorization scheme and status, so a test can tell how the lake was reached.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, header};

/// One request the front forwarded.
#[derive(Debug, Clone)]
pub struct Forwarded {
    pub method: String,
    pub path: String,
    /// The first word of the Authorization header (`Bearer`, `SharedKey`), or empty.
    pub scheme: String,
    pub status: u16,
}

struct Front {
    upstream: String,
    client: reqwest::Client,
    forwarded: Mutex<Vec<Forwarded>>,
}

/// The front, on a free loopback port; stops when dropped.
pub struct BlobProxy {
    pub port: u16,
    front: Arc<Front>,
    runtime: tokio::runtime::Runtime,
}

impl BlobProxy {
    /// A front for `upstream` (`https://127.0.0.1:<port>`), trusting `root_pem` for it.
    pub fn start(upstream: &str, root_pem: &[u8]) -> BlobProxy {
        let root = reqwest::Certificate::from_pem(root_pem).expect("a PEM certificate");
        let client = reqwest::Client::builder()
            .add_root_certificate(root)
            .build()
            .expect("client");
        let front = Arc::new(Front {
            upstream: upstream.trim_end_matches('/').to_string(),
            client,
            forwarded: Mutex::new(Vec::new()),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let app = Router::new()
            .fallback(forward)
            .with_state(Arc::clone(&front));
        runtime.spawn(async move { axum::serve(listener, app).await });
        BlobProxy {
            port,
            front,
            runtime,
        }
    }

    /// The blob endpoint of account `account` through the front, path-style:
    /// `http://127.0.0.1:<port>/<account>`.
    pub fn account_endpoint(&self, account: &str) -> String {
        format!("http://127.0.0.1:{}/{account}", self.port)
    }

    /// Creates `container` of `account` upstream with `token` (the deployment's job on Azure).
    pub fn create_container(&self, account: &str, container: &str, token: &str) -> u16 {
        let url = format!(
            "{}/{account}/{container}?restype=container",
            self.front.upstream
        );
        self.runtime.block_on(async {
            self.front
                .client
                .put(url)
                .header("Authorization", format!("Bearer {token}"))
                .header("x-ms-version", "2021-12-02")
                .header("Content-Length", "0")
                .send()
                .await
                .map_or(0, |r| r.status().as_u16())
        })
    }

    /// Every request forwarded so far.
    pub fn forwarded(&self) -> Vec<Forwarded> {
        self.front.forwarded.lock().expect("lock").clone()
    }
}

async fn forward(State(front): State<Arc<Front>>, request: Request) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let scheme = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_whitespace().next())
        .unwrap_or_default()
        .to_string();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => return plain(StatusCode::BAD_REQUEST, format!("request body: {e}")),
    };
    let mut upstream = front.client.request(
        parts.method.clone(),
        format!("{}{path_and_query}", front.upstream),
    );
    for (name, value) in &parts.headers {
        if ![header::HOST, header::CONTENT_LENGTH, header::CONNECTION].contains(name) {
            upstream = upstream.header(name, value);
        }
    }
    let answer = match upstream.body(bytes).send().await {
        Ok(a) => a,
        Err(e) => return plain(StatusCode::BAD_GATEWAY, format!("upstream: {e}")),
    };
    let status = answer.status();
    let headers = answer.headers().clone();
    let mut body = match answer.bytes().await {
        Ok(b) => b.to_vec(),
        Err(e) => return plain(StatusCode::BAD_GATEWAY, format!("upstream body: {e}")),
    };
    let query = parts.uri.query().unwrap_or_default();
    if status.is_success()
        && query.split('&').any(|p| p == "comp=list")
        && let Some(from) = query_value(query, "startFrom")
    {
        body = list_from(&String::from_utf8_lossy(&body), &from).into_bytes();
    }
    front.forwarded.lock().expect("lock").push(Forwarded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        scheme,
        status: status.as_u16(),
    });
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    copy_headers(&headers, response.headers_mut(), parts.method == "HEAD");
    response
}

/// The upstream's headers but those about the transfer; a HEAD answer keeps its Content-Length
/// (the blob's size), others get the length of the body sent.
fn copy_headers(from: &HeaderMap, to: &mut HeaderMap, head: bool) {
    for (name, value) in from {
        let transfer = [header::TRANSFER_ENCODING, header::CONNECTION].contains(name)
            || (*name == header::CONTENT_LENGTH && !head);
        if !transfer {
            to.append(name.clone(), value.clone());
        }
    }
}

fn plain(status: StatusCode, text: String) -> Response<Body> {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

/// A List Blobs answer without the blobs named before `from` (`startFrom` is inclusive).
pub fn list_from(xml: &str, from: &str) -> String {
    let Some(start) = xml.find("<Blobs>") else {
        return xml.to_string();
    };
    let Some(end) = xml.find("</Blobs>") else {
        return xml.to_string();
    };
    let inner = &xml[start + "<Blobs>".len()..end];
    let mut kept = String::new();
    let mut rest = inner;
    while let Some(open) = rest.find("<Blob>") {
        kept.push_str(&rest[..open]);
        let Some(close) = rest[open..].find("</Blob>") else {
            break;
        };
        let blob = &rest[open..open + close + "</Blob>".len()];
        let name = between(blob, "<Name>", "</Name>").map(unescape);
        if name.is_none_or(|n| n.as_str() >= from) {
            kept.push_str(blob);
        }
        rest = &rest[open + close + "</Blob>".len()..];
    }
    kept.push_str(rest);
    format!("{}<Blobs>{kept}{}", &xml[..start], &xml[end..])
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let from = text.find(open)? + open.len();
    let to = text[from..].find(close)? + from;
    Some(&text[from..to])
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The percent-decoded value of `name` in a query string.
pub fn query_value(query: &str, name: &str) -> Option<String> {
    let raw = query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))?;
    let bytes = raw.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}
