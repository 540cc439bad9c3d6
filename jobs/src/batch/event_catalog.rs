//! `silver/event_catalog`: shows upserted from catalog files (`landing/event_catalog/*.csv` or
//! `.parquet`), keyed by event_id; a later file's row for a show replaces the earlier one.
//! The repository ships the catalog the generator sells from (`data/event_catalog.csv`: its
//! first 100 shows as on sale from 2025-01-01, the start of seeded `generate` runs);
//! `boxoffice batch seed` writes it to the landing area, dated from another day if asked.

use std::collections::BTreeMap;

use boxoffice_events::generator::catalog::{Catalog, standard_on_sale};
use chrono::{DateTime, Utc};
use deltalake::DeltaTable;
use deltalake::datafusion::prelude::SessionContext;
use serde_json::json;

use super::landing::{Record, Records};
use super::tables::EVENT_CATALOG;
use super::{Refused, rows_from_json};
use crate::JobError;
use crate::silver::derive::event_category;

/// The shipped catalog (the generator's first 100 shows, on sale from 2025-01-01).
pub const SHIPPED: &str = include_str!("../../../data/event_catalog.csv");

/// Shows in the shipped catalog: the generator's default number on sale at once.
pub const SHIPPED_SHOWS: usize = 100;

/// The generator's first `size` shows as CSV, dated as a run starting at `on_sale` dates them
/// (the same day gives the same dates): what `data/event_catalog.csv` holds for 100 shows from
/// 2025-01-01.
pub fn catalog_csv(size: usize, on_sale: DateTime<Utc>) -> String {
    let mut out = csv::Writer::from_writer(Vec::new());
    let header = [
        "event_id",
        "event_name",
        "event_category",
        "venue",
        "city",
        "capacity",
        "starts_at",
    ];
    let mut rows = vec![header.map(str::to_string).to_vec()];
    for s in Catalog::on_sale_from(size, on_sale).shows() {
        rows.push(vec![
            s.event_id.clone(),
            s.event_name.clone(),
            event_category(&s.event_name).to_string(),
            s.venue.clone(),
            s.city.clone(),
            s.capacity.to_string(),
            s.starts_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        ]);
    }
    for row in rows {
        // Writing to memory cannot fail.
        let _ = out.write_record(&row);
    }
    String::from_utf8(out.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// The shipped catalog's dates: the day seeded `generate` runs start.
pub fn shipped_on_sale() -> DateTime<Utc> {
    standard_on_sale()
}

/// Parses an RFC 3339 time with its zone (a time without one is refused, as for events).
pub fn utc_time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text.trim())
        .or_else(|_| DateTime::parse_from_str(text.trim(), "%Y-%m-%d %H:%M:%S%#z"))
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            format!("{text:?} is not a time with a zone (RFC 3339, e.g. 2025-03-01T19:30:00Z)")
        })
}

/// One show, checked.
fn show(records: &Records, r: &Record) -> Result<serde_json::Value, String> {
    let get = |c: &str| records.get(r, c);
    let mut reasons = Vec::new();
    let event_id = get("event_id").unwrap_or_default();
    if event_id.is_empty() {
        reasons.push("event_id is missing".to_string());
    }
    let name = get("event_name");
    if name.is_none() {
        reasons.push("event_name is missing".to_string());
    }
    let capacity = match get("capacity").map(str::parse::<i32>) {
        None => None,
        Some(Ok(c)) if c > 0 => Some(c),
        Some(_) => {
            reasons.push(format!(
                "capacity {:?} is not a positive whole number",
                get("capacity").unwrap_or_default()
            ));
            None
        }
    };
    let starts_at = match get("starts_at").map(utc_time) {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => {
            reasons.push(format!("starts_at {e}"));
            None
        }
    };
    if !reasons.is_empty() {
        return Err(reasons.join("; "));
    }
    let category = get("event_category")
        .map(str::to_string)
        .unwrap_or_else(|| event_category(name.unwrap_or_default()).to_string());
    Ok(json!({
        "event_id": event_id,
        "event_name": name,
        "event_category": category,
        "venue": get("venue"),
        "city": get("city"),
        "capacity": capacity,
        "starts_at": starts_at.map(|t| t.to_rfc3339()),
    }))
}

/// Upserts a catalog file's valid rows; returns rows loaded and rows refused.
pub async fn load(
    table: DeltaTable,
    records: &Records,
    updated_at: DateTime<Utc>,
    commit: Option<deltalake::kernel::transaction::CommitProperties>,
) -> Result<(DeltaTable, u64, Vec<Refused>), JobError> {
    let mut refused = Vec::new();
    let mut shows: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for r in &records.rows {
        match show(records, r) {
            Ok(mut row) => {
                row["updated_at"] = json!(updated_at.to_rfc3339());
                let id = row["event_id"].as_str().unwrap_or_default().to_string();
                shows.insert(id, row); // the file's last row for a show wins
            }
            Err(reason) => refused.push(Refused::row(records, r, reason)),
        }
    }
    let loaded = shows.len() as u64;
    let Some(properties) = commit.filter(|_| loaded > 0) else {
        return Ok((table, loaded, refused)); // nothing to write, or written before a crash
    };
    let batches = rows_from_json(&EVENT_CATALOG, shows.into_values())?;
    let ctx = SessionContext::new();
    let source = ctx
        .read_batches(batches)
        .map_err(|e| super::batch_error(&EVENT_CATALOG, e))?;
    let columns: Vec<String> = EVENT_CATALOG
        .arrow_schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let (table, _) = table
        .merge(source, "target.event_id = source.event_id")
        .with_source_alias("source")
        .with_target_alias("target")
        .with_commit_properties(properties)
        .when_matched_update(|u| {
            columns
                .iter()
                .fold(u, |u, c| u.update(c.as_str(), format!("source.{c}")))
        })
        .and_then(|m| {
            m.when_not_matched_insert(|i| {
                columns
                    .iter()
                    .fold(i, |i, c| i.set(c.as_str(), format!("source.{c}")))
            })
        })
        .map_err(|e| super::batch_error(&EVENT_CATALOG, e))?
        .await
        .map_err(|e| super::batch_error(&EVENT_CATALOG, e))?;
    Ok((table, loaded, refused))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_shipped_catalog_is_the_one_the_generator_sells_from() {
        // BOXOFFICE_BLESS=1 rewrites data/event_catalog.csv after a change of the generator.
        if std::env::var_os("BOXOFFICE_BLESS").is_some() {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/event_catalog.csv");
            let csv = super::catalog_csv(super::SHIPPED_SHOWS, super::shipped_on_sale());
            std::fs::write(path, csv).expect("write the catalog");
            return;
        }
        assert_eq!(
            super::SHIPPED,
            super::catalog_csv(super::SHIPPED_SHOWS, super::shipped_on_sale())
        );
    }
}
