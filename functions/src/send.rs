//! Sending events to the hubs co-partitioned, over the Event Hubs REST API.
//!
//! A custom handler's Event Hub output binding takes only message bodies: it cannot set a
//! partition key (a .NET-only feature), let alone a partition. Events sent through it are spread
//! by Event Hubs, so partition k of `bookings` and partition k of `payments` hold unrelated
//! orders. With a connection string that has a key, or an identity-based connection inside Azure
//! (a managed identity's token), `generate` and `ingest` send over REST instead, each event to
//! partition `CRC-32(order_id) mod partition count` of its hub
//! ([`boxoffice_ingest::partitioning`]), the same index on both hubs.

use std::collections::HashMap;

use boxoffice_events::Hub;
use boxoffice_ingest::eventhub::{EventHubError, PartitionedSender, Sender};
use tokio::sync::Mutex;

/// REST senders for both hubs, each opened (its partition count read) on first use.
pub struct DirectSend {
    hubs: HashMap<Hub, Mutex<Lane>>,
    /// The most bytes per batch.
    pub max_batch_bytes: usize,
}

struct Lane {
    sender: Sender,
    partitions: Option<u32>,
    open: Option<PartitionedSender>,
}

impl DirectSend {
    /// Senders for `senders`' hubs; `partitions` is the hubs' partition count when known (else
    /// each hub's description is read before its first send).
    pub fn new(
        senders: Vec<(Hub, Sender)>,
        partitions: Option<u32>,
        max_batch_bytes: usize,
    ) -> DirectSend {
        DirectSend {
            hubs: senders
                .into_iter()
                .map(|(hub, sender)| {
                    let lane = Lane {
                        sender,
                        partitions,
                        open: None,
                    };
                    (hub, Mutex::new(lane))
                })
                .collect(),
            max_batch_bytes,
        }
    }

    /// Sends `(order_id, body)` events to `hub`, each to its order's partition, and returns
    /// once the hub has taken all of them. Sends to one hub take turns, so an order's events
    /// reach their partition in the order they were sent.
    pub async fn send(&self, hub: Hub, events: &[(String, String)]) -> Result<(), EventHubError> {
        if events.is_empty() {
            return Ok(());
        }
        let Some(lane) = self.hubs.get(&hub) else {
            return Err(EventHubError::Stopped(hub.to_string(), "no sender".into()));
        };
        let mut lane = lane.lock().await;
        let lane = &mut *lane;
        if lane.open.is_none() {
            lane.open = Some(PartitionedSender::open(&mut lane.sender, lane.partitions).await?);
        }
        match lane.open.as_mut() {
            Some(senders) => senders
                .send_all(events, self.max_batch_bytes)
                .await
                .map(|_| ()),
            None => Ok(()),
        }
    }
}
