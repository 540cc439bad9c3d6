//! The operations panels: how fresh the lake is, and how its jobs have been running.

use std::collections::BTreeMap;

use boxoffice_bundle::Attempt;
use chrono::{DateTime, Utc};

use super::{Cell, PanelDef, Rows};

fn seconds_between(later: Option<DateTime<Utc>>, earlier: Option<DateTime<Utc>>) -> Option<f64> {
    later
        .zip(earlier)
        .map(|(l, e)| (l - e).num_milliseconds() as f64 / 1000.0)
}

pub const FRESHNESS: PanelDef = PanelDef {
    name: "freshness",
    title: "Freshness",
    applies: &[],
    columns: &[
        "last_event",
        "watermark",
        "gold_refreshed_at",
        "event_age_seconds",
        "watermark_lag_seconds",
        "gold_age_seconds",
        "newest_event_time",
        "gold_lag_median_seconds",
        "gold_lag_p95_seconds",
        "gold_lag_matches",
        "gold_lag_measured_at",
        "job_cadence",
    ],
    has_data: |s| s.last_event.is_some(),
    no_data: "No events in Bronze yet: `boxoffice up` generates and lands them",
    build: |s, _| {
        let now = Some(Utc::now());
        let gold = s.gold_refreshed_at();
        let lag = s.gold_lag.as_ref();
        Rows {
            rows: vec![vec![
                Cell::Time(s.last_event),
                Cell::Time(s.join.watermark),
                Cell::Time(gold),
                Cell::Number(seconds_between(now, s.last_event)),
                // Both in event time, so the lag means the same in compressed-time runs; a
                // drain moves the watermark past the newest event: nothing trails, so 0.
                Cell::Number(
                    seconds_between(s.join.newest_event, s.join.watermark).map(|l| l.max(0.0)),
                ),
                Cell::Number(seconds_between(now, gold)),
                Cell::Time(s.join.newest_event),
                Cell::Number(lag.and_then(|l| l.median_seconds)),
                Cell::Number(lag.and_then(|l| l.p95_seconds)),
                Cell::Int(lag.map_or(0, |l| l.matches as i64)),
                Cell::Time(lag.map(|l| l.measured_at)),
                Cell::Text(lag.map(|l| l.cadence.clone())),
            ]],
            matched: usize::from(s.last_event.is_some()),
        }
    },
};

/// One job task's record.
#[derive(Default)]
struct Health<'a> {
    last: Option<&'a Attempt>,
    runs: i64,
    failures: i64,
}

pub const JOB_HEALTH: PanelDef = PanelDef {
    name: "job_health",
    title: "Job health (_system.job_runs)",
    applies: &[],
    columns: &[
        "job",
        "task",
        "last_status",
        "last_started_at",
        "last_ended_at",
        "last_duration_ms",
        "runs",
        "failures",
        "last_error",
    ],
    has_data: |s| !s.job_runs.is_empty(),
    no_data: "No job runs recorded yet: `boxoffice up` records its job cycles, and the bundle (`boxoffice bundle run`) every task",
    build: |s, _| {
        let mut by: BTreeMap<(&str, &str), Health> = BTreeMap::new();
        for a in s.job_runs.iter() {
            let h = by.entry((a.job.as_str(), a.task.as_str())).or_default();
            h.runs += 1;
            h.failures += i64::from(a.status.is_failure());
            if h.last.is_none_or(|l| a.ended_at >= l.ended_at) {
                h.last = Some(a);
            }
        }
        let rows = by
            .into_iter()
            .filter_map(|((job, task), h)| {
                let last = h.last?;
                Some(vec![
                    Cell::Text(Some(job.to_string())),
                    Cell::Text(Some(task.to_string())),
                    Cell::Text(Some(last.status.as_str().to_string())),
                    Cell::Time(Some(last.started_at)),
                    Cell::Time(Some(last.ended_at)),
                    Cell::Int((last.ended_at - last.started_at).num_milliseconds()),
                    Cell::Int(h.runs),
                    Cell::Int(h.failures),
                    Cell::Text(last.error.clone()),
                ])
            })
            .collect();
        Rows {
            rows,
            matched: s.job_runs.len(),
        }
    },
};
