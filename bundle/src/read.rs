//! Reading bundle.yml into a [`Bundle`] for one target, collecting every problem with its line.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use crate::cron::Cron;
use crate::diagnostics::{Collector, Diagnostics, suggestion};
use crate::manifest::{Bundle, Job, Mode, Notifications, RunIf, Schedule, Target, Task};
use crate::yaml::{self, Key, Node, Value};

/// A boxoffice job a task may run, and the parameters it takes.
#[derive(Debug, Clone, Copy)]
pub struct JobSpec {
    pub name: &'static str,
    pub parameters: &'static [&'static str],
}

/// What `load` needs besides the text.
pub struct LoadOptions<'a> {
    /// `-t`: the target; else the one marked `default: true`.
    pub target: Option<&'a str>,
    /// `--var name=value`, which win over everything.
    pub vars: &'a [(String, String)],
    /// Looks up `BUNDLE_VAR_<name>` (the environment, or a map in tests).
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// The jobs tasks may run.
    pub catalog: &'a [JobSpec],
}

/// Reads and checks a manifest. Any problem fails the whole load, so nothing half-runs.
pub fn load(file: &str, text: &str, options: &LoadOptions<'_>) -> Result<Bundle, Diagnostics> {
    let mut reader = Reader {
        problems: Collector::default(),
        vars: HashMap::new(),
        missing: HashSet::new(),
        bundle_name: String::new(),
        target_name: String::new(),
        catalog: options.catalog,
    };
    let bundle = match yaml::parse(text) {
        Ok(root) => reader.bundle(&root, options),
        Err(e) => {
            reader.problems.error(
                e.line,
                format!("not valid YAML: {}", e.message),
                "fix the syntax; indentation must be spaces",
            );
            None
        }
    };
    match bundle {
        Some(b) if reader.problems.problems.is_empty() => Ok(b),
        _ => Err(Diagnostics {
            file: file.to_string(),
            problems: reader.problems.problems,
        }),
    }
}

struct Reader<'c> {
    problems: Collector,
    vars: HashMap<String, String>,
    /// Declared variables without a value for this target.
    missing: HashSet<String>,
    bundle_name: String,
    target_name: String,
    catalog: &'c [JobSpec],
}

type Entries<'n> = Vec<(&'n Key, &'n Node)>;

fn get<'n>(entries: &Entries<'n>, name: &str) -> Option<&'n Node> {
    entries
        .iter()
        .find(|(k, _)| k.name == name)
        .map(|(_, v)| *v)
}

impl Reader<'_> {
    fn bundle(&mut self, root: &Node, options: &LoadOptions<'_>) -> Option<Bundle> {
        let top = self.map(
            root,
            "the manifest",
            &["bundle", "variables", "targets", "jobs"],
        );
        let Some(bundle) = get(&top, "bundle") else {
            self.problems.error(
                1,
                "no 'bundle' section",
                "add 'bundle:' with 'name: <name>'",
            );
            return None;
        };
        let meta = self.map(bundle, "bundle", &["name"]);
        self.bundle_name = match get(&meta, "name") {
            Some(n) => self.plain(n, "bundle.name")?,
            None => {
                self.problems.error(
                    bundle.line,
                    "bundle has no name",
                    "add 'name: <name>' under 'bundle:'",
                );
                return None;
            }
        };
        let defaults = self.variables(get(&top, "variables"));
        let (target, target_vars) = self.target(get(&top, "targets"), options.target, root.line)?;
        self.target_name = target.name.clone();
        let variables = self.resolve_variables(&defaults, target_vars, options);
        let jobs = match get(&top, "jobs") {
            Some(jobs) => self.jobs(jobs, target.mode),
            None => {
                self.problems.error(
                    root.line,
                    "no 'jobs' section",
                    "add 'jobs:' with at least one job",
                );
                Vec::new()
            }
        };
        Some(Bundle {
            name: self.bundle_name.clone(),
            target,
            variables,
            jobs,
        })
    }

    /// `variables.<name>: {description, default}` as (name, line, default).
    fn variables(&mut self, node: Option<&Node>) -> Vec<(String, usize, Option<String>)> {
        let Some(node) = node else { return Vec::new() };
        let mut out = Vec::new();
        for (key, spec) in self.map(node, "variables", &[]) {
            let fields = self.map(
                spec,
                &format!("variable '{}'", key.name),
                &["description", "default"],
            );
            let default = get(&fields, "default").and_then(|d| self.plain(d, "default"));
            out.push((key.name.clone(), key.line, default));
        }
        out
    }

    /// The chosen target and its variable values.
    fn target<'n>(
        &mut self,
        node: Option<&'n Node>,
        wanted: Option<&str>,
        line: usize,
    ) -> Option<(Target, Vec<(&'n Key, &'n Node)>)> {
        let Some(node) = node else {
            self.problems.error(
                line,
                "no 'targets' section",
                "add 'targets:' with a target marked 'default: true'",
            );
            return None;
        };
        let targets = self.map(node, "targets", &[]);
        let names: Vec<&str> = targets.iter().map(|(k, _)| k.name.as_str()).collect();
        let chosen = match wanted {
            Some(w) => targets.iter().find(|(k, _)| k.name == w).or_else(|| {
                self.problems
                    .error(node.line, format!("no target '{w}'"), suggestion(w, &names));
                None
            }),
            None => {
                let defaults: Vec<_> = targets
                    .iter()
                    .filter(|(_, t)| matches!(&t.value, Value::Map(m) if m.iter().any(|(k, v)| k.name == "default" && v.text() == Some("true"))))
                    .collect();
                if defaults.len() != 1 {
                    self.problems.error(
                        node.line,
                        format!("{} targets are marked 'default: true'", defaults.len()),
                        "mark exactly one target 'default: true', or choose one with -t",
                    );
                }
                defaults.first().copied()
            }
        }?;
        let (key, spec) = *chosen;
        let fields = self.map(
            spec,
            &format!("target '{}'", key.name),
            &["default", "mode", "variables"],
        );
        let mode = match get(&fields, "mode")
            .and_then(|m| self.plain(m, "mode"))
            .as_deref()
        {
            None | Some("production") => Mode::Production,
            Some("development") => Mode::Development,
            Some(other) => {
                let line = get(&fields, "mode").map_or(spec.line, |m| m.line);
                self.problems.error(
                    line,
                    format!("mode '{other}' is unknown"),
                    "use development or production",
                );
                Mode::Production
            }
        };
        let vars = match get(&fields, "variables") {
            Some(v) => self.map(v, "target variables", &[]),
            None => Vec::new(),
        };
        Some((
            Target {
                name: key.name.clone(),
                mode,
            },
            vars,
        ))
    }

    /// Each variable's value: --var, then BUNDLE_VAR_<name>, then the target's, then the default.
    fn resolve_variables(
        &mut self,
        defaults: &[(String, usize, Option<String>)],
        target_vars: Vec<(&Key, &Node)>,
        options: &LoadOptions<'_>,
    ) -> Vec<(String, String)> {
        let declared: Vec<&str> = defaults.iter().map(|(n, _, _)| n.as_str()).collect();
        let mut from_target = BTreeMap::new();
        for (key, value) in target_vars {
            if !declared.contains(&key.name.as_str()) {
                self.problems.error(
                    key.line,
                    format!("target sets variable '{}', which is not declared", key.name),
                    format!(
                        "declare it under 'variables:', or {}",
                        suggestion(&key.name, &declared)
                    ),
                );
            } else if let Some(v) = self.plain(value, &key.name) {
                from_target.insert(key.name.clone(), v);
            }
        }
        for (name, _) in options.vars {
            if !declared.contains(&name.as_str()) {
                self.problems.error(
                    1,
                    format!("--var {name}: no such variable"),
                    suggestion(name, &declared),
                );
            }
        }
        let mut out = Vec::new();
        for (name, _, default) in defaults {
            let value = options
                .vars
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .or_else(|| (options.env)(&format!("BUNDLE_VAR_{name}")))
                .or_else(|| from_target.get(name).cloned())
                .or_else(|| default.clone());
            match value {
                Some(v) => {
                    self.vars.insert(name.clone(), v.clone());
                    out.push((name.clone(), v));
                }
                // Only an error where it is used: a variable one target needs (a storage
                // account) may have no value in another.
                None => {
                    self.missing.insert(name.clone());
                }
            }
        }
        // Values may use other variables (${var.storage_account} inside a lake URL).
        for (name, value) in &mut out {
            if value.contains("${") {
                let line = defaults
                    .iter()
                    .find(|(n, _, _)| n == name)
                    .map_or(1, |(_, l, _)| *l);
                if let Some(v) = self.substitute(value, line, &format!("variable '{name}'")) {
                    *value = v.clone();
                    self.vars.insert(name.clone(), v);
                }
            }
        }
        out
    }

    fn jobs(&mut self, node: &Node, mode: Mode) -> Vec<Job> {
        let mut jobs = Vec::new();
        for (key, spec) in self.map(node, "jobs", &[]) {
            if let Some(job) = self.job(key, spec, mode) {
                jobs.push(job);
            }
        }
        jobs
    }

    fn job(&mut self, key: &Key, node: &Node, mode: Mode) -> Option<Job> {
        let what = format!("job '{}'", key.name);
        let fields = self.map(
            node,
            &what,
            &[
                "name",
                "description",
                "schedule",
                "max_concurrent_runs",
                "timeout_seconds",
                "email_notifications",
                "tasks",
            ],
        );
        let schedule = get(&fields, "schedule").and_then(|s| self.schedule(s, mode));
        let max_concurrent_runs = get(&fields, "max_concurrent_runs")
            .and_then(|n| self.number::<u32>(n, "max_concurrent_runs"))
            .unwrap_or(1);
        if max_concurrent_runs == 0 {
            let line = get(&fields, "max_concurrent_runs").map_or(key.line, |n| n.line);
            self.problems.error(
                line,
                "max_concurrent_runs is 0: the job could never run",
                "set it to 1 or more",
            );
        }
        let timeout = self.seconds(get(&fields, "timeout_seconds"));
        let notifications = get(&fields, "email_notifications")
            .map(|n| self.notifications(n))
            .unwrap_or_default();
        let Some(tasks_node) = get(&fields, "tasks") else {
            self.problems.error(
                key.line,
                format!("{what} has no tasks"),
                "add 'tasks:' with at least one task",
            );
            return None;
        };
        let tasks = self.tasks(tasks_node, &what);
        Some(Job {
            key: key.name.clone(),
            line: key.line,
            schedule,
            max_concurrent_runs,
            timeout,
            notifications,
            tasks,
        })
    }

    fn schedule(&mut self, node: &Node, mode: Mode) -> Option<Schedule> {
        let fields = self.map(
            node,
            "schedule",
            &["quartz_cron_expression", "timezone_id", "pause_status"],
        );
        let cron_node = get(&fields, "quartz_cron_expression");
        let cron = match cron_node.and_then(|c| self.string(c, "quartz_cron_expression")) {
            Some(text) => match Cron::parse(&text) {
                Ok(c) => Some(c),
                Err(e) => {
                    self.problems.error(cron_node.map_or(node.line, |c| c.line), format!("bad cron: {e}"), "see http://www.quartz-scheduler.org/documentation/quartz-2.3.0/tutorials/crontrigger.html");
                    None
                }
            },
            None => {
                self.problems.error(
                    node.line,
                    "schedule has no quartz_cron_expression",
                    "add e.g. quartz_cron_expression: '0 * * * * ?' (every minute)",
                );
                None
            }
        };
        let tz_node = get(&fields, "timezone_id");
        let timezone = match tz_node.and_then(|t| self.string(t, "timezone_id")) {
            Some(text) => match text.parse::<chrono_tz::Tz>() {
                Ok(tz) => Some(tz),
                Err(_) => {
                    self.problems.error(
                        tz_node.map_or(node.line, |t| t.line),
                        format!("unknown timezone_id '{text}'"),
                        "use an IANA name such as UTC or Asia/Kolkata",
                    );
                    None
                }
            },
            None => Some(chrono_tz::UTC),
        };
        let paused = match get(&fields, "pause_status")
            .and_then(|p| self.string(p, "pause_status"))
            .as_deref()
        {
            None | Some("UNPAUSED") => false,
            Some("PAUSED") => true,
            Some(other) => {
                let line = get(&fields, "pause_status").map_or(node.line, |p| p.line);
                self.problems.error(
                    line,
                    format!("pause_status '{other}' is unknown"),
                    "use PAUSED or UNPAUSED",
                );
                false
            }
        };
        Some(Schedule {
            cron: cron?,
            timezone: timezone?,
            paused: paused || mode == Mode::Development,
        })
    }

    fn notifications(&mut self, node: &Node) -> Notifications {
        let fields = self.map(
            node,
            "email_notifications",
            &["on_start", "on_success", "on_failure"],
        );
        let mut list = |name| match get(&fields, name) {
            Some(n) => self.strings(n, name),
            None => Vec::new(),
        };
        Notifications {
            on_start: list("on_start"),
            on_success: list("on_success"),
            on_failure: list("on_failure"),
        }
    }

    fn tasks(&mut self, node: &Node, job: &str) -> Vec<Task> {
        let Some(items) = self.list(
            node,
            &format!("{job}: tasks"),
            "write each task as a '- task_key: ...' item",
        ) else {
            return Vec::new();
        };
        let mut tasks = Vec::new();
        let mut dependency_lines = Vec::new();
        for item in items {
            if let Some((task, lines)) = self.task(item, job) {
                if tasks.iter().any(|t: &Task| t.key == task.key) {
                    self.problems.error(
                        item.line,
                        format!("{job}: task_key '{}' is used twice", task.key),
                        "give each task its own task_key",
                    );
                }
                dependency_lines.push(lines);
                tasks.push(task);
            }
        }
        self.check_dependencies(&tasks, &dependency_lines, job);
        tasks
    }

    /// A task, and the line of each of its dependencies.
    fn task(&mut self, node: &Node, job: &str) -> Option<(Task, Vec<usize>)> {
        let fields = self.map(
            node,
            &format!("a task of {job}"),
            &[
                "task_key",
                "description",
                "boxoffice_task",
                "depends_on",
                "run_if",
                "max_retries",
                "min_retry_interval_millis",
                "retry_on_timeout",
                "timeout_seconds",
            ],
        );
        let Some(key) = get(&fields, "task_key").and_then(|k| self.plain(k, "task_key")) else {
            self.problems.error(
                node.line,
                format!("a task of {job} has no task_key"),
                "add 'task_key: <name>'",
            );
            return None;
        };
        let what = format!("task '{key}'");
        let (job_name, parameters) = match get(&fields, "boxoffice_task") {
            Some(t) => self.boxoffice_task(t, &what)?,
            None => {
                self.problems.error(
                    node.line,
                    format!("{what} has no boxoffice_task"),
                    "add 'boxoffice_task: {job: <job>}'",
                );
                return None;
            }
        };
        let mut depends_on = Vec::new();
        let mut lines = Vec::new();
        if let Some(deps) = get(&fields, "depends_on") {
            let items = self.list(
                deps,
                &format!("{what}: depends_on"),
                "write '- task_key: <task>' items",
            )?;
            for item in items {
                let dep = self.map(item, "depends_on", &["task_key"]);
                if let Some(k) = get(&dep, "task_key").and_then(|k| self.plain(k, "task_key")) {
                    depends_on.push(k);
                    lines.push(item.line);
                }
            }
        }
        let run_if_node = get(&fields, "run_if");
        let run_if = match run_if_node.and_then(|r| self.string(r, "run_if")) {
            None => RunIf::AllSuccess,
            Some(text) => RunIf::parse(&text).unwrap_or_else(|| {
                self.problems.error(
                    run_if_node.map_or(node.line, |r| r.line),
                    format!("{what}: run_if '{text}' is unknown"),
                    suggestion(&text, &RunIf::NAMES),
                );
                RunIf::AllSuccess
            }),
        };
        let task = Task {
            key,
            line: node.line,
            job: job_name,
            parameters,
            depends_on,
            run_if,
            max_retries: get(&fields, "max_retries")
                .and_then(|n| self.number(n, "max_retries"))
                .unwrap_or(0),
            min_retry_interval: Duration::from_millis(
                get(&fields, "min_retry_interval_millis")
                    .and_then(|n| self.number(n, "min_retry_interval_millis"))
                    .unwrap_or(0),
            ),
            retry_on_timeout: get(&fields, "retry_on_timeout")
                .and_then(|b| self.boolean(b, "retry_on_timeout"))
                .unwrap_or(false),
            timeout: self.seconds(get(&fields, "timeout_seconds")),
        };
        Some((task, lines))
    }

    fn boxoffice_task(
        &mut self,
        node: &Node,
        what: &str,
    ) -> Option<(String, Vec<(String, String)>)> {
        let fields = self.map(
            node,
            &format!("{what}'s boxoffice_task"),
            &["job", "parameters"],
        );
        let Some(job_node) = get(&fields, "job") else {
            self.problems.error(
                node.line,
                format!("{what}: boxoffice_task has no job"),
                "add 'job: <job>'",
            );
            return None;
        };
        let job = self.string(job_node, "job")?;
        let names: Vec<&str> = self.catalog.iter().map(|j| j.name).collect();
        let Some(spec) = self.catalog.iter().find(|j| j.name == job).copied() else {
            self.problems.error(
                job_node.line,
                format!("{what}: unknown job '{job}'"),
                suggestion(&job, &names),
            );
            return None;
        };
        let mut parameters = Vec::new();
        if let Some(p) = get(&fields, "parameters") {
            for (key, value) in self.map(p, "parameters", &[]) {
                if !spec.parameters.contains(&key.name.as_str()) {
                    let fix = if spec.parameters.is_empty() {
                        format!("job '{job}' takes no parameters")
                    } else {
                        suggestion(&key.name, spec.parameters)
                    };
                    self.problems.error(
                        key.line,
                        format!("{what}: job '{job}' has no parameter '{}'", key.name),
                        fix,
                    );
                } else if let Some(v) = self.string(value, &key.name) {
                    parameters.push((key.name.clone(), v));
                }
            }
        }
        Some((job, parameters))
    }

    /// Unknown dependencies and cycles.
    fn check_dependencies(&mut self, tasks: &[Task], lines: &[Vec<usize>], job: &str) {
        let keys: Vec<&str> = tasks.iter().map(|t| t.key.as_str()).collect();
        for (task, task_lines) in tasks.iter().zip(lines) {
            for (dep, line) in task.depends_on.iter().zip(task_lines) {
                if dep == &task.key {
                    self.problems.error(
                        *line,
                        format!("{job}: task '{dep}' depends on itself"),
                        "remove it from its own depends_on",
                    );
                } else if !keys.contains(&dep.as_str()) {
                    self.problems.error(
                        *line,
                        format!(
                            "{job}: task '{}' depends on '{dep}', which is not a task of this job",
                            task.key
                        ),
                        suggestion(dep, &keys),
                    );
                }
            }
        }
        if let Some(cycle) = find_cycle(tasks) {
            let line = tasks
                .iter()
                .find(|t| t.key == cycle[0])
                .map_or(1, |t| t.line);
            self.problems.error(
                line,
                format!(
                    "{job}: tasks depend on each other in a cycle: {}",
                    cycle.join(" -> ")
                ),
                "remove one of these depends_on entries",
            );
        }
    }

    // ----- typed scalar readers -----

    /// A map's entries, reporting unknown keys (`allowed` empty: any key) and repeated ones.
    fn map<'n>(&mut self, node: &'n Node, what: &str, allowed: &[&str]) -> Entries<'n> {
        let Value::Map(entries) = &node.value else {
            if node.value != Value::Null {
                self.problems.error(
                    node.line,
                    format!("{what} is {}, not a map of 'key: value'", node.kind()),
                    "indent its keys under it",
                );
            }
            return Vec::new();
        };
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (key, value) in entries {
            if !seen.insert(key.name.as_str()) {
                self.problems.error(
                    key.line,
                    format!("'{}' appears twice in {what}", key.name),
                    "keep one",
                );
                continue;
            }
            if !allowed.is_empty() && !allowed.contains(&key.name.as_str()) {
                self.problems.error(
                    key.line,
                    format!("unknown key '{}' in {what}", key.name),
                    suggestion(&key.name, allowed),
                );
                continue;
            }
            out.push((key, value));
        }
        out
    }

    /// A scalar without variable substitution (names, which must be literal).
    fn plain(&mut self, node: &Node, what: &str) -> Option<String> {
        match node.text() {
            Some(t) => Some(t.to_string()),
            None => {
                self.problems.error(
                    node.line,
                    format!("{what} is {}, not a value", node.kind()),
                    "write a single value",
                );
                None
            }
        }
    }

    /// A scalar with `${var.name}`, `${bundle.name}` and `${bundle.target}` substituted.
    fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        let text = self.plain(node, what)?;
        self.substitute(&text, node.line, what)
    }

    fn substitute(&mut self, text: &str, line: usize, what: &str) -> Option<String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let Some(end) = rest[start..].find('}') else {
                self.problems.error(
                    line,
                    format!("{what}: '${{' is never closed in '{text}'"),
                    "write ${var.<name>}",
                );
                return None;
            };
            let reference = &rest[start + 2..start + end];
            let value = match reference {
                "bundle.name" => Some(self.bundle_name.clone()),
                "bundle.target" => Some(self.target_name.clone()),
                r => r
                    .strip_prefix("var.")
                    .and_then(|n| self.vars.get(n).cloned()),
            };
            match value {
                Some(v) => out.push_str(&v),
                None => {
                    if let Some(n) = reference
                        .strip_prefix("var.")
                        .filter(|n| self.missing.contains(*n))
                    {
                        self.problems.error(line, format!("{what}: variable '{n}' has no value for target '{}'", self.target_name), format!("give it a default, set it in the target, or pass --var {n}=... or BUNDLE_VAR_{n}"));
                        return None;
                    }
                    let names: Vec<&str> = self.vars.keys().map(String::as_str).collect();
                    let fix = match reference.strip_prefix("var.") {
                        Some(n) => format!(
                            "declare '{n}' under variables (or pass --var {n}=...); {}",
                            suggestion(n, &names)
                        ),
                        None => "use ${var.<name>}, ${bundle.name} or ${bundle.target}".to_string(),
                    };
                    self.problems
                        .error(line, format!("{what}: unresolved ${{{reference}}}"), fix);
                    return None;
                }
            }
            rest = &rest[start + end + 1..];
        }
        out.push_str(rest);
        Some(out)
    }

    fn number<T: std::str::FromStr>(&mut self, node: &Node, what: &str) -> Option<T> {
        let text = self.string(node, what)?;
        text.trim().parse().ok().or_else(|| {
            self.problems.error(
                node.line,
                format!("{what} '{text}' is not a whole number of 0 or more"),
                "write a number such as 3",
            );
            None
        })
    }

    fn boolean(&mut self, node: &Node, what: &str) -> Option<bool> {
        match self.string(node, what)?.as_str() {
            "true" => Some(true),
            "false" => Some(false),
            other => {
                self.problems.error(
                    node.line,
                    format!("{what} '{other}' is not true or false"),
                    "write true or false",
                );
                None
            }
        }
    }

    fn seconds(&mut self, node: Option<&Node>) -> Option<Duration> {
        let n: u64 = self.number(node?, "timeout_seconds")?;
        // 0 means no limit, as in Databricks.
        (n > 0).then(|| Duration::from_secs(n))
    }

    fn strings(&mut self, node: &Node, what: &str) -> Vec<String> {
        match self.list(node, what, "write '- <address>' items") {
            Some(items) => items.iter().filter_map(|i| self.string(i, what)).collect(),
            None => Vec::new(),
        }
    }

    /// A list's items; `None`, with the problem recorded, when `node` is something else.
    fn list<'n>(&mut self, node: &'n Node, what: &str, fix: &str) -> Option<&'n [Node]> {
        match &node.value {
            Value::List(items) => Some(items),
            _ => {
                self.problems.error(
                    node.line,
                    format!("{what} is {}, not a list", node.kind()),
                    fix,
                );
                None
            }
        }
    }
}

/// A dependency cycle, as task keys from its first task back to it.
fn find_cycle(tasks: &[Task]) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        i: usize,
        tasks: &[Task],
        marks: &mut [Mark],
        path: &mut Vec<usize>,
    ) -> Option<Vec<String>> {
        marks[i] = Mark::Open;
        path.push(i);
        for dep in &tasks[i].depends_on {
            let Some(j) = tasks.iter().position(|t| &t.key == dep) else {
                continue;
            };
            match marks[j] {
                Mark::Open => {
                    let from = path.iter().position(|p| *p == j).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        path[from..].iter().map(|p| tasks[*p].key.clone()).collect();
                    cycle.push(tasks[j].key.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(j, tasks, marks, path) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks[i] = Mark::Done;
        None
    }
    let mut marks = vec![Mark::New; tasks.len()];
    (0..tasks.len()).find_map(|i| {
        if marks[i] == Mark::New {
            visit(i, tasks, &mut marks, &mut Vec::new())
        } else {
            None
        }
    })
}
