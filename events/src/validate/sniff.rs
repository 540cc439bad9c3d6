//! Routing an event before it is validated: which hub, which order (the partition key).
//!
//! This runs once per event on the producer's side, so it reads only the top-level keys of the
//! object, byte by byte, without building anything; it never decides validity. A body that is
//! not JSON yields nothing, and a truncated one still yields the keys it has, so a torn payment
//! is routed to (and quarantined from) the payments hub.

use crate::model::Hub;

/// What can be told of a body cheaply, before validation: where to route it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sniffed {
    /// The hub its top-level fields point to, if any.
    pub hub: Option<Hub>,
    /// Its top-level `order_id` when that is a string (the partition key).
    pub order_id: Option<String>,
}

/// Tells the hub and order of a body from its top-level keys.
pub fn sniff(body: &str) -> Sniffed {
    let mut s = Scanner {
        b: body.as_bytes(),
        i: 0,
    };
    let (mut payment, mut booking, mut order_id) = (false, false, None);
    s.ws();
    if !s.eat(b'{') {
        return Sniffed::default();
    }
    loop {
        s.ws();
        let Some(key) = s.string() else { break };
        s.ws();
        if !s.eat(b':') {
            break;
        }
        s.ws();
        match key {
            b"payment_id" | b"payment_time" => payment = true,
            b"booking_time" | b"event_details" | b"customer" => booking = true,
            _ => {}
        }
        if key == b"order_id" && s.peek() == Some(b'"') {
            let start = s.i;
            if s.string().is_none() {
                break;
            }
            order_id = serde_json::from_slice::<String>(&s.b[start..s.i]).ok();
        } else if !s.value() {
            break;
        }
        s.ws();
        if !s.eat(b',') {
            break;
        }
    }
    let hub = if payment {
        Some(Hub::Payments)
    } else if booking {
        Some(Hub::Bookings)
    } else {
        None
    };
    Sniffed { hub, order_id }
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        self.i += usize::from(hit);
        hit
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.i += 1;
        }
    }

    /// A string at the cursor; returns its raw contents (escapes left as they are). Jumps from
    /// quote or backslash to the next, since most of an event's bytes are inside strings.
    fn string(&mut self) -> Option<&'a [u8]> {
        if !self.eat(b'"') {
            return None;
        }
        let start = self.i;
        loop {
            let rest = self.b.get(self.i..)?;
            let at = memchr::memchr2(b'"', b'\\', rest)?;
            self.i += at;
            if self.b[self.i] == b'"' {
                self.i += 1;
                return Some(&self.b[start..self.i - 1]);
            }
            self.i += 2;
        }
    }

    /// Skips one value of any kind; false if the body ends inside it.
    fn value(&mut self) -> bool {
        let mut depth = 0usize;
        loop {
            match self.peek() {
                None => return false,
                Some(b'"') => {
                    if self.string().is_none() {
                        return false;
                    }
                }
                Some(b'{' | b'[') => {
                    depth += 1;
                    self.i += 1;
                }
                Some(b'}' | b']') if depth > 0 => {
                    depth -= 1;
                    self.i += 1;
                }
                Some(b',' | b'}' | b']') if depth == 0 => return true,
                Some(_) => self.i += 1,
            }
            if depth == 0 && matches!(self.peek(), Some(b',' | b'}' | b']')) {
                return true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_top_level_keys_only() {
        let booking =
            r#"{"order_id": "order_1", "customer": {"name": "payment_id"}, "booking_time": "x"}"#;
        assert_eq!(
            sniff(booking),
            Sniffed {
                hub: Some(Hub::Bookings),
                order_id: Some("order_1".into())
            }
        );
        let nested =
            r#"{"event_details": {"payment_id": 1, "order_id": "inner"}, "order_id": "outer"}"#;
        assert_eq!(sniff(nested).hub, Some(Hub::Bookings));
        assert_eq!(sniff(nested).order_id.as_deref(), Some("outer"));
        let payment = r#"{"payment_id":"p","order_id":"o","amount":[1,{"a":"}"}],"x":null}"#;
        assert_eq!(sniff(payment).hub, Some(Hub::Payments));
    }

    #[test]
    fn escaped_order_ids_are_unescaped() {
        let s = sniff(r#"{"order_id": "ord\"er\u0041", "payment_id": "p"}"#);
        assert_eq!(s.order_id.as_deref(), Some("ord\"erA"));
    }

    #[test]
    fn truncated_bodies_keep_what_they_have_and_non_json_has_nothing() {
        let torn = r#"{"payment_id": "payment_9", "order_id": "order_9", "amou"#;
        assert_eq!(sniff(torn).hub, Some(Hub::Payments));
        assert_eq!(sniff(torn).order_id.as_deref(), Some("order_9"));
        assert_eq!(sniff("<html>502</html>"), Sniffed::default());
        assert_eq!(sniff(""), Sniffed::default());
        assert_eq!(sniff(r#"{"order_id": 5}"#).order_id, None);
        assert_eq!(sniff(r#"["payment_id"]"#), Sniffed::default());
    }
}
