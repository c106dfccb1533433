//! Time, as the state machines see it: a value passed in, never read by them.
//!
//! [`Clock`] is the one time source of the process. The state machines of this crate take
//! the time as an input (`now_ms` in their inputs, timestamps inside commands); the runtime
//! reads a `Clock` at its edge and passes the reading in, and tests pass a [`ManualClock`].
//! The clock that reads the operating system's clocks is not here (this crate does no IO):
//! it is the server's `SystemClock`, named only where the process is composed, which
//! hands it to everything below as an `Arc<dyn Clock>`.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::snowflake::iso8601_from_unix_ms;

pub trait Clock: Send + Sync {
    /// Wall-clock time in Unix milliseconds (ids, timestamps, persisted timers).
    fn unix_ms(&self) -> u64;
    /// Milliseconds on a monotonic clock with an arbitrary origin (deadlines, rate windows).
    fn monotonic_ms(&self) -> u64;
    /// Wall-clock time in Unix microseconds, for timestamps that cross processes (a
    /// benchmark's send time in a message); as fine as `unix_ms` unless a clock knows better.
    fn unix_us(&self) -> u64 {
        self.unix_ms() * 1000
    }
    /// `unix_ms` as Discord's ISO 8601 timestamp.
    fn iso_now(&self) -> String {
        iso8601_from_unix_ms(self.unix_ms())
    }
}

/// A clock that moves only when told to (tests). Both readings advance together.
#[derive(Debug, Default)]
pub struct ManualClock {
    unix_ms: AtomicU64,
    monotonic_ms: AtomicU64,
}

impl ManualClock {
    pub fn new(unix_ms: u64) -> ManualClock {
        ManualClock { unix_ms: AtomicU64::new(unix_ms), monotonic_ms: AtomicU64::new(0) }
    }
    pub fn advance(&self, ms: u64) {
        self.unix_ms.fetch_add(ms, Ordering::SeqCst);
        self.monotonic_ms.fetch_add(ms, Ordering::SeqCst);
    }
    /// Sets the wall clock only (it may step backwards; the monotonic clock never does).
    pub fn set_unix_ms(&self, unix_ms: u64) {
        self.unix_ms.store(unix_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn unix_ms(&self) -> u64 {
        self.unix_ms.load(Ordering::SeqCst)
    }
    fn monotonic_ms(&self) -> u64 {
        self.monotonic_ms.load(Ordering::SeqCst)
    }
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn unix_ms(&self) -> u64 {
        (**self).unix_ms()
    }
    fn monotonic_ms(&self) -> u64 {
        (**self).monotonic_ms()
    }
    fn unix_us(&self) -> u64 {
        (**self).unix_us()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(1_000);
        assert_eq!((c.unix_ms(), c.monotonic_ms()), (1_000, 0));
        c.advance(5);
        assert_eq!((c.unix_ms(), c.monotonic_ms()), (1_005, 5));
        c.set_unix_ms(10);
        assert_eq!((c.unix_ms(), c.monotonic_ms()), (10, 5), "the wall clock may step back; monotonic never");
        assert_eq!(ManualClock::new(0).iso_now(), "1970-01-01T00:00:00.000000+00:00");
    }
}
