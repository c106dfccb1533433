//! The coalescing rules, sans-IO: which reads share a query, who gets its answer, what a
//! write or a cancelled waiter changes. The tokio driver ([`crate::DataService`]'s workers)
//! runs the queries and carries the answers; this part only decides, so it is tested
//! without a runtime or a store.
//!
//! Invariants (asserted in debug builds): every flight has at least one waiter; `joinable`
//! points only at flights that exist, and at most one per key.
//!
//! [`Recent`] keeps a finished query's answer joinable a moment longer (the linger), under
//! the same rule as a flight: only while no write to its channel was acknowledged since the
//! query started. A burst of identical reads that arrives spread over more time than one
//! query takes then still costs one query.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

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
    /// cancelled meanwhile), and its key if no write invalidated it while it ran (so its
    /// answer may linger, see [`Recent`]).
    pub fn done(&mut self, flight: FlightId) -> (Vec<W>, Option<K>) {
        let fresh = self.flights.get(&flight).filter(|f| self.joinable.get(&f.key) == Some(&flight)).map(|f| f.key);
        match self.forget(flight) {
            Some(f) => (f.waiters.into_iter().map(|(_, w)| w).collect(), fresh),
            None => (Vec::new(), None),
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

/// Answers of finished queries that new identical reads may still take, for `linger`
/// after the query finished, until a write to their channel is acknowledged. At most
/// `capacity` answers (expired ones are swept first; beyond it answers are not kept).
pub struct Recent<K, A> {
    linger: Duration,
    capacity: usize,
    answers: HashMap<K, (Instant, A)>,
}

impl<K: Copy + Eq + Hash, A: Clone> Recent<K, A> {
    pub fn new(linger: Duration, capacity: usize) -> Self {
        Recent { linger, capacity, answers: HashMap::new() }
    }

    /// The answer a read of `key` arriving at `now` may take.
    pub fn get(&mut self, key: &K, now: Instant) -> Option<A> {
        match self.answers.get(key) {
            Some((until, answer)) if now < *until => Some(answer.clone()),
            Some(_) => {
                self.answers.remove(key);
                None
            }
            None => None,
        }
    }

    /// A fresh answer (see [`Coalescer::done`]) of a query that finished at `now`.
    pub fn keep(&mut self, key: K, answer: A, now: Instant) {
        if self.linger.is_zero() {
            return;
        }
        if self.answers.len() >= self.capacity {
            self.answers.retain(|_, (until, _)| now < *until);
            if self.answers.len() >= self.capacity {
                return;
            }
        }
        self.answers.insert(key, (now + self.linger, answer));
    }

    /// Writes matching `affected` were acknowledged: their answers go.
    pub fn wrote(&mut self, mut affected: impl FnMut(&K) -> bool) {
        self.answers.retain(|key, _| !affected(key));
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
        assert_eq!(c.done(1), (vec!["a", "b"], Some((1, 0))));
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
        assert_eq!(c.done(1).0, ["a", "b"]);
        assert_eq!(c.done(2).0, ["c", "d"]);
    }

    #[test]
    fn a_query_is_abandoned_only_when_its_last_waiter_leaves() {
        let mut c = C::new(10);
        c.read((1, 0), 1, "a");
        c.read((1, 0), 2, "b");
        assert_eq!(c.cancel((1, 0), 1), None, "b still waits");
        assert_eq!(c.cancel((1, 0), 9), None, "unknown waiters change nothing");
        assert_eq!(c.cancel((1, 0), 2), Some(1));
        assert_eq!(c.done(1), (Vec::<&str>::new(), None), "a late answer finds nobody");
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
        assert_eq!(c.done(1), (vec!["before the write"], None), "invalidated: its answer may not linger");
        assert_eq!(c.read((1, 0), 5, "joins the new one"), Admit::Joined(3));
    }

    #[test]
    fn a_fresh_answer_lingers_until_its_time_is_up_or_its_channel_is_written() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut recent: Recent<(u64, u8), &str> = Recent::new(ms(20), 2);
        recent.keep((1, 0), "page", t0);
        assert_eq!(recent.get(&(1, 0), t0 + ms(19)), Some("page"));
        assert_eq!(recent.get(&(1, 1), t0), None, "another query");
        assert_eq!(recent.get(&(1, 0), t0 + ms(20)), None, "expired");
        recent.keep((1, 0), "page", t0);
        recent.keep((2, 0), "other", t0);
        recent.wrote(|&(channel, _)| channel == 1);
        assert_eq!(recent.get(&(1, 0), t0), None, "a write to the channel ends it");
        assert_eq!(recent.get(&(2, 0), t0), Some("other"));
        recent.keep((3, 0), "a", t0);
        recent.keep((4, 0), "full", t0);
        assert_eq!(recent.get(&(4, 0), t0), None, "beyond the capacity nothing is kept");
        recent.keep((4, 0), "swept", t0 + ms(30));
        assert_eq!(recent.get(&(4, 0), t0 + ms(30)), Some("swept"), "expired answers make room");
        let mut off: Recent<(u64, u8), &str> = Recent::new(Duration::ZERO, 2);
        off.keep((1, 0), "page", t0);
        assert_eq!(off.get(&(1, 0), t0), None, "no linger: nothing kept");
    }
}
