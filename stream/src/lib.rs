//! Ingest: getting events from producers into Bronze, exactly once.
//!
//! - [`queue`]: the in-process, 2-partitions-per-hub stand-in for Event Hubs, with a durable log.
//! - [`bronze`]: the archiver that lands stamped batches in `bronze/*_raw` and `bronze/quarantine`
//!   through Delta application transactions; the same code serves the Event Hub trigger.
//! - [`landing`]: wires a queue to one archiver per partition, with live counters.
//! - [`eventhub`]: the other way in: sending events to a real Event Hub over its REST API.
//! - [`partitioning`]: the co-partitioning rule every producer follows (order id to partition).

pub mod bronze;
pub mod eventhub;
pub mod landing;
pub mod partitioning;
pub mod queue;

use chrono::{DateTime, Utc};

/// Where an event came from; the Bronze `source` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Source {
    /// boxoffice's own generator (`up`, the `generate` function).
    Generator = 0,
    /// Posted to the `ingest` HTTP function.
    Http = 1,
    /// Read from a real Event Hub, sent by a producer we do not know.
    EventHub = 2,
    /// A file landed with `boxoffice ingest` (backfills).
    Batch = 3,
}

impl Source {
    /// The value stored in the `source` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Generator => "generator",
            Source::Http => "http",
            Source::EventHub => "eventhub",
            Source::Batch => "batch",
        }
    }

    fn from_u8(b: u8) -> Option<Source> {
        [
            Source::Generator,
            Source::Http,
            Source::EventHub,
            Source::Batch,
        ]
        .into_iter()
        .find(|s| *s as u8 == b)
    }
}

/// An event as a hub partition received it: its body and the stamps Event Hubs gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedEvent {
    /// Position in its partition, from 0, without gaps.
    pub sequence_number: i64,
    /// Byte position of the body in its partition.
    pub offset: i64,
    /// When the hub accepted it.
    pub enqueued_time: DateTime<Utc>,
    /// The producer's partition key (order_id), if it gave one.
    pub partition_key: Option<String>,
    /// Who produced it.
    pub source: Source,
    /// The raw JSON text, exactly as sent.
    pub body: String,
}
