//! The `ingest` and `generate` functions as the host drives them over time and under load:
//! many clients at once on a fresh lake, and timer ticks carrying the host's clock.

mod common;

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use common::functions_host::{invoke, serve_with};
use common::{count, local, strings};
use serde_json::{Value, json};

use boxoffice_ingest::bronze::QUARANTINE;

fn http(hub: &str, body: String) -> Value {
    json!({"Data": {"req": {"Url": format!("http://localhost:7071/api/ingest/{hub}"), "Method": "POST", "Query": {}, "Headers": {"Content-Type": ["application/json"]}, "Params": {"hub": hub}, "Body": body}}, "Metadata": {"hub": hub, "sys": {"MethodName": "ingest"}}})
}

/// Valid events, by hub, from the generator (no malformed ones).
fn valid_events(count: usize) -> (Vec<String>, Vec<String>) {
    let generator = boxoffice_events::Generator::new(boxoffice_events::GeneratorConfig {
        seed: 9,
        shares: boxoffice_events::Shares {
            malformed: 0.0,
            ..boxoffice_events::Shares::default()
        },
        ..boxoffice_events::GeneratorConfig::default()
    })
    .expect("generator");
    let (mut bookings, mut payments) = (Vec::new(), Vec::new());
    for e in generator.take(count) {
        match e.hub {
            boxoffice_events::Hub::Bookings => bookings.push(e.body),
            boxoffice_events::Hub::Payments => payments.push(e.body),
        }
    }
    (bookings, payments)
}

/// 16 clients x 200 requests, each with 4 valid events and one bad one, on a fresh lake: every
/// request answered (no 5xx), every valid event sent as its text, every bad one quarantined.
#[test]
fn ingest_under_16_concurrent_clients_answers_every_request_and_loses_nothing() {
    const CLIENTS: usize = 16;
    const REQUESTS: usize = 200;
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let server = serve_with(&["--lake", lake.to_str().expect("utf-8")], &[]);
    let (bookings, _) = valid_events(20_000);
    assert!(bookings.len() >= 4 * 50);
    let results: Vec<(usize, usize, Vec<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let (server, bookings) = (&server, &bookings);
                s.spawn(move || {
                    let (mut ok, mut sent, mut bad) = (0, 0, Vec::new());
                    for r in 0..REQUESTS {
                        let at = (client * REQUESTS + r) * 4 % (bookings.len() - 4);
                        let good = &bookings[at..at + 4];
                        let wrong = format!("{{\"order_id\":\"bad-{client}-{r}\"}}");
                        let body = format!(
                            "{}\n{}\n{}\n{wrong}\n{}\n",
                            good[0], good[1], good[2], good[3]
                        );
                        let (status, reply) = invoke(server, "ingest", &http("bookings", body));
                        assert_eq!(status, 200, "client {client} request {r}: {reply}");
                        assert_eq!(reply["Outputs"]["res"]["statusCode"], 400, "{reply}");
                        let out: Vec<&str> = reply["Outputs"]["bookings"]
                            .as_array()
                            .expect("the valid events")
                            .iter()
                            .filter_map(Value::as_str)
                            .collect();
                        assert_eq!(out, good.iter().map(String::as_str).collect::<Vec<_>>());
                        ok += 1;
                        sent += out.len();
                        bad.push(wrong);
                    }
                    (ok, sent, bad)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client"))
            .collect()
    });
    drop(server);
    let answered: usize = results.iter().map(|r| r.0).sum();
    let sent: usize = results.iter().map(|r| r.1).sum();
    assert_eq!(answered, CLIENTS * REQUESTS);
    assert_eq!(sent, CLIENTS * REQUESTS * 4);
    let lake = local(&lake);
    assert_eq!(
        count(&lake, &QUARANTINE),
        CLIENTS * REQUESTS,
        "each bad event once"
    );
    let mut quarantined = strings(&lake, &QUARANTINE, "body");
    let mut expected: Vec<String> = results.into_iter().flat_map(|r| r.2).collect();
    quarantined.sort();
    expected.sort();
    assert_eq!(quarantined, expected);
}

fn tick(at: DateTime<Utc>, last: DateTime<Utc>) -> Value {
    json!({"Data": {"timer": {"Schedule": {"AdjustForDST": true}, "ScheduleStatus": {"Last": last.to_rfc3339(), "Next": (at + Duration::seconds(10)).to_rfc3339(), "LastUpdated": last.to_rfc3339()}, "IsPastDue": false}}, "Metadata": {"sys": {"MethodName": "generate", "UtcNow": at.to_rfc3339(), "RandGuid": "5b0c6a0a-3c9e-4d4a-9b1e-2f1f0b1d8c11"}}})
}

fn time_of(event: &Value, field: &str) -> DateTime<Utc> {
    let text = event[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field}: {event}"));
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .with_timezone(&Utc)
}

/// 60 ticks 10 s apart (10 minutes of the host's clock, sent at once): each tick holds the
/// events of its last 10 s, so event times never fall behind the ticks, whatever the rate; a
/// payment follows its booking in event time and in ticks; after a long silence a new
/// generator starts at the tick's time.
#[test]
fn generate_follows_the_hosts_clock_tick_after_tick() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let server = serve_with(
        &[
            "--lake",
            lake.to_str().expect("utf-8"),
            "--rate",
            "20",
            "--interval",
            "10s",
        ],
        &[],
    );
    let start = Utc::now() - Duration::hours(1);
    let interval = Duration::seconds(10);
    let jitter = Duration::seconds(2); // the generator's normal arrival delay, at most
    let mut booked: HashMap<String, (DateTime<Utc>, usize, bool)> = HashMap::new();
    let mut paid: Vec<(String, DateTime<Utc>, usize)> = Vec::new();
    let (mut events, mut late) = (0usize, 0usize);
    let mut last = start - interval;
    for k in 0..60 {
        let at = start + interval * k as i32;
        let (status, reply) = invoke(&server, "generate", &tick(at, last));
        assert_eq!(status, 200, "{reply}");
        let log = reply["Logs"][0].as_str().expect("log");
        assert_eq!(log.contains("new generator"), k == 0, "tick {k}: {log}");
        let mut in_tick = 0;
        for (hub, field) in [("bookings", "booking_time"), ("payments", "payment_time")] {
            for event in reply["Outputs"][hub].as_array().expect("events") {
                let t = time_of(event, field);
                assert!(t <= at, "tick {k}: an event from the future: {event}");
                let on_time = t >= at - interval - jitter;
                if !on_time {
                    late += 1; // the generator's deliberately late arrivals
                }
                let order = event["order_id"].as_str().expect("order").to_string();
                if hub == "bookings" {
                    booked.entry(order).or_insert((t, k, on_time));
                } else {
                    paid.push((order, t, k));
                }
                in_tick += 1;
            }
        }
        // 20 events/s over 10 s: a Poisson count, never near zero, never near double.
        if k > 0 {
            assert!((100..=300).contains(&in_tick), "tick {k}: {in_tick} events");
        }
        events += in_tick;
        last = at;
    }
    assert!(
        late * 20 <= events,
        "{late} of {events} events older than their tick's interval"
    );
    let mut within_two_minutes = 0;
    let mut matched = 0;
    for (order, t, k) in &paid {
        if let Some((booked_at, booked_tick, on_time)) = booked.get(order) {
            matched += 1;
            assert!(t >= booked_at, "{order}: paid before booked");
            // (A booking that arrives late on purpose may come after its payment.)
            assert!(
                !on_time || k >= booked_tick,
                "{order}: payment sent in an earlier tick than its booking"
            );
            if *t - *booked_at <= Duration::minutes(2) {
                within_two_minutes += 1;
            }
        }
    }
    assert!(matched > 1_000, "{matched} payments of bookings in the run");
    assert!(
        within_two_minutes * 100 >= matched * 85,
        "{within_two_minutes} of {matched} payments within 2 minutes"
    );
    // An hour without ticks (an idle or recycled instance): the next tick starts over at its
    // own time rather than replaying the hour.
    let after = last + Duration::hours(1);
    let (status, reply) = invoke(&server, "generate", &tick(after, last));
    assert_eq!(status, 200);
    let log = reply["Logs"][0].as_str().expect("log");
    assert!(log.contains("new generator: no tick since"), "{log}");
    for event in reply["Outputs"]["bookings"].as_array().expect("events") {
        assert!(time_of(event, "booking_time") > after - interval - jitter - Duration::minutes(15));
    }
}

/// A valid booking carrying an unknown field nested 130 levels deep: every later parse refuses
/// it, so `ingest` must too, and send nothing.
#[test]
fn ingest_refuses_an_event_nested_deeper_than_any_parser_takes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let server = serve_with(&["--lake", lake.to_str().expect("utf-8")], &[]);
    let (bookings, _) = valid_events(50);
    let base = &bookings[0];
    let deep = format!(
        "{},\"extra\":{}1{}}}",
        &base[..base.len() - 1],
        "[".repeat(130),
        "]".repeat(130)
    );
    let (status, reply) = invoke(&server, "ingest", &http("bookings", deep.clone()));
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["Outputs"]["res"]["statusCode"], 400, "{reply}");
    assert!(
        reply["Outputs"].get("bookings").is_none(),
        "nothing sent: {reply}"
    );
    let answer: Value =
        serde_json::from_str(reply["Outputs"]["res"]["body"].as_str().expect("body"))
            .expect("json");
    assert_eq!(answer["accepted"], 0);
    let reasons = answer["rejected"][0]["reasons"].to_string();
    assert!(reasons.contains("recursion limit"), "{reasons}");
    drop(server);
    assert_eq!(strings(&local(&lake), &QUARANTINE, "body"), [deep]);
}
