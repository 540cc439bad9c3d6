//! What a bundle task runs: each boxoffice job a `boxoffice_task` may name, its parameters
//! (checked before any task starts), and the rows it read and wrote.

use std::sync::Arc;

use boxoffice_bundle::run::{BoxFuture, Executor};
use boxoffice_bundle::{JobSpec, Task, TaskStats};
use boxoffice_jobs::maintenance::{self, TableMaintenance};
use boxoffice_jobs::silver::bookings_fact::join::TimeMode;
use boxoffice_jobs::silver::bookings_fact::{BatchReport, BookingsFact, refresh};
use boxoffice_lake::{Lake, Layer};
use chrono::{NaiveDate, Utc};

use crate::config::{self, FileConfig};
use crate::leases::{Leases, MAINTENANCE, Taking};

/// The jobs a task may run, with the parameters each takes.
pub const CATALOG: &[JobSpec] = &[
    JobSpec {
        name: "bookings_fact",
        parameters: &["drain", "mode"],
    },
    JobSpec {
        name: "gold",
        parameters: &["full"],
    },
    JobSpec {
        name: "cdc",
        parameters: &[],
    },
    JobSpec {
        name: "batch_load",
        parameters: &[],
    },
    JobSpec {
        name: "compact",
        parameters: &["layers", "before", "target_mb", "min_file_age"],
    },
    JobSpec {
        name: "vacuum",
        parameters: &["layers", "retention_hours"],
    },
    JobSpec {
        name: "checkpoint",
        parameters: &["layers"],
    },
];

/// A task's parameters, typed. Parsing them is the check `bundle validate` runs.
#[derive(Debug, Clone)]
enum Work {
    BookingsFact {
        drain: bool,
        mode: Option<TimeMode>,
    },
    Gold {
        full: bool,
    },
    Cdc,
    BatchLoad,
    Compact {
        layers: Vec<Layer>,
        before: Option<NaiveDate>,
        target_bytes: u64,
        min_file_age: std::time::Duration,
    },
    Vacuum {
        layers: Vec<Layer>,
        retention: chrono::Duration,
    },
    Checkpoint {
        layers: Vec<Layer>,
    },
}

/// Checks a task's parameter values (names were checked against [`CATALOG`]).
pub fn check(task: &Task) -> Result<(), String> {
    work(task).map(|_| ())
}

fn work(task: &Task) -> Result<Work, String> {
    let param = |name: &str| {
        task.parameters
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let flag = |name: &str| match param(name) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(format!(
            "parameter {name} is '{other}': write true or false"
        )),
    };
    let layers = || -> Result<Vec<Layer>, String> {
        match param("layers") {
            None => Ok(vec![Layer::Bronze, Layer::Silver]),
            Some(list) => list
                .split(',')
                .map(|l| match l.trim() {
                    "bronze" => Ok(Layer::Bronze),
                    "silver" => Ok(Layer::Silver),
                    "gold" => Ok(Layer::Gold),
                    "_system" => Ok(Layer::System),
                    other => Err(format!(
                        "layers: '{other}' is not bronze, silver, gold or _system"
                    )),
                })
                .collect(),
        }
    };
    let number = |name: &str, default: u64| -> Result<u64, String> {
        param(name).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| format!("parameter {name} is '{v}': write a whole number"))
        })
    };
    Ok(match task.job.as_str() {
        "bookings_fact" => Work::BookingsFact {
            drain: flag("drain")?,
            mode: match param("mode") {
                None => None,
                Some("event_time") => Some(TimeMode::EventTime),
                Some("stream_analytics") => Some(TimeMode::StreamAnalytics),
                Some(other) => {
                    return Err(format!(
                        "parameter mode is '{other}': write event_time or stream_analytics"
                    ));
                }
            },
        },
        "gold" => Work::Gold {
            full: flag("full")?,
        },
        "cdc" => Work::Cdc,
        "batch_load" => Work::BatchLoad,
        "compact" => Work::Compact {
            layers: layers()?,
            before: match param("before") {
                None | Some("today") => None,
                Some(d) => Some(NaiveDate::parse_from_str(d, "%Y-%m-%d").map_err(|_| {
                    format!("parameter before is '{d}': write today or a date, 2026-11-23")
                })?),
            },
            target_bytes: number("target_mb", 128)? * 1024 * 1024,
            min_file_age: match param("min_file_age") {
                None => maintenance::DEFAULT_MIN_FILE_AGE,
                Some(text) => humantime::parse_duration(text).map_err(|_| {
                    format!("parameter min_file_age is '{text}': write a duration, 5m or 30s")
                })?,
            },
        },
        "vacuum" => Work::Vacuum {
            layers: layers()?,
            retention: chrono::Duration::hours(number("retention_hours", 168)? as i64),
        },
        "checkpoint" => Work::Checkpoint { layers: layers()? },
        other => return Err(format!("unknown job '{other}'")),
    })
}

/// Runs tasks against one lake.
pub struct LakeTasks {
    pub lake: Lake,
    pub file: Arc<FileConfig>,
    /// `bundle run --full-refresh`: bookings_fact tasks rebuild their tables and state from all
    /// of Bronze, gold tasks rebuild Gold.
    pub full_refresh: bool,
}

impl Executor for LakeTasks {
    fn run(&self, task: &Task) -> BoxFuture<Result<TaskStats, String>> {
        let (lake, file, task) = (self.lake.clone(), Arc::clone(&self.file), task.clone());
        let full_refresh = self.full_refresh;
        Box::pin(async move {
            let work = work(&task)?;
            let leases = take_lease(&lake, &file, &task)
                .await
                .map_err(|e| format!("{e:#}"))?;
            let result = execute(&lake, &file, work, full_refresh).await;
            let released = leases.release().await;
            result
                .and_then(|stats| released.map(|()| stats))
                .map_err(|e| format!("{e:#}"))
        })
    }
}

/// The lease a task's job runs under: its own job's, or maintenance's for compact, vacuum and
/// checkpoint. A task whose job runs elsewhere (in `up`, another bundle run) fails at once,
/// naming the holder; its retries try again later.
async fn take_lease(lake: &Lake, file: &FileConfig, task: &Task) -> anyhow::Result<Leases> {
    let names = match task.job.as_str() {
        "compact" | "vacuum" | "checkpoint" => vec![MAINTENANCE.to_string()],
        "bookings_fact" => crate::leases::join_leases(lake, file, None).await?,
        job => vec![job.to_string()],
    };
    Leases::take(
        lake,
        &names,
        &format!("bundle task {}", task.key),
        Taking::refusing(file)?,
    )
    .await
}

async fn execute(
    lake: &Lake,
    file: &FileConfig,
    work: Work,
    full_refresh: bool,
) -> anyhow::Result<TaskStats> {
    Ok(match work {
        Work::BookingsFact { drain, mode } => {
            let reports = bookings_fact(lake, file, drain, mode, full_refresh).await?;
            let mut stats = TaskStats::default();
            for r in &reports {
                stats.rows_in += r.events;
                stats.rows_out += r.fact_rows + r.unpaid + r.orphans + r.late + r.quarantined;
            }
            stats
        }
        Work::Gold { full } => {
            let reports = boxoffice_jobs::gold::refresh(lake, full || full_refresh).await?;
            TaskStats {
                rows_in: 0,
                rows_out: reports.iter().map(|r| r.rows as u64).sum(),
            }
        }
        Work::Cdc => {
            let r = boxoffice_jobs::cdc::run(lake).await?;
            TaskStats {
                rows_in: r.changes,
                rows_out: r.bookings_changed + r.history_rows + r.quarantined,
            }
        }
        Work::BatchLoad => {
            let reports = boxoffice_jobs::batch::run(lake).await?;
            let loaded: u64 = reports.iter().map(|r| r.loaded).sum();
            let quarantined: u64 = reports.iter().map(|r| r.quarantined).sum();
            TaskStats {
                rows_in: loaded + quarantined,
                rows_out: loaded + quarantined,
            }
        }
        Work::Compact {
            layers,
            before,
            target_bytes,
            min_file_age,
        } => {
            let settings = maintenance::CompactSettings {
                before: before.unwrap_or_else(|| Utc::now().date_naive()),
                min_file_age,
                target_bytes,
            };
            table_stats(
                &maintenance::compact(lake, &super::tables::in_layers(&layers), &settings).await?,
            )
        }
        Work::Vacuum { layers, retention } => table_stats(
            &maintenance::vacuum(lake, &super::tables::in_layers(&layers), retention)
                .await
                .into_result()?,
        ),
        Work::Checkpoint { layers } => {
            table_stats(&maintenance::checkpoint(lake, &super::tables::in_layers(&layers)).await?)
        }
    })
}

/// A bookings_fact task's batches: a refresh or backfill a crash left is finished first.
async fn bookings_fact(
    lake: &Lake,
    file: &FileConfig,
    drain: bool,
    mode: Option<TimeMode>,
    full_refresh: bool,
) -> anyhow::Result<Vec<BatchReport>> {
    let settings = config::bookings_fact(file, mode)?;
    let expectations = config::expectations(file, &settings)?;
    super::job_bookings_fact::finish_interrupted(lake, &settings, &expectations).await?;
    if full_refresh {
        let mut quiet = |_: &BatchReport| {};
        let report = refresh::full_refresh(lake, settings, expectations, drain, &mut quiet).await?;
        return Ok(report.batches);
    }
    let (mut job, mut reports) = BookingsFact::open(lake, settings, expectations).await?;
    reports.extend(job.run(drain).await?);
    Ok(reports)
}

/// Maintenance reads and writes files, not rows: rows in = files before, rows out = files after.
fn table_stats(reports: &[TableMaintenance]) -> TaskStats {
    TaskStats {
        rows_in: reports.iter().map(|r| r.files_before).sum(),
        rows_out: reports.iter().map(|r| r.files_after).sum(),
    }
}
