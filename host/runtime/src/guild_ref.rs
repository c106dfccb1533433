//! The address of a guild actor and what its mailbox carries.
//!
//! Whoever talks to a guild (REST, sessions, bots, the directory) holds a [`GuildHandle`]
//! and sends [`GuildMsg`]s, plain data (answers go to a [`ReplyTo`], sessions are
//! [`SessionRef`]s); the actor itself ([`guild_actor`](crate::guild_actor)) is
//! known only to the directory that starts it.

use std::time::Duration;

use std::sync::Arc;

use guildhall_core::guild::{Command, GuildError, Reply, SessionId};
use guildhall_core::model::{AuditLogEntry, GuildId};
use tokio::sync::mpsc;

use crate::moderation::Disabled;
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

#[derive(Clone)]
pub struct GuildHandle {
    pub id: GuildId,
    pub(crate) tx: mpsc::Sender<GuildMsg>,
    /// Where this node's callers wait for their answers.
    pub(crate) replies: Arc<Replies>,
}

impl GuildHandle {
    /// Sends a command and waits for its reply, both bounded by `timeout`.
    pub async fn call(&self, command: Command, timeout: Duration) -> Result<Reply, CallError> {
        let (reply_to, mut waiter) = self.replies.expect();
        let deadline = tokio::time::Instant::now() + timeout;
        match tokio::time::timeout_at(deadline, self.tx.send(GuildMsg::Command { command, reply_to })).await {
            Err(_) => return Err(CallError::Busy),
            Ok(Err(_)) => return Err(CallError::Stopped),
            Ok(Ok(())) => {}
        }
        match tokio::time::timeout_at(deadline, waiter.answer()).await {
            Err(_) => Err(CallError::Busy),
            Ok(None) => Err(CallError::Stopped),
            Ok(Some(result)) => Ok(result?),
        }
    }

    /// Session events: waits for room in the mailbox (sessions are not latency-critical here).
    pub async fn send(&self, msg: GuildMsg) -> bool {
        self.tx.send(msg).await.is_ok()
    }

    /// Tells the guild a session is gone, without waiting: if the mailbox is full the
    /// notice is delivered by a task rather than dropped (a stale entry would linger).
    pub fn disconnect(&self, session: SessionId) {
        if self.tx.try_send(GuildMsg::Disconnect { session }).is_err() {
            let tx = self.tx.clone();
            tokio::spawn(async move { tx.send(GuildMsg::Disconnect { session }).await });
        }
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}
