//! The dashboard's copy of the lake: the rows its panels aggregate, re-read only when a table's
//! Delta version moved, so a request never waits on storage.

pub mod columns;
mod lineage;
pub mod rows;

use std::sync::Arc;

use boxoffice_bundle::Attempt;
use boxoffice_bundle::history::{self, JOB_RUNS};
use boxoffice_ingest::bronze::{BOOKINGS_RAW, PAYMENTS_RAW};
use boxoffice_jobs::cdc::tables::MOVIE_BOOKINGS_FILTERED;
use boxoffice_jobs::freshness::{self, GoldFreshness};
use boxoffice_jobs::gold::tables::{
    BOOKING_FUNNEL, EVENT_OCCUPANCY, EVENT_PERFORMANCE, PAYMENT_MIX,
};
use boxoffice_jobs::silver::tables::BOOKINGS_FACT;
use boxoffice_lake::{Lake, TableDef, read_rows};
use chrono::{DateTime, Utc};
use deltalake::DeltaTable;

use crate::DashboardError;
pub use lineage::JoinProgress;
use rows::{EventRow, FunnelRow, MovieBooking, OccupancyRow, PaymentRow};

/// Everything the panels read, as of one load.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Grows each time a load found something changed.
    pub generation: u64,
    /// When the last load ended.
    pub loaded_at: Option<DateTime<Utc>>,
    /// Why the last load failed (the previous rows are kept).
    pub last_error: Option<String>,
    pub funnel: Arc<Vec<FunnelRow>>,
    /// The event categories in the funnel and the events, for the category filter.
    pub categories: Arc<Vec<String>>,
    pub events: Arc<Vec<EventRow>>,
    pub occupancy: Arc<Vec<OccupancyRow>>,
    pub payments: Arc<Vec<PaymentRow>>,
    pub movies: Arc<Vec<MovieBooking>>,
    pub job_runs: Arc<Vec<Attempt>>,
    /// The newest Event Hubs enqueued time in Bronze.
    pub last_event: Option<DateTime<Utc>>,
    /// The Silver join's watermark and newest event time at its last commit.
    pub join: JoinProgress,
    /// Event-to-Gold lag over the last minute, as the process running the jobs (`up`) last
    /// wrote it.
    pub gold_lag: Option<GoldFreshness>,
}

impl Snapshot {
    /// The newest Gold refresh among the tables read.
    pub fn gold_refreshed_at(&self) -> Option<DateTime<Utc>> {
        self.funnel.iter().filter_map(|r| r.refreshed_at).max()
    }
}

/// One table followed from load to load.
struct Tracked {
    def: &'static TableDef,
    table: Option<DeltaTable>,
    seen: Option<u64>,
}

impl Tracked {
    fn new(def: &'static TableDef) -> Tracked {
        Tracked {
            def,
            table: None,
            seen: None,
        }
    }

    /// Brings the table to its latest version; `Some` when that is not the version last seen.
    async fn moved(&mut self, lake: &Lake) -> Result<Option<&DeltaTable>, DashboardError> {
        let updated = match &mut self.table {
            Some(table) => boxoffice_lake::refresh::refresh(table, "dashboard")
                .await
                .map_err(|e| lake.delta_error(self.def, e)),
            None => lake.open_table(self.def).await.map(|t| self.table = t),
        };
        if let Err(e) = updated {
            // Dropped or replaced underneath us: open it afresh next time.
            self.table = None;
            self.seen = None;
            return Err(e.into());
        }
        let version = self.table.as_ref().and_then(|t| t.version());
        if version.is_none() || version == self.seen {
            return Ok(None);
        }
        self.seen = version;
        Ok(self.table.as_ref())
    }
}

/// Loads snapshots, each from the previous one and what moved since.
pub struct Loader {
    lake: Lake,
    funnel: Tracked,
    events: Tracked,
    occupancy: Tracked,
    payments: Tracked,
    movies: Tracked,
    job_runs: Tracked,
    fact: Tracked,
    bookings_raw: Tracked,
    payments_raw: Tracked,
}

impl Loader {
    pub fn new(lake: Lake) -> Loader {
        Loader {
            lake,
            funnel: Tracked::new(&BOOKING_FUNNEL),
            events: Tracked::new(&EVENT_PERFORMANCE),
            occupancy: Tracked::new(&EVENT_OCCUPANCY),
            payments: Tracked::new(&PAYMENT_MIX),
            movies: Tracked::new(&MOVIE_BOOKINGS_FILTERED),
            job_runs: Tracked::new(&JOB_RUNS),
            fact: Tracked::new(&BOOKINGS_FACT),
            bookings_raw: Tracked::new(&BOOKINGS_RAW),
            payments_raw: Tracked::new(&PAYMENTS_RAW),
        }
    }

    /// The next snapshot: `previous` with every moved table read again. On an error the
    /// previous rows stay, with the error noted.
    pub async fn load(&mut self, previous: &Snapshot) -> Snapshot {
        let mut next = previous.clone();
        let changed = match self.read_moved(&mut next).await {
            Ok(changed) => {
                next.last_error = None;
                changed
            }
            Err(e) => {
                next.last_error = Some(e.to_string());
                true
            }
        };
        if changed {
            next.generation += 1;
        }
        next.loaded_at = Some(Utc::now());
        next
    }

    /// Reads what moved into `next`; true when anything did.
    async fn read_moved(&mut self, next: &mut Snapshot) -> Result<bool, DashboardError> {
        let lake = self.lake.clone();
        let mut changed = false;
        if let Some(t) = self.funnel.moved(&lake).await? {
            next.funnel = Arc::new(rows::funnel(&read(t).await?)?);
            changed = true;
        }
        if let Some(t) = self.events.moved(&lake).await? {
            next.events = Arc::new(rows::events(&read(t).await?)?);
            changed = true;
        }
        if changed {
            next.categories = Arc::new(categories(&next.funnel, &next.events));
        }
        if let Some(t) = self.occupancy.moved(&lake).await? {
            next.occupancy = Arc::new(rows::occupancy(&read(t).await?)?);
            changed = true;
        }
        if let Some(t) = self.payments.moved(&lake).await? {
            next.payments = Arc::new(rows::payments(&read(t).await?)?);
            changed = true;
        }
        if let Some(t) = self.movies.moved(&lake).await? {
            next.movies = Arc::new(rows::movies(&read(t).await?)?);
            changed = true;
        }
        if self.job_runs.moved(&lake).await?.is_some() {
            next.job_runs = Arc::new(
                history::read_all(&lake)
                    .await
                    .map_err(DashboardError::Read)?,
            );
            changed = true;
        }
        if let Some(t) = self.fact.moved(&lake).await? {
            let progress = lineage::join_progress(t).await?;
            next.join = JoinProgress {
                watermark: progress.watermark.or(next.join.watermark),
                newest_event: progress.newest_event.or(next.join.newest_event),
            };
            changed = true;
        }
        // A small file, not a table: read every load, kept when it has not changed.
        let gold_lag = freshness::read(&lake)
            .await
            .map_err(|e| DashboardError::Read(e.to_string()))?;
        if gold_lag.is_some() && gold_lag != next.gold_lag {
            next.gold_lag = gold_lag;
            changed = true;
        }
        for raw in [&mut self.bookings_raw, &mut self.payments_raw] {
            if let Some(t) = raw.moved(&lake).await? {
                next.last_event = next.last_event.max(lineage::newest_enqueued(t)?);
                changed = true;
            }
        }
        Ok(changed)
    }
}

/// Every category the rows name, sorted, once per load rather than per request.
fn categories(funnel: &[FunnelRow], events: &[EventRow]) -> Vec<String> {
    let from_funnel = funnel.iter().filter_map(|r| r.category.clone());
    let from_events = events.iter().filter_map(|r| r.category.clone());
    let set: std::collections::BTreeSet<String> = from_funnel.chain(from_events).collect();
    set.into_iter().collect()
}

async fn read(
    table: &DeltaTable,
) -> Result<Vec<deltalake::arrow::array::RecordBatch>, DashboardError> {
    read_rows(table)
        .await
        .map_err(|e| DashboardError::Read(e.to_string()))
}
