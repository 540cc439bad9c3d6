//! `generate`: a timer (every 10 s) that sends the bookings and payments of the seconds since its
//! last tick, stamped on the host's clock.
//!
//! The instance keeps one generator between ticks, started at the first tick's time minus one
//! interval. Each tick takes the events whose arrival falls at or before the invocation's time
//! (`Metadata.sys.UtcNow`, else this machine's clock), so event times follow real time whatever
//! the tick rate: a tick never holds an event from its future, and (apart from the generator's
//! deliberately late arrivals) none older than the interval before it plus the generator's
//! arrival jitter. Payments wait in the generator until their time comes, as in `up`: most
//! within two minutes of their booking, a few ticks later.
//!
//! Pending payments live in the instance's memory. When the instance is recycled or scaled in,
//! or misses ticks for longer than two intervals (or its clock goes back as far), the next tick
//! starts a new generator (a new run tag) at its own time: payments still pending in the old one are never sent, and their
//! bookings end up in `silver.unpaid_bookings`, as any unpaid booking would.
//!
//! Several instances may generate at once: each draws a fresh seed, so order and payment ids
//! differ, and sells its own block of shows (`first_show`), since a generator knows only its own
//! seat maps. See docs/functions.md for the block rule and its limit.

use std::iter::Peekable;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use boxoffice_events::generator::run::fresh_seed;
use boxoffice_events::{GeneratedEvent, Generator, GeneratorConfig, Hub, Shares};
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::Handler;
use crate::protocol::{Failed, Invocation, Reply};

/// Shows per instance block: a generator at 1,000 events/s sells far fewer in a year.
pub const SHOWS_PER_BLOCK: u64 = 1_000_000_000;

/// Blocks an instance picks from (by its seed): two instances share one with a chance of one in
/// a million.
pub const BLOCKS: u64 = 1_000_000;

/// The `generate` function's settings and its generator between ticks.
pub struct Generating {
    /// Events per second, on average.
    pub rate: f64,
    /// The timer's interval (function.json's schedule): the first tick generates one interval.
    pub interval: Duration,
    state: Mutex<Option<Running>>,
}

struct Running {
    events: Peekable<Generator>,
    tag: String,
    first_show: u64,
    last_tick: DateTime<Utc>,
}

/// What one tick produced.
pub struct Tick {
    /// The events whose arrival came due, in arrival order.
    pub events: Vec<GeneratedEvent>,
    /// The run tag of the generator that made them.
    pub tag: String,
    /// Set when this tick started a new generator, with why.
    pub started: Option<String>,
}

impl Generating {
    /// Settings for the function; refuses a rate that is not a positive number.
    pub fn new(rate: f64, interval: Duration) -> Result<Generating, String> {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(format!(
                "the generate rate must be a positive number, not {rate}"
            ));
        }
        if interval <= Duration::zero() {
            return Err("the generate interval must be positive".into());
        }
        Ok(Generating {
            rate,
            interval,
            state: Mutex::new(None),
        })
    }

    /// The events that came due by `now`.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<Tick, Failed> {
        let mut state = self.state.lock().await;
        let why = match &*state {
            None => Some("first tick on this instance".to_string()),
            Some(run) if now - run.last_tick > self.interval * 2 => Some(format!(
                "no tick since {}: payments pending then are dropped",
                run.last_tick.to_rfc3339()
            )),
            Some(run) if run.last_tick - now > self.interval * 2 => Some(format!(
                "the clock went back from {}: payments pending then are dropped",
                run.last_tick.to_rfc3339()
            )),
            Some(_) => None,
        };
        if let Some(why) = &why {
            *state = Some(self.start(now - self.interval)?);
            tracing::info!(reason = %why, "generate: a new generator");
        }
        let Some(run) = state.as_mut() else {
            return Err(Failed("the generator did not start".into()));
        };
        let mut events = Vec::new();
        while run.events.peek().is_some_and(|e| e.arrival <= now) {
            events.extend(run.events.next());
        }
        run.last_tick = run.last_tick.max(now);
        Ok(Tick {
            events,
            tag: run.tag.clone(),
            started: why.map(|w| {
                format!(
                    "{w}; run {} sells shows from event{}",
                    run.tag, run.first_show
                )
            }),
        })
    }

    fn start(&self, start: DateTime<Utc>) -> Result<Running, Failed> {
        let seed = fresh_seed();
        let first_show = 1 + (seed % BLOCKS) * SHOWS_PER_BLOCK;
        // The functions send what Event Hubs will take: no deliberately malformed events (the
        // output binding would refuse them before Bronze could quarantine them).
        let generator = Generator::new(GeneratorConfig {
            seed,
            start,
            rate: self.rate,
            first_show,
            shares: Shares {
                malformed: 0.0,
                ..Shares::default()
            },
            ..GeneratorConfig::default()
        })
        .map_err(|e| Failed(format!("generator settings: {e}")))?;
        Ok(Running {
            tag: generator.run_tag().to_string(),
            events: generator.peekable(),
            first_show,
            last_tick: start,
        })
    }
}

/// The invocation's time: the host's `Metadata.sys.UtcNow`, else this machine's clock.
pub fn invocation_time(invocation: &Invocation) -> DateTime<Utc> {
    invocation
        .metadata
        .get("sys")
        .and_then(|sys| sys.get("UtcNow"))
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map_or_else(Utc::now, |t| t.with_timezone(&Utc))
}

/// `POST /generate`.
pub async fn invoke(
    State(handler): State<Arc<Handler>>,
    Json(timer): Json<Invocation>,
) -> Result<Reply, Failed> {
    let now = invocation_time(&timer);
    let tick = handler.generating.tick(now).await?;
    let mut by_hub: [(Hub, Vec<(String, String)>); 2] =
        [(Hub::Bookings, Vec::new()), (Hub::Payments, Vec::new())];
    for event in tick.events {
        if let Some((_, lane)) = by_hub.iter_mut().find(|(hub, _)| *hub == event.hub) {
            lane.push((event.order_id, event.body));
        }
    }
    let mut line = format!(
        "generate: {} bookings, {} payments up to {} (run {})",
        by_hub[0].1.len(),
        by_hub[1].1.len(),
        now.to_rfc3339(),
        tick.tag
    );
    if let Some(started) = &tick.started {
        line.push_str(&format!("; new generator: {started}"));
    }
    match &handler.direct {
        Some(direct) => {
            for (hub, events) in &by_hub {
                direct
                    .send(*hub, events)
                    .await
                    .map_err(|e| Failed(e.to_string()))?;
            }
            Ok(Reply::logged(format!(
                "{line}, sent over REST to partition CRC-32(order_id) mod partitions"
            )))
        }
        None => {
            let mut reply = Reply::logged(line);
            for (hub, events) in by_hub {
                reply = reply.output(hub.as_str(), as_objects(events)?);
            }
            Ok(reply)
        }
    }
}

fn as_objects(events: Vec<(String, String)>) -> Result<Value, Failed> {
    events
        .into_iter()
        .map(|(_, body)| {
            serde_json::from_str(&body).map_err(|e| {
                Failed(format!(
                    "the generator wrote an event that is not JSON: {e}"
                ))
            })
        })
        .collect::<Result<Vec<Value>, Failed>>()
        .map(Value::Array)
}
