//! A guild's members, one at a time: reading one, changing their nickname or roles, and
//! kicking them.

use guildhall_core::guild::{BanCommand, MemberChange, MemberCommand, Reply};
use guildhall_core::model::{audit_action, GuildId, Member, UserId};

use super::ctx::{audit_by, call_as_member, guild_permissions, no_content, ok, unexpected, ApiResult, Ctx};
use super::error::{code, ApiError};
use guildhall_api::requests::MemberBody;

/// The `user` segment of a member route: an id, or `@me`.
pub fn member_target(ctx_user: UserId, segment: &str) -> Result<UserId, ApiError> {
    if segment == "@me" {
        return Ok(ctx_user);
    }
    super::ctx::snowflake(segment)
}

/// GET /guilds/{id}/members/{user}
pub async fn member(ctx: &mut Ctx, guild: GuildId, target: &str) -> ApiResult {
    let user = ctx.user().await?;
    let target = member_target(user.id, target)?;
    guild_permissions(ctx, user.id, guild).await?; // membership check
    let found = ctx.app.store.member(guild, target).await?;
    ok(&found.ok_or_else(|| ApiError::not_found(code::UNKNOWN_MEMBER, "Unknown Member"))?)
}

/// PATCH /guilds/{id}/members/{user} {roles?, nick?}
pub async fn update_member(ctx: &mut Ctx, guild: GuildId, target: &str) -> ApiResult {
    let user = ctx.user().await?;
    let target = member_target(user.id, target)?;
    let body: MemberBody = ctx.json().await?;
    let nick = body.nick.map(|n| n.filter(|n| !n.is_empty()));
    if nick.as_ref().and_then(|n| n.as_ref()).is_some_and(|n| n.chars().count() > 32) {
        return Err(ApiError::invalid_form("nick: Must be 32 or fewer in length."));
    }
    if body.roles.as_ref().is_some_and(|r| r.len() > guildhall_core::model::MAX_ROLES) {
        return Err(ApiError::invalid_form("roles: too many roles"));
    }
    let change = MemberChange::Set { roles: body.roles, nick };
    match call_as_member(ctx, user.id, guild, MemberCommand::Update { user: user.id, target, change }).await? {
        Reply::Member(member) => {
            audit_by(ctx, guild, user.id, target, audit_action::MEMBER_UPDATE).await?;
            ok::<Member>(&member)
        }
        other => Err(unexpected(other)),
    }
}

/// DELETE /guilds/{id}/members/{user}: a kick (KICK_MEMBERS, from above).
pub async fn kick(ctx: &mut Ctx, guild: GuildId, target: &str) -> ApiResult {
    let user = ctx.user().await?;
    let target = member_target(user.id, target)?;
    call_as_member(ctx, user.id, guild, BanCommand::Kick { user: user.id, target }).await?;
    audit_by(ctx, guild, user.id, target, audit_action::MEMBER_KICK).await?;
    no_content()
}
