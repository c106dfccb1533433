//! Message search end to end on a single host: the real binary, REST in, the stream, the
//! indexing worker, tantivy, REST out. What is found, how soon, by whom; edits, deletes,
//! CJK text; DMs; and a kill -9 that leaves every message indexed exactly once.

use std::time::{Duration, Instant};

use guildhall_e2e::{component, Http, Server};
use hyper::StatusCode;
use serde_json::{json, Value};

/// How long a message may take to become searchable here (the goal is a second at p99).
const SEARCHABLE_WITHIN: Duration = Duration::from_secs(5);

fn found(answer: &Value) -> Vec<String> {
    answer["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("no messages in {answer}"))
        .iter()
        .map(|hit| {
            assert_eq!(hit[0]["hit"], true, "{hit}");
            hit[0]["content"].as_str().unwrap().to_owned()
        })
        .collect()
}

async fn search(http: &Http, token: &str, path: &str) -> (StatusCode, Value) {
    let answer = http.get(path, token).await;
    (answer.status, answer.body)
}

/// Searches until `want` is what is found (or the time is up), and says how long it took.
async fn until_found(http: &Http, token: &str, path: &str, want: &[&str]) -> Duration {
    let started = Instant::now();
    loop {
        let (status, body) = search(http, token, path).await;
        if status == StatusCode::ACCEPTED {
            // A guild's first messages: its (short) history is read from storage first.
            assert_eq!(body["code"], 110000, "{body}");
            assert!(started.elapsed() < SEARCHABLE_WITHIN, "{path}: still 202 ({body})");
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        let got = found(&body);
        if got == want {
            return started.elapsed();
        }
        assert!(started.elapsed() < SEARCHABLE_WITHIN, "{path}: found {got:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn post(http: &Http, token: &str, channel: &str, content: &str) -> String {
    let m = http.post(&format!("/channels/{channel}/messages"), token, json!({ "content": content })).await;
    assert_eq!(m.status, StatusCode::OK, "{}", m.body);
    m.body["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_found_soon_by_those_who_may_read_them() {
    let server = Server::start(&[]).await;
    let http = server.http();
    let (alice, _) = http.register("alice").await;
    let (bob, bob_id) = http.register("bob").await;
    let (carol, _) = http.register("carol").await;
    let guild = http.post("/guilds", &alice, json!({ "name": "searchers" })).await;
    let gid = guild.body["id"].as_str().unwrap().to_owned();
    let general = http.get(&format!("/guilds/{gid}/channels"), &alice).await.body[0]["id"].as_str().unwrap().to_owned();
    // A channel @everyone cannot view.
    let hidden = http.post(&format!("/guilds/{gid}/channels"), &alice, json!({ "name": "staff" })).await;
    assert_eq!(hidden.status, StatusCode::CREATED, "{}", hidden.body);
    let hidden = hidden.body["id"].as_str().unwrap().to_owned();
    let deny_view = json!({ "permission_overwrites": [{ "id": gid, "type": 0, "allow": "0", "deny": "1024" }] });
    let patched = http.call(hyper::Method::PATCH, &format!("/channels/{hidden}"), Some(&alice), Some(deny_view)).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    let invite = http.post(&format!("/channels/{general}/invites"), &alice, json!({})).await;
    let code = invite.body["code"].as_str().unwrap().to_owned();
    assert_eq!(http.post(&format!("/invites/{code}"), &bob, json!({})).await.status, StatusCode::OK);

    let peek = http.get(&format!("/channels/{hidden}"), &bob).await;
    assert_eq!(peek.status, StatusCode::FORBIDDEN, "bob cannot view the staff channel: {}", peek.body);
    let hello = post(&http, &alice, &general, "Hello searchable World").await;
    post(&http, &alice, &hidden, "secret searchable plans").await;
    post(&http, &bob, &general, "明日は東京都に行きます").await;
    post(&http, &bob, &general, "read https://Docs.Example.com/guide first").await;
    let q = |query: &str| format!("/guilds/{gid}/messages/search?{query}");

    let took =
        until_found(&http, &alice, &q("content=searchable"), &["secret searchable plans", "Hello searchable World"])
            .await;
    println!("searchable after {took:?}");
    until_found(&http, &bob, &q("content=searchable"), &["Hello searchable World"]).await;
    let (_, hidden_for_bob) = search(&http, &bob, &q("content=secret")).await;
    assert_eq!((hidden_for_bob["total_results"].as_u64(), found(&hidden_for_bob).len()), (Some(0), 0));
    // Folding, prefixes, phrases, CJK substrings, filters.
    until_found(&http, &bob, &q("content=HELLO+sear"), &["Hello searchable World"]).await;
    until_found(&http, &bob, &q("content=%22hello+searchable%22"), &["Hello searchable World"]).await;
    until_found(&http, &bob, &q("content=%22hello+world%22&slop=0"), &[]).await;
    until_found(&http, &bob, &q("content=%E6%9D%B1%E4%BA%AC"), &["明日は東京都に行きます"]).await; // 東京
    until_found(&http, &bob, &q("content=%E4%BA%AC%E9%83%BD%E3%81%AB"), &["明日は東京都に行きます"]).await; // 京都に
    until_found(&http, &bob, &q("has=link"), &["read https://Docs.Example.com/guide first"]).await;
    until_found(&http, &bob, &q("link_hostname=docs.example.com"), &["read https://Docs.Example.com/guide first"])
        .await;
    until_found(&http, &bob, &q(&format!("author_id={bob_id}&has=-link")), &["明日は東京都に行きます"]).await;
    until_found(&http, &bob, &q(&format!("channel_id={hidden}")), &[]).await;
    let (_, oldest) = search(&http, &alice, &q("sort_order=asc&limit=1")).await;
    assert_eq!(
        (found(&oldest), oldest["total_results"].as_u64()),
        (vec!["Hello searchable World".to_owned()], Some(4))
    );

    // Edits and deletes are reflected.
    let edit = http
        .call(
            hyper::Method::PATCH,
            &format!("/channels/{general}/messages/{hello}"),
            Some(&alice),
            Some(json!({ "content": "Goodbye everyone" })),
        )
        .await;
    assert_eq!(edit.status, StatusCode::OK, "{}", edit.body);
    until_found(&http, &bob, &q("content=goodbye"), &["Goodbye everyone"]).await;
    until_found(&http, &bob, &q("content=hello"), &[]).await;
    let deleted =
        http.call(hyper::Method::DELETE, &format!("/channels/{general}/messages/{hello}"), Some(&alice), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    until_found(&http, &bob, &q("content=goodbye"), &[]).await;

    // Strangers and bad queries.
    let (status, body) = search(&http, &carol, &q("content=searchable")).await;
    assert_eq!((status, body["code"].as_u64()), (StatusCode::FORBIDDEN, Some(50001)), "{body}");
    let (status, body) = search(&http, &bob, &q("limit=26")).await;
    assert_eq!((status, body["code"].as_u64()), (StatusCode::BAD_REQUEST, Some(50035)), "{body}");
    let (status, body) = search(&http, &bob, &q("has=nothing")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // Bob leaves: the guild's messages are no longer his to find.
    let left = http.call(hyper::Method::DELETE, &format!("/users/@me/guilds/{gid}"), Some(&bob), None).await;
    assert_eq!(left.status, StatusCode::NO_CONTENT, "{}", left.body);
    let (status, _) = search(&http, &bob, &q("content=searchable")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_dms_are_one_searchable_set_of_their_own() {
    let server = Server::start(&[]).await;
    let http = server.http();
    let (alice, alice_id) = http.register("alice").await;
    let (bob, bob_id) = http.register("bob").await;
    let (carol, carol_id) = http.register("carol").await;
    let open = |token: String, to: String| {
        let http = server.http();
        async move {
            let dm = http.post("/users/@me/channels", &token, json!({ "recipient_id": to })).await;
            assert_eq!(dm.status, StatusCode::OK, "{}", dm.body);
            dm.body["id"].as_str().unwrap().to_owned()
        }
    };
    let alice_bob = open(alice.clone(), bob_id.clone()).await;
    let alice_carol = open(alice.clone(), carol_id.clone()).await;
    post(&http, &alice, &alice_bob, "lunch plans with bob").await;
    post(&http, &carol, &alice_carol, "lunch plans with carol").await;
    let _ = alice_id;

    until_found(
        &http,
        &alice,
        "/users/@me/messages/search?content=lunch",
        &["lunch plans with carol", "lunch plans with bob"],
    )
    .await;
    until_found(&http, &bob, "/users/@me/messages/search?content=lunch", &["lunch plans with bob"]).await;
    until_found(&http, &carol, "/users/@me/messages/search?content=lunch", &["lunch plans with carol"]).await;
    until_found(
        &http,
        &bob,
        &format!("/channels/{alice_bob}/messages/search?content=plans"),
        &["lunch plans with bob"],
    )
    .await;
    let (status, _) = search(&http, &carol, &format!("/channels/{alice_bob}/messages/search?content=plans")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "another's DM");
}

/// kill -9 while messages are being indexed, then a restart: every acknowledged message is
/// in the index exactly once (the total counts documents).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_indexing_leaves_every_message_indexed_once() {
    let server = Server::start(&[]).await;
    let http = server.http();
    let (alice, _) = http.register("alice").await;
    let guild = http.post("/guilds", &alice, json!({ "name": "crash" })).await;
    let gid = guild.body["id"].as_str().unwrap().to_owned();
    let general = http.get(&format!("/guilds/{gid}/channels"), &alice).await.body[0]["id"].as_str().unwrap().to_owned();
    const N: usize = 300;
    // Posted from several tasks at once, so batches are indexing when the process dies.
    let mut tasks = Vec::new();
    for t in 0..4 {
        let (http, alice, general) = (server.http(), alice.clone(), general.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..N / 4 {
                post(&http, &alice, &general, &format!("crash test t{t} n{i}")).await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let server = server.kill9_and_restart().await;
    let http = server.http();
    let path = format!("/guilds/{gid}/messages/search?content=crash");
    let started = Instant::now();
    loop {
        let (status, body) = search(&http, &alice, &path).await;
        assert!(started.elapsed() < Duration::from_secs(30), "{status} {body} 30 s after the restart");
        if status == StatusCode::ACCEPTED {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        assert_eq!(status, StatusCode::OK, "{body}");
        let total = body["total_results"].as_u64().unwrap() as usize;
        assert!(total <= N, "{total} documents for {N} messages: indexed twice");
        if total == N {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "only {total} of {N} indexed after the restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An existing deployment turns search on: its guilds have history and no index. A search
/// answers Discord's 202 (and starts the backfill) until the recent history is indexed, then
/// finds every message, however old, and never a silently partial answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guild_with_history_and_no_index_answers_202_until_backfilled_then_the_full_count() {
    let server = Server::start(&[("GUILDHALL_SEARCH__ENABLED", "false")]).await;
    let http = server.http();
    let (alice, _) = http.register("alice").await;
    let guild = http.post("/guilds", &alice, json!({ "name": "history" })).await;
    let gid = guild.body["id"].as_str().unwrap().to_owned();
    let general = http.get(&format!("/guilds/{gid}/channels"), &alice).await.body[0]["id"].as_str().unwrap().to_owned();
    const N: usize = 120;
    for i in 0..N {
        post(&http, &alice, &general, &format!("history note {i}")).await;
    }
    let path = format!("/guilds/{gid}/messages/search?content=history");
    let (status, body) = search(&http, &alice, &path).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "search is off: {body}");

    let server = server.restart_with(&[("GUILDHALL_SEARCH__ENABLED", "true")]).await;
    let http = server.http();
    let (status, first) = search(&http, &alice, &path).await;
    assert_eq!(status, StatusCode::ACCEPTED, "nothing is indexed yet: {first}");
    assert_eq!(first["message"], "Index not yet available. Try again later", "{first}");
    assert_eq!(first["code"], 110000, "{first}");
    assert!(first["documents_indexed"].is_u64() && first["retry_after"].as_u64() > Some(0), "{first}");
    let started = Instant::now();
    let (mut not_ready, mut documents_seen) = (1, 0);
    let body = loop {
        let (status, body) = search(&http, &alice, &path).await;
        assert!(started.elapsed() < Duration::from_secs(30), "not backfilled after 30 s: {status} {body}");
        if status == StatusCode::ACCEPTED {
            let documents = body["documents_indexed"].as_u64().unwrap();
            assert!(documents >= documents_seen && documents <= N as u64, "{documents} after {documents_seen}");
            (not_ready, documents_seen) = (not_ready + 1, documents);
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        assert_eq!(status, StatusCode::OK, "{body}");
        break body;
    };
    println!("backfilled after {:?} ({not_ready} answers 202)", started.elapsed());
    assert_eq!(body["total_results"].as_u64(), Some(N as u64), "every message: {body}");
    assert_eq!(body["doing_deep_historical_index"], false, "{body}");
    let (_, oldest) = search(&http, &alice, &format!("{path}&sort_order=asc&limit=1")).await;
    assert_eq!(found(&oldest), vec!["history note 0".to_owned()]);
    // Live messages keep being indexed beside it.
    post(&http, &alice, &general, "history after the backfill").await;
    until_found(
        &http,
        &alice,
        &format!("/guilds/{gid}/messages/search?content=after"),
        &["history after the backfill"],
    )
    .await;
}

/// The guild's audit log for `query` once it holds an entry (entries are stored off the
/// worker's path, so they may land a moment later).
async fn audit_entries(http: &Http, guild: &str, token: &str, query: &str) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let r = http.get(&format!("/guilds/{guild}/audit-logs?{query}"), token).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let entries = r.body["audit_log_entries"].as_array().unwrap().clone();
        if !entries.is_empty() || started.elapsed() > Duration::from_secs(10) {
            return entries;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A guild of its own: (guild id, its first channel).
async fn guild_of(http: &Http, token: &str, name: &str) -> (String, String) {
    let guild = http.post("/guilds", token, json!({ "name": name })).await;
    let gid = guild.body["id"].as_str().unwrap().to_owned();
    let channel = http.get(&format!("/guilds/{gid}/channels"), token).await.body[0]["id"].as_str().unwrap().to_owned();
    (gid, channel)
}

/// The bare-links example indexer, in JavaScript and in Python (sdk/js, sdk/python): a
/// guild that installs it finds links written without a scheme, old messages too (they are
/// indexed again with it), and a guild without it does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guilds_own_indexer_changes_what_is_found_old_messages_too() {
    let server = Server::start(&[]).await;
    let http = server.http();
    let (alice, _) = http.register("alice").await;
    let (plain, plain_channel) = guild_of(&http, &alice, "plain").await;
    post(&http, &alice, &plain_channel, "docs at example.org/guide").await;
    for component_name in ["bare_links_js", "bare_links_py"] {
        let (gid, general) = guild_of(&http, &alice, component_name).await;
        let q = |query: &str| format!("/guilds/{gid}/messages/search?{query}");
        post(&http, &alice, &general, "docs at example.org/guide").await;
        until_found(&http, &alice, &q("content=docs"), &["docs at example.org/guide"]).await;
        until_found(&http, &alice, &q("has=link"), &[]).await;

        let installed = http.install_plugin(&gid, &alice, "bare-links", component(component_name)).await;
        assert_eq!(installed.status, StatusCode::CREATED, "{}", installed.body);
        assert_eq!(installed.body["kind"], "indexer", "{}", installed.body);
        post(&http, &alice, &general, "more at Guildhall.dev, see https://x.example.com/a").await;
        let both = ["more at Guildhall.dev, see https://x.example.com/a", "docs at example.org/guide"];
        until_found(&http, &alice, &q("has=link"), &both).await;
        until_found(&http, &alice, &q("link_hostname=example.org"), &["docs at example.org/guide"]).await;
        until_found(&http, &alice, &q("link_hostname=guildhall.dev"), &both[..1]).await;
    }
    // The guild without it: the default indexer's view.
    let plain_search = format!("/guilds/{plain}/messages/search?has=link");
    until_found(
        &http,
        &alice,
        &format!("/guilds/{plain}/messages/search?content=docs"),
        &["docs at example.org/guide"],
    )
    .await;
    let (_, body) = search(&http, &alice, &plain_search).await;
    assert_eq!(body["total_results"], 0, "{body}");
}

/// A guild's indexer that spins forever is stopped at its deadline, each batch goes to the
/// default indexer instead (nothing is lost to search), and at its third fault it is
/// disabled, with an audit entry. One that files messages elsewhere only changes their text
/// and tags: the host keeps channel and author.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_indexer_is_stopped_and_disabled_and_the_default_takes_over() {
    let server = Server::start(&[]).await;
    let http = server.http();
    let (alice, alice_id) = http.register("alice").await;
    let (gid, general) = guild_of(&http, &alice, "hostile").await;
    let installed = http.install_plugin(&gid, &alice, "spinner", component("hostile_indexer")).await;
    assert_eq!(installed.status, StatusCode::CREATED, "{}", installed.body);
    let plugin = format!("/guilds/{gid}/plugins/{}", installed.body["id"].as_str().unwrap());
    let config = json!({ "config": { "mode": "loop" } });
    assert_eq!(http.call(hyper::Method::PATCH, &plugin, Some(&alice), Some(config)).await.status, StatusCode::OK);
    let q = |query: &str| format!("/guilds/{gid}/messages/search?{query}");
    // One message at a time, each its own batch: a fault each.
    for i in 0..3 {
        let content = format!("spun message number{i}");
        post(&http, &alice, &general, &content).await;
        until_found(&http, &alice, &q(&format!("content=number{i}")), &[content.as_str()]).await;
    }
    let started = Instant::now();
    let plugin_id = installed.body["id"].clone();
    let enabled = || async {
        let list = http.get(&format!("/guilds/{gid}/plugins"), &alice).await.body;
        list.as_array().unwrap().iter().find(|p| p["id"] == plugin_id).unwrap()["enabled"].clone()
    };
    while enabled().await != false {
        assert!(started.elapsed() < Duration::from_secs(10), "still enabled after three faults");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let entries = audit_entries(&http, &gid, &alice, "action_type=81").await;
    let disabled = entries.iter().find(|e| e["reason"].as_str().is_some_and(|r| r.contains("disabled after 3 faults")));
    assert!(disabled.is_some(), "{entries:?}");
    post(&http, &alice, &general, "after the spinner").await;
    until_found(&http, &alice, &q("content=after"), &["after the spinner"]).await;

    // Misfiling: another channel and author in its documents change nothing of that.
    let (other_guild, other) = guild_of(&http, &alice, "misfiled").await;
    let installed = http.install_plugin(&other_guild, &alice, "misfiler", component("hostile_indexer")).await;
    let plugin = format!("/guilds/{other_guild}/plugins/{}", installed.body["id"].as_str().unwrap());
    let config = json!({ "config": { "mode": "misfile" } });
    assert_eq!(http.call(hyper::Method::PATCH, &plugin, Some(&alice), Some(config)).await.status, StatusCode::OK);
    post(&http, &alice, &other, "filed where it was said").await;
    let path =
        format!("/guilds/{other_guild}/messages/search?content=misfiled&channel_id={other}&author_id={alice_id}");
    until_found(&http, &alice, &path, &["filed where it was said"]).await;
}
