//! Roles: creating, editing (name, color, permissions, position) and deleting them, from
//! above and never beyond one's own permissions. A role change is a change of the guild's
//! record ([`RecordChange`]); who may do what with roles is `access.rs`.

use crate::event::GuildEvent;
use crate::model::{Role, UserId, MAX_ROLES};
use crate::permissions::{may_grant, Permissions};
use crate::Snowflake;

use super::data::GuildData;
use super::protocol::{Decision, GuildError, RecordChange, Reply};

/// Plain data (serde): it can be sent to a guild on another node.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum RoleCommand {
    /// MANAGE_ROLES: a new role (the runtime gives its id), placed just above @everyone.
    /// A role with `tags` is a managed one (a bot's).
    #[serde(rename = "CreateRole")]
    Create { user: UserId, role: Role },
    #[serde(rename = "UpdateRole")]
    Update { user: UserId, role_id: Snowflake, patch: RolePatch },
    #[serde(rename = "DeleteRole")]
    Delete { user: UserId, role_id: Snowflake },
}

/// Changes to a role (PATCH /guilds/{id}/roles/{role}); `None` keeps the field.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RolePatch {
    pub name: Option<String>,
    pub permissions: Option<Permissions>,
    pub color: Option<u32>,
    pub hoist: Option<bool>,
    pub mentionable: Option<bool>,
    pub position: Option<i32>,
}

impl GuildData {
    pub(super) fn decide_role(&self, command: RoleCommand) -> Result<Decision<RecordChange>, GuildError> {
        match command {
            RoleCommand::Create { user, mut role } => {
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
                Ok(RecordChange::decision(guild, event, Reply::Role(role)))
            }
            RoleCommand::Update { user, role_id, patch } => {
                let role = self.guild.role(role_id).ok_or(GuildError::UnknownRole)?;
                self.require_manages_role(user, role)?;
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
                Ok(RecordChange::decision(guild, event, Reply::Role(updated)))
            }
            RoleCommand::Delete { user, role_id } => {
                let role = self.guild.role(role_id).ok_or(GuildError::UnknownRole)?;
                if role.id == self.guild.id || role.managed {
                    return Err(GuildError::InvalidRole);
                }
                self.require_manages_role(user, role)?;
                let mut guild = self.guild.clone();
                guild.roles.retain(|r| r.id != role_id);
                // Keep positions contiguous above @everyone.
                for r in guild.roles.iter_mut().filter(|r| r.position > role.position) {
                    r.position -= 1;
                }
                let event = GuildEvent::RoleDelete { guild_id: guild.id, role_id };
                Ok(RecordChange::decision(guild, event, Reply::Done))
            }
        }
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
    use super::super::testing::staffed::*;
    use super::super::testing::*;
    use super::super::*;
    use super::reposition;

    use crate::model::Role;

    use crate::permissions::Permissions;
    use crate::Snowflake;

    #[test]
    fn changing_a_roles_permissions_changes_who_receives_at_once() {
        let mut g = guild();
        connect_all(&mut g);
        assert_eq!(viewers(&g, GENERAL).len(), 4);
        let epoch = g.audience_epoch();
        let hide = RolePatch { permissions: Some(Permissions::SEND_MESSAGES), ..RolePatch::default() };
        let fx = g.handle(cmd(1, RoleCommand::Update { user: OWNER, role_id: GUILD, patch: hide }));
        assert!(matches!(&fx[0], Effect::Persist { write: GuildWrite::UpdateGuild(_), .. }));
        assert_eq!(viewers(&g, GENERAL).len(), 4, "not before the write is stored");
        assert_eq!(g.audience_epoch(), epoch, "audiences resolved so far still hold");
        let fx = persisted(&mut g, 1);
        assert!(fx.iter().any(|e| matches!(e, Effect::Dispatch { event, .. } if event.name() == "GUILD_ROLE_UPDATE")));
        assert_eq!(viewers(&g, GENERAL), vec![SessionId(1), SessionId(2)], "@everyone lost VIEW_CHANNEL");
        assert_ne!(g.audience_epoch(), epoch, "what runtimes resolved before is stale: the epoch moved");
    }

    #[test]
    fn roles_are_managed_from_above_and_never_beyond_ones_own_permissions() {
        let mut g = guild();
        let new_role = |perms| Role::new(Snowflake(0), "r", 0, perms);
        // Bob has no MANAGE_ROLES.
        let fx = g.handle(cmd(1, RoleCommand::Create { user: BOB, role: new_role(Permissions::NONE) }));
        assert_eq!(maybe_reply(&fx), Some(&Err(GuildError::MissingPermissions)));
        // The moderator cannot grant ADMINISTRATOR, which they lack.
        let mut admin = new_role(Permissions::ADMINISTRATOR);
        admin.id = Snowflake(300);
        let fx = g.handle(cmd(2, RoleCommand::Create { user: MOD, role: admin }));
        assert_eq!(maybe_reply(&fx), Some(&Err(GuildError::MissingPermissions)));
        // A role they may grant lands at position 1, below theirs (now 2).
        let mut helper = new_role(Permissions::MANAGE_MESSAGES);
        helper.id = Snowflake(301);
        g.handle(cmd(3, RoleCommand::Create { user: MOD, role: helper }));
        persisted(&mut g, 3);
        assert_eq!(g.guild().role(Snowflake(301)).unwrap().position, 1);
        assert_eq!(g.guild().role(MODS).unwrap().position, 2);
        // They may give it to bob, but not give bob their own role (not below theirs).
        let give = |target, role| MemberCommand::Update { user: MOD, target, change: MemberChange::AddRole(role) };
        let fx = g.handle(cmd(4, give(BOB, MODS)));
        assert_eq!(maybe_reply(&fx), Some(&Err(GuildError::MissingPermissions)));
        g.handle(cmd(5, give(BOB, Snowflake(301))));
        let fx = persisted(&mut g, 5);
        assert!(fx
            .iter()
            .any(|e| matches!(e, Effect::Dispatch { event, .. } if event.name() == "GUILD_MEMBER_UPDATE")));
        assert!(g.guild_permissions(BOB).contains(Permissions::MANAGE_MESSAGES));
        // @everyone is never assigned; unknown roles are unknown.
        assert_eq!(maybe_reply(&g.handle(cmd(6, give(BOB, GUILD)))), Some(&Err(GuildError::InvalidRole)));
        assert_eq!(maybe_reply(&g.handle(cmd(7, give(BOB, Snowflake(999))))), Some(&Err(GuildError::UnknownRole)));
        // Deleting the role takes it from bob.
        g.handle(cmd(8, RoleCommand::Delete { user: OWNER, role_id: Snowflake(301) }));
        persisted(&mut g, 8);
        assert!(!g.guild_permissions(BOB).contains(Permissions::MANAGE_MESSAGES));
        assert_eq!(g.guild().role(MODS).unwrap().position, 1, "positions stay contiguous");
    }

    #[test]
    fn a_second_role_write_waits_for_the_first_and_starts_from_it() {
        let mut g = guild();
        let role = |id| Role::new(Snowflake(id), "r", 0, Permissions::NONE);
        let first = g.handle(cmd(1, RoleCommand::Create { user: OWNER, role: role(301) }));
        let second = g.handle(cmd(2, RoleCommand::Create { user: OWNER, role: role(302) }));
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
