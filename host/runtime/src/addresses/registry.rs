//! Live sessions by resume key (for RESUME), by id (the local [`SessionRouter`]) and by
//! user (for DMs and guild joins).
//! A lookup table, not an actor: entries are added when a session becomes ready and
//! removed when it terminates.

use guildhall_core::sync::LockUnpoisoned;
use std::collections::HashMap;
use std::sync::Mutex;

use guildhall_core::guild::SessionId;
use guildhall_core::model::{GuildId, UserId};

use guildhall_core::gateway::DispatchPrefix;

use crate::addresses::reply::NodeId;
use crate::addresses::session::{Delivered, SessionHandle, SessionRoute, SessionRouter, ToUser};

#[derive(Default)]
pub struct SessionRegistry {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_id: HashMap<SessionId, SessionHandle>,
    by_key: HashMap<String, SessionHandle>,
    by_user: HashMap<UserId, Vec<SessionHandle>>,
}

impl SessionRegistry {
    pub fn insert(&self, key: String, handle: SessionHandle) {
        let mut inner = self.inner.lock_unpoisoned();
        let sessions = inner.by_user.entry(handle.user).or_default();
        sessions.retain(|s| s.id != handle.id);
        sessions.push(handle.clone());
        inner.by_id.insert(handle.id, handle.clone());
        inner.by_key.insert(key, handle);
    }

    /// Routes to a session by id only: one taking another over from another node, which
    /// is not resumable here, and not a user's session for DMs, until it has the state.
    pub fn insert_route(&self, handle: SessionHandle) {
        let mut inner = self.inner.lock_unpoisoned();
        inner.by_id.insert(handle.id, handle);
    }

    /// Stops RESUMEs from finding the session (it is being taken over elsewhere).
    pub fn forget_key(&self, key: &str, id: SessionId) {
        let mut inner = self.inner.lock_unpoisoned();
        if inner.by_key.get(key).is_some_and(|h| h.id == id) {
            inner.by_key.remove(key);
        }
    }

    pub fn remove(&self, key: &str, id: SessionId) {
        let mut inner = self.inner.lock_unpoisoned();
        let Some(handle) = inner.by_id.remove(&id) else { return };
        if inner.by_key.get(key).is_some_and(|h| h.id == id) {
            inner.by_key.remove(key);
        }
        if let Some(list) = inner.by_user.get_mut(&handle.user) {
            list.retain(|s| s.id != id);
            if list.is_empty() {
                inner.by_user.remove(&handle.user);
            }
        }
    }

    /// Sessions on this node (resumable here or not).
    pub fn len(&self) -> usize {
        self.inner.lock_unpoisoned().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl SessionRouter for SessionRegistry {
    fn route(&self, session: SessionId) -> Option<SessionRoute> {
        self.inner.lock_unpoisoned().by_id.get(&session).cloned().map(SessionRoute::Local)
    }

    fn to_user(&self, user: UserId, msg: &ToUser) -> Delivered {
        let sessions = self.inner.lock_unpoisoned().by_user.get(&user).cloned();
        let mut delivered = Delivered::default();
        for session in sessions.unwrap_or_default() {
            session.take(msg, &mut delivered);
        }
        delivered
    }

    fn resumable(&self, key: &str) -> Option<SessionHandle> {
        self.inner.lock_unpoisoned().by_key.get(key).cloned()
    }

    fn moved(&self, node: NodeId, guild: GuildId, session: SessionId) {
        debug_assert!(false, "a local registry was asked to tell {session:?} on node {node} about {guild}");
    }

    /// This table routes only to this node's sessions, so nothing is ever forwarded.
    fn forward(&self, node: NodeId, guild: GuildId, sessions: &[SessionId], _: &DispatchPrefix) {
        debug_assert!(false, "a local registry was asked to forward {guild}'s dispatch to node {node}: {sessions:?}");
    }
}
