//! `boxoffice job run bookings_fact`: the join over what landed, a drain, a full refresh or a
//! backfill, each saying what it did and what still waits.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Instant;

use anyhow::{Context, bail};
use boxoffice_jobs::expectations::Expectations;
use boxoffice_jobs::gold;
use boxoffice_jobs::silver::bookings_fact::backfill::{self, BackfillReport, TimeRange};
use boxoffice_jobs::silver::bookings_fact::join::TimeMode;
use boxoffice_jobs::silver::bookings_fact::refresh::{self, RefreshReport};
use boxoffice_jobs::silver::bookings_fact::{BatchReport, BookingsFact, Settings, Untaken};
use boxoffice_lake::Lake;
use chrono::{DateTime, NaiveDate, Utc};

use super::job::gold_line;
use crate::cli::{JobRunArgs, ModeArg};
use crate::config::{self, FileConfig};
use crate::progress::thousands;

pub async fn run(lake: &Lake, file: &FileConfig, args: &JobRunArgs) -> anyhow::Result<()> {
    let mode = args.mode.map(|m| match m {
        ModeArg::EventTime => TimeMode::EventTime,
        ModeArg::StreamAnalytics => TimeMode::StreamAnalytics,
    });
    let range = args.backfill.as_deref().map(parse_range).transpose()?;
    let settings = config::bookings_fact(file, mode)?;
    let expectations = config::expectations(file, &settings)?;
    if args.shard.is_empty() {
        // Only a run of every shard holds the job's lease, which finishing these needs.
        finish_interrupted(lake, &settings, &expectations).await?;
    }
    if args.full_refresh {
        let report = refresh::full_refresh(lake, settings, expectations, args.drain, &mut |r| {
            eprintln!("{}", batch_line(r))
        })
        .await?;
        print_refresh(&report);
        return refresh_gold(lake, true).await;
    }
    let started = Instant::now();
    let opened = if args.shard.is_empty() {
        BookingsFact::open(lake, settings.clone(), expectations.clone()).await
    } else {
        BookingsFact::open_shards(lake, settings.clone(), expectations.clone(), &args.shard).await
    };
    let (mut job, replayed) = opened.context("opening bookings_fact")?;
    for r in &replayed {
        eprintln!("{}", batch_line(r));
    }
    // Before a backfill or a drain, everything landed is taken (the landing lease is held:
    // nothing can land in front of it): the late events of the file just ingested are all in
    // late_events, and the drain's count of what it resolves is exact.
    // A drain checkpoints once, after it: the state between is never needed again.
    let mut reports = if args.drain {
        job.run_taking_all_before_drain().await?
    } else if range.is_some() {
        job.run_taking_all().await?
    } else {
        job.run(false).await?
    };
    if args.drain {
        if confirm_drain(&job, args.yes)? {
            reports.extend(job.run(true).await?);
        } else {
            job.checkpoint().await?;
        }
    }
    for r in &reports {
        eprintln!("{}", batch_line(r));
    }
    let all: Vec<&BatchReport> = replayed.iter().chain(&reports).collect();
    print_summary(&all, started);
    let untaken = job.untaken().await?;
    print_waiting(&job, &untaken);
    if let Some(range) = range {
        let report = backfill::backfill(lake, &settings, &expectations, range).await?;
        print_backfill(&report);
        return refresh_gold(lake, false).await;
    }
    Ok(())
}

/// Finishes a full refresh or backfill a crash interrupted: nothing else may run before.
pub async fn finish_interrupted(
    lake: &Lake,
    settings: &Settings,
    expectations: &Expectations,
) -> anyhow::Result<()> {
    if let Some(marker) = refresh::unfinished(lake).await? {
        eprintln!(
            "finishing the full refresh of bookings_fact started at {} (batch {} on)",
            marker.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
            marker.first_batch
        );
    }
    let finished =
        refresh::finish_unfinished(lake, settings.clone(), expectations.clone(), &mut |r| {
            eprintln!("{}", batch_line(r))
        })
        .await?;
    if let Some(report) = finished {
        print_refresh(&report);
        println!("  Gold rebuilds from the new Silver tables at its next refresh");
    }
    if let Some(report) = backfill::finish_unfinished(lake, settings, expectations).await? {
        print_backfill(&report);
    }
    Ok(())
}

async fn refresh_gold(lake: &Lake, full: bool) -> anyhow::Result<()> {
    for r in gold::refresh(lake, full).await? {
        println!("{}", gold_line(&r));
    }
    Ok(())
}

/// A drain releases every booking still waiting as unpaid, for good. Says how many, and asks
/// when a person is at the terminal (unless `--yes`). False: nothing is drained.
fn confirm_drain(job: &BookingsFact, yes: bool) -> anyhow::Result<bool> {
    let (bookings, payments) = job.unmatched();
    if bookings + payments == 0 {
        return Ok(true);
    }
    eprintln!(
        "--drain treats what has landed as complete: {} bookings still waiting for a payment become \
         unpaid and {} payments orphans, for good. If a producer may still send them (up, Event \
         Hubs), run without --drain and let the watermark resolve them.",
        thousands(bookings as u64),
        thousands(payments as u64)
    );
    if yes || !std::io::stdin().is_terminal() {
        return Ok(true);
    }
    eprint!("Drain now? [y/N] ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("reading the answer")?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(true)
    } else {
        println!("nothing drained (add --yes to drain without asking)");
        Ok(false)
    }
}

/// `FROM..TO`: dates (midnight UTC; a date as TO means up to that day, exclusive) or RFC 3339
/// times; either end may be empty.
pub fn parse_range(text: &str) -> anyhow::Result<TimeRange> {
    let Some((from, to)) = text.split_once("..") else {
        bail!(
            "--backfill {text:?}: write FROM..TO, e.g. 2025-01-01..2025-01-02 (either end may be empty)"
        );
    };
    let end = |s: &str| -> anyhow::Result<Option<DateTime<Utc>>> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        if let Ok(day) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            return Ok(day.and_hms_opt(0, 0, 0).map(|t| t.and_utc()));
        }
        DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.with_timezone(&Utc)))
            .with_context(|| {
                format!("--backfill: {s:?} is neither a date (2025-01-01) nor an RFC 3339 time")
            })
    };
    let range = TimeRange {
        from: end(from)?,
        to: end(to)?,
    };
    if let (Some(f), Some(t)) = (range.from, range.to)
        && f >= t
    {
        bail!("--backfill {text}: FROM must come before TO");
    }
    Ok(range)
}

/// One line per batch, as it completes.
pub fn batch_line(r: &BatchReport) -> String {
    format!(
        "{}batch {}{}: {} events -> {} fact rows ({} matches), {} unpaid, {} orphans, {} late, {} duplicates, {} quarantined",
        r.shard.map(|s| s.prefix()).unwrap_or_default(),
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

fn print_summary(reports: &[&BatchReport], started: Instant) {
    if reports.is_empty() {
        return;
    }
    let sum = |f: fn(&BatchReport) -> u64| reports.iter().map(|r| f(r)).sum::<u64>();
    let events = sum(|r| r.events);
    let secs = started.elapsed().as_secs_f64();
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
    let late = sum(|r| r.late);
    if late > 0 {
        println!(
            "  {} events arrived behind the watermark and wait in silver.late_events; \
             `boxoffice job run bookings_fact --backfill FROM..TO` joins those of a time range as history",
            thousands(late)
        );
    }
}

/// What is in the lake but not in Silver yet, and what would move it.
fn print_waiting(job: &BookingsFact, untaken: &Untaken) {
    if untaken.events > 0 {
        let quiet: Vec<String> = untaken
            .silent_partitions
            .iter()
            .map(|p| {
                let hub = if p.hub == 0 { "bookings" } else { "payments" };
                format!("{hub}/{}", p.partition)
            })
            .collect();
        println!(
            "bookings_fact: {} events landed in Bronze wait to be taken: the join takes an event \
             only once every partition{} has landed something later (so nothing can still land in \
             front of it){}. More events release them; --drain takes them now and treats the \
             input as complete",
            thousands(untaken.events),
            if job.sharding().shards > 1 {
                " of its shard"
            } else {
                ""
            },
            if quiet.is_empty() {
                String::new()
            } else {
                format!(", and {} landed nothing newer yet", quiet.join(", "))
            }
        );
    } else {
        let split = job.sharding();
        if split.shards == 1 {
            println!(
                "bookings_fact: everything landed in Bronze is taken (batch {})",
                job.batch()
            );
        } else {
            println!(
                "bookings_fact: everything landed in Bronze is taken ({}; batches up to {})",
                split.describe(),
                job.batch()
            );
        }
    }
    let (bookings, payments) = job.pending();
    match job.watermark() {
        Some(w) => println!(
            "  watermark {}; waiting in the join's state: {} bookings, {} payments{}",
            w.format("%Y-%m-%d %H:%M:%S UTC"),
            thousands(bookings as u64),
            thousands(payments as u64),
            if bookings + payments > 0 {
                " (for their match, or until the watermark passes them: it follows the older of \
                 the two streams' newest events, so newer bookings and payments move it; --drain \
                 resolves them now)"
            } else {
                ""
            }
        ),
        None => println!("  no watermark yet: the join has taken no booking and no payment so far"),
    }
}

fn print_refresh(r: &RefreshReport) {
    let events: u64 = r.batches.iter().map(|b| b.events).sum();
    println!(
        "bookings_fact full refresh{}: rebuilt from {} Bronze events in {} batches (numbered from {}); swapped in:",
        if r.resumed {
            " (finished after a stop)"
        } else {
            ""
        },
        thousands(events),
        r.batches.len(),
        r.first_batch
    );
    for (table, rows) in &r.swapped {
        println!("  {table:<24} {} rows", thousands(*rows));
    }
}

fn print_backfill(r: &BackfillReport) {
    println!(
        "bookings_fact backfill {}{} over late events of {}: {} taken -> {} fact rows ({} matches), {} unpaid, {} orphans, {} duplicates; {} still late stay in silver.late_events",
        r.number,
        if r.resumed {
            " (finished after a stop)"
        } else {
            ""
        },
        r.range.describe(),
        thousands(r.taken),
        thousands(r.batch.fact_rows),
        thousands(r.batch.matches),
        thousands(r.batch.unpaid),
        thousands(r.batch.orphans),
        thousands(r.batch.duplicates),
        thousands(r.batch.late),
    );
}
