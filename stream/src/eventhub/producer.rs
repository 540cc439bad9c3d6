//! A task per hub: events are batched as they come (up to the size limit, or until the oldest
//! has waited `linger`) and each hub's batches are sent one after another, so one order's
//! events reach the hub in the order they were given.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use boxoffice_events::Hub;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::batch::{BatchBuilder, DEFAULT_LIMIT};
use super::sender::{RetryPolicy, Sender};
use super::{ConnectionString, EventHubError};

/// How a [`Producer`] batches and retries.
#[derive(Debug, Clone)]
pub struct ProducerSettings {
    /// The most bytes per batch body.
    pub max_batch_bytes: usize,
    /// The longest an event waits for its batch to fill.
    pub linger: Duration,
    /// Retries of 429, 5xx and network errors.
    pub retry: RetryPolicy,
    /// Send here instead of `https://<namespace>` (a proxy, or a test server).
    pub endpoint: Option<String>,
}

impl Default for ProducerSettings {
    fn default() -> Self {
        ProducerSettings {
            max_batch_bytes: DEFAULT_LIMIT,
            linger: Duration::from_millis(200),
            retry: RetryPolicy::default(),
            endpoint: None,
        }
    }
}

/// Live counts, for a progress line.
#[derive(Debug, Default)]
pub struct ProducerCounters {
    /// Events the hubs accepted.
    pub events: AtomicU64,
    /// Batches the hubs accepted.
    pub batches: AtomicU64,
    /// Bytes of accepted batch bodies.
    pub bytes: AtomicU64,
    /// Attempts that failed and were retried.
    pub retries: AtomicU64,
}

impl ProducerCounters {
    /// The counts now.
    pub fn totals(&self) -> ProducerTotals {
        ProducerTotals {
            events: self.events.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
        }
    }
}

/// What a finished producer sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerTotals {
    pub events: u64,
    pub batches: u64,
    pub bytes: u64,
    pub retries: u64,
}

struct Outgoing {
    partition_key: String,
    body: String,
}

struct Lane {
    hub: Hub,
    name: String,
    events: Option<mpsc::Sender<Outgoing>>,
    task: Option<JoinHandle<Result<(), EventHubError>>>,
}

/// Sends events to Event Hubs, batched per hub.
pub struct Producer {
    lanes: Vec<Lane>,
    counters: Arc<ProducerCounters>,
}

impl Producer {
    /// Starts a task for each `(hub, Event Hub name)`.
    pub fn start(
        connection: &ConnectionString,
        hubs: &[(Hub, String)],
        settings: &ProducerSettings,
    ) -> Result<Producer, EventHubError> {
        let counters = Arc::new(ProducerCounters::default());
        let mut lanes = Vec::new();
        for (hub, name) in hubs {
            let sender = Sender::new(
                connection,
                name,
                settings.endpoint.as_deref(),
                settings.retry,
            )?;
            let (tx, rx) = mpsc::channel(8192);
            let task = tokio::spawn(run_lane(
                rx,
                sender,
                BatchBuilder::new(settings.max_batch_bytes),
                settings.linger,
                Arc::clone(&counters),
            ));
            lanes.push(Lane {
                hub: *hub,
                name: name.clone(),
                events: Some(tx),
                task: Some(task),
            });
        }
        Ok(Producer { lanes, counters })
    }

    /// The live counts.
    pub fn counters(&self) -> Arc<ProducerCounters> {
        Arc::clone(&self.counters)
    }

    /// Queues one event for its hub; waits while the hub's lane is full. Fails with the lane's
    /// error once it has given up.
    pub async fn send(
        &mut self,
        hub: Hub,
        partition_key: String,
        body: String,
    ) -> Result<(), EventHubError> {
        let lane = self
            .lanes
            .iter_mut()
            .find(|l| l.hub == hub)
            .ok_or_else(|| EventHubError::Stopped(hub.to_string(), "not started".into()))?;
        let Some(events) = &lane.events else {
            return Err(EventHubError::Stopped(lane.name.clone(), "finished".into()));
        };
        if events
            .send(Outgoing {
                partition_key,
                body,
            })
            .await
            .is_ok()
        {
            return Ok(());
        }
        lane.events = None;
        Err(join(&lane.name, lane.task.take())
            .await
            .err()
            .unwrap_or_else(|| EventHubError::Stopped(lane.name.clone(), "it ended early".into())))
    }

    /// Sends what is still batched and waits for every hub; the first error wins.
    pub async fn finish(mut self) -> Result<ProducerTotals, EventHubError> {
        for lane in &mut self.lanes {
            lane.events = None;
        }
        let mut first_error = None;
        for lane in &mut self.lanes {
            if let Err(e) = join(&lane.name, lane.task.take()).await {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(self.counters.totals()),
        }
    }
}

async fn join(
    name: &str,
    task: Option<JoinHandle<Result<(), EventHubError>>>,
) -> Result<(), EventHubError> {
    match task {
        None => Ok(()),
        Some(task) => task
            .await
            .map_err(|e| EventHubError::Stopped(name.to_string(), e.to_string()))?,
    }
}

async fn run_lane(
    mut events: mpsc::Receiver<Outgoing>,
    mut sender: Sender,
    mut batch: BatchBuilder,
    linger: Duration,
    counters: Arc<ProducerCounters>,
) -> Result<(), EventHubError> {
    let mut deadline = Instant::now();
    loop {
        let next = if batch.is_empty() {
            events.recv().await
        } else {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    flush(&mut sender, &mut batch, &counters).await?;
                    continue;
                }
            }
        };
        let Some(event) = next else {
            return flush(&mut sender, &mut batch, &counters).await;
        };
        if !batch.push(&event.partition_key, &event.body)? {
            flush(&mut sender, &mut batch, &counters).await?;
            batch.push(&event.partition_key, &event.body)?;
        }
        if batch.len() == 1 {
            deadline = Instant::now() + linger;
        }
    }
}

async fn flush(
    sender: &mut Sender,
    batch: &mut BatchBuilder,
    counters: &ProducerCounters,
) -> Result<(), EventHubError> {
    let Some(ready) = batch.take() else {
        return Ok(());
    };
    let before = sender.retries();
    sender.send(&ready).await?;
    counters
        .events
        .fetch_add(ready.events as u64, Ordering::Relaxed);
    counters.batches.fetch_add(1, Ordering::Relaxed);
    counters
        .bytes
        .fetch_add(ready.body.len() as u64, Ordering::Relaxed);
    counters
        .retries
        .fetch_add(sender.retries() - before, Ordering::Relaxed);
    Ok(())
}

/// Sends `(partition key, body)` events now, in as few batches as fit, waiting for each: for
/// callers that must know every event was taken before they answer (the `generate` function,
/// whose invocation fails, and is retried by its next tick, when the hub refuses).
pub async fn send_all(
    sender: &mut Sender,
    events: &[(String, String)],
    max_batch_bytes: usize,
) -> Result<ProducerTotals, EventHubError> {
    let counters = ProducerCounters::default();
    let mut batch = BatchBuilder::new(max_batch_bytes);
    for (key, body) in events {
        if !batch.push(key, body)? {
            flush(sender, &mut batch, &counters).await?;
            batch.push(key, body)?;
        }
    }
    flush(sender, &mut batch, &counters).await?;
    Ok(counters.totals())
}
