//! The guild itself: its settings (name, moderation failing closed), and what a member
//! reads of it (a snapshot, their permissions).

use crate::event::GuildEvent;
use crate::model::{Channel, ChannelId, UserId};
use crate::permissions::Permissions;

use super::data::GuildData;
use super::protocol::{Decision, GuildError, RecordChange, Reply};

/// Plain data (serde): it can be sent to a guild on another node.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum GuildCommand {
    /// MANAGE_GUILD: change the name and settings.
    UpdateGuild { user: UserId, name: Option<String>, moderation_fail_closed: Option<bool> },
    /// Read the guild as `user` sees it (membership checked).
    Snapshot { user: UserId },
    /// What `user` may do in the guild, or in one of its channels: replies `Permissions`,
    /// or the reason they have none there (not a member; an unknown channel; a channel
    /// they cannot view).
    Permissions { user: UserId, channel_id: Option<ChannelId> },
    /// The channels whose history `user` may read (VIEW_CHANNEL and READ_MESSAGE_HISTORY):
    /// replies `Channels` (what a search of the guild may look in).
    Readable { user: UserId },
}

impl GuildData {
    pub(super) fn decide_guild(&self, command: GuildCommand) -> Result<Decision<RecordChange>, GuildError> {
        match command {
            GuildCommand::UpdateGuild { user, name, moderation_fail_closed } => {
                self.require(user, Permissions::MANAGE_GUILD)?;
                let mut guild = self.guild.clone();
                if let Some(name) = name {
                    guild.name = name;
                }
                if let Some(closed) = moderation_fail_closed {
                    guild.moderation_fail_closed = closed;
                }
                let event = GuildEvent::GuildUpdate(guild.clone());
                Ok(RecordChange::decision(guild.clone(), event, Reply::Guild(guild)))
            }
            GuildCommand::Snapshot { user } => {
                if !self.members.contains_key(&user) {
                    return Err(GuildError::NotMember);
                }
                Ok(Decision::Answer(Reply::Snapshot {
                    guild: self.guild.clone(),
                    channels: self.channels.values().cloned().collect(),
                    member_count: self.members.len(),
                }))
            }
            GuildCommand::Permissions { user, channel_id } => {
                let permissions = match channel_id {
                    Some(channel_id) => self.in_channel(user, channel_id)?,
                    None if self.members.contains_key(&user) => self.guild_permissions(user),
                    None => return Err(GuildError::NotMember),
                };
                Ok(Decision::Answer(Reply::Permissions(permissions)))
            }
            GuildCommand::Readable { user } => {
                if !self.members.contains_key(&user) {
                    return Err(GuildError::NotMember);
                }
                let need = Permissions::VIEW_CHANNEL | Permissions::READ_MESSAGE_HISTORY;
                let mut readable: Vec<Channel> = self
                    .channels
                    .values()
                    .filter(|c| self.channel_permissions(user, c.id).contains(need))
                    .cloned()
                    .collect();
                readable.sort_by_key(|c| c.id);
                Ok(Decision::Answer(Reply::Channels(readable)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::plain::*;
    use super::super::testing::*;
    use super::super::*;

    #[test]
    fn readable_channels_are_those_with_view_and_history() {
        use super::super::testing::staffed;
        let mut g = staffed::guild();
        let mut readable = |user| match reply(&g.handle(cmd(9, GuildCommand::Readable { user }))) {
            Ok(Reply::Channels(channels)) => Ok(channels.iter().map(|c| c.id).collect::<Vec<_>>()),
            Err(e) => Err(e.clone()),
            other => panic!("{other:?}"),
        };
        assert_eq!(readable(staffed::BOB), Ok(vec![staffed::GENERAL]), "the staff channel is hidden from Bob");
        assert_eq!(readable(staffed::MOD), Ok(vec![staffed::GENERAL, staffed::STAFF]));
        assert_eq!(readable(crate::Snowflake(999)), Err(GuildError::NotMember));
    }

    #[test]
    fn only_the_owner_updates_the_guild() {
        let mut g = guild();
        connect(&mut g, 1, BOB, ALL);
        let update =
            |user| GuildCommand::UpdateGuild { user, name: Some("renamed".into()), moderation_fail_closed: Some(true) };
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
}
