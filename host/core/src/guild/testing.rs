//! Fixtures the guild's tests share: two small guilds, and helpers that read effects the
//! way the runtime does.

use serde_json::Value;

use crate::gateway::{intents, Intents, Status};
use crate::model::{Channel, ChannelId, Member, User, UserId};
use crate::Snowflake;

use super::{Audience, Command, Effect, GuildError, GuildState, Input, Reply, RequestId, SessionId};

pub const ALL: Intents = intents::ALL_KNOWN;

pub fn cmd(request: RequestId, command: impl Into<Command>) -> Input {
    Input::Command { request, command: Box::new(command.into()) }
}

pub fn persisted(g: &mut GuildState, request: RequestId) -> Vec<Effect> {
    g.handle(Input::Persisted { request, result: Ok(()) })
}

pub fn connect(g: &mut GuildState, session: u64, user: UserId, intents: Intents) -> Vec<Effect> {
    g.handle(Input::SessionConnect { session: SessionId(session), user, intents, status: Status::Online })
}

/// A dispatch as a session receives it: Discord's name and payload.
pub struct Seen {
    pub name: &'static str,
    pub data: Value,
}

pub fn dispatches(fx: &[Effect]) -> Vec<(&Audience, Seen)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Dispatch { audience, event } => {
                Some((audience, Seen { name: event.name(), data: event.discord_data() }))
            }
            _ => None,
        })
        .collect()
}

/// The first reply among the effects.
pub fn reply(fx: &[Effect]) -> &Result<Reply, GuildError> {
    fx.iter()
        .find_map(|e| match e {
            Effect::Reply { result, .. } => Some(result),
            _ => None,
        })
        .expect("a reply")
}

/// The first reply among the effects, if any.
pub fn maybe_reply(fx: &[Effect]) -> Option<&Result<Reply, GuildError>> {
    fx.iter().find_map(|e| match e {
        Effect::Reply { result, .. } => Some(result),
        _ => None,
    })
}

/// Every reply among the effects, in order.
pub fn answers(fx: &[Effect]) -> Vec<(RequestId, Result<Reply, GuildError>)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Reply { request, result } => Some((*request, result.clone())),
            _ => None,
        })
        .collect()
}

/// Guild 10: its owner, bob (carol is not a member) and #general, with @everyone's defaults.
pub mod plain {
    use super::*;
    use crate::model::Guild;

    pub const OWNER: UserId = Snowflake(1);
    pub const BOB: UserId = Snowflake(2);
    pub const CAROL: UserId = Snowflake(3);
    pub const GENERAL: ChannelId = Snowflake(100);

    pub fn member(id: UserId, name: &str) -> Member {
        Member::new(User::new(id, name, false), "2026-01-01T00:00:00.000000+00:00".into())
    }

    pub fn text_channel(id: ChannelId) -> Channel {
        Channel::text(id, Snowflake(10), "general")
    }

    pub fn guild() -> GuildState {
        GuildState::new(
            Guild::new(Snowflake(10), "g", OWNER),
            vec![text_channel(GENERAL)],
            vec![member(OWNER, "owner"), member(BOB, "bob")],
        )
    }
}

/// Guild 10 with ranks: its owner, a moderator (MANAGE_ROLES, KICK, BAN, MANAGE_MESSAGES),
/// bob and a bot; #staff is hidden from @everyone and shown to moderators, and the bot may
/// not send in #general.
pub mod staffed {
    use super::*;
    use crate::model::{Guild, Role};
    use crate::permissions::{Overwrite, OverwriteKind, Permissions};

    pub const GUILD: Snowflake = Snowflake(10);
    pub const OWNER: UserId = Snowflake(1);
    pub const MOD: UserId = Snowflake(2);
    pub const BOB: UserId = Snowflake(3);
    pub const BOT: UserId = Snowflake(4);
    pub const GENERAL: ChannelId = Snowflake(100);
    pub const STAFF: ChannelId = Snowflake(101);
    pub const MODS: Snowflake = Snowflake(200);

    pub fn member(id: UserId, roles: &[Snowflake]) -> Member {
        let mut m =
            Member::new(User::new(id, format!("u{}", id.0), id == BOT), "2026-01-01T00:00:00.000000+00:00".into());
        m.roles = roles.to_vec();
        m
    }

    pub fn guild() -> GuildState {
        let mut guild = Guild::new(GUILD, "g", OWNER);
        let mod_perms = Permissions::MANAGE_ROLES
            | Permissions::KICK_MEMBERS
            | Permissions::BAN_MEMBERS
            | Permissions::MANAGE_MESSAGES
            | Permissions::VIEW_CHANNEL
            | Permissions::SEND_MESSAGES;
        guild.roles.push(Role::new(MODS, "mods", 1, mod_perms));
        let mut staff = Channel::text(STAFF, GUILD, "staff");
        staff.permission_overwrites = vec![
            Overwrite {
                id: GUILD,
                kind: OverwriteKind::Role,
                allow: Permissions::NONE,
                deny: Permissions::VIEW_CHANNEL,
            },
            Overwrite {
                id: MODS,
                kind: OverwriteKind::Role,
                allow: Permissions::VIEW_CHANNEL,
                deny: Permissions::NONE,
            },
        ];
        let mut general = Channel::text(GENERAL, GUILD, "general");
        general.permission_overwrites = vec![Overwrite {
            id: BOT,
            kind: OverwriteKind::Member,
            allow: Permissions::NONE,
            deny: Permissions::SEND_MESSAGES,
        }];
        GuildState::new(
            guild,
            vec![general, staff],
            vec![member(OWNER, &[]), member(MOD, &[MODS]), member(BOB, &[]), member(BOT, &[])],
        )
    }

    /// A message from `author`, request `request` (its id 1000 + request).
    pub fn say(g: &mut GuildState, request: u64, author: UserId, channel_id: ChannelId) -> Vec<Effect> {
        let id = Snowflake(1000 + request);
        let create = super::super::MessageCommand::Create {
            author,
            channel_id,
            id,
            content: "hi".into(),
            nonce: None,
            enforce_nonce: false,
        };
        g.handle(cmd(request, create))
    }

    pub fn viewers(g: &GuildState, channel_id: ChannelId) -> Vec<SessionId> {
        g.audience(&Audience::Channel { channel_id, intent: intents::GUILD_MESSAGES })
    }

    pub fn connect_all(g: &mut GuildState) {
        for (session, user) in [(1, OWNER), (2, MOD), (3, BOB), (4, BOT)] {
            connect(g, session, user, intents::ALL_KNOWN);
        }
    }
}
