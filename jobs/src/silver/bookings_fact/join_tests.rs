use boxoffice_events::Event;
use boxoffice_events::model::{
    Booking, Customer, EventDetails, Payment, PaymentMethod, PaymentStatus, SchemaVersion, Seat,
};
use chrono::{DateTime, TimeZone, Utc};

use super::*;

const SEC: Micros = 1_000_000;
/// 2024-10-11T09:39:30Z, the demos' worked example.
pub(crate) const T0: Micros = 1_728_639_570 * SEC;

fn at(us: Micros) -> DateTime<Utc> {
    Utc.timestamp_micros(us).single().expect("valid time")
}

/// Feeds events in the order given, numbering their arrival.
struct Feed {
    state: JoinState,
    out: JoinOutput,
    seq: i64,
}

impl Feed {
    fn new(config: JoinConfig) -> Self {
        Feed {
            state: JoinState::new(config),
            out: JoinOutput::default(),
            seq: 0,
        }
    }

    fn key(&mut self, arrival: Micros, hub: u8) -> ArrivalKey {
        self.seq += 1;
        ArrivalKey {
            at: arrival,
            hub,
            partition: 0,
            sequence: self.seq,
        }
    }

    /// A booking of `order` at `time`, arriving at `arrival`.
    fn booking(&mut self, uid: &str, order: &str, time: Micros, arrival: Micros) {
        let key = self.key(arrival, 0);
        let b = JoinEvent::new(uid, key, Event::Booking(booking(order, time)), None);
        self.state.process(b, &mut self.out);
    }

    fn payment(&mut self, uid: &str, order: &str, time: Micros, arrival: Micros, ok: bool) {
        let key = self.key(arrival, 1);
        let p = JoinEvent::new(
            uid,
            key,
            Event::Payment(payment(uid, order, time, ok)),
            None,
        );
        self.state.process(p, &mut self.out);
    }

    fn evict(&mut self) {
        self.state.evict(&mut self.out);
    }

    fn matched(&self) -> Vec<(String, String)> {
        let mut m: Vec<_> = self
            .out
            .matches
            .iter()
            .map(|m| (m.booking.uid.to_string(), m.payment.uid.to_string()))
            .collect();
        m.sort();
        m
    }

    fn unpaid(&self) -> Vec<String> {
        let mut u: Vec<_> = self.out.unpaid.iter().map(|b| b.uid.to_string()).collect();
        u.sort();
        u
    }

    fn orphans(&self) -> Vec<String> {
        let mut o: Vec<_> = self.out.orphans.iter().map(|p| p.uid.to_string()).collect();
        o.sort();
        o
    }
}

/// A two-seat booking of `order` at `time` (also used by the rows' tests).
pub(crate) fn booking(order: &str, time: Micros) -> Booking {
    Booking {
        schema_version: SchemaVersion::V1,
        event_id: None,
        order_id: order.into(),
        booking_time: at(time),
        customer: Customer {
            customer_id: "cust1".into(),
            name: "A".into(),
            email: "a@example.com".into(),
        },
        event_details: EventDetails {
            event_id: "event1".into(),
            event_name: "Concert".into(),
            event_location: "x".into(),
            seats: vec![
                Seat {
                    seat_number: "A1".into(),
                    price: 50.0,
                },
                Seat {
                    seat_number: "A2".into(),
                    price: 50.0,
                },
            ],
            city: None,
            starts_at: None,
        },
        channel: None,
        currency: None,
    }
}

fn payment(id: &str, order: &str, time: Micros, ok: bool) -> Payment {
    Payment {
        schema_version: SchemaVersion::V1,
        event_id: None,
        payment_id: id.into(),
        order_id: order.into(),
        payment_time: at(time),
        amount: 100.0,
        payment_method: PaymentMethod::CreditCard,
        payment_status: if ok {
            PaymentStatus::Success
        } else {
            PaymentStatus::Failed
        },
        currency: None,
        fee: None,
    }
}

fn pair(b: &str, p: &str) -> (String, String) {
    (b.to_string(), p.to_string())
}

/// Pushes both streams' watermark far past everything fed so far.
fn advance_to(f: &mut Feed, time: Micros) {
    f.booking(&format!("tick-b-{time}"), "tick", time, time);
    f.payment(&format!("tick-p-{time}"), "tick", time, time, true);
}

#[test]
fn payments_0_and_120_seconds_after_join_121_and_minus_1_do_not() {
    let mut f = Feed::new(JoinConfig::default());
    for (order, delta) in [("o0", 0), ("o120", 120), ("o121", 121), ("o-1", -1)] {
        f.booking(&format!("b{order}"), order, T0, T0);
        f.payment(
            &format!("p{order}"),
            order,
            T0 + delta * SEC,
            T0 + delta.max(0) * SEC,
            true,
        );
    }
    assert_eq!(
        f.matched(),
        vec![pair("bo0", "po0"), pair("bo120", "po120")]
    );
}

#[test]
fn orders_whose_keys_collide_do_not_pair_and_each_leaves_on_its_own() {
    let mut f = Feed::new(JoinConfig::default());
    // Two orders filed under one key, as a hash collision would.
    let collide = |e: JoinEvent| match e {
        JoinEvent::Booking(mut b) => {
            Arc::make_mut(&mut b).order_key = 7;
            JoinEvent::Booking(b)
        }
        JoinEvent::Payment(mut p) => {
            Arc::make_mut(&mut p).order_key = 7;
            JoinEvent::Payment(p)
        }
    };
    let (kb, kp) = (f.key(T0, 0), f.key(T0 + SEC, 1));
    let b = JoinEvent::new("b1", kb, Event::Booking(booking("o1", T0)), None);
    let p = JoinEvent::new(
        "p2",
        kp,
        Event::Payment(payment("p2", "o2", T0 + SEC, true)),
        None,
    );
    f.state.process(collide(b), &mut f.out);
    f.state.process(collide(p), &mut f.out);
    assert_eq!(
        f.state.bookings.get(&7).map(smallvec::SmallVec::len),
        Some(1)
    );
    assert_eq!(
        f.state.payments.get(&7).map(smallvec::SmallVec::len),
        Some(1)
    );
    advance_to(&mut f, T0 + 10 * MINUTE);
    f.evict();
    let matched = f.matched();
    assert!(
        matched.iter().all(|(b, p)| b != "b1" && p != "p2"),
        "{matched:?}"
    );
    assert_eq!(f.unpaid(), vec!["b1".to_string()]);
    assert_eq!(f.orphans(), vec!["p2".to_string()]);
}

#[test]
fn several_payments_per_order_each_match_and_a_failed_attempt_keeps_its_retry() {
    let mut f = Feed::new(JoinConfig::default());
    f.booking("b1", "o1", T0, T0);
    f.payment("fail", "o1", T0 + 30 * SEC, T0 + 30 * SEC, false);
    f.payment("retry", "o1", T0 + 50 * SEC, T0 + 50 * SEC, true);
    assert_eq!(f.matched(), vec![pair("b1", "fail"), pair("b1", "retry")]);
    let statuses: Vec<_> = f
        .out
        .matches
        .iter()
        .map(|m| m.payment.payment.payment_status)
        .collect();
    assert_eq!(statuses, [PaymentStatus::Failed, PaymentStatus::Success]);
}

#[test]
fn a_payment_arriving_before_its_booking_still_matches() {
    let mut f = Feed::new(JoinConfig::default());
    f.payment("p1", "o1", T0 + 10 * SEC, T0 + 10 * SEC, true);
    f.booking("b1", "o1", T0, T0 + 11 * SEC);
    assert_eq!(f.matched(), vec![pair("b1", "p1")]);
}

#[test]
fn duplicates_are_dropped_and_counted() {
    let mut f = Feed::new(JoinConfig::default());
    f.booking("b1", "o1", T0, T0);
    f.booking("b1", "o1", T0, T0 + 5 * SEC);
    f.payment("p1", "o1", T0 + 20 * SEC, T0 + 20 * SEC, true);
    f.payment("p1", "o1", T0 + 20 * SEC, T0 + 40 * SEC, true);
    assert_eq!(f.out.duplicates, 2);
    assert_eq!(f.matched(), vec![pair("b1", "p1")]);
}

#[test]
fn late_events_are_routed_to_late_with_the_watermark() {
    let mut f = Feed::new(JoinConfig::default());
    f.booking("b1", "o1", T0 + 300 * SEC, T0 + 300 * SEC);
    f.payment("p1", "o1", T0 + 310 * SEC, T0 + 310 * SEC, true);
    // Watermark: min(300, 310) s - 30 s = 270 s. A booking at 200 s arriving now is late.
    f.booking("old", "o2", T0 + 200 * SEC, T0 + 320 * SEC);
    f.booking("ok", "o3", T0 + 280 * SEC, T0 + 321 * SEC);
    assert_eq!(f.out.late.len(), 1);
    assert_eq!(f.out.late[0].event.uid().to_string(), "old");
    assert_eq!(f.out.late[0].watermark, T0 + 270 * SEC);
    assert_eq!(f.out.accepted, 3);
}

#[test]
fn unpaid_and_orphans_appear_only_after_the_watermark_passes() {
    let mut f = Feed::new(JoinConfig::default());
    f.booking("b1", "o1", T0, T0);
    f.payment("p2", "o2", T0 + 10 * SEC, T0 + 10 * SEC, true);
    f.evict();
    assert!(f.unpaid().is_empty() && f.orphans().is_empty());
    // Watermark 100 s: past the payment's time (orphan) but not the booking's window end.
    advance_to(&mut f, T0 + 130 * SEC);
    f.evict();
    assert_eq!(f.orphans(), vec!["p2".to_string()]);
    assert!(f.unpaid().is_empty(), "booking still inside its window");
    // Watermark 121 s: past the booking's time + 120 s.
    advance_to(&mut f, T0 + 151 * SEC);
    f.evict();
    assert_eq!(f.unpaid(), vec!["b1".to_string()]);
}

#[test]
fn a_payment_more_than_two_minutes_late_leaves_an_unpaid_booking_and_an_orphan() {
    let mut f = Feed::new(JoinConfig::default());
    f.booking("b1", "o1", T0, T0);
    f.payment("p1", "o1", T0 + 125 * SEC, T0 + 125 * SEC, true);
    let mut drained = JoinOutput::default();
    f.state.drain(&mut drained);
    f.out.unpaid.extend(drained.unpaid);
    f.out.orphans.extend(drained.orphans);
    assert!(f.matched().is_empty());
    assert_eq!(f.unpaid(), vec!["b1".to_string()]);
    assert_eq!(f.orphans(), vec!["p1".to_string()]);
    assert_eq!(f.state.pending(), (0, 0));
}

#[test]
fn a_matched_booking_is_released_silently() {
    let mut f = Feed::new(JoinConfig::default());
    f.booking("b1", "o1", T0, T0);
    f.payment("p1", "o1", T0 + 5 * SEC, T0 + 5 * SEC, true);
    let mut out = JoinOutput::default();
    f.state.drain(&mut out);
    assert!(out.unpaid.is_empty() && out.orphans.is_empty());
    assert_eq!(f.state.pending(), (0, 0));
}

#[test]
fn drain_moves_the_watermark_past_the_last_event_for_good() {
    let mut f = Feed::new(JoinConfig::default());
    f.booking("b1", "o1", T0, T0);
    let mut out = JoinOutput::default();
    f.state.drain(&mut out);
    assert_eq!(
        out.unpaid.len(),
        1,
        "no payment stream at all: drain still resolves"
    );
    assert_eq!(f.state.watermark(), Some(T0 + 120 * SEC + 1));
    f.payment("p1", "o1", T0 + 60 * SEC, T0 + 200 * SEC, true);
    assert_eq!(f.out.late.len(), 1, "older than the drained watermark");
}

#[test]
fn a_far_future_event_does_not_move_the_watermark() {
    let mut f = Feed::new(JoinConfig::default());
    f.booking("b1", "o1", T0, T0);
    f.payment("p1", "o1", T0 + 3_600 * SEC, T0, true);
    assert_eq!(f.state.max_payment, None);
    f.payment("p2", "o2", T0 + 10 * SEC, T0 + 10 * SEC, true);
    assert_eq!(f.state.watermark(), Some(T0 - 30 * SEC));
}

#[test]
fn a_duplicate_after_the_dedup_horizon_is_treated_as_new() {
    let config = JoinConfig {
        dedup_horizon: 60 * SEC,
        ..JoinConfig::default()
    };
    let mut f = Feed::new(config);
    f.booking("b1", "o1", T0, T0);
    advance_to(&mut f, T0 + 200 * SEC);
    // Watermark 170 s > 0 + 60 s: b1 is forgotten; its late copy is late, not a duplicate.
    f.booking("b1", "o1", T0, T0 + 201 * SEC);
    assert_eq!(f.out.duplicates, 0);
    assert_eq!(f.out.late.len(), 1);
}

mod stream_analytics {
    use super::*;

    fn sa() -> JoinConfig {
        JoinConfig {
            mode: TimeMode::StreamAnalytics,
            ..JoinConfig::default()
        }
    }

    /// 09:39:00Z, a minute boundary.
    const M: Micros = 1_728_639_540 * SEC;

    #[test]
    fn a_payment_arriving_6_s_before_its_booking_in_the_same_minute_joins() {
        let mut f = Feed::new(sa());
        f.payment("p1", "o1", M + 10 * SEC, M + 10 * SEC, true);
        f.booking("b1", "o1", M + 16 * SEC, M + 16 * SEC);
        assert_eq!(f.matched(), vec![pair("b1", "p1")]);
    }

    #[test]
    fn twenty_seconds_across_a_minute_boundary_is_datediff_1_and_joins() {
        let mut f = Feed::new(sa());
        f.booking("b1", "o1", M + 50 * SEC, M + 50 * SEC);
        f.payment("p1", "o1", M + 70 * SEC, M + 70 * SEC, true);
        assert_eq!(f.matched(), vec![pair("b1", "p1")]);
    }

    #[test]
    fn minute_boundaries_not_seconds_decide() {
        let mut f = Feed::new(sa());
        // In arrival order:
        // b1 -> p1: 2 min 59 s later but only 2 boundaries crossed: joins.
        // b2 -> p2: 2 min 2 s later, but 3 boundaries crossed: does not.
        // p3 -> b3: the payment a minute before its booking, DATEDIFF -1: does not.
        f.booking("b1", "o1", M, M);
        f.booking("b2", "o2", M + 58 * SEC, M + 58 * SEC);
        f.payment("p1", "o1", M + 179 * SEC, M + 179 * SEC, true);
        f.payment("p2", "o2", M + 180 * SEC, M + 180 * SEC, true);
        f.payment("p3", "o3", M + 185 * SEC, M + 185 * SEC, true);
        f.booking("b3", "o3", M + 241 * SEC, M + 241 * SEC);
        assert_eq!(f.matched(), vec![pair("b1", "p1")]);
    }

    #[test]
    fn arrival_time_is_used_not_the_event_time() {
        let mut f = Feed::new(sa());
        // Event times 10 minutes apart, arrivals in the same minute: joins in SA mode only.
        f.booking("b1", "o1", M, M + 5 * SEC);
        f.payment("p1", "o1", M + 600 * SEC, M + 10 * SEC, true);
        assert_eq!(f.matched(), vec![pair("b1", "p1")]);
    }
}

/// Generated events in arrival order, parsed (malformed ones left out): a realistic stream for
/// the join's property tests and the checkpoint's round trip.
pub(crate) fn generated(seed: u64, n: usize) -> Vec<JoinEvent> {
    use boxoffice_events::{Generator, GeneratorConfig, Hub, validate};
    let config = GeneratorConfig {
        seed,
        rate: 50.0,
        ..GeneratorConfig::default()
    };
    Generator::new(config)
        .expect("config")
        .take(n)
        .enumerate()
        .filter_map(|(i, e)| {
            let v = validate(&e.body, Some(e.hub)).ok()?;
            let arrival = ArrivalKey {
                at: e.arrival.timestamp_micros(),
                hub: u8::from(e.hub == Hub::Payments),
                partition: 0,
                sequence: i as i64,
            };
            Some(JoinEvent::new(
                &v.event_uid,
                arrival,
                v.event,
                Some(RawBody::text(&e.body)),
            ))
        })
        .collect()
}

/// What a join produced: matches, unpaid bookings, orphan payments and late events (each by uid,
/// sorted), and the duplicates dropped.
pub(crate) type Summary = (
    Vec<(String, String)>,
    Vec<String>,
    Vec<String>,
    Vec<String>,
    u64,
);

/// The [`Summary`] of `out`.
pub(crate) fn summary(out: &JoinOutput) -> Summary {
    let mut matches: Vec<_> = out
        .matches
        .iter()
        .map(|m| (m.booking.uid.to_string(), m.payment.uid.to_string()))
        .collect();
    matches.sort();
    let mut unpaid: Vec<_> = out.unpaid.iter().map(|b| b.uid.to_string()).collect();
    unpaid.sort();
    let mut orphans: Vec<_> = out.orphans.iter().map(|p| p.uid.to_string()).collect();
    orphans.sort();
    let mut late: Vec<_> = out.late.iter().map(|l| l.event.uid().to_string()).collect();
    late.sort();
    (matches, unpaid, orphans, late, out.duplicates)
}

/// A kept event: uid, arrival key, join time, matched, paid, whether it holds a raw body.
pub(crate) type KeptRow = (String, ArrivalKey, Micros, bool, bool, bool);

/// Every booking and payment `state` keeps, in arrival order.
pub(crate) fn kept(state: &JoinState) -> Vec<KeptRow> {
    fn row<T>(p: &Pending<T>, uid: String, key: ArrivalKey, body: bool) -> KeptRow {
        (uid, key, p.time, p.matched, p.paid, body)
    }
    let bookings = state.bookings.values().flatten().map(|b| {
        let item = &b.item;
        row(b, item.uid.to_string(), item.arrival, item.body.is_some())
    });
    let payments = state.payments.values().flatten().map(|p| {
        let item = &p.item;
        row(p, item.uid.to_string(), item.arrival, item.body.is_some())
    });
    let mut all: Vec<_> = bookings.chain(payments).collect();
    all.sort_by_key(|row| row.1);
    all
}

/// The same rows, as events without a raw body: whether the join dropped an event's body when
/// keeping it depends on whether its batch's outputs still shared the event.
pub(crate) fn without_bodies(rows: Vec<KeptRow>) -> Vec<KeptRow> {
    rows.into_iter()
        .map(|(uid, key, time, matched, paid, _)| (uid, key, time, matched, paid, false))
        .collect()
}

mod batch_independence {
    use super::*;

    /// Runs the stream cut into batches at `cuts`, evicting after each, then drains.
    fn run(events: &[JoinEvent], cuts: &[usize], mode: TimeMode) -> Summary {
        let mut state = JoinState::new(JoinConfig {
            mode,
            ..JoinConfig::default()
        });
        let mut out = JoinOutput::default();
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&events.len())) {
            for e in &events[start..cut] {
                state.process(e.clone(), &mut out);
            }
            state.evict(&mut out);
            start = cut;
        }
        state.drain(&mut out);
        summary(&out)
    }

    #[test]
    fn one_run_or_many_small_ones_give_the_same_results() {
        for seed in [1, 2, 3, 4, 5] {
            // 40,000 events at 50/s span 13 minutes: long enough for 5-15 minute late arrivals.
            let events = generated(seed, 40_000);
            for mode in [TimeMode::EventTime, TimeMode::StreamAnalytics] {
                let whole = run(&events, &[], mode);
                assert!(!whole.0.is_empty() && !whole.1.is_empty() && !whole.2.is_empty());
                assert!(whole.4 > 0, "duplicates occur");
                // Arrival order is the SA clock, so only event time has late events.
                assert_eq!(whole.3.is_empty(), mode == TimeMode::StreamAnalytics);
                let every_7: Vec<usize> = (7..events.len()).step_by(7).collect();
                assert_eq!(
                    whole,
                    run(&events, &every_7, mode),
                    "seed {seed}, cuts of 7"
                );
                let uneven: Vec<usize> = (1..events.len())
                    .scan(1usize, |step, _| {
                        *step = (*step * 31 + seed as usize) % 997 + 1;
                        Some(*step)
                    })
                    .scan(0usize, |acc, step| {
                        *acc += step;
                        Some(*acc)
                    })
                    .take_while(|&c| c < events.len())
                    .collect();
                assert_eq!(
                    whole,
                    run(&events, &uneven, mode),
                    "seed {seed}, uneven cuts"
                );
            }
        }
    }
}
