//! The rows the panels aggregate, decoded once per table version.

use chrono::{DateTime, NaiveDate, Utc};
use deltalake::arrow::array::RecordBatch;

use super::columns::{Cents, Columns};
use crate::DashboardError;

/// A row of `gold/booking_funnel`.
#[derive(Debug, Clone, PartialEq)]
pub struct FunnelRow {
    pub date: Option<NaiveDate>,
    pub hour: Option<i64>,
    pub category: Option<String>,
    pub bookings: i64,
    pub paid: i64,
    pub seats_sold: i64,
    pub revenue: Cents,
    pub payment_attempts: i64,
    pub failed_payments: i64,
    pub refreshed_at: Option<DateTime<Utc>>,
}

/// A row of `gold/event_performance`.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub event_id: Option<String>,
    pub event_name: Option<String>,
    pub category: Option<String>,
    pub orders: i64,
    pub seats_sold: i64,
    pub revenue: Cents,
}

/// A row of `gold/event_occupancy`.
#[derive(Debug, Clone, PartialEq)]
pub struct OccupancyRow {
    pub event_id: Option<String>,
    pub capacity: Option<i64>,
    pub occupancy: Option<f64>,
}

/// A row of `gold/payment_mix`.
#[derive(Debug, Clone, PartialEq)]
pub struct PaymentRow {
    pub method: Option<String>,
    pub kind: Option<String>,
    pub attempts: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub success_rate: Option<f64>,
    pub amount: Cents,
}

/// A booking's latest state in `silver/movie_bookings_filtered`.
#[derive(Debug, Clone, PartialEq)]
pub struct MovieBooking {
    pub movie_id: Option<String>,
    /// The UTC date of its booking_date.
    pub date: Option<NaiveDate>,
    pub status: Option<String>,
    pub tickets: i64,
    /// ticket_count x ticket_price.
    pub value: Cents,
}

/// Decodes every batch with `row`, which reads one batch's columns into rows.
fn decode<T>(
    table: &'static str,
    batches: &[RecordBatch],
    row: impl Fn(&Columns) -> Result<Vec<T>, DashboardError>,
) -> Result<Vec<T>, DashboardError> {
    let mut rows = Vec::new();
    for batch in batches {
        rows.extend(row(&Columns::new(table, batch))?);
    }
    Ok(rows)
}

pub fn funnel(batches: &[RecordBatch]) -> Result<Vec<FunnelRow>, DashboardError> {
    decode("gold.booking_funnel", batches, |c| {
        let (date, hour, category) = (
            c.date("booking_date")?,
            c.int_or_null("booking_hour")?,
            c.text("event_category")?,
        );
        let (bookings, paid, seats) = (c.int("bookings")?, c.int("paid")?, c.int("seats_sold")?);
        let (revenue, attempts, failed) = (
            c.cents("revenue")?,
            c.int("payment_attempts")?,
            c.int("failed_payments")?,
        );
        let refreshed = c.time("refreshed_at")?;
        Ok((0..date.len())
            .map(|i| FunnelRow {
                date: date[i],
                hour: hour[i],
                category: category[i].clone(),
                bookings: bookings[i],
                paid: paid[i],
                seats_sold: seats[i],
                revenue: revenue[i],
                payment_attempts: attempts[i],
                failed_payments: failed[i],
                refreshed_at: refreshed[i],
            })
            .collect())
    })
}

pub fn events(batches: &[RecordBatch]) -> Result<Vec<EventRow>, DashboardError> {
    decode("gold.event_performance", batches, |c| {
        let (id, name, category) = (
            c.text("event_id")?,
            c.text("event_name")?,
            c.text("event_category")?,
        );
        let (orders, seats, revenue) =
            (c.int("orders")?, c.int("seats_sold")?, c.cents("revenue")?);
        Ok((0..id.len())
            .map(|i| EventRow {
                event_id: id[i].clone(),
                event_name: name[i].clone(),
                category: category[i].clone(),
                orders: orders[i],
                seats_sold: seats[i],
                revenue: revenue[i],
            })
            .collect())
    })
}

pub fn occupancy(batches: &[RecordBatch]) -> Result<Vec<OccupancyRow>, DashboardError> {
    decode("gold.event_occupancy", batches, |c| {
        let (id, capacity, occupancy) = (
            c.text("event_id")?,
            c.int_or_null("capacity")?,
            c.float("occupancy")?,
        );
        Ok((0..id.len())
            .map(|i| OccupancyRow {
                event_id: id[i].clone(),
                capacity: capacity[i],
                occupancy: occupancy[i],
            })
            .collect())
    })
}

pub fn payments(batches: &[RecordBatch]) -> Result<Vec<PaymentRow>, DashboardError> {
    decode("gold.payment_mix", batches, |c| {
        let (method, kind) = (c.text("payment_method")?, c.text("payment_type")?);
        let (attempts, succeeded, failed) =
            (c.int("attempts")?, c.int("succeeded")?, c.int("failed")?);
        let (rate, amount) = (c.float("success_rate")?, c.cents("amount")?);
        Ok((0..method.len())
            .map(|i| PaymentRow {
                method: method[i].clone(),
                kind: kind[i].clone(),
                attempts: attempts[i],
                succeeded: succeeded[i],
                failed: failed[i],
                success_rate: rate[i],
                amount: amount[i],
            })
            .collect())
    })
}

pub fn movies(batches: &[RecordBatch]) -> Result<Vec<MovieBooking>, DashboardError> {
    decode("silver.movie_bookings_filtered", batches, |c| {
        let (movie, date, status) = (
            c.text("movie_id")?,
            c.time("booking_date")?,
            c.text("status")?,
        );
        let (count, price) = (c.int_or_null("ticket_count")?, c.cents("ticket_price")?);
        Ok((0..movie.len())
            .map(|i| {
                let tickets = count[i].unwrap_or(0);
                MovieBooking {
                    movie_id: movie[i].clone(),
                    date: date[i].map(|t| t.date_naive()),
                    status: status[i].clone(),
                    tickets,
                    value: i128::from(tickets) * price[i],
                }
            })
            .collect())
    })
}
