//! A minimal Chrome DevTools Protocol client: a headless Chromium, one page, and the few calls the
//! dashboard tests make (navigate, evaluate, wait, screenshot). Every wait has a deadline, so a
//! hung browser fails the test instead of hanging CI.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, TryRecvError};
use std::time::Duration;

use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout, timeout_at};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

/// The longest any single step (start, one CDP call, one page load) may take.
const STEP: Duration = Duration::from_secs(30);

/// The Chromium process (its whole process group) and its profile, removed when dropped.
struct Process {
    child: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Process {
    fn drop(&mut self) {
        // The zygote, GPU and renderer processes outlive a killed parent for a while: kill the
        // group the browser leads (its pid, not yet reaped, cannot have been reused).
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A headless Chromium driven over one page target's DevTools websocket.
pub struct Browser {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    _process: Process,
}

/// `BOXOFFICE_CHROMIUM`, else the first of chromium, chromium-browser, google-chrome on PATH.
fn executable() -> PathBuf {
    if let Some(path) = std::env::var_os("BOXOFFICE_CHROMIUM").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no Chromium found: set BOXOFFICE_CHROMIUM or put chromium on PATH \
                 (./scripts/test installs Debian's chromium package)"
            )
        })
}

impl Browser {
    /// Starts a headless Chromium on a fresh profile and connects to its blank page.
    pub async fn launch() -> Browser {
        let exe = executable();
        let profile = tempfile::tempdir().expect("browser profile dir");
        let mut child = Command::new(&exe)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args([
                "--remote-debugging-port=0",
                "--window-size=1400,2000",
                "about:blank",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", exe.display()));
        let stderr = child.stderr.take().expect("piped stderr");
        let process = Process {
            child,
            _profile: profile,
        };
        // Lines up to the DevTools one come over the channel; the rest is drained so the browser
        // never blocks on a full pipe.
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut raw = Vec::new();
            let mut found = false;
            while reader.read_until(b'\n', &mut raw).is_ok_and(|n| n > 0) {
                if !found {
                    let line = String::from_utf8_lossy(&raw).trim_end().to_string();
                    found = line.contains("DevTools listening on ");
                    let _ = tx.send(line);
                }
                raw.clear();
            }
        });
        let deadline = Instant::now() + STEP;
        let mut seen = Vec::new();
        let browser_ws = loop {
            match rx.try_recv() {
                Ok(line) => match line.split_once("DevTools listening on ") {
                    Some((_, url)) => break url.trim().to_string(),
                    None => seen.push(line),
                },
                Err(TryRecvError::Disconnected) => panic!(
                    "{} exited before listening for DevTools:\n{}",
                    exe.display(),
                    seen.join("\n")
                ),
                Err(TryRecvError::Empty) if Instant::now() > deadline => panic!(
                    "{} printed no DevTools line within {STEP:?}:\n{}",
                    exe.display(),
                    seen.join("\n")
                ),
                Err(TryRecvError::Empty) => sleep(Duration::from_millis(20)).await,
            }
        };
        // ws://127.0.0.1:<port>/devtools/browser/<id> -> 127.0.0.1:<port>
        let host = browser_ws
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .expect("host")
            .to_string();
        let page_ws = page_target(&host, deadline).await;
        let (socket, _) = timeout(STEP, connect_async(page_ws.as_str()))
            .await
            .unwrap_or_else(|_| panic!("connecting to {page_ws} timed out"))
            .unwrap_or_else(|e| panic!("connecting to {page_ws}: {e}"));
        Browser {
            socket,
            next_id: 0,
            _process: process,
        }
    }

    /// One CDP command; its `result`, or the protocol error as text. Events are skipped.
    async fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let text = json!({"id": id, "method": method, "params": params}).to_string();
        let deadline = Instant::now() + STEP;
        timeout_at(deadline, self.socket.send(Message::Text(text.into())))
            .await
            .unwrap_or_else(|_| panic!("CDP {method}: sending timed out"))
            .unwrap_or_else(|e| panic!("CDP {method}: {e}"));
        loop {
            let message = match timeout_at(deadline, self.socket.next()).await {
                Err(_) => panic!("CDP {method}: no answer within {STEP:?}"),
                Ok(None) => panic!("CDP {method}: the browser closed the connection"),
                Ok(Some(Err(e))) => panic!("CDP {method}: {e}"),
                Ok(Some(Ok(m))) => m,
            };
            let Message::Text(text) = message else {
                continue; // pings (answered by tungstenite), never anything else from Chromium
            };
            let reply: Value = serde_json::from_str(text.as_str())
                .unwrap_or_else(|e| panic!("CDP {method}: {e}: {}", text.as_str()));
            if reply["id"].as_u64() != Some(id) {
                continue; // an event
            }
            if let Some(error) = reply.get("error") {
                return Err(format!("CDP {method}: {error}"));
            }
            return Ok(reply["result"].clone());
        }
    }

    /// Runtime.evaluate (promises awaited, result by value); the JS exception as an error.
    pub async fn try_eval(&mut self, js: &str) -> Result<Value, String> {
        let params = json!({"expression": js, "returnByValue": true, "awaitPromise": true});
        let result = self.call("Runtime.evaluate", params).await?;
        if let Some(ex) = result.get("exceptionDetails") {
            let what = ex
                .pointer("/exception/description")
                .and_then(Value::as_str)
                .or_else(|| ex["text"].as_str())
                .unwrap_or("an exception");
            return Err(format!("{js}\nthrew: {what}"));
        }
        Ok(result
            .pointer("/result/value")
            .cloned()
            .unwrap_or(Value::Null))
    }

    /// Evaluates `js` in the page (awaiting a promise) and returns its value; panics if it throws.
    pub async fn eval(&mut self, js: &str) -> Value {
        self.try_eval(js).await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// Polls `js_condition` every 100 ms until it is truthy; after `limit`, panics with the
    /// condition, its last error and the start of the page's text.
    pub async fn wait_for(&mut self, js_condition: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        let js = format!("!!({js_condition})");
        let mut last_error = None;
        loop {
            match self.try_eval(&js).await {
                Ok(Value::Bool(true)) => return,
                Ok(_) => {}
                Err(e) => last_error = Some(e),
            }
            if Instant::now() > deadline {
                let text = self
                    .try_eval("document.body ? document.body.innerText : '(no body)'")
                    .await
                    .map(|v| v.as_str().unwrap_or_default().chars().take(2000).collect())
                    .unwrap_or_else(|e| e);
                panic!(
                    "still false after {limit:?}: {js_condition}\nlast error: {last_error:?}\npage text:\n{text}"
                );
            }
            sleep(Duration::from_millis(100)).await;
        }
    }

    /// Opens `url` and waits until the new document has loaded.
    pub async fn navigate(&mut self, url: &str) {
        self.call("Page.enable", json!({}))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // Marks the current document, so the wait below cannot see it as the loaded one.
        self.eval("window.__replaced = true").await;
        let result = self
            .call("Page.navigate", json!({"url": url}))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if let Some(error) = result.get("errorText").and_then(Value::as_str) {
            panic!("navigating to {url}: {error}");
        }
        self.wait_for(
            "window.__replaced === undefined && document.readyState === 'complete'",
            STEP,
        )
        .await;
    }

    /// Saves a PNG of the whole page (beyond the viewport) to `path`.
    pub async fn screenshot(&mut self, path: &Path) {
        let params = json!({"format": "png", "captureBeyondViewport": true});
        let result = self
            .call("Page.captureScreenshot", params)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let data = result["data"].as_str().expect("screenshot data");
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("base64 screenshot");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot folder");
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

/// The websocket URL of the browser's page target, from `/json/list` on `host`.
async fn page_target(host: &str, deadline: Instant) -> String {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(STEP)
        .build()
        .expect("http client");
    let url = format!("http://{host}/json/list");
    loop {
        let targets: Option<Value> = match timeout_at(deadline, client.get(&url).send()).await {
            Ok(Ok(response)) => response
                .text()
                .await
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok()),
            Ok(Err(_)) => None,
            Err(_) => panic!("{url}: no answer before the deadline"),
        };
        let page = targets.as_ref().and_then(Value::as_array).and_then(|all| {
            all.iter()
                .find(|t| t["type"] == "page")
                .and_then(|t| t["webSocketDebuggerUrl"].as_str())
        });
        if let Some(ws) = page {
            return ws.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "{url} listed no page target: {targets:?}"
        );
        sleep(Duration::from_millis(100)).await;
    }
}
