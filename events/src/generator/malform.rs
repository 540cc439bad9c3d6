//! Corruptions that turn a valid generated event into the kinds of bad input real producers send.
//!
//! Each kind maps to one validator reason, so a pipeline run shows every quarantine path.

use rand::Rng;
use serde_json::{Value, json};

use crate::model::Hub;

/// One kind of defect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Defect {
    /// The body is cut off mid-way (a torn write).
    Truncated,
    /// Not JSON at all (an error page forwarded as an event).
    NotJson,
    /// A required field is absent.
    MissingField,
    /// A field has the wrong JSON type.
    WrongType,
    /// A timestamp without a zone.
    ZonelessTime,
    /// Bookings: no seats. Payments: an unknown method.
    EmptySeatsOrUnknownMethod,
    /// Bookings: a seat twice. Payments: an unknown status.
    DuplicateSeatOrUnknownStatus,
    /// A negative price or amount.
    Negative,
}

const ALL: [Defect; 8] = [
    Defect::Truncated,
    Defect::NotJson,
    Defect::MissingField,
    Defect::WrongType,
    Defect::ZonelessTime,
    Defect::EmptySeatsOrUnknownMethod,
    Defect::DuplicateSeatOrUnknownStatus,
    Defect::Negative,
];

/// Corrupts `body` (a valid event of `hub`) with a random defect.
pub fn malform<R: Rng + ?Sized>(body: &str, hub: Hub, rng: &mut R) -> String {
    let defect = ALL[rng.random_range(0..ALL.len())];
    match defect {
        Defect::Truncated => {
            let cut = rng.random_range(1..body.len().max(2));
            // Cut on a char boundary; generated bodies are mostly ASCII but names may not be.
            let cut = (0..=cut)
                .rev()
                .find(|&i| body.is_char_boundary(i))
                .unwrap_or(0);
            body[..cut].to_string()
        }
        Defect::NotJson => "<html><body>502 Bad Gateway</body></html>".to_string(),
        other => {
            let Ok(mut v) = serde_json::from_str::<Value>(body) else {
                return body.to_string();
            };
            edit(&mut v, hub, other);
            v.to_string()
        }
    }
}

fn edit(v: &mut Value, hub: Hub, defect: Defect) {
    let time_field = match hub {
        Hub::Bookings => "booking_time",
        Hub::Payments => "payment_time",
    };
    match (defect, hub) {
        (Defect::MissingField, Hub::Bookings) => remove(v, "customer"),
        (Defect::MissingField, Hub::Payments) => remove(v, "amount"),
        (Defect::WrongType, Hub::Bookings) => {
            v["event_details"]["seats"][0]["price"] = json!("seventy-five");
        }
        (Defect::WrongType, Hub::Payments) => v["amount"] = json!("one hundred"),
        (Defect::ZonelessTime, _) => {
            if let Some(t) = v[time_field].as_str() {
                let naive = t.get(..19).unwrap_or(t).to_string();
                v[time_field] = json!(naive);
            }
        }
        (Defect::EmptySeatsOrUnknownMethod, Hub::Bookings) => {
            v["event_details"]["seats"] = json!([]);
        }
        (Defect::EmptySeatsOrUnknownMethod, Hub::Payments) => {
            v["payment_method"] = json!("Cheque");
        }
        (Defect::DuplicateSeatOrUnknownStatus, Hub::Bookings) => {
            let first = v["event_details"]["seats"][0].clone();
            if let Some(seats) = v["event_details"]["seats"].as_array_mut() {
                seats.push(first);
            }
        }
        (Defect::DuplicateSeatOrUnknownStatus, Hub::Payments) => {
            v["payment_status"] = json!("Pending");
        }
        (Defect::Negative, Hub::Bookings) => {
            let price = v["event_details"]["seats"][0]["price"]
                .as_f64()
                .unwrap_or(1.0);
            v["event_details"]["seats"][0]["price"] = json!(-price.abs().max(1.0));
        }
        (Defect::Negative, Hub::Payments) => {
            let amount = v["amount"].as_f64().unwrap_or(1.0);
            v["amount"] = json!(-amount.abs().max(1.0));
        }
        (Defect::Truncated | Defect::NotJson, _) => {}
    }
}

fn remove(v: &mut Value, key: &str) {
    if let Some(obj) = v.as_object_mut() {
        obj.remove(key);
    }
}
