//! How fresh Gold is, as the process running the join and the Gold refresh measured it: for each
//! match, from its later event arriving (its Event Hubs enqueued time) to the end of the Gold
//! refresh that included it. Only that process knows both ends, so it writes the figures to
//! `_system/jobs/up/freshness.json` (about every second while `up` runs), and the dashboard's
//! freshness panel, in the same process or another, reads them from there.

use boxoffice_lake::{Lake, Layer};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::JobError;

/// The folder under `_system` the figures are written to.
pub const FOLDER: &str = "jobs/up";

/// The file, in [`FOLDER`].
pub const FILE: &str = "freshness.json";

/// Event-to-Gold lag over a recent window, and how the jobs were being run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoldFreshness {
    /// When these figures were taken.
    pub measured_at: DateTime<Utc>,
    /// When the jobs run: `continuous`, or `every 2s`.
    pub cadence: String,
    /// The window the figures cover, ending at `measured_at`.
    pub window_seconds: u64,
    /// Matches that reached Gold in the window.
    pub matches: u64,
    /// Their median lag, seconds (none without matches).
    pub median_seconds: Option<f64>,
    /// Their 95th-percentile lag, seconds.
    pub p95_seconds: Option<f64>,
    /// Runs of the join and Gold refresh in the window.
    pub runs: u64,
}

/// Replaces the figures on the lake.
pub async fn write(lake: &Lake, figures: &GoldFreshness) -> Result<(), JobError> {
    let text = serde_json::to_vec_pretty(figures)
        .map_err(|e| JobError::Gold(format!("encoding {FILE}: {e}")))?;
    lake.files(Layer::System, FOLDER)?
        .put(FILE, Bytes::from(text))
        .await?;
    Ok(())
}

/// The figures last written, if any.
pub async fn read(lake: &Lake) -> Result<Option<GoldFreshness>, JobError> {
    let Some(bytes) = lake.files(Layer::System, FOLDER)?.get(FILE).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| JobError::Gold(format!("reading _system/{FOLDER}/{FILE}: {e}")))
}

/// The median and 95th percentile of `values` (sorted in place), by nearest rank.
pub fn percentiles(values: &mut [f64]) -> Option<(f64, f64)> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    Some((at(0.5), at(0.95)))
}

/// Lags counted to the millisecond, for a whole run's median and p95 in bounded memory: a run
/// of hours at 5,000 events/s has tens of millions of matches. Lags from 0 to [`Self::SPAN_MS`]
/// are counted in 1 ms buckets (480 KB); the rare ones outside (a negative lag from a clock
/// ahead of the hub's, or one over a minute) are kept exactly.
#[derive(Debug, Clone)]
pub struct LagHistogram {
    /// Lags in `[ms, ms + 1)` milliseconds, by `ms`.
    buckets: Vec<u64>,
    /// Lags outside the buckets' span, seconds.
    outside: Vec<f64>,
}

impl Default for LagHistogram {
    fn default() -> Self {
        LagHistogram {
            buckets: vec![0; Self::SPAN_MS],
            outside: Vec::new(),
        }
    }
}

impl LagHistogram {
    /// Milliseconds the buckets span.
    pub const SPAN_MS: usize = 60_000;

    /// Counts each of `lags` (seconds).
    pub fn extend(&mut self, lags: &[f64]) {
        for &lag in lags {
            let ms = (lag * 1000.0).floor();
            if ms >= 0.0 && ms < Self::SPAN_MS as f64 {
                self.buckets[ms as usize] += 1;
            } else {
                self.outside.push(lag);
            }
        }
    }

    /// Lags counted.
    pub fn len(&self) -> u64 {
        self.buckets.iter().sum::<u64>() + self.outside.len() as u64
    }

    /// Whether none was counted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The median and 95th percentile by nearest rank, as [`percentiles`] gives them over the
    /// same lags, to within a millisecond (a bucket is read as its middle).
    pub fn percentiles(&mut self) -> Option<(f64, f64)> {
        if self.is_empty() {
            return None;
        }
        self.outside.sort_by(f64::total_cmp);
        let below = self.outside.partition_point(|l| *l < 0.0) as u64;
        let last = self.len() - 1;
        let rank = |q: f64| (last as f64 * q).round() as u64;
        Some((self.at(rank(0.5), below), self.at(rank(0.95), below)))
    }

    /// The lag of `rank` (0-based, in order), with `below` negative lags first.
    fn at(&self, rank: u64, below: u64) -> f64 {
        if rank < below {
            return self.outside[rank as usize];
        }
        let mut left = rank - below;
        for (ms, &n) in self.buckets.iter().enumerate() {
            if left < n {
                return (ms as f64 + 0.5) / 1000.0;
            }
            left -= n;
        }
        self.outside[(below + left) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_gives_the_percentiles_of_its_lags_to_the_millisecond() {
        let mut histogram = LagHistogram::default();
        assert_eq!(histogram.percentiles(), None);
        // A spread of lags with a long tail, a negative one and two over the buckets' span,
        // added in several calls as up adds each run's.
        let mut lags: Vec<f64> = (0..20_000u32)
            .map(|i| 0.2 + f64::from(i % 997) * 0.0007 + f64::from(i % 13) * 0.11)
            .collect();
        lags.extend([-0.25, 61.5, 3600.0]);
        for chunk in lags.chunks(777) {
            histogram.extend(chunk);
        }
        assert_eq!(histogram.len(), 20_003);
        let (p50, p95) = histogram.percentiles().expect("lags");
        let (exact50, exact95) = percentiles(&mut lags).expect("lags");
        assert!((p50 - exact50).abs() <= 0.001, "{p50} vs {exact50}");
        assert!((p95 - exact95).abs() <= 0.001, "{p95} vs {exact95}");

        // Lags outside the span are ranked exactly, below and above the buckets.
        let mut few = LagHistogram::default();
        few.extend(&[-0.5, 0.25, 120.0]);
        assert_eq!(few.percentiles(), Some((0.2505, 120.0)));
        let mut low = LagHistogram::default();
        low.extend(&[-0.5, -0.4, 0.25]);
        assert_eq!(low.percentiles(), Some((-0.4, 0.2505)));
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        assert_eq!(percentiles(&mut []), None);
        let mut values: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        // Ranks 0..=99: the median is rank 50 (round(49.5)), p95 rank 94 (round(94.05)).
        assert_eq!(percentiles(&mut values), Some((51.0, 95.0)));
        assert_eq!(percentiles(&mut [0.4]), Some((0.4, 0.4)));
    }

    #[tokio::test]
    async fn figures_survive_the_round_trip_through_the_lake() {
        let dir = tempfile::tempdir().expect("temp dir");
        let lake = Lake::local(&dir.path().join("lake")).expect("lake");
        assert_eq!(read(&lake).await.expect("read"), None);
        let figures = GoldFreshness {
            measured_at: DateTime::from_timestamp(1_800_000_000, 0).expect("time"),
            cadence: "continuous".to_string(),
            window_seconds: 60,
            matches: 12,
            median_seconds: Some(0.4),
            p95_seconds: Some(0.9),
            runs: 30,
        };
        write(&lake, &figures).await.expect("write");
        assert_eq!(read(&lake).await.expect("read"), Some(figures));
    }
}
