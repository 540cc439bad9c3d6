//! The lakehouse jobs: Bronze to Silver, Silver to Gold.
//!
//! - [`silver::bookings_fact`]: the 2-minute bookings-payments join, exactly once.
//! - [`gold`]: aggregates refreshed from what changed in Silver.

pub mod background;
pub mod batch;
pub mod cdc;
pub mod expectations;
mod frames;
pub mod freshness;
pub mod gold;
pub mod maintenance;
pub mod ops;
mod quarantine;
mod shares;
pub mod silver;
#[cfg(test)]
mod test_bronze;

use boxoffice_lake::{AppendError, LakeError};

/// Why a job run stopped. A run that fails commits nothing more; rerunning resumes it.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The lake could not be reached or a table opened.
    #[error(transparent)]
    Lake(#[from] LakeError),
    /// A Gold refresh failed (reading Silver, its query, or its table).
    #[error("Gold refresh, {0}")]
    Gold(String),
    /// Bronze could not be read as expected.
    #[error("reading Bronze: {0}")]
    Bronze(String),
    /// Writing an output table failed.
    #[error("writing {table}: {source}")]
    Commit {
        /// `layer.table`.
        table: String,
        /// What delta-rs said.
        #[source]
        source: Box<AppendError>,
    },
    /// Building an output batch failed (a bug, not bad input).
    #[error("building {table} rows: {source}")]
    Arrow {
        /// `layer.table`.
        table: String,
        /// The Arrow error.
        #[source]
        source: deltalake::arrow::error::ArrowError,
    },
    /// An expectation with action `fail` found a row that breaks it; nothing was committed.
    #[error(
        "expectation {expectation} on {table} failed ({failed} rows break `{condition}`); nothing was committed. First offending row: {sample}"
    )]
    ExpectationFailed {
        /// `layer.table`.
        table: String,
        /// Its name.
        expectation: String,
        /// Its SQL condition.
        condition: String,
        /// Rows that broke it.
        failed: u64,
        /// One of them, as JSON.
        sample: String,
    },
    /// A script of changes for the booking service's table was refused.
    #[error("script, statement at line {line}: {detail}")]
    Script {
        /// 1-based line where the statement starts (0: the script does not parse).
        line: u64,
        /// Why.
        detail: String,
    },
    /// Changing the booking service's table failed.
    #[error("{0}")]
    Ops(String),
    /// The batch_load job failed reading or writing a table.
    #[error("batch_load, {0}")]
    Batch(String),
    /// The CDC job failed reading or writing a table.
    #[error("cdc, {0}")]
    Cdc(String),
    /// Compaction, vacuum or a checkpoint failed (nothing is lost: each is one commit or none).
    #[error("maintenance, {0}")]
    Maintenance(String),
    /// A checkpoint or plan could not be read or written.
    #[error("{job} checkpoint: {detail}")]
    Checkpoint {
        /// The job.
        job: &'static str,
        /// What went wrong.
        detail: String,
    },
    /// A full refresh of the job started and did not finish: nothing else may run the job
    /// until it does.
    #[error(
        "a full refresh of {job} started at {started} has not finished; run `boxoffice job run {job}` to finish it first"
    )]
    RefreshUnfinished {
        /// The job.
        job: &'static str,
        /// When it started.
        started: String,
    },
    /// A backfill was refused (bad range, nothing to take) or could not be completed.
    #[error("{job} backfill: {detail}")]
    Backfill {
        /// The job.
        job: &'static str,
        /// Why.
        detail: String,
    },
    /// Another run planned the same batch first.
    #[error(
        "another run of {job} {shard}is planning batch {batch} at the same time; run one at a time"
    )]
    Concurrent {
        /// The job.
        job: &'static str,
        /// "shard 3 " when the job is split into shards, else empty.
        shard: String,
        /// The batch.
        batch: u64,
    },
    /// The lake's split of the join into shards does not match the settings, or cannot work.
    #[error("bookings_fact shards: {0}")]
    Sharding(String),
    /// The settings changed under batches already planned.
    #[error(
        "{job} batch {batch} was planned with other settings ({detail}); rerun with those settings to finish it, or start over on a new lake"
    )]
    SettingsChanged {
        /// The job.
        job: &'static str,
        /// The batch.
        batch: u64,
        /// What differs.
        detail: String,
    },
}

/// Fault injection for the crash tests (and for anyone who wants to see recovery work): when the
/// environment variable `BOXOFFICE_CRASH_AT` names this point, the process aborts right here, as
/// a power cut or an OOM kill would, with nothing flushed or cleaned up.
pub fn crash_point(point: &str) {
    if std::env::var("BOXOFFICE_CRASH_AT").is_ok_and(|p| p == point) {
        eprintln!("BOXOFFICE_CRASH_AT={point}: aborting the process");
        std::process::abort();
    }
}

/// Fault injection for the tests of what waits on what: when the environment variable
/// `BOXOFFICE_SLOW_AT` is `<point>=<milliseconds>` and names this point, the task waits that
/// long right here, as it would behind a slow storage account or a job grown long.
pub async fn slow_point(point: &str) {
    let Ok(setting) = std::env::var("BOXOFFICE_SLOW_AT") else {
        return;
    };
    if let Some((at, millis)) = setting.rsplit_once('=')
        && at == point
        && let Ok(millis) = millis.parse::<u64>()
    {
        tracing::info!("BOXOFFICE_SLOW_AT={setting}: waiting {millis} ms");
        tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
    }
}

/// Times the phases of a batch and logs each at debug level (`-vv`): where a slow batch spends
/// its time, without a profiler.
pub(crate) struct Phases {
    batch: u64,
    since: std::time::Instant,
}

impl Phases {
    pub(crate) fn new(batch: u64) -> Self {
        Phases {
            batch,
            since: std::time::Instant::now(),
        }
    }

    /// Logs the time since the last phase ended.
    pub(crate) fn done(&mut self, phase: &str) {
        let ms = self.since.elapsed().as_secs_f64() * 1e3;
        tracing::debug!(
            batch = self.batch,
            phase,
            ms = format!("{ms:.0}"),
            "phase done"
        );
        self.since = std::time::Instant::now();
    }
}
