//! No acknowledged write is lost to `kill -9`; SIGTERM shuts down cleanly.

use guildhall_e2e::{Server, ALL_INTENTS};
use hyper::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_kill_9() {
    let server = Server::start(&[]).await;
    let http = server.http();
    let (alice, _) = http.register("alice").await;
    let gid = http.post("/guilds", &alice, json!({ "name": "g" })).await.body["id"].as_str().unwrap().to_owned();
    let cid = http.get(&format!("/guilds/{gid}/channels"), &alice).await.body[0]["id"].as_str().unwrap().to_owned();

    // 8 concurrent writers; every id the API acknowledged is recorded.
    let mut tasks = Vec::new();
    for w in 0..8 {
        let (alice, cid) = (alice.clone(), cid.clone());
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..40 {
                let m = http
                    .post(&format!("/channels/{cid}/messages"), &alice, json!({ "content": format!("w{w} m{i}") }))
                    .await;
                assert_eq!(m.status, StatusCode::OK, "{}", m.body);
                acked.push(m.body["id"].as_str().unwrap().parse::<u64>().unwrap());
            }
            acked
        }));
    }
    let mut acked: Vec<u64> = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    // Killed the instant the last acknowledgement arrived: no graceful flush.
    let server = server.kill9_and_restart().await;
    let http = server.http();

    let mut stored: Vec<u64> = Vec::new();
    let mut before = String::new();
    loop {
        let q = if before.is_empty() { "limit=100".to_owned() } else { format!("limit=100&before={before}") };
        let page = http.get(&format!("/channels/{cid}/messages?{q}"), &alice).await;
        assert_eq!(page.status, StatusCode::OK, "the token and channel survived too: {}", page.body);
        let ids: Vec<u64> =
            page.body.as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().parse().unwrap()).collect();
        if ids.is_empty() {
            break;
        }
        before = ids.last().unwrap().to_string();
        stored.extend(ids);
    }
    acked.sort_unstable();
    stored.sort_unstable();
    assert_eq!(stored, acked, "every acknowledged message, and nothing else");
    assert_eq!(acked.len(), 320);

    // Ids keep increasing after the restart.
    let next = http.post(&format!("/channels/{cid}/messages"), &alice, json!({ "content": "after" })).await;
    assert!(next.body["id"].as_str().unwrap().parse::<u64>().unwrap() > *acked.last().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_sessions_with_1001_and_exits_cleanly() {
    let mut server = Server::start(&[]).await;
    let (alice, _) = server.http().register("alice").await;
    let mut gw = server.gateway().await;
    gw.identify(&alice, ALL_INTENTS).await;
    let exited_ok = tokio::task::spawn_blocking(move || {
        let ok = server.terminate();
        (ok, server)
    });
    assert_eq!(gw.expect_close().await, Some(1001));
    let (ok, _server) = exited_ok.await.unwrap();
    assert!(ok, "exit status 0 after a graceful shutdown");
}
