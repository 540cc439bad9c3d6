//! `generate` and `ingest` in Azure, where `EventHubConnection` is identity-based (the Bicep sets
//! `EventHubConnection__fullyQualifiedNamespace`, `__credential=managedidentity`, `__clientId`,
//! and the namespace refuses keys): they send co-partitioned over REST with Microsoft Entra
//! tokens from the app's managed identity. The identity endpoint and the hubs are stand-ins
//! (tests/common/fake_identity.rs, fake_hub.rs) that check what the real ones check.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use common::fake_hub::{FakeHub, co_partitioned};
use common::fake_identity::{EVENT_HUBS_RESOURCE, FakeIdentity};
use common::functions_host::{
    CONNECTION_SETTINGS, generated, http, invoke, serve_logging, tick_at, timer,
};
use common::{boxoffice, run_err};
use serde_json::{Value, json};

const CLIENT_ID: &str = "5e29463d-71da-4fe0-8e69-999b57db23b0";
const IDENTITY_HEADER: &str = "853b9a84-5bfa-4b22-a3f3-0b9a43d9ad8a";

/// The app settings functionapp.bicep gives, with the identity endpoint App Service sets
/// (`None`: outside Azure, where there is none).
fn identity_settings(identity: Option<&FakeIdentity>, client_id: &str) -> Vec<(String, String)> {
    let mut settings = vec![
        (
            "EventHubConnection__fullyQualifiedNamespace",
            "tickets-ns.servicebus.windows.net".to_string(),
        ),
        ("EventHubConnection__credential", "managedidentity".into()),
        ("EventHubConnection__clientId", client_id.into()),
        ("EventHubPartitionCount", "4".into()),
        ("BOXOFFICE_SEND_VIA", "auto".into()),
    ];
    if let Some(identity) = identity {
        settings.push(("IDENTITY_ENDPOINT", identity.endpoint()));
        settings.push(("IDENTITY_HEADER", IDENTITY_HEADER.into()));
    }
    settings
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

fn pairs(settings: &[(String, String)]) -> Vec<(&str, &str)> {
    settings
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn with_a_managed_identity_generate_and_ingest_send_co_partitioned_with_renewed_bearer_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Tokens live 4 s: the handler renews one after 2 s, so a pause of 5 s needs a new one.
    let identity = FakeIdentity::start(IDENTITY_HEADER, CLIENT_ID, 4);
    let hub = FakeHub::with_identity(&[], 4, &identity);
    let log = dir.path().join("serve.log");
    let lake = dir.path().join("lake");
    let mut settings = identity_settings(Some(&identity), CLIENT_ID);
    // Every log of every crate, HTTP clients included: none may show a token.
    settings.push(("RUST_LOG".into(), "debug".into()));
    let server = serve_logging(
        &[
            "--lake",
            lake.to_str().expect("utf-8"),
            "--rate",
            "3",
            "--eventhub-endpoint",
            &hub.endpoint(),
        ],
        &pairs(&settings),
        Some(&log),
    );
    let mut replies = Vec::new();
    let start = chrono::Utc::now();
    for k in 0..30 {
        if k == 15 {
            std::thread::sleep(Duration::from_secs(5));
        }
        let (status, reply) = invoke(
            &server,
            "generate",
            &tick_at(start + chrono::Duration::seconds(10 * k)),
        );
        assert_eq!(status, 200, "{reply}");
        assert!(
            reply["Outputs"].get("bookings").is_none(),
            "sent over REST, not the output bindings: {reply}"
        );
        replies.push(reply);
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
    replies.push(reply);
    drop(server);

    let received = hub.received();
    let bodies = co_partitioned(&received, 4);
    for line in &good[..2] {
        assert_eq!(bodies.iter().filter(|b| *b == line).count(), 1, "{line}");
    }
    // Every send carried a token the identity endpoint issued for Event Hubs, still valid when
    // it arrived (the hub answers 401 otherwise).
    let issued = identity.issued();
    let mut uses: HashMap<String, usize> = HashMap::new();
    for r in &received {
        assert_eq!(r.answered, 201, "{} partition {:?}", r.hub, r.partition);
        let token = r
            .authorization
            .strip_prefix("Bearer ")
            .expect("a Bearer token");
        *uses.entry(token.to_string()).or_default() += 1;
    }
    assert!(
        issued.iter().all(|i| i.resource == EVENT_HUBS_RESOURCE),
        "{issued:?}"
    );
    // Asked for with the app's header, API version and client id (refused otherwise).
    let requests = identity.requests();
    assert!(
        requests.iter().all(|r| r.answered == 200
            && r.query.get("client_id").map(String::as_str) == Some(CLIENT_ID)),
        "{requests:?}"
    );
    // A token serves many sends, and one was renewed after the first expired.
    assert!(uses.values().any(|n| *n > 1), "tokens are reused: {uses:?}");
    assert!(uses.len() >= 2, "a token was renewed: {uses:?}");
    assert!(issued.len() >= uses.len());

    // No token, and not the identity header, in the replies or the logs.
    let log = read(&log);
    assert!(
        log.contains(&format!("over REST as managed identity {CLIENT_ID}")),
        "{log}"
    );
    let replies = serde_json::to_string(&replies).expect("json");
    for secret in issued
        .iter()
        .map(|i| i.token.as_str())
        .chain([IDENTITY_HEADER])
    {
        assert!(!replies.contains(secret), "a reply shows {secret}");
        assert!(!log.contains(secret), "the log shows {secret}");
        // Nor its signature-free middle part, in case a log cut the token.
        let middle = secret.split('.').nth(1).unwrap_or(secret);
        assert!(!log.contains(middle), "the log shows {middle}");
    }
}

#[test]
fn an_identity_based_connection_outside_azure_falls_back_to_the_bindings_and_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let log = dir.path().join("serve.log");
    let settings = identity_settings(None, CLIENT_ID);
    let server = serve_logging(
        &["--lake", lake.to_str().expect("utf-8"), "--rate", "3"],
        &pairs(&settings),
        Some(&log),
    );
    let (status, reply) = invoke(&server, "generate", &timer());
    assert_eq!(status, 200, "{reply}");
    assert!(
        reply["Outputs"]["bookings"].is_array(),
        "the output bindings carry the events: {reply}"
    );
    drop(server);
    let log = read(&log);
    assert!(
        log.contains("output bindings")
            && log.contains("NOT co-partitioned")
            && log.contains("IDENTITY_ENDPOINT is not set")
            && log.contains("only available inside Azure"),
        "{log}"
    );

    // Insisting on REST fails at start, with the same reason.
    let mut cmd = boxoffice();
    for inherited in CONNECTION_SETTINGS {
        cmd.env_remove(inherited);
    }
    let stderr = run_err(
        cmd.args(["serve", "--lake", lake.to_str().expect("utf-8")])
            .args(["--send-via", "rest"])
            .envs(pairs(&settings))
            .env(
                "FUNCTIONS_CUSTOMHANDLER_PORT",
                boxoffice_testkit::free_port().to_string(),
            ),
    );
    assert!(
        stderr.contains("IDENTITY_ENDPOINT is not set")
            && stderr.contains("use a connection string with a key locally"),
        "{stderr}"
    );
}

#[test]
fn a_token_the_identity_endpoint_refuses_fails_the_invocation_and_sends_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let identity = FakeIdentity::start(IDENTITY_HEADER, CLIENT_ID, 3600);
    let hub = FakeHub::with_identity(&[], 4, &identity);
    let lake = dir.path().join("lake");
    // A client id that is not one of the app's identities.
    let settings = identity_settings(Some(&identity), "00000000-0000-0000-0000-000000000000");
    let server = serve_logging(
        &[
            "--lake",
            lake.to_str().expect("utf-8"),
            "--eventhub-endpoint",
            &hub.endpoint(),
        ],
        &pairs(&settings),
        None,
    );
    let (status, reply) = invoke(&server, "generate", &timer());
    assert_eq!(status, 500, "{reply}");
    let log = reply["Logs"][0].as_str().unwrap_or_default();
    assert!(
        log.contains("managed identity token") && log.contains("HTTP 400"),
        "{log}"
    );
    assert!(!log.contains(IDENTITY_HEADER), "{log}");
    assert!(hub.received().is_empty(), "nothing is sent without a token");
    let answered: BTreeSet<u16> = identity.requests().iter().map(|r| r.answered).collect();
    assert_eq!(answered, BTreeSet::from([400]));
}
