//! The in-process bus: subscriptions in a table, messages handed to bounded queues.

use guildhall_core::sync::LockUnpoisoned;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::bus::Bus;
use crate::message::{BusError, Message, SUBSCRIPTION_CAPACITY};
use crate::subject::{check_pattern, check_subject, matches};
use crate::subscription::{Subscription, SubscriptionInner};

/// The payload limit of a default nats-server, so that single-node code fits a cluster.
pub const LOCAL_MAX_PAYLOAD: usize = 1 << 20;

struct Entry {
    pattern: String,
    tx: mpsc::Sender<Message>,
    dropped: Arc<AtomicU64>,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    entries: HashMap<u64, Entry>,
}

type Shared = Arc<Mutex<Table>>;

fn lock(table: &Mutex<Table>) -> std::sync::MutexGuard<'_, Table> {
    table.lock_unpoisoned()
}

/// The bus of a single node. Cloning it gives another handle to the same bus.
#[derive(Clone, Default)]
pub struct LocalBus {
    table: Shared,
    next_inbox: Arc<AtomicU64>,
}

impl LocalBus {
    pub fn new() -> LocalBus {
        LocalBus::default()
    }

    /// Hands the message to every matching subscription; returns how many there were.
    fn deliver(&self, subject: &str, reply: Option<&str>, payload: Bytes) -> Result<usize, BusError> {
        check_subject(subject)?;
        if payload.len() > LOCAL_MAX_PAYLOAD {
            return Err(BusError::TooLarge { size: payload.len(), max: LOCAL_MAX_PAYLOAD });
        }
        let targets: Vec<(mpsc::Sender<Message>, Arc<AtomicU64>)> = lock(&self.table)
            .entries
            .values()
            .filter(|e| matches(&e.pattern, subject))
            .map(|e| (e.tx.clone(), e.dropped.clone()))
            .collect();
        for (tx, dropped) in &targets {
            let message =
                Message { subject: subject.to_owned(), payload: payload.clone(), reply: reply.map(str::to_owned) };
            if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(message) {
                dropped.fetch_add(1, Relaxed);
            }
        }
        Ok(targets.len())
    }

    fn subscribe_now(&self, pattern: &str) -> Result<Subscription, BusError> {
        check_pattern(pattern)?;
        let (tx, rx) = mpsc::channel(SUBSCRIPTION_CAPACITY);
        let dropped = Arc::new(AtomicU64::new(0));
        let mut table = lock(&self.table);
        let id = table.next_id;
        table.next_id += 1;
        table.entries.insert(id, Entry { pattern: pattern.to_owned(), tx, dropped: dropped.clone() });
        let unsubscribe = Box::new(Unsubscribe { id, table: Arc::downgrade(&self.table) });
        Ok(Subscription { inner: SubscriptionInner::Local { rx, dropped, _unsubscribe: unsubscribe } })
    }
}

#[async_trait]
impl Bus for LocalBus {
    async fn publish(&self, subject: &str, payload: Bytes) -> Result<(), BusError> {
        self.deliver(subject, None, payload).map(drop)
    }

    async fn publish_with_reply(&self, subject: &str, reply: &str, payload: Bytes) -> Result<(), BusError> {
        check_subject(reply)?;
        self.deliver(subject, Some(reply), payload).map(drop)
    }

    async fn subscribe(&self, pattern: &str) -> Result<Subscription, BusError> {
        self.subscribe_now(pattern)
    }

    async fn request(&self, subject: &str, payload: Bytes, timeout: Duration) -> Result<Bytes, BusError> {
        let inbox = format!("_INBOX.local.{}", self.next_inbox.fetch_add(1, Relaxed));
        let mut answers = self.subscribe_now(&inbox)?;
        if self.deliver(subject, Some(&inbox), payload)? == 0 {
            return Err(BusError::NoResponders(subject.to_owned()));
        }
        match tokio::time::timeout(timeout, answers.next()).await {
            Ok(Some(answer)) => Ok(answer.payload),
            Ok(None) => Err(BusError::Unavailable("bus closed".into())),
            Err(_) => Err(BusError::TimedOut(subject.to_owned())),
        }
    }

    async fn flush(&self) -> Result<(), BusError> {
        Ok(()) // delivery is immediate
    }

    fn max_payload(&self) -> usize {
        LOCAL_MAX_PAYLOAD
    }
}

/// Removes a subscription from the table when its [`Subscription`] is dropped.
struct Unsubscribe {
    id: u64,
    table: Weak<Mutex<Table>>,
}

impl Drop for Unsubscribe {
    fn drop(&mut self) {
        if let Some(table) = self.table.upgrade() {
            lock(&table).entries.remove(&self.id);
        }
    }
}
