//! A table's two Delta retentions. The log retention (`delta.logRetentionDuration`) says how far
//! back time travel reaches and how many log entries a table keeps: every commit is an entry, so
//! a table taking commits every second keeps millions over the default 30 days, and on a local
//! lake every snapshot update lists them all (docs/continuous.md); table maintenance removes the
//! entries older than it at its checkpoint step. The tombstone retention
//! (`delta.deletedFileRetentionDuration`) says how long each Delta checkpoint repeats the
//! `remove` entries of replaced files; tables boxoffice creates keep them 5 minutes
//! ([`crate::SHORT_TOMBSTONES`]); tables made before keep what they were made with (Delta's 7
//! days, or an hour) until this sets it.

use std::time::Duration;

use deltalake::table::config::TablePropertiesExt;

use crate::LakeError;
use crate::properties::PropertyChange;
use crate::table::TableDef;
use crate::target::Lake;

/// The Delta table property that holds the log retention.
pub const LOG_RETENTION: &str = "delta.logRetentionDuration";

/// The Delta table property that holds the tombstone retention.
pub const TOMBSTONE_RETENTION: &str = "delta.deletedFileRetentionDuration";

/// Which of a table's retentions [`Lake::set_retention`] sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Log entries (`delta.logRetentionDuration`).
    Log,
    /// Tombstones in checkpoints (`delta.deletedFileRetentionDuration`).
    Tombstones,
}

impl Retention {
    /// The Delta table property.
    pub fn property(self) -> &'static str {
        match self {
            Retention::Log => LOG_RETENTION,
            Retention::Tombstones => TOMBSTONE_RETENTION,
        }
    }

    /// What a table without the property has, as Delta defines it.
    pub fn delta_default(self) -> &'static str {
        match self {
            Retention::Log => "interval 30 days",
            Retention::Tombstones => "interval 1 week",
        }
    }

    /// How people call it: `log retention`, `tombstone retention`.
    pub fn label(self) -> &'static str {
        match self {
            Retention::Log => "log retention",
            Retention::Tombstones => "tombstone retention",
        }
    }
}

/// A duration as Delta spells an interval: `interval 1800 seconds`.
pub fn delta_interval(retention: Duration) -> String {
    format!("interval {} seconds", retention.as_secs())
}

/// A table whose Delta checkpoints repeat tombstones longer than tables boxoffice creates do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LongTombstones {
    /// `layer.table`.
    pub table: String,
    /// Its tombstone retention (Delta's week when the property is not set).
    pub kept: Duration,
}

impl Lake {
    /// The tables among `defs` whose tombstone retention is longer than `limit`, in `defs`'
    /// order; tables not created yet are left out.
    ///
    /// Why it matters: every checkpoint (every 10 commits) copies each tombstone younger than
    /// the retention, so a busy table made by an earlier boxoffice (an hour, or Delta's week)
    /// carries thousands of them into every checkpoint and every snapshot that reads one.
    pub async fn tombstones_kept_longer_than(
        &self,
        defs: &[&TableDef],
        limit: Duration,
    ) -> Result<Vec<LongTombstones>, LakeError> {
        let kept = futures::future::try_join_all(defs.iter().map(|&def| async move {
            let Some(table) = self.open_table(def).await? else {
                return Ok::<_, LakeError>(None);
            };
            let snapshot = table.snapshot().map_err(|e| self.delta_error(def, e))?;
            let kept = snapshot.table_config().deleted_file_retention_duration();
            Ok((kept > limit).then(|| LongTombstones {
                table: def.qualified_name(),
                kept,
            }))
        }))
        .await?;
        Ok(kept.into_iter().flatten().collect())
    }

    /// Sets one of `def`'s retentions, in one metadata commit (none if it is already set so).
    ///
    /// A metadata change makes the commits other writers had prepared on an older version fail
    /// Delta's conflict check: change it while nothing else writes to the table.
    pub async fn set_retention(
        &self,
        def: &TableDef,
        kind: Retention,
        retention: Duration,
    ) -> Result<PropertyChange, LakeError> {
        self.set_property(def, kind.property(), delta_interval(retention))
            .await
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

    const T: TableDef = TableDef::test(Layer::Gold, "retained", schema);

    #[tokio::test]
    async fn the_retention_is_set_once_and_tables_not_created_are_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::local(dir.path()).expect("lake");
        let half_hour = Duration::from_secs(1800);
        assert_eq!(
            lake.set_retention(&T, Retention::Log, half_hour)
                .await
                .expect("set"),
            PropertyChange::Missing
        );
        lake.ensure_table(&T).await.expect("table");
        let changed = lake
            .set_retention(&T, Retention::Log, half_hour)
            .await
            .expect("set");
        assert_eq!(
            changed,
            PropertyChange::Changed {
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
        // The other properties stay, the defaults tables are created with among them.
        assert_eq!(
            config.get("delta.checkpointInterval").map(String::as_str),
            Some("10")
        );
        assert_eq!(
            config.get(TOMBSTONE_RETENTION).map(String::as_str),
            Some("interval 5 minutes")
        );
        let again = lake
            .set_retention(&T, Retention::Log, half_hour)
            .await
            .expect("again");
        assert_eq!(
            again,
            PropertyChange::Unchanged("interval 1800 seconds".into())
        );
        let table = lake.open_table(&T).await.expect("open").expect("table");
        assert_eq!(table.version(), Some(1), "no commit when nothing changes");
    }

    #[tokio::test]
    async fn the_tombstone_retention_is_set_apart_from_the_log_retention() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::local(dir.path()).expect("lake");
        lake.ensure_table(&T).await.expect("table");
        let changed = lake
            .set_retention(&T, Retention::Tombstones, Duration::from_secs(600))
            .await
            .expect("set");
        assert_eq!(
            changed,
            PropertyChange::Changed {
                from: Some("interval 5 minutes".into()),
                to: "interval 600 seconds".into()
            }
        );
        let table = lake.open_table(&T).await.expect("open").expect("table");
        let snapshot = table.snapshot().expect("snapshot");
        let config = snapshot.metadata().configuration();
        assert_eq!(
            config.get(TOMBSTONE_RETENTION).map(String::as_str),
            Some("interval 600 seconds")
        );
        assert_eq!(
            config.get(LOG_RETENTION),
            None,
            "the log retention is left alone"
        );
        // delta-rs reads the property as the table's tombstone retention.
        use deltalake::table::config::TablePropertiesExt;
        assert_eq!(
            snapshot.table_config().deleted_file_retention_duration(),
            Duration::from_secs(600)
        );
    }

    const OTHER: TableDef = TableDef::test(Layer::Gold, "other", schema);
    const NEVER_MADE: TableDef = TableDef::test(Layer::Gold, "never_made", schema);

    #[tokio::test]
    async fn tables_keeping_tombstones_longer_than_new_tables_do_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::local(dir.path()).expect("lake");
        lake.ensure_table(&T).await.expect("table");
        lake.ensure_table(&OTHER).await.expect("table");
        let all = [&T, &OTHER, &NEVER_MADE];
        let long = |lake: Lake| async move {
            lake.tombstones_kept_longer_than(&all, crate::SHORT_TOMBSTONES_KEPT)
                .await
                .expect("read")
        };
        // New tables keep exactly the default, which delta-rs reads as the same duration.
        let table = lake.open_table(&T).await.expect("open").expect("table");
        assert_eq!(
            table
                .snapshot()
                .expect("snapshot")
                .table_config()
                .deleted_file_retention_duration(),
            crate::SHORT_TOMBSTONES_KEPT,
            "SHORT_TOMBSTONES and SHORT_TOMBSTONES_KEPT say the same"
        );
        assert_eq!(long(lake.clone()).await, vec![]);
        let hour = Duration::from_secs(3600);
        lake.set_retention(&OTHER, Retention::Tombstones, hour)
            .await
            .expect("set");
        assert_eq!(
            long(lake.clone()).await,
            vec![LongTombstones {
                table: OTHER.qualified_name(),
                kept: hour
            }]
        );
        lake.set_retention(&OTHER, Retention::Tombstones, crate::SHORT_TOMBSTONES_KEPT)
            .await
            .expect("set back");
        assert_eq!(long(lake).await, vec![], "set back to 5 minutes");
    }
}
