use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{TimeZone, Utc};

use crate::cron::Cron;
use crate::manifest::Outcome;
use crate::run::{BoxFuture, Executor, History};
use crate::*;

const CATALOG: &[JobSpec] = &[
    JobSpec {
        name: "bookings_fact",
        parameters: &["drain", "mode"],
    },
    JobSpec {
        name: "gold",
        parameters: &["full"],
    },
    JobSpec {
        name: "flaky",
        parameters: &[],
    },
];

fn no_env(_: &str) -> Option<String> {
    None
}

fn load_text(text: &str) -> Result<Bundle, Diagnostics> {
    load(
        "bundle.yml",
        text,
        &LoadOptions {
            target: None,
            vars: &[],
            env: &no_env,
            catalog: CATALOG,
        },
    )
}

const GOOD: &str = "\
bundle:
  name: boxoffice
variables:
  mode:
    description: the join's clock
    default: event_time
targets:
  local:
    default: true
    mode: development
  azure:
    mode: production
    variables:
      mode: stream_analytics
jobs:
  medallion:
    schedule:
      quartz_cron_expression: '0 */5 * * * ?'
      timezone_id: Asia/Kolkata
    max_concurrent_runs: 1
    timeout_seconds: 600
    tasks:
      - task_key: join
        boxoffice_task:
          job: bookings_fact
          parameters:
            mode: ${var.mode}
        max_retries: 2
      - task_key: gold
        depends_on:
          - task_key: join
        boxoffice_task:
          job: gold
";

#[test]
fn a_good_manifest_loads_with_its_variables_resolved_for_the_target() {
    let local = load_text(GOOD).expect("valid");
    assert_eq!(local.target.name, "local");
    let medallion = local.job("medallion").expect("job");
    assert!(
        medallion.schedule.as_ref().expect("schedule").paused,
        "development pauses schedules"
    );
    assert_eq!(
        medallion.tasks[0].parameters,
        [("mode".to_string(), "event_time".to_string())]
    );
    assert_eq!(medallion.tasks[0].max_retries, 2);
    assert_eq!(medallion.tasks[1].depends_on, ["join"]);
    assert_eq!(medallion.timeout, Some(Duration::from_secs(600)));

    let azure = load(
        "bundle.yml",
        GOOD,
        &LoadOptions {
            target: Some("azure"),
            vars: &[],
            env: &no_env,
            catalog: CATALOG,
        },
    )
    .expect("valid");
    assert!(
        !azure
            .job("medallion")
            .and_then(|j| j.schedule.as_ref())
            .expect("schedule")
            .paused
    );
    assert_eq!(azure.jobs[0].tasks[0].parameters[0].1, "stream_analytics");

    // --var beats BUNDLE_VAR_, which beats the target.
    let env = |name: &str| (name == "BUNDLE_VAR_mode").then(|| "from_env".to_string());
    let b = load(
        "bundle.yml",
        GOOD,
        &LoadOptions {
            target: Some("azure"),
            vars: &[],
            env: &env,
            catalog: CATALOG,
        },
    )
    .expect("valid");
    assert_eq!(b.jobs[0].tasks[0].parameters[0].1, "from_env");
    let vars = [("mode".to_string(), "from_flag".to_string())];
    let b = load(
        "bundle.yml",
        GOOD,
        &LoadOptions {
            target: Some("azure"),
            vars: &vars,
            env: &env,
            catalog: CATALOG,
        },
    )
    .expect("valid");
    assert_eq!(b.jobs[0].tasks[0].parameters[0].1, "from_flag");
}

/// The single problem `text` has: its line and message.
fn problem(text: &str) -> (usize, String, String) {
    let e = load_text(text).expect_err("invalid");
    assert_eq!(e.problems.len(), 1, "{e}");
    let p = &e.problems[0];
    (p.line, p.message.clone(), p.fix.clone())
}

#[test]
fn an_unknown_key_names_its_line_and_the_likely_fix() {
    let (line, message, fix) =
        problem(&GOOD.replace("        max_retries: 2", "        max_retry: 2"));
    assert_eq!(line, 28);
    assert!(message.contains("unknown key 'max_retry'"), "{message}");
    assert_eq!(fix, "did you mean 'max_retries'?");
}

#[test]
fn an_unknown_job_names_its_line() {
    let (line, message, fix) = problem(&GOOD.replace("job: gold", "job: golden"));
    assert_eq!(line, 33);
    assert!(message.contains("unknown job 'golden'"), "{message}");
    assert!(fix.contains("'gold'"), "{fix}");
}

#[test]
fn a_missing_dependency_names_its_line() {
    let (line, message, _) = problem(&GOOD.replace(
        "          - task_key: join\n",
        "          - task_key: joins\n",
    ));
    assert_eq!(line, 31);
    assert!(message.contains("depends on 'joins'"), "{message}");
}

#[test]
fn a_cycle_is_named_task_by_task() {
    let text = GOOD.replace(
        "        max_retries: 2\n",
        "        max_retries: 2\n        depends_on:\n          - task_key: gold\n",
    );
    let (line, message, _) = problem(&text);
    assert_eq!(line, 23);
    assert!(message.contains("join -> gold -> join"), "{message}");
}

#[test]
fn a_bad_cron_names_its_line_and_field() {
    let (line, message, _) = problem(&GOOD.replace("'0 */5 * * * ?'", "'0 */5 25 * * ?'"));
    assert_eq!(line, 18);
    assert!(message.contains("hours '25'"), "{message}");
    let (_, message, _) = problem(&GOOD.replace("'0 */5 * * * ?'", "'*/5 * * * *'"));
    assert!(message.contains("5 fields"), "{message}");
}

#[test]
fn an_unresolved_variable_names_its_line() {
    let (line, message, fix) = problem(&GOOD.replace("${var.mode}", "${var.mdoe}"));
    assert_eq!(line, 27);
    assert!(message.contains("unresolved ${var.mdoe}"), "{message}");
    assert!(fix.contains("'mode'"), "{fix}");
}

#[test]
fn an_unknown_parameter_and_a_bad_run_if_name_their_lines() {
    let (line, message, _) = problem(&GOOD.replace(
        "            mode: ${var.mode}",
        "            mood: ${var.mode}",
    ));
    assert_eq!(line, 27);
    assert!(message.contains("no parameter 'mood'"), "{message}");
    let (line, message, fix) = problem(&GOOD.replace(
        "        boxoffice_task:\n          job: gold",
        "        run_if: ALL_SUCESS\n        boxoffice_task:\n          job: gold",
    ));
    assert_eq!(line, 32);
    assert!(message.contains("run_if 'ALL_SUCESS'"), "{message}");
    assert!(fix.contains("ALL_SUCCESS"), "{fix}");
}

#[test]
fn broken_yaml_is_one_problem_with_its_line() {
    let (line, message, _) = problem("bundle:\n  name: x\njobs:\n  a: [1, 2\n");
    assert!(line >= 4, "line {line}");
    assert!(message.contains("not valid YAML"), "{message}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = GOOD
        .replace("max_retries: 2", "max_retries: two")
        .replace("job: gold", "job: golden");
    let e = load_text(&text).expect_err("invalid");
    assert_eq!(e.problems.len(), 2, "{e}");
    let shown = e.to_string();
    assert!(
        shown.contains("bundle.yml:28:") && shown.contains("bundle.yml:33:"),
        "{shown}"
    );
}

#[test]
fn quartz_cron_fires_at_the_next_matching_local_time() {
    let every_5_min = Cron::parse("0 */5 * * * ?").expect("valid");
    let t = Utc
        .with_ymd_and_hms(2026, 11, 23, 10, 2, 30)
        .single()
        .expect("time");
    assert_eq!(
        every_5_min.next_after(t, chrono_tz::UTC),
        Utc.with_ymd_and_hms(2026, 11, 23, 10, 5, 0).single()
    );
    // 03:00 in Kolkata (UTC+05:30) is 21:30 UTC the day before.
    let daily = Cron::parse("0 0 3 * * ?").expect("valid");
    assert_eq!(
        daily.next_after(t, chrono_tz::Asia::Kolkata),
        Utc.with_ymd_and_hms(2026, 11, 23, 21, 30, 0).single()
    );
    // Mondays (day 2) at 09:15; 2026-11-23 is a Monday, already past.
    let mondays = Cron::parse("0 15 9 ? * MON").expect("valid");
    assert_eq!(
        mondays.next_after(t, chrono_tz::UTC),
        Utc.with_ymd_and_hms(2026, 11, 30, 9, 15, 0).single()
    );
    assert!(Cron::parse("0 0 3 * * MON").is_err(), "both day fields set");
    assert!(
        Cron::parse("0 0 3 L * ?")
            .expect_err("L")
            .contains("not supported")
    );
}

// ----- running -----

#[derive(Default)]
struct Script {
    /// Attempts that fail before one succeeds.
    failures: HashMap<String, u32>,
    /// How long each attempt takes.
    sleep: HashMap<String, Duration>,
    /// (task, started, ended) per attempt, in real time.
    log: Mutex<Vec<(String, tokio::time::Instant, tokio::time::Instant)>>,
    calls: Mutex<HashMap<String, u32>>,
}

struct Scripted(Arc<Script>);

impl Executor for Scripted {
    fn run(&self, task: &Task) -> BoxFuture<Result<TaskStats, String>> {
        let script = Arc::clone(&self.0);
        let key = task.key.clone();
        Box::pin(async move {
            let call = {
                let mut calls = script.calls.lock().expect("lock");
                let c = calls.entry(key.clone()).or_default();
                *c += 1;
                *c
            };
            let start = tokio::time::Instant::now();
            tokio::time::sleep(script.sleep.get(&key).copied().unwrap_or_default()).await;
            script.log.lock().expect("lock").push((
                key.clone(),
                start,
                tokio::time::Instant::now(),
            ));
            if call <= script.failures.get(&key).copied().unwrap_or(0) {
                Err(format!("{key} failed on attempt {call}"))
            } else {
                Ok(TaskStats {
                    rows_in: 10,
                    rows_out: 5,
                })
            }
        })
    }
}

#[derive(Default)]
struct Recorded(Mutex<Vec<Attempt>>);

impl History for Recorded {
    fn record(&self, attempt: Attempt) -> BoxFuture<Result<(), String>> {
        self.0.lock().expect("lock").push(attempt);
        Box::pin(async { Ok(()) })
    }
}

const DIAMOND: &str = "\
bundle: {name: t}
targets: {local: {default: true}}
jobs:
  j:
    tasks:
      - {task_key: a, boxoffice_task: {job: gold}}
      - {task_key: b, boxoffice_task: {job: gold}, depends_on: [{task_key: a}]}
      - {task_key: c, boxoffice_task: {job: gold}, depends_on: [{task_key: a}]}
      - {task_key: d, boxoffice_task: {job: gold}, depends_on: [{task_key: b}, {task_key: c}]}
";

async fn run(text: &str, script: Script) -> (RunReport, Arc<Script>, Vec<Attempt>) {
    let bundle = load_text(text).expect("valid");
    let script = Arc::new(script);
    let history = Arc::new(Recorded::default());
    let report = run_job(
        &bundle.jobs[0],
        "run-1",
        Arc::new(Scripted(Arc::clone(&script))),
        Arc::clone(&history) as Arc<dyn History>,
        Arc::new(|_| {}),
    )
    .await;
    let attempts = history.0.lock().expect("lock").clone();
    (report, script, attempts)
}

fn sleeps(pairs: &[(&str, u64)]) -> HashMap<String, Duration> {
    pairs
        .iter()
        .map(|(k, ms)| (k.to_string(), Duration::from_millis(*ms)))
        .collect()
}

#[tokio::test]
async fn tasks_run_in_dependency_order_and_independent_ones_at_once() {
    let script = Script {
        sleep: sleeps(&[("a", 50), ("b", 300), ("c", 300), ("d", 50)]),
        ..Script::default()
    };
    let (report, script, attempts) = run(DIAMOND, script).await;
    assert_eq!(report.outcome, Outcome::Succeeded);
    let log = script.log.lock().expect("lock").clone();
    let span = |k: &str| {
        log.iter()
            .find(|(t, _, _)| t == k)
            .map(|(_, s, e)| (*s, *e))
            .expect("ran")
    };
    let (a, b, c, d) = (span("a"), span("b"), span("c"), span("d"));
    assert!(b.0 >= a.1 && c.0 >= a.1, "b and c wait for a");
    assert!(d.0 >= b.1 && d.0 >= c.1, "d waits for b and c");
    assert!(b.0 < c.1 && c.0 < b.1, "b and c overlap");
    assert_eq!(attempts.len(), 4);
    assert!(
        attempts.iter().all(|a| a.run_id == "run-1"
            && a.status == Outcome::Succeeded
            && a.stats.rows_out == 5)
    );
}

#[tokio::test]
async fn a_failing_task_is_retried_then_succeeds() {
    let text = DIAMOND.replace("{task_key: a, boxoffice_task: {job: gold}}", "{task_key: a, boxoffice_task: {job: gold}, max_retries: 2, min_retry_interval_millis: 300}");
    let script = Script {
        failures: [("a".to_string(), 2)].into(),
        ..Script::default()
    };
    let (report, script, attempts) = run(&text, script).await;
    assert_eq!(report.outcome, Outcome::Succeeded);
    let a: Vec<&Attempt> = attempts.iter().filter(|x| x.task == "a").collect();
    assert_eq!(
        a.iter().map(|x| (x.attempt, x.status)).collect::<Vec<_>>(),
        [
            (1, Outcome::Failed),
            (2, Outcome::Failed),
            (3, Outcome::Succeeded)
        ]
    );
    assert!(
        a[0].error
            .as_deref()
            .unwrap_or_default()
            .contains("attempt 1")
    );
    let log = script.log.lock().expect("lock").clone();
    let starts: Vec<_> = log
        .iter()
        .filter(|(t, _, _)| t == "a")
        .map(|(_, s, _)| *s)
        .collect();
    assert!(
        starts[1] - starts[0] >= Duration::from_millis(300),
        "min_retry_interval_millis apart"
    );
}

#[tokio::test]
async fn a_failure_skips_its_dependents_but_not_an_all_done_task() {
    let text = DIAMOND.replace(
        "{task_key: d, boxoffice_task: {job: gold}, depends_on: [{task_key: b}, {task_key: c}]}",
        "{task_key: d, boxoffice_task: {job: gold}, depends_on: [{task_key: b}, {task_key: c}]}\n      - {task_key: e, boxoffice_task: {job: gold}, depends_on: [{task_key: d}], run_if: ALL_DONE}",
    );
    let script = Script {
        failures: [("b".to_string(), 1)].into(),
        ..Script::default()
    };
    let (report, _, attempts) = run(&text, script).await;
    assert_eq!(report.outcome, Outcome::Failed);
    let status = |k: &str| {
        report
            .tasks
            .iter()
            .find(|(t, _, _)| t == k)
            .map(|(_, o, _)| *o)
    };
    assert_eq!(status("b"), Some(Outcome::Failed));
    assert_eq!(status("c"), Some(Outcome::Succeeded));
    assert_eq!(status("d"), Some(Outcome::Skipped));
    assert_eq!(
        status("e"),
        Some(Outcome::Succeeded),
        "ALL_DONE runs after a skip"
    );
    assert!(
        attempts
            .iter()
            .any(|a| a.task == "d" && a.status == Outcome::Skipped && a.attempt == 0)
    );
}

#[tokio::test]
async fn run_if_at_least_one_failed_runs_only_after_a_failure() {
    let text = DIAMOND.replace(
        "{task_key: d, boxoffice_task: {job: gold}, depends_on: [{task_key: b}, {task_key: c}]}",
        "{task_key: d, boxoffice_task: {job: gold}, depends_on: [{task_key: b}, {task_key: c}], run_if: AT_LEAST_ONE_FAILED}",
    );
    let (report, _, _) = run(&text, Script::default()).await;
    assert!(
        report
            .tasks
            .contains(&("d".to_string(), Outcome::Skipped, 0))
    );
    let (report, _, _) = run(
        &text,
        Script {
            failures: [("c".to_string(), 1)].into(),
            ..Script::default()
        },
    )
    .await;
    assert!(
        report
            .tasks
            .contains(&("d".to_string(), Outcome::Succeeded, 1))
    );
}

#[tokio::test]
async fn a_timeout_stops_the_task_and_is_retried_only_when_asked() {
    let text = DIAMOND.replace(
        "{task_key: a, boxoffice_task: {job: gold}}",
        "{task_key: a, boxoffice_task: {job: gold}, timeout_seconds: 1, max_retries: 1}",
    );
    let script = Script {
        sleep: sleeps(&[("a", 60_000)]),
        ..Script::default()
    };
    let (report, script, attempts) = run(&text, script).await;
    assert_eq!(report.outcome, Outcome::Failed);
    assert!(
        report
            .tasks
            .contains(&("a".to_string(), Outcome::TimedOut, 1)),
        "{:?}",
        report.tasks
    );
    assert!(
        script.log.lock().expect("lock").is_empty(),
        "the attempt was stopped, not finished"
    );
    assert!(
        attempts[0]
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("timed out after 1s")
    );

    let text = text.replace("max_retries: 1}", "max_retries: 1, retry_on_timeout: true}");
    let (report, _, _) = run(
        &text,
        Script {
            sleep: sleeps(&[("a", 60_000)]),
            ..Script::default()
        },
    )
    .await;
    assert!(
        report
            .tasks
            .contains(&("a".to_string(), Outcome::TimedOut, 2)),
        "{:?}",
        report.tasks
    );
}

#[tokio::test]
async fn the_jobs_timeout_stops_every_running_task() {
    let text = DIAMOND.replace("  j:\n", "  j:\n    timeout_seconds: 1\n");
    let (report, _, attempts) = run(
        &text,
        Script {
            sleep: sleeps(&[("b", 60_000)]),
            ..Script::default()
        },
    )
    .await;
    assert_eq!(report.outcome, Outcome::TimedOut);
    assert!(
        attempts
            .iter()
            .any(|a| a.task == "b" && a.status == Outcome::TimedOut)
    );
    assert!(!attempts.iter().any(|a| a.task == "d"), "d never started");
}

// ----- scheduling -----

use crate::schedule::{Clock, Launch, run_schedule};

/// Virtual time: sleeping jumps to the wake-up time; passing `limit` stops the scheduler and
/// jumps far ahead, so every run in flight ends.
struct VirtualClock {
    now: tokio::sync::watch::Sender<chrono::DateTime<Utc>>,
    limit: chrono::DateTime<Utc>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Clock for VirtualClock {
    fn now(&self) -> chrono::DateTime<Utc> {
        *self.now.borrow()
    }

    fn sleep_until(&self, at: chrono::DateTime<Utc>) -> BoxFuture<()> {
        if at > self.limit {
            let _ = self.now.send(self.limit + chrono::Duration::days(365));
            let _ = self.stop.send(true);
            return Box::pin(std::future::pending());
        }
        let _ = self.now.send(at);
        Box::pin(async {})
    }
}

const SCHEDULED: &str = "\
bundle: {name: t}
targets: {prod: {default: true, mode: production}, dev: {mode: development}}
jobs:
  medallion:
    schedule: {quartz_cron_expression: '0 * * * * ?', timezone_id: UTC}
    max_concurrent_runs: 1
    tasks: [{task_key: a, boxoffice_task: {job: gold}}]
  cdc:
    schedule: {quartz_cron_expression: '30 */2 * * * ?', timezone_id: UTC}
    tasks: [{task_key: a, boxoffice_task: {job: gold}}]
  paused:
    schedule: {quartz_cron_expression: '0 * * * * ?', timezone_id: UTC, pause_status: PAUSED}
    tasks: [{task_key: a, boxoffice_task: {job: gold}}]
";

fn at(h: u32, m: u32, s: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, h, m, s)
        .single()
        .expect("time")
}

/// Runs the schedule from 10:00:30 to 10:06:00 virtual; each run lasts `run_for` virtual time.
async fn schedule(target: &str, run_for: chrono::Duration) -> crate::schedule::ScheduleLog {
    let bundle = load(
        "bundle.yml",
        SCHEDULED,
        &LoadOptions {
            target: Some(target),
            vars: &[],
            env: &no_env,
            catalog: CATALOG,
        },
    )
    .expect("valid");
    let (now, _) = tokio::sync::watch::channel(at(10, 0, 30));
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let clock = Arc::new(VirtualClock {
        now,
        limit: at(10, 6, 0),
        stop: stop_tx,
    });
    let time = clock.now.subscribe();
    let launch: Launch = Arc::new(move |_job, due| {
        let mut time = time.clone();
        Box::pin(async move {
            let _ = time.wait_for(|now| *now >= due + run_for).await;
            Outcome::Succeeded
        })
    });
    run_schedule(&bundle, clock, launch, stop).await
}

#[tokio::test]
async fn the_scheduler_fires_each_job_on_its_cron_under_a_virtual_clock() {
    let log = schedule("prod", chrono::Duration::seconds(10)).await;
    let fired = |job: &str| {
        log.started
            .iter()
            .filter(|(j, _)| j == job)
            .map(|(_, t)| *t)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        fired("medallion"),
        (1..=6).map(|m| at(10, m, 0)).collect::<Vec<_>>()
    );
    assert_eq!(fired("cdc"), [at(10, 2, 30), at(10, 4, 30)]);
    assert!(fired("paused").is_empty(), "PAUSED never fires");
    assert!(log.skipped.is_empty());
    // A development target pauses every schedule.
    assert!(
        schedule("dev", chrono::Duration::seconds(10))
            .await
            .started
            .is_empty()
    );
}

#[tokio::test]
async fn a_run_still_going_makes_the_next_due_run_skip() {
    // Each run takes 2.5 minutes; max_concurrent_runs is 1.
    let log = schedule("prod", chrono::Duration::seconds(150)).await;
    let of = |list: &Vec<(String, chrono::DateTime<Utc>)>| {
        list.iter()
            .filter(|(j, _)| j == "medallion")
            .map(|(_, t)| *t)
            .collect::<Vec<_>>()
    };
    assert_eq!(of(&log.started), [at(10, 1, 0), at(10, 4, 0)]);
    assert_eq!(
        of(&log.skipped),
        [at(10, 2, 0), at(10, 3, 0), at(10, 5, 0), at(10, 6, 0)]
    );
}

#[test]
fn a_timer_tick_finds_each_due_job_once() {
    let bundle = load(
        "bundle.yml",
        SCHEDULED,
        &LoadOptions {
            target: None,
            vars: &[],
            env: &no_env,
            catalog: CATALOG,
        },
    )
    .expect("valid");
    let due = |from, to| {
        crate::schedule::due_between(&bundle, from, to)
            .iter()
            .map(|j| j.key.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(due(at(10, 0, 40), at(10, 1, 0)), ["medallion"]);
    assert_eq!(due(at(10, 1, 0), at(10, 2, 40)), ["medallion", "cdc"]);
    assert_eq!(due(at(10, 1, 10), at(10, 1, 50)), Vec::<String>::new());
    // Ten missed minutes: one run each, not ten.
    assert_eq!(due(at(10, 0, 0), at(10, 10, 0)), ["medallion", "cdc"]);
}
