//! Commits that hold when many writers append to one table at once (docs/commits.md).
//!
//! delta-rs commits optimistically: a writer puts version N+1 of the log create-only; if another
//! writer got there first it reads the winners, checks them for conflicts (blind appends never
//! conflict with each other) and tries the next version, up to 15 times back to back. Writers
//! that all lost race again at once, so with tens of writers on one table a commit can lose
//! sixteen times in a row and fail ("Failed to commit transaction: 15").
//!
//! Here a commit whose delta-rs round is exhausted waits a random, growing while (exponential
//! backoff with full jitter, so the losers spread out instead of racing again together) and
//! starts another round, until its patience runs out. Before each new round it re-reads the
//! writer's application transaction: if the batch landed after all (a reply lost on the way
//! back), it is not written again, and if another writer of the same stream committed meanwhile
//! it stops with a conflict, exactly as delta-rs's own check would.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use deltalake::kernel::transaction::{CommitBuilder, CommitConflictError, TransactionError};
use deltalake::kernel::{Action, Transaction};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::{DeltaTable, DeltaTableError};

use crate::commit::{AppendError, AppendOutcome};

/// How hard a commit tries before it gives up.
#[derive(Debug, Clone, PartialEq)]
pub struct CommitPolicy {
    /// delta-rs's back-to-back retries within one round (its default is 15).
    pub delta_retries: usize,
    /// The longest wait before the second round; it doubles each round up to `max_backoff`.
    pub first_backoff: Duration,
    /// The longest wait between any two rounds.
    pub max_backoff: Duration,
    /// No new round starts once this long has passed since the first; zero means one round,
    /// which is delta-rs on its own.
    pub patience: Duration,
}

impl Default for CommitPolicy {
    /// What every exactly-once append uses: delta-rs's 15 retries, then rounds 50 ms, 100 ms,
    /// ... up to 2 s apart (random within that), for up to 10 minutes.
    fn default() -> Self {
        CommitPolicy {
            delta_retries: 15,
            first_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            patience: Duration::from_secs(600),
        }
    }
}

impl CommitPolicy {
    /// delta-rs alone: one round of `delta_retries`, no backoff (for comparisons).
    pub fn delta_only(delta_retries: usize) -> Self {
        CommitPolicy {
            delta_retries,
            patience: Duration::ZERO,
            ..CommitPolicy::default()
        }
    }

    /// The wait after `round` failed rounds: uniform in [0, min(max, first * 2^(round-1))].
    fn backoff(&self, round: u32) -> Duration {
        let ceiling = self
            .first_backoff
            .saturating_mul(1 << round.saturating_sub(1).min(20))
            .min(self.max_backoff);
        ceiling.mul_f64(random_fraction())
    }
}

/// What a commit cost: how contended the table was.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CommitStats {
    /// Rounds started (1 when delta-rs's first round committed).
    pub rounds: u32,
    /// Versions lost to other writers: every attempt but the one that committed.
    pub retries: u64,
    /// Time spent waiting between rounds.
    pub waited: Duration,
}

/// Commits `actions` (the added files) with the application transactions `txns`, round after
/// round as `policy` allows. Returns the table version, or [`AppendOutcome::AlreadyCommitted`]
/// when a re-read between rounds found every transaction committed already. The table's
/// snapshot moves to the committed version.
pub(crate) async fn commit_held(
    table: &mut DeltaTable,
    actions: Vec<Action>,
    txns: &[Transaction],
    metadata: HashMap<String, serde_json::Value>,
    policy: &CommitPolicy,
) -> Result<(AppendOutcome, CommitStats), AppendError> {
    let started = Instant::now();
    let mut stats = CommitStats::default();
    // Each stream's version the rows were built against, read only if a round fails.
    let mut seen: Option<Vec<Option<i64>>> = None;
    loop {
        stats.rounds += 1;
        let round = commit_round(table, actions.clone(), txns, &metadata, policy).await;
        let exhausted = match round {
            Ok((table_version, retries)) => {
                stats.retries += retries;
                return Ok((AppendOutcome::Committed(table_version), stats));
            }
            Err(e) if is_exhausted(&e) => e,
            Err(e) => return Err(e),
        };
        stats.retries += policy.delta_retries as u64 + 1;
        if started.elapsed() >= policy.patience {
            if !policy.patience.is_zero() {
                tracing::warn!(
                    rounds = stats.rounds,
                    lost = stats.retries,
                    "gave up committing: too many writers commit to this table at once (see docs/commits.md)"
                );
            }
            return Err(exhausted);
        }
        if seen.is_none() {
            // The snapshot is still the one the caller checked: delta-rs retries on its own copy.
            seen = Some(versions(table, txns).await?);
        }
        let wait = policy.backoff(stats.rounds);
        tokio::time::sleep(wait).await;
        stats.waited += wait;
        crate::refresh::refresh(table, "append retry").await?;
        let now = versions(table, txns).await?;
        if now
            .iter()
            .zip(txns)
            .all(|(v, t)| v.is_some_and(|v| v >= t.version))
        {
            return Ok((AppendOutcome::AlreadyCommitted, stats));
        }
        if let Some(txn) = txns
            .iter()
            .zip(now.iter().zip(seen.iter().flatten()))
            .find_map(|(t, (now, seen))| (now != seen).then_some(t))
        {
            return Err(AppendError::Conflict {
                app_id: txn.app_id.clone(),
            });
        }
    }
}

/// The committed version of each transaction's stream in the table's current snapshot.
async fn versions(
    table: &DeltaTable,
    txns: &[Transaction],
) -> Result<Vec<Option<i64>>, DeltaTableError> {
    let snapshot = table.snapshot()?;
    let mut versions = Vec::with_capacity(txns.len());
    for txn in txns {
        versions.push(
            snapshot
                .transaction_version(table.log_store().as_ref(), &txn.app_id)
                .await?,
        );
    }
    Ok(versions)
}

/// One delta-rs commit with its own retries: the table version and how many it lost.
async fn commit_round(
    table: &mut DeltaTable,
    actions: Vec<Action>,
    txns: &[Transaction],
    metadata: &HashMap<String, serde_json::Value>,
    policy: &CommitPolicy,
) -> Result<(u64, u64), AppendError> {
    let partition_by = {
        let cols = table.snapshot()?.metadata().partition_columns().to_vec();
        (!cols.is_empty()).then_some(cols)
    };
    let operation = DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by,
        predicate: None,
    };
    // An `operationMetrics` object in the commit info is where delta-rs records how many times
    // it retried the commit after another writer's (`num_retries`, absent when none): how
    // contention between concurrent writers shows in the log (`bench scale` reads it).
    let mut metadata = metadata.clone();
    metadata
        .entry("operationMetrics".to_string())
        .or_insert_with(|| serde_json::Value::Object(Default::default()));
    let properties = crate::commit_properties()
        .with_application_transactions(txns.to_vec())
        .with_metadata(metadata)
        .with_max_retries(policy.delta_retries);
    let started = std::time::Instant::now();
    let committed = CommitBuilder::from(properties)
        .with_actions(actions)
        .build(Some(table.snapshot()?), table.log_store(), operation)
        .await;
    match committed {
        Ok(finalized) => {
            let table_version = finalized.version();
            crate::refresh::committed(table, "append", table_version, started);
            let retries = finalized.metrics.num_retries;
            table.state = Some(finalized.snapshot());
            Ok((table_version, retries))
        }
        Err(DeltaTableError::Transaction {
            source: TransactionError::CommitConflict(CommitConflictError::ConcurrentTransaction),
        }) => Err(AppendError::Conflict {
            app_id: txns
                .iter()
                .map(|t| t.app_id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
        Err(e) => Err(e.into()),
    }
}

/// Whether a round failed only because other writers kept winning the next version.
fn is_exhausted(e: &AppendError) -> bool {
    matches!(
        e,
        AppendError::Delta(DeltaTableError::Transaction {
            source: TransactionError::MaxCommitAttempts(_)
        })
    )
}

/// A wait of about `d`: uniform in [d/2, d], so that waiters who started together drift apart.
pub(crate) fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.5 + random_fraction() / 2.0)
}

/// A uniform fraction in [0, 1): std's per-process random hash keys are enough for jitter.
fn random_fraction() -> f64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_ceiling_and_stays_within_it() {
        let policy = CommitPolicy::default();
        for round in 1..40 {
            let ceiling = Duration::from_millis(50 << (round - 1).min(20)).min(policy.max_backoff);
            for _ in 0..50 {
                assert!(policy.backoff(round) <= ceiling, "round {round}");
            }
        }
        // Jittered: not every wait is the same.
        let waits: std::collections::BTreeSet<Duration> =
            (0..50).map(|_| policy.backoff(6)).collect();
        assert!(waits.len() > 40, "{waits:?}");
    }
}
