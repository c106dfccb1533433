//! What Discord libraries do without saying so, on the wire (issue 10's first steps; the
//! libraries themselves come next): the gateway where `GET /gateway/bot` points (Discord's
//! URL has no path, so libraries connect to `/?v=10&encoding=json`), API and gateway
//! version 9 beside 10, IDENTIFY tokens with the `Bot ` prefix, JSON in binary frames,
//! tokens in Discord's shape.

use guildhall_e2e::{Gateway, Server, ALL_INTENTS};
use hyper::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_library_connects_where_gateway_bot_points_with_discords_conventions() {
    let server = Server::start(&[]).await;
    let http = server.http();
    let (token, alice) = http.register("alice").await;

    // A token shaped like Discord's: three dot-separated parts.
    assert_eq!(token.split('.').count(), 3, "{token}");
    // REST under /api/v9 as under /api/v10, with `Authorization: Bot <token>`.
    let me = http.get("/users/@me", &format!("Bot {token}")).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    let v9 = http.get_at("/api/v9/users/@me", Some(&format!("Bot {token}"))).await;
    assert_eq!((v9.status, &v9.body["id"]), (StatusCode::OK, &me.body["id"]), "GET /api/v9/users/@me");

    // The gateway at the URL /gateway/bot gives, without a path.
    let gateway = http.get("/gateway/bot", &token).await;
    let url = gateway.body["url"].as_str().unwrap().to_owned();
    assert_eq!(url, format!("ws://{}", server.addr), "Discord's shape: no path");
    let mut gw = Gateway::connect(server.addr, "/?v=10&encoding=json").await;
    assert_eq!(gw.next().await["op"], 10, "HELLO at /");
    // IDENTIFY in a binary frame, the token with the `Bot ` prefix.
    let identify = json!({ "op": 2, "d": { "token": format!("Bot {token}"), "intents": ALL_INTENTS, "properties": { "os": "linux", "browser": "lib", "device": "lib" } } });
    gw.send_binary(serde_json::to_vec(&identify).unwrap()).await;
    let ready = gw.next().await;
    assert_eq!(ready["t"], "READY", "{ready}");
    assert_eq!(ready["d"]["user"]["id"], json!(alice.to_string()));
    // Fields Discord always sends, with its defaults: the user as they see themselves, in
    // READY and at /users/@me, and as others see them (a message's author).
    for own in [&ready["d"]["user"], &me.body] {
        for (field, value) in [("mfa_enabled", json!(false)), ("flags", json!(0)), ("public_flags", json!(0))] {
            assert_eq!(own[field], value, "{field} in {own}");
        }
        assert!(
            own["locale"].is_string() && own.get("banner").is_some() && own.get("primary_guild").is_some(),
            "{own}"
        );
    }
    let guild = http.post("/guilds", &token, json!({ "name": "fields" })).await;
    let channels = http.get(&format!("/guilds/{}/channels", guild.body["id"].as_str().unwrap()), &token).await;
    let cid = channels.body[0]["id"].as_str().unwrap();
    let message = http.post(&format!("/channels/{cid}/messages"), &token, json!({ "content": "hi" })).await;
    let author = &message.body["author"];
    assert_eq!((&author["public_flags"], author.get("mfa_enabled")), (&json!(0), None), "public view: {author}");

    // Version 9 of the gateway is served the same.
    let mut gw = Gateway::connect(server.addr, "/gateway?v=9&encoding=json").await;
    gw.identify(&token, ALL_INTENTS).await;
    gw.send(json!({ "op": 1, "d": null })).await;
    assert_eq!(gw.next().await["op"], 11, "heartbeat ACK on v9");

    // A plain GET of / is no gateway and no API.
    let root = http.get_at("/", None).await;
    assert_eq!((root.status, root.body["code"].as_u64()), (StatusCode::NOT_FOUND, Some(0)));
}

/// Privileged intents are application flags, as on Discord: a bot asking for one its
/// application has not turned on is closed with 4014; without MESSAGE_CONTENT it receives
/// messages without their content, unless it is mentioned (people are not affected).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_without_message_content_gets_empty_content_unless_mentioned() {
    const GUILDS: u64 = 1;
    const GUILD_MESSAGES: u64 = 1 << 9;
    const MESSAGE_CONTENT: u64 = 1 << 15;
    let server = Server::start(&[]).await;
    let http = server.http();
    let (owner, _) = http.register("content_owner").await;
    let guild = http.post("/guilds", &owner, json!({ "name": "content" })).await.body;
    let gid = guild["id"].as_str().unwrap();
    let channels = http.get(&format!("/guilds/{gid}/channels"), &owner).await.body;
    let cid = channels[0]["id"].as_str().unwrap();
    let app = http.post("/applications", &owner, json!({ "name": "blindbot" })).await;
    assert_eq!(app.status, StatusCode::CREATED, "{}", app.body);
    let (bot_id, bot_token) = (app.body["id"].as_str().unwrap(), app.body["token"].as_str().unwrap());
    let authorize = json!({ "guild_id": gid, "permissions": "3072" });
    let added = http.post(&format!("/oauth2/authorize?client_id={bot_id}&scope=bot"), &owner, authorize).await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.body);

    // The guild list carries each guild's permissions: the owner has all of them; the bot
    // @everyone's and its role's (VIEW_CHANNEL and SEND_MESSAGES are already @everyone's).
    let listed = http.get("/users/@me/guilds", &owner).await.body;
    assert_eq!(listed[0]["permissions"], json!(((1u64 << 51) - 1).to_string()), "{listed}");
    let as_bot = http.get("/users/@me/guilds", &format!("Bot {bot_token}")).await.body;
    assert_eq!(as_bot[0]["permissions"], json!("633698869828673"), "@everyone's defaults: {as_bot}");

    // Asking for MESSAGE_CONTENT without the flag: 4014.
    let mut refused = Gateway::connect(server.addr, "/?v=10&encoding=json").await;
    assert_eq!(refused.next().await["op"], 10);
    let identify = json!({ "op": 2, "d": { "token": bot_token, "intents": GUILDS | GUILD_MESSAGES | MESSAGE_CONTENT, "properties": {} } });
    refused.send(identify).await;
    assert_eq!(refused.expect_close().await, Some(4014));

    let mut bot = Gateway::connect(server.addr, "/?v=10&encoding=json").await;
    let ready = bot.identify(bot_token, GUILDS | GUILD_MESSAGES).await;
    assert_eq!(ready["d"]["application"]["id"], json!(bot_id), "READY names the application");
    let mut person = server.gateway().await;
    person.identify(&owner, GUILDS | GUILD_MESSAGES).await;
    for content in ["secret words".to_owned(), format!("hey <@{bot_id}>")] {
        let sent = http.post(&format!("/channels/{cid}/messages"), &owner, json!({ "content": content })).await;
        assert_eq!(sent.status, StatusCode::OK, "{}", sent.body);
        let seen_by_bot = bot.dispatch("MESSAGE_CREATE").await;
        let seen_by_person = person.dispatch("MESSAGE_CREATE").await;
        assert_eq!(seen_by_person["d"]["content"], json!(content), "people read everything");
        let expected = if content.contains(bot_id) { content.clone() } else { String::new() };
        assert_eq!(seen_by_bot["d"]["content"], json!(expected), "{content}");
        assert_eq!(seen_by_bot["d"]["id"], seen_by_person["d"]["id"]);
    }

    // REST reads follow the same rule: the person's message empty, the mention whole.
    let history = http.get(&format!("/channels/{cid}/messages?limit=2"), &format!("Bot {bot_token}")).await;
    let contents: Vec<&str> = history.body.as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap()).collect();
    assert_eq!(contents, [format!("hey <@{bot_id}>").as_str(), ""], "newest first");

    // With the flag turned on (by the bot, PATCH /applications/@me), a new session reads all.
    let flags = json!({ "flags": 1u64 << 18 }); // GATEWAY_MESSAGE_CONTENT
    let patched =
        http.call(hyper::Method::PATCH, "/applications/@me", Some(&format!("Bot {bot_token}")), Some(flags)).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    let mut reading = Gateway::connect(server.addr, "/?v=10&encoding=json").await;
    reading.identify(bot_token, GUILDS | GUILD_MESSAGES | MESSAGE_CONTENT).await;
    http.post(&format!("/channels/{cid}/messages"), &owner, json!({ "content": "now you see it" })).await;
    assert_eq!(reading.dispatch("MESSAGE_CREATE").await["d"]["content"], "now you see it");
    let history = http.get(&format!("/channels/{cid}/messages?limit=3"), &format!("Bot {bot_token}")).await;
    assert_eq!(history.body[2]["content"], "secret words", "and REST too");
}
