//! `boxoffice batch seed`: the shipped event catalog, dropped in the landing area.

use boxoffice_jobs::batch::event_catalog::SHIPPED;
use boxoffice_lake::Layer;
use bytes::Bytes;

use crate::cli::{BatchCommand, GlobalArgs};
use crate::config;

pub async fn run(global: &GlobalArgs, command: BatchCommand) -> anyhow::Result<()> {
    let BatchCommand::Seed = command;
    let file = config::load(global)?;
    let lake = config::lake(global, &file)?;
    lake.prepare().await?;
    let landing = lake.files(Layer::Landing, "event_catalog")?;
    landing
        .put("event_catalog.csv", Bytes::from_static(SHIPPED.as_bytes()))
        .await?;
    eprintln!(
        "copied the event catalog ({} shows) to landing/event_catalog/event_catalog.csv; `boxoffice job run batch_load` loads it",
        SHIPPED.lines().count().saturating_sub(1)
    );
    Ok(())
}
