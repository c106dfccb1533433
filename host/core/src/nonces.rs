//! Recent message nonces, for Discord's `enforce_nonce`: a create that names a nonce its
//! author already used in the channel within the last few minutes gets the message made
//! then, not a second one. A client that retries a create (its answer timed out, a 503)
//! with the same nonce cannot post twice.
//!
//! Pure and bounded: at most [`RecentNonces::CAPACITY`] entries per guild, the oldest
//! going first; time is the messages' own (their snowflake ids).

use std::collections::{HashMap, VecDeque};

use crate::model::{ChannelId, MessageId, UserId};

/// (author, channel, the nonce as its JSON text: `"abc"` and `123` differ).
pub type NonceKey = (UserId, ChannelId, String);

#[derive(Debug, Default)]
pub struct RecentNonces {
    by_key: HashMap<NonceKey, MessageId>,
    /// Keys in the order their messages were made (ids grow with time), for expiry.
    order: VecDeque<(NonceKey, MessageId)>,
}

impl RecentNonces {
    /// How long a nonce is remembered ("the past few minutes", Discord says).
    pub const WINDOW_MS: u64 = 5 * 60_000;
    /// Nonces remembered per guild at most.
    pub const CAPACITY: usize = 1024;

    /// The message `key` made, if it was made within the window before `now` (a new
    /// message id: its time).
    pub fn find(&self, key: &NonceKey, now: MessageId) -> Option<MessageId> {
        let id = *self.by_key.get(key)?;
        (now.timestamp_ms().saturating_sub(id.timestamp_ms()) < Self::WINDOW_MS).then_some(id)
    }

    /// Remembers that `key` made message `id`.
    pub fn record(&mut self, key: NonceKey, id: MessageId) {
        while self
            .order
            .front()
            .is_some_and(|(_, old)| id.timestamp_ms().saturating_sub(old.timestamp_ms()) >= Self::WINDOW_MS)
            || self.order.len() >= Self::CAPACITY
        {
            let (old_key, old_id) = self.order.pop_front().expect("checked non-empty");
            if self.by_key.get(&old_key) == Some(&old_id) {
                self.by_key.remove(&old_key);
            }
        }
        self.by_key.insert(key.clone(), id);
        self.order.push_back((key, id));
        debug_assert!(self.by_key.len() <= self.order.len() && self.order.len() <= Self::CAPACITY);
    }

    /// A deleted message: a retry of its create makes a new one.
    pub fn forget(&mut self, id: MessageId) {
        self.by_key.retain(|_, made| *made != id);
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
        assert_eq!(n.find(&key("\"a\""), at(1_000 + 60_000, 1)), Some(at(1_000, 0)));
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
}
