//! A hand-written reader for the two shapes the fast path knows, in their usual spelling.
//!
//! Serde's derived readers were half the cost of reading Bronze (field names matched by string
//! comparison, each value through a visitor). This reader walks the bytes once and fills the
//! same structs. It takes nothing on trust: anything it does not expect (an unknown or repeated
//! key, a value of another type, a number it cannot convert exactly as serde_json would) makes it
//! answer `None`, and the serde reader then decides as before. Escaped strings and unusual
//! numbers are handed to serde_json itself, so their values are serde_json's to the bit.
//! `tests::the_scanner_reads_what_serde_reads` holds it to that.

use std::borrow::Cow;

use super::{BookingIn, CustomerIn, DetailsIn, Field, PaymentIn, Present, SeatIn, Text};

/// Reads a booking body; `None` when anything is unusual.
pub(super) fn booking(body: &str) -> Option<BookingIn<'_>> {
    whole(body, Cursor::booking)
}

/// Reads a payment body; `None` when anything is unusual.
pub(super) fn payment(body: &str) -> Option<PaymentIn<'_>> {
    whole(body, Cursor::payment)
}

/// Reads `body` with `read`, which must take all of it but white space.
fn whole<'a, T>(body: &'a str, read: fn(&mut Cursor<'a>) -> Option<T>) -> Option<T> {
    let mut c = Cursor::new(body);
    let value = read(&mut c)?;
    c.end()?;
    Some(value)
}

/// A position in a body.
struct Cursor<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

/// Sets a field once: a second value for the same key is unusual (serde refuses it).
fn once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    match slot {
        Some(_) => None,
        None => {
            *slot = Some(value);
            Some(())
        }
    }
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Cursor {
            text,
            bytes: text.as_bytes(),
            at: 0,
        }
    }

    fn skip_space(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    /// The next byte after white space, not taken.
    fn peek(&mut self) -> Option<u8> {
        self.skip_space();
        self.bytes.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// Nothing but white space left.
    fn end(&mut self) -> Option<()> {
        self.peek().is_none().then_some(())
    }

    /// Takes `null` if it comes next.
    fn null(&mut self) -> bool {
        self.skip_space();
        let is_null = self.bytes[self.at.min(self.bytes.len())..].starts_with(b"null");
        if is_null {
            self.at += 4;
        }
        is_null
    }

    /// The items between `open` and `close`, separated by commas: `each` reads one.
    fn list(
        &mut self,
        (open, close): (u8, u8),
        mut each: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        self.eat(open)?;
        if self.peek()? == close {
            self.at += 1;
            return Some(());
        }
        loop {
            each(self)?;
            match self.peek()? {
                b',' => self.at += 1,
                byte if byte == close => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// The members of an object, one key at a time: `each` reads the value of every key.
    fn object(&mut self, mut each: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.list((b'{', b'}'), |c| {
            let key = c.plain_key()?;
            c.eat(b':')?;
            each(c, key)
        })
    }

    /// A key without escapes (every key we know is spelled plainly).
    fn plain_key(&mut self) -> Option<&'a str> {
        match self.string()? {
            Cow::Borrowed(key) => Some(key),
            Cow::Owned(_) => None,
        }
    }

    /// A string: borrowed when it has no escapes, else decoded by serde_json.
    fn string(&mut self) -> Option<Text<'a>> {
        self.eat(b'"')?;
        let start = self.at;
        let mut i = start;
        // Eight bytes at a time while none can end the string or be refused.
        while let Some(word) = self.bytes.get(i..i + 8) {
            let word = u64::from_le_bytes(word.try_into().ok()?);
            if stops_in(word) {
                break;
            }
            i += 8;
        }
        loop {
            match *self.bytes.get(i)? {
                b'"' => {
                    self.at = i + 1;
                    return Some(Cow::Borrowed(&self.text[start..i]));
                }
                b'\\' => return self.escaped(start),
                // Control characters must be escaped in JSON.
                0..=0x1f => return None,
                _ => i += 1,
            }
        }
    }

    /// A string with escapes, from just after its opening quote: its extent found here, its
    /// value decoded by serde_json.
    fn escaped(&mut self, start: usize) -> Option<Text<'a>> {
        let mut i = start;
        loop {
            match *self.bytes.get(i)? {
                b'"' => break,
                b'\\' => i += 2,
                0..=0x1f => return None,
                _ => i += 1,
            }
        }
        // Both ends are ASCII quotes, so both are character boundaries.
        let value: String = serde_json::from_str(self.text.get(start - 1..=i)?).ok()?;
        self.at = i + 1;
        Some(Cow::Owned(value))
    }

    /// A string or `null`.
    fn optional_string(&mut self) -> Option<Option<Text<'a>>> {
        if self.null() {
            return Some(None);
        }
        self.string().map(Some)
    }

    /// The characters of a number, not yet converted.
    fn number_token(&mut self) -> Option<&'a str> {
        self.skip_space();
        let start = self.at;
        while let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') = self.bytes.get(self.at) {
            self.at += 1;
        }
        (self.at > start).then(|| &self.text[start..self.at])
    }

    /// A number as serde_json converts it to `f64`.
    fn f64(&mut self) -> Option<f64> {
        let token = self.number_token()?;
        plain_decimal(token).or_else(|| serde_json::from_str(token).ok())
    }

    fn optional_f64(&mut self) -> Option<Option<f64>> {
        if self.null() {
            return Some(None);
        }
        self.f64().map(Some)
    }

    fn version(&mut self) -> Option<Field<i64>> {
        if self.null() {
            return Some(Field::Null);
        }
        let token = self.number_token()?;
        serde_json::from_str(token).ok().map(Field::Value)
    }

    fn booking(&mut self) -> Option<BookingIn<'a>> {
        let (mut version, mut event_id, mut order_id, mut booking_time) = (None, None, None, None);
        let (mut customer, mut details, mut channel, mut currency) = (None, None, None, None);
        self.object(|c, key| match key {
            "schema_version" => once(&mut version, c.version()?),
            "event_id" => once(&mut event_id, c.optional_string()?),
            "order_id" => once(&mut order_id, c.string()?),
            "booking_time" => once(&mut booking_time, c.string()?),
            "customer" => once(&mut customer, c.customer()?),
            "event_details" => once(&mut details, c.details()?),
            "channel" => once(&mut channel, c.optional_string()?),
            "currency" => once(&mut currency, c.optional_string()?),
            _ => None,
        })?;
        Some(BookingIn {
            schema_version: version.unwrap_or_default(),
            event_id: event_id.flatten(),
            order_id: order_id?,
            booking_time: booking_time?,
            customer: customer?,
            event_details: details?,
            channel: channel.flatten(),
            currency: currency.flatten(),
            payment_id: Present(false),
            payment_time: Present(false),
        })
    }

    fn customer(&mut self) -> Option<CustomerIn<'a>> {
        let (mut customer_id, mut name, mut email) = (None, None, None);
        self.object(|c, key| match key {
            "customer_id" => once(&mut customer_id, c.string()?),
            "name" => once(&mut name, c.string()?),
            "email" => once(&mut email, c.string()?),
            _ => None,
        })?;
        Some(CustomerIn {
            customer_id: customer_id?,
            name: name?,
            email: email?,
        })
    }

    fn details(&mut self) -> Option<DetailsIn<'a>> {
        let (mut event_id, mut event_name, mut event_location) = (None, None, None);
        let (mut seats, mut city, mut starts_at) = (None, None, None);
        self.object(|c, key| match key {
            "event_id" => once(&mut event_id, c.string()?),
            "event_name" => once(&mut event_name, c.string()?),
            "event_location" => once(&mut event_location, c.string()?),
            "seats" => once(&mut seats, c.seats()?),
            "city" => once(&mut city, c.optional_string()?),
            "starts_at" => once(&mut starts_at, c.optional_string()?),
            _ => None,
        })?;
        Some(DetailsIn {
            event_id: event_id?,
            event_name: event_name?,
            event_location: event_location?,
            seats: seats?,
            city: city.flatten(),
            starts_at: starts_at.flatten(),
        })
    }

    fn seats(&mut self) -> Option<Vec<SeatIn<'a>>> {
        let mut seats = Vec::new();
        self.list((b'[', b']'), |c| {
            seats.push(c.seat()?);
            Some(())
        })?;
        Some(seats)
    }

    fn seat(&mut self) -> Option<SeatIn<'a>> {
        let (mut seat_number, mut price) = (None, None);
        self.object(|c, key| match key {
            "seat_number" => once(&mut seat_number, c.string()?),
            "price" => once(&mut price, c.f64()?),
            _ => None,
        })?;
        Some(SeatIn {
            seat_number: seat_number?,
            price: price?,
        })
    }

    fn payment(&mut self) -> Option<PaymentIn<'a>> {
        let (mut version, mut event_id, mut payment_id, mut order_id) = (None, None, None, None);
        let (mut payment_time, mut amount, mut method, mut status) = (None, None, None, None);
        let (mut currency, mut fee) = (None, None);
        self.object(|c, key| match key {
            "schema_version" => once(&mut version, c.version()?),
            "event_id" => once(&mut event_id, c.optional_string()?),
            "payment_id" => once(&mut payment_id, c.string()?),
            "order_id" => once(&mut order_id, c.string()?),
            "payment_time" => once(&mut payment_time, c.string()?),
            "amount" => once(&mut amount, c.f64()?),
            "payment_method" => once(&mut method, c.string()?),
            "payment_status" => once(&mut status, c.string()?),
            "currency" => once(&mut currency, c.optional_string()?),
            "fee" => once(&mut fee, c.optional_f64()?),
            _ => None,
        })?;
        Some(PaymentIn {
            schema_version: version.unwrap_or_default(),
            event_id: event_id.flatten(),
            payment_id: payment_id?,
            order_id: order_id?,
            payment_time: payment_time?,
            amount: amount?,
            payment_method: method?,
            payment_status: status?,
            currency: currency.flatten(),
            fee: fee.flatten(),
        })
    }
}

/// Whether any of the word's eight bytes is a quote, a backslash or a control character (below
/// 0x20). The classic zero-byte test: `x - 1` borrows into the top bit only where `x` was 0 (or
/// after such a byte, which is fine for "any").
fn stops_in(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const TOPS: u64 = 0x8080_8080_8080_8080;
    let zero_in = |x: u64| x.wrapping_sub(ONES) & !x & TOPS;
    let quote = zero_in(word ^ (ONES * u64::from(b'"')));
    let backslash = zero_in(word ^ (ONES * u64::from(b'\\')));
    let control = word.wrapping_sub(ONES * 0x20) & !word & TOPS;
    quote | backslash | control != 0
}

/// Converts `digits[.digits]` of at most 15 digits, starting with a non-zero digit (or a lone
/// zero before the point), the way serde_json does: the digits as an integer, divided by the
/// power of ten of the fraction. Below 2^53 and 10^22 both are exact, so the one rounding is the
/// division's, as in serde_json. Anything else (signs, exponents, long or zero-led numbers) is
/// `None`, for serde_json to convert.
fn plain_decimal(token: &str) -> Option<f64> {
    let (whole, fraction) = match token.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (token, None),
    };
    let fraction_digits = fraction.map_or(0, str::len);
    let digits_ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits_ok(whole)
        || fraction.is_some_and(|f| !digits_ok(f))
        || (whole.len() > 1 && whole.starts_with('0'))
        || whole.len() + fraction_digits > 15
    {
        return None;
    }
    let mut significand: u64 = 0;
    for b in whole.bytes().chain(fraction.unwrap_or("").bytes()) {
        significand = significand * 10 + u64::from(b - b'0');
    }
    const POW10: [f64; 16] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    ];
    Some(significand as f64 / POW10[fraction_digits])
}

#[cfg(test)]
mod tests {
    use super::super::{BookingIn, PaymentIn};
    use super::{booking, payment, plain_decimal, stops_in};
    use crate::generator::{Generator, GeneratorConfig, Shares};
    use crate::model::Hub;

    /// Whenever the scanner reads a body, serde reads the same value from it (compared through
    /// `Debug`, which tells -0.0 from 0.0). Returns whether the scanner read it.
    fn agree(body: &str) -> bool {
        let scanned = booking(body).map(|b| format!("{b:?}"));
        let serde = serde_json::from_str::<BookingIn<'_>>(body).map(|b| format!("{b:?}"));
        if let Some(scanned) = &scanned {
            assert_eq!(Some(scanned), serde.as_ref().ok(), "booking {body}");
        }
        let scanned_payment = payment(body).map(|p| format!("{p:?}"));
        let serde = serde_json::from_str::<PaymentIn<'_>>(body).map(|p| format!("{p:?}"));
        if let Some(scanned) = &scanned_payment {
            assert_eq!(Some(scanned), serde.as_ref().ok(), "payment {body}");
        }
        scanned.is_some() || scanned_payment.is_some()
    }

    fn generated(n: usize) -> Vec<(Hub, String)> {
        let config = GeneratorConfig {
            seed: 7,
            shares: Shares {
                malformed: 0.2,
                v0: 0.3,
                v2: 0.4,
                ..Shares::default()
            },
            ..GeneratorConfig::default()
        };
        Generator::new(config)
            .expect("config")
            .take(n)
            .map(|e| (e.hub, e.body))
            .collect()
    }

    #[test]
    fn the_scanner_reads_what_serde_reads() {
        let (mut serde_read, mut scanned) = (0, 0);
        for (hub, body) in generated(20_000) {
            let by_serde = match hub {
                Hub::Bookings => serde_json::from_str::<BookingIn<'_>>(&body).is_ok(),
                Hub::Payments => serde_json::from_str::<PaymentIn<'_>>(&body).is_ok(),
            };
            let read = agree(&body);
            serde_read += usize::from(by_serde);
            scanned += usize::from(by_serde && read);
        }
        assert!(serde_read > 15_000, "{serde_read}");
        assert_eq!(
            scanned, serde_read,
            "the scanner reads every generated event serde reads"
        );
    }

    /// Spellings the generator never makes: the scanner reads some itself (and must match serde
    /// exactly) and leaves the rest to serde.
    #[test]
    fn unusual_spellings_are_read_as_serde_reads_them_or_left_to_serde() {
        let booking = r#"{"schema_version":2,"event_id":"651e1226-dbcd-48c4-91e3-90f88cfff1d2","order_id":"order_1","booking_time":"2025-01-01T05:30:40.275+05:30","customer":{"customer_id":"cust1","name":"Ann Lee","email":"ann@example.com"},"event_details":{"event_id":"event26","event_name":"Frami: The Movie","event_location":"9947 Kerluke Springs\nAhmedabad","seats":[{"seat_number":"D18","price":105.0},{"seat_number":"D19","price":45}],"city":"Ahmedabad","starts_at":"2026-05-26T19:30:00Z"},"channel":"app","currency":"INR"}"#;
        let payment = r#"{"schema_version":2,"event_id":"5b57a7aa-4ce2-4f91-8d35-4f8b6de82041","payment_id":"payment_2","order_id":"order_1","payment_time":"2025-01-01T05:31:09.711+05:30","amount":108.12,"payment_method":"Debit Card","payment_status":"Success","currency":"INR","fee":2.12}"#;
        assert!(
            agree(booking) && agree(payment),
            "the plain spellings are scanned"
        );
        let read_by_scanner = [
            (r#""price":105.0"#, r#""price" : 105.0 "#),
            (
                r#""name":"Ann Lee""#,
                r#""name":"Ann \"The\" L\u00e9e \ud83d\ude00""#,
            ),
            (r#""name":"Ann Lee""#, "\"name\":\"Ann Lée 🎭\""),
            (r#""city":"Ahmedabad""#, r#""city":null"#),
            (r#""channel":"app","#, ""),
            (r#""amount":108.12"#, r#""amount":0.1"#),
            (r#""amount":108.12"#, r#""amount":999999999999.999"#),
            (r#""fee":2.12"#, r#""fee":null"#),
            (r#""schema_version":2"#, r#""schema_version":null"#),
            // Numbers off the plain path are converted by serde_json itself.
            (r#""amount":108.12"#, r#""amount":-0"#),
            (r#""amount":108.12"#, r#""amount":1e2"#),
            (r#""amount":108.12"#, r#""amount":0.30000000000000004"#),
            (r#""amount":108.12"#, r#""amount":-1.5"#),
            (r#""price":105.0"#, r#""price":1.5E-3"#),
        ];
        let left_to_serde = [
            (r#""amount":108.12"#, r#""amount":045"#),
            (r#""amount":108.12"#, r#""amount":"108.12""#),
            (r#""schema_version":2"#, r#""schema_version":2.0"#),
            (
                r#""order_id":"order_1""#,
                r#""order_id":"order_1","order_id":"order_2""#,
            ),
            (
                r#""order_id":"order_1""#,
                r#""order_id":"order_1","note":{"a":[1,2]}"#,
            ),
            (r#""order_id":"order_1""#, r#""order_\u0069d":"order_1""#),
            (r#""order_id":"order_1""#, "\"order_id\":\"order\t1\""),
            (r#""order_id":"order_1""#, r#""order_id":"order_\x31""#),
            (r#""order_id":"order_1""#, r#""order_id":"\ud800""#),
            (r#""order_id":"order_1""#, r#""order_id":null"#),
            (r#""seats":["#, r#""seats":[{},"#),
            (r#""currency":"INR"}"#, r#""currency":"INR",}"#),
            (r#""currency":"INR"}"#, r#""currency":"INR"} x"#),
            (r#""fee":2.12}"#, r#""fee":2.12,}"#),
        ];
        for (from, to) in read_by_scanner {
            for body in [booking, payment] {
                if body.contains(from) {
                    let changed = body.replacen(from, to, 1);
                    assert!(agree(&changed), "scanned: {changed}");
                }
            }
        }
        for (from, to) in left_to_serde {
            for body in [booking, payment] {
                if body.contains(from) {
                    let changed = body.replacen(from, to, 1);
                    assert!(!agree(&changed), "left to serde: {changed}");
                }
            }
        }
        let value: serde_json::Value = serde_json::from_str(booking).expect("JSON");
        let pretty = serde_json::to_string_pretty(&value).expect("JSON");
        assert!(
            agree(&format!(" \t{}\r\n", pretty.replace("\n", "\r\n\t"))),
            "white space between tokens"
        );
    }

    #[test]
    fn a_word_stops_the_string_at_every_quote_backslash_or_control_byte() {
        for byte in 0..=255u8 {
            let stops = byte == b'"' || byte == b'\\' || byte < 0x20;
            for place in 0..8 {
                let mut word = [b'a'; 8];
                word[place] = byte;
                assert_eq!(
                    stops_in(u64::from_le_bytes(word)),
                    stops,
                    "{byte} at {place}"
                );
                // Neighbours that are high (UTF-8) bytes change nothing.
                let mut high = [0xc3; 8];
                high[place] = byte;
                assert_eq!(
                    stops_in(u64::from_le_bytes(high)),
                    stops,
                    "{byte} among 0xc3"
                );
            }
        }
    }

    #[test]
    fn plain_decimals_convert_as_serde_json_does() {
        for token in [
            "0",
            "7",
            "45",
            "105.0",
            "108.12",
            "0.1",
            "2.675",
            "123456789.12345",
        ] {
            let serde: f64 = serde_json::from_str(token).expect("a number");
            assert_eq!(
                plain_decimal(token).map(f64::to_bits),
                Some(serde.to_bits()),
                "{token}"
            );
        }
        for token in [
            "",
            ".5",
            "5.",
            "-1",
            "1e5",
            "01",
            "1234567890123456",
            "1.2.3",
        ] {
            assert_eq!(plain_decimal(token), None, "{token}");
        }
    }
}
