//! The bookings-payments join as a state machine (docs/semantics.md), with no I/O.
//!
//! Events are fed in arrival order: by enqueued time, then hub, partition and sequence number, an
//! order that is a property of Bronze's contents, so everything below is a function of the data,
//! not of how it was cut into runs.
//!
//! - The **watermark** is the smaller of the two streams' largest join time seen, minus the
//!   allowed lateness. An event older than the watermark on arrival is **late**.
//! - A booking and a payment **match** on order_id when the payment's time is 0 to `window` after
//!   the booking's (event-time mode), or, in Stream Analytics mode, when their arrival minutes
//!   differ by 0, 1 or 2 (`DATEDIFF(minute, b, p) BETWEEN 0 AND 2`). Every matching pair yields a
//!   match: a failed attempt and its retry both count.
//! - A booking is kept until no event that is not late could still match it, then leaves as
//!   **unpaid** if it never matched; a payment likewise leaves as an **orphan**. Because nothing
//!   that could still match is ever evicted, evicting at the end of each run, or only at the end
//!   of the last, gives the same outputs.
//! - A **duplicate** (same event_uid) is dropped while the first is remembered: until the
//!   watermark passes its time plus the dedup horizon. The rule is checked at lookup, so it does
//!   not depend on when memory is cleaned either.

use std::collections::hash_map::Entry;
use std::sync::Arc;

use foldhash::HashMap;
use smallvec::SmallVec;

use boxoffice_events::model::PaymentStatus;

use super::expiry::ExpiryQueue;

pub use super::event::{
    ArrivalKey, BookingIn, EventUid, JoinEvent, MINUTE, Micros, PaymentIn, RawBody, order_key,
};

/// Which clock the join runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeMode {
    /// booking_time and payment_time, with a window in seconds (the default).
    EventTime,
    /// Arrival (enqueued) time and minute boundaries, as the demos' Stream Analytics query.
    StreamAnalytics,
}

/// Settings of the join.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JoinConfig {
    /// Longest a payment may follow its booking (event-time mode).
    pub window: Micros,
    /// How far behind the watermark trails the streams' largest time.
    pub lateness: Micros,
    /// How long past its time an event_uid is remembered for dropping duplicates.
    pub dedup_horizon: Micros,
    /// An event more than this ahead of its arrival does not move the watermark (a producer's
    /// clock far in the future must not make everyone else late).
    pub max_future: Micros,
    /// The clock.
    pub mode: TimeMode,
}

impl Default for JoinConfig {
    fn default() -> Self {
        JoinConfig {
            window: 2 * MINUTE,
            lateness: 30_000_000,
            dedup_horizon: 10 * MINUTE,
            max_future: 5 * MINUTE,
            mode: TimeMode::EventTime,
        }
    }
}

/// A booking and a payment that belong together.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    /// The booking.
    pub booking: Arc<BookingIn>,
    /// The payment.
    pub payment: Arc<PaymentIn>,
    /// The booking's first match: Gold counts the order here, once.
    pub first_for_booking: bool,
    /// The payment's first match: Gold counts the attempt and its amount here, once.
    pub first_for_payment: bool,
    /// The booking's first successful payment: its seats are sold here, once.
    pub sale: bool,
}

/// An event that arrived behind the watermark.
#[derive(Debug, Clone, PartialEq)]
pub struct Late {
    /// The event.
    pub event: JoinEvent,
    /// The watermark when it arrived.
    pub watermark: Micros,
}

/// What the join produced since the output was last taken.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct JoinOutput {
    /// Pairs to write to bookings_fact (one row per seat each).
    pub matches: Vec<Match>,
    /// Bookings that will never match.
    pub unpaid: Vec<Arc<BookingIn>>,
    /// Payments that will never match.
    pub orphans: Vec<Arc<PaymentIn>>,
    /// Events that arrived behind the watermark.
    pub late: Vec<Late>,
    /// Duplicates dropped.
    pub duplicates: u64,
    /// Bookings and payments accepted (neither duplicate nor late).
    pub accepted: u64,
    /// Kept events the watermark released after they had matched: nothing more is written of
    /// them, but they are handed back so the caller chooses where their memory is freed.
    pub released: Vec<JoinEvent>,
}

/// What the watermark is computed from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Marks {
    /// Largest booking join time seen.
    pub max_booking: Option<Micros>,
    /// Largest payment join time seen.
    pub max_payment: Option<Micros>,
    /// Set by a drain.
    pub floor: Option<Micros>,
}

/// A kept event and whether it has matched yet.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending<T> {
    /// The event.
    pub item: Arc<T>,
    /// Its join time, kept beside the pointer: matching and eviction test it for every candidate,
    /// and reading it through the pointer was a cache miss each time.
    pub time: Micros,
    /// Whether it has matched at least once.
    pub matched: bool,
    /// Whether it has matched a successful payment (bookings only).
    pub paid: bool,
}

/// Everything the join remembers between events (and, checkpointed, between runs).
#[derive(Debug, Clone)]
pub struct JoinState {
    config: JoinConfig,
    /// Largest join time seen on each stream.
    pub max_booking: Option<Micros>,
    /// Largest join time seen on each stream.
    pub max_payment: Option<Micros>,
    /// A lower bound set by a drain: the watermark never goes below it again.
    pub floor: Option<Micros>,
    /// Bookings that may still match, by [`order_key`] (an entry may hold several orders whose
    /// keys collide).
    pub bookings: HashMap<u64, OrderEvents<BookingIn>>,
    /// Payments that may still match, by [`order_key`].
    pub payments: HashMap<u64, OrderEvents<PaymentIn>>,
    /// Remembered event_uids (as [`uid_key`]s: millions of them, 16 bytes each) and their join
    /// time.
    pub seen: HashMap<u128, Micros>,
    /// When kept bookings and payments expire, earliest first, so eviction touches only what
    /// expires. Entries may be stale (already released); eviction checks.
    expiries: ExpiryQueue<(Kept, u64)>,
    /// When remembered uids expire, earliest first.
    uid_expiries: ExpiryQueue<u128>,
}

/// The events kept under one order key: nearly always one, held in the map's own slot (a heap
/// list per order was an allocation and a pointer to follow for every event).
pub type OrderEvents<T> = SmallVec<[Pending<T>; 1]>;

/// What an expiry entry refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kept {
    Booking,
    Payment,
}

impl JoinState {
    /// An empty state.
    pub fn new(config: JoinConfig) -> Self {
        JoinState {
            config,
            max_booking: None,
            max_payment: None,
            floor: None,
            bookings: HashMap::default(),
            payments: HashMap::default(),
            seen: HashMap::default(),
            expiries: ExpiryQueue::default(),
            uid_expiries: ExpiryQueue::default(),
        }
    }

    /// A state rebuilt from a checkpoint's parts.
    pub fn restore(
        config: JoinConfig,
        marks: Marks,
        bookings: Vec<Pending<BookingIn>>,
        payments: Vec<Pending<PaymentIn>>,
        seen: HashMap<u128, Micros>,
    ) -> Self {
        let mut state = JoinState::new(config);
        state.max_booking = marks.max_booking;
        state.max_payment = marks.max_payment;
        state.floor = marks.floor;
        for b in bookings {
            let order = b.item.order_key;
            state
                .expiries
                .push(booking_expiry(&config, b.time), (Kept::Booking, order));
            state.bookings.entry(order).or_default().push(b);
        }
        for p in payments {
            let order = p.item.order_key;
            state
                .expiries
                .push(payment_expiry(&config, p.time), (Kept::Payment, order));
            state.payments.entry(order).or_default().push(p);
        }
        for (uid, time) in &seen {
            state.uid_expiries.push(time + config.dedup_horizon, *uid);
        }
        state.seen = seen;
        state
    }

    /// The watermark's inputs, for a checkpoint.
    pub fn marks(&self) -> Marks {
        Marks {
            max_booking: self.max_booking,
            max_payment: self.max_payment,
            floor: self.floor,
        }
    }

    /// The settings.
    pub fn config(&self) -> &JoinConfig {
        &self.config
    }

    /// The current watermark: `None` until both streams have been seen (and nothing drained).
    pub fn watermark(&self) -> Option<Micros> {
        let streams = match (self.max_booking, self.max_payment) {
            (Some(b), Some(p)) => Some(b.min(p) - self.config.lateness),
            _ => None,
        };
        match (streams, self.floor) {
            (Some(w), Some(f)) => Some(w.max(f)),
            (w, f) => w.or(f),
        }
    }

    /// Whether a booking at `b` and a payment at `p` (join times) belong together.
    pub fn joins(&self, b: Micros, p: Micros) -> bool {
        joins(&self.config, b, p)
    }

    /// Feeds one event (in arrival order).
    pub fn process(&mut self, event: JoinEvent, out: &mut JoinOutput) {
        let time = match &event {
            JoinEvent::Booking(b) => booking_time(self.config.mode, b),
            JoinEvent::Payment(p) => payment_time(self.config.mode, p),
        };
        let watermark = self.watermark();
        let uid = event.uid_key();
        match self.seen.entry(uid) {
            Entry::Occupied(first)
                if watermark.is_none_or(|w| *first.get() + self.config.dedup_horizon >= w) =>
            {
                out.duplicates += 1;
                return;
            }
            Entry::Occupied(mut forgotten) => {
                forgotten.insert(time);
            }
            Entry::Vacant(new) => {
                new.insert(time);
            }
        }
        self.uid_expiries
            .push(time + self.config.dedup_horizon, uid);
        if let Some(w) = watermark
            && time < w
        {
            out.late.push(Late {
                event,
                watermark: w,
            });
            return;
        }
        out.accepted += 1;
        let event = event.without_body();
        let moves_watermark = time <= event.arrival().at + self.config.max_future;
        match event {
            JoinEvent::Booking(b) => {
                if moves_watermark {
                    self.max_booking = self.max_booking.max(Some(time));
                }
                self.add_booking(b, time, out);
            }
            JoinEvent::Payment(p) => {
                if moves_watermark {
                    self.max_payment = self.max_payment.max(Some(time));
                }
                self.add_payment(p, time, out);
            }
        }
    }

    fn add_booking(&mut self, b: Arc<BookingIn>, time: Micros, out: &mut JoinOutput) {
        let (mut matched, mut paid) = (false, false);
        if let Some(payments) = self.payments.get_mut(&b.order_key) {
            for p in payments.iter_mut() {
                if joins(&self.config, time, p.time)
                    && p.item.payment.order_id == b.booking.order_id
                {
                    let sale = !paid && p.item.payment.payment_status == PaymentStatus::Success;
                    out.matches.push(Match {
                        booking: Arc::clone(&b),
                        payment: Arc::clone(&p.item),
                        first_for_booking: !matched,
                        first_for_payment: !p.matched,
                        sale,
                    });
                    p.matched = true;
                    matched = true;
                    paid |= sale;
                }
            }
        }
        let order = b.order_key;
        self.expiries
            .push(booking_expiry(&self.config, time), (Kept::Booking, order));
        self.bookings.entry(order).or_default().push(Pending {
            item: b,
            time,
            matched,
            paid,
        });
    }

    fn add_payment(&mut self, p: Arc<PaymentIn>, time: Micros, out: &mut JoinOutput) {
        let mut matched = false;
        let success = p.payment.payment_status == PaymentStatus::Success;
        if let Some(bookings) = self.bookings.get_mut(&p.order_key) {
            for b in bookings.iter_mut() {
                if joins(&self.config, b.time, time)
                    && b.item.booking.order_id == p.payment.order_id
                {
                    let sale = success && !b.paid;
                    out.matches.push(Match {
                        booking: Arc::clone(&b.item),
                        payment: Arc::clone(&p),
                        first_for_booking: !b.matched,
                        first_for_payment: !matched,
                        sale,
                    });
                    b.matched = true;
                    b.paid |= sale;
                    matched = true;
                }
            }
        }
        let order = p.order_key;
        self.expiries
            .push(payment_expiry(&self.config, time), (Kept::Payment, order));
        self.payments.entry(order).or_default().push(Pending {
            item: p,
            time,
            matched,
            paid: false,
        });
    }

    /// Releases everything the watermark has passed: unmatched bookings as unpaid, unmatched
    /// payments as orphans, and remembered uids past the dedup horizon.
    pub fn evict(&mut self, out: &mut JoinOutput) {
        let Some(w) = self.watermark() else {
            return;
        };
        let config = self.config;
        let (bookings, payments) = (&mut self.bookings, &mut self.payments);
        self.expiries.pop_before(w, |(kind, key)| match kind {
            Kept::Booking => {
                let expired = take_expired(bookings, key, |b| w > booking_expiry(&config, b.time));
                for b in expired {
                    if b.matched {
                        out.released.push(JoinEvent::Booking(b.item));
                    } else {
                        out.unpaid.push(b.item);
                    }
                }
            }
            Kept::Payment => {
                let expired = take_expired(payments, key, |p| w > payment_expiry(&config, p.time));
                for p in expired {
                    if p.matched {
                        out.released.push(JoinEvent::Payment(p.item));
                    } else {
                        out.orphans.push(p.item);
                    }
                }
            }
        });
        let seen = &mut self.seen;
        self.uid_expiries.pop_before(w, |uid| {
            if seen
                .get(&uid)
                .is_some_and(|t| *t + config.dedup_horizon < w)
            {
                seen.remove(&uid);
            }
        });
    }

    /// Treats the input as complete: moves the watermark past every kept event, so each is
    /// released as matched, unpaid or orphan. Later events older than that are late.
    pub fn drain(&mut self, out: &mut JoinOutput) {
        let config = self.config;
        let booking_max = self
            .bookings
            .values()
            .flatten()
            .map(|b| booking_expiry(&config, b.time))
            .max();
        let payment_max = self
            .payments
            .values()
            .flatten()
            .map(|p| payment_expiry(&config, p.time))
            .max();
        if let Some(past) = booking_max.max(payment_max) {
            self.floor = self.floor.max(Some(past + 1));
        }
        self.evict(out);
    }

    /// Bookings and payments still kept.
    pub fn pending(&self) -> (usize, usize) {
        (
            self.bookings.values().map(SmallVec::len).sum(),
            self.payments.values().map(SmallVec::len).sum(),
        )
    }

    /// Kept bookings and payments that have not matched yet: what a drain would release as
    /// unpaid and orphan.
    pub fn unmatched(&self) -> (usize, usize) {
        fn count<T>(kept: &HashMap<u64, OrderEvents<T>>) -> usize {
            kept.values().flatten().filter(|p| !p.matched).count()
        }
        (count(&self.bookings), count(&self.payments))
    }
}

/// Removes and returns the items under `key` that `expired` says are done.
fn take_expired<T>(
    map: &mut HashMap<u64, OrderEvents<T>>,
    key: u64,
    expired: impl Fn(&Pending<T>) -> bool,
) -> OrderEvents<T> {
    let Some(items) = map.get_mut(&key) else {
        return OrderEvents::new();
    };
    if items.iter().all(&expired) {
        return map.remove(&key).unwrap_or_default();
    }
    let (done, kept): (OrderEvents<T>, OrderEvents<T>) =
        std::mem::take(items).into_iter().partition(expired);
    if kept.is_empty() {
        map.remove(&key);
    } else {
        *items = kept;
    }
    done
}

/// The time a booking joins on: its booking_time, or its arrival in Stream Analytics mode.
pub fn booking_time(mode: TimeMode, b: &BookingIn) -> Micros {
    match mode {
        TimeMode::EventTime => b.booking.booking_time.timestamp_micros(),
        TimeMode::StreamAnalytics => b.arrival.at,
    }
}

/// The time a payment joins on: its payment_time, or its arrival in Stream Analytics mode.
pub fn payment_time(mode: TimeMode, p: &PaymentIn) -> Micros {
    match mode {
        TimeMode::EventTime => p.payment.payment_time.timestamp_micros(),
        TimeMode::StreamAnalytics => p.arrival.at,
    }
}

/// Whether a booking at `b` and a payment at `p` (join times) belong together.
fn joins(config: &JoinConfig, b: Micros, p: Micros) -> bool {
    match config.mode {
        TimeMode::EventTime => (0..=config.window).contains(&(p - b)),
        TimeMode::StreamAnalytics => {
            (0..=2).contains(&(p.div_euclid(MINUTE) - b.div_euclid(MINUTE)))
        }
    }
}

/// The largest watermark at which a booking at `b` may still match: no event that is not late
/// can be a matching payment once the watermark is past it.
fn booking_expiry(config: &JoinConfig, b: Micros) -> Micros {
    match config.mode {
        TimeMode::EventTime => b + config.window,
        TimeMode::StreamAnalytics => (b.div_euclid(MINUTE) + 3) * MINUTE - 1,
    }
}

/// The largest watermark at which a payment at `p` may still match a booking yet to arrive.
fn payment_expiry(config: &JoinConfig, p: Micros) -> Micros {
    match config.mode {
        TimeMode::EventTime => p,
        TimeMode::StreamAnalytics => (p.div_euclid(MINUTE) + 1) * MINUTE - 1,
    }
}

#[cfg(test)]
#[path = "join_tests.rs"]
pub(crate) mod tests;
