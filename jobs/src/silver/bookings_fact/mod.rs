//! `silver/bookings_fact`: bookings joined with their payments in event time, one row per seat,
//! exactly once, with unpaid bookings, orphan payments and late events beside it.
//!
//! A run plans batches of Bronze events ([`input`]), feeds them to the join ([`join`]) and writes
//! its outputs ([`rows`]). While one batch is joined and written, the next is already planned
//! from the same scan and being read and validated on the other cores. Exactly once
//! (docs/semantics.md):
//!
//! 1. Before a batch is processed its plan (the Bronze ranges it takes) is written, create-only,
//!    to `_system/jobs/bookings_fact/plans/`.
//! 2. Each output table's commit carries the application transaction
//!    `("bookings_fact:<table>", batch)`; a table that already has it is skipped.
//! 3. The join's state is checkpointed with the batch it follows ([`checkpoint`]).
//!
//! After a crash anywhere, a run loads the latest checkpoint and processes again every batch
//! planned after it, from its plan: the same events give the same rows, tables that committed
//! them are skipped, the others are completed.

pub mod backfill;
mod bronze_files;
pub mod checkpoint;
pub mod event;
pub mod expiry;
pub mod input;
pub mod join;
mod output;
mod prefetch;
pub mod published;
pub mod refresh;
pub mod rows;

use std::collections::HashMap;
use std::sync::Arc;

use boxoffice_lake::{Files, Lake, Layer};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use deltalake::DeltaTable;
use serde::{Deserialize, Serialize};

use crate::JobError;
use crate::expectations::{Action, Expectation, ExpectationResult, Expectations};
use input::{BOOKINGS, PAYMENTS, PartitionId, Positions, Range};
use join::{JoinConfig, JoinState, Micros};
pub use output::Outputs;
pub use published::Untaken;

/// The job's name: in plans, checkpoints, app ids and `_system` tables.
pub const JOB: &str = "bookings_fact";

/// How the job runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The join's settings.
    pub join: JoinConfig,
    /// Partitions per hub in Bronze (each must have landed something before events are taken).
    pub partitions_per_hub: u32,
    /// Most events per batch (bounds memory, with two batches in flight: one joined and
    /// written, the next read ahead; a run processes as many batches as needed).
    pub max_events: usize,
    /// Checkpoint the state every this many batches (and at the end of every run).
    pub checkpoint_every: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            join: JoinConfig::default(),
            partitions_per_hub: 2,
            max_events: 500_000,
            checkpoint_every: 50,
        }
    }
}

/// The expectations declared on `silver/bookings_fact` (actions and conditions can be changed,
/// and more added, under `[expectations.bookings_fact]` in boxoffice.toml).
pub fn declared_expectations(join: &JoinConfig) -> Vec<Expectation> {
    let window = join.window / 1_000_000;
    let future = join.max_future / 1_000_000;
    let e = |name: &str, condition: String, action| Expectation {
        name: name.to_string(),
        condition,
        action,
    };
    vec![
        e(
            "order_id_present",
            "order_id IS NOT NULL AND length(trim(order_id)) > 0".into(),
            Action::Fail,
        ),
        e("seat_price_positive", "seat_price > 0".into(), Action::Drop),
        e("amount_not_negative", "amount >= 0".into(), Action::Drop),
        e(
            "booking_time_not_in_future",
            // A difference of two times compared with an interval: adding an interval to every
            // row's zoned time went through the time zone rules row by row (3% of the job).
            format!("booking_time - booking_event_time <= INTERVAL '{future} seconds'"),
            Action::Drop,
        ),
        e(
            "email_well_formed",
            // Something, an @, a domain with a dot, no spaces; no backslashes, so no SQL dialect
            // question of how they are read.
            "customer_email ~ '^[^@ ]+@[^@ ]+[.][^@ ]+$'".into(),
            Action::Warn,
        ),
        e(
            "payment_within_join_window",
            format!(
                "payment_time - booking_time BETWEEN INTERVAL '0 seconds' AND INTERVAL '{window} seconds'"
            ),
            Action::Warn,
        ),
    ]
}

/// A batch's plan, written before it is processed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Its number, from 1.
    pub batch: u64,
    /// The Bronze ranges it takes.
    pub ranges: Vec<Range>,
    /// Whether it ends with a drain (the input treated as complete).
    pub drain: bool,
    /// The join settings it was planned with.
    pub join: JoinConfig,
}

/// What one batch did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchReport {
    /// The batch.
    pub batch: u64,
    /// Bronze events read.
    pub events: u64,
    /// Fact rows written (one per seat per match).
    pub fact_rows: u64,
    /// Matches (booking-payment pairs).
    pub matches: u64,
    /// Bookings released as unpaid.
    pub unpaid: u64,
    /// Payments released as orphans.
    pub orphans: u64,
    /// Late events.
    pub late: u64,
    /// Duplicates dropped.
    pub duplicates: u64,
    /// Rows sent to quarantine (unparseable events, rows dropped by expectations).
    pub quarantined: u64,
    /// Expectation counts.
    pub expectations: Vec<ExpectationResult>,
    /// Whether it was a batch planned before a crash, processed again.
    pub replayed: bool,
    /// For each match, when its later event arrived (enqueued time, microseconds): the moment
    /// the match became knowable, from which freshness is measured.
    pub match_arrivals: Vec<Micros>,
}

/// How much of what landed a run takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Take {
    /// Events before the horizon: nothing can still land in front of them.
    Horizon,
    /// Every landed event.
    All,
    /// Every landed event, then the state drained (the input is complete).
    Drain,
}

impl Take {
    fn from_drain(drain: bool) -> Take {
        if drain { Take::Drain } else { Take::Horizon }
    }
}

/// A checkpoint being encoded on a blocking thread, which hands the state back with the bytes.
type Encoding = tokio::task::JoinHandle<(JoinState, Result<Bytes, String>)>;

/// The job, with its state loaded.
pub struct BookingsFact {
    lake: Lake,
    settings: Settings,
    expectations: Expectations,
    files: Files,
    batch: u64,
    checkpointed: u64,
    positions: Positions,
    state: JoinState,
    tables: HashMap<&'static str, DeltaTable>,
    bronze: input::BronzeTables,
    /// A run stopped between planning a batch and finishing it: the state in memory may be
    /// ahead of `batch`, so it is reloaded (and the batch finished) before anything else.
    interrupted: bool,
    /// How its commits are named and what quarantine it leaves out (a full refresh differs).
    outputs: Outputs,
}

fn checkpoint_name(batch: u64) -> String {
    format!("state/{batch:020}.parquet")
}

fn plan_name(batch: u64) -> String {
    format!("plans/{batch:020}.json")
}

fn batch_of(name: &str) -> Option<u64> {
    name.rsplit('/').next()?.split('.').next()?.parse().ok()
}

fn checkpoint_error(detail: impl std::fmt::Display) -> JobError {
    JobError::Checkpoint {
        job: JOB,
        detail: detail.to_string(),
    }
}

impl BookingsFact {
    /// Loads the latest checkpoint and finishes any batch planned after it (crash recovery).
    /// Refused while a full refresh is unfinished ([`refresh::finish_unfinished`] completes it).
    pub async fn open(
        lake: &Lake,
        settings: Settings,
        expectations: Expectations,
    ) -> Result<(BookingsFact, Vec<BatchReport>), JobError> {
        if let Some(marker) = refresh::unfinished(lake).await? {
            return Err(JobError::RefreshUnfinished {
                job: JOB,
                started: marker
                    .started_at
                    .format("%Y-%m-%d %H:%M:%S UTC")
                    .to_string(),
            });
        }
        BookingsFact::open_with(lake, settings, expectations, Outputs::default()).await
    }

    /// As [`open`](Self::open), with its commits named and filtered by `outputs`, and no check
    /// for a refresh (the refresh's own job runs this way).
    pub(crate) async fn open_with(
        lake: &Lake,
        settings: Settings,
        expectations: Expectations,
        outputs: Outputs,
    ) -> Result<(BookingsFact, Vec<BatchReport>), JobError> {
        let mut job = BookingsFact::detached(lake, settings, expectations, outputs)?;
        let replayed = job.load().await?;
        Ok((job, replayed))
    }

    /// The job with nothing loaded: for writing outputs joined elsewhere (a backfill's).
    pub(crate) fn detached(
        lake: &Lake,
        settings: Settings,
        expectations: Expectations,
        outputs: Outputs,
    ) -> Result<BookingsFact, JobError> {
        Ok(BookingsFact {
            files: lake.files(Layer::System, &format!("jobs/{JOB}"))?,
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
        })
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
            let loaded = checkpoint::decode(bytes).map_err(checkpoint_error)?;
            self.check_settings(loaded.batch, loaded.state.config())?;
            self.batch = loaded.batch;
            self.checkpointed = loaded.batch;
            self.positions = loaded.positions;
            self.state = loaded.state;
        }
        let mut replayed = Vec::new();
        for name in self.files.list("plans/").await? {
            let Some(batch) = batch_of(&name).filter(|b| *b > self.batch) else {
                continue;
            };
            let plan: Plan = match self.files.get(&name).await? {
                Some(bytes) => serde_json::from_slice(&bytes).map_err(checkpoint_error)?,
                None => continue,
            };
            if plan.batch != batch || batch != self.batch + 1 {
                return Err(checkpoint_error(format!(
                    "plan {name} does not follow batch {}",
                    self.batch
                )));
            }
            self.check_settings(batch, &plan.join)?;
            tracing::info!(batch, "finishing a batch planned before the last stop");
            let landed = input::scan(&self.lake, &mut self.bronze, &self.positions).await?;
            let events = input::read(&landed, &plan.ranges).await?;
            let joined = output::join_batch(&mut self.state, plan, events);
            let mut report = self.write(joined).await?;
            report.replayed = true;
            replayed.push(report);
        }
        if !replayed.is_empty() {
            self.checkpoint_now().await?;
        }
        Ok(replayed)
    }

    /// After a run that failed part-way, reloads from the checkpoint and finishes its batches.
    async fn recover(&mut self) -> Result<Vec<BatchReport>, JobError> {
        if !self.interrupted {
            return Ok(Vec::new());
        }
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

    async fn run_taking(&mut self, take: Take) -> Result<Vec<BatchReport>, JobError> {
        let reports = self.run_recovering(take, true).await?;
        if self.batch > self.checkpointed {
            self.checkpoint().await?;
        }
        self.publish().await?;
        Ok(reports)
    }

    /// As [`run`](Self::run), but checkpoints only every `checkpoint_every` batches: for a
    /// process that runs again in seconds (`up`), where writing the whole state each time would
    /// cost more than replaying a few batches after a crash. A run that fails part-way leaves
    /// the job to reload its checkpoint at the next call, so a passing storage error costs a
    /// replay, not the process.
    pub async fn run_batches(&mut self, drain: bool) -> Result<Vec<BatchReport>, JobError> {
        let reports = self.run_recovering(Take::from_drain(drain), false).await?;
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
        checkpoint_at_end: bool,
    ) -> Result<Vec<BatchReport>, JobError> {
        let mut reports = self.recover().await?;
        self.interrupted = true;
        reports.extend(self.run_each(take, checkpoint_at_end).await?);
        self.interrupted = false;
        Ok(reports)
    }

    /// Processes batches until Bronze has nothing more; `checkpoint_at_end` says a checkpoint
    /// follows the last one (so, when the last batch is known, it is encoded while it is written).
    async fn run_each(
        &mut self,
        take: Take,
        checkpoint_at_end: bool,
    ) -> Result<Vec<BatchReport>, JobError> {
        let (all_landed, drain) = (take != Take::Horizon, take == Take::Drain);
        let mut reports = Vec::new();
        let expected: Vec<PartitionId> = [BOOKINGS, PAYMENTS]
            .into_iter()
            .flat_map(|hub| {
                (0..self.settings.partitions_per_hub as i32)
                    .map(move |partition| PartitionId { hub, partition })
            })
            .collect();
        let max = self.settings.max_events;
        let mut ahead: Option<input::Ahead> = None;
        loop {
            let mut phases = crate::Phases::new(self.batch + 1);
            let (ranges, all, landed, reading) = match ahead.take() {
                Some(next) => (next.ranges, next.all, next.landed, Some(next.events)),
                None => {
                    let landed =
                        Arc::new(input::scan(&self.lake, &mut self.bronze, &self.positions).await?);
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
            if (last && checkpoint_at_end)
                || batch - self.checkpointed >= self.settings.checkpoint_every
            {
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

    /// Writes the state after the current batch (unless already written), then forgets older
    /// checkpoints and plans. After a run that failed part-way, first reloads and finishes it.
    pub async fn checkpoint(&mut self) -> Result<(), JobError> {
        self.recover().await?;
        self.checkpoint_now().await
    }

    async fn checkpoint_now(&mut self) -> Result<(), JobError> {
        if self.batch == self.checkpointed {
            return Ok(());
        }
        let mut phases = crate::Phases::new(self.batch);
        let bytes = checkpoint::encode(self.batch, &self.positions, &self.state)
            .map_err(checkpoint_error)?;
        phases.done("checkpoint encode");
        self.store_checkpoint(bytes).await
    }

    /// Moves the state to a blocking thread that encodes it as the checkpoint after `batch`
    /// (whose `ranges` the positions move past); [`finish_encoding`](Self::finish_encoding)
    /// takes it back. Nothing reads the state meanwhile: writing a batch does not.
    fn encode_in_background(&mut self, ranges: &[Range], batch: u64) -> Encoding {
        let state = std::mem::replace(&mut self.state, JoinState::new(self.settings.join));
        let mut positions = self.positions.clone();
        input::advance(&mut positions, ranges);
        tokio::task::spawn_blocking(move || {
            let mut phases = crate::Phases::new(batch);
            let bytes = checkpoint::encode(batch, &positions, &state);
            phases.done("checkpoint encode");
            (state, bytes)
        })
    }

    /// Puts the state back and returns its encoding.
    async fn finish_encoding(&mut self, encoding: Encoding) -> Result<Bytes, String> {
        let (state, bytes) = encoding
            .await
            .map_err(|e| format!("encoding the checkpoint stopped: {e}"))?;
        self.state = state;
        bytes
    }

    /// Stores the encoded state after the current batch, then forgets older checkpoints and plans.
    async fn store_checkpoint(&mut self, bytes: Bytes) -> Result<(), JobError> {
        crate::crash_point(&format!("{JOB}:before-checkpoint:{}", self.batch));
        let mut phases = crate::Phases::new(self.batch);
        self.files.put(&checkpoint_name(self.batch), bytes).await?;
        for name in self.files.list("state/").await? {
            if batch_of(&name).is_some_and(|b| b < self.batch) {
                self.files.delete(&name).await?;
            }
        }
        for name in self.files.list("plans/").await? {
            if batch_of(&name).is_some_and(|b| b <= self.batch) {
                self.files.delete(&name).await?;
            }
        }
        self.checkpointed = self.batch;
        phases.done("checkpoint write");
        Ok(())
    }
}
