//! The address of a guild actor and what its mailbox carries.
//!
//! Whoever talks to a guild (REST, sessions, bots, the directory) holds a [`GuildHandle`]
//! and sends [`GuildMsg`]s, plain data (answers go to a [`ReplyTo`], sessions are
//! [`SessionRef`]s); the actor itself ([`guild_actor`](crate::guild_actor)) is
//! known only to the directory that starts it.

use std::time::Duration;

use std::sync::{Arc, Weak};

use async_trait::async_trait;

use guildhall_core::guild::{Command, GuildError, Reply, SessionId};
use guildhall_core::model::{AuditLogEntry, GuildId};
use guildhall_store::StoreError;
use tokio::sync::mpsc;

use crate::plugin_support::Disabled;
use crate::reply::{Replies, ReplyTo};
use crate::session::SessionRef;

pub enum GuildMsg {
    /// The guild's plugins changed (installed, updated, removed): reload them.
    PluginsChanged,
    /// A bot disabled itself after repeated faults: tell the owner, reload.
    PluginDisabled(Disabled),
    /// Record this in the audit log and send it to the owner (from the REST handlers).
    Audit(AuditLogEntry),
    /// A command; its answer goes to `reply_to`.
    Command {
        command: Command,
        reply_to: ReplyTo,
    },
    Connect {
        session: SessionRef,
        status: String,
    },
    Disconnect {
        session: SessionId,
    },
    /// Stop and hand off: handle what is already in the mailbox, store and answer all of
    /// it, then end; the sessions still connected are passed on to the next incarnation
    /// (started from storage, here or, in a cluster, on the guild's new owner).
    HandOff,
    Presence {
        session: SessionId,
        status: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Guild(#[from] GuildError),
    /// The actor's mailbox stayed full, or the reply did not come in time.
    #[error("guild is busy")]
    Busy,
    #[error("guild actor stopped")]
    Stopped,
}

#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    #[error("unknown guild")]
    UnknownGuild,
    #[error("{0}")]
    Storage(#[from] StoreError),
}

/// Finds (or starts) the actor of a guild: what a [`GuildHandle`] asks when its actor has
/// stopped (an idle guild is evicted; the next message starts it again from storage).
#[async_trait]
pub trait Locate: Send + Sync {
    async fn locate(&self, guild: GuildId) -> Result<GuildHandle, LocateError>;
}

#[derive(Clone)]
pub struct GuildHandle {
    pub id: GuildId,
    pub(crate) tx: mpsc::Sender<GuildMsg>,
    /// Where this node's callers wait for their answers.
    pub(crate) replies: Arc<Replies>,
    /// Who to ask for the guild's current actor if this one stopped (weak: the directory
    /// holds the handles).
    pub(crate) locator: Option<Weak<dyn Locate>>,
}

impl GuildHandle {
    /// Sends a command and waits for its reply, both bounded by `timeout`.
    pub async fn call(&self, command: Command, timeout: Duration) -> Result<Reply, CallError> {
        let (reply_to, mut waiter) = self.replies.expect();
        let deadline = tokio::time::Instant::now() + timeout;
        let msg = GuildMsg::Command { command, reply_to };
        match tokio::time::timeout_at(deadline, self.send_or_relocate(msg)).await {
            Err(_) => return Err(CallError::Busy),
            Ok(false) => return Err(CallError::Stopped),
            Ok(true) => {}
        }
        match tokio::time::timeout_at(deadline, waiter.answer()).await {
            Err(_) => Err(CallError::Busy),
            Ok(None) => Err(CallError::Stopped),
            Ok(Some(result)) => Ok(result?),
        }
    }

    /// Session events: waits for room in the mailbox (sessions are not latency-critical here).
    pub async fn send(&self, msg: GuildMsg) -> bool {
        self.send_or_relocate(msg).await
    }

    /// Delivers to this actor or, if it stopped (evicted when idle: its mailbox is closed,
    /// so the message was not taken), to the guild's current one. False if there is none.
    async fn send_or_relocate(&self, msg: GuildMsg) -> bool {
        /// Successive incarnations tried (each can only have stopped if it sat idle).
        const MAX_RELOCATIONS: usize = 3;
        let mut msg = match self.tx.send(msg).await {
            Ok(()) => return true,
            Err(mpsc::error::SendError(msg)) => msg,
        };
        let Some(locator) = self.locator.as_ref().and_then(Weak::upgrade) else { return false };
        for _ in 0..MAX_RELOCATIONS {
            match locator.locate(self.id).await {
                Ok(current) => match current.tx.send(msg).await {
                    Ok(()) => return true,
                    Err(mpsc::error::SendError(back)) => msg = back,
                },
                Err(e) => {
                    tracing::warn!(guild = %self.id, error = %e, "guild actor stopped and could not be started again");
                    return false;
                }
            }
        }
        false
    }

    /// Tells the guild a session is gone, without waiting: if the mailbox is full the
    /// notice is delivered by a task rather than dropped (a stale entry would linger).
    pub fn disconnect(&self, session: SessionId) {
        if self.tx.try_send(GuildMsg::Disconnect { session }).is_err() {
            // Full, or this actor stopped (the session may have been passed on to the next).
            let handle = self.clone();
            tokio::spawn(async move { handle.send(GuildMsg::Disconnect { session }).await });
        }
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}
