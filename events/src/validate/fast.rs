//! The fast path: a typed, borrowing parse that accepts an event only when the complete check
//! would accept it too, and otherwise says nothing (`None`) and leaves the verdict to that check.
//!
//! It must never accept what [`super::check`] refuses; `tests::fast_and_complete_checks_agree`
//! holds the two to that over generated valid and corrupted events. Bodies are read by [`scan`]
//! (the usual spellings, quickly) and, when it steps aside, by serde's derived readers.

use std::borrow::Cow;

use chrono::{DateTime, Utc};

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny};

use super::{MAX_SEATS_PER_ORDER, parse_timestamp, sniff};
use crate::model::{
    self, Booking, Customer, Event, EventDetails, Hub, Payment, PaymentMethod, PaymentStatus,
    SchemaVersion, Seat,
};
use crate::uid;

mod scan;

/// A field's presence: absent, present as `null`, or present with a value. The complete check
/// treats `"schema_version": null` unlike a missing key, so the fast path must tell them apart.
#[derive(Debug, Default, PartialEq)]
enum Field<T> {
    #[default]
    Absent,
    Null,
    Value(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Option::<T>::deserialize(d)? {
            None => Field::Null,
            Some(v) => Field::Value(v),
        })
    }
}

/// True when the key is there at all, whatever its value (even `null`).
#[derive(Debug, Default, PartialEq)]
struct Present(bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(d)?;
        Ok(Present(true))
    }
}

type Text<'a> = Cow<'a, str>;

#[derive(Debug, PartialEq, Deserialize)]
struct BookingIn<'a> {
    #[serde(default)]
    schema_version: Field<i64>,
    #[serde(borrow)]
    event_id: Option<Text<'a>>,
    #[serde(borrow)]
    order_id: Text<'a>,
    #[serde(borrow)]
    booking_time: Text<'a>,
    #[serde(borrow)]
    customer: CustomerIn<'a>,
    #[serde(borrow)]
    event_details: DetailsIn<'a>,
    #[serde(borrow)]
    channel: Option<Text<'a>>,
    #[serde(borrow)]
    currency: Option<Text<'a>>,
    // A payment's keys make the complete check call this a payment: not ours to accept.
    #[serde(default)]
    payment_id: Present,
    #[serde(default)]
    payment_time: Present,
}

#[derive(Debug, PartialEq, Deserialize)]
struct CustomerIn<'a> {
    #[serde(borrow)]
    customer_id: Text<'a>,
    #[serde(borrow)]
    name: Text<'a>,
    #[serde(borrow)]
    email: Text<'a>,
}

#[derive(Debug, PartialEq, Deserialize)]
struct DetailsIn<'a> {
    #[serde(borrow)]
    event_id: Text<'a>,
    #[serde(borrow)]
    event_name: Text<'a>,
    #[serde(borrow)]
    event_location: Text<'a>,
    #[serde(borrow)]
    seats: Vec<SeatIn<'a>>,
    #[serde(borrow)]
    city: Option<Text<'a>>,
    #[serde(borrow)]
    starts_at: Option<Text<'a>>,
}

#[derive(Debug, PartialEq, Deserialize)]
struct SeatIn<'a> {
    #[serde(borrow)]
    seat_number: Text<'a>,
    price: f64,
}

#[derive(Debug, PartialEq, Deserialize)]
struct PaymentIn<'a> {
    #[serde(default)]
    schema_version: Field<i64>,
    #[serde(borrow)]
    event_id: Option<Text<'a>>,
    #[serde(borrow)]
    payment_id: Text<'a>,
    #[serde(borrow)]
    order_id: Text<'a>,
    #[serde(borrow)]
    payment_time: Text<'a>,
    amount: f64,
    #[serde(borrow)]
    payment_method: Text<'a>,
    #[serde(borrow)]
    payment_status: Text<'a>,
    #[serde(borrow)]
    currency: Option<Text<'a>>,
    fee: Option<f64>,
}

/// An event the fast path has fully checked, still borrowing from its body.
pub(super) struct Accepted<'a> {
    version: SchemaVersion,
    event_id: Option<uuid::Uuid>,
    kind: Kind<'a>,
}

enum Kind<'a> {
    Booking(BookingIn<'a>, DateTime<Utc>, Option<DateTime<Utc>>),
    Payment(PaymentIn<'a>, DateTime<Utc>, PaymentMethod, PaymentStatus),
}

/// Checks `body` with every rule of the complete check; `None` means "ask the complete check".
pub(super) fn accept(body: &str, hub: Option<Hub>) -> Option<Accepted<'_>> {
    let hub = match hub {
        Some(h) => h,
        None => sniff(body).hub?,
    };
    match hub {
        Hub::Bookings => booking(body),
        Hub::Payments => payment(body),
    }
}

impl Accepted<'_> {
    /// The schema version.
    pub(super) fn version(&self) -> SchemaVersion {
        self.version
    }

    /// The hub the event belongs to.
    pub(super) fn hub(&self) -> Hub {
        match self.kind {
            Kind::Booking(..) => Hub::Bookings,
            Kind::Payment(..) => Hub::Payments,
        }
    }

    /// The event's uid: its id, or for a legacy event without one, the hash of its body.
    pub(super) fn event_uid(&self, body: &str) -> Option<String> {
        match &self.event_id {
            Some(id) => Some(id.to_string()),
            None => {
                let value: serde_json::Value = serde_json::from_str(body).ok()?;
                Some(uid::event_uid_of_value(&value))
            }
        }
    }

    /// The owned, typed event.
    pub(super) fn into_event(self) -> Event {
        let owned = |t: &Text<'_>| model::Text::from(t.as_ref());
        match self.kind {
            Kind::Booking(b, booking_time, starts_at) => Event::Booking(Booking {
                schema_version: self.version,
                event_id: self.event_id,
                order_id: owned(&b.order_id),
                booking_time,
                customer: Customer {
                    customer_id: owned(&b.customer.customer_id),
                    name: owned(&b.customer.name),
                    email: owned(&b.customer.email),
                },
                event_details: EventDetails {
                    event_id: owned(&b.event_details.event_id),
                    event_name: owned(&b.event_details.event_name),
                    event_location: owned(&b.event_details.event_location),
                    seats: b
                        .event_details
                        .seats
                        .iter()
                        .map(|s| Seat {
                            seat_number: owned(&s.seat_number),
                            price: s.price,
                        })
                        .collect(),
                    city: b.event_details.city.as_ref().map(owned),
                    starts_at,
                },
                channel: b.channel.as_ref().map(owned),
                currency: b.currency.as_ref().map(owned),
            }),
            Kind::Payment(p, payment_time, payment_method, payment_status) => {
                Event::Payment(Payment {
                    schema_version: self.version,
                    event_id: self.event_id,
                    payment_id: owned(&p.payment_id),
                    order_id: owned(&p.order_id),
                    payment_time,
                    amount: p.amount,
                    payment_method,
                    payment_status,
                    currency: p.currency.as_ref().map(owned),
                    fee: p.fee,
                })
            }
        }
    }
}

fn version(v: &Field<i64>) -> Option<SchemaVersion> {
    match v {
        Field::Absent => Some(SchemaVersion::V0),
        Field::Value(1) => Some(SchemaVersion::V1),
        Field::Value(2) => Some(SchemaVersion::V2),
        _ => None,
    }
}

/// The canonical event id: required (a UUID) from v1, optional (but a UUID if given) in v0.
fn event_id(version: SchemaVersion, id: Option<&Text<'_>>) -> Option<Option<uuid::Uuid>> {
    match id {
        None if version == SchemaVersion::V0 => Some(None),
        None => None,
        Some(id) => Some(Some(uuid::Uuid::parse_str(id).ok()?)),
    }
}

/// An identifier: not blank.
fn is_id(s: &Text<'_>) -> bool {
    !s.trim().is_empty()
}

fn is_currency(c: &Option<Text<'_>>) -> bool {
    c.as_ref()
        .is_none_or(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()))
}

fn booking(body: &str) -> Option<Accepted<'_>> {
    let b = scan::booking(body).or_else(|| serde_json::from_str(body).ok())?;
    if b.payment_id.0 || b.payment_time.0 {
        return None;
    }
    let version = version(&b.schema_version)?;
    let event_id = event_id(version, b.event_id.as_ref())?;
    let d = &b.event_details;
    if d.seats.is_empty() || d.seats.len() > MAX_SEATS_PER_ORDER {
        return None;
    }
    for (i, s) in d.seats.iter().enumerate() {
        let repeated = d.seats[..i].iter().any(|o| o.seat_number == s.seat_number);
        if s.price < 0.0 || repeated || !is_id(&s.seat_number) {
            return None;
        }
    }
    let ids_ok = [&b.order_id, &b.customer.customer_id, &d.event_id]
        .into_iter()
        .all(is_id);
    if !ids_ok || !is_currency(&b.currency) {
        return None;
    }
    let booking_time = parse_timestamp(&b.booking_time).ok()?;
    let starts_at = match &d.starts_at {
        None => None,
        Some(t) => Some(parse_timestamp(t).ok()?),
    };
    Some(Accepted {
        version,
        event_id,
        kind: Kind::Booking(b, booking_time, starts_at),
    })
}

fn payment(body: &str) -> Option<Accepted<'_>> {
    let p = scan::payment(body).or_else(|| serde_json::from_str(body).ok())?;
    let version = version(&p.schema_version)?;
    let event_id = event_id(version, p.event_id.as_ref())?;
    let amounts_ok = p.amount >= 0.0 && p.fee.is_none_or(|f| f >= 0.0);
    let ids_ok = is_id(&p.payment_id) && is_id(&p.order_id);
    if !amounts_ok || !ids_ok || !is_currency(&p.currency) {
        return None;
    }
    let payment_time = parse_timestamp(&p.payment_time).ok()?;
    let method = PaymentMethod::parse(&p.payment_method)?;
    let status = PaymentStatus::parse(&p.payment_status)?;
    Some(Accepted {
        version,
        event_id,
        kind: Kind::Payment(p, payment_time, method, status),
    })
}
