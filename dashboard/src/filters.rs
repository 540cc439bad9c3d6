//! The query parameters every endpoint takes, checked: a bad value is a 400 that says what is
//! wrong and what is allowed, never a 500 or a silently empty answer.

use chrono::NaiveDate;

/// The movie booking statuses the CDC flow knows.
pub const STATUSES: [&str; 3] = ["BOOKED", "CANCELLED", "COMPLETED"];

/// The categories Silver derives from event names; landing files may add others.
pub const CATEGORIES: [&str; 4] = ["Cinema", "Music", "Other", "Theater"];

/// Rows of `top_events` unless `limit` says otherwise.
pub const DEFAULT_LIMIT: usize = 10;

/// The most rows `limit` may ask for.
pub const MAX_LIMIT: usize = 100;

const PARAMETERS: [&str; 6] = ["from", "to", "category", "status", "limit", "format"];

/// How an answer is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Json,
    Csv,
}

/// A request's filters.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filters {
    /// First booking date included.
    pub from: Option<NaiveDate>,
    /// Last booking date included.
    pub to: Option<NaiveDate>,
    pub category: Option<String>,
    pub status: Option<String>,
    pub limit: Option<usize>,
    pub format: Format,
}

/// Why a request's parameters were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadFilter(pub String);

impl Filters {
    /// Reads a raw query string. `categories` are the ones the data holds (beside the four
    /// Silver derives).
    pub fn parse(query: &str, categories: &[String]) -> Result<Filters, BadFilter> {
        let mut filters = Filters::default();
        let mut seen = Vec::new();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            if !PARAMETERS.contains(&key.as_ref()) {
                return Err(BadFilter(format!(
                    "unknown parameter '{key}' (known: {})",
                    PARAMETERS.join(", ")
                )));
            }
            if seen.contains(&key) {
                return Err(BadFilter(format!("'{key}' is given more than once")));
            }
            seen.push(key.clone());
            let value = value.trim();
            if value.is_empty() {
                continue; // an empty filter is no filter (what an "All" option sends)
            }
            match key.as_ref() {
                "from" => filters.from = Some(date("from", value)?),
                "to" => filters.to = Some(date("to", value)?),
                "category" => filters.category = Some(category(value, categories)?),
                "status" => filters.status = Some(status(value)?),
                "limit" => filters.limit = Some(limit(value)?),
                _ => filters.format = format(value)?,
            }
        }
        if let (Some(from), Some(to)) = (filters.from, filters.to)
            && to < from
        {
            return Err(BadFilter(format!(
                "'to' ({to}) is before 'from' ({from}): the range would hold no day"
            )));
        }
        Ok(filters)
    }

    /// Whether a booking date is inside the range (an unknown date only when no range is set).
    pub fn date_ok(&self, date: Option<NaiveDate>) -> bool {
        match date {
            Some(d) => self.from.is_none_or(|f| d >= f) && self.to.is_none_or(|t| d <= t),
            None => self.from.is_none() && self.to.is_none(),
        }
    }

    /// Whether an event category passes.
    pub fn category_ok(&self, category: Option<&str>) -> bool {
        self.category.as_deref().is_none_or(|c| category == Some(c))
    }

    /// Whether a movie booking status passes.
    pub fn status_ok(&self, status: Option<&str>) -> bool {
        self.status.as_deref().is_none_or(|s| status == Some(s))
    }
}

fn date(key: &str, value: &str) -> Result<NaiveDate, BadFilter> {
    NaiveDate::parse_from_str(value, "%Y-%m-%d").map_err(|_| {
        BadFilter(format!(
            "'{key}': '{value}' is not a date (use YYYY-MM-DD, e.g. 2026-11-23)"
        ))
    })
}

fn category(value: &str, known: &[String]) -> Result<String, BadFilter> {
    let mut all: Vec<&str> = CATEGORIES.to_vec();
    all.extend(known.iter().map(String::as_str));
    all.sort_unstable();
    all.dedup();
    all.iter()
        .find(|c| c.eq_ignore_ascii_case(value))
        .map(|c| c.to_string())
        .ok_or_else(|| {
            BadFilter(format!(
                "'category': unknown category '{value}' (known: {})",
                all.join(", ")
            ))
        })
}

fn status(value: &str) -> Result<String, BadFilter> {
    STATUSES
        .iter()
        .find(|s| s.eq_ignore_ascii_case(value))
        .map(|s| s.to_string())
        .ok_or_else(|| {
            BadFilter(format!(
                "'status': unknown booking status '{value}' (one of {})",
                STATUSES.join(", ")
            ))
        })
}

fn limit(value: &str) -> Result<usize, BadFilter> {
    value
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_LIMIT).contains(n))
        .ok_or_else(|| {
            BadFilter(format!(
                "'limit': '{value}' is not a number from 1 to {MAX_LIMIT}"
            ))
        })
}

fn format(value: &str) -> Result<Format, BadFilter> {
    match value {
        "json" => Ok(Format::Json),
        "csv" => Ok(Format::Csv),
        _ => Err(BadFilter(format!("'format': '{value}' is not json or csv"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &str) -> Result<Filters, BadFilter> {
        Filters::parse(q, &["Sport".to_string()])
    }

    #[test]
    fn reads_every_filter_and_ignores_empty_ones() {
        let f = parse(
            "from=2026-11-20&to=2026-11-22&category=music&status=booked&limit=5&format=csv&status=",
        )
        .unwrap_err();
        assert!(f.0.contains("more than once"), "{f}");
        let f =
            parse("from=2026-11-20&to=2026-11-22&category=music&status=booked&limit=5&format=csv")
                .expect("valid");
        assert_eq!(f.from, NaiveDate::from_ymd_opt(2026, 11, 20));
        assert_eq!(f.category.as_deref(), Some("Music"));
        assert_eq!(f.status.as_deref(), Some("BOOKED"));
        assert_eq!((f.limit, f.format), (Some(5), Format::Csv));
        assert_eq!(
            parse("category=&status=").expect("valid"),
            Filters::default()
        );
        assert_eq!(
            parse("category=Sport")
                .expect("known from data")
                .category
                .as_deref(),
            Some("Sport")
        );
    }

    #[test]
    fn bad_values_name_the_parameter_and_what_is_allowed() {
        for (query, says) in [
            ("from=yesterday", "'from'"),
            ("to=2026-13-01", "'to'"),
            ("from=2026-11-10&to=2026-11-01", "before 'from'"),
            (
                "category=Opera",
                "known: Cinema, Music, Other, Sport, Theater",
            ),
            ("status=PAID", "BOOKED, CANCELLED, COMPLETED"),
            ("limit=0", "'limit'"),
            ("limit=101", "1 to 100"),
            ("format=xml", "json or csv"),
            ("colour=red", "unknown parameter 'colour'"),
        ] {
            let e = parse(query).expect_err(query);
            assert!(e.0.contains(says), "{query}: {e}");
        }
    }

    #[test]
    fn the_date_range_is_inclusive() {
        let f = parse("from=2026-11-20&to=2026-11-21").expect("valid");
        let d = |day| NaiveDate::from_ymd_opt(2026, 11, day);
        assert!(!f.date_ok(d(19)) && f.date_ok(d(20)) && f.date_ok(d(21)) && !f.date_ok(d(22)));
        assert!(!f.date_ok(None));
        assert!(Filters::default().date_ok(None));
    }
}
