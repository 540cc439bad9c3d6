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

#[cfg(test)]
mod tests {
    use super::*;

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
