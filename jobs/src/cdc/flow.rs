//! The flow's tables held open from one run to the next, and the changes the Bronze step has
//! just appended handed to the later steps.
//!
//! `up` runs cdc every 2 s. Opened afresh, each run loaded every table's log from its last
//! checkpoint about ten times (each step opened Bronze, its own table and the table before it)
//! and read the new changes back from Bronze three times. Held open, a run reads only the
//! commits made since the last, and the later steps take the changes from memory when they are
//! exactly the ones the Bronze step appended. A step that is further behind (after a crash
//! between steps, or another process's run) reads its changes back from Bronze, as before.

use boxoffice_lake::Lake;
use deltalake::DeltaTable;

use super::changes::ChangeRow;
use super::tables::{
    MOVIE_BOOKING_CDC_EVENTS as BRONZE, MOVIE_BOOKING_INSIGHTS as INSIGHTS,
    MOVIE_BOOKINGS_FILTERED as FILTERED, MOVIE_BOOKINGS_HISTORY as HISTORY,
};
use super::{CdcReport, movie_booking_cdc_events, movie_booking_insights};
use super::{movie_bookings_filtered, movie_bookings_history};
use crate::JobError;
use crate::ops::RAW_MOVIE_BOOKINGS as SOURCE;

/// The cdc job, for a caller that runs it again and again: its tables are opened at the first
/// run and brought up to date at each later one. A run that fails closes them, so the next
/// opens them afresh (another writer may have changed them in a way an update does not mend).
pub struct Flow {
    lake: Lake,
    tables: Option<Tables>,
}

/// The five tables of the flow, source first.
pub(crate) struct Tables {
    pub source: DeltaTable,
    pub bronze: DeltaTable,
    pub filtered: DeltaTable,
    pub history: DeltaTable,
    pub insights: DeltaTable,
}

/// The change rows the Bronze step appended in this run: those of source versions after
/// `after` (`None`: from the first) through `through`, decoded, in the order the later steps
/// apply them ([`super::changes::in_apply_order`]).
pub(crate) struct Fresh {
    pub after: Option<i64>,
    pub through: i64,
    pub rows: Vec<ChangeRow>,
}

impl Fresh {
    /// The rows of versions after `after` through `through`, if this run's append holds all of
    /// them.
    fn covering(&self, after: Option<i64>, through: i64) -> Option<Vec<ChangeRow>> {
        let (from, fresh_from) = (after.unwrap_or(-1), self.after.unwrap_or(-1));
        (from >= fresh_from && through <= self.through).then(|| {
            self.rows
                .iter()
                .filter(|r| r.commit_version > from && r.commit_version <= through)
                .cloned()
                .collect()
        })
    }
}

impl Flow {
    /// A flow on `lake`; nothing is opened until the first run.
    pub fn new(lake: &Lake) -> Flow {
        Flow {
            lake: lake.clone(),
            tables: None,
        }
    }

    /// Runs every step once over what is new (see [the module](super)).
    pub async fn run(&mut self) -> Result<CdcReport, JobError> {
        let result = self.run_steps().await;
        if result.is_err() {
            self.tables = None;
        }
        result
    }

    async fn run_steps(&mut self) -> Result<CdcReport, JobError> {
        let started = std::time::Instant::now();
        let lake = self.lake.clone();
        let Some(tables) = self.open().await? else {
            return Ok(CdcReport::default());
        };
        let mut report = CdcReport::default();
        let mut lap = std::time::Instant::now();
        let mut step = |i: usize, report: &mut CdcReport| {
            report.step_millis[i] = lap.elapsed().as_millis();
            lap = std::time::Instant::now();
        };
        let (bronze, fresh) =
            movie_booking_cdc_events::run(&tables.source, &mut tables.bronze).await?;
        report.versions = bronze.versions;
        report.changes = bronze.rows;
        step(0, &mut report);
        let fresh = fresh.as_ref();
        crate::crash_point("cdc:before:silver.movie_bookings_filtered");
        let filtered =
            movie_bookings_filtered::run(&lake, &mut tables.bronze, &mut tables.filtered, fresh)
                .await?;
        report.bookings_changed = filtered.bookings;
        report.quarantined = filtered.quarantined;
        step(1, &mut report);
        crate::crash_point("cdc:before:silver.movie_bookings_history");
        report.history_rows =
            movie_bookings_history::run(&mut tables.bronze, &mut tables.history, fresh).await?;
        step(2, &mut report);
        crate::crash_point("cdc:before:gold.movie_booking_insights");
        report.movies_refreshed = movie_booking_insights::run(
            &tables.bronze,
            &mut tables.filtered,
            &mut tables.insights,
            fresh,
        )
        .await?;
        step(3, &mut report);
        report.millis = started.elapsed().as_millis();
        Ok(report)
    }

    /// The tables, brought up to date: opened (and created but for the source) at the first
    /// run, updated at the next. `None` while the booking service has no table yet.
    async fn open(&mut self) -> Result<Option<&mut Tables>, JobError> {
        match &mut self.tables {
            Some(tables) => {
                boxoffice_lake::refresh::refresh(&mut tables.source, "cdc source")
                    .await
                    .map_err(|e| super::cdc_error(&SOURCE, e))?;
            }
            None => {
                let Some(source) = self.lake.open_table(&SOURCE).await? else {
                    return Ok(None);
                };
                self.tables = Some(Tables {
                    source,
                    bronze: self.lake.ensure_table(&BRONZE).await?,
                    filtered: self.lake.ensure_table(&FILTERED).await?,
                    history: self.lake.ensure_table(&HISTORY).await?,
                    insights: self.lake.ensure_table(&INSIGHTS).await?,
                });
            }
        }
        Ok(self.tables.as_mut())
    }
}

/// The Bronze changes after source version `after` through `through`, in order: from this
/// run's append when it holds them all, else read back from `bronze` (which the caller has
/// brought up to date).
pub(crate) async fn changes_between(
    bronze: &DeltaTable,
    fresh: Option<&Fresh>,
    after: Option<i64>,
    through: i64,
) -> Result<Vec<ChangeRow>, JobError> {
    match fresh.and_then(|f| f.covering(after, through)) {
        Some(rows) => Ok(rows),
        None => super::read_changes(bronze, after, through).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdc::changes::Booking;

    fn row(commit_version: i64) -> ChangeRow {
        ChangeRow {
            booking: Booking {
                booking_id: format!("S{commit_version}"),
                customer_id: None,
                movie_id: Some("M1".into()),
                booking_date: None,
                status: Some("BOOKED".into()),
                ticket_count: Some(1),
                ticket_price: None,
            },
            insert: true,
            is_update: false,
            change_timestamp: 0,
            commit_version,
        }
    }

    #[test]
    fn an_append_serves_only_the_versions_it_holds() {
        let fresh = Fresh {
            after: Some(4),
            through: 7,
            rows: (5..=7).map(row).collect(),
        };
        let versions = |rows: Option<Vec<ChangeRow>>| {
            rows.map(|r| r.iter().map(|c| c.commit_version).collect::<Vec<_>>())
        };
        assert_eq!(versions(fresh.covering(Some(4), 7)), Some(vec![5, 6, 7]));
        // A step already past part of it takes the rest.
        assert_eq!(versions(fresh.covering(Some(5), 7)), Some(vec![6, 7]));
        // A step further behind, or none yet, reads Bronze.
        assert_eq!(versions(fresh.covering(Some(3), 7)), None);
        assert_eq!(versions(fresh.covering(None, 7)), None);
        // Nor beyond what was appended.
        assert_eq!(versions(fresh.covering(Some(4), 8)), None);
        let first = Fresh {
            after: None,
            through: 2,
            rows: (0..=2).map(row).collect(),
        };
        assert_eq!(versions(first.covering(None, 2)), Some(vec![0, 1, 2]));
    }
}
