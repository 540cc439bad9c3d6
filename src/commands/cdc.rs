//! `boxoffice cdc apply`: scripted changes to the booking service's table.

use std::io::Read;
use std::time::{Duration, Instant};

use anyhow::Context;
use boxoffice_jobs::ops::script::{self, Applier};
use boxoffice_jobs::ops::simulator::Simulator;

use crate::cli::{CdcApplyArgs, CdcCommand, CdcSimulateArgs, GlobalArgs};
use crate::commands::job::cdc_line;
use crate::config;

pub async fn run(global: &GlobalArgs, command: CdcCommand) -> anyhow::Result<()> {
    match command {
        CdcCommand::Apply(args) => apply(global, args).await,
        CdcCommand::Simulate(args) => simulate(global, args).await,
    }
}

async fn simulate(global: &GlobalArgs, args: CdcSimulateArgs) -> anyhow::Result<()> {
    let file = config::load(global)?;
    let lake = config::lake(global, &file)?;
    lake.prepare().await?;
    let mut simulator = Simulator::open(&lake, args.seed).await?;
    let mut flow = boxoffice_jobs::cdc::Flow::new(&lake);
    let started = Instant::now();
    let mut every = tokio::time::interval(Duration::from_secs(1));
    let stop = crate::commands::shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = every.tick() => {}
        }
        if args.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        let tick = simulator.tick(args.rate).await?;
        eprintln!(
            "version {}: {} inserted, {} updated, {} deleted",
            tick.version.map_or("-".to_string(), |v| v.to_string()),
            tick.inserted,
            tick.updated,
            tick.deleted
        );
        if args.run_cdc {
            println!("{}", cdc_line(&flow.run().await?));
        }
    }
    Ok(())
}

/// The Snowflake demo's sample, built in so `cdc apply --sample` works from any directory.
const SAMPLE: &str = include_str!("../../samples/movie_bookings.sql");

async fn apply(global: &GlobalArgs, args: CdcApplyArgs) -> anyhow::Result<()> {
    let (name, text) = script_text(&args)?;
    let statements = script::parse(&text).with_context(|| format!("in {name}"))?;
    let file = config::load(global)?;
    let lake = config::lake(global, &file)?;
    lake.prepare().await?;
    let mut applier = Applier::open(&lake).await?;
    let mut flow = boxoffice_jobs::cdc::Flow::new(&lake);
    let mut commits = 0;
    for statement in &statements {
        let pieces = if args.per_row {
            applier.per_row(&statement.change).await?
        } else {
            vec![statement.change.clone()]
        };
        for piece in &pieces {
            let version = applier
                .apply(piece)
                .await
                .with_context(|| format!("statement at line {}", statement.line))?;
            if let Some(v) = version {
                commits += 1;
                eprintln!("line {}: committed version {v}", statement.line);
            }
            if args.run_cdc {
                println!("{}", cdc_line(&flow.run().await?));
            }
        }
    }
    eprintln!(
        "applied {} statements in {commits} commits; ops.raw_movie_bookings is at version {}",
        statements.len(),
        applier.version().map_or("-".to_string(), |v| v.to_string())
    );
    Ok(())
}

/// The script `cdc apply` was given, and how to name it in messages.
fn script_text(args: &CdcApplyArgs) -> anyhow::Result<(String, String)> {
    match &args.file {
        None => Ok(("the built-in sample".into(), SAMPLE.into())),
        Some(path) if path.as_os_str() == "-" => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the script from stdin")?;
            Ok(("stdin".into(), text))
        }
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| {
                let here = std::env::current_dir()
                    .map(|d| format!(" (relative to {})", d.display()))
                    .unwrap_or_default();
                format!(
                    "reading {}{} (--sample applies the demo's sample from anywhere)",
                    path.display(),
                    if path.is_relative() {
                        here
                    } else {
                        String::new()
                    }
                )
            })?;
            Ok((path.display().to_string(), text))
        }
    }
}
