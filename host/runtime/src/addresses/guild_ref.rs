//! The address of a guild actor and what its mailbox carries.
//!
//! Whoever talks to a guild (REST, sessions, bots, the directory) holds a [`GuildRef`] and
//! sends [`GuildMsg`]s: plain data (serde; answers go to a [`ReplyTo`], sessions are
//! [`SessionRef`]s), so a message can cross to another node unchanged. A `GuildRef` points
//! at an actor in this process (its mailbox) or, in a cluster, at a [`RemoteMailbox`] the
//! transport provides; callers cannot tell which. The actor itself
//! ([`guild_actor`](crate::actors::guild_actor)) is known only to the directory that starts it.

use std::time::Duration;

use std::sync::{Arc, Weak};

use async_trait::async_trait;

use guildhall_core::gateway::Status;
use guildhall_core::guild::{Command, GuildError, Reply, SessionId};
use guildhall_core::model::{AuditLogEntry, GuildId, PluginRecord};
use guildhall_store::StoreError;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::addresses::reply::{Replies, ReplyTo};
use crate::addresses::session::SessionRef;

/// A plugin that its runner switched off after repeated faults: what it tells its guild
/// (which records it in the audit log and reloads its plugins).
#[derive(Debug, Serialize, Deserialize)]
pub struct Disabled {
    pub record: PluginRecord,
    pub reason: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum GuildMsg {
    /// The guild's plugins changed (installed, updated, removed): reload them.
    PluginsChanged,
    /// The cluster's view changed: start again, where they now belong, the bots that run
    /// elsewhere (see `plugins.bot_placement`).
    PlaceBots,
    /// A bot disabled itself after repeated faults: tell the owner, reload.
    PluginDisabled(Disabled),
    /// Record this in the audit log and send it to the owner (from the REST handlers).
    Audit(AuditLogEntry),
    /// A command; its answer goes to `reply_to`. Boxed: commands carry whole messages,
    /// roles and users, the other messages are small.
    Command {
        command: Box<Command>,
        reply_to: ReplyTo,
        /// Unix ms after which the caller has stopped waiting (answered 503): the actor
        /// then drops the command untouched, so that a timed-out call did not happen
        /// unless it had started. 0: no deadline.
        expires_at_ms: u64,
    },
    Connect {
        session: SessionRef,
        status: Status,
    },
    Disconnect {
        session: SessionId,
    },
    /// Session `from` moved to another node and is `to` there (a RESUME there took it
    /// over): route to `to` from now on, and send `from` a [`SessionMsg::Moved`] marker
    /// after the last dispatch it gets, so that the move loses and repeats nothing.
    ///
    /// [`SessionMsg::Moved`]: crate::addresses::session::SessionMsg::Moved
    Move {
        from: SessionId,
        to: SessionRef,
        status: Status,
    },
    /// Stop and hand off: handle what is already in the mailbox, store and answer all of
    /// it, then end; the sessions still connected are passed on to the next incarnation
    /// (started from storage, here or, in a cluster, on the guild's new owner).
    HandOff,
    Presence {
        session: SessionId,
        status: Status,
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
    /// No such DM channel (or the channel belongs to a guild).
    #[error("unknown channel")]
    UnknownChannel,
    #[error("{0}")]
    Storage(#[from] StoreError),
    /// In a cluster, the node that runs the actor cannot be reached now (no node is live,
    /// the owner has not taken it yet, or it does not answer); retry.
    #[error("cluster unavailable: {0}")]
    Unreachable(String),
}

/// Finds (or starts) the actor of a guild: what a [`GuildRef`] asks when its actor has
/// stopped (an idle guild is evicted, a guild moved to another node; the next message
/// reaches the guild's current actor).
#[async_trait]
pub trait Locate: Send + Sync {
    async fn locate(&self, guild: GuildId) -> Result<GuildRef, LocateError>;
}

/// The mailbox of a guild actor on another node: the cluster's transport implements it
/// (serializing the [`GuildMsg`]); answers come back to this node's [`Replies`] through
/// its [`ReplyTransport`](crate::addresses::reply::ReplyTransport).
#[async_trait]
pub trait RemoteMailbox: Send + Sync {
    /// Delivers to the guild's actor there.
    async fn send(&self, guild: GuildId, msg: GuildMsg) -> Result<(), Undelivered>;
    /// True once the remote actor is known to have stopped.
    fn is_closed(&self) -> bool;
    /// Resolves once the node that runs the actor is gone (it left the cluster's view):
    /// an answer still owed from there will never come.
    async fn gone(&self);
}

/// Why a mailbox did not take a message.
#[derive(Debug)]
pub enum Undelivered {
    /// The actor is not there (it stopped or moved): locate it again and send it there.
    Relocate(Box<GuildMsg>),
    /// It may have arrived or not (the node died, or did not answer in time). It is not
    /// sent again, so that a command never runs twice; the caller fails at once.
    Unknown,
}

#[derive(Clone)]
enum Mailbox {
    /// An actor in this process.
    Local(mpsc::Sender<GuildMsg>),
    /// An actor on another node.
    Remote(Arc<dyn RemoteMailbox>),
}

/// The address of a guild's actor, wherever it runs.
#[derive(Clone)]
pub struct GuildRef {
    pub id: GuildId,
    mailbox: Mailbox,
    /// Where this node's callers wait for their answers.
    replies: Arc<Replies>,
    /// Who to ask for the guild's current actor if this one stopped (weak: the directory
    /// holds the refs).
    locator: Option<Weak<dyn Locate>>,
}

impl GuildRef {
    pub(crate) fn local(
        id: GuildId,
        tx: mpsc::Sender<GuildMsg>,
        replies: Arc<Replies>,
        locator: Option<Weak<dyn Locate>>,
    ) -> GuildRef {
        GuildRef { id, mailbox: Mailbox::Local(tx), replies, locator }
    }

    /// A guild whose actor runs on another node, reached through `mailbox`; answers arrive
    /// at `replies` (this node's).
    pub fn remote(
        id: GuildId,
        mailbox: Arc<dyn RemoteMailbox>,
        replies: Arc<Replies>,
        locator: Option<Weak<dyn Locate>>,
    ) -> GuildRef {
        GuildRef { id, mailbox: Mailbox::Remote(mailbox), replies, locator }
    }

    pub fn is_local(&self) -> bool {
        matches!(self.mailbox, Mailbox::Local(_))
    }

    /// Hands the message to the mailbox; gives it back if the actor there has stopped.
    async fn deliver(&self, msg: GuildMsg) -> Result<(), Undelivered> {
        match &self.mailbox {
            Mailbox::Local(tx) => {
                tx.send(msg).await.map_err(|mpsc::error::SendError(msg)| Undelivered::Relocate(Box::new(msg)))
            }
            Mailbox::Remote(remote) => remote.send(self.id, msg).await,
        }
    }

    /// Sends a command and waits for its reply, both bounded by `timeout`.
    pub async fn call(&self, command: impl Into<Command>, timeout: Duration) -> Result<Reply, CallError> {
        let command = command.into();
        let (reply_to, mut waiter) = self.replies.expect();
        let deadline = tokio::time::Instant::now() + timeout;
        let expires_at_ms = self.replies.clock().unix_ms() + timeout.as_millis() as u64;
        let msg = GuildMsg::Command { command: Box::new(command), reply_to, expires_at_ms };
        match tokio::time::timeout_at(deadline, self.send_or_relocate(msg)).await {
            Err(_) => return Err(CallError::Busy),
            Ok(false) => return Err(CallError::Stopped),
            Ok(true) => {}
        }
        let answer = async {
            match &self.mailbox {
                Mailbox::Local(_) => waiter.answer().await,
                // A node that dies after taking the command never answers: the caller
                // learns it when the node leaves the view, not at the end of its timeout
                // (the command may have run or not, as after a timeout).
                Mailbox::Remote(remote) => tokio::select! {
                    answer = waiter.answer() => answer,
                    () = remote.gone() => return Err(CallError::Busy),
                },
            }
            .ok_or(CallError::Stopped)
        };
        match tokio::time::timeout_at(deadline, answer).await {
            Err(_) => Err(CallError::Busy),
            Ok(answer) => Ok(answer??),
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
        let mut msg = match self.deliver(msg).await {
            Ok(()) => return true,
            Err(Undelivered::Relocate(msg)) => *msg,
            Err(Undelivered::Unknown) => return false,
        };
        let Some(locator) = self.locator.as_ref().and_then(Weak::upgrade) else { return false };
        for _ in 0..MAX_RELOCATIONS {
            match locator.locate(self.id).await {
                Ok(current) => match current.deliver(msg).await {
                    Ok(()) => return true,
                    Err(Undelivered::Relocate(back)) => msg = *back,
                    Err(Undelivered::Unknown) => return false,
                },
                Err(e) => {
                    tracing::warn!(guild = %self.id, error = %e, "guild actor stopped and could not be started again");
                    return false;
                }
            }
        }
        false
    }

    /// Starts the guild's next actor (here or on its new owner) without sending it
    /// anything: after a hand-off, so that the sessions it inherits hear from it again.
    /// From a task, retried while the new owner's view catches up.
    pub fn start_successor(&self) {
        let Some(locator) = self.locator.clone() else { return };
        let id = self.id;
        tokio::spawn(async move {
            let started = crate::infrastructure::follow::follow(|| {
                let locator = locator.upgrade();
                async move {
                    // A directory that is gone (shutting down) starts nothing: done.
                    let Some(locator) = locator else { return true };
                    locator.locate(id).await.is_ok()
                }
            })
            .await;
            if !started {
                tracing::warn!(guild = %id, "the guild's next actor could not be started");
            }
        });
    }

    /// Tells the guild a session is gone, without waiting: if the mailbox is full the
    /// notice is delivered by a task rather than dropped (a stale entry would linger).
    pub fn disconnect(&self, session: SessionId) {
        let queued = match &self.mailbox {
            Mailbox::Local(tx) => tx.try_send(GuildMsg::Disconnect { session }).is_ok(),
            Mailbox::Remote(_) => false, // a network send always waits: hand it to a task
        };
        if !queued {
            // Full, or this actor stopped (the session may have been passed on to the next).
            let handle = self.clone();
            tokio::spawn(async move { handle.send(GuildMsg::Disconnect { session }).await });
        }
    }

    pub fn is_closed(&self) -> bool {
        match &self.mailbox {
            Mailbox::Local(tx) => tx.is_closed(),
            Mailbox::Remote(remote) => remote.is_closed(),
        }
    }
}
