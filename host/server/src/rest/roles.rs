//! Roles and members' roles, as Discord's routes. The guild actor decides (permissions, the
//! role hierarchy); these handlers parse, ask it, and record the audit log.

use guildhall_core::guild::{GuildCommand, MemberChange, MemberCommand, Reply, RoleCommand, RolePatch};
use guildhall_core::model::{audit_action, validate_name, GuildId, Role, UserId};
use guildhall_core::permissions::Permissions;
use guildhall_core::Snowflake;

use super::ctx::{audit_by, call_as_member, no_content, ok, unexpected, ApiResult, Ctx};
use super::error::ApiError;
use guildhall_api::requests::RoleBody;

/// Discord's roles: at most 100 characters of name.
fn check_role_name(name: &str) -> Result<(), ApiError> {
    validate_name(name).map_err(|m| ApiError::invalid_form(format!("name: {m}")))
}

/// GET /guilds/{id}/roles (members).
pub async fn list(ctx: &mut Ctx, guild: GuildId) -> ApiResult {
    let user = ctx.user().await?;
    match call_as_member(ctx, user.id, guild, GuildCommand::Snapshot { user: user.id }).await? {
        Reply::Snapshot { guild, .. } => ok(&guild.roles),
        other => Err(unexpected(other)),
    }
}

fn check_role(body: &RoleBody) -> Result<(), ApiError> {
    if let Some(name) = &body.name {
        check_role_name(name)?;
    }
    if body.color.is_some_and(|c| c > 0xFF_FFFF) {
        return Err(ApiError::invalid_form("color: must be between 0 and 16777215"));
    }
    Ok(())
}

/// POST /guilds/{id}/roles (MANAGE_ROLES): Discord answers 200 with the role.
pub async fn create(ctx: &mut Ctx, guild: GuildId) -> ApiResult {
    let user = ctx.user().await?;
    let body: RoleBody = ctx.json_or_default().await?;
    check_role(&body)?;
    let mut role = Role::new(
        ctx.app.new_id()?,
        body.name.unwrap_or_else(|| "new role".into()),
        1,
        body.permissions.unwrap_or(Permissions::NONE).known(),
    );
    role.set_color(body.color.unwrap_or(0));
    role.hoist = body.hoist.unwrap_or(false);
    role.mentionable = body.mentionable.unwrap_or(false);
    let reply = call_as_member(ctx, user.id, guild, RoleCommand::Create { user: user.id, role }).await?;
    answer_role(ctx, guild, user.id, reply, audit_action::ROLE_CREATE).await
}

/// The role a role command answered with, recorded in the audit log as `action`.
async fn answer_role(ctx: &Ctx, guild: GuildId, user: UserId, reply: Reply, action: u16) -> ApiResult {
    match reply {
        Reply::Role(role) => {
            audit_by(ctx, guild, user, role.id, action).await?;
            ok(&role)
        }
        other => Err(unexpected(other)),
    }
}

/// PATCH /guilds/{id}/roles/{role}
pub async fn update(ctx: &mut Ctx, guild: GuildId, role_id: Snowflake) -> ApiResult {
    let user = ctx.user().await?;
    let body: RoleBody = ctx.json().await?;
    check_role(&body)?;
    let patch = RolePatch {
        name: body.name,
        permissions: body.permissions.map(Permissions::known),
        color: body.color,
        hoist: body.hoist,
        mentionable: body.mentionable,
        position: body.position,
    };
    let reply = call_as_member(ctx, user.id, guild, RoleCommand::Update { user: user.id, role_id, patch }).await?;
    answer_role(ctx, guild, user.id, reply, audit_action::ROLE_UPDATE).await
}

/// DELETE /guilds/{id}/roles/{role}
pub async fn delete(ctx: &mut Ctx, guild: GuildId, role_id: Snowflake) -> ApiResult {
    let user = ctx.user().await?;
    call_as_member(ctx, user.id, guild, RoleCommand::Delete { user: user.id, role_id }).await?;
    audit_by(ctx, guild, user.id, role_id, audit_action::ROLE_DELETE).await?;
    no_content()
}

/// PUT (`add`) or DELETE /guilds/{id}/members/{user}/roles/{role}
pub async fn member_role(ctx: &mut Ctx, guild: GuildId, target: UserId, role: Snowflake, add: bool) -> ApiResult {
    let user = ctx.user().await?;
    let change = if add { MemberChange::AddRole(role) } else { MemberChange::RemoveRole(role) };
    call_as_member(ctx, user.id, guild, MemberCommand::Update { user: user.id, target, change }).await?;
    audit_by(ctx, guild, user.id, target, audit_action::MEMBER_ROLE_UPDATE).await?;
    no_content()
}
