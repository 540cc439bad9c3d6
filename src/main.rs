//! The `boxoffice` command: see `boxoffice --help`.

mod cli;
mod commands;
mod config;
#[cfg(test)]
mod docs_tests;
mod help;
mod leases;
mod membership;
mod pacing;
mod progress;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command};

/// mimalloc: glibc malloc spent a quarter of the generator's and archiver's time on allocation
/// churn (see docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.global.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<commands::Exit>() {
            Some(exit) => {
                eprintln!("{}", exit.message);
                std::process::ExitCode::from(exit.code)
            }
            None => {
                eprintln!("error: {}", error_text(&e));
                std::process::ExitCode::FAILURE
            }
        },
    }
}

/// The error and its causes on one line, each cause once: many errors already quote their cause
/// (delta-rs's do, several levels deep), and `{:#}` would repeat it after them.
fn error_text(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let global = &cli.global;
    match cli.command {
        Command::Up(args) => commands::up::run(global, args).await,
        Command::Generate(args) => commands::generate::run(global, args).await,
        Command::Produce(args) => commands::produce::run(global, args).await,
        Command::Ingest(args) => commands::ingest::run(global, args).await,
        Command::Tables(args) => commands::tables::run(global, args).await,
        Command::Job(command) => commands::job::run(global, command).await,
        Command::Sql(args) => commands::sql::run(global, args).await,
        Command::Cdc(command) => commands::cdc::run(global, command).await,
        Command::Batch(command) => commands::batch::run(global, command).await,
        Command::Serve(args) => commands::serve::run(global, args).await,
        Command::Dashboard(args) => commands::dashboard::run(global, args).await,
        Command::Bench(command) => commands::bench::run(global, command).await,
        Command::Bundle(command) => commands::bundle::run(global, command).await,
        Command::Worker(args) => commands::worker::run(global, args).await,
    }
}

/// Warnings by default (progress lines are the normal output); -v and -vv add our own detail.
fn init_logging(verbose: u8) {
    let ours = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    // delta-rs warns on every concurrent append it resolves (our partitions share tables, so
    // that is routine) and on every MERGE about a metric it derives itself: not warnings.
    let default = format!(
        "warn,deltalake_core::kernel::transaction=error,deltalake_core::operations::merge=error,boxoffice={ours},boxoffice_ingest={ours},boxoffice_lake={ours},boxoffice_jobs={ours}"
    );
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
