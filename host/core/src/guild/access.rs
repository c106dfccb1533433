//! Who may do what in the guild: Discord's algorithm (in [`crate::permissions`]) over the
//! guild's roles, members and channel overwrites, the checks every command family makes
//! with it, and the cache that keeps fan-out cheap.
//!
//! Channel permissions depend on the member's *role set*, not on the member (unless the
//! channel has an overwrite for that member, or they own the guild), so they are cached per
//! (channel, role set): a message to a channel with 10,000 viewers in five role sets costs
//! five computations. Members keep their roles sorted, so a role set is its own key. The
//! cache is dropped whenever a role or an overwrite changes ([`GuildData::set_guild`],
//! [`GuildData::set_channel`]); a member's roles changing needs nothing (they move to
//! another key).

use std::collections::HashSet;

use crate::gateway::intents;
use crate::model::{Channel, ChannelId, Guild, Member, Role, UserId, CHANNEL_GUILD_TEXT};
use crate::permissions::{GuildRoles, OverwriteKind, Permissions, Subject};
use crate::Snowflake;

use super::data::GuildData;
use super::protocol::{Audience, Effect, GuildError, RecordChange, Reply};

impl GuildData {
    pub(super) fn roles_view(&self) -> GuildRoles<'_> {
        GuildRoles { guild: self.guild.id, owner: self.guild.owner_id, roles: &self.grants }
    }

    pub(super) fn subject(member: &Member) -> Subject<'_> {
        Subject { user: member.user.id, roles: &member.roles }
    }

    /// What `user` may do in the guild as a whole (nothing if not a member).
    pub fn guild_permissions(&self, user: UserId) -> Permissions {
        self.members.get(&user).map_or(Permissions::NONE, |m| self.roles_view().base(Self::subject(m)))
    }

    /// What `user` may do in a channel of the guild (nothing if not a member or no such
    /// channel). Cached per role set unless the channel names the member or they own it.
    pub fn channel_permissions(&self, user: UserId, channel_id: ChannelId) -> Permissions {
        let (Some(member), Some(channel)) = (self.members.get(&user), self.channels.get(&channel_id)) else {
            return Permissions::NONE;
        };
        let personal = user == self.guild.owner_id
            || channel.permission_overwrites.iter().any(|o| o.kind == OverwriteKind::Member && o.id == user);
        let compute = || self.roles_view().in_channel(Self::subject(member), &channel.permission_overwrites);
        if personal {
            return compute();
        }
        self.cache.get_or_compute(channel_id, &member.roles, compute)
    }

    /// `user`'s permissions in the channel, or why they have none there: not a member
    /// (Missing Access), no such channel, or a channel they cannot view (Missing Access).
    pub(super) fn in_channel(&self, user: UserId, channel_id: ChannelId) -> Result<Permissions, GuildError> {
        if !self.members.contains_key(&user) {
            return Err(GuildError::NotMember);
        }
        if !self.channels.contains_key(&channel_id) {
            return Err(GuildError::UnknownChannel);
        }
        let p = self.channel_permissions(user, channel_id);
        if !p.contains(Permissions::VIEW_CHANNEL) {
            return Err(GuildError::NotMember);
        }
        Ok(p)
    }

    /// Ok if `user` has `need` in the channel (and can view it), else Discord's refusal.
    pub(super) fn require_in(&self, user: UserId, channel_id: ChannelId, need: Permissions) -> Result<(), GuildError> {
        let p = self.in_channel(user, channel_id)?;
        if p.contains(need) {
            Ok(())
        } else {
            Err(GuildError::MissingPermissions)
        }
    }

    /// Ok if `user` is a member with `need` in the guild.
    pub(super) fn require(&self, user: UserId, need: Permissions) -> Result<(), GuildError> {
        if !self.members.contains_key(&user) {
            return Err(GuildError::NotMember);
        }
        if self.guild_permissions(user).contains(need) {
            Ok(())
        } else {
            Err(GuildError::MissingPermissions)
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

    /// May `actor` act on `target` (kick, ban, roles, nick)? Only from above.
    pub(super) fn require_outranks(&self, actor: UserId, target: UserId) -> Result<(), GuildError> {
        let Some(actor_m) = self.members.get(&actor) else { return Err(GuildError::NotMember) };
        let outranks = match self.members.get(&target) {
            Some(target_m) => self.roles_view().outranks(Self::subject(actor_m), Self::subject(target_m)),
            // Not a member (a ban by user id): only the owner is out of reach.
            None => target != self.guild.owner_id && actor != target,
        };
        if outranks {
            Ok(())
        } else {
            Err(GuildError::MissingPermissions)
        }
    }

    /// May `actor` manage (edit, assign, delete) `role`? MANAGE_ROLES and a higher role.
    pub(super) fn require_manages_role(&self, actor: UserId, role: &Role) -> Result<(), GuildError> {
        self.require(actor, Permissions::MANAGE_ROLES)?;
        let member = &self.members[&actor];
        if self.roles_view().may_manage_role(Self::subject(member), &role.grant()) {
            Ok(())
        } else {
            Err(GuildError::MissingPermissions)
        }
    }

    /// May `actor` give or take role `id`? It must exist, be neither @everyone nor managed,
    /// and be below the actor's highest role.
    pub(super) fn check_assignable(&self, actor: UserId, id: Snowflake) -> Result<(), GuildError> {
        let role = self.guild.role(id).ok_or(GuildError::UnknownRole)?;
        if role.id == self.guild.id || role.managed {
            return Err(GuildError::InvalidRole);
        }
        self.require_manages_role(actor, role)
    }

    /// Applies a stored guild record (its roles, its settings): the roles' grants, and the
    /// members' roles (a deleted role is taken from everyone); the cache is dropped.
    pub(super) fn set_guild(&mut self, guild: Guild) {
        self.grants = guild.roles.iter().map(Role::grant).collect();
        let known: HashSet<Snowflake> = guild.roles.iter().map(|r| r.id).collect();
        if self.members.values().any(|m| m.roles.iter().any(|r| !known.contains(r))) {
            for m in self.members.values_mut() {
                m.roles.retain(|r| known.contains(r));
            }
        }
        self.guild = guild;
        self.cache.clear();
    }

    /// Applies a stored channel (its overwrites may have changed): the cache is dropped.
    pub(super) fn set_channel(&mut self, channel: Channel) {
        self.channels.insert(channel.id, channel);
        self.cache.clear();
    }

    /// A stored guild record takes effect: everyone with GUILDS hears of it.
    pub(super) fn apply_record(&mut self, change: RecordChange, fx: &mut Vec<Effect>) -> Reply {
        self.set_guild(*change.guild);
        fx.push(Effect::dispatch(Audience::Guild { intent: intents::GUILDS }, *change.event));
        *change.reply
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::staffed::*;
    use super::super::testing::*;
    use super::super::*;
    use crate::gateway::intents;

    use crate::permissions::Permissions;

    #[test]
    fn a_hidden_channel_reaches_only_those_who_view_it_and_refuses_the_rest() {
        let mut g = guild();
        connect_all(&mut g);
        assert_eq!(viewers(&g, STAFF), vec![SessionId(1), SessionId(2)], "the owner and the moderator");
        assert_eq!(viewers(&g, GENERAL).len(), 4);
        let secret = Audience::Channel { channel_id: STAFF, intent: intents::GUILD_MESSAGES };
        assert!(!g.hears(BOT, &secret) && g.hears(MOD, &secret), "plugin bots are held to the same rule");
        assert!(g.hears(BOT, &Audience::Guild { intent: intents::GUILDS }));
        let ask = |g: &mut GuildState, user| {
            maybe_reply(&g.handle(cmd(1, GuildCommand::Permissions { user, channel_id: Some(STAFF) }))).cloned()
        };
        assert_eq!(ask(&mut g, BOB), Some(Err(GuildError::NotMember)), "Missing Access, as Discord answers");
        assert!(matches!(ask(&mut g, MOD), Some(Ok(Reply::Permissions(p))) if p.contains(Permissions::VIEW_CHANNEL)));
        assert_eq!(maybe_reply(&say(&mut g, 2, BOB, STAFF)), Some(&Err(GuildError::NotMember)));
        assert!(matches!(say(&mut g, 3, MOD, STAFF)[0], Effect::Persist { .. }));
    }

    #[test]
    fn without_send_messages_a_member_reads_but_cannot_send_or_type() {
        let mut g = guild();
        assert_eq!(maybe_reply(&say(&mut g, 1, BOT, GENERAL)), Some(&Err(GuildError::MissingPermissions)));
        let typing = MessageCommand::Typing { user: BOT, channel_id: GENERAL, unix_s: 0 };
        assert_eq!(maybe_reply(&g.handle(cmd(2, typing))), Some(&Err(GuildError::MissingPermissions)));
        let p = g.channel_permissions(BOT, GENERAL);
        assert!(p.contains(Permissions::VIEW_CHANNEL | Permissions::READ_MESSAGE_HISTORY));
        assert!(!p.contains(Permissions::EMBED_LINKS), "denied implicitly without SEND_MESSAGES");
        assert!(matches!(say(&mut g, 3, BOB, GENERAL)[0], Effect::Persist { .. }), "bob is not affected");
    }
}
