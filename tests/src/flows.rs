//! The product's main flows, written once and run against each storage backend:
//! two users, a guild, an invite, a DM; ordered fan-out of 100 messages to every session;
//! history and pagination; edits, deletes, typing, channels; RESUME replaying exactly
//! what was missed.

use crate::{Gateway, Server, ALL_INTENTS};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

fn ids(list: &Value) -> Vec<String> {
    list.as_array().expect("array").iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect()
}

pub async fn guild_invite_dm_and_ordered_fanout(server: &Server) {
    let http = server.http();
    let (alice, _alice_id) = http.register("alice").await;
    let (bob, bob_id) = http.register("bob").await;

    let guild = http.post("/guilds", &alice, json!({ "name": "Guildhall" })).await;
    assert_eq!(guild.status, StatusCode::CREATED, "{}", guild.body);
    let gid = guild.body["id"].as_str().unwrap().to_owned();
    let channels = http.get(&format!("/guilds/{gid}/channels"), &alice).await;
    assert_eq!(channels.body[0]["name"], "general");
    let cid = channels.body[0]["id"].as_str().unwrap().to_owned();

    // Alice online twice; Bob online before he joins.
    let mut a1 = server.gateway().await;
    let ready = a1.identify(&alice, ALL_INTENTS).await;
    assert_eq!(ready["d"]["v"], 10);
    assert_eq!(ready["d"]["guilds"][0]["id"], gid.as_str());
    assert_eq!(ready["d"]["guilds"][0]["unavailable"], true);
    assert!(ready["d"]["resume_gateway_url"].as_str().unwrap().starts_with("ws://"));
    let mut a2 = server.gateway().await;
    a2.identify(&alice, ALL_INTENTS).await;
    let mut b1 = server.gateway().await;
    let bob_ready = b1.identify(&bob, ALL_INTENTS).await;
    assert_eq!(bob_ready["d"]["guilds"], json!([]));

    let invite = http.post(&format!("/channels/{cid}/invites"), &alice, json!({})).await;
    assert_eq!(invite.status, StatusCode::OK, "{}", invite.body);
    let code = invite.body["code"].as_str().unwrap().to_owned();
    let joined = http.post(&format!("/invites/{code}"), &bob, json!({})).await;
    assert_eq!(joined.status, StatusCode::OK, "{}", joined.body);
    assert_eq!(joined.body["new_member"], true);
    assert_eq!(joined.body["guild"]["id"], gid.as_str());
    for a in [&mut a1, &mut a2] {
        let add = a.dispatch("GUILD_MEMBER_ADD").await;
        assert_eq!(add["d"]["user"]["id"], bob_id.as_str());
        assert_eq!(add["d"]["guild_id"], gid.as_str());
    }
    let created = b1.dispatch("GUILD_CREATE").await;
    assert_eq!(created["d"]["id"], gid.as_str());
    assert_eq!(created["d"]["member_count"], 2);
    assert!(created["d"]["channels"].as_array().unwrap().iter().any(|c| c["id"] == cid.as_str()));
    let again = http.post(&format!("/invites/{code}"), &bob, json!({})).await;
    assert_eq!(again.body["new_member"], false, "joining twice changes nothing");

    // 100 messages over REST, alternating authors: every session gets all, in order.
    let mut sent = Vec::new();
    for i in 0..100 {
        let token = if i % 2 == 0 { &alice } else { &bob };
        let m = http
            .post(&format!("/channels/{cid}/messages"), token, json!({ "content": format!("msg {i}"), "nonce": i }))
            .await;
        assert_eq!(m.status, StatusCode::OK, "{}", m.body);
        assert_eq!(m.body["nonce"], i);
        assert_eq!(m.body["guild_id"], gid.as_str());
        sent.push(m.body["id"].as_str().unwrap().to_owned());
    }
    for gw in [&mut a1, &mut a2, &mut b1] {
        for (i, id) in sent.iter().enumerate() {
            let d = gw.dispatch("MESSAGE_CREATE").await; // `dispatch` checks s is consecutive
            assert_eq!(d["d"]["id"], id.as_str());
            assert_eq!(d["d"]["content"], format!("msg {i}"));
        }
    }
    let mut ascending = sent.clone();
    ascending.sort_by_key(|id| id.parse::<u64>().unwrap());
    assert_eq!(ascending, sent, "ids increase in creation order");
    let newest_first: Vec<String> = sent.iter().rev().cloned().collect();

    // History: newest first, and pagination walks it all without gaps or repeats.
    let all = http.get(&format!("/channels/{cid}/messages?limit=100"), &bob).await;
    assert_eq!(ids(&all.body), newest_first);
    assert!(all.body[0].get("nonce").is_none(), "history does not echo nonces");
    let mut paged = Vec::new();
    let mut before = String::new();
    loop {
        let q = if before.is_empty() { "limit=30".to_owned() } else { format!("limit=30&before={before}") };
        let page = ids(&http.get(&format!("/channels/{cid}/messages?{q}"), &alice).await.body);
        if page.is_empty() {
            break;
        }
        before = page.last().unwrap().clone();
        paged.extend(page);
    }
    assert_eq!(paged, newest_first);
    let after = http.get(&format!("/channels/{cid}/messages?after={}&limit=10", sent[49]), &alice).await;
    assert_eq!(ids(&after.body), newest_first[40..50].to_vec(), "the 10 after #49, newest first");
    let around = http.get(&format!("/channels/{cid}/messages?around={}&limit=5", sent[10]), &alice).await;
    assert_eq!(
        ids(&around.body),
        vec![sent[12].clone(), sent[11].clone(), sent[10].clone(), sent[9].clone(), sent[8].clone()]
    );
    let default_page = http.get(&format!("/channels/{cid}/messages"), &alice).await;
    assert_eq!(default_page.body.as_array().unwrap().len(), 50);

    // Edit and delete, with fan-out.
    let path = format!("/channels/{cid}/messages/{}", sent[0]);
    let denied = http.call(Method::PATCH, &path, Some(&bob), Some(json!({ "content": "hijack" }))).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let edited = http.call(Method::PATCH, &path, Some(&alice), Some(json!({ "content": "edited" }))).await;
    assert_eq!(edited.status, StatusCode::OK, "{}", edited.body);
    assert!(edited.body["edited_timestamp"].is_string());
    for gw in [&mut a1, &mut a2, &mut b1] {
        assert_eq!(gw.dispatch("MESSAGE_UPDATE").await["d"]["content"], "edited");
    }
    assert_eq!(http.get(&path, &bob).await.body["content"], "edited");
    let deleted = http.call(Method::DELETE, &path, Some(&alice), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    for gw in [&mut a1, &mut a2, &mut b1] {
        assert_eq!(gw.dispatch("MESSAGE_DELETE").await["d"]["id"], sent[0].as_str());
    }
    assert_eq!(http.get(&path, &bob).await.status, StatusCode::NOT_FOUND);

    // Typing and a new channel.
    let typing = http.call(Method::POST, &format!("/channels/{cid}/typing"), Some(&bob), None).await;
    assert_eq!(typing.status, StatusCode::NO_CONTENT);
    assert_eq!(a1.dispatch("TYPING_START").await["d"]["user_id"], bob_id.as_str());
    let random = http.post(&format!("/guilds/{gid}/channels"), &alice, json!({ "name": "random" })).await;
    assert_eq!(random.status, StatusCode::CREATED, "{}", random.body);
    assert_eq!(b1.dispatch("CHANNEL_CREATE").await["d"]["name"], "random");
    let members = http.get(&format!("/guilds/{gid}/members?limit=10"), &bob).await;
    assert_eq!(members.body.as_array().unwrap().len(), 2);

    // A DM reaches both users' sessions; a second open returns the same channel.
    let dm = http.post("/users/@me/channels", &alice, json!({ "recipient_id": bob_id })).await;
    assert_eq!(dm.status, StatusCode::OK, "{}", dm.body);
    assert_eq!(dm.body["type"], 1);
    let dm_id = dm.body["id"].as_str().unwrap().to_owned();
    let dm_again = http.post("/users/@me/channels", &alice, json!({ "recipient_id": bob_id })).await;
    assert_eq!(dm_again.body["id"], dm_id.as_str());
    let psst = http.post(&format!("/channels/{dm_id}/messages"), &alice, json!({ "content": "psst" })).await;
    assert_eq!(psst.status, StatusCode::OK, "{}", psst.body);
    for gw in [&mut a1, &mut a2, &mut b1] {
        let d = gw.dispatch("MESSAGE_CREATE").await;
        assert_eq!(d["d"]["channel_id"], dm_id.as_str());
        assert_eq!(d["d"]["content"], "psst");
    }
    let (carol, _) = http.register("carol").await;
    let snoop = http.get(&format!("/channels/{dm_id}/messages"), &carol).await;
    assert_eq!(snoop.status, StatusCode::FORBIDDEN);
    assert_eq!(snoop.body["code"], 50001);
    assert_eq!(ids(&http.get(&format!("/channels/{dm_id}/messages"), &bob).await.body).len(), 1);
    // A READY after the fact lists the DM.
    let mut b2 = server.gateway().await;
    let ready = b2.identify(&bob, ALL_INTENTS).await;
    assert_eq!(ready["d"]["private_channels"][0]["id"], dm_id.as_str());
}

pub async fn resume_replays_exactly_the_missed_dispatches(server: &Server) {
    let http = server.http();
    let (alice, _) = http.register("alice").await;
    let gid = http.post("/guilds", &alice, json!({ "name": "g" })).await.body["id"].as_str().unwrap().to_owned();
    let cid = http.get(&format!("/guilds/{gid}/channels"), &alice).await.body[0]["id"].as_str().unwrap().to_owned();
    let post = |i: usize| {
        let (http, alice, cid) = (http, alice.clone(), cid.clone());
        async move {
            let m =
                http.post(&format!("/channels/{cid}/messages"), &alice, json!({ "content": format!("m{i}") })).await;
            assert_eq!(m.status, StatusCode::OK);
            m.body["id"].as_str().unwrap().to_owned()
        }
    };

    let mut gw = server.gateway().await;
    let ready = gw.identify(&alice, ALL_INTENTS).await;
    let session_id = ready["d"]["session_id"].as_str().unwrap().to_owned();
    for i in 0..3 {
        post(i).await;
        gw.dispatch("MESSAGE_CREATE").await;
    }
    let seen = gw.last_seq;
    drop(gw); // the TCP connection drops without a close frame

    let mut missed = Vec::new();
    for i in 3..8 {
        missed.push(post(i).await);
    }

    // A wrong session id is not resumable: op 9 with d = false.
    let mut stray = server.gateway().await;
    assert_eq!(stray.next().await["op"], 10);
    stray.send(json!({ "op": 6, "d": { "token": alice, "session_id": "nope", "seq": 1 } })).await;
    let invalid = stray.next().await;
    assert_eq!((invalid["op"].clone(), invalid["d"].clone()), (json!(9), json!(false)));

    let mut resumed = server.gateway().await;
    assert_eq!(resumed.next().await["op"], 10);
    resumed.last_seq = seen;
    resumed.send(json!({ "op": 6, "d": { "token": alice, "session_id": session_id, "seq": seen } })).await;
    for id in &missed {
        let d = resumed.next().await;
        assert_eq!(d["t"], "MESSAGE_CREATE", "{d}");
        assert_eq!(d["d"]["id"], id.as_str());
    }
    assert_eq!(resumed.next().await["t"], "RESUMED");
    // Nothing else was replayed: the next frame is the next new message.
    let next = post(8).await;
    let d = resumed.next().await;
    assert_eq!((d["t"].as_str(), d["d"]["id"].as_str()), (Some("MESSAGE_CREATE"), Some(next.as_str())));

    // Resuming with a sequence number from the future is 4007.
    let mut liar = server.gateway().await;
    liar.next().await;
    liar.send(json!({ "op": 6, "d": { "token": alice, "session_id": session_id, "seq": seen + 1000 } })).await;
    assert_eq!(liar.expect_close().await, Some(4007));
    // The real session is unaffected.
    let after = post(9).await;
    assert_eq!(resumed.dispatch("MESSAGE_CREATE").await["d"]["id"], after.as_str());
    let _: Gateway = resumed;
}
