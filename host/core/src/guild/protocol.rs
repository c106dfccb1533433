//! What the guild state machine says to the runtime and what its parts say to each other:
//! the effects it asks for (store this, answer that, tell these sessions), the writes it
//! stores, its errors and replies, and [`Decision`], what a command family decides for
//! the pipeline in `guild.rs` to carry out. Plain data; nothing here decides anything.

use crate::event::GuildEvent;
use crate::gateway::Intents;
use crate::model::{Ban, Channel, ChannelId, Emoji, Guild, GuildId, Member, Message, MessageId, Role, User, UserId};
use crate::permissions::Permissions;

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

/// One use of an invite, taken in the same write as the membership it grants: a join the
/// guild refuses (a ban, already a member) takes none.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InviteUse {
    pub code: String,
    /// The time the use is taken at (an invite expired by then is unknown).
    pub at_unix_ms: u64,
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
    /// With `invite`, the membership and one use of that invite of this guild are written
    /// together: `NotFound` (and nothing written) if it is unknown, expired or used up.
    AddMember {
        guild_id: GuildId,
        member: Member,
        invite: Option<InviteUse>,
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
    pub author: User,
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
    /// The invite a join came with is unknown, expired or used up (by the time it was written).
    #[error("Unknown Invite")]
    UnknownInvite,
    /// The guild's own record is gone (deleted under the actor).
    #[error("Unknown Guild")]
    UnknownGuild,
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

impl GuildError {
    /// A failed write as its caller hears it: `not_found` says what was missing.
    pub(super) fn from_write(e: WriteError, not_found: GuildError) -> GuildError {
        match e {
            WriteError::NotFound => not_found,
            WriteError::Unavailable(m) => GuildError::Storage(m),
        }
    }
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
    /// Channels (by id).
    Channels(Vec<Channel>),
    /// The message an earlier create with the same nonce made (`enforce_nonce`).
    Existing {
        channel_id: ChannelId,
        message_id: MessageId,
    },
    Done,
}

/// Which sessions a dispatch goes to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Audience {
    /// Every online session with this intent.
    Guild {
        intent: Intents,
    },
    /// Every online session that can view the channel and has this intent.
    Channel {
        channel_id: ChannelId,
        intent: Intents,
    },
    /// Every session with this intent, except those of one user (presence about that user).
    GuildExceptUser {
        user: UserId,
        intent: Intents,
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

impl Effect {
    pub(super) fn dispatch(audience: Audience, event: GuildEvent) -> Effect {
        Effect::Dispatch { audience, event: Box::new(event) }
    }
}

/// What a write holds while it is in flight: a second command that writes the same object
/// waits for the first to end, so that it starts from the stored state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Object {
    Guild,
    Channel(ChannelId),
    Member(UserId),
    /// A message nonce of one author in one channel (hashed: a collision only makes two
    /// creates wait for each other).
    Nonce(u64),
}

/// A new guild record (its roles or its settings) to store; once stored it replaces the
/// guild's, `event` goes to the guild and `reply` to the caller. One guild write is in
/// flight at a time (the next waits), so each starts from the stored record.
#[derive(Debug, Clone)]
pub(super) struct RecordChange {
    pub guild: Box<Guild>,
    pub event: Box<GuildEvent>,
    pub reply: Box<Reply>,
}

impl RecordChange {
    pub fn decision(guild: Guild, event: GuildEvent, reply: Reply) -> Decision<RecordChange> {
        let write = GuildWrite::UpdateGuild(guild.clone());
        Decision::Write {
            write,
            stored: RecordChange { guild: Box::new(guild), event: Box::new(event), reply: Box::new(reply) },
        }
    }
}

/// A new or edited message before the moderators have seen it.
#[derive(Debug, Clone)]
pub(super) struct Draft {
    pub message: Message,
    pub is_edit: bool,
}

impl Draft {
    pub fn candidate(&self) -> ModerationCandidate {
        let m = &self.message;
        ModerationCandidate {
            channel_id: m.channel_id,
            author: m.author.clone(),
            content: m.content.clone(),
            is_edit: self.is_edit,
            mentions: m.mentions.iter().map(|u| u.id).collect(),
        }
    }
}

/// What a command family decides about a command; the pipeline (`GuildState`) carries it
/// out. `S` is the family's record of a write, applied once the write is stored. A family
/// returns `Result<Decision<S>, GuildError>`, so that its checks refuse with `?`. A write
/// (or a message sent to the moderators) holds the command's [`Object`], if it has one,
/// until it ends.
// Not boxed: a decision lives from the family's answer to the pipeline's next step.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(super) enum Decision<S> {
    /// Answer now; nothing is written.
    Answer(Reply),
    /// Tell sessions now and answer; nothing is written (typing).
    Announce { audience: Audience, event: GuildEvent, reply: Reply },
    /// Store `write`; `stored` is applied once the write is acknowledged.
    Write { write: GuildWrite, stored: S },
    /// A new or edited message: the moderators see it first.
    Moderate(Draft),
}

impl<S> Decision<S> {
    /// The same decision with the record of the write wrapped for the pipeline.
    pub fn map<T>(self, f: impl FnOnce(S) -> T) -> Decision<T> {
        match self {
            Decision::Answer(reply) => Decision::Answer(reply),
            Decision::Announce { audience, event, reply } => Decision::Announce { audience, event, reply },
            Decision::Write { write, stored } => Decision::Write { write, stored: f(stored) },
            Decision::Moderate(draft) => Decision::Moderate(draft),
        }
    }
}
