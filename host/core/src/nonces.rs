//! Recent message nonces, for Discord's `enforce_nonce`: a create that names a nonce its
//! author already used in the channel within the last few minutes gets the message made
//! then, not a second one. A client that retries a create (its answer timed out, a 503)
//! with the same nonce cannot post twice, even when its first write failed or timed out
//! and may still have landed: the retry writes the same message (same id) again.
//!
//! Pure and bounded: at most [`RecentNonces::CAPACITY`] stored and as many unsure entries
//! per guild, the oldest of each going first; time is the messages' own (their snowflake
//! ids). The two are bounded apart: the unsure ones are what clients retry, and a guild's
//! busy minute of stored creates must not push them out.

use std::collections::{HashMap, VecDeque};

use crate::model::{ChannelId, MessageId, UserId};

/// (author, channel, the nonce as its JSON text: `"abc"` and `123` differ).
pub type NonceKey = (UserId, ChannelId, String);

/// What a nonce made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Made {
    /// A stored message: a retry is answered with it.
    Stored(MessageId),
    /// A message whose write failed or timed out, so that it may or may not be stored: a
    /// retry writes it again under the same id (an overwrite of the same row), so that it
    /// is stored once either way.
    Unsure(MessageId),
}

impl Made {
    pub fn id(self) -> MessageId {
        match self {
            Made::Stored(id) | Made::Unsure(id) => id,
        }
    }
}

#[derive(Debug, Default)]
pub struct RecentNonces {
    by_key: HashMap<NonceKey, Made>,
    /// Keys of stored messages, and apart those of unsure ones, each in the order their
    /// messages were made (ids grow with time), for expiry. An entry whose key now holds
    /// something else (a retry stored the unsure message) is skipped when it leaves.
    stored: VecDeque<(NonceKey, MessageId)>,
    unsure: VecDeque<(NonceKey, MessageId)>,
}

impl RecentNonces {
    /// How long a nonce is remembered ("the past few minutes", Discord says).
    pub const WINDOW_MS: u64 = 5 * 60_000;
    /// Stored nonces remembered per guild at most, and unsure ones as many again.
    pub const CAPACITY: usize = 1024;

    /// The message `key` made, if it was made within the window before `now` (a new
    /// message id: its time).
    pub fn find(&self, key: &NonceKey, now: MessageId) -> Option<Made> {
        let made = *self.by_key.get(key)?;
        (now.timestamp_ms().saturating_sub(made.id().timestamp_ms()) < Self::WINDOW_MS).then_some(made)
    }

    /// Remembers that `key` made message `id`, stored.
    pub fn record(&mut self, key: NonceKey, id: MessageId) {
        self.remember(key, Made::Stored(id));
    }

    /// Remembers that `key` tried to make message `id`, whose write failed or timed out.
    pub fn record_unsure(&mut self, key: NonceKey, id: MessageId) {
        self.remember(key, Made::Unsure(id));
    }

    fn remember(&mut self, key: NonceKey, made: Made) {
        let now_ms = made.id().timestamp_ms();
        let stored = matches!(made, Made::Stored(_));
        // Both kinds expire with time; only the kind being added makes room by count.
        let room = |kind: bool| if kind == stored { Self::CAPACITY - 1 } else { usize::MAX };
        Self::expire(&mut self.by_key, &mut self.stored, true, now_ms, room(true));
        Self::expire(&mut self.by_key, &mut self.unsure, false, now_ms, room(false));
        let queue = if stored { &mut self.stored } else { &mut self.unsure };
        if self.by_key.insert(key.clone(), made) != Some(made) {
            queue.push_back((key, made.id()));
        }
        debug_assert!(self.stored.len() <= Self::CAPACITY && self.unsure.len() <= Self::CAPACITY);
        debug_assert!(self.by_key.len() <= self.stored.len() + self.unsure.len());
    }

    /// Drops the entries of `queue` (the stored ones, or the unsure ones) older than the
    /// window before `now_ms`, and the oldest until at most `keep` are left; a key is
    /// forgotten if it still holds what left (a stored retry of an unsure message outlives
    /// its unsure entry).
    fn expire(
        by_key: &mut HashMap<NonceKey, Made>,
        queue: &mut VecDeque<(NonceKey, MessageId)>,
        stored_queue: bool,
        now_ms: u64,
        keep: usize,
    ) {
        let old = |id: &MessageId| now_ms.saturating_sub(id.timestamp_ms()) >= Self::WINDOW_MS;
        while queue.front().is_some_and(|(_, id)| old(id)) || queue.len() > keep {
            let (key, id) = queue.pop_front().expect("checked non-empty");
            let same = |made: &Made| made.id() == id && matches!(made, Made::Stored(_)) == stored_queue;
            if by_key.get(&key).is_some_and(same) {
                by_key.remove(&key);
            }
        }
    }

    /// A deleted message: a retry of its create makes a new one.
    pub fn forget(&mut self, id: MessageId) {
        self.by_key.retain(|_, made| made.id() != id);
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Snowflake;

    fn at(ms: u64, n: u64) -> MessageId {
        Snowflake((ms << 22) | n)
    }

    fn key(nonce: &str) -> NonceKey {
        (Snowflake(1), Snowflake(2), nonce.to_owned())
    }

    #[test]
    fn a_nonce_finds_its_message_within_the_window_only() {
        let mut n = RecentNonces::default();
        n.record(key("\"a\""), at(1_000, 0));
        assert_eq!(n.find(&key("\"a\""), at(1_000 + 60_000, 1)), Some(Made::Stored(at(1_000, 0))));
        assert_eq!(n.find(&key("\"b\""), at(2_000, 1)), None);
        let other_author = (Snowflake(9), Snowflake(2), "\"a\"".to_owned());
        assert_eq!(n.find(&other_author, at(2_000, 1)), None, "per author");
        assert_eq!(n.find(&key("\"a\""), at(1_000 + RecentNonces::WINDOW_MS, 1)), None, "expired");
    }

    #[test]
    fn bounded_by_count_and_by_age_and_deletes_forget() {
        let mut n = RecentNonces::default();
        for i in 0..(RecentNonces::CAPACITY as u64 + 10) {
            n.record(key(&i.to_string()), at(1_000 + i, 0));
        }
        assert_eq!(n.len(), RecentNonces::CAPACITY);
        assert_eq!(n.find(&key("0"), at(5_000, 0)), None, "the oldest went first");
        // Far later: everything older than the window goes as the next one is recorded.
        n.record(key("late"), at(1_000 + RecentNonces::WINDOW_MS * 2, 0));
        assert_eq!(n.len(), 1);
        n.forget(at(1_000 + RecentNonces::WINDOW_MS * 2, 0));
        assert!(n.is_empty());
    }

    #[test]
    fn an_unsure_write_is_found_as_such_and_its_retry_keeps_one_entry() {
        let mut n = RecentNonces::default();
        n.record_unsure(key("1"), at(1_000, 0));
        assert_eq!(n.find(&key("1"), at(2_000, 0)), Some(Made::Unsure(at(1_000, 0))));
        n.record(key("1"), at(1_000, 0));
        assert_eq!(n.find(&key("1"), at(2_000, 0)), Some(Made::Stored(at(1_000, 0))));
        assert_eq!(n.len(), 1);
    }

    /// The ones a client retries are the unsure ones: stored creates, however many, never
    /// push them out (a guild's busy minute once did, and a retry after it made a second
    /// message).
    #[test]
    fn stored_creates_never_push_out_an_unsure_write() {
        let mut n = RecentNonces::default();
        n.record_unsure(key("unsure"), at(1_000, 0));
        for i in 0..(2 * RecentNonces::CAPACITY as u64) {
            n.record(key(&i.to_string()), at(1_001 + i, 0));
        }
        assert_eq!(n.find(&key("unsure"), at(10_000, 0)), Some(Made::Unsure(at(1_000, 0))));
        // The retry stores it; then it is a stored one like the others.
        n.record(key("unsure"), at(1_000, 0));
        assert_eq!(n.find(&key("unsure"), at(10_000, 0)), Some(Made::Stored(at(1_000, 0))));
        assert!(n.len() <= 2 * RecentNonces::CAPACITY);
        // Unsure ones are bounded too, by themselves.
        for i in 0..(RecentNonces::CAPACITY as u64 + 1) {
            n.record_unsure(key(&format!("u{i}")), at(5_000 + i, 0));
        }
        assert_eq!(n.find(&key("u0"), at(10_000, 0)), None, "the oldest unsure went first");
        assert!(n.find(&key("u1"), at(10_000, 0)).is_some());
    }
}
