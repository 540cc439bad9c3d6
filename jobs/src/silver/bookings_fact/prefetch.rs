//! Asking the CPU for memory before it is needed.
//!
//! The join and the fact rows visit millions of events that were built on other threads, in an
//! order unrelated to where they sit in memory: nearly every visit starts with a cache miss. The
//! order of the visits is known in advance, so the memory of the next few is requested while the
//! current one is worked on.

use std::sync::Arc;

/// Requests every cache line of the allocation behind `item`: its counts and the value.
pub fn arc<T>(item: &Arc<T>) {
    // The counts sit just before the value (std's layout today; were it to change, a hint would
    // only fetch a line too many or too few).
    let start = Arc::as_ptr(item).cast::<u8>().wrapping_sub(16);
    for offset in (0..16 + size_of::<T>()).step_by(64) {
        hint(start.wrapping_add(offset));
    }
}

/// An iterator over a slice's elements (borrowed or owned) that can show what it has left.
pub trait Remaining: Iterator {
    /// The element type of the slice.
    type Element;
    /// The elements not handed out yet.
    fn remaining(&self) -> &[Self::Element];
}

impl<T> Remaining for std::slice::Iter<'_, T> {
    type Element = T;
    fn remaining(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T> Remaining for std::vec::IntoIter<T> {
    type Element = T;
    fn remaining(&self) -> &[T] {
        self.as_slice()
    }
}

/// The items in order, each handed out after `fetch` has requested the memory of the one
/// `distance` places ahead.
pub fn walk<I: Remaining>(
    mut items: I,
    distance: usize,
    fetch: impl Fn(&I::Element),
) -> impl Iterator<Item = I::Item> {
    std::iter::from_fn(move || {
        if let Some(ahead) = items.remaining().get(distance) {
            fetch(ahead);
        }
        items.next()
    })
}

#[cfg(target_arch = "x86_64")]
fn hint(at: *const u8) {
    use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
    // SAFETY: a prefetch is a hint that never faults and changes no memory, whatever the address;
    // SSE, which it needs, is part of every x86_64 CPU.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(at.cast()) }
}

#[cfg(not(target_arch = "x86_64"))]
fn hint(_at: *const u8) {}
