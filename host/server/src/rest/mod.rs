//! The REST API under `/api/v10`, in Discord v10 shapes.
//!
//! [`route`] matches method and path and calls a handler in [`users`], [`guilds`] or
//! [`messages`]. Handlers validate everything before changing anything: a bad request gets
//! a 4xx `{code, message}` and writes nothing.

pub mod applications;
pub mod audit;
pub mod ctx;
pub mod error;
pub mod guilds;
pub mod messages;
pub mod openapi;
pub mod plugins;
pub mod response;
pub mod roles;
pub mod users;

use std::sync::Arc;

use guildhall_core::ratelimit::Standing;
use hyper::header::HeaderValue;
use hyper::{Method, Request, StatusCode};

use crate::app::App;
use crate::limits::{Bucket, IpKey, Limited, Subject};
use ctx::{ok, snowflake, ApiResult, Ctx};
use error::{code, ApiError};
pub use response::{json_response, HttpResponse};

/// Serves one request under `/api/v10` (the prefix already removed into `path`) from
/// address `ip`: finds the caller once, counts the request against the caller's limits
/// (or the address's, without a valid token), dispatches it, and says where the route's
/// limit stands in Discord's `X-RateLimit-*` headers.
pub async fn route(app: Arc<App>, req: Request<hyper::body::Incoming>, path: &str, ip: IpKey) -> HttpResponse {
    // An address past its invalid requests is refused before it costs anything more.
    if let Some(banned) = app.limits.banned(ip) {
        return limited_response(&banned);
    }
    let method = req.method().clone();
    let (parts, body) = req.into_parts();
    // Segments are percent-decoded once, here: `%40me` is `@me`, `%F0%9F%91%8D` an emoji.
    let decoded = guildhall_api::path_segments(path);
    let segments: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let caller = match crate::auth::bearer(&parts.headers) {
        Some(token) => match crate::auth::record_for_token(&app, token).await {
            Ok(record) => record,
            Err(e) => return ApiError::from(e).into_response(),
        },
        None => None,
    };
    let subject = caller.as_ref().map_or(Subject::Ip(ip), |record| Subject::User(record.user.id));
    let bucket = bucket_of(&method, &segments);
    let response = match app.limits.rest(subject, ip, bucket) {
        Err(limited) => {
            // The body is read and dropped first (bounded in size and time): a client still
            // sending one, megabytes for a plugin upload, would see the connection reset
            // instead of this answer.
            let limit = match bucket {
                Some((Bucket::PluginUpload, _)) => app.plugins.max_component_bytes(),
                _ => app.config.rest.max_body_bytes,
            };
            let mut ctx = Ctx { app: app.clone(), headers: parts.headers, query: Vec::new(), body: Some(body), caller };
            ctx.discard_body_up_to(limit).await;
            limited_response(&limited)
        }
        // Who may not call an operation learns it first, before anything about the request.
        Ok(_) if caller.is_none() && openapi::needs_token(method.as_str(), &segments) => {
            ApiError::unauthorized().into_response()
        }
        Ok(standing) => {
            let query = guildhall_api::query_pairs(parts.uri.query().unwrap_or(""));
            let mut ctx = Ctx { app: app.clone(), headers: parts.headers, query, body: Some(body), caller };
            let mut response = dispatch(&mut ctx, &method, &segments).await.unwrap_or_else(ApiError::into_response);
            // The API description lists what `dispatch` serves (its test checks the other
            // way: every listed operation reaches a handler).
            debug_assert!(
                matches!(response.status(), StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED)
                    || openapi::is_listed(method.as_str(), &segments),
                "{method} /{} is served but not listed in openapi::OPERATIONS",
                segments.join("/")
            );
            if let Some((bucket, standing)) = standing {
                put_standing(response.headers_mut(), bucket, &standing);
            }
            response
        }
    };
    if matches!(response.status(), StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS) {
        app.limits.count_invalid(ip);
    }
    response
}

/// Discord's 429: the body's `retry_after` (seconds) and `global`, `Retry-After` in whole
/// seconds, the scope, and for a route the bucket's headers.
pub fn limited_response(limited: &Limited) -> HttpResponse {
    let body = serde_json::json!({
        "code": 0,
        "message": "You are being rate limited.",
        "retry_after": limited.retry_after_ms as f64 / 1000.0,
        "global": limited.global,
    });
    let mut response = json_response(StatusCode::TOO_MANY_REQUESTS, &body);
    let headers = response.headers_mut();
    // discord.py takes a 429 without a `Via` header for a Cloudflare ban and gives up
    // instead of waiting: Discord's own answers come through a proxy that adds one.
    headers.insert(hyper::header::VIA, HeaderValue::from_static("1.1 guildhall"));
    headers.insert(hyper::header::RETRY_AFTER, HeaderValue::from(limited.retry_after_ms.div_ceil(1000)));
    if limited.global {
        headers.insert("x-ratelimit-global", HeaderValue::from_static("true"));
        headers.insert("x-ratelimit-scope", HeaderValue::from_static("global"));
    } else {
        headers.insert("x-ratelimit-scope", HeaderValue::from_static("user"));
    }
    if let Some((bucket, standing)) = &limited.route {
        put_standing(headers, *bucket, standing);
    }
    response
}

fn put_standing(headers: &mut hyper::HeaderMap, bucket: Bucket, standing: &Standing) {
    let reset_after = standing.reset_after_ms as f64 / 1000.0;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let float = |v: f64| HeaderValue::from_str(&format!("{v:.3}")).expect("a number is a valid header");
    headers.insert("x-ratelimit-limit", HeaderValue::from(standing.limit));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(standing.remaining));
    headers.insert("x-ratelimit-reset", float(now.as_secs_f64() + reset_after));
    headers.insert("x-ratelimit-reset-after", float(reset_after));
    headers.insert("x-ratelimit-bucket", HeaderValue::from_static(bucket.name()));
}

/// The limit a route counts against, and its major parameter (the channel or guild in the
/// path; 0 for none): Discord's route buckets. Routes without one count only globally.
fn bucket_of(method: &Method, path: &[&str]) -> Option<(Bucket, u64)> {
    use Method as M;
    let id = |segment: &str| segment.parse::<u64>().unwrap_or(0);
    let bucket = match (method, path) {
        (&M::POST, ["auth", "register" | "login"]) => (Bucket::Auth, 0),
        (&M::POST, ["guilds"]) => (Bucket::GuildCreate, 0),
        (&M::POST, ["users", "@me", "channels"]) => (Bucket::DmOpen, 0),
        (&M::GET, ["invites", _]) => (Bucket::InviteLookup, 0),
        (&M::POST, ["invites", _]) => (Bucket::InviteAccept, 0),
        (&M::POST, ["channels", channel, "invites"]) => (Bucket::InviteCreate, id(channel)),
        (&M::POST, ["channels", channel, "messages"]) => (Bucket::MessageCreate, id(channel)),
        (&M::PATCH, ["channels", channel, "messages", _]) => (Bucket::MessageEdit, id(channel)),
        (&M::DELETE, ["channels", channel, "messages", _]) => (Bucket::MessageDelete, id(channel)),
        (&M::PUT | &M::DELETE, ["channels", channel, "messages", _, "reactions", _, "@me"]) => {
            (Bucket::Reactions, id(channel))
        }
        (&M::GET, ["channels", channel, "messages", ..]) => (Bucket::MessageReads, id(channel)),
        (&M::POST, ["channels", channel, "typing"]) => (Bucket::Typing, id(channel)),
        (&M::PATCH, ["channels", channel]) | (_, ["channels", channel, "permissions", _]) => {
            (Bucket::GuildManage, id(channel))
        }
        // Per user across guilds: each upload may take seconds of the compiler.
        (&M::POST, ["guilds", _, "plugins"]) => (Bucket::PluginUpload, 0),
        (&M::PATCH | &M::POST | &M::PUT | &M::DELETE, ["guilds", guild, ..]) => (Bucket::GuildManage, id(guild)),
        _ => return None,
    };
    Some(bucket)
}

async fn dispatch(ctx: &mut Ctx, method: &Method, path: &[&str]) -> ApiResult {
    use Method as M;
    match (method, path) {
        (&M::POST, ["auth", "register"]) => users::register(ctx).await,
        (&M::POST, ["auth", "login"]) => users::login(ctx).await,
        (&M::GET, ["users", "@me"]) => users::me(ctx).await,
        (&M::POST, ["applications"]) => applications::create(ctx).await,
        (&M::GET, ["applications", "@me"] | ["oauth2", "applications", "@me"]) => applications::me(ctx).await,
        (&M::PATCH, ["applications", "@me"]) => applications::update(ctx, None).await,
        (&M::PATCH, ["applications", id]) => applications::update(ctx, Some(snowflake(id)?)).await,
        (&M::POST, ["oauth2", "authorize"]) => applications::authorize(ctx).await,
        (&M::GET, ["users", "@me", "guilds"]) => users::my_guilds(ctx).await,
        (&M::DELETE, ["users", "@me", "guilds", guild]) => guilds::leave(ctx, snowflake(guild)?).await,
        (&M::POST, ["users", "@me", "channels"]) => users::open_dm(ctx).await,
        (&M::POST, ["guilds"]) => guilds::create(ctx).await,
        (&M::GET, ["guilds", guild]) => guilds::get(ctx, snowflake(guild)?).await,
        (&M::PATCH, ["guilds", guild]) => guilds::update(ctx, snowflake(guild)?).await,
        (&M::GET, ["guilds", guild, "channels"]) => guilds::channels(ctx, snowflake(guild)?).await,
        (&M::POST, ["guilds", guild, "channels"]) => guilds::create_channel(ctx, snowflake(guild)?).await,
        (&M::GET, ["guilds", guild, "members"]) => guilds::members(ctx, snowflake(guild)?).await,
        (&M::GET, ["guilds", guild, "members", user]) => roles::member(ctx, snowflake(guild)?, user).await,
        (&M::PATCH, ["guilds", guild, "members", user]) => roles::update_member(ctx, snowflake(guild)?, user).await,
        (&M::DELETE, ["guilds", guild, "members", user]) => roles::kick(ctx, snowflake(guild)?, user).await,
        (&M::PUT, ["guilds", guild, "members", user, "roles", role]) => {
            roles::member_role(ctx, snowflake(guild)?, snowflake(user)?, snowflake(role)?, true).await
        }
        (&M::DELETE, ["guilds", guild, "members", user, "roles", role]) => {
            roles::member_role(ctx, snowflake(guild)?, snowflake(user)?, snowflake(role)?, false).await
        }
        (&M::GET, ["guilds", guild, "roles"]) => roles::list(ctx, snowflake(guild)?).await,
        (&M::POST, ["guilds", guild, "roles"]) => roles::create(ctx, snowflake(guild)?).await,
        (&M::PATCH, ["guilds", guild, "roles", role]) => roles::update(ctx, snowflake(guild)?, snowflake(role)?).await,
        (&M::DELETE, ["guilds", guild, "roles", role]) => roles::delete(ctx, snowflake(guild)?, snowflake(role)?).await,
        (&M::GET, ["guilds", guild, "bans"]) => roles::bans(ctx, snowflake(guild)?).await,
        (&M::GET, ["guilds", guild, "bans", user]) => roles::ban(ctx, snowflake(guild)?, snowflake(user)?).await,
        (&M::PUT, ["guilds", guild, "bans", user]) => roles::put_ban(ctx, snowflake(guild)?, snowflake(user)?).await,
        (&M::DELETE, ["guilds", guild, "bans", user]) => {
            roles::remove_ban(ctx, snowflake(guild)?, snowflake(user)?).await
        }
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
        (&M::PATCH, ["channels", channel]) => roles::update_channel(ctx, snowflake(channel)?).await,
        (&M::PUT, ["channels", channel, "permissions", id]) => {
            roles::put_overwrite(ctx, snowflake(channel)?, snowflake(id)?).await
        }
        (&M::DELETE, ["channels", channel, "permissions", id]) => {
            roles::delete_overwrite(ctx, snowflake(channel)?, snowflake(id)?).await
        }
        (&M::POST, ["channels", channel, "invites"]) => guilds::create_invite(ctx, snowflake(channel)?).await,
        (&M::GET, ["channels", channel, "invites"]) => guilds::channel_invites(ctx, snowflake(channel)?).await,
        (&M::GET, ["guilds", guild, "invites"]) => guilds::guild_invites(ctx, snowflake(guild)?).await,
        (&M::GET, ["invites", code]) => guilds::get_invite(ctx, code).await,
        (&M::POST, ["invites", code]) => guilds::accept_invite(ctx, code).await,
        (&M::DELETE, ["invites", code]) => guilds::delete_invite(ctx, code).await,
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
        (&M::GET, ["openapi.json"]) => ok(openapi::served()),
        (_, p) if openapi::is_known_path(p) => {
            let mut response =
                ApiError::new(StatusCode::METHOD_NOT_ALLOWED, code::GENERAL, "405: Method Not Allowed").into_response();
            let allow = openapi::methods_at(p).join(", ");
            response.headers_mut().insert(hyper::header::ALLOW, HeaderValue::from_str(&allow).expect("method names"));
            Ok(response)
        }
        _ => Err(ApiError::not_found(code::GENERAL, "404: Not Found")),
    }
}
