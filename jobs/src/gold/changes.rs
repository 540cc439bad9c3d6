//! What changed in a Silver table since a version: the files its commits added.
//!
//! Silver tables are append-only, so the commits after a version list exactly the rows Gold has
//! not seen. A commit that removed data (a delete), a compaction of files added since that
//! version, or a log entry that is gone (log retention) makes that impossible to know: the
//! refresh then rebuilds the table in full.

use deltalake::DeltaTable;
use object_store::ObjectStoreExt;
use object_store::path::Path;

use crate::JobError;

/// The files added after a version, or why they cannot be known.
#[derive(Debug, Clone, PartialEq)]
pub enum Changes {
    /// Paths (relative to the table, as the log spells them) of the files added.
    Added(Vec<String>),
    /// The table must be read whole: the reason.
    Rewritten(String),
}

/// The files `table` gained in the commits `after+1 ..= through`.
pub async fn added_since(
    table: &DeltaTable,
    after: Option<i64>,
    through: i64,
) -> Result<Changes, JobError> {
    let store = table.object_store();
    let mut added = Vec::new();
    let first = after.map_or(0, |v| v + 1);
    for version in first..=through {
        let path = Path::from(format!("_delta_log/{version:020}.json"));
        let bytes = match store.get(&path).await {
            Ok(found) => found
                .bytes()
                .await
                .map_err(|e| JobError::Gold(format!("reading {path}: {e}")))?,
            Err(object_store::Error::NotFound { .. }) => {
                return Ok(Changes::Rewritten(format!(
                    "commit {version} is no longer in the log"
                )));
            }
            Err(e) => return Err(JobError::Gold(format!("reading {path}: {e}"))),
        };
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let action: serde_json::Value = serde_json::from_slice(line)
                .map_err(|e| JobError::Gold(format!("{path} is not a Delta log entry: {e}")))?;
            // A compaction re-adds rows it removed, both with dataChange false: not new.
            if let Some(path) = action["add"]["path"].as_str()
                && action["add"]["dataChange"].as_bool() != Some(false)
            {
                added.push(path.to_string());
            }
            if action["remove"]["dataChange"].as_bool() == Some(true) {
                return Ok(Changes::Rewritten(format!(
                    "commit {version} removed rows (not an append)"
                )));
            }
            // A compaction of files added in this range: their rows now live in files whose
            // other rows were there before, so the new rows cannot be read apart.
            if let Some(path) = action["remove"]["path"].as_str()
                && added.iter().any(|a| a == path)
            {
                return Ok(Changes::Rewritten(format!(
                    "commit {version} compacted files added since the last refresh"
                )));
            }
        }
    }
    Ok(Changes::Added(added))
}
