//! The guild's typed events as a bot sees them, and messages and members in the plugin
//! interface's shapes.

use guildhall_core::event::GuildEvent;
use guildhall_core::model::{ChannelId, Emoji, Member, Message, MessageId, UserId};
use guildhall_plugins::{BotMember, BotMessage, BotReaction, BotUser, GuildEvent as BotEvent, MessageRef};

pub fn to_bot_message(m: &Message) -> BotMessage {
    BotMessage {
        id: m.id.0,
        channel_id: m.channel_id.0,
        guild_id: m.guild_id.map(|g| g.0).unwrap_or(0),
        author: BotUser { id: m.author.id.0, username: m.author.username.clone(), bot: m.author.bot },
        content: m.content.clone(),
        timestamp: m.timestamp.clone(),
        edited_timestamp: m.edited_timestamp.clone(),
        mentions: m.mentions.iter().map(|u| u.id.0).collect(),
    }
}

pub fn to_bot_member(m: &Member) -> BotMember {
    BotMember {
        user: BotUser { id: m.user.id.0, username: m.user.username.clone(), bot: m.user.bot },
        nick: m.nick.clone(),
        joined_at: m.joined_at.clone(),
    }
}

/// The bot's view of a guild event, if it is one bots receive.
pub fn bot_event(event: &GuildEvent) -> Option<BotEvent> {
    let reaction = |user_id: &UserId, channel_id: &ChannelId, message_id: &MessageId, emoji: &Emoji| BotReaction {
        user_id: user_id.0,
        channel_id: channel_id.0,
        message_id: message_id.0,
        emoji: emoji.name.clone(),
    };
    match event {
        GuildEvent::MessageCreate { message, .. } => Some(BotEvent::MessageCreate(to_bot_message(message))),
        GuildEvent::MessageUpdate { message, .. } => Some(BotEvent::MessageUpdate(to_bot_message(message))),
        GuildEvent::MessageDelete { id, channel_id, .. } => {
            Some(BotEvent::MessageDelete(MessageRef { id: id.0, channel_id: channel_id.0 }))
        }
        GuildEvent::ReactionAdd { user_id, channel_id, message_id, emoji, .. } => {
            Some(BotEvent::ReactionAdd(reaction(user_id, channel_id, message_id, emoji)))
        }
        GuildEvent::ReactionRemove { user_id, channel_id, message_id, emoji, .. } => {
            Some(BotEvent::ReactionRemove(reaction(user_id, channel_id, message_id, emoji)))
        }
        GuildEvent::MemberAdd { member, .. } => Some(BotEvent::MemberJoin(to_bot_member(member))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use guildhall_core::model::{Channel, User};
    use guildhall_core::Snowflake;

    #[test]
    fn dispatches_become_bot_events() {
        let channel = Channel::text(Snowflake(6), Snowflake(7), "general");
        let author = User::new(Snowflake(8), "bob", false);
        let message = Message::new(Snowflake(5), &channel, author.clone(), "hi".into(), None);
        let member = Some(Member::new(author.clone(), "x".into()));
        let created = GuildEvent::MessageCreate { message, member };
        let Some(BotEvent::MessageCreate(m)) = bot_event(&created) else { panic!() };
        assert_eq!((m.id, m.channel_id, m.guild_id, m.author.id, m.content.as_str()), (5, 6, 7, 8, "hi"));
        let deleted = GuildEvent::MessageDelete { id: Snowflake(5), channel_id: Snowflake(6), guild_id: None };
        let Some(BotEvent::MessageDelete(r)) = bot_event(&deleted) else { panic!() };
        assert_eq!((r.id, r.channel_id), (5, 6));
        let typing = GuildEvent::TypingStart {
            channel_id: Snowflake(6),
            guild_id: Some(Snowflake(7)),
            user_id: author.id,
            unix_s: 1,
            member: None,
        };
        assert!(bot_event(&typing).is_none());
    }
}
