//! The complete check: every reason an event is invalid, by walking its JSON value.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::{
    Invalid, MAX_EVENT_BYTES, MAX_SEATS_PER_ORDER, TimestampError, ValidEvent, parse_timestamp,
};
use crate::model::{
    Booking, Customer, Event, EventDetails, Hub, Payment, PaymentMethod, PaymentStatus,
    SchemaVersion, Seat, Text,
};
use crate::uid;

/// Validates `body`, listing every reason it is invalid.
pub(super) fn validate(body: &str, hub: Option<Hub>) -> Result<ValidEvent, Invalid> {
    let mut reasons = Vec::new();
    if body.len() > MAX_EVENT_BYTES {
        reasons.push(format!(
            "event is {} bytes, over the {MAX_EVENT_BYTES}-byte limit",
            body.len()
        ));
    }
    let value: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => {
            reasons.push(format!("malformed JSON: {e}"));
            return Err(Invalid {
                reasons,
                event_uid: None,
            });
        }
    };
    let Some(obj) = value.as_object() else {
        reasons.push(format!(
            "event must be a JSON object, got {}",
            type_name(&value)
        ));
        return Err(Invalid {
            reasons,
            event_uid: Some(uid::event_uid_of_value(&value)),
        });
    };
    let mut check = Check { reasons };
    let event = check.event(obj, hub);
    let event_uid = uid::event_uid(obj);
    match event {
        Some(event) if check.reasons.is_empty() => Ok(ValidEvent { event, event_uid }),
        _ => Err(Invalid {
            reasons: check.reasons,
            event_uid: Some(event_uid),
        }),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Collects reasons while reading fields; each getter returns `None` after recording why.
struct Check {
    reasons: Vec<String>,
}

impl Check {
    fn fail(&mut self, reason: String) {
        self.reasons.push(reason);
    }

    fn event(&mut self, obj: &Map<String, Value>, hub: Option<Hub>) -> Option<Event> {
        let shape = sniff_object(obj);
        let hub = match (hub, shape) {
            (Some(arrived), Some(looks)) if arrived != looks => {
                self.fail(format!(
                    "a {} event sent to the {arrived} hub",
                    singular(looks)
                ));
                return None;
            }
            (Some(arrived), _) => arrived,
            (None, Some(looks)) => looks,
            (None, None) => {
                self.fail(
                    "cannot tell a booking from a payment: no booking_time, event_details or payment_id"
                        .into(),
                );
                return None;
            }
        };
        let version = self.schema_version(obj);
        let event_id = self.event_id(obj, version);
        // Every field is checked even when the version or id is bad, so all reasons are listed.
        match hub {
            Hub::Bookings => self.booking(obj, version, event_id).map(Event::Booking),
            Hub::Payments => self.payment(obj, version, event_id).map(Event::Payment),
        }
    }

    fn schema_version(&mut self, obj: &Map<String, Value>) -> Option<SchemaVersion> {
        match obj.get("schema_version") {
            None => Some(SchemaVersion::V0),
            Some(v) => match v.as_i64() {
                Some(1) => Some(SchemaVersion::V1),
                Some(2) => Some(SchemaVersion::V2),
                _ => {
                    self.fail(format!(
                        "unsupported schema_version {v} (expected 1 or 2, or none for the legacy shape)"
                    ));
                    None
                }
            },
        }
    }

    /// `Some(None)` for a v0 event without id; `None` when the id is required and bad.
    fn event_id(
        &mut self,
        obj: &Map<String, Value>,
        version: Option<SchemaVersion>,
    ) -> Option<Option<uuid::Uuid>> {
        let required = !matches!(version, Some(SchemaVersion::V0));
        let id = if required {
            self.string(obj, "", "event_id")?
        } else {
            match self.opt_string(obj, "", "event_id") {
                Ok(None) => return Some(None),
                Ok(Some(id)) => id,
                Err(()) => return None,
            }
        };
        match uuid::Uuid::parse_str(id) {
            Ok(u) => Some(Some(u)),
            Err(_) => {
                self.fail(format!("event_id {id:?} is not a UUID"));
                None
            }
        }
    }

    fn booking(
        &mut self,
        obj: &Map<String, Value>,
        version: Option<SchemaVersion>,
        event_id: Option<Option<uuid::Uuid>>,
    ) -> Option<Booking> {
        let order_id = self.id(obj, "", "order_id");
        let booking_time = self.time(obj, "", "booking_time");
        let customer = self.customer(obj);
        let details = self.event_details(obj, order_id.unwrap_or(""));
        let channel = self.opt_string(obj, "", "channel");
        let currency = self.currency(obj, "");
        Some(Booking {
            schema_version: version?,
            event_id: event_id?,
            order_id: order_id?.into(),
            booking_time: booking_time?,
            customer: customer?,
            event_details: details?,
            channel: channel.ok()?.map(Text::from),
            currency: currency?,
        })
    }

    fn customer(&mut self, obj: &Map<String, Value>) -> Option<Customer> {
        let c = self.object(obj, "", "customer")?;
        let customer_id = self.id(c, "customer.", "customer_id");
        let name = self.string(c, "customer.", "name");
        let email = self.string(c, "customer.", "email");
        Some(Customer {
            customer_id: customer_id?.into(),
            name: name?.into(),
            email: email?.into(),
        })
    }

    fn event_details(&mut self, obj: &Map<String, Value>, order_id: &str) -> Option<EventDetails> {
        let d = self.object(obj, "", "event_details")?;
        let p = "event_details.";
        let event_id = self.id(d, p, "event_id");
        let event_name = self.string(d, p, "event_name");
        let event_location = self.string(d, p, "event_location");
        let seats = self.seats(d, order_id);
        let city = self.opt_string(d, p, "city");
        let starts_at = self.opt_time(d, p, "starts_at");
        Some(EventDetails {
            event_id: event_id?.into(),
            event_name: event_name?.into(),
            event_location: event_location?.into(),
            seats: seats?,
            city: city.ok()?.map(Text::from),
            starts_at: starts_at?,
        })
    }

    fn seats(&mut self, details: &Map<String, Value>, order_id: &str) -> Option<Vec<Seat>> {
        let arr = self.array(details, "event_details.", "seats")?;
        if arr.is_empty() {
            self.fail("event_details.seats is empty: an order holds 1 to 6 seats".into());
            return None;
        }
        let before = self.reasons.len();
        if arr.len() > MAX_SEATS_PER_ORDER {
            self.fail(format!(
                "event_details.seats holds {} seats; an order holds at most {MAX_SEATS_PER_ORDER}",
                arr.len()
            ));
        }
        let mut seats = Vec::with_capacity(arr.len());
        let mut seen = HashSet::new();
        for (i, v) in arr.iter().enumerate() {
            let path = format!("event_details.seats[{i}].");
            let Some(seat) = v.as_object() else {
                self.fail(format!(
                    "event_details.seats[{i}] must be an object, got {}",
                    type_name(v)
                ));
                continue;
            };
            let number = self.id(seat, &path, "seat_number");
            let price = self.number(seat, &path, "price");
            if let Some(p) = price
                && p < 0.0
            {
                self.fail(format!("{path}price is negative: {p}"));
            }
            if let Some(n) = number
                && !seen.insert(n)
            {
                self.fail(format!("duplicate seat {n} in order {order_id}"));
            }
            if let (Some(n), Some(p)) = (number, price) {
                seats.push(Seat {
                    seat_number: n.into(),
                    price: p,
                });
            }
        }
        (self.reasons.len() == before).then_some(seats)
    }

    fn payment(
        &mut self,
        obj: &Map<String, Value>,
        version: Option<SchemaVersion>,
        event_id: Option<Option<uuid::Uuid>>,
    ) -> Option<Payment> {
        let payment_id = self.id(obj, "", "payment_id");
        let order_id = self.id(obj, "", "order_id");
        let payment_time = self.time(obj, "", "payment_time");
        let amount = self.non_negative(obj, "", "amount");
        let method = self.string(obj, "", "payment_method").and_then(|m| {
            let parsed = PaymentMethod::parse(m);
            if parsed.is_none() {
                let known: Vec<_> = PaymentMethod::ALL.iter().map(|m| m.as_str()).collect();
                self.fail(format!(
                    "unknown payment_method {m:?} (expected one of {})",
                    known.join(", ")
                ));
            }
            parsed
        });
        let status = self.string(obj, "", "payment_status").and_then(|s| {
            let parsed = PaymentStatus::parse(s);
            if parsed.is_none() {
                self.fail(format!(
                    "unknown payment_status {s:?} (expected Success or Failed)"
                ));
            }
            parsed
        });
        let currency = self.currency(obj, "");
        let fee = match obj.get("fee") {
            None | Some(Value::Null) => Some(None),
            Some(_) => self.non_negative(obj, "", "fee").map(Some),
        };
        Some(Payment {
            schema_version: version?,
            event_id: event_id?,
            payment_id: payment_id?.into(),
            order_id: order_id?.into(),
            payment_time: payment_time?,
            amount: amount?,
            payment_method: method?,
            payment_status: status?,
            currency: currency?,
            fee: fee?,
        })
    }

    fn get<'v>(&mut self, obj: &'v Map<String, Value>, path: &str, key: &str) -> Option<&'v Value> {
        match obj.get(key) {
            None | Some(Value::Null) => {
                self.fail(format!("missing field {path}{key}"));
                None
            }
            Some(v) => Some(v),
        }
    }

    fn wrong_type(&mut self, path: &str, key: &str, want: &str, got: &Value) {
        self.fail(format!(
            "wrong type: {path}{key} must be {want}, got {}",
            type_name(got)
        ));
    }

    fn string<'v>(
        &mut self,
        obj: &'v Map<String, Value>,
        path: &str,
        key: &str,
    ) -> Option<&'v str> {
        let v = self.get(obj, path, key)?;
        match v.as_str() {
            Some(s) => Some(s),
            None => {
                self.wrong_type(path, key, "a string", v);
                None
            }
        }
    }

    /// An identifier: a string that is not blank.
    fn id<'v>(&mut self, obj: &'v Map<String, Value>, path: &str, key: &str) -> Option<&'v str> {
        let s = self.string(obj, path, key)?;
        if s.trim().is_empty() {
            self.fail(format!("{path}{key} is empty"));
            return None;
        }
        Some(s)
    }

    /// An optional string: `Ok(None)` when absent or null, `Err` after recording a wrong type.
    fn opt_string<'v>(
        &mut self,
        obj: &'v Map<String, Value>,
        path: &str,
        key: &str,
    ) -> Result<Option<&'v str>, ()> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => {
                self.wrong_type(path, key, "a string", v);
                Err(())
            }
        }
    }

    fn currency(&mut self, obj: &Map<String, Value>, path: &str) -> Option<Option<Text>> {
        let c = self.opt_string(obj, path, "currency").ok()?;
        match c {
            Some(c) if c.len() != 3 || !c.bytes().all(|b| b.is_ascii_uppercase()) => {
                self.fail(format!(
                    "{path}currency {c:?} is not an ISO 4217 code such as \"INR\""
                ));
                None
            }
            c => Some(c.map(Text::from)),
        }
    }

    fn number(&mut self, obj: &Map<String, Value>, path: &str, key: &str) -> Option<f64> {
        let v = self.get(obj, path, key)?;
        match v.as_f64() {
            Some(n) => Some(n),
            None => {
                self.wrong_type(path, key, "a number", v);
                None
            }
        }
    }

    fn non_negative(&mut self, obj: &Map<String, Value>, path: &str, key: &str) -> Option<f64> {
        let n = self.number(obj, path, key)?;
        if n < 0.0 {
            self.fail(format!("{path}{key} is negative: {n}"));
            return None;
        }
        Some(n)
    }

    fn object<'v>(
        &mut self,
        obj: &'v Map<String, Value>,
        path: &str,
        key: &str,
    ) -> Option<&'v Map<String, Value>> {
        let v = self.get(obj, path, key)?;
        match v.as_object() {
            Some(o) => Some(o),
            None => {
                self.wrong_type(path, key, "an object", v);
                None
            }
        }
    }

    fn array<'v>(
        &mut self,
        obj: &'v Map<String, Value>,
        path: &str,
        key: &str,
    ) -> Option<&'v Vec<Value>> {
        let v = self.get(obj, path, key)?;
        match v.as_array() {
            Some(a) => Some(a),
            None => {
                self.wrong_type(path, key, "an array", v);
                None
            }
        }
    }

    fn time(&mut self, obj: &Map<String, Value>, path: &str, key: &str) -> Option<DateTime<Utc>> {
        let s = self.string(obj, path, key)?;
        self.parse_time(path, key, s)
    }

    fn opt_time(
        &mut self,
        obj: &Map<String, Value>,
        path: &str,
        key: &str,
    ) -> Option<Option<DateTime<Utc>>> {
        match self.opt_string(obj, path, key).ok()? {
            None => Some(None),
            Some(s) => self.parse_time(path, key, s).map(Some),
        }
    }

    fn parse_time(&mut self, path: &str, key: &str, s: &str) -> Option<DateTime<Utc>> {
        match parse_timestamp(s) {
            Ok(t) => Some(t),
            Err(TimestampError::NoZone) => {
                self.fail(format!(
                    "{path}{key} {s:?} has no time zone: add Z or an offset such as +05:30"
                ));
                None
            }
            Err(TimestampError::Unparseable) => {
                self.fail(format!(
                    "{path}{key} {s:?} is not an RFC 3339 timestamp such as 2024-10-11T09:39:30Z"
                ));
                None
            }
        }
    }
}

fn singular(hub: Hub) -> &'static str {
    match hub {
        Hub::Bookings => "booking",
        Hub::Payments => "payment",
    }
}

fn sniff_object(obj: &Map<String, Value>) -> Option<Hub> {
    if obj.contains_key("payment_id") || obj.contains_key("payment_time") {
        Some(Hub::Payments)
    } else if obj.contains_key("booking_time")
        || obj.contains_key("event_details")
        || obj.contains_key("customer")
    {
        Some(Hub::Bookings)
    } else {
        None
    }
}
