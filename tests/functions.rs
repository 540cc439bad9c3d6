//! The Functions custom handler as a real process, sent exactly what the Functions host sends
//! (docs/functions.md): timer, HTTP and Event Hub invocations, and the function.json and
//! host.json files the host reads.

mod common;

use std::path::Path;

use boxoffice_testkit::Azurite;
use common::fake_hub::FakeHub;
use common::fake_hub::co_partitioned;
use common::functions_host::{
    Server, TriggerSettings, generated, http, invoke, serve_with, tick_at, timer,
};
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

fn serve(lake_args: &[&str]) -> Server {
    let mut args = vec!["--rate", "3"];
    args.extend_from_slice(lake_args);
    serve_with(&args, &[])
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
    // The archive triggers retry a failed batch until it lands (the host checkpoints after a
    // failure otherwise), and take batches worth a commit.
    for function in ["archive_bookings", "archive_payments"] {
        let shipped = TriggerSettings::shipped(function, 1.0);
        let retry = shipped.retry.expect("a retry policy");
        assert_eq!(retry.max_retry_count, -1);
        assert!(retry.minimum_interval >= std::time::Duration::from_secs(1));
        assert!(retry.maximum_interval <= std::time::Duration::from_secs(15 * 60));
        assert!(shipped.max_batch > 100 && shipped.min_batch <= shipped.max_batch);
        assert!(shipped.max_wait > std::time::Duration::ZERO);
        let prefetch = host["extensions"]["eventHubs"]["prefetchCount"]
            .as_u64()
            .expect("prefetchCount");
        assert!(
            prefetch as usize >= shipped.max_batch,
            "prefetch at least a batch"
        );
    }
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
    assert!(bookings + payments > 0, "{reply}");
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
        // Sent as the exact texts that were validated.
        let sent: Vec<&str> = reply["Outputs"]["bookings"]
            .as_array()
            .expect("sent")
            .iter()
            .map(|v| v.as_str().expect("each event as its text"))
            .collect();
        assert_eq!(sent.len(), 2);
        for (text, original) in sent.iter().zip(&good) {
            assert_eq!(
                serde_json::from_str::<Value>(text).expect("json"),
                serde_json::from_str::<Value>(original).expect("json")
            );
        }
    }
    let ndjson = Value::String(format!("{}\n{}\n", good[3], good[4]));
    let (_, reply) = invoke(&server, "ingest", &http("bookings", ndjson));
    assert_eq!(
        reply["Outputs"]["bookings"],
        json!([good[3], good[4]]),
        "NDJSON lines go out byte for byte"
    );
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
    // A poison batch (5 events, 4 offsets) can never be archived event by event: it is
    // quarantined whole with its partition and range, and answered 200 so the retry policy
    // does not retry it forever; the partition goes on after it without a gap.
    let mut poison = batch(&bookings[15..20], 15, false);
    poison["Metadata"]["OffsetArray"]
        .as_array_mut()
        .expect("offsets")
        .pop();
    let (status, reply) = invoke(&server, "archive_bookings", &poison);
    assert_eq!(status, 200, "{reply}");
    assert!(
        reply["Logs"][0].as_str().expect("log").contains("poison"),
        "{reply}"
    );
    let (status, reply) = invoke(
        &server,
        "archive_bookings",
        &batch(&bookings[20..25], 20, false),
    );
    assert_eq!(status, 200, "{reply}");
    assert!(
        !reply["Logs"][0].as_str().expect("log").contains("GAP"),
        "{reply}"
    );
    // A batch past the next sequence number lands, and its gap is recorded and logged.
    let (status, reply) = invoke(
        &server,
        "archive_bookings",
        &batch(&bookings[30..35], 30, false),
    );
    assert_eq!(status, 200, "{reply}");
    assert!(
        reply["Logs"][0]
            .as_str()
            .expect("log")
            .contains("GAP: expected sequence number 25 but the batch starts at 30"),
        "{reply}"
    );
    let (status, reply) = invoke(&server, "run_jobs", &timer());
    assert_eq!(status, 200, "{reply}");
    drop(server);
    let query = |sql: &str| {
        let out = run_ok(
            boxoffice()
                .args(["sql", "--format", "csv"])
                .args(lake)
                .arg(sql),
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .map(str::to_string)
    };
    assert_eq!(
        query("select count(*), count(distinct sequence_number), min(sequence_number), max(sequence_number) from bronze.bookings_raw where partition_id = 1").as_deref(),
        Some("25,25,0,34")
    );
    assert_eq!(
        query("select count(*) from bronze.quarantine where partition_id = 1 and reason like 'poison batch of partition 1, sequence numbers 15 to 19:%'").as_deref(),
        Some("1")
    );
    assert_eq!(
        query("select hub, partition_id, expected_sequence_number, got_sequence_number, missing from _system.archive_gaps").as_deref(),
        Some("bookings,1,25,30,5")
    );
}

const CONNECTION: &str = "Endpoint=sb://tickets-ns.servicebus.windows.net/;SharedAccessKeyName=producer;SharedAccessKey=bm90LWEtcmVhbC1rZXk=";

/// `serve` on `lake` with a connection string that has a key: `generate` and `ingest` send
/// over REST (the default then), to the stand-in `hub`.
fn generating_via_rest(lake: &Path, hub: &FakeHub) -> Server {
    serve_with(
        &[
            "--lake",
            lake.to_str().expect("utf-8"),
            "--rate",
            "3",
            "--eventhub-endpoint",
            &hub.endpoint(),
        ],
        &[("EventHubConnection", CONNECTION)],
    )
}

#[test]
fn generate_and_ingest_send_each_order_to_the_same_partition_index_of_both_hubs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = FakeHub::start(&[503]);
    let server = generating_via_rest(&dir.path().join("lake"), &hub);
    let start = chrono::Utc::now();
    for k in 0..30 {
        let (status, reply) = invoke(
            &server,
            "generate",
            &tick_at(start + chrono::Duration::seconds(10 * k)),
        );
        assert_eq!(status, 200, "{reply}");
        assert!(
            reply["Outputs"].get("bookings").is_none(),
            "no output binding is written: {reply}"
        );
        assert!(
            reply["Logs"][0]
                .as_str()
                .unwrap_or_default()
                .contains("REST"),
            "{reply}"
        );
    }
    let (good, _) = generated("40");
    let body = Value::String(format!("{}\n{}\n", good[0], good[1]));
    let (status, reply) = invoke(&server, "ingest", &http("bookings", body));
    assert_eq!(
        (status, &reply["Outputs"]["res"]["statusCode"]),
        (200, &json!(200)),
        "{reply}"
    );
    assert!(reply["Outputs"].get("bookings").is_none(), "{reply}");

    let received = hub.received();
    assert_eq!(
        received[0].answered, 503,
        "the first batch was refused once and retried"
    );
    let bodies = co_partitioned(&received, 4);
    // The ingested lines went out byte for byte, each once.
    for line in &good[..2] {
        assert_eq!(bodies.iter().filter(|b| *b == line).count(), 1, "{line}");
    }
    // The refused batch was sent again as it was, to the same partition.
    assert_eq!(
        (&received[1].hub, received[1].partition, &received[1].body),
        (&received[0].hub, received[0].partition, &received[0].body)
    );
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
