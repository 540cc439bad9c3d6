//! A value in a panel's row, written the same way to JSON and to CSV.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::{Serialize, Serializer};

use crate::snapshot::columns::Cents;

/// One value.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Int(i64),
    /// Two decimals, exact.
    Money(Cents),
    /// A fraction, a rate or a duration in seconds; none when undefined.
    Number(Option<f64>),
    Text(Option<String>),
    Date(Option<NaiveDate>),
    Time(Option<DateTime<Utc>>),
}

impl Cell {
    /// The CSV form (empty for null).
    pub fn text(&self) -> String {
        match self {
            Cell::Int(n) => n.to_string(),
            Cell::Money(c) => money_text(*c),
            Cell::Number(v) => v.map(|v| v.to_string()).unwrap_or_default(),
            Cell::Text(t) => t.clone().unwrap_or_default(),
            Cell::Date(d) => d.map(|d| d.to_string()).unwrap_or_default(),
            Cell::Time(t) => t.map(rfc3339).unwrap_or_default(),
        }
    }
}

/// `12345.6` cents as "123.46"-style text: sign, whole part, two decimals.
pub fn money_text(cents: Cents) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Serialize for Cell {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Cell::Int(n) => s.serialize_i64(*n),
            // Shortest decimal form of the cents, as a JSON number: 1234.5 for 1234.50.
            Cell::Money(c) => match money_text(*c).parse::<f64>() {
                Ok(v) => s.serialize_f64(v),
                Err(_) => s.serialize_str(&money_text(*c)),
            },
            Cell::Number(v) => match v.filter(|v| v.is_finite()) {
                Some(v) => s.serialize_f64(v),
                None => s.serialize_none(),
            },
            Cell::Text(_) | Cell::Date(_) | Cell::Time(_) => match self.text() {
                t if t.is_empty() && !matches!(self, Cell::Text(Some(_))) => s.serialize_none(),
                t => s.serialize_str(&t),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_exact_in_both_forms() {
        assert_eq!(money_text(1_234_505), "12345.05");
        assert_eq!(money_text(-7), "-0.07");
        assert_eq!(
            serde_json::to_string(&Cell::Money(1_234_505)).unwrap(),
            "12345.05"
        );
        assert_eq!(serde_json::to_string(&Cell::Number(None)).unwrap(), "null");
        assert_eq!(serde_json::to_string(&Cell::Date(None)).unwrap(), "null");
        assert_eq!(
            serde_json::to_string(&Cell::Text(Some(String::new()))).unwrap(),
            "\"\""
        );
    }
}
