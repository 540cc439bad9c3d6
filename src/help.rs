//! The end of each command's `--help`: two or three examples and where to read more. Kept apart
//! from the flags in `cli.rs` so both stay readable; a test parses every example line with the
//! real command line, so an example cannot name a flag that no longer exists.

/// `boxoffice --help`.
pub const BOXOFFICE: &str = "\
Examples:
  boxoffice up                                   # the pipeline and dashboard until Ctrl-C
  boxoffice tables                               # every table: version, rows, files, location
  boxoffice sql \"select * from gold.payment_mix\"

Start with README.md; the design, every table and the operations guide are in docs/.";

/// `boxoffice up --help`.
pub const UP: &str = "\
Examples:
  boxoffice up --duration 5m                     # five minutes, then land what is queued and stop
  boxoffice up --rate 5000 --speed 60            # 5,000 events/s, an hour of bookings per minute
  boxoffice up --job-interval 10s                # the join and Gold on a 10 s timer

Restarts and leases: docs/operations.md. When the jobs run, Gold's freshness, its cost: docs/continuous.md.";

/// `boxoffice generate --help`.
pub const GENERATE: &str = "\
Examples:
  boxoffice generate --seed 7 --count 100000 --fast -o day.ndjson   # the same file every time
  boxoffice generate --rate 200 | boxoffice ingest                  # a live stream through a pipe
  boxoffice generate --count 1000 --fast --malformed-share 0        # no corrupted bodies

What the generator makes (keys, seats, prices, messy delivery): docs/generator.md.";

/// `boxoffice produce --help`.
pub const PRODUCE: &str = "\
Examples:
  boxoffice produce --to eventhub --rate 500 --duration 10m
  boxoffice produce --to eventhub --count 100000 --fast --seed 7
  boxoffice produce --to eventhub --connection-setting MY_HUB_CONNECTION --count 10

The connection string comes from the environment (EventHubConnection by default): see docs/azure.md.";

/// `boxoffice ingest --help`.
pub const INGEST: &str = "\
Examples:
  boxoffice ingest day.ndjson                    # exit code 3 when some lines were quarantined
  boxoffice ingest --hub payments payments.ndjson
  boxoffice generate --rate 200 | boxoffice ingest

History older than the join's watermark: docs/operations.md (backfill). Event shapes: docs/events.md.";

/// `boxoffice tables --help`.
pub const TABLES: &str = "\
Examples:
  boxoffice tables
  boxoffice tables --lake az://lake/dev --emulator --json
  boxoffice tables --set-stats-columns --set-tombstone-retention 5m --set-log-retention 30m

Every table's columns, meaning and file statistics: docs/tables.md. Small files and compaction:
docs/maintenance.md. Log and tombstone retention on a lake that runs `up` for hours:
docs/continuous.md. Stop `up` and every other writer before changing a table.";

/// `boxoffice job --help`.
pub const JOB: &str = "\
Examples:
  boxoffice job run bookings_fact                # join what is new in Bronze into Silver
  boxoffice job run gold                         # fold the new Silver rows into Gold

See `boxoffice job run --help` for each job's tables, and docs/semantics.md.";

/// `boxoffice job run --help`, before the generated list of each job's tables.
pub const JOB_RUN: &str = "\
Examples:
  boxoffice job run bookings_fact --drain --yes  # join everything landed, resolve what waits
  boxoffice job run bookings_fact --backfill 2025-01-01..2025-01-02
  boxoffice job run gold --full                  # rebuild Gold from all of Silver

Full refresh, backfill and drain: docs/operations.md. The join and Gold: docs/semantics.md.";

/// `boxoffice sql --help`.
pub const SQL: &str = "\
Examples:
  boxoffice sql \"show tables\"
  boxoffice sql \"select * from gold.payment_mix order by attempts desc\"
  boxoffice sql --format csv \"select * from silver.unpaid_bookings\" > unpaid.csv

Tables are named layer.table (bronze, silver, gold, ops, _system): docs/tables.md.";

/// `boxoffice batch --help` and `batch seed --help`.
pub const BATCH: &str = "\
Examples:
  boxoffice batch seed && boxoffice job run batch_load && boxoffice job run gold
  boxoffice batch seed --start 2025-01-01T00:00:00Z

Landing files, their columns and what batch_load does with them: docs/semantics.md (batch).";

/// `boxoffice cdc --help` and its subcommands.
pub const CDC: &str = "\
Examples:
  boxoffice cdc apply --sample --run-cdc         # the Snowflake demo's sample, end to end
  boxoffice cdc apply changes.sql --per-row      # one commit per row changed
  boxoffice cdc simulate --rate 50 --duration 1m --run-cdc

How the change feed flows to Silver and Gold: docs/semantics.md (CDC).";

/// `boxoffice serve --help`.
pub const SERVE: &str = "\
Examples:
  func start                                     # host.json starts `boxoffice serve` for you
  boxoffice serve --port 7071                    # the handler alone, for a test client
  BOXOFFICE_BUNDLE=bundle.yml boxoffice serve   # run_jobs follows the job bundle

The contract with the Functions host: docs/functions.md. Deployment: docs/azure.md.";

/// `boxoffice dashboard --help`.
pub const DASHBOARD: &str = "\
Examples:
  boxoffice dashboard                            # http://127.0.0.1:8080, over ./lakehouse
  boxoffice dashboard --port 8081 --refresh 2s
  boxoffice dashboard --lake az://lake/dev --emulator

The page: docs/dashboard.md. The JSON API: dashboard/API.md.";

/// `boxoffice bundle --help` and its subcommands.
pub const BUNDLE: &str = "\
Examples:
  boxoffice bundle validate -t azure --var storage_account=mylake
  boxoffice bundle run medallion                 # now, whatever the schedule
  boxoffice bundle status --runs 5

bundle.yml, targets, variables and schedules: docs/bundle.md. Maintenance: docs/maintenance.md.";

/// `boxoffice bench --help` and its subcommands.
pub const BENCH: &str = "\
Examples (build with --release first: cargo build --release):
  boxoffice bench ingest --events 1000000
  boxoffice bench jobs --bookings 1000000
  boxoffice bench cdc --turns 600        # 20 minutes of up's cdc turns, back to back

The figures measured so far and how: docs/performance.md.";

/// `boxoffice bench scale --help`: its figures live with the workers' docs.
pub const BENCH_SCALE: &str = "\
Examples (build with --release first: cargo build --release):
  boxoffice bench scale --workers 1,2,4 --partitions 16
  boxoffice bench scale --events 200000 --max-events 5000

What it measures, the projection's formulas and the figures so far: docs/scale.md (Performance).";

/// `boxoffice job run --help`: each job's tables, then the examples; the tables come from the one list of which
/// command writes which table.
pub fn job_run() -> String {
    format!(
        "{}\n\n{JOB_RUN}",
        crate::commands::table_writers::job_tables_help()
    )
}

/// `boxoffice worker --help`.
pub const WORKER: &str = "\
Examples:
  boxoffice worker --lake ./lakehouse                 # one of several, each in its own terminal
  boxoffice worker --lake az://lake/dev --emulator --shards-only   # only join shards here
  boxoffice up --workers 4                            # up with its jobs in 4 worker processes

Shards, leases, rebalancing, draining a complete input (--drain) and what a changed split needs:
docs/scale.md.";

/// `boxoffice bench commits --help`.
pub const BENCH_COMMITS: &str = "\
Examples:
  boxoffice bench commits --writers 1,4,16,32 --duration 20s     # every policy, local folder
  boxoffice bench commits --policy grouped --writers 16 --lake az://bench/commits --emulator

The commit rule, the grouped protocol and the figures measured: docs/commits.md.";
