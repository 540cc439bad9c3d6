//! The changes Bronze holds, as the Silver and Gold steps read them: typed, in commit order,
//! checked.

use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Decimal128Builder, Int32Builder, Int64Array,
    RecordBatch, StringArray, StringBuilder, TimestampMicrosecondBuilder,
};
use deltalake::arrow::datatypes::{Decimal128Type, Int32Type, Int64Type, TimestampMicrosecondType};

use super::tables::ticket_price;
use crate::JobError;

/// The booking service's row.
#[derive(Debug, Clone, PartialEq)]
pub struct Booking {
    /// Key.
    pub booking_id: String,
    /// Customer.
    pub customer_id: Option<String>,
    /// Movie.
    pub movie_id: Option<String>,
    /// When booked (microseconds, UTC).
    pub booking_date: Option<i64>,
    /// BOOKED, CANCELLED or COMPLETED.
    pub status: Option<String>,
    /// Tickets.
    pub ticket_count: Option<i32>,
    /// Price of one ticket, in cents (decimal(10,2) unscaled).
    pub ticket_price: Option<i128>,
}

/// One Bronze change row.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeRow {
    /// The row's values (before the change for a DELETE, after it for an INSERT).
    pub booking: Booking,
    /// `INSERT` (true) or `DELETE` (false), in the Snowflake stream's terms.
    pub insert: bool,
    /// Half of an update.
    pub is_update: bool,
    /// When the change was committed (microseconds, UTC).
    pub change_timestamp: i64,
    /// The source table version it came from.
    pub commit_version: i64,
}

impl ChangeRow {
    /// A row that sets a booking's state: an insert, or the new half of an update.
    pub fn sets_state(&self) -> bool {
        self.insert
    }

    /// A real delete (not the old half of an update).
    pub fn deletes(&self) -> bool {
        !self.insert && !self.is_update
    }
}

/// Puts changes in the order the later steps apply them in: by source version, then by booking,
/// a DELETE before an INSERT, the plain change before the half of an update.
pub fn in_apply_order(rows: &mut [ChangeRow]) {
    fn key(r: &ChangeRow) -> (i64, &str, bool, bool) {
        (
            r.commit_version,
            &r.booking.booking_id,
            r.insert,
            r.is_update,
        )
    }
    rows.sort_by(|a, b| key(a).cmp(&key(b)));
}

/// Statuses the booking service uses.
pub const STATUSES: [&str; 3] = ["BOOKED", "CANCELLED", "COMPLETED"];

/// Why a state-setting change cannot be applied (`None`: it can).
pub fn refusal(row: &ChangeRow) -> Option<String> {
    let b = &row.booking;
    let mut reasons = Vec::new();
    if b.booking_id.trim().is_empty() {
        reasons.push("booking_id is empty".to_string());
    }
    if b.movie_id.as_deref().is_none_or(|m| m.trim().is_empty()) {
        reasons.push("movie_id is missing".to_string());
    }
    match b.status.as_deref() {
        Some(s) if STATUSES.contains(&s) => {}
        Some(s) => reasons.push(format!(
            "status {s:?} is not one of BOOKED, CANCELLED, COMPLETED"
        )),
        None => reasons.push("status is missing".to_string()),
    }
    match b.ticket_count {
        Some(n) if n < 0 => reasons.push(format!("ticket_count {n} is negative")),
        None => reasons.push("ticket_count is missing".to_string()),
        _ => {}
    }
    if b.ticket_price.is_some_and(|p| p < 0) {
        reasons.push("ticket_price is negative".to_string());
    }
    (!reasons.is_empty()).then(|| {
        format!(
            "{} (ops.raw_movie_bookings version {})",
            reasons.join("; "),
            row.commit_version
        )
    })
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef, JobError> {
    batch
        .column_by_name(name)
        .ok_or_else(|| JobError::Cdc(format!("Bronze changes have no {name} column")))
}

fn strings(batch: &RecordBatch, name: &str) -> Result<StringArray, JobError> {
    let cast = deltalake::arrow::compute::cast(
        column(batch, name)?,
        &deltalake::arrow::datatypes::DataType::Utf8,
    )
    .map_err(|e| JobError::Cdc(format!("{name}: {e}")))?;
    Ok(cast.as_string::<i32>().clone())
}

fn opt_string(a: &StringArray, i: usize) -> Option<String> {
    a.is_valid(i).then(|| a.value(i).to_string())
}

/// Decodes Bronze change rows (the `movie_booking_cdc_events` schema), keeping their order.
pub fn decode(batches: &[RecordBatch]) -> Result<Vec<ChangeRow>, JobError> {
    let mut out = Vec::new();
    for batch in batches {
        let (ids, customers, movies, statuses, kinds) = (
            strings(batch, "booking_id")?,
            strings(batch, "customer_id")?,
            strings(batch, "movie_id")?,
            strings(batch, "status")?,
            strings(batch, "change_type")?,
        );
        let dates = column(batch, "booking_date")?.as_primitive::<TimestampMicrosecondType>();
        let counts = column(batch, "ticket_count")?.as_primitive::<Int32Type>();
        let prices = column(batch, "ticket_price")?.as_primitive::<Decimal128Type>();
        let updates: &BooleanArray = column(batch, "is_update")?.as_boolean();
        let times = column(batch, "change_timestamp")?.as_primitive::<TimestampMicrosecondType>();
        let versions: &Int64Array = column(batch, "commit_version")?.as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            out.push(ChangeRow {
                booking: Booking {
                    booking_id: opt_string(&ids, i).unwrap_or_default(),
                    customer_id: opt_string(&customers, i),
                    movie_id: opt_string(&movies, i),
                    booking_date: dates.is_valid(i).then(|| dates.value(i)),
                    status: opt_string(&statuses, i),
                    ticket_count: counts.is_valid(i).then(|| counts.value(i)),
                    ticket_price: prices.is_valid(i).then(|| prices.value(i)),
                },
                insert: kinds.value(i) == "INSERT",
                is_update: updates.value(i),
                change_timestamp: times.value(i),
                commit_version: versions.value(i),
            });
        }
    }
    Ok(out)
}

/// The seven booking columns for `bookings`, in table order.
pub fn booking_arrays<'a>(bookings: impl Iterator<Item = &'a Booking>) -> Vec<ArrayRef> {
    let (mut id, mut customer, mut movie, mut status) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let mut date = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut count = Int32Builder::new();
    let mut price = Decimal128Builder::new().with_data_type(ticket_price());
    for b in bookings {
        id.append_value(&b.booking_id);
        customer.append_option(b.customer_id.as_deref());
        movie.append_option(b.movie_id.as_deref());
        date.append_option(b.booking_date);
        status.append_option(b.status.as_deref());
        count.append_option(b.ticket_count);
        price.append_option(b.ticket_price);
    }
    vec![
        std::sync::Arc::new(id.finish()),
        std::sync::Arc::new(customer.finish()),
        std::sync::Arc::new(movie.finish()),
        std::sync::Arc::new(date.finish()),
        std::sync::Arc::new(status.finish()),
        std::sync::Arc::new(count.finish()),
        std::sync::Arc::new(price.finish()),
    ]
}

/// A booking's row as JSON, for a quarantine body.
pub fn to_json(row: &ChangeRow) -> String {
    let b = &row.booking;
    serde_json::json!({
        "booking_id": b.booking_id,
        "customer_id": b.customer_id,
        "movie_id": b.movie_id,
        "booking_date": b.booking_date,
        "status": b.status,
        "ticket_count": b.ticket_count,
        "ticket_price": b.ticket_price.map(|p| format!("{}.{:02}", p / 100, (p % 100).abs())),
        "change_type": if row.insert { "INSERT" } else { "DELETE" },
        "is_update": row.is_update,
        "commit_version": row.commit_version,
    })
    .to_string()
}
