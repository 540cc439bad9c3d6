//! The join split into shards by partition index, so that any number of processes can run it.
//!
//! Producers co-partition (`boxoffice_ingest::partitioning`): an order's booking and payment go
//! to the same partition index of both hubs. Shard k of S takes partitions p with `p mod S = k`
//! of both hubs, so it holds every event of its orders and joins them on its own: its own plans,
//! state checkpoint, watermark, late-event decisions and application transactions
//! (`bookings_fact:<k>:<table>`). Its results depend only on its partitions' Bronze rows, never on
//! which process runs it or what the other shards do.
//!
//! The split is fixed per lake and recorded in `_system/jobs/bookings_fact/sharding.json` at the
//! join's first run; a run whose settings ask for another split is refused (a full refresh
//! rebuilds Silver under the new one). A lake whose join ran before shards existed is one shard,
//! kept where it always was (`_system/jobs/bookings_fact/`, application transactions
//! `bookings_fact:<table>`), so it carries on unchanged.

use boxoffice_ingest::partitioning::partition_index;
use boxoffice_lake::{Files, Lake, Layer};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{JOB, Settings, checkpoint_error};
use crate::JobError;

/// The record, in the job's folder.
pub const RECORD: &str = "sharding.json";

/// How the join is split on a lake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sharding {
    /// Shards (at least 1; divides `partitions_per_hub`).
    pub shards: u32,
    /// Partitions per hub the shards cover.
    pub partitions_per_hub: u32,
}

impl Sharding {
    /// The split `settings` ask for on a lake recorded as `recorded` (if it is): an unset shard
    /// count keeps the recorded one, and is 1 on a new lake.
    pub fn wanted(settings: &Settings, recorded: Option<Sharding>) -> Sharding {
        Sharding {
            shards: settings.shards.or(recorded.map(|r| r.shards)).unwrap_or(1),
            partitions_per_hub: settings.partitions_per_hub,
        }
    }

    /// Refuses a split that cannot work: no shard, no partition, or shards that do not divide
    /// the partitions (a shard would hold orders of two different partition sets over time).
    pub fn validate(&self) -> Result<(), JobError> {
        if self.shards == 0 || self.partitions_per_hub == 0 {
            return Err(JobError::Sharding(
                "[jobs] shards and partitions_per_hub must be at least 1".into(),
            ));
        }
        if !self.partitions_per_hub.is_multiple_of(self.shards) {
            return Err(JobError::Sharding(format!(
                "[jobs] shards = {} does not divide partitions_per_hub = {}: each shard takes \
                 partitions p with p mod shards = its number, so the shard count must divide the \
                 partition count (for {} partitions: {})",
                self.shards,
                self.partitions_per_hub,
                self.partitions_per_hub,
                divisors(self.partitions_per_hub)
            )));
        }
        Ok(())
    }

    /// Shard `index`.
    pub fn shard(&self, index: u32) -> ShardId {
        ShardId {
            index,
            of: self.shards,
        }
    }

    /// Every shard, in order.
    pub fn all(&self) -> Vec<ShardId> {
        (0..self.shards).map(|i| self.shard(i)).collect()
    }

    /// "4 shards over 8 partitions per hub".
    pub fn describe(&self) -> String {
        format!(
            "{} shard{} over {} partitions per hub",
            self.shards,
            if self.shards == 1 { "" } else { "s" },
            self.partitions_per_hub
        )
    }
}

fn divisors(n: u32) -> String {
    (1..=n)
        .filter(|d| n.is_multiple_of(*d))
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// One shard of the join: partitions p of both hubs with `p mod of = index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId {
    /// Its number, from 0.
    pub index: u32,
    /// How many shards the lake has.
    pub of: u32,
}

impl ShardId {
    /// Whether the shard takes `partition` (of either hub).
    pub fn owns(&self, partition: i32) -> bool {
        partition.rem_euclid(self.of.max(1) as i32) == self.index as i32
    }

    /// Whether an order belongs to this shard by the co-partitioning rule: a shard joins only
    /// its own orders, so an event of another shard's order (a producer that does not
    /// co-partition) cannot be joined here.
    pub fn holds_order(&self, order_id: &str) -> bool {
        self.of <= 1 || partition_index(order_id, self.of) == self.index
    }

    /// Why this shard cannot take an event of `order_id` that landed in `partition` when the
    /// order is not its own: what quarantine says, and what to do.
    pub fn misplaced(&self, order_id: &str, partition: i32) -> String {
        let owner = partition_index(order_id, self.of);
        format!(
            "order {order_id} landed in partition {partition}, which shard {} of {} joins, but the \
             co-partitioning rule (CRC-32 of order_id mod partitions) puts it in shard {owner}'s \
             partitions: its producer does not co-partition, so its booking and payment may be in \
             different shards. Send every order to partition CRC-32(order_id) mod partitions of \
             both hubs (docs/functions.md, Partitioning), or run the join as one shard ([jobs] \
             shards = 1, then --full-refresh)",
            self.index, self.of
        )
    }

    /// Its folder under `_system`: plans, checkpoints and published progress.
    pub fn folder(&self) -> String {
        if self.of <= 1 {
            format!("jobs/{JOB}")
        } else {
            format!("jobs/{JOB}/shards/{}", self.index)
        }
    }

    /// The path of `name` in the shard's folder, relative to the job's folder.
    pub fn in_job_folder(&self, name: &str) -> String {
        if self.of <= 1 {
            name.to_string()
        } else {
            format!("shards/{}/{name}", self.index)
        }
    }

    /// Its application-transaction prefix, from the job's (`bookings_fact`, or a refresh's):
    /// the prefix itself for a single shard, `<prefix>:<k>` otherwise.
    pub fn app_prefix(&self, base: &str) -> String {
        if self.of <= 1 {
            base.to_string()
        } else {
            format!("{base}:{}", self.index)
        }
    }

    /// The lease a process holds while it runs this shard.
    pub fn lease(&self) -> String {
        format!("{JOB}-shard-{}", self.index)
    }

    /// "shard 3 " for messages when the lake has shards, "" when it has one.
    pub fn prefix(&self) -> String {
        if self.of <= 1 {
            String::new()
        } else {
            format!("shard {} ", self.index)
        }
    }
}

fn job_files(lake: &Lake) -> Result<Files, JobError> {
    Ok(lake.files(Layer::System, &format!("jobs/{JOB}"))?)
}

/// The split recorded on `lake`, if any: a lake whose join ran before the record existed (it has
/// plans, checkpoints or a published position at the top of the job's folder) is one shard.
pub async fn recorded(lake: &Lake) -> Result<Option<Sharding>, JobError> {
    let files = job_files(lake)?;
    if let Some(bytes) = files.get(RECORD).await? {
        return serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| checkpoint_error(format!("{RECORD} is unreadable: {e}")));
    }
    let names = files.list("").await?;
    // Shards' state without the record: starting over as a new lake would join everything again
    // under other transactions. (A refresh that moved the lake to shards and stopped before
    // recording the split records it when it finishes.)
    let refreshing = names.iter().any(|n| n == super::refresh::MARKER);
    if names.iter().any(|n| n.starts_with("shards/")) && !refreshing {
        return Err(JobError::Sharding(format!(
            "_system/jobs/{JOB}/{RECORD} is missing, but shards' state is there \
             (_system/jobs/{JOB}/shards/): write it back with the split that state was made \
             with, e.g. {{\"shards\": 4, \"partitions_per_hub\": 8}}"
        )));
    }
    let ran = names
        .iter()
        .any(|n| n.starts_with("state/") || n.starts_with("plans/") || n == super::published::FILE);
    Ok(ran.then_some(Sharding {
        shards: 1,
        partitions_per_hub: 0,
    }))
}

/// The lake's split, checked against `settings`: recorded at the join's first run (or, on a lake
/// that ran before the record existed, recorded now as one shard), and refused when the settings
/// ask for another.
pub async fn resolve(lake: &Lake, settings: &Settings) -> Result<Sharding, JobError> {
    let recorded = recorded(lake).await?;
    let wanted = Sharding::wanted(settings, recorded);
    wanted.validate()?;
    match recorded {
        Some(r) if r.partitions_per_hub != 0 => {
            if r != wanted {
                return Err(changed(r, wanted));
            }
            Ok(r)
        }
        // One shard from before the record: its partition count is whatever runs it now.
        Some(r) if r.shards != wanted.shards => Err(changed(
            Sharding {
                partitions_per_hub: wanted.partitions_per_hub,
                ..r
            },
            wanted,
        )),
        _ => {
            record(lake, wanted, false).await?;
            Ok(wanted)
        }
    }
}

/// Writes the record: create-only for a lake's first run (if another process recorded a split
/// first, it must be the same), replacing it when a full refresh changes the split.
pub async fn record(lake: &Lake, sharding: Sharding, replace: bool) -> Result<(), JobError> {
    let files = job_files(lake)?;
    let text = serde_json::to_vec_pretty(&sharding).map_err(checkpoint_error)?;
    if replace {
        files.put(RECORD, Bytes::from(text)).await?;
        return Ok(());
    }
    if !files.put_new(RECORD, Bytes::from(text)).await? {
        match recorded(lake).await? {
            Some(other) if other != sharding => return Err(changed(other, sharding)),
            _ => {}
        }
    }
    Ok(())
}

fn changed(recorded: Sharding, wanted: Sharding) -> JobError {
    JobError::Sharding(format!(
        "this lake's join runs as {} (recorded in _system/jobs/{JOB}/{RECORD}), but the settings \
         ask for {}. Each shard's state holds the orders of its partitions, so the split cannot \
         change under a running join. Either set [jobs] shards = {} and partitions_per_hub = {} \
         again, or rebuild Silver from Bronze under the new split: stop every process running \
         the join (up, workers), then `boxoffice job run {JOB} --full-refresh` with the new \
         settings",
        recorded.describe(),
        wanted.describe(),
        recorded.shards,
        recorded.partitions_per_hub,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_owns_every_partition_congruent_to_it_and_the_orders_the_rule_sends_there() {
        let sharding = Sharding {
            shards: 4,
            partitions_per_hub: 8,
        };
        sharding.validate().expect("4 divides 8");
        let owners: Vec<u32> = (0..8)
            .map(|p| {
                let owning: Vec<u32> = sharding
                    .all()
                    .iter()
                    .filter(|s| s.owns(p))
                    .map(|s| s.index)
                    .collect();
                assert_eq!(owning.len(), 1, "partition {p} has one owner");
                owning[0]
            })
            .collect();
        assert_eq!(owners, [0, 1, 2, 3, 0, 1, 2, 3]);
        // An order sent to partition p (CRC-32 mod 8) belongs to shard p mod 4.
        for n in 0..200 {
            let order = format!("order_abc-{n}");
            let p = partition_index(&order, 8) as i32;
            let shard = sharding.shard((p % 4) as u32);
            assert!(shard.holds_order(&order), "{order} in partition {p}");
            assert!(!sharding.shard(((p + 1) % 4) as u32).holds_order(&order));
        }
        let err = Sharding {
            shards: 3,
            partitions_per_hub: 8,
        }
        .validate()
        .expect_err("3 does not divide 8");
        assert!(err.to_string().contains("1, 2, 4, 8"), "{err}");
    }

    #[test]
    fn one_shard_keeps_the_layout_and_names_of_a_lake_from_before_shards() {
        let one = Sharding {
            shards: 1,
            partitions_per_hub: 2,
        }
        .shard(0);
        assert_eq!(one.folder(), "jobs/bookings_fact");
        assert_eq!(one.app_prefix(JOB), "bookings_fact");
        assert!(one.owns(0) && one.owns(1) && one.holds_order("anything"));
        let third = Sharding {
            shards: 4,
            partitions_per_hub: 4,
        }
        .shard(3);
        assert_eq!(third.folder(), "jobs/bookings_fact/shards/3");
        assert_eq!(
            third.app_prefix("bookings_fact:refresh"),
            "bookings_fact:refresh:3"
        );
        assert_eq!(third.lease(), "bookings_fact-shard-3");
    }
}
