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
pub mod plugins;
pub mod response;
pub mod roles;
pub mod users;

use std::sync::Arc;

use hyper::{Method, Request, StatusCode};

use crate::app::App;
use ctx::{ok, snowflake, ApiResult, Ctx};
use error::{code, ApiError};
pub use response::{json_response, HttpResponse};

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
        (&M::DELETE, ["guilds", guild, "members", user]) => roles::kick(ctx, snowflake(guild)?, snowflake(user)?).await,
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
            | ["applications"]
            | ["applications", _]
            | ["oauth2", "applications", "@me"]
            | ["oauth2", "authorize"]
            | ["users", "@me"]
            | ["users", "@me", "guilds" | "channels"]
            | ["users", "@me", "guilds", _]
            | ["guilds"]
            | ["guilds", _]
            | ["guilds", _, "channels" | "members" | "plugins" | "audit-logs" | "roles" | "bans"]
            | ["guilds", _, "plugins" | "members" | "roles" | "bans", _]
            | ["guilds", _, "members", _, "roles", _]
            | ["channels", _, "permissions", _]
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
