//! Arrow rows for the tables the join writes: one fact row per seat per match, one unpaid row per
//! booking, one orphan row per payment, one late row per event.

use std::sync::Arc;

use boxoffice_events::model::{Booking, EventDetails};
use boxoffice_lake::{PartitionRows, TableDef, epoch_days, partitioned_by_date};
use chrono::{DateTime, Utc};
use deltalake::arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int32Builder, Int64Array,
    Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use deltalake::arrow::error::ArrowError;

use super::join::{BookingIn, JoinEvent, Late, Match, PaymentIn};
use crate::silver::derive::{day_of_week, event_category, hour, payment_type};
use crate::silver::tables::{BOOKINGS_FACT, LATE_EVENTS, ORPHAN_PAYMENTS, UNPAID_BOOKINGS};

/// Silver rows from the event stream (batch-loaded sales say `batch`).
pub const SOURCE_STREAM: &str = "stream";

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn utc_for(rows: usize) -> TimestampMicrosecondBuilder {
    TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC")
}

fn utc() -> TimestampMicrosecondBuilder {
    TimestampMicrosecondBuilder::new().with_timezone("UTC")
}

fn batch(def: &TableDef, columns: Vec<ArrayRef>) -> Result<RecordBatch, ArrowError> {
    RecordBatch::try_new(def.arrow_schema(), columns)
}

/// `silver/bookings_fact` rows for `matches`, partitioned by booking date. Built on every core,
/// a share of the matches each (a date may then come in several pieces; they land in the same
/// partition).
pub fn fact_rows(
    matches: &[Match],
    processed_at: DateTime<Utc>,
) -> Result<Vec<PartitionRows>, ArrowError> {
    on_every_core(matches, |share| {
        partitioned_by_date(
            "booking_date",
            share.iter(),
            |m| epoch_days(m.booking.booking.booking_time),
            |ms| fact_batch(ms, processed_at),
        )
    })
}

/// Builds rows for `items` a share per core (one share when they are few), in their order: the
/// rows of a batch are independent, and building them is mostly waiting for each item's memory.
fn on_every_core<T: Sync>(
    items: &[T],
    build: impl Fn(&[T]) -> Result<Vec<PartitionRows>, ArrowError> + Sync,
) -> Result<Vec<PartitionRows>, ArrowError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let size = items.len().div_ceil(threads).max(20_000);
    if items.len() <= size {
        return build(items);
    }
    let shares: Vec<&[T]> = items.chunks(size).collect();
    let mut rows = Vec::new();
    for built in crate::shares::on_threads(&shares, |share| build(share)) {
        rows.extend(built?);
    }
    Ok(rows)
}

fn booking(m: &Match) -> &Booking {
    &m.booking.booking
}

fn details(m: &Match) -> &EventDetails {
    &m.booking.booking.event_details
}

/// The fact rows' count and the bytes of each text column of variable width, summed in one pass
/// over the matches (a pass per column chased every match's pointers a dozen times).
#[derive(Default)]
struct TextSizes {
    rows: usize,
    order_id: usize,
    customer_id: usize,
    customer_name: usize,
    customer_email: usize,
    event_id: usize,
    event_name: usize,
    event_location: usize,
    seat_number: usize,
    payment_id: usize,
    channel: usize,
    city: usize,
    booking_uid: usize,
    payment_uid: usize,
}

impl TextSizes {
    fn of(matches: &[&Match]) -> Self {
        let mut t = TextSizes::default();
        for m in matches {
            let (b, d) = (booking(m), details(m));
            let seats = d.seats.len();
            t.rows += seats;
            t.order_id += b.order_id.len() * seats;
            t.customer_id += b.customer.customer_id.len() * seats;
            t.customer_name += b.customer.name.len() * seats;
            t.customer_email += b.customer.email.len() * seats;
            t.event_id += d.event_id.len() * seats;
            t.event_name += d.event_name.len() * seats;
            t.event_location += d.event_location.len() * seats;
            t.seat_number += d.seats.iter().map(|s| s.seat_number.len()).sum::<usize>();
            t.payment_id += m.payment.payment.payment_id.len() * seats;
            t.channel += b.channel.as_ref().map_or(0, |t| t.len()) * seats;
            t.city += d.city.as_ref().map_or(0, |t| t.len()) * seats;
            t.booking_uid += m.booking.uid.text_len() * seats;
            t.payment_uid += m.payment.uid.text_len() * seats;
        }
        t
    }
}

fn fact_batch(matches: &[&Match], processed_at: DateTime<Utc>) -> Result<RecordBatch, ArrowError> {
    let sizes = TextSizes::of(matches);
    let n = sizes.rows;
    // Each text column sized exactly up front: growing builders of hundreds of megabytes copies
    // them, into memory the kernel must first zero.
    let text = |bytes: usize| StringBuilder::with_capacity(n, bytes);
    let fixed = |bytes: usize| StringBuilder::with_capacity(n, n * bytes);
    let (mut order_id, mut customer_id, mut customer_name, mut customer_email) = (
        text(sizes.order_id),
        text(sizes.customer_id),
        text(sizes.customer_name),
        text(sizes.customer_email),
    );
    let (mut event_id, mut event_name, mut event_location) = (
        text(sizes.event_id),
        text(sizes.event_name),
        text(sizes.event_location),
    );
    let mut seat_number = text(sizes.seat_number);
    let (mut category, mut day, mut method, mut ptype, mut status, mut currency, mut source) = (
        fixed(7),
        fixed(9),
        fixed(11),
        fixed(6),
        fixed(7),
        fixed(3),
        fixed(SOURCE_STREAM.len()),
    );
    let mut payment_id = text(sizes.payment_id);
    let mut channel = text(sizes.channel);
    let mut city = text(sizes.city);
    let (mut b_uid, mut p_uid) = (text(sizes.booking_uid), text(sizes.payment_uid));
    let (mut booking_time, mut payment_time, mut b_arrival, mut p_arrival, mut processed) =
        (utc_for(n), utc_for(n), utc_for(n), utc_for(n), utc_for(n));
    let (mut seat_price, mut amount) = (
        Float64Builder::with_capacity(n),
        Float64Builder::with_capacity(n),
    );
    let (mut booking_hour, mut version) = (
        Int32Builder::with_capacity(n),
        Int32Builder::with_capacity(n),
    );
    let mut booking_date = Date32Builder::with_capacity(n);
    let flag = || BooleanBuilder::with_capacity(n);
    let (mut first_booking, mut first_payment, mut sale) = (flag(), flag(), flag());
    for m in matches {
        let (b, p) = (&m.booking.booking, &m.payment.payment);
        let d = &b.event_details;
        // What every seat of the match shares, worked out once.
        let (match_category, match_day, match_hour) = (
            event_category(&d.event_name),
            day_of_week(b.booking_time),
            hour(b.booking_time),
        );
        let (match_currency, date) = (
            p.currency.as_deref().or(b.currency.as_deref()),
            epoch_days(b.booking_time),
        );
        let (booking_uid, payment_uid) = (m.booking.uid.text(), m.payment.uid.text());
        for seat in &d.seats {
            order_id.append_value(&b.order_id);
            booking_time.append_value(micros(b.booking_time));
            customer_id.append_value(&b.customer.customer_id);
            customer_name.append_value(&b.customer.name);
            customer_email.append_value(&b.customer.email);
            event_id.append_value(&d.event_id);
            event_name.append_value(&d.event_name);
            event_location.append_value(&d.event_location);
            seat_number.append_value(&seat.seat_number);
            seat_price.append_value(seat.price);
            category.append_value(match_category);
            day.append_value(match_day);
            booking_hour.append_value(match_hour);
            payment_id.append_value(&p.payment_id);
            payment_time.append_value(micros(p.payment_time));
            amount.append_value(p.amount);
            method.append_value(p.payment_method.as_str());
            ptype.append_value(payment_type(p.payment_method));
            b_arrival.append_value(m.booking.arrival.at);
            p_arrival.append_value(m.payment.arrival.at);
            status.append_value(p.payment_status.as_str());
            currency.append_option(match_currency);
            channel.append_option(b.channel.as_deref());
            city.append_option(d.city.as_deref());
            version.append_value(b.schema_version.number());
            source.append_value(SOURCE_STREAM);
            b_uid.append_value(&*booking_uid);
            p_uid.append_value(&*payment_uid);
            first_booking.append_value(m.first_for_booking);
            first_payment.append_value(m.first_for_payment);
            sale.append_value(m.sale);
            processed.append_value(micros(processed_at));
            booking_date.append_value(date);
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(order_id.finish()),
        Arc::new(booking_time.finish()),
        Arc::new(customer_id.finish()),
        Arc::new(customer_name.finish()),
        Arc::new(customer_email.finish()),
        Arc::new(event_id.finish()),
        Arc::new(event_name.finish()),
        Arc::new(event_location.finish()),
        Arc::new(seat_number.finish()),
        Arc::new(seat_price.finish()),
        Arc::new(category.finish()),
        Arc::new(day.finish()),
        Arc::new(booking_hour.finish()),
        Arc::new(payment_id.finish()),
        Arc::new(payment_time.finish()),
        Arc::new(amount.finish()),
        Arc::new(method.finish()),
        Arc::new(ptype.finish()),
        Arc::new(b_arrival.finish()),
        Arc::new(p_arrival.finish()),
        Arc::new(status.finish()),
        Arc::new(currency.finish()),
        Arc::new(channel.finish()),
        Arc::new(city.finish()),
        Arc::new(version.finish()),
        Arc::new(source.finish()),
        Arc::new(b_uid.finish()),
        Arc::new(p_uid.finish()),
        Arc::new(first_booking.finish()),
        Arc::new(first_payment.finish()),
        Arc::new(sale.finish()),
        Arc::new(processed.finish()),
        Arc::new(booking_date.finish()),
    ];
    batch(&BOOKINGS_FACT, columns)
}

/// `silver/unpaid_bookings` rows, partitioned by booking date.
pub fn unpaid_rows(
    bookings: &[Arc<BookingIn>],
    processed_at: DateTime<Utc>,
) -> Result<Vec<PartitionRows>, ArrowError> {
    on_every_core(bookings, |share| {
        partitioned_by_date(
            "booking_date",
            share.iter(),
            |b| epoch_days(b.booking.booking_time),
            |bs| unpaid_batch(bs, processed_at),
        )
    })
}

fn unpaid_batch(
    bookings: &[&Arc<BookingIn>],
    processed_at: DateTime<Utc>,
) -> Result<RecordBatch, ArrowError> {
    let n = bookings.len();
    // Sized for the rows up front (about 16 bytes a text; builders regrow past that).
    let mut s: Vec<StringBuilder> = (0..13)
        .map(|_| StringBuilder::with_capacity(n, n * 16))
        .collect();
    let (mut booking_time, mut arrival, mut processed) = (utc_for(n), utc_for(n), utc_for(n));
    let (mut seats, mut hour_col, mut version) = (
        Int32Builder::with_capacity(n),
        Int32Builder::with_capacity(n),
        Int32Builder::with_capacity(n),
    );
    let mut total = Float64Builder::with_capacity(n);
    let mut date = Date32Builder::with_capacity(n);
    let mut numbers = String::new();
    for item in bookings {
        let b = &item.booking;
        let d = &b.event_details;
        numbers.clear();
        for (i, seat) in d.seats.iter().enumerate() {
            if i > 0 {
                numbers.push(',');
            }
            numbers.push_str(&seat.seat_number);
        }
        s[0].append_value(&b.order_id);
        booking_time.append_value(micros(b.booking_time));
        s[1].append_value(&b.customer.customer_id);
        s[2].append_value(&b.customer.name);
        s[3].append_value(&b.customer.email);
        s[4].append_value(&d.event_id);
        s[5].append_value(&d.event_name);
        s[6].append_value(event_category(&d.event_name));
        seats.append_value(d.seats.len() as i32);
        s[7].append_value(&numbers);
        total.append_value(d.seats.iter().map(|s| s.price).sum());
        s[8].append_value(day_of_week(b.booking_time));
        hour_col.append_value(hour(b.booking_time));
        arrival.append_value(item.arrival.at);
        s[9].append_option(b.channel.as_deref());
        s[10].append_option(d.city.as_deref());
        s[11].append_option(b.currency.as_deref());
        version.append_value(b.schema_version.number());
        s[12].append_value(&*item.uid.text());
        processed.append_value(micros(processed_at));
        date.append_value(epoch_days(b.booking_time));
    }
    let mut s = s.into_iter().map(|mut b| Arc::new(b.finish()) as ArrayRef);
    let mut next = || {
        s.next()
            .unwrap_or_else(|| unreachable!("13 string columns"))
    };
    let columns: Vec<ArrayRef> = vec![
        next(),
        Arc::new(booking_time.finish()),
        next(),
        next(),
        next(),
        next(),
        next(),
        next(),
        Arc::new(seats.finish()),
        next(),
        Arc::new(total.finish()),
        next(),
        Arc::new(hour_col.finish()),
        Arc::new(arrival.finish()),
        next(),
        next(),
        next(),
        Arc::new(version.finish()),
        next(),
        Arc::new(processed.finish()),
        Arc::new(date.finish()),
    ];
    batch(&UNPAID_BOOKINGS, columns)
}

/// `silver/orphan_payments` rows, partitioned by payment date.
pub fn orphan_rows(
    payments: &[Arc<PaymentIn>],
    processed_at: DateTime<Utc>,
) -> Result<Vec<PartitionRows>, ArrowError> {
    partitioned_by_date(
        "payment_date",
        payments.iter(),
        |p| epoch_days(p.payment.payment_time),
        |ps| orphan_batch(ps, processed_at),
    )
}

fn orphan_batch(
    payments: &[&Arc<PaymentIn>],
    processed_at: DateTime<Utc>,
) -> Result<RecordBatch, ArrowError> {
    let (mut payment_id, mut order_id, mut method, mut ptype, mut status, mut currency, mut uid) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let (mut payment_time, mut arrival, mut processed) = (utc(), utc(), utc());
    let (mut amount, mut fee) = (Float64Builder::new(), Float64Builder::new());
    let mut version = Int32Builder::new();
    let mut date = Date32Builder::new();
    for item in payments {
        let p = &item.payment;
        payment_id.append_value(&p.payment_id);
        order_id.append_value(&p.order_id);
        payment_time.append_value(micros(p.payment_time));
        amount.append_value(p.amount);
        method.append_value(p.payment_method.as_str());
        ptype.append_value(payment_type(p.payment_method));
        status.append_value(p.payment_status.as_str());
        currency.append_option(p.currency.as_deref());
        fee.append_option(p.fee);
        arrival.append_value(item.arrival.at);
        version.append_value(p.schema_version.number());
        uid.append_value(&*item.uid.text());
        processed.append_value(micros(processed_at));
        date.append_value(epoch_days(p.payment_time));
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(payment_id.finish()),
        Arc::new(order_id.finish()),
        Arc::new(payment_time.finish()),
        Arc::new(amount.finish()),
        Arc::new(method.finish()),
        Arc::new(ptype.finish()),
        Arc::new(status.finish()),
        Arc::new(currency.finish()),
        Arc::new(fee.finish()),
        Arc::new(arrival.finish()),
        Arc::new(version.finish()),
        Arc::new(uid.finish()),
        Arc::new(processed.finish()),
        Arc::new(date.finish()),
    ];
    batch(&ORPHAN_PAYMENTS, columns)
}

/// `silver/late_events` rows (one unpartitioned batch).
pub fn late_rows(late: &[Late], processed_at: DateTime<Utc>) -> Result<RecordBatch, ArrowError> {
    let (mut hub, mut uid, mut order, mut body) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let (mut event_time, mut arrival, mut watermark, mut processed) = (utc(), utc(), utc(), utc());
    let mut behind = Float64Builder::new();
    let mut partition = Int32Builder::new();
    let mut sequence = Int64Builder::new();
    for l in late {
        let (hub_name, order_id) = match &l.event {
            JoinEvent::Booking(b) => ("bookings", &b.booking.order_id),
            JoinEvent::Payment(p) => ("payments", &p.payment.order_id),
        };
        let key = l.event.arrival();
        hub.append_value(hub_name);
        uid.append_value(&*l.event.uid().text());
        order.append_value(order_id);
        event_time.append_value(l.event.event_time());
        arrival.append_value(key.at);
        watermark.append_value(l.watermark);
        behind.append_value((l.watermark - l.event.event_time()) as f64 / 1e6);
        partition.append_value(key.partition);
        sequence.append_value(key.sequence);
        body.append_value(l.event.body());
        processed.append_value(micros(processed_at));
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(hub.finish()),
        Arc::new(uid.finish()),
        Arc::new(order.finish()),
        Arc::new(event_time.finish()),
        Arc::new(arrival.finish()),
        Arc::new(watermark.finish()),
        Arc::new(behind.finish()),
        Arc::new(partition.finish()),
        Arc::new(sequence.finish()),
        Arc::new(body.finish()),
        Arc::new(processed.finish()),
        Arc::new(Int64Array::new_null(late.len())),
    ];
    batch(&LATE_EVENTS, columns)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use boxoffice_events::Event;
    use deltalake::arrow::compute::concat_batches;

    use super::*;
    use crate::silver::bookings_fact::join::tests::{T0, booking};
    use crate::silver::bookings_fact::join::{ArrivalKey, MINUTE};

    const DAY: i64 = 24 * 60 * MINUTE;

    /// Booking `i`, on one of three dates, numbered so every row can be told apart.
    fn unpaid(i: usize) -> Arc<BookingIn> {
        let n = i as i64;
        let key = ArrivalKey {
            at: T0 + n,
            hub: 0,
            partition: 0,
            sequence: n,
        };
        let time = T0 + (n % 3) * DAY + n;
        let event = Event::Booking(booking(&format!("order{i}"), time));
        match JoinEvent::new(&format!("uid{i}"), key, event, None) {
            JoinEvent::Booking(b) => b,
            JoinEvent::Payment(_) => unreachable!("a booking was given"),
        }
    }

    /// Each date's rows, in the order they were built.
    fn by_date(parts: Vec<PartitionRows>) -> BTreeMap<String, RecordBatch> {
        let mut dates: BTreeMap<String, Vec<RecordBatch>> = BTreeMap::new();
        for part in parts {
            dates
                .entry(format!("{:?}", part.values))
                .or_default()
                .push(part.batch);
        }
        dates
            .into_iter()
            .map(|(date, batches)| {
                let schema = batches[0].schema();
                let rows = concat_batches(&schema, &batches).expect("same schema");
                (date, rows)
            })
            .collect()
    }

    #[test]
    fn unpaid_rows_built_a_share_per_core_are_the_rows_built_in_one() {
        // More than two shares' worth, so every core builds some.
        let bookings: Vec<_> = (0..50_001).map(unpaid).collect();
        let at = Utc::now();
        let shared = by_date(unpaid_rows(&bookings, at).expect("rows"));
        let whole = by_date(
            partitioned_by_date(
                "booking_date",
                bookings.iter(),
                |b| epoch_days(b.booking.booking_time),
                |bs| unpaid_batch(bs, at),
            )
            .expect("rows"),
        );
        assert_eq!(shared.len(), 3);
        assert_eq!(shared, whole);
        let rows: usize = shared.values().map(RecordBatch::num_rows).sum();
        assert_eq!(rows, bookings.len());
        let first = shared.values().next().expect("a date");
        let seats = first
            .column_by_name("seat_numbers")
            .and_then(|c| {
                c.as_any()
                    .downcast_ref::<deltalake::arrow::array::StringArray>()
            })
            .expect("seat_numbers is text");
        assert_eq!(seats.value(0), "A1,A2");
    }
}
