//! `run_jobs`: a timer (every minute) that runs the lakehouse jobs once over what is new: the
//! bookings-payments join, the Gold refresh, the CDC flow and batch loading. Each job resumes
//! where it stopped, so a missed or overlapping tick loses and repeats nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use boxoffice_jobs::expectations::Expectations;
use boxoffice_jobs::silver::bookings_fact::{self, BookingsFact, Settings};
use boxoffice_jobs::silver::tables::BOOKINGS_FACT;

use crate::Handler;
use crate::protocol::{Failed, Invocation, Reply};

/// `POST /run_jobs`.
pub async fn invoke(
    State(handler): State<Arc<Handler>>,
    Json(_timer): Json<Invocation>,
) -> Result<Reply, Failed> {
    let failed = |e: &dyn std::fmt::Display| Failed(e.to_string());
    let settings = Settings::default();
    let declared = [(
        &BOOKINGS_FACT,
        bookings_fact::declared_expectations(&settings.join),
    )];
    let expectations =
        Expectations::compile(&declared, &BTreeMap::new()).map_err(|e| failed(&e))?;
    let (mut job, _) = BookingsFact::open(&handler.lake, settings, expectations)
        .await
        .map_err(|e| failed(&e))?;
    let batches = job.run(false).await.map_err(|e| failed(&e))?;
    let gold = boxoffice_jobs::gold::refresh(&handler.lake, false)
        .await
        .map_err(|e| failed(&e))?;
    let cdc = boxoffice_jobs::cdc::run(&handler.lake)
        .await
        .map_err(|e| failed(&e))?;
    let files = boxoffice_jobs::batch::run(&handler.lake)
        .await
        .map_err(|e| failed(&e))?;
    Ok(Reply::logged(format!(
        "run_jobs: bookings_fact {} batches ({} events), gold {} tables, cdc {} changes, batch_load {} files",
        batches.len(),
        batches.iter().map(|b| b.events).sum::<u64>(),
        gold.len(),
        cdc.changes,
        files.len()
    )))
}
