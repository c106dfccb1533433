//! Idempotent message creation (issue 11): Discord's `enforce_nonce`. A client that retries
//! a create (its answer lost, a 503) with the same nonce gets the message the first try
//! made, not a second one. (That a create whose caller gave up before the guild took it
//! does not happen at all is shown in the guild actor's tests.)

use guildhall_e2e::Server;
use hyper::StatusCode;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_with_an_enforced_nonce_gets_the_first_message() {
    let server = Server::start(&[]).await;
    let http = server.http();
    let (alice, _) = http.register("alice").await;
    let (bob, _) = http.register("bob").await;
    let guild = http.post("/guilds", &alice, json!({ "name": "retries" })).await;
    let gid = guild.body["id"].as_str().unwrap();
    let channels = http.get(&format!("/guilds/{gid}/channels"), &alice).await;
    let cid = channels.body[0]["id"].as_str().unwrap();
    let invite = http.post(&format!("/channels/{cid}/invites"), &alice, json!({})).await;
    let code = invite.body["code"].as_str().unwrap();
    http.call(hyper::Method::POST, &format!("/invites/{code}"), Some(&bob), None).await;
    let path = format!("/channels/{cid}/messages");
    let send = |token: &str, body: Value| {
        let (token, path) = (token.to_owned(), path.clone());
        async move {
            let a = http.post(&path, &token, body).await;
            assert_eq!(a.status, StatusCode::OK, "{}", a.body);
            a.body
        }
    };

    let first = send(&alice, json!({ "content": "once", "nonce": "abc", "enforce_nonce": true })).await;
    let retry = send(&alice, json!({ "content": "once", "nonce": "abc", "enforce_nonce": true })).await;
    assert_eq!(retry["id"], first["id"], "the retry got the first message");
    assert_eq!((&retry["content"], &retry["nonce"]), (&json!("once"), &json!("abc")));
    // Others' nonces, other nonces, a number that looks the same, or no enforce_nonce:
    // new messages.
    let mut made = vec![first["id"].clone()];
    for (token, body) in [
        (&bob, json!({ "content": "bob's", "nonce": "abc", "enforce_nonce": true })),
        (&alice, json!({ "content": "other", "nonce": "abd", "enforce_nonce": true })),
        (&alice, json!({ "content": "number", "nonce": 123, "enforce_nonce": true })),
        (&alice, json!({ "content": "string", "nonce": "123", "enforce_nonce": true })),
        (&alice, json!({ "content": "twice", "nonce": "abc" })),
    ] {
        made.push(send(token, body).await["id"].clone());
    }
    let history = http.get(&format!("{path}?limit=100"), &alice).await;
    let stored: Vec<Value> = history.body.as_array().unwrap().iter().rev().map(|m| m["id"].clone()).collect();
    assert_eq!(stored, made, "one message per create but the retry");

    // A deleted message's nonce makes a new one.
    let deleted = made.last().unwrap().as_str().unwrap();
    let a = http.call(hyper::Method::DELETE, &format!("{path}/{deleted}"), Some(&alice), None).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let again = send(&alice, json!({ "content": "after delete", "nonce": "abc", "enforce_nonce": true })).await;
    assert!(!made.contains(&again["id"]), "a new message: {again}");
}
