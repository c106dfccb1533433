//! The seam: what every bus does.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::message::BusError;
use crate::subscription::Subscription;

#[async_trait]
pub trait Bus: Send + Sync {
    /// Sends `payload` to every subscription matching `subject` (no wildcards).
    async fn publish(&self, subject: &str, payload: Bytes) -> Result<(), BusError>;
    /// Like `publish`, asking for an answer on `reply`.
    async fn publish_with_reply(&self, subject: &str, reply: &str, payload: Bytes) -> Result<(), BusError>;
    /// Every message on subjects matching `pattern` from now on.
    async fn subscribe(&self, pattern: &str) -> Result<Subscription, BusError>;
    /// Sends a request and waits for the first answer.
    async fn request(&self, subject: &str, payload: Bytes, timeout: Duration) -> Result<Bytes, BusError>;
    /// Waits until what was published so far has left this process.
    async fn flush(&self) -> Result<(), BusError>;
    /// The largest payload the bus carries.
    fn max_payload(&self) -> usize;
}
