//! A test double of the Azure Functions host for the Event Hubs trigger, driving real
//! `boxoffice serve` processes the way the host does (docs/functions.md, "What the host does"):
//!
//! - it reads the shipped `host.json` (`extensions.eventHubs`: `maxEventBatchSize`,
//!   `minEventBatchSize`, `maxWaitTime`; the extension's defaults where unset) and the function's
//!   `function.json` (`retry`: strategy, `maxRetryCount`, intervals);
//! - events sit in the local queue (the project's Event Hubs stand-in, partitioned by the
//!   co-partitioning rule); each partition is owned by one live instance at a time and delivered
//!   in batches of at most `maxEventBatchSize`, as soon as `minEventBatchSize` wait or the oldest
//!   has waited `maxWaitTime`, with the trigger's metadata arrays;
//! - after every invocation, failed or not, it checkpoints (the partition moves on), unless the
//!   retry policy retries: then it delivers the same batch again after the policy's exponential
//!   backoff, forever with `maxRetryCount: -1`;
//! - when an instance dies mid-invocation nothing was checkpointed: another instance takes the
//!   partition and the batch is delivered again from the checkpoint.
//!
//! Intervals may be scaled down (`time_scale`) so a test takes seconds; the semantics stay.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use boxoffice_events::Hub;
use boxoffice_ingest::ReceivedEvent;
use boxoffice_ingest::queue::{Partition, Queue};
use boxoffice_testkit::free_port;
use serde_json::{Value, json};

use super::{boxoffice, run_ok};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The settings that choose how `serve` sends to the hubs.
pub const CONNECTION_SETTINGS: [&str; 9] = [
    "EventHubConnection",
    "EventHubConnection__fullyQualifiedNamespace",
    "EventHubConnection__credential",
    "EventHubConnection__clientId",
    "EventHubConnection__managedIdentityResourceId",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "EventHubPartitionCount",
    "BOXOFFICE_SEND_VIA",
];

/// `boxoffice serve`, killed (SIGKILL) when dropped.
pub struct Server {
    child: Child,
    pub port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// SIGKILL, as when the host's instance is recycled without notice.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `boxoffice serve` with `args` and `env`, and waits until it answers `GET /`, as the
/// host does before sending invocations.
pub fn serve_with(args: &[&str], env: &[(&str, &str)]) -> Server {
    serve_logging(args, env, None)
}

/// [`serve_with`], its stderr (start-up lines and logs) written to `log` when given. Only the
/// connection settings in `env` apply: none are inherited.
pub fn serve_logging(args: &[&str], env: &[(&str, &str)], log: Option<&Path>) -> Server {
    let port = free_port();
    let stderr = match log {
        Some(path) => Stdio::from(std::fs::File::create(path).expect("log file")),
        None => Stdio::null(),
    };
    let mut cmd = boxoffice();
    for inherited in CONNECTION_SETTINGS {
        cmd.env_remove(inherited);
    }
    let child = cmd
        .arg("serve")
        .args(args)
        .envs(env.iter().copied())
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("serve starts");
    let mut server = Server { child, port };
    // It prepares the lake before it listens; on a busy machine running several Azurites at
    // once that once took over a minute (one `.ci/run` in 19).
    let deadline = Instant::now() + Duration::from_secs(150);
    while request(port, "GET", "/", None).is_none() {
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("the handler exited before it answered GET /: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "the handler did not answer GET / within 150 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    server
}

/// One HTTP/1.1 request; `None` while nothing listens (or the process died mid-request).
pub fn request(port: u16, method: &str, path: &str, body: Option<&Value>) -> Option<(u16, Value)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Azure-Functions-InvocationId: 0f8fad5b-d9cb-469f-a165-70867728950e\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body.as_bytes()).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, payload) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((
        status,
        serde_json::from_str(payload).unwrap_or(Value::String(payload.to_string())),
    ))
}

/// `POST /<function>`; panics when the handler does not answer.
pub fn invoke(server: &Server, function: &str, payload: &Value) -> (u16, Value) {
    request(server.port, "POST", &format!("/{function}"), Some(payload))
        .expect("the handler answers")
}

/// A `generate` timer invocation at 2026-11-23T10:00:10Z, as the host sends it.
pub fn timer() -> Value {
    json!({"Data": {"timer": {"Schedule": {"AdjustForDST": true}, "ScheduleStatus": {"Last": "2026-11-23T10:00:00+00:00", "Next": "2026-11-23T10:00:10+00:00", "LastUpdated": "2026-11-23T10:00:00+00:00"}, "IsPastDue": false}}, "Metadata": {"sys": {"MethodName": "generate", "UtcNow": "2026-11-23T10:00:10Z", "RandGuid": "5b0c6a0a-3c9e-4d4a-9b1e-2f1f0b1d8c11"}}})
}

/// An `ingest` invocation: POST api/ingest/{hub} with `body`, as the host sends it.
pub fn http(hub: &str, body: Value) -> Value {
    json!({"Data": {"req": {"Url": format!("http://localhost:7071/api/ingest/{hub}"), "Method": "POST", "Query": {}, "Headers": {"Content-Type": ["application/json"]}, "Params": {"hub": hub}, "Body": body}}, "Metadata": {"hub": hub, "sys": {"MethodName": "ingest"}}})
}

/// Generated events, one JSON text each, split by hub.
pub fn generated(count: &str) -> (Vec<String>, Vec<String>) {
    let out = run_ok(boxoffice().args(["generate", "--seed", "4", "--count", count, "--fast"]));
    let mut bookings = Vec::new();
    let mut payments = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: Value = match serde_json::from_str(line) {
            Ok(v @ Value::Object(_)) => v,
            _ => continue, // the generator's deliberately malformed events
        };
        if v.get("payment_id").is_some() {
            payments.push(line.to_string());
        } else if v.get("seats").is_some() || v.pointer("/event_details").is_some() {
            bookings.push(line.to_string());
        }
    }
    (bookings, payments)
}

/// A timer invocation at `utc_now`.
pub fn tick_at(utc_now: chrono::DateTime<chrono::Utc>) -> Value {
    let mut t = timer();
    t["Metadata"]["sys"]["UtcNow"] = json!(utc_now.to_rfc3339());
    t
}

/// A function.json `retry` policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// -1: until success.
    pub max_retry_count: i64,
    pub minimum_interval: Duration,
    pub maximum_interval: Duration,
}

impl RetryPolicy {
    /// `exponentialBackoff`: the minimum, doubled per retry, capped at the maximum.
    pub fn delay(&self, retry: u32) -> Duration {
        self.minimum_interval
            .saturating_mul(1u32 << retry.min(20))
            .min(self.maximum_interval)
    }

    fn retries(&self, retry: u32) -> bool {
        self.max_retry_count < 0 || i64::from(retry) < self.max_retry_count
    }
}

/// What the host takes from host.json and the function's function.json.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerSettings {
    pub max_batch: usize,
    pub min_batch: usize,
    pub max_wait: Duration,
    pub retry: Option<RetryPolicy>,
}

/// `hh:mm:ss` (with optional fractions), as host.json and function.json write time spans.
pub fn timespan(text: &str) -> Duration {
    let parts: Vec<f64> = text
        .split(':')
        .map(|p| {
            p.parse()
                .unwrap_or_else(|_| panic!("not a time span: {text}"))
        })
        .collect();
    assert_eq!(parts.len(), 3, "not hh:mm:ss: {text}");
    Duration::from_secs_f64(parts[0] * 3600.0 + parts[1] * 60.0 + parts[2])
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

impl TriggerSettings {
    /// The settings shipped in the repository for `function`, with every interval multiplied
    /// by `time_scale`.
    pub fn shipped(function: &str, time_scale: f64) -> TriggerSettings {
        let host = read_json(&Path::new(ROOT).join("host.json"));
        let function_json = read_json(&Path::new(ROOT).join(function).join("function.json"));
        TriggerSettings::from_json(&host, &function_json, time_scale)
    }

    /// The settings of a host.json and a function.json (the Event Hubs extension's defaults
    /// where they say nothing: 100 events, 1 event, 60 s, no retry).
    pub fn from_json(host: &Value, function_json: &Value, time_scale: f64) -> TriggerSettings {
        let hubs = &host["extensions"]["eventHubs"];
        let max_batch = hubs["maxEventBatchSize"].as_u64().unwrap_or(100) as usize;
        let min_batch = hubs["minEventBatchSize"].as_u64().unwrap_or(1) as usize;
        let max_wait = hubs["maxWaitTime"]
            .as_str()
            .map_or(Duration::from_secs(60), timespan);
        let retry = function_json.get("retry").or_else(|| host.get("retry"));
        let retry = retry.map(|r| {
            assert_eq!(
                r["strategy"], "exponentialBackoff",
                "the strategy the harness plays"
            );
            RetryPolicy {
                max_retry_count: r["maxRetryCount"].as_i64().expect("maxRetryCount"),
                minimum_interval: timespan(r["minimumInterval"].as_str().expect("minimumInterval"))
                    .mul_f64(time_scale),
                maximum_interval: timespan(r["maximumInterval"].as_str().expect("maximumInterval"))
                    .mul_f64(time_scale),
            }
        });
        TriggerSettings {
            max_batch,
            min_batch,
            max_wait: max_wait.mul_f64(time_scale),
            retry,
        }
    }
}

/// The instances the host runs: `boxoffice serve` processes, each alive until it stops
/// answering.
pub struct Instances {
    ports: Vec<u16>,
    dead: Vec<AtomicBool>,
    /// Invocations in flight per instance.
    pub in_flight: Vec<AtomicUsize>,
}

impl Instances {
    pub fn new(servers: &[&Server]) -> Arc<Instances> {
        Arc::new(Instances {
            ports: servers.iter().map(|s| s.port).collect(),
            dead: servers.iter().map(|_| AtomicBool::new(false)).collect(),
            in_flight: servers.iter().map(|_| AtomicUsize::new(0)).collect(),
        })
    }

    /// The live instance that owns `partition`: the host spreads partitions over instances and
    /// gives a dead instance's partitions to the others.
    fn owner(&self, partition: usize) -> Option<usize> {
        let n = self.ports.len();
        (0..n)
            .map(|k| (partition + k) % n)
            .find(|i| !self.dead[*i].load(Ordering::SeqCst))
    }
}

/// What the host did.
#[derive(Debug, Default)]
pub struct HostStats {
    pub invocations: AtomicU64,
    pub failed: AtomicU64,
    pub retried: AtomicU64,
    /// Batches checkpointed after a failure (lost, when no retry policy retried them).
    pub given_up: AtomicU64,
    /// Batches delivered again because their instance died mid-invocation.
    pub redelivered_after_crash: AtomicU64,
    pub batches: AtomicU64,
    pub events: AtomicU64,
}

/// Plays the Event Hubs trigger of `function` for one partition of the queue until it is
/// closed and drained.
pub async fn run_partition(
    function: String,
    partition: Arc<Partition>,
    index: usize,
    settings: TriggerSettings,
    instances: Arc<Instances>,
    stats: Arc<HostStats>,
) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client");
    loop {
        let batch = partition
            .next_batch_between(settings.min_batch, settings.max_batch, settings.max_wait)
            .await
            .expect("the queue works");
        let Some(batch) = batch else { return };
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            continue;
        };
        let (first, last) = (first.sequence_number, last.sequence_number);
        let payload = trigger_payload(partition.hub(), partition.id(), &batch);
        let mut retry = 0u32;
        loop {
            let Some(owner) = instances.owner(index) else {
                panic!("every instance is dead");
            };
            let url = format!("http://127.0.0.1:{}/{function}", instances.ports[owner]);
            stats.invocations.fetch_add(1, Ordering::Relaxed);
            instances.in_flight[owner].fetch_add(1, Ordering::SeqCst);
            let answer = client
                .post(&url)
                .header("Content-Type", "application/json")
                .body(payload.to_string())
                .send()
                .await;
            let status = match answer {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let _ = r.bytes().await;
                    Some(status)
                }
                Err(_) => None,
            };
            instances.in_flight[owner].fetch_sub(1, Ordering::SeqCst);
            match status {
                Some(200..=299) => break,
                None => {
                    // The instance is gone: no checkpoint was written, so the partition's new
                    // owner reads the same events again from the checkpoint.
                    instances.dead[owner].store(true, Ordering::SeqCst);
                    stats
                        .redelivered_after_crash
                        .fetch_add(1, Ordering::Relaxed);
                }
                Some(_) => {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    match settings.retry.filter(|p| p.retries(retry)) {
                        Some(policy) => {
                            stats.retried.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(policy.delay(retry)).await;
                            retry += 1;
                        }
                        None => {
                            // Checkpointed all the same: this batch is never delivered again.
                            stats.given_up.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    }
                }
            }
        }
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats
            .events
            .fetch_add((last - first + 1) as u64, Ordering::Relaxed);
        partition.acknowledge(last).expect("checkpoint");
    }
}

/// The trigger's invocation for one batch (cardinality many, dataType string), as the host
/// sends it: bodies as a JSON array, the metadata arrays alongside.
pub fn trigger_payload(hub: Hub, partition: u32, batch: &[ReceivedEvent]) -> Value {
    let bodies: Vec<Value> = batch
        .iter()
        .map(|e| serde_json::from_str(&e.body).unwrap_or_else(|_| Value::String(e.body.clone())))
        .collect();
    json!({
        "Data": {"events": bodies},
        "Metadata": {
            "PartitionContext": {"EventHubName": hub.as_str(), "ConsumerGroup": "bronze-archiver", "FullyQualifiedNamespace": "local", "PartitionId": partition.to_string()},
            "SequenceNumberArray": batch.iter().map(|e| e.sequence_number).collect::<Vec<_>>(),
            "OffsetArray": batch.iter().map(|e| e.offset.to_string()).collect::<Vec<_>>(),
            "EnqueuedTimeUtcArray": batch.iter().map(|e| e.enqueued_time.to_rfc3339()).collect::<Vec<_>>(),
            "PartitionKeyArray": batch.iter().map(|e| e.partition_key.clone()).collect::<Vec<_>>(),
            "PropertiesArray": batch.iter().map(|_| json!({})).collect::<Vec<_>>(),
            "sys": {"MethodName": format!("archive_{hub}"), "UtcNow": chrono::Utc::now().to_rfc3339()}
        }
    })
}

/// Starts the trigger of both archive functions for every partition of `queue`, on `runtime`.
pub fn start_triggers(
    runtime: &tokio::runtime::Runtime,
    queue: &Queue,
    settings: &BTreeMap<Hub, TriggerSettings>,
    instances: &Arc<Instances>,
    stats: &Arc<HostStats>,
) -> Vec<tokio::task::JoinHandle<()>> {
    queue
        .partitions()
        .iter()
        .enumerate()
        .map(|(index, partition)| {
            let hub = partition.hub();
            runtime.spawn(run_partition(
                format!("archive_{hub}"),
                Arc::clone(partition),
                index,
                settings[&hub].clone(),
                Arc::clone(instances),
                Arc::clone(stats),
            ))
        })
        .collect()
}
