//! Pacing generated events against the wall clock: real time, compressed time, or unpaced.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::config::Pacing;

/// Releases each event when its simulated arrival time comes round on the (scaled) wall clock.
pub struct Pacer {
    pacing: Pacing,
    wall_start: Instant,
    sim_start: DateTime<Utc>,
}

impl Pacer {
    /// A pacer whose clock starts now at simulated time `sim_start`.
    pub fn new(pacing: Pacing, sim_start: DateTime<Utc>) -> Self {
        Pacer {
            pacing,
            wall_start: Instant::now(),
            sim_start,
        }
    }

    /// How long to wait before releasing an event arriving at `arrival` (zero when due).
    pub fn delay(&self, arrival: DateTime<Utc>) -> Duration {
        let Pacing::RealTime { speed } = self.pacing else {
            return Duration::ZERO;
        };
        let sim = (arrival - self.sim_start).as_seconds_f64().max(0.0);
        let due = Duration::from_secs_f64(sim / speed);
        due.saturating_sub(self.wall_start.elapsed())
    }

    /// Waits until `arrival` is due, or until `stop` turns true. Returns false when stopped.
    pub async fn wait(&self, arrival: DateTime<Utc>, stop: &mut watch::Receiver<bool>) -> bool {
        let delay = self.delay(arrival);
        // Timers are millisecond-grained; shorter waits are folded into the next one.
        if delay >= Duration::from_millis(1) {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.changed() => {}
            }
        }
        !*stop.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_time_divides_the_wait() {
        let start = Utc::now();
        let pacer = Pacer::new(Pacing::RealTime { speed: 60.0 }, start);
        let d = pacer.delay(start + chrono::Duration::seconds(120));
        assert!(
            d > Duration::from_millis(1900) && d <= Duration::from_secs(2),
            "{d:?}"
        );
        let unpaced = Pacer::new(Pacing::Unpaced, start);
        assert_eq!(
            unpaced.delay(start + chrono::Duration::hours(1)),
            Duration::ZERO
        );
    }
}
