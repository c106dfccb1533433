//! Kicks and bans: removing a member from above, keeping a user out, letting them back.

use crate::event::GuildEvent;
use crate::gateway::intents;
use crate::model::{Ban, User, UserId};
use crate::permissions::Permissions;

use super::data::GuildData;
use super::protocol::{Audience, Decision, Effect, GuildError, GuildWrite, Reply, WriteError};

/// Plain data (serde): it can be sent to a guild on another node.
// Not boxed: commands travel boxed (`Input::Command`), whatever their size.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum BanCommand {
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

impl BanCommand {
    /// The user the command writes (one write to a member in flight at a time).
    pub(super) fn target(&self) -> UserId {
        match self {
            BanCommand::Kick { target, .. } | BanCommand::Unban { target, .. } => *target,
            BanCommand::Ban { target, .. } => target.id,
        }
    }
}

/// A kick or ban write, applied once it is stored.
#[derive(Debug, Clone)]
pub(super) enum Stored {
    Kicked(UserId),
    Banned(Ban),
    Unbanned(User),
}

impl GuildData {
    pub(super) fn decide_ban(&self, command: BanCommand) -> Result<Decision<Stored>, GuildError> {
        let guild_id = self.guild.id;
        match command {
            BanCommand::Kick { user, target } => {
                self.require(user, Permissions::KICK_MEMBERS)?;
                if !self.members.contains_key(&target) {
                    return Err(GuildError::UnknownMember);
                }
                self.require_outranks(user, target)?;
                let write = GuildWrite::RemoveMember { guild_id, user_id: target };
                Ok(Decision::Write { write, stored: Stored::Kicked(target) })
            }
            BanCommand::Ban { user, target, reason } => {
                self.require(user, Permissions::BAN_MEMBERS)?;
                self.require_outranks(user, target.id)?;
                let ban = Ban { user: self.members.get(&target.id).map_or(target, |m| m.user.clone()), reason };
                let write = GuildWrite::Ban { guild_id, ban: ban.clone() };
                Ok(Decision::Write { write, stored: Stored::Banned(ban) })
            }
            BanCommand::Unban { user, target } => {
                self.require(user, Permissions::BAN_MEMBERS)?;
                let ban = self.bans.get(&target).ok_or(GuildError::UnknownBan)?;
                let write = GuildWrite::Unban { guild_id, user_id: target };
                Ok(Decision::Write { write, stored: Stored::Unbanned(ban.user.clone()) })
            }
        }
    }

    /// A stored kick or ban takes effect: the member's sessions leave the guild (GUILD_DELETE),
    /// the others hear GUILD_MEMBER_REMOVE and, for bans, GUILD_BAN_ADD or _REMOVE.
    pub(super) fn apply_ban(&mut self, stored: Stored, fx: &mut Vec<Effect>) -> Reply {
        let guild_id = self.guild.id;
        let moderation = Audience::Guild { intent: intents::GUILD_MODERATION };
        match stored {
            Stored::Kicked(user_id) => self.remove_member(user_id, fx),
            Stored::Banned(ban) => {
                self.remove_member(ban.user.id, fx);
                let user = ban.user.clone();
                self.bans.insert(ban.user.id, ban);
                fx.push(Effect::dispatch(moderation, GuildEvent::BanAdd { guild_id, user }));
            }
            Stored::Unbanned(user) => {
                self.bans.remove(&user.id);
                fx.push(Effect::dispatch(moderation, GuildEvent::BanRemove { guild_id, user }));
            }
        }
        Reply::Done
    }

    pub(super) fn ban_write_failed(&mut self, _stored: &Stored, e: WriteError) -> GuildError {
        GuildError::from_write(e, GuildError::UnknownMember)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::staffed::*;
    use super::super::testing::*;
    use super::super::*;

    #[test]
    fn kicks_and_bans_come_from_above_and_a_ban_keeps_the_user_out() {
        let mut g = guild();
        connect_all(&mut g);
        let kick = |user, target| BanCommand::Kick { user, target };
        assert_eq!(maybe_reply(&g.handle(cmd(1, kick(BOB, MOD)))), Some(&Err(GuildError::MissingPermissions)));
        assert_eq!(maybe_reply(&g.handle(cmd(2, kick(MOD, OWNER)))), Some(&Err(GuildError::MissingPermissions)));
        let bob = g.data.members[&BOB].user.clone();
        g.handle(cmd(3, BanCommand::Ban { user: MOD, target: bob.clone(), reason: Some("spam".into()) }));
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
        let join = MemberCommand::Join { member: member(BOB, &[]), invite: None };
        assert_eq!(maybe_reply(&g.handle(cmd(4, join.clone()))), Some(&Err(GuildError::Banned)));
        g.handle(cmd(5, BanCommand::Unban { user: MOD, target: BOB }));
        persisted(&mut g, 5);
        assert!(matches!(g.handle(cmd(6, join))[0], Effect::Persist { .. }), "may join again");
    }
}
