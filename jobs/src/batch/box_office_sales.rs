//! Offline box-office sales (`landing/box_office_sales/*.csv` or `.parquet`, one row per seat
//! sold: sale_id, sold_at, event_id, seat_number, seat_price, payment_method, and optionally
//! payment_id (else the sale_id), customer_id, customer_name, customer_email, currency) MERGEd into `silver/bookings_fact` with source `batch`. A sale is one order and one
//! successful payment of the sum of its seats; its show's name, venue and city come from
//! `silver/event_catalog`. The key is (booking_date, order_id, seat_number, payment_id): a sale
//! already there from the stream is left as it is, one from an earlier version of a file is
//! replaced, so nothing is ever there twice.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use deltalake::DeltaTable;
use deltalake::datafusion::prelude::SessionContext;
use serde_json::json;
use uuid::Uuid;

use super::event_catalog::utc_time;
use super::landing::{Record, Records};
use super::{Refused, batch_error, rows_from_json};
use crate::JobError;
use crate::silver::derive::{day_of_week, event_category, hour};
use crate::silver::tables::BOOKINGS_FACT;

/// Namespace of the event uids of batch sales (fixed: changing it changes uids).
const SALES_NAMESPACE: Uuid = Uuid::from_u128(0x0b0c_5a1e_5000_4a57_9c3b_b0c5_0ff1_ce01);

/// Payment methods a box office takes.
const METHODS: [&str; 5] = ["Credit Card", "Debit Card", "PayPal", "UPI", "Cash"];

/// What the catalog says of a show.
#[derive(Debug, Clone)]
pub struct Show {
    /// Its name.
    pub name: String,
    /// Where (venue, city).
    pub location: Option<String>,
    /// Its city.
    pub city: Option<String>,
}

/// One seat sold, checked.
struct Seat {
    sale_id: String,
    sold_at: DateTime<Utc>,
    event_id: String,
    seat_number: String,
    price: f64,
    method: String,
    record: usize,
}

fn seat(
    records: &Records,
    r: &Record,
    i: usize,
    catalog: &HashMap<String, Show>,
) -> Result<Seat, String> {
    let get = |c: &str| records.get(r, c);
    let mut reasons = Vec::new();
    let mut required = |c: &str| {
        let v = get(c).unwrap_or_default().to_string();
        if v.is_empty() {
            reasons.push(format!("{c} is missing"));
        }
        v
    };
    let (sale_id, event_id, seat_number, method) = (
        required("sale_id"),
        required("event_id"),
        required("seat_number"),
        required("payment_method"),
    );
    let sold_at = get("sold_at").map(utc_time);
    let price = get("seat_price").map(str::parse::<f64>);
    match &sold_at {
        None => reasons.push("sold_at is missing".into()),
        Some(Err(e)) => reasons.push(format!("sold_at {e}")),
        Some(Ok(_)) => {}
    }
    match &price {
        None => reasons.push("seat_price is missing".into()),
        Some(Ok(p)) if p.is_finite() && *p > 0.0 => {}
        Some(_) => reasons.push(format!(
            "seat_price {:?} is not a positive number",
            get("seat_price").unwrap_or_default()
        )),
    }
    if !method.is_empty() && !METHODS.contains(&method.as_str()) {
        reasons.push(format!(
            "payment_method {method:?} is not one of {}",
            METHODS.join(", ")
        ));
    }
    if !event_id.is_empty() && !catalog.contains_key(&event_id) {
        reasons.push(format!(
            "event_id {event_id:?} is not in silver.event_catalog"
        ));
    }
    match (sold_at, price) {
        (Some(Ok(sold_at)), Some(Ok(price))) if reasons.is_empty() => Ok(Seat {
            sale_id,
            sold_at,
            event_id,
            seat_number,
            price,
            method,
            record: i,
        }),
        _ => Err(reasons.join("; ")),
    }
}

fn payment_type(method: &str) -> &'static str {
    match method {
        "Credit Card" | "Debit Card" => "Card",
        "PayPal" => "Online",
        _ => "Cash",
    }
}

/// MERGEs a sales file's valid seats into bookings_fact; returns rows loaded and refused.
pub async fn load(
    table: DeltaTable,
    records: &Records,
    catalog: &HashMap<String, Show>,
    processed_at: DateTime<Utc>,
    commit: Option<deltalake::kernel::transaction::CommitProperties>,
) -> Result<(DeltaTable, u64, Vec<Refused>), JobError> {
    let mut refused = Vec::new();
    let mut seats: Vec<Seat> = Vec::new();
    let mut seen = HashSet::new();
    for (i, r) in records.rows.iter().enumerate() {
        match seat(records, r, i, catalog) {
            Ok(s) if !seen.insert((s.sale_id.clone(), s.seat_number.clone())) => {
                refused.push(Refused::row(
                    records,
                    r,
                    format!(
                        "seat {} of sale {} appears twice in the file",
                        s.seat_number, s.sale_id
                    ),
                ))
            }
            Ok(s) => seats.push(s),
            Err(reason) => refused.push(Refused::row(records, r, reason)),
        }
    }
    // A sale is one order: every seat row carries the sale's total and its first seat's time.
    let mut sales: BTreeMap<&str, (f64, DateTime<Utc>)> = BTreeMap::new();
    for s in &seats {
        let e = sales.entry(&s.sale_id).or_insert((0.0, s.sold_at));
        e.0 += s.price;
    }
    let Some(properties) = commit.filter(|_| !seats.is_empty()) else {
        return Ok((table, seats.len() as u64, refused)); // nothing to write, or written before a crash
    };
    let rows = seats.iter().map(|s| {
        let (amount, at) = sales[s.sale_id.as_str()];
        let show = &catalog[&s.event_id];
        let r = &records.rows[s.record];
        let get = |c: &str| records.get(r, c);
        json!({
            "order_id": s.sale_id,
            "booking_time": at.to_rfc3339(),
            "customer_id": get("customer_id"),
            "customer_name": get("customer_name"),
            "customer_email": get("customer_email"),
            "event_id": s.event_id,
            "event_name": show.name,
            "event_location": show.location,
            "seat_number": s.seat_number,
            "seat_price": s.price,
            "event_category": event_category(&show.name),
            "booking_day_of_week": day_of_week(at),
            "booking_hour": hour(at),
            "payment_id": get("payment_id").unwrap_or(&s.sale_id),
            "payment_time": at.to_rfc3339(),
            "amount": (amount * 100.0).round() / 100.0,
            "payment_method": s.method,
            "payment_type": payment_type(&s.method),
            "payment_status": "Success",
            "currency": get("currency"),
            "channel": "box_office",
            "city": show.city,
            "source": "batch",
            "booking_event_uid": Uuid::new_v5(&SALES_NAMESPACE, format!("booking:{}", s.sale_id).as_bytes()).to_string(),
            "payment_event_uid": Uuid::new_v5(&SALES_NAMESPACE, format!("payment:{}", s.sale_id).as_bytes()).to_string(),
            "is_first_booking_match": true,
            "is_first_payment_match": true,
            "is_sale": true,
            "processed_at": processed_at.to_rfc3339(),
            "booking_date": at.date_naive().to_string(),
        })
    });
    let loaded = seats.len() as u64;
    let batches = rows_from_json(&BOOKINGS_FACT, rows)?;
    let ctx = SessionContext::new();
    let source = ctx
        .read_batches(batches)
        .map_err(|e| batch_error(&BOOKINGS_FACT, e))?;
    let columns: Vec<String> = BOOKINGS_FACT
        .arrow_schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let (table, _) = table
        .merge(
            source,
            "target.booking_date = source.booking_date AND target.order_id = source.order_id \
             AND target.seat_number = source.seat_number AND target.payment_id = source.payment_id",
        )
        .with_source_alias("source")
        .with_target_alias("target")
        .with_commit_properties(properties)
        .when_matched_update(|u| {
            columns
                .iter()
                .fold(u.predicate("target.source = 'batch'"), |u, c| {
                    u.update(c.as_str(), format!("source.{c}"))
                })
        })
        .and_then(|m| {
            m.when_not_matched_insert(|i| {
                columns
                    .iter()
                    .fold(i, |i, c| i.set(c.as_str(), format!("source.{c}")))
            })
        })
        .map_err(|e| batch_error(&BOOKINGS_FACT, e))?
        .await
        .map_err(|e| batch_error(&BOOKINGS_FACT, e))?;
    Ok((table, loaded, refused))
}
