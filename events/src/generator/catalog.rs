//! The catalog of shows that generated bookings are for.
//!
//! A real box office sells from a catalog that does not change with every producer restart, so
//! every show is derived from its number alone, with the catalog's own fixed seed: `event17` is
//! the same show (name, venue, seat map, price, popularity) in every run, whatever `--seed`.
//! Only its date depends on when it goes on sale: a show is put on for a date days to weeks after
//! that day, so its bookings always come before it starts.

use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveTime, TimeZone, Utc};
use fake::Fake;
use fake::faker::address::en::{BuildingNumber, StreetName};
use fake::faker::name::en::LastName;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Seed of the catalog; fixed forever so show numbers keep their meaning.
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

/// Days between the day a show goes on sale and its date: from half a week to six weeks.
const LEAD_DAYS: std::ops::RangeInclusive<i64> = 3..=45;

/// How long before the start a show stops selling: the box office closes sales an hour before.
pub const SALES_CLOSE_BEFORE: Duration = Duration::hours(1);

/// The instant the standard catalog (`data/event_catalog.csv`) is on sale from: the start of the
/// generator's default and of seeded `generate` runs.
pub fn standard_on_sale() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

/// One show that can be booked.
#[derive(Debug, Clone, PartialEq)]
pub struct Show {
    /// Its number in the catalog, the digits of its id.
    pub number: u64,
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
    /// When the show starts: days to weeks after the day it went on sale.
    pub starts_at: DateTime<Utc>,
    /// Seats the venue holds: exactly `rows * seats_per_row`, every one sellable once.
    pub capacity: u32,
    /// Rows of the seat map, front (`A`) to back.
    pub rows: u32,
    /// Seats in each row, numbered from 1.
    pub seats_per_row: u32,
    /// Price of a middle-row seat, in whole currency units.
    pub base_price: u32,
    /// Relative demand: popular shows get more orders.
    pub popularity: u32,
}

impl Show {
    /// Show `number` (1, 2, ...), put on sale at `on_sale`: everything but its date is the same
    /// whenever it goes on sale; its date is `LEAD_DAYS` after that day, at its fixed time.
    pub fn numbered(number: u64, on_sale: DateTime<Utc>) -> Show {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&CATALOG_SEED.to_le_bytes());
        seed[8..16].copy_from_slice(&number.to_le_bytes());
        let mut rng = ChaCha8Rng::from_seed(seed);
        make_show(number, on_sale, &mut rng)
    }

    /// The label of row `row` (0 = front): A ... Z, then AA, AB, ... as large venues letter them.
    pub fn row_label(row: u32) -> String {
        Show::seat_label(row, None)
    }

    /// "AA12": seat `seat` of row `row`, or the row's label alone for `None`.
    pub fn seat_label(row: u32, seat: Option<u32>) -> String {
        use std::fmt::Write;
        let mut letters = [0u8; 8];
        let mut start = letters.len();
        let mut n = row + 1;
        while n > 0 && start > 0 {
            n -= 1;
            start -= 1;
            letters[start] = b'A' + (n % 26) as u8;
            n /= 26;
        }
        let mut label = String::with_capacity(letters.len() - start + 10);
        label.extend(letters[start..].iter().map(|&b| char::from(b)));
        if let Some(seat) = seat {
            let _ = write!(label, "{seat}"); // writing to a String cannot fail
        }
        label
    }

    /// Price of a seat in row `row` (0 = front): the front fifth 1.5x, the back half 0.75x,
    /// whole units.
    pub fn price_of_row(&self, row: u32) -> u32 {
        let base = f64::from(self.base_price);
        let tenth = row * 10 / self.rows.max(1);
        let price = match tenth {
            0..2 => base * 1.5,
            2..5 => base,
            _ => base * 0.75,
        };
        price.round() as u32
    }

    /// When sales stop: no booking for the show is made at or after this instant.
    pub fn sales_close(&self) -> DateTime<Utc> {
        self.starts_at - SALES_CLOSE_BEFORE
    }
}

/// The shows on sale when a run starts: `event1` to `event<size>`.
#[derive(Debug, Clone)]
pub struct Catalog {
    shows: Vec<Arc<Show>>,
}

impl Catalog {
    /// The standard catalog of `size` shows as on sale from [`standard_on_sale`]: what
    /// `data/event_catalog.csv` holds for 100.
    pub fn standard(size: usize) -> Self {
        Catalog::on_sale_from(size, standard_on_sale())
    }

    /// `event1` to `event<size>` (at least one), put on sale at `on_sale`.
    pub fn on_sale_from(size: usize, on_sale: DateTime<Utc>) -> Self {
        let shows = (1..=size.max(1) as u64)
            .map(|n| Arc::new(Show::numbered(n, on_sale)))
            .collect();
        Catalog { shows }
    }

    /// The shows, in id order.
    pub fn shows(&self) -> &[Arc<Show>] {
        &self.shows
    }
}

/// The venue kind a show plays in, with its seat map: rows (a range) and seats per row.
fn venue_for(kind: &str) -> (&'static str, std::ops::RangeInclusive<u32>, u32) {
    match kind {
        "Movie" => ("Cinema", 8..=16, 20),
        "Play" | "Opera" => ("Theatre", 10..=30, 30),
        "Cricket Match" | "Football Match" => ("Stadium", 40..=100, 50),
        _ => ("Arena", 20..=60, 50),
    }
}

fn make_show(number: u64, on_sale: DateTime<Utc>, rng: &mut ChaCha8Rng) -> Show {
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
    let (venue_kind, row_range, seats_per_row) = venue_for(kind);
    let rows = rng.random_range(row_range);
    let lead_days = rng.random_range(LEAD_DAYS);
    // Shows start on the half hour between 10:00 and 21:30.
    let minutes = i64::from(rng.random_range(20u32..44) * 30);
    let on_sale_day = on_sale
        .with_time(NaiveTime::MIN)
        .single()
        .unwrap_or(on_sale);
    Show {
        number,
        event_id: format!("event{number}"),
        event_name,
        venue: format!("{city} {venue_kind}"),
        event_location: format!("{building} {street}\n{city} {pin}"),
        city: city.to_string(),
        starts_at: on_sale_day + Duration::days(lead_days) + Duration::minutes(minutes),
        capacity: rows * seats_per_row,
        rows,
        seats_per_row,
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
    fn a_show_is_the_same_whenever_it_goes_on_sale_except_its_date() {
        let jan = standard_on_sale();
        let later = jan + Duration::days(400) + Duration::hours(13);
        for n in [1, 17, 250, 10_000] {
            let a = Show::numbered(n, jan);
            let mut b = Show::numbered(n, later);
            assert_ne!(a.starts_at, b.starts_at);
            b.starts_at = a.starts_at;
            assert_eq!(a, b, "show {n}");
        }
    }

    #[test]
    fn shows_start_days_to_weeks_after_they_go_on_sale() {
        let on_sale = standard_on_sale() + Duration::hours(23) + Duration::minutes(59);
        for show in Catalog::on_sale_from(500, on_sale).shows() {
            let ahead = show.sales_close() - on_sale;
            assert!(ahead > Duration::days(1), "{}: {ahead}", show.event_id);
            assert!(ahead < Duration::days(47), "{}: {ahead}", show.event_id);
        }
    }

    #[test]
    fn capacity_is_the_seat_map() {
        for show in Catalog::standard(300).shows() {
            assert_eq!(show.capacity, show.rows * show.seats_per_row);
            assert!((100..=5000).contains(&show.capacity), "{show:?}");
        }
    }

    #[test]
    fn rows_are_lettered_like_a_venue() {
        let labels: Vec<String> = [0, 1, 25, 26, 27, 51, 52, 99]
            .into_iter()
            .map(Show::row_label)
            .collect();
        assert_eq!(labels, ["A", "B", "Z", "AA", "AB", "AZ", "BA", "CV"]);
    }

    #[test]
    fn front_rows_cost_more() {
        let show = Show::numbered(1, standard_on_sale());
        let back = show.rows - 1;
        assert!(show.price_of_row(0) > show.price_of_row(show.rows / 2 - 1));
        assert!(show.price_of_row(show.rows / 2 - 1) > show.price_of_row(back));
    }
}
