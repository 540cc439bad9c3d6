use super::*;
use crate::model::{PaymentMethod, PaymentStatus, SchemaVersion};
use serde_json::json;

/// The demos' exact booking shape (reference/demos.md part A): no schema_version, no event_id,
/// integer prices, a multi-line address.
const DEMO_BOOKING: &str = r#"{"order_id": "order_2000", "booking_time": "2024-10-11T09:39:30Z", "customer": {"customer_id": "cust2000", "name": "Asha Rao", "email": "asha.rao@example.com"}, "event_details": {"event_id": "event17", "event_name": "Concert", "event_location": "12 MG Road\nBengaluru, KA 560001", "seats": [{"seat_number": "A7", "price": 75}, {"seat_number": "B3", "price": 60}]}}"#;

/// The demos' exact payment shape.
const DEMO_PAYMENT: &str = r#"{"payment_id": "payment_3000", "order_id": "order_2000", "payment_time": "2024-10-11T09:40:10Z", "amount": 150, "payment_method": "Credit Card", "payment_status": "Success"}"#;

fn v1_booking() -> serde_json::Value {
    json!({
        "schema_version": 1,
        "event_id": "7d3f4a52-1c1e-4f3a-9a8b-5b2a1d0c9e11",
        "order_id": "order_2001",
        "booking_time": "2025-02-04T19:19:48+00:00",
        "customer": {"customer_id": "cust2001", "name": "Ravi Iyer", "email": "ravi@example.com"},
        "event_details": {
            "event_id": "event3", "event_name": "Hamlet Play", "event_location": "1 Stage Lane",
            "seats": [{"seat_number": "C1", "price": 80.5}]
        }
    })
}

fn v2_payment() -> serde_json::Value {
    json!({
        "schema_version": 2,
        "event_id": "0b6f8f9e-3c57-4d0e-8f7e-3b1d2a4c5e6f",
        "payment_id": "payment_3001", "order_id": "order_2001",
        "payment_time": "2025-02-05T00:50:10+05:30",
        "amount": 82.11, "payment_method": "UPI", "payment_status": "Failed",
        "currency": "INR", "fee": 1.61
    })
}

fn reasons(body: &str, hub: Option<Hub>) -> Vec<String> {
    match validate(body, hub) {
        Ok(v) => panic!("expected invalid, got {v:?}"),
        Err(e) => e.reasons,
    }
}

fn has(reasons: &[String], needle: &str) -> bool {
    reasons.iter().any(|r| r.contains(needle))
}

#[test]
fn demo_booking_shape_is_accepted_as_v0() {
    let v = validate(DEMO_BOOKING, Some(Hub::Bookings)).expect("demo booking is valid");
    let Event::Booking(b) = v.event else {
        panic!("not a booking")
    };
    assert_eq!(b.schema_version, SchemaVersion::V0);
    assert_eq!(b.event_id, None);
    assert_eq!(b.order_id, "order_2000");
    assert_eq!(b.booking_time.to_rfc3339(), "2024-10-11T09:39:30+00:00");
    assert_eq!(b.event_details.seats.len(), 2);
    assert_eq!(b.event_details.seats[0].price, 75.0);
    assert_eq!(
        b.event_details.event_location,
        "12 MG Road\nBengaluru, KA 560001"
    );
    // v0 uid is a v5 UUID of the body.
    assert_eq!(
        uuid::Uuid::parse_str(&v.event_uid)
            .expect("uid is a uuid")
            .get_version_num(),
        5
    );
}

#[test]
fn demo_payment_shape_is_accepted_as_v0() {
    let v = validate(DEMO_PAYMENT, None).expect("demo payment is valid");
    let Event::Payment(p) = v.event else {
        panic!("not a payment")
    };
    assert_eq!(p.schema_version, SchemaVersion::V0);
    assert_eq!(p.amount, 150.0);
    assert_eq!(p.payment_method, PaymentMethod::CreditCard);
    assert_eq!(p.payment_status, PaymentStatus::Success);
}

#[test]
fn v1_booking_parses_and_uses_event_id_as_uid() {
    let body = v1_booking().to_string();
    let v = validate(&body, Some(Hub::Bookings)).expect("valid v1");
    assert_eq!(v.event_uid, "7d3f4a52-1c1e-4f3a-9a8b-5b2a1d0c9e11");
    assert_eq!(v.event.schema_version(), SchemaVersion::V1);
    let Event::Booking(b) = v.event else {
        panic!("not a booking")
    };
    assert_eq!(b.event_details.seats[0].price, 80.5);
    assert_eq!(b.channel, None);
}

#[test]
fn v2_payment_parses_with_optional_fields_and_converts_offsets_to_utc() {
    let v = validate(&v2_payment().to_string(), Some(Hub::Payments)).expect("valid v2");
    let Event::Payment(p) = v.event else {
        panic!("not a payment")
    };
    assert_eq!(p.schema_version, SchemaVersion::V2);
    assert_eq!(p.payment_time.to_rfc3339(), "2025-02-04T19:20:10+00:00");
    assert_eq!(p.currency.as_deref(), Some("INR"));
    assert_eq!(p.fee, Some(1.61));
    assert_eq!(p.payment_method, PaymentMethod::Upi);
    assert_eq!(p.payment_status, PaymentStatus::Failed);
}

#[test]
fn v2_booking_optional_fields() {
    let mut b = v1_booking();
    b["schema_version"] = json!(2);
    b["channel"] = json!("app");
    b["currency"] = json!("INR");
    b["event_details"]["city"] = json!("Pune");
    b["event_details"]["starts_at"] = json!("2025-03-01T18:30:00Z");
    let v = validate(&b.to_string(), None).expect("valid v2 booking");
    let Event::Booking(b) = v.event else {
        panic!("not a booking")
    };
    assert_eq!(b.channel.as_deref(), Some("app"));
    assert_eq!(b.event_details.city.as_deref(), Some("Pune"));
    assert!(b.event_details.starts_at.is_some());
}

#[test]
fn malformed_json_is_reported() {
    let r = reasons(r#"{"order_id": "order_1", "booking_time": "#, None);
    assert_eq!(r.len(), 1);
    assert!(r[0].starts_with("malformed JSON"), "{r:?}");
}

#[test]
fn non_object_is_reported() {
    let r = reasons("[1,2]", None);
    assert!(has(&r, "must be a JSON object, got an array"), "{r:?}");
}

#[test]
fn missing_fields_are_each_reported() {
    let mut b = v1_booking();
    let obj = b.as_object_mut().expect("object");
    obj.remove("order_id");
    obj.remove("booking_time");
    b["customer"].as_object_mut().expect("obj").remove("email");
    let r = reasons(&b.to_string(), Some(Hub::Bookings));
    assert!(has(&r, "missing field order_id"), "{r:?}");
    assert!(has(&r, "missing field booking_time"), "{r:?}");
    assert!(has(&r, "missing field customer.email"), "{r:?}");
    assert_eq!(r.len(), 3, "{r:?}");
}

#[test]
fn wrong_types_are_reported() {
    let mut b = v1_booking();
    b["order_id"] = json!(2001);
    b["event_details"]["seats"][0]["price"] = json!("eighty");
    let r = reasons(&b.to_string(), Some(Hub::Bookings));
    assert!(
        has(&r, "wrong type: order_id must be a string, got a number"),
        "{r:?}"
    );
    assert!(
        has(
            &r,
            "wrong type: event_details.seats[0].price must be a number, got a string"
        ),
        "{r:?}"
    );
}

#[test]
fn zoneless_and_unparseable_timestamps_are_told_apart() {
    let mut b = v1_booking();
    b["booking_time"] = json!("2024-10-11T09:39:30");
    let r = reasons(&b.to_string(), Some(Hub::Bookings));
    assert!(has(&r, "has no time zone"), "{r:?}");

    b["booking_time"] = json!("yesterday at noon");
    let r = reasons(&b.to_string(), Some(Hub::Bookings));
    assert!(has(&r, "is not an RFC 3339 timestamp"), "{r:?}");
}

#[test]
fn empty_seats_is_reported() {
    let mut b = v1_booking();
    b["event_details"]["seats"] = json!([]);
    let r = reasons(&b.to_string(), None);
    assert!(has(&r, "event_details.seats is empty"), "{r:?}");
}

#[test]
fn too_many_seats_is_reported() {
    let mut b = v1_booking();
    let seats: Vec<_> = (1..=7)
        .map(|i| json!({"seat_number": format!("A{i}"), "price": 10}))
        .collect();
    b["event_details"]["seats"] = json!(seats);
    let r = reasons(&b.to_string(), None);
    assert!(has(&r, "holds 7 seats; an order holds at most 6"), "{r:?}");
}

#[test]
fn duplicate_seat_in_an_order_is_reported() {
    // The demos draw seats independently, so 62 of 3,209 orders held the same seat twice.
    let body = DEMO_BOOKING.replace("\"B3\"", "\"A7\"");
    let r = reasons(&body, None);
    assert_eq!(r, vec!["duplicate seat A7 in order order_2000".to_string()]);
}

#[test]
fn negative_price_and_amount_are_reported() {
    let body = DEMO_BOOKING.replace("\"price\": 60", "\"price\": -60");
    let r = reasons(&body, None);
    assert!(
        has(&r, "event_details.seats[1].price is negative: -60"),
        "{r:?}"
    );

    let body = DEMO_PAYMENT.replace("150", "-150");
    let r = reasons(&body, None);
    assert!(has(&r, "amount is negative: -150"), "{r:?}");
}

#[test]
fn unknown_payment_method_and_status_are_reported() {
    let body = DEMO_PAYMENT
        .replace("Credit Card", "Cheque")
        .replace("Success", "Pending");
    let r = reasons(&body, None);
    assert!(has(&r, "unknown payment_method \"Cheque\""), "{r:?}");
    assert!(has(&r, "unknown payment_status \"Pending\""), "{r:?}");
    assert_eq!(r.len(), 2);
}

#[test]
fn oversized_event_is_reported_with_its_size() {
    let mut b = v1_booking();
    b["customer"]["name"] = json!("x".repeat(MAX_EVENT_BYTES));
    let body = b.to_string();
    let r = reasons(&body, None);
    assert!(
        has(
            &r,
            &format!("event is {} bytes, over the 262144-byte limit", body.len())
        ),
        "{r:?}"
    );
}

#[test]
fn every_reason_is_listed_at_once() {
    let body = r#"{"schema_version": 1, "event_id": "not-a-uuid", "order_id": "", "booking_time": "2024-10-11 09:39:30", "customer": "cust1", "event_details": {"event_id": "event1", "event_name": "Movie", "event_location": "x", "seats": [{"seat_number": "A1", "price": -1}, {"seat_number": "A1", "price": 5}]}}"#;
    let r = reasons(body, None);
    for needle in [
        "event_id \"not-a-uuid\" is not a UUID",
        "order_id is empty",
        "has no time zone",
        "wrong type: customer must be an object, got a string",
        "price is negative",
        "duplicate seat A1",
    ] {
        assert!(has(&r, needle), "missing {needle:?} in {r:?}");
    }
}

#[test]
fn unsupported_schema_version_and_missing_event_id() {
    let mut b = v1_booking();
    b["schema_version"] = json!(3);
    let r = reasons(&b.to_string(), None);
    assert!(has(&r, "unsupported schema_version 3"), "{r:?}");

    let mut b = v1_booking();
    b.as_object_mut().expect("obj").remove("event_id");
    let r = reasons(&b.to_string(), None);
    assert_eq!(r, vec!["missing field event_id".to_string()]);
}

#[test]
fn wrong_hub_is_reported() {
    let r = reasons(DEMO_PAYMENT, Some(Hub::Bookings));
    assert_eq!(
        r,
        vec!["a payment event sent to the bookings hub".to_string()]
    );
}

#[test]
fn unrecognisable_object_is_reported() {
    let r = reasons(r#"{"hello": "world"}"#, None);
    assert!(has(&r, "cannot tell a booking from a payment"), "{r:?}");
}

#[test]
fn invalid_events_keep_their_uid_when_json() {
    let mut b = v1_booking();
    b["event_details"]["seats"] = json!([]);
    let err = validate(&b.to_string(), None).expect_err("invalid");
    assert_eq!(
        err.event_uid.as_deref(),
        Some("7d3f4a52-1c1e-4f3a-9a8b-5b2a1d0c9e11")
    );
}

#[test]
fn sniff_routes_by_shape_and_reads_order_id() {
    let s = sniff(DEMO_PAYMENT);
    assert_eq!(s.hub, Some(Hub::Payments));
    assert_eq!(s.order_id.as_deref(), Some("order_2000"));
    let s = sniff(DEMO_BOOKING);
    assert_eq!(s.hub, Some(Hub::Bookings));
    assert_eq!(sniff("not json"), Sniffed::default());
    assert_eq!(sniff(r#"{"order_id": 5}"#).order_id, None);
}

#[test]
fn zero_price_is_valid_here_and_left_to_silver_expectations() {
    let body = DEMO_BOOKING.replace("\"price\": 60", "\"price\": 0");
    assert!(validate(&body, None).is_ok());
}

/// The fast path may only ever accept what the complete check accepts, with the same result.
fn assert_agree(body: &str, hub: Option<Hub>) -> bool {
    let complete = check::validate(body, hub);
    // The join's entry point gives the same event, or the same reasons, without the uid.
    assert_eq!(
        validate_event(body, hub),
        complete.clone().map(|valid| valid.event),
        "validate_event: {body}"
    );
    match fast::accept(body, hub) {
        Some(accepted) => {
            let uid = accepted.event_uid(body).expect("uid");
            let fast = ValidEvent {
                event: accepted.into_event(),
                event_uid: uid,
            };
            assert_eq!(Ok(&fast), complete.as_ref(), "fast path accepted: {body}");
            let id = identify(body, hub).expect("identify agrees");
            assert_eq!(
                (id.hub, id.schema_version, id.event_uid),
                (
                    fast.event.hub(),
                    fast.event.schema_version(),
                    fast.event_uid
                )
            );
            true
        }
        None => {
            assert_eq!(identify(body, hub).is_ok(), complete.is_ok(), "{body}");
            false
        }
    }
}

#[test]
fn fast_and_complete_checks_agree() {
    use crate::generator::{Generator, GeneratorConfig, Shares};
    let config = GeneratorConfig {
        seed: 99,
        shares: Shares {
            malformed: 0.3,
            v0: 0.3,
            v2: 0.4,
            ..Shares::default()
        },
        ..GeneratorConfig::default()
    };
    let (mut valid, mut fast_accepted) = (0, 0);
    for e in Generator::new(config).expect("config").take(30_000) {
        let other = match e.hub {
            Hub::Bookings => Hub::Payments,
            Hub::Payments => Hub::Bookings,
        };
        for hub in [Some(e.hub), None, Some(other)] {
            let accepted = assert_agree(&e.body, hub);
            if hub == Some(e.hub) && check::validate(&e.body, hub).is_ok() {
                valid += 1;
                fast_accepted += usize::from(accepted);
            }
        }
    }
    assert!(valid > 15_000);
    assert_eq!(
        fast_accepted, valid,
        "every generated valid event takes the fast path"
    );
}

#[test]
fn fast_path_edge_cases_defer_to_the_complete_check() {
    let b = v1_booking();
    let mut cases = Vec::new();
    let mut with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = b.clone();
        f(&mut v);
        cases.push(v.to_string());
    };
    with(&|v| v["schema_version"] = json!(null));
    with(&|v| v["schema_version"] = json!(1.0));
    with(&|v| v["schema_version"] = json!("1"));
    with(&|v| v["payment_id"] = json!(null));
    with(&|v| v["payment_time"] = json!("2024-10-11T09:39:30Z"));
    with(&|v| v["event_id"] = json!(null));
    with(&|v| v["customer"]["name"] = json!(null));
    with(&|v| v["event_details"]["seats"][0]["seat_number"] = json!("  "));
    with(&|v| v["event_details"]["city"] = json!(7));
    with(&|v| v["currency"] = json!("inr"));
    with(&|v| v["channel"] = json!(null));
    with(&|v| {
        v.as_object_mut().expect("obj").remove("schema_version");
    });
    with(&|v| {
        let obj = v.as_object_mut().expect("obj");
        obj.remove("schema_version");
        obj.insert("event_id".into(), json!("not-a-uuid"));
    });
    cases.push(
        r#"{"order_id":"o1","order_id":"o2","booking_time":"2024-10-11T09:39:30Z","customer":{"customer_id":"c","name":"n","email":"e"},"event_details":{"event_id":"e","event_name":"n","event_location":"l","seats":[{"seat_number":"A1","price":1}]}}"#
            .to_string(),
    );
    cases.push(DEMO_BOOKING.to_string());
    cases.push(DEMO_PAYMENT.to_string());
    cases.push(
        DEMO_PAYMENT
            .replace("150", "150.5")
            .replace("}", r#", "fee": null}"#),
    );
    cases.push(v2_payment().to_string());
    for body in &cases {
        for hub in [None, Some(Hub::Bookings), Some(Hub::Payments)] {
            assert_agree(body, hub);
        }
    }
}

/// An unknown field nested past the complete check's parser limit: the fast path used to skip it
/// unparsed and accept the event, which every later parse then refused.
#[test]
fn deep_nesting_is_refused_by_both_paths() {
    let base = v1_booking().to_string();
    for depth in [31, 33, 126, 127, 128, 200, 5000] {
        let nested = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        let body = format!("{},\"extra\":{nested}}}", &base[..base.len() - 1]);
        for hub in [None, Some(Hub::Bookings)] {
            assert_eq!(
                validate(&body, hub),
                check::validate(&body, hub),
                "depth {depth}"
            );
        }
        let valid = validate(&body, Some(Hub::Bookings));
        let parses = serde_json::from_str::<serde_json::Value>(&body).is_ok();
        assert_eq!(valid.is_ok(), parses, "depth {depth}: {valid:?}");
        assert_eq!(identify(&body, None).is_ok(), parses, "depth {depth}");
        assert_eq!(validate_event(&body, None).is_ok(), parses, "depth {depth}");
    }
    // Brackets inside strings are not nesting.
    let in_text = format!(
        "{},\"note\":\"{}\"}}",
        &base[..base.len() - 1],
        "[{".repeat(100)
    );
    assert!(shallow(&in_text));
    assert!(validate(&in_text, Some(Hub::Bookings)).is_ok());
    assert!(!shallow(&"[".repeat(33)));
    assert!(shallow(&format!("{}{}", "[".repeat(32), "]".repeat(32))));
}
