//! The durable stream of message events (`guildhall_core::stream`'s entries), behind one
//! seam, [`EventLog`]: a JetStream stream in a cluster ([`JetStreamLog`]), an embedded log in a
//! redb file on one host ([`EmbeddedLog`]). Actors append what storage has stored (the
//! outbox's relay); indexing workers read it with durable consumers.
//!
//! What both promise: `append` returns `Ok` once every entry is durable in the stream, in the
//! order given; a consumer gets entries in the order they were appended, at least once
//! (after a restart, what it did not acknowledge comes again), and an acknowledgement covers
//! everything delivered up to it. Readers skip repeats by `seq` (see `LogEntry::arrival`).

mod embedded;
mod jetstream;

use std::time::Duration;

use async_trait::async_trait;
use guildhall_core::stream::LogEntry;

pub use embedded::{EmbeddedLog, SEGMENT_ENTRIES};
pub use guildhall_core::stream::CellLayout;
pub use jetstream::{JetStreamConfig, JetStreamLog};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The stream cannot take or give entries now (down, full, refusing); retry.
    #[error("stream unavailable: {0}")]
    Unavailable(String),
    /// The stream is set up otherwise than this node is configured.
    #[error("stream misconfigured: {0}")]
    Misconfigured(String),
    /// An entry that does not decode: skipped and counted by the reader, never retried.
    #[error("corrupt entry at {position}: {reason}")]
    Corrupt { position: u64, reason: String },
}

pub type Result<T, E = StreamError> = std::result::Result<T, E>;

pub(crate) fn unavailable(e: impl std::fmt::Display) -> StreamError {
    StreamError::Unavailable(e.to_string())
}

/// The stream.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends `entries` in order; `Ok` once all of them are durable.
    async fn append(&self, entries: &[LogEntry]) -> Result<()>;

    /// The durable consumer `name`, resuming after what it acknowledged: what it fetched
    /// and did not acknowledge comes again at once. Made at first use, it starts at the
    /// oldest entry the stream holds (the embedded log deletes what every consumer it knows
    /// acknowledged; JetStream keeps entries for their `max_age`).
    async fn consumer(&self, name: &str) -> Result<Box<dyn LogConsumer>>;
}

/// An entry as a consumer gets it: where it is in the stream, and the entry (or why it
/// could not be read).
#[derive(Debug, Clone, PartialEq)]
pub struct Delivered {
    pub position: u64,
    pub entry: Result<LogEntry>,
}

/// A durable consumer. One process reads through it at a time.
#[async_trait]
pub trait LogConsumer: Send {
    /// Up to `max` entries after those already fetched, in stream order, waiting at most
    /// `wait` for the first (none: an empty answer).
    async fn fetch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivered>>;

    /// Everything fetched up to `position` is done with: it is not delivered again. The
    /// stream may record it after this returns (the embedded log commits it while the
    /// reader goes on; a crash before then only means a replay); [`LogConsumer::progress`]
    /// and [`LogConsumer::acknowledged_after`] count it.
    async fn ack(&mut self, position: u64) -> Result<()>;

    /// Where the consumer stands in the stream (as the stream itself records it).
    async fn progress(&mut self) -> Result<Progress>;

    /// Whether an entry of this consumer after `position` was acknowledged (by this reader
    /// or an earlier one): a copy of what was made of its entries up to `position` alone is
    /// stale.
    async fn acknowledged_after(&mut self, position: u64) -> Result<bool>;
}

/// A durable consumer's standing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Every entry up to this position is acknowledged (0: none).
    pub acknowledged: u64,
    /// Entries after the acknowledged ones that the stream holds: the consumer's lag.
    pub pending: u64,
}

pub(crate) fn decode(position: u64, bytes: &[u8]) -> Result<LogEntry> {
    serde_json::from_slice(bytes).map_err(|e| StreamError::Corrupt { position, reason: e.to_string() })
}

pub(crate) fn encode(entry: &LogEntry) -> Vec<u8> {
    serde_json::to_vec(entry).expect("log entries serialize")
}
