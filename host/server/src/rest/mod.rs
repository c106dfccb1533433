//! The REST API under `/api/v10`, in Discord v10 shapes.
//!
//! [`route`] matches method and path and calls a handler in [`users`], [`guilds`] or
//! [`messages`]. Handlers validate everything before changing anything: a bad request gets
//! a 4xx `{code, message}` and writes nothing.

pub mod audit;
pub mod error;
pub mod guilds;
pub mod messages;
pub mod plugins;
pub mod users;

use std::sync::Arc;

use bytes::Bytes;
use guildhall_core::model::User;
use guildhall_core::Snowflake;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::app::App;
use error::{code, ApiError};

pub type HttpResponse = Response<Full<Bytes>>;
pub type ApiResult = Result<HttpResponse, ApiError>;

/// What a handler gets: the app, the caller's headers and query, and the body (read once).
pub struct Ctx {
    pub app: Arc<App>,
    headers: HeaderMap,
    query: String,
    body: Option<Incoming>,
}

impl Ctx {
    /// The authenticated caller, or 401.
    pub async fn user(&self) -> Result<User, ApiError> {
        let token = crate::auth::bearer(&self.headers).ok_or_else(ApiError::unauthorized)?;
        crate::auth::user_for_token(&self.app, token).await?.ok_or_else(ApiError::unauthorized)
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.split('&').find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
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
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if first.is_none() {
            return Err(ApiError::bad_request(code::INVALID_JSON, "The request body contains invalid JSON."));
        }
        match serde_json::from_slice::<T>(&bytes) {
            Ok(v) if first == Some(&b'{') => Ok(v),
            Ok(_) => Err(ApiError::invalid_form("expected a JSON object")),
            Err(e) if e.is_data() => Err(ApiError::invalid_form(e.to_string())),
            Err(_) => Err(ApiError::bad_request(code::INVALID_JSON, "The request body contains invalid JSON.")),
        }
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
        match Limited::new(body, limit).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(too_large()),
            Err(e) => Err(ApiError::bad_request(code::GENERAL, format!("could not read body: {e}"))),
        }
    }
}

pub fn json_response<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> HttpResponse {
    let bytes = serde_json::to_vec(body).expect("response bodies serialize");
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(bytes)))
        .expect("valid response")
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

/// Serves one request under `/api/v10` (the prefix already removed into `path`).
pub async fn route(app: Arc<App>, req: Request<hyper::body::Incoming>, path: &str) -> HttpResponse {
    let method = req.method().clone();
    let (parts, body) = req.into_parts();
    let mut ctx =
        Ctx { app, headers: parts.headers, query: parts.uri.query().unwrap_or("").to_owned(), body: Some(body) };
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let result = dispatch(&mut ctx, &method, &segments).await;
    result.unwrap_or_else(ApiError::into_response)
}

async fn dispatch(ctx: &mut Ctx, method: &Method, path: &[&str]) -> ApiResult {
    use Method as M;
    match (method, path) {
        (&M::POST, ["auth", "register"]) => users::register(ctx).await,
        (&M::POST, ["auth", "login"]) => users::login(ctx).await,
        (&M::GET, ["users", "@me"]) => users::me(ctx).await,
        (&M::GET, ["users", "@me", "guilds"]) => users::my_guilds(ctx).await,
        (&M::DELETE, ["users", "@me", "guilds", guild]) => guilds::leave(ctx, snowflake(guild)?).await,
        (&M::POST, ["users", "@me", "channels"]) => users::open_dm(ctx).await,
        (&M::POST, ["guilds"]) => guilds::create(ctx).await,
        (&M::GET, ["guilds", guild]) => guilds::get(ctx, snowflake(guild)?).await,
        (&M::PATCH, ["guilds", guild]) => guilds::update(ctx, snowflake(guild)?).await,
        (&M::GET, ["guilds", guild, "channels"]) => guilds::channels(ctx, snowflake(guild)?).await,
        (&M::POST, ["guilds", guild, "channels"]) => guilds::create_channel(ctx, snowflake(guild)?).await,
        (&M::GET, ["guilds", guild, "members"]) => guilds::members(ctx, snowflake(guild)?).await,
        (&M::POST, ["guilds", guild, "plugins"]) => plugins::install(ctx, snowflake(guild)?).await,
        (&M::GET, ["guilds", guild, "audit-logs"]) => audit::list(ctx, snowflake(guild)?).await,
        (&M::GET, ["guilds", guild, "plugins"]) => plugins::list(ctx, snowflake(guild)?).await,
        (&M::PATCH, ["guilds", guild, "plugins", plugin]) => {
            plugins::update(ctx, snowflake(guild)?, snowflake(plugin)?).await
        }
        (&M::DELETE, ["guilds", guild, "plugins", plugin]) => {
            plugins::remove(ctx, snowflake(guild)?, snowflake(plugin)?).await
        }
        (&M::GET, ["channels", channel]) => messages::get_channel(ctx, snowflake(channel)?).await,
        (&M::POST, ["channels", channel, "invites"]) => guilds::create_invite(ctx, snowflake(channel)?).await,
        (&M::GET, ["invites", code]) => guilds::get_invite(ctx, code).await,
        (&M::POST, ["invites", code]) => guilds::accept_invite(ctx, code).await,
        (&M::GET, ["channels", channel, "messages"]) => messages::list(ctx, snowflake(channel)?).await,
        (&M::POST, ["channels", channel, "messages"]) => messages::create(ctx, snowflake(channel)?).await,
        (&M::GET, ["channels", channel, "messages", message]) => {
            messages::get(ctx, snowflake(channel)?, snowflake(message)?).await
        }
        (&M::PATCH, ["channels", channel, "messages", message]) => {
            messages::edit(ctx, snowflake(channel)?, snowflake(message)?).await
        }
        (&M::DELETE, ["channels", channel, "messages", message]) => {
            messages::delete(ctx, snowflake(channel)?, snowflake(message)?).await
        }
        (&M::PUT, ["channels", channel, "messages", message, "reactions", emoji, "@me"]) => {
            messages::react(ctx, snowflake(channel)?, snowflake(message)?, emoji, true).await
        }
        (&M::DELETE, ["channels", channel, "messages", message, "reactions", emoji, "@me"]) => {
            messages::react(ctx, snowflake(channel)?, snowflake(message)?, emoji, false).await
        }
        (&M::GET, ["channels", channel, "messages", message, "reactions", emoji]) => {
            messages::reaction_users(ctx, snowflake(channel)?, snowflake(message)?, emoji).await
        }
        (&M::POST, ["channels", channel, "typing"]) => messages::typing(ctx, snowflake(channel)?).await,
        (&M::GET, ["gateway"]) => ok(&serde_json::json!({ "url": ctx.app.config.gateway_url() })),
        (&M::GET, ["gateway", "bot"]) => users::gateway_bot(ctx).await,
        (_, p) if is_known_path(p) => {
            Err(ApiError::new(StatusCode::METHOD_NOT_ALLOWED, code::GENERAL, "405: Method Not Allowed"))
        }
        _ => Err(ApiError::not_found(code::GENERAL, "404: Not Found")),
    }
}

fn is_known_path(path: &[&str]) -> bool {
    matches!(
        path,
        ["auth", "register" | "login"]
            | ["users", "@me"]
            | ["users", "@me", "guilds" | "channels"]
            | ["users", "@me", "guilds", _]
            | ["guilds"]
            | ["guilds", _]
            | ["guilds", _, "channels" | "members" | "plugins" | "audit-logs"]
            | ["guilds", _, "plugins", _]
            | ["channels", _]
            | ["channels", _, "invites" | "messages" | "typing"]
            | ["channels", _, "messages", _]
            | ["channels", _, "messages", _, "reactions", _]
            | ["channels", _, "messages", _, "reactions", _, "@me"]
            | ["invites", _]
            | ["gateway"]
            | ["gateway", "bot"]
    )
}
