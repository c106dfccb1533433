//! A bot's pending timers.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use guildhall_core::model::PluginTimer;

/// A bot's pending timers, due in wall-clock Unix milliseconds (they are persisted, so
/// they must mean the same after a restart). Storage holds the same set: a timer is
/// written when set and deleted when cancelled or after it fired (at least once: a crash
/// between firing and the delete fires it again after the restart).
#[derive(Default)]
pub(super) struct Timers {
    pub(super) due: BinaryHeap<Reverse<(u64, u64)>>,
    pub(super) payloads: HashMap<u64, String>,
    pub(super) next_id: u64,
}

impl Timers {
    pub(super) fn load(pending: Vec<PluginTimer>) -> Timers {
        let mut timers = Timers::default();
        for t in pending {
            timers.next_id = timers.next_id.max(t.id);
            timers.due.push(Reverse((t.due_unix_ms, t.id)));
            timers.payloads.insert(t.id, t.payload);
        }
        timers
    }
    pub(super) fn next_due(&self) -> Option<u64> {
        self.due.peek().map(|Reverse((t, _))| *t)
    }
    pub(super) fn pop_due(&mut self, now_unix_ms: u64) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        while let Some(Reverse((t, id))) = self.due.peek().copied() {
            if t > now_unix_ms {
                break;
            }
            self.due.pop();
            if let Some(payload) = self.payloads.remove(&id) {
                out.push((id, payload)); // a cancelled timer has no payload left
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_in_order_and_cancelled_ones_do_not() {
        let now = 1_000_000;
        let pending = [(1u64, 30u64), (2, 10), (3, 20)].map(|(id, ms)| PluginTimer {
            id,
            due_unix_ms: now + ms,
            payload: format!("p{id}"),
        });
        let mut t = Timers::load(pending.to_vec());
        assert_eq!(t.next_id, 3, "new ids continue after the loaded ones");
        t.payloads.remove(&3);
        assert_eq!(t.next_due(), Some(now + 10));
        assert!(t.pop_due(now).is_empty());
        let fired = t.pop_due(now + 40);
        assert_eq!(fired, vec![(2, "p2".to_owned()), (1, "p1".to_owned())]);
    }
}
