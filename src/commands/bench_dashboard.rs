//! `boxoffice bench dashboard`: the dashboard API's latency over Gold built from a large Silver.
//!
//! 1. Silver: events generated, landed and joined until `silver.bookings_fact` holds the rows
//!    asked for (an existing lake given with `--lake` that already holds them is reused);
//! 2. Gold built in full from it;
//! 3. the dashboard served in this process on 127.0.0.1 (any free port), and every panel asked
//!    for under a rotation of filters and formats, over keep-alive connections; each request's
//!    latency, from sending to the last body byte, is kept.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use boxoffice_dashboard::Settings;
use boxoffice_events::GeneratorConfig;
use boxoffice_jobs::gold;
use boxoffice_jobs::silver::bookings_fact::{BookingsFact, Settings as JoinSettings};
use boxoffice_jobs::silver::tables::BOOKINGS_FACT;
use boxoffice_lake::{Lake, TableState};
use serde::Serialize;

use super::bench::{end_to_end, peak_rss_mb, reset_peak_rss};
use crate::cli::{BenchDashboardArgs, GlobalArgs, LandingArgs};
use crate::config;
use crate::progress::thousands;

/// Fact rows per generated event, as measured (seats per booking x matches, over bookings and
/// payments); the first Silver build aims with it, later rounds top up.
const ROWS_PER_EVENT: f64 = 1.27;

#[derive(Debug, Serialize)]
struct DashboardReport {
    silver_fact_rows: u64,
    gold_full_ms: u128,
    requests: usize,
    connections: usize,
    requests_per_sec: u64,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// The slowest panel's p99.
    worst_panel: String,
    worst_panel_p99_ms: f64,
    /// Peak memory while the dashboard loaded the lake and served.
    peak_rss_mb: Option<f64>,
}

pub async fn run(global: &GlobalArgs, args: BenchDashboardArgs) -> anyhow::Result<()> {
    let file = config::load(global)?;
    let scratch = tempfile::tempdir().context("creating a scratch folder")?;
    let lake = match &global.lake {
        Some(_) => config::lake(global, &file)?,
        None => Lake::local(&scratch.path().join("lake"))?,
    };
    lake.prepare().await?;
    eprintln!("bench dashboard: lake {}", lake.describe());
    let rows = fill_silver(&lake, &file, args.silver_rows, args.seed).await?;

    eprintln!(
        "bench dashboard 2/3: Gold, built in full from {} Silver rows ...",
        thousands(rows)
    );
    let started = Instant::now();
    gold::refresh(&lake, true).await?;
    let gold_full_ms = started.elapsed().as_millis();

    eprintln!(
        "bench dashboard 3/3: {} API requests over {} connections ...",
        thousands(args.requests as u64),
        args.connections
    );
    reset_peak_rss(); // from here on, the dashboard's own memory
    let (base, server) = serve(&lake).await?;
    let latencies = measure(&base, &args).await;
    server.abort();
    let report = report(rows, gold_full_ms, &args, latencies?)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

async fn silver_rows(lake: &Lake) -> anyhow::Result<u64> {
    Ok(match lake.inspect(&BOOKINGS_FACT).await?.state {
        TableState::Present { rows, .. } => rows.unwrap_or(0),
        TableState::Missing => 0,
    })
}

/// Lands and joins generated events until Silver holds `target` fact rows.
async fn fill_silver(
    lake: &Lake,
    file: &config::FileConfig,
    target: u64,
    seed: u64,
) -> anyhow::Result<u64> {
    let mut rows = silver_rows(lake).await?;
    let mut round = 0u64;
    while rows < target {
        round += 1;
        // A small round yields few rows: its last two minutes' bookings end unpaid.
        let events = (((target - rows) as f64 / ROWS_PER_EVENT) as u64).max(500_000);
        eprintln!(
            "bench dashboard 1/3: Silver has {} of {} rows; landing {} more events and joining them ...",
            thousands(rows),
            thousands(target),
            thousands(events)
        );
        // Each round starts a day after the last one's events, so rounds do not interleave;
        // the seed also counts the rows already there, so a later bench on the same lake is
        // another run (other order ids) rather than a replay of this one's first round.
        let generator = GeneratorConfig {
            seed: seed.wrapping_add(rows).wrapping_add(round),
            start: config::fixed_start() + chrono::Duration::days(30 * round as i64),
            rate: 10_000.0,
            ..GeneratorConfig::default()
        };
        let landing = config::landing(lake, &LandingArgs::default(), file)?;
        end_to_end(lake, landing, generator, events).await?;
        let (mut job, _) = BookingsFact::open(
            lake,
            JoinSettings::default(),
            boxoffice_jobs::expectations::Expectations::none(),
        )
        .await?;
        job.run(true).await?;
        let now = silver_rows(lake).await?;
        if now <= rows {
            bail!("joining {events} events added no Silver rows");
        }
        rows = now;
    }
    Ok(rows)
}

/// Serves the dashboard on a free port; returns its base URL once the first load is done.
async fn serve(lake: &Lake) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let base = format!("http://{}", listener.local_addr()?);
    let lake = lake.clone();
    let server = tokio::spawn(async move {
        let _ =
            boxoffice_dashboard::serve(listener, lake, Settings::default(), std::future::pending())
                .await;
    });
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let ready = client.get(format!("{base}/api/health")).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            return Ok((base, server));
        }
        if Instant::now() > deadline {
            bail!("the dashboard did not load the lake within 5 minutes");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The requests, rotated: every panel under no filter, a date range, a category, a status, and
/// as CSV.
fn requests() -> Vec<(String, String)> {
    let filters = [
        "",
        "from=2025-01-01&to=2025-03-31",
        "category=Music",
        "from=2025-02-01&category=Theater&status=BOOKED",
        "format=csv",
        "status=CANCELLED&limit=50",
    ];
    let mut all = vec![("filters".to_string(), "/api/filters".to_string())];
    for p in boxoffice_dashboard::panels::PANELS.iter() {
        for f in filters {
            all.push((p.name.to_string(), format!("/api/{}?{f}", p.name)));
        }
    }
    all
}

async fn measure(base: &str, args: &BenchDashboardArgs) -> anyhow::Result<Vec<(String, Duration)>> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections)
        .build()?;
    let requests = Arc::new(requests());
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        let (client, requests, next, base) = (
            client.clone(),
            Arc::clone(&requests),
            Arc::clone(&next),
            base.to_string(),
        );
        let total = args.requests as u64;
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(seen);
                }
                let (panel, path) = &requests[i as usize % requests.len()];
                let sent = Instant::now();
                let response = client.get(format!("{base}{path}")).send().await?;
                let status = response.status();
                response.bytes().await?;
                seen.push((panel.clone(), sent.elapsed()));
                if !status.is_success() {
                    bail!("{path} answered {status}");
                }
            }
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.context("a client task failed")??);
    }
    Ok(latencies)
}

fn quantile(sorted: &[Duration], q: f64) -> f64 {
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

fn report(
    silver_fact_rows: u64,
    gold_full_ms: u128,
    args: &BenchDashboardArgs,
    latencies: Vec<(String, Duration)>,
) -> anyhow::Result<DashboardReport> {
    if latencies.is_empty() {
        bail!("no request was measured");
    }
    let mut all: Vec<Duration> = latencies.iter().map(|(_, d)| *d).collect();
    all.sort_unstable();
    let total: Duration = all.iter().sum();
    let mut worst = (String::new(), 0.0);
    let mut panels: Vec<&str> = latencies.iter().map(|(p, _)| p.as_str()).collect();
    panels.sort_unstable();
    panels.dedup();
    for panel in panels {
        let mut own: Vec<Duration> = latencies
            .iter()
            .filter(|(p, _)| p == panel)
            .map(|(_, d)| *d)
            .collect();
        own.sort_unstable();
        let p99 = quantile(&own, 0.99);
        if p99 > worst.1 {
            worst = (panel.to_string(), p99);
        }
    }
    Ok(DashboardReport {
        silver_fact_rows,
        gold_full_ms,
        requests: all.len(),
        connections: args.connections,
        requests_per_sec: (all.len() as f64 * args.connections as f64 / total.as_secs_f64()) as u64,
        p50_ms: quantile(&all, 0.50),
        p95_ms: quantile(&all, 0.95),
        p99_ms: quantile(&all, 0.99),
        max_ms: quantile(&all, 1.0),
        worst_panel: worst.0,
        worst_panel_p99_ms: worst.1,
        peak_rss_mb: peak_rss_mb(),
    })
}

fn print_report(r: &DashboardReport) {
    println!(
        "dashboard API over Gold from {} Silver rows (Gold built in {} ms): {} requests over {} connections, about {} requests/s",
        thousands(r.silver_fact_rows),
        r.gold_full_ms,
        thousands(r.requests as u64),
        r.connections,
        thousands(r.requests_per_sec)
    );
    println!(
        "  latency p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms; slowest panel {} (p99 {:.2} ms); peak memory {}",
        r.p50_ms,
        r.p95_ms,
        r.p99_ms,
        r.max_ms,
        r.worst_panel,
        r.worst_panel_p99_ms,
        r.peak_rss_mb
            .map_or("-".to_string(), |m| format!("{m:.0} MB"))
    );
}
