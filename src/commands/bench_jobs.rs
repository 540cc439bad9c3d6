//! `boxoffice bench jobs`: the join's throughput and Gold's refresh times on this machine.

use std::time::Instant;

use anyhow::Context;
use boxoffice_events::GeneratorConfig;
use boxoffice_jobs::expectations::Expectations;
use boxoffice_jobs::gold;
use boxoffice_jobs::silver::bookings_fact::{BookingsFact, Settings};
use boxoffice_jobs::silver::tables::BOOKINGS_FACT;
use boxoffice_lake::{Lake, TableState};
use serde::Serialize;

use super::bench::{end_to_end, peak_rss_mb, reset_peak_rss};
use crate::cli::{BenchJobsArgs, GlobalArgs, LandingArgs};
use crate::config;
use crate::progress::thousands;

#[derive(Debug, Serialize)]
struct JobsReport {
    bronze_events: u64,
    bookings: u64,
    payments: u64,
    join_seconds: f64,
    join_events_per_sec: u64,
    join_peak_rss_mb: Option<f64>,
    silver_fact_rows: u64,
    gold_full_ms: u128,
    new_events: u64,
    new_join_ms: u128,
    gold_incremental_ms: u128,
    gold_peak_rss_mb: Option<f64>,
}

pub async fn run(global: &GlobalArgs, args: BenchJobsArgs) -> anyhow::Result<()> {
    let file = config::load(global)?;
    let scratch = tempfile::tempdir().context("creating a scratch folder")?;
    let lake = Lake::local(&scratch.path().join("lake"))?;
    let generated = GeneratorConfig {
        seed: args.seed,
        start: config::fixed_start(),
        rate: 10_000.0,
        ..GeneratorConfig::default()
    };
    let events = args.bookings * 2;
    eprintln!(
        "bench jobs 1/4: landing {} generated events in Bronze ...",
        thousands(events)
    );
    let landing = config::landing(&lake, &LandingArgs::default(), &file)?;
    let (_, landed) = end_to_end(&lake, landing, generated.clone(), events).await?;

    eprintln!("bench jobs 2/4: bookings_fact over all of Bronze (with --drain) ...");
    let settings = Settings::default();
    let expectations = config::expectations(&file, &settings)?;
    reset_peak_rss();
    let started = Instant::now();
    let (mut job, _) = BookingsFact::open(&lake, settings.clone(), expectations).await?;
    let reports = job.run(true).await?;
    let join_seconds = started.elapsed().as_secs_f64();
    let join_peak = peak_rss_mb();
    let read: u64 = reports.iter().map(|r| r.events).sum();

    eprintln!("bench jobs 3/4: Gold, built in full ...");
    let started = Instant::now();
    gold::refresh(&lake, true).await?;
    let gold_full_ms = started.elapsed().as_millis();

    eprintln!(
        "bench jobs 4/4: {} more events, joined, then Gold refreshed incrementally ...",
        thousands(args.new)
    );
    let later = GeneratorConfig {
        seed: args.seed + 1,
        start: generated.start
            + chrono::Duration::seconds((events as f64 / generated.rate) as i64 + 3600),
        ..generated
    };
    let landing = config::landing(&lake, &LandingArgs::default(), &file)?;
    end_to_end(&lake, landing, later, args.new).await?;
    let started = Instant::now();
    let (mut job, _) = BookingsFact::open(&lake, settings, Expectations::none()).await?;
    job.run(true).await?;
    let new_join_ms = started.elapsed().as_millis();
    reset_peak_rss();
    let started = Instant::now();
    gold::refresh(&lake, false).await?;
    let gold_incremental_ms = started.elapsed().as_millis();
    let silver_fact_rows = match lake.inspect(&BOOKINGS_FACT).await?.state {
        TableState::Present { rows, .. } => rows.unwrap_or(0),
        TableState::Missing => 0,
    };
    let report = JobsReport {
        bronze_events: read,
        bookings: landed.bookings,
        payments: landed.payments,
        join_seconds,
        join_events_per_sec: (read as f64 / join_seconds) as u64,
        join_peak_rss_mb: join_peak,
        silver_fact_rows,
        gold_full_ms,
        new_events: args.new,
        new_join_ms,
        gold_incremental_ms,
        gold_peak_rss_mb: peak_rss_mb(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

fn print_report(r: &JobsReport) {
    let mb = |m: Option<f64>| m.map_or("?".to_string(), |m| format!("{m:.0} MB"));
    println!(
        "join (bookings_fact)    {:>9} events/s   ({} Bronze events: {} bookings, {} payments, in {:.1}s; peak memory {})",
        thousands(r.join_events_per_sec),
        thousands(r.bronze_events),
        thousands(r.bookings),
        thousands(r.payments),
        r.join_seconds,
        mb(r.join_peak_rss_mb),
    );
    println!("gold, full build        {:>9} ms", r.gold_full_ms);
    println!(
        "gold, incremental       {:>9} ms   (after {} new events, joined in {} ms; Silver holds {} fact rows; peak memory {})",
        r.gold_incremental_ms,
        thousands(r.new_events),
        r.new_join_ms,
        thousands(r.silver_fact_rows),
        mb(r.gold_peak_rss_mb),
    );
}
