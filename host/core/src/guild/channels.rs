//! Channels: creating them (within the guild's quota) and changing their name, topic and
//! permission overwrites (granting only what one has).

use crate::event::GuildEvent;
use crate::gateway::intents;
use crate::model::{Channel, ChannelId, UserId, MAX_OVERWRITES};
use crate::permissions::{may_grant, Overwrite, Permissions};
use crate::Snowflake;

use super::data::GuildData;
use super::protocol::{Audience, Decision, Effect, GuildError, GuildWrite, Object, Reply, WriteError};

/// Plain data (serde): it can be sent to a guild on another node.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum ChannelCommand {
    #[serde(rename = "CreateChannel")]
    Create {
        user: UserId,
        channel: Channel,
        /// The guild's channel quota (`quotas.channels_per_guild`).
        max_channels: usize,
    },
    /// Name, topic (MANAGE_CHANNELS) or permission overwrites (MANAGE_ROLES) of a channel.
    #[serde(rename = "UpdateChannel")]
    Update { user: UserId, channel_id: ChannelId, change: ChannelChange },
}

impl ChannelCommand {
    /// What the command holds while its write is in flight: creations take turns on the
    /// guild (so that the quota counts those in flight), an update holds its channel.
    pub(super) fn object(&self) -> Object {
        match self {
            ChannelCommand::Create { .. } => Object::Guild,
            ChannelCommand::Update { channel_id, .. } => Object::Channel(*channel_id),
        }
    }
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

/// A channel write, applied once it is stored.
#[derive(Debug, Clone)]
pub(super) enum Stored {
    Created(Channel),
    Updated(Channel),
}

impl GuildData {
    pub(super) fn decide_channel(&self, command: ChannelCommand) -> Result<Decision<Stored>, GuildError> {
        match command {
            ChannelCommand::Create { user, mut channel, max_channels } => {
                self.require(user, Permissions::MANAGE_CHANNELS)?;
                if self.channels.len() >= max_channels {
                    return Err(GuildError::TooManyChannels(max_channels));
                }
                channel.guild_id = Some(self.guild.id);
                channel.position = self.channels.len() as u32;
                Ok(Decision::Write {
                    write: GuildWrite::CreateChannel(channel.clone()),
                    stored: Stored::Created(channel),
                })
            }
            ChannelCommand::Update { user, channel_id, change } => {
                let needs_roles = !matches!(change, ChannelChange::Edit { permission_overwrites: None, .. });
                let need = if needs_roles { Permissions::MANAGE_ROLES } else { Permissions::MANAGE_CHANNELS };
                self.require_in(user, channel_id, need)?;
                let mut channel = self.channels[&channel_id].clone();
                let mine = self.channel_permissions(user, channel_id);
                let grantable = |o: &Overwrite| may_grant(mine, o.allow) && may_grant(mine, o.deny);
                match change {
                    ChannelChange::Edit { name, topic, nsfw, permission_overwrites } => {
                        if name.is_some() || topic.is_some() || nsfw.is_some() {
                            self.require_in(user, channel_id, Permissions::MANAGE_CHANNELS)?;
                        }
                        channel.name = name.or(channel.name);
                        channel.topic = topic.unwrap_or(channel.topic);
                        channel.nsfw = nsfw.unwrap_or(channel.nsfw);
                        if let Some(overwrites) = permission_overwrites {
                            let changed = overwrites.iter().filter(|o| !channel.permission_overwrites.contains(o));
                            if !changed.clone().all(grantable) {
                                return Err(GuildError::MissingPermissions);
                            }
                            channel.permission_overwrites = overwrites;
                        }
                    }
                    ChannelChange::PutOverwrite(overwrite) => {
                        if !grantable(&overwrite) {
                            return Err(GuildError::MissingPermissions);
                        }
                        channel.permission_overwrites.retain(|o| o.id != overwrite.id);
                        channel.permission_overwrites.push(overwrite);
                    }
                    ChannelChange::DeleteOverwrite(id) => channel.permission_overwrites.retain(|o| o.id != id),
                }
                if channel.permission_overwrites.len() > MAX_OVERWRITES {
                    return Err(GuildError::TooManyOverwrites);
                }
                Ok(Decision::Write {
                    write: GuildWrite::UpdateChannel(channel.clone()),
                    stored: Stored::Updated(channel),
                })
            }
        }
    }

    /// A stored channel write takes effect: everyone with GUILDS hears of it.
    pub(super) fn apply_channel(&mut self, stored: Stored, fx: &mut Vec<Effect>) -> Reply {
        let everyone = Audience::Guild { intent: intents::GUILDS };
        match stored {
            Stored::Created(c) => {
                self.channels.insert(c.id, c.clone());
                fx.push(Effect::dispatch(everyone, GuildEvent::ChannelCreate(c.clone())));
                Reply::Channel(c)
            }
            Stored::Updated(c) => {
                self.set_channel(c.clone());
                fx.push(Effect::dispatch(everyone, GuildEvent::ChannelUpdate(c.clone())));
                Reply::Channel(c)
            }
        }
    }

    pub(super) fn channel_write_failed(&mut self, _stored: &Stored, e: WriteError) -> GuildError {
        GuildError::from_write(e, GuildError::UnknownChannel)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::plain::*;
    use super::super::testing::*;
    use super::super::*;

    use crate::model::Channel;

    use crate::permissions::Permissions;
    use crate::Snowflake;

    #[test]
    fn channel_create_needs_manage_channels_and_is_visible_after_persist() {
        let mut g = guild();
        connect(&mut g, 1, BOB, ALL);
        let mut c = text_channel(Snowflake(101));
        c.name = Some("random".into());
        let create =
            |user, channel: &Channel| ChannelCommand::Create { user, channel: channel.clone(), max_channels: 500 };
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
        let create = |id| ChannelCommand::Create { user: OWNER, channel: text_channel(Snowflake(id)), max_channels: 2 };
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
        assert_eq!(g.data.channels.len(), 2);
    }

    mod overwrites_need_mana_staffed {
        use super::super::super::testing::staffed::*;
        use super::super::super::testing::{cmd, maybe_reply, persisted};
        use super::super::super::*;

        use crate::permissions::{Overwrite, OverwriteKind, Permissions};

        #[test]
        fn overwrites_need_manage_roles_and_grant_only_what_one_has() {
            let mut g = guild();
            let put = |user, allow| ChannelCommand::Update {
                user,
                channel_id: GENERAL,
                change: ChannelChange::PutOverwrite(Overwrite {
                    id: BOB,
                    kind: OverwriteKind::Member,
                    allow,
                    deny: Permissions::NONE,
                }),
            };
            assert_eq!(
                maybe_reply(&g.handle(cmd(1, put(BOB, Permissions::NONE)))),
                Some(&Err(GuildError::MissingPermissions))
            );
            let fx = g.handle(cmd(2, put(MOD, Permissions::MANAGE_CHANNELS)));
            assert_eq!(
                maybe_reply(&fx),
                Some(&Err(GuildError::MissingPermissions)),
                "the moderator lacks MANAGE_CHANNELS"
            );
            g.handle(cmd(3, put(MOD, Permissions::MANAGE_MESSAGES)));
            let fx = persisted(&mut g, 3);
            assert!(fx.iter().any(|e| matches!(e, Effect::Dispatch { event, .. } if event.name() == "CHANNEL_UPDATE")));
            assert!(g.channel_permissions(BOB, GENERAL).contains(Permissions::MANAGE_MESSAGES));
            assert!(!g.channel_permissions(BOB, STAFF).contains(Permissions::MANAGE_MESSAGES), "only in #general");
        }
    }
}
