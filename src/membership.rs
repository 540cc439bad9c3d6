//! Which workers are alive on a lake: each holds a lease of its own, `workers/<id>`, renewed in
//! the background like any lease; the live workers are those whose newest claim is live. From
//! their number each worker works out its fair share of the join's shards.

use std::collections::BTreeSet;

use anyhow::Context;
use boxoffice_lake::{HeldLease, Holder, Lake, Layer, Lease};
use chrono::{Duration as ChronoDuration, Utc};

/// The folder of the membership leases, under `_system/leases/`.
const FOLDER: &str = "workers";

/// How long after its last renewal a dead worker's lease files are left before any worker
/// deletes them.
const FORGET_AFTER_MINUTES: i64 = 10;

/// This worker's membership, renewed until released or lost.
pub struct Member {
    lease: HeldLease,
}

impl Member {
    /// Joins the workers of `lake` as `id` for `ttl` (renewed every third of it).
    pub async fn join(
        lake: &Lake,
        id: &str,
        holder: &Holder,
        ttl: std::time::Duration,
    ) -> anyhow::Result<Member> {
        let lease = Lease::acquire(lake, &format!("{FOLDER}/{id}"), holder, ttl)
            .await
            .with_context(|| format!("joining the workers as {id}"))?;
        Ok(Member {
            lease: HeldLease::keep(lease),
        })
    }

    /// Why the membership was lost (the lake unreachable past the lease's expiry), if it was.
    pub fn lost(&self) -> Option<String> {
        self.lease.lost()
    }

    /// A receiver that turns to `Some(why)` when the membership is lost.
    pub fn on_lost(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.lease.on_lost()
    }

    /// Leaves: the others count one worker fewer at their next look.
    pub async fn leave(self) -> anyhow::Result<()> {
        Ok(self.lease.release().await?)
    }
}

/// The ids of the workers alive on `lake` now; dead workers' leases long expired are forgotten
/// on the way.
pub async fn live(lake: &Lake) -> anyhow::Result<BTreeSet<String>> {
    let folder = lake.files(Layer::System, &format!("leases/{FOLDER}"))?;
    let ids: BTreeSet<String> = folder
        .list("")
        .await?
        .iter()
        .filter_map(|name| name.split_once('/').map(|(id, _)| id.to_string()))
        .collect();
    let now = Utc::now();
    let mut alive = BTreeSet::new();
    for id in ids {
        match Lease::current(lake, &format!("{FOLDER}/{id}")).await {
            Ok(Some(claim)) if claim.is_live(now) => {
                alive.insert(id);
            }
            Ok(Some(claim))
                if claim.renewed_at + ChronoDuration::minutes(FORGET_AFTER_MINUTES) < now =>
            {
                for name in folder.list(&format!("{id}/")).await.unwrap_or_default() {
                    let _ = folder.delete(&name).await;
                }
            }
            _ => {}
        }
    }
    Ok(alive)
}

/// The number of shards each of `workers` live workers aims to own: all of them shared out,
/// rounded up, so that every shard can have an owner.
pub fn fair_share(shards: u32, workers: usize) -> u32 {
    let workers = u32::try_from(workers.max(1)).unwrap_or(u32::MAX);
    shards.div_ceil(workers)
}

/// What a worker owning `owned` should do to reach `target` shards: the shards to give up (the
/// highest numbers first) and, from `free` (shards nobody holds), those to try to take, starting
/// at `start` so that workers starting together try different ones first.
pub fn rebalance(
    owned: &BTreeSet<u32>,
    free: &[u32],
    target: u32,
    start: usize,
) -> (Vec<u32>, Vec<u32>) {
    let target = target as usize;
    let give_up: Vec<u32> = owned
        .iter()
        .rev()
        .take(owned.len().saturating_sub(target))
        .copied()
        .collect();
    let wanted = target.saturating_sub(owned.len());
    let mut candidates: Vec<u32> = free
        .iter()
        .copied()
        .filter(|k| !owned.contains(k))
        .collect();
    if !candidates.is_empty() {
        let at = start % candidates.len();
        candidates.rotate_left(at);
    }
    candidates.truncate(wanted);
    (give_up, candidates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_every_shard_and_differ_by_at_most_one_in_the_end() {
        assert_eq!(fair_share(8, 1), 8);
        assert_eq!(fair_share(8, 3), 3);
        assert_eq!(fair_share(8, 4), 2);
        assert_eq!(fair_share(8, 0), 8);
        assert_eq!(fair_share(2, 5), 1, "more workers than shards: some idle");
        // Three workers converging on 8 shards: whatever order they act in, no one holds more
        // than its share and every shard ends with an owner.
        let mut owned: Vec<BTreeSet<u32>> =
            vec![(0..8).collect(), BTreeSet::new(), BTreeSet::new()];
        for round in 0..4 {
            for w in 0..3 {
                let held: BTreeSet<u32> = owned.iter().flatten().copied().collect();
                let free: Vec<u32> = (0..8).filter(|k| !held.contains(k)).collect();
                let (give_up, take) = rebalance(&owned[w], &free, fair_share(8, 3), w * 3 + round);
                for k in give_up {
                    owned[w].remove(&k);
                }
                owned[w].extend(take);
            }
        }
        let counts: Vec<usize> = owned.iter().map(BTreeSet::len).collect();
        assert!(counts.iter().all(|c| *c <= 3), "{counts:?}");
        assert_eq!(counts.iter().sum::<usize>(), 8, "{owned:?}");
        let all: BTreeSet<u32> = owned.iter().flatten().copied().collect();
        assert_eq!(all.len(), 8, "no shard has two owners");
    }

    #[test]
    fn a_worker_gives_up_its_highest_shards_and_takes_free_ones_from_its_start() {
        let owned: BTreeSet<u32> = [1, 4, 6].into();
        assert_eq!(rebalance(&owned, &[], 1, 0), (vec![6, 4], vec![]));
        let none = BTreeSet::new();
        assert_eq!(rebalance(&none, &[0, 2, 5, 7], 2, 1), (vec![], vec![2, 5]));
        assert_eq!(rebalance(&none, &[0, 2], 4, 9), (vec![], vec![2, 0]));
    }
}
