//! `boxoffice bundle validate | run | status`: the job bundle in bundle.yml.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, bail};
use boxoffice_bundle::history::{self, LakeHistory};
use boxoffice_bundle::manifest::Mode;
use boxoffice_bundle::run::run_id;
use boxoffice_bundle::schedule::{Launch, SystemClock, run_schedule, scheduled};
use boxoffice_bundle::{Bundle, Diagnostic, Diagnostics, LoadOptions, Outcome, Progress, run_job};
use boxoffice_lake::Lake;
use chrono::Utc;

use super::bundle_tasks::{self, CATALOG, LakeTasks};
use crate::cli::{BundleArgs, BundleCommand, GlobalArgs};
use crate::config;

pub async fn run(global: &GlobalArgs, command: BundleCommand) -> anyhow::Result<()> {
    match command {
        BundleCommand::Validate(args) => {
            let bundle = load(&args)?;
            let tasks: usize = bundle.jobs.iter().map(|j| j.tasks.len()).sum();
            println!(
                "{} is valid for target '{}': bundle '{}', {} jobs, {tasks} tasks",
                args.file.display(),
                bundle.target.name,
                bundle.name,
                bundle.jobs.len()
            );
            for job in &bundle.jobs {
                let schedule = match &job.schedule {
                    Some(s) => format!(
                        "'{}' {}{}",
                        s.cron.as_str(),
                        s.timezone,
                        if s.paused { " (paused)" } else { "" }
                    ),
                    None => "no schedule".into(),
                };
                let order: Vec<&str> = job.tasks.iter().map(|t| t.key.as_str()).collect();
                println!("  {:<12} {schedule}; tasks: {}", job.key, order.join(", "));
            }
            Ok(())
        }
        BundleCommand::Run(args) => {
            let bundle = load(&args.bundle)?;
            let lake = lake(global, &bundle).await?;
            let report = run_now(&lake, global, &bundle, &args.job, args.full_refresh).await?;
            if report != Outcome::Succeeded {
                bail!("job '{}' {}", args.job, report.as_str().to_lowercase());
            }
            Ok(())
        }
        BundleCommand::Schedule(args) => {
            let bundle = load(&args)?;
            let lake = lake(global, &bundle).await?;
            schedule(lake, global, bundle).await
        }
        BundleCommand::Status(args) => {
            let bundle = load(&args.bundle)?;
            let lake = lake(global, &bundle).await?;
            status(&lake, &bundle, args.runs).await
        }
    }
}

/// Reads and checks the manifest, parameter values included; a broken one is an error listing
/// every problem.
pub fn load(args: &BundleArgs) -> anyhow::Result<Bundle> {
    let label = args.file.display().to_string();
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {label} (the job bundle; --file names another)"))?;
    let env = |name: &str| std::env::var(name).ok();
    let options = LoadOptions {
        target: args.target.as_deref(),
        vars: &args.vars,
        env: &env,
        catalog: CATALOG,
    };
    let bundle = boxoffice_bundle::load(&label, &text, &options).map_err(invalid)?;
    let mut problems = Vec::new();
    for job in &bundle.jobs {
        for task in &job.tasks {
            if let Err(e) = bundle_tasks::check(task) {
                problems.push(Diagnostic {
                    line: task.line,
                    message: format!("job '{}' task '{}': {e}", job.key, task.key),
                    fix: String::new(),
                });
            }
        }
    }
    if !problems.is_empty() {
        return Err(invalid(Diagnostics {
            file: label,
            problems,
        }));
    }
    Ok(bundle)
}

fn invalid(d: Diagnostics) -> anyhow::Error {
    anyhow::anyhow!("{}", d.to_string().trim_end())
}

/// The lake: --lake, else the bundle's `lake` variable, else the settings file's.
async fn lake(global: &GlobalArgs, bundle: &Bundle) -> anyhow::Result<Lake> {
    let from_bundle = bundle
        .variables
        .iter()
        .find(|(k, _)| k == "lake")
        .map(|(_, v)| v.clone());
    let global = GlobalArgs {
        lake: global.lake.clone().or(from_bundle),
        ..global.clone()
    };
    let file = config::load(&global)?;
    let lake = config::lake(&global, &file)?;
    lake.prepare().await?;
    Ok(lake)
}

/// Runs `job` once now, printing each task's progress; returns how the run ended. With
/// `full_refresh`, its bookings_fact and gold tasks rebuild instead of resuming.
pub async fn run_now(
    lake: &Lake,
    global: &GlobalArgs,
    bundle: &Bundle,
    job_key: &str,
    full_refresh: bool,
) -> anyhow::Result<Outcome> {
    let Some(job) = bundle.job(job_key) else {
        let names: Vec<&str> = bundle.jobs.iter().map(|j| j.key.as_str()).collect();
        bail!(
            "no job '{job_key}' in the bundle; its jobs: {}",
            names.join(", ")
        );
    };
    let file = Arc::new(config::load(global)?);
    let run_id = run_id(&job.key, Utc::now());
    notify(
        &job.notifications.on_start,
        &format!("job '{}' started (run {run_id})", job.key),
    );
    eprintln!("run {run_id}: job '{}', {} tasks", job.key, job.tasks.len());
    let progress = Arc::new(|p: Progress| match p {
        Progress::Started { task, attempt } if attempt > 1 => {
            eprintln!("  {task}: attempt {attempt}")
        }
        Progress::Started { task, .. } => eprintln!("  {task}: started"),
        Progress::Ended {
            task,
            attempt,
            status,
            error,
        } => eprintln!(
            "  {task}: {} (attempt {attempt}){}",
            status.as_str().to_lowercase(),
            error.map(|e| format!(": {e}")).unwrap_or_default()
        ),
        Progress::Skipped { task } => eprintln!("  {task}: skipped (its run_if is not met)"),
    });
    let report = run_job(
        job,
        &run_id,
        Arc::new(LakeTasks {
            lake: lake.clone(),
            file,
            full_refresh,
        }),
        Arc::new(LakeHistory::new(lake.clone())),
        progress,
    )
    .await;
    for e in &report.history_errors {
        eprintln!("warning: an attempt was not recorded in _system.job_runs: {e}");
    }
    let summary = format!(
        "job '{}' {} (run {run_id}): {}",
        job.key,
        report.outcome.as_str().to_lowercase(),
        report
            .tasks
            .iter()
            .map(|(t, o, _)| format!("{t} {}", o.as_str().to_lowercase()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("{summary}");
    match report.outcome {
        Outcome::Succeeded => notify(&job.notifications.on_success, &summary),
        _ => notify(&job.notifications.on_failure, &summary),
    }
    Ok(report.outcome)
}

/// Runs the schedule on the wall clock until Ctrl-C or SIGTERM.
async fn schedule(lake: Lake, global: &GlobalArgs, bundle: Bundle) -> anyhow::Result<()> {
    let jobs = scheduled(&bundle);
    if jobs.is_empty() {
        bail!(
            "no job of target '{}' has an unpaused schedule{}",
            bundle.target.name,
            if bundle.target.mode == Mode::Development {
                " (a development target pauses them all; use -t with a production target)"
            } else {
                ""
            }
        );
    }
    for job in &jobs {
        if let Some(s) = &job.schedule {
            let next = s.cron.next_after(Utc::now(), s.timezone);
            eprintln!(
                "{}: '{}' {}, next at {}",
                job.key,
                s.cron.as_str(),
                s.timezone,
                next.map_or("never".into(), |t| t.to_rfc3339())
            );
        }
    }
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        super::shutdown_signal().await;
        eprintln!("stopping: waiting for the runs in flight");
        let _ = stop_tx.send(true);
    });
    let log = run_schedule(
        &bundle,
        Arc::new(SystemClock),
        launcher(lake, global, &bundle),
        stop,
    )
    .await;
    eprintln!(
        "scheduler stopped: {} runs started, {} skipped (max_concurrent_runs)",
        log.started.len(),
        log.skipped.len()
    );
    Ok(())
}

/// Starts a run of a job on this lake, as `bundle run` does.
pub fn launcher(lake: Lake, global: &GlobalArgs, bundle: &Bundle) -> Launch {
    let shared = Arc::new((lake, global.clone(), bundle.clone()));
    Arc::new(move |job, _due| {
        let shared = Arc::clone(&shared);
        Box::pin(async move {
            let (lake, global, bundle) = &*shared;
            run_now(lake, global, bundle, &job.key, false)
                .await
                .unwrap_or_else(|e| {
                    eprintln!("job '{}' could not start: {e:#}", job.key);
                    Outcome::Failed
                })
        })
    })
}

/// boxoffice sends no mail: a notification is a log line naming its recipients, for the
/// deployment's log alerts to forward.
fn notify(recipients: &[String], message: &str) {
    if !recipients.is_empty() {
        tracing::warn!(to = %recipients.join(","), "notification: {message}");
        eprintln!("notify {}: {message}", recipients.join(", "));
    }
}

async fn status(lake: &Lake, bundle: &Bundle, runs: usize) -> anyhow::Result<()> {
    let attempts = history::read_all(lake).await.map_err(anyhow::Error::msg)?;
    if attempts.is_empty() {
        println!("no runs yet (boxoffice bundle run <job>)");
        return Ok(());
    }
    // job -> run id -> attempts, runs in start order.
    let mut by_job: BTreeMap<&str, Vec<(&str, Vec<&boxoffice_bundle::Attempt>)>> = BTreeMap::new();
    for a in &attempts {
        let job_runs = by_job.entry(a.job.as_str()).or_default();
        match job_runs.iter_mut().find(|(id, _)| *id == a.run_id) {
            Some((_, list)) => list.push(a),
            None => job_runs.push((a.run_id.as_str(), vec![a])),
        }
    }
    for job in &bundle.jobs {
        let Some(job_runs) = by_job.get(job.key.as_str()) else {
            println!("{}: never run", job.key);
            continue;
        };
        println!("{}:", job.key);
        for (run_id, list) in job_runs.iter().rev().take(runs) {
            let failed = list.iter().any(|a| a.status.is_failure());
            println!(
                "  run {run_id}: {}",
                if failed { "failed" } else { "succeeded" }
            );
            for task in &job.tasks {
                if let Some(last) = list
                    .iter()
                    .filter(|a| a.task == task.key)
                    .max_by_key(|a| a.attempt)
                {
                    println!(
                        "    {:<20} {:<10} attempt {} {:>6.1}s  rows {} -> {}{}",
                        task.key,
                        last.status.as_str(),
                        last.attempt,
                        (last.ended_at - last.started_at).as_seconds_f64(),
                        last.stats.rows_in,
                        last.stats.rows_out,
                        last.error
                            .as_deref()
                            .map(|e| format!("  {e}"))
                            .unwrap_or_default()
                    );
                }
            }
        }
    }
    Ok(())
}
