//! The operating system's clocks: the process's [`Clock`]. It is made once where a
//! process is composed (`serve` here, the tools in the `guildhall` binary) and handed to
//! everything else as an `Arc<dyn Clock>`, so that below the composition root time is
//! always passed in: a test composes the same parts with a clock it controls
//! (`ManualClock`, or the runtime's `TokioClock` under tokio's paused time).
//! `deploy/dev/check-layers` keeps the OS clock here.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use guildhall_core::clock::Clock;

/// Wall time from the system clock (it may step, as NTP steps it: the id generator waits
/// out small backward steps and refuses large ones); monotonic time from the first reading
/// in the process.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn unix_ms(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
    }
    fn unix_us(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
    }
    fn monotonic_ms(&self) -> u64 {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        ORIGIN.get_or_init(Instant::now).elapsed().as_millis() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_readings_move_forwards() {
        let (wall, mono) = (SystemClock.unix_ms(), SystemClock.monotonic_ms());
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(SystemClock.monotonic_ms() >= mono + 5);
        assert!(SystemClock.unix_ms() >= wall, "no step expected in a test run");
        assert!(wall > 1_600_000_000_000, "a Unix time in milliseconds");
        let us = SystemClock.unix_us();
        assert!(us / 1000 >= wall && us / 1000 <= SystemClock.unix_ms(), "microseconds of the same clock");
    }
}
