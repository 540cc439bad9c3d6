//! The job bundle: `bundle.yml`, in Databricks Asset Bundle terms, run by boxoffice itself.
//!
//! - [`yaml`]: the document as a tree whose nodes know their lines;
//! - [`read`]: the manifest read for one target, variables resolved, every problem collected
//!   with its line ([`diagnostics`]) before anything runs;
//! - [`manifest`]: the typed bundle: jobs, tasks, schedules, retries, timeouts, run_if;
//! - [`cron`]: Quartz cron expressions and their next firing time in a timezone;
//! - [`run`]: one job run: dependency order, parallelism, retries, timeouts, skips;
//! - [`history`]: `_system/job_runs`, every attempt recorded in the lake;
//! - [`schedule`]: the cron scheduler, with an injectable clock, and what a timer tick finds due.

pub mod cron;
pub mod diagnostics;
pub mod history;
pub mod manifest;
pub mod read;
pub mod run;
pub mod schedule;
pub mod yaml;

#[cfg(test)]
mod tests;

pub use diagnostics::{Diagnostic, Diagnostics};
pub use manifest::{Bundle, Job, Outcome, RunIf, Task};
pub use read::{JobSpec, LoadOptions, load};
pub use run::{Attempt, Executor, History, Progress, RunReport, TaskStats, run_job};
