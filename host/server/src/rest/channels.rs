//! A guild channel's settings and its permission overwrites.

use guildhall_core::guild::{ChannelChange, ChannelCommand, Reply};
use guildhall_core::model::{audit_action, validate_name, ChannelId, GuildId};
use guildhall_core::Snowflake;

use super::ctx::{audit_by, call_as_member, load_channel, no_content, ok, unexpected, ApiResult, Ctx};
use super::error::{code, ApiError};
use guildhall_api::requests::{ChannelBody, OverwriteBits};

async fn guild_of(ctx: &Ctx, channel_id: ChannelId) -> Result<GuildId, ApiError> {
    let channel = load_channel(ctx, channel_id).await?;
    channel.guild_id.ok_or_else(|| ApiError::bad_request(code::DM_UNSUPPORTED, "Cannot execute action on a DM channel"))
}

async fn change_channel(ctx: &Ctx, channel_id: ChannelId, change: ChannelChange) -> Result<Reply, ApiError> {
    let user = ctx.user().await?;
    let guild = guild_of(ctx, channel_id).await?;
    let reply =
        call_as_member(ctx, user.id, guild, ChannelCommand::Update { user: user.id, channel_id, change }).await?;
    audit_by(ctx, guild, user.id, channel_id, audit_action::CHANNEL_UPDATE).await?;
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
