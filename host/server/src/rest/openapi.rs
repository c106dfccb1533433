//! The REST API's OpenAPI 3.1 description, served at `/api/v10/openapi.json`, made from
//! the route table (`routes::ROUTES`, handed in): every route is an operation. Request
//! bodies are described by the very types the handlers read (their `JsonSchema` follows
//! their serde attributes); responses by the model types they write, or where a handler
//! builds Discord's JSON by hand, by a schema in `schemas.rs`. Schemathesis checks the
//! description against a live host in the test command (deploy/dev/schemathesis).

use schemars::generate::{Contract, SchemaSettings};
use serde_json::{json, Map, Value};

use guildhall_core::model::{EMOJI_PATTERN, MAX_EMOJI_CHARS};

use super::route::{Answer, Auth, Body, Query, Route};
use super::schemas::{error, snowflake_text};

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
        Query::Bool => json!({ "type": "boolean" }),
        Query::Text(max) => json!({ "type": "string", "maxLength": max }),
        Query::OneOf(values) => json!({ "type": "string", "enum": values }),
        Query::Ids(max) => json!({ "type": "array", "items": snowflake_text(), "maxItems": max, "uniqueItems": true }),
        Query::ManyOf(values) => {
            json!({ "type": "array", "items": { "type": "string", "enum": values }, "maxItems": values.len(), "uniqueItems": true })
        }
        Query::Texts(max_items, max_chars) => json!({
            "type": "array", "items": { "type": "string", "maxLength": max_chars }, "maxItems": max_items, "uniqueItems": true
        }),
    }
}

/// The description as served: made once (it depends only on the code), since anyone may
/// ask for it without a token.
pub fn served(routes: &'static [Route]) -> &'static Value {
    static DOCUMENT: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    DOCUMENT.get_or_init(|| document(routes))
}

/// The whole description (its server is `/api/v10` on the host that serves it).
pub fn document(routes: &[Route]) -> Value {
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
    for op in routes {
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
        if op.auth == Auth::None {
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
        path[op.verb.lowercase()] = operation;
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
    use super::super::routes::ROUTES;
    use super::*;

    #[test]
    fn the_description_is_complete_and_consistent() {
        let doc = document(ROUTES);
        let paths = doc["paths"].as_object().unwrap();
        let listed: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
        assert_eq!(listed, ROUTES.len(), "one method per path at most once");
        let mut ids: Vec<&str> = ROUTES.iter().map(|op| op.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), ROUTES.len(), "operation ids are unique");
        // Every reference resolves.
        let text = doc.to_string();
        for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &reference[..reference.find('"').unwrap()];
            assert!(doc["components"]["schemas"][name].is_object(), "{name} is defined");
        }
        let create = &doc["paths"]["/channels/{channel_id}/messages"]["post"]["requestBody"]["content"];
        assert_eq!(create["application/json"]["schema"]["required"], json!(["content"]), "{create}");
    }

    /// The table's own rules: a route is at one method and path once, and a bucket kept per
    /// channel or guild has one in each of its routes' paths (else every such route of a
    /// caller would share one window).
    #[test]
    fn the_route_table_is_consistent() {
        use super::super::route::{find, Lookup};
        use hyper::Method;
        let mut seen: Vec<(&str, &str)> = ROUTES.iter().map(|r| (r.verb.lowercase(), r.path)).collect();
        seen.sort_unstable();
        let all = seen.len();
        seen.dedup();
        assert_eq!(seen.len(), all, "a method and path are routed once");
        assert!(ROUTES.iter().all(|r| r.path.split('/').count() <= 64), "a route's rank has a bit per segment");
        for route in ROUTES.iter().filter(|r| r.bucket.per_major()) {
            assert!(route.path.contains("{channel_id}") || route.path.contains("{guild_id}"), "{}", route.path);
        }
        let at = |method, path: &'static [&'static str]| match find(ROUTES, &method, path) {
            Lookup::Route(route, _) => route.id,
            Lookup::WrongMethod(_) => "405",
            Lookup::NotFound => "404",
        };
        assert_eq!(at(Method::PATCH, &["applications", "@me"]), "update_my_application", "the literal wins");
        assert_eq!(at(Method::PATCH, &["applications", "5"]), "update_application");
        assert_eq!(at(Method::GET, &["guilds", "1", "members", "@me"]), "get_guild_member");
        assert_eq!(at(Method::GET, &["guilds", "1", "nothing"]), "404");
        assert_eq!(at(Method::PUT, &["gateway"]), "405");
    }
}
