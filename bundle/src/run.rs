//! Running one job: tasks in dependency order, independent ones at once, each with its retries,
//! timeout and run_if; a failed task's dependents are skipped (unless their run_if says
//! otherwise); every attempt is handed to a [`History`] as it ends.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::task::JoinSet;

use crate::manifest::{Job, Outcome, Task};

/// A boxed future, for the object-safe traits below.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Rows a task read and wrote, for the run history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskStats {
    pub rows_in: u64,
    pub rows_out: u64,
}

/// Runs a task's boxoffice job. The binary maps job names to the lakehouse jobs; the jobs are
/// safe to stop at any await (a timeout drops the future), since each resumes from the lake.
pub trait Executor: Send + Sync + 'static {
    fn run(&self, task: &Task) -> BoxFuture<Result<TaskStats, String>>;
}

/// One attempt of one task, as `_system/job_runs` stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub run_id: String,
    pub job: String,
    pub task: String,
    /// From 1; 0 for a task that was skipped.
    pub attempt: u32,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    pub status: Outcome,
    pub stats: TaskStats,
    pub error: Option<String>,
}

/// Where attempts are recorded.
pub trait History: Send + Sync + 'static {
    fn record(&self, attempt: Attempt) -> BoxFuture<Result<(), String>>;
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    pub run_id: String,
    pub job: String,
    /// Succeeded when no task failed or timed out.
    pub outcome: Outcome,
    /// Each task's outcome and attempts, in the order they ended.
    pub tasks: Vec<(String, Outcome, u32)>,
    /// Attempts the history could not record (the run still counts them).
    pub history_errors: Vec<String>,
}

/// Progress, for a live display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    Started {
        task: String,
        attempt: u32,
    },
    Ended {
        task: String,
        attempt: u32,
        status: Outcome,
        error: Option<String>,
    },
    Skipped {
        task: String,
    },
}

/// A run's id: when it started (UTC, to the millisecond) and its job, so ids sort by time.
pub fn run_id(job: &str, started: DateTime<Utc>) -> String {
    format!("{}-{job}", started.format("%Y%m%dT%H%M%S%.3fZ"))
}

/// Runs every task of `job` once (with retries), as run `run_id`.
pub async fn run_job(
    job: &Job,
    run_id: &str,
    executor: Arc<dyn Executor>,
    history: Arc<dyn History>,
    progress: Arc<dyn Fn(Progress) + Send + Sync>,
) -> RunReport {
    let mut report = RunReport {
        run_id: run_id.to_string(),
        job: job.key.clone(),
        outcome: Outcome::Succeeded,
        tasks: Vec::new(),
        history_errors: Vec::new(),
    };
    let mut ended: HashMap<String, Outcome> = HashMap::new();
    let mut running = JoinSet::new();
    let mut started: Vec<String> = Vec::new();
    let mut ids = HashMap::new();
    let deadline = job.timeout.map(|t| tokio::time::Instant::now() + t);
    let ctx = Arc::new(Context {
        run_id: run_id.to_string(),
        job: job.key.clone(),
        executor,
        history: Arc::clone(&history),
        progress: Arc::clone(&progress),
    });

    loop {
        // Start (or skip) every task whose dependencies have all ended.
        for task in &job.tasks {
            if ended.contains_key(&task.key) || started.contains(&task.key) {
                continue;
            }
            let Some(outcomes) = task
                .depends_on
                .iter()
                .map(|d| ended.get(d).copied())
                .collect::<Option<Vec<Outcome>>>()
            else {
                continue;
            };
            if task.run_if.allows(&outcomes) {
                started.push(task.key.clone());
                let handle = running.spawn(run_task(task.clone(), Arc::clone(&ctx)));
                ids.insert(handle.id(), task.key.clone());
            } else {
                progress(Progress::Skipped {
                    task: task.key.clone(),
                });
                let now = Utc::now();
                let skipped = ctx.attempt(
                    &task.key,
                    0,
                    now,
                    now,
                    Outcome::Skipped,
                    TaskStats::default(),
                    Some(format!(
                        "run_if {:?} not met by its dependencies",
                        task.run_if
                    )),
                );
                if let Err(e) = history.record(skipped).await {
                    report.history_errors.push(e);
                }
                ended.insert(task.key.clone(), Outcome::Skipped);
                report.tasks.push((task.key.clone(), Outcome::Skipped, 0));
            }
        }
        if running.is_empty() {
            // Everything ended (validation refuses the cycles that could leave tasks waiting).
            break;
        }
        let next = match deadline {
            Some(d) => match tokio::time::timeout_at(d, running.join_next_with_id()).await {
                Ok(next) => next,
                Err(_) => {
                    running.abort_all();
                    let now = Utc::now();
                    for key in started.iter().filter(|k| !ended.contains_key(*k)) {
                        let stopped = ctx.attempt(
                            key,
                            0,
                            now,
                            now,
                            Outcome::TimedOut,
                            TaskStats::default(),
                            Some("stopped by the job's timeout_seconds".into()),
                        );
                        if let Err(e) = history.record(stopped).await {
                            report.history_errors.push(e);
                        }
                        report.tasks.push((key.clone(), Outcome::TimedOut, 0));
                    }
                    report.outcome = Outcome::TimedOut;
                    return report;
                }
            },
            None => running.join_next_with_id().await,
        };
        match next {
            Some(Ok((_, done))) => {
                report.history_errors.extend(done.history_errors);
                ended.insert(done.key.clone(), done.outcome);
                report.tasks.push((done.key, done.outcome, done.attempts));
            }
            Some(Err(e)) => {
                let key = ids.get(&e.id()).cloned().unwrap_or_default();
                report
                    .history_errors
                    .push(format!("task '{key}' panicked: {e}"));
                ended.insert(key.clone(), Outcome::Failed);
                report.tasks.push((key, Outcome::Failed, 1));
            }
            None => break,
        }
    }
    if report.tasks.iter().any(|(_, o, _)| o.is_failure()) {
        report.outcome = Outcome::Failed;
    }
    report
}

struct Context {
    run_id: String,
    job: String,
    executor: Arc<dyn Executor>,
    history: Arc<dyn History>,
    progress: Arc<dyn Fn(Progress) + Send + Sync>,
}

impl Context {
    #[allow(clippy::too_many_arguments)]
    fn attempt(
        &self,
        task: &str,
        attempt: u32,
        started_at: DateTime<Utc>,
        ended_at: DateTime<Utc>,
        status: Outcome,
        stats: TaskStats,
        error: Option<String>,
    ) -> Attempt {
        Attempt {
            run_id: self.run_id.clone(),
            job: self.job.clone(),
            task: task.to_string(),
            attempt,
            started_at,
            ended_at,
            status,
            stats,
            error,
        }
    }
}

struct TaskDone {
    key: String,
    outcome: Outcome,
    attempts: u32,
    history_errors: Vec<String>,
}

/// One task's attempts: retried up to max_retries after a failure (and after a timeout only
/// with retry_on_timeout), min_retry_interval apart.
async fn run_task(task: Task, ctx: Arc<Context>) -> TaskDone {
    let mut history_errors = Vec::new();
    let mut attempt = 0;
    loop {
        attempt += 1;
        (ctx.progress)(Progress::Started {
            task: task.key.clone(),
            attempt,
        });
        let started_at = Utc::now();
        let work = ctx.executor.run(&task);
        let result = match task.timeout {
            Some(limit) => tokio::time::timeout(limit, work)
                .await
                .unwrap_or_else(|_| Err(timed_out(limit))),
            None => work.await,
        };
        let (status, stats, error) = match result {
            Ok(stats) => (Outcome::Succeeded, stats, None),
            Err(e) if e.starts_with(TIMEOUT) => (Outcome::TimedOut, TaskStats::default(), Some(e)),
            Err(e) => (Outcome::Failed, TaskStats::default(), Some(e)),
        };
        (ctx.progress)(Progress::Ended {
            task: task.key.clone(),
            attempt,
            status,
            error: error.clone(),
        });
        let record = ctx.attempt(
            &task.key,
            attempt,
            started_at,
            Utc::now(),
            status,
            stats,
            error,
        );
        if let Err(e) = ctx.history.record(record).await {
            history_errors.push(e);
        }
        let retry = match status {
            Outcome::Succeeded | Outcome::Skipped => false,
            Outcome::TimedOut => task.retry_on_timeout,
            Outcome::Failed => true,
        };
        if !retry || attempt > task.max_retries {
            return TaskDone {
                key: task.key,
                outcome: status,
                attempts: attempt,
                history_errors,
            };
        }
        tokio::time::sleep(task.min_retry_interval).await;
    }
}

const TIMEOUT: &str = "timed out after ";

fn timed_out(limit: Duration) -> String {
    format!("{TIMEOUT}{}s (timeout_seconds)", limit.as_secs())
}
