//! The database hangs while the host runs: the shared development node is frozen with
//! SIGSTOP, so its connections stay open and nothing answers (a hung disk, a stop-the-world
//! pause, a partition that drops packets). Every request still gets an answer within the
//! storage deadline, the gateway stays up, and when the database goes on: the host writes
//! again, every acknowledged message is stored once, a client's retries (same nonce, with
//! `enforce_nonce`) store each message once even where the timed-out write landed after
//! all, and the tasks the hang started are gone.
//!
//! This freezes the shared node, so it is the only test in its binary.

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use guildhall_e2e::{Server, ALL_INTENTS};
use hyper::StatusCode;
use serde_json::{json, Value};

fn cassandra(action: &str) {
    let script = guildhall_e2e::repo_root().join("deploy/dev/cassandra");
    let status = Command::new(script).arg(action).status().expect("run deploy/dev/cassandra");
    assert!(status.success(), "deploy/dev/cassandra {action} failed");
}

/// Lets the node go on however the test ends: a frozen node would fail every later test.
struct Frozen;

impl Drop for Frozen {
    fn drop(&mut self) {
        cassandra("resume");
    }
}

const CALL_TIMEOUT_MS: u64 = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_database_holds_nothing_forever_and_loses_nothing_acknowledged() {
    let Some(_node) = guildhall_e2e::cql_node() else { return };
    let timeout = CALL_TIMEOUT_MS.to_string();
    let Some(server) = Server::start_on_cql(&[("GUILDHALL_DATA__CALL_TIMEOUT_MS", timeout.as_str())]).await else {
        return;
    };
    let http = server.http();
    let (alice, _) = http.register("alice").await;
    let gid = http.post("/guilds", &alice, json!({ "name": "g" })).await.body["id"].as_str().unwrap().to_owned();
    let cid = http.get(&format!("/guilds/{gid}/channels"), &alice).await.body[0]["id"].as_str().unwrap().to_owned();
    let messages = format!("/channels/{cid}/messages");
    let (history_path, alice_token) = (messages.clone(), alice.clone());
    let mut gw = server.gateway().await;
    gw.identify(&alice_token, ALL_INTENTS).await;
    let post = move |nonce: String| {
        let (messages, alice) = (messages.clone(), alice.clone());
        async move {
            let body = json!({ "content": format!("m {nonce}"), "nonce": nonce, "enforce_nonce": true });
            let started = Instant::now();
            let answer = http.post(&messages, &alice, body).await;
            (answer, started.elapsed())
        }
    };
    let tasks_before = server.metric("guildhall_tasks_alive").await;

    // Posters write back to back, so that writes are on their way to the database when it
    // freezes: those time out in the host but land when it goes on.
    let answers: Arc<Mutex<HashMap<String, StatusCode>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let posters: Vec<_> = (0..8)
        .map(|poster| {
            let (answers, stop, post) = (answers.clone(), stop.clone(), post.clone());
            tokio::spawn(async move {
                for i in 0.. {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let nonce = format!("p{poster}-{i}");
                    let (answer, took) = post(nonce.clone()).await;
                    // The deadline for the token lookup, then for the write (a batch may wait
                    // for the one before it), and slack for a debug build.
                    let bound = Duration::from_millis(4 * CALL_TIMEOUT_MS + 2000);
                    assert!(took < bound, "{nonce} was answered after {took:?}");
                    match answer.status {
                        StatusCode::OK | StatusCode::SERVICE_UNAVAILABLE => {}
                        other => panic!("{nonce}: {other} {}", answer.body),
                    }
                    answers.lock().unwrap().insert(nonce, answer.status);
                }
            })
        })
        .collect();
    // Signals, not sleeps: writes acknowledged, calls timed out. Each waits 10 s at most.
    let acknowledged = || answers.lock().unwrap().values().filter(|s| **s == StatusCode::OK).count();
    let until = |what: &'static str, limit: Duration, done: &dyn Fn() -> bool| {
        let started = Instant::now();
        while !done() {
            assert!(started.elapsed() < limit, "{what} within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let writing = acknowledged();
    tokio::task::block_in_place(|| {
        until("posters writing", Duration::from_secs(10), &|| acknowledged() >= writing + 16)
    });

    // Three freezes, each longer than the deadline but shorter than the database's own
    // write timeout (2 s: it drops writes that waited longer): writes on their way when
    // it froze time out in the host, and some land when it goes on.
    for freeze in 0..3 {
        let timeouts = server.metric("guildhall_storage_timeouts_total").await;
        cassandra("pause");
        let frozen = Frozen;
        let frozen_at = Instant::now();
        // Frozen until the deadline has ended a call (1 s after the freeze at the soonest).
        loop {
            if server.metric("guildhall_storage_timeouts_total").await > timeouts {
                break;
            }
            assert!(frozen_at.elapsed() < Duration::from_millis(1800), "no call timed out while frozen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if freeze == 0 {
            // The gateway and the metrics need no database.
            gw.send(json!({ "op": 1, "d": gw.last_seq })).await;
            let ack = tokio::time::timeout(Duration::from_secs(2), async {
                loop {
                    if gw.next().await["op"] == 11 {
                        break;
                    }
                }
            })
            .await;
            assert!(ack.is_ok(), "a heartbeat is answered while the database hangs");
            assert_eq!(server.metric("guildhall_sessions").await, 1, "/metrics answers while the database hangs");
        }
        drop(frozen);
        // It goes on: writes are acknowledged again before the next freeze.
        let before = acknowledged();
        tokio::task::block_in_place(|| {
            until("writes after a freeze", Duration::from_secs(10), &|| acknowledged() > before)
        });
    }
    let refused_while_frozen =
        answers.lock().unwrap().values().filter(|s| **s == StatusCode::SERVICE_UNAVAILABLE).count();
    assert!(refused_while_frozen > 0, "writes were refused while the database hung");
    assert!(server.metric("guildhall_storage_timeouts_total").await > 0, "the deadline ended calls");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for poster in posters {
        poster.await.expect("a poster's answers held");
    }

    // The database goes on: the host writes again.
    let started = Instant::now();
    loop {
        let (answer, _) = post(format!("after-{}", started.elapsed().as_millis())).await;
        if answer.status == StatusCode::OK {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no recovery within 60 s: {}", answer.body);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let answers = answers.lock().unwrap().clone();
    let stored = stored_nonces(http, &history_path, &alice_token).await;
    let landed_anyway =
        answers.iter().filter(|(n, s)| **s == StatusCode::SERVICE_UNAVAILABLE && stored.contains(n)).count();
    // The client retries every write it was refused, as a Discord library would.
    for (nonce, status) in &answers {
        if *status == StatusCode::SERVICE_UNAVAILABLE {
            let (answer, _) = post(nonce.clone()).await;
            assert_eq!(answer.status, StatusCode::OK, "the retry of {nonce}: {}", answer.body);
        }
    }
    let stored = stored_nonces(http, &history_path, &alice_token).await;
    for nonce in answers.keys() {
        let copies = stored.iter().filter(|n| *n == nonce).count();
        assert_eq!(copies, 1, "{nonce} ({}) is stored exactly once", answers[nonce]);
    }
    println!(
        "{} writes: {} acknowledged, {refused_while_frozen} refused, {landed_anyway} of those landed anyway",
        answers.len(),
        answers.values().filter(|s| **s == StatusCode::OK).count(),
    );

    // What the hang started has ended: timed-out calls, their requests' connections.
    let settled = Instant::now();
    loop {
        let tasks = server.metric("guildhall_tasks_alive").await;
        if tasks <= tasks_before + 2 {
            break;
        }
        assert!(settled.elapsed() < Duration::from_secs(20), "{tasks} tasks alive, {tasks_before} before the hang");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The nonces of every message in the channel (their content is "m NONCE"), paging back
/// through the whole history.
async fn stored_nonces(http: guildhall_e2e::Http, messages: &str, token: &str) -> Vec<String> {
    let mut stored = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let page = match &before {
            Some(id) => format!("{messages}?limit=100&before={id}"),
            None => format!("{messages}?limit=100"),
        };
        let history = http.get(&page, token).await;
        assert_eq!(history.status, StatusCode::OK, "{}", history.body);
        let batch: &Vec<Value> = history.body.as_array().unwrap();
        let Some(last) = batch.last() else { return stored };
        before = Some(last["id"].as_str().unwrap().to_owned());
        let contents = batch.iter().filter_map(|m| m["content"].as_str());
        stored.extend(contents.filter_map(|c| c.strip_prefix("m ").map(str::to_owned)));
    }
}
