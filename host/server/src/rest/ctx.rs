//! What every handler shares: the request context ([`Ctx`]), answers, and the helpers for
//! reaching a guild actor. Handlers depend on this module and on [`error`](super::error),
//! never on each other.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use guildhall_core::clock::Clock;
use guildhall_core::guild::{Command, GuildCommand, Reply};
use guildhall_core::model::{AuditLogEntry, Channel, ChannelId, GuildId, User, UserId};
use guildhall_core::permissions::Permissions;
use guildhall_core::Snowflake;
use guildhall_runtime::addresses::guild_ref::{GuildMsg, GuildRef};
use guildhall_runtime::addresses::session::ToUser;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{HeaderMap, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::{code, ApiError};
use super::response::{json_response, HttpResponse};
use crate::app::App;

pub type ApiResult = Result<HttpResponse, ApiError>;

/// What a handler gets: the app, the caller's headers and query, the body (read once), and
/// the caller (found once, from the token, before the rate limits).
pub struct Ctx {
    pub app: Arc<App>,
    pub(super) headers: HeaderMap,
    /// The query's parameters, decoded (`application/x-www-form-urlencoded`).
    pub(super) query: Vec<(String, String)>,
    pub(super) body: Option<Incoming>,
    pub(super) caller: Option<guildhall_core::model::UserRecord>,
}

impl Ctx {
    /// The authenticated caller, or 401.
    pub async fn user(&self) -> Result<User, ApiError> {
        self.caller.as_ref().map(|record| record.user.clone()).ok_or_else(ApiError::unauthorized)
    }

    /// The caller's whole record (a bot's application too), or 401.
    pub async fn caller(&self) -> Result<guildhall_core::model::UserRecord, ApiError> {
        self.caller.clone().ok_or_else(ApiError::unauthorized)
    }

    /// The first value of query parameter `name`, decoded.
    /// The caller, and if it is a bot whose application lacks the MESSAGE_CONTENT flag, its
    /// id (it reads only its own messages, mentions and DMs, as on Discord).
    pub async fn reader(&self) -> Result<(User, Option<UserId>), ApiError> {
        let record = self.caller().await?;
        let blind = record.application.as_ref().filter(|a| !a.reads_message_content()).map(|a| a.id);
        Ok((record.user, blind))
    }

    /// Every pair of the query, in order (list parameters repeat).
    pub fn query_pairs(&self) -> &[(String, String)] {
        &self.query
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// A query parameter parsed as `T`, or 400 naming the parameter.
    pub fn query_parse<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, ApiError> {
        match self.query(name) {
            None => Ok(None),
            Some(v) => {
                v.parse().map(Some).map_err(|_| ApiError::invalid_form(format!("{name}: invalid value \"{v}\"")))
            }
        }
    }

    /// The body as JSON object `T`: 413 over the size limit, 400 (50109) if not JSON,
    /// 400 (50035) if the wrong shape.
    pub async fn json<T: DeserializeOwned>(&mut self) -> Result<T, ApiError> {
        let bytes = self.body_bytes().await?;
        parse_json(&bytes)
    }

    /// Like [`Ctx::json`], but an empty body is `T::default()` (routes whose body is optional).
    pub async fn json_or_default<T: DeserializeOwned + Default>(&mut self) -> Result<T, ApiError> {
        let bytes = self.body_bytes().await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(T::default());
        }
        parse_json(&bytes)
    }

    /// The raw body, bounded by `rest.max_body_bytes` (413 beyond it).
    pub async fn body_bytes(&mut self) -> Result<Bytes, ApiError> {
        self.body_bytes_up_to(self.app.config.rest.max_body_bytes).await
    }

    pub fn content_type(&self) -> Option<&str> {
        let value = self.headers.get(hyper::header::CONTENT_TYPE)?.to_str().ok()?;
        Some(value.split(';').next().unwrap_or("").trim())
    }

    /// The raw body, bounded by `limit` (413 beyond it).
    pub async fn body_bytes_up_to(&mut self, limit: usize) -> Result<Bytes, ApiError> {
        let too_large =
            || ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, code::REQUEST_TOO_LARGE, "Request entity too large");
        let declared =
            self.headers.get(hyper::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let Some(body) = self.body.take() else { return Ok(Bytes::new()) };
        let timeout = Duration::from_millis(self.app.config.rest.body_timeout_ms);
        let Ok(collected) = tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await else {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                code::GENERAL,
                "the request body did not arrive in time",
            ));
        };
        match collected {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(too_large()),
            Err(e) => Err(ApiError::bad_request(code::GENERAL, format!("could not read body: {e}"))),
        }
    }
}

impl Ctx {
    /// Reads and drops the request body, at most `limit` bytes and within the body timeout
    /// (nothing if it declares more): a refusal answered while the client is still sending
    /// would otherwise be lost, as closing a connection with unread data resets it.
    pub async fn discard_body_up_to(&mut self, limit: usize) {
        let declared =
            self.headers.get(hyper::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return;
        }
        let Some(mut body) = self.body.take() else { return };
        let timeout = Duration::from_millis(self.app.config.rest.body_timeout_ms);
        let drain = async {
            let mut read = 0;
            while let Some(Ok(frame)) = body.frame().await {
                read += frame.data_ref().map_or(0, Bytes::len);
                if read > limit {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(timeout, drain).await;
    }
}

/// A JSON object body as `T`: 400 (50109) if not JSON, 400 (50035) if the wrong shape.
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    guildhall_api::parse_json(bytes).map_err(|refused| match refused {
        guildhall_api::BodyError::NotJson => {
            ApiError::bad_request(code::INVALID_JSON, "The request body contains invalid JSON.")
        }
        guildhall_api::BodyError::Shape(what) => ApiError::invalid_form(what),
    })
}

pub fn ok<T: Serialize + ?Sized>(body: &T) -> ApiResult {
    Ok(json_response(StatusCode::OK, body))
}

pub fn created<T: Serialize + ?Sized>(body: &T) -> ApiResult {
    Ok(json_response(StatusCode::CREATED, body))
}

pub fn no_content() -> ApiResult {
    Ok(Response::builder().status(StatusCode::NO_CONTENT).body(Full::new(Bytes::new())).expect("valid response"))
}

/// A snowflake from a path segment (400 if it is not one).
pub fn snowflake(segment: &str) -> Result<Snowflake, ApiError> {
    segment.parse().map_err(|_| ApiError::invalid_form(format!("Value \"{segment}\" is not snowflake.")))
}

// ---- reaching the guild actors ----

/// Now, on the process's clock, as Discord's ISO 8601 timestamp.
pub fn now_iso(ctx: &Ctx) -> String {
    ctx.app.clock.iso_now()
}

/// Now, on the process's clock, in Unix milliseconds.
pub fn now_unix_ms(ctx: &Ctx) -> u64 {
    ctx.app.clock.unix_ms()
}

pub fn actor_timeout(ctx: &Ctx) -> Duration {
    Duration::from_millis(ctx.app.config.rest.actor_timeout_ms)
}

pub async fn guild_handle(ctx: &Ctx, id: GuildId) -> Result<GuildRef, ApiError> {
    Ok(ctx.app.directory.locate(id).await?)
}

pub fn unexpected(reply: Reply) -> ApiError {
    tracing::error!(?reply, "guild actor answered with an unexpected reply");
    ApiError::new(hyper::StatusCode::INTERNAL_SERVER_ERROR, code::GENERAL, "500: Internal Server Error")
}

/// The channel, or 404 Unknown Channel.
pub async fn load_channel(ctx: &Ctx, channel_id: ChannelId) -> Result<Channel, ApiError> {
    let channel = ctx.app.store.channel(channel_id).await?;
    channel.ok_or_else(|| ApiError::not_found(code::UNKNOWN_CHANNEL, "Unknown Channel"))
}

/// 403 Missing Access unless `user` is a member (404 Unknown Guild if there is none), from
/// storage: a stranger's request never starts (loads the whole member list of) a guild's
/// actor.
pub async fn require_member(ctx: &Ctx, user: UserId, guild_id: GuildId) -> Result<(), ApiError> {
    if ctx.app.store.member(guild_id, user).await?.is_some() {
        return Ok(());
    }
    match ctx.app.store.guild(guild_id).await? {
        Some(_) => Err(ApiError::forbidden(code::MISSING_ACCESS, "Missing Access")),
        None => Err(ApiError::not_found(code::UNKNOWN_GUILD, "Unknown Guild")),
    }
}

/// The guild's actor, for a request of `user`: a member ([`require_member`] first).
pub async fn member_guild_handle(ctx: &Ctx, user: UserId, guild_id: GuildId) -> Result<GuildRef, ApiError> {
    require_member(ctx, user, guild_id).await?;
    guild_handle(ctx, guild_id).await
}

/// The guild's actor, for a request of `user`, who may be a stranger: a running actor
/// answers it (and refuses a stranger itself); one not running is started only for a
/// member ([`require_member`], from storage), so strangers start no actors.
pub async fn guild_handle_for(ctx: &Ctx, user: UserId, guild_id: GuildId) -> Result<GuildRef, ApiError> {
    if !ctx.app.directory.is_running_here(guild_id) {
        require_member(ctx, user, guild_id).await?;
    }
    guild_handle(ctx, guild_id).await
}

/// What `user` may do in the guild (403 Missing Access if not a member).
pub async fn guild_permissions(ctx: &Ctx, user: UserId, guild_id: GuildId) -> Result<Permissions, ApiError> {
    let handle = member_guild_handle(ctx, user, guild_id).await?;
    match handle.call(GuildCommand::Permissions { user, channel_id: None }, actor_timeout(ctx)).await? {
        Reply::Permissions(p) => Ok(p),
        other => Err(unexpected(other)),
    }
}

/// The caller, if they have `need` in the guild (403 Missing Permissions otherwise).
pub async fn require_permission(ctx: &Ctx, guild_id: GuildId, need: Permissions) -> Result<UserId, ApiError> {
    let user = ctx.user().await?;
    if guild_permissions(ctx, user.id, guild_id).await?.contains(need) {
        Ok(user.id)
    } else {
        Err(ApiError::forbidden(code::MISSING_PERMISSIONS, "Missing Permissions"))
    }
}

/// Ok if `user` has `need` in the channel (403 Missing Access if they cannot view it,
/// Missing Permissions if they lack `need`).
pub async fn require_in_channel(
    ctx: &Ctx,
    user: UserId,
    guild_id: GuildId,
    channel_id: ChannelId,
    need: Permissions,
) -> Result<(), ApiError> {
    let handle = guild_handle_for(ctx, user, guild_id).await?;
    match handle.call(GuildCommand::Permissions { user, channel_id: Some(channel_id) }, actor_timeout(ctx)).await? {
        Reply::Permissions(p) if p.contains(need) => Ok(()),
        Reply::Permissions(_) => Err(ApiError::forbidden(code::MISSING_PERMISSIONS, "Missing Permissions")),
        other => Err(unexpected(other)),
    }
}

/// Has the guild actor record `entry` (store it, tell the owner).
pub async fn record_audit(ctx: &Ctx, entry: Option<AuditLogEntry>) -> Result<(), ApiError> {
    if let Some(entry) = entry {
        guild_handle(ctx, entry.guild_id).await?.send(GuildMsg::Audit(entry)).await;
    }
    Ok(())
}

// ---- what handlers of several routes do alike ----

/// The reason an audit log entry carries (Discord's `X-Audit-Log-Reason`, percent-encoded,
/// at most 512 characters).
pub fn audit_reason(ctx: &Ctx) -> Option<String> {
    let raw = ctx.headers.get("x-audit-log-reason")?.to_str().ok()?;
    let decoded = percent_encoding::percent_decode_str(raw).decode_utf8().ok()?;
    Some(decoded.chars().take(512).collect())
}

pub async fn audit_by(ctx: &Ctx, guild: GuildId, user: UserId, target: Snowflake, action: u16) -> Result<(), ApiError> {
    let mut entry = ctx.app.audit.entry(guild, Some(user), Some(target), action);
    if let Some(e) = &mut entry {
        e.reason = audit_reason(ctx);
    }
    record_audit(ctx, entry).await
}

/// `command` of `user` to the guild's actor, which a stranger never starts (403 first).
pub async fn call_as_member(
    ctx: &Ctx,
    user: UserId,
    guild: GuildId,
    command: impl Into<Command>,
) -> Result<Reply, ApiError> {
    Ok(member_guild_handle(ctx, user, guild).await?.call(command, actor_timeout(ctx)).await?)
}

/// 400 (30001) for a user in `quotas.guilds_per_user` guilds already. Checked before the
/// write, so two joins at once can pass it together (the guild_create and invite_accept
/// rate limits bound by how much).
pub fn check_guild_quota(ctx: &Ctx, guilds_now: usize) -> Result<(), ApiError> {
    let limit = ctx.app.config.quotas.guilds_per_user;
    if guilds_now >= limit {
        return Err(ApiError::quota(code::MAX_GUILDS, "guilds", limit));
    }
    Ok(())
}

pub fn notify_joined(ctx: &Ctx, user: &User, guild: GuildId) {
    ctx.app.router.to_user(user.id, &ToUser::JoinGuild(guild));
}
