//! One shard of the join, run: its batches planned, joined and written exactly once, its state
//! checkpointed, and everything a crash left finished at the next open.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use boxoffice_lake::{Files, Lake, Layer};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use deltalake::DeltaTable;
use futures::{StreamExt, TryStreamExt};

use super::input::{self, BOOKINGS, PAYMENTS, PartitionId, Positions};
use super::join::{JoinConfig, JoinState};
use super::sharding::ShardId;
use super::{
    BatchReport, JOB, Outputs, Plan, Settings, checkpoint, checkpoint_error, kept_events, output,
};
use crate::JobError;
use crate::expectations::Expectations;

/// How much of what landed a run takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Take {
    /// Events before the horizon: nothing can still land in front of them.
    Horizon,
    /// Every landed event.
    All,
    /// Every landed event, then the state drained (the input is complete).
    Drain,
    /// As [`Take::Horizon`], from one scan of Bronze: what lands during the run waits for the
    /// next one.
    HorizonOnce,
}

/// When a run checkpoints the join's state, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Checkpoints {
    /// Every `checkpoint_every` batches and after the last, the batch's commits overlapping the
    /// encoding of the state itself: a run on its own, which nothing waits to follow.
    AtEnd,
    /// As [`Checkpoints::AtEnd`], but none after the last batch (a drain follows and
    /// checkpoints what it leaves).
    Periodic,
    /// Every `checkpoint_every` batches, a copy of the state stored behind the batches that
    /// follow: runs that follow each other (`up`, workers), where a run waiting for the
    /// encoding (up to a second or two) would hold back every event behind it.
    Behind,
}

impl Take {
    fn from_drain(drain: bool) -> Take {
        if drain { Take::Drain } else { Take::Horizon }
    }
}

/// A checkpoint being encoded on a blocking thread, which hands the state back with the bytes.
pub(super) type Encoding = tokio::task::JoinHandle<(JoinState, Result<Bytes, String>)>;

/// A checkpoint of a copy of the state, encoded and stored by a task while batches go on: the
/// batch it follows, and the task.
type Storing = (u64, tokio::task::JoinHandle<Result<(), JobError>>);

/// One shard of the job, with its state loaded.
pub struct Shard {
    pub(super) id: ShardId,
    pub(super) lake: Lake,
    pub(super) settings: Settings,
    pub(super) expectations: Expectations,
    pub(super) files: Files,
    pub(super) batch: u64,
    pub(super) checkpointed: u64,
    pub(super) positions: Positions,
    pub(super) state: JoinState,
    pub(super) tables: HashMap<&'static str, DeltaTable>,
    pub(super) bronze: input::BronzeTables,
    /// A run stopped between planning a batch and finishing it: the state in memory may be
    /// ahead of `batch`, so it is reloaded (and the batch finished) before anything else.
    pub(super) interrupted: bool,
    /// How its commits are named and what quarantine it leaves out (a full refresh differs).
    pub(super) outputs: Outputs,
    /// The checkpoint being stored in the background, if one is.
    pub(super) storing: Option<Storing>,
    /// When the last checkpoint was stored (or the shard opened): a failed one leaves it, so the
    /// next is due at once.
    pub(super) checkpoint_taken: Instant,
}

/// Plans read at once when a shard opens.
const PLAN_READS: usize = 16;

pub(super) fn checkpoint_name(batch: u64) -> String {
    format!("state/{batch:020}.parquet")
}

fn plan_name(batch: u64) -> String {
    format!("plans/{batch:020}.json")
}

pub(super) fn batch_of(name: &str) -> Option<u64> {
    name.rsplit('/').next()?.split('.').next()?.parse().ok()
}

impl Shard {
    /// Opens shard `id`: loads its latest checkpoint and finishes every batch planned after it
    /// (crash recovery). The caller has checked the lake's split and that no refresh is unfinished.
    pub(crate) async fn open(
        lake: &Lake,
        id: ShardId,
        settings: Settings,
        expectations: Expectations,
        outputs: Outputs,
    ) -> Result<(Shard, Vec<BatchReport>), JobError> {
        let mut shard = Shard::detached(lake, id, settings, expectations, outputs)?;
        let replayed = shard.load().await?;
        Ok((shard, replayed))
    }

    /// The shard with nothing loaded: for writing outputs joined elsewhere (a backfill's).
    pub(crate) fn detached(
        lake: &Lake,
        id: ShardId,
        settings: Settings,
        expectations: Expectations,
        outputs: Outputs,
    ) -> Result<Shard, JobError> {
        Ok(Shard {
            id,
            files: lake.files(Layer::System, &id.folder())?,
            lake: lake.clone(),
            state: JoinState::new(settings.join),
            settings,
            expectations,
            batch: 0,
            checkpointed: 0,
            positions: Positions::new(),
            tables: HashMap::new(),
            bronze: input::BronzeTables::default(),
            interrupted: false,
            outputs,
            storing: None,
            checkpoint_taken: Instant::now(),
        })
    }

    /// The partitions of both hubs this shard takes, each of which must have landed something
    /// before anything is taken (else an early event of theirs could still land in front).
    pub(crate) fn expected(&self) -> Vec<PartitionId> {
        let id = self.id;
        [BOOKINGS, PAYMENTS]
            .into_iter()
            .flat_map(|hub| {
                (0..self.settings.partitions_per_hub as i32)
                    .filter(move |p| id.owns(*p))
                    .map(move |partition| PartitionId { hub, partition })
            })
            .collect()
    }

    /// Which shard this is.
    pub fn id(&self) -> ShardId {
        self.id
    }

    /// Loads the latest checkpoint and finishes every batch planned after it.
    async fn load(&mut self) -> Result<Vec<BatchReport>, JobError> {
        self.state = JoinState::new(self.settings.join);
        (self.batch, self.checkpointed) = (0, 0);
        self.positions = Positions::new();
        self.tables.clear();
        self.bronze = input::BronzeTables::default();
        if let Some(name) = self.files.list("state/").await?.pop() {
            let bytes = self
                .files
                .get(&name)
                .await?
                .ok_or_else(|| checkpoint_error(format!("{name} vanished")))?;
            let stored = checkpoint::decode(bytes).map_err(checkpoint_error)?;
            self.check_settings(stored.batch(), stored.config())?;
            let kept = kept_events::read(
                &self.lake,
                &mut self.bronze,
                self.id,
                &stored.positions(),
                &stored.places,
            )
            .await?;
            let loaded = stored.restore(kept).map_err(checkpoint_error)?;
            self.batch = loaded.batch;
            self.checkpointed = loaded.batch;
            self.positions = loaded.positions;
            self.state = loaded.state;
        }
        let plans = self.plans_after_checkpoint().await?;
        let Some(last) = plans.last().map(|p| p.batch) else {
            return Ok(Vec::new());
        };
        tracing::info!(
            shard = self.id.index,
            from = self.batch + 1,
            last,
            "rebuilding the join's state from the batches planned after its checkpoint"
        );
        // One scan serves them all: every range they take had landed when it was planned.
        let landed = input::scan(&self.lake, &mut self.bronze, &self.positions, self.id).await?;
        let mut replayed = Vec::new();
        for plan in plans {
            let events = input::read(&landed, &plan.ranges).await?;
            let joined = output::join_batch(&mut self.state, plan, events);
            if joined.plan.batch < last {
                // A batch is planned only once the one before it has committed every output,
                // so only the last can be unfinished: the others just rebuild the state.
                self.skip_written(joined);
                continue;
            }
            let mut report = self.write(joined).await?;
            report.replayed = true;
            replayed.push(report);
        }
        self.checkpoint_now().await?;
        Ok(replayed)
    }

    /// The plans of the batches after the loaded checkpoint, in order, checked to follow it and
    /// each other and to have the current settings.
    async fn plans_after_checkpoint(&self) -> Result<Vec<Plan>, JobError> {
        let names: Vec<(u64, String)> = self
            .files
            .list("plans/")
            .await?
            .into_iter()
            .filter_map(|name| Some((batch_of(&name).filter(|b| *b > self.batch)?, name)))
            .collect();
        // Read a few at a time: a minute of batches is hundreds of plans, a request each on Azure.
        let read: Vec<Option<Bytes>> = futures::stream::iter(names.clone())
            .map(|(_, name)| {
                let files = self.files.clone();
                async move { files.get(&name).await }
            })
            .buffered(PLAN_READS)
            .try_collect()
            .await?;
        let mut plans: Vec<Plan> = Vec::new();
        for ((batch, name), bytes) in names.into_iter().zip(read) {
            let Some(bytes) = bytes else {
                continue;
            };
            let plan: Plan = serde_json::from_slice(&bytes).map_err(checkpoint_error)?;
            let follows = plans.last().map_or(self.batch, |p| p.batch) + 1;
            if plan.batch != batch || batch != follows {
                return Err(checkpoint_error(format!(
                    "plan {name} does not follow batch {}",
                    follows - 1
                )));
            }
            self.check_settings(batch, &plan.join)?;
            plans.push(plan);
        }
        Ok(plans)
    }

    /// After a run that failed part-way, reloads from the checkpoint and finishes its batches.
    pub(super) async fn recover(&mut self) -> Result<Vec<BatchReport>, JobError> {
        if !self.interrupted {
            return Ok(Vec::new());
        }
        // It may delete the plans the reload is about to replay.
        self.stored().await;
        let replayed = self.load().await?;
        self.interrupted = false;
        Ok(replayed)
    }

    fn check_settings(&self, batch: u64, planned: &JoinConfig) -> Result<(), JobError> {
        if *planned != self.settings.join {
            return Err(JobError::SettingsChanged {
                job: JOB,
                batch,
                detail: format!("planned with {planned:?}, now {:?}", self.settings.join),
            });
        }
        Ok(())
    }

    /// The last batch processed.
    pub fn batch(&self) -> u64 {
        self.batch
    }

    /// The join's current watermark.
    pub fn watermark(&self) -> Option<DateTime<Utc>> {
        output::Freshness::of(&self.state).watermark
    }

    /// The newest event time (booking or payment) the join has seen.
    pub fn newest_event(&self) -> Option<DateTime<Utc>> {
        output::Freshness::of(&self.state).newest_event
    }

    /// Bookings and payments still waiting for a match.
    pub fn pending(&self) -> (usize, usize) {
        self.state.pending()
    }

    /// The highest catalog show number among the bookings waiting in the state (0: none).
    pub fn last_show_waiting(&self) -> u64 {
        self.state
            .bookings
            .values()
            .flatten()
            .filter_map(|b| {
                crate::silver::shows_sold::show_number(&b.item.booking.event_details.event_id)
            })
            .max()
            .unwrap_or(0)
    }

    /// Bookings and payments a drain would release now as unpaid and orphans.
    pub fn unmatched(&self) -> (usize, usize) {
        self.state.unmatched()
    }

    /// Processes everything that landed (batch by batch); with `drain`, treats it as complete.
    /// Checkpoints at the end.
    pub async fn run(&mut self, drain: bool) -> Result<Vec<BatchReport>, JobError> {
        self.run_taking(Take::from_drain(drain)).await
    }

    /// As [`run`](Self::run), taking every landed event, even those a partition could still
    /// land something in front of, without draining the state: for a run that knows nothing
    /// lands meanwhile (it holds the landing lease), so that the last events of a file ingested
    /// just before are taken too.
    pub async fn run_taking_all(&mut self) -> Result<Vec<BatchReport>, JobError> {
        self.run_taking(Take::All).await
    }

    /// As [`run_taking_all`](Self::run_taking_all), but without the checkpoint at the end: for
    /// a drain that follows in the same process and checkpoints the state it leaves. Storing
    /// the full state in between took 5 s of a 12 s drain; after a crash in between, the
    /// batches are replayed from the last checkpoint as after any run.
    pub async fn run_taking_all_before_drain(&mut self) -> Result<Vec<BatchReport>, JobError> {
        let reports = self
            .run_recovering(Take::All, Checkpoints::Periodic)
            .await?;
        self.publish().await?;
        Ok(reports)
    }

    async fn run_taking(&mut self, take: Take) -> Result<Vec<BatchReport>, JobError> {
        let reports = self.run_recovering(take, Checkpoints::AtEnd).await?;
        if self.batch > self.checkpointed {
            self.checkpoint().await?;
        }
        self.publish().await?;
        Ok(reports)
    }

    /// As [`run`](Self::run), but checkpoints only every `checkpoint_every` batches: for a
    /// process that runs again in seconds (`up`), where writing the whole state each time would
    /// cost more than replaying a few batches after a crash; a copy of the state is stored
    /// behind the batches that follow, so no run waits for it. A run that fails part-way leaves
    /// the job to reload its checkpoint at the next call, so a passing storage error costs a
    /// replay, not the process.
    pub async fn run_batches(&mut self, drain: bool) -> Result<Vec<BatchReport>, JobError> {
        let reports = self
            .run_recovering(Take::from_drain(drain), Checkpoints::Behind)
            .await?;
        if !reports.is_empty() {
            self.publish().await?;
        }
        Ok(reports)
    }

    /// As [`run_batches`](Self::run_batches) without draining, taking only what had landed
    /// when it started (one scan of Bronze, in as many batches as `max_events` makes): a caller
    /// that refreshes Gold after each run (`up`, run continuously) does so as soon as that is
    /// joined, not once the join has caught up with a landing that keeps going.
    pub async fn run_landed(&mut self) -> Result<Vec<BatchReport>, JobError> {
        let reports = self
            .run_recovering(Take::HorizonOnce, Checkpoints::Behind)
            .await?;
        if !reports.is_empty() {
            self.publish().await?;
        }
        Ok(reports)
    }

    /// Finishes what a failed run left, then processes the batches, marking the job interrupted
    /// until they are all done.
    async fn run_recovering(
        &mut self,
        take: Take,
        checkpoints: Checkpoints,
    ) -> Result<Vec<BatchReport>, JobError> {
        let mut reports = self.recover().await?;
        self.interrupted = true;
        reports.extend(self.run_each(take, checkpoints).await?);
        self.interrupted = false;
        Ok(reports)
    }

    /// Processes batches until Bronze has nothing more, checkpointing as `checkpoints` says.
    async fn run_each(
        &mut self,
        take: Take,
        checkpoints: Checkpoints,
    ) -> Result<Vec<BatchReport>, JobError> {
        let all_landed = matches!(take, Take::All | Take::Drain);
        let drain = take == Take::Drain;
        let mut scanned = false;
        let mut reports = Vec::new();
        let expected = self.expected();
        let max = self.settings.max_events;
        let mut ahead: Option<input::Ahead> = None;
        loop {
            let mut phases = crate::Phases::new(self.batch + 1);
            let (ranges, all, landed, reading) = match ahead.take() {
                Some(next) => (next.ranges, next.all, next.landed, Some(next.events)),
                None if scanned && take == Take::HorizonOnce => break,
                None => {
                    scanned = true;
                    let landed = Arc::new(
                        input::scan(&self.lake, &mut self.bronze, &self.positions, self.id).await?,
                    );
                    let (ranges, all) =
                        input::plan(&landed, &self.positions, &expected, max, all_landed);
                    (ranges, all, landed, None)
                }
            };
            phases.done("scan and plan");
            let finishing = drain && all;
            if ranges.is_empty() && !finishing {
                break;
            }
            let plan = Plan {
                batch: self.batch + 1,
                ranges,
                drain: finishing,
                join: self.settings.join,
            };
            let text = serde_json::to_vec(&plan).map_err(checkpoint_error)?;
            if !self
                .files
                .put_new(&plan_name(plan.batch), Bytes::from(text))
                .await?
            {
                return Err(JobError::Concurrent {
                    job: JOB,
                    shard: self.id.prefix(),
                    batch: plan.batch,
                });
            }
            let events = match reading {
                Some(task) => task.await.map_err(|e| {
                    JobError::Bronze(format!("reading batch {} stopped: {e}", plan.batch))
                })??,
                None => input::read(&landed, &plan.ranges).await?,
            };
            phases.done("read and validate");
            let last = finishing || plan.ranges.is_empty();
            if !last {
                ahead = input::read_ahead(
                    &landed,
                    &self.positions,
                    &plan.ranges,
                    &expected,
                    max,
                    all_landed,
                );
            }
            let joined = output::join_batch(&mut self.state, plan, events);
            let batch = joined.plan.batch;
            if self
                .storing
                .as_ref()
                .is_some_and(|(_, task)| task.is_finished())
            {
                self.stored().await;
            }
            let due = (last && checkpoints == Checkpoints::AtEnd)
                || self.checkpoint_due(batch, checkpoints);
            if due && checkpoints == Checkpoints::Behind {
                // One at a time: while one is being stored, batches go on without.
                let encoding = self
                    .storing
                    .is_none()
                    .then(|| self.encode_copy(&joined.plan.ranges, batch));
                reports.push(self.write(joined).await?);
                if let Some(encoding) = encoding {
                    self.store_in_background(batch, encoding);
                }
            } else if due {
                // The state is final once the batch is joined: it is encoded on another core
                // while the batch's rows are built and committed, and stored after them.
                let encoding = self.encode_in_background(&joined.plan.ranges, batch);
                let written = self.write(joined).await;
                let bytes = self.finish_encoding(encoding).await;
                reports.push(written?);
                self.store_checkpoint(bytes.map_err(checkpoint_error)?)
                    .await?;
            } else {
                reports.push(self.write(joined).await?);
            }
            if last {
                break;
            }
        }
        Ok(reports)
    }
}

#[cfg(test)]
#[path = "shard_tests.rs"]
mod tests;
