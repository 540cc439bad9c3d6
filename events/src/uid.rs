//! `event_uid`: the identity used to drop at-least-once duplicates.
//!
//! v1 and v2 events carry a UUID `event_id`, unique per emission, so a resent event keeps it. Legacy
//! (v0) events carry no id; their uid is a name-based UUID (v5) of the body in canonical form (keys
//! sorted, no whitespace), so the same event resent, even re-serialised with other key order or
//! spacing, gets the same uid, while any change of content gives another.

use serde_json::{Map, Value};
use uuid::Uuid;

/// Namespace of the v5 UUIDs derived from legacy bodies (fixed forever: changing it changes uids).
pub const LEGACY_NAMESPACE: Uuid = Uuid::from_u128(0x6b0f_f1ce_2d1e_4a57_9c3b_b0c5_0ff1_ce00);

/// The uid of an event object: its `event_id` when that is a UUID, else the hash of its body.
pub fn event_uid(obj: &Map<String, Value>) -> String {
    if let Some(id) = obj.get("event_id").and_then(Value::as_str)
        && let Ok(u) = Uuid::parse_str(id)
    {
        return u.hyphenated().to_string();
    }
    legacy_uid(&Value::Object(obj.clone()))
}

/// A uid as 16 bytes, for sets of millions of them: the UUID's own bits (every uid made here is
/// one), else a name-based UUID of the text, so any string still has exactly one key.
pub fn uid_key(uid: &str) -> u128 {
    Uuid::try_parse(uid)
        .unwrap_or_else(|_| Uuid::new_v5(&LEGACY_NAMESPACE, uid.as_bytes()))
        .as_u128()
}

/// The uid of any JSON value (used for bodies that are JSON but not an object).
pub fn event_uid_of_value(value: &Value) -> String {
    match value {
        Value::Object(obj) => event_uid(obj),
        other => legacy_uid(other),
    }
}

/// The uid of a body that is not JSON at all: a hash of its bytes.
pub fn raw_uid(body: &str) -> String {
    Uuid::new_v5(&LEGACY_NAMESPACE, body.as_bytes())
        .hyphenated()
        .to_string()
}

fn legacy_uid(value: &Value) -> String {
    let mut canonical = Vec::with_capacity(512);
    write_canonical(value, &mut canonical);
    Uuid::new_v5(&LEGACY_NAMESPACE, &canonical)
        .hyphenated()
        .to_string()
}

/// Writes JSON with object keys sorted, whatever map type serde_json was built with.
fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_leaf(k, out);
                out.push(b':');
                write_canonical(&map[k], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => write_leaf(scalar, out),
    }
}

/// A key or scalar in serde_json's compact form (writing to a Vec cannot fail).
fn write_leaf<T: serde::Serialize + ?Sized>(leaf: &T, out: &mut Vec<u8>) {
    let _ = serde_json::to_writer(&mut *out, leaf);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uid(body: &str) -> String {
        match serde_json::from_str::<Value>(body) {
            Ok(v) => event_uid_of_value(&v),
            Err(_) => raw_uid(body),
        }
    }

    #[test]
    fn v1_uid_is_the_event_id() {
        let body = r#"{"schema_version":1,"event_id":"2F1C6B1E-0000-4000-8000-000000000001"}"#;
        assert_eq!(uid(body), "2f1c6b1e-0000-4000-8000-000000000001");
    }

    #[test]
    fn legacy_uid_ignores_key_order_and_whitespace() {
        let a = r#"{"order_id":"order_2000","amount":150,"payment_id":"payment_3000"}"#;
        let b =
            "{ \"payment_id\": \"payment_3000\",\n \"amount\": 150, \"order_id\": \"order_2000\" }";
        assert_eq!(uid(a), uid(b));
    }

    #[test]
    fn legacy_uid_changes_with_content() {
        let a = r#"{"order_id":"order_2000","amount":150}"#;
        let b = r#"{"order_id":"order_2000","amount":151}"#;
        assert_ne!(uid(a), uid(b));
    }

    #[test]
    fn legacy_uid_is_stable_across_releases() {
        // Pinned: a changed namespace or canonical form would re-identify every stored v0 event.
        let body = r#"{"order_id":"order_2000","amount":150}"#;
        assert_eq!(uid(body), "3d4cb211-2aa5-57e3-9c6c-5fe4ba9a4efb");
    }
}
