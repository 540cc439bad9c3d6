//! The panels: each a named table computed from the snapshot under the request's filters,
//! answered as JSON for the page or as CSV for a download.

mod cell;
mod movies;
mod operations;
mod sales;

use serde::Serialize;

use crate::filters::Filters;
use crate::snapshot::Snapshot;
pub use cell::Cell;

/// What a panel computed.
#[derive(Debug, Default)]
pub struct Rows {
    pub rows: Vec<Vec<Cell>>,
    /// Source rows that passed the filters (0: nothing to show).
    pub matched: usize,
}

/// One panel.
pub struct PanelDef {
    pub name: &'static str,
    pub title: &'static str,
    /// The filters it applies; the others do not change it.
    pub applies: &'static [&'static str],
    pub columns: &'static [&'static str],
    /// Whether the lake holds any of its source rows at all.
    pub has_data: fn(&Snapshot) -> bool,
    /// What to tell a user when it does not.
    pub no_data: &'static str,
    pub build: fn(&Snapshot, &Filters) -> Rows,
}

/// Gold fills after `up` has run a job cycle, or after the bundle's medallion job.
const NO_GOLD: &str = "No data yet: Gold fills once `boxoffice up` has run a job cycle (or `boxoffice bundle run medallion`)";

/// Every panel, in page order.
pub const PANELS: [PanelDef; 13] = [
    sales::KPIS,
    sales::REVENUE_BY_CATEGORY,
    sales::BOOKINGS_BY_HOUR,
    sales::PAYMENT_MIX,
    sales::TOP_EVENTS,
    movies::KPIS,
    movies::REVENUE_BY_STATUS,
    movies::BOOKINGS_BY_MOVIE,
    movies::TICKETS_BY_STATUS,
    movies::REVENUE_BY_MOVIE,
    movies::STATUS_DISTRIBUTION,
    operations::FRESHNESS,
    operations::JOB_HEALTH,
];

/// The panel called `name`.
pub fn find(name: &str) -> Option<&'static PanelDef> {
    PANELS.iter().find(|p| p.name == name)
}

/// A panel's answer, as the API sends it.
#[derive(Debug, Serialize)]
pub struct Answer {
    pub panel: &'static str,
    pub title: &'static str,
    pub applies: &'static [&'static str],
    pub columns: &'static [&'static str],
    pub rows: Vec<Vec<Cell>>,
    pub empty: bool,
    pub message: Option<String>,
    pub generation: u64,
}

impl PanelDef {
    /// Computes the panel over `snapshot`.
    pub fn answer(&self, snapshot: &Snapshot, filters: &Filters) -> Answer {
        let built = (self.build)(snapshot, filters);
        let message = if !(self.has_data)(snapshot) {
            Some(self.no_data.to_string())
        } else if built.matched == 0 {
            Some("No rows match these filters".to_string())
        } else {
            None
        };
        Answer {
            panel: self.name,
            title: self.title,
            applies: self.applies,
            columns: self.columns,
            rows: built.rows,
            empty: message.is_some(),
            message,
            generation: snapshot.generation,
        }
    }
}

impl Answer {
    /// The rows as CSV with a header line (RFC 4180 quoting).
    pub fn csv(&self) -> String {
        let mut out = self.columns.join(",");
        out.push('\n');
        for row in &self.rows {
            let line: Vec<String> = row.iter().map(|c| quote(&c.text())).collect();
            out.push_str(&line.join(","));
            out.push('\n');
        }
        out
    }
}

fn quote(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

/// A rate, undefined when there is nothing to divide by.
pub fn ratio(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}
