//! `boxoffice bench functions`, the archive half: the Event Hubs trigger's batches through the
//! custom handler, as the host delivers them, into a fresh local lake; archived events/s and
//! the Delta commits and files each 100,000 events cost, with the batch size the host uses by
//! default (100) and with the shipped host.json's.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use boxoffice_events::{Generator, GeneratorConfig, Hub};
use boxoffice_functions::router;
use boxoffice_ingest::bronze::{self, ARCHIVE_GAPS};
use boxoffice_ingest::partitioning::partition_index;
use boxoffice_lake::{Lake, TableState};
use chrono::Utc;
use serde_json::{Value, json};

use crate::progress::thousands;

/// The host.json shipped beside the function folders.
const SHIPPED_HOST_JSON: &str = include_str!("../../host.json");

/// The Event Hubs extension's batch size when host.json sets none.
pub const DEFAULT_MAX_BATCH: usize = 100;

/// Partitions per hub in the run.
const PARTITIONS: u32 = 4;

/// What one archive run measured.
#[derive(Debug, Clone, Copy)]
pub struct ArchiveFigures {
    pub batch: usize,
    pub events: u64,
    pub seconds: f64,
    pub commits: u64,
    pub files: u64,
}

impl ArchiveFigures {
    fn per_100k(&self, n: u64) -> f64 {
        n as f64 * 100_000.0 / self.events as f64
    }
}

/// `maxEventBatchSize` of the shipped host.json, or of `host_json` when given.
pub fn host_batch_size(host_json: Option<&str>) -> anyhow::Result<usize> {
    let text = match host_json {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
        None => SHIPPED_HOST_JSON.to_string(),
    };
    let host: Value = serde_json::from_str(&text).context("host.json is not JSON")?;
    Ok(host
        .pointer("/extensions/eventHubs/maxEventBatchSize")
        .and_then(Value::as_u64)
        .map_or(DEFAULT_MAX_BATCH, |n| n as usize))
}

/// Archives `events` generated events, spread over both hubs' partitions by the
/// co-partitioning rule, in batches of `batch`, every partition at once, through one handler.
pub async fn run(events: u64, batch: usize) -> anyhow::Result<ArchiveFigures> {
    if batch == 0 {
        bail!("the batch size must be at least 1");
    }
    let scratch = tempfile::tempdir().context("creating a scratch folder")?;
    let lake = Lake::local(&scratch.path().join("lake"))?;
    lake.prepare().await?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("listening on loopback")?;
    let base = format!("http://{}", listener.local_addr()?);
    let handler = super::serve::handler(
        lake.clone(),
        super::serve::GenerateSettings {
            rate: 1.0,
            interval: Duration::from_secs(10),
        },
        None,
        None,
    )?;
    let server = tokio::spawn(async move { axum::serve(listener, router(handler)).await });

    let partitions = partitioned(events)?;
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for ((hub, partition), bodies) in partitions {
        let (client, url) = (client.clone(), format!("{base}/archive_{hub}"));
        tasks.push(tokio::spawn(async move {
            deliver(&client, &url, hub, partition, &bodies, batch).await
        }));
    }
    for task in tasks {
        task.await.context("a partition's task failed")??;
    }
    let seconds = started.elapsed().as_secs_f64();
    server.abort();
    let (mut commits, mut files) = (0, 0);
    for def in bronze::TABLES.iter().copied().chain([&ARCHIVE_GAPS]) {
        if let TableState::Present {
            version, files: f, ..
        } = lake.inspect(def).await?.state
        {
            // Version 0 creates the table; every later version is a commit of data.
            commits += version;
            files += f as u64;
        }
    }
    Ok(ArchiveFigures {
        batch,
        events,
        seconds,
        commits,
        files,
    })
}

type Lanes = std::collections::BTreeMap<(Hub, u32), Vec<Value>>;

/// Generated events (malformed ones included, as producers send them) by hub and partition.
fn partitioned(events: u64) -> anyhow::Result<Lanes> {
    let generator = Generator::new(GeneratorConfig {
        seed: 42,
        ..GeneratorConfig::default()
    })?;
    let mut lanes = Lanes::new();
    for e in generator.take(events as usize) {
        let p = partition_index(&e.order_id, PARTITIONS);
        // A body that is not JSON goes as a string, as the host passes it on.
        let body = serde_json::from_str(&e.body).unwrap_or(Value::String(e.body));
        lanes.entry((e.hub, p)).or_default().push(body);
    }
    Ok(lanes)
}

/// One partition's events, batch after batch, each waiting for the last, as the host does.
async fn deliver(
    client: &reqwest::Client,
    url: &str,
    hub: Hub,
    partition: u32,
    bodies: &[Value],
    batch: usize,
) -> anyhow::Result<()> {
    for (n, chunk) in bodies.chunks(batch).enumerate() {
        let first = (n * batch) as i64;
        let count = chunk.len() as i64;
        let now = Utc::now().to_rfc3339();
        let payload = json!({
            "Data": {"events": chunk},
            "Metadata": {
                "PartitionContext": {"EventHubName": hub.as_str(), "ConsumerGroup": "bronze-archiver", "PartitionId": partition.to_string()},
                "SequenceNumberArray": (first..first + count).collect::<Vec<_>>(),
                "OffsetArray": (first..first + count).map(|i| (i * 600).to_string()).collect::<Vec<_>>(),
                "EnqueuedTimeUtcArray": (0..count).map(|_| now.clone()).collect::<Vec<_>>(),
                "PartitionKeyArray": (0..count).map(|_| Value::Null).collect::<Vec<_>>(),
                "PropertiesArray": (0..count).map(|_| json!({})).collect::<Vec<_>>(),
                "sys": {"MethodName": format!("archive_{hub}"), "UtcNow": now}
            }
        });
        let response = client
            .post(url)
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(&payload)?)
            .send()
            .await
            .context("posting a batch")?;
        let status = response.status();
        let reply = response.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("archive_{hub} partition {partition} answered {status}: {reply}");
        }
    }
    Ok(())
}

/// Prints the before/after lines.
pub fn report(before: &ArchiveFigures, after: &ArchiveFigures) {
    for (label, f) in [("default batches", before), ("host.json batches", after)] {
        println!(
            "functions archive {:>9} events/s   ({label} of {}: {:.0} commits and {:.0} files per 100,000 events; {} events over 2 hubs x {PARTITIONS} partitions in {:.1}s)",
            thousands((f.events as f64 / f.seconds) as u64),
            f.batch,
            f.per_100k(f.commits),
            f.per_100k(f.files),
            thousands(f.events),
            f.seconds,
        );
    }
}
