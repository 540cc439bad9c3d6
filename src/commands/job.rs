//! `boxoffice job run`: one job, once, over what is new; and the job cycle `up` repeats.

use std::time::Instant;

use anyhow::bail;
use boxoffice_jobs::gold::{self, Refresh, RefreshReport};
use boxoffice_jobs::silver::bookings_fact::BookingsFact;
use boxoffice_lake::Lake;
use chrono::Utc;

use super::booking_changes::BookingChanges;
use crate::cli::{GlobalArgs, JobCommand, JobName, JobRunArgs};
use crate::config::{self, FileConfig};
use crate::leases::{Leases, Taking};
use crate::progress::thousands;

pub async fn run(global: &GlobalArgs, command: JobCommand) -> anyhow::Result<()> {
    let JobCommand::Run(args) = command;
    check_options(&args)?;
    let file = config::load(global)?;
    let lake = config::lake(global, &file)?;
    lake.prepare().await?;
    let mut leases = match args.name {
        JobName::BookingsFact => {
            let some = (!args.shard.is_empty()).then_some(args.shard.as_slice());
            crate::leases::join_leases(&lake, &file, some).await?
        }
        other => vec![other.lease().to_string()],
    };
    if args.name == JobName::BookingsFact && (args.full_refresh || args.backfill.is_some()) {
        leases.push(JobName::Gold.lease().to_string()); // Gold is rebuilt or refreshed after them
    }
    if args.name == JobName::BookingsFact && (args.backfill.is_some() || args.drain) {
        // Nothing lands meanwhile, so every landed event can be taken before the backfill or
        // the drain (and a drain is refused while a producer still lands).
        leases.push(crate::leases::LANDING.to_string());
    }
    let leases = Leases::take(
        &lake,
        &leases,
        &format!("boxoffice job run {}", args.name.lease()),
        Taking::from_file(&file, args.wait)?,
    )
    .await?;
    let result = run_job(&lake, &file, &args).await;
    leases.release().await?;
    result
}

/// Refuses options the job does not take, before anything is touched.
fn check_options(args: &JobRunArgs) -> anyhow::Result<()> {
    let joins = args.drain || args.mode.is_some() || args.backfill.is_some() || args.yes;
    match args.name {
        JobName::BookingsFact => {
            if args.full {
                bail!("--full is an option of gold; bookings_fact rebuilds with --full-refresh");
            }
            if args.full_refresh && args.backfill.is_some() {
                bail!(
                    "--full-refresh and --backfill do different things: a full refresh rebuilds \
                     Silver from Bronze in arrival order (late events stay late); --backfill joins \
                     late events as history. Run one, then the other"
                );
            }
            if args.backfill.is_some() && args.drain {
                bail!(
                    "--backfill drains its own join of late events; run --drain on its own first \
                     if the live join should treat its input as complete"
                );
            }
            if args.yes && !args.drain {
                bail!("--yes answers the question --drain asks; use it with --drain");
            }
            if !args.shard.is_empty() && (args.full_refresh || args.backfill.is_some()) {
                bail!(
                    "--full-refresh and --backfill work on every shard at once; run them without \
                     --shard"
                );
            }
            Ok(())
        }
        _ if !args.shard.is_empty() => bail!("--shard is an option of bookings_fact"),
        JobName::Gold if joins => {
            bail!("--drain, --mode, --backfill and --yes are options of bookings_fact, not gold")
        }
        JobName::Gold => Ok(()),
        JobName::Cdc if joins || args.full || args.full_refresh => {
            bail!("cdc takes no options: it always resumes where it stopped")
        }
        JobName::BatchLoad if joins || args.full || args.full_refresh => bail!(
            "batch_load takes no options: it takes every landing file not taken yet (a file \
             changed since is taken again, replacing its earlier rows)"
        ),
        JobName::Cdc | JobName::BatchLoad => Ok(()),
    }
}

async fn run_job(lake: &Lake, file: &FileConfig, args: &JobRunArgs) -> anyhow::Result<()> {
    match args.name {
        JobName::BookingsFact => super::job_bookings_fact::run(lake, file, args).await,
        JobName::BatchLoad => {
            let reports = boxoffice_jobs::batch::run(lake).await?;
            for r in &reports {
                println!("{}", batch_file_line(r));
            }
            if reports.is_empty() {
                println!(
                    "batch_load: no new landing file (landing/event_catalog, landing/box_office_sales)"
                );
            }
            Ok(())
        }
        JobName::Cdc => {
            let report = boxoffice_jobs::cdc::run(lake).await?;
            println!("{}", cdc_line(&report));
            Ok(())
        }
        JobName::Gold => {
            let reports = gold::refresh(lake, args.full || args.full_refresh).await?;
            for r in &reports {
                println!("{}", gold_line(r));
            }
            Ok(())
        }
    }
}

/// One line per Gold table refreshed.
pub fn gold_line(r: &RefreshReport) -> String {
    let how = match &r.refresh {
        Refresh::Unchanged => "unchanged (nothing new in Silver)".to_string(),
        Refresh::Incremental { files } => format!("added {files} new Silver files"),
        Refresh::Full { reason } => format!("rebuilt from all of Silver ({reason})"),
    };
    format!(
        "{:<28} {:>8} rows  {how}  {} ms",
        r.table,
        thousands(r.rows as u64),
        r.millis
    )
}

/// The job cycle `up` runs every interval: the join over what landed, then the Gold refresh.
pub struct Cycle {
    job: BookingsFact,
    gold: gold::Gold,
    lake: Lake,
    /// The booking service's changes and cdc, unless taken to run apart
    /// ([`Cycle::take_changes`]).
    changes: Option<BookingChanges>,
    /// Whether Silver may hold commits Gold has not taken (a refresh failed since).
    gold_behind: bool,
}

/// What one cycle did, and how fresh Gold is.
#[derive(Debug, Default, Clone)]
pub struct CycleReport {
    /// Join batches committed.
    pub batches: u64,
    pub events: u64,
    pub fact_rows: u64,
    /// Seconds from each match's later event arriving to Gold including it.
    pub lags: Vec<f64>,
    /// From the start to Gold refreshed (the side jobs run after).
    pub gold_millis: u128,
    /// Change rows the cdc job took into Bronze.
    pub cdc_changes: u64,
    /// Rows batch_load took from landing files.
    pub batch_rows: u64,
}

impl Cycle {
    /// Opens the join (finishing any batch a crash interrupted), and the booking-service
    /// simulator when it makes `cdc_changes` changes per cycle (0: none).
    pub async fn open(lake: &Lake, file: &FileConfig, cdc_changes: usize) -> anyhow::Result<Cycle> {
        let settings = config::bookings_fact(file, None)?;
        let expectations = config::expectations(file, &settings)?;
        super::job_bookings_fact::finish_interrupted(lake, &settings, &expectations).await?;
        let (job, _) = BookingsFact::open(lake, settings, expectations).await?;
        Ok(Cycle {
            job,
            gold: gold::Gold::new(lake),
            lake: lake.clone(),
            changes: Some(BookingChanges::open(lake, cdc_changes).await?),
            gold_behind: true,
        })
    }

    /// Takes the booking service's changes and cdc out of the cycle, to run in a task of their
    /// own (`up`'s continuous mode): they write no table the join or the other Gold tables write
    /// (but quarantine, which everyone appends to).
    pub fn take_changes(&mut self) -> Option<BookingChanges> {
        self.changes.take()
    }

    /// The lake the cycle runs on.
    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    /// Loads new landing files, runs the join, then the Gold refresh (the bundle's order, so
    /// Gold sees batch data in the cycle that loaded it); then the booking service's changes and
    /// the cdc job, unless they were taken to run apart. Without `side_jobs`, only the join and
    /// Gold run: what continuous mode does on each Bronze commit.
    pub async fn run(&mut self, side_jobs: bool) -> anyhow::Result<CycleReport> {
        let started = Instant::now();
        let batch = if side_jobs {
            boxoffice_jobs::batch::run(&self.lake).await?
        } else {
            Vec::new()
        };
        let reports = self.job.run_landed().await?;
        // Gold reads Silver and batch_load's catalog: with neither changed it has nothing to do.
        if !reports.is_empty() || !batch.is_empty() || self.gold_behind {
            // Marked first: a failed refresh is retried on the next run even with nothing new.
            self.gold_behind = true;
            self.gold.refresh(false).await?;
            self.gold_behind = false;
        }
        let now = Utc::now().timestamp_micros();
        let gold_millis = started.elapsed().as_millis();
        let cdc_changes = match self.changes.as_mut().filter(|_| side_jobs) {
            Some(changes) => changes.run().await?.changes,
            None => 0,
        };
        let mut report = CycleReport {
            gold_millis,
            cdc_changes,
            batch_rows: batch.iter().map(|f| f.loaded).sum(),
            ..CycleReport::default()
        };
        for r in &reports {
            report.batches += 1;
            report.events += r.events;
            report.fact_rows += r.fact_rows;
            report
                .lags
                .extend(r.match_arrivals.iter().map(|at| (now - at) as f64 / 1e6));
        }
        if !report.lags.is_empty() {
            let most = report.lags.iter().copied().fold(0.0, f64::max);
            tracing::debug!(
                matches = report.lags.len(),
                max_lag_ms = format!("{:.0}", most * 1e3),
                ms = gold_millis,
                "cycle: matches in Gold"
            );
        }
        Ok(report)
    }
}

impl Cycle {
    /// The join, as loaded.
    pub fn join(&self) -> &BookingsFact {
        &self.job
    }

    /// Bookings and payments waiting in the join's state.
    pub fn waiting(&self) -> (usize, usize) {
        self.job.pending()
    }

    /// Checkpoints the join's state (when `up` stops).
    pub async fn checkpoint(&mut self) -> anyhow::Result<()> {
        self.job.checkpoint().await?;
        Ok(())
    }
}

/// What a cdc run did, on one line.
pub fn cdc_line(r: &boxoffice_jobs::cdc::CdcReport) -> String {
    let versions = match r.versions {
        Some((from, to)) if from == to => format!("version {from}"),
        Some((from, to)) => format!("versions {from}..={to}"),
        None => "nothing new".to_string(),
    };
    format!(
        "cdc: ops.raw_movie_bookings {versions}: {} changes to Bronze, {} bookings set or removed, {} history versions, {} quarantined, {} movies refreshed in Gold ({} ms)",
        thousands(r.changes),
        thousands(r.bookings_changed),
        thousands(r.history_rows),
        thousands(r.quarantined),
        thousands(r.movies_refreshed),
        r.millis
    )
}

/// What batch_load did with one file, on one line.
pub fn batch_file_line(r: &boxoffice_jobs::batch::FileReport) -> String {
    let what = match &r.refused {
        Some(reason) => format!("refused: {reason} (see bronze.quarantine)"),
        None => format!(
            "{} rows loaded, {} quarantined",
            thousands(r.loaded),
            thousands(r.quarantined)
        ),
    };
    let replayed = if r.replayed {
        " (finished after a stop)"
    } else {
        ""
    };
    format!("batch_load: {}{replayed}: {what}", r.path)
}
