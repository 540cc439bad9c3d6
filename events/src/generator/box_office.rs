//! What is on sale and which seats are taken: each seat of a show is sold at most once.
//!
//! A fixed number of shows is on sale at any moment. An order picks one (popular shows more
//! often) and takes adjacent seats in a random row that still has free seats. A show leaves sale
//! when its last seat is taken or when its sales close (an hour before it starts); the next show
//! of the catalog goes on sale in its place, for a date days to weeks ahead. So the generator
//! never oversells, never books a show that has started, and never runs out of shows.
//!
//! Every step is O(1) but picking a show, which is O(log shows) over a Fenwick tree of their
//! popularity: a sell-out changes one weight, not the whole table.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use rand::Rng;

use super::catalog::Show;

/// Seats one order took.
pub(super) struct Booked {
    /// The show.
    pub show: Arc<Show>,
    /// Seat labels ("AA12") with their prices.
    pub seats: Vec<(String, u32)>,
}

/// The shows on sale and their seats.
pub(super) struct BoxOffice {
    slots: Vec<Slot>,
    demand: Weights,
    next_show: u64,
}

/// One show on sale.
struct Slot {
    show: Arc<Show>,
    closes_ms: i64,
    seats: SeatMap,
}

impl Slot {
    fn new(show: Show) -> Slot {
        Slot {
            closes_ms: show.sales_close().timestamp_millis(),
            seats: SeatMap::new(show.rows, show.seats_per_row),
            show: Arc::new(show),
        }
    }
}

impl BoxOffice {
    /// `size` shows from `event<first>` on sale from `start`.
    pub fn open(size: usize, start: DateTime<Utc>, first: u64) -> BoxOffice {
        let first = first.max(1);
        let slots: Vec<Slot> = (first..first + size.max(1) as u64)
            .map(|n| Slot::new(Show::numbered(n, start)))
            .collect();
        let demand = Weights::new(slots.iter().map(|s| u64::from(s.show.popularity)));
        BoxOffice {
            next_show: first + slots.len() as u64,
            slots,
            demand,
        }
    }

    /// Books up to `wanted` adjacent seats (fewer only at the end of a row) for an order made at
    /// `now_ms`, in a show on sale then.
    pub fn book<R: Rng + ?Sized>(&mut self, rng: &mut R, now_ms: i64, wanted: u32) -> Booked {
        let i = loop {
            let i = self.demand.pick(rng);
            if self.slots[i].closes_ms > now_ms {
                break i;
            }
            // Its sales closed since it was last picked: it gives way to a new show, whose
            // date is days ahead, so the next pick of this slot succeeds.
            self.replace(i, now_ms);
        };
        let slot = &mut self.slots[i];
        let (row, first, n) = slot.seats.take(rng, wanted);
        let price = slot.show.price_of_row(row);
        let seats = (first..first + n)
            .map(|k| (Show::seat_label(row, Some(k)), price))
            .collect();
        let show = Arc::clone(&slot.show);
        if slot.seats.free == 0 {
            self.replace(i, now_ms);
        }
        Booked { show, seats }
    }

    /// Puts the catalog's next show on sale in slot `i`, from `now_ms`.
    fn replace(&mut self, i: usize, now_ms: i64) {
        let on_sale = Utc
            .timestamp_millis_opt(now_ms)
            .single()
            .unwrap_or_default();
        let slot = Slot::new(Show::numbered(self.next_show, on_sale));
        self.next_show += 1;
        self.demand.set(i, u64::from(slot.show.popularity));
        self.slots[i] = slot;
    }
}

/// Which seats of a show are taken: rows fill from seat 1 up, so a row is one counter.
struct SeatMap {
    seats_per_row: u32,
    /// Seats taken in each row.
    taken: Vec<u32>,
    /// Rows with a free seat, in no order (a taken-up row is swapped out).
    open_rows: Vec<u32>,
    /// Free seats in all.
    free: u32,
}

impl SeatMap {
    fn new(rows: u32, seats_per_row: u32) -> SeatMap {
        SeatMap {
            seats_per_row,
            taken: vec![0; rows as usize],
            open_rows: (0..rows).collect(),
            free: rows * seats_per_row,
        }
    }

    /// Takes up to `wanted` adjacent seats in a random open row: (row, first seat number, how
    /// many). The map must have a free seat.
    fn take<R: Rng + ?Sized>(&mut self, rng: &mut R, wanted: u32) -> (u32, u32, u32) {
        let k = rng.random_range(0..self.open_rows.len());
        let row = self.open_rows[k];
        let taken = &mut self.taken[row as usize];
        let n = wanted.clamp(1, self.seats_per_row - *taken);
        let first = *taken + 1;
        *taken += n;
        if *taken == self.seats_per_row {
            self.open_rows.swap_remove(k);
        }
        self.free -= n;
        (row, first, n)
    }
}

/// Positive weights to draw an index by, changeable one at a time (a Fenwick tree).
struct Weights {
    /// 1-based partial sums.
    tree: Vec<u64>,
    values: Vec<u64>,
    total: u64,
}

impl Weights {
    fn new(values: impl Iterator<Item = u64>) -> Weights {
        let values: Vec<u64> = values.collect();
        let mut tree = vec![0; values.len() + 1];
        for (i, v) in values.iter().enumerate() {
            let mut j = i + 1;
            while j < tree.len() {
                tree[j] += v;
                j += j & j.wrapping_neg();
            }
        }
        Weights {
            total: values.iter().sum(),
            tree,
            values,
        }
    }

    fn set(&mut self, i: usize, value: u64) {
        let old = self.values[i];
        self.values[i] = value;
        self.total = self.total - old + value;
        let mut j = i + 1;
        while j < self.tree.len() {
            self.tree[j] = self.tree[j] - old + value;
            j += j & j.wrapping_neg();
        }
    }

    /// Index `i` with probability `values[i] / total`.
    fn pick<R: Rng + ?Sized>(&self, rng: &mut R) -> usize {
        let mut rest = rng.random_range(0..self.total.max(1));
        let mut pos = 0;
        let mut step = (self.tree.len() - 1).next_power_of_two();
        while step > 0 {
            let next = pos + step;
            if next < self.tree.len() && self.tree[next] <= rest {
                pos = next;
                rest -= self.tree[next];
            }
            step /= 2;
        }
        pos.min(self.values.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn weights_draw_in_proportion_and_follow_changes() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut w = Weights::new([1, 0, 3, 6].into_iter());
        let mut counts = [0u32; 4];
        for _ in 0..100_000 {
            counts[w.pick(&mut rng)] += 1;
        }
        assert_eq!(counts[1], 0);
        for (i, share) in [(0, 0.1), (2, 0.3), (3, 0.6)] {
            let measured = f64::from(counts[i]) / 100_000.0;
            assert!((measured - share).abs() < 0.01, "{i}: {measured}");
        }
        w.set(3, 0);
        w.set(1, 4);
        let mut counts = [0u32; 4];
        for _ in 0..100_000 {
            counts[w.pick(&mut rng)] += 1;
        }
        assert_eq!(counts[3], 0);
        let measured = f64::from(counts[1]) / 100_000.0;
        assert!((measured - 0.5).abs() < 0.01, "{measured}");
    }

    #[test]
    fn a_seat_map_hands_out_every_seat_once_then_is_full() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut map = SeatMap::new(7, 13);
        let mut seen = std::collections::HashSet::new();
        while map.free > 0 {
            let wanted = rng.random_range(1..=6);
            let (row, first, n) = map.take(&mut rng, wanted);
            assert!((1..=wanted).contains(&n));
            assert!(first + n - 1 <= 13);
            for seat in first..first + n {
                assert!(seen.insert((row, seat)), "row {row} seat {seat} twice");
            }
        }
        assert_eq!(seen.len(), 7 * 13);
        assert!(map.open_rows.is_empty());
    }

    #[test]
    fn a_sold_out_or_closed_show_gives_way_to_the_next_one() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let start = super::super::catalog::standard_on_sale();
        let mut office = BoxOffice::open(2, start, 1);
        let capacity: u32 = office.slots.iter().map(|s| s.show.capacity).sum();
        let now = start.timestamp_millis();
        let mut sold = 0;
        while sold <= capacity {
            sold += office.book(&mut rng, now, 6).seats.len() as u32;
        }
        assert!(
            office.next_show > 3,
            "event1 or event2 sold out and was replaced"
        );
        // Far in the future every show on sale has closed: the orders go to new shows.
        let later = now + 200 * 86_400_000;
        let booked = office.book(&mut rng, later, 2);
        assert!(booked.show.sales_close().timestamp_millis() > later);
        assert!(booked.show.number > 3);
    }
}
