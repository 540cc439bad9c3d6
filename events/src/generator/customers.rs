//! Customers: `cust2000`, `cust2001`, ... the same person in every run.
//!
//! Every run numbers its new customers from 2000, so runs share customer ids, as returning
//! customers do. A customer's name and email are derived from the id alone (with a fixed seed,
//! like the catalog), so `cust2417` has one name and one email across runs, seeds and commands,
//! and the customer dimension built from any mix of runs stays consistent.

use std::sync::Arc;

use fake::Fake;
use fake::faker::internet::en::FreeEmailProvider;
use fake::faker::name::en::{FirstName, LastName};
use rand::{Rng, RngCore};

/// Seed of customer identities; fixed forever so customer ids keep their meaning.
const CUSTOMER_SEED: u64 = 0x00C5_7043_E125;

/// The first customer number of every run.
pub const FIRST_CUSTOMER: u64 = 2000;

/// Largest pool of returning customers kept.
const POOL: usize = 50_000;

/// One customer as bookings carry them.
#[derive(Debug, Clone, PartialEq)]
pub struct Customer {
    /// "cust2417".
    pub id: String,
    /// "Asha Rao".
    pub name: String,
    /// "asha.rao417@gmail.com".
    pub email: String,
}

impl Customer {
    /// Customer `number`, the same whenever it is made.
    pub fn numbered(number: u64) -> Customer {
        let mut rng = SplitMix(CUSTOMER_SEED ^ number.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let first: String = FirstName().fake_with_rng(&mut rng);
        let last: String = LastName().fake_with_rng(&mut rng);
        let provider: String = FreeEmailProvider().fake_with_rng(&mut rng);
        let local: String = format!("{first}.{last}")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
            .collect::<String>()
            .to_ascii_lowercase();
        Customer {
            id: format!("cust{number}"),
            name: format!("{first} {last}"),
            email: format!("{local}{}@{provider}", number % 1000),
        }
    }
}

/// SplitMix64: a customer's few draws need a generator that starts at once (most orders make a
/// new customer), not a stream cipher's setup; any well-mixed sequence picks names well enough.
struct SplitMix(u64);

impl RngCore for SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        for chunk in dst.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// A run's customers: new ones numbered in order, and a pool of those who come back.
pub(super) struct Customers {
    next: u64,
    pool: Vec<Arc<Customer>>,
}

impl Customers {
    pub fn new() -> Customers {
        Customers {
            next: FIRST_CUSTOMER,
            pool: Vec::new(),
        }
    }

    /// The customer of the next order: 30% of orders come from a returning customer.
    pub fn next<R: Rng + ?Sized>(&mut self, rng: &mut R) -> Arc<Customer> {
        if !self.pool.is_empty() && rng.random_bool(0.3) {
            let i = rng.random_range(0..self.pool.len());
            return Arc::clone(&self.pool[i]);
        }
        let customer = Arc::new(Customer::numbered(self.next));
        self.next += 1;
        if self.pool.len() < POOL {
            self.pool.push(Arc::clone(&customer));
        } else {
            let i = rng.random_range(0..POOL);
            self.pool[i] = Arc::clone(&customer);
        }
        customer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_customer_is_derived_from_the_number_alone() {
        let a = Customer::numbered(2417);
        assert_eq!(a, Customer::numbered(2417));
        assert_eq!(a.id, "cust2417");
        assert!(a.email.contains("417@"), "{}", a.email);
        assert_ne!(a.name, Customer::numbered(2418).name);
    }
}
