//! Who may run an actor: the fence that keeps one guild from running on two nodes.
//!
//! A single host needs none (`GuildDeps::ownership` is `None`). A cluster takes a guild's
//! ownership before its actor loads the guild, checks it before every write batch, and
//! gives it back when the actor has stopped (after storing and answering everything);
//! the cluster crate keeps it in NATS JetStream KV.

use async_trait::async_trait;
use guildhall_core::gateway::Status;
use guildhall_core::model::GuildId;
use serde::{Deserialize, Serialize};

use crate::addresses::session::SessionRef;

/// Proof of ownership of one actor, as the fence issued it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnershipToken {
    pub key: String,
    pub revision: u64,
    /// Sessions the previous owner handed over with the actor ([`Ownership::hand_over`]):
    /// the new actor connects them before it handles anything, so that they miss nothing.
    pub inherited: Vec<PassedOn>,
}

/// A session connected to an actor that moves, with its status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassedOn {
    pub session: SessionRef,
    pub status: Status,
}

#[async_trait]
pub trait Ownership: Send + Sync {
    /// Takes the actor `kind` ("guild" or "dm") `id` for this node; waits a little while
    /// another live node still holds it (it is handing it off), then gives up.
    async fn acquire(&self, kind: &'static str, id: GuildId) -> Result<OwnershipToken, String>;
    /// Is `token` still the current ownership? False once another node took over (this
    /// node was presumed dead) or when it cannot be checked: a write is then refused.
    async fn still_owned(&self, token: &OwnershipToken) -> bool;
    /// Gives the actor up (only if `token` is still current).
    async fn release(&self, token: OwnershipToken);
    /// Gives the actor up together with its sessions, which its next owner inherits.
    /// Returns the sessions it could not carry: the caller passes those on by message.
    async fn hand_over(&self, token: OwnershipToken, sessions: Vec<PassedOn>) -> Vec<PassedOn> {
        self.release(token).await;
        sessions
    }
}
