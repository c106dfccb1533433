//! Time in the runtime. Everything here reads the time through the `Clock` the process
//! hands in (`GuildDeps::clock` and its likes): wall time for ids, timestamps, deadlines
//! that cross nodes and persisted timers; monotonic time for idleness, fault windows and
//! rate limits. Sleeps, intervals and timeouts are tokio's. The process's clock is the
//! server's `SystemClock`; tests use [`TokioClock`], which follows tokio's clock, so
//! that under `tokio::time::pause` the readings and the sleeps move together, in virtual
//! time, and a test of a timeout or an eviction asserts exactly when it happens.
//! `std::time::Instant` is left for measuring durations that only metrics see.

use guildhall_core::clock::Clock;

/// A clock that reads tokio's: virtual when a test pauses tokio's time (both readings
/// move by what `tokio::time::advance` or an auto-advance moves), real otherwise. Its
/// wall clock starts at `start_unix_ms` and never steps.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    start_unix_ms: u64,
    origin: tokio::time::Instant,
}

impl TokioClock {
    pub fn new(start_unix_ms: u64) -> TokioClock {
        TokioClock { start_unix_ms, origin: tokio::time::Instant::now() }
    }
}

impl Clock for TokioClock {
    fn unix_ms(&self) -> u64 {
        self.start_unix_ms + self.monotonic_ms()
    }
    fn monotonic_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn it_moves_with_tokios_paused_time_and_only_then() {
        let clock = TokioClock::new(1_000);
        assert_eq!((clock.unix_ms(), clock.monotonic_ms()), (1_000, 0));
        tokio::time::advance(Duration::from_millis(250)).await;
        assert_eq!((clock.unix_ms(), clock.monotonic_ms()), (1_250, 250));
        tokio::time::sleep(Duration::from_secs(60)).await; // auto-advanced: no real wait
        assert_eq!(clock.monotonic_ms(), 60_250);
    }
}
