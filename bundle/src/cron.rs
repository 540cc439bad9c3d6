//! Quartz cron expressions, as Databricks job schedules take them:
//! `seconds minutes hours day-of-month month day-of-week [year]`, with `*`, `?`, ranges `a-b`,
//! steps `/n`, lists `a,b`, month names JAN-DEC and day names SUN-SAT (SUN = 1). Exactly one of
//! day-of-month and day-of-week is `?`. `L`, `W` and `#` are refused with a message.

use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// A parsed expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    text: String,
    seconds: Vec<bool>,
    minutes: Vec<bool>,
    hours: Vec<bool>,
    /// None when `?`.
    days_of_month: Option<Vec<bool>>,
    months: Vec<bool>,
    /// None when `?`; index 1 = Sunday.
    days_of_week: Option<Vec<bool>>,
    years: Option<Vec<bool>>,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
const FIRST_YEAR: i32 = 1970;
const LAST_YEAR: i32 = 2099;

impl Cron {
    /// Parses an expression; the error says which field is wrong and why.
    pub fn parse(text: &str) -> Result<Cron, String> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        if !(6..=7).contains(&fields.len()) {
            return Err(format!(
                "'{text}' has {} fields; a Quartz expression has 6 or 7: seconds minutes hours \
                 day-of-month month day-of-week [year], e.g. '0 */5 * * * ?'",
                fields.len()
            ));
        }
        let optional =
            |i: usize, name, min, max, names: &[&str]| -> Result<Option<Vec<bool>>, String> {
                if fields[i] == "?" {
                    Ok(None)
                } else {
                    field(fields[i], name, min, max, names).map(Some)
                }
            };
        let cron = Cron {
            text: text.to_string(),
            seconds: field(fields[0], "seconds", 0, 59, &[])?,
            minutes: field(fields[1], "minutes", 0, 59, &[])?,
            hours: field(fields[2], "hours", 0, 23, &[])?,
            days_of_month: optional(3, "day-of-month", 1, 31, &[])?,
            months: field(fields[4], "month", 1, 12, &MONTHS)?,
            days_of_week: optional(5, "day-of-week", 1, 7, &DAYS)?,
            years: match fields.get(6) {
                Some(y) => Some(field(y, "year", FIRST_YEAR as u32, LAST_YEAR as u32, &[])?),
                None => None,
            },
        };
        if cron.days_of_month.is_some() == cron.days_of_week.is_some() {
            return Err(format!(
                "'{text}': exactly one of day-of-month and day-of-week must be '?' (Quartz), e.g. \
                 '0 0 3 * * ?' for every day at 03:00"
            ));
        }
        if [fields[3], fields[5]].contains(&"?") && fields[0..3].contains(&"?") {
            return Err(format!(
                "'{text}': '?' is only for day-of-month or day-of-week"
            ));
        }
        Ok(cron)
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first time after `after` (strictly) that the schedule fires in `tz`, if any within
    /// the years Quartz allows. Local times a DST change skips do not fire; repeated ones fire
    /// once, at the earlier instant.
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&tz).naive_local();
        let mut day = local.date();
        let last = NaiveDate::from_ymd_opt(LAST_YEAR, 12, 31)?;
        while day <= last {
            if self.day_matches(day) {
                for time in self.times_of(day) {
                    if let Some(at) = resolve(tz, time)
                        && at > after
                    {
                        return Some(at);
                    }
                }
            }
            day = day.checked_add_days(Days::new(1))?;
        }
        None
    }

    fn day_matches(&self, day: NaiveDate) -> bool {
        let year_ok = self.years.as_ref().is_none_or(|y| {
            let i = day.year() - FIRST_YEAR;
            i >= 0 && y.get(i as usize).copied().unwrap_or(false)
        });
        let month_ok = self.months[day.month0() as usize];
        let dom_ok = self
            .days_of_month
            .as_ref()
            .is_none_or(|d| d[day.day0() as usize]);
        let dow_ok = self
            .days_of_week
            .as_ref()
            .is_none_or(|d| d[day.weekday().num_days_from_sunday() as usize]);
        year_ok && month_ok && dom_ok && dow_ok
    }

    /// The day's firing times, in order.
    fn times_of(&self, day: NaiveDate) -> impl Iterator<Item = NaiveDateTime> + '_ {
        set(&self.hours).flat_map(move |h| {
            set(&self.minutes)
                .flat_map(move |m| set(&self.seconds).filter_map(move |s| day.and_hms_opt(h, m, s)))
        })
    }
}

fn set(bits: &[bool]) -> impl Iterator<Item = u32> + '_ {
    bits.iter()
        .enumerate()
        .filter(|(_, on)| **on)
        .map(|(i, _)| i as u32)
}

fn resolve(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    tz.from_local_datetime(&local)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

/// One field as a bitset indexed from 0 (days of month, months and years are shifted by
/// their first value).
fn field(text: &str, name: &str, min: u32, max: u32, names: &[&str]) -> Result<Vec<bool>, String> {
    let without_names = names
        .iter()
        .fold(text.to_ascii_uppercase(), |t, n| t.replace(n, ""));
    if without_names.contains(['L', 'W', '#']) {
        return Err(format!(
            "{name} '{text}': L, W and # are not supported; list the days instead"
        ));
    }
    // Index 0 is the field's first value (day 1, JAN, SUN, 1970).
    let offset = min;
    let mut bits = vec![false; (max - offset + 1) as usize];
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>().ok().filter(|s| *s > 0).ok_or_else(|| {
                    format!("{name} '{text}': the step after '/' must be a number above 0")
                })?,
            ),
            None => (part, 1),
        };
        let (from, to) = if range == "*" || range == "?" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (
                value(a, name, min, max, names)?,
                value(b, name, min, max, names)?,
            )
        } else {
            let v = value(range, name, min, max, names)?;
            (v, if part.contains('/') { max } else { v })
        };
        if from > to {
            return Err(format!(
                "{name} '{text}': the range {from}-{to} runs backwards"
            ));
        }
        for v in (from..=to).step_by(step as usize) {
            bits[(v - offset) as usize] = true;
        }
    }
    Ok(bits)
}

fn value(text: &str, name: &str, min: u32, max: u32, names: &[&str]) -> Result<u32, String> {
    let upper = text.to_ascii_uppercase();
    if let Some(i) = names.iter().position(|n| *n == upper) {
        return Ok(i as u32 + 1);
    }
    match text.parse::<u32>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(format!(
            "{name} '{text}' is not between {min} and {max}{}",
            if names.is_empty() {
                String::new()
            } else {
                format!(" or one of {}", names.join(","))
            }
        )),
    }
}
