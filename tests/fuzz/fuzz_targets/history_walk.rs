//! The history walk across 10-day buckets against an oracle: messages at arbitrary times
//! in a channel (stored in the embedded backend), then any query (latest, before, after,
//! around an arbitrary id) with any limit must answer exactly what a sorted list says.
#![no_main]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use guildhall_core::guild::GuildWrite;
use guildhall_core::model::{Channel, Message, User};
use guildhall_core::snowflake::{Snowflake, BUCKET_SIZE_MS};
use guildhall_store::{history, HistoryQuery, Storage};
use guildhall_store_redb::EmbeddedStore;
use libfuzzer_sys::fuzz_target;

/// When channels are made: far enough from now that every message is in the past.
const CHANNEL_MS: u64 = 1_600_000_000_000;
/// Offsets are 24 bits; times this, they span ~30 buckets (about 300 days).
const SPREAD: u64 = 1_546;

fn store() -> &'static (tokio::runtime::Runtime, Arc<EmbeddedStore>) {
    static STORE: OnceLock<(tokio::runtime::Runtime, Arc<EmbeddedStore>)> = OnceLock::new();
    STORE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("guildhall-fuzz-history-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let store = Arc::new(EmbeddedStore::open(&dir).unwrap());
        (runtime, store)
    })
}

/// An id at `unix_ms`, distinct per `n` within the millisecond.
fn id_at(unix_ms: u64, n: u64) -> Snowflake {
    Snowflake(Snowflake::from_unix_ms(unix_ms).0 | (n & 0xFFF))
}

/// The input, read directly (so that a short one is already a meaningful case): the query
/// kind, the limit, an anchor offset, then 3 bytes per message offset after the channel's
/// creation.
fuzz_target!(|data: &[u8]| {
    let Some((&[kind, limit, a0, a1, a2], offsets)) = data.split_first_chunk::<5>() else {
        return;
    };
    let offset = |b: &[u8]| u64::from(u32::from_le_bytes([b[0], b[1], b[2], 0]));
    let anchor_offset = offset(&[a0, a1, a2]);
    static CHANNELS: AtomicU64 = AtomicU64::new(0);
    let (runtime, store) = store();
    // A fresh channel per case (the store is shared): its id is its creation time.
    let n = CHANNELS.fetch_add(1, Ordering::Relaxed);
    let channel = Channel::text(id_at(CHANNEL_MS, n), Snowflake(1), "fuzz");
    let author = User::new(Snowflake(7), "author", false);
    let mut ids: Vec<Snowflake> = offsets
        .chunks_exact(3)
        .take(300)
        .enumerate()
        .map(|(i, b)| id_at(CHANNEL_MS + 1 + offset(b) * SPREAD, i as u64))
        .collect();
    ids.sort();
    ids.dedup();
    let newest = Snowflake::from_unix_ms(CHANNEL_MS + (1 << 24) * SPREAD + BUCKET_SIZE_MS).bucket();
    let anchor = id_at(CHANNEL_MS + anchor_offset * SPREAD, anchor_offset);
    let limit = usize::from(limit % 101);
    let query = match kind % 4 {
        0 => HistoryQuery::Latest,
        1 => HistoryQuery::Before(anchor),
        2 => HistoryQuery::After(anchor),
        // Around a message itself (odd kinds above 3), or an id between messages.
        _ if kind & 4 != 0 && !ids.is_empty() => HistoryQuery::Around(ids[anchor_offset as usize % ids.len()]),
        _ => HistoryQuery::Around(anchor),
    };
    let got = runtime.block_on(async {
        let writes =
            ids.iter().map(|id| GuildWrite::PutMessage(Message::new(*id, &channel, author.clone(), "m".into(), None)));
        for result in store.apply_batch(writes.collect()).await {
            result.unwrap();
        }
        history(store.as_ref() as &dyn Storage, &channel, query, limit, newest).await.unwrap()
    });
    let got: Vec<Snowflake> = got.iter().map(|m| m.id).collect();

    // The oracle: newest first, as Discord answers every kind of query.
    let desc: Vec<Snowflake> = ids.iter().rev().copied().collect();
    let want: Vec<Snowflake> = match query {
        HistoryQuery::Latest => desc.iter().take(limit).copied().collect(),
        HistoryQuery::Before(a) => desc.iter().filter(|id| **id < a).take(limit).copied().collect(),
        HistoryQuery::After(a) => {
            let mut up: Vec<Snowflake> = ids.iter().filter(|id| **id > a).take(limit).copied().collect();
            up.reverse();
            up
        }
        HistoryQuery::Around(a) => {
            let mut newer: Vec<Snowflake> =
                ids.iter().filter(|id| **id >= a).take(limit.div_ceil(2)).copied().collect();
            newer.reverse();
            let older = desc.iter().filter(|id| **id < a).take(limit - newer.len());
            newer.extend(older);
            newer
        }
    };
    assert_eq!(got, want, "{query:?} limit {limit} over {} messages", ids.len());
});
