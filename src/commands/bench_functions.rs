//! `boxoffice bench functions`: the archive functions' throughput and commit cost
//! ([`super::bench_functions_archive`]), then the `ingest` function's throughput and latency as
//! the Functions host would see them: the custom handler on a loopback port, clients posting
//! the host's invocation envelope with a batch of events in `Data.req.Body`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use boxoffice_events::{Generator, GeneratorConfig, Hub, Shares};
use boxoffice_functions::router;
use boxoffice_lake::Lake;
use serde_json::{Value, json};

use super::bench::{peak_rss_mb, reset_peak_rss};
use crate::cli::BenchFunctionsArgs;
use crate::progress::thousands;

/// Distinct request bodies, cycled: enough that no cache flatters the handler.
const DISTINCT_REQUESTS: usize = 256;

pub async fn run(args: BenchFunctionsArgs) -> anyhow::Result<()> {
    if args.batch == 0 || args.connections == 0 || args.events == 0 {
        bail!("--events, --batch and --connections must be at least 1");
    }
    if args.archive_events > 0 {
        use super::bench_functions_archive as archive;
        let host_batch = archive::host_batch_size(args.host_json.as_deref())?;
        eprintln!(
            "bench functions: archiving {} events in batches of {} (the host's default), then of {host_batch} (host.json) ...",
            thousands(args.archive_events),
            archive::DEFAULT_MAX_BATCH
        );
        let before = archive::run(args.archive_events, archive::DEFAULT_MAX_BATCH).await?;
        let after = archive::run(args.archive_events, host_batch).await?;
        archive::report(&before, &after);
    }
    let scratch = tempfile::tempdir().context("creating a scratch folder")?;
    let lake = Lake::local(&scratch.path().join("lake"))?;
    lake.prepare().await?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("listening on loopback")?;
    let url = format!("http://{}/ingest", listener.local_addr()?);
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            router(super::serve::handler(
                lake,
                super::serve::GenerateSettings {
                    rate: 1.0,
                    interval: Duration::from_secs(10),
                },
                None,
                None,
            )?),
        )
        .await
        .context("serving")
    });

    let requests = Arc::new(envelopes(args.batch)?);
    let total_requests = args.events.div_ceil(args.batch as u64);
    eprintln!(
        "bench functions: {} requests of {} events to {url} over {} connections ...",
        thousands(total_requests),
        args.batch,
        args.connections
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections)
        .build()
        .context("HTTP client")?;
    let next = Arc::new(AtomicU64::new(0));
    reset_peak_rss();
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..args.connections {
        let (client, url, requests, next) = (
            client.clone(),
            url.clone(),
            Arc::clone(&requests),
            Arc::clone(&next),
        );
        clients.push(tokio::spawn(async move {
            drive(&client, &url, &requests, &next, total_requests).await
        }));
    }
    let mut latencies = Vec::with_capacity(total_requests as usize);
    for c in clients {
        latencies.extend(c.await.context("a client task failed")??);
    }
    let seconds = started.elapsed().as_secs_f64();
    server.abort();
    report(&args, &mut latencies, seconds);
    Ok(())
}

/// Posts requests until `total` have been taken; returns each one's latency.
async fn drive(
    client: &reqwest::Client,
    url: &str,
    requests: &[(Vec<u8>, usize)],
    next: &AtomicU64,
    total: u64,
) -> anyhow::Result<Vec<Duration>> {
    let mut latencies = Vec::new();
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= total {
            return Ok(latencies);
        }
        let (body, events) = &requests[i as usize % requests.len()];
        let sent = Instant::now();
        let response = client
            .post(url)
            .header("Content-Type", "application/json")
            .header("X-Azure-Functions-InvocationId", format!("bench-{i}"))
            .body(body.clone())
            .send()
            .await
            .context("posting to the handler")?;
        let status = response.status();
        let reply = response.bytes().await.context("reading the reply")?;
        latencies.push(sent.elapsed());
        check(status.as_u16(), &reply, *events)?;
    }
}

/// Every request must be answered 200 with all its events in the hub's output.
fn check(status: u16, reply: &[u8], events: usize) -> anyhow::Result<()> {
    let reply: Value = serde_json::from_slice(reply).context("the reply is not JSON")?;
    let http = reply
        .pointer("/Outputs/res/statusCode")
        .and_then(Value::as_u64);
    let sent = ["bookings", "payments"]
        .iter()
        .filter_map(|h| reply.pointer(&format!("/Outputs/{h}")))
        .filter_map(Value::as_array)
        .map(Vec::len)
        .sum::<usize>();
    if status != 200 || http != Some(200) || sent != events {
        bail!("the handler answered {status} (ingest {http:?}) with {sent} of {events} events");
    }
    Ok(())
}

/// The host's envelopes for `DISTINCT_REQUESTS` requests of `batch` valid events each, with
/// how many events each holds.
fn envelopes(batch: usize) -> anyhow::Result<Vec<(Vec<u8>, usize)>> {
    let generator = Generator::new(GeneratorConfig {
        seed: 42,
        shares: Shares {
            malformed: 0.0,
            ..Shares::default()
        },
        ..GeneratorConfig::default()
    })?;
    let (mut bookings, mut payments) = (Vec::new(), Vec::new());
    let mut out = Vec::new();
    for event in generator {
        let lane = match event.hub {
            Hub::Bookings => &mut bookings,
            Hub::Payments => &mut payments,
        };
        lane.push(event.body);
        if lane.len() == batch {
            let body = format!("[{}]", lane.join(","));
            out.push((envelope(event.hub, &body)?, lane.len()));
            lane.clear();
            if out.len() == DISTINCT_REQUESTS {
                return Ok(out);
            }
        }
    }
    Ok(out)
}

fn envelope(hub: Hub, body: &str) -> anyhow::Result<Vec<u8>> {
    let hub = hub.as_str();
    Ok(serde_json::to_vec(&json!({
        "Data": {"req": {
            "Url": format!("http://localhost:7071/api/ingest/{hub}"),
            "Method": "POST",
            "Query": {},
            "Headers": {"Content-Type": ["application/json"]},
            "Params": {"hub": hub},
            "Body": body,
        }},
        "Metadata": {"hub": hub, "sys": {"MethodName": "ingest", "UtcNow": "2026-11-23T00:00:00Z", "RandGuid": "0f8fad5b-d9cb-469f-a165-70867728950e"}},
    }))?)
}

fn report(args: &BenchFunctionsArgs, latencies: &mut [Duration], seconds: f64) {
    latencies.sort_unstable();
    let at = |q: f64| {
        let i = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i].as_secs_f64() * 1000.0
    };
    let events = latencies.len() as u64 * args.batch as u64;
    println!(
        "functions ingest {:>10} events/s   ({} requests/s of {} events over {} connections; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} events in {seconds:.1}s; peak memory {})",
        thousands((events as f64 / seconds) as u64),
        thousands((latencies.len() as f64 / seconds) as u64),
        args.batch,
        args.connections,
        at(0.50),
        at(0.99),
        at(1.0),
        thousands(events),
        peak_rss_mb().map_or("-".to_string(), |m| format!("{m:.0} MB")),
    );
}
