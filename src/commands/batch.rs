//! `boxoffice batch seed`: the generator's event catalog, dropped in the landing area.

use anyhow::Context;
use boxoffice_jobs::batch::event_catalog::{SHIPPED_SHOWS, catalog_csv};
use boxoffice_lake::Layer;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::cli::{BatchCommand, GlobalArgs};
use crate::config;

pub async fn run(global: &GlobalArgs, command: BatchCommand) -> anyhow::Result<()> {
    let BatchCommand::Seed(args) = command;
    // Shows are dated days to weeks after the day a run starts: the catalog is dated for the
    // run it describes, so its dates come after that run's bookings.
    let start = match &args.start {
        Some(s) => DateTime::parse_from_rfc3339(s)
            .with_context(|| {
                format!("--start {s:?} is not an RFC 3339 time such as 2025-01-01T00:00:00Z")
            })?
            .with_timezone(&Utc),
        None => Utc::now(),
    };
    let file = config::load(global)?;
    let lake = config::lake(global, &file)?;
    lake.prepare().await?;
    let landing = lake.files(Layer::Landing, "event_catalog")?;
    landing
        .put(
            "event_catalog.csv",
            Bytes::from(catalog_csv(SHIPPED_SHOWS, start)),
        )
        .await?;
    eprintln!(
        "wrote the event catalog ({SHIPPED_SHOWS} shows, dated for a generator run starting {}) to landing/event_catalog/event_catalog.csv; `boxoffice job run batch_load` loads it",
        start.format("%Y-%m-%d")
    );
    Ok(())
}
