//! Co-partitioning: which partition index an order's events go to, on both hubs.
//!
//! Event Hubs maps a partition key to a partition with its own hash, consistently within one hub
//! but not across two: partition k of `bookings` and partition k of `payments` would hold
//! unrelated orders. Every boxoffice producer therefore picks the partition itself, from the
//! order id, with this rule, and sends to that partition index on both hubs:
//!
//! ```text
//! partition = CRC-32(UTF-8 bytes of order_id) mod partition_count
//! ```
//!
//! CRC-32 is the IEEE 802.3 polynomial (reflected 0xEDB88320, initial value and final XOR
//! 0xFFFFFFFF; the checksum of zlib, gzip and PNG): `CRC-32("123456789") = 0xCBF43926`. It is
//! stable across versions, platforms and languages, so any other producer can follow the same
//! rule and land an order next to boxoffice's.

/// The partition index of `order_id` on a hub of `partitions` partitions (at least 1).
pub fn partition_index(order_id: &str, partitions: u32) -> u32 {
    crc32fast::hash(order_id.as_bytes()) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_is_crc32_ieee_modulo_the_partition_count() {
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
        assert_eq!(partition_index("123456789", 4), 0xCBF4_3926 % 4);
        assert_eq!(partition_index("order_abc-1", 1), 0);
        assert_eq!(partition_index("order_abc-1", 0), 0);
        // Spread: 32 partitions all get orders.
        let used: std::collections::BTreeSet<u32> = (0..1000)
            .map(|n| partition_index(&format!("order_k2x9-{n}"), 32))
            .collect();
        assert_eq!(used.len(), 32);
    }
}
