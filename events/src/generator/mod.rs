//! The event generator: a realistic, deterministic producer of bookings and payments.
//!
//! It simulates a box office in event time. Orders arrive as a Poisson process; each books 1-6
//! adjacent free seats of a show on sale (each seat is sold once; a sold-out show gives way to
//! the next one of the catalog); most are paid within two minutes, some later, some never;
//! payments fail and are retried; and delivery is as messy as Event Hubs producers really are:
//! duplicates (at-least-once), out-of-order arrival, and a few malformed bodies. Every share is a
//! setting. Order and payment ids carry a tag of the run ([`run`]), so runs never share keys.
//! The same seed and start give the same bytes; the stream comes out in arrival order, and each
//! event carries its simulated arrival time so a caller can pace it in real time, or faster
//! (compressed time). `docs/generator.md` describes what it produces.

mod box_office;
pub mod catalog;
pub mod customers;
mod malform;
pub mod run;
pub(crate) mod wire;

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use chrono::{DateTime, FixedOffset, SecondsFormat, TimeZone, Utc};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::model::{Hub, PaymentMethod, SchemaVersion};
use box_office::BoxOffice;
use catalog::Show;
use customers::{Customer, Customers};
use run::RunIdentity;
use wire::{BookingWire, CustomerWire, EventDetailsWire, PaymentWire, Price, SeatWire};

/// How often each kind of mess or outcome happens; each is a probability in 0..=1.
#[derive(Debug, Clone, PartialEq)]
pub struct Shares {
    /// Bookings that are never paid.
    pub unpaid: f64,
    /// Paid bookings whose first payment comes more than the join window after the booking.
    pub late_payment: f64,
    /// Payment attempts that fail (a failed attempt is retried, up to `max_retries` times).
    pub failed: f64,
    /// Events delivered twice (at-least-once delivery).
    pub duplicate: f64,
    /// Events that arrive 5-15 minutes after their own time (far out of order).
    pub late_arrival: f64,
    /// Events whose body is corrupted (quarantined downstream).
    pub malformed: f64,
    /// Orders sent in the legacy demo shape (v0).
    pub v0: f64,
    /// Orders sent in schema v2 (the rest are v1).
    pub v2: f64,
}

impl Default for Shares {
    fn default() -> Self {
        Shares {
            unpaid: 0.05,
            late_payment: 0.05,
            failed: 0.08,
            duplicate: 0.01,
            late_arrival: 0.01,
            malformed: 0.005,
            v0: 0.05,
            v2: 0.25,
        }
    }
}

/// Why a generator configuration was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GeneratorError {
    /// A share outside 0..=1.
    #[error("share {name} must be between 0 and 1, got {value}")]
    ShareOutOfRange {
        /// Which share.
        name: &'static str,
        /// Its value.
        value: f64,
    },
    /// v0 and v2 shares together over 1.
    #[error("v0 and v2 shares add up to {0}, more than 1")]
    VersionsOverOne(f64),
    /// A rate that is not a positive number.
    #[error("rate must be a positive number of events per second, got {0}")]
    BadRate(f64),
}

impl Shares {
    fn check(&self) -> Result<(), GeneratorError> {
        let all = [
            ("unpaid", self.unpaid),
            ("late_payment", self.late_payment),
            ("failed", self.failed),
            ("duplicate", self.duplicate),
            ("late_arrival", self.late_arrival),
            ("malformed", self.malformed),
            ("v0", self.v0),
            ("v2", self.v2),
        ];
        for (name, value) in all {
            if !(0.0..=1.0).contains(&value) {
                return Err(GeneratorError::ShareOutOfRange { name, value });
            }
        }
        if self.v0 + self.v2 > 1.0 {
            return Err(GeneratorError::VersionsOverOne(self.v0 + self.v2));
        }
        Ok(())
    }
}

/// Everything that determines the generated stream.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorConfig {
    /// Seed of every random choice, with `start`: together they are the run's identity.
    pub seed: u64,
    /// Simulated time of the first order.
    pub start: DateTime<Utc>,
    /// Events per simulated second, on average, duplicates included.
    pub rate: f64,
    /// Shows on sale at once: `event1` to `event<catalog_size>` at the start; a show that sells
    /// out or closes gives way to the catalog's next one.
    pub catalog_size: usize,
    /// The catalog number of the first show on sale (1: `event1`). A run on a lake where an
    /// earlier run sold shows starts after them, so no show is sold by two runs (each run knows
    /// only its own seat maps) and none is oversold.
    pub first_show: u64,
    /// The bookings-payments join window; "late" payments come after it.
    pub join_window_secs: i64,
    /// Normal arrival jitter: events arrive up to this long after their own time.
    pub max_disorder_ms: i64,
    /// Retries after a failed payment attempt.
    pub max_retries: u32,
    /// Outcome and mess shares.
    pub shares: Shares,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            seed: 0,
            start: catalog::standard_on_sale(),
            rate: 100.0,
            catalog_size: 100,
            first_show: 1,
            join_window_secs: 120,
            max_disorder_ms: 2_000,
            max_retries: 2,
            shares: Shares::default(),
        }
    }
}

/// One generated event, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedEvent {
    /// The hub it is sent to (malformed events keep their original hub).
    pub hub: Hub,
    /// Its order, the Event Hubs partition key.
    pub order_id: String,
    /// Simulated time it reaches the hub; the stream is sorted by it.
    pub arrival: DateTime<Utc>,
    /// The JSON body, one line.
    pub body: String,
}

/// A payment attempt decided at booking time but rendered only when it comes due: payments sit
/// in the schedule for minutes, and a rendered body is several times the size of its plan.
struct PaymentPlan {
    version: SchemaVersion,
    order_id: String,
    at_ms: i64,
    seat_total: f64,
    method: PaymentMethod,
    failed: bool,
    payment_id: String,
}

enum Pending {
    Ready(GeneratedEvent),
    Payment(PaymentPlan),
}

/// The random fate of one delivery.
struct Delivery {
    malformed: bool,
    delay_ms: i64,
    duplicate: bool,
    redelivery_ms: i64,
}

/// A scheduled item; boxed, so the heap moves 24 bytes, not a whole event, on each sift.
struct Scheduled {
    arrival_ms: i64,
    seq: u64,
    item: Box<Pending>,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    /// Reversed, so the max-heap pops the earliest arrival (ties: first scheduled).
    fn cmp(&self, other: &Self) -> Ordering {
        (other.arrival_ms, other.seq).cmp(&(self.arrival_ms, self.seq))
    }
}

/// India Standard Time, the zone BookMyShow-style producers stamp local times in.
const IST: FixedOffset = match FixedOffset::east_opt(5 * 3600 + 1800) {
    Some(offset) => offset,
    None => panic!("+05:30 is a valid offset"),
};

/// The generator: an endless iterator of events in arrival order.
pub struct Generator {
    config: GeneratorConfig,
    run: RunIdentity,
    rng: ChaCha8Rng,
    box_office: BoxOffice,
    pending: BinaryHeap<Scheduled>,
    next_order_at_ms: f64,
    mean_gap_ms: f64,
    next_order: u64,
    next_payment: u64,
    scheduled: u64,
    customers: Customers,
}

impl Generator {
    /// A generator for `config`; refuses shares out of range and non-positive rates.
    pub fn new(config: GeneratorConfig) -> Result<Self, GeneratorError> {
        config.shares.check()?;
        if !(config.rate.is_finite() && config.rate > 0.0) {
            return Err(GeneratorError::BadRate(config.rate));
        }
        let s = &config.shares;
        let attempts: f64 = (0..=config.max_retries as i32)
            .map(|k| s.failed.powi(k))
            .sum();
        let events_per_order = (1.0 + (1.0 - s.unpaid) * attempts) * (1.0 + s.duplicate);
        let mean_gap_ms = 1000.0 * events_per_order / config.rate;
        let run = RunIdentity::new(config.seed, config.start);
        Ok(Generator {
            rng: run.rng(),
            run,
            box_office: BoxOffice::open(config.catalog_size, config.start, config.first_show),
            pending: BinaryHeap::new(),
            next_order_at_ms: config.start.timestamp_millis() as f64,
            mean_gap_ms,
            next_order: 1,
            next_payment: 1,
            scheduled: 0,
            customers: Customers::new(),
            config,
        })
    }

    /// The run's tag, in every order and payment id it makes (`order_<tag>-<n>`).
    pub fn run_tag(&self) -> &str {
        &self.run.tag
    }

    fn create_order(&mut self, booked_at_ms: i64) {
        let version = self.pick_version();
        let order_id = self.run.order_id(self.next_order);
        self.next_order += 1;
        let customer = self.customers.next(&mut self.rng);
        let wanted = self.party_size();
        let booked = self.box_office.book(&mut self.rng, booked_at_ms, wanted);
        let (show, seats) = (booked.show, booked.seats);
        let seat_total: f64 = seats.iter().map(|(_, p)| f64::from(*p)).sum();
        let booking = self.booking_body(version, &order_id, booked_at_ms, &customer, &show, &seats);
        let delivery = self.delivery();
        self.schedule(Hub::Bookings, &order_id, booked_at_ms, booking, delivery);

        if self.rng.random_bool(self.config.shares.unpaid) {
            return;
        }
        let window_ms = self.config.join_window_secs * 1000;
        let mut paid_at = booked_at_ms
            + if self.rng.random_bool(self.config.shares.late_payment) {
                self.rng
                    .random_range(window_ms + 1_000..=window_ms + 780_000)
            } else {
                // Most people pay within a minute; the tail stops short of the window.
                let expo = -self.rng.random::<f64>().max(1e-12).ln() * 25_000.0;
                3_000 + (expo as i64).min(window_ms - 13_000)
            };
        let method = self.pick_method();
        for _ in 0..=self.config.max_retries {
            let failed = self.rng.random_bool(self.config.shares.failed);
            let plan = PaymentPlan {
                version,
                order_id: order_id.clone(),
                at_ms: paid_at,
                seat_total,
                method,
                failed,
                payment_id: self.run.payment_id(self.next_payment),
            };
            self.next_payment += 1;
            self.schedule_payment(plan);
            if !failed {
                break;
            }
            paid_at += self.rng.random_range(10_000..=40_000);
        }
    }

    fn pick_version(&mut self) -> SchemaVersion {
        let x: f64 = self.rng.random();
        let s = &self.config.shares;
        if x < s.v0 {
            SchemaVersion::V0
        } else if x < s.v0 + s.v2 {
            SchemaVersion::V2
        } else {
            SchemaVersion::V1
        }
    }

    fn pick_method(&mut self) -> PaymentMethod {
        match self.rng.random_range(0..100) {
            0..35 => PaymentMethod::CreditCard,
            35..60 => PaymentMethod::DebitCard,
            60..75 => PaymentMethod::PayPal,
            _ => PaymentMethod::Upi,
        }
    }

    /// How many seats an order wants: mostly two, up to six.
    fn party_size(&mut self) -> u32 {
        match self.rng.random_range(0..100) {
            0..15 => 1,
            15..55 => 2,
            55..70 => 3,
            70..90 => 4,
            90..95 => 5,
            _ => 6,
        }
    }

    fn event_id(&mut self, version: SchemaVersion) -> Option<String> {
        (version != SchemaVersion::V0).then(|| {
            uuid::Builder::from_random_bytes(self.rng.random())
                .into_uuid()
                .hyphenated()
                .to_string()
        })
    }

    fn timestamp(&mut self, version: SchemaVersion, ms: i64) -> String {
        let t = Utc.timestamp_millis_opt(ms).single().unwrap_or_default();
        match version {
            // The demos' format: whole seconds, "Z".
            SchemaVersion::V0 => t.to_rfc3339_opts(SecondsFormat::Secs, true),
            // v2 producers in India send local time with its offset half the time.
            SchemaVersion::V2 if self.rng.random_bool(0.5) => t
                .with_timezone(&IST)
                .to_rfc3339_opts(SecondsFormat::Millis, false),
            _ => t.to_rfc3339_opts(SecondsFormat::Millis, true),
        }
    }

    fn booking_body(
        &mut self,
        version: SchemaVersion,
        order_id: &str,
        at_ms: i64,
        customer: &Customer,
        show: &Show,
        seats: &[(String, u32)],
    ) -> String {
        let event_id = self.event_id(version);
        let booking_time = self.timestamp(version, at_ms);
        let v2 = version == SchemaVersion::V2;
        let channel = match self.rng.random_range(0..10) {
            0..5 => "web",
            5..9 => "app",
            _ => "box_office",
        };
        let starts_at = show.starts_at.to_rfc3339_opts(SecondsFormat::Secs, true);
        let wire = BookingWire {
            schema_version: (version != SchemaVersion::V0).then(|| version.number()),
            event_id: event_id.as_deref(),
            order_id,
            booking_time: &booking_time,
            customer: CustomerWire {
                customer_id: &customer.id,
                name: &customer.name,
                email: &customer.email,
            },
            event_details: EventDetailsWire {
                event_id: &show.event_id,
                event_name: &show.event_name,
                event_location: &show.event_location,
                seats: seats
                    .iter()
                    .map(|(n, p)| SeatWire {
                        seat_number: n,
                        price: Price {
                            value: f64::from(*p),
                            version,
                        },
                    })
                    .collect(),
                city: v2.then_some(show.city.as_str()),
                starts_at: v2.then_some(starts_at.as_str()),
            },
            channel: v2.then_some(channel),
            currency: v2.then_some("INR"),
        };
        json_body(&wire, 768)
    }

    fn payment_body(&mut self, plan: &PaymentPlan) -> String {
        let version = plan.version;
        let event_id = self.event_id(version);
        let payment_time = self.timestamp(version, plan.at_ms);
        let v2 = version == SchemaVersion::V2;
        // v2 adds a 2% booking fee, in paise-exact decimals.
        let fee = v2.then(|| (plan.seat_total * 2.0).round() / 100.0);
        let wire = PaymentWire {
            schema_version: (version != SchemaVersion::V0).then(|| version.number()),
            event_id: event_id.as_deref(),
            payment_id: &plan.payment_id,
            order_id: &plan.order_id,
            payment_time: &payment_time,
            amount: Price {
                value: plan.seat_total + fee.unwrap_or(0.0),
                version,
            },
            payment_method: plan.method.as_str(),
            payment_status: if plan.failed { "Failed" } else { "Success" },
            currency: v2.then_some("INR"),
            fee,
        };
        json_body(&wire, 384)
    }

    /// Schedules a payment; its body is rendered when it comes due, unless it must exist now
    /// (to be corrupted, or delivered twice with the same bytes).
    fn schedule_payment(&mut self, plan: PaymentPlan) {
        let delivery = self.delivery();
        if delivery.malformed || delivery.duplicate {
            let body = self.payment_body(&plan);
            self.schedule(Hub::Payments, &plan.order_id, plan.at_ms, body, delivery);
        } else {
            self.push(plan.at_ms + delivery.delay_ms, Pending::Payment(plan));
        }
    }

    /// How one event will be delivered; every random choice about it, made once.
    fn delivery(&mut self) -> Delivery {
        let shares = &self.config.shares;
        let (malformed, late, duplicate) =
            (shares.malformed, shares.late_arrival, shares.duplicate);
        Delivery {
            malformed: self.rng.random_bool(malformed),
            delay_ms: if self.rng.random_bool(late) {
                self.rng.random_range(300_000..=900_000)
            } else {
                self.rng
                    .random_range(0..=self.config.max_disorder_ms.max(0))
            },
            duplicate: self.rng.random_bool(duplicate),
            redelivery_ms: self.rng.random_range(1_000..=60_000),
        }
    }

    /// Queues a rendered event (and its duplicate, if any) at its arrival time, corrupted if
    /// the delivery says so.
    fn schedule(&mut self, hub: Hub, order_id: &str, at_ms: i64, body: String, d: Delivery) {
        let body = if d.malformed {
            malform::malform(&body, hub, &mut self.rng)
        } else {
            body
        };
        let arrival_ms = at_ms + d.delay_ms;
        let event = GeneratedEvent {
            hub,
            order_id: order_id.to_string(),
            arrival: millis(arrival_ms),
            body,
        };
        if d.duplicate {
            let mut copy = event.clone();
            copy.arrival = millis(arrival_ms + d.redelivery_ms);
            self.push(arrival_ms + d.redelivery_ms, Pending::Ready(copy));
        }
        self.push(arrival_ms, Pending::Ready(event));
    }

    fn push(&mut self, arrival_ms: i64, item: Pending) {
        self.scheduled += 1;
        self.pending.push(Scheduled {
            arrival_ms,
            seq: self.scheduled,
            item: Box::new(item),
        });
    }

    fn render(&mut self, arrival_ms: i64, item: Pending) -> GeneratedEvent {
        match item {
            Pending::Ready(event) => event,
            Pending::Payment(plan) => GeneratedEvent {
                hub: Hub::Payments,
                body: self.payment_body(&plan),
                order_id: plan.order_id,
                arrival: millis(arrival_ms),
            },
        }
    }
}

/// A wire struct as one line of JSON, written into a buffer sized for its kind of body so it
/// does not grow (and copy itself) on the way: bodies are a few hundred bytes.
fn json_body(wire: &impl serde::Serialize, capacity: usize) -> String {
    let mut out = Vec::with_capacity(capacity);
    if serde_json::to_writer(&mut out, wire).is_err() {
        return String::new();
    }
    // serde_json writes valid UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

fn millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

impl Iterator for Generator {
    type Item = GeneratedEvent;

    fn next(&mut self) -> Option<GeneratedEvent> {
        loop {
            let now = self.next_order_at_ms as i64;
            if self.pending.peek().is_some_and(|s| s.arrival_ms <= now)
                && let Some(s) = self.pending.pop()
            {
                return Some(self.render(s.arrival_ms, *s.item));
            }
            self.create_order(now);
            let u: f64 = self.rng.random::<f64>().max(1e-12);
            self.next_order_at_ms += -u.ln() * self.mean_gap_ms;
        }
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

#[cfg(test)]
#[path = "sales_tests.rs"]
mod sales_tests;
