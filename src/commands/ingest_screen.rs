//! What `ingest` checks of each line before it is queued: lines that are not valid events go to
//! `bronze/quarantine` from here, with their file and line number and every reason; valid events
//! older than the join's watermark are counted, so the user learns they will arrive late and how
//! to join them as history.

use boxoffice_events::Hub;
use boxoffice_events::model::Event;
use boxoffice_events::validate::validate_event;
use boxoffice_ingest::bronze::{QUARANTINE, QuarantineRow, quarantine_batch};
use boxoffice_jobs::silver::bookings_fact::join::TimeMode;
use boxoffice_jobs::silver::bookings_fact::published::published;
use boxoffice_lake::Lake;
use chrono::{DateTime, Utc};

use crate::progress::thousands;

/// Quarantine rows written in one commit at most (and at the end).
const FLUSH_ROWS: usize = 5_000;

/// Refusals shown by line number at the end.
const SHOWN: usize = 10;

/// The screening of one input.
pub struct Screening {
    lake: Lake,
    /// The file (or `stdin`), as quarantine rows name it.
    file: String,
    /// The join's watermark when ingest started (event-time joins only).
    watermark: Option<DateTime<Utc>>,
    pending: Vec<QuarantineRow>,
    /// Lines quarantined.
    pub quarantined: u64,
    /// The first few: line number and reasons.
    pub first_refused: Vec<(u64, String)>,
    /// Valid events older than the watermark.
    pub older: u64,
    /// Their earliest and latest event time.
    pub older_span: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

impl Screening {
    /// Screens lines of `file` for `lake`, reading the join's published watermark.
    pub async fn start(lake: &Lake, file: &str) -> anyhow::Result<Screening> {
        let watermark = published(lake)
            .await?
            .filter(|p| p.mode == TimeMode::EventTime)
            .and_then(|p| p.watermark);
        Ok(Screening {
            lake: lake.clone(),
            file: file.to_string(),
            watermark,
            pending: Vec::new(),
            quarantined: 0,
            first_refused: Vec::new(),
            older: 0,
            older_span: None,
        })
    }

    /// Whether line `line` (from 1) may be queued on `hub`; if not, it is quarantined here.
    pub async fn check(&mut self, line: u64, body: &str, hub: Hub) -> anyhow::Result<bool> {
        match validate_event(body, Some(hub)) {
            Ok(event) => {
                let time = match &event {
                    Event::Booking(b) => b.booking_time,
                    Event::Payment(p) => p.payment_time,
                };
                if self.watermark.is_some_and(|w| time < w) {
                    self.older += 1;
                    self.older_span = Some(match self.older_span {
                        Some((lo, hi)) => (lo.min(time), hi.max(time)),
                        None => (time, time),
                    });
                }
                Ok(true)
            }
            Err(invalid) => {
                let reason = invalid.reason();
                if self.first_refused.len() < SHOWN {
                    self.first_refused.push((line, reason.clone()));
                }
                self.quarantined += 1;
                self.pending.push(QuarantineRow {
                    received_at: Utc::now(),
                    source: "batch".to_string(),
                    hub: Some(hub.as_str().to_string()),
                    reason,
                    body: body.to_string(),
                    stage: "ingest".to_string(),
                    partition_id: None,
                    sequence_number: None,
                    event_uid: invalid.event_uid,
                    source_file: Some(self.file.clone()),
                    line: Some(line as i64),
                });
                if self.pending.len() >= FLUSH_ROWS {
                    self.flush().await?;
                }
                Ok(false)
            }
        }
    }

    /// Writes the quarantine rows not written yet.
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = quarantine_batch(&self.pending)?;
        self.lake.append(&QUARANTINE, vec![batch]).await?;
        self.pending.clear();
        Ok(())
    }

    /// What the user should know about the lines: refusals by line, and events that will be
    /// late with the command that joins them.
    pub fn report(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if self.quarantined > 0 {
            lines.push(format!(
                "{} lines were not valid events and went to bronze.quarantine with their reasons \
                 (columns source_file and line say where they came from){}:",
                thousands(self.quarantined),
                if self.quarantined as usize > self.first_refused.len() {
                    format!("; the first {}", self.first_refused.len())
                } else {
                    String::new()
                }
            ));
            for (line, reason) in &self.first_refused {
                lines.push(format!("  line {line}: {reason}"));
            }
        }
        if let (Some(watermark), Some((lo, hi))) = (self.watermark, self.older_span) {
            let to = hi + chrono::Duration::seconds(1);
            let at = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%SZ");
            lines.push(format!(
                "warning: {} events are older than the join's watermark ({}): the join will put \
                 them in silver.late_events, not in silver.bookings_fact. To join them as history \
                 (as if they had arrived first), run:\n  boxoffice job run bookings_fact --backfill {}..{}",
                thousands(self.older),
                watermark.format("%Y-%m-%d %H:%M:%S UTC"),
                at(lo),
                at(to)
            ));
        }
        lines
    }
}
