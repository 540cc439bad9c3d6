//! A table's Delta log retention (`delta.logRetentionDuration`): how far back time travel
//! reaches, and how many log entries a table keeps. Every commit is an entry, so a table taking
//! commits every second keeps millions over the default 30 days, and on a local lake every
//! snapshot update lists them all (docs/continuous.md). Table maintenance removes the entries
//! older than the retention at its checkpoint step.

use std::collections::HashMap;
use std::time::Duration;

use crate::LakeError;
use crate::table::{TableDef, commit_properties};
use crate::target::Lake;

/// The Delta table property that holds the retention.
pub const LOG_RETENTION: &str = "delta.logRetentionDuration";

/// What [`Lake::set_log_retention`] did to a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetentionChange {
    /// The table has not been created yet.
    Missing,
    /// It already had this retention.
    Unchanged(String),
    /// The retention was changed (from Delta's default of 30 days when `from` is `None`).
    Changed {
        /// The retention before, as the table spelled it.
        from: Option<String>,
        /// The retention now.
        to: String,
    },
}

/// A duration as Delta spells an interval: `interval 1800 seconds`.
pub fn delta_interval(retention: Duration) -> String {
    format!("interval {} seconds", retention.as_secs())
}

impl Lake {
    /// Sets `def`'s log retention, in one metadata commit (none if it is already set so).
    ///
    /// A metadata change makes the commits other writers had prepared on an older version fail
    /// Delta's conflict check: change it while nothing else writes to the table.
    pub async fn set_log_retention(
        &self,
        def: &TableDef,
        retention: Duration,
    ) -> Result<RetentionChange, LakeError> {
        let Some(table) = self.open_table(def).await? else {
            return Ok(RetentionChange::Missing);
        };
        let to = delta_interval(retention);
        let from = table
            .snapshot()
            .map_err(|e| self.delta_error(def, e))?
            .metadata()
            .configuration()
            .get(LOG_RETENTION)
            .cloned();
        if from.as_deref() == Some(to.as_str()) {
            return Ok(RetentionChange::Unchanged(to));
        }
        table
            .set_tbl_properties()
            .with_properties(HashMap::from([(LOG_RETENTION.to_string(), to.clone())]))
            .with_commit_properties(commit_properties())
            .await
            .map_err(|e| self.delta_error(def, e))?;
        tracing::info!(table = %def.qualified_name(), ?from, %to, "set the log retention");
        Ok(RetentionChange::Changed { from, to })
    }
}

#[cfg(test)]
mod tests {
    use deltalake::arrow::datatypes::{DataType, Schema};

    use super::*;
    use crate::{Layer, column};

    fn schema() -> Schema {
        Schema::new(vec![column("n", DataType::Int64, false)])
    }

    const T: TableDef = TableDef {
        layer: Layer::Gold,
        name: "retained",
        description: "test rows",
        schema,
        partition_columns: &[],
        properties: &[],
        blob_columns: &[],
    };

    #[tokio::test]
    async fn the_retention_is_set_once_and_tables_not_created_are_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::local(dir.path()).expect("lake");
        let half_hour = Duration::from_secs(1800);
        assert_eq!(
            lake.set_log_retention(&T, half_hour).await.expect("set"),
            RetentionChange::Missing
        );
        lake.ensure_table(&T).await.expect("table");
        let changed = lake.set_log_retention(&T, half_hour).await.expect("set");
        assert_eq!(
            changed,
            RetentionChange::Changed {
                from: None,
                to: "interval 1800 seconds".into()
            }
        );
        let table = lake.open_table(&T).await.expect("open").expect("table");
        assert_eq!(table.version(), Some(1), "one metadata commit");
        let config = table
            .snapshot()
            .expect("snapshot")
            .metadata()
            .configuration()
            .clone();
        assert_eq!(
            config.get(LOG_RETENTION).map(String::as_str),
            Some("interval 1800 seconds")
        );
        // The other properties stay.
        assert_eq!(
            config.get("delta.checkpointInterval").map(String::as_str),
            Some("10")
        );
        let again = lake.set_log_retention(&T, half_hour).await.expect("again");
        assert_eq!(
            again,
            RetentionChange::Unchanged("interval 1800 seconds".into())
        );
        let table = lake.open_table(&T).await.expect("open").expect("table");
        assert_eq!(table.version(), Some(1), "no commit when nothing changes");
    }
}
