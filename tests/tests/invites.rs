//! Invites as Discord's (issue 11): they expire (`max_age`, a day by default), run out
//! (`max_uses`, each join counted once even when joins race), can be revoked, and an
//! expired, used-up or revoked invite is as unknown as one never made. (Codes: 10 of 62
//! characters, created only where free: the store conformance tests; lookups are rate
//! limited: `rate_limits`.)

use std::time::Duration;

use guildhall_e2e::{Http, Server};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

async fn join(http: &Http, code: &str, token: &str) -> (StatusCode, Value) {
    let a = http.call(Method::POST, &format!("/invites/{code}"), Some(token), None).await;
    (a.status, a.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invites_expire_run_out_and_can_be_revoked() {
    let server = Server::start(&[]).await;
    let http = server.http();
    let (alice, _) = http.register("alice").await;
    let (bob, _) = http.register("bob").await;
    let (carol, _) = http.register("carol").await;
    let guild = http.post("/guilds", &alice, json!({ "name": "invites" })).await;
    let gid = guild.body["id"].as_str().unwrap();
    let channels = http.get(&format!("/guilds/{gid}/channels"), &alice).await;
    let cid = channels.body[0]["id"].as_str().unwrap();
    let create = |body: Value| {
        let path = format!("/channels/{cid}/invites");
        let alice = alice.clone();
        async move { http.post(&path, &alice, body).await }
    };

    // Defaults: a day, any number of uses.
    let default = create(json!({})).await;
    assert_eq!(default.status, StatusCode::OK, "{}", default.body);
    assert_eq!(
        (&default.body["max_age"], &default.body["max_uses"], &default.body["uses"]),
        (&json!(86_400), &json!(0), &json!(0))
    );
    assert!(default.body["expires_at"].is_string(), "{}", default.body);
    let forever = create(json!({ "max_age": 0 })).await;
    assert_eq!(forever.body["expires_at"], Value::Null);
    for bad in [json!({ "max_age": 604_801 }), json!({ "max_uses": 101 }), json!({ "max_age": -1 })] {
        assert_eq!(create(bad.clone()).await.status, StatusCode::BAD_REQUEST, "{bad}");
    }

    // One use: bob takes it; carol finds it unknown, as does a lookup.
    let once = create(json!({ "max_uses": 1 })).await;
    let code = once.body["code"].as_str().unwrap();
    let (status, body) = join(&http, code, &bob).await;
    assert_eq!((status, &body["uses"]), (StatusCode::OK, &json!(1)), "{body}");
    let (status, body) = join(&http, code, &carol).await;
    assert_eq!((status, &body["code"]), (StatusCode::NOT_FOUND, &json!(10006)), "{body}");
    assert_eq!(http.call(Method::GET, &format!("/invites/{code}"), None, None).await.status, StatusCode::NOT_FOUND);

    // A second of life: usable, then unknown.
    let brief = create(json!({ "max_age": 1 })).await;
    let code = brief.body["code"].as_str().unwrap().to_owned();
    assert_eq!(http.call(Method::GET, &format!("/invites/{code}"), None, None).await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(http.call(Method::GET, &format!("/invites/{code}"), None, None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(join(&http, &code, &carol).await.0, StatusCode::NOT_FOUND);

    // Revocation: not by a member without MANAGE_CHANNELS; by the owner, answered with it.
    let code = default.body["code"].as_str().unwrap();
    let path = format!("/invites/{code}");
    let refused = http.call(Method::DELETE, &path, Some(&bob), None).await;
    assert_eq!((refused.status, &refused.body["code"]), (StatusCode::FORBIDDEN, &json!(50013)));
    let revoked = http.call(Method::DELETE, &path, Some(&alice), None).await;
    assert_eq!((revoked.status, &revoked.body["code"]), (StatusCode::OK, &json!(code)), "{}", revoked.body);
    assert_eq!(http.call(Method::GET, &path, None, None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(join(&http, code, &carol).await.0, StatusCode::NOT_FOUND);
    assert_eq!(http.call(Method::DELETE, &path, Some(&alice), None).await.status, StatusCode::NOT_FOUND);
}

/// A refused join writes nothing (issue 23): a banned user's join is refused (403, 40007)
/// without taking one of the invite's uses, so a banned user cannot use an invite up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_join_takes_no_use_of_the_invite() {
    let server = Server::start(&[]).await;
    let http = server.http();
    let (alice, _) = http.register("alice").await;
    let (bob, bob_id) = http.register("bob").await;
    let (carol, _) = http.register("carol").await;
    let guild = http.post("/guilds", &alice, json!({ "name": "bans" })).await;
    let gid = guild.body["id"].as_str().unwrap();
    let channels = http.get(&format!("/guilds/{gid}/channels"), &alice).await;
    let cid = channels.body[0]["id"].as_str().unwrap();
    let banned = http.call(Method::PUT, &format!("/guilds/{gid}/bans/{bob_id}"), Some(&alice), Some(json!({}))).await;
    assert_eq!(banned.status, StatusCode::NO_CONTENT, "{}", banned.body);

    let once = http.post(&format!("/channels/{cid}/invites"), &alice, json!({ "max_uses": 1 })).await;
    let code = once.body["code"].as_str().unwrap();
    for _ in 0..3 {
        let (status, body) = join(&http, code, &bob).await;
        assert_eq!((status, &body["code"]), (StatusCode::FORBIDDEN, &json!(40007)), "{body}");
    }
    let listed = http.get(&format!("/guilds/{gid}/invites"), &alice).await;
    assert_eq!(listed.body[0]["uses"], json!(0), "{}", listed.body);
    let (status, body) = join(&http, code, &carol).await;
    assert_eq!((status, &body["uses"], &body["new_member"]), (StatusCode::OK, &json!(1), &json!(true)), "{body}");
}
