//! Work kept apart from the runs, on a thread of its own.
//!
//! In continuous `up` the join's state checkpoint is encoded once a minute from a copy, seconds
//! of CPU while the join, Gold and the archivers keep both cores of a small machine busy. At the
//! same priority it took those seconds from the runs in one burst, and the lag of that minute's
//! events showed it (docs/performance.md, "Freshness in `up`"). At a lower priority
//! ([`spawn`]) it takes the cores' spare time and, when there is none, a small share, so it
//! finishes later and the runs barely notice.
//!
//! `up`'s table maintenance (compacting the small files of the last 15 seconds, a few
//! CPU-seconds a turn) is async code. On the main runtime it held one of its two workers for
//! seconds, and the runs' tasks queued behind it; it now runs on a runtime of its own
//! ([`spawn_async`]), at normal priority: at nice 10 its thousands of preemptions a minute made
//! every run slower (fewer runs a minute, a higher median lag), where at the same priority the
//! kernel simply shares the cores. A `boxoffice worker` runs its maintenance turns the same way,
//! so that its shards' cycles go on while a turn compacts.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

/// The nice value of background threads: a tenth of a normal thread's CPU share when both want
/// a core (the kernel's weights: 110 against 1,024).
const NICE: i32 = 10;

/// The result of work done on a background thread; awaiting it waits for the thread.
pub struct Background<T> {
    done: oneshot::Receiver<T>,
}

/// Why a background thread gave no result.
#[derive(Debug, thiserror::Error)]
#[error("the background thread stopped before it finished (it panicked, or could not start)")]
pub struct Stopped;

/// Runs `work` on a new thread named `name`, at a lower CPU priority.
pub fn spawn<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Background<T> {
    start(name, move || {
        lower_priority();
        work()
    })
}

/// Runs the future `work` makes on a new thread named `name`, driven by a runtime of its own
/// (its blocking threads, for file I/O, named after it), at the caller's priority. The error is
/// the runtime's, when it cannot start.
pub fn spawn_async<T, F, Fut>(name: &str, work: F) -> Background<std::io::Result<T>>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
{
    let blocking = format!("{name} (blocking)");
    start(name, move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name(blocking)
            .build()?;
        Ok(runtime.block_on(work()))
    })
}

/// Runs `work` on a new thread named `name`; its result, or [`Stopped`], when awaited.
fn start<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Background<T> {
    let (send, done) = oneshot::channel();
    let started = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            // The receiver gone means nobody waits for the result any more.
            let _ = send.send(work());
        });
    if let Err(e) = started {
        // `done` then reports `Stopped`: the sender was dropped with the closure.
        tracing::warn!(thread = name, error = %e, "could not start a background thread");
    }
    Background { done }
}

impl<T> Background<T> {
    /// The result if the work has finished, without waiting; `None` while it runs. Taken once:
    /// after a result, the next call says [`Stopped`].
    pub fn try_take(&mut self) -> Option<Result<T, Stopped>> {
        match self.done.try_recv() {
            Ok(result) => Some(Ok(result)),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(Err(Stopped)),
        }
    }
}

impl<T> Future for Background<T> {
    type Output = Result<T, Stopped>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.done).poll(cx).map_err(|_| Stopped)
    }
}

/// Lowers the calling thread's priority. On Linux a nice value belongs to a thread, so the
/// process's other threads keep theirs; elsewhere the work runs at normal priority.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // Never raise it: a process started with `nice` keeps at least its own.
        let nice = nice_of_this_thread().max(NICE);
        // SAFETY: setpriority takes plain integers and touches no memory; `who` 0 is the
        // calling thread on Linux.
        let set = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
        if set != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "background thread at normal priority");
        }
    }
}

/// The calling thread's nice value.
#[cfg(target_os = "linux")]
fn nice_of_this_thread() -> i32 {
    // SAFETY: as in `lower_priority`. (-1 is both an error and a nice value; an error cannot
    // happen for the calling thread.)
    unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_at_a_lower_priority_on_its_own_thread_and_leaves_the_callers_alone() {
        let before = nice_of_this_thread();
        let (name, nice) = spawn("background test", || {
            (
                std::thread::current().name().map(str::to_string),
                nice_of_this_thread(),
            )
        })
        .await
        .expect("a result");
        assert_eq!(name.as_deref(), Some("background test"));
        assert_eq!(nice, before.max(NICE));
        assert_eq!(
            nice_of_this_thread(),
            before,
            "the caller's thread keeps its priority"
        );
    }

    #[tokio::test]
    async fn async_work_runs_on_a_runtime_of_its_own_at_the_callers_priority() {
        let before = nice_of_this_thread();
        let (name, nice, blocking) = spawn_async("background runtime", || async {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            let blocking = tokio::task::spawn_blocking(|| {
                (
                    std::thread::current().name().map(str::to_string),
                    nice_of_this_thread(),
                )
            })
            .await
            .expect("a blocking thread");
            (
                std::thread::current().name().map(str::to_string),
                nice_of_this_thread(),
                blocking,
            )
        })
        .await
        .expect("a result")
        .expect("a runtime");
        assert_eq!(name.as_deref(), Some("background runtime"));
        assert_eq!(nice, before);
        assert_eq!(
            blocking,
            (Some("background runtime (blocking)".to_string()), before),
            "file I/O on the runtime's own blocking threads"
        );
    }

    #[test]
    fn a_result_is_taken_without_waiting_once_the_work_has_finished() {
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let mut running = spawn("background poll", move || {
            wait.recv().expect("told to finish");
            7
        });
        assert!(running.try_take().is_none(), "still waiting to be told");
        go.send(()).expect("the thread waits");
        assert_eq!(polled(&mut running).expect("a result"), 7);
        assert!(
            matches!(running.try_take(), Some(Err(Stopped))),
            "taken once"
        );
        let mut panicked = spawn("background panic poll", || -> u32 { panic!("on purpose") });
        assert!(matches!(polled(&mut panicked), Err(Stopped)));
    }

    /// `try_take` until it gives a result (at most 10 s).
    fn polled<T>(background: &mut Background<T>) -> Result<T, Stopped> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Some(result) = background.try_take() {
                return result;
            }
            assert!(std::time::Instant::now() < deadline, "no result in 10 s");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    #[tokio::test]
    async fn work_that_panics_is_reported_as_stopped() {
        let result = spawn("background panic", || -> u32 { panic!("on purpose") }).await;
        assert!(matches!(result, Err(Stopped)));
    }
}
