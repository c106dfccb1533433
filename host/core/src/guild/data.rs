//! What a guild knows: its record (settings and roles), channels, members, bans, the
//! sessions online in it, and the caches kept beside them. The command families read it
//! to decide and change it when their writes are stored; `access.rs` answers who may do
//! what, `sessions.rs` who is online and who hears what.

use std::collections::{BTreeMap, HashMap};

use crate::gateway::{Intents, Status};
use crate::model::{Ban, Channel, ChannelId, Guild, Member, Role, UserId};
use crate::nonces::RecentNonces;
use crate::permissions::{PermissionCache, RoleGrant};

use super::protocol::SessionId;

#[derive(Debug, Clone)]
pub(super) struct OnlineSession {
    pub user: UserId,
    pub intents: Intents,
    pub status: Status,
}

pub struct GuildData {
    pub(super) guild: Guild,
    pub(super) channels: BTreeMap<ChannelId, Channel>,
    pub(super) members: HashMap<UserId, Member>,
    pub(super) bans: HashMap<UserId, Ban>,
    pub(super) sessions: BTreeMap<SessionId, OnlineSession>,
    /// Each online user's sessions (an index over `sessions`, for presence).
    pub(super) user_sessions: HashMap<UserId, Vec<SessionId>>,
    /// The roles as the permission computation sees them (kept with `guild.roles`).
    pub(super) grants: Vec<RoleGrant>,
    pub(super) cache: PermissionCache,
    /// Nonces of recent creates, for `enforce_nonce`.
    pub(super) nonces: RecentNonces,
}

impl GuildData {
    /// A guild stored before roles existed gets Discord's default @everyone role; members'
    /// roles are kept sorted (they key the permission cache) and rid of deleted roles.
    pub fn new(guild: Guild, channels: Vec<Channel>, members: Vec<Member>, bans: Vec<Ban>) -> GuildData {
        let guild = guild.normalized();
        let members = members
            .into_iter()
            .map(|mut m| {
                m.roles.retain(|r| *r != guild.id && guild.role(*r).is_some());
                m.roles.sort();
                m.roles.dedup();
                (m.user.id, m)
            })
            .collect();
        GuildData {
            grants: guild.roles.iter().map(Role::grant).collect(),
            guild,
            channels: channels.into_iter().map(|c| (c.id, c)).collect(),
            members,
            bans: bans.into_iter().map(|b| (b.user.id, b)).collect(),
            sessions: BTreeMap::new(),
            user_sessions: HashMap::new(),
            cache: PermissionCache::default(),
            nonces: RecentNonces::default(),
        }
    }

    pub fn guild(&self) -> &Guild {
        &self.guild
    }
    pub fn member_count(&self) -> usize {
        self.members.len()
    }
    pub fn is_member(&self, user: UserId) -> bool {
        self.members.contains_key(&user)
    }
    pub fn is_banned(&self, user: UserId) -> bool {
        self.bans.contains_key(&user)
    }
    pub fn channels(&self) -> impl Iterator<Item = &Channel> {
        self.channels.values()
    }
    pub fn has_session(&self, session: SessionId) -> bool {
        self.sessions.contains_key(&session)
    }
    /// The status a connected session set.
    pub fn session_status(&self, session: SessionId) -> Option<Status> {
        self.sessions.get(&session).map(|s| s.status)
    }
    pub fn online_sessions(&self) -> usize {
        self.sessions.len()
    }
}
