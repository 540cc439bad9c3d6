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

/// Bytes of the digest shown in keys: 48 bits, 12 hex digits. Two of a thousand runs on one
/// lake share a tag with a chance of about 2 in a billion.
const TAG_BYTES: usize = 6;

/// What a run derives from its seed and start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunIdentity {
    /// 12 lowercase hex digits, in every order and payment id of the run.
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
        let tag = digest[..TAG_BYTES]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        RunIdentity { tag, digest }
    }

    /// The run's random generator: every choice of the run, event ids included.
    pub fn rng(&self) -> ChaCha8Rng {
        ChaCha8Rng::from_seed(self.digest)
    }

    /// "order_<tag>-<n>".
    pub fn order_id(&self, n: u64) -> String {
        format!("order_{}-{n}", self.tag)
    }

    /// "payment_<tag>-<n>".
    pub fn payment_id(&self, n: u64) -> String {
        format!("payment_{}-{n}", self.tag)
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
        assert_eq!(a.tag.len(), 12);
        assert!(a.tag.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a.tag, RunIdentity::new(8, start).tag);
        assert_ne!(
            a.tag,
            RunIdentity::new(7, start + Duration::nanoseconds(1)).tag
        );
        assert_eq!(a.order_id(12), format!("order_{}-12", a.tag));
        assert_eq!(a.payment_id(3), format!("payment_{}-3", a.tag));
    }
}
