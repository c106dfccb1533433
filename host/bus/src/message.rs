//! What travels on the bus and what can go wrong.

use bytes::Bytes;

/// A message as a subscriber receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub subject: String,
    pub payload: Bytes,
    /// Where a request wants its answer (publish the answer to this subject).
    pub reply: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    #[error("invalid subject {0:?}")]
    InvalidSubject(String),
    #[error("no responders on {0}")]
    NoResponders(String),
    #[error("request on {0} timed out")]
    TimedOut(String),
    #[error("payload of {size} bytes is over the bus limit of {max}")]
    TooLarge { size: usize, max: usize },
    #[error("bus unavailable: {0}")]
    Unavailable(String),
}

/// Messages a subscription may hold before further ones are dropped (a slow consumer).
pub const SUBSCRIPTION_CAPACITY: usize = 8192;
