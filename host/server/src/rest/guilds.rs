//! Guilds, their channels and their member list.

use guildhall_core::guild::{ChannelCommand, GuildCommand, MemberCommand, Reply};
use guildhall_core::model::{audit_action, validate_name, Channel, Guild, GuildId, Member, User, CHANNEL_GUILD_TEXT};
use guildhall_core::Snowflake;
use serde_json::{json, Value};

use super::ctx::{
    actor_timeout, check_guild_quota, created, guild_handle, member_guild_handle, no_content, notify_joined, now_iso,
    ok, record_audit, require_member, unexpected, ApiResult, Ctx,
};
use super::error::ApiError;
use guildhall_api::requests::{CreateChannel, CreateGuild, UpdateGuild};
use guildhall_runtime::actors::audit::change;

fn guild_json(guild: &Guild, member_count: Option<usize>) -> Value {
    let mut v = guild.discord_json();
    if let Some(n) = member_count {
        v["approximate_member_count"] = json!(n);
    }
    v
}

/// POST /guilds: the creator becomes owner and first member; a "general" channel is made.
pub async fn create(ctx: &mut Ctx) -> ApiResult {
    let user = ctx.user().await?;
    let body: CreateGuild = ctx.json().await?;
    validate_name(&body.name).map_err(|m| ApiError::invalid_form(format!("name: {m}")))?;
    check_guild_quota(ctx, ctx.app.store.user_guilds(user.id).await?.len())?;
    let guild = Guild::new(ctx.app.new_id()?, body.name, user.id);
    let general = Channel::text(ctx.app.new_id()?, guild.id, "general");
    ctx.app.store.create_guild(guild.clone(), Member::new(user.clone(), now_iso(ctx)), vec![general]).await?;
    // Sessions of the creator subscribe, so they get GUILD_CREATE like on Discord.
    notify_joined(ctx, &user, guild.id);
    created(&guild_json(&guild, Some(1)))
}

async fn snapshot(ctx: &Ctx, user: &User, id: GuildId) -> Result<(Guild, Vec<Channel>, usize), ApiError> {
    let handle = member_guild_handle(ctx, user.id, id).await?;
    match handle.call(GuildCommand::Snapshot { user: user.id }, actor_timeout(ctx)).await? {
        Reply::Snapshot { guild, channels, member_count } => Ok((guild, channels, member_count)),
        other => Err(unexpected(other)),
    }
}

pub async fn get(ctx: &mut Ctx, id: GuildId) -> ApiResult {
    let user = ctx.user().await?;
    let (guild, _, member_count) = snapshot(ctx, &user, id).await?;
    ok(&guild_json(&guild, Some(member_count)))
}

/// PATCH /guilds/{id} {name?, moderation_fail_closed?} (owner only): GUILD_UPDATE follows.
pub async fn update(ctx: &mut Ctx, id: GuildId) -> ApiResult {
    let user = ctx.user().await?;
    let body: UpdateGuild = ctx.json().await?;
    if let Some(name) = &body.name {
        validate_name(name).map_err(|m| ApiError::invalid_form(format!("name: {m}")))?;
    }
    let (old, _, _) = snapshot(ctx, &user, id).await?;
    let command = GuildCommand::UpdateGuild {
        user: user.id,
        name: body.name,
        moderation_fail_closed: body.moderation_fail_closed,
    };
    match guild_handle(ctx, id).await?.call(command, actor_timeout(ctx)).await? {
        Reply::Guild(guild) => {
            let changes: Vec<_> = [
                change("name", json!(old.name), json!(guild.name)),
                change(
                    "moderation_fail_closed",
                    json!(old.moderation_fail_closed),
                    json!(guild.moderation_fail_closed),
                ),
            ]
            .into_iter()
            .flatten()
            .collect();
            if !changes.is_empty() {
                let mut entry = ctx.app.audit.entry(id, Some(user.id), Some(id), audit_action::GUILD_UPDATE);
                if let Some(e) = &mut entry {
                    e.changes = changes;
                }
                record_audit(ctx, entry).await?;
            }
            ok(&guild_json(&guild, None))
        }
        other => Err(unexpected(other)),
    }
}

pub async fn channels(ctx: &mut Ctx, id: GuildId) -> ApiResult {
    let user = ctx.user().await?;
    ok(&snapshot(ctx, &user, id).await?.1)
}

pub async fn create_channel(ctx: &mut Ctx, id: GuildId) -> ApiResult {
    let user = ctx.user().await?;
    let body: CreateChannel = ctx.json().await?;
    validate_name(&body.name).map_err(|m| ApiError::invalid_form(format!("name: {m}")))?;
    if body.kind != CHANNEL_GUILD_TEXT {
        return Err(ApiError::invalid_form("type: only text channels (0) are supported"));
    }
    if body.topic.as_ref().is_some_and(|t| t.chars().count() > 1024) {
        return Err(ApiError::invalid_form("topic: Must be 1024 or fewer in length."));
    }
    let channel = Channel { topic: body.topic, ..Channel::text(ctx.app.new_id()?, id, body.name) };
    let handle = member_guild_handle(ctx, user.id, id).await?;
    let max_channels = ctx.app.config.quotas.channels_per_guild;
    match handle.call(ChannelCommand::Create { user: user.id, channel, max_channels }, actor_timeout(ctx)).await? {
        Reply::Channel(c) => created(&c),
        other => Err(unexpected(other)),
    }
}

/// GET /guilds/{id}/members?limit=1..1000&after=user_id (Discord's default limit is 1).
pub async fn members(ctx: &mut Ctx, id: GuildId) -> ApiResult {
    let user = ctx.user().await?;
    let limit: usize = ctx.query_parse("limit")?.unwrap_or(1);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid_form("limit: must be between 1 and 1000"));
    }
    let after: Option<Snowflake> = ctx.query_parse("after")?;
    // Members are read from storage: the guild's actor is not needed, only membership.
    require_member(ctx, user.id, id).await?;
    ok(&ctx.app.store.members(id, after, limit).await?)
}

pub async fn leave(ctx: &mut Ctx, id: GuildId) -> ApiResult {
    let user = ctx.user().await?;
    let handle = member_guild_handle(ctx, user.id, id).await?;
    handle.call(MemberCommand::Leave { user: user.id }, actor_timeout(ctx)).await?;
    no_content()
}
