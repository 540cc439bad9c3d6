//! The validator: turns a raw event body into a typed [`Event`], or lists every reason it cannot.
//!
//! Serde stops at the first error; a producer fixing its events wants all of them at once, and the
//! quarantine table should say everything that is wrong with a row. So the authority is [`check`]:
//! the body parsed to a JSON value and walked field by field, collecting reasons. That walk
//! allocates every key and value, though, and almost every event is valid; so [`fast`] first
//! tries a typed, borrowing parse with the same rules, and only an event it cannot accept (or any
//! doubt) goes to the walk, which decides and explains.

mod check;
mod fast;
mod sniff;

pub use sniff::{Sniffed, sniff};

use chrono::{DateTime, NaiveDateTime, Utc};

use crate::model::{Event, Hub, SchemaVersion};

/// Largest accepted event body: Event Hubs takes 1 MB, but we keep events well under 256 KB.
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

/// Deepest nesting the fast path takes: far deeper than any event, far shallower than the 128
/// levels at which the complete check's parser refuses a body. Deeper bodies go to the complete
/// check, so the fast path can never accept what that check refuses for its depth.
const FAST_MAX_DEPTH: usize = 32;

/// True when no array or object in `body` nests deeper than [`FAST_MAX_DEPTH`] (brackets inside
/// strings do not count).
fn shallow(body: &str) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in body.as_bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > FAST_MAX_DEPTH {
                    return false;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

/// Most seats one order may hold.
pub const MAX_SEATS_PER_ORDER: usize = 6;

/// A valid event with its stable identity.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidEvent {
    /// The typed event.
    pub event: Event,
    /// `event_id`, or for v0 a UUID derived from the body (see [`crate::uid`]).
    pub event_uid: String,
}

/// An invalid event: every reason, plus what could still be read of it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", self.reason())]
pub struct Invalid {
    /// One entry per defect, in field order.
    pub reasons: Vec<String>,
    /// The identity the event would have had, when the body is JSON.
    pub event_uid: Option<String>,
}

impl Invalid {
    /// All reasons as one line, as stored in `bronze/quarantine.reason`.
    pub fn reason(&self) -> String {
        self.reasons.join("; ")
    }
}

/// Validates one event body. `hub` is where it arrived; `None` lets its fields decide.
pub fn validate(body: &str, hub: Option<Hub>) -> Result<ValidEvent, Invalid> {
    if body.len() <= MAX_EVENT_BYTES
        && shallow(body)
        && let Some(accepted) = fast::accept(body, hub)
        && let Some(event_uid) = accepted.event_uid(body)
    {
        return Ok(ValidEvent {
            event: accepted.into_event(),
            event_uid,
        });
    }
    check::validate(body, hub)
}

/// Validates like [`validate`] but returns only the typed event: for readers that already know
/// the uid (the join reads it from Bronze), since a legacy event's uid costs a second parse and
/// a hash of its body.
pub fn validate_event(body: &str, hub: Option<Hub>) -> Result<Event, Invalid> {
    if body.len() <= MAX_EVENT_BYTES
        && shallow(body)
        && let Some(accepted) = fast::accept(body, hub)
    {
        return Ok(accepted.into_event());
    }
    check::validate(body, hub).map(|valid| valid.event)
}

/// What Bronze records of a valid event: which hub, which shape, which identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The hub its fields belong to.
    pub hub: Hub,
    /// The shape it arrived in.
    pub schema_version: SchemaVersion,
    /// Its stable uid.
    pub event_uid: String,
}

/// Validates like [`validate`] but returns only the event's identity: the archiver's check,
/// which never needs the typed event and so skips building it.
pub fn identify(body: &str, hub: Option<Hub>) -> Result<Identity, Invalid> {
    if body.len() <= MAX_EVENT_BYTES
        && shallow(body)
        && let Some(accepted) = fast::accept(body, hub)
        && let Some(event_uid) = accepted.event_uid(body)
    {
        return Ok(Identity {
            hub: accepted.hub(),
            schema_version: accepted.version(),
            event_uid,
        });
    }
    check::validate(body, hub).map(|v| Identity {
        hub: v.event.hub(),
        schema_version: v.event.schema_version(),
        event_uid: v.event_uid,
    })
}

/// Why a timestamp string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampError {
    /// A valid date and time, but no zone: we cannot know which instant it means.
    NoZone,
    /// Not a timestamp at all.
    Unparseable,
}

/// Parses an RFC 3339 timestamp with a zone and converts it to UTC.
pub fn parse_timestamp(s: &str) -> Result<DateTime<Utc>, TimestampError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let zoneless = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"];
    if zoneless
        .iter()
        .any(|f| NaiveDateTime::parse_from_str(s, f).is_ok())
    {
        Err(TimestampError::NoZone)
    } else {
        Err(TimestampError::Unparseable)
    }
}

#[cfg(test)]
mod tests;
