//! Table maintenance: compaction of the small files frequent appends leave, vacuum of files no
//! snapshot within the retention still needs, and checkpoints so readers replay less log.
//!
//! Compaction touches only the tables that are only ever appended to, blindly: the partitioned
//! ones (Bronze by ingest_date, Silver by booking or payment date), Bronze's quarantine and
//! Silver's late events. Partitions before a date (closed days) are compacted whole; in the
//! others (today's, which the archivers and the join are appending to) and in the unpartitioned
//! tables only files older than a minimum age are, so the freshest data is not rewritten while
//! it is still arriving. Either way the commit changes no data (`dataChange: false`), and a
//! writer appending while a compaction commits loses nothing and neither fails
//! ([`boxoffice_lake::compact`] says why). Compaction leaves the other tables alone: most are
//! MERGE targets (Silver CDC, Gold, the batch tables), and delta-rs's conflict check does not see
//! a MERGE rewriting a file that a compaction has just replaced. Their writers rewrite them anyway
//! (a MERGE rewrites the files it touches; Gold replaces what it refreshes).

use std::time::Duration;

use deltalake::operations::vacuum::VacuumMode;
use deltalake::table::config::TablePropertiesExt;
use futures::StreamExt;

use boxoffice_ingest::bronze::{BOOKINGS_RAW, PAYMENTS_RAW};
use boxoffice_lake::compact::compact_keeping_apart as compact_table;
use boxoffice_lake::{Lake, Partition, Rule, TableDef};
use chrono::{NaiveDate, Utc};

use boxoffice_ingest::bronze::QUARANTINE;

use crate::JobError;
use crate::cdc::tables::MOVIE_BOOKING_CDC_EVENTS;
use crate::silver::tables::{EXPECTATIONS, LATE_EVENTS};

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
    /// Expired entries removed from the table's `_delta_log` (by the checkpoint step).
    pub log_entries_deleted: u64,
    /// Rows in the table's snapshot before the step (a step changes none; appenders may add).
    pub rows: u64,
}

/// Files younger than this are left alone in partitions still being appended to, unless the
/// bundle task says otherwise (`min_file_age`). 20 s: with `up`'s flush each second on two
/// partitions, at most about 40 young files per Bronze table stay beside the compacted ones, so
/// a day's partition holds under 50 files right after a compaction, even while archivers append.
pub const DEFAULT_MIN_FILE_AGE: Duration = Duration::from_secs(20);

/// Which files compaction rewrites, and into what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactSettings {
    /// Partitions before this date are compacted whole: nothing appends to closed days.
    pub before: NaiveDate,
    /// In the partitions from `before` on, only files written at least this long ago.
    pub min_file_age: Duration,
    /// Files are rewritten into files of up to this size; larger ones are left as they are.
    pub target_bytes: u64,
}

/// Compacts each append-only table as `settings` say (the others are skipped, as are tables that
/// do not exist yet).
pub async fn compact(
    lake: &Lake,
    tables: &[&TableDef],
    settings: &CompactSettings,
) -> Result<Vec<TableMaintenance>, JobError> {
    let before = settings.before.format("%Y-%m-%d").to_string();
    let age = i64::try_from(settings.min_file_age.as_millis()).unwrap_or(i64::MAX);
    let cutoff = Utc::now().timestamp_millis().saturating_sub(age);
    let mut out = Vec::new();
    let compacted = |d: &&&TableDef| d.partition_columns.len() == 1 || append_only(d);
    for def in tables.iter().filter(compacted) {
        let Some(mut table) = lake.open_table(def).await? else {
            continue;
        };
        let (files_before, rows) = counts(&table);
        let column = def.partition_columns.first().copied().unwrap_or_default();
        // Date partitions compare as their ISO text; an unpartitioned table is always open.
        let rule = |p: &Partition| match p.value(column) {
            Some(day) if day < before.as_str() => Rule::Closed,
            _ => Rule::Open { written_by: cutoff },
        };
        // The join's shards prune Bronze's files by the Event Hubs partition they hold: each
        // partition's rows stay in files of their own.
        let apart = [&BOOKINGS_RAW, &PAYMENTS_RAW]
            .iter()
            .any(|raw| raw.name == def.name && raw.layer == def.layer)
            .then_some("partition_id");
        let report = compact_table(
            &mut table,
            &def.writer_properties(),
            settings.target_bytes,
            rule,
            apart,
        )
        .await
        .map_err(|e| maintenance_error(def, "compacting", e))?;
        tracing::info!(table = %def.qualified_name(), ?report, "compacted");
        let (files_after, _) = counts(&table);
        out.push(TableMaintenance {
            table: def.qualified_name(),
            files_before,
            files_after,
            files_deleted: 0,
            log_entries_deleted: 0,
            rows,
        });
    }
    Ok(out)
}

/// Unpartitioned tables that are appended to (exactly-once appends from the archivers and the
/// jobs; no MERGE), so they are compacted like a partition still appended to. Two are rewritten
/// whole now and then (late_events by a backfill, the others by a full refresh of their job):
/// such a rewrite and a compaction conflict, and the one that commits second retries on the
/// other's result. The run history tables gain a file per batch or task run, so they are here
/// too.
fn append_only(def: &TableDef) -> bool {
    [
        QUARANTINE.qualified_name(),
        LATE_EVENTS.qualified_name(),
        MOVIE_BOOKING_CDC_EVENTS.qualified_name(),
        EXPECTATIONS.qualified_name(),
        "_system.job_runs".to_string(),
    ]
    .contains(&def.qualified_name())
}

/// Deletes the files no live snapshot refers to once they are older than `retention`, in
/// Delta's full mode: it lists the table's folder instead of trusting tombstones, because
/// checkpoints keep those only for the table's tombstone retention (5 minutes on boxoffice's
/// tables, [`boxoffice_lake::SHORT_TOMBSTONES`]), far less than a vacuum retention of days. A
/// replaced file whose tombstone a checkpoint no longer carries is judged by when it was
/// written; files a writer is still committing are younger than any sensible retention.
pub async fn vacuum(lake: &Lake, tables: &[&TableDef], retention: chrono::Duration) -> Vacuumed {
    let mut done = Vacuumed::default();
    for def in tables {
        match vacuum_table(lake, def, retention).await {
            Ok(Some(report)) => done.tables.push(report),
            Ok(None) => {}
            Err(e) => done.failed.push(e.to_string()),
        }
    }
    done
}

/// What a vacuum did, table by table: the tables it vacuumed, and why the others failed (a
/// failed table does not stop the others).
#[derive(Debug, Default)]
pub struct Vacuumed {
    /// The tables vacuumed.
    pub tables: Vec<TableMaintenance>,
    /// One message per table that failed.
    pub failed: Vec<String>,
}

impl Vacuumed {
    /// Files deleted over every table vacuumed.
    pub fn files_deleted(&self) -> u64 {
        self.tables.iter().map(|t| t.files_deleted).sum()
    }

    /// The tables vacuumed, or an error naming each table that failed and what the others did.
    pub fn into_result(self) -> Result<Vec<TableMaintenance>, JobError> {
        if self.failed.is_empty() {
            return Ok(self.tables);
        }
        Err(JobError::Maintenance(format!(
            "{} (the other {} tables were vacuumed: {} files deleted)",
            self.failed.join("; "),
            self.tables.len(),
            self.files_deleted()
        )))
    }
}

/// Vacuums one table (`None`: it does not exist yet). delta-rs plans which files go (a dry run:
/// its rules, no commit) and they are deleted here, without the two log entries a Delta vacuum
/// records around its deletes (`VACUUM START`, `VACUUM END`). Those entries are history, not
/// table state, and Delta refuses the first whenever a writer replaced files since the vacuum
/// read the table: in `up`, Gold replaces its files on every run, a few times a second, so every
/// attempt at a Gold table lost that race and its replaced files were never deleted. Deleting a
/// planned file needs no commit: no version within the retention refers to it.
async fn vacuum_table(
    lake: &Lake,
    def: &TableDef,
    retention: chrono::Duration,
) -> Result<Option<TableMaintenance>, JobError> {
    let Some(table) = lake.open_table(def).await? else {
        return Ok(None);
    };
    let (files, rows) = counts(&table);
    let store = table.log_store().object_store(None);
    let (_, plan) = table
        .vacuum()
        .with_retention_period(retention)
        .with_mode(VacuumMode::Full)
        // Delta's 7-day floor protects readers of old snapshots; a shorter retention is the
        // user's explicit choice in bundle.yml.
        .with_enforce_retention_duration(false)
        .with_dry_run(true)
        .await
        .map_err(|e| maintenance_error(def, "planning the vacuum of", e))?;
    let mut planned = Vec::with_capacity(plan.files_deleted.len());
    for name in &plan.files_deleted {
        let path = object_store::path::Path::parse(name).map_err(|e| {
            JobError::Maintenance(format!(
                "vacuuming {}: the planned file {name:?}: {e}",
                def.qualified_name()
            ))
        })?;
        planned.push(Ok(path));
    }
    let mut results = store.delete_stream(futures::stream::iter(planned).boxed());
    let (mut deleted, mut refused) = (0usize, Vec::new());
    while let Some(result) = results.next().await {
        match result {
            // Gone already (another vacuum got there first) counts as deleted.
            Ok(_) | Err(object_store::Error::NotFound { .. }) => deleted += 1,
            Err(e) => refused.push(e.to_string()),
        }
    }
    if let Some(first) = refused.first() {
        return Err(JobError::Maintenance(format!(
            "vacuuming {}: {deleted} replaced files deleted, {} refused by the storage (the next \
             vacuum tries them again), the first because: {first}",
            def.qualified_name(),
            refused.len()
        )));
    }
    Ok(Some(TableMaintenance {
        table: def.qualified_name(),
        files_before: files,
        files_after: files,
        files_deleted: deleted as u64,
        log_entries_deleted: 0,
        rows,
    }))
}

/// Writes a checkpoint of each table's current version, then removes the log entries that
/// expired before it: older than the table's `delta.logRetentionDuration` (30 days unless set)
/// and older than a checkpoint, unless `delta.enableExpiredLogCleanup` is false, at most every
/// tenth of the retention ([`expired_entries_every`]). boxoffice's commits leave this to
/// maintenance ([`boxoffice_lake::commit_properties`]): done after every commit, it lists the
/// whole log each time.
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
        let config = table
            .snapshot()
            .map_err(|e| maintenance_error(def, "reading the table config of", e))?
            .table_config();
        let retention = config.log_retention_duration();
        let location = table.table_url().to_string();
        let log_entries_deleted =
            if config.enable_expired_log_cleanup() && expired_entries_due(&location, retention) {
                let deleted = deltalake::protocol::checkpoints::cleanup_metadata(&table, None)
                    .await
                    .map_err(|e| maintenance_error(def, "removing expired log entries of", e))?;
                expired_entries_removed(&location);
                deleted as u64
            } else {
                0
            };
        out.push(TableMaintenance {
            table: def.qualified_name(),
            files_before: files,
            files_after: files,
            files_deleted: 0,
            log_entries_deleted,
            rows,
        });
    }
    Ok(out)
}

/// How often the checkpoint step looks for a table's expired log entries: a tenth of its log
/// retention, so the log holds at most 1.1 times the retention. Looking reads the whole
/// `_delta_log` folder with each entry's metadata, a cost that grows with the entries the
/// retention keeps; every 15 s (`up`'s maintenance turn) under Delta's default of 30 days it
/// would grow without end, though nothing can expire for a month.
pub fn expired_entries_every(log_retention: Duration) -> Duration {
    log_retention / 10
}

/// When this process last removed each table's expired log entries, by table location. A new
/// process (a restart, a `maintenance` command) looks at its first checkpoint step.
static EXPIRED_REMOVED: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
> = std::sync::LazyLock::new(Default::default);

/// Whether the table at `location` is due to have its expired log entries looked for.
fn expired_entries_due(location: &str, log_retention: Duration) -> bool {
    let removed = EXPIRED_REMOVED.lock().unwrap_or_else(|p| p.into_inner());
    removed
        .get(location)
        .is_none_or(|at| at.elapsed() >= expired_entries_every(log_retention))
}

fn expired_entries_removed(location: &str) {
    let mut removed = EXPIRED_REMOVED.lock().unwrap_or_else(|p| p.into_inner());
    removed.insert(location.to_string(), std::time::Instant::now());
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use boxoffice_lake::{Layer, PartitionRows, PartitionValue, append_once, column, read_rows};
    use deltalake::arrow::array::{AsArray, Int64Array, RecordBatch, StringArray};
    use deltalake::arrow::datatypes::{DataType, Int64Type, Schema};

    use super::*;

    fn schema() -> Schema {
        Schema::new(vec![column("n", DataType::Int64, false)])
    }

    /// A table whose log entries expire at once, so that any cleanup shows.
    const SHORT: TableDef = TableDef {
        layer: Layer::Silver,
        name: "short_history",
        description: "test rows",
        schema,
        partition_columns: &[],
        properties: &[("delta.logRetentionDuration", "interval 0 seconds")],
        blob_columns: &[],
        stats_columns: &[],
    };

    fn commits(lake: &Lake) -> Vec<u64> {
        commits_of(lake, &SHORT)
    }

    /// `def`'s `_delta_log` folder.
    fn log_dir(lake: &Lake, def: &TableDef) -> std::path::PathBuf {
        lake.local_dir(def.layer)
            .expect("local")
            .join(def.name)
            .join("_delta_log")
    }

    /// Appends the rows `from..=to` to `def`, one commit each.
    async fn append_rows(lake: &Lake, def: &TableDef, from: i64, to: i64) {
        let mut table = lake.ensure_table(def).await.expect("table");
        for n in from..=to {
            let batch = RecordBatch::try_new(
                Arc::new(schema()),
                vec![Arc::new(Int64Array::from(vec![n]))],
            )
            .expect("batch");
            append_once(
                &mut table,
                vec![PartitionRows::unsplit(batch)],
                "test",
                n,
                HashMap::new(),
                def.writer_properties(),
            )
            .await
            .expect("append");
        }
    }

    /// The versions whose commit is in `def`'s log.
    fn commits_of(lake: &Lake, def: &TableDef) -> Vec<u64> {
        let mut found: Vec<u64> = std::fs::read_dir(log_dir(lake, def))
            .expect("log")
            .filter_map(|e| {
                let name = e.expect("entry").file_name().into_string().ok()?;
                name.strip_suffix(".json")?.parse().ok()
            })
            .collect();
        found.sort_unstable();
        found
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commits_leave_expired_log_entries_to_the_checkpoint_step_which_removes_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::local(dir.path()).expect("lake");
        append_rows(&lake, &SHORT, 1, 25).await;
        // delta-rs's own cleanup after each commit would have removed everything before the
        // checkpoints of versions 9 and 19 already.
        assert_eq!(commits(&lake), (0..=25).collect::<Vec<u64>>());

        let report = checkpoint(&lake, &[&SHORT]).await.expect("checkpoint");
        assert_eq!(report.len(), 1);
        assert!(report[0].log_entries_deleted >= 25, "{report:?}");
        assert_eq!(
            commits(&lake),
            vec![25],
            "only the checkpointed version is left"
        );
        let reopened = lake.open_table(&SHORT).await.expect("open").expect("table");
        assert_eq!(reopened.version(), Some(25));
        let rows: usize = read_rows(&reopened)
            .await
            .expect("read")
            .iter()
            .map(RecordBatch::num_rows)
            .sum();
        assert_eq!(rows, 25, "the checkpoint holds every row");
    }

    /// A table whose log entries expire after 100 s: looked for every 10 s.
    const HUNDRED_SECONDS: TableDef = TableDef {
        name: "hundred_seconds_history",
        properties: &[("delta.logRetentionDuration", "interval 100 seconds")],
        ..SHORT
    };

    /// Appends rows `from..=to` to `def`, then dates every commit file 200 s back.
    async fn aged_commits(lake: &Lake, def: &TableDef, from: i64, to: i64) {
        append_rows(lake, def, from, to).await;
        let past = std::time::SystemTime::now() - Duration::from_secs(200);
        for entry in std::fs::read_dir(log_dir(lake, def)).expect("log") {
            let file = std::fs::File::options()
                .write(true)
                .open(entry.expect("entry").path())
                .expect("open");
            file.set_modified(past).expect("date it back");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn expired_log_entries_are_looked_for_once_every_tenth_of_the_retention() {
        assert_eq!(
            expired_entries_every(Duration::from_secs(30 * 86_400)),
            Duration::from_secs(3 * 86_400)
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::local(dir.path()).expect("lake");
        aged_commits(&lake, &HUNDRED_SECONDS, 1, 25).await;
        let first = checkpoint(&lake, &[&HUNDRED_SECONDS])
            .await
            .expect("checkpoint");
        assert!(first[0].log_entries_deleted >= 25, "{first:?}");

        // Expired as well, but the next step comes within 10 s: it leaves them.
        aged_commits(&lake, &HUNDRED_SECONDS, 26, 40).await;
        let second = checkpoint(&lake, &[&HUNDRED_SECONDS])
            .await
            .expect("checkpoint");
        assert_eq!(second[0].log_entries_deleted, 0, "{second:?}");
        let kept = commits_of(&lake, &HUNDRED_SECONDS);
        assert!(kept.contains(&26), "{kept:?}");

        // Another table of the same lake is due on its own.
        aged_commits(&lake, &SHORT, 1, 12).await;
        let other = checkpoint(&lake, &[&SHORT]).await.expect("checkpoint");
        assert!(other[0].log_entries_deleted >= 10, "{other:?}");
    }

    fn day_schema() -> Schema {
        Schema::new(vec![
            column("n", DataType::Int64, false),
            column("day", DataType::Utf8, false),
        ])
    }

    /// A table whose checkpoints drop tombstones a second after the files were replaced.
    const BRIEF: TableDef = TableDef {
        layer: Layer::Silver,
        name: "brief_tombstones",
        description: "test rows",
        schema: day_schema,
        partition_columns: &["day"],
        properties: &[("delta.deletedFileRetentionDuration", "interval 1 second")],
        blob_columns: &[],
        stats_columns: &[],
    };

    /// Files in [`BRIEF`]'s one partition.
    fn data_files(lake: &Lake) -> usize {
        let dir = lake
            .local_dir(BRIEF.layer)
            .expect("local")
            .join(BRIEF.name)
            .join("day=2000-01-01");
        std::fs::read_dir(dir).expect("partition").count()
    }

    /// `files` one-row files appended to [`BRIEF`], compacted into one, and a checkpoint written
    /// once the tombstones have expired.
    async fn compacted_past_its_tombstones(lake: &Lake, files: i64) {
        let mut table = lake.ensure_table(&BRIEF).await.expect("table");
        for n in 1..=files {
            let batch = RecordBatch::try_new(
                Arc::new(day_schema()),
                vec![
                    Arc::new(Int64Array::from(vec![n])),
                    Arc::new(StringArray::from(vec!["2000-01-01"])),
                ],
            )
            .expect("batch");
            let rows = PartitionRows {
                batch,
                values: vec![("day".into(), PartitionValue::Text("2000-01-01".into()))],
            };
            let props = BRIEF.writer_properties();
            append_once(&mut table, vec![rows], "test", n, HashMap::new(), props)
                .await
                .expect("append");
        }
        let settings = CompactSettings {
            before: Utc::now().date_naive(),
            min_file_age: Duration::ZERO,
            target_bytes: 1 << 20,
        };
        let compacted = compact(lake, &[&BRIEF], &settings).await.expect("compact");
        assert_eq!(
            (compacted[0].files_before, compacted[0].files_after),
            (files as u64, 1)
        );
        assert_eq!(
            data_files(lake),
            files as usize + 1,
            "replaced files stay on storage"
        );
        tokio::time::sleep(Duration::from_millis(1500)).await;
        checkpoint(lake, &[&BRIEF]).await.expect("checkpoint");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn vacuum_deletes_replaced_files_whose_tombstones_checkpoints_no_longer_carry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::local(dir.path()).expect("lake");
        compacted_past_its_tombstones(&lake, 3).await;
        // The checkpoint dropped the expired tombstones, so a vacuum that trusts only them
        // (Delta's lite mode) finds nothing to delete, even with no retention...
        let table = lake.open_table(&BRIEF).await.expect("open").expect("table");
        let (_, lite) = table
            .vacuum()
            .with_retention_period(chrono::Duration::zero())
            .with_enforce_retention_duration(false)
            .with_mode(VacuumMode::Lite)
            .with_dry_run(true)
            .await
            .expect("lite dry run");
        assert!(lite.files_deleted.is_empty(), "{:?}", lite.files_deleted);
        // ...and ours still deletes them, by their age.
        let report = vacuum(&lake, &[&BRIEF], chrono::Duration::zero())
            .await
            .into_result()
            .expect("vacuum");
        assert_eq!(report[0].files_deleted, 3, "{report:?}");
        assert_eq!(data_files(&lake), 1);
        assert_eq!(
            numbers(&lake, &BRIEF).await,
            vec![1, 2, 3],
            "nothing live was deleted"
        );
    }

    /// The `n` column of `def`'s live rows, sorted: reading them fails if vacuum deleted a
    /// live file.
    async fn numbers(lake: &Lake, def: &TableDef) -> Vec<i64> {
        let table = lake.open_table(def).await.expect("open").expect("table");
        let mut numbers: Vec<i64> = read_rows(&table)
            .await
            .expect("the live files are all there")
            .iter()
            .flat_map(|b| {
                let n = b.column_by_name("n").expect("n");
                n.as_primitive::<Int64Type>().values().to_vec()
            })
            .collect();
        numbers.sort_unstable();
        numbers
    }

    /// A table replaced whole on every write, as Gold's are.
    const REPLACED: TableDef = TableDef {
        layer: Layer::Gold,
        name: "replaced_whole",
        description: "test rows",
        schema,
        partition_columns: &[],
        properties: &[],
        blob_columns: &[],
        stats_columns: &[],
    };

    /// Replaces [`REPLACED`]'s rows with the one row `n`.
    async fn replace_with(lake: &Lake, n: i64) {
        let table = lake.ensure_table(&REPLACED).await.expect("table");
        let batch = RecordBatch::try_new(
            Arc::new(schema()),
            vec![Arc::new(Int64Array::from(vec![n]))],
        )
        .expect("batch");
        table
            .write(vec![batch])
            .with_save_mode(deltalake::protocol::SaveMode::Overwrite)
            .await
            .expect("overwrite");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn vacuum_deletes_replaced_files_while_a_writer_replaces_the_table_again_and_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::local(dir.path()).expect("lake");
        for n in 1..=5 {
            replace_with(&lake, n).await;
        }
        tokio::time::sleep(Duration::from_millis(1200)).await;
        // Replacing files as fast as it can: a Delta vacuum's own commits lost to it every time.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (lake, stop) = (lake.clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut n = 5;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    replace_with(&lake, n).await;
                }
                n
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        let vacuumed = vacuum(&lake, &[&REPLACED], chrono::Duration::seconds(1))
            .await
            .into_result()
            .expect("a vacuum beside a writer");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let last = writer.await.expect("the writer");
        assert!(
            vacuumed[0].files_deleted >= 4,
            "the files the first four versions replaced: {vacuumed:?}"
        );
        assert!(last > 6, "the writer replaced the table during the vacuum");
        assert_eq!(
            numbers(&lake, &REPLACED).await,
            vec![last],
            "the last write, whole"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn vacuum_leaves_replaced_files_younger_than_the_retention() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::local(dir.path()).expect("lake");
        compacted_past_its_tombstones(&lake, 2).await;
        let report = vacuum(&lake, &[&BRIEF], chrono::Duration::hours(1))
            .await
            .into_result()
            .expect("vacuum");
        assert_eq!(report[0].files_deleted, 0, "{report:?}");
        assert_eq!(data_files(&lake), 3, "time travel still has its files");
    }
}
