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
    AppendError, Lake, LakeError, PartitionRows, StreamRows, append_streams_after_check,
    committed_version, refreshed_versions,
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
    #[error("archiving {hub} partition {} into {table}: {source}", list(.partitions))]
    Commit {
        /// The hub.
        hub: Hub,
        /// The partitions the commit was for.
        partitions: Vec<i32>,
        /// `layer.table`.
        table: String,
        /// What delta-rs said.
        #[source]
        source: Box<AppendError>,
    },
    /// One call held two batches of the same partition (a bug in the caller).
    #[error(
        "two batches of {hub} partition {partition} in one archive call; land them one after another"
    )]
    PartitionTwice {
        /// The hub.
        hub: Hub,
        /// The partition.
        partition: i32,
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
                let table = raw_table(self.hub).qualified_name();
                commit_error(self.hub, &table, vec![partition], e.into())
            })
    }

    /// Lands `events` (one partition's, in sequence order) exactly once.
    pub async fn archive(
        &mut self,
        partition: i32,
        events: &[ReceivedEvent],
    ) -> Result<ArchiveReport, ArchiveError> {
        let mut reports = self.archive_partitions(&[(partition, events)]).await?;
        Ok(reports.pop().unwrap_or_default())
    }

    /// Lands a batch of each of several partitions of the hub (each in sequence order) exactly
    /// once, with one commit per table for all of them: each partition's rows in files of their
    /// own, every partition's application transaction in the commit. Landing a hub's partitions
    /// together cuts Bronze's commits (by 42% in `up` at 5,000 events/s, two partitions a hub),
    /// and with them the checkpoints and snapshot updates every reader pays for. Returns a report
    /// per batch, in order.
    pub async fn archive_partitions(
        &mut self,
        batches: &[(i32, &[ReceivedEvent])],
    ) -> Result<Vec<ArchiveReport>, ArchiveError> {
        let mut reports = vec![ArchiveReport::default(); batches.len()];
        let (slots, streams) = self.streams(batches)?;
        if streams.is_empty() {
            return Ok(reports);
        }
        let ingested_at = Utc::now();
        // Read once: the raw table's append below commits on this snapshot, and Delta's conflict
        // check refuses it if another archiver of one of the partitions committed since.
        let done = self.checkpoints(&streams).await?;
        let mut classified = Vec::with_capacity(streams.len());
        for ((stream, slot), done) in streams.iter().zip(&slots).zip(&done) {
            let events = batches[*slot].1;
            reports[*slot].gap = self
                .check_gap(stream.partition, stream.first, *done)
                .await?;
            classified.push(self.classify(stream.partition, events));
        }

        // Quarantine first: once the raw table records `last`, all of a batch must be landed.
        self.land_quarantine(&streams, &slots, &classified, &mut reports)
            .await?;
        let hub = self.hub;
        let totals: Vec<usize> = classified.iter().map(|(valid, _)| valid.len()).collect();
        let read = done.iter().map(|d| d.unwrap_or(-1)).collect();
        let landed = self
            .land(Target::Raw, &streams, &totals, Some(read), |k, done| {
                let rows: Vec<&RawRow<'_>> = classified[k]
                    .0
                    .iter()
                    .filter(|r| r.event.sequence_number > done)
                    .collect();
                let n = rows.len();
                raw_partitions(hub, streams[k].partition, ingested_at, &rows).map(|p| (p, n))
            })
            .await?;
        for (slot, (wrote, skipped)) in slots.iter().zip(landed) {
            reports[*slot].landed = wrote;
            reports[*slot].already_landed += skipped;
        }
        Ok(reports)
    }

    /// Lands the invalid events of every stream that has some, in one quarantine commit, and
    /// counts them in the streams' reports (`slots` maps each stream to its report).
    async fn land_quarantine(
        &mut self,
        streams: &[Stream],
        slots: &[usize],
        classified: &[Classified<'_>],
        reports: &mut [ArchiveReport],
    ) -> Result<(), ArchiveError> {
        let with_invalid: Vec<usize> = (0..streams.len())
            .filter(|k| !classified[*k].1.is_empty())
            .collect();
        if with_invalid.is_empty() {
            return Ok(());
        }
        let picked: Vec<Stream> = with_invalid.iter().map(|k| streams[*k].clone()).collect();
        let totals: Vec<usize> = with_invalid
            .iter()
            .map(|k| classified[*k].1.len())
            .collect();
        let landed = self
            .land(Target::Quarantine, &picked, &totals, None, |j, done| {
                let rows: Vec<QuarantineRow> = classified[with_invalid[j]]
                    .1
                    .iter()
                    .filter(|r| r.sequence_number.is_some_and(|s| s > done))
                    .cloned()
                    .collect();
                let n = rows.len();
                quarantine_batch(&rows).map(|b| (vec![PartitionRows::unsplit(b)], n))
            })
            .await?;
        for (k, (wrote, skipped)) in with_invalid.iter().zip(landed) {
            reports[slots[*k]].quarantined = wrote;
            reports[slots[*k]].already_landed += skipped;
        }
        Ok(())
    }

    /// The streams of the non-empty batches, with the index of each one's batch. A partition may
    /// appear only once: one commit records one version per stream.
    fn streams(
        &self,
        batches: &[(i32, &[ReceivedEvent])],
    ) -> Result<(Vec<usize>, Vec<Stream>), ArchiveError> {
        let mut slots = Vec::new();
        let mut streams: Vec<Stream> = Vec::new();
        for (slot, (partition, events)) in batches.iter().enumerate() {
            let (Some(first), Some(last)) = (events.first(), events.last()) else {
                continue;
            };
            if streams.iter().any(|s| s.partition == *partition) {
                return Err(ArchiveError::PartitionTwice {
                    hub: self.hub,
                    partition: *partition,
                });
            }
            slots.push(slot);
            streams.push(Stream {
                app_id: Self::app_id(self.hub, *partition),
                partition: *partition,
                first: first.sequence_number,
                last: last.sequence_number,
            });
        }
        Ok((slots, streams))
    }

    /// Each stream's checkpoint in the raw table, on one refresh.
    async fn checkpoints(&mut self, streams: &[Stream]) -> Result<Vec<Option<i64>>, ArchiveError> {
        let ids: Vec<&str> = streams.iter().map(|s| s.app_id.as_str()).collect();
        refreshed_versions(&mut self.raw, &ids).await.map_err(|e| {
            let partitions = streams.iter().map(|s| s.partition).collect();
            commit_error(
                self.hub,
                &raw_table(self.hub).qualified_name(),
                partitions,
                e.into(),
            )
        })
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
        let stream = [Stream {
            app_id: Self::app_id(self.hub, poison.partition),
            partition: poison.partition,
            first: poison.first,
            last: poison.last,
        }];
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
        let landed = self
            .land(Target::Quarantine, &stream, &[1], None, |_, done| {
                let rows: Vec<QuarantineRow> = (done < poison.last)
                    .then(|| row.clone())
                    .into_iter()
                    .collect();
                let n = rows.len();
                quarantine_batch(&rows).map(|b| (vec![PartitionRows::unsplit(b)], n))
            })
            .await?;
        let hub = self.hub;
        self.land(Target::Raw, &stream, &[0], None, |_, _| {
            raw_partitions(hub, poison.partition, Utc::now(), &[]).map(|p| (p, 0))
        })
        .await?;
        Ok(ArchiveReport {
            quarantined: landed.first().map_or(0, |(wrote, _)| *wrote),
            ..ArchiveReport::default()
        })
    }

    fn classify<'a>(&self, partition: i32, events: &'a [ReceivedEvent]) -> Classified<'a> {
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

    /// One guarded append of several streams in one commit: reads their checkpoints (unless
    /// `read` holds the ones just read from the table's current snapshot), builds each stream's
    /// rows after its checkpoint, commits, and retries from a fresh read if a concurrent writer
    /// of one of the streams got in first. `read` saves a refresh of the table per batch: every
    /// refresh replays the commits since the last one. Returns, per stream, (rows written, rows
    /// skipped as already landed) out of its `totals` entry.
    async fn land<F>(
        &mut self,
        target: Target,
        streams: &[Stream],
        totals: &[usize],
        mut read: Option<Vec<i64>>,
        rows_after: F,
    ) -> Result<Vec<(usize, usize)>, ArchiveError>
    where
        F: Fn(
            usize,
            i64,
        ) -> Result<(Vec<PartitionRows>, usize), deltalake::arrow::error::ArrowError>,
    {
        let def = match target {
            Target::Raw => raw_table(self.hub),
            Target::Quarantine => &QUARANTINE,
        };
        let name = def.qualified_name();
        let ids: Vec<&str> = streams.iter().map(|s| s.app_id.as_str()).collect();
        let partitions = || streams.iter().map(|s| s.partition).collect();
        let mut attempt = 0;
        loop {
            let table = match target {
                Target::Raw => &mut self.raw,
                Target::Quarantine => &mut self.quarantine,
            };
            let done = match read.take() {
                Some(done) => done,
                None => refreshed_versions(table, &ids)
                    .await
                    .map_err(|e| commit_error(self.hub, &name, partitions(), e.into()))?
                    .into_iter()
                    .map(|v| v.unwrap_or(-1))
                    .collect(),
            };
            let mut outcome: Vec<(usize, usize)> = totals.iter().map(|t| (0, *t)).collect();
            let mut parts = Vec::new();
            let mut landing = Vec::new();
            for (k, (stream, done)) in streams.iter().zip(&done).enumerate() {
                if *done >= stream.last {
                    continue;
                }
                let (rows, n) = rows_after(k, *done).map_err(|e| arrow_error(&name, e))?;
                outcome[k] = (n, totals[k] - n);
                parts.push(StreamRows {
                    app_id: &stream.app_id,
                    version: stream.last,
                    rows,
                });
                landing.push(stream);
            }
            if parts.is_empty() {
                return Ok(outcome);
            }
            let metadata = commit_metadata(self.hub, &landing);
            // The checkpoints were just read from this snapshot; a concurrent commit of one of the
            // streams since then makes this one conflict rather than land twice.
            let appended =
                append_streams_after_check(table, parts, metadata, def.writer_properties()).await;
            match appended {
                Ok(_) => return Ok(outcome),
                Err(AppendError::Conflict { .. }) if attempt < MAX_CONFLICT_RETRIES => {
                    attempt += 1;
                    tracing::debug!(table = %name, ?ids, attempt, "concurrent archiver of the same partition; re-reading its checkpoint");
                }
                Err(e) => return Err(commit_error(self.hub, &name, partitions(), e)),
            }
        }
    }
}

/// A batch's events sorted by validation: those that land raw, and those quarantined.
type Classified<'a> = (Vec<RawRow<'a>>, Vec<QuarantineRow>);

/// One partition's archive stream as a batch commits it: the application transaction
/// `(app_id, last)` and the batch's sequence range.
#[derive(Clone)]
struct Stream {
    app_id: String,
    partition: i32,
    first: i64,
    last: i64,
}

/// The commit's metadata (`commitInfo`): the hub, and each partition's sequence range landed.
fn commit_metadata(hub: Hub, streams: &[&Stream]) -> HashMap<String, serde_json::Value> {
    let ranges: Vec<serde_json::Value> = streams
        .iter()
        .map(|s| {
            json!({
                "partition": s.partition,
                "first_sequence_number": s.first,
                "last_sequence_number": s.last,
            })
        })
        .collect();
    HashMap::from([
        ("operation".to_string(), json!("archive")),
        ("hub".to_string(), json!(hub.as_str())),
        ("partitions".to_string(), json!(ranges)),
    ])
}

#[derive(Clone, Copy)]
enum Target {
    Raw,
    Quarantine,
}

fn commit_error(hub: Hub, table: &str, partitions: Vec<i32>, source: AppendError) -> ArchiveError {
    ArchiveError::Commit {
        hub,
        partitions,
        table: table.to_string(),
        source: Box::new(source),
    }
}

fn list(partitions: &[i32]) -> String {
    let ids: Vec<String> = partitions.iter().map(i32::to_string).collect();
    ids.join(", ")
}

fn arrow_error(table: &str, source: deltalake::arrow::error::ArrowError) -> ArchiveError {
    ArchiveError::Arrow {
        table: table.to_string(),
        source,
    }
}
