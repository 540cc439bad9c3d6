//! Table maintenance: compaction of the small files frequent appends leave, vacuum of files no
//! snapshot within the retention still needs, and checkpoints so readers replay less log.
//!
//! Compaction touches only partitioned tables (Bronze by ingest_date, Silver by booking or
//! payment date), and of those only the partitions before a date: appends there are blind, so
//! a writer appending while a compaction commits loses nothing, and neither fails. The
//! unpartitioned tables are MERGE targets (Silver CDC, Gold): compacting them under a running
//! MERGE would fail the MERGE, so the bundle runs their maintenance in the same job as their
//! writers instead (serialised by the scheduler).

use std::num::NonZeroU64;

use boxoffice_lake::{Lake, TableDef};
use chrono::NaiveDate;
use deltalake::{FilterOp, FilterValue};

use crate::JobError;

/// What a maintenance step did to one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableMaintenance {
    /// `layer.table`.
    pub table: String,
    /// Live data files before and after the step.
    pub files_before: u64,
    pub files_after: u64,
    /// Files vacuum deleted from storage.
    pub files_deleted: u64,
    /// Rows in the table's current snapshot, unchanged by every step.
    pub rows: u64,
}

/// Compacts each partitioned table's partitions before `before` into files of about
/// `target_bytes`. Tables that do not exist yet are skipped.
pub async fn compact(
    lake: &Lake,
    tables: &[&TableDef],
    before: NaiveDate,
    target_bytes: u64,
) -> Result<Vec<TableMaintenance>, JobError> {
    let mut out = Vec::new();
    let before_text = before.format("%Y-%m-%d").to_string();
    let target = NonZeroU64::new(target_bytes.max(1)).unwrap_or(NonZeroU64::MIN);
    for def in tables.iter().filter(|d| d.partition_columns.len() == 1) {
        let Some(table) = lake.open_table(def).await? else {
            continue;
        };
        let (files_before, rows) = counts(&table);
        let filters = [(
            def.partition_columns[0],
            FilterOp::Lt,
            FilterValue::Scalar(before_text.as_str()),
        )];
        let (table, _metrics) = table
            .optimize()
            .with_filters(&filters)
            .with_target_size(target)
            .await
            .map_err(|e| maintenance_error(def, "compacting", e))?;
        let (files_after, _) = counts(&table);
        out.push(TableMaintenance {
            table: def.qualified_name(),
            files_before,
            files_after,
            files_deleted: 0,
            rows,
        });
    }
    Ok(out)
}

/// Deletes files that no snapshot newer than `retention` refers to.
pub async fn vacuum(
    lake: &Lake,
    tables: &[&TableDef],
    retention: chrono::Duration,
) -> Result<Vec<TableMaintenance>, JobError> {
    let mut out = Vec::new();
    for def in tables {
        let Some(table) = lake.open_table(def).await? else {
            continue;
        };
        let (files, rows) = counts(&table);
        let (_, metrics) = table
            .vacuum()
            .with_retention_period(retention)
            // Delta's 7-day floor protects readers of old snapshots; a shorter retention is the
            // user's explicit choice in bundle.yml.
            .with_enforce_retention_duration(false)
            .await
            .map_err(|e| maintenance_error(def, "vacuuming", e))?;
        out.push(TableMaintenance {
            table: def.qualified_name(),
            files_before: files,
            files_after: files,
            files_deleted: metrics.files_deleted.len() as u64,
            rows,
        });
    }
    Ok(out)
}

/// Writes a checkpoint of each table's current version.
pub async fn checkpoint(
    lake: &Lake,
    tables: &[&TableDef],
) -> Result<Vec<TableMaintenance>, JobError> {
    let mut out = Vec::new();
    for def in tables {
        let Some(table) = lake.open_table(def).await? else {
            continue;
        };
        let (files, rows) = counts(&table);
        deltalake::protocol::checkpoints::create_checkpoint(&table, None)
            .await
            .map_err(|e| maintenance_error(def, "checkpointing", e))?;
        out.push(TableMaintenance {
            table: def.qualified_name(),
            files_before: files,
            files_after: files,
            files_deleted: 0,
            rows,
        });
    }
    Ok(out)
}

/// Live files and rows (from file statistics) of the loaded snapshot.
fn counts(table: &deltalake::DeltaTable) -> (u64, u64) {
    match table.snapshot() {
        Ok(snapshot) => {
            let (mut files, mut rows) = (0, 0);
            for file in snapshot.log_data().iter() {
                files += 1;
                rows += file
                    .stats()
                    .and_then(|s| {
                        serde_json::from_str::<serde_json::Value>(&s)
                            .ok()?
                            .get("numRecords")?
                            .as_u64()
                    })
                    .unwrap_or(0);
            }
            (files, rows)
        }
        Err(_) => (0, 0),
    }
}

fn maintenance_error(def: &TableDef, what: &str, e: deltalake::DeltaTableError) -> JobError {
    JobError::Maintenance(format!("{what} {}: {e}", def.qualified_name()))
}
