//! Invites: made for a channel, listed per guild or channel, looked up, accepted (the
//! guild writes the membership and the use together) and revoked.

use std::collections::hash_map::{Entry, HashMap};

use guildhall_core::guild::{InviteUse, MemberCommand};
use guildhall_core::model::{Channel, ChannelId, Guild, GuildId, Invite, Member, User, UserId};
use guildhall_core::Snowflake;
use serde_json::{json, Value};

use super::ctx::{
    actor_timeout, check_guild_quota, guild_handle, guild_permissions, load_channel, notify_joined, now_iso,
    now_unix_ms, ok, require_in_channel, require_permission, ApiResult, Ctx,
};
use super::error::{code, ApiError};
use guildhall_api::requests::InviteOptions;
use guildhall_core::permissions::Permissions;

async fn invite_json(ctx: &Ctx, invite: &Invite) -> Result<Value, ApiError> {
    let guild = ctx.app.store.guild(invite.guild_id).await?;
    let channel = ctx.app.store.channel(invite.channel_id).await?;
    let inviter = ctx.app.store.user(invite.inviter_id).await?.map(|r| r.user);
    Ok(invite_object(invite, guild.as_ref(), channel.as_ref(), inviter.as_ref()))
}

/// A guild's invites as Discord's objects; the guild, its channels and each inviter read
/// once for them all.
async fn invites_json(ctx: &Ctx, guild_id: GuildId, invites: &[Invite]) -> Result<Value, ApiError> {
    let guild = ctx.app.store.guild(guild_id).await?;
    let channels = ctx.app.store.guild_channels(guild_id).await?;
    let mut inviters: HashMap<UserId, Option<User>> = HashMap::new();
    let mut out = Vec::with_capacity(invites.len());
    for invite in invites {
        let inviter = match inviters.entry(invite.inviter_id) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(slot) => slot.insert(ctx.app.store.user(invite.inviter_id).await?.map(|r| r.user)),
        };
        let channel = channels.iter().find(|c| c.id == invite.channel_id);
        out.push(invite_object(invite, guild.as_ref(), channel, inviter.as_ref()));
    }
    Ok(Value::Array(out))
}

fn invite_object(invite: &Invite, guild: Option<&Guild>, channel: Option<&Channel>, inviter: Option<&User>) -> Value {
    let guild = guild.map(|g| {
        let full = g.discord_json();
        let mut partial = json!({});
        for field in [
            "id",
            "name",
            "icon",
            "splash",
            "banner",
            "description",
            "features",
            "verification_level",
            "vanity_url_code",
            "nsfw_level",
            "nsfw",
            "premium_subscription_count",
        ] {
            partial[field] = full[field].clone();
        }
        partial
    });
    json!({
        "type": 0,
        "code": invite.code,
        "guild_id": invite.guild_id,
        "guild": guild,
        "expires_at": (invite.expires_unix_ms != 0)
            .then(|| guildhall_core::snowflake::iso8601_from_unix_ms(invite.expires_unix_ms)),
        "channel": channel.map(|c| json!({ "id": c.id, "name": c.name, "type": c.kind })),
        "inviter": inviter,
        "created_at": invite.created_at,
        "max_age": invite.max_age,
        "max_uses": invite.max_uses,
        "uses": invite.uses,
        "temporary": false,
    })
}

/// The guild's usable invites. Expired and used-up ones found on the way are deleted, so
/// that they neither count against the quota nor pile up.
async fn usable_invites(ctx: &Ctx, guild_id: GuildId) -> Result<Vec<Invite>, ApiError> {
    let now = now_unix_ms(ctx);
    let read_limit = ctx.app.config.quotas.invites_per_guild.saturating_add(STALE_INVITES_READ);
    let invites = ctx.app.store.guild_invites(guild_id, read_limit).await?;
    let (usable, stale): (Vec<Invite>, Vec<Invite>) = invites.into_iter().partition(|i| i.usable(now));
    for invite in stale {
        ctx.app.store.delete_invite(&invite.code).await?;
    }
    Ok(usable)
}

/// Invites read past the quota when a guild's are listed: room for expired and used-up
/// ones not yet deleted (every listing deletes those it reads).
const STALE_INVITES_READ: usize = 1_000;

/// GET /guilds/{id}/invites: the guild's usable invites (MANAGE_GUILD), as Discord.
pub async fn guild_invites(ctx: &mut Ctx, guild_id: GuildId) -> ApiResult {
    require_permission(ctx, guild_id, Permissions::MANAGE_GUILD).await?;
    let invites = usable_invites(ctx, guild_id).await?;
    ok(&invites_json(ctx, guild_id, &invites).await?)
}

/// GET /channels/{id}/invites: the channel's usable invites (MANAGE_CHANNELS in it).
pub async fn channel_invites(ctx: &mut Ctx, channel_id: ChannelId) -> ApiResult {
    let user = ctx.user().await?;
    let channel = load_channel(ctx, channel_id).await?;
    let Some(guild_id) = channel.guild_id else {
        return Err(ApiError::bad_request(code::GENERAL, "invites are for guild channels"));
    };
    require_in_channel(ctx, user.id, guild_id, channel_id, Permissions::MANAGE_CHANNELS).await?;
    let mut invites = usable_invites(ctx, guild_id).await?;
    invites.retain(|i| i.channel_id == channel_id);
    ok(&invites_json(ctx, guild_id, &invites).await?)
}

pub async fn create_invite(ctx: &mut Ctx, channel_id: Snowflake) -> ApiResult {
    let user = ctx.user().await?;
    let options: InviteOptions = ctx.json_or_default().await?;
    let max_age = options.max_age.unwrap_or(DEFAULT_INVITE_MAX_AGE);
    if max_age > Invite::MAX_AGE_SECONDS {
        return Err(ApiError::invalid_form(format!("max_age: must be 0 to {}", Invite::MAX_AGE_SECONDS)));
    }
    let max_uses = options.max_uses.unwrap_or(0);
    if max_uses > Invite::MAX_USES {
        return Err(ApiError::invalid_form(format!("max_uses: must be 0 to {}", Invite::MAX_USES)));
    }
    if options.temporary {
        return Err(ApiError::invalid_form("temporary: temporary membership is not supported"));
    }
    let channel = load_channel(ctx, channel_id).await?;
    let Some(guild_id) = channel.guild_id else {
        return Err(ApiError::bad_request(code::GENERAL, "invites are for guild channels"));
    };
    require_in_channel(ctx, user.id, guild_id, channel_id, Permissions::CREATE_INSTANT_INVITE).await?;
    // Two creates at once may both pass this check: the quota may be passed by the
    // creates in flight (the invite-create rate limit bounds them).
    let quota = ctx.app.config.quotas.invites_per_guild;
    if usable_invites(ctx, guild_id).await?.len() >= quota {
        return Err(ApiError::quota(code::MAX_INVITES, "invites", quota));
    }
    // Codes of 10 characters from 62 (about 59 bits, as Discord's); a collision, refused by
    // the store, draws again.
    for _ in 0..3 {
        let code = crate::auth::random_code(INVITE_CODE_CHARS);
        let now = now_unix_ms(ctx);
        let invite = Invite {
            code,
            guild_id,
            channel_id,
            inviter_id: user.id,
            created_at: guildhall_core::snowflake::iso8601_from_unix_ms(now),
            max_age,
            max_uses,
            uses: 0,
            expires_unix_ms: if max_age == 0 { 0 } else { now + u64::from(max_age) * 1000 },
        };
        match ctx.app.store.create_invite(invite.clone()).await {
            Ok(()) => return ok(&invite_json(ctx, &invite).await?),
            Err(guildhall_store::StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::unavailable("could not draw a free invite code; try again"))
}

/// Characters of an invite code.
const INVITE_CODE_CHARS: usize = 10;

/// Discord's default: an invite lasts a day.
const DEFAULT_INVITE_MAX_AGE: u32 = 86_400;

async fn load_invite(ctx: &Ctx, code_: &str) -> Result<Invite, ApiError> {
    if code_.is_empty() || code_.len() > 64 {
        return Err(ApiError::not_found(code::UNKNOWN_INVITE, "Unknown Invite"));
    }
    // An expired or used-up invite is as unknown as one never made, as on Discord.
    let found = ctx.app.store.invite(code_).await?.filter(|i| i.usable(now_unix_ms(ctx)));
    found.ok_or_else(|| ApiError::not_found(code::UNKNOWN_INVITE, "Unknown Invite"))
}

/// DELETE /invites/{code}: revokes it (MANAGE_CHANNELS in its channel, or MANAGE_GUILD);
/// answers with the invite, as Discord.
pub async fn delete_invite(ctx: &mut Ctx, code_: &str) -> ApiResult {
    let user = ctx.user().await?;
    let unknown = || ApiError::not_found(code::UNKNOWN_INVITE, "Unknown Invite");
    let invite = ctx.app.store.invite(code_).await?.ok_or_else(unknown)?;
    if !guild_permissions(ctx, user.id, invite.guild_id).await?.contains(Permissions::MANAGE_GUILD) {
        require_in_channel(ctx, user.id, invite.guild_id, invite.channel_id, Permissions::MANAGE_CHANNELS).await?;
    }
    let removed = ctx.app.store.delete_invite(code_).await?.ok_or_else(unknown)?;
    ok(&invite_json(ctx, &removed).await?)
}

pub async fn get_invite(ctx: &mut Ctx, code_: &str) -> ApiResult {
    let invite = load_invite(ctx, code_).await?;
    ok(&invite_json(ctx, &invite).await?)
}

/// POST /invites/{code}: joins the caller (GUILD_MEMBER_ADD to online members). Joining a
/// guild one is already in is not an error; it changes nothing.
pub async fn accept_invite(ctx: &mut Ctx, code_: &str) -> ApiResult {
    let user = ctx.user().await?;
    let invite = load_invite(ctx, code_).await?;
    let guilds = ctx.app.store.user_guilds(user.id).await?;
    if guilds.contains(&invite.guild_id) {
        // Already in: nothing changes, no use is taken.
        let mut body = invite_json(ctx, &invite).await?;
        body["new_member"] = json!(false);
        return ok(&body);
    }
    check_guild_quota(ctx, guilds.len())?;
    let handle = guild_handle(ctx, invite.guild_id).await?;
    // The guild decides (a ban refuses) and writes the membership with one use of the
    // invite: a refused join takes none, and two joins never both take its last one.
    let member = Member::new(user.clone(), now_iso(ctx));
    let at_unix_ms = now_unix_ms(ctx);
    let join = MemberCommand::Join { member, invite: Some(InviteUse { code: invite.code.clone(), at_unix_ms }) };
    let joined = match handle.call(join, actor_timeout(ctx)).await {
        Ok(_) => true,
        Err(guildhall_runtime::actors::guild_actor::CallError::Guild(
            guildhall_core::guild::GuildError::AlreadyMember,
        )) => false,
        Err(e) => return Err(e.into()),
    };
    if joined {
        notify_joined(ctx, &user, invite.guild_id);
    }
    // As it is now: with the use this join took.
    let invite = ctx.app.store.invite(code_).await?.unwrap_or(invite);
    let mut body = invite_json(ctx, &invite).await?;
    body["new_member"] = json!(joined);
    ok(&body)
}
