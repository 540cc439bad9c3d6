//! `boxoffice job run`: one job, once, over what is new; and the job cycle `up` repeats.

use std::time::Instant;

use anyhow::Context;
use boxoffice_jobs::gold::{self, Refresh, RefreshReport};
use boxoffice_jobs::ops::simulator::Simulator;
use boxoffice_jobs::silver::bookings_fact::join::TimeMode;
use boxoffice_jobs::silver::bookings_fact::{BatchReport, BookingsFact};
use boxoffice_lake::Lake;
use chrono::Utc;

use crate::cli::{GlobalArgs, JobCommand, JobName, JobRunArgs, ModeArg};
use crate::config::{self, FileConfig};
use crate::progress::thousands;

pub async fn run(global: &GlobalArgs, command: JobCommand) -> anyhow::Result<()> {
    let JobCommand::Run(args) = command;
    let file = config::load(global)?;
    let lake = config::lake(global, &file)?;
    lake.prepare().await?;
    match args.name {
        JobName::BookingsFact => run_bookings_fact(&lake, &file, &args).await,
        JobName::BatchLoad => {
            if args.drain || args.mode.is_some() || args.full {
                anyhow::bail!(
                    "batch_load takes no options: it takes every landing file not taken yet"
                );
            }
            let reports = boxoffice_jobs::batch::run(&lake).await?;
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
            if args.drain || args.mode.is_some() || args.full {
                anyhow::bail!("cdc takes no options: it always resumes where it stopped");
            }
            let report = boxoffice_jobs::cdc::run(&lake).await?;
            println!("{}", cdc_line(&report));
            Ok(())
        }
        JobName::Gold => {
            if args.drain || args.mode.is_some() {
                anyhow::bail!("--drain and --mode are options of bookings_fact, not gold");
            }
            let reports = gold::refresh(&lake, args.full).await?;
            for r in &reports {
                println!("{}", gold_line(r));
            }
            Ok(())
        }
    }
}

async fn run_bookings_fact(
    lake: &Lake,
    file: &FileConfig,
    args: &JobRunArgs,
) -> anyhow::Result<()> {
    if args.full {
        anyhow::bail!("--full is an option of gold; bookings_fact always resumes where it stopped");
    }
    let mode = args.mode.map(|m| match m {
        ModeArg::EventTime => TimeMode::EventTime,
        ModeArg::StreamAnalytics => TimeMode::StreamAnalytics,
    });
    let settings = config::bookings_fact(file, mode)?;
    let expectations = config::expectations(file, &settings)?;
    let started = Instant::now();
    let (mut job, replayed) = BookingsFact::open(lake, settings, expectations)
        .await
        .context("opening bookings_fact")?;
    for r in &replayed {
        eprintln!("{}", batch_line(r));
    }
    let reports = job.run(args.drain).await?;
    for r in &reports {
        eprintln!("{}", batch_line(r));
    }
    let all: Vec<&BatchReport> = replayed.iter().chain(&reports).collect();
    print_summary(&job, &all, started);
    Ok(())
}

/// One line per batch, as it completes.
pub fn batch_line(r: &BatchReport) -> String {
    format!(
        "batch {}{}: {} events -> {} fact rows ({} matches), {} unpaid, {} orphans, {} late, {} duplicates, {} quarantined",
        r.batch,
        if r.replayed {
            " (finished after a stop)"
        } else {
            ""
        },
        thousands(r.events),
        thousands(r.fact_rows),
        thousands(r.matches),
        thousands(r.unpaid),
        thousands(r.orphans),
        thousands(r.late),
        thousands(r.duplicates),
        thousands(r.quarantined),
    )
}

fn print_summary(job: &BookingsFact, reports: &[&BatchReport], started: Instant) {
    let sum = |f: fn(&BatchReport) -> u64| reports.iter().map(|r| f(r)).sum::<u64>();
    let events = sum(|r| r.events);
    let secs = started.elapsed().as_secs_f64();
    if reports.is_empty() {
        println!("bookings_fact: nothing new in Bronze");
    } else {
        println!(
            "bookings_fact: {} batches, {} events in {:.1}s ({} events/s)",
            reports.len(),
            thousands(events),
            secs,
            thousands((events as f64 / secs.max(1e-9)) as u64)
        );
        let added = [
            ("silver.bookings_fact", sum(|r| r.fact_rows)),
            ("silver.unpaid_bookings", sum(|r| r.unpaid)),
            ("silver.orphan_payments", sum(|r| r.orphans)),
            ("silver.late_events", sum(|r| r.late)),
            ("bronze.quarantine", sum(|r| r.quarantined)),
        ];
        for (table, rows) in added {
            println!("  {table:<24} +{} rows", thousands(rows));
        }
        println!(
            "  duplicates dropped        {}",
            thousands(sum(|r| r.duplicates))
        );
        let mut failed: Vec<String> = Vec::new();
        for r in reports {
            for e in r.expectations.iter().filter(|e| e.failed > 0) {
                failed.push(format!(
                    "{} ({}): {} rows",
                    e.name,
                    e.action.as_str(),
                    e.failed
                ));
            }
        }
        if !failed.is_empty() {
            println!(
                "  expectations broken: {} (per batch: _system.expectations)",
                failed.join("; ")
            );
        }
    }
    let (bookings, payments) = job.pending();
    match job.watermark() {
        Some(w) => println!(
            "  watermark {}; waiting for a match: {} bookings, {} payments{}",
            w.format("%Y-%m-%d %H:%M:%S UTC"),
            thousands(bookings as u64),
            thousands(payments as u64),
            if bookings + payments > 0 {
                " (kept for the next run; --drain resolves them)"
            } else {
                ""
            }
        ),
        None => println!("  no watermark yet (no bookings and payments seen)"),
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
    /// The booking-service simulator and how many changes it makes per cycle.
    simulator: Option<(Simulator, usize)>,
}

/// What one cycle did, and how fresh Gold is.
#[derive(Debug, Default, Clone)]
pub struct CycleReport {
    pub events: u64,
    pub fact_rows: u64,
    /// Seconds from each match's later event arriving to Gold including it.
    pub lags: Vec<f64>,
    pub millis: u128,
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
        let (job, _) = BookingsFact::open(lake, settings, expectations).await?;
        let simulator = if cdc_changes > 0 {
            let seed = Utc::now().timestamp_micros().unsigned_abs();
            Some((Simulator::open(lake, seed).await?, cdc_changes))
        } else {
            None
        };
        Ok(Cycle {
            job,
            gold: gold::Gold::new(lake),
            lake: lake.clone(),
            simulator,
        })
    }

    /// Loads new landing files, runs the join, then the Gold refresh (the bundle's order, so
    /// Gold sees batch data in the cycle that loaded it); then the booking service's changes and
    /// the cdc job.
    pub async fn run(&mut self) -> anyhow::Result<CycleReport> {
        let started = Instant::now();
        let batch = boxoffice_jobs::batch::run(&self.lake).await?;
        let reports = self.job.run_batches(false).await?;
        self.gold.refresh(false).await?;
        let now = Utc::now().timestamp_micros();
        if let Some((simulator, changes)) = &mut self.simulator {
            simulator.tick(*changes).await?;
        }
        let cdc = boxoffice_jobs::cdc::run(&self.lake).await?;
        let mut report = CycleReport {
            millis: started.elapsed().as_millis(),
            cdc_changes: cdc.changes,
            batch_rows: batch.iter().map(|f| f.loaded).sum(),
            ..CycleReport::default()
        };
        for r in &reports {
            report.events += r.events;
            report.fact_rows += r.fact_rows;
            report
                .lags
                .extend(r.match_arrivals.iter().map(|at| (now - at) as f64 / 1e6));
        }
        Ok(report)
    }
}

impl Cycle {
    /// Checkpoints the join's state (when `up` stops).
    pub async fn checkpoint(&mut self) -> anyhow::Result<()> {
        self.job.checkpoint().await?;
        Ok(())
    }
}

/// The median and 95th percentile of `values` (sorted in place).
pub fn percentiles(values: &mut [f64]) -> Option<(f64, f64)> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    Some((at(0.5), at(0.95)))
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
