//! Bronze: raw events landed exactly once, and quarantine for everything refused.

mod archive;
mod gaps;
mod rows;
mod tables;

pub use archive::{ArchiveError, ArchiveReport, BronzeArchiver, PoisonBatch};
pub use gaps::{ARCHIVE_GAPS, Gap, record_gap};
pub use rows::{QuarantineRow, quarantine_batch};
pub use tables::{BOOKINGS_RAW, PAYMENTS_RAW, QUARANTINE, TABLES, raw_table};

#[cfg(test)]
pub(crate) mod archive_tests;
#[cfg(test)]
mod archive_together_tests;
