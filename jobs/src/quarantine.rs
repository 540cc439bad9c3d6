//! Refused rows into `bronze/quarantine`, once: a job that crashes after quarantining and runs
//! again must not quarantine the same rows twice.

use std::collections::HashMap;

use boxoffice_ingest::bronze::{QUARANTINE, QuarantineRow, quarantine_batch};
use boxoffice_lake::{Lake, PartitionRows, append_once};
use serde_json::json;

use crate::JobError;

/// Appends `rows` unless the commit for (`app_id`, `version`) is already in the table.
pub(crate) async fn quarantine_once(
    lake: &Lake,
    rows: &[QuarantineRow],
    app_id: &str,
    version: i64,
    operation: &str,
) -> Result<(), JobError> {
    if rows.is_empty() {
        return Ok(());
    }
    let batch = quarantine_batch(rows).map_err(|source| JobError::Arrow {
        table: QUARANTINE.qualified_name(),
        source,
    })?;
    let mut table = lake.ensure_table(&QUARANTINE).await?;
    append_once(
        &mut table,
        vec![PartitionRows::unsplit(batch)],
        app_id,
        version,
        HashMap::from([("operation".to_string(), json!(operation))]),
        QUARANTINE.writer_properties(),
    )
    .await
    .map_err(|e| JobError::Commit {
        table: QUARANTINE.qualified_name(),
        source: Box::new(e),
    })?;
    Ok(())
}
