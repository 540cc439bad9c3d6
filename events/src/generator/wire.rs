//! The JSON the generator emits, in each schema version's exact shape.
//!
//! Borrowed structs serialised by serde: the generator must outrun the 200,000 events/s landing
//! target, so bodies are written straight to a string without an intermediate JSON tree.

use serde::Serialize;

use crate::model::SchemaVersion;

/// A price as the version writes it: whole numbers in v0, decimals otherwise.
#[derive(Debug, Clone, Copy)]
pub struct Price {
    pub value: f64,
    pub version: SchemaVersion,
}

impl Price {
    /// A price written exactly as it is held, whatever the version (the canonical body: a v0
    /// price another producer sent with decimals must come back unrounded).
    pub fn exact(value: f64) -> Price {
        Price {
            value,
            version: SchemaVersion::V2,
        }
    }
}

impl Serialize for Price {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.version == SchemaVersion::V0 {
            s.serialize_i64(self.value.round() as i64)
        } else {
            s.serialize_f64(self.value)
        }
    }
}

#[derive(Serialize)]
pub struct BookingWire<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<&'a str>,
    pub order_id: &'a str,
    pub booking_time: &'a str,
    pub customer: CustomerWire<'a>,
    pub event_details: EventDetailsWire<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<&'a str>,
}

#[derive(Serialize)]
pub struct CustomerWire<'a> {
    pub customer_id: &'a str,
    pub name: &'a str,
    pub email: &'a str,
}

#[derive(Serialize)]
pub struct EventDetailsWire<'a> {
    pub event_id: &'a str,
    pub event_name: &'a str,
    pub event_location: &'a str,
    pub seats: Vec<SeatWire<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<&'a str>,
}

#[derive(Serialize)]
pub struct SeatWire<'a> {
    pub seat_number: &'a str,
    pub price: Price,
}

#[derive(Serialize)]
pub struct PaymentWire<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<&'a str>,
    pub payment_id: &'a str,
    pub order_id: &'a str,
    pub payment_time: &'a str,
    pub amount: Price,
    pub payment_method: &'a str,
    pub payment_status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fee: Option<f64>,
}
