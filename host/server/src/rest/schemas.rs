//! The schemas of what the REST API answers, where a handler builds Discord's JSON by
//! hand (the model's own types describe themselves, `of::<T>`), for the route table.

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Value};

use guildhall_core::model::User;
use guildhall_core::snowflake::SNOWFLAKE_PATTERN;

pub fn of<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

pub fn list_of<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "array", "items": g.subschema_for::<T>() })
}

pub fn object(required: &[&str], properties: Value) -> Schema {
    json_schema!({ "type": "object", "required": required, "properties": properties })
}

pub fn snowflake_text() -> Value {
    json!({ "type": "string", "pattern": SNOWFLAKE_PATTERN })
}

/// A message search's answer (Discord's): each hit is a list holding the message, marked `hit`.
pub fn search_results(g: &mut SchemaGenerator) -> Schema {
    let hit = json!({ "allOf": [g.subschema_for::<guildhall_core::model::Message>(), { "type": "object", "properties": { "hit": { "type": "boolean" } }, "required": ["hit"] }] });
    object(
        &["total_results", "messages", "doing_deep_historical_index"],
        json!({
            "total_results": { "type": "integer", "minimum": 0 },
            "messages": { "type": "array", "items": { "type": "array", "items": hit } },
            "doing_deep_historical_index": { "type": "boolean" },
            "threads": { "type": "array" },
            "members": { "type": "array" },
        }),
    )
}

pub fn session(g: &mut SchemaGenerator) -> Schema {
    object(&["token", "user"], json!({ "token": { "type": "string" }, "user": g.subschema_for::<User>() }))
}

pub fn current_user(g: &mut SchemaGenerator) -> Schema {
    of::<User>(g)
}

pub fn guild(_: &mut SchemaGenerator) -> Schema {
    object(
        &["id", "name", "owner_id", "roles"],
        json!({
            "id": snowflake_text(), "name": { "type": "string" }, "owner_id": snowflake_text(),
            "roles": { "type": "array" }, "approximate_member_count": { "type": "integer" },
        }),
    )
}

pub fn partial_guilds(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "array", "items": {
        "type": "object", "required": ["id", "name"],
        "properties": { "id": snowflake_text(), "name": { "type": "string" } },
    }})
}

pub fn invite(_: &mut SchemaGenerator) -> Schema {
    object(
        &["code", "guild_id", "uses", "max_uses", "max_age"],
        json!({
            "code": { "type": "string" }, "guild_id": snowflake_text(),
            "uses": { "type": "integer" }, "max_uses": { "type": "integer" }, "max_age": { "type": "integer" },
            "expires_at": { "type": ["string", "null"] },
        }),
    )
}

pub fn invites(g: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "array", "items": invite(g) })
}

pub fn application(_: &mut SchemaGenerator) -> Schema {
    object(
        &["id", "name", "flags"],
        json!({ "id": snowflake_text(), "name": { "type": "string" }, "flags": { "type": "integer" } }),
    )
}

pub fn plugin(_: &mut SchemaGenerator) -> Schema {
    object(
        &["id", "guild_id", "name", "kind", "enabled", "component_sha256"],
        json!({
            "id": snowflake_text(), "guild_id": snowflake_text(), "name": { "type": "string" },
            "kind": { "type": "string", "enum": ["moderator", "bot", "indexer"] }, "enabled": { "type": "boolean" },
            "component_sha256": { "type": "string", "pattern": "^[0-9a-f]{64}$" },
        }),
    )
}

pub fn plugins(g: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "array", "items": plugin(g) })
}

pub fn audit_log(_: &mut SchemaGenerator) -> Schema {
    object(
        &["audit_log_entries", "users"],
        json!({ "audit_log_entries": { "type": "array" }, "users": { "type": "array" } }),
    )
}

pub fn location(_: &mut SchemaGenerator) -> Schema {
    object(&["location"], json!({ "location": { "type": "string" } }))
}

pub fn gateway(_: &mut SchemaGenerator) -> Schema {
    object(&["url"], json!({ "url": { "type": "string" } }))
}

pub fn gateway_bot(_: &mut SchemaGenerator) -> Schema {
    object(
        &["url", "shards", "session_start_limit"],
        json!({ "url": { "type": "string" }, "shards": { "type": "integer" }, "session_start_limit": { "type": "object" } }),
    )
}

pub fn description(_: &mut SchemaGenerator) -> Schema {
    object(&["openapi", "paths"], json!({ "openapi": { "type": "string" }, "paths": { "type": "object" } }))
}

pub fn error(_: &mut SchemaGenerator) -> Schema {
    object(
        &["code", "message"],
        json!({
            "code": { "type": "integer" }, "message": { "type": "string" },
            "retry_after": { "type": "number" }, "global": { "type": "boolean" }, "errors": { "type": "object" },
        }),
    )
}
