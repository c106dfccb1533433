//! The REST API under `/api/v10`, in Discord v10 shapes.
//!
//! [`route`] finds the request's row in the route table ([`routes::ROUTES`]), counts it
//! against the row's bucket and calls its handler. The handler modules are named for what
//! they serve (`users`, `applications`, `guilds`, `members`, `roles`, `bans`, `channels`,
//! `invites`, `messages`, `plugins`, `audit`); they share `ctx` and `error` and never import
//! each other. Handlers validate everything before changing anything: a bad request gets a
//! 4xx `{code, message}` and writes nothing.

pub mod applications;
pub mod audit;
pub mod bans;
pub mod channels;
pub mod ctx;
pub mod error;
pub mod guilds;
pub mod invites;
pub mod members;
pub mod messages;
pub mod openapi;
pub mod plugins;
pub mod response;
pub mod roles;
pub mod route;
pub mod routes;
pub mod schemas;
pub mod search;
pub mod users;

use std::sync::Arc;

use guildhall_core::clock::Clock;
use guildhall_core::ratelimit::Standing;
use hyper::header::HeaderValue;
use hyper::{Request, StatusCode};

use crate::app::App;
use crate::limits::{Bucket, IpKey, Limited, Subject};
use ctx::Ctx;
use error::{code, ApiError};
pub use response::{json_response, HttpResponse};
use route::{Auth, Body, Lookup, Route};

/// Serves one request under `/api/v10` (the prefix already removed into `path`) from
/// address `ip`: finds the caller once, counts the request against the caller's limits
/// (or the address's, without a valid token), dispatches it, and says where the route's
/// limit stands in Discord's `X-RateLimit-*` headers.
pub async fn route(app: Arc<App>, req: Request<hyper::body::Incoming>, path: &str, ip: IpKey) -> HttpResponse {
    // An address past its invalid requests is refused before it costs anything more.
    if let Some(banned) = app.limits.banned(ip) {
        return limited_response(&banned, app.clock.unix_ms());
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
    let found = route::find(routes::ROUTES, &method, &segments);
    let bucket = match &found {
        Lookup::Route(route, params) => Some((route.bucket, route.major(params))),
        _ => None,
    };
    let response = match (app.limits.rest(subject, ip, bucket), found) {
        (Err(limited), found) => {
            // The body is read and dropped first (bounded in size and time): a client still
            // sending one, megabytes for a plugin upload, would see the connection reset
            // instead of this answer.
            let limit = match found {
                Lookup::Route(Route { body: Body::Wasm, .. }, _) => app.plugins.max_component_bytes(),
                _ => app.config.rest.max_body_bytes,
            };
            let mut ctx = Ctx { app: app.clone(), headers: parts.headers, query: Vec::new(), body: Some(body), caller };
            ctx.discard_body_up_to(limit).await;
            limited_response(&limited, app.clock.unix_ms())
        }
        (Ok(_), Lookup::NotFound) => ApiError::not_found(code::GENERAL, "404: Not Found").into_response(),
        (Ok(_), Lookup::WrongMethod(allowed)) => {
            let mut response =
                ApiError::new(StatusCode::METHOD_NOT_ALLOWED, code::GENERAL, "405: Method Not Allowed").into_response();
            let allow = HeaderValue::from_str(&allowed.join(", ")).expect("method names");
            response.headers_mut().insert(hyper::header::ALLOW, allow);
            response
        }
        // Who may not call a route learns it first, before anything about the request.
        (Ok(_), Lookup::Route(route, _)) if caller.is_none() && route.auth == Auth::Token => {
            ApiError::unauthorized().into_response()
        }
        (Ok(standing), Lookup::Route(route, params)) => {
            let query = guildhall_api::query_pairs(parts.uri.query().unwrap_or(""));
            let mut ctx = Ctx { app: app.clone(), headers: parts.headers, query, body: Some(body), caller };
            let mut response = (route.handler)(&mut ctx, &params).await.unwrap_or_else(ApiError::into_response);
            if let Some((bucket, standing)) = standing {
                put_standing(response.headers_mut(), bucket, &standing, app.clock.unix_ms());
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
pub fn limited_response(limited: &Limited, now_unix_ms: u64) -> HttpResponse {
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
        put_standing(headers, *bucket, standing, now_unix_ms);
    }
    response
}

fn put_standing(headers: &mut hyper::HeaderMap, bucket: Bucket, standing: &Standing, now_unix_ms: u64) {
    let reset_after = standing.reset_after_ms as f64 / 1000.0;
    let now = std::time::Duration::from_millis(now_unix_ms);
    let float = |v: f64| HeaderValue::from_str(&format!("{v:.3}")).expect("a number is a valid header");
    headers.insert("x-ratelimit-limit", HeaderValue::from(standing.limit));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(standing.remaining));
    headers.insert("x-ratelimit-reset", float(now.as_secs_f64() + reset_after));
    headers.insert("x-ratelimit-reset-after", float(reset_after));
    headers.insert("x-ratelimit-bucket", HeaderValue::from_static(bucket.name()));
}
