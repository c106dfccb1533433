//! How actors reach a gateway session: its handle (a bounded mailbox that is the session's
//! outbound queue) and what the mailbox carries. The session actor itself lives at the
//! WebSocket edge (the `guildhall` crate); guild actors and the registry know only this.

use std::any::Any;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use guildhall_core::gateway::{DispatchPrefix, Intents, Status};
use guildhall_core::guild::SessionId;
use guildhall_core::model::{GuildId, UserId};
use serde::{Deserialize, Serialize};

use crate::addresses::reply::NodeId;
use guildhall_core::session::Handover;
use tokio::sync::{mpsc, oneshot, Notify};

/// What a session actor's mailbox carries. Dispatches are the bulk; the mailbox is the
/// session's bounded outbound queue.
pub enum SessionMsg {
    Dispatch(DispatchPrefix),
    /// The user joined a guild while connected: subscribe to it (GUILD_CREATE follows).
    JoinGuild(GuildId),
    /// A new connection wants to resume this session. What it carries (the connection
    /// itself) belongs to the gateway edge, which alone knows its type; actors only pass it on.
    Resume(Box<dyn Any + Send>),
    /// A RESUME on another node takes this session over as `to`: tell the guilds to route
    /// there, wait for their [`SessionMsg::Moved`] markers, then answer with the session
    /// (none if it cannot be handed over).
    MoveOut {
        to: SessionRef,
        reply: oneshot::Sender<Option<MovedSession>>,
    },
    /// The guild routes this session's dispatches elsewhere now: nothing more comes from it.
    Moved(GuildId),
}

/// A session as it leaves its node: its protocol state (sequence, replay buffer) and what
/// its actor knew (status, guilds).
#[derive(Debug, Clone)]
pub struct MovedSession {
    pub handover: Handover,
    pub status: Status,
    pub guilds: Vec<GuildId>,
}

/// Moves sessions between nodes: a RESUME that reaches a node where the session is not
/// finds it elsewhere and takes it over. Only a cluster has one.
#[async_trait::async_trait]
pub trait SessionMover: Send + Sync {
    /// The live session with this resume key, on whichever node has it, if it is `user`'s.
    async fn find(&self, key: &str, user: UserId) -> Option<SessionRef>;
    /// Takes session `from` over as `to` (a session of this node, which routes to it by
    /// id): `from`'s guilds route to `to` from now on, and the answer is `from`'s state
    /// once nothing more reaches it.
    async fn take(&self, from: SessionRef, to: SessionRef) -> Option<MovedSession>;
}

/// State shared between a session actor and those who hold its handle: the overflow flag
/// is how a guild tells a session whose queue is full that it has been dropped.
#[derive(Default)]
pub struct SessionShared {
    overflowed: AtomicBool,
    notify: Notify,
}

impl SessionShared {
    /// Flags the session as too slow; `true` the first time.
    pub fn mark_overflowed(&self) -> bool {
        let first = !self.overflowed.swap(true, Ordering::AcqRel);
        self.notify.notify_one();
        first
    }
    pub fn is_overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Acquire)
    }
    /// Resolves when the flag may have changed (check `is_overflowed`).
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }
}

/// A session as actors address it: plain data, valid on any node. How to deliver to it
/// is the [`SessionRouter`]'s business.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRef {
    pub id: SessionId,
    pub user: UserId,
    pub intents: Intents,
}

/// How a guild reaches one of its sessions, resolved once when the session connects.
#[derive(Clone)]
pub enum SessionRoute {
    /// On this node: its mailbox.
    Local(SessionHandle),
    /// On another node: a guild groups its dispatches for that node's sessions and hands
    /// them to [`SessionRouter::forward`], one message per node and event (Manifold).
    Remote(NodeId),
}

/// Finds how to deliver to a session: by id (guilds resolve the sessions that connect),
/// by user (DMs, guild joins) and by resume key (RESUME). In one process the answers are
/// handles; a cluster adds routes to other nodes.
pub trait SessionRouter: Send + Sync {
    fn route(&self, session: SessionId) -> Option<SessionRoute>;
    /// Delivers to every live session of the user, wherever it is. Returns what this
    /// node's sessions took (other nodes count their own).
    fn to_user(&self, user: UserId, msg: &ToUser) -> Delivered;
    /// The session a RESUME with this session id (the key handed out in READY) asks for.
    fn resumable(&self, key: &str) -> Option<SessionHandle>;
    /// Sends one dispatch of `guild` to `sessions`, all on `node`, in one message; that
    /// node offers it to each (and tells the guild about sessions that are gone or too
    /// slow). Only called for sessions this router resolved as `Remote(node)`.
    fn forward(&self, node: NodeId, guild: GuildId, sessions: &[SessionId], dispatch: &DispatchPrefix);
    /// Tells `session` on `node` that `guild` sends it nothing more ([`SessionMsg::Moved`]),
    /// in order after the dispatches forwarded to it before.
    fn moved(&self, node: NodeId, guild: GuildId, session: SessionId);
}

/// What can be sent to all of a user's sessions.
#[derive(Debug, Clone)]
pub enum ToUser {
    /// A dispatch for the sessions that asked for `intent` (DMs).
    Dispatch { intent: Intents, dispatch: DispatchPrefix },
    /// The user joined a guild: its sessions subscribe to it.
    JoinGuild(GuildId),
}

/// How a delivery to local sessions went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub queued: u64,
    /// Sessions dropped because their queue was full.
    pub overflowed: u64,
}

impl SessionHandle {
    /// Delivers `msg` to this session if it applies (a dispatch needs the intent).
    pub fn take(&self, msg: &ToUser, delivered: &mut Delivered) {
        match msg {
            ToUser::Dispatch { intent, dispatch } => {
                if !self.intents.intersects(*intent) {
                    return;
                }
                match self.offer(dispatch) {
                    Offer::Queued => delivered.queued += 1,
                    Offer::Overflowed => delivered.overflowed += 1,
                    Offer::Dropped | Offer::Gone => {}
                }
            }
            ToUser::JoinGuild(guild) => {
                if self.tx.try_send(SessionMsg::JoinGuild(*guild)).is_ok() {
                    delivered.queued += 1;
                }
            }
        }
    }
}

/// How others reach a session actor.
#[derive(Clone)]
pub struct SessionHandle {
    pub id: SessionId,
    pub user: UserId,
    pub intents: Intents,
    pub tx: mpsc::Sender<SessionMsg>,
    pub shared: Arc<SessionShared>,
}

/// The outcome of offering a dispatch to a session.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer {
    Queued,
    /// The queue was full: the session was flagged as too slow and must be forgotten.
    Overflowed,
    /// Flagged as too slow by an earlier offer, whose caller reported it then: nothing to
    /// do (reporting it again on every dispatch until its guilds hear would only add load).
    Dropped,
    /// The session actor is gone.
    Gone,
}

impl SessionHandle {
    pub fn address(&self) -> SessionRef {
        SessionRef { id: self.id, user: self.user, intents: self.intents }
    }

    /// Never waits: a full queue means the session cannot keep up, and it is dropped
    /// rather than allowed to stall whoever is fanning out. A session already dropped
    /// takes nothing more.
    pub fn offer(&self, prefix: &DispatchPrefix) -> Offer {
        if self.shared.is_overflowed() {
            return Offer::Dropped;
        }
        match self.tx.try_send(SessionMsg::Dispatch(prefix.clone())) {
            Ok(()) => Offer::Queued,
            Err(mpsc::error::TrySendError::Full(_)) if self.shared.mark_overflowed() => Offer::Overflowed,
            Err(mpsc::error::TrySendError::Full(_)) => Offer::Dropped,
            Err(mpsc::error::TrySendError::Closed(_)) => Offer::Gone,
        }
    }
}
