//! What the join takes in: bookings and payments with their place in the arrival order.

use std::fmt;
use std::sync::Arc;

use boxoffice_events::Event;
use boxoffice_events::model::{Booking, Hub, Payment};
use boxoffice_events::uid::uid_key;
use boxoffice_events::validate::{Invalid, validate_event};
use deltalake::arrow::array::StringArray;

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

/// The raw JSON of a Bronze row, left in the column it was decoded into. Only a late event is
/// written with its body, so bodies are neither copied one by one nor kept in the join's state
/// (whose checkpoint writes [`boxoffice_events::canonical`] JSON instead): they were a third of
/// its memory.
#[derive(Clone)]
pub struct RawBody {
    column: Arc<StringArray>,
    row: usize,
}

impl RawBody {
    /// Row `row` of a decoded body column.
    pub fn new(column: Arc<StringArray>, row: usize) -> RawBody {
        RawBody { column, row }
    }

    /// A body held on its own.
    pub fn text(body: &str) -> RawBody {
        RawBody::new(Arc::new(StringArray::from(vec![body])), 0)
    }

    /// The JSON.
    pub fn as_str(&self) -> &str {
        self.column.value(self.row)
    }
}

impl fmt::Debug for RawBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq for RawBody {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

/// The key the join files an order under: a hash of its order_id, computed where the event is
/// read (on every core) rather than in the join (on one). Hashes may collide; the join compares
/// order_ids before it pairs anything.
pub fn order_key(order_id: &str) -> u64 {
    use std::hash::BuildHasher;
    const KEYS: foldhash::quality::FixedState = foldhash::quality::FixedState::with_seed(0xb0c5);
    KEYS.hash_one(order_id)
}

/// An event's event_uid. The archiver spells it as a lowercase hyphenated UUID, which is kept as
/// its 16-byte number and spelled again when written: two million 36-byte strings were a heap
/// allocation each. Any other spelling (Bronze from another producer) is kept as it came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventUid {
    /// A UUID in the archiver's spelling.
    Uuid(u128),
    /// Any other text.
    Other(Box<str>),
}

impl EventUid {
    /// The uid of this text.
    pub fn new(uid: &str) -> EventUid {
        let archivers_spelling = uid.len() == 36 && !uid.bytes().any(|b| b.is_ascii_uppercase());
        match uuid::Uuid::try_parse(uid) {
            Ok(u) if archivers_spelling => EventUid::Uuid(u.as_u128()),
            _ => EventUid::Other(uid.into()),
        }
    }

    /// Its [`uid_key`], what duplicates are found by.
    pub fn key(&self) -> u128 {
        match self {
            EventUid::Uuid(key) => *key,
            EventUid::Other(text) => uid_key(text),
        }
    }

    /// The length of its text.
    pub fn text_len(&self) -> usize {
        match self {
            EventUid::Uuid(_) => 36,
            EventUid::Other(text) => text.len(),
        }
    }

    /// Its text, spelled on the stack.
    pub fn text(&self) -> UidText<'_> {
        match self {
            EventUid::Uuid(key) => {
                let mut spelled = [0u8; 36];
                uuid::Uuid::from_u128(*key)
                    .hyphenated()
                    .encode_lower(&mut spelled);
                UidText::Uuid(spelled)
            }
            EventUid::Other(text) => UidText::Other(text),
        }
    }
}

impl fmt::Display for EventUid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

/// An [`EventUid`]'s text.
pub enum UidText<'a> {
    /// A UUID, hyphenated (ASCII).
    Uuid([u8; 36]),
    /// As it came.
    Other(&'a str),
}

impl std::ops::Deref for UidText<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            // Always ASCII: written by `encode_lower`.
            UidText::Uuid(spelled) => std::str::from_utf8(spelled).unwrap_or_default(),
            UidText::Other(text) => text,
        }
    }
}

/// A booking as the join sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct BookingIn {
    /// Its event_uid.
    pub uid: EventUid,
    /// Its [`order_key`].
    pub order_key: u64,
    /// Its place in the arrival order.
    pub arrival: ArrivalKey,
    /// The parsed event.
    pub booking: Booking,
    /// The raw JSON while the event is in flight (for late_events); `None` once the join keeps it.
    pub body: Option<RawBody>,
}

/// A payment as the join sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PaymentIn {
    /// Its event_uid.
    pub uid: EventUid,
    /// Its [`order_key`].
    pub order_key: u64,
    /// Its place in the arrival order.
    pub arrival: ArrivalKey,
    /// The parsed event.
    pub payment: Payment,
    /// The raw JSON while the event is in flight (for late_events); `None` once the join keeps it.
    pub body: Option<RawBody>,
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
    pub fn new(uid: &str, arrival: ArrivalKey, event: Event, body: Option<RawBody>) -> JoinEvent {
        let uid = EventUid::new(uid);
        match event {
            Event::Booking(booking) => JoinEvent::Booking(Arc::new(BookingIn {
                order_key: order_key(&booking.order_id),
                uid,
                arrival,
                booking,
                body,
            })),
            Event::Payment(payment) => JoinEvent::Payment(Arc::new(PaymentIn {
                order_key: order_key(&payment.order_id),
                uid,
                arrival,
                payment,
                body,
            })),
        }
    }

    /// Validates a Bronze event (on the hub its arrival key names) for the join: the validator's
    /// refusal when it does not pass (Bronze written by a producer that did not validate, or a
    /// validator since made stricter). The body is not kept: this is for events the join keeps.
    pub fn parse(uid: &str, arrival: ArrivalKey, body: &str) -> Result<JoinEvent, Invalid> {
        let hub = if arrival.hub == PAYMENTS {
            Hub::Payments
        } else {
            Hub::Bookings
        };
        let event = validate_event(body, Some(hub))?;
        Ok(JoinEvent::new(uid, arrival, event, None))
    }

    /// The same event without its raw body, for keeping (a no-op when it is shared already).
    pub fn without_body(mut self) -> JoinEvent {
        match &mut self {
            JoinEvent::Booking(b) => {
                if let Some(b) = Arc::get_mut(b) {
                    b.body = None;
                }
            }
            JoinEvent::Payment(p) => {
                if let Some(p) = Arc::get_mut(p) {
                    p.body = None;
                }
            }
        }
        self
    }

    /// Its JSON: the raw body while it has one, else the canonical form of the parsed event.
    pub fn body(&self) -> std::borrow::Cow<'_, str> {
        use boxoffice_events::canonical::{booking_json, payment_json};
        match self {
            JoinEvent::Booking(b) => b
                .body
                .as_ref()
                .map_or_else(|| booking_json(&b.booking).into(), |r| r.as_str().into()),
            JoinEvent::Payment(p) => p
                .body
                .as_ref()
                .map_or_else(|| payment_json(&p.payment).into(), |r| r.as_str().into()),
        }
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
    pub fn uid(&self) -> &EventUid {
        match self {
            JoinEvent::Booking(b) => &b.uid,
            JoinEvent::Payment(p) => &p.uid,
        }
    }

    /// Its event_uid as a number.
    pub fn uid_key(&self) -> u128 {
        self.uid().key()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_uid_is_kept_as_a_number_only_when_it_spells_back_the_same() {
        let archivers = "0f8fad5b-d9cb-469f-a165-70867728950e";
        let uid = EventUid::new(archivers);
        assert_eq!(uid, EventUid::Uuid(uid_key(archivers)));
        assert_eq!(uid.to_string(), archivers);
        assert_eq!(uid.text_len(), archivers.len());
        // Other spellings of a UUID, and anything else, come back exactly as they came, and
        // find duplicates by the same key as before.
        for other in [
            "0F8FAD5B-D9CB-469F-A165-70867728950E",
            "0f8fad5bd9cb469fa16570867728950e",
            "{0f8fad5b-d9cb-469f-a165-70867728950e}",
            "legacy-7",
            "",
        ] {
            let uid = EventUid::new(other);
            assert_eq!(uid, EventUid::Other(other.into()), "{other}");
            assert_eq!(uid.to_string(), other);
            assert_eq!(uid.text_len(), other.len());
            assert_eq!(uid.key(), uid_key(other));
        }
    }
}
