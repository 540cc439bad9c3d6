//! Producing to a real Event Hub over its REST API, so `boxoffice produce --to eventhub` (and
//! any process without an AMQP client) can feed the archivers that run in Azure.
//!
//! - [`connection`]: the namespace connection: a connection string with a key (never printed),
//!   or identity-based settings;
//! - [`sas`]: SharedAccessSignature tokens, renewed before they expire;
//! - [`identity`]: Microsoft Entra tokens from the app's managed identity, renewed before they
//!   expire;
//! - [`batch`]: the JSON batch body, each event with its partition key, kept under 1 MB;
//! - [`sender`]: one POST per batch, retrying 429 and 5xx with backoff;
//! - [`producer`]: a task per hub that batches what it is given and sends it in order.

pub mod batch;
pub mod connection;
pub mod identity;
pub mod partitioned;
pub mod producer;
pub mod sas;
pub mod sender;

#[cfg(test)]
mod tests;

pub use batch::BatchBuilder;
pub use connection::{Connection, ConnectionString};
pub use identity::ManagedIdentity;
pub use partitioned::PartitionedSender;
pub use producer::{Producer, ProducerSettings, ProducerTotals, Routing, send_all};
pub use sender::{RetryPolicy, Sender};

/// What can go wrong talking to Event Hubs; every message names the hub and never a secret.
#[derive(Debug, thiserror::Error)]
pub enum EventHubError {
    /// The connection string is missing a part or is not one.
    #[error("Event Hubs connection string: {0}")]
    Connection(String),
    /// The app's managed identity gave no token; `transient` when asking again may work (the
    /// endpoint was unreachable, throttled or failing).
    #[error("no managed identity token for Event Hubs: {reason}")]
    Identity { reason: String, transient: bool },
    /// One event cannot fit in a batch on its own.
    #[error(
        "an event of {size} bytes (order {partition_key}) cannot be sent: a batch holds at most {limit} bytes"
    )]
    TooLarge {
        size: usize,
        limit: usize,
        partition_key: String,
    },
    /// The hub answered with a status that retrying cannot fix (401, 403, 404, 413, ...).
    #[error("Event Hub '{hub}' refused a batch of {events} events: HTTP {status}{hint}: {detail}")]
    Refused {
        hub: String,
        events: usize,
        status: u16,
        hint: &'static str,
        detail: String,
    },
    /// 429, 5xx or the network kept failing until the retries ran out.
    #[error(
        "Event Hub '{hub}': a batch of {events} events still failed after {attempts} attempts: {last}"
    )]
    GaveUp {
        hub: String,
        events: usize,
        attempts: u32,
        last: String,
    },
    /// The hub's partition count could not be learned.
    #[error(
        "Event Hub '{hub}': cannot read its partition count ({reason}); give it instead (serve: EventHubPartitionCount, produce: --partitions)"
    )]
    PartitionCount { hub: String, reason: String },
    /// The producer's task for a hub ended before it was finished.
    #[error("the producer for Event Hub '{0}' stopped: {1}")]
    Stopped(String, String),
}
