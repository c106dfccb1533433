//! The HTTP edge: accepts TCP connections, serves HTTP/1.1 with hyper, and sends each
//! request to the gateway upgrade, the REST router, or the health and metrics endpoints.
//! Shutdown is designed in: stop accepting, let sessions close with 1001, wait (bounded)
//! for in-flight requests, then the caller flushes storage.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use guildhall_core::clock::Clock;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::app::App;
use crate::limits::{ConnectionHold, IpKey, Limited};
use crate::rest::error::{code, ApiError};
use crate::rest::{json_response, HttpResponse};
use guildhall_runtime::Metrics;

/// Requests being served right now (shutdown waits for them).
static IN_FLIGHT: AtomicU64 = AtomicU64::new(0);

/// The longest request target (path and query) answered; longer ones get 414.
const MAX_URI_BYTES: usize = 8 << 10;
/// The most header bytes a request may carry; more get 431.
const MAX_HEADER_BYTES: usize = 32 << 10;
/// hyper's read buffer: a request head larger than this is refused by hyper itself, with
/// a 431 that has no body (as is a target over 65,534 bytes, with a 414). It is four times
/// the limits above, so that every head up to it gets the JSON answer from `oversized`.
const MAX_HEAD_BUFFER_BYTES: usize = 128 << 10;

pub async fn serve(app: Arc<App>, listener: TcpListener) {
    let connections = Arc::new(Semaphore::new(app.config.gateway.max_connections));
    let mut shutdown = app.shutdown_signal();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::warn!("connection limit reached; refusing a connection");
            continue;
        };
        let ip = IpKey::from(peer.ip());
        let Some(slot) = app.limits.open_connection(ip) else {
            tracing::debug!(%peer, "this address holds rate_limits.connections_per_ip connections; refusing another");
            Metrics::inc(&app.metrics.connections_refused_per_ip);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        // The WebSocket of an upgraded connection outlives the HTTP connection: it takes
        // a share of the hold (from the request's extensions) and keeps the slots taken.
        let hold = Arc::new(ConnectionHold { global: permit, per_ip: slot });
        tokio::spawn(async move {
            let for_requests = hold.clone();
            let service = service_fn(move |mut req: Request<Incoming>| {
                let app = app.clone();
                req.extensions_mut().insert(for_requests.clone());
                async move { Ok::<_, Infallible>(handle(app, req, ip).await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .max_buf_size(MAX_HEAD_BUFFER_BYTES)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "http connection ended with an error");
            }
            drop(hold);
        });
    }
    drop(listener);
    // In-flight requests finish (bounded); sessions are closing on the same signal.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while (IN_FLIGHT.load(Relaxed) > 0 || !app.local_sessions.is_empty()) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn handle(app: Arc<App>, req: Request<Incoming>, ip: IpKey) -> HttpResponse {
    IN_FLIGHT.fetch_add(1, Relaxed);
    Metrics::inc(&app.metrics.http_requests);
    let response = route(&app, req, ip).await;
    if response.status() == StatusCode::TOO_MANY_REQUESTS {
        Metrics::inc(&app.metrics.http_rate_limited);
    }
    if response.status().is_client_error() {
        Metrics::inc(&app.metrics.http_errors_4xx);
    } else if response.status().is_server_error() {
        Metrics::inc(&app.metrics.http_errors_5xx);
    }
    IN_FLIGHT.fetch_sub(1, Relaxed);
    response
}

/// A 414 or 431 in Discord's JSON for a request whose target or headers are over the limits.
fn oversized(req: &Request<Incoming>) -> Option<HttpResponse> {
    let target = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if target > MAX_URI_BYTES {
        let message = format!("URI Too Long: at most {MAX_URI_BYTES} bytes of path and query");
        return Some(ApiError::new(StatusCode::URI_TOO_LONG, code::GENERAL, message).into_response());
    }
    let headers: usize = req.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    if headers > MAX_HEADER_BYTES {
        let message = format!("Request Header Fields Too Large: at most {MAX_HEADER_BYTES} bytes");
        return Some(
            ApiError::new(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, code::GENERAL, message).into_response(),
        );
    }
    None
}

async fn route(app: &Arc<App>, req: Request<Incoming>, ip: IpKey) -> HttpResponse {
    if let Some(refused) = oversized(&req) {
        return refused;
    }
    let path = req.uri().path().to_owned();
    if app.is_shutting_down() {
        return ApiError::unavailable("server is shutting down").into_response();
    }
    match path.as_str() {
        "/gateway" | "/gateway/" | "/" => {
            if fastwebsockets::upgrade::is_upgrade_request(&req) {
                if let Err(retry_after_ms) = app.limits.gateway_connect(ip) {
                    return crate::rest::limited_response(
                        &Limited { global: true, route: None, retry_after_ms },
                        app.clock.unix_ms(),
                    );
                }
                crate::gateway::upgrade(app.clone(), req).unwrap_or_else(ApiError::into_response)
            } else if path == "/" {
                ApiError::not_found(code::GENERAL, "404: Not Found").into_response()
            } else {
                ApiError::bad_request(code::GENERAL, "this is the gateway: connect with a WebSocket").into_response()
            }
        }
        "/healthz" => json_response(StatusCode::OK, &serde_json::json!({ "status": "ok" })),
        "/metrics" => Response::builder()
            .header(hyper::header::CONTENT_TYPE, "text/plain; version=0.0.4")
            .body(Full::new(Bytes::from(crate::prometheus::render(
                &app.metrics,
                &app.data.metrics,
                &crate::prometheus::Readings {
                    plugin_memory_bytes: app.plugins.memory_in_use(None),
                    storage_timeouts: app.storage_deadline.timeouts(),
                    tasks_alive: tokio::runtime::Handle::current().metrics().num_alive_tasks(),
                },
            ))))
            .expect("valid response"),
        p if p == "/api/v10" || p.starts_with("/api/v10/") => {
            crate::rest::route(app.clone(), req, &p["/api/v10".len()..], ip).await
        }
        // Version 9 is served the same (several libraries still default to it).
        p if p == "/api/v9" || p.starts_with("/api/v9/") => {
            crate::rest::route(app.clone(), req, &p["/api/v9".len()..], ip).await
        }
        _ => ApiError::not_found(code::GENERAL, "404: Not Found").into_response(),
    }
}
