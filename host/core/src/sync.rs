//! Locking a `std::sync::Mutex` whatever became of a holder that panicked.
//!
//! The host's mutexes guard small tables (registries, rate windows, caches) whose every
//! update is complete before its guard is dropped: a panic elsewhere while one was held
//! leaves them consistent, so the lock is taken as it is rather than spreading the panic
//! to every later caller. Pure: no IO, as everything in the core.

use std::sync::{Mutex, MutexGuard};

pub trait LockUnpoisoned<T: ?Sized> {
    /// The guard, even if a holder panicked.
    fn lock_unpoisoned(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> LockUnpoisoned<T> for Mutex<T> {
    fn lock_unpoisoned(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicked_holder_leaves_the_value_reachable() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let held = m.clone();
        let _ = std::thread::spawn(move || {
            let _guard = held.lock().unwrap();
            panic!("while holding");
        })
        .join();
        assert!(m.is_poisoned());
        *m.lock_unpoisoned() += 1;
        assert_eq!(*m.lock_unpoisoned(), 2);
    }
}
