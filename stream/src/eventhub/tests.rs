use super::batch::Batch;
use super::*;

const CONNECTION: &str = "Endpoint=sb://Tickets-NS.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=c2VjcmV0LWtleQ==";

#[test]
fn a_connection_string_keeps_a_key_that_ends_in_equals_signs() {
    let c = ConnectionString::parse(CONNECTION).expect("parses");
    assert_eq!(c.host, "tickets-ns.servicebus.windows.net");
    assert_eq!(c.key_name, "send");
    assert_eq!(c.key, "c2VjcmV0LWtleQ==");
    assert_eq!(c.entity_path, None);
    assert_eq!(
        c.resource_uri("bookings"),
        "https://tickets-ns.servicebus.windows.net/bookings"
    );
}

#[test]
fn a_connection_string_never_shows_its_key() {
    let c = ConnectionString::parse(CONNECTION).expect("parses");
    assert!(!format!("{c:?}").contains("c2VjcmV0"));
    // Nor does an error about a malformed part, which may be a pasted key.
    let e = ConnectionString::parse("Endpoint=sb://x/;c2VjcmV0LWtleQ").expect_err("malformed");
    assert!(!e.to_string().contains("c2VjcmV0"), "{e}");
    assert!(e.to_string().contains("part 2"), "{e}");
}

#[test]
fn a_connection_string_without_a_key_says_what_is_missing() {
    let e =
        ConnectionString::parse("Endpoint=sb://x.servicebus.windows.net/;SharedAccessKeyName=a")
            .expect_err("no key");
    assert!(e.to_string().contains("SharedAccessKey is missing"), "{e}");
    let e = ConnectionString::parse("SharedAccessKeyName=a;SharedAccessKey=b")
        .expect_err("no endpoint");
    assert!(e.to_string().contains("Endpoint"), "{e}");
}

#[test]
fn a_hub_scoped_policy_sends_only_to_its_hub() {
    let c = ConnectionString::parse(&format!("{CONNECTION};EntityPath=bookings")).expect("parses");
    assert!(c.check_hub("bookings").is_ok());
    let e = c.check_hub("payments").expect_err("other hub");
    assert!(e.to_string().contains("EntityPath"), "{e}");
}

#[test]
fn the_emulator_is_refused_without_an_endpoint_since_it_has_no_rest_api() {
    let c = ConnectionString::parse(&format!("{CONNECTION};UseDevelopmentEmulator=true"))
        .expect("parses");
    let c = Connection::from(c);
    let e = Sender::new(&c, "bookings", None, RetryPolicy::default()).expect_err("emulator");
    assert!(e.to_string().contains("AMQP"), "{e}");
    assert!(
        Sender::new(
            &c,
            "bookings",
            Some("http://127.0.0.1:1"),
            RetryPolicy::default()
        )
        .is_ok()
    );
}

#[test]
fn a_token_names_its_uri_expiry_and_policy_and_changes_with_the_expiry() {
    let a = sas::token(
        "https://ns.servicebus.windows.net/bookings",
        "send",
        "k",
        1_700_000_000,
    );
    let b = sas::token(
        "https://ns.servicebus.windows.net/bookings",
        "send",
        "k",
        1_700_000_001,
    );
    assert!(a.starts_with(
        "SharedAccessSignature sr=https%3A%2F%2Fns.servicebus.windows.net%2Fbookings&sig="
    ));
    assert!(a.ends_with("&se=1700000000&skn=send"), "{a}");
    assert_ne!(a, b);
}

fn entries(batch: &Batch) -> Vec<(String, String)> {
    let parsed: serde_json::Value = serde_json::from_slice(&batch.body).expect("a batch is JSON");
    parsed
        .as_array()
        .expect("an array")
        .iter()
        .map(|e| {
            (
                e["BrokerProperties"]["PartitionKey"]
                    .as_str()
                    .expect("key")
                    .to_string(),
                e["Body"].as_str().expect("body").to_string(),
            )
        })
        .collect()
}

#[test]
fn batches_stay_under_their_limit_and_keep_every_event_in_order() {
    let mut builder = BatchBuilder::new(4_000);
    let mut batches = Vec::new();
    let events: Vec<(String, String)> = (0..200)
        .map(|i| {
            (
                format!("order-{i}"),
                format!("{{\"order_id\":\"order-{i}\",\"note\":\"a \\\"quoted\\\" é\"}}"),
            )
        })
        .collect();
    for (key, body) in &events {
        if !builder.push(key, body).expect("fits") {
            batches.push(builder.take().expect("full batch"));
            assert!(builder.push(key, body).expect("fits"));
        }
    }
    batches.extend(builder.take());
    assert!(
        batches.len() > 2,
        "200 events of ~80 bytes need several 4 kB batches"
    );
    let mut sent = Vec::new();
    for b in &batches {
        assert!(b.body.len() <= 4_000, "{} bytes", b.body.len());
        let e = entries(b);
        assert_eq!(e.len(), b.events);
        sent.extend(e);
    }
    assert_eq!(sent, events);
    assert!(builder.take().is_none());
}

#[test]
fn an_event_too_big_for_any_batch_is_an_error_naming_its_order() {
    let mut builder = BatchBuilder::new(1_000);
    let e = builder
        .push("order-9", &"x".repeat(2_000))
        .expect_err("too big");
    assert!(e.to_string().contains("order-9"), "{e}");
    assert!(builder.is_empty());
}

#[test]
fn a_sender_shows_neither_key_nor_token() {
    let c = ConnectionString::parse(CONNECTION).expect("parses");
    let mut signer = sas::Signer::new(c, "bookings", std::time::Duration::from_secs(3600));
    let token = signer.token().to_string();
    let sig = token
        .split("&sig=")
        .nth(1)
        .and_then(|s| s.split('&').next())
        .expect("sig");
    let shown = format!("{signer:?}");
    assert!(
        !shown.contains(sig) && !shown.contains("c2VjcmV0"),
        "{shown}"
    );
}

/// Settings as the Functions host's environment would hold them.
fn settings(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: std::collections::HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

const IDENTITY: [(&str, &str); 5] = [
    (
        "EventHubConnection__fullyQualifiedNamespace",
        "Tickets-NS.servicebus.windows.net",
    ),
    ("EventHubConnection__credential", "managedidentity"),
    (
        "EventHubConnection__clientId",
        "5e29463d-71da-4fe0-8e69-999b57db23b0",
    ),
    ("IDENTITY_ENDPOINT", "http://127.0.0.1:41000/msi/token"),
    ("IDENTITY_HEADER", "853b9a84-identity-header"),
];

#[test]
fn an_identity_based_connection_names_its_namespace_and_user_assigned_identity() {
    let c = Connection::from_vars("EventHubConnection", settings(&IDENTITY)).expect("identity");
    let Connection::Identity { host, identity } = &c else {
        panic!("identity-based: {c:?}");
    };
    assert_eq!(host, "tickets-ns.servicebus.windows.net");
    assert_eq!(
        identity.choice(),
        &identity::IdentityChoice::ClientId("5e29463d-71da-4fe0-8e69-999b57db23b0".into())
    );
    assert_eq!(
        c.principal(),
        "managed identity 5e29463d-71da-4fe0-8e69-999b57db23b0"
    );
    // The identity header is a per-app secret: never shown.
    assert!(!format!("{c:?}").contains("853b9a84"), "{c:?}");
    // Without a client id: the system-assigned identity.
    let system = Connection::from_vars(
        "EventHubConnection",
        settings(&[IDENTITY[0], IDENTITY[1], IDENTITY[3], IDENTITY[4]]),
    )
    .expect("system-assigned");
    assert_eq!(system.principal(), "the system-assigned managed identity");
}

#[test]
fn a_connection_string_wins_over_identity_settings() {
    let mut pairs = IDENTITY.to_vec();
    pairs.push(("EventHubConnection", CONNECTION));
    let c = Connection::from_vars("EventHubConnection", settings(&pairs)).expect("key");
    assert!(matches!(c, Connection::Key(_)), "{c:?}");
    assert_eq!(c.principal(), "policy 'send'");
}

#[test]
fn an_identity_outside_azure_says_to_use_a_key_locally() {
    for missing in ["IDENTITY_ENDPOINT", "IDENTITY_HEADER"] {
        let pairs: Vec<_> = IDENTITY
            .iter()
            .copied()
            .filter(|(k, _)| *k != missing)
            .collect();
        let e = Connection::from_vars("EventHubConnection", settings(&pairs))
            .expect_err("no identity endpoint");
        let text = e.to_string();
        assert!(
            text.contains(&format!("{missing} is not set"))
                && text.contains("only available inside Azure")
                && text.contains("connection string with a key locally"),
            "{text}"
        );
        assert!(!text.contains("853b9a84"), "{text}");
    }
}

#[test]
fn identity_settings_that_cannot_work_are_refused_by_name() {
    let mut pairs = IDENTITY.to_vec();
    pairs[1] = ("EventHubConnection__credential", "clientsecret");
    let e = Connection::from_vars("EventHubConnection", settings(&pairs)).expect_err("credential");
    assert!(e.to_string().contains("only managedidentity"), "{e}");
    let mut pairs = IDENTITY.to_vec();
    pairs.push((
        "EventHubConnection__managedIdentityResourceId",
        "/subscriptions/x",
    ));
    let e = Connection::from_vars("EventHubConnection", settings(&pairs)).expect_err("both ids");
    assert!(e.to_string().contains("not both"), "{e}");
    let e = Connection::from_vars("EventHubConnection", settings(&[])).expect_err("nothing set");
    assert!(
        e.to_string()
            .contains("EventHubConnection__fullyQualifiedNamespace"),
        "{e}"
    );
}

#[test]
fn an_identity_token_answer_gives_its_token_and_unix_expiry() {
    // 2019-08-01 answers expires_on as a string of Unix seconds.
    let body = r#"{"access_token":"eyJ0eXAi.x.y","expires_on":"1586984735","resource":"https://eventhubs.azure.net/","token_type":"Bearer","client_id":"5E29463D"}"#;
    assert_eq!(
        identity::parse_token(body),
        Some(("eyJ0eXAi.x.y".to_string(), 1_586_984_735))
    );
    assert_eq!(
        identity::parse_token(r#"{"access_token":"t","expires_on":1586984735}"#),
        Some(("t".to_string(), 1_586_984_735))
    );
    // The 2017-09-01 date format, or no token, is not a token.
    assert_eq!(
        identity::parse_token(
            r#"{"access_token":"t","expires_on":"09/14/2017 00:00:00 PM +00:00"}"#
        ),
        None
    );
    assert_eq!(
        identity::parse_token(r#"{"expires_on":"1586984735"}"#),
        None
    );
}

#[test]
fn an_identity_based_sender_needs_no_key_and_ignores_emulator_checks() {
    let c = Connection::from_vars("EventHubConnection", settings(&IDENTITY)).expect("identity");
    let sender = Sender::new(&c, "payments", None, RetryPolicy::default()).expect("sender");
    let shown = format!("{sender:?}");
    assert!(
        shown.contains("https://tickets-ns.servicebus.windows.net/payments/messages"),
        "{shown}"
    );
    assert!(!shown.contains("853b9a84"), "{shown}");
}
