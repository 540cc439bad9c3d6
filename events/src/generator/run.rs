//! A run's identity: what makes its business keys and event ids its own.
//!
//! Every generator run numbers its orders and payments from 1, and several runs feed one lake
//! (`up` restarted, `generate` files ingested, Functions instances side by side). So the keys
//! carry a run tag, and the random choices (event ids among them) come from a generator keyed by
//! the same digest: SHA-256 of (seed, start). Runs that share a seed but not a start, or a start
//! but not a seed, get other tags and other event ids; the same seed and start give the same
//! bytes.

use chrono::{DateTime, Utc};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

/// Characters of the run tag, from `0-9a-z`: 36^8, about 2.8 trillion tags (41 bits), so two of
/// a thousand runs on one lake share a tag with a chance of about 1 in 5 million. Eight keep
/// `payment_<tag>-<n>` within 24 bytes up to n = 9,999,999, the length Silver holds inline.
const TAG_LEN: usize = 8;

/// A seed for a run that was given none: from the operating system's randomness, so processes
/// started at the same instant (Functions instances, two `up`s) still differ.
pub fn fresh_seed() -> u64 {
    rand::random()
}

/// What a run derives from its seed and start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunIdentity {
    /// 8 characters of `0-9a-z`, in every order and payment id of the run.
    pub tag: String,
    digest: [u8; 32],
}

impl RunIdentity {
    /// The identity of the run with this seed and start (to the nanosecond).
    pub fn new(seed: u64, start: DateTime<Utc>) -> RunIdentity {
        let mut hash = Sha256::new();
        hash.update(b"boxoffice generator run\0");
        hash.update(seed.to_le_bytes());
        hash.update(start.timestamp().to_le_bytes());
        hash.update(start.timestamp_subsec_nanos().to_le_bytes());
        let digest: [u8; 32] = hash.finalize().into();
        let mut bits = u64::from_le_bytes([
            digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7],
        ]);
        let tag = (0..TAG_LEN)
            .map(|_| {
                let digit = (bits % 36) as u32;
                bits /= 36;
                char::from_digit(digit, 36).unwrap_or('0')
            })
            .collect();
        RunIdentity { tag, digest }
    }

    /// The run's random generator: every choice of the run, event ids included.
    pub fn rng(&self) -> ChaCha8Rng {
        ChaCha8Rng::from_seed(self.digest)
    }

    /// "order_<tag>-<n>".
    pub fn order_id(&self, n: u64) -> String {
        self.key("order_", n)
    }

    /// "payment_<tag>-<n>".
    pub fn payment_id(&self, n: u64) -> String {
        self.key("payment_", n)
    }

    /// `<prefix><tag>-<n>`, allocated once at its full size (two of these per order).
    fn key(&self, prefix: &str, n: u64) -> String {
        use std::fmt::Write;
        let mut key = String::with_capacity(prefix.len() + self.tag.len() + 21);
        key.push_str(prefix);
        key.push_str(&self.tag);
        key.push('-');
        let _ = write!(key, "{n}"); // writing to a String cannot fail
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    #[test]
    fn the_tag_changes_with_the_seed_and_with_the_start() {
        let start = Utc
            .with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
            .single()
            .expect("time");
        let a = RunIdentity::new(7, start);
        assert_eq!(a, RunIdentity::new(7, start));
        assert_eq!(a.tag.len(), 8);
        assert!(
            a.tag
                .chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
        );
        assert_ne!(a.tag, RunIdentity::new(8, start).tag);
        assert_ne!(
            a.tag,
            RunIdentity::new(7, start + Duration::nanoseconds(1)).tag
        );
        assert_eq!(a.order_id(12), format!("order_{}-12", a.tag));
        assert_eq!(a.payment_id(3), format!("payment_{}-3", a.tag));
        assert_eq!(a.payment_id(9_999_999).len(), 24);
    }
}
