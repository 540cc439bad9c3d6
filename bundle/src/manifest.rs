//! The bundle as a typed model, after variables are resolved for one target. Names follow
//! Databricks Asset Bundles, so a Databricks user reads bundle.yml at a glance.

use std::time::Duration;

/// A resolved bundle: what `validate` checked and `run` and `schedule` execute.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    /// `bundle.name`.
    pub name: String,
    /// The target chosen (`-t`, else the one marked `default: true`).
    pub target: Target,
    /// Each variable's resolved value.
    pub variables: Vec<(String, String)>,
    /// `jobs.<key>`, in file order.
    pub jobs: Vec<Job>,
}

/// `targets.<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    /// `mode: development` pauses every schedule (as in Databricks); `production` keeps them.
    pub mode: Mode,
}

/// A target's mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Development,
    Production,
}

/// `jobs.<key>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub key: String,
    pub line: usize,
    pub schedule: Option<Schedule>,
    /// Runs of this job allowed at once; a due run beyond it is skipped and logged.
    pub max_concurrent_runs: u32,
    /// The whole run's limit; tasks still running then are stopped.
    pub timeout: Option<Duration>,
    pub notifications: Notifications,
    pub tasks: Vec<Task>,
}

/// `schedule`.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub cron: crate::cron::Cron,
    pub timezone: chrono_tz::Tz,
    pub paused: bool,
}

/// `email_notifications`: addresses told when a run starts, succeeds or fails. boxoffice has no
/// mail server: it logs the notification, and a deployment forwards the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notifications {
    pub on_start: Vec<String>,
    pub on_success: Vec<String>,
    pub on_failure: Vec<String>,
}

/// `tasks[]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub key: String,
    pub line: usize,
    /// `boxoffice_task.job`: the boxoffice job it runs.
    pub job: String,
    /// `boxoffice_task.parameters`.
    pub parameters: Vec<(String, String)>,
    /// `depends_on[].task_key`.
    pub depends_on: Vec<String>,
    pub run_if: RunIf,
    /// Retries after the first attempt fails.
    pub max_retries: u32,
    pub min_retry_interval: Duration,
    /// Whether a timed-out attempt is retried.
    pub retry_on_timeout: bool,
    pub timeout: Option<Duration>,
}

/// `run_if`: when a task runs, given how the tasks it depends on ended (Databricks' values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunIf {
    AllSuccess,
    AtLeastOneSuccess,
    NoneFailed,
    AllDone,
    AtLeastOneFailed,
    AllFailed,
}

impl RunIf {
    /// The values bundle.yml takes.
    pub const NAMES: [&'static str; 6] = [
        "ALL_SUCCESS",
        "AT_LEAST_ONE_SUCCESS",
        "NONE_FAILED",
        "ALL_DONE",
        "AT_LEAST_ONE_FAILED",
        "ALL_FAILED",
    ];

    /// Parses a bundle.yml value.
    pub fn parse(text: &str) -> Option<RunIf> {
        let all = [
            RunIf::AllSuccess,
            RunIf::AtLeastOneSuccess,
            RunIf::NoneFailed,
            RunIf::AllDone,
            RunIf::AtLeastOneFailed,
            RunIf::AllFailed,
        ];
        RunIf::NAMES.iter().position(|n| *n == text).map(|i| all[i])
    }

    /// Whether a task runs, given its dependencies' outcomes (a task with none always runs).
    /// Skipped dependencies count as neither success nor failure, except for ALL_SUCCESS,
    /// which they block.
    pub fn allows(self, outcomes: &[Outcome]) -> bool {
        if outcomes.is_empty() {
            return true;
        }
        let succeeded = outcomes
            .iter()
            .filter(|o| **o == Outcome::Succeeded)
            .count();
        let failed = outcomes.iter().filter(|o| o.is_failure()).count();
        match self {
            RunIf::AllSuccess => succeeded == outcomes.len(),
            RunIf::AtLeastOneSuccess => succeeded > 0,
            RunIf::NoneFailed => failed == 0,
            RunIf::AllDone => true,
            RunIf::AtLeastOneFailed => failed > 0,
            RunIf::AllFailed => failed == outcomes.len(),
        }
    }
}

/// How a task (or a run) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed,
    TimedOut,
    /// Not run: its run_if was not met (for instance a dependency failed).
    Skipped,
}

impl Outcome {
    /// Failed or timed out.
    pub fn is_failure(self) -> bool {
        matches!(self, Outcome::Failed | Outcome::TimedOut)
    }

    /// Reads a `status` column value.
    pub fn parse(text: &str) -> Option<Outcome> {
        [
            Outcome::Succeeded,
            Outcome::Failed,
            Outcome::TimedOut,
            Outcome::Skipped,
        ]
        .into_iter()
        .find(|o| o.as_str() == text)
    }

    /// The `status` column's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "SUCCEEDED",
            Outcome::Failed => "FAILED",
            Outcome::TimedOut => "TIMED_OUT",
            Outcome::Skipped => "SKIPPED",
        }
    }
}

impl Bundle {
    /// The job named `key`.
    pub fn job(&self, key: &str) -> Option<&Job> {
        self.jobs.iter().find(|j| j.key == key)
    }
}
