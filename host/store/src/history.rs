//! Channel history across buckets: latest N, before / after / around an id.
//!
//! Messages live in 10-day partitions; a query walks them one by one from where it starts,
//! stopping when it has enough or when it passes the channel's first bucket (the bucket of
//! the channel's own id, before which no message can exist) or the newest bucket. An empty
//! bucket in the middle does not end the walk.

use guildhall_core::model::{Channel, Message, MessageId};
use guildhall_core::Snowflake;

use crate::{IdBounds, Order, Result, Storage};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum HistoryQuery {
    Latest,
    Before(MessageId),
    After(MessageId),
    Around(MessageId),
}

/// Up to `limit` messages, newest first (Discord's order for every query kind).
/// `newest_bucket` is the current time's bucket: no message is newer.
pub async fn history(
    store: &dyn Storage,
    channel: &Channel,
    query: HistoryQuery,
    limit: usize,
    newest_bucket: u32,
) -> Result<Vec<Message>> {
    let first = channel.first_bucket();
    let newest = newest_bucket.max(first);
    match query {
        HistoryQuery::Latest => walk_down(store, channel, newest, None, limit, first).await,
        HistoryQuery::Before(id) => walk_down(store, channel, id.bucket().min(newest), Some(id), limit, first).await,
        HistoryQuery::After(id) => {
            let mut up = walk_up(store, channel, id.bucket().max(first), id, limit, newest).await?;
            up.reverse();
            Ok(up)
        }
        HistoryQuery::Around(id) => {
            // Discord: the message itself (if any) and its neighbours, about half each side.
            let newer_count = limit.div_ceil(2);
            let from = Snowflake(id.0.saturating_sub(1)); // `after` is exclusive; include `id`
            let mut newer = walk_up(store, channel, id.bucket().max(first), from, newer_count, newest).await?;
            newer.reverse();
            let older =
                walk_down(store, channel, id.bucket().min(newest), Some(id), limit - newer.len(), first).await?;
            newer.extend(older);
            Ok(newer)
        }
    }
}

async fn walk_down(
    store: &dyn Storage,
    channel: &Channel,
    start_bucket: u32,
    before: Option<MessageId>,
    limit: usize,
    first_bucket: u32,
) -> Result<Vec<Message>> {
    let mut out = Vec::with_capacity(limit.min(100));
    let mut bucket = start_bucket;
    while out.len() < limit && bucket >= first_bucket {
        let bounds = IdBounds { after: None, before };
        out.extend(store.messages_in_bucket(channel.id, bucket, bounds, Order::Desc, limit - out.len()).await?);
        if bucket == 0 {
            break;
        }
        bucket -= 1;
    }
    Ok(out)
}

async fn walk_up(
    store: &dyn Storage,
    channel: &Channel,
    start_bucket: u32,
    after: MessageId,
    limit: usize,
    newest_bucket: u32,
) -> Result<Vec<Message>> {
    let mut out = Vec::with_capacity(limit.min(100));
    let mut bucket = start_bucket;
    while out.len() < limit && bucket <= newest_bucket {
        let bounds = IdBounds { after: Some(after), before: None };
        out.extend(store.messages_in_bucket(channel.id, bucket, bounds, Order::Asc, limit - out.len()).await?);
        bucket += 1;
    }
    Ok(out)
}
