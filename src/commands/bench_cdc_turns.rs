//! `boxoffice bench cdc --turns`: `up`'s cdc turns back to back on a scratch lake. Each turn is
//! what `up`'s changes task does every 2 s ([`BookingChanges::run`]): the booking service's
//! changes, then cdc through Bronze, Silver and Gold. The flow's tables are compacted and
//! checkpointed every few turns, as `up`'s maintenance does every 15 s. A turn's cost as the
//! tables grow is what decides whether cdc can keep running beside the join for hours.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use boxoffice_jobs::cdc::CdcReport;
use boxoffice_jobs::maintenance::{self, CompactSettings};
use boxoffice_lake::Lake;
use chrono::Utc;

use super::bench::{Cpu, cpu_seconds};
use super::booking_changes::BookingChanges;
use crate::cli::BenchCdcArgs;
use crate::progress::thousands;

/// The sum of a block of turns.
#[derive(Default)]
struct Block {
    turns: u32,
    /// Whole turns, and the booking service's share of them.
    turn: Duration,
    service: Duration,
    /// The four cdc steps: Bronze, the latest state, the history, Gold.
    steps: [u128; 4],
    maintenance: Duration,
    changes: u64,
    cpu_at_start: f64,
}

impl Block {
    fn starting(cpu_at_start: f64) -> Block {
        Block {
            cpu_at_start,
            ..Block::default()
        }
    }

    fn add(&mut self, took: Duration, report: &CdcReport) {
        self.turns += 1;
        self.turn += took;
        self.service += took.saturating_sub(Duration::from_millis(
            u64::try_from(report.millis).unwrap_or(u64::MAX),
        ));
        for (sum, step) in self.steps.iter_mut().zip(report.step_millis) {
            *sum += step;
        }
        self.changes += report.changes;
    }

    /// One line of the table: every figure a mean per turn.
    fn line(&self, first: usize, last: usize, cpu_now: f64) -> String {
        let n = f64::from(self.turns.max(1));
        let ms = |d: Duration| d.as_secs_f64() * 1000.0 / n;
        let step = |i: usize| self.steps[i] as f64 / n;
        format!(
            "{:>11} {:>8.0} {:>8.0} {:>7.0} {:>7.0} {:>8.0} {:>6.0} {:>12.0} {:>8.0} {:>13}",
            format!("{first}-{last}"),
            ms(self.turn),
            ms(self.service),
            step(0),
            step(1),
            step(2),
            step(3),
            ms(self.maintenance),
            (cpu_now - self.cpu_at_start) * 1000.0 / n,
            thousands(self.changes),
        )
    }
}

const HEADER: &str = "      turns  turn ms  service  bronze  latest  history   gold  maintenance   CPU ms  change rows";

pub async fn run(turns: usize, args: &BenchCdcArgs) -> anyhow::Result<()> {
    ensure!(
        args.report_every > 0 && args.maintain_every > 0 && args.per_turn > 0,
        "--report-every, --maintain-every and --per-turn must be at least 1"
    );
    let scratch = tempfile::tempdir().context("creating a scratch folder")?;
    let lake = Lake::local(&scratch.path().join("lake"))?;
    let mut changes = BookingChanges::open(&lake, args.per_turn).await?;
    eprintln!(
        "bench cdc: {turns} turns of {} changes each, compacting and checkpointing every {} turns; \
         figures are means per turn (ms)",
        args.per_turn, args.maintain_every
    );
    println!("{HEADER}");
    let started = Instant::now();
    let mut block = Block::starting(cpu_seconds(Cpu::Own)?);
    let mut first = 1;
    for turn in 1..=turns {
        let at = Instant::now();
        let report = changes.run().await?;
        block.add(at.elapsed(), &report);
        if turn % args.maintain_every == 0 {
            let at = Instant::now();
            maintain(&lake).await?;
            block.maintenance += at.elapsed();
        }
        if turn % args.report_every == 0 || turn == turns {
            let cpu = cpu_seconds(Cpu::Own)?;
            println!("{}", block.line(first, turn, cpu));
            block = Block::starting(cpu);
            first = turn + 1;
        }
    }
    eprintln!(
        "bench cdc: {turns} turns in {:.1} s (up would take {} s at one turn every 2 s)",
        started.elapsed().as_secs_f64(),
        turns * 2
    );
    Ok(())
}

/// `up`'s maintenance over the flow's tables, except that every file is old enough to compact
/// (`up` leaves files under 20 s old, about ten turns' worth, for the next turn).
async fn maintain(lake: &Lake) -> anyhow::Result<()> {
    let tables = boxoffice_jobs::cdc::tables::TABLES;
    let settings = CompactSettings {
        before: Utc::now().date_naive(),
        min_file_age: Duration::ZERO,
        target_bytes: 128 * 1024 * 1024,
    };
    maintenance::compact(lake, &tables, &settings).await?;
    maintenance::checkpoint(lake, &tables).await?;
    Ok(())
}
