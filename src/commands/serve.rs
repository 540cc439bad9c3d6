//! `boxoffice serve`: the Functions custom handler on 127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT.

use std::sync::Arc;

use anyhow::Context;
use boxoffice_events::Hub;
use boxoffice_functions::archive::Archivers;
use boxoffice_functions::generate::Generating;
use boxoffice_functions::quarantine::QuarantineWriter;
use boxoffice_functions::send::DirectSend;
use boxoffice_functions::{Handler, router};
use boxoffice_ingest::eventhub::batch::DEFAULT_LIMIT;
use boxoffice_ingest::eventhub::{Connection, RetryPolicy, Sender};
use boxoffice_lake::Lake;

use boxoffice_functions::run_jobs::JobRunner;

use super::bundle_tasks::LakeTasks;
use crate::cli::{BundleArgs, GlobalArgs, SendVia, ServeArgs};
use crate::config;

/// How `generate` draws its events: its rate and the timer's interval.
#[derive(Debug, Clone, Copy)]
pub struct GenerateSettings {
    pub rate: f64,
    pub interval: std::time::Duration,
}

pub async fn run(global: &GlobalArgs, args: ServeArgs) -> anyhow::Result<()> {
    let file_config = config::load(global)?;
    let lake = config::lake(global, &file_config)?;
    lake.prepare().await?;
    let direct = match args.send_via {
        SendVia::Binding => Err("BOXOFFICE_SEND_VIA=binding".to_string()),
        SendVia::Rest => Ok(
            direct_send(args.eventhub_endpoint.as_deref(), args.partitions).context(
                "--send-via rest needs EventHubConnection: a connection string with a key, or \
                 identity-based settings (EventHubConnection__fullyQualifiedNamespace) inside Azure",
            )?,
        ),
        // Bindings only when REST cannot work here (the emulator, no connection, an identity
        // outside Azure): they cannot choose a partition.
        SendVia::Auto => direct_send(args.eventhub_endpoint.as_deref(), args.partitions)
            .map_err(|e| e.to_string()),
    };
    let direct = match direct {
        Ok((direct, principal)) => {
            eprintln!(
                "boxoffice serve: generate and ingest send over REST as {principal}, each order to \
                 partition CRC-32(order_id) mod P of both hubs, P = {}",
                args.partitions.map_or_else(
                    || "each hub's partition count, read from its description before its first \
                        send (an identity with only Azure Event Hubs Data Sender may not read it: \
                        set EventHubPartitionCount)"
                        .to_string(),
                    |p| p.to_string()
                )
            );
            Some(direct)
        }
        Err(reason) => {
            eprintln!(
                "boxoffice serve: generate and ingest send through their Event Hub output bindings \
                 (Event Hubs picks the partitions: the hubs are NOT co-partitioned), because {reason}"
            );
            None
        }
    };
    let bundle = match &args.bundle {
        Some(file) => Some(super::bundle::load(&BundleArgs {
            file: file.clone(),
            target: args.bundle_target.clone(),
            vars: Vec::new(),
        })?),
        None => None,
    };
    // Every job run_jobs starts holds its lease, as `job run` and bundle tasks do.
    let jobs = JobRunner {
        executor: Arc::new(LakeTasks {
            lake: lake.clone(),
            file: Arc::new(file_config),
            full_refresh: false,
        }),
        bundle,
    };
    let generate = GenerateSettings {
        rate: args.rate,
        interval: args.interval,
    };
    let handler = handler(lake, generate, direct, Some(jobs))?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .with_context(|| format!("listening on 127.0.0.1:{}", args.port))?;
    eprintln!(
        "boxoffice serve: the Functions custom handler on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, router(handler))
        .with_graceful_shutdown(super::shutdown_signal())
        .await
        .context("serving")?;
    Ok(())
}

/// The handler state `serve` (and `bench functions`) serve, on a prepared lake; inside a Tokio
/// runtime (the quarantine writer is a task).
pub fn handler(
    lake: Lake,
    generate: GenerateSettings,
    direct: Option<DirectSend>,
    jobs: Option<JobRunner>,
) -> anyhow::Result<Arc<Handler>> {
    let interval = chrono::Duration::from_std(generate.interval)
        .context("the generate interval is too long")?;
    let generating = Generating::new(generate.rate, interval).map_err(anyhow::Error::msg)?;
    Ok(Arc::new(Handler {
        quarantine: QuarantineWriter::start(lake.clone()),
        lake,
        generating,
        archivers: Archivers::default(),
        direct,
        jobs,
    }))
}

/// REST senders for both hubs over the `EventHubConnection` connection (the one the
/// function.json bindings name), and who they send as. Fails when REST cannot work: no
/// connection, the emulator (no REST API), or an identity-based connection outside Azure (no
/// identity endpoint).
fn direct_send(
    endpoint: Option<&str>,
    partitions: Option<u32>,
) -> anyhow::Result<(DirectSend, String)> {
    let connection = Connection::from_env("EventHubConnection")?;
    let mut senders = Vec::new();
    for hub in Hub::ALL {
        let sender = Sender::new(&connection, hub.as_str(), endpoint, RetryPolicy::default())?;
        senders.push((hub, sender));
    }
    Ok((
        DirectSend::new(senders, partitions, DEFAULT_LIMIT),
        connection.principal(),
    ))
}
