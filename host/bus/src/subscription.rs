//! A subscription: a stream of messages from either bus.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::message::Message;

/// A stream of messages; dropping it unsubscribes.
pub struct Subscription {
    pub(crate) inner: SubscriptionInner,
}

pub(crate) enum SubscriptionInner {
    /// The in-process bus: a bounded queue, its drop counter, and what unsubscribes when
    /// dropped.
    Local {
        rx: mpsc::Receiver<Message>,
        dropped: Arc<AtomicU64>,
        _unsubscribe: Box<dyn Send + Sync>,
    },
    Nats(async_nats::Subscriber),
}

impl Subscription {
    /// The next message; `None` once the bus is gone.
    pub async fn next(&mut self) -> Option<Message> {
        match &mut self.inner {
            SubscriptionInner::Local { rx, .. } => rx.recv().await,
            SubscriptionInner::Nats(s) => {
                use futures_util::StreamExt;
                s.next().await.map(|m| Message {
                    subject: m.subject.to_string(),
                    payload: m.payload,
                    reply: m.reply.map(|r| r.to_string()),
                })
            }
        }
    }

    /// Messages this subscription lost because it was full (in-process bus only: NATS
    /// reports its slow consumers to the client, which logs them).
    pub fn dropped(&self) -> u64 {
        match &self.inner {
            SubscriptionInner::Local { dropped, .. } => dropped.load(Relaxed),
            SubscriptionInner::Nats(_) => 0,
        }
    }
}
