//! The guild state machine: one per guild, sans-IO.
//!
//! It owns what the guild knows (channels, members, which sessions are online and with
//! what intents, presences) and decides who may do what and who sees what. Writes follow
//! one rule: a change is *persisted first* (`Effect::Persist`), and only when the runtime
//! reports `Input::Persisted` is it applied, fanned out and acknowledged. The runtime must
//! report persist results in the order it received the `Persist` effects, so that fan-out
//! order equals id order within the guild.

mod roles;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use serde_json::Value;

use crate::event::{GuildEvent, GuildSnapshot, Presence};
use crate::gateway::intents;
use crate::model::{
    mentioned_user_ids, Ban, Channel, ChannelId, Emoji, Guild, GuildId, Member, Message, MessageId, Role, User, UserId,
    CHANNEL_GUILD_TEXT,
};
use crate::nonces::{Made, RecentNonces};
use crate::permissions::{Overwrite, PermissionCache, Permissions, RoleGrant};
use crate::Snowflake;

/// Commands that wait while another write to the same object is in flight, at most.
pub const MAX_DEFERRED_COMMANDS: usize = 1024;

/// Above this many members a guild is "large": GUILD_CREATE carries no member list.
pub const LARGE_THRESHOLD: usize = 250;

/// A gateway session: the node it lives on (top 16 bits) and its number there (the rest),
/// so that an id names its session across a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct SessionId(pub u64);

impl SessionId {
    const NODE_SHIFT: u32 = 48;

    pub fn new(node: u16, number: u64) -> SessionId {
        assert!(number < 1 << Self::NODE_SHIFT, "session numbers fit in 48 bits");
        SessionId((u64::from(node) << Self::NODE_SHIFT) | number)
    }
    /// The node the session lives on.
    pub fn node(self) -> u16 {
        (self.0 >> Self::NODE_SHIFT) as u16
    }
}

/// Correlates a command with its reply.
pub type RequestId = u64;

/// Plain data (serde): a command can be sent to a guild on another node.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum Command {
    /// `id` is the new message's id; the runtime takes it at the moment the guild handles
    /// the command, so that id order and fan-out order agree.
    CreateMessage {
        author: UserId,
        channel_id: ChannelId,
        id: MessageId,
        content: String,
        nonce: Option<Value>,
        /// Discord's `enforce_nonce`: if this author's `nonce` made a message in the
        /// channel in the last few minutes, answer with it ([`Reply::Existing`]).
        enforce_nonce: bool,
    },
    /// `existing` is the stored message the runtime loaded.
    EditMessage {
        user: UserId,
        existing: Box<Message>,
        content: String,
        edited_timestamp: String,
    },
    DeleteMessage {
        user: UserId,
        existing: Box<Message>,
    },
    /// `existing` is the stored message the runtime loaded (reactions need one).
    AddReaction {
        user: UserId,
        existing: Box<Message>,
        emoji: Emoji,
    },
    RemoveReaction {
        user: UserId,
        existing: Box<Message>,
        emoji: Emoji,
    },
    CreateChannel {
        user: UserId,
        channel: Channel,
        /// The guild's channel quota (`quotas.channels_per_guild`).
        max_channels: usize,
    },
    AddMember {
        member: Member,
    },
    RemoveMember {
        user: UserId,
    },
    Typing {
        user: UserId,
        channel_id: ChannelId,
        unix_s: u64,
    },
    /// MANAGE_GUILD: change the name and settings.
    UpdateGuild {
        user: UserId,
        name: Option<String>,
        moderation_fail_closed: Option<bool>,
    },
    /// Read the guild as `user` sees it (membership checked).
    Snapshot {
        user: UserId,
    },
    /// What `user` may do in the guild, or in one of its channels: replies `Permissions`,
    /// or the reason they have none there (not a member; an unknown channel; a channel
    /// they cannot view).
    Permissions {
        user: UserId,
        channel_id: Option<ChannelId>,
    },
    /// MANAGE_ROLES: a new role (the runtime gives its id), placed just above @everyone.
    /// A role with `tags` is a managed one (a bot's).
    CreateRole {
        user: UserId,
        role: Role,
    },
    UpdateRole {
        user: UserId,
        role_id: Snowflake,
        patch: RolePatch,
    },
    DeleteRole {
        user: UserId,
        role_id: Snowflake,
    },
    /// Roles (MANAGE_ROLES, roles below one's own) or nickname of a member.
    UpdateMember {
        user: UserId,
        target: UserId,
        change: MemberChange,
    },
    /// Name, topic (MANAGE_CHANNELS) or permission overwrites (MANAGE_ROLES) of a channel.
    UpdateChannel {
        user: UserId,
        channel_id: ChannelId,
        change: ChannelChange,
    },
    /// KICK_MEMBERS, from above.
    Kick {
        user: UserId,
        target: UserId,
    },
    /// BAN_MEMBERS, from above: `target` need not be a member; a member is removed.
    Ban {
        user: UserId,
        target: User,
        reason: Option<String>,
    },
    Unban {
        user: UserId,
        target: UserId,
    },
}

impl Command {
    /// The object this command writes, if only one write to it may be in flight at a time
    /// (a second waits for the first, so that it starts from the stored state).
    fn object(&self) -> Option<Object> {
        match self {
            // Channel creations one at a time, so that the quota counts those in flight.
            Command::UpdateGuild { .. }
            | Command::CreateChannel { .. }
            | Command::CreateRole { .. }
            | Command::UpdateRole { .. }
            | Command::DeleteRole { .. } => Some(Object::Guild),
            Command::UpdateChannel { channel_id, .. } => Some(Object::Channel(*channel_id)),
            Command::UpdateMember { target, .. } | Command::Kick { target, .. } | Command::Unban { target, .. } => {
                Some(Object::Member(*target))
            }
            Command::Ban { target, .. } => Some(Object::Member(target.id)),
            // Creates with one nonce one at a time: a retry waits for the first to be
            // stored, then finds it.
            Command::CreateMessage { author, channel_id, nonce: Some(nonce), .. } => {
                Some(nonce_object(*author, *channel_id, nonce))
            }
            _ => None,
        }
    }
}

fn nonce_object(author: UserId, channel_id: ChannelId, nonce: &Value) -> Object {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (author, channel_id, nonce.to_string()).hash(&mut h);
    Object::Nonce(h.finish())
}

/// Changes to a role (PATCH /guilds/{id}/roles/{role}); `None` keeps the field.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RolePatch {
    pub name: Option<String>,
    pub permissions: Option<Permissions>,
    pub color: Option<u32>,
    pub hoist: Option<bool>,
    pub mentionable: Option<bool>,
    pub position: Option<i32>,
}

/// A change to a member's roles or nickname.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MemberChange {
    AddRole(Snowflake),
    RemoveRole(Snowflake),
    /// PATCH /guilds/{id}/members/{user}: `None` keeps the field; `Some(None)` clears the nick.
    Set {
        roles: Option<Vec<Snowflake>>,
        nick: Option<Option<String>>,
    },
}

/// A change to a guild channel.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ChannelChange {
    /// PATCH /channels/{id}: `None` keeps the field; `topic: Some(None)` clears it.
    Edit {
        name: Option<String>,
        topic: Option<Option<String>>,
        nsfw: Option<bool>,
        permission_overwrites: Option<Vec<Overwrite>>,
    },
    /// PUT /channels/{id}/permissions/{overwrite}
    PutOverwrite(Overwrite),
    /// DELETE /channels/{id}/permissions/{overwrite}
    DeleteOverwrite(Snowflake),
}

/// What a command writes, for the one-write-in-flight rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Object {
    Guild,
    Channel(ChannelId),
    Member(UserId),
    /// A message nonce of one author in one channel (hashed: a collision only makes two
    /// creates wait for each other).
    Nonce(u64),
}

#[derive(Debug, Clone)]
pub enum Input {
    Command {
        request: RequestId,
        /// Boxed: commands carry whole messages and users, the other inputs are small.
        command: Box<Command>,
    },
    /// The outcome of an `Effect::Persist`, reported in order.
    Persisted {
        request: RequestId,
        result: Result<(), WriteError>,
    },
    SessionConnect {
        session: SessionId,
        user: UserId,
        intents: u64,
        status: String,
    },
    /// Whether messages go to moderators before they are stored (the runtime knows
    /// which moderation plugins are installed and enabled).
    SetModeration {
        enabled: bool,
    },
    /// The moderators' combined answer to an `Effect::Moderate`.
    Moderated {
        request: RequestId,
        verdict: ModerationVerdict,
    },
    SessionDisconnect {
        session: SessionId,
    },
    /// A session moved to another node under a new id (a RESUME there took it over): the
    /// same session for everyone else, so no GUILD_CREATE and no presence change.
    SessionMoved {
        from: SessionId,
        to: SessionId,
    },
    PresenceUpdate {
        session: SessionId,
        status: String,
    },
}

/// A change to store before it takes effect.
#[derive(Debug, Clone, PartialEq)]
pub enum GuildWrite {
    PutMessage(Message),
    /// Overwrites an existing message; `NotFound` if it was deleted meanwhile.
    EditMessage(Message),
    DeleteMessage {
        channel_id: ChannelId,
        message_id: MessageId,
    },
    CreateChannel(Channel),
    /// Overwrites a channel (its name, topic, permission overwrites).
    UpdateChannel(Channel),
    UpdateGuild(Guild),
    /// Idempotent: a user reacts with an emoji at most once.
    AddReaction {
        channel_id: ChannelId,
        message_id: MessageId,
        emoji: Emoji,
        user_id: UserId,
    },
    RemoveReaction {
        channel_id: ChannelId,
        message_id: MessageId,
        emoji: Emoji,
        user_id: UserId,
    },
    AddMember {
        guild_id: GuildId,
        member: Member,
    },
    RemoveMember {
        guild_id: GuildId,
        user_id: UserId,
    },
    /// Overwrites a member (roles, nickname).
    UpdateMember {
        guild_id: GuildId,
        member: Member,
    },
    /// Records the ban and removes the membership, if any, together.
    Ban {
        guild_id: GuildId,
        ban: Ban,
    },
    Unban {
        guild_id: GuildId,
        user_id: UserId,
    },
}

/// A message as moderators see it, before it exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModerationCandidate {
    pub channel_id: ChannelId,
    pub author: crate::model::User,
    pub content: String,
    pub is_edit: bool,
    pub mentions: Vec<UserId>,
}

/// What moderation decided (a flag is an allow, recorded by the runtime).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ModerationVerdict {
    #[default]
    Allow,
    Block(String),
    Rewrite(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("not found")]
    NotFound,
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum GuildError {
    #[error("Missing Access")]
    NotMember,
    #[error("Unknown Channel")]
    UnknownChannel,
    #[error("Unknown Message")]
    UnknownMessage,
    #[error("Cannot edit a message authored by another user")]
    NotAuthor,
    #[error("Missing Permissions")]
    MissingPermissions,
    #[error("already a member")]
    AlreadyMember,
    #[error("the guild owner cannot leave the guild")]
    OwnerCannotLeave,
    #[error("Unknown Role")]
    UnknownRole,
    #[error("Unknown Member")]
    UnknownMember,
    #[error("Unknown Ban")]
    UnknownBan,
    /// @everyone or a managed role, where neither may be used.
    #[error("Invalid Role")]
    InvalidRole,
    #[error("Maximum number of guild roles reached (250)")]
    TooManyRoles,
    #[error("Maximum number of permission overwrites reached (100)")]
    TooManyOverwrites,
    #[error("Maximum number of guild channels reached ({0})")]
    TooManyChannels(usize),
    #[error("The user is banned from this guild.")]
    Banned,
    /// Too many writes are waiting for this guild; try again.
    #[error("the guild is busy")]
    Busy,
    #[error("storage unavailable: {0}")]
    Storage(String),
    /// Moderation refused the message; the reason is for its author.
    #[error("{0}")]
    Blocked(String),
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Reply {
    Message(Message),
    Channel(Channel),
    Guild(Guild),
    Member(Member),
    Snapshot {
        guild: Guild,
        channels: Vec<Channel>,
        member_count: usize,
    },
    Role(Role),
    Permissions(Permissions),
    /// The message an earlier create with the same nonce made (`enforce_nonce`).
    Existing {
        channel_id: ChannelId,
        message_id: MessageId,
    },
    Done,
}

/// Which sessions a dispatch goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// Every online session with this intent.
    Guild {
        intent: u64,
    },
    /// Every online session that can view the channel and has this intent.
    Channel {
        channel_id: ChannelId,
        intent: u64,
    },
    /// Every session with this intent, except those of one user (presence about that user).
    GuildExceptUser {
        user: UserId,
        intent: u64,
    },
    One(SessionId),
    /// Every session of one user in this guild (e.g. audit notices to the owner).
    User(UserId),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Ask the moderators about this message; answer with `Input::Moderated`.
    Moderate {
        request: RequestId,
        candidate: ModerationCandidate,
    },
    Persist {
        request: RequestId,
        write: GuildWrite,
    },
    Reply {
        request: RequestId,
        result: Result<Reply, GuildError>,
    },
    /// Boxed: events are large (a message with its member) and effects are moved around.
    Dispatch {
        audience: Audience,
        event: Box<GuildEvent>,
    },
    /// The runtime should stop delivering to this session (it left or its user left).
    ForgetSession(SessionId),
}

#[derive(Debug, Clone)]
struct OnlineSession {
    user: UserId,
    intents: u64,
    status: String,
}

/// What to do once a persisted write is acknowledged.
#[derive(Debug, Clone)]
enum AfterPersist {
    MessageCreated(Message),
    MessageEdited(Message),
    MessageDeleted {
        channel_id: ChannelId,
        message_id: MessageId,
    },
    Reaction {
        added: bool,
        message: Box<Message>,
        emoji: Emoji,
        user_id: UserId,
    },
    ChannelCreated(Channel),
    ChannelUpdated(Channel),
    /// Roles or settings: the stored guild, what to tell the guild and the caller.
    GuildChanged {
        guild: Box<Guild>,
        event: Box<GuildEvent>,
        reply: Box<Reply>,
    },
    MemberAdded(Member),
    MemberUpdated(Member),
    MemberRemoved(UserId),
    Banned(Ban),
    Unbanned(User),
}

pub struct GuildState {
    guild: Guild,
    channels: BTreeMap<ChannelId, Channel>,
    members: HashMap<UserId, Member>,
    sessions: BTreeMap<SessionId, OnlineSession>,
    /// Each online user's sessions (an index over `sessions`, for presence).
    user_sessions: HashMap<UserId, Vec<SessionId>>,
    /// The roles as the permission computation sees them (kept with `guild.roles`).
    grants: Vec<RoleGrant>,
    cache: PermissionCache,
    bans: HashMap<UserId, Ban>,
    /// Objects with a write in flight, and which request holds each.
    in_flight: HashSet<Object>,
    locks: HashMap<RequestId, Object>,
    /// Commands waiting for their object's write to finish, in arrival order.
    deferred: VecDeque<(RequestId, Command)>,
    pending: HashMap<RequestId, AfterPersist>,
    moderated: bool,
    /// Nonces of recent creates, for `enforce_nonce`.
    nonces: RecentNonces,
    /// Messages waiting for the moderators' verdict (and whether each is an edit).
    awaiting_verdict: HashMap<RequestId, (Message, bool)>,
}

impl GuildState {
    /// A guild stored before roles existed gets Discord's default @everyone role; members'
    /// roles are kept sorted (they key the permission cache) and rid of deleted roles.
    pub fn new(guild: Guild, channels: Vec<Channel>, members: Vec<Member>) -> GuildState {
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
        GuildState {
            grants: guild.roles.iter().map(Role::grant).collect(),
            guild,
            channels: channels.into_iter().map(|c| (c.id, c)).collect(),
            members,
            sessions: BTreeMap::new(),
            user_sessions: HashMap::new(),
            cache: PermissionCache::default(),
            bans: HashMap::new(),
            in_flight: HashSet::new(),
            locks: HashMap::new(),
            deferred: VecDeque::new(),
            pending: HashMap::new(),
            moderated: false,
            nonces: RecentNonces::default(),
            awaiting_verdict: HashMap::new(),
        }
    }

    /// The guild's bans, as stored.
    pub fn with_bans(mut self, bans: Vec<Ban>) -> GuildState {
        self.bans = bans.into_iter().map(|b| (b.user.id, b)).collect();
        self
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
    pub fn channels(&self) -> impl Iterator<Item = &Channel> {
        self.channels.values()
    }
    pub fn has_session(&self, session: SessionId) -> bool {
        self.sessions.contains_key(&session)
    }
    /// The status a connected session set (online, idle, dnd, invisible).
    pub fn session_status(&self, session: SessionId) -> Option<&str> {
        self.sessions.get(&session).map(|s| s.status.as_str())
    }
    pub fn online_sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Whether a session reads a message's content: a bot's session needs the MESSAGE_CONTENT
    /// intent unless the bot wrote the message or is mentioned in it (Discord's rule).
    pub fn reads_content(&self, session: SessionId, message: &Message) -> bool {
        let Some(s) = self.sessions.get(&session) else { return false };
        let is_bot = self.members.get(&s.user).is_some_and(|m| m.user.bot);
        !is_bot || s.intents & intents::MESSAGE_CONTENT != 0 || message.shown_to_bots_without_content(s.user)
    }

    /// Whether a member who is not a gateway session (a plugin bot) hears a dispatch for
    /// `audience`: a channel's events only if they may view it.
    pub fn hears(&self, user: UserId, audience: &Audience) -> bool {
        match audience {
            Audience::Channel { channel_id, .. } => {
                self.channel_permissions(user, *channel_id).contains(Permissions::VIEW_CHANNEL)
            }
            _ => true,
        }
    }

    /// The sessions an audience resolves to, in session order.
    pub fn audience(&self, audience: &Audience) -> Vec<SessionId> {
        let with = |intent: u64| move |(_, s): &(&SessionId, &OnlineSession)| s.intents & intent == intent;
        match audience {
            Audience::Guild { intent } => self.sessions.iter().filter(with(*intent)).map(|(id, _)| *id).collect(),
            Audience::Channel { channel_id, intent } => {
                // Only sessions that can view the channel; permissions are cached per role
                // set, so this is a lookup per session, not a computation.
                if !self.channels.contains_key(channel_id) {
                    return Vec::new();
                }
                debug_assert!(self.sessions.values().all(|s| self.members.contains_key(&s.user)));
                self.sessions
                    .iter()
                    .filter(with(*intent))
                    .filter(|(_, s)| self.channel_permissions(s.user, *channel_id).contains(Permissions::VIEW_CHANNEL))
                    .map(|(id, _)| *id)
                    .collect()
            }
            Audience::GuildExceptUser { user, intent } => {
                self.sessions.iter().filter(with(*intent)).filter(|(_, s)| s.user != *user).map(|(id, _)| *id).collect()
            }
            Audience::One(id) => self.sessions.contains_key(id).then_some(*id).into_iter().collect(),
            Audience::User(user) => self.user_sessions.get(user).cloned().unwrap_or_default(),
        }
    }

    /// May `user` send to the channel (view it and SEND_MESSAGES, a text channel)?
    pub fn can_send(&self, user: UserId, channel_id: ChannelId) -> Result<&Channel, GuildError> {
        self.require_in(user, channel_id, Permissions::SEND_MESSAGES)?;
        let channel = &self.channels[&channel_id];
        if channel.kind != CHANNEL_GUILD_TEXT {
            return Err(GuildError::MissingPermissions);
        }
        Ok(channel)
    }

    pub fn handle(&mut self, input: Input) -> Vec<Effect> {
        let mut fx = Vec::new();
        match input {
            Input::Command { request, command } => self.on_command(request, *command, &mut fx),
            Input::Persisted { request, result } => self.on_persisted(request, result, &mut fx),
            Input::SetModeration { enabled } => self.moderated = enabled,
            Input::Moderated { request, verdict } => self.on_moderated(request, verdict, &mut fx),
            Input::SessionConnect { session, user, intents, status } => {
                if !self.members.contains_key(&user) {
                    return fx;
                }
                let was_visible = self.visible_status(user).is_some();
                if self.sessions.insert(session, OnlineSession { user, intents, status }).is_none() {
                    self.user_sessions.entry(user).or_default().push(session);
                }
                fx.push(Effect::Dispatch {
                    audience: Audience::One(session),
                    event: Box::new(self.guild_create(user)),
                });
                if !was_visible && self.visible_status(user).is_some() {
                    self.push_presence(user, &mut fx);
                }
            }
            Input::SessionDisconnect { session } => {
                if let Some(s) = self.remove_session(session) {
                    let was_visible = s.status != "invisible" && s.status != "offline";
                    if was_visible && self.visible_status(s.user).is_none() {
                        self.push_presence(s.user, &mut fx);
                    }
                }
            }
            Input::SessionMoved { from, to } => {
                if let Some(online) = self.remove_session(from) {
                    let user = online.user;
                    if self.sessions.insert(to, online).is_none() {
                        self.user_sessions.entry(user).or_default().push(to);
                    }
                }
            }
            Input::PresenceUpdate { session, status } => {
                let Some(user) = self.sessions.get(&session).map(|s| s.user) else {
                    return fx;
                };
                let before = self.visible_status(user).map(str::to_owned);
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.status = status;
                }
                if self.visible_status(user) != before.as_deref() {
                    self.push_presence(user, &mut fx);
                }
            }
        }
        fx
    }

    fn on_command(&mut self, request: RequestId, command: Command, fx: &mut Vec<Effect>) {
        let reply_err = |fx: &mut Vec<Effect>, e| fx.push(Effect::Reply { request, result: Err(e) });
        if let Some(object) = command.object() {
            if self.in_flight.contains(&object) {
                if self.deferred.len() >= MAX_DEFERRED_COMMANDS {
                    return reply_err(fx, GuildError::Busy);
                }
                self.deferred.push_back((request, command));
                return;
            }
        }
        match command {
            Command::CreateMessage { author, channel_id, mut id, content, nonce, enforce_nonce } => {
                let channel = match self.can_send(author, channel_id) {
                    Ok(c) => c.clone(),
                    Err(e) => return reply_err(fx, e),
                };
                if let Some(nonce) = &nonce {
                    let key = (author, channel_id, nonce.to_string());
                    match self.nonces.find(&key, id).filter(|_| enforce_nonce) {
                        Some(Made::Stored(message_id)) => {
                            let reply = Reply::Existing { channel_id, message_id };
                            return fx.push(Effect::Reply { request, result: Ok(reply) });
                        }
                        // Its first write failed or timed out and may have landed: this
                        // writes the same row again, so that it is stored once either way
                        // (and fanned out once, now, though younger ids went out before).
                        Some(Made::Unsure(earlier)) => id = earlier,
                        None => {}
                    }
                    // Held through moderation and storage: a retry waits, then finds it.
                    self.lock(request, nonce_object(author, channel_id, nonce));
                }
                let mut message = Message::new(id, &channel, self.members[&author].user.clone(), content, nonce);
                message.mentions = self.resolve_mentions(&message.content);
                message.mention_everyone = (message.content.contains("@everyone") || message.content.contains("@here"))
                    && self.channel_permissions(author, channel_id).contains(Permissions::MENTION_EVERYONE);
                self.moderate_then_persist(request, message, false, fx);
            }
            Command::EditMessage { user, existing, content, edited_timestamp } => {
                if let Err(e) = self.check_own_message(user, &existing) {
                    return reply_err(fx, e);
                }
                let mut message = *existing;
                message.mentions = self.resolve_mentions(&content);
                message.content = content;
                message.edited_timestamp = Some(edited_timestamp);
                message.nonce = None;
                self.moderate_then_persist(request, message, true, fx);
            }
            Command::DeleteMessage { user, existing } => {
                // The author, or whoever manages the channel's messages.
                let allowed = match self.check_own_message(user, &existing) {
                    Err(GuildError::NotAuthor) => {
                        self.require_in(user, existing.channel_id, Permissions::MANAGE_MESSAGES)
                    }
                    other => other,
                };
                if let Err(e) = allowed {
                    return reply_err(fx, e);
                }
                let (channel_id, message_id) = (existing.channel_id, existing.id);
                self.persist(
                    request,
                    GuildWrite::DeleteMessage { channel_id, message_id },
                    AfterPersist::MessageDeleted { channel_id, message_id },
                    fx,
                );
            }
            Command::AddReaction { user, existing, emoji } => self.react(request, user, *existing, emoji, true, fx),
            Command::RemoveReaction { user, existing, emoji } => self.react(request, user, *existing, emoji, false, fx),
            Command::CreateChannel { user, mut channel, max_channels } => {
                if let Err(e) = self.require(user, Permissions::MANAGE_CHANNELS) {
                    return reply_err(fx, e);
                }
                if self.channels.len() >= max_channels {
                    return reply_err(fx, GuildError::TooManyChannels(max_channels));
                }
                channel.guild_id = Some(self.guild.id);
                channel.position = self.channels.len() as u32;
                self.persist_locked(
                    request,
                    Object::Guild,
                    GuildWrite::CreateChannel(channel.clone()),
                    AfterPersist::ChannelCreated(channel),
                    fx,
                );
            }
            Command::AddMember { mut member } => {
                let user = member.user.id;
                if self.members.contains_key(&user) || self.in_flight.contains(&Object::Member(user)) {
                    return reply_err(fx, GuildError::AlreadyMember);
                }
                if self.bans.contains_key(&user) {
                    return reply_err(fx, GuildError::Banned);
                }
                member.roles.retain(|r| self.guild.role(*r).is_some_and(|role| role.id != self.guild.id));
                member.roles.sort();
                let write = GuildWrite::AddMember { guild_id: self.guild.id, member: member.clone() };
                self.persist_locked(request, Object::Member(user), write, AfterPersist::MemberAdded(member), fx);
            }
            Command::RemoveMember { user } => {
                if !self.members.contains_key(&user) || self.in_flight.contains(&Object::Member(user)) {
                    return reply_err(fx, GuildError::NotMember);
                }
                if user == self.guild.owner_id {
                    return reply_err(fx, GuildError::OwnerCannotLeave);
                }
                let write = GuildWrite::RemoveMember { guild_id: self.guild.id, user_id: user };
                self.persist_locked(request, Object::Member(user), write, AfterPersist::MemberRemoved(user), fx);
            }
            Command::Typing { user, channel_id, unix_s } => {
                if let Err(e) = self.can_send(user, channel_id) {
                    return reply_err(fx, e);
                }
                let event = GuildEvent::TypingStart {
                    channel_id,
                    guild_id: Some(self.guild.id),
                    user_id: user,
                    unix_s,
                    member: Some(self.members[&user].clone()),
                };
                fx.push(Effect::Dispatch {
                    audience: Audience::Channel { channel_id, intent: intents::GUILD_MESSAGE_TYPING },
                    event: Box::new(event),
                });
                fx.push(Effect::Reply { request, result: Ok(Reply::Done) });
            }
            Command::UpdateGuild { user, name, moderation_fail_closed } => {
                if let Err(e) = self.require(user, Permissions::MANAGE_GUILD) {
                    return reply_err(fx, e);
                }
                let mut guild = self.guild.clone();
                if let Some(name) = name {
                    guild.name = name;
                }
                if let Some(closed) = moderation_fail_closed {
                    guild.moderation_fail_closed = closed;
                }
                let event = GuildEvent::GuildUpdate(guild.clone());
                self.persist_guild(request, guild.clone(), event, Reply::Guild(guild), fx);
            }
            command @ (Command::Permissions { .. }
            | Command::CreateRole { .. }
            | Command::UpdateRole { .. }
            | Command::DeleteRole { .. }
            | Command::UpdateMember { .. }
            | Command::UpdateChannel { .. }
            | Command::Kick { .. }
            | Command::Ban { .. }
            | Command::Unban { .. }) => {
                if let Err(e) = self.on_access_command(request, command, fx) {
                    reply_err(fx, e);
                }
            }
            Command::Snapshot { user } => {
                if !self.members.contains_key(&user) {
                    return reply_err(fx, GuildError::NotMember);
                }
                fx.push(Effect::Reply {
                    request,
                    result: Ok(Reply::Snapshot {
                        guild: self.guild.clone(),
                        channels: self.channels.values().cloned().collect(),
                        member_count: self.members.len(),
                    }),
                });
            }
        }
    }

    /// A write finished: apply it (or report its failure), free its object, and give the
    /// commands that waited for that object their turn, in order.
    fn on_persisted(&mut self, request: RequestId, result: Result<(), WriteError>, fx: &mut Vec<Effect>) {
        // Applied before the commands that waited run: they start from the stored state.
        let freed = self.unlock(request);
        self.apply_persisted(request, result, fx);
        if freed {
            self.run_deferred(fx);
        }
    }

    /// Only `request` may write `object` until it is unlocked.
    fn lock(&mut self, request: RequestId, object: Object) {
        let free = self.in_flight.insert(object);
        assert!(free, "one write per object in flight: {object:?}");
        self.locks.insert(request, object);
    }

    /// Frees what `request` held, if anything.
    fn unlock(&mut self, request: RequestId) -> bool {
        let Some(object) = self.locks.remove(&request) else { return false };
        let was_held = self.in_flight.remove(&object);
        debug_assert!(was_held, "a lock names an object in flight");
        true
    }

    fn run_deferred(&mut self, fx: &mut Vec<Effect>) {
        for (request, command) in std::mem::take(&mut self.deferred) {
            self.on_command(request, command, fx);
        }
    }

    /// A command that ends without a write (refused by moderation): frees what it held.
    fn finish_unwritten(&mut self, request: RequestId, fx: &mut Vec<Effect>) {
        if self.unlock(request) {
            self.run_deferred(fx);
        }
    }

    fn apply_persisted(&mut self, request: RequestId, result: Result<(), WriteError>, fx: &mut Vec<Effect>) {
        let Some(after) = self.pending.remove(&request) else {
            return;
        };
        if let Err(e) = result {
            if let (AfterPersist::MessageCreated(m), WriteError::Unavailable(_)) = (&after, &e) {
                if let Some(nonce) = &m.nonce {
                    self.nonces.record_unsure((m.author.id, m.channel_id, nonce.to_string()), m.id);
                }
            }
            let err = match e {
                WriteError::NotFound => GuildError::UnknownMessage,
                WriteError::Unavailable(m) => GuildError::Storage(m),
            };
            fx.push(Effect::Reply { request, result: Err(err) });
            return;
        }
        let guild_id = self.guild.id;
        let (audience, event, reply) = match after {
            AfterPersist::MessageCreated(m) => {
                if let Some(nonce) = &m.nonce {
                    self.nonces.record((m.author.id, m.channel_id, nonce.to_string()), m.id);
                }
                (
                    Audience::Channel { channel_id: m.channel_id, intent: intents::GUILD_MESSAGES },
                    GuildEvent::MessageCreate { message: m.clone(), member: self.members.get(&m.author.id).cloned() },
                    Reply::Message(m),
                )
            }
            AfterPersist::MessageEdited(m) => (
                Audience::Channel { channel_id: m.channel_id, intent: intents::GUILD_MESSAGES },
                GuildEvent::MessageUpdate { message: m.clone(), member: self.members.get(&m.author.id).cloned() },
                Reply::Message(m),
            ),
            AfterPersist::MessageDeleted { channel_id, message_id } => {
                self.nonces.forget(message_id);
                (
                    Audience::Channel { channel_id, intent: intents::GUILD_MESSAGES },
                    GuildEvent::MessageDelete { id: message_id, channel_id, guild_id: Some(guild_id) },
                    Reply::Done,
                )
            }
            AfterPersist::Reaction { added, message, emoji, user_id } => {
                let (channel_id, message_id) = (message.channel_id, message.id);
                let event = if added {
                    let member = self.members.get(&user_id).cloned();
                    let message_author_id = message.author.id;
                    GuildEvent::ReactionAdd {
                        user_id,
                        channel_id,
                        message_id,
                        guild_id,
                        emoji,
                        member,
                        message_author_id,
                    }
                } else {
                    GuildEvent::ReactionRemove { user_id, channel_id, message_id, guild_id, emoji }
                };
                let intent = intents::GUILD_MESSAGE_REACTIONS;
                (Audience::Channel { channel_id, intent }, event, Reply::Done)
            }
            AfterPersist::ChannelCreated(c) => {
                self.channels.insert(c.id, c.clone());
                (Audience::Guild { intent: intents::GUILDS }, GuildEvent::ChannelCreate(c.clone()), Reply::Channel(c))
            }
            AfterPersist::ChannelUpdated(c) => {
                self.set_channel(c.clone());
                (Audience::Guild { intent: intents::GUILDS }, GuildEvent::ChannelUpdate(c.clone()), Reply::Channel(c))
            }
            AfterPersist::GuildChanged { guild, event, reply } => {
                self.set_guild(*guild);
                (Audience::Guild { intent: intents::GUILDS }, *event, *reply)
            }
            AfterPersist::MemberAdded(member) => {
                self.members.insert(member.user.id, member.clone());
                (
                    Audience::Guild { intent: intents::GUILD_MEMBERS },
                    GuildEvent::MemberAdd { guild_id, member: member.clone() },
                    Reply::Member(member),
                )
            }
            AfterPersist::MemberUpdated(member) => {
                self.members.insert(member.user.id, member.clone());
                (
                    Audience::Guild { intent: intents::GUILD_MEMBERS },
                    GuildEvent::MemberUpdate { guild_id, member: member.clone() },
                    Reply::Member(member),
                )
            }
            AfterPersist::MemberRemoved(user_id) => {
                let Some(member) = self.drop_member(user_id, fx) else {
                    return fx.push(Effect::Reply { request, result: Ok(Reply::Done) });
                };
                (
                    Audience::Guild { intent: intents::GUILD_MEMBERS },
                    GuildEvent::MemberRemove { guild_id, user: member.user },
                    Reply::Done,
                )
            }
            AfterPersist::Banned(ban) => {
                if let Some(member) = self.drop_member(ban.user.id, fx) {
                    fx.push(Effect::Dispatch {
                        audience: Audience::Guild { intent: intents::GUILD_MEMBERS },
                        event: Box::new(GuildEvent::MemberRemove { guild_id, user: member.user }),
                    });
                }
                let user = ban.user.clone();
                self.add_ban(ban);
                (
                    Audience::Guild { intent: intents::GUILD_MODERATION },
                    GuildEvent::BanAdd { guild_id, user },
                    Reply::Done,
                )
            }
            AfterPersist::Unbanned(user) => {
                self.remove_ban(user.id);
                (
                    Audience::Guild { intent: intents::GUILD_MODERATION },
                    GuildEvent::BanRemove { guild_id, user },
                    Reply::Done,
                )
            }
        };
        fx.push(Effect::Dispatch { audience, event: Box::new(event) });
        fx.push(Effect::Reply { request, result: Ok(reply) });
    }

    /// With moderation on, a new or edited message first goes to the moderators
    /// (`Effect::Moderate`); it is persisted only once `Input::Moderated` allows it.
    fn moderate_then_persist(&mut self, request: RequestId, message: Message, is_edit: bool, fx: &mut Vec<Effect>) {
        if !self.moderated {
            return self.persist_message(request, message, is_edit, fx);
        }
        let candidate = ModerationCandidate {
            channel_id: message.channel_id,
            author: message.author.clone(),
            content: message.content.clone(),
            is_edit,
            mentions: message.mentions.iter().map(|u| u.id).collect(),
        };
        self.awaiting_verdict.insert(request, (message, is_edit));
        fx.push(Effect::Moderate { request, candidate });
    }

    fn persist_message(&mut self, request: RequestId, message: Message, is_edit: bool, fx: &mut Vec<Effect>) {
        if is_edit {
            self.persist(request, GuildWrite::EditMessage(message.clone()), AfterPersist::MessageEdited(message), fx);
        } else {
            self.persist(request, GuildWrite::PutMessage(message.clone()), AfterPersist::MessageCreated(message), fx);
        }
    }

    fn on_moderated(&mut self, request: RequestId, verdict: ModerationVerdict, fx: &mut Vec<Effect>) {
        let Some((mut message, is_edit)) = self.awaiting_verdict.remove(&request) else { return };
        match verdict {
            ModerationVerdict::Allow => self.persist_message(request, message, is_edit, fx),
            ModerationVerdict::Block(reason) => {
                fx.push(Effect::Reply { request, result: Err(GuildError::Blocked(reason)) });
                self.finish_unwritten(request, fx);
            }
            ModerationVerdict::Rewrite(content) => {
                if crate::model::validate_content(&content).is_err() {
                    let reason = "moderation left nothing that can be sent".to_owned();
                    fx.push(Effect::Reply { request, result: Err(GuildError::Blocked(reason)) });
                    return self.finish_unwritten(request, fx);
                }
                message.mentions = self.resolve_mentions(&content);
                message.content = content;
                self.persist_message(request, message, is_edit, fx);
            }
        }
    }

    fn persist(&mut self, request: RequestId, write: GuildWrite, after: AfterPersist, fx: &mut Vec<Effect>) {
        self.pending.insert(request, after);
        fx.push(Effect::Persist { request, write });
    }

    /// Persists a write to `object`, which has no other write in flight until this one ends.
    fn persist_locked(
        &mut self,
        request: RequestId,
        object: Object,
        write: GuildWrite,
        after: AfterPersist,
        fx: &mut Vec<Effect>,
    ) {
        self.lock(request, object);
        self.persist(request, write, after, fx);
    }

    /// Takes a member out (left, kicked or banned): their sessions get GUILD_DELETE and
    /// stop hearing from the guild.
    fn drop_member(&mut self, user_id: UserId, fx: &mut Vec<Effect>) -> Option<Member> {
        let member = self.members.remove(&user_id)?;
        let gone: Vec<SessionId> = self.user_sessions.get(&user_id).cloned().unwrap_or_default();
        for session in gone {
            fx.push(Effect::Dispatch {
                audience: Audience::One(session),
                event: Box::new(GuildEvent::GuildDelete { id: self.guild.id }),
            });
            fx.push(Effect::ForgetSession(session));
            self.remove_session(session);
        }
        Some(member)
    }

    /// Reacting needs the channel's history (READ_MESSAGE_HISTORY) and, to add, ADD_REACTIONS.
    fn react(
        &mut self,
        request: RequestId,
        user_id: UserId,
        message: Message,
        emoji: Emoji,
        added: bool,
        fx: &mut Vec<Effect>,
    ) {
        let need = if added {
            Permissions::READ_MESSAGE_HISTORY | Permissions::ADD_REACTIONS
        } else {
            Permissions::READ_MESSAGE_HISTORY
        };
        if let Err(e) = self.require_in(user_id, message.channel_id, need) {
            return fx.push(Effect::Reply { request, result: Err(e) });
        }
        let (channel_id, message_id, e) = (message.channel_id, message.id, emoji.clone());
        let write = if added {
            GuildWrite::AddReaction { channel_id, message_id, emoji: e, user_id }
        } else {
            GuildWrite::RemoveReaction { channel_id, message_id, emoji: e, user_id }
        };
        let after = AfterPersist::Reaction { added, message: Box::new(message), emoji, user_id };
        self.persist(request, write, after, fx);
    }

    fn check_own_message(&self, user: UserId, existing: &Message) -> Result<(), GuildError> {
        self.in_channel(user, existing.channel_id)?;
        if existing.author.id != user {
            return Err(GuildError::NotAuthor);
        }
        Ok(())
    }

    fn resolve_mentions(&self, content: &str) -> Vec<crate::model::User> {
        mentioned_user_ids(content).into_iter().filter_map(|id| self.members.get(&id).map(|m| m.user.clone())).collect()
    }

    /// The status others see: the "most present" of the user's sessions; None if offline
    /// or invisible.
    fn visible_status(&self, user: UserId) -> Option<&str> {
        const RANK: [&str; 3] = ["online", "dnd", "idle"];
        self.user_sessions
            .get(&user)?
            .iter()
            .filter_map(|id| self.sessions.get(id))
            .filter_map(|s| RANK.iter().position(|r| *r == s.status))
            .min()
            .map(|i| RANK[i])
    }

    fn remove_session(&mut self, session: SessionId) -> Option<OnlineSession> {
        let removed = self.sessions.remove(&session)?;
        if let Some(list) = self.user_sessions.get_mut(&removed.user) {
            list.retain(|s| *s != session);
            if list.is_empty() {
                self.user_sessions.remove(&removed.user);
            }
        }
        Some(removed)
    }

    fn presence(&self, user: UserId) -> Presence {
        let status = self.visible_status(user).unwrap_or("offline").to_owned();
        Presence { user_id: user, guild_id: self.guild.id, status }
    }

    fn push_presence(&self, user: UserId, fx: &mut Vec<Effect>) {
        fx.push(Effect::Dispatch {
            audience: Audience::GuildExceptUser { user, intent: intents::GUILD_PRESENCES },
            event: Box::new(GuildEvent::PresenceUpdate(self.presence(user))),
        });
    }

    /// GUILD_CREATE for a session of `user` that just connected: channels, member count,
    /// and the online members with their presences. A large guild (over
    /// [`LARGE_THRESHOLD`] members) sends only the user's own member, as Discord does:
    /// the rest is requested on demand, so connecting costs the same in any guild.
    pub fn guild_create(&self, user: UserId) -> GuildEvent {
        let large = self.members.len() > LARGE_THRESHOLD;
        let mut online: Vec<UserId> = if large {
            vec![user]
        } else {
            self.user_sessions.keys().copied().filter(|u| self.visible_status(*u).is_some()).collect()
        };
        online.sort();
        let members = online.iter().filter_map(|u| self.members.get(u)).cloned().collect();
        let presences = if large { Vec::new() } else { online.iter().map(|u| self.presence(*u)).collect() };
        GuildEvent::GuildCreate(Box::new(GuildSnapshot {
            guild: self.guild.clone(),
            joined_at: self.members.get(&user).map(|m| m.joined_at.clone()),
            member_count: self.members.len(),
            large,
            channels: self.channels.values().cloned().collect(),
            members,
            presences,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::User;
    use crate::snowflake::Snowflake;
    use serde_json::json;

    const OWNER: UserId = Snowflake(1);
    const BOB: UserId = Snowflake(2);
    const CAROL: UserId = Snowflake(3);
    const GENERAL: ChannelId = Snowflake(100);
    const ALL: u64 = intents::ALL_KNOWN;

    fn member(id: UserId, name: &str) -> Member {
        Member::new(User::new(id, name, false), "2026-01-01T00:00:00.000000+00:00".into())
    }

    fn text_channel(id: ChannelId) -> Channel {
        Channel::text(id, Snowflake(10), "general")
    }

    fn guild() -> GuildState {
        GuildState::new(
            Guild::new(Snowflake(10), "g", OWNER),
            vec![text_channel(GENERAL)],
            vec![member(OWNER, "owner"), member(BOB, "bob")],
        )
    }

    fn cmd(request: RequestId, command: Command) -> Input {
        Input::Command { request, command: Box::new(command) }
    }

    fn connect(g: &mut GuildState, session: u64, user: UserId, intents: u64) -> Vec<Effect> {
        g.handle(Input::SessionConnect { session: SessionId(session), user, intents, status: "online".into() })
    }

    /// A dispatch as a session receives it: Discord's name and payload.
    struct Seen {
        name: &'static str,
        data: Value,
    }

    fn dispatches(fx: &[Effect]) -> Vec<(&Audience, Seen)> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Dispatch { audience, event } => {
                    Some((audience, Seen { name: event.name(), data: event.discord_data() }))
                }
                _ => None,
            })
            .collect()
    }

    fn reply(fx: &[Effect]) -> &Result<Reply, GuildError> {
        fx.iter()
            .find_map(|e| match e {
                Effect::Reply { result, .. } => Some(result),
                _ => None,
            })
            .expect("a reply")
    }

    #[test]
    fn connect_sends_guild_create_and_presence_to_others() {
        let mut g = guild();
        let fx = connect(&mut g, 1, OWNER, ALL);
        let d = dispatches(&fx);
        assert_eq!(d[0].0, &Audience::One(SessionId(1)));
        assert_eq!(d[0].1.name, "GUILD_CREATE");
        assert_eq!(d[0].1.data["member_count"], 2);
        assert_eq!(d[0].1.data["channels"][0]["name"], "general");
        assert_eq!(d[1].1.name, "PRESENCE_UPDATE");
        assert_eq!(d[1].1.data["status"], "online");
        assert!(g.audience(d[1].0).is_empty(), "nobody else is online yet");

        let fx = connect(&mut g, 2, BOB, ALL);
        let d = dispatches(&fx);
        assert_eq!(d[0].1.data["presences"].as_array().unwrap().len(), 2);
        assert_eq!(g.audience(d[1].0), vec![SessionId(1)], "the owner hears bob come online");

        // A second session of the same user does not announce again.
        let fx = connect(&mut g, 3, BOB, ALL);
        assert_eq!(dispatches(&fx).len(), 1);
        // Closing one of two sessions: still online, no presence change.
        assert!(dispatches(&g.handle(Input::SessionDisconnect { session: SessionId(3) })).is_empty());
        let fx = g.handle(Input::SessionDisconnect { session: SessionId(2) });
        assert_eq!(dispatches(&fx)[0].1.data["status"], "offline");
    }

    #[test]
    fn a_moved_session_keeps_its_place_without_announcements() {
        let mut g = guild();
        connect(&mut g, 1, OWNER, ALL);
        connect(&mut g, 2, BOB, ALL);
        g.handle(Input::PresenceUpdate { session: SessionId(2), status: "dnd".into() });
        let fx = g.handle(Input::SessionMoved { from: SessionId(2), to: SessionId(7) });
        assert!(fx.is_empty(), "no GUILD_CREATE, no presence: nothing changed for anyone");
        assert!(!g.has_session(SessionId(2)) && g.has_session(SessionId(7)));
        assert_eq!(g.session_status(SessionId(7)), Some("dnd"));
        assert!(g.handle(Input::SessionMoved { from: SessionId(9), to: SessionId(8) }).is_empty());
        assert!(!g.has_session(SessionId(8)), "an unknown session does not appear");
        // The moved session is bob's only one: leaving announces him offline.
        let fx = g.handle(Input::SessionDisconnect { session: SessionId(7) });
        assert_eq!(dispatches(&fx)[0].1.data["status"], "offline");
    }

    #[test]
    fn non_members_cannot_connect_send_or_read() {
        let mut g = guild();
        assert!(connect(&mut g, 1, CAROL, ALL).is_empty());
        assert_eq!(g.online_sessions(), 0);
        let fx = g.handle(cmd(
            1,
            Command::CreateMessage {
                author: CAROL,
                channel_id: GENERAL,
                id: Snowflake(500),
                content: "hi".into(),
                nonce: None,
                enforce_nonce: false,
            },
        ));
        assert_eq!(reply(&fx), &Err(GuildError::NotMember));
        assert_eq!(reply(&g.handle(cmd(2, Command::Snapshot { user: CAROL }))), &Err(GuildError::NotMember));
        let fx = g.handle(cmd(
            3,
            Command::CreateMessage {
                author: BOB,
                channel_id: Snowflake(999),
                id: Snowflake(501),
                content: "hi".into(),
                nonce: None,
                enforce_nonce: false,
            },
        ));
        assert_eq!(reply(&fx), &Err(GuildError::UnknownChannel));
    }

    #[test]
    fn message_is_persisted_before_fan_out_and_targets_sessions_with_the_intent() {
        let mut g = guild();
        connect(&mut g, 1, OWNER, ALL);
        connect(&mut g, 2, BOB, intents::GUILDS); // no GUILD_MESSAGES
        connect(&mut g, 3, BOB, intents::GUILD_MESSAGES);
        let fx = g.handle(cmd(
            7,
            Command::CreateMessage {
                author: BOB,
                channel_id: GENERAL,
                id: Snowflake(500),
                content: "hello <@1>".into(),
                nonce: Some(json!("n1")),
                enforce_nonce: false,
            },
        ));
        assert_eq!(fx.len(), 1, "only a persist, nothing visible yet");
        let Effect::Persist { request: 7, write: GuildWrite::PutMessage(m) } = &fx[0] else { panic!("{fx:?}") };
        assert_eq!(m.mentions[0].id, OWNER);
        let fx = g.handle(Input::Persisted { request: 7, result: Ok(()) });
        let d = dispatches(&fx);
        assert_eq!(d[0].1.name, "MESSAGE_CREATE");
        assert_eq!(d[0].1.data["nonce"], "n1");
        assert_eq!(d[0].1.data["member"]["joined_at"], "2026-01-01T00:00:00.000000+00:00");
        assert_eq!(g.audience(d[0].0), vec![SessionId(1), SessionId(3)]);
        assert!(matches!(reply(&fx), Ok(Reply::Message(m)) if m.content == "hello <@1>"));
    }

    #[test]
    fn failed_persist_replies_error_and_dispatches_nothing() {
        let mut g = guild();
        connect(&mut g, 1, OWNER, ALL);
        g.handle(cmd(
            1,
            Command::CreateMessage {
                author: OWNER,
                channel_id: GENERAL,
                id: Snowflake(500),
                content: "x".into(),
                nonce: None,
                enforce_nonce: false,
            },
        ));
        let fx = g.handle(Input::Persisted { request: 1, result: Err(WriteError::Unavailable("down".into())) });
        assert!(dispatches(&fx).is_empty());
        assert!(matches!(reply(&fx), Err(GuildError::Storage(_))));
    }

    #[test]
    fn only_the_author_edits_and_the_author_or_a_message_manager_deletes() {
        let mut g = guild();
        let channel = text_channel(GENERAL);
        let owners = Message::new(Snowflake(499), &channel, User::new(OWNER, "owner", false), "o".into(), None);
        let fx = g.handle(cmd(9, Command::DeleteMessage { user: BOB, existing: Box::new(owners.clone()) }));
        assert_eq!(reply(&fx), &Err(GuildError::MissingPermissions), "bob has no MANAGE_MESSAGES");
        let msg = Message::new(Snowflake(500), &channel, User::new(BOB, "bob", false), "x".into(), None);
        let fx = g.handle(cmd(
            1,
            Command::EditMessage {
                user: OWNER,
                existing: Box::new(msg.clone()),
                content: "y".into(),
                edited_timestamp: "t".into(),
            },
        ));
        assert_eq!(reply(&fx), &Err(GuildError::NotAuthor));
        let fx = g.handle(cmd(2, Command::DeleteMessage { user: OWNER, existing: Box::new(owners) }));
        assert!(matches!(&fx[0], Effect::Persist { write: GuildWrite::DeleteMessage { .. }, .. }), "the owner manages");
        g.handle(Input::Persisted { request: 2, result: Ok(()) });
        let fx = g.handle(cmd(
            3,
            Command::EditMessage {
                user: BOB,
                existing: Box::new(msg.clone()),
                content: "y".into(),
                edited_timestamp: "t".into(),
            },
        ));
        assert!(matches!(&fx[0], Effect::Persist { write: GuildWrite::EditMessage(m), .. } if m.content == "y"));
        let fx = g.handle(Input::Persisted { request: 3, result: Err(WriteError::NotFound) });
        assert_eq!(reply(&fx), &Err(GuildError::UnknownMessage), "deleted meanwhile");
        let fx = g.handle(cmd(4, Command::DeleteMessage { user: BOB, existing: Box::new(msg) }));
        let fx2 = g.handle(Input::Persisted { request: 4, result: Ok(()) });
        assert!(matches!(&fx[0], Effect::Persist { write: GuildWrite::DeleteMessage { .. }, .. }));
        assert_eq!(dispatches(&fx2)[0].1.name, "MESSAGE_DELETE");
    }

    #[test]
    fn reactions_persist_then_reach_sessions_with_the_reactions_intent() {
        let mut g = guild();
        connect(&mut g, 1, OWNER, ALL);
        connect(&mut g, 2, BOB, intents::GUILDS | intents::GUILD_MESSAGES);
        let channel = text_channel(GENERAL);
        let msg = Message::new(Snowflake(500), &channel, User::new(OWNER, "owner", false), "poll".into(), None);
        let thumbs = Emoji::parse("👍").unwrap();
        let fx = g
            .handle(cmd(1, Command::AddReaction { user: BOB, existing: Box::new(msg.clone()), emoji: thumbs.clone() }));
        let Effect::Persist { write: GuildWrite::AddReaction { message_id, user_id, emoji, .. }, .. } = &fx[0] else {
            panic!("{fx:?}")
        };
        assert_eq!((*message_id, *user_id, emoji), (Snowflake(500), BOB, &thumbs));
        assert!(dispatches(&fx).is_empty(), "nothing visible before it is stored");
        let fx = g.handle(Input::Persisted { request: 1, result: Ok(()) });
        let d = dispatches(&fx);
        assert_eq!(d[0].1.name, "MESSAGE_REACTION_ADD");
        assert_eq!(d[0].1.data["emoji"], json!({ "id": null, "name": "👍" }));
        assert_eq!((&d[0].1.data["user_id"], &d[0].1.data["message_author_id"]), (&json!("2"), &json!("1")));
        assert_eq!(g.audience(d[0].0), vec![SessionId(1)], "only sessions with GUILD_MESSAGE_REACTIONS");
        assert_eq!(reply(&fx), &Ok(Reply::Done));

        g.handle(cmd(2, Command::RemoveReaction { user: BOB, existing: Box::new(msg.clone()), emoji: thumbs.clone() }));
        let fx = g.handle(Input::Persisted { request: 2, result: Ok(()) });
        assert_eq!(dispatches(&fx)[0].1.name, "MESSAGE_REACTION_REMOVE");
        let fx = g.handle(cmd(3, Command::AddReaction { user: CAROL, existing: Box::new(msg), emoji: thumbs }));
        assert_eq!(reply(&fx), &Err(GuildError::NotMember));
    }

    #[test]
    fn reaction_emojis_are_unicode_emojis() {
        for ok in ["👍", "1️⃣", "👩‍👩‍👧", "❤️", "©"] {
            assert_eq!(Emoji::parse(ok).map(|e| e.name), Ok(ok.to_owned()), "{ok}");
        }
        for bad in ["", "a", "ab👍", "👍 ", "custom:123", "\u{7}👍", &"👍".repeat(20)] {
            assert!(Emoji::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn join_and_leave() {
        let mut g = guild();
        connect(&mut g, 1, OWNER, ALL);
        let fx = g.handle(cmd(1, Command::AddMember { member: member(CAROL, "carol") }));
        assert!(matches!(&fx[0], Effect::Persist { write: GuildWrite::AddMember { .. }, .. }));
        // A second join while the first is in flight is refused.
        let fx2 = g.handle(cmd(2, Command::AddMember { member: member(CAROL, "carol") }));
        assert_eq!(reply(&fx2), &Err(GuildError::AlreadyMember));
        let fx = g.handle(Input::Persisted { request: 1, result: Ok(()) });
        let d = dispatches(&fx);
        assert_eq!(d[0].1.name, "GUILD_MEMBER_ADD");
        assert_eq!(d[0].1.data["guild_id"], "10");
        assert_eq!(g.audience(d[0].0), vec![SessionId(1)]);
        assert_eq!(g.member_count(), 3);

        connect(&mut g, 5, CAROL, ALL);
        assert_eq!(reply(&g.handle(cmd(3, Command::RemoveMember { user: OWNER }))), &Err(GuildError::OwnerCannotLeave));
        g.handle(cmd(4, Command::RemoveMember { user: CAROL }));
        let fx = g.handle(Input::Persisted { request: 4, result: Ok(()) });
        assert!(fx.contains(&Effect::ForgetSession(SessionId(5))));
        let d = dispatches(&fx);
        assert_eq!(d[0].1.name, "GUILD_DELETE");
        assert_eq!(d.last().unwrap().1.name, "GUILD_MEMBER_REMOVE");
        assert!(!g.is_member(CAROL));
        assert_eq!(g.audience(&Audience::Guild { intent: 0 }), vec![SessionId(1)]);
    }

    #[test]
    fn channel_create_needs_manage_channels_and_is_visible_after_persist() {
        let mut g = guild();
        connect(&mut g, 1, BOB, ALL);
        let mut c = text_channel(Snowflake(101));
        c.name = Some("random".into());
        let create =
            |user, channel: &Channel| Command::CreateChannel { user, channel: channel.clone(), max_channels: 500 };
        assert_eq!(reply(&g.handle(cmd(1, create(BOB, &c)))), &Err(GuildError::MissingPermissions));
        g.handle(cmd(2, create(OWNER, &c)));
        let view = Permissions::VIEW_CHANNEL;
        assert!(!g.channel_permissions(BOB, Snowflake(101)).contains(view), "not before the write is acknowledged");
        let fx = g.handle(Input::Persisted { request: 2, result: Ok(()) });
        assert_eq!(dispatches(&fx)[0].1.name, "CHANNEL_CREATE");
        assert!(g.channel_permissions(BOB, Snowflake(101)).contains(view));
        assert_eq!(g.audience(dispatches(&fx)[0].0), vec![SessionId(1)]);
    }

    #[test]
    fn the_channel_quota_counts_creations_in_flight() {
        let mut g = guild(); // #general: one channel
        let create = |id| Command::CreateChannel { user: OWNER, channel: text_channel(Snowflake(id)), max_channels: 2 };
        let fx = g.handle(cmd(1, create(101)));
        assert!(fx.iter().any(|e| matches!(e, Effect::Persist { .. })));
        // A second creation waits for the first (its write is in flight), then is refused.
        assert!(g.handle(cmd(2, create(102))).is_empty(), "deferred, not yet answered");
        let fx = g.handle(Input::Persisted { request: 1, result: Ok(()) });
        let answers: Vec<_> = fx
            .iter()
            .filter_map(|e| match e {
                Effect::Reply { request, result } => Some((*request, result.is_ok())),
                _ => None,
            })
            .collect();
        assert_eq!(answers, [(1, true), (2, false)]);
        assert!(fx.contains(&Effect::Reply { request: 2, result: Err(GuildError::TooManyChannels(2)) }));
        assert_eq!(g.channels.len(), 2);
    }

    fn answers(fx: &[Effect]) -> Vec<(RequestId, Result<Reply, GuildError>)> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Reply { request, result } => Some((*request, result.clone())),
                _ => None,
            })
            .collect()
    }

    fn create_with_nonce(id: u64, nonce: &str, enforce_nonce: bool) -> Command {
        Command::CreateMessage {
            author: OWNER,
            channel_id: GENERAL,
            id: Snowflake(id << 22),
            content: format!("try at {id}"),
            nonce: Some(json!(nonce)),
            enforce_nonce,
        }
    }

    #[test]
    fn a_retry_with_an_enforced_nonce_gets_the_first_message_even_while_it_is_stored() {
        let mut g = guild();
        g.handle(cmd(1, create_with_nonce(1_000, "n", true)));
        // The retry comes while the first is being stored: it waits for it.
        assert!(g.handle(cmd(2, create_with_nonce(1_100, "n", true))).is_empty());
        let fx = g.handle(Input::Persisted { request: 1, result: Ok(()) });
        let first = Snowflake(1_000 << 22);
        let got = answers(&fx);
        assert!(matches!(&got[0], (1, Ok(Reply::Message(m))) if m.id == first), "{got:?}");
        assert_eq!(got[1], (2, Ok(Reply::Existing { channel_id: GENERAL, message_id: first })));
        assert!(!fx.iter().any(|e| matches!(e, Effect::Persist { .. })), "the retry wrote nothing");
        // Later still, within the window: the same.
        let fx = g.handle(cmd(3, create_with_nonce(1_000 + 60_000, "n", true)));
        assert_eq!(answers(&fx), [(3, Ok(Reply::Existing { channel_id: GENERAL, message_id: first }))]);
        // Without enforce_nonce, or with another nonce, a new message.
        for (request, create) in [(4, create_with_nonce(2_000, "n", false)), (5, create_with_nonce(2_100, "m", true))] {
            let fx = g.handle(cmd(request, create));
            assert!(fx.iter().any(|e| matches!(e, Effect::Persist { .. })), "request {request}");
            g.handle(Input::Persisted { request, result: Ok(()) });
        }
        // Past the window (of the latest message with "n", request 4's), a new message too.
        let fx = g.handle(cmd(6, create_with_nonce(2_000 + RecentNonces::WINDOW_MS, "n", true)));
        assert!(fx.iter().any(|e| matches!(e, Effect::Persist { .. })));
    }

    /// A create whose write failed or timed out may still have been stored (a timeout
    /// cannot tell): its retry writes the same message again, under the same id, so that
    /// it is stored once whichever happened. Before, the retry made a second message.
    #[test]
    fn a_failed_or_blocked_create_frees_its_nonce_for_the_retry() {
        let mut g = guild();
        let first = Snowflake(1_000 << 22);
        g.handle(cmd(1, create_with_nonce(1_000, "n", true)));
        let fx = g.handle(Input::Persisted { request: 1, result: Err(WriteError::Unavailable("timed out".into())) });
        assert!(matches!(&answers(&fx)[0], (1, Err(GuildError::Storage(_)))));
        let fx = g.handle(cmd(2, create_with_nonce(1_100, "n", true)));
        let rewrite =
            fx.iter().any(|e| matches!(e, Effect::Persist { write: GuildWrite::PutMessage(m), .. } if m.id == first));
        assert!(rewrite, "the retry writes the unsure message again: {fx:?}");
        let fx = g.handle(Input::Persisted { request: 2, result: Ok(()) });
        assert!(matches!(&answers(&fx)[0], (2, Ok(Reply::Message(m))) if m.id == first));
        let fx = g.handle(cmd(3, create_with_nonce(1_200, "n", true)));
        assert_eq!(answers(&fx), [(3, Ok(Reply::Existing { channel_id: GENERAL, message_id: first }))]);

        g.handle(Input::SetModeration { enabled: true });
        let fx = g.handle(cmd(4, create_with_nonce(2_000, "blocked", true)));
        assert!(fx.iter().any(|e| matches!(e, Effect::Moderate { .. })));
        assert!(g.handle(cmd(5, create_with_nonce(2_100, "blocked", true))).is_empty(), "waits for the verdict");
        let fx = g.handle(Input::Moderated { request: 4, verdict: ModerationVerdict::Block("no".into()) });
        assert!(matches!(&answers(&fx)[0], (4, Err(GuildError::Blocked(_)))));
        assert!(fx.iter().any(|e| matches!(e, Effect::Moderate { request: 5, .. })), "the retry runs: {fx:?}");
    }

    #[test]
    fn invisible_and_presence_updates() {
        let mut g = guild();
        connect(&mut g, 1, OWNER, ALL);
        let fx = g.handle(Input::SessionConnect {
            session: SessionId(2),
            user: BOB,
            intents: ALL,
            status: "invisible".into(),
        });
        assert_eq!(dispatches(&fx).len(), 1, "GUILD_CREATE only: invisible announces nothing");
        let fx = g.handle(Input::PresenceUpdate { session: SessionId(2), status: "dnd".into() });
        assert_eq!(dispatches(&fx)[0].1.data["status"], "dnd");
        let fx = g.handle(Input::PresenceUpdate { session: SessionId(2), status: "dnd".into() });
        assert!(fx.is_empty(), "no change, no dispatch");
    }

    #[test]
    fn moderation_blocks_rewrites_or_allows_before_anything_is_stored() {
        let mut g = guild();
        connect(&mut g, 1, OWNER, ALL);
        let create = |content: &str| Command::CreateMessage {
            author: BOB,
            channel_id: GENERAL,
            id: Snowflake(500),
            content: content.into(),
            nonce: None,
            enforce_nonce: false,
        };
        // Off: straight to storage.
        assert!(matches!(&g.handle(cmd(1, create("a")))[0], Effect::Persist { .. }));
        g.handle(Input::SetModeration { enabled: true });
        let fx = g.handle(cmd(2, create("bad words")));
        let [Effect::Moderate { request: 2, candidate }] = fx.as_slice() else { panic!("{fx:?}") };
        assert_eq!((candidate.content.as_str(), candidate.is_edit, candidate.author.id), ("bad words", false, BOB));
        let fx = g.handle(Input::Moderated { request: 2, verdict: ModerationVerdict::Block("no".into()) });
        assert_eq!(fx, vec![Effect::Reply { request: 2, result: Err(GuildError::Blocked("no".into())) }]);

        g.handle(cmd(3, create("darn it <@1>")));
        let fx = g.handle(Input::Moderated { request: 3, verdict: ModerationVerdict::Rewrite("**** it <@1>".into()) });
        let Effect::Persist { write: GuildWrite::PutMessage(m), .. } = &fx[0] else { panic!("{fx:?}") };
        assert_eq!(m.content, "**** it <@1>");
        assert_eq!(m.mentions[0].id, OWNER);
        g.handle(cmd(4, create("x")));
        let fx = g.handle(Input::Moderated { request: 4, verdict: ModerationVerdict::Rewrite("  ".into()) });
        assert!(matches!(reply(&fx), Err(GuildError::Blocked(_))), "a rewrite to nothing is a block");
        g.handle(cmd(5, create("fine")));
        let fx = g.handle(Input::Moderated { request: 5, verdict: ModerationVerdict::Allow });
        assert!(matches!(&fx[0], Effect::Persist { .. }));
    }

    #[test]
    fn only_the_owner_updates_the_guild() {
        let mut g = guild();
        connect(&mut g, 1, BOB, ALL);
        let update =
            |user| Command::UpdateGuild { user, name: Some("renamed".into()), moderation_fail_closed: Some(true) };
        assert_eq!(reply(&g.handle(cmd(1, update(BOB)))), &Err(GuildError::MissingPermissions));
        assert_eq!(reply(&g.handle(cmd(2, update(CAROL)))), &Err(GuildError::NotMember));
        assert!(matches!(
            &g.handle(cmd(3, update(OWNER)))[0],
            Effect::Persist { write: GuildWrite::UpdateGuild(_), .. }
        ));
        assert_eq!(g.guild().name, "g", "not before it is stored");
        let fx = g.handle(Input::Persisted { request: 3, result: Ok(()) });
        assert_eq!(dispatches(&fx)[0].1.name, "GUILD_UPDATE");
        assert!(g.guild().moderation_fail_closed);
        assert_eq!(g.guild().name, "renamed");
    }

    #[test]
    fn large_guilds_send_no_member_list_on_connect() {
        let members: Vec<Member> = (1..=LARGE_THRESHOLD as u64 + 1).map(|i| member(Snowflake(i), "m")).collect();
        let mut g = GuildState::new(Guild::new(Snowflake(10), "big", OWNER), vec![text_channel(GENERAL)], members);
        connect(&mut g, 1, OWNER, ALL);
        let fx = connect(&mut g, 2, BOB, ALL);
        let gc = &dispatches(&fx)[0].1.data;
        assert_eq!(gc["large"], true);
        assert_eq!(gc["member_count"], LARGE_THRESHOLD + 1);
        assert_eq!(gc["members"].as_array().unwrap().len(), 1, "only the connecting user");
        assert_eq!(gc["members"][0]["user"]["id"], "2");
        assert_eq!(gc["presences"], json!([]));
    }

    #[test]
    fn typing_reaches_channel_viewers_with_typing_intent() {
        let mut g = guild();
        connect(&mut g, 1, OWNER, intents::GUILD_MESSAGE_TYPING);
        connect(&mut g, 2, BOB, intents::GUILD_MESSAGES);
        let fx = g.handle(cmd(1, Command::Typing { user: BOB, channel_id: GENERAL, unix_s: 5 }));
        let d = dispatches(&fx);
        assert_eq!(d[0].1.name, "TYPING_START");
        assert_eq!(g.audience(d[0].0), vec![SessionId(1)]);
        assert_eq!(reply(&fx), &Ok(Reply::Done));
    }
}
