//! Rate limits (issue 11), over real sockets: REST route buckets and the global limits with
//! Discord's headers and 429s, hit and recovered; per-address limits for requests without
//! a token, register and login, invalid requests and gateway connects; IDENTIFY spacing;
//! open connections per address. The Discord libraries' own handling of them is in
//! `discord_libraries`.

use std::time::{Duration, Instant};

use guildhall_e2e::{Answer, Gateway, Server, ALL_INTENTS};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

fn header_f64(a: &Answer, name: &str) -> f64 {
    a.header(name).unwrap_or_else(|| panic!("no {name} in {:?}", a.headers)).parse().expect("a number")
}

fn unix_secs() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Discord's 429, checked whole: body, `Retry-After`, scope, the `Via` discord.py needs.
fn assert_limited(a: &Answer, global: bool, window_secs: f64) -> f64 {
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
    assert_eq!(a.body["code"], 0);
    assert_eq!(a.body["message"], "You are being rate limited.");
    assert_eq!(a.body["global"], json!(global), "{}", a.body);
    let retry_after = a.body["retry_after"].as_f64().expect("retry_after in seconds");
    assert!(retry_after > 0.0 && retry_after <= window_secs, "retry_after {retry_after}");
    let header: f64 = header_f64(a, "retry-after");
    assert_eq!(header, retry_after.ceil(), "Retry-After is whole seconds, rounded up");
    assert_eq!(a.header("x-ratelimit-scope"), Some(if global { "global" } else { "user" }));
    assert_eq!(a.header("x-ratelimit-global"), global.then_some("true"));
    assert!(a.header("via").is_some(), "discord.py takes a 429 without Via for a ban: {:?}", a.headers);
    retry_after
}

async fn guild_with_channels(server: &Server, token: &str) -> (String, Vec<String>) {
    let http = server.http();
    let guild = http.post("/guilds", token, json!({ "name": "limits" })).await;
    let gid = guild.body["id"].as_str().unwrap().to_owned();
    let second = http.post(&format!("/guilds/{gid}/channels"), token, json!({ "name": "second" })).await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.body);
    let channels = http.get(&format!("/guilds/{gid}/channels"), token).await;
    let ids = channels.body.as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_owned()).collect();
    (gid, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_bucket_is_hit_and_recovered_with_discords_headers() {
    let server = Server::start(&[("GUILDHALL_RATE_LIMITS__MESSAGE_CREATE", "3/2s")]).await;
    let http = server.http();
    let (token, _) = http.register("alice").await;
    let (_, channels) = guild_with_channels(&server, &token).await;
    let (first, second) = (&channels[0], &channels[1]);
    let send = |channel: &str, n: u32| {
        let path = format!("/channels/{channel}/messages");
        let token = token.clone();
        async move { http.post(&path, &token, json!({ "content": format!("message {n}") })).await }
    };

    for (n, remaining) in [(1, "2"), (2, "1"), (3, "0")] {
        let a = send(first, n).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert_eq!(a.header("x-ratelimit-limit"), Some("3"));
        assert_eq!(a.header("x-ratelimit-remaining"), Some(remaining));
        assert_eq!(a.header("x-ratelimit-bucket"), Some("message_create"));
        let reset_after = header_f64(&a, "x-ratelimit-reset-after");
        assert!(reset_after > 0.0 && reset_after <= 2.0, "{reset_after}");
        let reset = header_f64(&a, "x-ratelimit-reset");
        assert!((reset - (unix_secs() + reset_after)).abs() < 1.0, "Reset is the epoch time of Reset-After");
    }
    let refused = send(first, 4).await;
    let retry_after = assert_limited(&refused, false, 2.0);
    assert_eq!(refused.header("x-ratelimit-bucket"), Some("message_create"));
    assert_eq!(refused.header("x-ratelimit-remaining"), Some("0"));
    // The refused message was not written.
    let history = http.get(&format!("/channels/{first}/messages"), &token).await;
    let contents: Vec<&str> = history.body.as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap()).collect();
    assert_eq!(contents, ["message 3", "message 2", "message 1"]);
    // Another channel is another window (the channel is the major parameter).
    assert_eq!(send(second, 5).await.status, StatusCode::OK);
    // A route without a bucket of its own is not held back, and says nothing of one.
    let me = http.get("/users/@me", &token).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.header("x-ratelimit-bucket"), None);

    // After retry_after, the window has reopened.
    tokio::time::sleep(Duration::from_secs_f64(retry_after + 0.05)).await;
    let again = send(first, 6).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.header("x-ratelimit-remaining"), Some("2"));
    assert!(server.metric("guildhall_http_rate_limited_total").await >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_limit_counts_every_route_per_user() {
    let server = Server::start(&[("GUILDHALL_RATE_LIMITS__GLOBAL", "5/2s")]).await;
    let http = server.http();
    let (alice, _) = http.register("alice").await;
    let (bob, _) = http.register("bob").await;
    for _ in 0..5 {
        assert_eq!(http.get("/users/@me", &alice).await.status, StatusCode::OK);
    }
    let refused = http.get("/users/@me/guilds", &alice).await;
    let retry_after = assert_limited(&refused, true, 2.0);
    assert_eq!(http.get("/users/@me", &bob).await.status, StatusCode::OK, "bob has his own");
    tokio::time::sleep(Duration::from_secs_f64(retry_after + 0.05)).await;
    assert_eq!(http.get("/users/@me", &alice).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_token_count_per_address() {
    let server =
        Server::start(&[("GUILDHALL_RATE_LIMITS__AUTH", "3/60s"), ("GUILDHALL_RATE_LIMITS__INVITE_LOOKUP", "2/60s")])
            .await;
    let http = server.http();
    let (token, _) = http.register("alice").await;
    let login = json!({ "username": "alice", "password": "wrong password!" });
    // Register and login share one bucket per address: the third request is the last.
    assert_eq!(http.call(Method::POST, "/auth/login", None, Some(login.clone())).await.status, StatusCode::BAD_REQUEST);
    let third = http.call(Method::POST, "/auth/login", None, Some(login.clone())).await;
    assert_eq!(third.header("x-ratelimit-remaining"), Some("0"));
    let refused = http.call(Method::POST, "/auth/login", None, Some(login.clone())).await;
    assert_limited(&refused, false, 60.0);
    // A token does not buy more password guesses.
    let refused = http.call(Method::POST, "/auth/login", Some(&token), Some(login)).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);

    // Invite lookups: per address without a token; a code cannot be guessed by trying.
    for _ in 0..2 {
        assert_eq!(http.call(Method::GET, "/invites/aaaaaaaaaa", None, None).await.status, StatusCode::NOT_FOUND);
    }
    assert_limited(&http.call(Method::GET, "/invites/bbbbbbbbbb", None, None).await, false, 60.0);
    // The signed-in user has a window of their own.
    assert_eq!(http.call(Method::GET, "/invites/aaaaaaaaaa", Some(&token), None).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_past_its_invalid_requests_is_refused_everything() {
    let server = Server::start(&[("GUILDHALL_RATE_LIMITS__INVALID_REQUESTS", "5/3s")]).await;
    let http = server.http();
    let (token, _) = http.register("alice").await;
    for n in 0..5 {
        let a = http.get("/users/@me", &format!("not a token {n}")).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    }
    // Even a valid token from that address: refused until the window closes.
    let refused = http.get("/users/@me", &token).await;
    let retry_after = assert_limited(&refused, true, 3.0);
    tokio::time::sleep(Duration::from_secs_f64(retry_after + 0.05)).await;
    assert_eq!(http.get("/users/@me", &token).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_connects_per_address_and_identify_spacing() {
    let server = Server::start(&[
        ("GUILDHALL_RATE_LIMITS__GATEWAY_CONNECTS", "3/60s"),
        ("GUILDHALL_RATE_LIMITS__IDENTIFY", "1/2s"),
    ])
    .await;
    let http = server.http();
    let (token, _) = http.register("alice").await;
    let gateway_bot = http.get("/gateway/bot", &token).await;
    assert_eq!(gateway_bot.body["session_start_limit"]["max_concurrency"], 1);

    // Two IDENTIFYs of one user at once: the second waits for the next window.
    let mut first = Gateway::connect(server.addr, "/?v=10&encoding=json").await;
    let mut second = Gateway::connect(server.addr, "/?v=10&encoding=json").await;
    let started = Instant::now();
    let (a, b) = tokio::join!(first.identify(&token, ALL_INTENTS), second.identify(&token, ALL_INTENTS));
    let both = started.elapsed();
    assert_eq!((a["t"].as_str(), b["t"].as_str()), (Some("READY"), Some("READY")));
    assert!(both >= Duration::from_millis(1_800), "the second IDENTIFY was spaced: both READY after {both:?}");
    assert!(both < Duration::from_secs(5), "{both:?}");

    // The third connection from this address is the last in the window.
    let _third = Gateway::connect(server.addr, "/?v=10&encoding=json").await;
    let refused = guildhall_client::gateway::connect_gateway(&server.addr.to_string(), "/?v=10&encoding=json").await;
    let error = refused.err().expect("a fourth connection is refused").to_string();
    assert!(error.contains("429"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_address_are_capped() {
    let server = Server::start(&[("GUILDHALL_RATE_LIMITS__CONNECTIONS_PER_IP", "3")]).await;
    let held = hold_gateway_connections(server.addr, 3).await;
    // The fourth connection is closed at once, before anything is served on it.
    assert!(served_metrics(server.addr).await.is_none(), "a fourth connection from one address was served");
    drop(held);
    // Slots are given back when connections end.
    let deadline = Instant::now() + Duration::from_secs(5);
    let metrics = loop {
        if let Some(text) = served_metrics(server.addr).await {
            break text;
        }
        assert!(Instant::now() < deadline, "the slots were not given back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let refused = metrics.lines().find_map(|l| l.strip_prefix("guildhall_connections_refused_per_ip_total "));
    assert!(refused.and_then(|n| n.parse::<u64>().ok()).is_some_and(|n| n >= 1), "{refused:?}");
}

async fn hold_gateway_connections(addr: std::net::SocketAddr, n: usize) -> Vec<Gateway> {
    let mut held = Vec::new();
    for _ in 0..n {
        let mut gw = Gateway::connect(addr, "/?v=10&encoding=json").await;
        let hello: Value = gw.next().await;
        assert_eq!(hello["op"], 10);
        held.push(gw);
    }
    held
}

/// `gateway.max_connections` counts WebSocket sessions too: an upgraded connection keeps
/// its place after the HTTP connection under it ends (before the fix, it gave it back at
/// the upgrade, so the cap bounded nothing but plain HTTP).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_counts_websocket_sessions() {
    let server = Server::start(&[("GUILDHALL_GATEWAY__MAX_CONNECTIONS", "3")]).await;
    let held = hold_gateway_connections(server.addr, 3).await;
    assert!(served_metrics(server.addr).await.is_none(), "a fourth connection was served with three sessions open");
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    while served_metrics(server.addr).await.is_none() {
        assert!(Instant::now() < deadline, "the places were not given back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `GET /metrics` on a new connection: the text, or `None` if the connection was not
/// served (closed, or no answer within 3 s: a test must fail, never hang).
async fn served_metrics(addr: std::net::SocketAddr) -> Option<String> {
    let attempt = async {
        let mut client = guildhall_client::ApiClient::connect(&addr.to_string()).await.ok()?;
        client.metrics().await.ok()
    };
    tokio::time::timeout(Duration::from_secs(3), attempt).await.ok().flatten()
}

/// Op 8 has a limit of its own (each request may walk the whole member list): past it the
/// session gets Discord's RATE_LIMITED dispatch, and no chunks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_requests_past_their_limit_get_rate_limited() {
    let server = Server::start(&[("GUILDHALL_RATE_LIMITS__MEMBER_REQUESTS", "2/30s")]).await;
    let http = server.http();
    let (token, _) = http.register("alice").await;
    let (gid, _) = guild_with_channels(&server, &token).await;
    let mut gw = Gateway::connect(server.addr, "/?v=10&encoding=json").await;
    gw.identify(&token, ALL_INTENTS).await;
    let request = |nonce: &str| json!({ "op": 8, "d": { "guild_id": gid, "query": "", "limit": 0, "nonce": nonce } });
    for nonce in ["one", "two"] {
        gw.send(request(nonce)).await;
        let chunk = gw.dispatch("GUILD_MEMBERS_CHUNK").await;
        assert_eq!(chunk["d"]["nonce"], nonce);
    }
    gw.send(request("three")).await;
    let limited = gw.next().await;
    assert_eq!(limited["t"], "RATE_LIMITED", "{limited}");
    let d = &limited["d"];
    assert_eq!((&d["opcode"], &d["meta"]["guild_id"], &d["meta"]["nonce"]), (&json!(8), &json!(gid), &json!("three")));
    let retry_after = d["retry_after"].as_f64().unwrap();
    assert!(retry_after > 0.0 && retry_after <= 30.0, "{retry_after}");
    // The session goes on: a heartbeat is still answered.
    gw.send(json!({ "op": 1, "d": null })).await;
    assert_eq!(gw.next().await["op"], 11);
}
