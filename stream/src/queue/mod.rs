//! The in-process queue: a local stand-in for Event Hubs with the same contract.
//!
//! Each hub has a fixed number of partitions (2 by default, as the demos' hubs). A producer's
//! event goes to the partition its key hashes to; the partition stamps it as Event Hubs does
//! (a per-partition sequence number from 0, a byte offset, the enqueued time) and writes it to
//! its [log](log::PartitionLog) before anyone can consume it. One consumer per partition takes
//! batches (by size, or once the oldest event has waited long enough) and acknowledges them
//! after they are archived; acknowledged log segments are deleted.
//!
//! A bounded number of events may wait per partition: past that, producers wait (backpressure),
//! so a slow lake slows the producer instead of losing events or exhausting memory.

pub mod log;

use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use boxoffice_events::Hub;
use chrono::Utc;
use tokio::sync::{Notify, Semaphore};

use crate::{ReceivedEvent, Source};
use log::PartitionLog;

/// Longest an accepted event stays in the log's user-space buffer before it is handed to the OS
/// (from then on, it survives a crash of this process).
pub const LOG_FLUSH_EVERY: Duration = Duration::from_millis(100);

/// Partitions per hub, as the demos' Event Hubs have.
pub const DEFAULT_PARTITIONS: u32 = 2;

/// Settings of the local queue.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Folder of the partition logs.
    pub dir: PathBuf,
    /// Partitions per hub.
    pub partitions: u32,
    /// Events that may wait per partition before producers are made to wait.
    pub max_pending: usize,
    /// Size at which a log segment is closed and a new one started.
    pub segment_bytes: u64,
    /// fsync the log before each batch is handed out (survives power loss, costs throughput).
    pub fsync: bool,
}

impl QueueConfig {
    /// Defaults for a queue in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        QueueConfig {
            dir: dir.into(),
            partitions: DEFAULT_PARTITIONS,
            max_pending: 25000,
            segment_bytes: 64 << 20,
            fsync: false,
        }
    }
}

/// Why the queue refused something.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Another process holds the queue.
    #[error(
        "the queue at {0} is in use by another boxoffice process (only one process may land into a lake at a time; stop it, or pipe events into it)"
    )]
    Locked(PathBuf),
    /// The queue was closed (shutting down, or its archiver failed).
    #[error("the queue is closed")]
    Closed,
    /// The queue folder was made with another partition count.
    #[error("the queue at {dir} has {found} partitions per hub, but {wanted} were asked for")]
    PartitionCount {
        /// The folder.
        dir: PathBuf,
        /// Partitions found.
        found: u32,
        /// Partitions requested.
        wanted: u32,
    },
    /// The log could not be read or written.
    #[error("queue log {path}: {source}")]
    Io {
        /// File or folder.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> QueueError + '_ {
    move |source| QueueError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where a sent event was placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Partition id within its hub.
    pub partition: u32,
    /// Its sequence number in that partition.
    pub sequence_number: i64,
}

/// The queue: every partition of both hubs.
pub struct Queue {
    partitions: Vec<Arc<Partition>>,
    per_hub: u32,
    accepted: AtomicU64,
    _lock: File,
}

impl Queue {
    /// Opens the queue in `config.dir`. `archived(hub, partition)` is the last sequence number
    /// already in Bronze (the checkpoint); logged events after it are queued again, and new
    /// events continue after whichever is larger, so sequence numbers never repeat or skip.
    pub fn open(
        config: &QueueConfig,
        archived: impl Fn(Hub, u32) -> Option<i64>,
    ) -> Result<Queue, QueueError> {
        std::fs::create_dir_all(&config.dir).map_err(io_err(&config.dir))?;
        let lock_path = config.dir.join("queue.lock");
        let lock = File::create(&lock_path).map_err(io_err(&lock_path))?;
        if lock.try_lock().is_err() {
            return Err(QueueError::Locked(config.dir.clone()));
        }
        check_partition_count(config)?;
        let mut partitions = Vec::new();
        for hub in Hub::ALL {
            for id in 0..config.partitions {
                let checkpoint = archived(hub, id);
                partitions.push(Arc::new(Partition::open(config, hub, id, checkpoint)?));
            }
        }
        Ok(Queue {
            partitions,
            per_hub: config.partitions,
            accepted: AtomicU64::new(0),
            _lock: lock,
        })
    }

    /// Partitions per hub.
    pub fn partitions_per_hub(&self) -> u32 {
        self.per_hub
    }

    /// The partition a key goes to: [`crate::partitioning::partition_index`], the same index on
    /// both hubs, so partition k of `bookings` and of `payments` hold the same orders.
    pub fn partition_for(&self, key: &str) -> u32 {
        crate::partitioning::partition_index(key, self.per_hub)
    }

    /// One partition of a hub.
    pub fn partition(&self, hub: Hub, id: u32) -> &Arc<Partition> {
        let hub_index = Hub::ALL.iter().position(|h| *h == hub).unwrap_or(0);
        &self.partitions[hub_index * self.per_hub as usize + id as usize]
    }

    /// Every partition of every hub.
    pub fn partitions(&self) -> &[Arc<Partition>] {
        &self.partitions
    }

    /// Sends one event; waits while its partition is full. Without a key (a body too broken to
    /// name its order) the body itself picks the partition.
    pub async fn send(
        &self,
        hub: Hub,
        key: Option<&str>,
        source: Source,
        body: String,
    ) -> Result<Stamp, QueueError> {
        let id = self.partition_for(key.unwrap_or(&body));
        let sequence_number = self
            .partition(hub, id)
            .append(key.map(str::to_string), source, body)
            .await?;
        self.accepted.fetch_add(1, Ordering::Relaxed);
        Ok(Stamp {
            partition: id,
            sequence_number,
        })
    }

    /// Refuses further sends; consumers drain what is queued, then see the end.
    pub fn close(&self) {
        for p in &self.partitions {
            p.close();
        }
    }

    /// Events accepted since this queue was opened.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Events accepted but not yet handed to a consumer, over all partitions.
    pub fn pending(&self) -> usize {
        self.partitions.iter().map(|p| p.pending()).sum()
    }
}

fn check_partition_count(config: &QueueConfig) -> Result<(), QueueError> {
    let path = config.dir.join("partitions");
    match std::fs::read_to_string(&path) {
        Ok(s) => match s.trim().parse::<u32>() {
            Ok(found) if found != config.partitions => Err(QueueError::PartitionCount {
                dir: config.dir.clone(),
                found,
                wanted: config.partitions,
            }),
            _ => Ok(()),
        },
        Err(_) => std::fs::write(&path, config.partitions.to_string()).map_err(io_err(&path)),
    }
}

struct State {
    log: PartitionLog,
    next_seq: i64,
    next_offset: i64,
    pending: VecDeque<ReceivedEvent>,
    oldest_since: Option<Instant>,
    /// When the log's buffer was last handed to the OS.
    flushed_at: Instant,
    /// Batch size the consumer waits for; reaching it wakes the consumer early.
    wake_at: usize,
    closed: bool,
}

/// One partition: its log, the events waiting for the consumer, and the next stamp.
pub struct Partition {
    hub: Hub,
    id: u32,
    dir: PathBuf,
    state: Mutex<State>,
    has_data: Notify,
    room: Semaphore,
    fsync: bool,
}

impl Partition {
    fn open(
        config: &QueueConfig,
        hub: Hub,
        id: u32,
        archived: Option<i64>,
    ) -> Result<Partition, QueueError> {
        let dir = config.dir.join(format!("{hub}-{id}"));
        let (log, recovered) =
            PartitionLog::open(&dir, config.segment_bytes).map_err(io_err(&dir))?;
        if recovered.torn_bytes > 0 {
            tracing::warn!(%hub, partition = id, bytes = recovered.torn_bytes, "cut a torn record off the queue log (a crash mid-write; the event was never acknowledged)");
        }
        let last_logged = recovered
            .events
            .last()
            .map(|e| (e.sequence_number, e.offset + e.body.len() as i64));
        let checkpoint = archived.unwrap_or(-1);
        let pending: VecDeque<ReceivedEvent> = recovered
            .events
            .into_iter()
            .filter(|e| e.sequence_number > checkpoint)
            .collect();
        if !pending.is_empty() {
            tracing::info!(%hub, partition = id, events = pending.len(), from = pending[0].sequence_number, "replaying events accepted before the last stop but not yet in Bronze");
        }
        let next_seq = last_logged.map_or(0, |(s, _)| s + 1).max(checkpoint + 1);
        let next_offset = last_logged.map_or(0, |(_, o)| o);
        let waiting = pending.len();
        Ok(Partition {
            hub,
            id,
            dir,
            state: Mutex::new(State {
                log,
                next_seq,
                next_offset,
                oldest_since: (!pending.is_empty()).then(Instant::now),
                pending,
                wake_at: usize::MAX,
                flushed_at: Instant::now(),
                closed: false,
            }),
            has_data: Notify::new(),
            room: Semaphore::new(config.max_pending.saturating_sub(waiting).max(1)),
            fsync: config.fsync,
        })
    }

    /// The hub this partition belongs to.
    pub fn hub(&self) -> Hub {
        self.hub
    }

    /// The partition id within its hub.
    pub fn id(&self) -> u32 {
        self.id
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated in a way that
        // matters more than stopping would, so a poisoned lock is used as is.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn append(
        &self,
        partition_key: Option<String>,
        source: Source,
        body: String,
    ) -> Result<i64, QueueError> {
        let permit = self.room.acquire().await.map_err(|_| QueueError::Closed)?;
        permit.forget();
        let mut st = self.lock();
        if st.closed {
            return Err(QueueError::Closed);
        }
        let event = ReceivedEvent {
            sequence_number: st.next_seq,
            offset: st.next_offset,
            enqueued_time: Utc::now(),
            partition_key,
            source,
            body,
        };
        st.log.append(&event).map_err(io_err(&self.dir))?;
        // Bound what a crash of this process can take with it to the last moments of sends,
        // not a whole flush interval's worth waiting in the buffer.
        if st.flushed_at.elapsed() >= LOG_FLUSH_EVERY {
            st.log.flush(false).map_err(io_err(&self.dir))?;
            st.flushed_at = Instant::now();
        }
        st.next_seq += 1;
        st.next_offset += event.body.len() as i64;
        let seq = event.sequence_number;
        st.pending.push_back(event);
        if st.pending.len() == 1 {
            st.oldest_since = Some(Instant::now());
            self.has_data.notify_one();
        } else if st.pending.len() == st.wake_at {
            self.has_data.notify_one();
        }
        Ok(seq)
    }

    /// Waits for the next batch: `max` events, or fewer once the oldest has waited `linger`, or
    /// whatever is left after [`close`](Queue::close). `None` once closed and drained. The
    /// batch's records are in the OS (or on disk, with fsync) before it is returned.
    pub async fn next_batch(
        &self,
        max: usize,
        linger: Duration,
    ) -> Result<Option<Vec<ReceivedEvent>>, QueueError> {
        self.next_batch_between(max, max, linger).await
    }

    /// Like [`next_batch`](Self::next_batch), as the Event Hubs trigger batches: returns as soon
    /// as `min` events wait (taking up to `max` of them), or once the oldest has waited `linger`.
    pub async fn next_batch_between(
        &self,
        min: usize,
        max: usize,
        linger: Duration,
    ) -> Result<Option<Vec<ReceivedEvent>>, QueueError> {
        let max = max.max(1);
        let min = min.clamp(1, max);
        loop {
            let wait = {
                let mut st = self.lock();
                st.wake_at = min;
                if st.pending.is_empty() {
                    if st.closed {
                        return Ok(None);
                    }
                    None
                } else if st.closed || st.pending.len() >= min {
                    return self.take(&mut st, max).map(Some);
                } else {
                    let waited = st.oldest_since.map_or(linger, |since| since.elapsed());
                    if waited >= linger {
                        return self.take(&mut st, max).map(Some);
                    }
                    Some(linger - waited)
                }
            };
            // A notification sent between the check above and here is kept by `Notify`.
            match wait {
                Some(d) => {
                    let _ = tokio::time::timeout(d, self.has_data.notified()).await;
                }
                None => self.has_data.notified().await,
            }
        }
    }

    /// Takes up to `max` of the events waiting now, without waiting for more: for a consumer
    /// that lands this partition's events in the same commit as another partition's batch.
    pub fn take_waiting(&self, max: usize) -> Result<Option<Vec<ReceivedEvent>>, QueueError> {
        let mut st = self.lock();
        if st.pending.is_empty() {
            return Ok(None);
        }
        self.take(&mut st, max.max(1)).map(Some)
    }

    fn take(&self, st: &mut State, max: usize) -> Result<Vec<ReceivedEvent>, QueueError> {
        let n = st.pending.len().min(max);
        let batch: Vec<ReceivedEvent> = st.pending.drain(..n).collect();
        st.oldest_since = (!st.pending.is_empty()).then(Instant::now);
        st.log.flush(self.fsync).map_err(io_err(&self.dir))?;
        st.flushed_at = Instant::now();
        self.room.add_permits(n);
        Ok(batch)
    }

    /// Records that everything up to `sequence_number` is in Bronze; its log segments can go.
    pub fn acknowledge(&self, sequence_number: i64) -> Result<(), QueueError> {
        let mut st = self.lock();
        st.log
            .truncate_through(sequence_number)
            .map_err(io_err(&self.dir))
    }

    fn close(&self) {
        self.lock().closed = true;
        self.room.close();
        self.has_data.notify_one();
    }

    fn pending(&self) -> usize {
        self.lock().pending.len()
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
