//! The guild state machine's roles and permissions: what a member may do where (Discord's
//! algorithm, in [`crate::permissions`]), the commands that change roles, member roles,
//! channel overwrites, kicks and bans, and the cache that keeps fan-out cheap.
//!
//! Channel permissions depend on the member's *role set*, not on the member (unless the
//! channel has an overwrite for that member, or they own the guild), so they are cached per
//! (channel, role set): a message to a channel with 10,000 viewers in five role sets costs
//! five computations. Members keep their roles sorted, so a role set is its own key. The
//! cache is dropped whenever a role or an overwrite changes; a member's roles changing
//! needs nothing (they move to another key).

use super::{AfterPersist, ChannelChange, Command, GuildError, GuildState, GuildWrite, MemberChange, Object, Reply};
use crate::event::GuildEvent;
use crate::model::{Ban, Channel, ChannelId, Member, Role, User, UserId, MAX_OVERWRITES, MAX_ROLES};
use crate::permissions::{may_grant, GuildRoles, Overwrite, OverwriteKind, Permissions, Subject};
use crate::Snowflake;

impl GuildState {
    fn roles_view(&self) -> GuildRoles<'_> {
        GuildRoles { guild: self.guild.id, owner: self.guild.owner_id, roles: &self.grants }
    }

    fn subject(member: &Member) -> Subject<'_> {
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

    /// May `actor` act on `target` (kick, ban, roles, nick)? Only from above.
    fn require_outranks(&self, actor: UserId, target: UserId) -> Result<(), GuildError> {
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
    fn require_manages_role(&self, actor: UserId, role: &Role) -> Result<(), GuildError> {
        self.require(actor, Permissions::MANAGE_ROLES)?;
        let member = &self.members[&actor];
        if self.roles_view().may_manage_role(Self::subject(member), &role.grant()) {
            Ok(())
        } else {
            Err(GuildError::MissingPermissions)
        }
    }

    /// The commands of this module; `Err` is the refusal to reply with.
    pub(super) fn on_access_command(
        &mut self,
        request: super::RequestId,
        command: Command,
        fx: &mut Vec<super::Effect>,
    ) -> Result<(), GuildError> {
        match command {
            Command::Permissions { user, channel_id } => {
                let permissions = match channel_id {
                    Some(channel_id) => self.in_channel(user, channel_id)?,
                    None if self.members.contains_key(&user) => self.guild_permissions(user),
                    None => return Err(GuildError::NotMember),
                };
                fx.push(super::Effect::Reply { request, result: Ok(Reply::Permissions(permissions)) });
            }
            Command::CreateRole { user, mut role } => {
                // A bot's managed role comes with adding the bot, which MANAGE_GUILD allows.
                let need = if role.tags.is_some() { Permissions::MANAGE_GUILD } else { Permissions::MANAGE_ROLES };
                self.require(user, need)?;
                if !may_grant(self.guild_permissions(user), role.permissions) {
                    return Err(GuildError::MissingPermissions);
                }
                if self.guild.roles.len() >= MAX_ROLES {
                    return Err(GuildError::TooManyRoles);
                }
                // Discord places a new role just above @everyone.
                let mut guild = self.guild.clone();
                for r in guild.roles.iter_mut().filter(|r| r.id != guild.id) {
                    r.position += 1;
                }
                role.position = 1;
                role.managed = role.tags.is_some();
                guild.roles.push(role.clone());
                let event = GuildEvent::RoleCreate { guild_id: guild.id, role: role.clone() };
                self.persist_guild(request, guild, event, Reply::Role(role), fx);
            }
            Command::UpdateRole { user, role_id, patch } => {
                let role = self.guild.role(role_id).ok_or(GuildError::UnknownRole)?.clone();
                self.require_manages_role(user, &role)?;
                let mut updated = role.clone();
                if let Some(p) = patch.permissions {
                    let added = Permissions(p.0 & !role.permissions.0);
                    if !may_grant(self.guild_permissions(user), added) {
                        return Err(GuildError::MissingPermissions);
                    }
                    updated.permissions = p;
                }
                if let Some(name) = patch.name {
                    updated.name = name;
                }
                if let Some(color) = patch.color {
                    updated.set_color(color);
                }
                if let Some(hoist) = patch.hoist {
                    updated.hoist = hoist;
                }
                if let Some(mentionable) = patch.mentionable {
                    updated.mentionable = mentionable;
                }
                let mut guild = self.guild.clone();
                if let Some(position) = patch.position.filter(|_| role_id != guild.id) {
                    let highest = self.roles_view().highest(Self::subject(&self.members[&user]));
                    if i64::from(position) >= highest || position < 1 {
                        return Err(GuildError::MissingPermissions);
                    }
                    reposition(&mut guild.roles, role_id, position);
                    updated.position = guild.role(role_id).map_or(position, |r| r.position);
                }
                if let Some(slot) = guild.roles.iter_mut().find(|r| r.id == role_id) {
                    *slot = updated.clone();
                }
                let event = GuildEvent::RoleUpdate { guild_id: guild.id, role: updated.clone() };
                self.persist_guild(request, guild, event, Reply::Role(updated), fx);
            }
            Command::DeleteRole { user, role_id } => {
                let role = self.guild.role(role_id).ok_or(GuildError::UnknownRole)?.clone();
                if role.id == self.guild.id || role.managed {
                    return Err(GuildError::InvalidRole);
                }
                self.require_manages_role(user, &role)?;
                let mut guild = self.guild.clone();
                guild.roles.retain(|r| r.id != role_id);
                // Keep positions contiguous above @everyone.
                for r in guild.roles.iter_mut().filter(|r| r.position > role.position) {
                    r.position -= 1;
                }
                let event = GuildEvent::RoleDelete { guild_id: guild.id, role_id };
                self.persist_guild(request, guild, event, Reply::Done, fx);
            }
            Command::UpdateMember { user, target, change } => {
                let member = self.members.get(&target).ok_or(GuildError::UnknownMember)?.clone();
                let mut updated = member.clone();
                match change {
                    MemberChange::AddRole(id) | MemberChange::RemoveRole(id) => {
                        let add = matches!(change, MemberChange::AddRole(_));
                        self.check_assignable(user, id)?;
                        updated.roles.retain(|r| *r != id);
                        if add {
                            updated.roles.push(id);
                        }
                    }
                    MemberChange::Set { roles, nick } => {
                        if let Some(roles) = roles {
                            // Only the roles that change need to be manageable by the actor.
                            for id in roles.iter().filter(|r| !member.roles.contains(r)) {
                                self.check_assignable(user, *id)?;
                            }
                            for id in member.roles.iter().filter(|r| !roles.contains(r)) {
                                self.check_assignable(user, *id)?;
                            }
                            updated.roles = roles;
                        }
                        if let Some(nick) = nick {
                            if user == target {
                                self.require(user, Permissions::CHANGE_NICKNAME)?;
                            } else {
                                self.require(user, Permissions::MANAGE_NICKNAMES)?;
                                self.require_outranks(user, target)?;
                            }
                            updated.nick = nick;
                        }
                    }
                }
                updated.roles.sort();
                updated.roles.dedup();
                if updated == member {
                    fx.push(super::Effect::Reply { request, result: Ok(Reply::Member(member)) });
                    return Ok(());
                }
                let write = GuildWrite::UpdateMember { guild_id: self.guild.id, member: updated.clone() };
                self.persist_locked(request, Object::Member(target), write, AfterPersist::MemberUpdated(updated), fx);
            }
            Command::UpdateChannel { user, channel_id, change } => {
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
                let write = GuildWrite::UpdateChannel(channel.clone());
                self.persist_locked(
                    request,
                    Object::Channel(channel_id),
                    write,
                    AfterPersist::ChannelUpdated(channel),
                    fx,
                );
            }
            Command::Kick { user, target } => {
                self.require(user, Permissions::KICK_MEMBERS)?;
                if !self.members.contains_key(&target) {
                    return Err(GuildError::UnknownMember);
                }
                self.require_outranks(user, target)?;
                let write = GuildWrite::RemoveMember { guild_id: self.guild.id, user_id: target };
                self.persist_locked(request, Object::Member(target), write, AfterPersist::MemberRemoved(target), fx);
            }
            Command::Ban { user, target, reason } => {
                self.require(user, Permissions::BAN_MEMBERS)?;
                self.require_outranks(user, target.id)?;
                let target_id = target.id;
                let ban = Ban { user: self.members.get(&target_id).map_or(target, |m| m.user.clone()), reason };
                let write = GuildWrite::Ban { guild_id: self.guild.id, ban: ban.clone() };
                self.persist_locked(request, Object::Member(target_id), write, AfterPersist::Banned(ban), fx);
            }
            Command::Unban { user, target } => {
                self.require(user, Permissions::BAN_MEMBERS)?;
                let ban = self.bans.get(&target).cloned().ok_or(GuildError::UnknownBan)?;
                let write = GuildWrite::Unban { guild_id: self.guild.id, user_id: target };
                self.persist_locked(request, Object::Member(target), write, AfterPersist::Unbanned(ban.user), fx);
            }
            other => unreachable!("not an access command: {other:?}"),
        }
        Ok(())
    }

    /// May `actor` give or take role `id`? It must exist, be neither @everyone nor managed,
    /// and be below the actor's highest role.
    fn check_assignable(&self, actor: UserId, id: Snowflake) -> Result<(), GuildError> {
        let role = self.guild.role(id).ok_or(GuildError::UnknownRole)?;
        if role.id == self.guild.id || role.managed {
            return Err(GuildError::InvalidRole);
        }
        self.require_manages_role(actor, role)
    }

    /// Stores a changed guild (its roles, its settings); once stored it applies, `event`
    /// goes to the guild and `reply` to the caller. One guild write is in flight at a time
    /// (the next waits), so each starts from the stored guild.
    pub(super) fn persist_guild(
        &mut self,
        request: super::RequestId,
        guild: crate::model::Guild,
        event: GuildEvent,
        reply: Reply,
        fx: &mut Vec<super::Effect>,
    ) {
        let write = GuildWrite::UpdateGuild(guild.clone());
        let after =
            AfterPersist::GuildChanged { guild: Box::new(guild), event: Box::new(event), reply: Box::new(reply) };
        self.persist_locked(request, Object::Guild, write, after, fx);
    }

    /// Applies a stored role change: the guild's roles, their grants, and the members'
    /// roles (a deleted role is taken from everyone); the cache is dropped.
    pub(super) fn set_guild(&mut self, guild: crate::model::Guild) {
        self.grants = guild.roles.iter().map(Role::grant).collect();
        let known: std::collections::HashSet<Snowflake> = guild.roles.iter().map(|r| r.id).collect();
        if self.members.values().any(|m| m.roles.iter().any(|r| !known.contains(r))) {
            for m in self.members.values_mut() {
                m.roles.retain(|r| known.contains(r));
            }
        }
        self.guild = guild;
        self.cache.clear();
    }

    pub(super) fn set_channel(&mut self, channel: Channel) {
        self.channels.insert(channel.id, channel);
        self.cache.clear();
    }

    pub(super) fn add_ban(&mut self, ban: Ban) {
        self.bans.insert(ban.user.id, ban);
    }

    pub(super) fn remove_ban(&mut self, user: UserId) -> Option<User> {
        self.bans.remove(&user).map(|b| b.user)
    }

    pub fn is_banned(&self, user: UserId) -> bool {
        self.bans.contains_key(&user)
    }
}

/// Moves `role_id` to `position` (≥ 1) and renumbers the others above @everyone so that
/// positions stay 1, 2, 3, ... in their previous order.
fn reposition(roles: &mut [Role], role_id: Snowflake, position: i32) {
    let mut order: Vec<Snowflake> = {
        let mut others: Vec<&Role> = roles.iter().filter(|r| r.position > 0 && r.id != role_id).collect();
        others.sort_by_key(|r| (r.position, r.id));
        others.iter().map(|r| r.id).collect()
    };
    let at = usize::try_from(position - 1).unwrap_or(0).min(order.len());
    order.insert(at, role_id);
    for r in roles.iter_mut() {
        if let Some(i) = order.iter().position(|id| *id == r.id) {
            r.position = i as i32 + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Audience, Effect, Input, RolePatch, SessionId};
    use super::*;
    use crate::gateway::intents;
    use crate::model::Guild;

    const GUILD: Snowflake = Snowflake(10);
    const OWNER: UserId = Snowflake(1);
    const MOD: UserId = Snowflake(2);
    const BOB: UserId = Snowflake(3);
    const BOT: UserId = Snowflake(4);
    const GENERAL: ChannelId = Snowflake(100);
    const STAFF: ChannelId = Snowflake(101);
    const MODS: Snowflake = Snowflake(200);

    fn member(id: UserId, roles: &[Snowflake]) -> Member {
        let mut m =
            Member::new(User::new(id, format!("u{}", id.0), id == BOT), "2026-01-01T00:00:00.000000+00:00".into());
        m.roles = roles.to_vec();
        m
    }

    /// Owner, a moderator (MANAGE_ROLES, KICK, BAN, MANAGE_MESSAGES), bob and a bot; #staff
    /// is hidden from @everyone and shown to moderators.
    fn guild() -> GuildState {
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

    fn cmd(request: u64, command: Command) -> Input {
        Input::Command { request, command: Box::new(command) }
    }

    fn reply(fx: &[Effect]) -> Option<&Result<Reply, GuildError>> {
        fx.iter().find_map(|e| match e {
            Effect::Reply { result, .. } => Some(result),
            _ => None,
        })
    }

    fn persisted(g: &mut GuildState, request: u64) -> Vec<Effect> {
        g.handle(Input::Persisted { request, result: Ok(()) })
    }

    fn say(g: &mut GuildState, request: u64, author: UserId, channel_id: ChannelId) -> Vec<Effect> {
        let id = Snowflake(1000 + request);
        g.handle(cmd(
            request,
            Command::CreateMessage { author, channel_id, id, content: "hi".into(), nonce: None, enforce_nonce: false },
        ))
    }

    fn viewers(g: &GuildState, channel_id: ChannelId) -> Vec<SessionId> {
        g.audience(&Audience::Channel { channel_id, intent: intents::GUILD_MESSAGES })
    }

    fn connect_all(g: &mut GuildState) {
        for (session, user) in [(1, OWNER), (2, MOD), (3, BOB), (4, BOT)] {
            g.handle(Input::SessionConnect {
                session: SessionId(session),
                user,
                intents: intents::ALL_KNOWN,
                status: "online".into(),
            });
        }
    }

    #[test]
    fn bots_without_message_content_read_only_their_own_messages_and_mentions() {
        use crate::event::GuildEvent;
        use crate::model::Message;
        let mut g = guild();
        let without = intents::ALL_KNOWN & !intents::MESSAGE_CONTENT;
        for (session, user, intents) in [(1, BOT, without), (2, BOT, intents::ALL_KNOWN), (3, BOB, without)] {
            let status = "online".into();
            g.handle(Input::SessionConnect { session: SessionId(session), user, intents, status });
        }
        let general = g.channels[&GENERAL].clone();
        let bobs = Message::new(Snowflake(900), &general, g.members[&BOB].user.clone(), "hello".into(), None);
        assert!(!g.reads_content(SessionId(1), &bobs), "a bot without the intent");
        assert!(g.reads_content(SessionId(2), &bobs), "a bot with it");
        assert!(g.reads_content(SessionId(3), &bobs), "people read everything");
        let mut mention = bobs.clone();
        mention.mentions = vec![g.members[&BOT].user.clone()];
        assert!(g.reads_content(SessionId(1), &mention), "a bot reads what mentions it");
        let own = Message::new(Snowflake(901), &general, g.members[&BOT].user.clone(), "mine".into(), None);
        assert!(g.reads_content(SessionId(1), &own), "and its own messages");
        let blind = GuildEvent::MessageCreate { message: bobs, member: None }.without_content();
        assert_eq!(
            (blind.discord_data()["content"].as_str(), blind.discord_data()["id"].as_str()),
            (Some(""), Some("900"))
        );
    }

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
            reply(&g.handle(cmd(1, Command::Permissions { user, channel_id: Some(STAFF) }))).cloned()
        };
        assert_eq!(ask(&mut g, BOB), Some(Err(GuildError::NotMember)), "Missing Access, as Discord answers");
        assert!(matches!(ask(&mut g, MOD), Some(Ok(Reply::Permissions(p))) if p.contains(Permissions::VIEW_CHANNEL)));
        assert_eq!(reply(&say(&mut g, 2, BOB, STAFF)), Some(&Err(GuildError::NotMember)));
        assert!(matches!(say(&mut g, 3, MOD, STAFF)[0], Effect::Persist { .. }));
    }

    #[test]
    fn without_send_messages_a_member_reads_but_cannot_send_or_type() {
        let mut g = guild();
        assert_eq!(reply(&say(&mut g, 1, BOT, GENERAL)), Some(&Err(GuildError::MissingPermissions)));
        let typing = Command::Typing { user: BOT, channel_id: GENERAL, unix_s: 0 };
        assert_eq!(reply(&g.handle(cmd(2, typing))), Some(&Err(GuildError::MissingPermissions)));
        let p = g.channel_permissions(BOT, GENERAL);
        assert!(p.contains(Permissions::VIEW_CHANNEL | Permissions::READ_MESSAGE_HISTORY));
        assert!(!p.contains(Permissions::EMBED_LINKS), "denied implicitly without SEND_MESSAGES");
        assert!(matches!(say(&mut g, 3, BOB, GENERAL)[0], Effect::Persist { .. }), "bob is not affected");
    }

    #[test]
    fn changing_a_roles_permissions_changes_who_receives_at_once() {
        let mut g = guild();
        connect_all(&mut g);
        assert_eq!(viewers(&g, GENERAL).len(), 4);
        let hide = RolePatch { permissions: Some(Permissions::SEND_MESSAGES), ..RolePatch::default() };
        let fx = g.handle(cmd(1, Command::UpdateRole { user: OWNER, role_id: GUILD, patch: hide }));
        assert!(matches!(&fx[0], Effect::Persist { write: GuildWrite::UpdateGuild(_), .. }));
        assert_eq!(viewers(&g, GENERAL).len(), 4, "not before the write is stored");
        let fx = persisted(&mut g, 1);
        assert!(fx.iter().any(|e| matches!(e, Effect::Dispatch { event, .. } if event.name() == "GUILD_ROLE_UPDATE")));
        assert_eq!(viewers(&g, GENERAL), vec![SessionId(1), SessionId(2)], "@everyone lost VIEW_CHANNEL");
    }

    #[test]
    fn roles_are_managed_from_above_and_never_beyond_ones_own_permissions() {
        let mut g = guild();
        let new_role = |perms| Role::new(Snowflake(0), "r", 0, perms);
        // Bob has no MANAGE_ROLES.
        let fx = g.handle(cmd(1, Command::CreateRole { user: BOB, role: new_role(Permissions::NONE) }));
        assert_eq!(reply(&fx), Some(&Err(GuildError::MissingPermissions)));
        // The moderator cannot grant ADMINISTRATOR, which they lack.
        let mut admin = new_role(Permissions::ADMINISTRATOR);
        admin.id = Snowflake(300);
        let fx = g.handle(cmd(2, Command::CreateRole { user: MOD, role: admin }));
        assert_eq!(reply(&fx), Some(&Err(GuildError::MissingPermissions)));
        // A role they may grant lands at position 1, below theirs (now 2).
        let mut helper = new_role(Permissions::MANAGE_MESSAGES);
        helper.id = Snowflake(301);
        g.handle(cmd(3, Command::CreateRole { user: MOD, role: helper }));
        persisted(&mut g, 3);
        assert_eq!(g.guild().role(Snowflake(301)).unwrap().position, 1);
        assert_eq!(g.guild().role(MODS).unwrap().position, 2);
        // They may give it to bob, but not give bob their own role (not below theirs).
        let give = |target, role| Command::UpdateMember { user: MOD, target, change: MemberChange::AddRole(role) };
        let fx = g.handle(cmd(4, give(BOB, MODS)));
        assert_eq!(reply(&fx), Some(&Err(GuildError::MissingPermissions)));
        g.handle(cmd(5, give(BOB, Snowflake(301))));
        let fx = persisted(&mut g, 5);
        assert!(fx
            .iter()
            .any(|e| matches!(e, Effect::Dispatch { event, .. } if event.name() == "GUILD_MEMBER_UPDATE")));
        assert!(g.guild_permissions(BOB).contains(Permissions::MANAGE_MESSAGES));
        // @everyone is never assigned; unknown roles are unknown.
        assert_eq!(reply(&g.handle(cmd(6, give(BOB, GUILD)))), Some(&Err(GuildError::InvalidRole)));
        assert_eq!(reply(&g.handle(cmd(7, give(BOB, Snowflake(999))))), Some(&Err(GuildError::UnknownRole)));
        // Deleting the role takes it from bob.
        g.handle(cmd(8, Command::DeleteRole { user: OWNER, role_id: Snowflake(301) }));
        persisted(&mut g, 8);
        assert!(!g.guild_permissions(BOB).contains(Permissions::MANAGE_MESSAGES));
        assert_eq!(g.guild().role(MODS).unwrap().position, 1, "positions stay contiguous");
    }

    #[test]
    fn a_second_role_write_waits_for_the_first_and_starts_from_it() {
        let mut g = guild();
        let role = |id| Role::new(Snowflake(id), "r", 0, Permissions::NONE);
        let first = g.handle(cmd(1, Command::CreateRole { user: OWNER, role: role(301) }));
        let second = g.handle(cmd(2, Command::CreateRole { user: OWNER, role: role(302) }));
        assert_eq!(first.len(), 1);
        assert!(second.is_empty(), "deferred while the guild has a write in flight");
        let fx = persisted(&mut g, 1);
        let Some(Effect::Persist { write: GuildWrite::UpdateGuild(next), request: 2 }) =
            fx.iter().find(|e| matches!(e, Effect::Persist { .. }))
        else {
            panic!("the second write follows the first: {fx:?}")
        };
        assert!(next.role(Snowflake(301)).is_some() && next.role(Snowflake(302)).is_some());
        persisted(&mut g, 2);
        assert_eq!(g.guild().roles.len(), 4);
    }

    #[test]
    fn kicks_and_bans_come_from_above_and_a_ban_keeps_the_user_out() {
        let mut g = guild();
        connect_all(&mut g);
        let kick = |user, target| Command::Kick { user, target };
        assert_eq!(reply(&g.handle(cmd(1, kick(BOB, MOD)))), Some(&Err(GuildError::MissingPermissions)));
        assert_eq!(reply(&g.handle(cmd(2, kick(MOD, OWNER)))), Some(&Err(GuildError::MissingPermissions)));
        let bob = g.members[&BOB].user.clone();
        g.handle(cmd(3, Command::Ban { user: MOD, target: bob.clone(), reason: Some("spam".into()) }));
        let fx = persisted(&mut g, 3);
        let names: Vec<&str> = fx
            .iter()
            .filter_map(|e| match e {
                Effect::Dispatch { event, .. } => Some(event.name()),
                _ => None,
            })
            .collect();
        assert_eq!(names, ["GUILD_DELETE", "GUILD_MEMBER_REMOVE", "GUILD_BAN_ADD"]);
        assert!(!g.is_member(BOB) && g.is_banned(BOB));
        assert!(!g.has_session(SessionId(3)), "bob's session stops hearing the guild");
        let join = Command::AddMember { member: member(BOB, &[]) };
        assert_eq!(reply(&g.handle(cmd(4, join.clone()))), Some(&Err(GuildError::Banned)));
        g.handle(cmd(5, Command::Unban { user: MOD, target: BOB }));
        persisted(&mut g, 5);
        assert!(matches!(g.handle(cmd(6, join))[0], Effect::Persist { .. }), "may join again");
    }

    #[test]
    fn overwrites_need_manage_roles_and_grant_only_what_one_has() {
        let mut g = guild();
        let put = |user, allow| Command::UpdateChannel {
            user,
            channel_id: GENERAL,
            change: ChannelChange::PutOverwrite(Overwrite {
                id: BOB,
                kind: OverwriteKind::Member,
                allow,
                deny: Permissions::NONE,
            }),
        };
        assert_eq!(reply(&g.handle(cmd(1, put(BOB, Permissions::NONE)))), Some(&Err(GuildError::MissingPermissions)));
        let fx = g.handle(cmd(2, put(MOD, Permissions::MANAGE_CHANNELS)));
        assert_eq!(reply(&fx), Some(&Err(GuildError::MissingPermissions)), "the moderator lacks MANAGE_CHANNELS");
        g.handle(cmd(3, put(MOD, Permissions::MANAGE_MESSAGES)));
        let fx = persisted(&mut g, 3);
        assert!(fx.iter().any(|e| matches!(e, Effect::Dispatch { event, .. } if event.name() == "CHANNEL_UPDATE")));
        assert!(g.channel_permissions(BOB, GENERAL).contains(Permissions::MANAGE_MESSAGES));
        assert!(!g.channel_permissions(BOB, STAFF).contains(Permissions::MANAGE_MESSAGES), "only in #general");
    }

    #[test]
    fn repositioning_keeps_positions_contiguous() {
        let mut roles = vec![
            Role::everyone(Snowflake(10)),
            Role::new(Snowflake(1), "a", 1, Permissions::NONE),
            Role::new(Snowflake(2), "b", 2, Permissions::NONE),
            Role::new(Snowflake(3), "c", 3, Permissions::NONE),
        ];
        reposition(&mut roles, Snowflake(3), 1);
        let pos: Vec<(u64, i32)> = roles.iter().map(|r| (r.id.0, r.position)).collect();
        assert_eq!(pos, vec![(10, 0), (1, 2), (2, 3), (3, 1)]);
        reposition(&mut roles, Snowflake(3), 99);
        let pos: Vec<(u64, i32)> = roles.iter().map(|r| (r.id.0, r.position)).collect();
        assert_eq!(pos, vec![(10, 0), (1, 1), (2, 2), (3, 3)]);
    }
}
