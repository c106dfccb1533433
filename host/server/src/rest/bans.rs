//! Bans: listing them, banning (which removes a member) and lifting a ban.

use guildhall_core::guild::BanCommand;
use guildhall_core::model::{audit_action, GuildId, UserId};
use guildhall_core::permissions::Permissions;
use guildhall_core::Snowflake;

use super::ctx::{audit_by, audit_reason, call_as_member, no_content, ok, require_permission, ApiResult, Ctx};
use super::error::{code, ApiError};

/// GET /guilds/{id}/bans?limit=1..1000&after=user (BAN_MEMBERS).
pub async fn bans(ctx: &mut Ctx, guild: GuildId) -> ApiResult {
    let limit: usize = ctx.query_parse("limit")?.unwrap_or(1000);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid_form("limit: must be between 1 and 1000"));
    }
    let after: Option<Snowflake> = ctx.query_parse("after")?;
    require_permission(ctx, guild, Permissions::BAN_MEMBERS).await?;
    ok(&ctx.app.store.bans(guild, after, limit).await?)
}

/// GET /guilds/{id}/bans/{user} (BAN_MEMBERS).
pub async fn ban(ctx: &mut Ctx, guild: GuildId, target: UserId) -> ApiResult {
    require_permission(ctx, guild, Permissions::BAN_MEMBERS).await?;
    let found = ctx.app.store.bans(guild, Some(Snowflake(target.0.wrapping_sub(1))), 1).await?;
    match found.into_iter().next() {
        Some(ban) if ban.user.id == target => ok(&ban),
        _ => Err(ApiError::not_found(code::UNKNOWN_BAN, "Unknown Ban")),
    }
}

/// PUT /guilds/{id}/bans/{user} (BAN_MEMBERS, from above): removes the member if they
/// are one. Deleting their recent messages (`delete_message_seconds`) is not offered.
pub async fn put_ban(ctx: &mut Ctx, guild: GuildId, target: UserId) -> ApiResult {
    let user = ctx.user().await?;
    let _ = ctx.body_bytes().await?;
    let Some(record) = ctx.app.store.user(target).await? else {
        return Err(ApiError::not_found(code::UNKNOWN_USER, "Unknown User"));
    };
    let reason = audit_reason(ctx);
    call_as_member(ctx, user.id, guild, BanCommand::Ban { user: user.id, target: record.user, reason }).await?;
    audit_by(ctx, guild, user.id, target, audit_action::MEMBER_BAN_ADD).await?;
    no_content()
}

/// DELETE /guilds/{id}/bans/{user}
pub async fn remove_ban(ctx: &mut Ctx, guild: GuildId, target: UserId) -> ApiResult {
    let user = ctx.user().await?;
    call_as_member(ctx, user.id, guild, BanCommand::Unban { user: user.id, target }).await?;
    audit_by(ctx, guild, user.id, target, audit_action::MEMBER_BAN_REMOVE).await?;
    no_content()
}
