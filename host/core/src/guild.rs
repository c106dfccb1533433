//! The guild state machine: one per guild, sans-IO.
//!
//! It owns what the guild knows ([`GuildData`]: channels, members, roles, bans, which
//! sessions are online and with what intents, presences) and decides who may do what and
//! who sees what. Writes follow one rule: a change is *persisted first*
//! (`Effect::Persist`), and only when the runtime reports `Input::Persisted` is it applied,
//! fanned out and acknowledged. The runtime must report persist results in the order it
//! received the `Persist` effects, so that fan-out order equals id order within the guild.
//!
//! The parts, each a module under `guild/`:
//! - `protocol`: what goes in and out (effects, writes, errors, replies) and
//!   [`Decision`](protocol::Decision), what a command family decides;
//! - `data`, `access`, `sessions`: the guild's state, who may do what (permissions), who is
//!   online and hears what;
//! - the command families, each with its commands, checks, the step after its writes are
//!   stored, and its tests: `messages`, `members`, `bans` (kicks and bans), `roles`,
//!   `channels`, `settings` (the guild's record and reads of it). A new family is a module
//!   and one variant in [`Command`] and in `Stored`; the compiler finds the rest.
//!
//! This file is the pipeline every command goes through: the per-object write lock (one
//! write in flight per guild record, channel, member or message nonce; later commands on
//! it wait, in order), moderation before a message is stored, persistence, and fan-out of
//! what the families applied. Families never call each other, only the shared parts.

mod access;
mod bans;
mod channels;
mod data;
mod members;
mod messages;
mod protocol;
mod roles;
mod sessions;
mod settings;
#[cfg(test)]
mod testing;

use std::collections::{HashMap, HashSet, VecDeque};

use crate::gateway::{Intents, Status};
use crate::model::{Ban, Channel, Guild, Member, Message, UserId};
use crate::permissions::Permissions;

pub use bans::BanCommand;
pub use channels::{ChannelChange, ChannelCommand};
pub use data::GuildData;
pub use members::{MemberChange, MemberCommand};
pub use messages::MessageCommand;
pub use protocol::{
    Audience, Effect, GuildError, GuildWrite, InviteUse, ModerationCandidate, ModerationVerdict, Reply, RequestId,
    SessionId, WriteError,
};
pub use roles::{RoleCommand, RolePatch};
pub use sessions::LARGE_THRESHOLD;
pub use settings::GuildCommand;

use protocol::{Decision, Draft, Object, RecordChange};

/// Commands that wait while another write to the same object is in flight, at most.
pub const MAX_DEFERRED_COMMANDS: usize = 1024;

/// A command, by family. Plain data (serde): a command can be sent to a guild on another
/// node. On the wire a command is its family's variant alone (`{"CreateMessage": {...}}`),
/// as it was before commands had families, so nodes of either version read each other.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Command {
    Message(MessageCommand),
    Member(MemberCommand),
    Ban(BanCommand),
    Role(RoleCommand),
    Channel(ChannelCommand),
    Guild(GuildCommand),
}

macro_rules! command_families {
    ($($family:ident => $variant:ident),* $(,)?) => {$(
        impl From<$family> for Command {
            fn from(c: $family) -> Command {
                Command::$variant(c)
            }
        }
    )*};
}
command_families!(
    MessageCommand => Message,
    MemberCommand => Member,
    BanCommand => Ban,
    RoleCommand => Role,
    ChannelCommand => Channel,
    GuildCommand => Guild,
);

impl Command {
    /// The object this command writes, if only one write to it may be in flight at a time
    /// (a second waits for the first, so that it starts from the stored state).
    fn object(&self) -> Option<Object> {
        match self {
            Command::Message(c) => c.object(),
            Command::Member(c) => Some(Object::Member(c.target())),
            Command::Ban(c) => Some(Object::Member(c.target())),
            Command::Role(_) => Some(Object::Guild),
            Command::Channel(c) => Some(c.object()),
            Command::Guild(GuildCommand::UpdateGuild { .. }) => Some(Object::Guild),
            Command::Guild(
                GuildCommand::Snapshot { .. } | GuildCommand::Permissions { .. } | GuildCommand::Readable { .. },
            ) => None,
        }
    }
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
        intents: Intents,
        status: Status,
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
        status: Status,
    },
}

/// A write in flight, by family: applied once it is stored.
#[derive(Debug)]
enum Stored {
    Message(messages::Stored),
    Member(members::Stored),
    Ban(bans::Stored),
    Channel(channels::Stored),
    /// The guild's record: roles and settings.
    Record(RecordChange),
}

pub struct GuildState {
    data: GuildData,
    /// Objects with a write in flight, and which request holds each.
    in_flight: HashSet<Object>,
    locks: HashMap<RequestId, Object>,
    /// Commands waiting for their object's write to finish, in arrival order.
    deferred: VecDeque<(RequestId, Command)>,
    /// Writes in flight, by request.
    pending: HashMap<RequestId, Stored>,
    moderated: bool,
    /// Messages waiting for the moderators' verdict.
    awaiting_verdict: HashMap<RequestId, Draft>,
    /// Changes whenever an audience may resolve differently (sessions, members, roles,
    /// channels): what the runtime resolved for an audience holds while it stays the same.
    audience_epoch: u64,
}

impl GuildState {
    pub fn new(guild: Guild, channels: Vec<Channel>, members: Vec<Member>) -> GuildState {
        GuildState::from_data(GuildData::new(guild, channels, members, Vec::new()))
    }

    pub fn from_data(data: GuildData) -> GuildState {
        GuildState {
            data,
            in_flight: HashSet::new(),
            locks: HashMap::new(),
            deferred: VecDeque::new(),
            pending: HashMap::new(),
            moderated: false,
            awaiting_verdict: HashMap::new(),
            audience_epoch: 0,
        }
    }

    /// The guild's bans, as stored.
    pub fn with_bans(mut self, bans: Vec<Ban>) -> GuildState {
        self.data.bans = bans.into_iter().map(|b| (b.user.id, b)).collect();
        self
    }

    /// What the guild knows (members, channels, sessions, permissions), to read.
    pub fn data(&self) -> &GuildData {
        &self.data
    }

    pub fn guild(&self) -> &Guild {
        self.data.guild()
    }
    pub fn member_count(&self) -> usize {
        self.data.member_count()
    }
    pub fn is_member(&self, user: UserId) -> bool {
        self.data.is_member(user)
    }
    pub fn is_banned(&self, user: UserId) -> bool {
        self.data.is_banned(user)
    }
    pub fn channels(&self) -> impl Iterator<Item = &Channel> {
        self.data.channels()
    }
    pub fn has_session(&self, session: SessionId) -> bool {
        self.data.has_session(session)
    }
    pub fn session_status(&self, session: SessionId) -> Option<Status> {
        self.data.session_status(session)
    }
    pub fn online_sessions(&self) -> usize {
        self.data.online_sessions()
    }
    pub fn reads_content(&self, session: SessionId, message: &Message) -> bool {
        self.data.reads_content(session, message)
    }
    pub fn hears(&self, user: UserId, audience: &Audience) -> bool {
        self.data.hears(user, audience)
    }
    pub fn audience(&self, audience: &Audience) -> Vec<SessionId> {
        self.data.audience(audience)
    }
    /// While this stays the same, every audience resolves to the same sessions.
    pub fn audience_epoch(&self) -> u64 {
        self.audience_epoch
    }
    /// Whether a session reads every message's content whatever the message (not a bot
    /// without MESSAGE_CONTENT, for which it depends on the message: see `reads_content`).
    pub fn reads_all_content(&self, session: SessionId) -> bool {
        self.data.reads_all_content(session)
    }
    pub fn guild_permissions(&self, user: UserId) -> Permissions {
        self.data.guild_permissions(user)
    }
    pub fn channel_permissions(&self, user: UserId, channel_id: crate::model::ChannelId) -> Permissions {
        self.data.channel_permissions(user, channel_id)
    }
    pub fn guild_create(&self, user: UserId) -> crate::event::GuildEvent {
        self.data.guild_create(user)
    }

    pub fn handle(&mut self, input: Input) -> Vec<Effect> {
        let mut fx = Vec::new();
        if matches!(input, Input::SessionConnect { .. } | Input::SessionDisconnect { .. } | Input::SessionMoved { .. })
        {
            self.audience_epoch += 1;
        }
        match input {
            Input::Command { request, command } => self.on_command(request, *command, &mut fx),
            Input::Persisted { request, result } => self.on_persisted(request, result, &mut fx),
            Input::SetModeration { enabled } => self.moderated = enabled,
            Input::Moderated { request, verdict } => self.on_moderated(request, verdict, &mut fx),
            Input::SessionConnect { session, user, intents, status } => {
                fx = self.data.connect(session, user, intents, status)
            }
            Input::SessionDisconnect { session } => fx = self.data.disconnect(session),
            Input::SessionMoved { from, to } => self.data.move_session(from, to),
            Input::PresenceUpdate { session, status } => fx = self.data.set_status(session, status),
        }
        fx
    }

    /// A command waits if its object has a write in flight; otherwise its family decides.
    fn on_command(&mut self, request: RequestId, command: Command, fx: &mut Vec<Effect>) {
        let object = command.object();
        if let Some(object) = object {
            if self.in_flight.contains(&object) {
                if self.deferred.len() >= MAX_DEFERRED_COMMANDS {
                    return fx.push(Effect::Reply { request, result: Err(GuildError::Busy) });
                }
                self.deferred.push_back((request, command));
                return;
            }
        }
        let data = &self.data;
        let decision = match command {
            Command::Message(c) => data.decide_message(c).map(|d| d.map(Stored::Message)),
            Command::Member(c) => data.decide_member(c).map(|d| d.map(Stored::Member)),
            Command::Ban(c) => data.decide_ban(c).map(|d| d.map(Stored::Ban)),
            Command::Role(c) => data.decide_role(c).map(|d| d.map(Stored::Record)),
            Command::Channel(c) => data.decide_channel(c).map(|d| d.map(Stored::Channel)),
            Command::Guild(c) => data.decide_guild(c).map(|d| d.map(Stored::Record)),
        };
        if let (Some(object), Ok(Decision::Write { .. } | Decision::Moderate(_))) = (object, &decision) {
            self.lock(request, object);
        }
        self.carry_out(request, decision, fx);
    }

    /// Does what a family decided. A command that ends without a write frees what it held
    /// (a message the moderators refused), and the commands that waited for it run.
    fn carry_out(&mut self, request: RequestId, decision: Result<Decision<Stored>, GuildError>, fx: &mut Vec<Effect>) {
        match decision {
            Ok(Decision::Write { write, stored }) => {
                self.pending.insert(request, stored);
                fx.push(Effect::Persist { request, write });
            }
            Ok(Decision::Moderate(draft)) if self.moderated => {
                fx.push(Effect::Moderate { request, candidate: draft.candidate() });
                self.awaiting_verdict.insert(request, draft);
            }
            Ok(Decision::Moderate(draft)) => {
                let decision = self.data.moderated(draft, ModerationVerdict::Allow);
                self.carry_out(request, decision.map(|d| d.map(Stored::Message)), fx);
            }
            Ok(Decision::Answer(reply)) => self.answer_unwritten(request, Ok(reply), fx),
            Ok(Decision::Announce { audience, event, reply }) => {
                fx.push(Effect::dispatch(audience, event));
                self.answer_unwritten(request, Ok(reply), fx);
            }
            Err(e) => self.answer_unwritten(request, Err(e), fx),
        }
    }

    fn answer_unwritten(&mut self, request: RequestId, result: Result<Reply, GuildError>, fx: &mut Vec<Effect>) {
        fx.push(Effect::Reply { request, result });
        if self.unlock(request) {
            self.run_deferred(fx);
        }
    }

    fn on_moderated(&mut self, request: RequestId, verdict: ModerationVerdict, fx: &mut Vec<Effect>) {
        let Some(draft) = self.awaiting_verdict.remove(&request) else { return };
        let decision = self.data.moderated(draft, verdict);
        self.carry_out(request, decision.map(|d| d.map(Stored::Message)), fx);
    }

    /// A write finished: apply it (or report its failure), answer the caller, announce it,
    /// free its object, and give the commands that waited for that object their turn, in
    /// order. The answer comes before the announcement: the caller never waits for the
    /// fan-out to everyone else.
    fn on_persisted(&mut self, request: RequestId, result: Result<(), WriteError>, fx: &mut Vec<Effect>) {
        // Applied before the commands that waited run: they start from the stored state.
        let freed = self.unlock(request);
        if let Some(stored) = self.pending.remove(&request) {
            // Only messages leave every audience as it was (members, roles, channels, bans
            // and the guild's record may each change who sees what).
            if !matches!(stored, Stored::Message(_)) {
                self.audience_epoch += 1;
            }
            let mut announced = Vec::new();
            let result = match result {
                Ok(()) => Ok(self.apply(stored, &mut announced)),
                Err(e) => Err(self.write_failed(&stored, e)),
            };
            fx.push(Effect::Reply { request, result });
            fx.append(&mut announced);
        }
        if freed {
            self.run_deferred(fx);
        }
    }

    /// A stored write takes effect in its family, which tells who hears of it.
    fn apply(&mut self, stored: Stored, fx: &mut Vec<Effect>) -> Reply {
        match stored {
            Stored::Message(s) => self.data.apply_message(s, fx),
            Stored::Member(s) => self.data.apply_member(s, fx),
            Stored::Ban(s) => self.data.apply_ban(s, fx),
            Stored::Channel(s) => self.data.apply_channel(s, fx),
            Stored::Record(s) => self.data.apply_record(s, fx),
        }
    }

    fn write_failed(&mut self, stored: &Stored, e: WriteError) -> GuildError {
        match stored {
            Stored::Message(s) => self.data.message_write_failed(s, e),
            Stored::Member(s) => self.data.member_write_failed(s, e),
            Stored::Ban(s) => self.data.ban_write_failed(s, e),
            Stored::Channel(s) => self.data.channel_write_failed(s, e),
            Stored::Record(_) => GuildError::from_write(e, GuildError::UnknownGuild),
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
}

#[cfg(test)]
mod tests {
    use super::testing::plain::{guild, member, BOB, GENERAL, OWNER};
    use super::testing::{answers, cmd};
    use super::*;

    /// Commands cross nodes as JSON. Grouping them into families did not change it: what
    /// a node of the version before wrote reads as the same command and writes back the same.
    #[test]
    fn commands_keep_their_wire_form() {
        let before = [
            r#"{"CreateMessage":{"author":"1","channel_id":"100","id":"500","content":"hi","nonce":"n","enforce_nonce":true}}"#,
            r#"{"RemoveMember":{"user":"2"}}"#,
            r#"{"Kick":{"user":"1","target":"2"}}"#,
            r#"{"DeleteRole":{"user":"1","role_id":"200"}}"#,
            r#"{"UpdateChannel":{"user":"1","channel_id":"100","change":{"DeleteOverwrite":"3"}}}"#,
            r#"{"Snapshot":{"user":"1"}}"#,
        ];
        for text in before {
            let command: Command = serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(serde_json::to_string(&command).unwrap(), text);
        }
        let join = Command::from(MemberCommand::Join { member: member(BOB, "bob"), invite: None });
        let text = serde_json::to_string(&join).unwrap();
        assert!(text.starts_with(r#"{"AddMember":{"member":"#) && !text.contains("invite"), "{text}");
        assert!(serde_json::from_str::<Command>(r#"{"Unknown":{}}"#).is_err());
    }

    /// Every command on an object waits behind the write in flight on it, up to a bound; past
    /// it the guild answers Busy at once rather than queue without limit.
    #[test]
    fn commands_wait_behind_a_write_in_flight_up_to_a_bound() {
        let mut g = guild();
        let rename = |user| GuildCommand::UpdateGuild { user, name: Some("n".into()), moderation_fail_closed: None };
        g.handle(cmd(0, rename(OWNER)));
        for request in 1..=MAX_DEFERRED_COMMANDS as u64 {
            assert!(g.handle(cmd(request, rename(OWNER))).is_empty());
        }
        let over = g.handle(cmd(9_999, rename(OWNER)));
        assert_eq!(answers(&over), [(9_999, Err(GuildError::Busy))]);
        // Reads hold nothing and never wait.
        let read = g.handle(cmd(10_000, GuildCommand::Permissions { user: BOB, channel_id: Some(GENERAL) }));
        assert!(matches!(answers(&read)[..], [(10_000, Ok(Reply::Permissions(_)))]));
    }
}
