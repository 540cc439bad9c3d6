//! `boxoffice serve`: the Functions custom handler on 127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use boxoffice_events::{Generator, GeneratorConfig, Shares};
use boxoffice_functions::{Handler, router};
use tokio::sync::Mutex;

use crate::cli::{GlobalArgs, ServeArgs};
use crate::config;

pub async fn run(global: &GlobalArgs, args: ServeArgs) -> anyhow::Result<()> {
    let file = config::load(global)?;
    let lake = config::lake(global, &file)?;
    lake.prepare().await?;
    // The functions send what Event Hubs will take: no deliberately malformed events (the
    // output binding would refuse them before Bronze could quarantine them).
    let generator = Generator::new(GeneratorConfig {
        seed: chrono::Utc::now().timestamp_micros().unsigned_abs(),
        start: chrono::Utc::now(),
        shares: Shares {
            malformed: 0.0,
            ..Shares::default()
        },
        ..GeneratorConfig::default()
    })?;
    let handler = Arc::new(Handler {
        lake,
        generator: Mutex::new(generator),
        per_tick: args.per_tick,
        archivers: Mutex::new(HashMap::new()),
    });
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
