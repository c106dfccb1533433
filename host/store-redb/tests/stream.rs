//! The embedded store as the host's stream of message events (`open_streaming`): a batch's
//! entries are in the stream when the batch is stored, refused writes travel as `Void`, the
//! outbox stays empty, and what an outbox held before moves into the stream.

use std::path::Path;
use std::time::Duration;

use guildhall_core::guild::GuildWrite;
use guildhall_core::model::{Channel, Guild, Member, Message, User};
use guildhall_core::stream::{LogEntry, LogKey, StreamEvent, LOG_SCHEMA_VERSION};
use guildhall_core::Snowflake;
use guildhall_store::{Storage, StoreError};
use guildhall_store_redb::EmbeddedStore;
use guildhall_stream::{EmbeddedLog, EventLog};

const WAIT: Duration = Duration::from_secs(2);

struct Guild1 {
    key: LogKey,
    channel: Channel,
    owner: User,
}

async fn guild(store: &EmbeddedStore) -> Guild1 {
    let owner = User::new(Snowflake(7), "owner", false);
    let channel = Channel::text(Snowflake(2), Snowflake(1), "general");
    let member = Member::new(owner.clone(), "2026-12-06T00:00:00.000000+00:00".into());
    store.create_guild(Guild::new(Snowflake(1), "g", owner.id), member, vec![channel.clone()]).await.unwrap();
    Guild1 { key: LogKey::Guild(Snowflake(1)), channel, owner }
}

fn message(g: &Guild1, id: u64, content: &str) -> Message {
    Message::new(Snowflake(id), &g.channel, g.owner.clone(), content.into(), None)
}

fn entry(key: LogKey, seq: u64, event: StreamEvent) -> LogEntry {
    LogEntry { v: LOG_SCHEMA_VERSION, key, seq, prev: seq - 1, recipients: vec![], event }
}

/// The database file is locked until the last thread of the previous opening lets it go.
async fn reopen_streaming(dir: &Path) -> (EmbeddedStore, EmbeddedLog) {
    for _ in 0..100 {
        if let Ok(opened) = EmbeddedStore::open_streaming(dir, 1_000) {
            return opened;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the store did not reopen");
}

#[tokio::test]
async fn a_stored_batch_is_in_the_stream_with_refused_writes_as_void() {
    let dir = tempfile::tempdir().unwrap();
    let (store, events) = EmbeddedStore::open_streaming(dir.path(), 1_000).unwrap();
    let g = guild(&store).await;
    let mut reader = events.consumer("indexer").await.unwrap();
    let (one, gone, two) = (message(&g, 10, "one"), message(&g, 11, "never stored"), message(&g, 12, "two"));
    let writes = vec![
        GuildWrite::PutMessage(one.clone()),
        GuildWrite::UpdateGuild(Guild::new(Snowflake(1), "renamed", g.owner.id)),
        GuildWrite::EditMessage(gone.clone()),
        GuildWrite::PutMessage(two.clone()),
    ];
    let entries = vec![
        entry(g.key, 1, StreamEvent::MessageCreate { message: one.clone() }),
        entry(g.key, 2, StreamEvent::MessageUpdate { message: gone }),
        entry(g.key, 3, StreamEvent::MessageCreate { message: two.clone() }),
    ];
    let done = store.apply_logged_batch(writes, entries).await;
    assert_eq!(done.log, Ok(()));
    assert_eq!(done.writes, vec![Ok(()), Ok(()), Err(StoreError::NotFound), Ok(())]);

    let got = reader.fetch(10, WAIT).await.unwrap();
    let events: Vec<(u64, StreamEvent)> =
        got.iter().map(|d| d.entry.clone().unwrap()).map(|e| (e.seq, e.event)).collect();
    assert_eq!(
        events,
        vec![
            (1, StreamEvent::MessageCreate { message: one }),
            (2, StreamEvent::Void),
            (3, StreamEvent::MessageCreate { message: two }),
        ]
    );
    assert_eq!(store.log_head(g.key).await.unwrap(), 3, "the head moves as with an outbox");
    assert!(store.log_entries(g.key, 0, 10).await.unwrap().is_empty(), "nothing waits in the outbox");
    assert!(store.logs_pending(100).await.unwrap().is_empty(), "nothing to relay");
    reader.ack(got[2].position).await.unwrap();
    assert!(reader.fetch(10, Duration::from_millis(50)).await.unwrap().is_empty());
}

#[tokio::test]
async fn what_an_outbox_held_moves_into_the_stream_when_the_store_streams() {
    let dir = tempfile::tempdir().unwrap();
    let key = {
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let g = guild(&store).await;
        let m = message(&g, 10, "waiting in the outbox");
        let logged = vec![entry(g.key, 1, StreamEvent::MessageCreate { message: m.clone() })];
        let done = store.apply_logged_batch(vec![GuildWrite::PutMessage(m)], logged).await;
        assert_eq!(done.writes, vec![Ok(())]);
        assert_eq!(store.logs_pending(10).await.unwrap(), vec![g.key]);
        g.key
    };
    let (store, events) = reopen_streaming(dir.path()).await;
    assert!(store.logs_pending(10).await.unwrap().is_empty());
    let got = events.consumer("indexer").await.unwrap().fetch(10, WAIT).await.unwrap();
    let seqs: Vec<(LogKey, u64)> = got.iter().map(|d| d.entry.clone().unwrap()).map(|e| (e.key, e.seq)).collect();
    assert_eq!(seqs, vec![(key, 1)]);
    assert_eq!(store.log_head(key).await.unwrap(), 1);
}
