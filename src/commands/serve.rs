//! `boxoffice serve`: the Functions custom handler on 127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use boxoffice_events::Hub;
use boxoffice_events::{Generator, GeneratorConfig, Shares};
use boxoffice_functions::generate::DirectSend;
use boxoffice_functions::{Handler, router};
use boxoffice_ingest::eventhub::batch::DEFAULT_LIMIT;
use boxoffice_ingest::eventhub::{ConnectionString, RetryPolicy, Sender};
use boxoffice_lake::Lake;
use tokio::sync::Mutex;

use boxoffice_functions::run_jobs::BundleJobs;

use super::bundle_tasks::LakeTasks;
use crate::cli::{BundleArgs, GenerateVia, GlobalArgs, ServeArgs};
use crate::config;

pub async fn run(global: &GlobalArgs, args: ServeArgs) -> anyhow::Result<()> {
    let file_config = config::load(global)?;
    let lake = config::lake(global, &file_config)?;
    lake.prepare().await?;
    let direct = match args.generate_via {
        GenerateVia::Binding => None,
        GenerateVia::Rest => Some(direct_send(args.eventhub_endpoint.as_deref())?),
    };
    let bundle = match &args.bundle {
        Some(file) => {
            let bundle = super::bundle::load(&BundleArgs {
                file: file.clone(),
                target: args.bundle_target.clone(),
                vars: Vec::new(),
            })?;
            Some(BundleJobs {
                bundle,
                executor: Arc::new(LakeTasks {
                    lake: lake.clone(),
                    file: Arc::new(file_config),
                    full_refresh: false,
                }),
            })
        }
        None => None,
    };
    let handler = handler(lake, args.per_tick, direct, bundle)?;
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

/// The handler state `serve` (and `bench functions`) serve, on a prepared lake.
pub fn handler(
    lake: Lake,
    per_tick: usize,
    direct: Option<DirectSend>,
    bundle: Option<BundleJobs>,
) -> anyhow::Result<Arc<Handler>> {
    // The functions send what Event Hubs will take: no deliberately malformed events (the
    // output binding would refuse them before Bronze could quarantine them). Several instances
    // may start at once: each takes a fresh random seed, so their order ids and event ids differ.
    let generator = Generator::new(GeneratorConfig {
        seed: boxoffice_events::generator::run::fresh_seed(),
        start: chrono::Utc::now(),
        shares: Shares {
            malformed: 0.0,
            ..Shares::default()
        },
        ..GeneratorConfig::default()
    })?;
    Ok(Arc::new(Handler {
        lake,
        generator: Mutex::new(generator),
        per_tick,
        archivers: Mutex::new(HashMap::new()),
        direct,
        bundle,
    }))
}

/// REST senders for both hubs, signed with the key in `EventHubConnection` (the setting the
/// function.json bindings name), checked before the first tick needs them.
fn direct_send(endpoint: Option<&str>) -> anyhow::Result<DirectSend> {
    let connection = ConnectionString::from_env("EventHubConnection")
        .context("--generate-via rest signs with the key in EventHubConnection")?;
    let mut senders = HashMap::new();
    for hub in Hub::ALL {
        let sender = Sender::new(&connection, hub.as_str(), endpoint, RetryPolicy::default())?;
        senders.insert(hub, sender);
    }
    Ok(DirectSend {
        senders: Mutex::new(senders),
        max_batch_bytes: DEFAULT_LIMIT,
    })
}
