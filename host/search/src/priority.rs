//! Indexing runs below request handling: on a machine the host saturates, the index lags (and
//! catches up when the load passes) instead of slowing every sender down. The indexing
//! threads run under Linux's `SCHED_IDLE` policy: any request thread that wakes takes the core
//! at once (a lower nice value only shares it, and a request waits its turn behind a running
//! indexer). A thread starts with its creator's policy, so tantivy's indexing and merging
//! threads have the policy of the thread that opens (or commits) a cell.

/// Runs `f` on a thread of its own that runs in the background if `background` (see the
/// module's comment), and returns what it returns. What `f` starts (threads) keeps that.
pub fn run_in_background<T: Send>(background: bool, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("guildhall-search-open".into())
            .spawn_scoped(scope, || {
                if background {
                    to_background();
                }
                f()
            })
            .expect("a thread starts")
            .join()
            .expect("opening search cells does not panic")
    })
}

/// Moves the calling thread to the background (`SCHED_IDLE`); a failure is logged (the
/// indexer then runs at the requests' priority).
pub fn to_background() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid sched_param; pid 0 is the calling thread on Linux.
    let done = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if done != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "could not move indexing to the background");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_background_thread_and_the_threads_it_starts_are_idle_priority() {
        let policies = super::run_in_background(true, || {
            let own = unsafe { libc::sched_getscheduler(0) };
            let child = std::thread::spawn(|| unsafe { libc::sched_getscheduler(0) }).join().unwrap();
            (own, child)
        });
        assert_eq!(policies, (libc::SCHED_IDLE, libc::SCHED_IDLE));
        assert_eq!(unsafe { libc::sched_getscheduler(0) }, libc::SCHED_OTHER, "the caller's own is left alone");
    }
}
