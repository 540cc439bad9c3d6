//! The catalog of shows that generated bookings are for.
//!
//! A real box office sells from a catalog that does not change with every producer restart, so
//! the catalog has its own fixed seed: `event17` is the same show in every run, whatever `--seed`.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use fake::Fake;
use fake::faker::address::en::{BuildingNumber, StreetName};
use fake::faker::name::en::LastName;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Seed of the standard catalog; fixed forever so show ids keep their meaning.
const CATALOG_SEED: u64 = 0x00B0_C50F_F1CE;

/// Kinds of show with their weight; the names carry the substrings the category derivation reads
/// (Concert -> Music, Play -> Theater, Movie -> Cinema, anything else -> Other).
const KINDS: [(&str, u32); 7] = [
    ("Concert", 25),
    ("Play", 15),
    ("Movie", 30),
    ("Comedy Show", 10),
    ("Cricket Match", 10),
    ("Football Match", 5),
    ("Opera", 5),
];

/// Cities of the venues, with their PIN code prefix: the demos are an Indian box office (INR,
/// UPI, IST), so the catalog is too.
const CITIES: [(&str, &str); 12] = [
    ("Mumbai", "400"),
    ("Delhi", "110"),
    ("Bengaluru", "560"),
    ("Hyderabad", "500"),
    ("Chennai", "600"),
    ("Kolkata", "700"),
    ("Pune", "411"),
    ("Ahmedabad", "380"),
    ("Jaipur", "302"),
    ("Lucknow", "226"),
    ("Kochi", "682"),
    ("Chandigarh", "160"),
];

/// Seat rows, front to back; front rows cost more.
pub const ROWS: [char; 10] = ['A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J'];

/// Seats per row.
pub const SEATS_PER_ROW: u32 = 30;

/// One show that can be booked.
#[derive(Debug, Clone, PartialEq)]
pub struct Show {
    /// "event17".
    pub event_id: String,
    /// "Mehta Live Concert".
    pub event_name: String,
    /// Venue name.
    pub venue: String,
    /// Multi-line street address, as the demos send it.
    pub event_location: String,
    /// City of the venue.
    pub city: String,
    /// When the show starts.
    pub starts_at: DateTime<Utc>,
    /// Seats the venue holds.
    pub capacity: u32,
    /// Price of a middle-row seat, in whole currency units.
    pub base_price: u32,
    /// Relative demand: popular shows get more orders.
    pub popularity: u32,
}

impl Show {
    /// Price of a seat in the given row: front rows 1.5x, back rows 0.75x, whole units.
    pub fn price_of_row(&self, row: char) -> u32 {
        let base = f64::from(self.base_price);
        let price = match row {
            'A' | 'B' => base * 1.5,
            'C'..='E' => base,
            _ => base * 0.75,
        };
        price.round() as u32
    }
}

/// Every show on sale, with cumulative popularity for weighted picking.
#[derive(Debug, Clone)]
pub struct Catalog {
    shows: Vec<Arc<Show>>,
    cumulative: Vec<u64>,
}

impl Catalog {
    /// The standard catalog of `size` shows, `event1` to `event<size>`, the same in every run.
    pub fn standard(size: usize) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(CATALOG_SEED);
        let anchor = Utc
            .with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or_default();
        let shows: Vec<Arc<Show>> = (1..=size.max(1))
            .map(|n| Arc::new(make_show(n, anchor, &mut rng)))
            .collect();
        let mut total = 0u64;
        let cumulative = shows
            .iter()
            .map(|s| {
                total += u64::from(s.popularity);
                total
            })
            .collect();
        Catalog { shows, cumulative }
    }

    /// The shows, in id order.
    pub fn shows(&self) -> &[Arc<Show>] {
        &self.shows
    }

    /// Picks a show, popular ones more often.
    pub fn pick<R: Rng + ?Sized>(&self, rng: &mut R) -> Arc<Show> {
        let total = self.cumulative.last().copied().unwrap_or(1);
        let x = rng.random_range(0..total);
        let i = self.cumulative.partition_point(|&c| c <= x);
        Arc::clone(&self.shows[i.min(self.shows.len() - 1)])
    }
}

fn make_show(n: usize, anchor: DateTime<Utc>, rng: &mut ChaCha8Rng) -> Show {
    let total: u32 = KINDS.iter().map(|(_, w)| w).sum();
    let mut x = rng.random_range(0..total);
    let kind = KINDS
        .iter()
        .find(|(_, w)| {
            if x < *w {
                true
            } else {
                x -= w;
                false
            }
        })
        .map_or("Concert", |(k, _)| k);
    let headliner: String = LastName().fake_with_rng(rng);
    let event_name = match kind {
        "Concert" => format!("{headliner} Live Concert"),
        "Play" => format!("The {headliner} Play"),
        "Movie" => format!("{headliner}: The Movie"),
        other => format!("{headliner} {other}"),
    };
    let (city, pin_prefix) = CITIES[rng.random_range(0..CITIES.len())];
    let street: String = StreetName().fake_with_rng(rng);
    let building: String = BuildingNumber().fake_with_rng(rng);
    let pin = format!("{pin_prefix}{:03}", rng.random_range(1..100));
    let venue_kind = match kind {
        "Movie" => "Cinema",
        "Cricket Match" | "Football Match" => "Stadium",
        "Play" | "Opera" => "Theatre",
        _ => "Arena",
    };
    Show {
        event_id: format!("event{n}"),
        event_name,
        venue: format!("{city} {venue_kind}"),
        event_location: format!("{building} {street}\n{city} {pin}"),
        city: city.to_string(),
        starts_at: anchor
            + Duration::days(rng.random_range(0..730))
            + Duration::minutes(rng.random_range(10 * 60..22 * 60) / 30 * 30),
        capacity: rng.random_range(4..=100) * 50,
        base_price: rng.random_range(10..=30) * 5,
        popularity: rng.random_range(1..=20),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_catalog_is_stable_and_named_for_categories() {
        let a = Catalog::standard(100);
        let b = Catalog::standard(100);
        assert_eq!(a.shows(), b.shows());
        assert_eq!(a.shows()[16].event_id, "event17");
        let has = |s: &str| a.shows().iter().any(|show| show.event_name.contains(s));
        assert!(has("Concert") && has("Play") && has("Movie"));
        assert!(
            a.shows().iter().any(|s| !["Concert", "Play", "Movie"]
                .iter()
                .any(|k| s.event_name.contains(k))),
            "some shows fall in category Other"
        );
    }

    #[test]
    fn front_rows_cost_more() {
        let catalog = Catalog::standard(10);
        let show = &catalog.shows()[0];
        assert!(show.price_of_row('A') > show.price_of_row('C'));
        assert!(show.price_of_row('C') > show.price_of_row('J'));
    }
}
