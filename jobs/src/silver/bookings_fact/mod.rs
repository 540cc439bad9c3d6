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
//!
//! The job may be split into shards by partition index ([`sharding`]): each shard does all of
//! the above on its own partitions, in its own folder and under its own application
//! transactions, so that shards can run in any number of processes. [`BookingsFact`] runs any set
//! of them ([`shard::Shard`] is one).

pub mod backfill;
mod bronze_files;
pub mod checkpoint;
mod checkpointing;
pub mod event;
pub mod expiry;
pub mod input;
pub mod join;
mod kept_events;
mod output;
pub mod published;
pub mod refresh;
pub mod rows;
pub mod shard;
pub mod sharding;

use boxoffice_lake::Lake;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::JobError;
use crate::expectations::{Action, Expectation, ExpectationResult, Expectations};
use input::Range;
use join::{JoinConfig, Micros};
pub use output::Outputs;
pub use published::Untaken;
use shard::Shard;
pub use sharding::{ShardId, Sharding};

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
    /// In runs that follow each other (`up`, workers), also wait this long after the last
    /// checkpoint: their batches are small and frequent, so by batches alone the whole state
    /// (every remembered event id of the dedup horizon) was encoded every few seconds. A crash
    /// rebuilds the state from the batches since, read again from Bronze.
    pub checkpoint_interval: std::time::Duration,
    /// Shards the join is split into ([`sharding`]); `None`: as recorded on the lake, or 1 on a
    /// lake whose join never ran.
    pub shards: Option<u32>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            join: JoinConfig::default(),
            partitions_per_hub: 2,
            max_events: 500_000,
            checkpoint_every: 50,
            checkpoint_interval: std::time::Duration::from_secs(60),
            shards: None,
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
    /// The shard it belongs to (`None`: not a shard's batch, e.g. a backfill's).
    pub shard: Option<ShardId>,
    /// The batch (numbered per shard).
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

pub(crate) fn checkpoint_error(detail: impl std::fmt::Display) -> JobError {
    JobError::Checkpoint {
        job: JOB,
        detail: detail.to_string(),
    }
}

/// The job over a set of its shards (all of them, or those a worker owns), each with its state
/// loaded. Shards run one after another: each uses every core for reading Bronze, and two at
/// once would hold two batches' events in memory for no gain.
pub struct BookingsFact {
    sharding: Sharding,
    shards: Vec<Shard>,
}

impl BookingsFact {
    /// Opens every shard: checks the lake's split against the settings (recording it at the
    /// join's first run), loads each shard's latest checkpoint and finishes any batch planned
    /// after it (crash recovery). Refused while a full refresh is unfinished
    /// ([`refresh::finish_unfinished`] completes it).
    pub async fn open(
        lake: &Lake,
        settings: Settings,
        expectations: Expectations,
    ) -> Result<(BookingsFact, Vec<BatchReport>), JobError> {
        let sharding = BookingsFact::check(lake, &settings).await?;
        let all: Vec<u32> = (0..sharding.shards).collect();
        BookingsFact::open_with(
            lake,
            settings,
            expectations,
            Outputs::default(),
            sharding,
            &all,
        )
        .await
    }

    /// As [`open`](Self::open), for the shards numbered `shards` only (a worker's).
    pub async fn open_shards(
        lake: &Lake,
        settings: Settings,
        expectations: Expectations,
        shards: &[u32],
    ) -> Result<(BookingsFact, Vec<BatchReport>), JobError> {
        let sharding = BookingsFact::check(lake, &settings).await?;
        if let Some(k) = shards.iter().find(|k| **k >= sharding.shards) {
            return Err(JobError::Sharding(format!(
                "there is no shard {k}: this lake's join runs as {}",
                sharding.describe()
            )));
        }
        BookingsFact::open_with(
            lake,
            settings,
            expectations,
            Outputs::default(),
            sharding,
            shards,
        )
        .await
    }

    /// The lake's split, refused while a full refresh is unfinished or when the settings ask
    /// for another.
    pub async fn check(lake: &Lake, settings: &Settings) -> Result<Sharding, JobError> {
        if let Some(marker) = refresh::unfinished(lake).await? {
            return Err(JobError::RefreshUnfinished {
                job: JOB,
                started: marker
                    .started_at
                    .format("%Y-%m-%d %H:%M:%S UTC")
                    .to_string(),
            });
        }
        sharding::resolve(lake, settings).await
    }

    /// Opens `shards` of a lake split as `sharding`, with their commits named and filtered by
    /// `outputs`, and no check of the lake (a refresh's own job runs this way).
    pub(crate) async fn open_with(
        lake: &Lake,
        settings: Settings,
        expectations: Expectations,
        outputs: Outputs,
        sharding: Sharding,
        shards: &[u32],
    ) -> Result<(BookingsFact, Vec<BatchReport>), JobError> {
        let mut opened = Vec::with_capacity(shards.len());
        let mut replayed = Vec::new();
        for &k in shards {
            let (shard, reports) = Shard::open(
                lake,
                sharding.shard(k),
                settings.clone(),
                expectations.clone(),
                outputs.clone(),
            )
            .await?;
            opened.push(shard);
            replayed.extend(reports);
        }
        Ok((
            BookingsFact {
                sharding,
                shards: opened,
            },
            replayed,
        ))
    }

    /// How the lake's join is split.
    pub fn sharding(&self) -> Sharding {
        self.sharding
    }

    /// The shards this process runs.
    pub fn shards(&self) -> impl Iterator<Item = &Shard> {
        self.shards.iter()
    }

    /// The highest batch any of its shards has processed (batches are numbered per shard).
    pub fn batch(&self) -> u64 {
        self.shards.iter().map(Shard::batch).max().unwrap_or(0)
    }

    /// The watermark of the join as a whole: the lowest of its shards' (an event older than it
    /// is late in every shard). `None` until a shard has one.
    pub fn watermark(&self) -> Option<DateTime<Utc>> {
        self.shards.iter().filter_map(Shard::watermark).min()
    }

    /// The newest event time (booking or payment) any shard has seen.
    pub fn newest_event(&self) -> Option<DateTime<Utc>> {
        self.shards.iter().filter_map(Shard::newest_event).max()
    }

    /// Bookings and payments still waiting for a match, in every shard.
    pub fn pending(&self) -> (usize, usize) {
        sum_pairs(self.shards.iter().map(Shard::pending))
    }

    /// The highest catalog show number among the bookings waiting in any shard (0: none).
    pub fn last_show_waiting(&self) -> u64 {
        self.shards
            .iter()
            .map(Shard::last_show_waiting)
            .max()
            .unwrap_or(0)
    }

    /// Bookings and payments a drain would release now as unpaid and orphans.
    pub fn unmatched(&self) -> (usize, usize) {
        sum_pairs(self.shards.iter().map(Shard::unmatched))
    }

    /// Each shard processes everything that landed in its partitions (batch by batch); with
    /// `drain`, treats it as complete. Each checkpoints at the end.
    pub async fn run(&mut self, drain: bool) -> Result<Vec<BatchReport>, JobError> {
        let mut reports = Vec::new();
        for shard in &mut self.shards {
            reports.extend(shard.run(drain).await?);
        }
        Ok(reports)
    }

    /// As [`run`](Self::run), taking every landed event, even those a partition could still
    /// land something in front of, without draining the state: for a run that knows nothing
    /// lands meanwhile (it holds the landing lease), so that the last events of a file ingested
    /// just before are taken too.
    pub async fn run_taking_all(&mut self) -> Result<Vec<BatchReport>, JobError> {
        let mut reports = Vec::new();
        for shard in &mut self.shards {
            reports.extend(shard.run_taking_all().await?);
        }
        Ok(reports)
    }

    /// As [`run_taking_all`](Self::run_taking_all), without checkpointing: a drain
    /// ([`run`](Self::run) with `drain`) or a [`checkpoint`](Self::checkpoint) must follow.
    pub async fn run_taking_all_before_drain(&mut self) -> Result<Vec<BatchReport>, JobError> {
        let mut reports = Vec::new();
        for shard in &mut self.shards {
            reports.extend(shard.run_taking_all_before_drain().await?);
        }
        Ok(reports)
    }

    /// As [`run`](Self::run), but each shard checkpoints only every `checkpoint_every` batches
    /// (see [`Shard::run_batches`]): for a process that runs again in seconds.
    pub async fn run_batches(&mut self, drain: bool) -> Result<Vec<BatchReport>, JobError> {
        let mut reports = Vec::new();
        for shard in &mut self.shards {
            reports.extend(shard.run_batches(drain).await?);
        }
        Ok(reports)
    }

    /// As [`run_batches`](Self::run_batches) without draining, each shard taking only what had
    /// landed when it started (see [`Shard::run_landed`]).
    pub async fn run_landed(&mut self) -> Result<Vec<BatchReport>, JobError> {
        let mut reports = Vec::new();
        for shard in &mut self.shards {
            reports.extend(shard.run_landed().await?);
        }
        Ok(reports)
    }

    /// Checkpoints every shard (see [`Shard::checkpoint`]).
    pub async fn checkpoint(&mut self) -> Result<(), JobError> {
        for shard in &mut self.shards {
            shard.checkpoint().await?;
        }
        Ok(())
    }
}

fn sum_pairs(pairs: impl Iterator<Item = (usize, usize)>) -> (usize, usize) {
    pairs.fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
}
