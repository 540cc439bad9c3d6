//! A validated event written back as JSON, for where its original bytes are not kept.
//!
//! The join holds a million or more events in memory between runs; keeping each raw body beside
//! its parsed form would double that. Its state checkpoint writes this instead: the same version's
//! shape, every field as parsed (prices unrounded, times to the nanosecond), so validating it gives
//! back an equal event. The uid is not derived from it: it travels beside it.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::generator::wire::{
    BookingWire, CustomerWire, EventDetailsWire, PaymentWire, Price, SeatWire,
};
use crate::model::{Booking, Event, Payment, SchemaVersion};

/// `event` as JSON that [`crate::validate`] turns back into an equal event.
pub fn to_json(event: &Event) -> String {
    match event {
        Event::Booking(b) => booking_json(b),
        Event::Payment(p) => payment_json(p),
    }
}

/// A booking as JSON that validates back to an equal booking.
pub fn booking_json(b: &Booking) -> String {
    let booking_time = time(&b.booking_time);
    let starts_at = b.event_details.starts_at.as_ref().map(time);
    let d = &b.event_details;
    let event_id = b.event_id.map(|u| u.to_string());
    let wire = BookingWire {
        schema_version: version(b.schema_version),
        event_id: event_id.as_deref(),
        order_id: &b.order_id,
        booking_time: &booking_time,
        customer: CustomerWire {
            customer_id: &b.customer.customer_id,
            name: &b.customer.name,
            email: &b.customer.email,
        },
        event_details: EventDetailsWire {
            event_id: &d.event_id,
            event_name: &d.event_name,
            event_location: &d.event_location,
            seats: d
                .seats
                .iter()
                .map(|s| SeatWire {
                    seat_number: &s.seat_number,
                    price: Price::exact(s.price),
                })
                .collect(),
            city: d.city.as_deref(),
            starts_at: starts_at.as_deref(),
        },
        channel: b.channel.as_deref(),
        currency: b.currency.as_deref(),
    };
    // Serialising borrowed strings and finite numbers into a String cannot fail.
    serde_json::to_string(&wire).unwrap_or_default()
}

/// A payment as JSON that validates back to an equal payment.
pub fn payment_json(p: &Payment) -> String {
    let payment_time = time(&p.payment_time);
    let event_id = p.event_id.map(|u| u.to_string());
    let wire = PaymentWire {
        schema_version: version(p.schema_version),
        event_id: event_id.as_deref(),
        payment_id: &p.payment_id,
        order_id: &p.order_id,
        payment_time: &payment_time,
        amount: Price::exact(p.amount),
        payment_method: p.payment_method.as_str(),
        payment_status: p.payment_status.as_str(),
        currency: p.currency.as_deref(),
        fee: p.fee,
    };
    serde_json::to_string(&wire).unwrap_or_default()
}

/// v0 is the shape without `schema_version`.
fn version(v: SchemaVersion) -> Option<i32> {
    (v != SchemaVersion::V0).then(|| v.number())
}

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::validate;
    use crate::{Generator, GeneratorConfig, Shares};

    /// Every valid event of every version the generator makes, late, duplicated and all.
    fn generated(seed: u64, n: usize) -> Vec<(Event, String)> {
        let config = GeneratorConfig {
            seed,
            shares: Shares {
                malformed: 0.0,
                ..Shares::default()
            },
            ..GeneratorConfig::default()
        };
        Generator::new(config)
            .expect("config")
            .take(n)
            .filter_map(|e| Some((validate(&e.body, Some(e.hub)).ok()?.event, e.body)))
            .collect()
    }

    #[test]
    fn every_generated_event_validates_back_to_itself() {
        let events = generated(7, 5_000);
        assert!(events.len() > 4_000, "{} events", events.len());
        let versions: std::collections::BTreeSet<i32> = events
            .iter()
            .map(|(e, _)| match e {
                Event::Booking(b) => b.schema_version.number(),
                Event::Payment(p) => p.schema_version.number(),
            })
            .collect();
        assert_eq!(versions.len(), 3, "every version is covered: {versions:?}");
        for (event, original) in &events {
            let json = to_json(event);
            let back = validate(&json, Some(event.hub()))
                .unwrap_or_else(|e| panic!("{json} is refused: {}", e.reason()))
                .event;
            assert_eq!(&back, event, "original {original}\ncanonical {json}");
        }
    }

    #[test]
    fn a_v0_price_with_decimals_and_a_time_in_nanoseconds_survive() {
        let body = r#"{"order_id":"order_1","booking_time":"2024-10-11T09:39:30.123456789+05:30",
            "customer":{"customer_id":"c1","name":"Ann \"A\" Lee","email":"ann@example.com"},
            "event_details":{"event_id":"event1","event_name":"Live Concert",
            "event_location":"1 Road\nChennai","seats":[{"seat_number":"A1","price":120.75}]}}"#;
        let event = validate(body, Some(crate::Hub::Bookings))
            .expect("a v0 booking")
            .event;
        let Event::Booking(b) = &event else {
            panic!("not a booking")
        };
        assert_eq!(b.schema_version, SchemaVersion::V0);
        let json = to_json(&event);
        assert!(!json.contains("schema_version"), "{json}");
        let back = validate(&json, Some(crate::Hub::Bookings))
            .expect("canonical v0")
            .event;
        assert_eq!(back, event, "{json}");
    }
}
