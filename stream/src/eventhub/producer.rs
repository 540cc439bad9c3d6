//! A task per hub: events are batched as they come (up to the size limit, or until the oldest
//! has waited `linger`) and each hub's batches are sent one after another, so one order's
//! events reach the hub in the order they were given.
//!
//! By default each event goes to its order's partition by id ([`Routing::CoPartitioned`]), so
//! an order sits at the same partition index on both hubs; [`Routing::ByKey`] leaves the choice
//! to Event Hubs' own hash of the partition key instead.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use boxoffice_events::Hub;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::batch::{BatchBuilder, DEFAULT_LIMIT};
use super::partitioned::PartitionedSender;
use super::sender::{RetryPolicy, Sender};
use super::{Connection, EventHubError};
use crate::partitioning::partition_index;

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
    /// How events are spread over partitions.
    pub routing: Routing,
}

/// How a producer picks each event's partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// By the co-partitioning rule, sent to the partition by id: the same index on both hubs.
    /// `partitions` is the hubs' partition count; `None` reads it from each hub's description.
    CoPartitioned { partitions: Option<u32> },
    /// With the order id as partition key: Event Hubs hashes it, consistently within one hub
    /// but not across the two.
    ByKey,
}

impl Default for ProducerSettings {
    fn default() -> Self {
        ProducerSettings {
            max_batch_bytes: DEFAULT_LIMIT,
            linger: Duration::from_millis(200),
            retry: RetryPolicy::default(),
            endpoint: None,
            routing: Routing::CoPartitioned { partitions: None },
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProducerTotals {
    pub events: u64,
    pub batches: u64,
    pub bytes: u64,
    pub retries: u64,
}

impl ProducerTotals {
    /// Adds another send's totals.
    pub fn add(&mut self, other: ProducerTotals) {
        self.events += other.events;
        self.batches += other.batches;
        self.bytes += other.bytes;
        self.retries += other.retries;
    }
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
    /// Starts a task for each `(hub, Event Hub name)`; with co-partitioning, reads each hub's
    /// partition count first (unless given) and refuses hubs whose counts differ.
    pub async fn start(
        connection: &Connection,
        hubs: &[(Hub, String)],
        settings: &ProducerSettings,
    ) -> Result<Producer, EventHubError> {
        let counters = Arc::new(ProducerCounters::default());
        let mut lanes = Vec::new();
        let mut counts: Vec<(String, u32)> = Vec::new();
        for (hub, name) in hubs {
            let mut sender = Sender::new(
                connection,
                name,
                settings.endpoint.as_deref(),
                settings.retry,
            )?;
            let route = match settings.routing {
                Routing::ByKey => Route::ByKey(Box::new(sender)),
                Routing::CoPartitioned { partitions } => {
                    let senders = PartitionedSender::open(&mut sender, partitions).await?;
                    counts.push((name.clone(), senders.partitions()));
                    Route::ById(senders)
                }
            };
            if let [(first, a), .., (last, b)] = counts.as_slice()
                && a != b
            {
                return Err(EventHubError::PartitionCount {
                    hub: last.clone(),
                    reason: format!(
                        "it has {b} partitions but '{first}' has {a}: co-partitioned hubs need the same count"
                    ),
                });
            }
            let (tx, rx) = mpsc::channel(8192);
            let task = tokio::spawn(run_lane(
                rx,
                route,
                settings.max_batch_bytes,
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

/// Where a lane sends: one sender for the hub (partition keys) or one per partition.
enum Route {
    ByKey(Box<Sender>),
    ById(PartitionedSender),
}

impl Route {
    fn lanes(&self) -> usize {
        match self {
            Route::ByKey(_) => 1,
            Route::ById(p) => p.partitions() as usize,
        }
    }

    fn index(&self, order_id: &str) -> usize {
        match self {
            Route::ByKey(_) => 0,
            Route::ById(p) => partition_index(order_id, p.partitions()) as usize,
        }
    }

    fn sender(&mut self, index: usize) -> Option<&mut Sender> {
        match self {
            Route::ByKey(s) => Some(s),
            Route::ById(p) => p.partition(index as u32),
        }
    }

    fn push(&self, batch: &mut BatchBuilder, event: &Outgoing) -> Result<bool, EventHubError> {
        match self {
            Route::ByKey(_) => batch.push(&event.partition_key, &event.body),
            Route::ById(_) => batch.push_unkeyed(&event.partition_key, &event.body),
        }
    }
}

async fn run_lane(
    mut events: mpsc::Receiver<Outgoing>,
    mut route: Route,
    max_batch_bytes: usize,
    linger: Duration,
    counters: Arc<ProducerCounters>,
) -> Result<(), EventHubError> {
    let mut batches: Vec<BatchBuilder> = (0..route.lanes())
        .map(|_| BatchBuilder::new(max_batch_bytes))
        .collect();
    let mut waiting = 0usize;
    let mut deadline = Instant::now();
    loop {
        let next = if waiting == 0 {
            events.recv().await
        } else {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    flush_all(&mut route, &mut batches, &counters).await?;
                    waiting = 0;
                    continue;
                }
            }
        };
        let Some(event) = next else {
            return flush_all(&mut route, &mut batches, &counters).await;
        };
        let i = route.index(&event.partition_key);
        if !route.push(&mut batches[i], &event)? {
            waiting -= batches[i].len();
            flush_one(&mut route, i, &mut batches[i], &counters).await?;
            route.push(&mut batches[i], &event)?;
        }
        waiting += 1;
        if waiting == 1 {
            deadline = Instant::now() + linger;
        }
    }
}

async fn flush_all(
    route: &mut Route,
    batches: &mut [BatchBuilder],
    counters: &ProducerCounters,
) -> Result<(), EventHubError> {
    for (i, batch) in batches.iter_mut().enumerate() {
        flush_one(route, i, batch, counters).await?;
    }
    Ok(())
}

async fn flush_one(
    route: &mut Route,
    index: usize,
    batch: &mut BatchBuilder,
    counters: &ProducerCounters,
) -> Result<(), EventHubError> {
    match route.sender(index) {
        Some(sender) => flush(sender, batch, counters).await,
        None => Ok(()),
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
    let events: Vec<&(String, String)> = events.iter().collect();
    send_all_with(sender, &events, max_batch_bytes, |b, (key, body)| {
        b.push(key, body)
    })
    .await
}

/// [`send_all`] with the way each event enters a batch (with its key, or without).
pub(crate) async fn send_all_with(
    sender: &mut Sender,
    events: &[&(String, String)],
    max_batch_bytes: usize,
    push: impl Fn(&mut BatchBuilder, &(String, String)) -> Result<bool, EventHubError>,
) -> Result<ProducerTotals, EventHubError> {
    let counters = ProducerCounters::default();
    let mut batch = BatchBuilder::new(max_batch_bytes);
    for event in events {
        if !push(&mut batch, event)? {
            flush(sender, &mut batch, &counters).await?;
            push(&mut batch, event)?;
        }
    }
    flush(sender, &mut batch, &counters).await?;
    Ok(counters.totals())
}
