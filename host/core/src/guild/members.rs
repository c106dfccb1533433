//! Members: joining (by an invite, whose use is written with the membership), leaving,
//! and changes to a member's roles and nickname.

use crate::event::GuildEvent;
use crate::gateway::intents;
use crate::model::{Member, UserId};
use crate::permissions::Permissions;
use crate::Snowflake;

use super::data::GuildData;
use super::protocol::{Audience, Decision, Effect, GuildError, GuildWrite, InviteUse, Reply, WriteError};

/// Plain data (serde): it can be sent to a guild on another node. The names on the wire
/// are the ones commands had before they had families.
// Not boxed: commands travel boxed (`Input::Command`), whatever their size.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum MemberCommand {
    /// A user joins. With `invite`, one use of it is taken in the same write, so a join
    /// the guild refuses takes none.
    #[serde(rename = "AddMember")]
    Join {
        member: Member,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        invite: Option<InviteUse>,
    },
    #[serde(rename = "RemoveMember")]
    Leave { user: UserId },
    /// Roles (MANAGE_ROLES, roles below one's own) or nickname of a member.
    #[serde(rename = "UpdateMember")]
    Update { user: UserId, target: UserId, change: MemberChange },
}

impl MemberCommand {
    /// The member the command writes (one write to a member in flight at a time).
    pub(super) fn target(&self) -> UserId {
        match self {
            MemberCommand::Join { member, .. } => member.user.id,
            MemberCommand::Leave { user } => *user,
            MemberCommand::Update { target, .. } => *target,
        }
    }
}

/// A change to a member's roles or nickname.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MemberChange {
    AddRole(Snowflake),
    RemoveRole(Snowflake),
    /// PATCH /guilds/{id}/members/{user}: `None` keeps the field; `Some(None)` clears the nick.
    Set {
        roles: Option<Vec<Snowflake>>,
        nick: Option<Option<String>>,
    },
}

/// A member write, applied once it is stored.
#[derive(Debug, Clone)]
pub(super) enum Stored {
    Joined { member: Member, by_invite: bool },
    Updated(Member),
    Left(UserId),
}

impl GuildData {
    pub(super) fn decide_member(&self, command: MemberCommand) -> Result<Decision<Stored>, GuildError> {
        let guild_id = self.guild.id;
        match command {
            MemberCommand::Join { mut member, invite } => {
                let user = member.user.id;
                if self.members.contains_key(&user) {
                    return Err(GuildError::AlreadyMember);
                }
                if self.bans.contains_key(&user) {
                    return Err(GuildError::Banned);
                }
                member.roles.retain(|r| self.guild.role(*r).is_some_and(|role| role.id != guild_id));
                member.roles.sort();
                let by_invite = invite.is_some();
                let write = GuildWrite::AddMember { guild_id, member: member.clone(), invite };
                Ok(Decision::Write { write, stored: Stored::Joined { member, by_invite } })
            }
            MemberCommand::Leave { user } => {
                if !self.members.contains_key(&user) {
                    return Err(GuildError::NotMember);
                }
                if user == self.guild.owner_id {
                    return Err(GuildError::OwnerCannotLeave);
                }
                let write = GuildWrite::RemoveMember { guild_id, user_id: user };
                Ok(Decision::Write { write, stored: Stored::Left(user) })
            }
            MemberCommand::Update { user, target, change } => {
                let member = self.members.get(&target).ok_or(GuildError::UnknownMember)?;
                let updated = self.changed_member(user, member, change)?;
                if &updated == member {
                    return Ok(Decision::Answer(Reply::Member(updated)));
                }
                let write = GuildWrite::UpdateMember { guild_id, member: updated.clone() };
                Ok(Decision::Write { write, stored: Stored::Updated(updated) })
            }
        }
    }

    /// `member` as `change` leaves it, if `actor` may make the change.
    fn changed_member(&self, actor: UserId, member: &Member, change: MemberChange) -> Result<Member, GuildError> {
        let target = member.user.id;
        let mut updated = member.clone();
        match change {
            MemberChange::AddRole(id) | MemberChange::RemoveRole(id) => {
                let add = matches!(change, MemberChange::AddRole(_));
                self.check_assignable(actor, id)?;
                updated.roles.retain(|r| *r != id);
                if add {
                    updated.roles.push(id);
                }
            }
            MemberChange::Set { roles, nick } => {
                if let Some(roles) = roles {
                    // Only the roles that change need to be manageable by the actor.
                    for id in roles.iter().filter(|r| !member.roles.contains(r)) {
                        self.check_assignable(actor, *id)?;
                    }
                    for id in member.roles.iter().filter(|r| !roles.contains(r)) {
                        self.check_assignable(actor, *id)?;
                    }
                    updated.roles = roles;
                }
                if let Some(nick) = nick {
                    if actor == target {
                        self.require(actor, Permissions::CHANGE_NICKNAME)?;
                    } else {
                        self.require(actor, Permissions::MANAGE_NICKNAMES)?;
                        self.require_outranks(actor, target)?;
                    }
                    updated.nick = nick;
                }
            }
        }
        updated.roles.sort();
        updated.roles.dedup();
        Ok(updated)
    }

    /// A stored member write takes effect: sessions with GUILD_MEMBERS hear of it.
    pub(super) fn apply_member(&mut self, stored: Stored, fx: &mut Vec<Effect>) -> Reply {
        let guild_id = self.guild.id;
        let members = Audience::Guild { intent: intents::GUILD_MEMBERS };
        match stored {
            Stored::Joined { member, .. } => {
                self.members.insert(member.user.id, member.clone());
                fx.push(Effect::dispatch(members, GuildEvent::MemberAdd { guild_id, member: member.clone() }));
                Reply::Member(member)
            }
            Stored::Updated(member) => {
                self.members.insert(member.user.id, member.clone());
                fx.push(Effect::dispatch(members, GuildEvent::MemberUpdate { guild_id, member: member.clone() }));
                Reply::Member(member)
            }
            Stored::Left(user_id) => {
                self.remove_member(user_id, fx);
                Reply::Done
            }
        }
    }

    /// A member write failed: a join whose invite was gone by the time it was written is
    /// an unknown invite.
    pub(super) fn member_write_failed(&mut self, stored: &Stored, e: WriteError) -> GuildError {
        let not_found = match stored {
            Stored::Joined { by_invite: true, .. } => GuildError::UnknownInvite,
            _ => GuildError::UnknownMember,
        };
        GuildError::from_write(e, not_found)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::plain::*;
    use super::super::testing::*;
    use super::super::*;

    use crate::model::Ban;

    #[test]
    fn join_and_leave() {
        let mut g = guild();
        connect(&mut g, 1, OWNER, ALL);
        let fx = g.handle(cmd(1, MemberCommand::Join { member: member(CAROL, "carol"), invite: None }));
        assert!(matches!(&fx[0], Effect::Persist { write: GuildWrite::AddMember { .. }, .. }));
        // A second join while the first is in flight waits for it, then is refused.
        let fx2 = g.handle(cmd(2, MemberCommand::Join { member: member(CAROL, "carol"), invite: None }));
        assert!(fx2.is_empty(), "waits: {fx2:?}");
        let fx = g.handle(Input::Persisted { request: 1, result: Ok(()) });
        assert_eq!(answers(&fx)[1], (2, Err(GuildError::AlreadyMember)));
        let d = dispatches(&fx);
        assert_eq!(d[0].1.name, "GUILD_MEMBER_ADD");
        assert_eq!(d[0].1.data["guild_id"], "10");
        assert_eq!(g.audience(d[0].0), vec![SessionId(1)]);
        assert_eq!(g.member_count(), 3);

        connect(&mut g, 5, CAROL, ALL);
        assert_eq!(reply(&g.handle(cmd(3, MemberCommand::Leave { user: OWNER }))), &Err(GuildError::OwnerCannotLeave));
        g.handle(cmd(4, MemberCommand::Leave { user: CAROL }));
        let fx = g.handle(Input::Persisted { request: 4, result: Ok(()) });
        assert!(fx.contains(&Effect::ForgetSession(SessionId(5))));
        let d = dispatches(&fx);
        assert_eq!(d[0].1.name, "GUILD_DELETE");
        assert_eq!(d.last().unwrap().1.name, "GUILD_MEMBER_REMOVE");
        assert!(!g.is_member(CAROL));
        assert_eq!(g.audience(&Audience::Guild { intent: crate::gateway::Intents::NONE }), vec![SessionId(1)]);
    }

    /// Joins and leaves take their member's write lock like every other write to a member:
    /// while one is in flight they wait for it instead of being refused (issue 23).
    #[test]
    fn joins_and_leaves_wait_for_a_write_to_their_member() {
        let carol = member(CAROL, "carol");
        let mut g = guild().with_bans(vec![Ban { user: carol.user.clone(), reason: None }]);
        // The owner renames bob; bob leaves meanwhile: the leave waits, then is stored.
        let rename = MemberChange::Set { roles: None, nick: Some(Some("b".into())) };
        let fx = g.handle(cmd(1, MemberCommand::Update { user: OWNER, target: BOB, change: rename }));
        assert!(matches!(&fx[0], Effect::Persist { write: GuildWrite::UpdateMember { .. }, .. }));
        assert!(g.handle(cmd(2, MemberCommand::Leave { user: BOB })).is_empty(), "waits for the rename");
        let fx = g.handle(Input::Persisted { request: 1, result: Ok(()) });
        assert!(fx.iter().any(|e| matches!(e, Effect::Persist { request: 2, write: GuildWrite::RemoveMember { .. } })));
        g.handle(Input::Persisted { request: 2, result: Ok(()) });
        assert!(!g.is_member(BOB));
        // Carol is unbanned; her join meanwhile waits for the unban, then is stored.
        let fx = g.handle(cmd(3, BanCommand::Unban { user: OWNER, target: CAROL }));
        assert!(matches!(&fx[0], Effect::Persist { write: GuildWrite::Unban { .. }, .. }));
        assert!(
            g.handle(cmd(4, MemberCommand::Join { member: carol, invite: None })).is_empty(),
            "waits for the unban"
        );
        let fx = g.handle(Input::Persisted { request: 3, result: Ok(()) });
        assert!(fx.iter().any(|e| matches!(e, Effect::Persist { request: 4, write: GuildWrite::AddMember { .. } })));
        g.handle(Input::Persisted { request: 4, result: Ok(()) });
        assert!(g.is_member(CAROL));
    }
}
