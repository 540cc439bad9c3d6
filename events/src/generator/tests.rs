use std::collections::{HashMap, HashSet};

use super::*;
use crate::model::{Event, PaymentStatus};
use crate::validate::validate;

fn events(seed: u64, rate: f64, n: usize) -> Vec<GeneratedEvent> {
    let config = GeneratorConfig {
        seed,
        rate,
        ..GeneratorConfig::default()
    };
    Generator::new(config)
        .expect("valid config")
        .take(n)
        .collect()
}

fn run(seed: u64, start: DateTime<Utc>, n: usize) -> Vec<GeneratedEvent> {
    let config = GeneratorConfig {
        seed,
        start,
        ..GeneratorConfig::default()
    };
    Generator::new(config)
        .expect("valid config")
        .take(n)
        .collect()
}

#[test]
fn same_seed_and_start_give_the_same_bytes() {
    let a = events(7, 100.0, 5_000);
    let b = events(7, 100.0, 5_000);
    assert_eq!(a, b);
    let c = events(8, 100.0, 5_000);
    assert_ne!(a, c);
}

/// Every key a run's events carry, each once per distinct valid event: order ids (of bookings),
/// payment ids, and event uids (the `event_id` of v1/v2 events, the body hash of v0 ones).
#[derive(Default)]
struct Keys {
    orders: HashSet<String>,
    payments: HashSet<String>,
    uids: HashSet<String>,
}

impl Keys {
    fn of(stream: &[GeneratedEvent]) -> Keys {
        let mut keys = Keys::default();
        let mut bodies = HashSet::new();
        for e in stream {
            if !bodies.insert(e.body.as_str()) {
                continue; // a duplicate delivery: the same event again
            }
            let Ok(v) = validate(&e.body, Some(e.hub)) else {
                continue;
            };
            assert!(
                keys.uids.insert(v.event_uid.clone()),
                "uid twice: {}",
                e.body
            );
            match v.event {
                Event::Booking(b) => {
                    assert!(keys.orders.insert(b.order_id.to_string()), "{}", e.body);
                }
                Event::Payment(p) => {
                    assert!(keys.payments.insert(p.payment_id.to_string()), "{}", e.body);
                }
            }
        }
        keys
    }

    fn len(&self) -> usize {
        self.orders.len() + self.payments.len() + self.uids.len()
    }

    /// Adds `other`'s keys; returns how many it shared with these.
    fn absorb(&mut self, other: Keys) -> usize {
        let before = self.len() + other.len();
        self.orders.extend(other.orders);
        self.payments.extend(other.payments);
        self.uids.extend(other.uids);
        before - self.len()
    }
}

#[test]
fn runs_that_share_a_seed_but_not_a_start_share_no_key() {
    let start = GeneratorConfig::default().start;
    let mut keys = Keys::of(&run(7, start, 20_000));
    for later in [
        chrono::Duration::milliseconds(1),
        chrono::Duration::minutes(10),
        chrono::Duration::days(1),
    ] {
        let other = Keys::of(&run(7, start + later, 20_000));
        assert!(other.orders.len() > 8_000);
        assert_eq!(keys.absorb(other), 0, "a start {later} later");
    }
}

#[test]
fn runs_with_other_seeds_share_no_key_and_ids_keep_their_prefix() {
    // 20 seeds x 20,000 events: some 790,000 keys, none twice.
    let start = GeneratorConfig::default().start;
    let mut keys = Keys::default();
    let mut tags = HashSet::new();
    for seed in 0..20 {
        let stream = run(seed, start, 20_000);
        let generator = Generator::new(GeneratorConfig {
            seed,
            start,
            ..GeneratorConfig::default()
        })
        .expect("config");
        let tag = generator.run_tag().to_string();
        let run_keys = Keys::of(&stream);
        assert!(
            run_keys
                .orders
                .iter()
                .all(|o| o.starts_with(&format!("order_{tag}-")))
        );
        assert!(
            run_keys
                .payments
                .iter()
                .all(|p| p.starts_with(&format!("payment_{tag}-")))
        );
        assert_eq!(keys.absorb(run_keys), 0, "seed {seed} repeats a key");
        tags.insert(tag);
    }
    assert_eq!(tags.len(), 20);
    assert!(keys.len() > 750_000, "{} keys", keys.len());
}

#[test]
fn stream_is_in_arrival_order() {
    let e = events(1, 50.0, 20_000);
    assert!(e.windows(2).all(|w| w[0].arrival <= w[1].arrival));
}

#[test]
fn rate_is_events_per_simulated_second() {
    let e = events(3, 200.0, 60_000);
    let secs = (e[e.len() - 1].arrival - e[0].arrival).num_milliseconds() as f64 / 1000.0;
    let rate = e.len() as f64 / secs;
    assert!((rate - 200.0).abs() < 20.0, "rate {rate}");
}

#[test]
fn bad_config_is_refused() {
    let mut config = GeneratorConfig::default();
    config.shares.unpaid = 1.5;
    assert!(matches!(
        Generator::new(config).err(),
        Some(GeneratorError::ShareOutOfRange { name: "unpaid", .. })
    ));
    let config = GeneratorConfig {
        rate: 0.0,
        ..GeneratorConfig::default()
    };
    assert_eq!(
        Generator::new(config).err(),
        Some(GeneratorError::BadRate(0.0))
    );
}

/// What a run looks like once validated, for measuring shares.
#[derive(Default)]
struct Tally {
    total: usize,
    malformed: usize,
    distinct_bodies: usize,
    late_arrivals: usize,
    valid: usize,
    bookings: HashMap<String, (DateTime<Utc>, f64, SchemaVersion)>,
    payments: HashMap<String, Vec<PaymentSeen>>,
}

struct PaymentSeen {
    time: DateTime<Utc>,
    status: PaymentStatus,
    amount: f64,
    fee: Option<f64>,
}

fn tally(stream: &[GeneratedEvent]) -> Tally {
    let mut t = Tally {
        total: stream.len(),
        ..Tally::default()
    };
    let mut seen = HashSet::new();
    let mut max_event_time: Option<DateTime<Utc>> = None;
    for e in stream {
        if seen.insert(e.body.as_str()) {
            t.distinct_bodies += 1;
        }
        let Ok(v) = validate(&e.body, Some(e.hub)) else {
            t.malformed += 1;
            continue;
        };
        t.valid += 1;
        let time = v.event.event_time();
        if let Some(max) = max_event_time
            && time < max - chrono::Duration::minutes(4)
        {
            t.late_arrivals += 1;
        }
        max_event_time = max_event_time.max(Some(time));
        match v.event {
            Event::Booking(b) => {
                let total = b.event_details.seats.iter().map(|s| s.price).sum();
                t.bookings
                    .insert(b.order_id.into(), (b.booking_time, total, b.schema_version));
            }
            Event::Payment(p) => {
                t.payments
                    .entry(p.order_id.into())
                    .or_default()
                    .push(PaymentSeen {
                        time: p.payment_time,
                        status: p.payment_status,
                        amount: p.amount,
                        fee: p.fee,
                    })
            }
        }
    }
    t
}

fn within(name: &str, measured: f64, expected: f64, tolerance: f64) {
    assert!(
        (measured - expected).abs() <= tolerance,
        "{name}: measured {measured:.4}, expected {expected} +/- {tolerance}"
    );
}

#[test]
fn every_share_is_within_tolerance_over_100k_events() {
    // 10 events/s gives ~2.8 simulated hours, so the 20-minute tail excluded below is small.
    let stream = events(42, 10.0, 100_000);
    let t = tally(&stream);
    let shares = Shares::default();

    within(
        "malformed",
        t.malformed as f64 / t.total as f64,
        shares.malformed,
        0.0015,
    );
    within(
        "duplicate",
        (t.total - t.distinct_bodies) as f64 / t.distinct_bodies as f64,
        shares.duplicate,
        0.003,
    );
    within(
        "late arrival",
        t.late_arrivals as f64 / t.valid as f64,
        shares.late_arrival,
        0.003,
    );

    // Orders whose whole payment story fits before the stream ends.
    let end = stream[stream.len() - 1].arrival - chrono::Duration::minutes(20);
    let settled: Vec<_> = t
        .bookings
        .iter()
        .filter(|(_, (at, _, _))| *at < end)
        .collect();
    assert!(settled.len() > 30_000, "{} settled orders", settled.len());
    let n = settled.len() as f64;

    let unpaid = settled
        .iter()
        .filter(|(id, _)| !t.payments.contains_key(*id))
        .count();
    within("unpaid", unpaid as f64 / n, shares.unpaid, 0.01);

    let mut paid = 0;
    let mut late = 0;
    let (mut attempts, mut failed) = (0, 0);
    for (id, (booked, _, _)) in &settled {
        let Some(ps) = t.payments.get(*id) else {
            continue;
        };
        paid += 1;
        let first = ps.iter().map(|p| p.time).min().unwrap_or(*booked);
        if (first - *booked).num_seconds() > 120 {
            late += 1;
        }
        attempts += ps.len();
        failed += ps
            .iter()
            .filter(|p| p.status == PaymentStatus::Failed)
            .count();
    }
    within(
        "late payment",
        late as f64 / paid as f64,
        shares.late_payment,
        0.01,
    );
    within(
        "failed",
        failed as f64 / attempts as f64,
        shares.failed,
        0.01,
    );

    let v0 = settled
        .iter()
        .filter(|(_, b)| b.2 == SchemaVersion::V0)
        .count();
    let v2 = settled
        .iter()
        .filter(|(_, b)| b.2 == SchemaVersion::V2)
        .count();
    within("v0", v0 as f64 / n, shares.v0, 0.01);
    within("v2", v2 as f64 / n, shares.v2, 0.01);
}

#[test]
fn amounts_equal_seat_sums_plus_fee() {
    let stream = events(5, 100.0, 30_000);
    let t = tally(&stream);
    let mut checked = 0;
    for (order, payments) in &t.payments {
        let Some((_, seat_total, _)) = t.bookings.get(order) else {
            continue;
        };
        for p in payments {
            let expected = seat_total + p.fee.unwrap_or(0.0);
            assert!(
                (p.amount - expected).abs() < 1e-9,
                "{order}: amount {}, seats {seat_total}, fee {:?}",
                p.amount,
                p.fee
            );
            checked += 1;
        }
    }
    assert!(checked > 10_000, "only {checked} payments checked");
}

#[test]
fn orders_hold_one_to_six_unique_seats() {
    let stream = events(9, 100.0, 10_000);
    for e in stream.iter().filter(|e| e.hub == Hub::Bookings) {
        if let Ok(v) = validate(&e.body, Some(e.hub))
            && let Event::Booking(b) = v.event
        {
            let n = b.event_details.seats.len();
            assert!((1..=6).contains(&n));
            let unique: HashSet<_> = b
                .event_details
                .seats
                .iter()
                .map(|s| &s.seat_number)
                .collect();
            assert_eq!(unique.len(), n);
        }
    }
}

#[test]
fn v0_events_have_the_demo_shape() {
    let stream = events(11, 100.0, 20_000);
    let v0 = stream
        .iter()
        .find(|e| {
            e.hub == Hub::Bookings
                && validate(&e.body, Some(e.hub))
                    .is_ok_and(|v| v.event.schema_version() == SchemaVersion::V0)
        })
        .expect("some v0 booking");
    let v: serde_json::Value = serde_json::from_str(&v0.body).expect("json");
    assert!(v.get("event_id").is_none());
    assert!(
        v["event_details"]["seats"][0]["price"].is_i64(),
        "{}",
        v0.body
    );
    let time = v["booking_time"].as_str().expect("time");
    assert_eq!(time.len(), 20, "%Y-%m-%dT%H:%M:%SZ, got {time}");
}
