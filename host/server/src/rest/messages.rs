//! Messages (create, history, edit, delete), typing, and channel lookup.
//!
//! Every channel goes through its actor, which checks access, persists, fans out and only
//! then answers: a guild channel through its guild's actor, a DM channel through its own
//! (found in the DM directory by channel id). The handlers load what the actors need
//! (the stored message) and turn their answers into Discord's JSON.

use guildhall_core::guild::{GuildCommand, MessageCommand, Reply};
use guildhall_core::model::{
    validate_content, Channel, ChannelId, Emoji, Message, MessageId, User, UserId, MAX_CONTENT_CHARS,
};
use guildhall_core::permissions::Permissions;
use guildhall_core::Snowflake;
use guildhall_store::HistoryQuery;
use serde_json::json;

use super::ctx::{
    actor_timeout, guild_handle_for, load_channel, no_content, now_iso, now_unix_ms, ok, snowflake, unexpected,
    ApiResult, Ctx,
};
use super::error::{code, ApiError};
use guildhall_api::requests::{CreateMessage, EditMessage};
use guildhall_runtime::actors::guild_actor::GuildRef;

/// A channel and the actor that decides about it.
struct Access {
    actor: GuildRef,
    channel: Channel,
}

/// The channel and its actor: its guild's, or for a DM its own. A stranger to the guild or
/// the DM is refused before an actor that is not running starts (the actors check too),
/// so strangers start no actors.
async fn access(ctx: &Ctx, user: &User, channel_id: ChannelId) -> Result<Access, ApiError> {
    let channel = load_channel(ctx, channel_id).await?;
    let actor = match channel.guild_id {
        Some(guild) => guild_handle_for(ctx, user.id, guild).await?,
        None if channel.recipients.iter().any(|r| r.id == user.id) => ctx.app.dms.locate(channel_id).await?,
        None => return Err(ApiError::forbidden(code::MISSING_ACCESS, "Missing Access")),
    };
    Ok(Access { actor, channel })
}

/// The channel, its actor, and what `user` may do there: 403 Missing Access if they
/// cannot view it (the actor decides).
async fn permitted(ctx: &Ctx, user: &User, channel_id: ChannelId) -> Result<(Access, Permissions), ApiError> {
    let access = access(ctx, user, channel_id).await?;
    let ask = GuildCommand::Permissions { user: user.id, channel_id: Some(channel_id) };
    match access.actor.call(ask, actor_timeout(ctx)).await? {
        Reply::Permissions(p) => Ok((access, p)),
        other => Err(unexpected(other)),
    }
}

/// The channel, if `user` may read its history (403 Missing Access / Missing Permissions).
async fn readable(ctx: &Ctx, user: &User, channel_id: ChannelId) -> Result<Channel, ApiError> {
    let (access, permissions) = permitted(ctx, user, channel_id).await?;
    if !permissions.contains(Permissions::READ_MESSAGE_HISTORY) {
        return Err(ApiError::forbidden(code::MISSING_PERMISSIONS, "Missing Permissions"));
    }
    Ok(access.channel)
}

/// A stored message as a read returns it. `blind` is a bot whose application lacks the
/// MESSAGE_CONTENT flag: it reads only its own messages, mentions and DMs, as on Discord.
fn message_response(mut m: Message, blind: Option<UserId>) -> Message {
    m.nonce = None; // Discord echoes the nonce only to the create call and its dispatch
    if blind.is_some_and(|bot| !m.shown_to_bots_without_content(bot)) {
        m.without_content();
    }
    m
}

/// The caller and, if it is a bot without the MESSAGE_CONTENT flag, its id (see
/// [`message_response`]).
pub async fn get_channel(ctx: &mut Ctx, channel_id: ChannelId) -> ApiResult {
    let user = ctx.user().await?;
    ok(&permitted(ctx, &user, channel_id).await?.0.channel)
}

fn check_content(content: Option<&str>) -> Result<String, ApiError> {
    let content = content.unwrap_or("");
    match validate_content(content) {
        Ok(()) => Ok(content.to_owned()),
        Err(_) if content.trim().is_empty() => {
            Err(ApiError::bad_request(code::EMPTY_MESSAGE, "Cannot send an empty message"))
        }
        Err(_) => Err(ApiError::invalid_form(format!("content: Must be {MAX_CONTENT_CHARS} or fewer in length."))),
    }
}

pub async fn create(ctx: &mut Ctx, channel_id: ChannelId) -> ApiResult {
    let user = ctx.user().await?;
    let body: CreateMessage = ctx.json().await?;
    let content = check_content(body.content.as_deref())?;
    let nonce = body.checked_nonce().map_err(ApiError::invalid_form)?;
    let Access { actor, channel } = access(ctx, &user, channel_id).await?;
    // The id is taken by the actor when it decides (id order = fan-out order).
    let enforce_nonce = body.enforce_nonce.unwrap_or(false);
    let command = MessageCommand::Create {
        author: user.id,
        channel_id,
        id: Snowflake::default(),
        content,
        nonce: nonce.clone(),
        enforce_nonce,
    };
    match actor.call(command, actor_timeout(ctx)).await? {
        Reply::Message(m) => ok(&m),
        // A retry: the message the first try made, as its create answered it.
        Reply::Existing { message_id, .. } => {
            let mut message = load_message(ctx, &channel, message_id).await?;
            message.nonce = nonce;
            ok(&message)
        }
        other => Err(unexpected(other)),
    }
}

/// GET /channels/{id}/messages?limit=1..100&before|after|around=id, newest first.
pub async fn list(ctx: &mut Ctx, channel_id: ChannelId) -> ApiResult {
    let (user, blind) = ctx.reader().await?;
    let limit: usize = ctx.query_parse("limit")?.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid_form("limit: must be between 1 and 100"));
    }
    let anchors = [
        ctx.query_parse::<Snowflake>("before")?.map(HistoryQuery::Before),
        ctx.query_parse::<Snowflake>("after")?.map(HistoryQuery::After),
        ctx.query_parse::<Snowflake>("around")?.map(HistoryQuery::Around),
    ];
    let mut given = anchors.into_iter().flatten();
    let query = given.next().unwrap_or(HistoryQuery::Latest);
    if given.next().is_some() {
        return Err(ApiError::invalid_form("only one of before, after and around may be given"));
    }
    let (Access { channel, .. }, permissions) = permitted(ctx, &user, channel_id).await?;
    if !permissions.contains(Permissions::READ_MESSAGE_HISTORY) {
        return ok(&[] as &[Message]); // Discord: no history, no messages (not an error)
    }
    let messages = ctx.app.reads.history(&channel, query, limit).await?;
    ok(&messages.iter().map(|m| message_response(m.clone(), blind)).collect::<Vec<_>>())
}

async fn load_message(ctx: &Ctx, channel: &Channel, id: MessageId) -> Result<Message, ApiError> {
    let found = ctx.app.reads.message(channel, id).await?;
    found.ok_or_else(|| ApiError::not_found(code::UNKNOWN_MESSAGE, "Unknown Message"))
}

/// One message, with its reactions (counted for this message only; history leaves them
/// out, see ARCHITECTURE.md).
pub async fn get(ctx: &mut Ctx, channel_id: ChannelId, id: MessageId) -> ApiResult {
    let (user, blind) = ctx.reader().await?;
    let channel = readable(ctx, &user, channel_id).await?;
    let message = message_response(load_message(ctx, &channel, id).await?, blind);
    let reactions = ctx.app.store.reactions(channel_id, id, user.id).await?;
    let mut body = serde_json::to_value(&message).map_err(|e| ApiError::unavailable(e.to_string()))?;
    if !reactions.is_empty() {
        body["reactions"] = json!(reactions);
    }
    ok(&body)
}

/// The emoji of a reaction route (the router percent-decoded it): a Unicode emoji (400
/// Unknown Emoji).
fn route_emoji(segment: &str) -> Result<Emoji, ApiError> {
    Emoji::parse(segment).map_err(|_| unknown_emoji())
}

fn unknown_emoji() -> ApiError {
    ApiError::bad_request(code::UNKNOWN_EMOJI, "Unknown Emoji")
}

/// PUT (`add`) or DELETE /channels/{id}/messages/{id}/reactions/{emoji}/@me: guild
/// channels, through the guild actor (persisted, then MESSAGE_REACTION_ADD / _REMOVE).
pub async fn react(ctx: &mut Ctx, channel_id: ChannelId, id: MessageId, emoji: &str, add: bool) -> ApiResult {
    let user = ctx.user().await?;
    let emoji = route_emoji(emoji)?;
    let (Access { actor, channel }, _) = permitted(ctx, &user, channel_id).await?;
    if channel.guild_id.is_none() {
        return Err(ApiError::forbidden(code::DM_UNSUPPORTED, "Reactions are not available in DM channels yet"));
    }
    let existing = Box::new(load_message(ctx, &channel, id).await?);
    // Adding twice or removing what is not there changes nothing and tells nobody.
    if ctx.app.store.has_reacted(channel_id, id, &emoji.name, user.id).await? == add {
        return no_content();
    }
    if add {
        // A new emoji past the message's quota is refused; one already there may be added to.
        let limit = ctx.app.config.quotas.reactions_per_message;
        let reactions = ctx.app.store.reactions(channel_id, id, user.id).await?;
        if reactions.len() >= limit && !reactions.iter().any(|r| r.emoji.name == emoji.name) {
            return Err(ApiError::quota(code::MAX_REACTIONS, "reactions", limit));
        }
    }
    let command = if add {
        MessageCommand::AddReaction { user: user.id, existing, emoji }
    } else {
        MessageCommand::RemoveReaction { user: user.id, existing, emoji }
    };
    actor.call(command, actor_timeout(ctx)).await?;
    no_content()
}

/// GET /channels/{id}/messages/{id}/reactions/{emoji}?after&limit: who reacted, by id.
pub async fn reaction_users(ctx: &mut Ctx, channel_id: ChannelId, id: MessageId, emoji: &str) -> ApiResult {
    let user = ctx.user().await?;
    let emoji = route_emoji(emoji)?;
    let limit: usize = ctx.query_parse("limit")?.unwrap_or(25);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid_form("limit: must be 1 to 100"));
    }
    let after = match ctx.query("after") {
        Some(a) => Some(snowflake(a)?),
        None => None,
    };
    let channel = readable(ctx, &user, channel_id).await?;
    load_message(ctx, &channel, id).await?;
    let ids = ctx.app.store.reaction_users(channel_id, id, &emoji.name, after, limit).await?;
    let mut users = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(record) = ctx.app.store.user(id).await? {
            users.push(record.user);
        }
    }
    ok(&users)
}

pub async fn edit(ctx: &mut Ctx, channel_id: ChannelId, id: MessageId) -> ApiResult {
    let user = ctx.user().await?;
    let body: EditMessage = ctx.json().await?;
    let content = check_content(body.content.as_deref())?;
    let (Access { actor, channel }, _) = permitted(ctx, &user, channel_id).await?;
    let existing = Box::new(load_message(ctx, &channel, id).await?);
    let command = MessageCommand::Edit { user: user.id, existing, content, edited_timestamp: now_iso(ctx) };
    match actor.call(command, actor_timeout(ctx)).await? {
        Reply::Message(m) => ok(&m),
        other => Err(unexpected(other)),
    }
}

pub async fn delete(ctx: &mut Ctx, channel_id: ChannelId, id: MessageId) -> ApiResult {
    let user = ctx.user().await?;
    let (Access { actor, channel }, _) = permitted(ctx, &user, channel_id).await?;
    let existing = Box::new(load_message(ctx, &channel, id).await?);
    actor.call(MessageCommand::Delete { user: user.id, existing }, actor_timeout(ctx)).await?;
    no_content()
}

pub async fn typing(ctx: &mut Ctx, channel_id: ChannelId) -> ApiResult {
    let user = ctx.user().await?;
    let unix_s = now_unix_ms(ctx) / 1000;
    let Access { actor, .. } = access(ctx, &user, channel_id).await?;
    actor.call(MessageCommand::Typing { user: user.id, channel_id, unix_s }, actor_timeout(ctx)).await?;
    no_content()
}
