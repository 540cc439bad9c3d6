//! Settings: flags beat environment variables, which beat `boxoffice.toml`, which beats defaults.
//!
//! Every key of the file is optional; an unknown key is an error naming it, so a typo does not
//! silently fall back to a default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use boxoffice_events::{GeneratorConfig, Shares};
use boxoffice_ingest::landing::LandingConfig;
use boxoffice_ingest::queue::QueueConfig;
use boxoffice_jobs::expectations::{ExpectationSetting, Expectations};
use boxoffice_jobs::silver::bookings_fact::join::{JoinConfig, TimeMode};
use boxoffice_jobs::silver::bookings_fact::{self, Settings};
use boxoffice_jobs::silver::tables::BOOKINGS_FACT;
use boxoffice_lake::{Lake, LakeSettings, Layer};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::collections::BTreeMap;

use crate::cli::{GeneratorArgs, GlobalArgs, LandingArgs};

/// The default settings file, read when present.
pub const DEFAULT_FILE: &str = "boxoffice.toml";

/// `boxoffice.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub lake: LakeSettings,
    #[serde(default)]
    pub landing: LandingFile,
    #[serde(default)]
    pub generator: GeneratorFile,
    #[serde(default)]
    pub join: JoinFile,
    #[serde(default)]
    pub jobs: JobsFile,
    /// `[expectations.<table>.<name>]`: change a declared expectation or add one.
    #[serde(default)]
    pub expectations: BTreeMap<String, BTreeMap<String, ExpectationSetting>>,
}

/// `[join]`: the bookings-payments join.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinFile {
    /// `event_time` (default) or `stream_analytics`.
    pub mode: Option<TimeMode>,
    pub window: Option<String>,
    pub lateness: Option<String>,
    pub dedup_horizon: Option<String>,
    pub max_future: Option<String>,
}

/// `[jobs]`: how often and how much the jobs take.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsFile {
    /// When `up` runs the join and the Gold refresh: `continuous` (each time Bronze commits)
    /// or a duration; a worker's cycle (a duration; `continuous` means 2 s there).
    pub interval: Option<String>,
    pub max_events: Option<usize>,
    pub checkpoint_every: Option<u64>,
    /// In `up` and workers, also at least this long between checkpoints of the join's state.
    pub checkpoint_interval: Option<String>,
    /// Partitions per hub: of the local queue `up` and `ingest` land through, and those the
    /// join expects in Bronze.
    pub partitions_per_hub: Option<u32>,
    /// Shards the join is split into (a divisor of partitions_per_hub); unset: as recorded on
    /// the lake, 1 on a new one.
    pub shards: Option<u32>,
    /// How long a job's or the landing's lease lasts without renewal: how soon another process
    /// may take over from one that was killed.
    pub lease_ttl: Option<String>,
}

/// `[landing]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LandingFile {
    pub queue_dir: Option<PathBuf>,
    pub flush_interval: Option<String>,
    pub flush_events: Option<usize>,
    pub fsync: Option<bool>,
    pub max_pending: Option<usize>,
}

/// `[generator]` and `[generator.shares]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorFile {
    pub rate: Option<f64>,
    pub seed: Option<u64>,
    pub speed: Option<f64>,
    pub catalog_size: Option<usize>,
    /// The catalog number of the first show on sale (`up` starts after the shows the lake sold).
    pub first_show: Option<u64>,
    #[serde(default)]
    pub shares: SharesFile,
}

/// `[generator.shares]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharesFile {
    pub unpaid: Option<f64>,
    pub late_payment: Option<f64>,
    pub failed: Option<f64>,
    pub duplicate: Option<f64>,
    pub late_arrival: Option<f64>,
    pub malformed: Option<f64>,
    pub v0: Option<f64>,
    pub v2: Option<f64>,
}

/// The environment variables that override `[jobs]` keys of the file: how a deployment that
/// ships no settings file (the Functions app, a container) gives every process the lake's split.
pub const JOBS_ENV: [(&str, &str); 2] = [
    ("BOXOFFICE_JOBS_PARTITIONS_PER_HUB", "partitions_per_hub"),
    ("BOXOFFICE_JOBS_SHARDS", "shards"),
];

/// Reads the settings file (the given one, which must exist, or `./boxoffice.toml` if present),
/// then applies the environment variables of [`JOBS_ENV`] over it.
pub fn load(global: &GlobalArgs) -> anyhow::Result<FileConfig> {
    let (path, required) = match &global.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(DEFAULT_FILE), false),
    };
    let mut file = match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).with_context(|| format!("reading {}", path.display()))?,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => FileConfig::default(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    apply_jobs_env(&mut file.jobs, |name| std::env::var(name).ok())?;
    Ok(file)
}

/// Sets `[jobs] partitions_per_hub` and `shards` from [`JOBS_ENV`] where those are set.
fn apply_jobs_env(jobs: &mut JobsFile, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
    for (name, key) in JOBS_ENV {
        let Some(value) = env(name).filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        let n: u32 = value.trim().parse().with_context(|| {
            format!("{name}={value:?}: give a whole number (it sets [jobs] {key})")
        })?;
        match key {
            "partitions_per_hub" => jobs.partitions_per_hub = Some(n),
            _ => jobs.shards = Some(n),
        }
    }
    Ok(())
}

/// The lake, from --lake / BOXOFFICE_LAKE, then the file, then ./lakehouse.
pub fn lake(global: &GlobalArgs, file: &FileConfig) -> anyhow::Result<Lake> {
    let mut settings = file.lake.clone();
    if let Some(root) = &global.lake {
        settings.root = Some(root.clone());
        settings.layers.clear();
    }
    if global.emulator {
        settings.emulator = Some(true);
    }
    if let Some(endpoint) = &global.emulator_endpoint {
        settings.emulator_endpoint = Some(endpoint.clone());
    }
    let lake = Lake::resolve(&settings)?;
    lake.check_reachable()?;
    Ok(lake)
}

/// The landing pipeline's settings.
pub fn landing(
    lake: &Lake,
    args: &LandingArgs,
    file: &FileConfig,
) -> anyhow::Result<LandingConfig> {
    let f = &file.landing;
    let dir = match args.queue_dir.clone().or_else(|| f.queue_dir.clone()) {
        Some(d) => d,
        None => default_queue_dir(lake),
    };
    let mut queue = QueueConfig::new(dir);
    if let Some(n) = file.jobs.partitions_per_hub {
        queue.partitions = n.max(1);
    }
    queue.fsync = args.fsync || f.fsync.unwrap_or(false);
    let mut config = LandingConfig::new(queue);
    if let Some(n) = args.flush_events.or(f.flush_events) {
        if n == 0 {
            bail!("flush_events must be at least 1");
        }
        config.max_batch = n;
    }
    // One full batch may wait while the previous one is archived; a smaller bound would keep
    // batches from ever filling, a larger one only holds more memory.
    config.queue.max_pending = match f.max_pending {
        Some(n) if n < config.max_batch => {
            bail!(
                "[landing] max_pending ({n}) must be at least flush_events ({})",
                config.max_batch
            )
        }
        Some(n) => n,
        None => config.max_batch,
    };
    match (args.flush_interval, &f.flush_interval) {
        (Some(d), _) => config.linger = d,
        (None, Some(s)) => {
            config.linger = humantime::parse_duration(s)
                .with_context(|| format!("[landing] flush_interval = {s:?}"))?;
        }
        (None, None) => {}
    }
    Ok(config)
}

/// The local lake keeps its queue inside `_system`; a remote lake needs a local folder.
fn default_queue_dir(lake: &Lake) -> PathBuf {
    match lake.local_dir(Layer::System) {
        Some(system) => system.join("queue"),
        None => {
            let name: String = lake
                .layer_url(Layer::Bronze)
                .as_str()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            Path::new(".boxoffice").join("queue").join(name)
        }
    }
}

/// How generated events are paced against the wall clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pacing {
    /// `speed` simulated seconds per real second.
    RealTime { speed: f64 },
    /// As fast as possible.
    Unpaced,
}

/// What the simulated clock starts at when --start is not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartDefault {
    /// Always now (a live pipeline).
    Now,
    /// A fixed instant when a seed is given (reproducible files), else now.
    FixedWhenSeeded,
}

/// The fixed start of seeded `generate` runs: the day the shipped event catalog is dated from.
pub fn fixed_start() -> DateTime<Utc> {
    boxoffice_events::generator::catalog::standard_on_sale()
}

/// The generator's settings and pacing.
pub fn generator(
    args: &GeneratorArgs,
    file: &FileConfig,
    start_default: StartDefault,
) -> anyhow::Result<(GeneratorConfig, Pacing)> {
    let f = &file.generator;
    let seed = args.seed.or(f.seed);
    let start = match &args.start {
        Some(s) => DateTime::parse_from_rfc3339(s)
            .with_context(|| {
                format!("--start {s:?} is not an RFC 3339 time such as 2025-01-01T00:00:00Z")
            })?
            .with_timezone(&Utc),
        None if start_default == StartDefault::FixedWhenSeeded && seed.is_some() => fixed_start(),
        None => Utc::now(),
    };
    let d = Shares::default();
    let s = &f.shares;
    let shares = Shares {
        unpaid: args.unpaid_share.or(s.unpaid).unwrap_or(d.unpaid),
        late_payment: args
            .late_payment_share
            .or(s.late_payment)
            .unwrap_or(d.late_payment),
        failed: args.failed_share.or(s.failed).unwrap_or(d.failed),
        duplicate: args.duplicate_share.or(s.duplicate).unwrap_or(d.duplicate),
        late_arrival: args
            .late_arrival_share
            .or(s.late_arrival)
            .unwrap_or(d.late_arrival),
        malformed: args.malformed_share.or(s.malformed).unwrap_or(d.malformed),
        v0: args.v0_share.or(s.v0).unwrap_or(d.v0),
        v2: args.v2_share.or(s.v2).unwrap_or(d.v2),
    };
    let config = GeneratorConfig {
        seed: seed.unwrap_or_else(boxoffice_events::generator::run::fresh_seed),
        start,
        rate: args.rate.or(f.rate).unwrap_or(1000.0),
        catalog_size: args.catalog_size.or(f.catalog_size).unwrap_or(100),
        first_show: f.first_show.unwrap_or(1).max(1),
        shares,
        ..GeneratorConfig::default()
    };
    let pacing = if args.fast {
        Pacing::Unpaced
    } else {
        let speed = args.speed.or(f.speed).unwrap_or(1.0);
        if !(speed.is_finite() && speed > 0.0) {
            bail!("--speed must be a positive number, got {speed}");
        }
        Pacing::RealTime { speed }
    };
    Ok((config, pacing))
}

/// A short human rendering of a duration.
pub fn short_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 3600 {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    } else if secs >= 60 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

fn duration_setting(key: &str, value: &Option<String>) -> anyhow::Result<Option<Duration>> {
    value
        .as_deref()
        .map(|s| {
            humantime::parse_duration(s)
                .with_context(|| format!("{key} = {s:?} (examples: 500ms, 30s, 2m)"))
        })
        .transpose()
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// The bookings_fact job's settings, from `[join]` and `[jobs]`; `mode` (a flag) beats the file.
pub fn bookings_fact(file: &FileConfig, mode: Option<TimeMode>) -> anyhow::Result<Settings> {
    let j = &file.join;
    let mut join = JoinConfig::default();
    if let Some(d) = duration_setting("[join] window", &j.window)? {
        join.window = micros(d);
    }
    if let Some(d) = duration_setting("[join] lateness", &j.lateness)? {
        join.lateness = micros(d);
    }
    if let Some(d) = duration_setting("[join] dedup_horizon", &j.dedup_horizon)? {
        join.dedup_horizon = micros(d);
    }
    if let Some(d) = duration_setting("[join] max_future", &j.max_future)? {
        join.max_future = micros(d);
    }
    if let Some(m) = mode.or(j.mode) {
        join.mode = m;
    }
    let mut settings = Settings {
        join,
        ..Settings::default()
    };
    let f = &file.jobs;
    if let Some(n) = f.max_events {
        if n == 0 {
            bail!("[jobs] max_events must be at least 1");
        }
        settings.max_events = n;
    }
    if let Some(n) = f.checkpoint_every {
        settings.checkpoint_every = n.max(1);
    }
    if let Some(d) = duration_setting("[jobs] checkpoint_interval", &f.checkpoint_interval)? {
        settings.checkpoint_interval = d;
    }
    if let Some(n) = f.partitions_per_hub {
        if n == 0 {
            bail!("[jobs] partitions_per_hub must be at least 1");
        }
        settings.partitions_per_hub = n;
    }
    if let Some(n) = f.shards {
        let split = bookings_fact::Sharding {
            shards: n,
            partitions_per_hub: settings.partitions_per_hub,
        };
        split.validate()?;
        settings.shards = Some(n);
    }
    Ok(settings)
}

/// The expectations of every job's tables, with `[expectations]` applied.
pub fn expectations(file: &FileConfig, settings: &Settings) -> anyhow::Result<Expectations> {
    let declared = [(
        &BOOKINGS_FACT,
        bookings_fact::declared_expectations(&settings.join),
    )];
    Expectations::compile(&declared, &file.expectations).map_err(|e| anyhow::anyhow!(e))
}

/// When `up` runs its own join and Gold refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cadence {
    /// As soon as the landing has committed new events to Bronze (`continuous`, the default):
    /// Gold is then as fresh as the flush interval and one run of the jobs allow.
    Continuous,
    /// Every this long, whatever landed meanwhile.
    Every(Duration),
}

impl Cadence {
    /// The word `continuous`, which `[jobs] interval` and `--job-interval` take besides a
    /// duration.
    pub const CONTINUOUS: &str = "continuous";

    /// `continuous`, or a duration such as `2s`.
    pub fn parse(s: &str) -> Result<Cadence, String> {
        if s.trim().eq_ignore_ascii_case(Self::CONTINUOUS) {
            return Ok(Cadence::Continuous);
        }
        let d = humantime::parse_duration(s.trim())
            .map_err(|e| format!("{e} (`continuous`, or a duration such as 500ms, 2s, 1m)"))?;
        if d.is_zero() {
            return Err("the job interval must be more than 0 (or `continuous`)".to_string());
        }
        Ok(Cadence::Every(d))
    }

    /// As the start line says it.
    pub fn describe(&self) -> String {
        match self {
            Cadence::Continuous => "each time Bronze commits (continuous)".to_string(),
            Cadence::Every(d) => format!("every {}", humantime::format_duration(*d)),
        }
    }
}

/// How often the side jobs run in continuous mode (batch_load before a run of the join; the
/// booking service's changes and cdc in a task of their own), and the longest the join and Gold
/// wait when nothing lands: the timer cadence's default, so their tables move as they did.
pub const SIDE_JOBS_EVERY: Duration = Duration::from_secs(2);

/// How long the landing waits before committing a batch when `up` runs its jobs continuously and
/// no flush interval is set: an event waits about this long for its partition's commit, and
/// the join takes it once every partition has committed past it.
pub const CONTINUOUS_FLUSH: Duration = Duration::from_millis(200);

/// When `up` runs its jobs: `--job-interval`, else `[jobs] interval`, else continuously.
pub fn job_cadence(file: &FileConfig, flag: Option<Cadence>) -> anyhow::Result<Cadence> {
    match (flag, &file.jobs.interval) {
        (Some(c), _) => Ok(c),
        (None, Some(s)) => {
            Cadence::parse(s).map_err(|e| anyhow::anyhow!("[jobs] interval = {s:?}: {e}"))
        }
        (None, None) => Ok(Cadence::Continuous),
    }
}

/// How often a worker runs its cycle: `--interval`, else `[jobs] interval`, else 2 s. Workers
/// are separate processes that no landing notifies, so `continuous` means the 2 s default there.
pub fn job_interval(file: &FileConfig, flag: Option<Duration>) -> anyhow::Result<Duration> {
    let d = match flag {
        Some(d) => d,
        None => match job_cadence(file, None)? {
            Cadence::Every(d) => d,
            Cadence::Continuous => SIDE_JOBS_EVERY,
        },
    };
    if d.is_zero() {
        bail!("the job interval must be more than 0");
    }
    Ok(d)
}

/// Whether a flush interval was set (a flag or `[landing] flush_interval`), so `up` leaves it.
pub fn flush_interval_set(args: &LandingArgs, file: &FileConfig) -> bool {
    args.flush_interval.is_some() || file.landing.flush_interval.is_some()
}

/// How long a lease lasts unless renewed (`[jobs] lease_ttl`, default 30 s; at least 1 s).
pub fn lease_ttl(file: &FileConfig) -> anyhow::Result<Duration> {
    let ttl = duration_setting("[jobs] lease_ttl", &file.jobs.lease_ttl)?
        .unwrap_or(boxoffice_lake::lease::DEFAULT_TTL);
    if ttl < Duration::from_secs(1) {
        bail!("[jobs] lease_ttl must be at least 1s (renewals happen every third of it)");
    }
    Ok(ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_sets_the_split_over_the_file() {
        let mut jobs: JobsFile =
            toml::from_str::<FileConfig>("[jobs]\npartitions_per_hub = 8\nshards = 4\n")
                .expect("parses")
                .jobs;
        let vars = [
            ("BOXOFFICE_JOBS_PARTITIONS_PER_HUB", "2"),
            ("BOXOFFICE_JOBS_SHARDS", " 2 "),
        ];
        apply_jobs_env(&mut jobs, |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
        .expect("applies");
        assert_eq!((jobs.partitions_per_hub, jobs.shards), (Some(2), Some(2)));
        // Unset or empty: the file's values stay.
        let mut jobs = JobsFile {
            shards: Some(4),
            ..JobsFile::default()
        };
        apply_jobs_env(&mut jobs, |name| {
            (name == "BOXOFFICE_JOBS_SHARDS").then(String::new)
        })
        .expect("applies");
        assert_eq!((jobs.partitions_per_hub, jobs.shards), (None, Some(4)));
        let err = apply_jobs_env(&mut JobsFile::default(), |name| {
            (name == "BOXOFFICE_JOBS_SHARDS").then(|| "two".to_string())
        })
        .expect_err("not a number");
        assert!(
            format!("{err:#}").contains("BOXOFFICE_JOBS_SHARDS=\"two\""),
            "{err:#}"
        );
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let err = toml::from_str::<FileConfig>("[landing]\nflush_intervall = \"2s\"\n")
            .expect_err("typo");
        assert!(err.to_string().contains("flush_intervall"), "{err}");
    }

    #[test]
    fn flags_beat_the_file_and_the_file_beats_defaults() {
        let file: FileConfig =
            toml::from_str("[generator]\nrate = 50\nseed = 9\n[generator.shares]\nunpaid = 0.2\n")
                .expect("parses");
        let args = GeneratorArgs {
            rate: Some(70.0),
            ..GeneratorArgs::default()
        };
        let (config, pacing) =
            generator(&args, &file, StartDefault::FixedWhenSeeded).expect("config");
        assert_eq!(config.rate, 70.0);
        assert_eq!(config.seed, 9);
        assert_eq!(config.shares.unpaid, 0.2);
        assert_eq!(config.shares.failed, Shares::default().failed);
        assert_eq!(
            config.start,
            fixed_start(),
            "seeded generate is reproducible"
        );
        assert_eq!(pacing, Pacing::RealTime { speed: 1.0 });
    }

    #[test]
    fn bad_start_and_speed_are_explained() {
        let args = GeneratorArgs {
            start: Some("tomorrow".into()),
            ..GeneratorArgs::default()
        };
        let err = generator(&args, &FileConfig::default(), StartDefault::Now).expect_err("bad");
        assert!(format!("{err:#}").contains("RFC 3339"), "{err:#}");
        let args = GeneratorArgs {
            speed: Some(0.0),
            ..GeneratorArgs::default()
        };
        let err = generator(&args, &FileConfig::default(), StartDefault::Now).expect_err("bad");
        assert!(err.to_string().contains("--speed"), "{err}");
    }

    #[test]
    fn local_lakes_queue_inside_system_remote_ones_locally() {
        let lake = Lake::local(Path::new("/tmp/lh")).expect("lake");
        assert_eq!(default_queue_dir(&lake), Path::new("/tmp/lh/_system/queue"));
        let remote = Lake::resolve(&LakeSettings {
            root: Some("abfss://lake@acct.dfs.core.windows.net/x".into()),
            ..LakeSettings::default()
        })
        .expect("lake");
        assert!(default_queue_dir(&remote).starts_with(".boxoffice/queue"));
    }
}
