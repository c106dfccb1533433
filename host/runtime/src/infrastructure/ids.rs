//! The id generator: [`IdState`] (pure, in core) driven by a [`Clock`], shared by threads.
//! A host's generator also keeps within its reservation (see the server's
//! `id_reservation`): ids only for times a file on disk says were reserved, so that a
//! restart, whatever its clock says, starts past everything issued before.

use guildhall_core::sync::LockUnpoisoned;
use std::sync::atomic::{AtomicU64, Ordering::Acquire};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use guildhall_core::clock::Clock;
use guildhall_core::guild::{Command, GuildError, MessageCommand};
use guildhall_core::snowflake::{IdState, NextIdError};
use guildhall_core::Snowflake;

/// A thread-safe generator. Waits out sequence exhaustion and small backward clock steps
/// (up to `max_backwards_wait_ms`); a larger backward step is an error, never a duplicate.
pub struct Generator {
    state: Mutex<IdState>,
    clock: Arc<dyn Clock>,
    max_backwards_wait_ms: u64,
    /// Unix ms up to which ids are reserved on disk; none issued at or past it. `None`:
    /// no reservation (tools and tests).
    reserved_until: Option<Arc<AtomicU64>>,
}

impl Generator {
    /// Ids on `clock`, waiting out backward steps of up to 10 ms.
    pub fn new(datacenter: u8, worker: u8, clock: Arc<dyn Clock>) -> Self {
        Generator::with_clock(datacenter, worker, clock, 10)
    }

    /// A host's generator: nothing before `not_before_unix_ms` (what its last run
    /// reserved), nothing at or past `reserved_until` (what this run has reserved so far).
    pub fn reserved(
        datacenter: u8,
        worker: u8,
        not_before_unix_ms: u64,
        reserved_until: Arc<AtomicU64>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Generator {
            state: Mutex::new(IdState::new(datacenter, worker).not_before(not_before_unix_ms)),
            clock,
            max_backwards_wait_ms: 10,
            reserved_until: Some(reserved_until),
        }
    }

    pub fn with_clock(datacenter: u8, worker: u8, clock: Arc<dyn Clock>, max_backwards_wait_ms: u64) -> Self {
        Generator {
            state: Mutex::new(IdState::new(datacenter, worker)),
            clock,
            max_backwards_wait_ms,
            reserved_until: None,
        }
    }

    /// Gives a new message its id at the moment its actor decides (so that within an
    /// actor id order is decision order); other commands are left as they are.
    pub fn stamp(&self, command: &mut Command) -> Result<(), GuildError> {
        if let Command::Message(MessageCommand::Create { id, .. }) = command {
            *id = self.next_id().map_err(|e| GuildError::Storage(format!("cannot generate ids: {e}")))?;
        }
        Ok(())
    }

    pub fn next_id(&self) -> Result<Snowflake, NextIdError> {
        // Bounded: a small backward step or an exhausted millisecond resolves within
        // max_backwards_wait_ms + 1 ms of real time; anything else returns an error.
        let mut state = self.state.lock_unpoisoned();
        loop {
            let now = self.clock.unix_ms();
            if self.reserved_until.as_ref().is_some_and(|until| now >= until.load(Acquire)) {
                return Err(NextIdError::Unreserved);
            }
            match state.next(now) {
                Ok(id) => return Ok(id),
                Err(NextIdError::SequenceExhausted) => std::thread::yield_now(),
                Err(NextIdError::ClockBehind { behind_ms }) if behind_ms <= self.max_backwards_wait_ms => {
                    std::thread::sleep(Duration::from_millis(behind_ms.min(1)))
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use guildhall_core::clock::ManualClock;
    use guildhall_core::snowflake::DISCORD_EPOCH_MS;
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    const T0: u64 = DISCORD_EPOCH_MS + 300_000_000_000;

    /// A clock that moves forwards 1 ms per reading (a test may set it back).
    struct SteppingClock(AtomicU64);
    impl Clock for SteppingClock {
        fn unix_ms(&self) -> u64 {
            self.0.fetch_add(1, Ordering::SeqCst)
        }
        fn monotonic_ms(&self) -> u64 {
            0
        }
    }

    #[test]
    fn nothing_is_issued_outside_the_reservation() {
        let clock = Arc::new(ManualClock::new(T0));
        let reserved = Arc::new(AtomicU64::new(T0 + 60_000));
        // The last run reserved up to T0 + 50 ms: nothing before it, then ids.
        let g = Generator::reserved(0, 1, T0 + 50, reserved.clone(), clock.clone());
        assert_eq!(g.next_id(), Err(NextIdError::ClockBehind { behind_ms: 50 }), "too far back to wait for");
        clock.advance(50);
        assert_eq!(g.next_id().unwrap().unix_ms(), T0 + 50);
        // The reservation ran out (it could not be extended): no more ids.
        reserved.store(T0 + 50, Ordering::SeqCst);
        assert_eq!(g.next_id(), Err(NextIdError::Unreserved));
    }

    #[test]
    fn generator_waits_out_small_backward_step_and_rejects_large_one() {
        let clock = Arc::new(SteppingClock(AtomicU64::new(T0)));
        let g = Generator::with_clock(0, 0, clock.clone(), 10);
        let a = g.next_id().unwrap();
        clock.0.store(T0 - 5, Ordering::SeqCst);
        let b = g.next_id().unwrap();
        assert!(b > a, "small step waited out");
        clock.0.store(T0 - 1_000, Ordering::SeqCst);
        assert!(matches!(g.next_id(), Err(NextIdError::ClockBehind { .. })));
        // And after the clock catches up, ids keep increasing.
        clock.0.store(T0 + 100, Ordering::SeqCst);
        assert!(g.next_id().unwrap() > b);
    }

    #[test]
    fn strictly_increasing_and_unique_across_four_threads() {
        let mut handles = Vec::new();
        for worker in 0..4u8 {
            handles.push(std::thread::spawn(move || {
                let g = Generator::new(1, worker, Arc::new(SteppingClock(AtomicU64::new(T0))));
                let mut ids = Vec::with_capacity(100_000);
                for _ in 0..100_000 {
                    ids.push(g.next_id().unwrap());
                }
                assert!(ids.windows(2).all(|w| w[0] < w[1]), "strictly increasing per generator");
                ids
            }));
        }
        let mut all = HashSet::new();
        for h in handles {
            for id in h.join().unwrap() {
                assert!(all.insert(id), "duplicate id {id}");
            }
        }
        assert_eq!(all.len(), 400_000);
    }

    #[test]
    fn shared_generator_is_unique_under_contention() {
        let g = Arc::new(Generator::new(0, 0, Arc::new(SteppingClock(AtomicU64::new(T0)))));
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let g = g.clone();
                std::thread::spawn(move || (0..50_000).map(|_| g.next_id().unwrap()).collect::<Vec<_>>())
            })
            .collect();
        let mut all = HashSet::new();
        for h in hs {
            for id in h.join().unwrap() {
                assert!(all.insert(id));
            }
        }
    }
}
