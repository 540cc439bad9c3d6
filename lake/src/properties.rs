//! Changing a Delta table property of a table that already exists: the retentions
//! ([`crate::retention`]) and the columns with file statistics ([`TableDef::stats_columns`]),
//! which tables made by an earlier boxoffice lack.

use std::collections::HashMap;

use crate::LakeError;
use crate::table::{STATS_COLUMNS, TableDef, commit_properties};
use crate::target::Lake;

/// What setting a table property did to a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PropertyChange {
    /// The table has not been created yet.
    Missing,
    /// It already had this value.
    Unchanged(String),
    /// The value was changed (from Delta's default when `from` is `None`).
    Changed {
        /// The value before, as the table spelled it.
        from: Option<String>,
        /// The value now.
        to: String,
    },
}

impl Lake {
    /// Sets one property of `def`'s table, in one metadata commit (none if it already has that
    /// value).
    ///
    /// A metadata change makes the commits other writers had prepared on an older version fail
    /// Delta's conflict check: change it while nothing else writes to the table.
    pub async fn set_property(
        &self,
        def: &TableDef,
        key: &str,
        to: String,
    ) -> Result<PropertyChange, LakeError> {
        let Some(table) = self.open_table(def).await? else {
            return Ok(PropertyChange::Missing);
        };
        let from = table
            .snapshot()
            .map_err(|e| self.delta_error(def, e))?
            .metadata()
            .configuration()
            .get(key)
            .cloned();
        if from.as_deref() == Some(to.as_str()) {
            return Ok(PropertyChange::Unchanged(to));
        }
        table
            .set_tbl_properties()
            .with_properties(HashMap::from([(key.to_string(), to.clone())]))
            .with_commit_properties(commit_properties())
            .await
            .map_err(|e| self.delta_error(def, e))?;
        tracing::info!(table = %def.qualified_name(), ?from, %to, property = key, "set a table property");
        Ok(PropertyChange::Changed { from, to })
    }

    /// Records file statistics only for the columns `def` declares from the next file written
    /// on; `None` when it declares none (Delta's default, every column, is kept). Files already
    /// written keep theirs until compaction rewrites them.
    pub async fn set_stats_columns(
        &self,
        def: &TableDef,
    ) -> Result<Option<PropertyChange>, LakeError> {
        match def.stats_property() {
            Some(columns) => Ok(Some(self.set_property(def, STATS_COLUMNS, columns).await?)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use deltalake::arrow::array::{Int64Array, RecordBatch};
    use deltalake::arrow::datatypes::{DataType, Schema};

    use super::*;
    use crate::{Layer, column};

    fn schema() -> Schema {
        Schema::new(vec![
            column("a", DataType::Int64, false),
            column("b", DataType::Int64, false),
            column("c", DataType::Int64, false),
        ])
    }

    /// As an earlier boxoffice declared it: statistics on every column.
    const BEFORE: TableDef = TableDef::test(Layer::Silver, "measured", schema);

    const NOW: TableDef = TableDef {
        stats_columns: &["b"],
        ..BEFORE
    };

    fn rows(n: i64) -> RecordBatch {
        let column = || Arc::new(Int64Array::from(vec![n, n + 1])) as _;
        RecordBatch::try_new(NOW.arrow_schema(), vec![column(), column(), column()]).expect("batch")
    }

    /// The columns with min/max statistics of each live file, newest version last.
    async fn stats_columns(lake: &Lake) -> Vec<Vec<String>> {
        let table = lake.open_table(&NOW).await.expect("open").expect("table");
        let mut found: Vec<(i64, Vec<String>)> = table
            .snapshot()
            .expect("snapshot")
            .log_data()
            .iter()
            .map(|f| {
                let stats: serde_json::Value =
                    serde_json::from_str(&f.stats().expect("stats")).expect("json");
                assert_eq!(stats["numRecords"], 2, "row counts stay");
                let mut columns: Vec<String> = stats["minValues"]
                    .as_object()
                    .expect("minValues")
                    .keys()
                    .cloned()
                    .collect();
                columns.sort();
                (f.modification_time(), columns)
            })
            .collect();
        found.sort();
        found.into_iter().map(|(_, c)| c).collect()
    }

    #[tokio::test]
    async fn a_table_records_statistics_only_on_the_columns_it_declares() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::local(dir.path()).expect("lake");
        lake.append(&NOW, vec![rows(1)]).await.expect("append");
        assert_eq!(stats_columns(&lake).await, vec![vec!["b".to_string()]]);
    }

    #[tokio::test]
    async fn declared_statistics_set_on_an_older_table_apply_to_the_files_written_next() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::local(dir.path()).expect("lake");
        assert_eq!(
            lake.set_stats_columns(&NOW).await.expect("set"),
            Some(PropertyChange::Missing)
        );
        assert_eq!(lake.set_stats_columns(&BEFORE).await.expect("set"), None);
        lake.append(&BEFORE, vec![rows(1)]).await.expect("append");
        let changed = lake.set_stats_columns(&NOW).await.expect("set");
        assert_eq!(
            changed,
            Some(PropertyChange::Changed {
                from: None,
                to: "b".into()
            })
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
        lake.append(&NOW, vec![rows(3)]).await.expect("append");
        let all = ["a", "b", "c"].map(String::from).to_vec();
        assert_eq!(
            stats_columns(&lake).await,
            vec![all, vec!["b".to_string()]],
            "the older file keeps its statistics, the newer has only the declared ones"
        );
        let table = lake.open_table(&NOW).await.expect("open").expect("table");
        assert_eq!(table.version(), Some(3), "create, append, set, append");
        assert_eq!(
            lake.set_stats_columns(&NOW).await.expect("again"),
            Some(PropertyChange::Unchanged("b".into()))
        );
        let table = lake.open_table(&NOW).await.expect("open").expect("table");
        assert_eq!(table.version(), Some(3), "no commit when nothing changes");
    }
}
