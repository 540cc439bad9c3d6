//! One writer per instance for the rows `ingest` refuses: concurrent requests' rows share
//! commits instead of racing each other for `bronze/quarantine`'s next version.
//!
//! A request hands its rows to the writer and waits; the writer takes every request waiting at
//! that moment, appends all their rows in one commit (retrying a failed commit with backoff), and
//! only then answers each request. So a request is answered after its rows are durable, and
//! however many requests arrive at once, this instance makes one commit at a time.

use std::time::Duration;

use boxoffice_ingest::bronze::{QUARANTINE, QuarantineRow, quarantine_batch};
use boxoffice_lake::Lake;
use tokio::sync::{mpsc, oneshot};

/// Most requests grouped into one commit.
const MAX_GROUP: usize = 4096;

/// Commit attempts before a group's requests are told it failed.
const ATTEMPTS: u32 = 6;

struct Request {
    rows: Vec<QuarantineRow>,
    done: oneshot::Sender<Result<(), String>>,
}

/// The handle requests write through; the writer task ends when the last handle is dropped.
pub struct QuarantineWriter {
    requests: mpsc::Sender<Request>,
}

impl QuarantineWriter {
    /// Starts the writer for `lake` (inside a Tokio runtime).
    pub fn start(lake: Lake) -> QuarantineWriter {
        let (requests, rx) = mpsc::channel(MAX_GROUP);
        tokio::spawn(run(lake, rx));
        QuarantineWriter { requests }
    }

    /// Appends `rows` to `bronze/quarantine`; returns once they are committed.
    pub async fn write(&self, rows: Vec<QuarantineRow>) -> Result<(), String> {
        let (done, answer) = oneshot::channel();
        self.requests
            .send(Request { rows, done })
            .await
            .map_err(|_| "the quarantine writer stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the quarantine writer stopped".to_string())?
    }
}

async fn run(lake: Lake, mut requests: mpsc::Receiver<Request>) {
    while let Some(first) = requests.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match requests.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let rows: Vec<QuarantineRow> = group.iter().flat_map(|r| r.rows.iter().cloned()).collect();
        let result = append(&lake, &rows).await;
        for request in group {
            let _ = request.done.send(result.clone());
        }
    }
}

/// One commit of `rows`, retried: another instance (or the archivers) may win the race for the
/// table's next version more times than delta-rs retries on its own, and storage may blink.
async fn append(lake: &Lake, rows: &[QuarantineRow]) -> Result<(), String> {
    let batch = quarantine_batch(rows).map_err(|e| e.to_string())?;
    let mut wait = Duration::from_millis(50);
    let mut attempt = 0;
    loop {
        attempt += 1;
        match lake.append(&QUARANTINE, vec![batch.clone()]).await {
            Ok(_) => return Ok(()),
            Err(e) if attempt < ATTEMPTS => {
                tracing::warn!(attempt, error = %e, "quarantine commit failed; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                return Err(format!(
                    "writing {} refused events to bronze/quarantine: {e}",
                    rows.len()
                ));
            }
        }
    }
}
