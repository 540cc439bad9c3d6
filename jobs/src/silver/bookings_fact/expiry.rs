//! What the join keeps, ordered by when it may be forgotten.

use std::collections::BTreeMap;

use super::join::Micros;

/// Width of a bucket.
const BUCKET: Micros = 1_000_000;

/// Items by expiry time, in one-second buckets. Times arrive nearly in order, so pushes land in
/// the last few buckets and eviction drains whole buckets front to back: both stay in cache,
/// where a binary heap of millions of entries misses it at every level of every pop.
#[derive(Debug, Clone)]
pub struct ExpiryQueue<T> {
    buckets: BTreeMap<Micros, Vec<(Micros, T)>>,
}

impl<T> Default for ExpiryQueue<T> {
    fn default() -> Self {
        ExpiryQueue {
            buckets: BTreeMap::new(),
        }
    }
}

impl<T> ExpiryQueue<T> {
    /// Remembers that `item` expires at `at`.
    pub fn push(&mut self, at: Micros, item: T) {
        self.buckets
            .entry(at.div_euclid(BUCKET))
            .or_default()
            .push((at, item));
    }

    /// Removes every item that expires before `watermark` and hands it to `expired`: in order of
    /// expiry second, and within a second in the order they were pushed.
    pub fn pop_before(&mut self, watermark: Micros, mut expired: impl FnMut(T)) {
        let current = watermark.div_euclid(BUCKET);
        while let Some(mut entry) = self.buckets.first_entry() {
            let bucket = *entry.key();
            if bucket < current {
                // Every item here expires before the watermark's second begins.
                entry
                    .remove()
                    .into_iter()
                    .for_each(|(_, item)| expired(item));
                continue;
            }
            if bucket == current {
                let (due, kept): (Vec<_>, Vec<_>) = std::mem::take(entry.get_mut())
                    .into_iter()
                    .partition(|(at, _)| *at < watermark);
                if kept.is_empty() {
                    entry.remove();
                } else {
                    *entry.get_mut() = kept;
                }
                due.into_iter().for_each(|(_, item)| expired(item));
            }
            break;
        }
    }

    /// Items held.
    pub fn len(&self) -> usize {
        self.buckets.values().map(Vec::len).sum()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn popped(q: &mut ExpiryQueue<u32>, watermark: Micros) -> Vec<u32> {
        let mut out = Vec::new();
        q.pop_before(watermark, |i| out.push(i));
        out
    }

    #[test]
    fn pops_exactly_what_expires_before_the_watermark_in_expiry_order() {
        let mut q = ExpiryQueue::default();
        q.push(2_500_000, 3);
        q.push(500_000, 1);
        q.push(2_400_000, 2);
        q.push(-1, 0);
        q.push(2_600_000, 4);
        assert_eq!(popped(&mut q, 0), vec![0]);
        assert_eq!(popped(&mut q, 2_500_000), vec![1, 2]);
        assert_eq!(q.len(), 2);
        assert_eq!(popped(&mut q, 2_500_001), vec![3]);
        assert_eq!(popped(&mut q, 2_600_000), Vec::<u32>::new());
        assert_eq!(popped(&mut q, Micros::MAX), vec![4]);
        assert!(q.is_empty());
    }
}
