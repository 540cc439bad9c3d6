//! The `batch_load` job: files dropped in the landing area, each version taken exactly once.
//!
//! - `landing/event_catalog/*.csv|.parquet` upsert [`tables::EVENT_CATALOG`]
//!   ([`event_catalog`]), taken before sales so a sale can name a show from the same run.
//! - `landing/box_office_sales/*.csv|.parquet` MERGE into `silver/bookings_fact` with source
//!   `batch` ([`box_office_sales`]).
//!
//! A file version is its path, size, modification time and ETag: the same file twice is taken
//! once, a changed one again (its rows replace those of the earlier version). Each load has a
//! number; its plan is written create-only before it starts, each output commit records
//! `batch_load:<table>` = that number, and the ledger `_system/batch_files` gets the file last,
//! so after a crash the planned load is finished and nothing lands twice. Rows that fail their
//! checks go to `bronze/quarantine` with the file and line; a file that cannot be read at all
//! gets one quarantine row saying why; the rest of the data still loads.

pub mod box_office_sales;
pub mod event_catalog;
pub mod landing;
pub mod tables;

use std::collections::{HashMap, HashSet};

use boxoffice_ingest::bronze::{QUARANTINE, QuarantineRow};
use boxoffice_lake::{
    FileMeta, Lake, Layer, PartitionRows, TableDef, append_once, committed_version,
};
use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use deltalake::DeltaTable;
use deltalake::arrow::array::{AsArray, RecordBatch};
use deltalake::arrow::datatypes::{Int64Type, TimestampMicrosecondType};
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::JobError;
use crate::silver::tables::BOOKINGS_FACT;
use landing::{Record, Records};
use tables::{BATCH_FILES, EVENT_CATALOG};

/// The job's name: in plans and app ids.
pub const JOB: &str = "batch_load";

/// Folders of the landing area the job reads, in the order it takes them.
pub const KINDS: [&str; 2] = ["event_catalog", "box_office_sales"];

/// A landing file version to load, as planned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The load's number, from 1.
    pub load: i64,
    /// Path under the landing area.
    pub path: String,
    /// `event_catalog` or `box_office_sales`.
    pub kind: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, microseconds.
    pub modified: i64,
    /// ETag.
    pub etag: Option<String>,
}

fn identity(path: &str, size: u64, modified: i64, etag: Option<&str>) -> String {
    format!("{path}|{size}|{modified}|{}", etag.unwrap_or_default())
}

/// What loading one file did.
#[derive(Debug, Clone, PartialEq)]
pub struct FileReport {
    /// Path under the landing area.
    pub path: String,
    /// Rows loaded.
    pub loaded: u64,
    /// Rows quarantined.
    pub quarantined: u64,
    /// Why the whole file was refused, if it was.
    pub refused: Option<String>,
    /// Whether it was a load planned before a crash, finished now.
    pub replayed: bool,
}

/// A row refused, with where it was.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    /// Line (CSV) or row (Parquet) number; 0 for the whole file.
    pub line: u64,
    /// Why.
    pub reason: String,
    /// The row, as JSON.
    pub body: String,
}

impl Refused {
    /// A refused row of `records`.
    pub fn row(records: &Records, r: &Record, reason: String) -> Refused {
        Refused {
            line: r.line,
            reason,
            body: records.show(r),
        }
    }
}

pub(crate) fn batch_error(def: &TableDef, e: impl std::fmt::Display) -> JobError {
    JobError::Batch(format!("{}: {e}", def.qualified_name()))
}

/// Rows for `def` from JSON objects (times as RFC 3339 text, dates as YYYY-MM-DD), decoded
/// 8,192 at a time so a million-row file never holds a million JSON objects at once.
pub(crate) fn rows_from_json(
    def: &TableDef,
    rows: impl Iterator<Item = serde_json::Value>,
) -> Result<Vec<RecordBatch>, JobError> {
    const CHUNK: usize = 8_192;
    let mut decoder = deltalake::arrow::json::ReaderBuilder::new(def.arrow_schema())
        .with_batch_size(CHUNK)
        .build_decoder()
        .map_err(|e| batch_error(def, e))?;
    let mut batches = Vec::new();
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut rows = rows.peekable();
    while rows.peek().is_some() {
        chunk.clear();
        chunk.extend(rows.by_ref().take(CHUNK));
        decoder.serialize(&chunk).map_err(|e| batch_error(def, e))?;
        batches.extend(decoder.flush().map_err(|e| batch_error(def, e))?);
    }
    if batches.is_empty() {
        return Err(batch_error(def, "no rows"));
    }
    Ok(batches)
}

fn properties(def: &TableDef, load: i64) -> CommitProperties {
    boxoffice_lake::commit_properties()
        .with_application_transaction(Transaction::new(
            format!("{JOB}:{}", def.qualified_name()),
            load,
        ))
        .with_metadata(HashMap::from([
            ("operation".to_string(), json!(JOB)),
            ("load".to_string(), json!(load)),
        ]))
}

/// Whether `def` already holds load `load` (a replay after a crash).
async fn holds(table: &mut DeltaTable, def: &TableDef, load: i64) -> Result<bool, JobError> {
    Ok(
        committed_version(table, &format!("{JOB}:{}", def.qualified_name()))
            .await
            .map_err(|e| batch_error(def, e))?
            .is_some_and(|v| v >= load),
    )
}

/// Takes every landing file version not taken yet (and finishes a load a crash interrupted).
pub async fn run(lake: &Lake) -> Result<Vec<FileReport>, JobError> {
    let plans = lake.files(Layer::System, &format!("jobs/{JOB}"))?;
    let (taken, mut last) = ledger(lake).await?;
    let mut reports = Vec::new();
    for name in plans.list("plans/").await? {
        let Some(bytes) = plans.get(&name).await? else {
            continue;
        };
        let plan: Plan = serde_json::from_slice(&bytes)
            .map_err(|e| JobError::Batch(format!("plan {name}: {e}")))?;
        if plan.load > last {
            tracing::info!(path = %plan.path, load = plan.load, "finishing a load planned before the last stop");
            let mut report = load(lake, &plan).await?;
            report.replayed = true;
            reports.push(report);
            last = plan.load;
        }
        plans.delete(&name).await?;
    }
    let (taken, _) = if reports.is_empty() {
        (taken, last)
    } else {
        ledger(lake).await?
    };
    let mut files: Vec<(usize, FileMeta)> = Vec::new();
    for (kind, folder) in KINDS.iter().enumerate() {
        for mut meta in lake.files(Layer::Landing, folder)?.list_meta("").await? {
            meta.name = format!("{folder}/{}", meta.name);
            files.push((kind, meta));
        }
    }
    for (kind, meta) in files {
        let modified = meta.modified.timestamp_micros();
        if taken.contains(&identity(
            &meta.name,
            meta.size,
            modified,
            meta.etag.as_deref(),
        )) {
            continue;
        }
        last += 1;
        let plan = Plan {
            load: last,
            path: meta.name.clone(),
            kind: KINDS[kind].to_string(),
            size: meta.size,
            modified,
            etag: meta.etag.clone(),
        };
        let name = format!("plans/{:020}.json", plan.load);
        let text = serde_json::to_vec(&plan).map_err(|e| JobError::Batch(e.to_string()))?;
        if !plans.put_new(&name, Bytes::from(text)).await? {
            return Err(JobError::Concurrent {
                job: JOB,
                shard: String::new(),
                batch: plan.load as u64,
            });
        }
        reports.push(load(lake, &plan).await?);
        plans.delete(&name).await?;
    }
    Ok(reports)
}

/// The file versions taken so far, and the last load number.
async fn ledger(lake: &Lake) -> Result<(HashSet<String>, i64), JobError> {
    let Some(table) = lake.open_table(&BATCH_FILES).await? else {
        return Ok((HashSet::new(), 0));
    };
    let mut taken = HashSet::new();
    let mut last = 0;
    for b in boxoffice_lake::read_rows(&table)
        .await
        .map_err(|e| batch_error(&BATCH_FILES, e))?
    {
        let text = |c: &str| {
            b.column_by_name(c).map(|a| {
                deltalake::arrow::compute::cast(a, &deltalake::arrow::datatypes::DataType::Utf8)
            })
        };
        let (Some(Ok(paths)), Some(Ok(etags))) = (text("path"), text("etag")) else {
            return Err(batch_error(&BATCH_FILES, "unexpected columns"));
        };
        let (paths, etags) = (paths.as_string::<i32>(), etags.as_string::<i32>());
        let sizes = b
            .column_by_name("size")
            .and_then(|c| c.as_primitive_opt::<Int64Type>());
        let modified = b
            .column_by_name("modified")
            .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>());
        let loads = b
            .column_by_name("load")
            .and_then(|c| c.as_primitive_opt::<Int64Type>());
        let (Some(sizes), Some(modified), Some(loads)) = (sizes, modified, loads) else {
            return Err(batch_error(&BATCH_FILES, "unexpected column types"));
        };
        for i in 0..b.num_rows() {
            use deltalake::arrow::array::Array;
            let etag = etags.is_valid(i).then(|| etags.value(i));
            taken.insert(identity(
                paths.value(i),
                sizes.value(i) as u64,
                modified.value(i),
                etag,
            ));
            last = last.max(loads.value(i));
        }
    }
    Ok((taken, last))
}

/// The catalog's shows, for sales to name.
async fn catalog(lake: &Lake) -> Result<HashMap<String, box_office_sales::Show>, JobError> {
    let Some(table) = lake.open_table(&EVENT_CATALOG).await? else {
        return Ok(HashMap::new());
    };
    let mut shows = HashMap::new();
    for b in boxoffice_lake::read_rows(&table)
        .await
        .map_err(|e| batch_error(&EVENT_CATALOG, e))?
    {
        let text = |c: &str| {
            b.column_by_name(c)
                .map(|a| {
                    deltalake::arrow::compute::cast(a, &deltalake::arrow::datatypes::DataType::Utf8)
                })
                .transpose()
                .map_err(|e| batch_error(&EVENT_CATALOG, e))?
                .ok_or_else(|| batch_error(&EVENT_CATALOG, format!("no {c} column")))
        };
        let (ids, names, venues, cities) = (
            text("event_id")?,
            text("event_name")?,
            text("venue")?,
            text("city")?,
        );
        let (ids, names, venues, cities) = (
            ids.as_string::<i32>(),
            names.as_string::<i32>(),
            venues.as_string::<i32>(),
            cities.as_string::<i32>(),
        );
        for i in 0..b.num_rows() {
            use deltalake::arrow::array::Array;
            let opt = |a: &deltalake::arrow::array::StringArray| {
                a.is_valid(i).then(|| a.value(i).to_string())
            };
            let city = opt(cities);
            let location = match (opt(venues), &city) {
                (Some(v), Some(c)) => Some(format!("{v}, {c}")),
                (v, c) => v.or(c.clone()),
            };
            shows.insert(
                ids.value(i).to_string(),
                box_office_sales::Show {
                    name: opt(names).unwrap_or_default(),
                    location,
                    city,
                },
            );
        }
    }
    Ok(shows)
}

/// Loads one planned file version: its rows, its quarantine, then its ledger row.
async fn load(lake: &Lake, plan: &Plan) -> Result<FileReport, JobError> {
    let landing = lake.files(Layer::Landing, &plan.kind)?;
    let name = plan
        .path
        .strip_prefix(&format!("{}/", plan.kind))
        .unwrap_or(&plan.path);
    let modified = Utc
        .timestamp_micros(plan.modified)
        .single()
        .unwrap_or_else(Utc::now);
    let mut report = FileReport {
        path: plan.path.clone(),
        loaded: 0,
        quarantined: 0,
        refused: None,
        replayed: false,
    };
    let records = match landing.get(name).await? {
        Some(bytes) => landing::read(&plan.path, bytes),
        None => Err("the file vanished before it was read".to_string()),
    };
    let mut refused = Vec::new();
    match records {
        Err(reason) => {
            report.refused = Some(reason.clone());
            refused.push(Refused {
                line: 0,
                reason,
                body: String::new(),
            });
        }
        Ok(records) => {
            refused.extend(records.unreadable.iter().map(|(line, reason)| Refused {
                line: *line,
                reason: format!("line {reason}"),
                body: String::new(),
            }));
            let target = if plan.kind == KINDS[0] {
                &EVENT_CATALOG
            } else {
                &BOOKINGS_FACT
            };
            crate::crash_point(&format!(
                "{JOB}:before:{}:{}",
                target.qualified_name(),
                plan.load
            ));
            // A load finished before a crash is validated again (for its quarantine and ledger
            // rows) but not committed again.
            let (def, loaded, rows_refused) = if plan.kind == KINDS[0] {
                let mut table = lake.ensure_table(&EVENT_CATALOG).await?;
                let commit = (!holds(&mut table, &EVENT_CATALOG, plan.load).await?)
                    .then(|| properties(&EVENT_CATALOG, plan.load));
                let (_, n, r) = event_catalog::load(table, &records, modified, commit).await?;
                (&EVENT_CATALOG, n, r)
            } else {
                let shows = catalog(lake).await?;
                let mut table = lake.ensure_table(&BOOKINGS_FACT).await?;
                let commit = (!holds(&mut table, &BOOKINGS_FACT, plan.load).await?)
                    .then(|| properties(&BOOKINGS_FACT, plan.load));
                let (_, n, r) =
                    box_office_sales::load(table, &records, &shows, Utc::now(), commit).await?;
                (&BOOKINGS_FACT, n, r)
            };
            tracing::info!(path = %plan.path, table = %def.qualified_name(), loaded, "loaded");
            report.loaded = loaded;
            refused.extend(rows_refused);
        }
    }
    report.quarantined = refused.len() as u64;
    crate::crash_point(&format!(
        "{JOB}:before:{}:{}",
        QUARANTINE.qualified_name(),
        plan.load
    ));
    quarantine(lake, plan, &refused, modified).await?;
    crate::crash_point(&format!(
        "{JOB}:before:{}:{}",
        BATCH_FILES.qualified_name(),
        plan.load
    ));
    record(lake, plan, &report).await?;
    crate::crash_point(&format!("{JOB}:after-commits:{}", plan.load));
    Ok(report)
}

async fn quarantine(
    lake: &Lake,
    plan: &Plan,
    refused: &[Refused],
    at: DateTime<Utc>,
) -> Result<(), JobError> {
    if refused.is_empty() {
        return Ok(());
    }
    let rows: Vec<QuarantineRow> = refused
        .iter()
        .map(|r| QuarantineRow {
            received_at: at,
            source: "batch".to_string(),
            hub: None,
            reason: if r.line == 0 {
                format!("{}: {}", plan.path, r.reason)
            } else {
                format!(
                    "{} line {}: {}",
                    plan.path,
                    r.line,
                    r.reason.trim_start_matches("line ")
                )
            },
            body: r.body.clone(),
            stage: JOB.to_string(),
            partition_id: None,
            sequence_number: Some(r.line as i64),
            event_uid: None,
            source_file: Some(plan.path.clone()),
            line: (r.line > 0).then_some(r.line as i64),
        })
        .collect();
    crate::quarantine::quarantine_once(
        lake,
        &rows,
        &format!("{JOB}:{}", QUARANTINE.qualified_name()),
        plan.load,
        JOB,
    )
    .await
}

async fn record(lake: &Lake, plan: &Plan, report: &FileReport) -> Result<(), JobError> {
    let row = json!({
        "path": plan.path,
        "kind": plan.kind,
        "size": plan.size,
        "modified": Utc.timestamp_micros(plan.modified).single().unwrap_or_else(Utc::now).to_rfc3339(),
        "etag": plan.etag,
        "load": plan.load,
        "rows_loaded": report.loaded,
        "rows_quarantined": report.quarantined,
        "loaded_at": Utc::now().to_rfc3339(),
    });
    let batches = rows_from_json(&BATCH_FILES, std::iter::once(row))?;
    let mut table = lake.ensure_table(&BATCH_FILES).await?;
    append_once(
        &mut table,
        batches.into_iter().map(PartitionRows::unsplit).collect(),
        &format!("{JOB}:{}", BATCH_FILES.qualified_name()),
        plan.load,
        HashMap::from([("operation".to_string(), json!(JOB))]),
        BATCH_FILES.writer_properties(),
    )
    .await
    .map_err(|e| JobError::Commit {
        table: BATCH_FILES.qualified_name(),
        source: Box::new(e),
    })?;
    Ok(())
}

#[cfg(test)]
mod tests;
