//! Sending to partitions by id, chosen by the co-partitioning rule
//! ([`crate::partitioning::partition_index`]), so both hubs hold an order at the same index.

use super::EventHubError;
use super::producer::{ProducerTotals, send_all_with};
use super::sender::Sender;
use crate::partitioning::partition_index;

/// One hub's senders, one per partition.
#[derive(Debug)]
pub struct PartitionedSender {
    senders: Vec<Sender>,
}

impl PartitionedSender {
    /// Senders for every partition of `hub_sender`'s hub: `partitions` of them, or as many as
    /// the hub's description says when `None`.
    pub async fn open(
        hub_sender: &mut Sender,
        partitions: Option<u32>,
    ) -> Result<PartitionedSender, EventHubError> {
        let count = match partitions {
            Some(n) => n.max(1),
            None => hub_sender.partition_count().await?,
        };
        Ok(PartitionedSender {
            senders: (0..count).map(|p| hub_sender.to_partition(p)).collect(),
        })
    }

    /// The hub's partition count.
    pub fn partitions(&self) -> u32 {
        self.senders.len() as u32
    }

    /// Sends `(order_id, body)` events now, each to its order's partition, in as few batches
    /// per partition as fit, waiting for each; an order's events keep their order.
    pub async fn send_all(
        &mut self,
        events: &[(String, String)],
        max_batch_bytes: usize,
    ) -> Result<ProducerTotals, EventHubError> {
        let n = self.partitions();
        let mut by_partition: Vec<Vec<&(String, String)>> = vec![Vec::new(); n as usize];
        for event in events {
            by_partition[partition_index(&event.0, n) as usize].push(event);
        }
        let mut totals = ProducerTotals::default();
        for (sender, events) in self.senders.iter_mut().zip(by_partition) {
            if events.is_empty() {
                continue;
            }
            let sent = send_all_with(sender, &events, max_batch_bytes, |b, (key, body)| {
                b.push_unkeyed(key, body)
            })
            .await?;
            totals.add(sent);
        }
        Ok(totals)
    }

    /// The sender of one partition.
    pub fn partition(&mut self, index: u32) -> Option<&mut Sender> {
        self.senders.get_mut(index as usize)
    }
}
