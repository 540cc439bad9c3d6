//! Bronze: raw events landed exactly once, and quarantine for everything refused.

mod archive;
mod rows;
mod tables;

pub use archive::{ArchiveError, ArchiveReport, BronzeArchiver};
pub use rows::{QuarantineRow, quarantine_batch};
pub use tables::{BOOKINGS_RAW, PAYMENTS_RAW, QUARANTINE, TABLES, raw_table};

#[cfg(test)]
mod archive_tests;
