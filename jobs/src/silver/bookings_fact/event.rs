//! What the join takes in: bookings and payments with their place in the arrival order.

use std::sync::Arc;

use boxoffice_events::Event;
use boxoffice_events::model::{Booking, Hub, Payment};
use boxoffice_events::validate::{Invalid, validate_event};

use super::input::PAYMENTS;

/// Microseconds since the Unix epoch (UTC), the unit of every time here.
pub type Micros = i64;

/// One minute, in microseconds.
pub const MINUTE: Micros = 60_000_000;

/// Where an event sits in the arrival order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ArrivalKey {
    /// Enqueued time (made non-decreasing within its partition).
    pub at: Micros,
    /// 0 for bookings, 1 for payments.
    pub hub: u8,
    /// Event Hubs partition.
    pub partition: i32,
    /// Sequence number in that partition.
    pub sequence: i64,
}

/// A booking as the join sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct BookingIn {
    /// Its event_uid.
    pub uid: String,
    /// Its place in the arrival order.
    pub arrival: ArrivalKey,
    /// The parsed event.
    pub booking: Booking,
    /// The raw JSON, kept for late_events and the state checkpoint.
    pub body: Arc<str>,
}

/// A payment as the join sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PaymentIn {
    /// Its event_uid.
    pub uid: String,
    /// Its place in the arrival order.
    pub arrival: ArrivalKey,
    /// The parsed event.
    pub payment: Payment,
    /// The raw JSON, kept for late_events and the state checkpoint.
    pub body: Arc<str>,
}

/// An event for the join.
#[derive(Debug, Clone, PartialEq)]
pub enum JoinEvent {
    /// From bookings_raw.
    Booking(Arc<BookingIn>),
    /// From payments_raw.
    Payment(Arc<PaymentIn>),
}

impl JoinEvent {
    /// A validated event as the join takes it.
    pub fn new(uid: String, arrival: ArrivalKey, event: Event, body: Arc<str>) -> JoinEvent {
        match event {
            Event::Booking(booking) => JoinEvent::Booking(Arc::new(BookingIn {
                uid,
                arrival,
                booking,
                body,
            })),
            Event::Payment(payment) => JoinEvent::Payment(Arc::new(PaymentIn {
                uid,
                arrival,
                payment,
                body,
            })),
        }
    }

    /// Validates a Bronze event (on the hub its arrival key names) for the join: the validator's
    /// refusal when it does not pass (Bronze written by a producer that did not validate, or a
    /// validator since made stricter).
    pub fn parse(uid: String, arrival: ArrivalKey, body: Arc<str>) -> Result<JoinEvent, Invalid> {
        let hub = if arrival.hub == PAYMENTS {
            Hub::Payments
        } else {
            Hub::Bookings
        };
        let event = validate_event(&body, Some(hub))?;
        Ok(JoinEvent::new(uid, arrival, event, body))
    }

    /// Sets its place in the arrival order, once that is known (a reader validates events before
    /// it has ordered them).
    pub fn set_arrival(&mut self, arrival: ArrivalKey) {
        match self {
            JoinEvent::Booking(b) => Arc::make_mut(b).arrival = arrival,
            JoinEvent::Payment(p) => Arc::make_mut(p).arrival = arrival,
        }
    }

    /// Its event_uid.
    pub fn uid(&self) -> &str {
        match self {
            JoinEvent::Booking(b) => &b.uid,
            JoinEvent::Payment(p) => &p.uid,
        }
    }

    /// Its place in the arrival order.
    pub fn arrival(&self) -> ArrivalKey {
        match self {
            JoinEvent::Booking(b) => b.arrival,
            JoinEvent::Payment(p) => p.arrival,
        }
    }

    /// Its own time (booking_time or payment_time).
    pub fn event_time(&self) -> Micros {
        match self {
            JoinEvent::Booking(b) => b.booking.booking_time.timestamp_micros(),
            JoinEvent::Payment(p) => p.payment.payment_time.timestamp_micros(),
        }
    }
}
