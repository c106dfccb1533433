//! Quotas (issue 11): how much one user or guild may hold, each refused past its limit with
//! Discord's "Maximum number of ... reached" error, nothing written. The 1,362 moderators
//! once installed in one guild (each on every message) were the finding behind the plugin
//! quota.

use guildhall_e2e::{component, Answer, Server};
use hyper::{Method, StatusCode};
use serde_json::json;

fn assert_quota(a: &Answer, code: u32, message: &str) {
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert_eq!(a.body, json!({ "code": code, "message": message }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guilds_per_user_count_created_and_joined_guilds() {
    let server = Server::start(&[("GUILDHALL_QUOTAS__GUILDS_PER_USER", "2")]).await;
    let http = server.http();
    let (alice, _) = http.register("alice").await;
    let (bob, _) = http.register("bob").await;
    for name in ["one", "two"] {
        assert_eq!(http.post("/guilds", &alice, json!({ "name": name })).await.status, StatusCode::CREATED);
    }
    let third = http.post("/guilds", &alice, json!({ "name": "three" })).await;
    assert_quota(&third, 30001, "Maximum number of guilds reached (2)");
    assert_eq!(http.get("/users/@me/guilds", &alice).await.body.as_array().unwrap().len(), 2, "nothing written");

    // Joining counts the same: bob's guild invites alice, who is in two already.
    let guild = http.post("/guilds", &bob, json!({ "name": "bob's" })).await;
    let gid = guild.body["id"].as_str().unwrap();
    let channels = http.get(&format!("/guilds/{gid}/channels"), &bob).await;
    let cid = channels.body[0]["id"].as_str().unwrap();
    let invite = http.post(&format!("/channels/{cid}/invites"), &bob, json!({})).await;
    let code = invite.body["code"].as_str().unwrap();
    let join = http.call(Method::POST, &format!("/invites/{code}"), Some(&alice), None).await;
    assert_quota(&join, 30001, "Maximum number of guilds reached (2)");
    let members = http.get(&format!("/guilds/{gid}/members?limit=10"), &bob).await;
    assert_eq!(members.body.as_array().unwrap().len(), 1, "alice did not join");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_per_guild_and_reactions_per_message() {
    let server = Server::start(&[
        ("GUILDHALL_QUOTAS__CHANNELS_PER_GUILD", "2"),
        ("GUILDHALL_QUOTAS__REACTIONS_PER_MESSAGE", "2"),
    ])
    .await;
    let http = server.http();
    let (alice, _) = http.register("alice").await;
    let guild = http.post("/guilds", &alice, json!({ "name": "quota" })).await;
    let gid = guild.body["id"].as_str().unwrap();
    let path = format!("/guilds/{gid}/channels");
    assert_eq!(http.post(&path, &alice, json!({ "name": "second" })).await.status, StatusCode::CREATED);
    let third = http.post(&path, &alice, json!({ "name": "third" })).await;
    assert_quota(&third, 30013, "Maximum number of guild channels reached (2)");
    assert_eq!(http.get(&path, &alice).await.body.as_array().unwrap().len(), 2, "nothing written");

    let channels = http.get(&path, &alice).await;
    let cid = channels.body[0]["id"].as_str().unwrap();
    let message = http.post(&format!("/channels/{cid}/messages"), &alice, json!({ "content": "poll" })).await;
    let mid = message.body["id"].as_str().unwrap();
    let react = |emoji: &str, token: &str| {
        let path = format!("/channels/{cid}/messages/{mid}/reactions/{emoji}/@me");
        let token = token.to_owned();
        async move { http.call(Method::PUT, &path, Some(&token), None).await }
    };
    for emoji in ["%F0%9F%91%8D", "%F0%9F%8E%89"] {
        assert_eq!(react(emoji, &alice).await.status, StatusCode::NO_CONTENT);
    }
    assert_quota(&react("%E2%9D%A4", &alice).await, 30010, "Maximum number of reactions reached (2)");
    // An emoji already on the message can still be added to.
    let (bob, _) = http.register("bob").await;
    let invite = http.post(&format!("/channels/{cid}/invites"), &alice, json!({})).await;
    let code = invite.body["code"].as_str().unwrap();
    assert_eq!(http.call(Method::POST, &format!("/invites/{code}"), Some(&bob), None).await.status, StatusCode::OK);
    assert_eq!(react("%F0%9F%91%8D", &bob).await.status, StatusCode::NO_CONTENT);
    let got = http.get(&format!("/channels/{cid}/messages/{mid}"), &alice).await;
    let counts: Vec<u64> =
        got.body["reactions"].as_array().unwrap().iter().map(|r| r["count"].as_u64().unwrap()).collect();
    assert_eq!(counts.len(), 2, "{}", got.body);
    assert_eq!(counts.iter().sum::<u64>(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_per_guild_are_refused_before_the_upload_is_compiled() {
    let server = Server::start(&[("GUILDHALL_QUOTAS__PLUGINS_PER_GUILD", "2")]).await;
    let http = server.http();
    let (alice, _) = http.register("alice").await;
    let guild = http.post("/guilds", &alice, json!({ "name": "plugins" })).await;
    let gid = guild.body["id"].as_str().unwrap();
    let automod = component("automod");
    for name in ["first", "second"] {
        let a = http.install_plugin(gid, &alice, name, automod.clone()).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    }
    let third = http.install_plugin(gid, &alice, "third", automod).await;
    assert_quota(&third, 30090, "Maximum number of plugins reached (2)");
    // Refused before compiling: even a body that is no component gets the quota answer.
    let junk = http.install_plugin(gid, &alice, "junk", b"not wasm".to_vec()).await;
    assert_eq!(junk.body["code"], 30090);
    let list = http.get(&format!("/guilds/{gid}/plugins"), &alice).await;
    assert_eq!(list.body.as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invites_per_guild_count_only_usable_invites() {
    let server = Server::start(&[("GUILDHALL_QUOTAS__INVITES_PER_GUILD", "2")]).await;
    let http = server.http();
    let (alice, _) = http.register("alice").await;
    let (bob, _) = http.register("bob").await;
    let guild = http.post("/guilds", &alice, json!({ "name": "invites" })).await;
    let gid = guild.body["id"].as_str().unwrap();
    let general = http.get(&format!("/guilds/{gid}/channels"), &alice).await.body[0]["id"].as_str().unwrap().to_owned();
    let other = http.post(&format!("/guilds/{gid}/channels"), &alice, json!({ "name": "other" })).await;
    let other = other.body["id"].as_str().unwrap().to_owned();
    let create = |channel: &str, body: serde_json::Value| {
        let path = format!("/channels/{channel}/invites");
        let alice = alice.clone();
        async move { http.post(&path, &alice, body).await }
    };
    let codes = |a: Answer| -> Vec<String> {
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        let mut codes: Vec<String> =
            a.body.as_array().unwrap().iter().map(|i| i["code"].as_str().unwrap().to_owned()).collect();
        codes.sort();
        codes
    };
    let guild_invites = format!("/guilds/{gid}/invites");

    let once = create(&general, json!({ "max_uses": 1 })).await;
    assert_eq!(once.status, StatusCode::OK, "{}", once.body);
    let once = once.body["code"].as_str().unwrap().to_owned();
    let elsewhere = create(&other, json!({})).await.body["code"].as_str().unwrap().to_owned();
    assert_quota(&create(&general, json!({})).await, 30016, "Maximum number of invites reached (2)");
    let mut both = vec![once.clone(), elsewhere.clone()];
    both.sort();
    assert_eq!(codes(http.get(&guild_invites, &alice).await), both, "nothing written");
    assert_eq!(codes(http.get(&format!("/channels/{other}/invites"), &alice).await), std::slice::from_ref(&elsewhere));

    // A used-up invite no longer counts (nor is listed): its slot is free again.
    assert_eq!(http.call(Method::POST, &format!("/invites/{once}"), Some(&bob), None).await.status, StatusCode::OK);
    assert_eq!(codes(http.get(&guild_invites, &alice).await), std::slice::from_ref(&elsewhere));
    let third = create(&general, json!({})).await;
    assert_eq!(third.status, StatusCode::OK, "{}", third.body);
    // So does a revoked one.
    assert_quota(&create(&general, json!({})).await, 30016, "Maximum number of invites reached (2)");
    let revoke = http.call(Method::DELETE, &format!("/invites/{elsewhere}"), Some(&alice), None).await;
    assert_eq!(revoke.status, StatusCode::OK);
    assert_eq!(create(&general, json!({})).await.status, StatusCode::OK);

    // Listing a guild's invites takes MANAGE_GUILD; a channel's, MANAGE_CHANNELS.
    let denied = http.get(&guild_invites, &bob).await;
    assert_eq!((denied.status, denied.body["code"].as_u64()), (StatusCode::FORBIDDEN, Some(50013)));
    let denied = http.get(&format!("/channels/{general}/invites"), &bob).await;
    assert_eq!((denied.status, denied.body["code"].as_u64()), (StatusCode::FORBIDDEN, Some(50013)));
}
