//! `boxoffice bench cdc`: the cdc job's rows/s and peak memory over simulated changes.

use std::time::Instant;

use anyhow::Context;
use boxoffice_jobs::ops::simulator::Simulator;
use boxoffice_lake::Lake;

use super::bench::{peak_rss_mb, reset_peak_rss};
use crate::cli::BenchCdcArgs;
use crate::commands::job::cdc_line;
use crate::progress::thousands;

/// Changes per simulated commit.
const PER_COMMIT: usize = 100_000;

pub async fn run(args: BenchCdcArgs) -> anyhow::Result<()> {
    let scratch = tempfile::tempdir().context("creating a scratch folder")?;
    let lake = Lake::local(&scratch.path().join("lake"))?;
    eprintln!(
        "bench cdc 1/2: simulating {} changes to ops.raw_movie_bookings ...",
        thousands(args.changes as u64)
    );
    let mut simulator = Simulator::open(&lake, 42).await?;
    let mut left = args.changes;
    while left > 0 {
        let n = left.min(PER_COMMIT);
        simulator.tick(n).await?;
        left -= n;
    }
    eprintln!("bench cdc 2/2: the cdc job over all of them ...");
    reset_peak_rss();
    let started = Instant::now();
    let report = boxoffice_jobs::cdc::run(&lake).await?;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("{}", cdc_line(&report));
    println!(
        "cdc  {:>10} change rows/s   ({} Bronze change rows from {} source changes in {seconds:.1}s; peak memory {})",
        thousands((report.changes as f64 / seconds) as u64),
        thousands(report.changes),
        thousands(args.changes as u64),
        peak_rss_mb().map_or("-".to_string(), |m| format!("{m:.0} MB")),
    );
    Ok(())
}
