//! The demos' derived columns, computed once here for every Silver table.
//!
//! As the Stream Analytics query defines them, but on correct data: category by the first
//! substring match of the event name, payment type by method, and day and hour of the booking in
//! UTC (the demos' producer stamped local time with a "Z", so theirs are 5 h 30 min off).

use chrono::{DateTime, Datelike, Timelike, Utc, Weekday};

use boxoffice_events::model::PaymentMethod;

/// Category by the first match, in this order, of a substring of the event name (ignoring case):
/// Concert -> Music, Play -> Theater, Movie -> Cinema; anything else is Other. So "Concert Play"
/// is Music, as `CASE WHEN LIKE '%Concert%' ... ` makes it.
pub fn event_category(event_name: &str) -> &'static str {
    // Compared in place, byte by byte: this runs for every fact row.
    let name = event_name.as_bytes();
    let contains = |needle: &str| {
        name.windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
    };
    [
        ("concert", "Music"),
        ("play", "Theater"),
        ("movie", "Cinema"),
    ]
    .into_iter()
    .find(|(needle, _)| contains(needle))
    .map_or("Other", |(_, category)| category)
}

/// Credit Card and Debit Card are Card, PayPal is Online, anything else (UPI) is Cash, as the
/// demos' `CASE` falls through.
pub fn payment_type(method: PaymentMethod) -> &'static str {
    match method {
        PaymentMethod::CreditCard | PaymentMethod::DebitCard => "Card",
        PaymentMethod::PayPal => "Online",
        PaymentMethod::Upi => "Cash",
    }
}

/// The English day name of a UTC time (`DATENAME(weekday, ...)`).
pub fn day_of_week(t: DateTime<Utc>) -> &'static str {
    match t.weekday() {
        Weekday::Mon => "Monday",
        Weekday::Tue => "Tuesday",
        Weekday::Wed => "Wednesday",
        Weekday::Thu => "Thursday",
        Weekday::Fri => "Friday",
        Weekday::Sat => "Saturday",
        Weekday::Sun => "Sunday",
    }
}

/// The hour, 0-23, of a UTC time (`DATEPART(hour, ...)`).
pub fn hour(t: DateTime<Utc>) -> i32 {
    t.hour() as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("rfc3339")
            .with_timezone(&Utc)
    }

    #[test]
    fn worked_examples_from_the_demos() {
        let t = utc("2024-10-11T09:39:30Z");
        assert_eq!((day_of_week(t), hour(t)), ("Friday", 9));
        let t = utc("2025-02-04T19:19:48Z");
        assert_eq!((day_of_week(t), hour(t)), ("Tuesday", 19));
    }

    #[test]
    fn day_and_hour_are_in_utc_whatever_offset_the_producer_sent() {
        // 00:50 on Wednesday in India is 19:20 on Tuesday in UTC.
        let t = utc("2025-02-05T00:50:10+05:30");
        assert_eq!((day_of_week(t), hour(t)), ("Tuesday", 19));
    }

    #[test]
    fn category_is_the_first_substring_match() {
        assert_eq!(event_category("Concert"), "Music");
        assert_eq!(event_category("Play"), "Theater");
        assert_eq!(event_category("Movie"), "Cinema");
        assert_eq!(event_category("Concert Play"), "Music");
        assert_eq!(event_category("The Hamlet Play"), "Theater");
        assert_eq!(event_category("Gibson: The Movie"), "Cinema");
        assert_eq!(event_category("Sharma Comedy Show"), "Other");
        assert_eq!(event_category("live concert"), "Music");
    }

    #[test]
    fn payment_types() {
        assert_eq!(payment_type(PaymentMethod::CreditCard), "Card");
        assert_eq!(payment_type(PaymentMethod::DebitCard), "Card");
        assert_eq!(payment_type(PaymentMethod::PayPal), "Online");
        assert_eq!(payment_type(PaymentMethod::Upi), "Cash");
    }
}
