//! `boxoffice worker`: one of any number of processes sharing a lake's work. Each cycle it
//! renews its membership, takes or gives up shards of the join until it owns its fair share
//! (ceil(shards / live workers)), runs the shards it owns, and, when it holds their leases, the
//! lake's other jobs (batch_load, Gold, cdc, maintenance), which run once per lake.
//!
//! Ownership is a lease per shard (`bookings_fact-shard-<k>`): at most one process holds it, it
//! is renewed in the background, and a dead worker's shards are taken over once their claims
//! expire (at once on the same machine, where a claimant sees the holder's process is gone).
//! A worker that cannot reach the lake stops renewing, so its claims expire and others take its
//! shards; it says so and tries to join again.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::Context;
use boxoffice_jobs::background::{self, Background, Stopped};
use boxoffice_jobs::expectations::Expectations;
use boxoffice_jobs::maintenance;
use boxoffice_jobs::silver::bookings_fact::refresh;
use boxoffice_jobs::silver::bookings_fact::{BookingsFact, Settings, Sharding};
use boxoffice_lake::{HeldLease, Holder, Lake, Lease, LeaseError};
use chrono::Utc;

use super::job::{cdc_line, gold_line};
use super::shutdown_signal;
use crate::cli::{GlobalArgs, WorkerArgs};
use crate::config::{self, FileConfig};
use crate::leases::{Leases, MAINTENANCE, Taking};
use crate::membership::{self, Member};
use crate::progress::thousands;

/// The jobs that run once per lake, in whichever worker holds their leases.
const LAKE_JOBS: [&str; 4] = ["batch_load", "gold", "cdc", MAINTENANCE];

pub async fn run(global: &GlobalArgs, args: WorkerArgs) -> anyhow::Result<()> {
    // Listening from the start: a stop asked for while the worker opens the lake is a clean stop.
    let (stopping, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stopping.send(true);
        // A second signal while the last cycle waits on a lake that does not answer.
        shutdown_signal().await;
        eprintln!("stopped at once: the leases this worker held expire by themselves");
        std::process::exit(130);
    });
    tokio::task::yield_now().await;
    let file = config::load(global)?;
    let lake = config::lake(global, &file)?;
    lake.prepare().await?;
    let interval = config::job_interval(&file, args.interval)?;
    let mut worker = Worker::new(&lake, &file, &args)?;
    let sharding = BookingsFact::check(&lake, &worker.settings)
        .await
        .context("checking the join's shards")?;
    worker.say(&format!(
        "started on {} ({}; a cycle every {}{})",
        lake.describe(),
        sharding.describe(),
        humantime::format_duration(interval),
        if args.shards_only {
            ", shards only"
        } else {
            ""
        }
    ));
    if let Some(note) = super::tables::long_tombstones_note(&lake).await? {
        worker.say(&format!("note: {note}"));
    }
    let (duration, on_eof, drain) = (args.duration, args.stop_when_stdin_closes, args.drain);
    let stop = async move {
        let until = async move {
            match duration {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        let input_closed = async move {
            if !on_eof {
                return std::future::pending().await;
            }
            let _ = tokio::task::spawn_blocking(|| {
                std::io::copy(&mut std::io::stdin(), &mut std::io::sink())
            })
            .await;
        };
        let mut stopped = stopped;
        tokio::select! {
            _ = until => {}
            _ = input_closed => {}
            _ = stopped.wait_for(|s| *s) => {}
        }
    };
    tokio::pin!(stop);
    loop {
        if worker.guarded_cycle().await && drain {
            worker.say("drained: every shard of the lake is joined to the end of Bronze");
            return worker.stop().await;
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = &mut stop => break,
        }
    }
    // Once more, so that what landed before the stop is joined, then everything handed back.
    worker.say("stopping: a last cycle, then every shard checkpointed and handed back (Ctrl-C again exits at once)");
    worker.guarded_cycle().await;
    worker.stop().await
}

/// Resolves when any of the leases behind `signals` is lost.
async fn first_loss(signals: Vec<tokio::sync::watch::Receiver<Option<String>>>) {
    if signals.is_empty() {
        return std::future::pending().await;
    }
    while !signals.iter().any(|s| s.borrow().is_some()) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A shard this worker owns: its lease and its job, open between cycles.
struct Owned {
    lease: HeldLease,
    job: BookingsFact,
}

/// The lake's other jobs, while this worker holds their leases.
struct LakeJobs {
    leases: Leases,
    gold: boxoffice_jobs::gold::Gold,
    cdc: boxoffice_jobs::cdc::Flow,
    last_maintenance: Instant,
    /// The maintenance turn in progress, on a thread and runtime of its own: compacting takes
    /// seconds, and on the worker's runtime its shards' cycles would wait for it.
    maintenance: Option<Background<std::io::Result<String>>>,
}

impl LakeJobs {
    /// The line of the maintenance turn that has finished since the last call, if one has.
    fn finished_maintenance(&mut self) -> Option<String> {
        let result = self.maintenance.as_mut()?.try_take()?;
        self.maintenance = None;
        Some(maintenance_line(result))
    }

    /// Starts a maintenance turn unless one is in progress or the last began under `every` ago.
    fn start_maintenance_if_due(&mut self, lake: &Lake, every: Option<Duration>) {
        let due = every.is_some_and(|every| self.last_maintenance.elapsed() >= every);
        if !due || self.maintenance.is_some() {
            return;
        }
        self.last_maintenance = Instant::now();
        let lake = lake.clone();
        self.maintenance = Some(background::spawn_async("maintenance", move || async move {
            maintain(&lake).await
        }));
    }
}

struct Worker {
    lake: Lake,
    settings: Settings,
    expectations: Expectations,
    file_ttl: Duration,
    taking: Taking,
    holder: Holder,
    name: String,
    shards_only: bool,
    maintenance_every: Option<Duration>,
    member: Option<Member>,
    owned: BTreeMap<u32, Owned>,
    lake_jobs: Option<LakeJobs>,
    /// The last notice printed for a condition that lasts (not repeated each cycle).
    notice: Option<String>,
    cycles: usize,
    /// `--drain`: the input is complete; shards run to its end and the worker exits when done.
    drain: bool,
    /// Live workers to wait for before taking a shard, until they were seen once.
    min_workers: usize,
    gathered: bool,
}

impl Worker {
    fn new(lake: &Lake, file: &FileConfig, args: &WorkerArgs) -> anyhow::Result<Worker> {
        let settings = config::bookings_fact(file, None)?;
        let expectations = config::expectations(file, &settings)?;
        let name = match &args.name {
            Some(n) if n.is_empty() || n.contains('/') => {
                anyhow::bail!("--name {n:?}: give a name without slashes")
            }
            Some(n) => n.clone(),
            None => format!("{}-{}", host_name(), std::process::id()),
        };
        Ok(Worker {
            lake: lake.clone(),
            settings,
            expectations,
            file_ttl: config::lease_ttl(file)?,
            taking: Taking::refusing(file)?,
            holder: Holder::this_process(&format!("boxoffice worker {name}")),
            name,
            shards_only: args.shards_only,
            maintenance_every: (!args.maintenance_every.is_zero())
                .then_some(args.maintenance_every),
            member: None,
            owned: BTreeMap::new(),
            lake_jobs: None,
            notice: None,
            cycles: 0,
            drain: args.drain,
            min_workers: args.min_workers,
            gathered: args.min_workers <= 1,
        })
    }

    /// A line on stdout, stamped: what the worker took, gave up or lost, and why.
    fn say(&self, what: &str) {
        self.say_at(Utc::now(), what);
    }

    /// As [`say`](Self::say), stamped `at`.
    fn say_at(&self, at: chrono::DateTime<Utc>, what: &str) {
        println!(
            "{} worker {}: {what}",
            at.format("%Y-%m-%dT%H:%M:%S%.6fZ"),
            self.name
        );
    }

    /// Says `what` unless it was the last notice said.
    fn notice(&mut self, what: String) {
        if self.notice.as_ref() != Some(&what) {
            self.say(&what);
            self.notice = Some(what);
        }
    }

    /// A cycle, abandoned the moment one of this worker's leases is lost (the lake stopped
    /// answering, or another worker took a lease over after it expired): nothing more is written
    /// under it, and the next cycle drops what was lost. A shard interrupted this way reloads
    /// its checkpoint at its next run. Returns whether, draining, the lake's work is done.
    async fn guarded_cycle(&mut self) -> bool {
        let mut signals: Vec<_> = self.owned.values().map(|o| o.lease.on_lost()).collect();
        signals.extend(self.member.as_ref().map(Member::on_lost));
        let outcome = tokio::select! {
            done = self.cycle() => Some(done),
            _ = first_loss(signals) => None,
        };
        if outcome.is_none() {
            self.say("a lease was lost during the cycle: stopped its work at once");
        }
        outcome.unwrap_or(false)
    }

    /// One cycle: membership, shares, then the work. Failures are said and retried next cycle.
    /// Returns whether, draining, nothing is left for this worker (see [`Self::drained`]).
    async fn cycle(&mut self) -> bool {
        self.cycles += 1;
        let gave_up = match self.rebalance().await {
            Ok(gave_up) => gave_up,
            Err(e) => {
                self.notice(format!("{e:#}; trying again next cycle"));
                return false;
            }
        };
        let all_ran = self.work().await;
        if !self.drain || !self.gathered || gave_up || !all_ran {
            return false;
        }
        match self.drained().await {
            Ok(done) => done,
            Err(e) => {
                self.notice(format!("{e:#}; trying again next cycle"));
                false
            }
        }
    }

    /// After a cycle that drained every shard this worker owns: whether it may exit. Not while
    /// a shard is free (its owner left: this worker or another takes it next cycle); the worker
    /// running the lake jobs only once it owns every shard, so that its Gold refresh came after
    /// the last shard's drain.
    async fn drained(&self) -> anyhow::Result<bool> {
        let sharding = BookingsFact::check(&self.lake, &self.settings).await?;
        let owned: BTreeSet<u32> = self.owned.keys().copied().collect();
        if !self.free_shards(sharding, &owned).await?.is_empty() {
            return Ok(false);
        }
        Ok(self.lake_jobs.is_none() || owned.len() == sharding.shards as usize)
    }

    /// Renews membership (joining again after losing it), drops shards whose leases were lost,
    /// then gives up or takes shards until this worker owns its fair share. Returns whether it
    /// gave any shard up.
    async fn rebalance(&mut self) -> anyhow::Result<bool> {
        if let Some(why) = self.member.as_ref().and_then(Member::lost) {
            self.give_up_everything(&why);
        }
        if self.member.is_none() {
            let id = self.name.clone();
            self.member = Some(Member::join(&self.lake, &id, &self.holder, self.file_ttl).await?);
        }
        let lost: Vec<(u32, String)> = self
            .owned
            .iter()
            .filter_map(|(k, o)| o.lease.lost().map(|why| (*k, why)))
            .collect();
        for (k, why) in lost {
            self.owned.remove(&k);
            self.say(&format!("lost shard {k}: {why}"));
        }
        if let Some(unfinished) = refresh::unfinished(&self.lake).await? {
            anyhow::bail!(
                "a full refresh of bookings_fact started at {} is unfinished: no shard is taken \
                 until `boxoffice job run bookings_fact` finishes it",
                unfinished.started_at.format("%Y-%m-%d %H:%M:%S UTC")
            );
        }
        let sharding = BookingsFact::check(&self.lake, &self.settings).await?;
        let live = membership::live(&self.lake).await?;
        if !self.gathered {
            if live.len() < self.min_workers {
                self.notice(format!(
                    "waiting for {} live workers before taking shards ({} so far)",
                    self.min_workers,
                    live.len()
                ));
                return Ok(false);
            }
            self.gathered = true;
        }
        let target = membership::fair_share(sharding.shards, live.len());
        let owned: BTreeSet<u32> = self.owned.keys().copied().collect();
        let free = self.free_shards(sharding, &owned).await?;
        let start = live.iter().position(|id| *id == self.name).unwrap_or(0)
            * sharding.shards as usize
            / live.len().max(1);
        let (give_up, take) = membership::rebalance(&owned, &free, target, start);
        let gave_up = !give_up.is_empty();
        for k in give_up {
            self.give_up(
                k,
                &format!("{} live workers share {}", live.len(), sharding.describe()),
            )
            .await;
        }
        for k in take {
            self.take(sharding, k).await?;
        }
        Ok(gave_up)
    }

    /// Shards no live claim holds.
    async fn free_shards(
        &self,
        sharding: Sharding,
        owned: &BTreeSet<u32>,
    ) -> anyhow::Result<Vec<u32>> {
        let now = Utc::now();
        let mut free = Vec::new();
        for shard in sharding.all() {
            if owned.contains(&shard.index) {
                continue;
            }
            let claim = Lease::current(&self.lake, &shard.lease()).await?;
            if claim.is_none_or(|c| !c.is_live(now)) {
                free.push(shard.index);
            }
        }
        Ok(free)
    }

    /// Takes shard `k` if nobody got in first, and opens it (finishing what its last owner left).
    async fn take(&mut self, sharding: Sharding, k: u32) -> anyhow::Result<()> {
        let name = sharding.shard(k).lease();
        let lease = match Lease::acquire(&self.lake, &name, &self.holder, self.file_ttl).await {
            Ok(lease) => HeldLease::keep(lease),
            Err(LeaseError::Held { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let opened = BookingsFact::open_shards(
            &self.lake,
            self.settings.clone(),
            self.expectations.clone(),
            &[k],
        )
        .await;
        match opened {
            Ok((job, replayed)) => {
                self.say(&format!(
                    "took shard {k}{}",
                    if replayed.is_empty() {
                        String::new()
                    } else {
                        format!(" (finished {} batches its last owner left)", replayed.len())
                    }
                ));
                self.owned.insert(k, Owned { lease, job });
                Ok(())
            }
            Err(e) => {
                let _ = lease.release().await;
                Err(anyhow::Error::new(e).context(format!("opening shard {k}")))
            }
        }
    }

    /// Checkpoints shard `k` and hands its lease back.
    async fn give_up(&mut self, k: u32, why: &str) {
        let Some(mut owned) = self.owned.remove(&k) else {
            return;
        };
        if let Err(e) = owned.job.checkpoint().await {
            // Its next owner replays the batches since its last checkpoint instead.
            self.say(&format!(
                "shard {k}: the checkpoint failed ({e}); its next owner replays"
            ));
        }
        // Stamped before the release: the next owner can only take it after.
        let at = Utc::now();
        match owned.lease.release().await {
            Ok(()) => self.say_at(at, &format!("released shard {k} ({why})")),
            Err(e) => self.say_at(
                at,
                &format!("released shard {k} ({why}); the release failed: {e}"),
            ),
        }
    }

    /// After losing contact with the lake: stops using every lease (they expire by themselves,
    /// so others take over) and says so.
    fn give_up_everything(&mut self, why: &str) {
        let shards: Vec<String> = self.owned.keys().map(u32::to_string).collect();
        self.owned.clear();
        self.lake_jobs = None;
        self.member = None;
        self.say(&format!(
            "lost contact with the lake ({why}): gave up shards [{}] and the lake jobs without \
             writing more; trying to join again",
            shards.join(", ")
        ));
    }

    /// Runs batch_load, the owned shards, Gold and cdc, and now and then starts a maintenance
    /// turn beside them (its line is said at the first cycle after it ends). Returns whether
    /// every owned shard and lake job ran without failing.
    async fn work(&mut self) -> bool {
        let mut all_ran = true;
        if !self.shards_only && self.lake_jobs.is_none() {
            self.lake_jobs = self.take_lake_jobs().await;
        }
        if let Some(why) = self.lake_jobs.as_ref().and_then(|j| j.leases.lost()) {
            self.lake_jobs = None;
            self.say(&format!("lost the lake jobs: {why}"));
        }
        if self.lake_jobs.is_some()
            && let Err(e) = boxoffice_jobs::batch::run(&self.lake).await
        {
            all_ran = false;
            self.say(&format!("batch_load failed: {e}; retried next cycle"));
        }
        let mut events = 0u64;
        let keys: Vec<u32> = self.owned.keys().copied().collect();
        for k in keys {
            let Some(owned) = self.owned.get_mut(&k) else {
                continue;
            };
            if owned.lease.lost().is_some() {
                all_ran = false;
                continue; // dropped at the next rebalance
            }
            match owned.job.run_batches(self.drain).await {
                Ok(reports) => events += reports.iter().map(|r| r.events).sum::<u64>(),
                Err(e) => {
                    all_ran = false;
                    self.say(&format!("shard {k} failed: {e}; retried next cycle"));
                }
            }
        }
        if events > 0 {
            tracing::info!(worker = %self.name, events, "joined");
        }
        let Some(jobs) = self.lake_jobs.as_mut() else {
            return all_ran;
        };
        let mut lines = Vec::new();
        match jobs.gold.refresh(false).await {
            Ok(reports) => lines.extend(reports.iter().map(gold_line)),
            Err(e) => lines.push(format!("Gold failed: {e}; retried next cycle")),
        }
        match jobs.cdc.run().await {
            Ok(report) if report.changes > 0 => lines.push(cdc_line(&report)),
            Ok(_) => {}
            Err(e) => lines.push(format!("cdc failed: {e}; retried next cycle")),
        }
        lines.extend(jobs.finished_maintenance());
        jobs.start_maintenance_if_due(&self.lake, self.maintenance_every);
        for line in lines
            .iter()
            .filter(|l| l.contains("failed") || l.contains("maintenance"))
        {
            all_ran &= !line.contains("failed");
            self.say(line);
        }
        all_ran
    }

    /// The lake jobs' leases, when nobody else holds them.
    async fn take_lake_jobs(&mut self) -> Option<LakeJobs> {
        let command = format!("boxoffice worker {}", self.name);
        let leases = Leases::take(&self.lake, &LAKE_JOBS, &command, self.taking)
            .await
            .ok()?;
        self.say(&format!("runs the lake jobs ({})", LAKE_JOBS.join(", ")));
        Some(LakeJobs {
            leases,
            gold: boxoffice_jobs::gold::Gold::new(&self.lake),
            cdc: boxoffice_jobs::cdc::Flow::new(&self.lake),
            last_maintenance: Instant::now(),
            maintenance: None,
        })
    }

    /// Checkpoints and hands back every shard, the lake jobs and the membership.
    async fn stop(mut self) -> anyhow::Result<()> {
        let keys: Vec<u32> = self.owned.keys().copied().collect();
        for k in keys {
            self.give_up(k, "stopping").await;
        }
        if let Some(jobs) = self.lake_jobs.take() {
            if let Some(turn) = jobs.maintenance {
                // Under the maintenance lease until it is done: released, another worker's turn
                // could start beside it.
                self.say(&maintenance_line(turn.await));
            }
            jobs.leases.release().await?;
        }
        if let Some(member) = self.member.take() {
            member.leave().await?;
        }
        self.say(&format!(
            "stopped after {} cycles",
            thousands(self.cycles as u64)
        ));
        Ok(())
    }
}

/// What a maintenance turn on its own thread said, or why it said nothing.
fn maintenance_line(result: Result<std::io::Result<String>, Stopped>) -> String {
    match result {
        Ok(Ok(line)) => line,
        Ok(Err(e)) => {
            format!("maintenance failed: its runtime did not start: {e}; retried at its next turn")
        }
        Err(stopped) => format!("maintenance failed: {stopped}; retried at its next turn"),
    }
}

/// Compacts and checkpoints every table (the bundle's maintenance with its defaults), as one line.
async fn maintain(lake: &Lake) -> String {
    match compact_and_checkpoint(lake).await {
        Ok((before, after)) => {
            format!("maintenance: {before} table files compacted into {after}, checkpoints written")
        }
        Err(e) => format!("maintenance failed: {e:#}; retried at its next turn"),
    }
}

/// The bundle's maintenance with its defaults: today's small files older than 20 s (and every
/// closed day's) compacted, then a checkpoint of every table. Returns the live files of the
/// compacted tables before and after.
pub(super) async fn compact_and_checkpoint(lake: &Lake) -> anyhow::Result<(u64, u64)> {
    let tables = super::tables::catalog();
    let settings = maintenance::CompactSettings {
        before: Utc::now().date_naive(),
        min_file_age: maintenance::DEFAULT_MIN_FILE_AGE,
        target_bytes: 128 * 1024 * 1024,
    };
    let compacted = maintenance::compact(lake, &tables, &settings).await?;
    maintenance::checkpoint(lake, &tables)
        .await
        .context("compacted, but the checkpoints failed")?;
    Ok(compacted
        .iter()
        .fold((0, 0), |(b, a), r| (b + r.files_before, a + r.files_after)))
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty() && !h.contains('/'))
        .unwrap_or_else(|| "worker".to_string())
}
