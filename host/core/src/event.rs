//! Typed events: what the guild state machine (and a DM channel) tells the world.
//!
//! The core emits [`GuildEvent`]s; nothing inside the host works on their JSON. Two edges
//! serialize them: the gateway turns one into Discord's dispatch payload ([`GuildEvent::name`]
//! and [`GuildEvent::discord_data`], once per event, as before), and a bus or stream carries
//! them as they are (serde, inside an [`EventEnvelope`] that names the schema version). Bots
//! get them typed, without a JSON round trip.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::gateway::Status;
use crate::model::{
    AuditLogEntry, Channel, ChannelId, Emoji, Guild, GuildId, Member, Message, MessageId, Role, User, UserId,
};
use crate::Snowflake;

/// The version of the serialized form of [`GuildEvent`] (not of Discord's JSON, which is
/// Discord's). Bump it on any change a reader of the old form would misread.
pub const EVENT_SCHEMA_VERSION: u16 = 2;

/// A [`GuildEvent`] as a bus or a stream carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope {
    pub v: u16,
    pub event: GuildEvent,
}

impl EventEnvelope {
    pub fn new(event: GuildEvent) -> EventEnvelope {
        EventEnvelope { v: EVENT_SCHEMA_VERSION, event }
    }
}

/// A member's presence as others see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    pub user_id: UserId,
    pub guild_id: GuildId,
    /// Never `invisible`: invisible members are shown offline.
    pub status: Status,
}

/// What a session that just connected learns about a guild.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuildSnapshot {
    pub guild: Guild,
    /// When the connecting user joined.
    #[serde(default)]
    pub joined_at: Option<String>,
    pub member_count: usize,
    /// Over the large threshold: `members` holds only the connecting user, and no presences.
    pub large: bool,
    pub channels: Vec<Channel>,
    pub members: Vec<Member>,
    pub presences: Vec<Presence>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GuildEvent {
    /// `member` is the author's membership (absent in DMs).
    MessageCreate {
        message: Message,
        member: Option<Member>,
    },
    MessageUpdate {
        message: Message,
        member: Option<Member>,
    },
    MessageDelete {
        id: MessageId,
        channel_id: ChannelId,
        guild_id: Option<GuildId>,
    },
    ReactionAdd {
        user_id: UserId,
        channel_id: ChannelId,
        message_id: MessageId,
        guild_id: GuildId,
        emoji: Emoji,
        member: Option<Member>,
        message_author_id: UserId,
    },
    ReactionRemove {
        user_id: UserId,
        channel_id: ChannelId,
        message_id: MessageId,
        guild_id: GuildId,
        emoji: Emoji,
    },
    TypingStart {
        channel_id: ChannelId,
        guild_id: Option<GuildId>,
        user_id: UserId,
        unix_s: u64,
        member: Option<Member>,
    },
    ChannelCreate(Channel),
    ChannelUpdate(Channel),
    GuildCreate(Box<GuildSnapshot>),
    GuildUpdate(Guild),
    /// The guild is gone for the receiving session (it left the guild).
    GuildDelete {
        id: GuildId,
    },
    MemberAdd {
        guild_id: GuildId,
        member: Member,
    },
    MemberRemove {
        guild_id: GuildId,
        user: User,
    },
    /// Roles or nickname changed.
    MemberUpdate {
        guild_id: GuildId,
        member: Member,
    },
    RoleCreate {
        guild_id: GuildId,
        role: Role,
    },
    RoleUpdate {
        guild_id: GuildId,
        role: Role,
    },
    RoleDelete {
        guild_id: GuildId,
        role_id: Snowflake,
    },
    BanAdd {
        guild_id: GuildId,
        user: User,
    },
    BanRemove {
        guild_id: GuildId,
        user: User,
    },
    PresenceUpdate(Presence),
    AuditLogEntryCreate(Box<AuditLogEntry>),
}

impl GuildEvent {
    /// The event as a bot without the MESSAGE_CONTENT intent sees it: a message's content,
    /// embeds and attachments emptied (Discord's rule); other events as they are.
    pub fn without_content(&self) -> GuildEvent {
        let mut event = self.clone();
        if let GuildEvent::MessageCreate { message, .. } | GuildEvent::MessageUpdate { message, .. } = &mut event {
            message.without_content();
        }
        event
    }

    /// Discord's dispatch name (`t`).
    pub fn name(&self) -> &'static str {
        match self {
            GuildEvent::MessageCreate { .. } => "MESSAGE_CREATE",
            GuildEvent::MessageUpdate { .. } => "MESSAGE_UPDATE",
            GuildEvent::MessageDelete { .. } => "MESSAGE_DELETE",
            GuildEvent::ReactionAdd { .. } => "MESSAGE_REACTION_ADD",
            GuildEvent::ReactionRemove { .. } => "MESSAGE_REACTION_REMOVE",
            GuildEvent::TypingStart { .. } => "TYPING_START",
            GuildEvent::ChannelCreate(_) => "CHANNEL_CREATE",
            GuildEvent::ChannelUpdate(_) => "CHANNEL_UPDATE",
            GuildEvent::GuildCreate(_) => "GUILD_CREATE",
            GuildEvent::GuildUpdate(_) => "GUILD_UPDATE",
            GuildEvent::GuildDelete { .. } => "GUILD_DELETE",
            GuildEvent::MemberAdd { .. } => "GUILD_MEMBER_ADD",
            GuildEvent::MemberRemove { .. } => "GUILD_MEMBER_REMOVE",
            GuildEvent::MemberUpdate { .. } => "GUILD_MEMBER_UPDATE",
            GuildEvent::RoleCreate { .. } => "GUILD_ROLE_CREATE",
            GuildEvent::RoleUpdate { .. } => "GUILD_ROLE_UPDATE",
            GuildEvent::RoleDelete { .. } => "GUILD_ROLE_DELETE",
            GuildEvent::BanAdd { .. } => "GUILD_BAN_ADD",
            GuildEvent::BanRemove { .. } => "GUILD_BAN_REMOVE",
            GuildEvent::PresenceUpdate(_) => "PRESENCE_UPDATE",
            GuildEvent::AuditLogEntryCreate(_) => "GUILD_AUDIT_LOG_ENTRY_CREATE",
        }
    }

    /// Discord's dispatch payload (`d`), in v10 shapes.
    pub fn discord_data(&self) -> Value {
        match self {
            GuildEvent::MessageCreate { message, member } | GuildEvent::MessageUpdate { message, member } => {
                message_event(message, member.as_ref())
            }
            GuildEvent::MessageDelete { id, channel_id, guild_id } => match guild_id {
                Some(guild_id) => json!({ "id": id, "channel_id": channel_id, "guild_id": guild_id }),
                None => json!({ "id": id, "channel_id": channel_id }),
            },
            GuildEvent::ReactionAdd { user_id, channel_id, message_id, guild_id, emoji, member, message_author_id } => {
                json!({
                    "user_id": user_id,
                    "channel_id": channel_id,
                    "message_id": message_id,
                    "guild_id": guild_id,
                    "emoji": emoji,
                    "member": member,
                    "message_author_id": message_author_id,
                    "type": 0,
                    "burst": false,
                    "burst_colors": [],
                })
            }
            GuildEvent::ReactionRemove { user_id, channel_id, message_id, guild_id, emoji } => json!({
                "user_id": user_id,
                "channel_id": channel_id,
                "message_id": message_id,
                "guild_id": guild_id,
                "emoji": emoji,
                "type": 0,
                "burst": false,
            }),
            GuildEvent::TypingStart { channel_id, guild_id, user_id, unix_s, member } => match guild_id {
                Some(guild_id) => json!({
                    "channel_id": channel_id,
                    "guild_id": guild_id,
                    "user_id": user_id,
                    "timestamp": unix_s,
                    "member": member,
                }),
                None => json!({ "channel_id": channel_id, "user_id": user_id, "timestamp": unix_s }),
            },
            GuildEvent::ChannelCreate(channel) | GuildEvent::ChannelUpdate(channel) => value(channel),
            GuildEvent::GuildCreate(snapshot) => {
                let s = snapshot.as_ref();
                let mut data = s.guild.discord_json();
                data["unavailable"] = json!(false);
                data["joined_at"] = json!(s.joined_at);
                data["member_count"] = json!(s.member_count);
                data["large"] = json!(s.large);
                data["channels"] = json!(s.channels);
                data["members"] = json!(s.members);
                data["presences"] = json!(s.presences.iter().map(presence_json).collect::<Vec<_>>());
                for empty in
                    ["threads", "voice_states", "stage_instances", "guild_scheduled_events", "soundboard_sounds"]
                {
                    data[empty] = json!([]);
                }
                data
            }
            GuildEvent::GuildUpdate(guild) => guild.discord_json(),
            GuildEvent::GuildDelete { id } => json!({ "id": id }),
            GuildEvent::MemberAdd { guild_id, member } => {
                let mut data = value(member);
                data["guild_id"] = json!(guild_id);
                data
            }
            GuildEvent::MemberRemove { guild_id, user } => json!({ "guild_id": guild_id, "user": user }),
            GuildEvent::MemberUpdate { guild_id, member } => {
                let mut data = value(member);
                data["guild_id"] = json!(guild_id);
                data
            }
            GuildEvent::RoleCreate { guild_id, role } | GuildEvent::RoleUpdate { guild_id, role } => {
                json!({ "guild_id": guild_id, "role": role })
            }
            GuildEvent::RoleDelete { guild_id, role_id } => json!({ "guild_id": guild_id, "role_id": role_id }),
            GuildEvent::BanAdd { guild_id, user } | GuildEvent::BanRemove { guild_id, user } => {
                json!({ "guild_id": guild_id, "user": user })
            }
            GuildEvent::PresenceUpdate(presence) => presence_json(presence),
            GuildEvent::AuditLogEntryCreate(entry) => value(entry.as_ref()),
        }
    }
}

/// `serde_json::to_value` for the model types, which always serialize (no maps with
/// non-string keys, no failing `Serialize` impls).
fn value<T: Serialize + ?Sized>(v: &T) -> Value {
    serde_json::to_value(v).expect("model types serialize")
}

fn presence_json(p: &Presence) -> Value {
    json!({
        "user": { "id": p.user_id },
        "guild_id": p.guild_id,
        "status": p.status,
        "activities": [],
        "client_status": {},
    })
}

/// MESSAGE_CREATE / MESSAGE_UPDATE payload: the message plus the author's `member` and the
/// channel's type (`channel_type`, as Discord sends it: discord.js needs it to know a DM it
/// has not cached). Guild messages are in text channels, the only guild channels here.
pub fn message_event(m: &Message, member: Option<&Member>) -> Value {
    let mut data = serde_json::to_value(m).expect("serializes");
    let channel_type = if m.guild_id.is_some() { crate::model::CHANNEL_GUILD_TEXT } else { crate::model::CHANNEL_DM };
    data["channel_type"] = json!(channel_type);
    if let Some(member) = member {
        let mut mv = serde_json::to_value(member).expect("serializes");
        if let Some(obj) = mv.as_object_mut() {
            obj.remove("user");
        }
        data["member"] = mv;
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Snowflake;

    #[test]
    fn the_serialized_form_round_trips_and_names_its_version() {
        let member = Member::new(User::new(Snowflake(2), "bob", false), "2026-01-01T00:00:00.000000+00:00".into());
        let events = vec![
            GuildEvent::MemberAdd { guild_id: Snowflake(10), member: member.clone() },
            GuildEvent::TypingStart {
                channel_id: Snowflake(100),
                guild_id: Some(Snowflake(10)),
                user_id: Snowflake(2),
                unix_s: 5,
                member: Some(member),
            },
            GuildEvent::PresenceUpdate(Presence {
                user_id: Snowflake(2),
                guild_id: Snowflake(10),
                status: Status::Dnd,
            }),
            GuildEvent::MessageDelete { id: Snowflake(7), channel_id: Snowflake(100), guild_id: None },
        ];
        for event in events {
            let bytes = serde_json::to_vec(&EventEnvelope::new(event.clone())).unwrap();
            let back: EventEnvelope = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(back, EventEnvelope { v: EVENT_SCHEMA_VERSION, event });
        }
    }

    #[test]
    fn discord_payloads_keep_discords_shapes() {
        let delete = GuildEvent::MessageDelete { id: Snowflake(7), channel_id: Snowflake(100), guild_id: None };
        assert_eq!(
            (delete.name(), delete.discord_data()),
            ("MESSAGE_DELETE", json!({ "id": "7", "channel_id": "100" }))
        );
        let presence = GuildEvent::PresenceUpdate(Presence {
            user_id: Snowflake(2),
            guild_id: Snowflake(10),
            status: Status::Idle,
        });
        assert_eq!(
            presence.discord_data(),
            json!({ "user": { "id": "2" }, "guild_id": "10", "status": "idle", "activities": [], "client_status": {} })
        );
    }
}
