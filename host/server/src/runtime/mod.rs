//! The actor runtime: tasks and bounded mailboxes around the pure state machines of
//! `guildhall-core`. A guild actor ([`guild_actor`]) owns one guild; a session actor
//! ([`session_actor`]) owns one gateway session; the [`directory`] answers "where does
//! guild X live"; the [`registry`] finds sessions by id (RESUME) and by user (DMs, joins).

pub mod audit;
pub mod bots;
pub mod directory;
pub mod guild_actor;
pub mod moderation;
pub mod registry;
pub mod session_actor;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use guildhall_core::gateway::DispatchPrefix;
use guildhall_core::guild::SessionId;
use guildhall_core::model::{GuildId, UserId};
use tokio::sync::{mpsc, Notify};

/// Milliseconds on a monotonic clock (since the process started): the state machines' time.
pub fn now_ms() -> u64 {
    start().elapsed().as_millis() as u64
}

/// The `Instant` for a `now_ms` reading, for sleeping until a state machine's deadline.
pub fn instant_at(ms: u64) -> tokio::time::Instant {
    tokio::time::Instant::from_std(start() + Duration::from_millis(ms))
}

fn start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// What a session actor's mailbox carries. Dispatches are the bulk; the mailbox is the
/// session's bounded outbound queue.
pub enum SessionMsg {
    Dispatch(DispatchPrefix),
    /// The user joined a guild while connected: subscribe to it (GUILD_CREATE follows).
    JoinGuild(GuildId),
    /// A new connection wants to resume this session.
    Resume(session_actor::ResumeRequest),
}

/// State shared between a session actor and those who hold its handle: the overflow flag
/// is how a guild tells a session whose queue is full that it has been dropped.
#[derive(Default)]
pub struct SessionShared {
    overflowed: AtomicBool,
    notify: Notify,
}

impl SessionShared {
    pub fn mark_overflowed(&self) {
        self.overflowed.store(true, Ordering::Release);
        self.notify.notify_one();
    }
    pub fn is_overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Acquire)
    }
}

/// How others reach a session actor.
#[derive(Clone)]
pub struct SessionHandle {
    pub id: SessionId,
    pub user: UserId,
    pub intents: u64,
    pub tx: mpsc::Sender<SessionMsg>,
    pub shared: Arc<SessionShared>,
}

/// The outcome of offering a dispatch to a session.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer {
    Queued,
    /// The queue was full: the session was flagged as too slow and must be forgotten.
    Overflowed,
    /// The session actor is gone.
    Gone,
}

impl SessionHandle {
    /// Never waits: a full queue means the session cannot keep up, and it is dropped
    /// rather than allowed to stall whoever is fanning out.
    pub fn offer(&self, prefix: &DispatchPrefix) -> Offer {
        match self.tx.try_send(SessionMsg::Dispatch(prefix.clone())) {
            Ok(()) => Offer::Queued,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.shared.mark_overflowed();
                Offer::Overflowed
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Offer::Gone,
        }
    }
}
