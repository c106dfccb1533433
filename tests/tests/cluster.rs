//! Three real `guildhall serve --cluster` processes on one Cassandra keyspace and one
//! nats-server: clients spread over the nodes see one guild as if it were on one host.

use std::time::Duration;

use guildhall_e2e::{Server, ALL_INTENTS};

/// One cluster at a time: three nodes each are enough load for two cores (with Cassandra),
/// and timings (fail-over, hand-off) are what these tests measure.
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
use hyper::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guild_spread_over_three_nodes_behaves_as_one() {
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let Some(nodes) = Server::start_cluster(3, &[]).await else { return };
    let http: Vec<_> = nodes.iter().map(Server::http).collect();
    let (alice, _) = http[0].register("alice").await;
    let (bob, _) = http[1].register("bob").await;
    let (carol, carol_id) = http[2].register("carol").await;

    let guild = http[0].post("/guilds", &alice, json!({ "name": "Spread" })).await;
    assert_eq!(guild.status, StatusCode::CREATED, "{}", guild.body);
    let gid = guild.body["id"].as_str().unwrap().to_owned();
    let channels = http[1].get(&format!("/guilds/{gid}/channels"), &alice).await;
    assert_eq!(channels.status, StatusCode::OK, "any node serves any guild: {}", channels.body);
    let cid = channels.body[0]["id"].as_str().unwrap().to_owned();
    let invite = http[2].post(&format!("/channels/{cid}/invites"), &alice, json!({})).await;
    let code = invite.body["code"].as_str().unwrap().to_owned();
    for (h, token) in [(&http[1], &bob), (&http[2], &carol)] {
        let joined = h.post(&format!("/invites/{code}"), token, json!({})).await;
        assert_eq!(joined.status, StatusCode::OK, "{}", joined.body);
    }

    // Each user online on a different node.
    let mut sessions = Vec::new();
    for (node, token) in nodes.iter().zip([&alice, &bob, &carol]) {
        let mut gw = node.gateway().await;
        let ready = gw.identify(token, ALL_INTENTS).await; // and the GUILD_CREATE that follows
        assert_eq!(ready["d"]["guilds"][0]["id"], gid.as_str());
        sessions.push(gw);
    }

    // Thirty messages posted to all three nodes at once: every session gets all of them,
    // in one and the same order.
    let mut posts = Vec::new();
    for i in 0..30 {
        let (h, token) = (http[i % 3], [&alice, &bob, &carol][i % 3].clone());
        let path = format!("/channels/{cid}/messages");
        posts.push(tokio::spawn(async move {
            let m = h.post(&path, &token, json!({ "content": format!("msg {i}") })).await;
            assert_eq!(m.status, StatusCode::OK, "{}", m.body);
            m.body["id"].as_str().unwrap().to_owned()
        }));
    }
    let mut acked = Vec::new();
    for p in posts {
        acked.push(p.await.unwrap());
    }
    let mut orders = Vec::new();
    for gw in &mut sessions {
        let mut seen = Vec::new();
        while seen.len() < 30 {
            let d = gw.next().await;
            if d["t"] == "MESSAGE_CREATE" {
                seen.push(d["d"]["id"].as_str().unwrap().to_owned());
            }
        }
        orders.push(seen);
    }
    assert_eq!(orders[0], orders[1], "alice's and bob's sessions saw the same order");
    assert_eq!(orders[0], orders[2], "alice's and carol's sessions saw the same order");
    let mut by_id = orders[0].clone();
    by_id.sort_by_key(|id| id.parse::<u64>().unwrap());
    assert_eq!(by_id, orders[0], "that order is id order");
    acked.sort_by_key(|id| id.parse::<u64>().unwrap());
    assert_eq!(acked, orders[0], "every acknowledged message was delivered");
    let history = http[2].get(&format!("/channels/{cid}/messages?limit=100"), &bob).await;
    assert_eq!(history.body.as_array().unwrap().len(), 30);

    // One node runs the guild; the others reached it over NATS, and its fan-out to their
    // sessions went as one forward per node and event.
    let mut running = Vec::new();
    let mut forwards = 0;
    for node in &nodes {
        running.push(node.metric("guildhall_guilds").await);
        forwards += node.metric("guildhall_node_forwards_total").await;
    }
    assert_eq!(running.iter().sum::<u64>(), 1, "exactly one node runs the guild: {running:?}");

    // Read-after-write across nodes: a message acknowledged by one node is in the history
    // another node serves right after.
    for i in 0..9 {
        let path = format!("/channels/{cid}/messages");
        let m = http[i % 3].post(&path, &alice, json!({ "content": format!("raw {i}") })).await;
        assert_eq!(m.status, StatusCode::OK, "{}", m.body);
        let latest = http[(i + 1) % 3].get(&format!("{path}?limit=1"), &bob).await;
        assert_eq!(latest.body[0]["id"], m.body["id"], "read on node {} after a write on node {}", (i + 1) % 3, i % 3);
    }
    for gw in &mut sessions {
        let mut raw = 0;
        while raw < 9 {
            raw += usize::from(gw.next().await["t"] == "MESSAGE_CREATE");
        }
    }

    // A hot channel read from all three nodes at once: every read goes to the one data
    // service of the guild's node, which coalesces them.
    let history = "guildhall_data_requests_total{route=\"history\"}";
    let queries = "guildhall_data_db_queries_total{route=\"history\"}";
    let mut before = Vec::new();
    for node in &nodes {
        let joined = node.metric("guildhall_cluster_reads_joined_total").await;
        before.push((node.metric(history).await, node.metric(queries).await, joined));
    }
    let mut burst = Vec::new();
    for i in 0..240 {
        let (h, token, path) = (http[i % 3], bob.clone(), format!("/channels/{cid}/messages?limit=50"));
        burst.push(tokio::spawn(async move { h.get(&path, &token).await.status }));
    }
    for b in burst {
        assert_eq!(b.await.unwrap(), StatusCode::OK);
    }
    let (mut reads, mut db, mut joined) = (Vec::new(), 0, 0);
    for (node, (requests0, queries0, joined0)) in nodes.iter().zip(before) {
        reads.push(node.metric(history).await - requests0);
        db += node.metric(queries).await - queries0;
        joined += node.metric("guildhall_cluster_reads_joined_total").await - joined0;
    }
    let owner = running.iter().position(|&r| r == 1).unwrap();
    assert_eq!(reads.iter().sum::<u64>(), reads[owner], "only the guild's node reads storage: {reads:?}");
    assert_eq!(
        reads[owner] + joined,
        240,
        "every read went to the guild's node, or shared an identical one's answer from there: {reads:?}, {joined} joined"
    );
    eprintln!("240 concurrent history reads over 3 nodes: {db} storage queries, {joined} shared on their node");
    assert!(db < 240, "identical reads in flight were coalesced ({db} queries)");
    assert!(forwards >= 60, "30 messages x 2 other nodes forwarded at least ({forwards})");
    assert!(forwards <= 100, "per node and event, never per session ({forwards})");

    // A DM between users on different nodes reaches both.
    let dm = http[1].post("/users/@me/channels", &bob, json!({ "recipient_id": carol_id })).await;
    assert_eq!(dm.status, StatusCode::OK, "{}", dm.body);
    let dm_id = dm.body["id"].as_str().unwrap().to_owned();
    let sent = http[1].post(&format!("/channels/{dm_id}/messages"), &bob, json!({ "content": "psst" })).await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.body);
    for gw in sessions.iter_mut().skip(1) {
        let d = gw.dispatch("MESSAGE_CREATE").await;
        assert_eq!((d["d"]["channel_id"].as_str(), d["d"]["content"].as_str()), (Some(dm_id.as_str()), Some("psst")));
    }
    let answer = http[2].post(&format!("/channels/{dm_id}/messages"), &carol, json!({ "content": "hi bob" })).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    for gw in sessions.iter_mut().skip(1) {
        let d = gw.dispatch("MESSAGE_CREATE").await;
        assert_eq!(d["d"]["author"]["id"].as_str(), Some(carol_id.as_str()));
    }
    let alice_gets_something = tokio::time::timeout(Duration::from_millis(300), sessions[0].next()).await;
    assert!(alice_gets_something.is_err(), "a DM reaches only its recipients: {alice_gets_something:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_node_takes_its_share_of_guilds_and_their_sessions_follow() {
    // Enough guilds that each of three nodes owns some (all on two: (2/3)^24, about 1e-4).
    const GUILDS: usize = 24;
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let Some(mut nodes) = Server::start_cluster(2, &[]).await else { return };
    let http: Vec<_> = nodes.iter().map(Server::http).collect();
    let (alice, _) = http[0].register("alice").await;
    let mut channels = Vec::new();
    for i in 0..GUILDS {
        let guild = http[0].post("/guilds", &alice, json!({ "name": format!("g{i}") })).await;
        assert_eq!(guild.status, StatusCode::CREATED, "{}", guild.body);
        let gid = guild.body["id"].as_str().unwrap().to_owned();
        let listed = http[1].get(&format!("/guilds/{gid}/channels"), &alice).await;
        channels.push(listed.body[0]["id"].as_str().unwrap().to_owned());
    }
    let mut gw = nodes[0].gateway().await;
    gw.identify(&alice, ALL_INTENTS).await; // READY and a GUILD_CREATE per guild
    let post_all = async |h: &guildhall_e2e::Http, round: &str| {
        for (i, cid) in channels.iter().enumerate() {
            let m = h
                .post(&format!("/channels/{cid}/messages"), &alice, json!({ "content": format!("{round} {i}") }))
                .await;
            assert_eq!(m.status, StatusCode::OK, "{round} {i}: {}", m.body);
        }
    };
    let receive_all = async |gw: &mut guildhall_e2e::Gateway, round: &str| {
        let mut got = std::collections::BTreeSet::new();
        while got.len() < GUILDS {
            let d = gw.next().await;
            if d["t"] == "MESSAGE_CREATE" {
                got.insert(d["d"]["content"].as_str().unwrap().to_owned());
            }
        }
        assert_eq!(got, (0..GUILDS).map(|i| format!("{round} {i}")).collect());
    };
    post_all(&http[1], "before").await;
    receive_all(&mut gw, "before").await;
    let running = |nodes: &[Server]| {
        let nodes: Vec<_> = nodes.iter().map(|n| n.addr).collect();
        async move {
            let mut counts = Vec::new();
            for addr in nodes {
                let mut client = guildhall_client::ApiClient::connect(&addr.to_string()).await.unwrap();
                let text = client.metrics().await.unwrap();
                counts.push(
                    text.lines().find_map(|l| l.strip_prefix("guildhall_guilds ")).unwrap().parse::<u64>().unwrap(),
                );
            }
            counts
        }
    };
    assert_eq!(running(&nodes).await.iter().sum::<u64>(), GUILDS as u64, "each guild runs once");

    // A third node joins: the ring gives it about a third of the guilds; their old owners
    // hand them off and alice's session follows each guild to its new node.
    nodes.push(nodes[0].start_sibling().await);
    for node in &nodes {
        node.wait_for_metric("guildhall_cluster_nodes", 3).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let counts = running(&nodes).await;
        if counts[2] > 0 && counts.iter().sum::<u64>() == GUILDS as u64 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "guilds per node stayed {counts:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let http = nodes[2].http();
    post_all(&http, "after").await;
    receive_all(&mut gw, "after").await;
    let counts = running(&nodes).await;
    assert_eq!(counts.iter().sum::<u64>(), GUILDS as u64, "still one actor per guild: {counts:?}");
    assert!(counts.iter().all(|&c| c > 0), "every node runs some: {counts:?}");
    // The audit trail: every guild that moved was given back before its new node took it.
    let checked = guildhall_e2e::audit_ownership(&nodes.iter().collect::<Vec<_>>(), &[]);
    assert!(checked > GUILDS, "the moves are in the trail ({checked} ownerships for {GUILDS} guilds)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_guilds_node_loses_no_acknowledged_message_and_it_serves_again_within_5s() {
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let Some(mut nodes) = Server::start_cluster(3, &[]).await else { return };
    let http: Vec<_> = nodes.iter().map(Server::http).collect();
    let (alice, _) = http[0].register("alice").await;
    let (bob, _) = http[0].register("bob").await;
    let guild = http[0].post("/guilds", &alice, json!({ "name": "Doomed node" })).await;
    let gid = guild.body["id"].as_str().unwrap().to_owned();
    let cid = http[0].get(&format!("/guilds/{gid}/channels"), &alice).await.body[0]["id"].as_str().unwrap().to_owned();
    let invite = http[0].post(&format!("/channels/{cid}/invites"), &alice, json!({})).await;
    let code = invite.body["code"].as_str().unwrap().to_owned();
    assert_eq!(http[0].post(&format!("/invites/{code}"), &bob, json!({})).await.status, StatusCode::OK);
    // Which node runs the guild? The one whose guild gauge is 1.
    let mut owner = None;
    for (i, node) in nodes.iter().enumerate() {
        if node.metric("guildhall_guilds").await == 1 {
            owner = Some(i);
        }
    }
    let owner = owner.expect("one node runs the guild");
    let (poster, watcher) = ((owner + 1) % 3, (owner + 2) % 3);
    let mut bob_gw = nodes[watcher].gateway().await;
    bob_gw.identify(&bob, ALL_INTENTS).await;
    // Alice is connected to the node that will die: she collects what she sees until then.
    let mut alice_gw = nodes[owner].gateway().await;
    let ready = alice_gw.identify(&alice, ALL_INTENTS).await;
    let alice_session = ready["d"]["session_id"].as_str().unwrap().to_owned();
    let alice_sees = tokio::spawn(async move {
        let mut seen = Vec::new();
        loop {
            match alice_gw.next_within(30).await {
                guildhall_e2e::Incoming::Json(v) if v["t"] == "MESSAGE_CREATE" => {
                    seen.push(v["d"]["id"].as_str().unwrap().to_owned())
                }
                guildhall_e2e::Incoming::Json(_) => {}
                guildhall_e2e::Incoming::Close(_) => return (seen, alice_gw.last_seq),
            }
        }
    });

    // Steady streams of posts (three clients) through a node that survives; the guild's
    // node is killed (SIGKILL) in the middle of them. A request that was in flight to the
    // dead node waits out its timeout; the others see the guild serve again sooner.
    let mut streams = Vec::new();
    for client in 0..3 {
        let (h, token, path) = (http[poster], alice.clone(), format!("/channels/{cid}/messages"));
        streams.push(tokio::spawn(async move {
            // (id, sent, acknowledged)
            let mut acked: Vec<(String, std::time::Instant, std::time::Instant)> = Vec::new();
            let (mut failed, mut slowest) = (0, Duration::ZERO);
            for i in 0..60 {
                let sent = std::time::Instant::now();
                let m = h.post(&path, &token, json!({ "content": format!("c{client} m{i}") })).await;
                slowest = slowest.max(sent.elapsed());
                if m.status == StatusCode::OK {
                    acked.push((m.body["id"].as_str().unwrap().to_owned(), sent, std::time::Instant::now()));
                } else {
                    failed += 1;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (acked, failed, slowest)
        }));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let killed_at = std::time::Instant::now();
    let mut dead = nodes.remove(owner);
    dead.kill9();
    let died_unix_ms = guildhall_e2e::unix_ms();
    let (mut acked, mut failed, mut slowest) = (Vec::new(), 0, Duration::ZERO);
    for stream in streams {
        let (a, f, s) = stream.await.unwrap();
        acked.extend(a);
        failed += f;
        slowest = slowest.max(s);
    }
    acked.sort_by_key(|(_, _, at)| *at);
    let before = acked.iter().filter(|(_, _, at)| *at < killed_at).count();
    // Served again: the first post sent after the kill that was acknowledged.
    let first_after = acked.iter().find(|(_, sent, _)| *sent > killed_at).map(|(_, _, at)| *at - killed_at);
    let outage = first_after.expect("the guild served again after its node died");
    eprintln!(
        "fail-over: {before} acknowledged before the kill, {failed} refused, serving again after {outage:?}, \
         slowest post {slowest:?}"
    );
    assert!(before > 0, "the kill happened mid-stream");
    assert!(outage <= Duration::from_secs(5), "serving again took {outage:?}");
    // A post in flight to the dead node is answered (503) when the node leaves the view,
    // not at the end of the 5 s `rest.actor_timeout_ms`.
    assert!(slowest < Duration::from_secs(4), "a post waited {slowest:?}");

    // Every acknowledged message is in history, once.
    let survivor = nodes[0].http();
    let mut stored = Vec::new();
    let mut query = "limit=100".to_owned();
    loop {
        let page = survivor.get(&format!("/channels/{cid}/messages?{query}"), &bob).await;
        let ids: Vec<String> =
            page.body.as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect();
        let Some(last) = ids.last().cloned() else { break };
        stored.extend(ids);
        query = format!("limit=100&before={last}");
    }
    for (id, _, _) in &acked {
        assert_eq!(stored.iter().filter(|s| *s == id).count(), 1, "acknowledged message {id} stored once");
    }

    // Alice reconnects to a survivor: her session died with its node (op 9, not resumable),
    // she identifies again and finds everything she missed in the history.
    let (alice_seen, alice_seq) = alice_sees.await.unwrap();
    let mut again = nodes[0].gateway().await;
    assert_eq!(again.next().await["op"], 10);
    again.send(json!({ "op": 6, "d": { "token": alice, "session_id": alice_session, "seq": alice_seq } })).await;
    let invalid = again.next().await;
    assert_eq!((invalid["op"].as_u64(), invalid["d"].as_bool()), (Some(9), Some(false)), "{invalid}");
    let mut again = nodes[0].gateway().await;
    again.identify(&alice, ALL_INTENTS).await;
    let missed: Vec<&String> = acked.iter().map(|(id, _, _)| id).filter(|id| !alice_seen.contains(id)).collect();
    assert!(!missed.is_empty(), "alice missed the messages after her node died");
    for id in &missed {
        assert!(stored.contains(id), "what alice missed ({id}) is in the history she reads after reconnecting");
    }

    // The audit trail: the guild's new node took it only after the old one died.
    let checked = guildhall_e2e::audit_ownership(&nodes.iter().collect::<Vec<_>>(), &[(&dead, died_unix_ms)]);
    assert!(checked >= 2, "the take-over is in the audit trail ({checked})");

    // Bob's session (on a surviving node) follows the guild to its new node.
    let m = survivor.post(&format!("/channels/{cid}/messages"), &alice, json!({ "content": "after" })).await;
    assert_eq!(m.status, StatusCode::OK, "{}", m.body);
    loop {
        let d = bob_gw.next().await;
        if d["t"] == "MESSAGE_CREATE" && d["d"]["content"] == "after" {
            break;
        }
    }
}

/// Stops or starts the shared development nats-server (deploy/dev/nats), keeping its data.
fn nats(action: &str) {
    let script = guildhall_e2e::repo_root().join("deploy/dev/nats");
    let status = std::process::Command::new(script).arg(action).status().expect("run deploy/dev/nats");
    assert!(status.success(), "deploy/dev/nats {action} failed");
}

/// The nodes ride out a restart of the nats-server (file store), even one longer than
/// their lease (here the server's shutdown, a request made while it is down, which waits
/// out its own timeouts, and its start take well over the 1.5 s lease): each node takes
/// its id again, its actors start afresh, and its clients stay connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_restart_loses_nothing_acknowledged_and_splits_no_node_off() {
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let Some(nodes) = Server::start_cluster(2, &[]).await else { return };
    let http: Vec<_> = nodes.iter().map(Server::http).collect();
    let (alice, _) = http[0].register("alice").await;
    let guild = http[0].post("/guilds", &alice, json!({ "name": "Through a restart" })).await;
    let gid = guild.body["id"].as_str().unwrap().to_owned();
    let cid = http[1].get(&format!("/guilds/{gid}/channels"), &alice).await.body[0]["id"].as_str().unwrap().to_owned();
    let path = format!("/channels/{cid}/messages");
    let mut acked = Vec::new();
    for i in 0..5 {
        let m = http[i % 2].post(&path, &alice, json!({ "content": format!("before {i}") })).await;
        assert_eq!(m.status, StatusCode::OK, "{}", m.body);
        acked.push(m.body["id"].as_str().unwrap().to_owned());
    }
    let mut gws = Vec::new();
    for node in &nodes {
        let mut gw = node.gateway().await;
        gw.identify(&alice, ALL_INTENTS).await;
        gws.push(gw);
    }

    nats("down");
    let during = http[1].post(&path, &alice, json!({ "content": "during" })).await;
    if during.status == StatusCode::OK {
        acked.push(during.body["id"].as_str().unwrap().to_owned()); // the guild may be local
    }
    nats("up");

    // Both nodes come back to the cluster and serve through either node again.
    for node in &nodes {
        node.wait_for_metric("guildhall_cluster_nodes", 2).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    for (i, h) in http.iter().enumerate() {
        loop {
            let m = h.post(&path, &alice, json!({ "content": format!("after {i}") })).await;
            if m.status == StatusCode::OK {
                acked.push(m.body["id"].as_str().unwrap().to_owned());
                break;
            }
            assert!(std::time::Instant::now() < deadline, "node {i} does not serve again: {}", m.body);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let history = http[0].get(&format!("{path}?limit=100"), &alice).await;
    let stored: Vec<&str> = history.body.as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    for id in &acked {
        assert!(stored.contains(&id.as_str()), "acknowledged message {id} is in history");
    }
    // The restart outlasted the lease: the nodes took their ids again instead of leaving,
    // and the clients connected before it hear the guild again.
    let mut rejoins = 0;
    for node in &nodes {
        rejoins += node.metric("guildhall_cluster_rejoins_total").await;
    }
    assert!(rejoins >= 1, "the leases ran out and were taken again");
    let last = http[0].post(&path, &alice, json!({ "content": "still here" })).await;
    assert_eq!(last.status, StatusCode::OK, "{}", last.body);
    for gw in &mut gws {
        loop {
            let d = gw.dispatch("MESSAGE_CREATE").await;
            if d["d"]["content"] == "still here" {
                break;
            }
        }
    }
}

/// What one client saw of the drain: the MESSAGE_CREATE ids in order, and whether its
/// session was moved (op 7, then RESUMED on another node).
struct Seen {
    messages: Vec<String>,
    resumed: bool,
}

/// Reads until the message `end`; on op 7 reconnects to `elsewhere` and RESUMEs there.
/// `connected` is told once the session has its guild (GUILD_CREATE after READY).
async fn follow(
    mut gw: guildhall_e2e::Gateway,
    token: String,
    elsewhere: std::net::SocketAddr,
    end: &str,
    connected: tokio::sync::mpsc::Sender<()>,
) -> Seen {
    use guildhall_e2e::{Gateway, Incoming};
    let mut seen = Seen { messages: Vec::new(), resumed: false };
    let mut session_id = None;
    loop {
        match gw.next_within(30).await {
            Incoming::Json(v) if v["op"] == 0 => {
                let s = v["s"].as_u64().expect("dispatch has s");
                assert_eq!(s, gw.last_seq + 1, "consecutive sequence, across the move too: {v}");
                gw.last_seq = s;
                match v["t"].as_str() {
                    Some("READY") => session_id = v["d"]["session_id"].as_str().map(str::to_owned),
                    Some("GUILD_CREATE") => {
                        let _ = connected.try_send(());
                    }
                    Some("RESUMED") => seen.resumed = true,
                    Some("MESSAGE_CREATE") if v["d"]["content"] == end => return seen,
                    Some("MESSAGE_CREATE") => seen.messages.push(v["d"]["id"].as_str().unwrap().to_owned()),
                    _ => {}
                }
            }
            Incoming::Json(v) if v["op"] == 7 => {
                assert!(!seen.resumed, "told to reconnect once");
                let close = gw.expect_close().await;
                assert_ne!(close, Some(1000), "a close clients resume after");
                let last_seq = gw.last_seq;
                gw = Gateway::connect(elsewhere, "/gateway?v=10&encoding=json").await;
                gw.last_seq = last_seq;
                let hello = gw.next().await;
                assert_eq!(hello["op"], 10);
                let session_id = session_id.clone().expect("READY came first");
                gw.send(json!({ "op": 6, "d": { "token": token, "session_id": session_id, "seq": last_seq } })).await;
            }
            Incoming::Json(v) => assert!(v["op"] == 11 || v["op"] == 10, "unexpected {v}"),
            Incoming::Close(code) => panic!("closed with {code:?} without op 7"),
        }
    }
}

/// SIGTERM on the node that runs the guild, under a steady stream of posts through the
/// other two: the guild moves with its sessions, the node's own clients get op 7 and
/// RESUME on the other nodes, and no client misses or repeats a MESSAGE_CREATE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_node_hands_off_and_its_clients_resume_elsewhere_missing_nothing() {
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let Some(mut nodes) = Server::start_cluster(3, &[]).await else { return };
    let http: Vec<_> = nodes.iter().map(Server::http).collect();
    let (alice, _) = http[0].register("alice").await;
    let (bob, _) = http[1].register("bob").await;
    let guild = http[0].post("/guilds", &alice, json!({ "name": "Moving day" })).await;
    let gid = guild.body["id"].as_str().unwrap().to_owned();
    let cid = http[0].get(&format!("/guilds/{gid}/channels"), &alice).await.body[0]["id"].as_str().unwrap().to_owned();
    let invite = http[0].post(&format!("/channels/{cid}/invites"), &alice, json!({})).await;
    let code = invite.body["code"].as_str().unwrap().to_owned();
    assert_eq!(http[1].post(&format!("/invites/{code}"), &bob, json!({})).await.status, StatusCode::OK);
    let mut owner = None;
    for (i, node) in nodes.iter().enumerate() {
        if node.metric("guildhall_guilds").await == 1 {
            owner = Some(i);
        }
    }
    let leaving = owner.expect("one node runs the guild");
    let stays = [(leaving + 1) % 3, (leaving + 2) % 3];

    // Alice and bob on every node; the leaving node's two clients resume one on each of
    // the others.
    let mut clients = Vec::new();
    let (connected, mut connects) = tokio::sync::mpsc::channel(16);
    for (i, node) in nodes.iter().enumerate() {
        for (n, token) in [&alice, &bob].into_iter().enumerate() {
            let mut gw = node.gateway().await;
            let hello = gw.next().await;
            assert_eq!(hello["op"], 10);
            gw.send(json!({ "op": 2, "d": { "token": token, "intents": ALL_INTENTS, "properties": { "os": "linux", "browser": "e2e", "device": "e2e" } } }))
                .await;
            let elsewhere = nodes[stays[n]].addr;
            let token = token.clone();
            let connected = connected.clone();
            clients.push((i, tokio::spawn(async move { follow(gw, token, elsewhere, "END", connected).await })));
        }
    }
    // Everyone READY and connected to the guild before the first post.
    for _ in 0..clients.len() {
        tokio::time::timeout(Duration::from_secs(30), connects.recv()).await.expect("every client gets its guild");
    }

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut streams = Vec::new();
    for k in 0..6 {
        let via = stays[k % 2];
        let (h, token, path, stop) = (http[via], alice.clone(), format!("/channels/{cid}/messages"), stop.clone());
        streams.push(tokio::spawn(async move {
            let (mut acked, mut refused) = (Vec::new(), 0);
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let m = h.post(&path, &token, json!({ "content": format!("s{k} m{i}") })).await;
                match m.status {
                    StatusCode::OK => acked.push(m.body["id"].as_str().unwrap().to_owned()),
                    _ => refused += 1,
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (acked, refused)
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mut node = nodes.remove(leaving);
    let started = std::time::Instant::now();
    let (exited, left) =
        tokio::task::spawn_blocking(move || (node.terminate_within(Duration::from_secs(40)), node)).await.unwrap();
    let drain_took = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut acked, mut refused) = (Vec::new(), 0);
    for stream in streams {
        let (a, r) = stream.await.unwrap();
        acked.extend(a);
        refused += r;
    }
    assert!(exited, "the drained node exited cleanly");
    let http = nodes[0].http();
    let end = http.post(&format!("/channels/{cid}/messages"), &alice, json!({ "content": "END" })).await;
    assert_eq!(end.status, StatusCode::OK, "{}", end.body);

    let mut orders = Vec::new();
    for (i, client) in clients {
        let seen = client.await.unwrap();
        assert_eq!(seen.resumed, i == leaving, "only the leaving node's clients moved (client on node {i})");
        let mut unique = seen.messages.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), seen.messages.len(), "no MESSAGE_CREATE twice (client on node {i})");
        for id in &acked {
            assert!(seen.messages.contains(id), "client on node {i} missed acknowledged message {id}");
        }
        orders.push(seen.messages);
    }
    for order in &orders[1..] {
        assert_eq!(order, &orders[0], "every client saw the same messages in the same order");
    }
    let mut moved_in = 0;
    for node in &nodes {
        moved_in += node.metric("guildhall_sessions_moved_in_total").await;
    }
    assert_eq!(moved_in, 2, "both sessions of the drained node were taken over");
    let mut all: Vec<&Server> = nodes.iter().collect();
    all.push(&left);
    let checked = guildhall_e2e::audit_ownership(&all, &[]);
    assert!(checked >= 2, "the guild's hand-off is in the audit trail ({checked})");
    eprintln!(
        "drain: {} messages acknowledged during it ({refused} refused), node exited after {drain_took:?}",
        acked.len()
    );
}

/// Plugins of guilds on different nodes share only what the operator granted, over NATS:
/// a subject under `shared.alerts` published in one guild reaches a plugin subscribed to
/// it in a guild on the other node; the publisher's private subjects do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_plugin_subjects_cross_nodes_over_nats_and_private_ones_do_not() {
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let env = [("GUILDHALL_PLUGINS__SHARED_SUBJECTS", r#"["alerts.>"]"#)];
    let Some(nodes) = Server::start_cluster(2, &env).await else { return };
    let http: Vec<_> = nodes.iter().map(Server::http).collect();
    let (alice, _) = http[0].register("alice").await;
    // One guild on each node: create guilds until both nodes run one.
    let mut on_node: [Option<(String, String)>; 2] = [None, None];
    for i in 0..40 {
        if on_node.iter().all(Option::is_some) {
            break;
        }
        let before = [nodes[0].metric("guildhall_guilds").await, nodes[1].metric("guildhall_guilds").await];
        let guild = http[0].post("/guilds", &alice, json!({ "name": format!("g{i}") })).await;
        let gid = guild.body["id"].as_str().unwrap().to_owned();
        let cid =
            http[0].get(&format!("/guilds/{gid}/channels"), &alice).await.body[0]["id"].as_str().unwrap().to_owned();
        for (n, node) in nodes.iter().enumerate() {
            if node.metric("guildhall_guilds").await > before[n] && on_node[n].is_none() {
                on_node[n] = Some((gid.clone(), cid.clone()));
            }
        }
    }
    let [Some((guild_a, channel_a)), Some((guild_b, channel_b))] = on_node else { panic!("guilds on both nodes") };
    let alpha = http[0].install_plugin(&guild_a, &alice, "alpha", guildhall_e2e::component("probe_bot")).await;
    assert_eq!(alpha.status, StatusCode::CREATED, "{}", alpha.body);
    let beta = http[1].install_plugin(&guild_b, &alice, "beta", guildhall_e2e::component("probe_bot")).await;
    assert_eq!(beta.status, StatusCode::CREATED, "{}", beta.body);
    let path = format!("/guilds/{guild_b}/plugins/{}", beta.body["id"].as_str().unwrap());
    let config = json!({ "config": { "subscribe": ["shared.alerts.>", "alpha.>"] } });
    let r = http[1].call(hyper::Method::PATCH, &path, Some(&alice), Some(config)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    let mut gw = nodes[1].gateway().await;
    gw.identify(&alice, ALL_INTENTS).await;
    let say = |channel: &str, content: &str| {
        let (h, path, token, content) =
            (http[0], format!("/channels/{channel}/messages"), alice.clone(), content.to_owned());
        async move { assert_eq!(h.post(&path, &token, json!({ "content": content })).await.status, StatusCode::OK) }
    };
    say(&channel_a, "probe publish news secret").await;
    say(&channel_a, "probe publish shared.alerts.fire boom").await;
    let mut seen = Vec::new();
    loop {
        let m = gw.dispatch("MESSAGE_CREATE").await;
        let content = m["d"]["content"].as_str().unwrap_or_default().to_owned();
        if content.starts_with("heard") {
            assert_eq!(m["d"]["channel_id"].as_str(), Some(channel_b.as_str()), "beta reports in guild B: {m}");
        }
        seen.push(content);
        if seen.last().is_some_and(|c| c == "heard shared.alerts.fire: boom") {
            break;
        }
    }
    assert!(
        !seen.iter().any(|c| c.contains("secret") && c.starts_with("heard")),
        "a private subject crossed: {seen:?}"
    );
}

/// Reads of one channel on a node that does not run it share one request to the channel's
/// node while it is in flight; a read that starts after a write was acknowledged still
/// sees that write, even in the middle of a storm of identical reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_reads_on_other_nodes_still_see_every_acknowledged_write() {
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let Some(nodes) = Server::start_cluster(2, &[]).await else { return };
    let http: Vec<_> = nodes.iter().map(Server::http).collect();
    let (alice, _) = http[0].register("alice").await;
    let guild = http[0].post("/guilds", &alice, json!({ "name": "Hot channel" })).await;
    let gid = guild.body["id"].as_str().unwrap().to_owned();
    let cid = http[0].get(&format!("/guilds/{gid}/channels"), &alice).await.body[0]["id"].as_str().unwrap().to_owned();
    let owner = if nodes[0].metric("guildhall_guilds").await == 1 { 0 } else { 1 };
    let (writer, reader) = (http[owner], http[1 - owner]);
    let path = format!("/channels/{cid}/messages");
    for i in 0..50 {
        let m = writer.post(&path, &alice, json!({ "content": format!("history {i} {}", "x".repeat(200)) })).await;
        assert_eq!(m.status, StatusCode::OK);
    }

    // A storm of identical reads (full pages, so each query takes a while) on the node
    // without the guild.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut storm = Vec::new();
    for _ in 0..8 {
        let (h, token, path, stop) = (reader, alice.clone(), format!("{path}?limit=100"), stop.clone());
        storm.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                assert_eq!(h.get(&path, &token).await.status, StatusCode::OK);
            }
        }));
    }
    for i in 0..40 {
        let m = writer.post(&path, &alice, json!({ "content": format!("write {i}") })).await;
        assert_eq!(m.status, StatusCode::OK, "{}", m.body);
        let latest = reader.get(&format!("{path}?limit=100"), &alice).await;
        assert_eq!(latest.body[0]["id"], m.body["id"], "write {i}: a read after its acknowledgement saw it");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for s in storm {
        s.await.unwrap();
    }
    let joined = nodes[1 - owner].metric("guildhall_cluster_reads_joined_total").await;
    eprintln!("reads shared on the reading node: {joined}");
    assert!(joined > 0, "the storm's reads were shared");
}

/// With `plugins.bot_placement = "spread"` a bot runs on the ring owner of its plugin id,
/// here the other node than its guild's: it gets the guild's events over NATS and acts
/// and reads through the guild's node as if it ran beside it. Disabling it ends the runner
/// there; when the runner's node dies, the guild places the bot again and it answers
/// within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_on_another_node_acts_as_if_beside_its_guild_and_follows_the_view() {
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let env = [("GUILDHALL_PLUGINS__BOT_PLACEMENT", "spread")];
    let Some(mut nodes) = Server::start_cluster(2, &env).await else { return };
    let http: Vec<_> = nodes.iter().map(Server::http).collect();
    let (alice, _) = http[0].register("alice").await;
    let guild = http[0].post("/guilds", &alice, json!({ "name": "Bots apart" })).await;
    let gid = guild.body["id"].as_str().unwrap().to_owned();
    let cid = http[0].get(&format!("/guilds/{gid}/channels"), &alice).await.body[0]["id"].as_str().unwrap().to_owned();
    let owner = if nodes[0].metric("guildhall_guilds").await == 1 { 0 } else { 1 };
    let runner = 1 - owner;
    assert_eq!(nodes[owner].metric("guildhall_guilds").await, 1, "one node runs the guild");

    // Install the probe until an install lands on the other node (its plugin id decides);
    // one that lands beside the guild is removed again.
    let mut remote = None;
    for i in 0..16 {
        let installed =
            http[0].install_plugin(&gid, &alice, &format!("probe{i}"), guildhall_e2e::component("probe_bot")).await;
        assert_eq!(installed.status, StatusCode::CREATED, "{}", installed.body);
        let pid = installed.body["id"].as_str().unwrap().to_owned();
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while nodes[runner].metric("guildhall_bots_hosted").await == 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if nodes[runner].metric("guildhall_bots_hosted").await == 1 {
            remote = Some(pid);
            break;
        }
        let r = http[0].call(hyper::Method::DELETE, &format!("/guilds/{gid}/plugins/{pid}"), Some(&alice), None).await;
        assert!(r.status.is_success(), "{}", r.body);
    }
    let pid = remote.expect("an install placed on the other node (1 in 2 each)");
    assert_eq!(nodes[owner].metric("guildhall_bots_hosted").await, 0);

    let mut gw = nodes[owner].gateway().await;
    gw.identify(&alice, ALL_INTENTS).await;
    let say = |content: String| {
        let (h, path, token) = (http[owner], format!("/channels/{cid}/messages"), alice.clone());
        async move {
            let m = h.post(&path, &token, json!({ "content": content })).await;
            assert_eq!(m.status, StatusCode::OK, "{}", m.body);
        }
    };
    // It acts through the guild (its message is fanned out like anyone's) and reads the
    // channel through the channel's node (its own message is the newest).
    say(format!("probe send {cid}")).await;
    assert_eq!(bot_reply(&mut gw, "send:").await, "send: ok");
    say(format!("probe recent {cid}")).await;
    let recent = bot_reply(&mut gw, "recent:").await;
    assert!(recent.starts_with("recent: ok ") && recent.ends_with(&format!("probe recent {cid}")), "{recent}");

    // Disabled: the guild stops it, and the runner on the other node ends.
    let path = format!("/guilds/{gid}/plugins/{pid}");
    let off = http[0].call(hyper::Method::PATCH, &path, Some(&alice), Some(json!({ "enabled": false }))).await;
    assert_eq!(off.status, StatusCode::OK, "{}", off.body);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while nodes[runner].metric("guildhall_bots_hosted").await != 0 {
        assert!(std::time::Instant::now() < deadline, "the remote runner did not end");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let on = http[0].call(hyper::Method::PATCH, &path, Some(&alice), Some(json!({ "enabled": true }))).await;
    assert_eq!(on.status, StatusCode::OK, "{}", on.body);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while nodes[runner].metric("guildhall_bots_hosted").await != 1 {
        assert!(std::time::Instant::now() < deadline, "the remote runner did not start again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The runner's node dies: the guild's node places the bot again (on itself, the only
    // node left) and it answers again within seconds.
    nodes[runner].kill9();
    let killed = std::time::Instant::now();
    let mut answered = false;
    while !answered && killed.elapsed() < Duration::from_secs(15) {
        say(format!("probe send {cid}")).await;
        let next = tokio::time::timeout(Duration::from_secs(1), bot_reply(&mut gw, "send:")).await;
        answered = next.is_ok_and(|r| r == "send: ok");
    }
    assert!(answered, "the bot did not answer again within 15 s of its node's death");
    eprintln!("bot answered again {:?} after its node was killed", killed.elapsed());
}

/// The next message a bot posts that starts with `prefix`.
async fn bot_reply(gw: &mut guildhall_e2e::Gateway, prefix: &str) -> String {
    loop {
        let m = gw.dispatch("MESSAGE_CREATE").await;
        if m["d"]["author"]["bot"] == true && m["d"]["content"].as_str().unwrap_or("").starts_with(prefix) {
            return m["d"]["content"].as_str().unwrap().to_owned();
        }
    }
}
