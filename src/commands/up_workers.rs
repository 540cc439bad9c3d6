//! `up --workers N`: the jobs run by N `boxoffice worker` processes instead of `up` itself, as
//! they would on N machines; `up` keeps the producer, the landing, the booking-service
//! simulator and the dashboard.
//!
//! Each worker's standard input is a pipe from `up`: closing it asks the worker to finish (one
//! last cycle, its shards checkpointed, its leases handed back), and if `up` dies the pipe
//! closes too, so no worker outlives it. Their output goes to a log file each.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use boxoffice_jobs::ops::simulator::Simulator;
use boxoffice_lake::Lake;
use chrono::Utc;
use tokio::process::{Child, Command};
use tokio::sync::watch;

use crate::cli::GlobalArgs;

/// The worker processes `up` started, and its simulator task.
pub struct Workers {
    children: Vec<(String, Child, PathBuf)>,
    simulator: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    stop: watch::Sender<bool>,
}

/// The flag that makes a worker stop when its standard input closes.
pub const STOP_ON_EOF: &str = "--stop-when-stdin-closes";

impl Workers {
    /// Starts `n` workers on the lake of `global`, each running its cycle every `interval`,
    /// logging to `logs/up-<i>.log`; and the simulator making `cdc_changes` changes per interval.
    pub async fn start(
        global: &GlobalArgs,
        lake: &Lake,
        n: usize,
        interval: Duration,
        cdc_changes: usize,
        logs: &Path,
    ) -> anyhow::Result<Workers> {
        std::fs::create_dir_all(logs)
            .with_context(|| format!("creating the workers' log folder {}", logs.display()))?;
        let exe = std::env::current_exe().context("finding the boxoffice binary")?;
        let mut children = Vec::with_capacity(n);
        for i in 0..n {
            let name = format!("up-{i}");
            let log = logs.join(format!("{name}.log"));
            let out = std::fs::File::create(&log)
                .with_context(|| format!("creating {}", log.display()))?;
            let err = out.try_clone().context("the worker's log")?;
            let mut cmd = Command::new(&exe);
            cmd.args(global_args(global))
                .args(["worker", "--name", &name, STOP_ON_EOF, "--interval"])
                .arg(format!("{}ms", interval.as_millis()))
                .stdin(Stdio::piped())
                .stdout(out)
                .stderr(err)
                .kill_on_drop(false);
            let child = cmd
                .spawn()
                .with_context(|| format!("starting worker {name}"))?;
            children.push((name, child, log));
        }
        let (stop, stopped) = watch::channel(false);
        let simulator = (cdc_changes > 0).then(|| {
            let lake = lake.clone();
            tokio::spawn(simulate(lake, interval, cdc_changes, stopped))
        });
        Ok(Workers {
            children,
            simulator,
            stop,
        })
    }

    /// The workers' process ids, for the start line.
    pub fn pids(&self) -> Vec<u32> {
        self.children
            .iter()
            .filter_map(|(_, c, _)| c.id())
            .collect()
    }

    /// Asks every worker to finish and waits for them; one line each.
    pub async fn finish(mut self) -> anyhow::Result<Vec<String>> {
        let _ = self.stop.send(true);
        if let Some(task) = self.simulator.take() {
            task.await.context("the simulator task failed")??;
        }
        for (_, child, _) in &mut self.children {
            drop(child.stdin.take()); // end of input: finish
        }
        let mut lines = Vec::new();
        for (name, mut child, log) in self.children {
            let status = child.wait().await.context("waiting for a worker")?;
            lines.push(format!(
                "  worker {name}: {} (log {})",
                if status.success() {
                    "stopped".to_string()
                } else {
                    format!("failed, {status}")
                },
                log.display()
            ));
        }
        Ok(lines)
    }
}

/// The flags every command shares, as `up` was given them.
fn global_args(global: &GlobalArgs) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(lake) = &global.lake {
        args.extend(["--lake".to_string(), lake.clone()]);
    }
    if global.emulator {
        args.push("--emulator".to_string());
    }
    if let Some(endpoint) = &global.emulator_endpoint {
        args.extend(["--emulator-endpoint".to_string(), endpoint.clone()]);
    }
    if let Some(config) = &global.config {
        args.extend(["--config".to_string(), config.display().to_string()]);
    }
    if global.verbose > 0 {
        args.push(format!("-{}", "v".repeat(global.verbose as usize)));
    }
    args
}

/// The booking service's changes, every `interval`, until `stop`.
async fn simulate(
    lake: Lake,
    interval: Duration,
    changes: usize,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let seed = Utc::now().timestamp_micros().unsigned_abs();
    let mut simulator = Simulator::open(&lake, seed).await?;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return Ok(()),
        }
        if let Err(e) = simulator.tick(changes).await {
            tracing::warn!("the booking service simulator: {e}; trying again next interval");
        }
    }
}
