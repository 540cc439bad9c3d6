//! When a shard checkpoints the join's state, and how: encoded on a blocking thread (the state
//! itself), or a copy on a background thread while batches go on; stored as one file, older
//! checkpoints and the plans it covers deleted after.

use std::time::Instant;

use boxoffice_lake::Files;
use bytes::Bytes;

use super::input::{self, Positions, Range};
use super::join::JoinState;
use super::shard::{Checkpoints, Encoding, Shard, batch_of, checkpoint_name};
use super::{JOB, checkpoint, checkpoint_error};
use crate::JobError;

/// A checkpoint being encoded on a background thread.
pub(super) type BackgroundEncoding = crate::background::Background<Result<Bytes, String>>;

impl Shard {
    /// Whether the state after `batch` is checkpointed, by the settings' count of batches and,
    /// for runs that follow each other, their interval.
    pub(super) fn checkpoint_due(&self, batch: u64, checkpoints: Checkpoints) -> bool {
        batch - self.checkpointed >= self.settings.checkpoint_every
            && (checkpoints != Checkpoints::Behind
                || self.checkpoint_taken.elapsed() >= self.settings.checkpoint_interval)
    }

    /// Writes the state after the current batch (unless already written), then forgets older
    /// checkpoints and plans. After a run that failed part-way, first reloads and finishes it.
    pub async fn checkpoint(&mut self) -> Result<(), JobError> {
        self.recover().await?;
        self.stored().await;
        self.checkpoint_now().await
    }

    /// Encodes a copy of the state after `batch` (whose `ranges` the positions move past) on a
    /// thread of its own that yields the cores to the batches that follow
    /// ([`crate::background`]). Copying takes a small part of encoding's time.
    pub(super) fn encode_copy(&self, ranges: &[Range], batch: u64) -> BackgroundEncoding {
        let mut phases = crate::Phases::new(batch);
        let state = self.state.clone();
        let positions = self.positions_after(ranges);
        phases.done("checkpoint copy");
        crate::background::spawn("join checkpoint", move || {
            encode_timed(batch, &positions, &state, "checkpoint encode (background)")
        })
    }

    /// The read positions once the batch that read `ranges` is committed: where a checkpoint of
    /// the state after that batch resumes.
    pub(super) fn positions_after(&self, ranges: &[Range]) -> Positions {
        let mut positions = self.positions.clone();
        input::advance(&mut positions, ranges);
        positions
    }

    /// Stores the checkpoint `encoding` makes once it is done, in a task of its own. Called only
    /// once `batch` is committed: a checkpoint must never be ahead of the tables.
    pub(super) fn store_in_background(&mut self, batch: u64, encoding: BackgroundEncoding) {
        let files = self.files.clone();
        let task = tokio::spawn(async move {
            let bytes = encoding
                .await
                .map_err(|e| checkpoint_error(format!("encoding the checkpoint: {e}")))?
                .map_err(checkpoint_error)?;
            store(&files, batch, bytes).await
        });
        self.storing = Some((batch, task));
    }

    /// Waits for the checkpoint being stored in the background, if any. One that failed is
    /// only logged: a restart replays the batches since the checkpoint before it, and the next
    /// checkpoint is due at once.
    pub(super) async fn stored(&mut self) {
        let Some((batch, task)) = self.storing.take() else {
            return;
        };
        match task.await {
            Ok(Ok(())) => {
                self.checkpointed = self.checkpointed.max(batch);
                self.checkpoint_taken = Instant::now();
            }
            Ok(Err(e)) => tracing::warn!(batch, "storing the join's checkpoint failed: {e}"),
            Err(e) => tracing::warn!(batch, "storing the join's checkpoint stopped: {e}"),
        }
    }

    pub(super) async fn checkpoint_now(&mut self) -> Result<(), JobError> {
        if self.batch == self.checkpointed {
            return Ok(());
        }
        let bytes = encode_timed(
            self.batch,
            &self.positions,
            &self.state,
            "checkpoint encode",
        )
        .map_err(checkpoint_error)?;
        self.store_checkpoint(bytes).await
    }

    /// Moves the state to a blocking thread that encodes it as the checkpoint after `batch`
    /// (whose `ranges` the positions move past); [`finish_encoding`](Self::finish_encoding)
    /// takes it back. Nothing reads the state meanwhile: writing a batch does not.
    pub(super) fn encode_in_background(&mut self, ranges: &[Range], batch: u64) -> Encoding {
        let state = std::mem::replace(&mut self.state, JoinState::new(self.settings.join));
        let positions = self.positions_after(ranges);
        tokio::task::spawn_blocking(move || {
            let bytes = encode_timed(batch, &positions, &state, "checkpoint encode");
            (state, bytes)
        })
    }

    /// Puts the state back and returns its encoding.
    pub(super) async fn finish_encoding(&mut self, encoding: Encoding) -> Result<Bytes, String> {
        let (state, bytes) = encoding
            .await
            .map_err(|e| format!("encoding the checkpoint stopped: {e}"))?;
        self.state = state;
        bytes
    }

    /// Stores the encoded state after the current batch, then forgets older checkpoints and plans.
    pub(super) async fn store_checkpoint(&mut self, bytes: Bytes) -> Result<(), JobError> {
        self.stored().await;
        store(&self.files, self.batch, bytes).await?;
        self.checkpointed = self.batch;
        self.checkpoint_taken = Instant::now();
        Ok(())
    }
}

/// Encodes the state after `batch` as its checkpoint, logging the time as `phase`.
fn encode_timed(
    batch: u64,
    positions: &Positions,
    state: &JoinState,
    phase: &str,
) -> Result<Bytes, String> {
    let mut phases = crate::Phases::new(batch);
    let bytes = checkpoint::encode(batch, positions, state);
    phases.done(phase);
    bytes
}

/// Stores the encoded state after `batch`, then forgets older checkpoints and the plans it
/// covers.
async fn store(files: &Files, batch: u64, bytes: Bytes) -> Result<(), JobError> {
    crate::crash_point(&format!("{JOB}:before-checkpoint:{batch}"));
    let mut phases = crate::Phases::new(batch);
    files.put(&checkpoint_name(batch), bytes).await?;
    for name in files.list("state/").await? {
        if batch_of(&name).is_some_and(|b| b < batch) {
            files.delete(&name).await?;
        }
    }
    for name in files.list("plans/").await? {
        if batch_of(&name).is_some_and(|b| b <= batch) {
            files.delete(&name).await?;
        }
    }
    phases.done("checkpoint write");
    Ok(())
}
