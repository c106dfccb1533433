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

/// Ids survive a restart whatever the clock says: the host keeps a reservation on disk
/// (`id-reservation-N` in the data directory), issues no id past it, and after a restart
/// none before it. A clock far behind the last run's reservation (it stepped back) makes
/// the host refuse to start rather than issue ids a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_after_a_restart_come_after_everything_reserved_before() {
    let server = Server::start(&[]).await;
    let http = server.http();
    let (alice, _) = http.register("alice").await;
    let gid = http.post("/guilds", &alice, json!({ "name": "ids" })).await.body["id"].as_str().unwrap().to_owned();
    let reservation = server.data_dir.join("id-reservation-0");
    let reserved: u64 = std::fs::read_to_string(&reservation).expect("a reservation on disk").parse().unwrap();
    let unix_ms = |id: &str| (id.parse::<u64>().unwrap() >> 22) + 1_420_070_400_000;
    assert!(unix_ms(&gid) < reserved, "ids stay within the reservation");

    let mut server = server.kill9_and_restart().await;
    let http = server.http();
    let (bob, _) = http.register("bob").await;
    let gid = http.post("/guilds", &bob, json!({ "name": "after" })).await.body["id"].as_str().unwrap().to_owned();
    assert!(unix_ms(&gid) >= reserved, "the first ids after the restart come after the old reservation");

    // The clock a minute behind the reservation (as after a step back): refused.
    let data_dir = server.data_dir.clone();
    server.kill9();
    let ahead = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64 + 60_000;
    std::fs::write(data_dir.join("id-reservation-0"), ahead.to_string()).unwrap();
    let output = tokio::process::Command::new(guildhall_e2e::binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data_dir)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(20), output).await.expect("it exits").unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "started with its clock behind the reservation");
    assert!(stderr.contains("refusing to start until the clock is right"), "{stderr}");
}

/// Two single hosts on one Scylla keyspace left on the same `[ids]` would issue the same
/// ids (and overwrite each other's records): the second refuses to start. A host that
/// restarts (its own data directory) takes its lease back at once; another worker id
/// starts beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_cannot_share_a_node_id_on_shared_storage() {
    let Some(node) = guildhall_e2e::cql_node() else { return };
    let keyspace = format!("gh_e2e_lease_{}", std::process::id());
    let storage = format!("scylla://{node}/{keyspace}");
    let first = Server::start(&[("GUILDHALL_STORAGE", &storage)]).await;
    let other_dir = std::env::temp_dir().join(format!("guildhall-e2e-lease-{}", std::process::id()));
    let output = tokio::process::Command::new(guildhall_e2e::binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--storage", &storage, "--data-dir"])
        .arg(&other_dir)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), output).await.expect("it exits").unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a second host started as node 0");
    assert!(stderr.contains("is held by another host on this storage"), "{stderr}");
    let _ = std::fs::remove_dir_all(&other_dir);

    let beside = Server::start(&[("GUILDHALL_STORAGE", &storage), ("GUILDHALL_IDS__WORKER", "1")]).await;
    let (token, _) = beside.http().register("beside").await;
    assert_eq!(beside.http().post("/guilds", &token, json!({ "name": "w1" })).await.status, StatusCode::CREATED);
    let restarted = first.kill9_and_restart().await;
    let (token, _) = restarted.http().register("again").await;
    assert_eq!(restarted.http().post("/guilds", &token, json!({ "name": "w0" })).await.status, StatusCode::CREATED);
}
