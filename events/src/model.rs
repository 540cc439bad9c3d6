//! Typed booking and payment events, as they are after validation.
//!
//! Producers send three shapes (docs/events.md): the legacy demo shape (v0, no
//! `schema_version`, integer prices), v1 (the demo shape corrected, with `event_id`) and v2 (v1 plus
//! optional fields). After validation every shape becomes the same superset type, so later stages
//! never branch on the version except to record it.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

/// An event's text: ids, names, seat numbers, places. Most fit in 24 bytes and are stored
/// inline, so a parsed event is a few allocations rather than a dozen (the join holds millions).
pub type Text = compact_str::CompactString;

/// The Event Hub an event travels on; also names its Bronze table (`<hub>_raw`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hub {
    /// Booking events: an order of seats for one catalog event.
    Bookings,
    /// Payment events: one attempt to pay for an order.
    Payments,
}

impl Hub {
    /// Both hubs, in a fixed order (bookings first).
    pub const ALL: [Hub; 2] = [Hub::Bookings, Hub::Payments];

    /// The hub's name as Event Hubs, function.json and the Bronze tables spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Hub::Bookings => "bookings",
            Hub::Payments => "payments",
        }
    }
}

impl fmt::Display for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Returned when a hub name is neither `bookings` nor `payments`.
#[derive(Debug, thiserror::Error)]
#[error("unknown hub {0:?}: expected \"bookings\" or \"payments\"")]
pub struct UnknownHub(pub String);

impl FromStr for Hub {
    type Err = UnknownHub;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "bookings" | "booking" => Ok(Hub::Bookings),
            "payments" | "payment" => Ok(Hub::Payments),
            _ => Err(UnknownHub(s.to_string())),
        }
    }
}

/// The wire shape an event arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SchemaVersion {
    /// The demos' exact shape: no `schema_version`, no `event_id`, integer prices.
    V0,
    /// The demo shape corrected: `schema_version: 1`, a UUID `event_id`, decimal prices.
    V1,
    /// v1 plus optional `channel`, `city`, `starts_at`, `currency` and `fee`.
    V2,
}

impl SchemaVersion {
    /// The number stored in the `schema_version` columns (0 for the legacy shape).
    pub fn number(self) -> i32 {
        match self {
            SchemaVersion::V0 => 0,
            SchemaVersion::V1 => 1,
            SchemaVersion::V2 => 2,
        }
    }
}

/// How a payment was attempted; the demos' three methods plus UPI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaymentMethod {
    /// "Credit Card" (payment_type Card).
    CreditCard,
    /// "Debit Card" (payment_type Card).
    DebitCard,
    /// "PayPal" (payment_type Online).
    PayPal,
    /// "UPI" (payment_type Cash, as the demos' CASE falls through to it).
    Upi,
}

impl PaymentMethod {
    /// Every accepted method, in the spelling producers send.
    pub const ALL: [PaymentMethod; 4] = [
        PaymentMethod::CreditCard,
        PaymentMethod::DebitCard,
        PaymentMethod::PayPal,
        PaymentMethod::Upi,
    ];

    /// The method as producers spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentMethod::CreditCard => "Credit Card",
            PaymentMethod::DebitCard => "Debit Card",
            PaymentMethod::PayPal => "PayPal",
            PaymentMethod::Upi => "UPI",
        }
    }

    /// Parses the exact producer spelling; anything else is an unknown method.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// Whether a payment attempt went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaymentStatus {
    /// The attempt was charged.
    Success,
    /// The attempt was declined; the customer may retry with a new payment.
    Failed,
}

impl PaymentStatus {
    /// The status as producers spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Success => "Success",
            PaymentStatus::Failed => "Failed",
        }
    }

    /// Parses the exact producer spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Success" => Some(PaymentStatus::Success),
            "Failed" => Some(PaymentStatus::Failed),
            _ => None,
        }
    }
}

/// The person who placed an order.
#[derive(Debug, Clone, PartialEq)]
pub struct Customer {
    /// "cust2000" in the demos.
    pub customer_id: Text,
    /// Display name.
    pub name: Text,
    /// Contact address; its form is checked by a Silver expectation, not here.
    pub email: Text,
}

/// One seat in an order.
#[derive(Debug, Clone, PartialEq)]
pub struct Seat {
    /// Row letter and number, "A7".
    pub seat_number: Text,
    /// Price of this seat (never negative).
    pub price: f64,
}

/// What was booked: a catalog event and its seats.
#[derive(Debug, Clone, PartialEq)]
pub struct EventDetails {
    /// Catalog id, "event17".
    pub event_id: Text,
    /// Name; its first substring match gives the category (Concert, Play, Movie).
    pub event_name: Text,
    /// Venue address, often several lines.
    pub event_location: Text,
    /// 1 to 6 seats, unique within the order.
    pub seats: Vec<Seat>,
    /// v2: the venue's city.
    pub city: Option<Text>,
    /// v2: when the show starts.
    pub starts_at: Option<DateTime<Utc>>,
}

/// A booking: a customer orders seats for one catalog event.
#[derive(Debug, Clone, PartialEq)]
pub struct Booking {
    /// The shape it arrived in.
    pub schema_version: SchemaVersion,
    /// The producer's UUID for this emission (None for v0).
    pub event_id: Option<uuid::Uuid>,
    /// Joins the booking to its payments; also the Event Hubs partition key.
    pub order_id: Text,
    /// When the booking was made, in UTC.
    pub booking_time: DateTime<Utc>,
    /// Who booked.
    pub customer: Customer,
    /// What was booked.
    pub event_details: EventDetails,
    /// v2: web, app or box office.
    pub channel: Option<Text>,
    /// v2: ISO 4217 code of the prices.
    pub currency: Option<Text>,
}

/// A payment attempt for an order.
#[derive(Debug, Clone, PartialEq)]
pub struct Payment {
    /// The shape it arrived in.
    pub schema_version: SchemaVersion,
    /// The producer's UUID for this emission (None for v0).
    pub event_id: Option<uuid::Uuid>,
    /// "payment_3000" (the generator: "payment_<run tag>-<n>"); a retry after a failure carries
    /// a new id.
    pub payment_id: Text,
    /// The order paid for.
    pub order_id: Text,
    /// When the payment was attempted, in UTC.
    pub payment_time: DateTime<Utc>,
    /// Sum of the order's seat prices (plus `fee` in v2).
    pub amount: f64,
    /// How the customer paid.
    pub payment_method: PaymentMethod,
    /// Whether it went through.
    pub payment_status: PaymentStatus,
    /// v2: ISO 4217 code of the amount.
    pub currency: Option<Text>,
    /// v2: booking fee included in `amount`.
    pub fee: Option<f64>,
}

/// A validated event of either kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// From the bookings hub.
    Booking(Booking),
    /// From the payments hub.
    Payment(Payment),
}

impl Event {
    /// The hub this kind of event travels on.
    pub fn hub(&self) -> Hub {
        match self {
            Event::Booking(_) => Hub::Bookings,
            Event::Payment(_) => Hub::Payments,
        }
    }

    /// The order the event belongs to (the partition key).
    pub fn order_id(&self) -> &str {
        match self {
            Event::Booking(b) => &b.order_id,
            Event::Payment(p) => &p.order_id,
        }
    }

    /// The shape the event arrived in.
    pub fn schema_version(&self) -> SchemaVersion {
        match self {
            Event::Booking(b) => b.schema_version,
            Event::Payment(p) => p.schema_version,
        }
    }

    /// The event's own time (booking_time or payment_time).
    pub fn event_time(&self) -> DateTime<Utc> {
        match self {
            Event::Booking(b) => b.booking_time,
            Event::Payment(p) => p.payment_time,
        }
    }
}
