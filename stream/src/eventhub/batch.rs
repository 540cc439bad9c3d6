//! The REST batch body: `[{"Body":"<event JSON>","BrokerProperties":{"PartitionKey":"<order_id>"}}, ...]`
//! (content type `application/vnd.microsoft.servicebus.json`), kept under a size limit.

use bytes::Bytes;

use super::EventHubError;

/// The most bytes a batch body may have by default: under the 1 MB (1,048,576) Event Hubs
/// Standard takes per batch, with room for what the service adds per event.
pub const DEFAULT_LIMIT: usize = 1_000_000;

/// A batch ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The JSON array, as sent; shared, so a retry does not copy it.
    pub body: Bytes,
    /// Events in it.
    pub events: usize,
}

/// Builds batches event by event, never past its limit.
#[derive(Debug)]
pub struct BatchBuilder {
    body: Vec<u8>,
    events: usize,
    limit: usize,
    entry: Vec<u8>,
}

impl BatchBuilder {
    /// A builder whose batches stay at or under `limit` bytes.
    pub fn new(limit: usize) -> BatchBuilder {
        BatchBuilder {
            body: Vec::with_capacity(limit.min(DEFAULT_LIMIT) + 1),
            events: 0,
            limit,
            entry: Vec::new(),
        }
    }

    /// Adds one event. `Ok(false)` means it did not fit and nothing was added: take the batch
    /// and push it again. An event too big for an empty batch is an error.
    pub fn push(&mut self, partition_key: &str, body: &str) -> Result<bool, EventHubError> {
        self.push_entry(Some(partition_key), body, partition_key)
    }

    /// Adds one event without a partition key, for a batch sent to one partition by its id
    /// (the service takes a key or a partition, not both). `order_id` only names it in errors.
    pub fn push_unkeyed(&mut self, order_id: &str, body: &str) -> Result<bool, EventHubError> {
        self.push_entry(None, body, order_id)
    }

    fn push_entry(
        &mut self,
        partition_key: Option<&str>,
        body: &str,
        order_id: &str,
    ) -> Result<bool, EventHubError> {
        self.entry.clear();
        self.entry.extend_from_slice(b"{\"Body\":");
        json_string(&mut self.entry, body);
        if let Some(key) = partition_key {
            self.entry
                .extend_from_slice(b",\"BrokerProperties\":{\"PartitionKey\":");
            json_string(&mut self.entry, key);
            self.entry.push(b'}');
        }
        self.entry.push(b'}');

        // What is built, `[` or `,`, the entry, and the closing `]`.
        let needed = self.body.len() + 1 + self.entry.len() + 1;
        if needed > self.limit {
            if self.events == 0 {
                return Err(EventHubError::TooLarge {
                    size: self.entry.len() + 2,
                    limit: self.limit,
                    partition_key: order_id.to_string(),
                });
            }
            return Ok(false);
        }
        self.body.push(if self.events == 0 { b'[' } else { b',' });
        self.body.extend_from_slice(&self.entry);
        self.events += 1;
        Ok(true)
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.events
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// The batch built so far, leaving the builder empty; `None` when it is.
    pub fn take(&mut self) -> Option<Batch> {
        if self.events == 0 {
            return None;
        }
        let mut body = std::mem::take(&mut self.body);
        body.push(b']');
        let events = std::mem::replace(&mut self.events, 0);
        Some(Batch {
            body: Bytes::from(body),
            events,
        })
    }
}

fn json_string(out: &mut Vec<u8>, text: &str) {
    // Writing a &str to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}
