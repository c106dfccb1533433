//! Every bad input gets a clear error and changes nothing; no input kills the host.

use guildhall_e2e::{Gateway, Server, ALL_INTENTS};
use hyper::{Method, StatusCode};
use serde_json::json;

/// (method, path, token, body bytes, expected status, expected JSON code)
type Case<'a> = (Method, String, Option<&'a str>, Vec<u8>, u16, i64);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_rejects_bad_input_and_writes_nothing() {
    let server = Server::start(&[]).await;
    let http = server.http();
    let (alice, _) = http.register("alice").await;
    let (carol, _) = http.register("carol").await;
    let gid = http.post("/guilds", &alice, json!({ "name": "g" })).await.body["id"].as_str().unwrap().to_owned();
    let cid = http.get(&format!("/guilds/{gid}/channels"), &alice).await.body[0]["id"].as_str().unwrap().to_owned();
    let ok = http.post(&format!("/channels/{cid}/messages"), &alice, json!({ "content": "the only message" })).await;
    assert_eq!(ok.status, StatusCode::OK);
    let mid = ok.body["id"].as_str().unwrap().to_owned();
    let msgs = format!("/channels/{cid}/messages");
    let a = Some(alice.as_str());

    let big = format!("{{\"content\": \"{}\"}}", "x".repeat(70_000));
    let cases: Vec<Case> = vec![
        (Method::POST, msgs.clone(), a, b"{not json".to_vec(), 400, 50109),
        (Method::POST, msgs.clone(), a, b"".to_vec(), 400, 50109),
        (Method::POST, msgs.clone(), a, br#"{"content": 5}"#.to_vec(), 400, 50035),
        (Method::POST, msgs.clone(), a, br#"["content"]"#.to_vec(), 400, 50035),
        (Method::POST, msgs.clone(), a, br#"{}"#.to_vec(), 400, 50006),
        (Method::POST, msgs.clone(), a, br#"{"content": "   "}"#.to_vec(), 400, 50006),
        (Method::POST, msgs.clone(), a, json!({ "content": "y".repeat(2001) }).to_string().into_bytes(), 400, 50035),
        (Method::POST, msgs.clone(), a, br#"{"content": "hi", "nonce": {"x": 1}}"#.to_vec(), 400, 50035),
        (Method::POST, msgs.clone(), a, big.into_bytes(), 413, 40005),
        (Method::POST, msgs.clone(), None, br#"{"content": "hi"}"#.to_vec(), 401, 0),
        (Method::POST, msgs.clone(), Some("Bot not-a-token"), br#"{"content": "hi"}"#.to_vec(), 401, 0),
        (Method::POST, msgs.clone(), Some(carol.as_str()), br#"{"content": "hi"}"#.to_vec(), 403, 50001),
        (Method::POST, "/channels/1/messages".into(), a, br#"{"content": "hi"}"#.to_vec(), 404, 10003),
        (Method::POST, "/channels/abc/messages".into(), a, br#"{"content": "hi"}"#.to_vec(), 400, 50035),
        (Method::GET, format!("{msgs}?limit=0"), a, vec![], 400, 50035),
        (Method::GET, format!("{msgs}?limit=101"), a, vec![], 400, 50035),
        (Method::GET, format!("{msgs}?limit=ten"), a, vec![], 400, 50035),
        (Method::GET, format!("{msgs}?before=1&after=2"), a, vec![], 400, 50035),
        (Method::GET, msgs.clone(), Some(carol.as_str()), vec![], 403, 50001),
        (Method::PATCH, format!("{msgs}/{mid}"), Some(carol.as_str()), br#"{"content": "x"}"#.to_vec(), 403, 50001),
        (Method::PATCH, format!("{msgs}/{mid}"), a, br#"{"content": ""}"#.to_vec(), 400, 50006),
        (Method::PATCH, format!("{msgs}/1"), a, br#"{"content": "x"}"#.to_vec(), 404, 10008),
        (Method::DELETE, format!("{msgs}/1"), a, vec![], 404, 10008),
        (Method::GET, "/guilds/1".into(), a, vec![], 404, 10004),
        (Method::GET, format!("/guilds/{gid}"), Some(carol.as_str()), vec![], 403, 50001),
        (Method::GET, format!("/guilds/{gid}/members?limit=1001"), a, vec![], 400, 50035),
        (
            Method::POST,
            format!("/guilds/{gid}/channels"),
            Some(carol.as_str()),
            br#"{"name": "x"}"#.to_vec(),
            403,
            50001,
        ),
        (Method::POST, format!("/guilds/{gid}/channels"), a, br#"{"name": "x", "type": 2}"#.to_vec(), 400, 50035),
        (Method::POST, format!("/guilds/{gid}/channels"), a, br#"{"name": ""}"#.to_vec(), 400, 50035),
        (Method::POST, "/guilds".into(), a, br#"{"name": 7}"#.to_vec(), 400, 50035),
        (Method::POST, "/guilds".into(), a, br#"{"nom": "x"}"#.to_vec(), 400, 50035),
        (Method::POST, "/invites/nope".into(), a, vec![], 404, 10006),
        (Method::POST, "/users/@me/channels".into(), a, br#"{"recipient_id": "1"}"#.to_vec(), 404, 10013),
        (Method::POST, "/users/@me/channels".into(), a, br#"{"recipient_id": "x"}"#.to_vec(), 400, 50035),
        (
            Method::POST,
            "/auth/register".into(),
            None,
            br#"{"username": "alice", "password": "long enough pw"}"#.to_vec(),
            400,
            50035,
        ),
        (
            Method::POST,
            "/auth/register".into(),
            None,
            br#"{"username": "dave", "password": "short"}"#.to_vec(),
            400,
            50035,
        ),
        (
            Method::POST,
            "/auth/register".into(),
            None,
            br#"{"username": "no spaces", "password": "long enough pw"}"#.to_vec(),
            400,
            50035,
        ),
        (Method::POST, "/auth/register".into(), None, br#"{"username": "eve"}"#.to_vec(), 400, 50035),
        (
            Method::POST,
            "/auth/login".into(),
            None,
            br#"{"username": "alice", "password": "wrong password"}"#.to_vec(),
            400,
            50035,
        ),
        (
            Method::POST,
            "/auth/login".into(),
            None,
            br#"{"username": "nobody", "password": "wrong password"}"#.to_vec(),
            400,
            50035,
        ),
        (Method::GET, "/users/@me".into(), None, vec![], 401, 0),
        (Method::GET, "/nothing/here".into(), a, vec![], 404, 0),
        (Method::PUT, msgs.clone(), a, vec![], 405, 0),
    ];
    for (method, path, token, body, status, code) in cases {
        let answer = http.raw(method.clone(), &path, token, body).await;
        assert_eq!(answer.status.as_u16(), status, "{method} {path}: {}", answer.body);
        assert_eq!(answer.body["code"], code, "{method} {path}: {}", answer.body);
        assert!(answer.body["message"].as_str().is_some_and(|m| !m.is_empty()), "{method} {path}");
    }

    // Nothing above changed anything.
    let history = http.get(&msgs, &alice).await;
    assert_eq!(history.body.as_array().unwrap().len(), 1);
    assert_eq!(history.body[0]["content"], "the only message");
    let channels = http.get(&format!("/guilds/{gid}/channels"), &alice).await;
    assert_eq!(channels.body.as_array().unwrap().len(), 1);
    let login =
        http.call(Method::POST, "/auth/login", None, Some(json!({ "username": "dave", "password": "short" }))).await;
    assert_eq!(login.status, StatusCode::BAD_REQUEST, "dave was never created");
    let guilds = http.get("/users/@me/guilds", &alice).await;
    assert_eq!(guilds.body.as_array().unwrap().len(), 1);
    let health = http.raw(Method::GET, "/../healthz", None, vec![]).await;
    assert_eq!(health.status, StatusCode::NOT_FOUND);
}

/// Opens a gateway connection and reads HELLO.
async fn hello(server: &Server) -> Gateway {
    let mut gw = server.gateway().await;
    assert_eq!(gw.next().await["op"], 10);
    gw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_closes_with_discord_codes() {
    let server = Server::start(&[]).await;
    let http = server.http();
    let (alice, _) = http.register("alice").await;
    let identify = json!({ "op": 2, "d": { "token": alice, "intents": 513, "properties": { "os": "linux" } } });

    let mut gw = hello(&server).await;
    gw.send_raw(b"{not json".to_vec()).await;
    assert_eq!(gw.expect_close().await, Some(4002), "undecodable frame");

    let mut gw = hello(&server).await;
    gw.send_binary(vec![0xff, 0xfe, b'{']).await;
    assert_eq!(gw.expect_close().await, Some(4002), "binary frame that is not UTF-8 JSON");

    let mut gw = hello(&server).await;
    gw.send(json!({ "op": 42, "d": null })).await;
    assert_eq!(gw.expect_close().await, Some(4001), "unknown opcode");

    let mut gw = hello(&server).await;
    gw.send(json!({ "op": 3, "d": { "status": "online", "since": null, "activities": [], "afk": false } })).await;
    assert_eq!(gw.expect_close().await, Some(4003), "presence before identify");

    let mut gw = hello(&server).await;
    gw.send(json!({ "op": 1, "d": { "pad": "x".repeat(5000) } })).await;
    assert_eq!(gw.expect_close().await, Some(4002), "frame over the size limit");

    let mut gw = hello(&server).await;
    gw.send(json!({ "op": 2, "d": { "token": "wrong", "intents": 513, "properties": {} } })).await;
    assert_eq!(gw.expect_close().await, Some(4004), "bad token");

    let mut gw = hello(&server).await;
    gw.send(json!({ "op": 2, "d": { "token": alice, "intents": 1u64 << 40, "properties": {} } })).await;
    assert_eq!(gw.expect_close().await, Some(4013), "invalid intents");

    let mut gw = server.gateway().await;
    gw.identify(&alice, ALL_INTENTS).await;
    gw.send(identify.clone()).await;
    assert_eq!(gw.expect_close().await, Some(4005), "second identify");

    let mut gw = hello(&server).await;
    for _ in 0..130 {
        gw.send(json!({ "op": 1, "d": null })).await;
    }
    assert_eq!(gw.expect_close().await, Some(4008), "more than 120 frames a minute");

    let mut gw = Gateway::connect(server.addr, "/gateway?v=8&encoding=json").await;
    assert_eq!(gw.expect_close().await, Some(4012), "unsupported API version");
    let mut gw = Gateway::connect(server.addr, "/gateway?v=10&encoding=etf").await;
    assert_eq!(gw.expect_close().await, Some(4002), "unsupported encoding");

    // After all of that the host still serves everyone.
    let mut gw = server.gateway().await;
    gw.identify(&alice, ALL_INTENTS).await;
    gw.send(json!({ "op": 1, "d": 1 })).await;
    assert_eq!(gw.next().await["op"], 11, "heartbeat ACK");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zombie_connections_are_closed_with_4009() {
    let server = Server::start(&[("GUILDHALL_GATEWAY__HEARTBEAT_INTERVAL_MS", "300")]).await;
    let (alice, _) = server.http().register("alice").await;
    let mut gw = server.gateway().await;
    let hello = gw.next().await;
    assert_eq!(hello["d"]["heartbeat_interval"], 300);
    gw.send(json!({ "op": 2, "d": { "token": alice, "intents": 513, "properties": {} } })).await;
    assert_eq!(gw.dispatch("READY").await["op"], 0);
    let started = std::time::Instant::now();
    assert_eq!(gw.expect_close().await, Some(4009));
    assert!(started.elapsed() < std::time::Duration::from_secs(3));

    // A client that heartbeats stays connected past several intervals.
    let mut live = server.gateway().await;
    live.identify(&alice, 513).await;
    for _ in 0..6 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        live.send(json!({ "op": 1, "d": live.last_seq })).await;
        assert_eq!(live.next().await["op"], 11);
    }
}

/// A connection that never IDENTIFYs cannot hold a gateway slot by heartbeating alone: it
/// is closed with 4003 once `gateway.identify_timeout_ms` passes (issue 11).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_identifies_is_closed_with_4003() {
    let server = Server::start(&[("GUILDHALL_GATEWAY__IDENTIFY_TIMEOUT_MS", "1500")]).await;
    let mut gw = server.gateway().await;
    assert_eq!(gw.next().await["op"], 10, "HELLO");
    let started = std::time::Instant::now();
    // Heartbeats until shortly before the deadline are answered, and do not extend it. (None
    // is sent near the deadline: data arriving after the server closed would reset the
    // connection and lose the close frame.)
    while started.elapsed() < std::time::Duration::from_millis(1000) {
        gw.send(json!({ "op": 1, "d": null })).await;
        assert_eq!(gw.next().await["op"], 11, "heartbeat ACK");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(gw.expect_close().await, Some(4003));
    let waited = started.elapsed();
    assert!(waited >= std::time::Duration::from_millis(1400), "not before the deadline: {waited:?}");
    assert!(waited < std::time::Duration::from_secs(4), "at the deadline: {waited:?}");
    server.wait_for_metric("guildhall_connections", 0).await; // the slot is free again
}

/// A request body that trickles (or never comes) cannot hold its connection: past
/// `rest.body_timeout_ms` the answer is 408 with Discord's error body, and the connection
/// ends. Before, nothing bounded the wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_body_gets_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start(&[("GUILDHALL_REST__BODY_TIMEOUT_MS", "500")]).await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = "POST /api/v10/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"user";
    tcp.write_all(head.as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read_to_end(&mut answer))
        .await
        .expect("the server answered and closed within 5 s")
        .unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains(r#""message":"the request body did not arrive in time""#), "{text}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(400), "{:?}", started.elapsed());
}

/// A stranger's request for a guild is refused from storage: it never starts the guild's
/// actor (which loads every member). Before, `GET /guilds/{id}` started it for anyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strangers_request_does_not_start_a_guild() {
    let server = Server::start(&[]).await;
    let http = server.http();
    let (alice, _) = http.register("alice").await;
    let (eve, _) = http.register("eve").await;
    let gid = http.post("/guilds", &alice, json!({ "name": "private" })).await.body["id"].as_str().unwrap().to_owned();
    for path in [format!("/guilds/{gid}"), format!("/guilds/{gid}/channels"), format!("/guilds/{gid}/roles")] {
        let a = http.get(&path, &eve).await;
        assert_eq!((a.status, &a.body["code"]), (StatusCode::FORBIDDEN, &json!(50001)), "{path}: {}", a.body);
    }
    // Writes too: a role, a channel, leaving, a ban, a kick.
    let alice_id = http.get("/users/@me", &alice).await.body["id"].as_str().unwrap().to_owned();
    for (method, path) in [
        (Method::POST, format!("/guilds/{gid}/roles")),
        (Method::POST, format!("/guilds/{gid}/channels")),
        (Method::DELETE, format!("/users/@me/guilds/{gid}")),
        (Method::PUT, format!("/guilds/{gid}/bans/{alice_id}")),
        (Method::DELETE, format!("/guilds/{gid}/members/{alice_id}")),
    ] {
        let a = http.call(method, &path, Some(&eve), Some(json!({ "name": "mine" }))).await;
        assert_eq!((a.status, &a.body["code"]), (StatusCode::FORBIDDEN, &json!(50001)), "{path}: {}", a.body);
    }
    assert_eq!(server.metric("guildhall_guilds").await, 0, "no guild actor started for eve");
    let unknown = http.get("/guilds/1234567890123", &eve).await;
    assert_eq!((unknown.status, &unknown.body["code"]), (StatusCode::NOT_FOUND, &json!(10004)));
    assert_eq!(http.get(&format!("/guilds/{gid}"), &alice).await.status, StatusCode::OK);
    assert_eq!(server.metric("guildhall_guilds").await, 1, "the member's request starts it");
}

/// Channel routes too: a stranger's message, history read, typing, invite or channel edit
/// in a guild whose actor is not running is refused from storage and starts nothing.
/// Before, each of them started the guild's actor (loading every member) to refuse it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strangers_channel_request_does_not_start_a_guild() {
    let server = Server::start(&[("GUILDHALL_GUILD__IDLE_EVICT_MS", "300")]).await;
    let http = server.http();
    let (alice, _) = http.register("alice").await;
    let (eve, _) = http.register("eve").await;
    let gid = http.post("/guilds", &alice, json!({ "name": "private" })).await.body["id"].as_str().unwrap().to_owned();
    let channels = http.get(&format!("/guilds/{gid}/channels"), &alice).await;
    let channel = channels.body[0]["id"].as_str().unwrap().to_owned();
    server.wait_for_metric("guildhall_guilds", 0).await; // stopped when idle
    for (method, path, body) in [
        (Method::POST, format!("/channels/{channel}/messages"), Some(json!({ "content": "hi" }))),
        (Method::GET, format!("/channels/{channel}/messages"), None),
        (Method::POST, format!("/channels/{channel}/typing"), None),
        (Method::POST, format!("/channels/{channel}/invites"), Some(json!({}))),
        (Method::PATCH, format!("/channels/{channel}"), Some(json!({ "name": "mine" }))),
    ] {
        let a = http.call(method, &path, Some(&eve), body).await;
        assert_eq!((a.status, &a.body["code"]), (StatusCode::FORBIDDEN, &json!(50001)), "{path}: {}", a.body);
    }
    assert_eq!(server.metric("guildhall_guilds").await, 0, "no guild actor started for eve");
    let said = http.post(&format!("/channels/{channel}/messages"), &alice, json!({ "content": "hi" })).await;
    assert_eq!(said.status, StatusCode::OK, "{}", said.body);
    assert_eq!(server.metric("guildhall_guilds").await, 1, "the member's request starts it");
    // A running actor answers a stranger itself.
    let a = http.post(&format!("/channels/{channel}/messages"), &eve, json!({ "content": "hi" })).await;
    assert_eq!((a.status, &a.body["code"]), (StatusCode::FORBIDDEN, &json!(50001)), "{}", a.body);
}

/// Sends `head` (a request line and headers, without the blank line) over a raw
/// connection; the status and the body of the answer.
async fn raw_request(addr: std::net::SocketAddr, head: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(format!("{head}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await; // a reset after the answer is fine
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// A request target or headers over the limits get Discord's JSON error like every other
/// refusal (414, 431), up to the sizes where the HTTP library refuses the head itself
/// (a target over 65,534 bytes, a head over 128 KiB: an empty 414 or 431 from hyper).
/// Before, a URL over the header limit got a 431 with an empty body and no content type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_urls_and_headers_get_json_errors() {
    let server = Server::start(&[]).await;
    let long_path = format!("GET /api/v10/users/@me?q={} HTTP/1.1\r\nHost: x", "a".repeat(20_000));
    let (status, body) = raw_request(server.addr, &long_path).await;
    assert_eq!(status, 414, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    assert_eq!(body["code"], 0, "{body}");
    let many_headers: String = (0..40).map(|i| format!("\r\nX-Filler-{i}: {}", "b".repeat(1000))).collect();
    let (status, body) =
        raw_request(server.addr, &format!("GET /api/v10/users/@me HTTP/1.1\r\nHost: x{many_headers}")).await;
    assert_eq!(status, 431, "{body}");
    assert!(body.contains("\"code\":0") && body.contains("Request Header Fields Too Large"), "{body}");
    // Nothing else changed: the host still answers.
    let (status, _) = raw_request(server.addr, "GET /healthz HTTP/1.1\r\nHost: x").await;
    assert_eq!(status, 200);
}
