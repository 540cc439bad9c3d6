//! Leases: one holder at a time for a piece of work on a lake, across processes and machines.
//!
//! A lease is a folder of numbered claims in the lake, `_system/leases/<name>/<generation>.json`,
//! each written create-only, the way Delta commits its log: whoever writes generation N+1 first
//! holds the lease from then on. Create-only puts are atomic on a local folder (a hard link),
//! Azurite and Azure (`If-None-Match: *`), so the same code keeps two `up`s, a `job run` and a
//! bundle run apart wherever the lake lives.
//!
//! - **Acquire**: read the newest claim; if there is none, or it was released, or it expired,
//!   write the next generation with this process as holder.
//! - **Renew**: write the next generation again, by the same holder, with a later expiry. If
//!   someone else wrote it first, the lease was taken over (it had expired) and is lost.
//! - **Release**: write the next generation marked released, so a waiter need not wait for the
//!   expiry.
//!
//! A holder killed with SIGKILL renews no more; its claim expires after the lease's time to live
//! and the next claimant takes over. A claimant on the same machine (same boot, same process
//! namespace) sees at once that the holder's process is gone and takes over without waiting.
//! Expiry is compared on each claimant's clock, so machines sharing a lake need clocks within a
//! few seconds of each other (NTP gives milliseconds).

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::LakeError;
use crate::files::Files;
use crate::layer::Layer;
use crate::target::Lake;

/// How long a claim lasts without renewal, unless configured otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);

/// Who holds a lease: enough for a person to find the process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// Unique per process (and per acquisition): tells two processes with the same pid apart.
    pub id: String,
    /// What the holder runs, for messages: `boxoffice up`, `boxoffice job run gold`.
    pub command: String,
    /// The machine's host name.
    pub host: String,
    /// The process id on that machine.
    pub pid: u32,
    /// This boot of this machine and its process namespace (Linux): when a claimant shares it,
    /// it can see whether the holder's process still exists, and need not wait for the claim
    /// to expire after a crash.
    #[serde(default)]
    pub machine: Option<String>,
}

impl Holder {
    /// This process, running `command`.
    pub fn this_process(command: &str) -> Holder {
        Holder {
            id: uuid_like(),
            command: command.to_string(),
            host: host_name(),
            pid: std::process::id(),
            machine: machine_id(),
        }
    }

    /// Whether this holder's process is known to be gone: it ran in this machine's boot and
    /// process namespace, and no live process has its id.
    pub fn is_gone(&self) -> bool {
        self.machine.is_some() && self.machine == machine_id() && !process_alive(self.pid)
    }
}

/// One claim on a lease, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// Its number: each claim is the one before plus one.
    pub generation: u64,
    /// Who wrote it.
    pub holder: Holder,
    /// When this holder first took the lease.
    pub acquired_at: DateTime<Utc>,
    /// When this claim was written.
    pub renewed_at: DateTime<Utc>,
    /// When it stops counting unless renewed.
    pub expires_at: DateTime<Utc>,
    /// The holder gave it up.
    pub released: bool,
}

impl Claim {
    /// Whether the claim still keeps others out at `now`: not released, not expired, and its
    /// holder not known to be gone.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        !self.released && now < self.expires_at && !self.holder.is_gone()
    }

    /// "`boxoffice up` (pid 123 on host-a, since 2026-12-04 12:00:01 UTC)".
    pub fn describe(&self) -> String {
        format!(
            "`{}` (pid {} on {}, since {})",
            self.holder.command,
            self.holder.pid,
            self.holder.host,
            self.acquired_at.format("%Y-%m-%d %H:%M:%S UTC")
        )
    }
}

/// Why a lease could not be taken or kept.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Someone else holds it.
    #[error(
        "{name} is running in {} on this lake; its lease expires at {} unless renewed",
        claim.describe(),
        claim.expires_at.format("%H:%M:%S UTC")
    )]
    Held {
        /// The lease.
        name: String,
        /// The holder's claim.
        claim: Box<Claim>,
    },
    /// The lease expired before it was renewed and someone else took it.
    #[error("lost the {name} lease: {}", by.as_ref().map_or("it expired before it could be renewed".to_string(), |c| format!("{} took it over after it expired", c.describe())))]
    Lost {
        /// The lease.
        name: String,
        /// Who took it, when known.
        by: Option<Box<Claim>>,
    },
    /// A claim file that is not a claim.
    #[error(
        "the lease file {file} is not readable ({detail}); delete it if no boxoffice process runs on this lake"
    )]
    Corrupt {
        /// The file.
        file: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The lake could not be read or written.
    #[error(transparent)]
    Lake(#[from] LakeError),
}

/// A lease this process holds.
#[derive(Debug)]
pub struct Lease {
    files: Files,
    name: String,
    ttl: Duration,
    claim: Claim,
}

fn claim_file(generation: u64) -> String {
    format!("{generation:020}.json")
}

impl Lease {
    /// The folder of the lease `name`.
    pub(crate) fn folder(lake: &Lake, name: &str) -> Result<Files, LakeError> {
        lake.files(Layer::System, &format!("leases/{name}"))
    }

    /// The newest claim on `name`, if anyone ever claimed it.
    pub async fn current(lake: &Lake, name: &str) -> Result<Option<Claim>, LeaseError> {
        newest(&Lease::folder(lake, name)?).await
    }

    /// Takes the lease `name` for `holder` for `ttl`, unless someone else holds it.
    pub async fn acquire(
        lake: &Lake,
        name: &str,
        holder: &Holder,
        ttl: Duration,
    ) -> Result<Lease, LeaseError> {
        Lease::acquire_in(&Lease::folder(lake, name)?, name, holder, ttl).await
    }

    /// As [`acquire`](Self::acquire), in the lease's folder opened once by a caller that tries
    /// often (opening it builds a storage client).
    pub(crate) async fn acquire_in(
        files: &Files,
        name: &str,
        holder: &Holder,
        ttl: Duration,
    ) -> Result<Lease, LeaseError> {
        loop {
            let current = newest(files).await?;
            let now = Utc::now();
            if let Some(claim) = current.as_ref().filter(|c| c.is_live(now)) {
                return Err(LeaseError::Held {
                    name: name.to_string(),
                    claim: Box::new(claim.clone()),
                });
            }
            let claim = Claim {
                generation: current.map_or(1, |c| c.generation + 1),
                holder: holder.clone(),
                acquired_at: now,
                renewed_at: now,
                expires_at: now + ttl,
                released: false,
            };
            if write_claim(files, &claim).await? {
                forget_before(files, claim.generation).await;
                return Ok(Lease {
                    files: files.clone(),
                    name: name.to_string(),
                    ttl,
                    claim,
                });
            }
            // Someone claimed the same generation first: look again.
        }
    }

    /// As [`acquire`](Self::acquire), but waits while someone else holds it, calling `waiting`
    /// with the holder's claim each time it looks (every `poll`).
    pub async fn acquire_waiting(
        lake: &Lake,
        name: &str,
        holder: &Holder,
        ttl: Duration,
        poll: Duration,
        mut waiting: impl FnMut(&Claim),
    ) -> Result<Lease, LeaseError> {
        loop {
            match Lease::acquire(lake, name, holder, ttl).await {
                Err(LeaseError::Held { claim, .. }) => {
                    waiting(&claim);
                    tokio::time::sleep(poll).await;
                }
                other => return other,
            }
        }
    }

    /// The lease's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The claim this process holds now.
    pub fn claim(&self) -> &Claim {
        &self.claim
    }

    /// Extends the claim by its time to live; fails if someone else took the lease over.
    pub async fn renew(&mut self) -> Result<(), LeaseError> {
        self.write_next(false).await
    }

    /// Gives the lease up, so the next claimant need not wait for it to expire.
    pub async fn release(mut self) -> Result<(), LeaseError> {
        self.write_next(true).await
    }

    async fn write_next(&mut self, released: bool) -> Result<(), LeaseError> {
        let now = Utc::now();
        let next = Claim {
            generation: self.claim.generation + 1,
            renewed_at: now,
            expires_at: if released { now } else { now + self.ttl },
            released,
            ..self.claim.clone()
        };
        if write_claim(&self.files, &next).await? {
            forget_before(&self.files, next.generation).await;
            self.claim = next;
            return Ok(());
        }
        let by = newest(&self.files)
            .await
            .ok()
            .flatten()
            .filter(|c| c.holder.id != self.claim.holder.id)
            .map(Box::new);
        Err(LeaseError::Lost {
            name: self.name.clone(),
            by,
        })
    }
}

/// Tries at writing one claim before its error is returned.
const CLAIM_ATTEMPTS: u32 = 4;

/// Writes a claim create-only: false if that generation exists already.
///
/// A write that failed in transit (a connection reset, a timeout) may still have landed, and a
/// create-only write is not retried by the store, so it is retried here: if the retry finds the
/// file there, the claim is ours when the file holds exactly what we wrote.
async fn write_claim(files: &Files, claim: &Claim) -> Result<bool, LeaseError> {
    let name = claim_file(claim.generation);
    let text = Bytes::from(
        serde_json::to_vec_pretty(claim).map_err(|e| LeaseError::Corrupt {
            file: name.clone(),
            detail: e.to_string(),
        })?,
    );
    let mut attempt = 1;
    loop {
        match files.put_new(&name, text.clone()).await {
            Ok(true) => return Ok(true),
            Ok(false) if attempt == 1 => return Ok(false),
            Ok(false) => return Ok(files.get(&name).await?.is_some_and(|found| found == text)),
            Err(e) if attempt < CLAIM_ATTEMPTS => {
                tracing::warn!("writing lease claim {name} failed, retrying: {e}");
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                attempt += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The newest claim in a lease folder.
async fn newest(files: &Files) -> Result<Option<Claim>, LeaseError> {
    // A claim listed but gone when read was superseded and forgotten meanwhile: list again.
    for _ in 0..10 {
        let Some(name) = files
            .list("")
            .await?
            .into_iter()
            .rfind(|n| n.ends_with(".json"))
        else {
            return Ok(None);
        };
        if let Some(bytes) = files.get(&name).await? {
            return serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| LeaseError::Corrupt {
                    file: name,
                    detail: e.to_string(),
                });
        }
    }
    Ok(None)
}

/// Deletes claims two or more generations old; the one before the newest stays, so a reader
/// that listed just before a renewal still finds a file. Failures only leave files behind.
async fn forget_before(files: &Files, generation: u64) {
    let Ok(names) = files.list("").await else {
        return;
    };
    for name in names {
        let old = name
            .strip_suffix(".json")
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|g| g + 1 < generation);
        if old {
            let _ = files.delete(&name).await;
        }
    }
}

/// A lease kept renewed in the background until it is released or dropped.
///
/// Renewal runs every third of the time to live. When it cannot renew (the lake unreachable)
/// until the claim expires, or someone else took the lease over, the lease counts as lost:
/// [`lost`](Self::lost) says why, and the holder must stop writing what the lease guards.
pub struct HeldLease {
    name: String,
    stop: watch::Sender<bool>,
    lost: watch::Receiver<Option<String>>,
    task: Option<tokio::task::JoinHandle<Option<Lease>>>,
}

impl HeldLease {
    /// Starts renewing `lease`.
    pub fn keep(lease: Lease) -> HeldLease {
        let (stop, stop_rx) = watch::channel(false);
        let (lost_tx, lost) = watch::channel(None);
        let name = lease.name.clone();
        let task = tokio::spawn(renew_until_stopped(lease, stop_rx, lost_tx));
        HeldLease {
            name,
            stop,
            lost,
            task: Some(task),
        }
    }

    /// The lease's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Why the lease was lost, if it was.
    pub fn lost(&self) -> Option<String> {
        self.lost.borrow().clone()
    }

    /// A receiver that turns to `Some(why)` when the lease is lost: for a holder that stops
    /// what it is doing at once rather than at its next look.
    pub fn on_lost(&self) -> watch::Receiver<Option<String>> {
        self.lost.clone()
    }

    /// Stops renewing and releases the lease (unless it was lost).
    pub async fn release(mut self) -> Result<(), LeaseError> {
        let _ = self.stop.send(true);
        match self.task.take() {
            Some(task) => match task.await {
                Ok(Some(lease)) => lease.release().await,
                _ => Ok(()),
            },
            None => Ok(()),
        }
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        // Dropped without release (an error path): stop renewing; the claim expires by itself.
        let _ = self.stop.send(true);
    }
}

async fn renew_until_stopped(
    mut lease: Lease,
    mut stop: watch::Receiver<bool>,
    lost: watch::Sender<Option<String>>,
) -> Option<Lease> {
    let every = lease.ttl / 3;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return Some(lease),
        }
        if *stop.borrow() {
            return Some(lease);
        }
        // A renewal that has not landed by the claim's expiry is too late either way: a lake
        // that does not answer (requests retried for minutes) must not keep the holder thinking
        // it still holds the lease. Should the write land after all, the claim only keeps
        // others waiting until it expires.
        let left = (lease.claim.expires_at - Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO);
        let renewed = match tokio::time::timeout(left, lease.renew()).await {
            Ok(renewed) => renewed,
            Err(_) => {
                let why = format!(
                    "could not renew the {} lease before it expired: the lake did not answer",
                    lease.name
                );
                tracing::error!("{why}");
                let _ = lost.send(Some(why));
                return None;
            }
        };
        match renewed {
            Ok(()) => {}
            Err(e @ LeaseError::Lost { .. }) => {
                tracing::error!("{e}");
                let _ = lost.send(Some(e.to_string()));
                return None;
            }
            Err(e) if Utc::now() >= lease.claim.expires_at => {
                let why = format!(
                    "could not renew the {} lease before it expired: {e}",
                    lease.name
                );
                tracing::error!("{why}");
                let _ = lost.send(Some(why));
                return None;
            }
            Err(e) => tracing::warn!("renewing the {} lease failed, retrying: {e}", lease.name),
        }
    }
}

/// The boot and the process namespace this process runs in (Linux), `None` elsewhere.
fn machine_id() -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let namespace = std::fs::read_link("/proc/self/ns/pid").ok()?;
    Some(format!("{}/{}", boot.trim(), namespace.display()))
}

/// Whether process `pid` exists in this namespace and is not a zombie (killed, not yet reaped).
fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start())
            .is_some_and(|rest| rest.starts_with('Z') || rest.starts_with('X')),
        Err(_) => false,
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "an unknown host".to_string())
}

/// A random identifier without another dependency: the time and the process, hashed.
fn uuid_like() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Utc::now().timestamp_nanos_opt().unwrap_or_default() as u128);
    h.write_u32(std::process::id());
    let a = h.finish();
    h.write_u64(a);
    format!("{a:016x}{:016x}", h.finish())
}

#[cfg(test)]
#[path = "lease_tests.rs"]
mod tests;
