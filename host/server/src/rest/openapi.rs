//! The REST API's OpenAPI 3.1 description, served at `/api/v10/openapi.json`.
//!
//! [`OPERATIONS`] is the list of what [`super::dispatch`] serves: a path that matches none
//! of them is a 404, one whose method is not listed a 405 ([`is_known_path`] reads it),
//! and a test checks that every operation listed reaches a handler. Request bodies are
//! described by the very types the handlers read (their `JsonSchema` follows their serde
//! attributes); responses by the model types they write, or where a handler builds
//! Discord's JSON by hand, by a schema written next to it here. Schemathesis checks the
//! description against a live host in the test command (deploy/dev/schemathesis).

use schemars::generate::{Contract, SchemaSettings};
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Map, Value};

use guildhall_core::model::{Ban, Channel, Member, Message, Role, User, EMOJI_PATTERN, MAX_EMOJI_CHARS};
use guildhall_core::snowflake::SNOWFLAKE_PATTERN;

use guildhall_api::requests;

type MakeSchema = fn(&mut SchemaGenerator) -> Schema;

/// One method on one path.
pub struct Operation {
    pub method: &'static str,
    /// With `{name}` for each path parameter (see [`param_schema`]).
    pub path: &'static str,
    pub id: &'static str,
    pub summary: &'static str,
    /// Needs a token (`Authorization: Bot|Bearer TOKEN`).
    pub auth: bool,
    pub query: &'static [(&'static str, Query)],
    pub body: Body,
    pub answer: Answer,
}

/// A query parameter's type.
#[derive(Clone, Copy)]
pub enum Query {
    Id,
    /// An id that must be given.
    RequiredId,
    /// An integer in `min..=max`.
    Int(u32, u32),
    /// Text matching an ECMA-262 pattern.
    Matching(&'static str),
    /// Text matching a pattern, which must be given.
    RequiredMatching(&'static str),
}

pub enum Body {
    None,
    /// A JSON object; `required: false` for routes that take an empty body too.
    Json {
        schema: MakeSchema,
        required: bool,
    },
    /// A Wasm component's bytes.
    Wasm,
}

pub enum Answer {
    Json { status: u16, schema: MakeSchema },
    NoContent,
}

const fn json_body(schema: MakeSchema) -> Body {
    Body::Json { schema, required: true }
}

const fn ok(schema: MakeSchema) -> Answer {
    Answer::Json { status: 200, schema }
}

const fn created(schema: MakeSchema) -> Answer {
    Answer::Json { status: 201, schema }
}

const fn op(method: &'static str, path: &'static str, id: &'static str, summary: &'static str) -> Operation {
    Operation { method, path, id, summary, auth: true, query: &[], body: Body::None, answer: Answer::NoContent }
}

fn of<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

fn list_of<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "array", "items": g.subschema_for::<T>() })
}

fn object(required: &[&str], properties: Value) -> Schema {
    json_schema!({ "type": "object", "required": required, "properties": properties })
}

fn snowflake_text() -> Value {
    json!({ "type": "string", "pattern": SNOWFLAKE_PATTERN })
}

fn session(g: &mut SchemaGenerator) -> Schema {
    object(&["token", "user"], json!({ "token": { "type": "string" }, "user": g.subschema_for::<User>() }))
}

fn current_user(g: &mut SchemaGenerator) -> Schema {
    of::<User>(g)
}

fn guild(_: &mut SchemaGenerator) -> Schema {
    object(
        &["id", "name", "owner_id", "roles"],
        json!({
            "id": snowflake_text(), "name": { "type": "string" }, "owner_id": snowflake_text(),
            "roles": { "type": "array" }, "approximate_member_count": { "type": "integer" },
        }),
    )
}

fn partial_guilds(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "array", "items": {
        "type": "object", "required": ["id", "name"],
        "properties": { "id": snowflake_text(), "name": { "type": "string" } },
    }})
}

fn invite(_: &mut SchemaGenerator) -> Schema {
    object(
        &["code", "guild_id", "uses", "max_uses", "max_age"],
        json!({
            "code": { "type": "string" }, "guild_id": snowflake_text(),
            "uses": { "type": "integer" }, "max_uses": { "type": "integer" }, "max_age": { "type": "integer" },
            "expires_at": { "type": ["string", "null"] },
        }),
    )
}

fn invites(g: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "array", "items": invite(g) })
}

fn application(_: &mut SchemaGenerator) -> Schema {
    object(
        &["id", "name", "flags"],
        json!({ "id": snowflake_text(), "name": { "type": "string" }, "flags": { "type": "integer" } }),
    )
}

fn plugin(_: &mut SchemaGenerator) -> Schema {
    object(
        &["id", "guild_id", "name", "kind", "enabled", "component_sha256"],
        json!({
            "id": snowflake_text(), "guild_id": snowflake_text(), "name": { "type": "string" },
            "kind": { "type": "string", "enum": ["moderator", "bot", "indexer"] }, "enabled": { "type": "boolean" },
            "component_sha256": { "type": "string", "pattern": "^[0-9a-f]{64}$" },
        }),
    )
}

fn plugins(g: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "array", "items": plugin(g) })
}

fn audit_log(_: &mut SchemaGenerator) -> Schema {
    object(
        &["audit_log_entries", "users"],
        json!({ "audit_log_entries": { "type": "array" }, "users": { "type": "array" } }),
    )
}

fn location(_: &mut SchemaGenerator) -> Schema {
    object(&["location"], json!({ "location": { "type": "string" } }))
}

fn gateway(_: &mut SchemaGenerator) -> Schema {
    object(&["url"], json!({ "url": { "type": "string" } }))
}

fn gateway_bot(_: &mut SchemaGenerator) -> Schema {
    object(
        &["url", "shards", "session_start_limit"],
        json!({ "url": { "type": "string" }, "shards": { "type": "integer" }, "session_start_limit": { "type": "object" } }),
    )
}

fn description(_: &mut SchemaGenerator) -> Schema {
    object(&["openapi", "paths"], json!({ "openapi": { "type": "string" }, "paths": { "type": "object" } }))
}

const LIMIT_100: (&str, Query) = ("limit", Query::Int(1, 100));

/// Every operation `dispatch` serves, in its order.
pub const OPERATIONS: &[Operation] = &[
    Operation {
        auth: false,
        body: json_body(of::<requests::Credentials>),
        answer: created(session),
        ..op("post", "/auth/register", "register", "Create an account and get its token")
    },
    Operation {
        auth: false,
        body: json_body(of::<requests::Credentials>),
        answer: ok(session),
        ..op("post", "/auth/login", "login", "Get a token for an account")
    },
    Operation { answer: ok(current_user), ..op("get", "/users/@me", "get_my_user", "The caller's user") },
    Operation {
        body: json_body(of::<requests::CreateApplication>),
        answer: created(application),
        ..op("post", "/applications", "create_application", "Create a bot application (with its bot user and token)")
    },
    Operation {
        answer: ok(application),
        ..op("get", "/applications/@me", "get_my_application", "The bot's application")
    },
    Operation {
        answer: ok(application),
        ..op("get", "/oauth2/applications/@me", "get_my_oauth2_application", "The bot's application")
    },
    Operation {
        body: json_body(of::<requests::UpdateApplication>),
        answer: ok(application),
        ..op("patch", "/applications/@me", "update_my_application", "Change the bot's application")
    },
    Operation {
        body: json_body(of::<requests::UpdateApplication>),
        answer: ok(application),
        ..op("patch", "/applications/{application_id}", "update_application", "Change an application one owns")
    },
    Operation {
        query: &[("client_id", Query::RequiredId), ("scope", Query::Matching("(^|[ ,])bot([ ,]|$)"))],
        body: json_body(of::<requests::Authorize>),
        answer: ok(location),
        ..op("post", "/oauth2/authorize", "authorize_bot", "Add a bot to a guild one manages")
    },
    Operation { answer: ok(partial_guilds), ..op("get", "/users/@me/guilds", "list_my_guilds", "The caller's guilds") },
    op("delete", "/users/@me/guilds/{guild_id}", "leave_guild", "Leave a guild"),
    Operation {
        body: json_body(of::<requests::OpenDm>),
        answer: ok(of::<Channel>),
        ..op("post", "/users/@me/channels", "open_dm", "The DM channel with a user")
    },
    Operation {
        body: json_body(of::<requests::CreateGuild>),
        answer: created(guild),
        ..op("post", "/guilds", "create_guild", "Create a guild")
    },
    Operation { answer: ok(guild), ..op("get", "/guilds/{guild_id}", "get_guild", "A guild one is a member of") },
    Operation {
        body: json_body(of::<requests::UpdateGuild>),
        answer: ok(guild),
        ..op("patch", "/guilds/{guild_id}", "update_guild", "Change a guild (its owner)")
    },
    Operation {
        answer: ok(list_of::<Channel>),
        ..op("get", "/guilds/{guild_id}/channels", "list_guild_channels", "A guild's channels")
    },
    Operation {
        body: json_body(of::<requests::CreateChannel>),
        answer: created(of::<Channel>),
        ..op("post", "/guilds/{guild_id}/channels", "create_guild_channel", "Create a channel")
    },
    Operation {
        query: &[("limit", Query::Int(1, 1000)), ("after", Query::Id)],
        answer: ok(list_of::<Member>),
        ..op("get", "/guilds/{guild_id}/members", "list_guild_members", "A guild's members by user id")
    },
    Operation {
        answer: ok(of::<Member>),
        ..op("get", "/guilds/{guild_id}/members/{user_id}", "get_guild_member", "One member (or @me)")
    },
    Operation {
        body: json_body(of::<requests::MemberBody>),
        answer: ok(of::<Member>),
        ..op("patch", "/guilds/{guild_id}/members/{user_id}", "update_guild_member", "Change a member's roles or nick")
    },
    op("delete", "/guilds/{guild_id}/members/{user_id}", "kick_member", "Kick a member"),
    op("put", "/guilds/{guild_id}/members/{user_id}/roles/{role_id}", "add_member_role", "Give a member a role"),
    op("delete", "/guilds/{guild_id}/members/{user_id}/roles/{role_id}", "remove_member_role", "Take a role back"),
    Operation { answer: ok(list_of::<Role>), ..op("get", "/guilds/{guild_id}/roles", "list_roles", "A guild's roles") },
    Operation {
        body: Body::Json { schema: of::<requests::RoleBody>, required: false },
        answer: ok(of::<Role>),
        ..op("post", "/guilds/{guild_id}/roles", "create_role", "Create a role")
    },
    Operation {
        body: json_body(of::<requests::RoleBody>),
        answer: ok(of::<Role>),
        ..op("patch", "/guilds/{guild_id}/roles/{role_id}", "update_role", "Change a role")
    },
    op("delete", "/guilds/{guild_id}/roles/{role_id}", "delete_role", "Delete a role"),
    Operation {
        query: &[("limit", Query::Int(1, 1000)), ("after", Query::Id)],
        answer: ok(list_of::<Ban>),
        ..op("get", "/guilds/{guild_id}/bans", "list_bans", "A guild's bans by user id")
    },
    Operation { answer: ok(of::<Ban>), ..op("get", "/guilds/{guild_id}/bans/{user_id}", "get_ban", "One ban") },
    op("put", "/guilds/{guild_id}/bans/{user_id}", "ban_user", "Ban a user (and remove them)"),
    op("delete", "/guilds/{guild_id}/bans/{user_id}", "unban_user", "Lift a ban"),
    Operation {
        query: &[("name", Query::RequiredMatching("^[a-z0-9_-]{1,32}$"))],
        body: Body::Wasm,
        answer: created(plugin),
        ..op("post", "/guilds/{guild_id}/plugins", "install_plugin", "Install a plugin: a Wasm component")
    },
    Operation {
        query: &[("before", Query::Id), ("user_id", Query::Id), ("action_type", Query::Int(0, 65535)), LIMIT_100],
        answer: ok(audit_log),
        ..op("get", "/guilds/{guild_id}/audit-logs", "get_audit_log", "A guild's audit log, newest first")
    },
    Operation { answer: ok(plugins), ..op("get", "/guilds/{guild_id}/plugins", "list_plugins", "A guild's plugins") },
    Operation {
        body: json_body(of::<requests::PluginUpdate>),
        answer: ok(plugin),
        ..op(
            "patch",
            "/guilds/{guild_id}/plugins/{plugin_id}",
            "update_plugin",
            "Enable, disable or configure a plugin",
        )
    },
    op("delete", "/guilds/{guild_id}/plugins/{plugin_id}", "remove_plugin", "Remove a plugin"),
    Operation { answer: ok(of::<Channel>), ..op("get", "/channels/{channel_id}", "get_channel", "A channel") },
    Operation {
        body: json_body(of::<requests::ChannelBody>),
        answer: ok(of::<Channel>),
        ..op("patch", "/channels/{channel_id}", "update_channel", "Change a channel")
    },
    Operation {
        body: json_body(of::<requests::OverwriteBits>),
        ..op("put", "/channels/{channel_id}/permissions/{overwrite_id}", "set_overwrite", "Set a permission overwrite")
    },
    op("delete", "/channels/{channel_id}/permissions/{overwrite_id}", "delete_overwrite", "Remove an overwrite"),
    Operation {
        body: Body::Json { schema: of::<requests::InviteOptions>, required: false },
        answer: ok(invite),
        ..op("post", "/channels/{channel_id}/invites", "create_invite", "Create an invite to a channel")
    },
    Operation {
        answer: ok(invites),
        ..op("get", "/channels/{channel_id}/invites", "list_channel_invites", "A channel's usable invites")
    },
    Operation {
        answer: ok(invites),
        ..op("get", "/guilds/{guild_id}/invites", "list_guild_invites", "A guild's usable invites")
    },
    Operation { auth: false, answer: ok(invite), ..op("get", "/invites/{code}", "get_invite", "An invite") },
    Operation { answer: ok(invite), ..op("post", "/invites/{code}", "accept_invite", "Join a guild by an invite") },
    Operation { answer: ok(invite), ..op("delete", "/invites/{code}", "delete_invite", "Revoke an invite") },
    Operation {
        query: &[LIMIT_100, ("before", Query::Id), ("after", Query::Id), ("around", Query::Id)],
        answer: ok(list_of::<Message>),
        ..op("get", "/channels/{channel_id}/messages", "list_messages", "A channel's messages, newest first")
    },
    Operation {
        body: json_body(of::<requests::CreateMessage>),
        answer: ok(of::<Message>),
        ..op("post", "/channels/{channel_id}/messages", "create_message", "Post a message")
    },
    Operation {
        answer: ok(of::<Message>),
        ..op("get", "/channels/{channel_id}/messages/{message_id}", "get_message", "One message")
    },
    Operation {
        body: json_body(of::<requests::EditMessage>),
        answer: ok(of::<Message>),
        ..op("patch", "/channels/{channel_id}/messages/{message_id}", "edit_message", "Edit one's message")
    },
    op("delete", "/channels/{channel_id}/messages/{message_id}", "delete_message", "Delete a message"),
    op("put", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me", "add_reaction", "React"),
    op("delete", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me", "remove_reaction", "Unreact"),
    Operation {
        query: &[("after", Query::Id), LIMIT_100],
        answer: ok(list_of::<User>),
        ..op("get", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}", "list_reactors", "Who reacted")
    },
    op("post", "/channels/{channel_id}/typing", "trigger_typing", "Show that one is typing"),
    Operation { auth: false, answer: ok(gateway), ..op("get", "/gateway", "get_gateway", "The gateway's URL") },
    Operation { answer: ok(gateway_bot), ..op("get", "/gateway/bot", "get_gateway_bot", "The gateway for a bot") },
    Operation { auth: false, answer: ok(description), ..op("get", "/openapi.json", "get_openapi", "This description") },
];

/// Does any operation have this path (whatever its method)?
pub fn is_known_path(path: &[&str]) -> bool {
    OPERATIONS.iter().any(|op| matches(op.path, path))
}

/// The methods served at `path`, for a 405's `Allow`.
pub fn methods_at(path: &[&str]) -> Vec<String> {
    let mut methods: Vec<String> =
        OPERATIONS.iter().filter(|op| matches(op.path, path)).map(|op| op.method.to_uppercase()).collect();
    methods.sort_unstable();
    methods.dedup();
    methods
}

/// Is there an operation at `method` and `path`?
pub fn is_listed(method: &str, path: &[&str]) -> bool {
    OPERATIONS.iter().any(|op| op.method.eq_ignore_ascii_case(method) && matches(op.path, path))
}

/// Does the operation at `method` and `path` need a token? (False for what is not served.)
pub fn needs_token(method: &str, path: &[&str]) -> bool {
    OPERATIONS.iter().any(|op| op.auth && op.method.eq_ignore_ascii_case(method) && matches(op.path, path))
}

/// Does `template` (with `{name}` segments) match `path`'s segments?
pub fn matches(template: &str, path: &[&str]) -> bool {
    let mut segments = template.split('/').filter(|s| !s.is_empty());
    let mut path = path.iter();
    loop {
        match (segments.next(), path.next()) {
            (None, None) => return true,
            (Some(t), Some(p)) if t.starts_with('{') || t == *p => {}
            _ => return false,
        }
    }
}

/// A path parameter's schema, by its name and its operation's path.
fn param_schema(template: &str, name: &str) -> Value {
    match name {
        // `@me` stands for the caller.
        "user_id" if template == "/guilds/{guild_id}/members/{user_id}" => {
            json!({ "anyOf": [snowflake_text(), { "const": "@me" }] })
        }
        "emoji" => json!({ "type": "string", "maxLength": MAX_EMOJI_CHARS, "pattern": EMOJI_PATTERN }),
        "code" => json!({ "type": "string", "minLength": 1, "maxLength": 32 }),
        _ => snowflake_text(),
    }
}

fn query_schema(query: Query) -> Value {
    match query {
        Query::Id | Query::RequiredId => snowflake_text(),
        Query::Int(min, max) => json!({ "type": "integer", "minimum": min, "maximum": max }),
        Query::Matching(pattern) | Query::RequiredMatching(pattern) => json!({ "type": "string", "pattern": pattern }),
    }
}

fn error(_: &mut SchemaGenerator) -> Schema {
    object(
        &["code", "message"],
        json!({
            "code": { "type": "integer" }, "message": { "type": "string" },
            "retry_after": { "type": "number" }, "global": { "type": "boolean" }, "errors": { "type": "object" },
        }),
    )
}

/// The description as served: made once (it depends only on the code), since anyone may
/// ask for it without a token.
pub fn served() -> &'static Value {
    static DOCUMENT: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    DOCUMENT.get_or_init(document)
}

/// The whole description (its server is `/api/v10` on the host that serves it).
pub fn document() -> Value {
    // Responses refer to shared components; request bodies are inlined, because a type's
    // schema as read (defaults make fields optional) differs from its schema as written.
    let mut responses = SchemaSettings::draft2020_12()
        .with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.contract = Contract::Serialize;
        })
        .into_generator();
    let mut requests = SchemaSettings::draft2020_12()
        .with(|s| {
            s.inline_subschemas = true;
            s.contract = Contract::Deserialize;
        })
        .into_generator();
    let error = Value::from(error(&mut responses));
    let mut paths = Map::new();
    for op in OPERATIONS {
        let mut parameters: Vec<Value> = op
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": param_schema(op.path, name) }))
            .collect();
        parameters.extend(op.query.iter().map(|(name, query)| {
            let required = matches!(query, Query::RequiredId | Query::RequiredMatching(_));
            json!({ "name": name, "in": "query", "required": required, "schema": query_schema(*query) })
        }));
        let errored = |description: &str| json!({ "description": description, "content": { "application/json": { "schema": error } } });
        let mut answers = Map::new();
        match &op.answer {
            Answer::Json { status, schema } => {
                let schema = Value::from(schema(&mut responses));
                let content = json!({ "application/json": { "schema": schema } });
                answers.insert(status.to_string(), json!({ "description": "Success", "content": content }));
            }
            Answer::NoContent => {
                answers.insert("204".into(), json!({ "description": "Done" }));
            }
        }
        answers.insert("4XX".into(), errored("Refused: Discord's error object (429 adds retry_after and global)"));
        answers.insert("503".into(), errored("Storage or the guild is unavailable for now; retry"));
        let mut operation = json!({
            "operationId": op.id,
            "summary": op.summary,
            "parameters": parameters,
            "responses": answers,
        });
        if !op.auth {
            operation["security"] = json!([]);
        }
        match &op.body {
            Body::None => {}
            Body::Json { schema, required } => {
                let schema = Value::from(schema(&mut requests));
                operation["requestBody"] =
                    json!({ "required": required, "content": { "application/json": { "schema": schema } } });
            }
            Body::Wasm => {
                let schema = json!({ "type": "string", "contentMediaType": "application/wasm" });
                operation["requestBody"] =
                    json!({ "required": true, "content": { "application/wasm": { "schema": schema } } });
            }
        }
        let path = paths.entry(op.path).or_insert_with(|| json!({}));
        path[op.method] = operation;
    }
    let schemas: Map<String, Value> = responses.take_definitions(true);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Guildhall REST API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Discord's API v10, as Guildhall serves it.",
        },
        "servers": [{ "url": "/api/v10" }],
        "security": [{ "token": [] }],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "token": { "type": "http", "scheme": "bearer", "description": "`Authorization: Bearer TOKEN` (or `Bot TOKEN`)" },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_description_is_complete_and_consistent() {
        let doc = document();
        let paths = doc["paths"].as_object().unwrap();
        let listed: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
        assert_eq!(listed, OPERATIONS.len(), "one method per path at most once");
        let mut ids: Vec<&str> = OPERATIONS.iter().map(|op| op.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), OPERATIONS.len(), "operation ids are unique");
        // Every reference resolves.
        let text = doc.to_string();
        for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &reference[..reference.find('"').unwrap()];
            assert!(doc["components"]["schemas"][name].is_object(), "{name} is defined");
        }
        assert!(matches("/channels/{channel_id}/messages", &["channels", "1", "messages"]));
        assert!(!matches("/channels/{channel_id}/messages", &["channels", "1"]));
        let create = &doc["paths"]["/channels/{channel_id}/messages"]["post"]["requestBody"]["content"];
        assert_eq!(create["application/json"]["schema"]["required"], json!(["content"]), "{create}");
        assert!(is_known_path(&["guilds", "1", "members", "@me"]));
        assert!(!is_known_path(&["guilds", "1", "nothing"]));
    }
}
