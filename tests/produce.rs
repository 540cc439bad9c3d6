//! `boxoffice produce --to eventhub` as a real process against a stand-in for the Event Hubs REST
//! endpoint (the service cannot run here; its emulator has no REST API): SAS tokens checked
//! against the documented algorithm computed in Python, batches, partition keys, retries.

mod common;

use std::process::Command;

use boxoffice_ingest::eventhub::sas;
use boxoffice_ingest::partitioning::partition_index;
use common::fake_hub::FakeHub;
use common::fake_identity::FakeIdentity;
use common::{boxoffice, run_err, run_ok};
use serde_json::Value;

const KEY: &str = "bm90LWEtcmVhbC1rZXkrLz0=";
const CONNECTION: &str = "Endpoint=sb://tickets-ns.servicebus.windows.net/;SharedAccessKeyName=producer;SharedAccessKey=bm90LWEtcmVhbC1rZXkrLz0=";

/// The documented algorithm, in Python's standard library (form encoding, as the .NET and Node
/// samples encode): the token for `uri`, `key_name`, `key` and `expiry`.
fn python_token(uri: &str, key_name: &str, key: &str, expiry: u64) -> String {
    let script = r#"
import base64, hashlib, hmac, sys, urllib.parse
uri, key_name, key, expiry = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
encoded = urllib.parse.quote_plus(uri)
digest = hmac.new(key.encode("utf-8"), (encoded + "\n" + expiry).encode("utf-8"), hashlib.sha256).digest()
sig = urllib.parse.quote_plus(base64.b64encode(digest))
print("SharedAccessSignature sr={}&sig={}&se={}&skn={}".format(encoded, sig, expiry, key_name), end="")
"#;
    let python = std::env::var("BOXOFFICE_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let out =
        run_ok(Command::new(python).args(["-c", script, uri, key_name, key, &expiry.to_string()]));
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn the_sas_token_equals_the_documented_algorithm_computed_in_python() {
    let uri = "https://tickets-ns.servicebus.windows.net/bookings";
    let ours = sas::token(uri, "RootManageSharedAccessKey", KEY, 1_767_225_600);
    let theirs = python_token(uri, "RootManageSharedAccessKey", KEY, 1_767_225_600);
    assert_eq!(ours, theirs);
    // A different key signs differently.
    assert_ne!(
        ours,
        python_token(uri, "RootManageSharedAccessKey", "another", 1_767_225_600)
    );
}

fn produce(hub: &FakeHub, extra: &[&str]) -> Command {
    let mut cmd = boxoffice();
    cmd.args(["produce", "--to", "eventhub", "--endpoint", &hub.endpoint()])
        .args(extra)
        .env("EventHubConnection", CONNECTION);
    cmd
}

/// Is `part` a subsequence of `whole` (in order, gaps allowed)?
fn in_order(part: &[String], whole: &[String]) -> bool {
    let mut rest = whole.iter();
    part.iter().all(|p| rest.any(|w| w == p))
}

#[test]
fn produce_sends_every_event_once_in_order_to_its_orders_partition_through_throttling() {
    // Throttled, then the service fails twice, then it takes everything.
    let hub = FakeHub::start(&[429, 503, 500]);
    let generator = [
        "--count",
        "3000",
        "--fast",
        "--seed",
        "7",
        "--start",
        "2025-01-01T00:00:00Z",
    ];
    let out =
        run_ok(produce(&hub, &generator).args(["--max-batch-bytes", "50000", "--linger", "20ms"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains(KEY), "the key was printed: {stderr}");
    assert!(stderr.contains("sent 3,000 events"), "{stderr}");
    assert!(stderr.contains("3 retries"), "{stderr}");

    let expected = run_ok(boxoffice().arg("generate").args(generator));
    let expected: Vec<String> = String::from_utf8_lossy(&expected.stdout)
        .lines()
        .map(str::to_string)
        .collect();

    let received = hub.received();
    assert_eq!(received.iter().filter(|r| r.answered != 201).count(), 3);
    let mut per_hub: [(Vec<String>, &str); 2] =
        [(Vec::new(), "bookings"), (Vec::new(), "payments")];
    let mut per_partition: std::collections::BTreeMap<(String, u32), Vec<String>> =
        std::collections::BTreeMap::new();
    for r in received.iter().filter(|r| r.answered == 201) {
        assert!(r.body.len() <= 50_000, "a batch of {} bytes", r.body.len());
        assert_eq!(r.content_type, "application/vnd.microsoft.servicebus.json");
        assert!(r.query.contains("api-version=2014-01"), "{}", r.query);
        let uri = format!("https://tickets-ns.servicebus.windows.net/{}", r.hub);
        assert!(
            r.authorization
                .starts_with(&format!("SharedAccessSignature sr={}", url_encoded(&uri)))
        );
        let batch: Value = serde_json::from_slice(&r.body).expect("a batch is JSON");
        let lane = per_hub
            .iter_mut()
            .find(|(_, name)| *name == r.hub)
            .expect("only the bookings and payments hubs");
        // Co-partitioned: each batch goes to one partition by id (4, from the hub's
        // description), the one its orders hash to, with no partition key.
        let partition = r.partition.expect("sent to a partition by id");
        for entry in batch.as_array().expect("an array") {
            let body = entry["Body"].as_str().expect("Body is the event's text");
            assert!(entry.get("BrokerProperties").is_none(), "{entry}");
            if let Ok(event) = serde_json::from_str::<Value>(body) {
                let order = event["order_id"].as_str().expect("order_id");
                assert_eq!(partition, partition_index(order, 4), "{body}");
            }
            lane.0.push(body.to_string());
            per_partition
                .entry((r.hub.clone(), partition))
                .or_default()
                .push(body.to_string());
        }
    }
    let (bookings, payments) = (&per_hub[0].0, &per_hub[1].0);
    assert!(!bookings.is_empty() && !payments.is_empty());
    assert_eq!(
        bookings.len() + payments.len(),
        expected.len(),
        "nothing lost, nothing twice"
    );
    assert_eq!(per_partition.len(), 8, "both hubs, 4 partitions each");
    for ((hub, partition), events) in &per_partition {
        assert!(
            in_order(events, &expected),
            "{hub} partition {partition}: events arrive in the order produced"
        );
    }
    let mut all: Vec<&String> = bookings.iter().chain(payments).collect();
    let mut want: Vec<&String> = expected.iter().collect();
    all.sort();
    want.sort();
    assert_eq!(all, want);
}

#[test]
fn the_token_produce_sends_verifies_against_the_key() {
    let hub = FakeHub::start(&[]);
    run_ok(&mut produce(
        &hub,
        &["--count", "2000", "--fast", "--seed", "1", "--by-key"],
    ));
    let received = hub.received();
    // --by-key: to the hub with each order as partition key, Event Hubs picking the partition.
    for r in &received {
        assert_eq!(r.partition, None);
        let batch: Value = serde_json::from_slice(&r.body).expect("JSON");
        for entry in batch.as_array().expect("array") {
            assert!(
                entry["BrokerProperties"]["PartitionKey"].is_string(),
                "{entry}"
            );
        }
    }
    for hub_name in ["bookings", "payments"] {
        let r = received
            .iter()
            .find(|r| r.hub == hub_name)
            .expect("both hubs got a batch");
        let expiry: u64 = r
            .authorization
            .split("&se=")
            .nth(1)
            .and_then(|rest| rest.split('&').next())
            .and_then(|se| se.parse().ok())
            .expect("se=<expiry>");
        let uri = format!("https://tickets-ns.servicebus.windows.net/{hub_name}");
        assert_eq!(r.authorization, python_token(&uri, "producer", KEY, expiry));
    }
}

#[test]
fn a_refused_key_fails_at_once_with_the_status_and_no_secret() {
    let hub = FakeHub::start(&[401, 401, 401, 401]);
    let out = produce(&hub, &["--count", "10", "--fast", "--seed", "1"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("HTTP 401"), "{stderr}");
    assert!(
        stderr.contains("policy name or key was refused"),
        "{stderr}"
    );
    assert!(!stderr.contains(KEY), "{stderr}");
    let received = hub.received();
    assert!(
        received.len() <= 2,
        "a 401 is not retried: {} requests",
        received.len()
    );
}

#[test]
fn a_hub_that_keeps_failing_is_given_up_after_the_attempts_allowed() {
    let hub = FakeHub::start(&[503; 20]);
    let out = produce(
        &hub,
        &[
            "--count",
            "1",
            "--fast",
            "--seed",
            "1",
            "--max-attempts",
            "3",
        ],
    )
    .output()
    .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("after 3 attempts"), "{stderr}");
    assert!(stderr.contains("HTTP 503"), "{stderr}");
    assert_eq!(hub.received().len(), 3);
}

#[test]
fn a_missing_connection_setting_says_what_to_set() {
    let hub = FakeHub::start(&[]);
    let out = produce(
        &hub,
        &["--count", "1", "--connection-setting", "NO_SUCH_SETTING"],
    )
    .output()
    .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("set NO_SUCH_SETTING"), "{stderr}");
    assert!(stderr.contains("SharedAccessKeyName"), "{stderr}");
    assert!(hub.received().is_empty());
}

#[test]
fn produce_sends_with_a_managed_identity_where_azure_gives_one_and_says_so_elsewhere() {
    let identity = FakeIdentity::start("header-secret", "cid-1", 3600);
    let hub = FakeHub::with_identity(&[], 4, &identity);
    let identity_based = |cmd: &mut Command| {
        cmd.args(["produce", "--to", "eventhub", "--endpoint", &hub.endpoint()])
            .args([
                "--count",
                "200",
                "--fast",
                "--seed",
                "1",
                "--partitions",
                "4",
            ])
            .env_remove("EventHubConnection")
            .env_remove("IDENTITY_ENDPOINT")
            .env_remove("IDENTITY_HEADER")
            .env(
                "EventHubConnection__fullyQualifiedNamespace",
                "tickets-ns.servicebus.windows.net",
            )
            .env("EventHubConnection__credential", "managedidentity")
            .env("EventHubConnection__clientId", "cid-1");
    };
    let mut inside_azure = boxoffice();
    identity_based(&mut inside_azure);
    let out = run_ok(
        inside_azure
            .env("IDENTITY_ENDPOINT", identity.endpoint())
            .env("IDENTITY_HEADER", "header-secret"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("as managed identity cid-1"), "{stderr}");
    let received = hub.received();
    assert!(!received.is_empty());
    for r in &received {
        // The stand-in hub answers 401 to a token its identity endpoint did not issue.
        assert_eq!(r.answered, 201, "{}", r.authorization);
        assert!(r.authorization.starts_with("Bearer "));
    }
    let token = identity.issued()[0].token.clone();
    assert!(!stderr.contains(&token) && !stderr.contains("header-secret"));

    // A workstation has no identity endpoint: a clear error, nothing sent.
    let mut outside = boxoffice();
    identity_based(&mut outside);
    let stderr = run_err(&mut outside);
    assert!(
        stderr.contains("IDENTITY_ENDPOINT is not set")
            && stderr.contains("connection string with a key locally"),
        "{stderr}"
    );
    assert_eq!(hub.received().len(), received.len());
}

fn url_encoded(text: &str) -> String {
    text.replace(':', "%3A").replace('/', "%2F")
}
