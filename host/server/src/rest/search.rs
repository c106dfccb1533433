//! Message search in Discord's shape: a guild's messages, one channel's (a DM, or a guild
//! channel), and all of the caller's DMs. The cells find ids (this node's, or in a cluster
//! the owning indexing worker's, over the bus); the messages come back from
//! storage, each marked `hit: true`, only from channels the caller may read (the host
//! filters, whatever the index holds); a bot without MESSAGE_CONTENT finds only the messages
//! whose content it may read.

use std::collections::HashMap;
use std::sync::Arc;

use guildhall_api::search::{parse_message_search, MessageSearch};
use guildhall_core::guild::{GuildCommand, Reply};
use guildhall_core::model::{Channel, ChannelId, GuildId, Message, UserId};
use guildhall_core::Snowflake;
use guildhall_search::{CellQuery, Coverage, SearchCells, SearchError, SearchRequest, Sort};
use hyper::StatusCode;
use serde_json::{json, Value};

use super::ctx::{call_as_member, load_channel, ok, unexpected, ApiResult, Ctx};
use super::error::{code, ApiError};
use super::response::json_response;

fn search(ctx: &Ctx) -> Result<Arc<dyn SearchCells>, ApiError> {
    ctx.app.search.clone().ok_or_else(|| ApiError::unavailable("search is not available on this node"))
}

fn query(ctx: &Ctx) -> Result<MessageSearch, ApiError> {
    parse_message_search(ctx.query_pairs()).map_err(|e| ApiError::invalid_form(e.to_string()))
}

/// Discord's filters as the indexer's tags (`plugins/indexer` makes them): a list of
/// values is any of them; `has` values are each required; a `-` negates.
fn tags(q: &MessageSearch, request: &mut SearchRequest) {
    let mut any_of = |prefix: &str, values: Vec<String>| {
        if !values.is_empty() {
            request.any_of_tags.push(values.into_iter().map(|v| format!("{prefix}:{v}")).collect());
        }
    };
    let ids = |values: &[Snowflake]| values.iter().map(|id| id.0.to_string()).collect::<Vec<_>>();
    let (types_not, types): (Vec<&String>, Vec<&String>) = q.author_type.iter().partition(|t| t.starts_with('-'));
    any_of("author_type", types.into_iter().cloned().collect());
    any_of("mentions", ids(&q.mentions));
    any_of("mentions_role", ids(&q.mentions_role_id));
    any_of("replied_to_user", ids(&q.replied_to_user_id));
    any_of("replied_to_message", ids(&q.replied_to_message_id));
    any_of("link_hostname", q.link_hostname.clone());
    any_of("embed_provider", q.embed_provider.clone());
    any_of("embed_type", q.embed_type.clone());
    any_of("attachment_extension", q.attachment_extension.clone());
    any_of("attachment_filename", q.attachment_filename.clone());
    for t in types_not {
        request.none_of_tags.push(format!("author_type:{}", &t[1..]));
    }
    for has in &q.has {
        match has.strip_prefix('-') {
            Some(not) => request.none_of_tags.push(format!("has:{not}")),
            None => request.any_of_tags.push(vec![format!("has:{has}")]),
        }
    }
    for (flag, value) in [("mention_everyone", q.mention_everyone), ("pinned", q.pinned)] {
        match value {
            Some(true) => request.any_of_tags.push(vec![flag.to_owned()]),
            Some(false) => request.none_of_tags.push(flag.to_owned()),
            None => {}
        }
    }
}

fn request(q: &MessageSearch, scope: Snowflake, channels: &[Channel], only_about: Option<UserId>) -> SearchRequest {
    let mut request = SearchRequest {
        scope,
        channels: channels.iter().map(|c| c.id).collect(),
        content: q.content.clone(),
        slop: q.slop,
        authors: q.author_id.clone(),
        only_about,
        after: q.min_id,
        before: q.max_id,
        sort: match (q.by_relevance, q.ascending) {
            (true, _) => Sort::Relevance,
            (false, true) => Sort::Oldest,
            (false, false) => Sort::Newest,
        },
        offset: q.offset as usize,
        limit: q.limit as usize,
        ..SearchRequest::default()
    };
    tags(q, &mut request);
    request
}

/// The channels a search may look in: those readable, narrowed to `channel_id` if given,
/// without NSFW ones unless `include_nsfw`.
fn narrowed(q: &MessageSearch, readable: Vec<Channel>) -> Vec<Channel> {
    readable
        .into_iter()
        .filter(|c| q.channel_id.is_empty() || q.channel_id.contains(&c.id))
        .filter(|c| !c.nsfw || q.include_nsfw == Some(true))
        .collect()
}

/// Discord's code for "the index is not ready" (with a 202).
const INDEX_NOT_READY: u32 = 110000;
/// Seconds a caller is told to wait before asking again while a guild is backfilled.
const RETRY_AFTER_S: u32 = 2;

/// Discord's 202: the index cannot answer yet (the guild's recent history is not indexed,
/// or, in a cluster, its cell is being taken over by another worker).
fn not_ready(documents: u64) -> ApiResult {
    let body = json!({
        "message": "Index not yet available. Try again later",
        "code": INDEX_NOT_READY,
        "documents_indexed": documents.min(i32::MAX as u64),
        "retry_after": RETRY_AFTER_S,
    });
    Ok(json_response(StatusCode::ACCEPTED, &body))
}

/// Runs the search in its cell (here, or on its owner) and answers with the messages read
/// back from storage. `guild`: a guild search, answered once the guild's index is ready.
async fn answer(ctx: &Ctx, guild: Option<GuildId>, request: SearchRequest, channels: &[Channel]) -> ApiResult {
    let search = search(ctx)?;
    let found = match search.search(CellQuery { guild, request }).await {
        Ok(found) => found,
        Err(SearchError::NotHere(_)) => return not_ready(0),
        Err(e) => return Err(ApiError::unavailable(e.to_string())),
    };
    let (deep, hits) = match (found.coverage, found.hits) {
        (Coverage::Backfilling { documents, .. }, None) => return not_ready(documents),
        (_, None) => return not_ready(0),
        (coverage, Some(hits)) => (matches!(coverage, Coverage::Backfilling { .. }), hits),
    };
    let by_id: HashMap<ChannelId, &Channel> = channels.iter().map(|c| (c.id, c)).collect();
    // The page's messages read back at once (one storage round trip, not 25 in a row).
    let reads = hits.page.iter().filter_map(|(id, channel_id)| {
        let channel = by_id.get(channel_id)?;
        Some(ctx.app.reads.message(channel, *id))
    });
    let mut messages: Vec<Value> = Vec::with_capacity(hits.page.len());
    let mut missing = 0;
    for read in futures_util::future::join_all(reads).await {
        match read? {
            Some(message) => messages.push(json!([hit(message)])),
            None => missing += 1, // deleted since it was indexed
        }
    }
    ok(&json!({
        "total_results": hits.total.saturating_sub(missing),
        "messages": messages,
        "doing_deep_historical_index": deep,
        "threads": [],
        "members": [],
    }))
}

fn hit(mut m: Message) -> Value {
    m.nonce = None;
    let mut value = serde_json::to_value(&m).unwrap_or(Value::Null);
    value["hit"] = json!(true);
    value
}

/// `GET /guilds/{guild_id}/messages/search`.
pub async fn guild(ctx: &mut Ctx, guild_id: GuildId) -> ApiResult {
    let (user, blind) = ctx.reader().await?;
    let q = query(ctx)?;
    let readable = match call_as_member(ctx, user.id, guild_id, GuildCommand::Readable { user: user.id }).await? {
        Reply::Channels(channels) => channels,
        other => return Err(unexpected(other)),
    };
    let channels = narrowed(&q, readable);
    answer(ctx, Some(guild_id), request(&q, guild_id, &channels, blind), &channels).await
}

/// `GET /channels/{channel_id}/messages/search`: a DM the caller is in (its copy in the
/// caller's DMs), or a guild channel (the guild's search narrowed to it).
pub async fn channel(ctx: &mut Ctx, channel_id: ChannelId) -> ApiResult {
    let (user, blind) = ctx.reader().await?;
    let q = query(ctx)?;
    let channel = load_channel(ctx, channel_id).await?;
    match channel.guild_id {
        None => {
            if !channel.recipients.iter().any(|r| r.id == user.id) {
                return Err(ApiError::forbidden(code::MISSING_ACCESS, "Missing Access"));
            }
            let channels = vec![channel];
            answer(ctx, None, request(&q, user.id, &channels, None), &channels).await
        }
        Some(guild_id) => {
            let readable =
                match call_as_member(ctx, user.id, guild_id, GuildCommand::Readable { user: user.id }).await? {
                    Reply::Channels(channels) => channels,
                    other => return Err(unexpected(other)),
                };
            if !readable.iter().any(|c| c.id == channel_id) {
                return Err(ApiError::forbidden(code::MISSING_ACCESS, "Missing Access"));
            }
            let channels: Vec<Channel> = narrowed(&q, readable).into_iter().filter(|c| c.id == channel_id).collect();
            answer(ctx, Some(guild_id), request(&q, guild_id, &channels, blind), &channels).await
        }
    }
}

/// `GET /users/@me/messages/search`: every DM of the caller at once.
pub async fn my_dms(ctx: &mut Ctx) -> ApiResult {
    let (user, _) = ctx.reader().await?;
    let q = query(ctx)?;
    let dms = ctx.app.store.user_dms(user.id).await?;
    let channels: Vec<Channel> =
        dms.into_iter().filter(|c| q.channel_id.is_empty() || q.channel_id.contains(&c.id)).collect();
    answer(ctx, None, request(&q, user.id, &channels, None), &channels).await
}
