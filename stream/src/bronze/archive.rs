//! The archiver: lands a partition's batch in Bronze exactly once per (hub, partition, sequence).
//!
//! A batch is validated event by event: valid ones go to `bronze/<hub>_raw`, invalid ones to
//! `bronze/quarantine` with every reason. Each table's commit carries the application transaction
//! `("archive:<hub>:<partition>", last sequence number)`, and before writing, each table's own
//! recorded version filters out the events it already holds. So a redelivered batch, or one that
//! overlaps an earlier batch with other boundaries, lands only what is new.
//!
//! Order matters for crash safety: quarantine commits first, the raw table last, even with no
//! rows (the transaction alone). The raw table's version is then the partition's checkpoint: any
//! sequence number at or below it is fully landed in both tables.
//!
//! A batch that starts past the partition's next expected sequence number is still landed, but
//! the jump is recorded in `_system/archive_gaps` and logged as an error first (see [`super::gaps`]).

use std::collections::HashMap;

use boxoffice_events::{Hub, identify};
use boxoffice_lake::{
    AppendError, Lake, LakeError, PartitionRows, append_after_check, committed_version,
};
use chrono::Utc;
use deltalake::DeltaTable;
use serde_json::json;

use super::gaps::{Gap, record_gap};
use super::rows::{QuarantineRow, RawRow, quarantine_batch, raw_partitions};
use super::tables::{QUARANTINE, raw_table};
use crate::ReceivedEvent;

/// Attempts before a commit that keeps losing races to a concurrent archiver gives up.
const MAX_CONFLICT_RETRIES: usize = 10;

/// Why a batch could not be archived. The batch is intact: it can be retried as a whole.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Opening or creating a table failed.
    #[error(transparent)]
    Lake(#[from] LakeError),
    /// A commit failed.
    #[error("archiving {hub} partition {partition} into {table}: {source}")]
    Commit {
        /// The hub.
        hub: Hub,
        /// The partition.
        partition: i32,
        /// `layer.table`.
        table: String,
        /// What delta-rs said.
        #[source]
        source: Box<AppendError>,
    },
    /// Building the Arrow batch failed (a bug, not bad input).
    #[error("building the {table} batch: {source}")]
    Arrow {
        /// `layer.table`.
        table: String,
        /// The Arrow error.
        #[source]
        source: deltalake::arrow::error::ArrowError,
    },
}

/// What one call to [`BronzeArchiver::archive`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArchiveReport {
    /// The jump this batch revealed in its partition's sequence numbers, if any (recorded).
    pub gap: Option<Gap>,
    /// Rows appended to the raw table.
    pub landed: usize,
    /// Rows appended to quarantine.
    pub quarantined: usize,
    /// Events skipped because an earlier delivery had already landed them.
    pub already_landed: usize,
}

/// A batch that cannot be archived event by event, to be quarantined whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoisonBatch {
    /// Its partition.
    pub partition: i32,
    /// Its first sequence number.
    pub first: i64,
    /// Its last sequence number.
    pub last: i64,
    /// Everything received, as text.
    pub body: String,
    /// Why it cannot be archived.
    pub reason: String,
}

/// Lands batches of one hub; holds its tables open between batches.
pub struct BronzeArchiver {
    lake: Lake,
    hub: Hub,
    raw: DeltaTable,
    quarantine: DeltaTable,
}

impl BronzeArchiver {
    /// Opens (creating if needed) the hub's raw table and quarantine.
    pub async fn open(lake: &Lake, hub: Hub) -> Result<BronzeArchiver, ArchiveError> {
        Ok(BronzeArchiver {
            lake: lake.clone(),
            hub,
            raw: lake.ensure_table(raw_table(hub)).await?,
            quarantine: lake.ensure_table(&QUARANTINE).await?,
        })
    }

    /// The application id of a partition's archive stream.
    pub fn app_id(hub: Hub, partition: i32) -> String {
        format!("archive:{hub}:{partition}")
    }

    /// The last sequence number of `partition` fully landed in Bronze (the checkpoint).
    pub async fn checkpoint(&mut self, partition: i32) -> Result<Option<i64>, ArchiveError> {
        let app_id = Self::app_id(self.hub, partition);
        committed_version(&mut self.raw, &app_id)
            .await
            .map_err(|e| {
                self.commit_error(raw_table(self.hub).qualified_name(), partition, e.into())
            })
    }

    /// Lands `events` (one partition's, in sequence order) exactly once.
    pub async fn archive(
        &mut self,
        partition: i32,
        events: &[ReceivedEvent],
    ) -> Result<ArchiveReport, ArchiveError> {
        let Some(last) = events.last().map(|e| e.sequence_number) else {
            return Ok(ArchiveReport::default());
        };
        let app_id = Self::app_id(self.hub, partition);
        let ingested_at = Utc::now();
        // Read once: the raw table's append below commits on this snapshot, and Delta's conflict
        // check refuses it if another archiver of the partition committed since.
        let done = self.checkpoint(partition).await?;
        let gap = self
            .check_gap(partition, events[0].sequence_number, done)
            .await?;
        let (valid, invalid) = self.classify(partition, events);
        let stream = Stream {
            app_id: &app_id,
            last,
            metadata: HashMap::from([
                ("operation".to_string(), json!("archive")),
                ("hub".to_string(), json!(self.hub.as_str())),
                ("partition".to_string(), json!(partition)),
                (
                    "first_sequence_number".to_string(),
                    json!(events[0].sequence_number),
                ),
                ("last_sequence_number".to_string(), json!(last)),
            ]),
        };
        let mut report = ArchiveReport {
            gap,
            ..ArchiveReport::default()
        };

        // Quarantine first: once the raw table records `last`, all of this batch must be landed.
        if !invalid.is_empty() {
            let (wrote, skipped) = self
                .land(
                    Target::Quarantine,
                    partition,
                    &stream,
                    invalid.len(),
                    None,
                    |done| {
                        let rows: Vec<QuarantineRow> = invalid
                            .iter()
                            .filter(|r| r.sequence_number.is_some_and(|s| s > done))
                            .cloned()
                            .collect();
                        let n = rows.len();
                        quarantine_batch(&rows).map(|b| (vec![PartitionRows::unsplit(b)], n))
                    },
                )
                .await?;
            report.quarantined = wrote;
            report.already_landed += skipped;
        }
        let hub = self.hub;
        let (wrote, skipped) = self
            .land(Target::Raw, partition, &stream, valid.len(), done, |done| {
                let rows: Vec<&RawRow<'_>> = valid
                    .iter()
                    .filter(|r| r.event.sequence_number > done)
                    .collect();
                let n = rows.len();
                raw_partitions(hub, partition, ingested_at, &rows).map(|p| (p, n))
            })
            .await?;
        report.landed = wrote;
        report.already_landed += skipped;
        Ok(report)
    }

    /// Records and logs a batch that starts past the partition's next expected sequence number.
    async fn check_gap(
        &mut self,
        partition: i32,
        first: i64,
        done: Option<i64>,
    ) -> Result<Option<Gap>, ArchiveError> {
        let expected = done.map_or(0, |done| done + 1);
        if first <= expected {
            return Ok(None);
        }
        let gap = Gap {
            hub: self.hub,
            partition,
            expected,
            got: first,
        };
        tracing::error!(
            hub = %self.hub,
            partition,
            expected,
            got = first,
            "sequence numbers {expected}..{} of {} partition {partition} never reached the archiver; recorded in _system.archive_gaps",
            first - 1,
            self.hub
        );
        record_gap(&self.lake, &gap, Utc::now()).await?;
        Ok(Some(gap))
    }

    /// Lands a poison batch (one that can never be archived event by event: its metadata does
    /// not line up) whole: one quarantine row holding everything received, with its partition and
    /// sequence range in the reason, and the partition's checkpoint moved past `last`, so the
    /// host's retries stop and the range is accounted for rather than a gap.
    pub async fn archive_poison(
        &mut self,
        poison: &PoisonBatch,
    ) -> Result<ArchiveReport, ArchiveError> {
        let app_id = Self::app_id(self.hub, poison.partition);
        let stream = Stream {
            app_id: &app_id,
            last: poison.last,
            metadata: HashMap::from([
                ("operation".to_string(), json!("archive_poison")),
                ("hub".to_string(), json!(self.hub.as_str())),
                ("partition".to_string(), json!(poison.partition)),
                ("first_sequence_number".to_string(), json!(poison.first)),
                ("last_sequence_number".to_string(), json!(poison.last)),
            ]),
        };
        let row = QuarantineRow {
            received_at: Utc::now(),
            source: crate::Source::EventHub.as_str().to_string(),
            hub: Some(self.hub.as_str().to_string()),
            reason: format!(
                "poison batch of partition {}, sequence numbers {} to {}: {}",
                poison.partition, poison.first, poison.last, poison.reason
            ),
            body: poison.body.clone(),
            stage: "archive".to_string(),
            partition_id: Some(poison.partition),
            sequence_number: None,
            event_uid: None,
            source_file: None,
            line: None,
        };
        let (quarantined, _) = self
            .land(
                Target::Quarantine,
                poison.partition,
                &stream,
                1,
                None,
                |done| {
                    let rows: Vec<QuarantineRow> = (done < poison.last)
                        .then(|| row.clone())
                        .into_iter()
                        .collect();
                    let n = rows.len();
                    quarantine_batch(&rows).map(|b| (vec![PartitionRows::unsplit(b)], n))
                },
            )
            .await?;
        let hub = self.hub;
        self.land(Target::Raw, poison.partition, &stream, 0, None, |_| {
            raw_partitions(hub, poison.partition, Utc::now(), &[]).map(|p| (p, 0))
        })
        .await?;
        Ok(ArchiveReport {
            quarantined,
            ..ArchiveReport::default()
        })
    }

    fn classify<'a>(
        &self,
        partition: i32,
        events: &'a [ReceivedEvent],
    ) -> (Vec<RawRow<'a>>, Vec<QuarantineRow>) {
        let mut valid = Vec::with_capacity(events.len());
        let mut invalid = Vec::new();
        for e in events {
            match identify(&e.body, Some(self.hub)) {
                Ok(id) => valid.push(RawRow {
                    event: e,
                    event_uid: id.event_uid,
                    schema_version: id.schema_version.number(),
                }),
                Err(bad) => invalid.push(QuarantineRow {
                    received_at: e.enqueued_time,
                    source: e.source.as_str().to_string(),
                    hub: Some(self.hub.as_str().to_string()),
                    reason: bad.reason(),
                    body: e.body.clone(),
                    stage: "archive".to_string(),
                    partition_id: Some(partition),
                    sequence_number: Some(e.sequence_number),
                    event_uid: bad.event_uid,
                    source_file: None,
                    line: None,
                }),
            }
        }
        (valid, invalid)
    }

    /// One guarded append: reads the table's checkpoint (unless `read` holds the one just read
    /// from the table's current snapshot), builds the rows after it, commits, and retries from a
    /// fresh read if a concurrent writer of the same stream got in first. `read` saves a
    /// refresh of the table per batch: every refresh replays the commits since the last one.
    /// Returns (rows written, rows skipped as already landed) out of `total`.
    async fn land<F>(
        &mut self,
        target: Target,
        partition: i32,
        stream: &Stream<'_>,
        total: usize,
        mut read: Option<i64>,
        rows_after: F,
    ) -> Result<(usize, usize), ArchiveError>
    where
        F: Fn(i64) -> Result<(Vec<PartitionRows>, usize), deltalake::arrow::error::ArrowError>,
    {
        let def = match target {
            Target::Raw => raw_table(self.hub),
            Target::Quarantine => &QUARANTINE,
        };
        let name = def.qualified_name();
        let mut attempt = 0;
        loop {
            let table = match target {
                Target::Raw => &mut self.raw,
                Target::Quarantine => &mut self.quarantine,
            };
            let done = match read.take() {
                Some(done) => done,
                None => committed_version(table, stream.app_id)
                    .await
                    .map_err(|e| commit_error(self.hub, &name, partition, e.into()))?
                    .unwrap_or(-1),
            };
            if done >= stream.last {
                return Ok((0, total));
            }
            let (rows, n) = rows_after(done).map_err(|e| arrow_error(&name, e))?;
            let (metadata, props) = (stream.metadata.clone(), def.writer_properties());
            // The checkpoint was just read from this snapshot; a concurrent commit of the same
            // stream since then makes this one conflict rather than land twice.
            let appended =
                append_after_check(table, rows, stream.app_id, stream.last, metadata, props).await;
            match appended {
                Ok(_) => return Ok((n, total - n)),
                Err(AppendError::Conflict { .. }) if attempt < MAX_CONFLICT_RETRIES => {
                    attempt += 1;
                    tracing::debug!(table = %name, partition, attempt, "concurrent archiver of the same partition; re-reading its checkpoint");
                }
                Err(e) => return Err(commit_error(self.hub, &name, partition, e)),
            }
        }
    }

    fn commit_error(&self, table: String, partition: i32, source: AppendError) -> ArchiveError {
        commit_error(self.hub, &table, partition, source)
    }
}

/// One partition's archive stream as a batch commits it: the application transaction
/// `(app_id, last)` and the commit's metadata.
struct Stream<'a> {
    app_id: &'a str,
    last: i64,
    metadata: HashMap<String, serde_json::Value>,
}

#[derive(Clone, Copy)]
enum Target {
    Raw,
    Quarantine,
}

fn commit_error(hub: Hub, table: &str, partition: i32, source: AppendError) -> ArchiveError {
    ArchiveError::Commit {
        hub,
        partition,
        table: table.to_string(),
        source: Box::new(source),
    }
}

fn arrow_error(table: &str, source: deltalake::arrow::error::ArrowError) -> ArchiveError {
    ArchiveError::Arrow {
        table: table.to_string(),
        source,
    }
}
