//! Replies as plain data: a command carries a [`ReplyTo`] (the asking node and a
//! correlation id), never a channel, so it can cross a process boundary unchanged. The
//! asking side keeps the waiting callers in [`Replies`] and matches answers to them.
//!
//! Every waiter removes its entry when it goes away (answered, timed out or cancelled), so
//! the table holds only calls in flight: it is bounded by the callers' own timeouts.

use guildhall_core::sync::LockUnpoisoned;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};

use guildhall_core::clock::Clock;
use guildhall_core::guild::{GuildError, Reply};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// A node of the cluster (a single host is node 0 of its own cluster of one).
pub type NodeId = u16;

/// Where a command's answer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReplyTo {
    pub node: NodeId,
    pub correlation: u64,
}

pub type CommandResult = Result<Reply, GuildError>;

/// Carries answers to callers on other nodes (the cluster's transport implements it; the
/// receiving node hands them to its own [`Replies::deliver`]).
pub trait ReplyTransport: Send + Sync {
    fn send_reply(&self, to: ReplyTo, result: CommandResult);
}

/// The callers of this node waiting for answers, by correlation id.
pub struct Replies {
    node: NodeId,
    /// The node's clock: a caller's deadline travels with its command as a wall time on it.
    clock: Arc<dyn Clock>,
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, oneshot::Sender<CommandResult>>>,
    /// How answers for other nodes' callers leave this one (none in a single process).
    transport: OnceLock<Arc<dyn ReplyTransport>>,
}

impl Replies {
    pub fn new(node: NodeId, clock: Arc<dyn Clock>) -> Arc<Replies> {
        Arc::new(Replies {
            node,
            clock,
            next: AtomicU64::new(1),
            waiting: Mutex::new(HashMap::new()),
            transport: OnceLock::new(),
        })
    }

    pub fn node(&self) -> NodeId {
        self.node
    }

    /// The node's clock.
    pub fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    /// Set once, when the node joins a cluster. False if one was set already.
    pub fn set_transport(&self, transport: Arc<dyn ReplyTransport>) -> bool {
        self.transport.set(transport).is_ok()
    }

    /// A new address to answer to, and the waiter that receives the answer.
    pub fn expect(self: &Arc<Self>) -> (ReplyTo, Waiter) {
        let correlation = self.next.fetch_add(1, Relaxed);
        let (tx, rx) = oneshot::channel();
        self.lock().insert(correlation, tx);
        (ReplyTo { node: self.node, correlation }, Waiter { replies: self.clone(), correlation, rx })
    }

    /// Hands an answer to its waiter, here or (through the transport) on the caller's node.
    /// An answer nobody waits for any more (the caller gave up) is dropped.
    pub fn deliver(&self, to: ReplyTo, result: CommandResult) {
        if to.node != self.node {
            match self.transport.get() {
                Some(transport) => transport.send_reply(to, result),
                None => debug_assert!(false, "a reply for node {} and no transport to carry it", to.node),
            }
            return;
        }
        if let Some(waiter) = self.lock().remove(&to.correlation) {
            let _ = waiter.send(result);
        }
    }

    /// Callers waiting right now.
    pub fn waiting(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<CommandResult>>> {
        self.waiting.lock_unpoisoned()
    }
}

/// One caller's pending answer. Dropping it (a timeout, a cancelled request) forgets the
/// entry, so a late answer finds nobody and nothing leaks.
pub struct Waiter {
    replies: Arc<Replies>,
    correlation: u64,
    rx: oneshot::Receiver<CommandResult>,
}

impl Waiter {
    /// The answer; `None` if the answering side dropped the request without one.
    pub async fn answer(&mut self) -> Option<CommandResult> {
        (&mut self.rx).await.ok()
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.replies.lock().remove(&self.correlation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_reach_their_waiter_and_abandoned_waits_leave_nothing() {
        let replies = Replies::new(3, Arc::new(guildhall_core::clock::ManualClock::new(0)));
        let (to_a, mut a) = replies.expect();
        let (to_b, b) = replies.expect();
        assert_eq!((to_a.node, replies.waiting()), (3, 2));
        assert_ne!(to_a.correlation, to_b.correlation);
        replies.deliver(to_a, Ok(Reply::Done));
        assert_eq!(a.answer().await, Some(Ok(Reply::Done)));
        drop(a);
        drop(b); // gave up (a timeout)
        assert_eq!(replies.waiting(), 0, "no entry outlives its caller");
        replies.deliver(to_b, Ok(Reply::Done)); // late: nobody to tell, nothing happens
        assert_eq!(replies.waiting(), 0);
    }
}
