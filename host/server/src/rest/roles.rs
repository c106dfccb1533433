//! Roles, member roles and nicknames, kicks and bans, and channel settings with their
//! permission overwrites, as Discord's routes. The guild actor decides (permissions, the
//! role hierarchy); these handlers parse, ask it, and record the audit log.

use guildhall_core::guild::{
    BanCommand, ChannelChange, ChannelCommand, Command, GuildCommand, MemberChange, MemberCommand, Reply, RoleCommand,
    RolePatch,
};
use guildhall_core::model::{audit_action, validate_name, ChannelId, GuildId, Member, Role, UserId};
use guildhall_core::permissions::Permissions;
use guildhall_core::Snowflake;

use super::ctx::{
    actor_timeout, guild_permissions, load_channel, member_guild_handle, no_content, ok, record_audit,
    require_permission, unexpected, ApiResult, Ctx,
};
use super::error::{code, ApiError};
use guildhall_api::requests::{ChannelBody, MemberBody, OverwriteBits, RoleBody};

/// Discord's roles: at most 100 characters of name.
fn check_role_name(name: &str) -> Result<(), ApiError> {
    validate_name(name).map_err(|m| ApiError::invalid_form(format!("name: {m}")))
}

/// The reason an audit log entry carries (Discord's `X-Audit-Log-Reason`, percent-encoded,
/// at most 512 characters).
fn audit_reason(ctx: &Ctx) -> Option<String> {
    let raw = ctx.headers.get("x-audit-log-reason")?.to_str().ok()?;
    let decoded = percent_encoding::percent_decode_str(raw).decode_utf8().ok()?;
    Some(decoded.chars().take(512).collect())
}

async fn audit(ctx: &Ctx, guild: GuildId, user: UserId, target: Snowflake, action: u16) -> Result<(), ApiError> {
    let mut entry = ctx.app.audit.entry(guild, Some(user), Some(target), action);
    if let Some(e) = &mut entry {
        e.reason = audit_reason(ctx);
    }
    record_audit(ctx, entry).await
}

/// `command` of `user` to the guild's actor, which a stranger never starts (403 first).
async fn call(ctx: &Ctx, user: UserId, guild: GuildId, command: impl Into<Command>) -> Result<Reply, ApiError> {
    Ok(member_guild_handle(ctx, user, guild).await?.call(command, actor_timeout(ctx)).await?)
}

/// GET /guilds/{id}/roles (members).
pub async fn list(ctx: &mut Ctx, guild: GuildId) -> ApiResult {
    let user = ctx.user().await?;
    match call(ctx, user.id, guild, GuildCommand::Snapshot { user: user.id }).await? {
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
    let reply = call(ctx, user.id, guild, RoleCommand::Create { user: user.id, role }).await?;
    answer_role(ctx, guild, user.id, reply, audit_action::ROLE_CREATE).await
}

/// The role a role command answered with, recorded in the audit log as `action`.
async fn answer_role(ctx: &Ctx, guild: GuildId, user: UserId, reply: Reply, action: u16) -> ApiResult {
    match reply {
        Reply::Role(role) => {
            audit(ctx, guild, user, role.id, action).await?;
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
    let reply = call(ctx, user.id, guild, RoleCommand::Update { user: user.id, role_id, patch }).await?;
    answer_role(ctx, guild, user.id, reply, audit_action::ROLE_UPDATE).await
}

/// DELETE /guilds/{id}/roles/{role}
pub async fn delete(ctx: &mut Ctx, guild: GuildId, role_id: Snowflake) -> ApiResult {
    let user = ctx.user().await?;
    call(ctx, user.id, guild, RoleCommand::Delete { user: user.id, role_id }).await?;
    audit(ctx, guild, user.id, role_id, audit_action::ROLE_DELETE).await?;
    no_content()
}

/// PUT (`add`) or DELETE /guilds/{id}/members/{user}/roles/{role}
pub async fn member_role(ctx: &mut Ctx, guild: GuildId, target: UserId, role: Snowflake, add: bool) -> ApiResult {
    let user = ctx.user().await?;
    let change = if add { MemberChange::AddRole(role) } else { MemberChange::RemoveRole(role) };
    call(ctx, user.id, guild, MemberCommand::Update { user: user.id, target, change }).await?;
    audit(ctx, guild, user.id, target, audit_action::MEMBER_ROLE_UPDATE).await?;
    no_content()
}

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
    match call(ctx, user.id, guild, MemberCommand::Update { user: user.id, target, change }).await? {
        Reply::Member(member) => {
            audit(ctx, guild, user.id, target, audit_action::MEMBER_UPDATE).await?;
            ok::<Member>(&member)
        }
        other => Err(unexpected(other)),
    }
}

/// DELETE /guilds/{id}/members/{user}: a kick (KICK_MEMBERS, from above).
pub async fn kick(ctx: &mut Ctx, guild: GuildId, target: &str) -> ApiResult {
    let user = ctx.user().await?;
    let target = member_target(user.id, target)?;
    call(ctx, user.id, guild, BanCommand::Kick { user: user.id, target }).await?;
    audit(ctx, guild, user.id, target, audit_action::MEMBER_KICK).await?;
    no_content()
}

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
    call(ctx, user.id, guild, BanCommand::Ban { user: user.id, target: record.user, reason }).await?;
    audit(ctx, guild, user.id, target, audit_action::MEMBER_BAN_ADD).await?;
    no_content()
}

/// DELETE /guilds/{id}/bans/{user}
pub async fn remove_ban(ctx: &mut Ctx, guild: GuildId, target: UserId) -> ApiResult {
    let user = ctx.user().await?;
    call(ctx, user.id, guild, BanCommand::Unban { user: user.id, target }).await?;
    audit(ctx, guild, user.id, target, audit_action::MEMBER_BAN_REMOVE).await?;
    no_content()
}

async fn guild_of(ctx: &Ctx, channel_id: ChannelId) -> Result<GuildId, ApiError> {
    let channel = load_channel(ctx, channel_id).await?;
    channel.guild_id.ok_or_else(|| ApiError::bad_request(code::DM_UNSUPPORTED, "Cannot execute action on a DM channel"))
}

async fn change_channel(ctx: &Ctx, channel_id: ChannelId, change: ChannelChange) -> Result<Reply, ApiError> {
    let user = ctx.user().await?;
    let guild = guild_of(ctx, channel_id).await?;
    let reply = call(ctx, user.id, guild, ChannelCommand::Update { user: user.id, channel_id, change }).await?;
    audit(ctx, guild, user.id, channel_id, audit_action::CHANNEL_UPDATE).await?;
    Ok(reply)
}

/// PATCH /channels/{id} {name?, topic?, nsfw?, permission_overwrites?}
pub async fn update_channel(ctx: &mut Ctx, channel_id: ChannelId) -> ApiResult {
    let body: ChannelBody = ctx.json().await?;
    if let Some(name) = &body.name {
        validate_name(name).map_err(|m| ApiError::invalid_form(format!("name: {m}")))?;
    }
    if body.topic.as_ref().and_then(|t| t.as_ref()).is_some_and(|t| t.chars().count() > 1024) {
        return Err(ApiError::invalid_form("topic: Must be 1024 or fewer in length."));
    }
    let permission_overwrites =
        body.permission_overwrites.map(|list| list.into_iter().map(|o| o.bits.into_overwrite(o.id)).collect());
    let change = ChannelChange::Edit { name: body.name, topic: body.topic, nsfw: body.nsfw, permission_overwrites };
    match change_channel(ctx, channel_id, change).await? {
        Reply::Channel(channel) => ok(&channel),
        other => Err(unexpected(other)),
    }
}

/// PUT /channels/{id}/permissions/{overwrite} {type, allow?, deny?}
pub async fn put_overwrite(ctx: &mut Ctx, channel_id: ChannelId, id: Snowflake) -> ApiResult {
    let overwrite = ctx.json::<OverwriteBits>().await?.into_overwrite(id);
    change_channel(ctx, channel_id, ChannelChange::PutOverwrite(overwrite)).await?;
    no_content()
}

/// DELETE /channels/{id}/permissions/{overwrite}
pub async fn delete_overwrite(ctx: &mut Ctx, channel_id: ChannelId, id: Snowflake) -> ApiResult {
    change_channel(ctx, channel_id, ChannelChange::DeleteOverwrite(id)).await?;
    no_content()
}
