//! Plausible sales over long streams: seats sold once, venues never over capacity, shows after
//! their bookings, customers the same people in every run.

use std::collections::{HashMap, HashSet};

use super::catalog::Show;
use super::customers::Customer;
use super::*;
use crate::model::Event;
use crate::validate::validate;

fn stream(seed: u64, start: DateTime<Utc>, rate: f64, n: usize) -> Vec<GeneratedEvent> {
    let config = GeneratorConfig {
        seed,
        start,
        rate,
        ..GeneratorConfig::default()
    };
    Generator::new(config)
        .expect("valid config")
        .take(n)
        .collect()
}

/// The show an event id names, as the catalog defines it (its date aside).
fn catalog_show(event_id: &str) -> Show {
    let n: u64 = event_id
        .strip_prefix("event")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{event_id} is not a catalog id"));
    Show::numbered(n, GeneratorConfig::default().start)
}

#[test]
fn every_seat_is_sold_once_and_no_show_over_capacity_over_500k_events() {
    let events = stream(13, GeneratorConfig::default().start, 1_000.0, 500_000);
    // (show, seat) -> the order that booked it.
    let mut sold: HashMap<(String, String), String> = HashMap::new();
    let mut per_show: HashMap<String, u32> = HashMap::new();
    let mut orders = HashSet::new();
    for e in events.iter().filter(|e| e.hub == Hub::Bookings) {
        let Ok(v) = validate(&e.body, Some(e.hub)) else {
            continue;
        };
        let Event::Booking(b) = v.event else {
            continue;
        };
        if !orders.insert(b.order_id.to_string()) {
            continue; // the same booking delivered again
        }
        let show = b.event_details.event_id.to_string();
        for seat in &b.event_details.seats {
            let key = (show.clone(), seat.seat_number.to_string());
            if let Some(first) = sold.insert(key, b.order_id.to_string()) {
                panic!(
                    "{show} seat {} sold to {first} and {}",
                    seat.seat_number, b.order_id
                );
            }
        }
        *per_show.entry(show).or_default() += b.event_details.seats.len() as u32;
    }
    assert!(orders.len() > 200_000, "{} orders", orders.len());
    let mut sold_out = 0;
    for (id, seats) in &per_show {
        let show = catalog_show(id);
        assert!(
            *seats <= show.capacity,
            "{id}: {seats} seats in {}",
            show.capacity
        );
        // Only the unpaid orders whose bookings were malformed are missing here.
        if f64::from(*seats) >= 0.98 * f64::from(show.capacity) {
            sold_out += 1;
        }
    }
    // Far more seats were wanted than the first catalog holds: shows sold out and others
    // went on sale after them.
    assert!(sold_out > 100, "{sold_out} shows sold out");
    assert!(per_show.len() > 200, "{} shows", per_show.len());
}

#[test]
fn every_booking_comes_before_its_show_starts() {
    // 0.05 events per simulated second: 200,000 events span some 46 days, longer than any show
    // is on sale, so shows close and new ones open for later dates.
    let start = GeneratorConfig::default().start;
    let events = stream(17, start, 0.05, 200_000);
    let mut dates: HashMap<String, DateTime<Utc>> = HashMap::new();
    let mut bookings = Vec::new();
    for e in events.iter().filter(|e| e.hub == Hub::Bookings) {
        let Ok(v) = validate(&e.body, Some(e.hub)) else {
            continue;
        };
        let Event::Booking(b) = v.event else {
            continue;
        };
        let show = b.event_details.event_id.to_string();
        if let Some(starts_at) = b.event_details.starts_at {
            // v2 bookings carry the date: one date per show.
            let known = *dates.entry(show.clone()).or_insert(starts_at);
            assert_eq!(known, starts_at, "{show} has two dates");
        }
        bookings.push((show, b.booking_time));
    }
    let last = bookings.iter().map(|(_, t)| *t).max().expect("bookings");
    assert!(last - start > chrono::Duration::days(40), "{last}");
    let mut checked = 0;
    for (show, booked) in &bookings {
        let Some(starts_at) = dates.get(show) else {
            continue; // a show none of whose bookings was v2
        };
        assert!(
            *starts_at - catalog::SALES_CLOSE_BEFORE >= *booked,
            "{show} starts {starts_at}, booked {booked}"
        );
        checked += 1;
    }
    assert!(checked as f64 > 0.95 * bookings.len() as f64, "{checked}");
    assert!(dates.len() > 150, "only {} shows", dates.len());
}

#[test]
fn a_customer_is_the_same_person_in_every_run() {
    let start = GeneratorConfig::default().start;
    let mut people: HashMap<String, (String, String)> = HashMap::new();
    let mut shared = 0;
    for (seed, later) in [(1, 0), (1, 5), (2, 0), (99, 30)] {
        let events = stream(seed, start + chrono::Duration::days(later), 100.0, 20_000);
        for e in events.iter().filter(|e| e.hub == Hub::Bookings) {
            let Ok(v) = validate(&e.body, Some(e.hub)) else {
                continue;
            };
            let Event::Booking(b) = v.event else {
                continue;
            };
            let c = b.customer;
            let who = (c.name.to_string(), c.email.to_string());
            match people.insert(c.customer_id.to_string(), who.clone()) {
                Some(before) => {
                    assert_eq!(before, who, "{} changed", c.customer_id);
                    shared += 1;
                }
                None => {
                    let n: u64 = c.customer_id[4..].parse().expect("custN");
                    let expected = Customer::numbered(n);
                    assert_eq!((expected.name, expected.email), who);
                }
            }
        }
    }
    assert!(shared > 10_000, "{shared} bookings by a known customer");
}
