//! The bus: publish/subscribe and request/reply, the way nodes (and plugins) talk.
//!
//! One narrow seam ([`Bus`]) with two implementations:
//! - [`LocalBus`]: in-process, the single-node default; nothing to run.
//! - [`NatsBus`]: core NATS through async-nats, for a cluster.
//!
//! Both follow NATS' semantics, so code written against one behaves the same on the
//! other: subjects are dot-separated tokens, subscriptions may use `*` (one token) and `>`
//! (one or more trailing tokens), delivery is at most once, a request with nobody
//! subscribed fails at once with [`BusError::NoResponders`], and a subscriber that does
//! not keep up loses messages rather than slowing the publisher (counted per
//! subscription). What must be durable goes to JetStream, not through this seam.

mod bus;
mod local;
mod message;
mod nats;
pub mod subject;
mod subscription;

pub use bus::Bus;
pub use local::LocalBus;
pub use message::{BusError, Message, SUBSCRIPTION_CAPACITY};
pub use nats::NatsBus;
pub use subscription::Subscription;
