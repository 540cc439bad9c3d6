//! Work cut into shares, one thread each: the fact rows, the unpaid rows and the expectations of a
//! batch are millions of independent rows, and a batch waits for all of them.

/// Runs `work` on each of `shares` on a thread of its own and returns the results in the shares'
/// order. A panic in one is raised again here, as if the work had run on this thread.
pub(crate) fn on_threads<S: Sync, R: Send>(shares: &[S], work: impl Fn(&S) -> R + Sync) -> Vec<R> {
    let work = &work;
    std::thread::scope(|scope| {
        let workers: Vec<_> = shares
            .iter()
            .map(|share| scope.spawn(move || work(share)))
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}
