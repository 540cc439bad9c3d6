//! The leases commands take before they write: one `up` or `ingest` lands into a lake at a time,
//! and each job runs in one process at a time, wherever those processes run.

use std::time::Duration;

use anyhow::bail;
use boxoffice_jobs::silver::bookings_fact::{ShardId, Sharding, sharding};
use boxoffice_lake::{Claim, HeldLease, Holder, Lake, Lease, LeaseError};

use crate::config::FileConfig;

/// The lease of whoever lands events into Bronze through the local queue (`up`, `ingest`): two
/// of them would number their partitions' events from the same sequence numbers.
pub const LANDING: &str = "landing";

/// The lease of the table-maintenance tasks (compact, vacuum, checkpoint).
pub const MAINTENANCE: &str = "maintenance";

/// The leases a run of the bookings_fact join takes: each of its shards' (`shards`, or every
/// shard of the lake's split and of the split the settings ask for, whichever has more), and for
/// a run of every shard the job's own lease too, which full refreshes and backfills need.
pub async fn join_leases(
    lake: &Lake,
    file: &FileConfig,
    shards: Option<&[u32]>,
) -> anyhow::Result<Vec<String>> {
    let settings = crate::config::bookings_fact(file, None)?;
    let recorded = sharding::recorded(lake).await?;
    let wanted = Sharding::wanted(&settings, recorded);
    let split = Sharding {
        shards: wanted.shards.max(recorded.map_or(1, |r| r.shards)),
        ..wanted
    };
    Ok(match shards {
        Some(some) => some.iter().map(|k| split.shard(*k).lease()).collect(),
        None => std::iter::once(JOIN.to_string())
            .chain(split.all().iter().map(ShardId::lease))
            .collect(),
    })
}

/// The job lease of the bookings_fact join as a whole (with every shard's lease).
pub const JOIN: &str = "bookings_fact";

/// How a command takes its leases.
#[derive(Debug, Clone, Copy)]
pub struct Taking {
    /// Wait for a held lease instead of refusing.
    pub wait: bool,
    /// The command has a `--wait` flag to suggest.
    pub offers_wait: bool,
    /// How long a claim lasts without renewal (`[jobs] lease_ttl`).
    pub ttl: Duration,
}

impl Taking {
    /// For a command with `--wait`: waits when it was given, else refuses.
    pub fn from_file(file: &FileConfig, wait: bool) -> anyhow::Result<Taking> {
        Ok(Taking {
            wait,
            offers_wait: true,
            ttl: crate::config::lease_ttl(file)?,
        })
    }

    /// For a command that refuses when a lease is held (`up`, a bundle task).
    pub fn refusing(file: &FileConfig) -> anyhow::Result<Taking> {
        Ok(Taking {
            offers_wait: false,
            ..Taking::from_file(file, false)?
        })
    }
}

/// Leases held by this process, renewed in the background.
pub struct Leases {
    held: Vec<HeldLease>,
}

impl Leases {
    /// Takes every lease in `names` for `command`, or none: on refusal the ones already taken
    /// are released and the error names the holder and what to do.
    pub async fn take(
        lake: &Lake,
        names: &[impl AsRef<str>],
        command: &str,
        how: Taking,
    ) -> anyhow::Result<Leases> {
        let holder = Holder::this_process(command);
        let mut held = Vec::new();
        for name in names {
            match take_one(lake, name.as_ref(), &holder, how).await {
                Ok(lease) => held.push(HeldLease::keep(lease)),
                Err(e) => {
                    for lease in held {
                        let _ = lease.release().await;
                    }
                    return Err(e);
                }
            }
        }
        Ok(Leases { held })
    }

    /// Why a lease was lost, if one was: the holder must stop writing.
    pub fn lost(&self) -> Option<String> {
        self.held.iter().find_map(HeldLease::lost)
    }

    /// Fails if a lease was lost.
    pub fn check(&self) -> anyhow::Result<()> {
        match self.lost() {
            Some(why) => bail!("{why}; stopping so that two processes never write the same tables"),
            None => Ok(()),
        }
    }

    /// Gives every lease up.
    pub async fn release(self) -> anyhow::Result<()> {
        for lease in self.held {
            lease.release().await?;
        }
        Ok(())
    }
}

async fn take_one(lake: &Lake, name: &str, holder: &Holder, how: Taking) -> anyhow::Result<Lease> {
    let taken = if how.wait {
        let mut told = None;
        Lease::acquire_waiting(
            lake,
            name,
            holder,
            how.ttl,
            Duration::from_secs(1),
            |claim| {
                if told.as_ref() != Some(&claim.holder) {
                    eprintln!(
                        "waiting for {name}: it is running in {}{}",
                        claim.describe(),
                        gone_note(claim)
                    );
                    told = Some(claim.holder.clone());
                }
            },
        )
        .await
    } else {
        Lease::acquire(lake, name, holder, how.ttl).await
    };
    taken.map_err(|e| match e {
        LeaseError::Held { name, claim } => {
            let what = if name == LANDING {
                format!("{} is landing events into this lake", claim.describe())
            } else {
                format!("{name} is running in {} on this lake", claim.describe())
            };
            let todo = if how.offers_wait {
                "stop it, or add --wait to start when it ends"
            } else {
                "stop it first"
            };
            anyhow::anyhow!(
                "refused: {what}{}; {todo} (its lease expires at {} unless renewed)",
                gone_note(&claim),
                claim.expires_at.format("%H:%M:%S UTC"),
            )
        }
        other => anyhow::Error::new(other).context(format!("taking the {name} lease")),
    })
}

/// When the holder's process is gone (it ran on this machine), says so: the lease is free.
fn gone_note(claim: &Claim) -> &'static str {
    if claim.holder.is_gone() {
        " (that process is gone: the lease is free now)"
    } else {
        ""
    }
}
