//! Landing: a queue plus one archiver per hub, running until told to finish.
//!
//! This is the local equivalent of Event Hubs plus the `archive_bookings` / `archive_payments`
//! functions. Producers send to [`Landing::queue`]; each hub's consumer waits until one of its
//! partitions has a batch (by size or time), takes what every other partition of the hub holds
//! too, and archives them together, one commit per table; [`Landing::finish`] stops intake,
//! lands everything accepted, and reports. (The Functions host calls an archiver per partition
//! instead; in one process, landing a hub's partitions together cut Bronze's commits by 42% at
//! 5,000 events/s.)

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use boxoffice_events::Hub;
use boxoffice_lake::{Lake, LakeError};
use chrono::Utc;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::ReceivedEvent;
use crate::bronze::{ArchiveError, BronzeArchiver};
use crate::queue::{Partition, Queue, QueueConfig, QueueError};

/// Settings of a landing pipeline.
#[derive(Debug, Clone)]
pub struct LandingConfig {
    /// The queue.
    pub queue: QueueConfig,
    /// Most events per archived batch (a flush by size).
    pub max_batch: usize,
    /// Longest an event waits before its batch is archived (a flush by time).
    pub linger: Duration,
    /// Attempts at archiving one batch before the pipeline stops.
    pub max_attempts: u32,
}

impl LandingConfig {
    /// Defaults: batches of up to 50,000 events, flushed at least every second.
    pub fn new(queue: QueueConfig) -> Self {
        LandingConfig {
            queue,
            max_batch: 50_000,
            linger: Duration::from_secs(1),
            max_attempts: 5,
        }
    }
}

/// Why landing stopped.
#[derive(Debug, thiserror::Error)]
pub enum LandingError {
    /// The lake could not be prepared.
    #[error(transparent)]
    Lake(#[from] LakeError),
    /// The queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// A batch could not be archived after every attempt; it stays in the queue log and is
    /// archived on the next start.
    #[error("{0} (the batch stays in the queue log and lands on the next start)")]
    Archive(#[from] ArchiveError),
    /// A consumer task panicked or was cancelled.
    #[error("archiver task failed: {0}")]
    Task(String),
}

/// Live counters, read by progress displays while landing runs.
#[derive(Debug, Default)]
pub struct LandingStats {
    landed: [AtomicU64; 2],
    quarantined: AtomicU64,
    already_landed: AtomicU64,
    batches: AtomicU64,
    last_lag_ms: AtomicU64,
}

/// A point-in-time copy of [`LandingStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LandingTotals {
    /// Rows appended to `bronze/bookings_raw`.
    pub bookings: u64,
    /// Rows appended to `bronze/payments_raw`.
    pub payments: u64,
    /// Rows appended to `bronze/quarantine`.
    pub quarantined: u64,
    /// Events skipped because they were already in Bronze (replays after a crash).
    pub already_landed: u64,
    /// Commits to the raw tables: each holds every partition of its hub that had events waiting.
    pub batches: u64,
    /// Milliseconds from the oldest event's enqueue to its commit, in the latest batch.
    pub last_lag_ms: u64,
}

impl LandingTotals {
    /// Every event that reached a Bronze table.
    pub fn events(&self) -> u64 {
        self.bookings + self.payments + self.quarantined
    }
}

impl LandingStats {
    /// Reads every counter.
    pub fn totals(&self) -> LandingTotals {
        LandingTotals {
            bookings: self.landed[0].load(Ordering::Relaxed),
            payments: self.landed[1].load(Ordering::Relaxed),
            quarantined: self.quarantined.load(Ordering::Relaxed),
            already_landed: self.already_landed.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            last_lag_ms: self.last_lag_ms.load(Ordering::Relaxed),
        }
    }
}

/// A running landing pipeline.
pub struct Landing {
    queue: Arc<Queue>,
    stats: Arc<LandingStats>,
    consumers: JoinSet<Result<(), LandingError>>,
    committed: watch::Receiver<u64>,
}

impl Landing {
    /// Prepares the lake, opens the Bronze tables and the queue (replaying anything accepted
    /// before a crash), and starts one archiver per hub.
    pub async fn start(lake: &Lake, config: LandingConfig) -> Result<Landing, LandingError> {
        lake.prepare().await?;
        let mut archivers = Vec::new();
        let mut checkpoints = Vec::new();
        for hub in Hub::ALL {
            let mut archiver = BronzeArchiver::open(lake, hub).await?;
            for id in 0..config.queue.partitions {
                checkpoints.push((hub, id, archiver.checkpoint(id as i32).await?));
            }
            archivers.push((hub, archiver));
        }
        let queue = Arc::new(Queue::open(&config.queue, |hub, id| {
            checkpoints
                .iter()
                .find(|(h, i, _)| *h == hub && *i == id)
                .and_then(|(_, _, checkpoint)| *checkpoint)
        })?);
        let stats = Arc::new(LandingStats::default());
        let (committed_tx, committed) = watch::channel(0);
        let committed_tx = Arc::new(committed_tx);
        let mut consumers = JoinSet::new();
        for (hub, archiver) in archivers {
            let consumer = Consumer {
                hub,
                partitions: (0..config.queue.partitions)
                    .map(|id| Arc::clone(queue.partition(hub, id)))
                    .collect(),
                archiver,
                stats: Arc::clone(&stats),
                queue: Arc::clone(&queue),
                config: config.clone(),
                committed: Arc::clone(&committed_tx),
            };
            consumers.spawn(consumer.run());
        }
        Ok(Landing {
            queue,
            stats,
            consumers,
            committed,
        })
    }

    /// The number of batches committed to Bronze so far, changing right after each commit: a
    /// job in the same process waits on it to run as soon as there is something new to take,
    /// instead of polling the tables' logs.
    pub fn committed(&self) -> watch::Receiver<u64> {
        self.committed.clone()
    }

    /// Where producers send events.
    pub fn queue(&self) -> &Arc<Queue> {
        &self.queue
    }

    /// Live counters.
    pub fn stats(&self) -> &Arc<LandingStats> {
        &self.stats
    }

    /// Stops intake, waits until every accepted event is in Bronze, and returns the totals.
    pub async fn finish(mut self) -> Result<LandingTotals, LandingError> {
        self.queue.close();
        let mut first_error = None;
        while let Some(joined) = self.consumers.join_next().await {
            let result = joined
                .map_err(|e| LandingError::Task(e.to_string()))
                .and_then(|r| r);
            if let Err(e) = result
                && first_error.is_none()
            {
                first_error = Some(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(self.stats.totals()),
        }
    }
}

/// A hub's consumer: its partitions, still open, and its archiver.
struct Consumer {
    hub: Hub,
    partitions: Vec<Arc<Partition>>,
    archiver: BronzeArchiver,
    stats: Arc<LandingStats>,
    queue: Arc<Queue>,
    config: LandingConfig,
    committed: Arc<watch::Sender<u64>>,
}

impl Consumer {
    async fn run(mut self) -> Result<(), LandingError> {
        let result = self.consume().await;
        if result.is_err() {
            // Producers must not wait forever on a partition nobody drains.
            self.queue.close();
        }
        result
    }

    async fn consume(&mut self) -> Result<(), LandingError> {
        let hub = self.hub;
        while let Some(batches) = self.next_batches().await? {
            let views: Vec<(i32, &[ReceivedEvent])> = batches
                .iter()
                .map(|(id, batch)| (*id as i32, batch.as_slice()))
                .collect();
            let mut attempt = 1;
            let reports = loop {
                match self.archiver.archive_partitions(&views).await {
                    Ok(reports) => break reports,
                    Err(e) if attempt < self.config.max_attempts => {
                        let backoff = Duration::from_millis(250 << attempt.min(6));
                        tracing::warn!(%hub, attempt, error = %e, "archiving failed; retrying in {backoff:?}");
                        tokio::time::sleep(backoff).await;
                        attempt += 1;
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            for (id, batch) in &batches {
                if let Some(last) = batch.last() {
                    self.queue
                        .partition(hub, *id)
                        .acknowledge(last.sequence_number)?;
                }
            }
            let hub_index = usize::from(hub == Hub::Payments);
            let s = &self.stats;
            for report in &reports {
                s.landed[hub_index].fetch_add(report.landed as u64, Ordering::Relaxed);
                s.quarantined
                    .fetch_add(report.quarantined as u64, Ordering::Relaxed);
                s.already_landed
                    .fetch_add(report.already_landed as u64, Ordering::Relaxed);
            }
            s.batches.fetch_add(1, Ordering::Relaxed);
            // Waiters are woken only once the batches are in Bronze (the raw table commits last).
            self.committed.send_modify(|n| *n += 1);
            let oldest = batches
                .iter()
                .flat_map(|(_, b)| b)
                .map(|e| e.enqueued_time)
                .min();
            if let Some(oldest) = oldest {
                let lag = (Utc::now() - oldest).num_milliseconds().max(0) as u64;
                s.last_lag_ms.store(lag, Ordering::Relaxed);
            }
            let events: usize = batches.iter().map(|(_, b)| b.len()).sum();
            tracing::debug!(%hub, partitions = batches.len(), events, "archived batches");
        }
        Ok(())
    }

    /// Waits until one of the hub's partitions has a batch (by size or time), then takes what
    /// the others hold too, so that they land in the same commits. `None` once every partition
    /// is closed and drained.
    async fn next_batches(
        &mut self,
    ) -> Result<Option<Vec<(u32, Vec<ReceivedEvent>)>>, LandingError> {
        let (max, linger) = (self.config.max_batch, self.config.linger);
        while !self.partitions.is_empty() {
            // Waiting is cancel-safe: a partition hands out events only from a ready batch, and
            // a wake-up meant for a dropped wait is passed on.
            let waits = self
                .partitions
                .iter()
                .map(|p| Box::pin(p.next_batch(max, linger)));
            let (ready, index, others) = futures::future::select_all(waits).await;
            drop(others);
            let Some(batch) = ready? else {
                // Closed and drained: nothing more will come from it.
                self.partitions.remove(index);
                continue;
            };
            let mut batches = vec![(self.partitions[index].id(), batch)];
            for (i, p) in self.partitions.iter().enumerate() {
                if i != index
                    && let Some(more) = p.take_waiting(max)?
                {
                    batches.push((p.id(), more));
                }
            }
            return Ok(Some(batches));
        }
        Ok(None)
    }
}

#[cfg(test)]
#[path = "landing_tests.rs"]
mod tests;
