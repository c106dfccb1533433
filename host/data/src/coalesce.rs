//! The coalescing rules, sans-IO: which reads share a query, who gets its answer, what a
//! write or a cancelled waiter changes. The tokio driver ([`crate::DataService`]'s workers)
//! runs the queries and carries the answers; this part only decides, so it is tested
//! without a runtime or a store.
//!
//! Invariants (asserted in debug builds): every flight has at least one waiter; `joinable`
//! points only at flights that exist, and at most one per key.

use std::collections::HashMap;
use std::hash::Hash;

/// A query in progress.
pub type FlightId = u64;

/// What a new read does.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// It joined the query in flight for the same key.
    Joined(FlightId),
    /// It needs a query of its own: the driver starts one and reports [`Coalescer::done`].
    Start(FlightId),
}

struct Flight<K, W> {
    key: K,
    waiters: Vec<(u64, W)>,
}

/// One worker's reads in flight. `K` names a read (channel and query), `W` is whatever
/// receives an answer (a channel sender in the driver).
pub struct Coalescer<K, W> {
    /// The flight a new identical read may join.
    joinable: HashMap<K, FlightId>,
    flights: HashMap<FlightId, Flight<K, W>>,
    next_flight: FlightId,
    /// Waiters one query may collect; beyond it a new query starts (bounds one answer's
    /// fan-out).
    max_waiters: usize,
}

impl<K: Copy + Eq + Hash, W> Coalescer<K, W> {
    pub fn new(max_waiters: usize) -> Self {
        assert!(max_waiters >= 1);
        Coalescer { joinable: HashMap::new(), flights: HashMap::new(), next_flight: 1, max_waiters }
    }

    /// A read of `key` by waiter `waiter_id`.
    pub fn read(&mut self, key: K, waiter_id: u64, waiter: W) -> Admit {
        if let Some(&id) = self.joinable.get(&key) {
            let flight = self.flights.get_mut(&id).expect("joinable flights exist");
            if flight.waiters.len() < self.max_waiters {
                flight.waiters.push((waiter_id, waiter));
                return Admit::Joined(id);
            }
        }
        let id = self.next_flight;
        self.next_flight += 1;
        self.flights.insert(id, Flight { key, waiters: vec![(waiter_id, waiter)] });
        self.joinable.insert(key, id);
        self.check();
        Admit::Start(id)
    }

    /// A waiter went away. Returns the flight to abort if nobody waits for it any more.
    pub fn cancel(&mut self, key: K, waiter_id: u64) -> Option<FlightId> {
        let (&id, flight) =
            self.flights.iter_mut().find(|(_, f)| f.key == key && f.waiters.iter().any(|(w, _)| *w == waiter_id))?;
        flight.waiters.retain(|(w, _)| *w != waiter_id);
        if !flight.waiters.is_empty() {
            return None;
        }
        self.forget(id);
        Some(id)
    }

    /// The query of `flight` finished: the waiters to give its answer to (none if it was
    /// cancelled meanwhile).
    pub fn done(&mut self, flight: FlightId) -> Vec<W> {
        match self.forget(flight) {
            Some(f) => f.waiters.into_iter().map(|(_, w)| w).collect(),
            None => Vec::new(),
        }
    }

    /// Writes matching `wrote` were acknowledged: reads in flight for them stop taking new
    /// waiters (they may have started before the write), so the next read queries again.
    pub fn wrote(&mut self, mut affected: impl FnMut(&K) -> bool) {
        self.joinable.retain(|key, _| !affected(key));
    }

    /// Queries in flight.
    pub fn in_flight(&self) -> usize {
        self.flights.len()
    }

    fn forget(&mut self, id: FlightId) -> Option<Flight<K, W>> {
        let flight = self.flights.remove(&id)?;
        if self.joinable.get(&flight.key) == Some(&id) {
            self.joinable.remove(&flight.key);
        }
        self.check();
        Some(flight)
    }

    fn check(&self) {
        debug_assert!(self.flights.values().all(|f| !f.waiters.is_empty()), "a flight without waiters");
        debug_assert!(
            self.joinable.iter().all(|(k, id)| self.flights.get(id).is_some_and(|f| f.key == *k)),
            "joinable points at a missing flight"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type C = Coalescer<(u64, u8), &'static str>;

    #[test]
    fn identical_reads_share_one_query_and_all_get_its_answer() {
        let mut c = C::new(10);
        assert_eq!(c.read((1, 0), 1, "a"), Admit::Start(1));
        assert_eq!(c.read((1, 0), 2, "b"), Admit::Joined(1));
        assert_eq!(c.read((1, 1), 3, "other query"), Admit::Start(2));
        assert_eq!(c.read((2, 0), 4, "other channel"), Admit::Start(3));
        assert_eq!(c.done(1), ["a", "b"]);
        assert_eq!(c.read((1, 0), 5, "after"), Admit::Start(4), "a finished query takes no one");
        assert_eq!(c.in_flight(), 3);
    }

    #[test]
    fn a_full_query_starts_another() {
        let mut c = C::new(2);
        c.read((1, 0), 1, "a");
        c.read((1, 0), 2, "b");
        assert_eq!(c.read((1, 0), 3, "c"), Admit::Start(2));
        assert_eq!(c.read((1, 0), 4, "d"), Admit::Joined(2), "new readers join the newest query");
        assert_eq!(c.done(1), ["a", "b"]);
        assert_eq!(c.done(2), ["c", "d"]);
    }

    #[test]
    fn a_query_is_abandoned_only_when_its_last_waiter_leaves() {
        let mut c = C::new(10);
        c.read((1, 0), 1, "a");
        c.read((1, 0), 2, "b");
        assert_eq!(c.cancel((1, 0), 1), None, "b still waits");
        assert_eq!(c.cancel((1, 0), 9), None, "unknown waiters change nothing");
        assert_eq!(c.cancel((1, 0), 2), Some(1));
        assert_eq!(c.done(1), Vec::<&str>::new(), "a late answer finds nobody");
        assert_eq!(c.read((1, 0), 3, "c"), Admit::Start(2));
    }

    #[test]
    fn after_a_write_new_reads_do_not_join_older_queries() {
        let mut c = C::new(10);
        c.read((1, 0), 1, "before the write");
        c.read((2, 0), 2, "other channel");
        c.wrote(|&(channel, _)| channel == 1);
        assert_eq!(c.read((1, 0), 3, "after the write"), Admit::Start(3));
        assert_eq!(c.read((2, 0), 4, "unaffected"), Admit::Joined(2));
        // The old query still answers its own waiter, and does not unlink the new one.
        assert_eq!(c.done(1), ["before the write"]);
        assert_eq!(c.read((1, 0), 5, "joins the new one"), Admit::Joined(3));
    }
}
