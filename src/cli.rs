//! The command line: every command and flag, with the help a user reads.

use std::path::PathBuf;
use std::time::Duration;

use boxoffice_events::Hub;

use clap::{Args, Parser, Subcommand};

use crate::help;

/// boxoffice: a real-time and batch lakehouse for ticket bookings.
///
/// Booking and payment events are produced, landed raw in Bronze exactly once, joined in event
/// time into Silver and aggregated into Gold. Everything runs on this machine on a
/// local-folder lake by default (./lakehouse); point --lake at Azurite or Azure to use those.
#[derive(Debug, Parser)]
#[command(
    name = "boxoffice",
    version,
    propagate_version = true,
    max_term_width = 100,
    after_long_help = help::BOXOFFICE
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Lake and settings")]
pub struct GlobalArgs {
    /// Where the lake lives: a folder (default ./lakehouse), az://<container>/<path> (Azurite
    /// with --emulator, or Azure), or abfss://<container>@<account>.dfs.core.windows.net/<path>.
    /// A {layer} placeholder gives each layer its own container: abfss://{layer}@acct.dfs.core.windows.net/
    #[arg(long, global = true, env = "BOXOFFICE_LAKE", value_name = "PATH|URL")]
    pub lake: Option<String>,

    /// Treat az:// as the Azurite emulator (well-known dev account). Also set by
    /// AZURE_STORAGE_USE_EMULATOR=true.
    #[arg(long, global = true)]
    pub emulator: bool,

    /// Azurite's blob endpoint [default: AZURITE_BLOB_STORAGE_URL, else http://127.0.0.1:10000]
    #[arg(long, global = true, value_name = "URL")]
    pub emulator_endpoint: Option<String>,

    /// Settings file; flags and environment variables override it [default: ./boxoffice.toml if present]
    #[arg(long, global = true, env = "BOXOFFICE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Log more (-v: info, -vv: debug). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole pipeline on this machine until Ctrl-C or --duration: generate bookings and
    /// payments, queue them on 2 partitions per hub as Event Hubs would, land them in Bronze
    /// exactly once, run the jobs every 2 s (batch_load, the bookings_fact join, Gold, and cdc
    /// over a simulated booking service), and serve the dashboard on http://127.0.0.1:8080.
    ///
    /// A live line shows events/s, rows per table, what was quarantined and Gold's freshness.
    /// Stopping lands every event already accepted; a crash loses none (they are replayed).
    #[command(after_long_help = help::UP)]
    Up(UpArgs),

    /// Write generated booking and payment events as NDJSON, one event per line, to stdout or
    /// --output. Paced in real time at --rate (or --speed times faster, or --fast); with --seed
    /// the same bytes every time.
    #[command(after_long_help = help::GENERATE)]
    Generate(GenerateArgs),

    /// Send generated events to a real Event Hub (--to eventhub) over its REST API: a SAS token
    /// signed with the key in a connection string read from an environment variable (inside
    /// Azure, a managed identity's token instead), batches under 1 MB, each order to partition
    /// CRC-32(order_id) mod N of both hubs, 429 and 5xx retried with backoff. Paced like
    /// `generate`; a live line shows events/s, batches and retries.
    #[command(after_long_help = help::PRODUCE)]
    Produce(ProduceArgs),

    /// Land NDJSON events from a file or stdin in Bronze, through the same queue and archiver
    /// as `up` (backfills, other producers' exports, or `boxoffice generate | boxoffice ingest`).
    /// Each line's fields tell booking from payment, or give --hub. Invalid events are
    /// quarantined with their reasons, never dropped. Exit code 0 when every line landed, 3 when
    /// some were quarantined (the valid ones land either way), 1 on an error.
    #[command(after_long_help = help::INGEST)]
    Ingest(IngestArgs),

    /// Show every lake table: location, Delta version, row count, live files, last commit time,
    /// and the Delta protocol (1/2, or 1/4 with the change data feed: what Power BI, Synapse and
    /// Databricks read). A table no job has written yet shows as "not created yet".
    #[command(after_long_help = help::TABLES)]
    Tables(TablesArgs),

    /// Run a lakehouse job once over what is new: `bookings_fact` (Bronze to Silver: the
    /// bookings-payments join), `gold` (Silver to Gold), `cdc` (the booking service's change
    /// feed to Bronze, Silver and Gold) or `batch_load` (landing files to Silver). `up` runs
    /// them every 2 seconds.
    #[command(subcommand, after_long_help = help::JOB)]
    Job(JobCommand),

    /// Query any lake table with SQL, named layer.table (bronze.bookings_raw, silver.bookings_fact,
    /// gold.payment_mix, _system.expectations, ...). `show tables` lists them.
    #[command(after_long_help = help::SQL)]
    Sql(SqlArgs),

    /// The landing area batch_load reads: `batch seed` writes the event catalog there.
    #[command(subcommand, after_long_help = help::BATCH)]
    Batch(BatchCommand),

    /// Change the booking service's table (ops.raw_movie_bookings, change data feed on) that the
    /// `cdc` job reads: apply a SQL script, or simulate the service at work.
    #[command(subcommand, after_long_help = help::CDC)]
    Cdc(CdcCommand),

    /// The Azure Functions custom handler: serve the generate, ingest, archive_bookings,
    /// archive_payments and run_jobs functions to the Functions host (`func start` runs
    /// `boxoffice serve`, see host.json) on 127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT.
    #[command(after_long_help = help::SERVE)]
    Serve(ServeArgs),

    /// The live dashboard over Gold at http://127.0.0.1:8080: key figures, revenue by category,
    /// bookings by hour, payment mix, top events with occupancy, the CDC movie panel, freshness
    /// and job health; filters, CSV per panel, refreshed without reloading. Its JSON API is under
    /// /api (see dashboard/API.md). `up` serves it too.
    #[command(after_long_help = help::DASHBOARD)]
    Dashboard(DashboardArgs),

    /// The job bundle (bundle.yml, in Databricks Asset Bundle terms): validate it, run a job's
    /// tasks in dependency order with retries and timeouts, show the run history, and run the
    /// schedules.
    #[command(subcommand, after_long_help = help::BUNDLE)]
    Bundle(BundleCommand),

    /// Measure throughput and memory on this machine (build with --release first).
    #[command(subcommand, after_long_help = help::BENCH)]
    Bench(BenchCommand),

    /// Share a lake's jobs with any number of other workers, on this machine or others: each
    /// owns a fair share of the join's shards ([jobs] shards; one lease per shard in the lake),
    /// takes over those of a worker that died, and gives some up when workers join. The worker
    /// holding their leases also runs batch_load, Gold, cdc and maintenance. Runs until Ctrl-C,
    /// SIGTERM or --duration (see docs/scale.md).
    #[command(after_long_help = help::WORKER)]
    Worker(WorkerArgs),
}

#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Check bundle.yml for a target: unknown keys, jobs and parameters, missing or cyclic
    /// dependencies, bad cron, unresolved variables. Every problem with its line; exit code 1.
    #[command(after_long_help = help::BUNDLE)]
    Validate(BundleArgs),

    /// Run one job's tasks now: in dependency order, independent ones at once, with their
    /// retries, timeouts and run_if; each attempt is recorded in _system.job_runs. Validates
    /// first: a broken bundle runs nothing.
    #[command(after_long_help = help::BUNDLE)]
    Run(BundleRunArgs),

    /// The latest runs of every job and their tasks, from _system.job_runs.
    #[command(after_long_help = help::BUNDLE)]
    Status(BundleStatusArgs),

    /// Run the schedules until Ctrl-C or SIGTERM: each unpaused job at its cron times in its
    /// timezone, at most max_concurrent_runs at once (a due run beyond that is skipped and
    /// logged). A development target pauses every schedule: use -t with a production target.
    /// Stopping waits for the runs in flight.
    #[command(after_long_help = help::BUNDLE)]
    Schedule(BundleArgs),
}

#[derive(Debug, Args, Clone)]
pub struct BundleArgs {
    /// The manifest
    #[arg(long, default_value = "bundle.yml", value_name = "FILE")]
    pub file: PathBuf,

    /// The target (local, azurite, azure, ...) [default: the one marked default: true]
    #[arg(short = 't', long, value_name = "TARGET")]
    pub target: Option<String>,

    /// Set a variable, overriding BUNDLE_VAR_<name>, the target and the default (repeatable)
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
}

#[derive(Debug, Args)]
pub struct BundleRunArgs {
    /// The job (a key under jobs:)
    pub job: String,

    /// Rebuild instead of resuming: bookings_fact tasks rebuild Silver from all of Bronze (a
    /// full refresh, swapped in table by table), gold tasks rebuild Gold; other tasks run as
    /// usual
    #[arg(long)]
    pub full_refresh: bool,

    #[command(flatten)]
    pub bundle: BundleArgs,
}

#[derive(Debug, Args)]
pub struct BundleStatusArgs {
    /// Runs to show per job
    #[arg(long, default_value_t = 3)]
    pub runs: usize,

    #[command(flatten)]
    pub bundle: BundleArgs,
}

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Run one job once over everything new, then exit. Safe to interrupt or crash at any point:
    /// the next run finishes what was started and no row is written twice.
    #[command(after_long_help = help::job_run())]
    Run(JobRunArgs),
}

/// The jobs `job run` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum JobName {
    /// Bronze to Silver: the bookings-payments join in event time
    #[value(name = "bookings_fact")]
    BookingsFact,
    /// Silver to Gold: what changed in Silver added to the Gold aggregates
    Gold,
    /// ops.raw_movie_bookings' change feed through Bronze, Silver and Gold
    Cdc,
    /// Landing files (event catalog, box-office sales; CSV or Parquet), each version once
    #[value(name = "batch_load")]
    BatchLoad,
}

impl JobName {
    /// The job's name on the command line, which is also the name of its lease.
    pub fn lease(self) -> &'static str {
        match self {
            JobName::BookingsFact => "bookings_fact",
            JobName::Gold => "gold",
            JobName::Cdc => "cdc",
            JobName::BatchLoad => "batch_load",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum BatchCommand {
    /// Write the event catalog (the 100 shows the generator first puts on sale, with venue,
    /// city, capacity and date) to landing/event_catalog/event_catalog.csv, for batch_load.
    #[command(after_long_help = help::BATCH)]
    Seed(BatchSeedArgs),
}

/// `batch seed`.
#[derive(Debug, Default, Args)]
pub struct BatchSeedArgs {
    /// Date the shows as a generator run starting at this time dates them, RFC 3339 (the same
    /// day gives the same dates) [default: now, as `up` starts; `generate --seed` starts at
    /// 2025-01-01T00:00:00Z]
    #[arg(long, value_name = "TIME")]
    pub start: Option<String>,
}

/// Where and how often the dashboard serves; shared by `dashboard` and `up`.
#[derive(Debug, Clone, Args)]
pub struct DashboardOptions {
    /// The dashboard's port on 127.0.0.1 (0: any free port, printed at start)
    #[arg(
        help_heading = "Dashboard",
        long = "dashboard-port",
        value_name = "PORT",
        default_value_t = 8080,
        env = "BOXOFFICE_DASHBOARD_PORT"
    )]
    pub port: u16,

    /// How often the page refreshes its numbers (the server looks for new table versions at
    /// least every 2s)
    #[arg(help_heading = "Dashboard", long = "dashboard-refresh", value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub refresh: Duration,
}

#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// The port on 127.0.0.1 (0: any free port, printed at start)
    #[arg(
        long,
        value_name = "PORT",
        default_value_t = 8080,
        env = "BOXOFFICE_DASHBOARD_PORT"
    )]
    pub port: u16,

    /// How often the page refreshes its numbers, e.g. 1s, 5s (the server looks for new table
    /// versions at least every 2s)
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub refresh: Duration,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Port to listen on (127.0.0.1)
    #[arg(long, env = "FUNCTIONS_CUSTOMHANDLER_PORT", default_value_t = 7071)]
    pub port: u16,

    /// Events per second the generate function produces: each timer tick sends the events of
    /// the seconds since the last one, stamped on the invocation's time
    #[arg(long, env = "BOXOFFICE_GENERATE_RATE", default_value_t = 2.0)]
    pub rate: f64,

    /// The generate timer's interval (its function.json schedule): the first tick on an
    /// instance generates this long, and a tick more than twice this long after the last one
    /// starts a new generator
    #[arg(long, env = "BOXOFFICE_GENERATE_INTERVAL", value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub interval: Duration,

    /// How generate and ingest send to the hubs: rest (the Event Hubs REST API, each order to
    /// partition CRC-32(order_id) mod partitions of both hubs, signed with the key in
    /// EventHubConnection or with a token of the app's managed identity), binding (their Event
    /// Hub output bindings, which cannot choose a partition), or auto: rest when
    /// EventHubConnection is a connection string with a key, or identity-based
    /// (EventHubConnection__fullyQualifiedNamespace) with the identity endpoint of Azure at
    /// hand; else binding
    #[arg(
        long,
        alias = "generate-via",
        env = "BOXOFFICE_SEND_VIA",
        value_enum,
        default_value = "auto"
    )]
    pub send_via: SendVia,

    /// With REST sends: the hubs' partition count [default: read from each hub's description
    /// before its first send, which needs more than Azure Event Hubs Data Sender]
    #[arg(long, env = "EventHubPartitionCount", value_name = "N")]
    pub partitions: Option<u32>,

    /// With REST sends: send to this base URL instead of https://<namespace>
    #[arg(long, env = "BOXOFFICE_EVENTHUB_ENDPOINT", value_name = "URL")]
    pub eventhub_endpoint: Option<String>,

    /// A job bundle for run_jobs: each tick runs the jobs that came due since the last one
    /// [default: run_jobs runs the join, Gold, cdc and batch_load every tick]
    #[arg(long, env = "BOXOFFICE_BUNDLE", value_name = "FILE")]
    pub bundle: Option<PathBuf>,

    /// The bundle's target (its schedules run only in production mode)
    #[arg(long, env = "BUNDLE_TARGET", value_name = "TARGET")]
    pub bundle_target: Option<String>,
}

/// How the `generate` and `ingest` functions send their events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SendVia {
    /// REST when EventHubConnection has a key, or is identity-based inside Azure; else the
    /// bindings
    Auto,
    /// The functions' Event Hub output bindings (Event Hubs picks the partition)
    Binding,
    /// The Event Hubs REST API, co-partitioned by order_id
    Rest,
}

#[derive(Debug, Subcommand)]
pub enum CdcCommand {
    /// Apply a script of SQL statements (INSERT ... VALUES, UPDATE ... SET ... WHERE, DELETE
    /// FROM ... WHERE) to ops.raw_movie_bookings, one Delta commit per statement (or per row
    /// with --per-row), creating the table if needed. --sample replays the Snowflake demo's
    /// sample (the same script as samples/movie_bookings.sql in the repository).
    #[command(after_long_help = help::CDC)]
    Apply(CdcApplyArgs),

    /// Simulate the booking service: every second, --rate changes to ops.raw_movie_bookings
    /// (about half new bookings, the rest completions, cancellations, ticket-count changes and
    /// deletes) in one MERGE, until Ctrl-C or --duration. With --run-cdc the cdc job follows
    /// each second.
    #[command(after_long_help = help::CDC)]
    Simulate(CdcSimulateArgs),
}

#[derive(Debug, Args)]
pub struct CdcSimulateArgs {
    /// Changes per second
    #[arg(long, default_value_t = 20)]
    pub rate: usize,

    /// Stop after this long (e.g. 30s, 5m); default: until Ctrl-C
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Random seed (the same seed on an empty table gives the same changes)
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Run the cdc job after every tick
    #[arg(long)]
    pub run_cdc: bool,
}

#[derive(Debug, Args)]
pub struct CdcApplyArgs {
    /// The script ('-' for stdin); a relative path is read from the current directory
    #[arg(required_unless_present = "sample", conflicts_with = "sample")]
    pub file: Option<PathBuf>,

    /// Apply the Snowflake demo's sample, built in (samples/movie_bookings.sql in the
    /// repository), from any directory
    #[arg(long)]
    pub sample: bool,

    /// One commit per row changed instead of per statement: an INSERT's rows one by one, an
    /// UPDATE or DELETE once per booking_id it matches (the finest grain a change feed has)
    #[arg(long)]
    pub per_row: bool,

    /// Run the cdc job after every commit (to watch a schedule's effect, or to test that none
    /// has one)
    #[arg(long)]
    pub run_cdc: bool,
}

#[derive(Debug, Args)]
pub struct JobRunArgs {
    /// The job
    #[arg(value_enum)]
    pub name: JobName,

    /// bookings_fact: treat the input as complete: the watermark moves past the last event, so
    /// every booking and payment still waiting is resolved (joined, unpaid or orphan)
    #[arg(help_heading = "The join (bookings_fact)", long)]
    pub drain: bool,

    /// gold: rebuild every Gold table from all of Silver instead of adding what changed
    #[arg(help_heading = "Reprocessing", long)]
    pub full: bool,

    /// bookings_fact: the join's clock, overriding [join] mode: event_time (booking_time and
    /// payment_time, the default) or stream_analytics (arrival time, minute boundaries 0..2,
    /// as the demos' Stream Analytics query)
    #[arg(
        help_heading = "The join (bookings_fact)",
        long,
        value_enum,
        value_name = "MODE"
    )]
    pub mode: Option<ModeArg>,

    /// bookings_fact: rebuild its tables and state from all of Bronze beside the live ones,
    /// swap each table in one commit, then rebuild Gold. Readers see the old tables until the
    /// swap; a crash midway is finished by the next run. gold: the same as --full
    #[arg(help_heading = "Reprocessing", long)]
    pub full_refresh: bool,

    /// bookings_fact: join the late events (silver.late_events) whose event time is in
    /// FROM..TO as history, as if they had arrived first, then refresh Gold. Dates
    /// (2025-01-01..2025-01-02, TO exclusive) or RFC 3339 times; either end may be left open;
    /// no range takes every late event
    #[arg(help_heading = "Reprocessing", 
        long,
        value_name = "FROM..TO",
        num_args = 0..=1,
        default_missing_value = ".."
    )]
    pub backfill: Option<String>,

    /// bookings_fact --drain: do not ask before resolving waiting bookings as unpaid
    #[arg(help_heading = "The join (bookings_fact)", long, short = 'y')]
    pub yes: bool,

    /// bookings_fact on a lake whose join is split into shards ([jobs] shards): run only these
    /// shards (numbers from 0, e.g. --shard 0,2), not all of them
    #[arg(
        help_heading = "The join (bookings_fact)",
        long,
        value_name = "K",
        value_delimiter = ','
    )]
    pub shard: Vec<u32>,

    /// When another process runs this job on the lake (`up`, a bundle run), wait for it to
    /// finish instead of refusing
    #[arg(help_heading = "Beside other runs", long)]
    pub wait: bool,
}

/// The join's clock, as a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    #[value(name = "event_time")]
    EventTime,
    #[value(name = "stream_analytics")]
    StreamAnalytics,
}

#[derive(Debug, Args)]
pub struct SqlArgs {
    /// The query, e.g. "select * from gold.payment_mix order by attempts desc"
    pub query: String,

    /// Output format
    #[arg(long, value_enum, default_value = "table")]
    pub format: SqlFormat,
}

/// How `sql` prints rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SqlFormat {
    /// An aligned text table
    Table,
    /// CSV with a header line
    Csv,
    /// One JSON array of objects
    Json,
}

/// How the generator behaves; shared by `up`, `generate` and `bench`.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Generator")]
pub struct GeneratorArgs {
    /// Events per simulated second once steady, duplicates included; payments trail their
    /// bookings by up to minutes, so the first minutes run lower [default: 1000]
    #[arg(long, value_name = "EVENTS_PER_SEC")]
    pub rate: Option<f64>,

    /// Seed for every random choice: the same seed (and --start) gives the same events
    /// [default: random]
    #[arg(long)]
    pub seed: Option<u64>,

    /// Simulated time of the first order, RFC 3339 [default: now; with --seed in `generate`,
    /// 2025-01-01T00:00:00Z so the output is reproducible]
    #[arg(long, value_name = "TIME")]
    pub start: Option<String>,

    /// Compressed time: simulated seconds per real second (3600 = an hour per second)
    /// [default: 1]
    #[arg(long, value_name = "FACTOR")]
    pub speed: Option<f64>,

    /// Do not pace at all: produce as fast as possible.
    #[arg(long)]
    pub fast: bool,

    /// Shows on sale at once (event1 ... eventN at the start; a sold-out show gives way to the
    /// next one of the catalog) [default: 100]
    #[arg(long, value_name = "N")]
    pub catalog_size: Option<usize>,

    /// Share of bookings never paid [default: 0.05]
    #[arg(long, value_name = "SHARE")]
    pub unpaid_share: Option<f64>,

    /// Share of paid bookings whose payment comes after the 2-minute window [default: 0.05]
    #[arg(long, value_name = "SHARE")]
    pub late_payment_share: Option<f64>,

    /// Share of payment attempts that fail (then retried, up to twice) [default: 0.08]
    #[arg(long, value_name = "SHARE")]
    pub failed_share: Option<f64>,

    /// Share of events delivered twice [default: 0.01]
    #[arg(long, value_name = "SHARE")]
    pub duplicate_share: Option<f64>,

    /// Share of events arriving 5-15 minutes late, far out of order [default: 0.01]
    #[arg(long, value_name = "SHARE")]
    pub late_arrival_share: Option<f64>,

    /// Share of events with a corrupted body [default: 0.005]
    #[arg(long, value_name = "SHARE")]
    pub malformed_share: Option<f64>,

    /// Share of orders in the legacy demo shape, v0 [default: 0.05]
    #[arg(long, value_name = "SHARE")]
    pub v0_share: Option<f64>,

    /// Share of orders in schema v2 (the rest are v1) [default: 0.25]
    #[arg(long, value_name = "SHARE")]
    pub v2_share: Option<f64>,
}

/// How events are batched into Bronze; shared by `up`, `ingest` and `bench`.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Landing in Bronze")]
pub struct LandingArgs {
    /// Longest an event waits before its partition's batch is committed, together with what the
    /// hub's other partitions hold [default: 1s; 200ms under `up`'s continuous job cadence]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub flush_interval: Option<Duration>,

    /// Most events per partition's batch [default: 50000]
    #[arg(long, value_name = "N")]
    pub flush_events: Option<usize>,

    /// Folder of the queue's partition logs [default: <lake>/_system/queue for a local lake,
    /// else ./.boxoffice/queue]
    #[arg(long, value_name = "DIR")]
    pub queue_dir: Option<PathBuf>,

    /// fsync the queue log before each batch (survives power loss, not only crashes)
    #[arg(long)]
    pub fsync: bool,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub generator: GeneratorArgs,

    #[command(flatten)]
    pub landing: LandingArgs,

    /// Stop after this long, e.g. 30s, 5m [default: run until Ctrl-C]
    #[arg(help_heading = "Running", long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Stop after this many events [default: no limit]
    #[arg(help_heading = "Running", long, value_name = "N")]
    pub count: Option<u64>,

    /// When the join and the Gold refresh run: `continuous` (each time the landing commits to
    /// Bronze; the flush interval then defaults to 200ms) or every DURATION, e.g. 2s
    /// [default: [jobs] interval, else continuous]
    #[arg(help_heading = "Jobs", long, value_name = "continuous|DURATION", value_parser = crate::config::Cadence::parse)]
    pub job_interval: Option<crate::config::Cadence>,

    /// Only land Bronze; do not run the join and Gold refresh
    #[arg(help_heading = "Jobs", long)]
    pub no_jobs: bool,

    /// How often up compacts today's small files and checkpoints every table while its jobs
    /// run, as the bundle's maintenance does; 0s: never [default: 15s when the jobs run
    /// continuously, else never]
    #[arg(help_heading = "Jobs", long, value_name = "DURATION", value_parser = parse_duration)]
    pub maintenance_every: Option<Duration>,

    /// How often a maintenance turn also deletes the files compaction and Gold replaced (vacuum
    /// in full mode) once they are --vacuum-retention old; 0s: never. Without it a lake that
    /// runs up for a day keeps many times its data in replaced files
    #[arg(help_heading = "Jobs", long, value_name = "DURATION", value_parser = parse_duration, default_value = "5m")]
    pub vacuum_every: Duration,

    /// How old a replaced file must be before up's vacuum deletes it: time travel on the lake
    /// reaches back this far. At least 1m, so that no file a writer has yet to commit is taken
    #[arg(help_heading = "Jobs", long, value_name = "DURATION", value_parser = parse_vacuum_retention, default_value = "1h")]
    pub vacuum_retention: Duration,

    /// Run the jobs in this many `boxoffice worker` processes instead of in up itself, sharing
    /// the join's shards ([jobs] shards) as workers on separate machines would; 0: up runs them
    #[arg(
        help_heading = "Jobs",
        long,
        value_name = "N",
        default_value_t = 0,
        conflicts_with = "no_jobs"
    )]
    pub workers: usize,

    /// Changes per second the simulated booking service makes to ops.raw_movie_bookings, which
    /// the cdc job (run with the others) takes to Bronze, Silver and Gold; 0: no simulator
    #[arg(help_heading = "Jobs", long, value_name = "N", default_value_t = 20)]
    pub cdc_rate: usize,

    /// Also run a job bundle's schedules while up runs (its target must be in production mode;
    /// see `boxoffice bundle schedule`). Validated before anything starts.
    #[arg(help_heading = "Jobs", long, value_name = "FILE")]
    pub bundle: Option<PathBuf>,

    /// The bundle's target [default: the one marked default: true]
    #[arg(
        help_heading = "Jobs",
        long,
        value_name = "TARGET",
        requires = "bundle"
    )]
    pub bundle_target: Option<String>,

    #[command(flatten)]
    pub dashboard: DashboardOptions,

    /// Do not serve the dashboard
    #[arg(help_heading = "Dashboard", long)]
    pub no_dashboard: bool,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// How often it runs its shards and looks at its share [default: [jobs] interval, else 2s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub interval: Option<Duration>,

    /// Stop after this long, e.g. 30s, 5m [default: run until Ctrl-C or SIGTERM]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Its name among the lake's workers, unique among those running [default: <host>-<pid>]
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Run only shards of the join, never batch_load, Gold, cdc or maintenance
    #[arg(long)]
    pub shards_only: bool,

    /// How often the worker that runs the lake jobs compacts and checkpoints every table; 0s:
    /// never (leave it to the bundle's maintenance job)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10m")]
    pub maintenance_every: Duration,

    /// Treat the input as complete: join everything in Bronze to the end (pending bookings
    /// become unpaid, pending payments orphans) and exit once every shard of the lake has been
    /// drained by this worker or another (the worker running the lake jobs last, after Gold)
    #[arg(long)]
    pub drain: bool,

    /// Take no shard until this many workers are live (so that a drain starts with the shares
    /// already balanced instead of the first worker taking every shard)
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub min_workers: usize,

    /// Finish when standard input closes (how `up --workers` stops its workers)
    #[arg(long, hide = true)]
    pub stop_when_stdin_closes: bool,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub generator: GeneratorArgs,

    /// Events to write [default: no limit, until Ctrl-C]
    #[arg(help_heading = "Output", long, short = 'n', value_name = "N")]
    pub count: Option<u64>,

    /// File to write [default: stdout]
    #[arg(help_heading = "Output", long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Where to send: eventhub (the namespace in the connection string)
    #[arg(long, value_enum)]
    pub to: ProduceTarget,

    /// The environment variable holding the namespace's connection string
    /// (Endpoint=sb://<ns>.servicebus.windows.net/;SharedAccessKeyName=...;SharedAccessKey=...);
    /// the same setting name the Functions app uses. Its value is never printed. Inside Azure
    /// (where IDENTITY_ENDPOINT is set), <ENV_VAR>__fullyQualifiedNamespace with
    /// <ENV_VAR>__credential=managedidentity sends with the managed identity instead
    #[arg(long, default_value = "EventHubConnection", value_name = "ENV_VAR")]
    pub connection_setting: String,

    /// The Event Hub bookings go to
    #[arg(long, default_value = "bookings", value_name = "NAME")]
    pub bookings_hub: String,

    /// The Event Hub payments go to
    #[arg(long, default_value = "payments", value_name = "NAME")]
    pub payments_hub: String,

    /// Send to this base URL instead of https://<namespace> (a proxy or a test server); the
    /// token still names the namespace
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,

    /// Events to send [default: no limit, until Ctrl-C or --duration]
    #[arg(long, short = 'n', value_name = "N")]
    pub count: Option<u64>,

    /// Stop after this long (e.g. 30s, 5m)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// The most bytes in one batch request (Event Hubs Standard takes 1 MB)
    #[arg(long, default_value_t = 1_000_000, value_name = "BYTES")]
    pub max_batch_bytes: usize,

    /// The longest an event waits for its batch to fill
    #[arg(long, default_value = "200ms", value_name = "DURATION", value_parser = parse_duration)]
    pub linger: Duration,

    /// Attempts per batch before giving up (429, 5xx and network errors are retried with
    /// exponential backoff, or after the hub's Retry-After)
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub max_attempts: u32,

    /// The hubs' partition count: each order goes to partition CRC-32(order_id) mod N of both
    /// hubs, by id (see docs/functions.md) [default: read from each hub's description, which a
    /// Send-only policy may not be allowed to read]
    #[arg(
        long,
        env = "EventHubPartitionCount",
        value_name = "N",
        conflicts_with = "by_key"
    )]
    pub partitions: Option<u32>,

    /// Send with partition key order_id and let Event Hubs pick the partition (consistent within
    /// a hub, but not the same index on both hubs)
    #[arg(long)]
    pub by_key: bool,

    #[command(flatten)]
    pub generator: GeneratorArgs,
}

/// Where `produce` sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProduceTarget {
    /// Azure Event Hubs, over the REST API
    Eventhub,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// NDJSON file to land; - or nothing reads stdin
    #[arg(value_name = "FILE|-", default_value = "-")]
    pub input: String,

    /// Send every event to this hub instead of telling it by its fields (bookings or payments);
    /// events whose fields tell neither go to bookings unless this is given
    #[arg(help_heading = "Input", long, value_parser = parse_hub)]
    pub hub: Option<Hub>,

    /// When `up` or another `ingest` is landing into the lake, wait for it to stop instead of
    /// refusing
    #[arg(help_heading = "Beside other runs", long)]
    pub wait: bool,

    #[command(flatten)]
    pub landing: LandingArgs,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("change").multiple(true)))]
pub struct TablesArgs {
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,

    /// Set the tables' Delta log retention (`delta.logRetentionDuration`), e.g. 30m or 7d: how
    /// far back time travel reaches, and how many log entries each snapshot update lists on a
    /// local lake. Maintenance removes older entries at its next checkpoint step. Stop every
    /// writer first: the change is a metadata commit, which fails their prepared commits
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, group = "change")]
    pub set_log_retention: Option<Duration>,

    /// Set how long the tables' Delta checkpoints keep tombstones of replaced files
    /// (`delta.deletedFileRetentionDuration`), e.g. 5m, what tables are made with now: tables
    /// made by an earlier boxoffice keep Delta's 7 days or an hour, and on a lake that runs `up`
    /// every checkpoint then carries that long's tombstones. Vacuum still keeps the files
    /// themselves for its own retention. Stop every writer first, as for --set-log-retention
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, group = "change")]
    pub set_tombstone_retention: Option<Duration>,

    /// Record file statistics (min/max per file) only for the columns boxoffice declares for
    /// each table, from the next file written on (`delta.dataSkippingStatsColumns`). Tables
    /// made by an earlier boxoffice record every column's, which every commit and every refresh
    /// of a table held open parses again for every live file. Stop every writer first,
    /// as for --set-log-retention
    #[arg(long, group = "change")]
    pub set_stats_columns: bool,

    /// With --set-log-retention, --set-tombstone-retention or --set-stats-columns: only this
    /// table (layer.table, e.g. bronze.bookings_raw); repeat it for more. Without it, every
    /// table that exists
    #[arg(long = "table", value_name = "LAYER.TABLE", requires = "change")]
    pub tables: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Generator events/s, then end-to-end Bronze landing events/s (generator -> queue ->
    /// archiver -> Delta) over --events, with peak memory. Uses a temporary local lake unless
    /// --lake is given.
    #[command(after_long_help = help::BENCH)]
    Ingest(BenchIngestArgs),

    /// The join and Gold: lands --bookings generated orders (and their payments) in a scratch
    /// lake, then times the bookings_fact job over all of it, a full Gold build, and an
    /// incremental Gold refresh after --new more events; with peak memory.
    #[command(after_long_help = help::BENCH)]
    Jobs(BenchJobsArgs),

    /// The join shared by `boxoffice worker` processes: lands --events generated events once,
    /// then for each --workers count drains a fresh copy of that Bronze with that many
    /// `worker --drain` processes; CPU-seconds per million events (against the first count's),
    /// commits and commit retries, events/s, events/s per core, a check that Silver's row counts
    /// match the first run's, and a projection to 64 partitions. See docs/scale.md.
    #[command(after_long_help = help::BENCH_SCALE)]
    Scale(BenchScaleArgs),

    /// batch_load: a --rows box-office sales CSV (one row per seat) in a scratch lake's landing
    /// area, loaded into silver.bookings_fact; rows/s and peak memory.
    #[command(after_long_help = help::BENCH)]
    Batch(BenchBatchArgs),

    /// The cdc job: --changes simulated changes to ops.raw_movie_bookings in a scratch lake
    /// (commits of 100,000), then one cdc run over all of them; rows/s and peak memory. With
    /// --turns, `up`'s cadence instead: many small turns, and what each costs as the tables grow.
    #[command(after_long_help = help::BENCH)]
    Cdc(BenchCdcArgs),

    /// The Functions custom handler as the host calls it, on a loopback port: the archive
    /// trigger's batches (every partition at once; archived events/s, and Delta commits and
    /// files per 100,000 events with the default batch size and with host.json's), then
    /// `ingest` driven by --connections concurrent clients posting --batch events per request;
    /// events/s and latency percentiles, with peak memory.
    #[command(after_long_help = help::BENCH)]
    Functions(BenchFunctionsArgs),

    /// The dashboard's JSON API over Gold built from a large Silver (10M fact rows by default;
    /// give --lake to build it once and reuse it): every panel under a rotation of filters and
    /// CSV, over keep-alive connections; latency percentiles, overall and per panel.
    #[command(after_long_help = help::BENCH)]
    Dashboard(BenchDashboardArgs),

    /// Concurrent commits to one table: for each --writers count and --policy, that many writer
    /// processes append small batches (each with its own application transaction) as fast as
    /// they can for --duration; batches/s, commits/s, versions lost to other writers per commit,
    /// backoff rounds, failed appends and latency, then a check that every batch landed once.
    /// Uses a temporary local lake unless --lake is given (a scratch location: each count
    /// writes its own table under it).
    #[command(after_long_help = help::BENCH_COMMITS)]
    Commits(BenchCommitsArgs),

    /// One writer of `bench commits` (started by it; not for direct use).
    #[command(hide = true)]
    CommitWriter(BenchCommitWriterArgs),
}

#[derive(Debug, Args)]
pub struct BenchCommitsArgs {
    /// Concurrent writer processes, one run per count
    #[arg(long, value_delimiter = ',', default_values_t = [1, 4, 16, 32])]
    pub writers: Vec<usize>,

    /// How long each run writes
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Rows per batch
    #[arg(long, default_value_t = 10)]
    pub rows: usize,

    /// How batches are committed: `grouped` (staged, then many writers' batches in one commit
    /// by one committer at a time), `held` (each its own commit: delta-rs's retries, then
    /// jittered backoff rounds) or `delta` (each its own commit, delta-rs's retries alone);
    /// several separated by commas
    #[arg(long, value_delimiter = ',', default_value = "grouped,held")]
    pub policy: Vec<CommitPolicyName>,

    /// delta-rs's back-to-back retries per round
    #[arg(long, default_value_t = 15)]
    pub delta_retries: usize,

    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

/// How `bench commits` writers commit their batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CommitPolicyName {
    /// Staged, then committed with other writers' batches by one committer at a time.
    Grouped,
    /// delta-rs's retries, then jittered exponential backoff rounds (boxoffice's commits).
    Held,
    /// delta-rs's retries alone.
    Delta,
}

#[derive(Debug, Args)]
pub struct BenchCommitWriterArgs {
    /// This writer's number: its application transaction is `bench:<writer>`
    #[arg(long)]
    pub writer: u32,

    /// How long to write after the start signal
    #[arg(long, value_parser = parse_duration)]
    pub duration: Duration,

    /// Rows per batch
    #[arg(long)]
    pub rows: usize,

    /// How batches are committed
    #[arg(long)]
    pub policy: CommitPolicyName,

    /// delta-rs's back-to-back retries per round
    #[arg(long)]
    pub delta_retries: usize,
}

#[derive(Debug, Args)]
pub struct BenchDashboardArgs {
    /// Rows silver.bookings_fact must hold before Gold is built (a --lake that holds them
    /// already is reused as it is)
    #[arg(long, default_value_t = 10_000_000)]
    pub silver_rows: u64,

    /// API requests to time
    #[arg(long, default_value_t = 20_000)]
    pub requests: usize,

    /// Requests in flight at once (keep-alive connections)
    #[arg(long, default_value_t = 4)]
    pub connections: usize,

    /// Generator seed
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BenchFunctionsArgs {
    /// Events to post in all
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,

    /// Events per request
    #[arg(long, default_value_t = 100)]
    pub batch: usize,

    /// Requests in flight at once (keep-alive connections)
    #[arg(long, default_value_t = 16)]
    pub connections: usize,

    /// Events for the archive half: archived through the handler in the host's default
    /// batches (100) and in host.json's, with commits and files per 100,000 (0: skip it)
    #[arg(long, default_value_t = 100_000)]
    pub archive_events: u64,

    /// The host.json whose maxEventBatchSize the archive half uses [default: the shipped one]
    #[arg(long, value_name = "FILE")]
    pub host_json: Option<String>,
}

#[derive(Debug, Args)]
pub struct BenchBatchArgs {
    /// Seat rows in the CSV
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: usize,
}

#[derive(Debug, Args)]
pub struct BenchCdcArgs {
    /// Changes to simulate
    #[arg(long, default_value_t = 1_000_000)]
    pub changes: usize,

    /// Run `up`'s cadence instead: this many turns, each --per-turn changes by the booking
    /// service then a cdc run, the flow's tables compacted and checkpointed every
    /// --maintain-every turns; prints what a turn costs as the tables grow
    #[arg(long)]
    pub turns: Option<usize>,

    /// With --turns: changes per turn (`up`'s default: 20 a second, a turn every 2 s)
    #[arg(long, default_value_t = 40)]
    pub per_turn: usize,

    /// With --turns: compact and checkpoint every this many turns (`up`: every 15 s)
    #[arg(long, default_value_t = 7)]
    pub maintain_every: usize,

    /// With --turns: print a line every this many turns
    #[arg(long, default_value_t = 100)]
    pub report_every: usize,
}

#[derive(Debug, Args)]
pub struct BenchJobsArgs {
    /// Orders to generate (each a booking, most with a payment; failed attempts add retries)
    #[arg(long, default_value_t = 1_000_000)]
    pub bookings: u64,

    /// Events landed after the first Gold build, for the incremental refresh
    #[arg(long, default_value_t = 10_000)]
    pub new: u64,

    /// Generator seed
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BenchScaleArgs {
    /// Events to generate and land (bookings and payments)
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,

    /// Worker process counts to run, in order; the first is the baseline
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    pub workers: Vec<usize>,

    /// Partitions per hub of the generated Bronze
    #[arg(long, default_value_t = 8)]
    pub partitions: u32,

    /// Shards of the join (a divisor of --partitions) [default: --partitions]
    #[arg(long)]
    pub shards: Option<u32>,

    /// Most events a shard joins per batch, so per commit ([jobs] max_events) [default: 500000]
    #[arg(long, value_name = "N")]
    pub max_events: Option<usize>,

    /// Events/s each partition receives, for the projection and the sizing
    #[arg(long, value_name = "N", default_value_t = 1000.0)]
    pub rate_per_partition: f64,

    /// Give up on a run whose workers have not all exited after this long
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "30m")]
    pub timeout: Duration,

    /// Generator seed
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Also write the tables as Markdown to this file
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,

    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BenchIngestArgs {
    /// Events to generate and land
    #[arg(help_heading = "Benchmark", long, default_value_t = 1_000_000)]
    pub events: u64,

    /// Generator seed
    #[arg(help_heading = "Benchmark", long, default_value_t = 42)]
    pub seed: u64,

    #[command(flatten)]
    pub landing: LandingArgs,

    /// Print JSON instead of a table
    #[arg(help_heading = "Benchmark", long)]
    pub json: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 500ms, 30s, 5m, 1h)"))
}

/// A vacuum retention: a duration of at least a minute. Vacuum in full mode deletes any file the
/// table does not use once it is that old, and files being written are younger than that.
fn parse_vacuum_retention(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_secs(60) {
        return Err(format!(
            "{s} is under a minute: vacuum would take files writers have not committed yet (1m, 1h, 7d)"
        ));
    }
    Ok(d)
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("'{s}' is not NAME=VALUE"))
}

fn parse_hub(s: &str) -> Result<Hub, String> {
    s.parse::<Hub>().map_err(|e| e.to_string())
}
