//! How long the allocator keeps memory it no longer uses before giving it back to the kernel.
//!
//! mimalloc returns ("purges") freed memory 1 s after it was freed. A join batch takes about as
//! long, so the memory one batch frees was handed back while the next batch ran, and the next
//! batch faulted it in again: 810,000 page faults and 2 s of kernel time over the 1M-booking
//! join. Keeping it 10 s removes a third of those faults (the rest is the first touch of the
//! peak) and 4% of the run's time, for about 300 MB more peak (docs/performance.md). A process
//! that goes idle still gives its memory back, 10 s later, so `up` and the Functions handler,
//! which run for days, do not hold their peak forever.

use std::ffi::{c_int, c_long};

/// mimalloc's `mi_option_purge_delay`: its index in mimalloc 3's `mi_option_e` (the crate's
/// default version; version 2 numbers it 15 as well). A test reads it back through the
/// environment variable of the same name.
const PURGE_DELAY: c_int = 15;

/// The delay we use, in milliseconds.
const KEEP_FREED_MS: c_long = 10_000;

/// The environment variable that sets the delay; when it is set, the user's value stands.
const PURGE_DELAY_ENV: &str = "MIMALLOC_PURGE_DELAY";

unsafe extern "C" {
    #[cfg(test)]
    fn mi_option_get(option: c_int) -> c_long;
    fn mi_option_set(option: c_int, value: c_long);
}

/// Keeps freed memory for [`KEEP_FREED_MS`] unless `MIMALLOC_PURGE_DELAY` says otherwise.
pub fn keep_freed_memory() {
    if std::env::var_os(PURGE_DELAY_ENV).is_none() {
        // SAFETY: both functions only read or write one option slot; mimalloc reads the delay
        // each time it considers purging, so setting it after start takes effect.
        unsafe { mi_option_set(PURGE_DELAY, KEEP_FREED_MS) }
    }
}

/// The purge delay mimalloc is using, in milliseconds (-1: never).
#[cfg(test)]
fn purge_delay_ms() -> c_long {
    // SAFETY: reads one option slot.
    unsafe { mi_option_get(PURGE_DELAY) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index is mimalloc's purge delay: a child process started with the environment
    /// variable reads that value at the index (nothing in a test sets the option first).
    #[test]
    fn purge_delay_index_is_read_from_the_environment() {
        if let Ok(value) = std::env::var("BOXOFFICE_TEST_PURGE_CHILD") {
            assert_eq!(purge_delay_ms().to_string(), value);
            return;
        }
        let exe = std::env::current_exe().expect("test binary path");
        let status = std::process::Command::new(exe)
            .args([
                "--quiet",
                "--exact",
                "memory::tests::purge_delay_index_is_read_from_the_environment",
            ])
            .env(PURGE_DELAY_ENV, "4321")
            .env("BOXOFFICE_TEST_PURGE_CHILD", "4321")
            .status()
            .expect("run the test binary again");
        assert!(
            status.success(),
            "the child read another value at the index"
        );
    }

    #[test]
    fn keeps_freed_memory_ten_seconds_unless_the_environment_says() {
        keep_freed_memory();
        let expected = match std::env::var(PURGE_DELAY_ENV) {
            Ok(v) => v.parse().expect("a number in MIMALLOC_PURGE_DELAY"),
            Err(_) => KEEP_FREED_MS,
        };
        assert_eq!(purge_delay_ms(), expected);
    }
}
