//! Every REST route, once: method and path, handler, rate-limit bucket, who may call it,
//! its query, body and answer. The router ([`super::route_request`]) finds a request's row
//! here, the limiter counts it against the row's bucket, and the OpenAPI description
//! ([`super::openapi`]) is made from these rows; nothing else lists routes.
//!
//! A new route is one row. Its handler reads the path's parameters by the names the
//! template gives them (`p.id("guild_id")?`, `p.text("code")`).

use guildhall_api::requests;
use guildhall_core::model::{Ban, Channel, Member, Message, Role, User};
use serde_json::json;

use super::ctx::ok;
use super::route::{handler, route, Query, Route, Verb};
use super::schemas::{
    application, audit_log, current_user, description, gateway, gateway_bot, guild, invite, invites, list_of, location,
    of, partial_guilds, plugin, plugins, search_results, session,
};
use super::{applications, audit, bans, channels, guilds, invites as invite_routes, members, messages, openapi};
use super::{plugins as plugin_routes, roles, search, users};
use crate::limits::Bucket::{self, *};
use Verb::{Delete, Get, Patch, Post, Put};

const LIMIT_100: (&str, Query) = ("limit", Query::Int(1, 100));
/// Discord's message search parameters (`guildhall_api::search` checks them).
const SEARCH: &[(&str, Query)] = {
    use guildhall_api::search as s;
    &[
        ("content", Query::Text(s::MAX_CONTENT_CHARS as u32)),
        ("slop", Query::Int(0, s::MAX_SLOP)),
        ("author_id", Query::Ids(s::MAX_IDS as u32)),
        ("author_type", Query::ManyOf(s::AUTHOR_TYPES)),
        ("mentions", Query::Ids(s::MAX_IDS as u32)),
        ("mentions_role_id", Query::Ids(s::MAX_IDS as u32)),
        ("replied_to_user_id", Query::Ids(s::MAX_IDS as u32)),
        ("replied_to_message_id", Query::Ids(s::MAX_IDS as u32)),
        ("mention_everyone", Query::Bool),
        ("min_id", Query::Id),
        ("max_id", Query::Id),
        ("limit", Query::Int(1, s::MAX_LIMIT)),
        ("offset", Query::Int(0, s::MAX_OFFSET)),
        ("has", Query::ManyOf(s::HAS)),
        ("link_hostname", Query::Texts(s::MAX_TEXTS as u32, s::MAX_TEXT_CHARS as u32)),
        ("embed_provider", Query::Texts(s::MAX_TEXTS as u32, s::MAX_TEXT_CHARS as u32)),
        ("embed_type", Query::ManyOf(s::EMBED_TYPES)),
        ("attachment_extension", Query::Texts(s::MAX_TEXTS as u32, s::MAX_TEXT_CHARS as u32)),
        ("attachment_filename", Query::Texts(s::MAX_TEXTS as u32, s::MAX_TEXT_CHARS as u32)),
        ("pinned", Query::Bool),
        ("include_nsfw", Query::Bool),
        ("channel_id", Query::Ids(s::MAX_CHANNEL_IDS as u32)),
        ("sort_by", Query::OneOf(s::SORT_BY)),
        ("sort_order", Query::OneOf(s::SORT_ORDER)),
    ]
};
const MEMBER_PAGE: &[(&str, Query)] = &[("limit", Query::Int(1, 1000)), ("after", Query::Id)];

/// Guild management (settings, channels, roles, members, bans, plugins) counts per guild.
const MANAGE: Bucket = GuildManage;

pub static ROUTES: &[Route] = &[
    // ---- accounts, applications, the gateway ----
    route(
        Post,
        "/auth/register",
        Auth,
        handler!(|c, p| users::register(c).await),
        "register",
        "Create an account and get its token",
    )
    .public()
    .json(of::<requests::Credentials>)
    .created(session),
    route(Post, "/auth/login", Auth, handler!(|c, p| users::login(c).await), "login", "Get a token for an account")
        .public()
        .json(of::<requests::Credentials>)
        .ok(session),
    route(Get, "/users/@me", Reads, handler!(|c, p| users::me(c).await), "get_my_user", "The caller's user")
        .ok(current_user),
    route(
        Post,
        "/applications",
        Writes,
        handler!(|c, p| applications::create(c).await),
        "create_application",
        "Create a bot application (with its bot user and token)",
    )
    .json(of::<requests::CreateApplication>)
    .created(application),
    route(
        Get,
        "/applications/@me",
        Reads,
        handler!(|c, p| applications::me(c).await),
        "get_my_application",
        "The bot's application",
    )
    .ok(application),
    route(
        Get,
        "/oauth2/applications/@me",
        Reads,
        handler!(|c, p| applications::me(c).await),
        "get_my_oauth2_application",
        "The bot's application",
    )
    .ok(application),
    route(
        Patch,
        "/applications/@me",
        Writes,
        handler!(|c, p| applications::update(c, None).await),
        "update_my_application",
        "Change the bot's application",
    )
    .json(of::<requests::UpdateApplication>)
    .ok(application),
    route(
        Patch,
        "/applications/{application_id}",
        Writes,
        handler!(|c, p| applications::update(c, Some(p.id("application_id")?)).await),
        "update_application",
        "Change an application one owns",
    )
    .json(of::<requests::UpdateApplication>)
    .ok(application),
    route(
        Post,
        "/oauth2/authorize",
        Writes,
        handler!(|c, p| applications::authorize(c).await),
        "authorize_bot",
        "Add a bot to a guild one manages",
    )
    .query(&[("client_id", Query::RequiredId), ("scope", Query::Matching("(^|[ ,])bot([ ,]|$)"))])
    .json(of::<requests::Authorize>)
    .ok(location),
    route(
        Get,
        "/users/@me/guilds",
        Reads,
        handler!(|c, p| users::my_guilds(c).await),
        "list_my_guilds",
        "The caller's guilds",
    )
    .ok(partial_guilds),
    route(
        Delete,
        "/users/@me/guilds/{guild_id}",
        Writes,
        handler!(|c, p| guilds::leave(c, p.id("guild_id")?).await),
        "leave_guild",
        "Leave a guild",
    ),
    route(
        Post,
        "/users/@me/channels",
        DmOpen,
        handler!(|c, p| users::open_dm(c).await),
        "open_dm",
        "The DM channel with a user",
    )
    .json(of::<requests::OpenDm>)
    .ok(of::<Channel>),
    route(
        Get,
        "/gateway",
        Reads,
        handler!(|c, p| ok(&json!({ "url": c.app.config.gateway_url() }))),
        "get_gateway",
        "The gateway's URL",
    )
    .public()
    .ok(gateway),
    route(
        Get,
        "/gateway/bot",
        Reads,
        handler!(|c, p| users::gateway_bot(c).await),
        "get_gateway_bot",
        "The gateway for a bot",
    )
    .ok(gateway_bot),
    route(Get, "/openapi.json", Reads, handler!(|c, p| ok(openapi::served(ROUTES))), "get_openapi", "This description")
        .public()
        .ok(description),
    // ---- guilds ----
    route(Post, "/guilds", GuildCreate, handler!(|c, p| guilds::create(c).await), "create_guild", "Create a guild")
        .json(of::<requests::CreateGuild>)
        .created(guild),
    route(
        Get,
        "/guilds/{guild_id}",
        Reads,
        handler!(|c, p| guilds::get(c, p.id("guild_id")?).await),
        "get_guild",
        "A guild one is a member of",
    )
    .ok(guild),
    route(
        Patch,
        "/guilds/{guild_id}",
        MANAGE,
        handler!(|c, p| guilds::update(c, p.id("guild_id")?).await),
        "update_guild",
        "Change a guild (its owner)",
    )
    .json(of::<requests::UpdateGuild>)
    .ok(guild),
    route(
        Get,
        "/guilds/{guild_id}/channels",
        Reads,
        handler!(|c, p| guilds::channels(c, p.id("guild_id")?).await),
        "list_guild_channels",
        "A guild's channels",
    )
    .ok(list_of::<Channel>),
    route(
        Post,
        "/guilds/{guild_id}/channels",
        MANAGE,
        handler!(|c, p| guilds::create_channel(c, p.id("guild_id")?).await),
        "create_guild_channel",
        "Create a channel",
    )
    .json(of::<requests::CreateChannel>)
    .created(of::<Channel>),
    // ---- members ----
    route(
        Get,
        "/guilds/{guild_id}/members",
        Reads,
        handler!(|c, p| guilds::members(c, p.id("guild_id")?).await),
        "list_guild_members",
        "A guild's members by user id",
    )
    .query(MEMBER_PAGE)
    .ok(list_of::<Member>),
    route(
        Get,
        "/guilds/{guild_id}/members/{user_id}",
        Reads,
        handler!(|c, p| members::member(c, p.id("guild_id")?, p.text("user_id")).await),
        "get_guild_member",
        "One member (or @me)",
    )
    .ok(of::<Member>),
    route(
        Patch,
        "/guilds/{guild_id}/members/{user_id}",
        MANAGE,
        handler!(|c, p| members::update_member(c, p.id("guild_id")?, p.text("user_id")).await),
        "update_guild_member",
        "Change a member's roles or nick",
    )
    .json(of::<requests::MemberBody>)
    .ok(of::<Member>),
    route(
        Delete,
        "/guilds/{guild_id}/members/{user_id}",
        MANAGE,
        handler!(|c, p| members::kick(c, p.id("guild_id")?, p.text("user_id")).await),
        "kick_member",
        "Kick a member",
    ),
    route(
        Put,
        "/guilds/{guild_id}/members/{user_id}/roles/{role_id}",
        MANAGE,
        handler!(|c, p| roles::member_role(c, p.id("guild_id")?, p.id("user_id")?, p.id("role_id")?, true).await),
        "add_member_role",
        "Give a member a role",
    ),
    route(
        Delete,
        "/guilds/{guild_id}/members/{user_id}/roles/{role_id}",
        MANAGE,
        handler!(|c, p| roles::member_role(c, p.id("guild_id")?, p.id("user_id")?, p.id("role_id")?, false).await),
        "remove_member_role",
        "Take a role back",
    ),
    // ---- roles ----
    route(
        Get,
        "/guilds/{guild_id}/roles",
        Reads,
        handler!(|c, p| roles::list(c, p.id("guild_id")?).await),
        "list_roles",
        "A guild's roles",
    )
    .ok(list_of::<Role>),
    route(
        Post,
        "/guilds/{guild_id}/roles",
        MANAGE,
        handler!(|c, p| roles::create(c, p.id("guild_id")?).await),
        "create_role",
        "Create a role",
    )
    .optional_json(of::<requests::RoleBody>)
    .ok(of::<Role>),
    route(
        Patch,
        "/guilds/{guild_id}/roles/{role_id}",
        MANAGE,
        handler!(|c, p| roles::update(c, p.id("guild_id")?, p.id("role_id")?).await),
        "update_role",
        "Change a role",
    )
    .json(of::<requests::RoleBody>)
    .ok(of::<Role>),
    route(
        Delete,
        "/guilds/{guild_id}/roles/{role_id}",
        MANAGE,
        handler!(|c, p| roles::delete(c, p.id("guild_id")?, p.id("role_id")?).await),
        "delete_role",
        "Delete a role",
    ),
    // ---- bans ----
    route(
        Get,
        "/guilds/{guild_id}/bans",
        Reads,
        handler!(|c, p| bans::bans(c, p.id("guild_id")?).await),
        "list_bans",
        "A guild's bans by user id",
    )
    .query(MEMBER_PAGE)
    .ok(list_of::<Ban>),
    route(
        Get,
        "/guilds/{guild_id}/bans/{user_id}",
        Reads,
        handler!(|c, p| bans::ban(c, p.id("guild_id")?, p.id("user_id")?).await),
        "get_ban",
        "One ban",
    )
    .ok(of::<Ban>),
    route(
        Put,
        "/guilds/{guild_id}/bans/{user_id}",
        MANAGE,
        handler!(|c, p| bans::put_ban(c, p.id("guild_id")?, p.id("user_id")?).await),
        "ban_user",
        "Ban a user (and remove them)",
    ),
    route(
        Delete,
        "/guilds/{guild_id}/bans/{user_id}",
        MANAGE,
        handler!(|c, p| bans::remove_ban(c, p.id("guild_id")?, p.id("user_id")?).await),
        "unban_user",
        "Lift a ban",
    ),
    // ---- plugins and the audit log ----
    // Uploads count per user across guilds: each may take seconds of the compiler.
    route(
        Post,
        "/guilds/{guild_id}/plugins",
        PluginUpload,
        handler!(|c, p| plugin_routes::install(c, p.id("guild_id")?).await),
        "install_plugin",
        "Install a plugin: a Wasm component",
    )
    .query(&[("name", Query::RequiredMatching("^[a-z0-9_-]{1,32}$"))])
    .wasm()
    .created(plugin),
    route(
        Get,
        "/guilds/{guild_id}/plugins",
        Reads,
        handler!(|c, p| plugin_routes::list(c, p.id("guild_id")?).await),
        "list_plugins",
        "A guild's plugins",
    )
    .ok(plugins),
    route(
        Patch,
        "/guilds/{guild_id}/plugins/{plugin_id}",
        MANAGE,
        handler!(|c, p| plugin_routes::update(c, p.id("guild_id")?, p.id("plugin_id")?).await),
        "update_plugin",
        "Enable, disable or configure a plugin",
    )
    .json(of::<requests::PluginUpdate>)
    .ok(plugin),
    route(
        Delete,
        "/guilds/{guild_id}/plugins/{plugin_id}",
        MANAGE,
        handler!(|c, p| plugin_routes::remove(c, p.id("guild_id")?, p.id("plugin_id")?).await),
        "remove_plugin",
        "Remove a plugin",
    ),
    route(
        Get,
        "/guilds/{guild_id}/audit-logs",
        Reads,
        handler!(|c, p| audit::list(c, p.id("guild_id")?).await),
        "get_audit_log",
        "A guild's audit log, newest first",
    )
    .query(&[("before", Query::Id), ("user_id", Query::Id), ("action_type", Query::Int(0, 65535)), LIMIT_100])
    .ok(audit_log),
    // ---- channels ----
    route(
        Get,
        "/channels/{channel_id}",
        Reads,
        handler!(|c, p| messages::get_channel(c, p.id("channel_id")?).await),
        "get_channel",
        "A channel",
    )
    .ok(of::<Channel>),
    route(
        Patch,
        "/channels/{channel_id}",
        MANAGE,
        handler!(|c, p| channels::update_channel(c, p.id("channel_id")?).await),
        "update_channel",
        "Change a channel",
    )
    .json(of::<requests::ChannelBody>)
    .ok(of::<Channel>),
    route(
        Put,
        "/channels/{channel_id}/permissions/{overwrite_id}",
        MANAGE,
        handler!(|c, p| channels::put_overwrite(c, p.id("channel_id")?, p.id("overwrite_id")?).await),
        "set_overwrite",
        "Set a permission overwrite",
    )
    .json(of::<requests::OverwriteBits>),
    route(
        Delete,
        "/channels/{channel_id}/permissions/{overwrite_id}",
        MANAGE,
        handler!(|c, p| channels::delete_overwrite(c, p.id("channel_id")?, p.id("overwrite_id")?).await),
        "delete_overwrite",
        "Remove an overwrite",
    ),
    // ---- invites ----
    route(
        Post,
        "/channels/{channel_id}/invites",
        InviteCreate,
        handler!(|c, p| invite_routes::create_invite(c, p.id("channel_id")?).await),
        "create_invite",
        "Create an invite to a channel",
    )
    .optional_json(of::<requests::InviteOptions>)
    .ok(invite),
    route(
        Get,
        "/channels/{channel_id}/invites",
        Reads,
        handler!(|c, p| invite_routes::channel_invites(c, p.id("channel_id")?).await),
        "list_channel_invites",
        "A channel's usable invites",
    )
    .ok(invites),
    route(
        Get,
        "/guilds/{guild_id}/invites",
        Reads,
        handler!(|c, p| invite_routes::guild_invites(c, p.id("guild_id")?).await),
        "list_guild_invites",
        "A guild's usable invites",
    )
    .ok(invites),
    route(
        Get,
        "/invites/{code}",
        InviteLookup,
        handler!(|c, p| invite_routes::get_invite(c, p.text("code")).await),
        "get_invite",
        "An invite",
    )
    .public()
    .ok(invite),
    route(
        Post,
        "/invites/{code}",
        InviteAccept,
        handler!(|c, p| invite_routes::accept_invite(c, p.text("code")).await),
        "accept_invite",
        "Join a guild by an invite",
    )
    .ok(invite),
    route(
        Delete,
        "/invites/{code}",
        Writes,
        handler!(|c, p| invite_routes::delete_invite(c, p.text("code")).await),
        "delete_invite",
        "Revoke an invite",
    )
    .ok(invite),
    // ---- messages ----
    route(
        Get,
        "/guilds/{guild_id}/messages/search",
        Search,
        handler!(|c, p| search::guild(c, p.id("guild_id")?).await),
        "search_guild_messages",
        "Find a guild's messages (Discord's filters)",
    )
    .query(SEARCH)
    .ok(search_results),
    route(
        Get,
        "/channels/{channel_id}/messages/search",
        Search,
        handler!(|c, p| search::channel(c, p.id("channel_id")?).await),
        "search_channel_messages",
        "Find a DM's messages, or a guild channel's",
    )
    .query(SEARCH)
    .ok(search_results),
    route(
        Get,
        "/users/@me/messages/search",
        DmSearch,
        handler!(|c, p| search::my_dms(c).await),
        "search_my_dms",
        "Find messages in all of the caller's DMs",
    )
    .query(SEARCH)
    .ok(search_results),
    route(
        Get,
        "/channels/{channel_id}/messages",
        MessageReads,
        handler!(|c, p| messages::list(c, p.id("channel_id")?).await),
        "list_messages",
        "A channel's messages, newest first",
    )
    .query(&[LIMIT_100, ("before", Query::Id), ("after", Query::Id), ("around", Query::Id)])
    .ok(list_of::<Message>),
    route(
        Post,
        "/channels/{channel_id}/messages",
        MessageCreate,
        handler!(|c, p| messages::create(c, p.id("channel_id")?).await),
        "create_message",
        "Post a message",
    )
    .json(of::<requests::CreateMessage>)
    .ok(of::<Message>),
    route(
        Get,
        "/channels/{channel_id}/messages/{message_id}",
        MessageReads,
        handler!(|c, p| messages::get(c, p.id("channel_id")?, p.id("message_id")?).await),
        "get_message",
        "One message",
    )
    .ok(of::<Message>),
    route(
        Patch,
        "/channels/{channel_id}/messages/{message_id}",
        MessageEdit,
        handler!(|c, p| messages::edit(c, p.id("channel_id")?, p.id("message_id")?).await),
        "edit_message",
        "Edit one's message",
    )
    .json(of::<requests::EditMessage>)
    .ok(of::<Message>),
    route(
        Delete,
        "/channels/{channel_id}/messages/{message_id}",
        MessageDelete,
        handler!(|c, p| messages::delete(c, p.id("channel_id")?, p.id("message_id")?).await),
        "delete_message",
        "Delete a message",
    ),
    route(
        Put,
        "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
        Reactions,
        handler!(|c, p| messages::react(c, p.id("channel_id")?, p.id("message_id")?, p.text("emoji"), true).await),
        "add_reaction",
        "React",
    ),
    route(
        Delete,
        "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
        Reactions,
        handler!(|c, p| messages::react(c, p.id("channel_id")?, p.id("message_id")?, p.text("emoji"), false).await),
        "remove_reaction",
        "Unreact",
    ),
    route(
        Get,
        "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}",
        MessageReads,
        handler!(|c, p| messages::reaction_users(c, p.id("channel_id")?, p.id("message_id")?, p.text("emoji")).await),
        "list_reactors",
        "Who reacted",
    )
    .query(&[("after", Query::Id), LIMIT_100])
    .ok(list_of::<User>),
    route(
        Post,
        "/channels/{channel_id}/typing",
        Typing,
        handler!(|c, p| messages::typing(c, p.id("channel_id")?).await),
        "trigger_typing",
        "Show that one is typing",
    ),
];
