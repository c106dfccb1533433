//! Search in a cluster: two `guildhall serve --cluster` nodes route searches over NATS to
//! the `guildhall worker indexer` that owns the scope's cell; a second worker takes cells
//! on the ring; a kill -9 of a worker hands its cells to the other, which rebuilds them
//! from storage and the stream (Cassandra, nats-server, real processes).

use std::time::{Duration, Instant};

use guildhall_e2e::{Http, Server};
use hyper::StatusCode;
use serde_json::{json, Value};

/// Searches until the index answers with `total` results (202s meanwhile, and fewer results
/// while the newest messages are being indexed), within `limit`; returns the answer and how
/// long it took.
async fn until_total(http: &Http, token: &str, path: &str, total: u64, limit: Duration) -> (Value, Duration) {
    let started = Instant::now();
    loop {
        let answer = http.get(path, token).await;
        match answer.status {
            StatusCode::ACCEPTED => assert_eq!(answer.body["code"], 110000, "{}", answer.body),
            StatusCode::OK => {
                let got = answer.body["total_results"].as_u64().unwrap();
                assert!(got <= total, "{path}: {got} results, more than the {total} messages: {}", answer.body);
                if got == total {
                    return (answer.body, started.elapsed());
                }
            }
            other => panic!("{path}: {other} {}", answer.body),
        }
        assert!(started.elapsed() < limit, "{path}: not {total} results within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn post(http: &Http, token: &str, channel: &str, content: &str) {
    let m = http.post(&format!("/channels/{channel}/messages"), token, json!({ "content": content })).await;
    assert_eq!(m.status, StatusCode::OK, "{}", m.body);
}

/// The cells each worker runs now.
async fn owned(workers: &[&Server]) -> Vec<u64> {
    let mut owned = Vec::new();
    for w in workers {
        owned.push(w.metric("guildhall_search_cells_owned").await);
    }
    owned
}

async fn until_owned(workers: &[&Server], want: impl Fn(&[u64]) -> bool) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = owned(workers).await;
        if want(&now) {
            return now;
        }
        assert!(Instant::now() < deadline, "cells owned stayed {now:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_reach_the_owning_worker_and_survive_its_kill_9() {
    let cells = [("GUILDHALL_SEARCH__CELLS", "6")];
    let Some(nodes) = Server::start_cluster(2, &cells).await else { return };
    let http: Vec<Http> = nodes.iter().map(Server::http).collect();
    let mut first = nodes[0].start_indexer().await;
    until_owned(&[&first], |o| o == [6]).await;

    let (alice, _) = http[0].register("alice").await;
    let (bob, bob_id) = http[1].register("bob").await;
    let guild = http[0].post("/guilds", &alice, json!({ "name": "clustered" })).await;
    let gid = guild.body["id"].as_str().unwrap().to_owned();
    let channel =
        http[1].get(&format!("/guilds/{gid}/channels"), &alice).await.body[0]["id"].as_str().unwrap().to_owned();
    for i in 0..30 {
        post(&http[i % 2], &alice, &channel, &format!("needle number {i}")).await;
    }
    post(&http[0], &alice, &channel, "hay").await;
    let dm = http[0].post("/users/@me/channels", &alice, json!({ "recipient_id": bob_id })).await;
    assert_eq!(dm.status, StatusCode::OK, "{}", dm.body);
    let dm = dm.body["id"].as_str().unwrap().to_owned();
    post(&http[0], &alice, &dm, "a private needle").await;

    // Any node answers, from the worker that owns the cell.
    let search = format!("/guilds/{gid}/messages/search?content=needle");
    let (body, took) = until_total(&http[1], &alice, &search, 30, Duration::from_secs(30)).await;
    assert_eq!(body["messages"].as_array().unwrap().len(), 25, "a page of 25");
    eprintln!("searchable through the cluster after {} ms", took.as_millis());
    let dms = "/users/@me/messages/search?content=needle";
    let (body, _) = until_total(&http[0], &bob, dms, 1, Duration::from_secs(30)).await;
    assert_eq!(body["messages"][0][0]["content"], "a private needle");

    // A second worker: the ring gives it its share; the cells it takes are rebuilt there.
    let second = nodes[1].start_indexer().await;
    let split = until_owned(&[&first, &second], |o| o.iter().sum::<u64>() == 6 && o[1] > 0).await;
    eprintln!("cells owned after a second worker joined: {split:?}");
    until_total(&http[0], &alice, &search, 30, Duration::from_secs(60)).await;
    for i in 30..40 {
        post(&http[i % 2], &alice, &channel, &format!("needle number {i}")).await;
    }
    until_total(&http[1], &alice, &search, 40, Duration::from_secs(30)).await;

    // kill -9 of the first worker: the second takes its cells over once its lease ran out.
    first.kill9();
    let killed = Instant::now();
    until_owned(&[&second], |o| o == [6]).await;
    let owned_after = killed.elapsed();
    let (_, _) = until_total(&http[1], &alice, &search, 40, Duration::from_secs(60)).await;
    let answering_after = killed.elapsed();
    eprintln!(
        "take-over after kill -9: the survivor owned every cell after {} ms, answered in full after {} ms",
        owned_after.as_millis(),
        answering_after.as_millis()
    );
    // Indexed exactly once: a rebuild and the live stream together count each message once.
    post(&http[0], &alice, &channel, "needle number 40").await;
    let (body, _) = until_total(&http[0], &alice, &search, 41, Duration::from_secs(30)).await;
    assert_eq!(body["total_results"], 41);
    assert!(second.metric("guildhall_search_cells_taken_total").await >= 6);
    // DMs after a cell moved: an answer that says the index is incomplete while the DM is
    // backfilled in the rebuilt cell, never a silently short one; then the DM again.
    let answer = http[1].get(dms, &bob).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    if answer.body["total_results"] != 1 {
        assert_eq!(answer.body["doing_deep_historical_index"], true, "{}", answer.body);
    }
    let (body, _) = until_total(&http[1], &bob, dms, 1, Duration::from_secs(30)).await;
    assert_eq!(body["messages"][0][0]["content"], "a private needle");
}

/// JetStream refusing appends (its message limit reached, new ones discarded): writes are
/// still acknowledged (their events wait in storage, the outbox), none of them is lost:
/// once the stream takes entries again, every message is found, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_refuses_appends_loses_no_acknowledged_message() {
    use async_nats::jetstream::stream::DiscardPolicy;
    let Some(nodes) = Server::start_cluster(1, &[("GUILDHALL_SEARCH__CELLS", "2")]).await else { return };
    let _worker = nodes[0].start_indexer().await;
    let http = nodes[0].http();
    let (alice, _) = http.register("alice").await;
    let guild = http.post("/guilds", &alice, json!({ "name": "outage" })).await;
    let gid = guild.body["id"].as_str().unwrap().to_owned();
    let channel = http.get(&format!("/guilds/{gid}/channels"), &alice).await.body[0]["id"].as_str().unwrap().to_owned();
    for i in 0..5 {
        post(&http, &alice, &channel, &format!("needle before {i}")).await;
    }
    let search = format!("/guilds/{gid}/messages/search?content=needle");
    until_total(&http, &alice, &search, 5, Duration::from_secs(30)).await;

    // The stream takes no more entries.
    let cluster = nodes[0].env_value("GUILDHALL_CLUSTER__NAME").expect("a cluster name");
    let client = async_nats::connect(guildhall_e2e::nats_url().unwrap()).await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    let mut stream = jetstream.get_stream(format!("{cluster}_events")).await.unwrap();
    let mut config = stream.info().await.unwrap().config.clone();
    let held = stream.info().await.unwrap().state.messages;
    let (open_limit, open_discard) = (config.max_messages, config.discard);
    config.max_messages = held as i64;
    config.discard = DiscardPolicy::New;
    jetstream.update_stream(config.clone()).await.unwrap();
    let failures = nodes[0].metric("guildhall_event_relay_failures_total").await;
    for i in 0..20 {
        post(&http, &alice, &channel, &format!("needle during {i}")).await; // acknowledged
    }
    nodes[0].wait_for_metric_at_least("guildhall_event_relay_failures_total", failures + 1).await;
    let during = http.get(&search, &alice).await;
    assert_eq!(during.body["total_results"], 5, "nothing reached the index: {}", during.body);

    // The stream takes entries again: the relays catch up from storage, in order.
    config.max_messages = open_limit;
    config.discard = open_discard;
    jetstream.update_stream(config).await.unwrap();
    let (body, took) = until_total(&http, &alice, &search, 25, Duration::from_secs(60)).await;
    eprintln!("every message searchable {} ms after the stream came back", took.as_millis());
    assert_eq!(body["total_results"], 25, "each acknowledged message once");
}

/// A guild's indexer that spins forever on a cluster's indexing worker is disabled at its
/// third fault, and the guild's audit log records it: the worker, which runs no actors,
/// asks a node over NATS to hand the notice to the guild's actor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_indexer_a_worker_disables_is_in_its_guilds_audit_log() {
    let Some(nodes) = Server::start_cluster(1, &[("GUILDHALL_SEARCH__CELLS", "2")]).await else { return };
    let _worker = nodes[0].start_indexer().await;
    let http = nodes[0].http();
    let (alice, _) = http.register("alice").await;
    let guild = http.post("/guilds", &alice, json!({ "name": "spun" })).await;
    let gid = guild.body["id"].as_str().unwrap().to_owned();
    let channel = http.get(&format!("/guilds/{gid}/channels"), &alice).await.body[0]["id"].as_str().unwrap().to_owned();
    let installed = http.install_plugin(&gid, &alice, "spinner", guildhall_e2e::component("hostile_indexer")).await;
    assert_eq!(installed.status, StatusCode::CREATED, "{}", installed.body);
    let plugin_id = installed.body["id"].as_str().unwrap().to_owned();
    let config = json!({ "config": { "mode": "loop" } });
    let plugin = format!("/guilds/{gid}/plugins/{plugin_id}");
    let patched = http.call(hyper::Method::PATCH, &plugin, Some(&alice), Some(config)).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    // One message at a time, each its own batch: a fault each (the default indexes it).
    for i in 0..3 {
        post(&http, &alice, &channel, &format!("spun number{i}")).await;
        let search = format!("/guilds/{gid}/messages/search?content=number{i}");
        until_total(&http, &alice, &search, 1, Duration::from_secs(30)).await;
    }
    let started = Instant::now();
    loop {
        let r = http.get(&format!("/guilds/{gid}/audit-logs?action_type=81"), &alice).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let entries = r.body["audit_log_entries"].as_array().unwrap().clone();
        let disabled = entries.iter().find(|e| {
            e["target_id"] == plugin_id.as_str()
                && e["reason"].as_str().is_some_and(|r| r.contains("disabled after 3 faults"))
        });
        if disabled.is_some() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no audit entry of the disabling: {entries:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let list = http.get(&format!("/guilds/{gid}/plugins"), &alice).await.body;
    let stored = list.as_array().unwrap().iter().find(|p| p["id"] == plugin_id.as_str()).unwrap().clone();
    assert_eq!(stored["enabled"], false, "{stored}");
}
