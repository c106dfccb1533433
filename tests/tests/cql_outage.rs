//! The database goes away while the host runs: requests that need it answer 503 with a
//! JSON error, the gateway stays up, nothing unwritten is acknowledged, and everything
//! recovers on its own when the database returns. A host started while the database is
//! down keeps retrying (it neither exits nor serves) and comes up when the database does.
//!
//! This stops and restarts the shared development node (deploy/dev/cassandra), so it is
//! the only test in its binary.

use std::process::Command;
use std::time::{Duration, Instant};

use guildhall_e2e::{Server, ALL_INTENTS};
use hyper::StatusCode;
use serde_json::json;

fn cassandra(action: &str) {
    let script = guildhall_e2e::repo_root().join("deploy/dev/cassandra");
    let status = Command::new(script).arg(action).status().expect("run deploy/dev/cassandra");
    assert!(status.success(), "deploy/dev/cassandra {action} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_gives_503s_and_recovers() {
    let Some(node) = guildhall_e2e::cql_node() else { return };
    let Some(server) = Server::start_on_cql(&[]).await else { return };
    let http = server.http();
    let (alice, _) = http.register("alice").await;
    let gid = http.post("/guilds", &alice, json!({ "name": "g" })).await.body["id"].as_str().unwrap().to_owned();
    let cid = http.get(&format!("/guilds/{gid}/channels"), &alice).await.body[0]["id"].as_str().unwrap().to_owned();
    let messages = format!("/channels/{cid}/messages");
    let mut gw = server.gateway().await;
    gw.identify(&alice, ALL_INTENTS).await;

    let mut acknowledged = Vec::new();
    let before = http.post(&messages, &alice, json!({ "content": "before" })).await;
    assert_eq!(before.status, StatusCode::OK);
    acknowledged.push(before.body["id"].as_str().unwrap().to_owned());
    gw.dispatch("MESSAGE_CREATE").await;

    cassandra("down");
    let mut refused = 0;
    for i in 0..3 {
        let write = http.post(&messages, &alice, json!({ "content": format!("during {i}") })).await;
        match write.status {
            StatusCode::OK => acknowledged.push(write.body["id"].as_str().unwrap().to_owned()),
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(write.body["message"].as_str().unwrap().contains("unavailable"), "{}", write.body);
                assert!(write.body["code"].is_number());
                refused += 1;
            }
            other => panic!("a write during the outage answered {other}: {}", write.body),
        }
    }
    assert_eq!(refused, 3, "no write can be acknowledged without the database");
    let read = http.get(&messages, &alice).await;
    assert_eq!(read.status, StatusCode::SERVICE_UNAVAILABLE, "{}", read.body);
    // The gateway is still up: heartbeats are answered, the host serves what needs no database.
    gw.send(json!({ "op": 1, "d": gw.last_seq })).await;
    assert_eq!(gw.next().await["op"], 11);
    let health = http.raw(hyper::Method::GET, "/../healthz", None, vec![]).await;
    assert_ne!(health.status, StatusCode::SERVICE_UNAVAILABLE);

    // A second host starting now cannot reach the database: it must keep retrying.
    let late_storage = format!("scylla://{node}/gh_outage_late_{}", std::process::id());
    let late = tokio::spawn(async move { Server::start(&[("GUILDHALL_STORAGE", late_storage.as_str())]).await });
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!late.is_finished(), "a host without its database waits for it (and does not exit)");

    cassandra("up");
    let started = Instant::now();
    let after = loop {
        let write = http.post(&messages, &alice, json!({ "content": "after" })).await;
        if write.status == StatusCode::OK {
            break write;
        }
        assert_eq!(write.status, StatusCode::SERVICE_UNAVAILABLE, "{}", write.body);
        assert!(started.elapsed() < Duration::from_secs(90), "no recovery within 90 s of the database returning");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    acknowledged.push(after.body["id"].as_str().unwrap().to_owned());
    assert_eq!(gw.dispatch("MESSAGE_CREATE").await["d"]["content"], "after", "fan-out resumed on the same session");

    let history = http.get(&messages, &alice).await;
    assert_eq!(history.status, StatusCode::OK);
    let stored: Vec<String> =
        history.body.as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect();
    acknowledged.reverse();
    assert_eq!(stored, acknowledged, "exactly the acknowledged messages, newest first");

    // The host that started during the outage came up by itself and works.
    let late = tokio::time::timeout(Duration::from_secs(90), late).await.expect("the late host came up").unwrap();
    let (bob, _) = late.http().register("bob").await;
    assert_eq!(late.http().get("/users/@me", &bob).await.status, StatusCode::OK);
}
