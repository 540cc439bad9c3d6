//! The Functions custom handler as a real process, sent exactly what the Functions host sends
//! (docs/functions.md): timer, HTTP and Event Hub invocations, and the function.json
//! files the host reads.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use boxoffice_testkit::{Azurite, free_port};
use common::fake_hub::FakeHub;
use common::{boxoffice, run_ok};
use serde_json::{Value, json};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const FUNCTIONS: [&str; 5] = [
    "generate",
    "ingest",
    "archive_bookings",
    "archive_payments",
    "run_jobs",
];

/// `boxoffice serve`, stopped when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(lake_args: &[&str]) -> Server {
    serve_with(lake_args, &[])
}

fn serve_with(args: &[&str], env: &[(&str, &str)]) -> Server {
    let port = free_port();
    let child = boxoffice()
        .args(["serve", "--per-tick", "30"])
        .args(args)
        .envs(env.iter().copied())
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve starts");
    let server = Server { child, port };
    let deadline = Instant::now() + Duration::from_secs(60);
    // As the host does: ping GET / until it answers.
    while request(port, "GET", "/", None).is_none() {
        assert!(
            Instant::now() < deadline,
            "the handler did not answer GET / within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    server
}

/// One HTTP/1.1 request; `None` while nothing listens.
fn request(port: u16, method: &str, path: &str, body: Option<&Value>) -> Option<(u16, Value)> {
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

fn invoke(server: &Server, function: &str, payload: &Value) -> (u16, Value) {
    request(server.port, "POST", &format!("/{function}"), Some(payload))
        .expect("the handler answers")
}

fn timer() -> Value {
    json!({"Data": {"timer": {"Schedule": {"AdjustForDST": true}, "ScheduleStatus": {"Last": "2026-11-23T10:00:00+00:00", "Next": "2026-11-23T10:00:10+00:00", "LastUpdated": "2026-11-23T10:00:00+00:00"}, "IsPastDue": false}}, "Metadata": {"sys": {"MethodName": "generate", "UtcNow": "2026-11-23T10:00:10Z", "RandGuid": "5b0c6a0a-3c9e-4d4a-9b1e-2f1f0b1d8c11"}}})
}

fn http(hub: &str, body: Value) -> Value {
    json!({"Data": {"req": {"Url": format!("http://localhost:7071/api/ingest/{hub}"), "Method": "POST", "Query": {}, "Headers": {"Content-Type": ["application/json"]}, "Params": {"hub": hub}, "Body": body}}, "Metadata": {"hub": hub, "sys": {"MethodName": "ingest"}}})
}

/// Generated events, one JSON text each, split by hub.
fn generated(count: &str) -> (Vec<String>, Vec<String>) {
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

#[test]
fn host_json_and_every_function_json_match_the_handler() {
    let host: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(ROOT).join("host.json")).expect("host.json"),
    )
    .expect("json");
    assert_eq!(host["version"], "2.0");
    assert_eq!(
        host["customHandler"]["description"]["defaultExecutablePath"],
        "boxoffice"
    );
    assert_eq!(
        host["customHandler"]["description"]["arguments"],
        json!(["serve"])
    );
    assert_eq!(
        host["extensionBundle"]["id"],
        "Microsoft.Azure.Functions.ExtensionBundle"
    );
    let settings: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(ROOT).join("local.settings.json.example"))
            .expect("settings"),
    )
    .expect("json");
    assert_eq!(settings["Values"]["FUNCTIONS_WORKER_RUNTIME"], "custom");
    let names = |f: &str, dir: &str| -> Vec<String> {
        let text = std::fs::read_to_string(Path::new(ROOT).join(f).join("function.json"))
            .expect("function.json");
        let v: Value = serde_json::from_str(&text).expect("json");
        v["bindings"]
            .as_array()
            .expect("bindings")
            .iter()
            .filter(|b| b["direction"] == dir)
            .map(|b| {
                assert!(b["type"].is_string(), "{f}: every binding has a type");
                if let Some(conn) = b["connection"].as_str() {
                    assert!(
                        settings["Values"][conn].is_string(),
                        "{f}: {conn} is in local.settings.json.example"
                    );
                }
                b["name"].as_str().expect("name").to_string()
            })
            .collect()
    };
    // The binding names the handler reads (in) and writes (out).
    assert_eq!(names("generate", "in"), ["timer"]);
    assert_eq!(names("generate", "out"), ["bookings", "payments"]);
    assert_eq!(names("ingest", "in"), ["req"]);
    assert_eq!(names("ingest", "out"), ["res", "bookings", "payments"]);
    assert_eq!(names("archive_bookings", "in"), ["events"]);
    assert_eq!(names("archive_payments", "in"), ["events"]);
    assert_eq!(names("run_jobs", "in"), ["timer"]);
    for hub in ["bookings", "payments"] {
        let v: Value = serde_json::from_str(
            &std::fs::read_to_string(Path::new(ROOT).join(format!("archive_{hub}/function.json")))
                .expect("read"),
        )
        .expect("json");
        let trigger = &v["bindings"][0];
        assert_eq!(
            (
                trigger["type"].as_str(),
                trigger["cardinality"].as_str(),
                trigger["consumerGroup"].as_str(),
                trigger["eventHubName"].as_str()
            ),
            (
                Some("eventHubTrigger"),
                Some("many"),
                Some("bronze-archiver"),
                Some(hub)
            )
        );
    }
}

#[test]
fn the_handler_answers_every_function_the_way_the_host_calls_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let lake_arg = lake.to_string_lossy().to_string();
    let server = serve(&["--lake", &lake_arg]);
    for f in FUNCTIONS {
        let (status, _) = invoke(&server, f, &json!({"Data": {}, "Metadata": {}}));
        assert_ne!(status, 404, "{f} is routed");
    }

    // generate: 30 events as JSON objects on the two outputs.
    let (status, reply) = invoke(&server, "generate", &timer());
    assert_eq!(status, 200, "{reply}");
    let bookings = reply["Outputs"]["bookings"]
        .as_array()
        .expect("bookings")
        .len();
    let payments = reply["Outputs"]["payments"]
        .as_array()
        .expect("payments")
        .len();
    assert_eq!(bookings + payments, 30);
    assert!(
        reply["Outputs"]["bookings"]
            .as_array()
            .expect("array")
            .iter()
            .all(Value::is_object)
    );
    assert!(
        reply["Logs"][0]
            .as_str()
            .expect("log")
            .starts_with("generate:")
    );

    // ingest: two good bookings, one bad (as a JSON array body, then as NDJSON text).
    let (good, _) = generated("40");
    let body = format!("[{},{{\"order_id\":\"x\"}},{}]", good[0], good[1]);
    for body in [
        serde_json::from_str::<Value>(&body).expect("json"),
        Value::String(format!(
            "{}\n{{\"order_id\":\"x\"}}\n{}\n",
            good[0], good[1]
        )),
    ] {
        let (status, reply) = invoke(&server, "ingest", &http("bookings", body));
        assert_eq!(status, 200, "outputs must be written: {reply}");
        let res = &reply["Outputs"]["res"];
        assert_eq!(res["statusCode"], 400, "{reply}");
        let answer: Value =
            serde_json::from_str(res["body"].as_str().expect("body")).expect("json body");
        assert_eq!(answer["accepted"], 2);
        assert_eq!(answer["rejected"][0]["index"], 1);
        assert!(
            !answer["rejected"][0]["reasons"]
                .as_array()
                .expect("reasons")
                .is_empty()
        );
        assert_eq!(
            reply["Outputs"]["bookings"].as_array().expect("sent").len(),
            2
        );
    }
    let all_good = Value::String(good[2].clone());
    let (_, reply) = invoke(&server, "ingest", &http("bookings", all_good));
    assert_eq!(reply["Outputs"]["res"]["statusCode"], 200);
    for (hub, body, code) in [
        ("bookings", Value::String(String::new()), 400),
        ("tickets", Value::String(good[0].clone()), 404),
        ("bookings", Value::String("x".repeat(2 * 1024 * 1024)), 413),
    ] {
        let (status, reply) = invoke(&server, "ingest", &http(hub, body));
        assert_eq!(status, 200);
        assert_eq!(
            reply["Outputs"]["res"]["statusCode"], code,
            "{hub}: {reply}"
        );
        assert!(reply["Outputs"].get("bookings").is_none(), "nothing sent");
    }
    drop(server);
    // The two bad events were quarantined, with their reasons.
    let out = run_ok(boxoffice().args([
        "sql",
        "--format",
        "csv",
        "--lake",
        &lake_arg,
        "select count(*) from bronze.quarantine where source = 'http' and stage = 'ingest'",
    ]));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().nth(1),
        Some("2")
    );
}

/// An Event Hub batch as the host sends it: bodies as an array (or a string holding one) and
/// the metadata arrays.
fn batch(bodies: &[String], first: i64, as_string: bool) -> Value {
    let events: Value = bodies
        .iter()
        .map(|b| serde_json::from_str::<Value>(b).expect("json"))
        .collect();
    let n = bodies.len() as i64;
    json!({
        "Data": {"events": if as_string { Value::String(events.to_string()) } else { events }},
        "Metadata": {
            "PartitionContext": {"EventHubName": "bookings", "ConsumerGroup": "bronze-archiver", "PartitionId": "1"},
            "SequenceNumberArray": (first..first + n).collect::<Vec<_>>(),
            "OffsetArray": (first..first + n).map(|i| (i * 512).to_string()).collect::<Vec<_>>(),
            "EnqueuedTimeUtcArray": (0..n).map(|i| format!("2026-11-23T10:00:{:02}.000Z", i % 60)).collect::<Vec<_>>(),
            "PartitionKeyArray": (0..n).map(|i| format!("order_{i}")).collect::<Vec<_>>(),
            "PropertiesArray": (0..n).map(|_| json!({})).collect::<Vec<_>>(),
            "sys": {"MethodName": "archive_bookings"}
        }
    })
}

#[test]
fn a_redelivered_archive_batch_lands_once_on_azurite() {
    let azurite = Azurite::start();
    let endpoint = azurite.endpoint();
    let lake = [
        "--lake",
        "az://lake/functions",
        "--emulator",
        "--emulator-endpoint",
        &endpoint,
    ];
    let server = serve(&lake);
    let (bookings, _) = generated("60");
    let first: Vec<String> = bookings[..10].to_vec();
    let (status, reply) = invoke(&server, "archive_bookings", &batch(&first, 0, false));
    assert_eq!(status, 200, "{reply}");
    // The same batch again (the host redelivers after a failure), as a string this time, then
    // one overlapping it with more events.
    let (status, reply) = invoke(&server, "archive_bookings", &batch(&first, 0, true));
    assert_eq!(status, 200, "{reply}");
    assert!(
        reply["Logs"][0]
            .as_str()
            .expect("log")
            .contains("10 already landed"),
        "{reply}"
    );
    let (status, _) = invoke(
        &server,
        "archive_bookings",
        &batch(&bookings[5..15], 5, true),
    );
    assert_eq!(status, 200);
    // A malformed batch fails the invocation (500), so the host would deliver it again.
    let (status, _) = invoke(
        &server,
        "archive_bookings",
        &json!({"Data": {"events": []}, "Metadata": {}}),
    );
    assert_eq!(status, 500);
    let (status, reply) = invoke(&server, "run_jobs", &timer());
    assert_eq!(status, 200, "{reply}");
    drop(server);
    let out = run_ok(boxoffice().args(["sql", "--format", "csv"]).args(lake).arg(
        "select count(*), count(distinct sequence_number), min(sequence_number), max(sequence_number) from bronze.bookings_raw where partition_id = 1",
    ));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().nth(1),
        Some("15,15,0,14")
    );
}

const CONNECTION: &str = "Endpoint=sb://tickets-ns.servicebus.windows.net/;SharedAccessKeyName=producer;SharedAccessKey=bm90LWEtcmVhbC1rZXk=";

/// `serve --generate-via rest` on `lake`, sending to the stand-in `hub`.
fn generating_via_rest(lake: &Path, hub: &FakeHub) -> Server {
    serve_with(
        &[
            "--lake",
            lake.to_str().expect("utf-8"),
            "--generate-via",
            "rest",
            "--eventhub-endpoint",
            &hub.endpoint(),
        ],
        &[("EventHubConnection", CONNECTION)],
    )
}

#[test]
fn generate_via_rest_sends_each_event_with_its_order_as_partition_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = FakeHub::start(&[503]);
    let server = generating_via_rest(&dir.path().join("lake"), &hub);
    let mut sent = 0;
    for _ in 0..3 {
        let (status, reply) = invoke(&server, "generate", &timer());
        assert_eq!(status, 200, "{reply}");
        assert!(
            reply["Outputs"].get("bookings").is_none(),
            "no output binding is written: {reply}"
        );
        assert!(
            reply["Logs"][0]
                .as_str()
                .unwrap_or_default()
                .contains("partition keys"),
            "{reply}"
        );
    }
    let received = hub.received();
    assert_eq!(
        received[0].answered, 503,
        "the first batch was refused once and retried"
    );
    for r in received.iter().filter(|r| r.answered == 201) {
        let batch: Value = serde_json::from_slice(&r.body).expect("JSON");
        for entry in batch.as_array().expect("array") {
            let event: Value =
                serde_json::from_str(entry["Body"].as_str().expect("Body")).expect("an event");
            assert_eq!(event["order_id"], entry["BrokerProperties"]["PartitionKey"]);
            let is_payment = event.get("payment_id").is_some();
            assert_eq!(r.hub == "payments", is_payment, "{event}");
            sent += 1;
        }
    }
    assert_eq!(sent, 90, "3 ticks of 30 events, each once");
}

#[test]
fn generate_via_rest_fails_the_invocation_when_the_hub_refuses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = FakeHub::start(&[401; 8]);
    let server = generating_via_rest(&dir.path().join("lake"), &hub);
    let (status, reply) = invoke(&server, "generate", &timer());
    assert_eq!(status, 500, "{reply}");
    let log = reply["Logs"][0].as_str().unwrap_or_default();
    assert!(log.contains("HTTP 401"), "{log}");
    assert!(!log.contains("bm90LWEtcmVhbC1rZXk"), "{log}");
}

#[test]
fn run_jobs_with_a_bundle_runs_the_jobs_due_since_the_last_tick() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let manifest = dir.path().join("bundle.yml");
    std::fs::write(
        &manifest,
        "bundle: {name: t}
targets: {prod: {default: true, mode: production}}
jobs:
  tidy:
    schedule: {quartz_cron_expression: '* * * * * ?', timezone_id: UTC}
    tasks: [{task_key: checkpoint, boxoffice_task: {job: checkpoint, parameters: {layers: bronze}}}]
  nightly:
    schedule: {quartz_cron_expression: '0 0 3 * * ?', timezone_id: UTC}
    tasks: [{task_key: vacuum, boxoffice_task: {job: vacuum}}]
",
    )
    .expect("write");
    let server = serve(&[
        "--lake",
        lake.to_str().expect("utf-8"),
        "--bundle",
        manifest.to_str().expect("utf-8"),
    ]);
    let last = (chrono::Utc::now() - chrono::Duration::seconds(5)).to_rfc3339();
    let tick = json!({"Data": {"timer": {"Schedule": {"AdjustForDST": true}, "ScheduleStatus": {"Last": last, "Next": last, "LastUpdated": last}, "IsPastDue": false}}, "Metadata": {"sys": {"MethodName": "run_jobs", "UtcNow": last, "RandGuid": "5b0c6a0a-3c9e-4d4a-9b1e-2f1f0b1d8c11"}}});
    let (status, reply) = invoke(&server, "run_jobs", &tick);
    assert_eq!(status, 200, "{reply}");
    let log = reply["Logs"][0].as_str().unwrap_or_default();
    assert!(
        log.contains("tidy succeeded") && !log.contains("nightly"),
        "{log}"
    );
    let out = run_ok(boxoffice().arg("--lake").arg(&lake).args([
        "sql",
        "--format",
        "csv",
        "select job, task, status from _system.job_runs",
    ]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("tidy,checkpoint,SUCCEEDED"));
}
