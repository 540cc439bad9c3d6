//! The lake: where tables live and how they are written, shared by every boxoffice stage.
//!
//! - [`target`]: resolving a local folder, Azurite or Azure into one URL per [`Layer`].
//! - [`table`]: declaring tables ([`TableDef`]) and opening or creating them.
//! - [`commit`]: exactly-once appends through Delta application transactions.
//! - [`hold`]: commits that hold when several writers append to one table at once.
//! - [`group`]: many writers' batches in one commit by one committer at a time.
//! - [`compact`]: rewriting small files into larger ones beside concurrent appenders.
//! - [`inspect`]: versions, row counts and reader compatibility, for `boxoffice tables`.
//! - [`replace`]: a table's contents replaced in one commit (full refreshes).
//! - [`read`]: a table's rows without a query engine (Bronze readers, tests).
//! - [`files`]: plain files beside the tables (job plans and checkpoints).
//! - [`lease`]: one holder at a time for a job or the landing, across processes and machines.
//! - [`properties`], [`retention`]: changing a table's Delta properties after it was created.

mod azurite;
pub mod commit;
pub mod compact;
pub mod files;
mod folder_store;
pub mod group;
pub mod hold;
pub mod inspect;
pub mod layer;
pub mod lease;
pub mod properties;
pub mod read;
pub mod refresh;
pub mod replace;
pub mod retention;
pub mod table;
pub mod target;
mod txn_index;
mod watched_folders;

pub use commit::{
    AppendError, AppendOutcome, Batch, PartitionRows, PartitionValue, StreamRows,
    append_after_check, append_once, append_once_with, append_streams_after_check,
    committed_version, committed_versions, epoch_days, partitioned_by_date, recorded_versions,
    refreshed_versions,
};
pub use compact::{Compaction, Partition, Rule};
pub use files::{FileMeta, Files};
pub use group::{GroupPolicy, GroupStats, StagingError, append_grouped};
pub use hold::{CommitPolicy, CommitStats};
pub use inspect::{TableInfo, TableState, compatibility_problems};
pub use layer::Layer;
pub use lease::{Claim, HeldLease, Holder, Lease, LeaseError};
pub use properties::PropertyChange;
pub use read::{normalize, read_rows, with_schema};
pub use replace::{Replacement, replace_once};
pub use retention::{
    LOG_RETENTION, LongTombstones, Retention, TOMBSTONE_RETENTION, delta_interval,
};
pub use table::{
    DEFAULT_PROPERTIES, FREQUENT_CHECKPOINTS, SHORT_TOMBSTONES, SHORT_TOMBSTONES_KEPT,
    STATS_COLUMNS, TableDef, blob_columns, column, commit_properties, utc_timestamp,
};
pub use target::{Lake, LakeSettings, StoreKind};

/// Why a lake operation failed; every variant names the table or location involved.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    /// A lake root or layer URL that cannot be used.
    #[error("bad lake location {location:?}: {reason}")]
    BadLocation {
        /// What was given.
        location: String,
        /// Why it is refused.
        reason: String,
    },
    /// delta-rs failed on a table.
    #[error("{table}: {source}{}", hint.as_ref().map(|h| format!(" ({h})")).unwrap_or_default())]
    Delta {
        /// `layer.table`.
        table: String,
        /// What to check, for remote lakes.
        hint: Option<String>,
        /// The delta-rs error.
        #[source]
        source: Box<deltalake::DeltaTableError>,
    },
    /// A table exists with other columns than boxoffice declares.
    #[error(
        "{table} exists with columns [{found}], but this boxoffice writes [{expected}]; point --lake at a new location or migrate the table"
    )]
    SchemaMismatch {
        /// `layer.table`.
        table: String,
        /// Declared columns.
        expected: String,
        /// Columns found.
        found: String,
    },
    /// An Azurite container could not be created.
    #[error("could not create container {container:?} on Azurite at {endpoint}: {detail}")]
    Container {
        /// The container.
        container: String,
        /// The emulator endpoint.
        endpoint: String,
        /// What went wrong.
        detail: String,
    },
    /// A local file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}
