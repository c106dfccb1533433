//! Backfill: a log's history indexed from storage, newest first, while live events keep
//! flowing. Pure: what comes next and what a page read changes; the worker does the IO.
//!
//! Every channel is read backwards from its newest message, a page at a time. The recent days
//! go first across all channels (until then a search answers 202, as Discord's does), then the
//! deep history (searches answer, saying so). A page replaces what the cell holds in its id
//! range with what storage holds there (`CellOp::ClearRange`, then the page's documents), so
//! the same machinery repairs a gap in the stream and re-indexes with a new indexer. Live
//! events and pages never race: the worker reads a page and writes it before it takes the
//! next live batch, and a live event is stored before it is streamed, so the later of the two
//! writes is the newer state.

use guildhall_core::model::{ChannelId, MessageId};
use guildhall_core::snowflake::MAX_DECIMAL;
use guildhall_core::Snowflake;
use serde::{Deserialize, Serialize};

/// How far a log's history is indexed from storage (committed with the cell).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backfill {
    /// Each channel's next page is of messages before its cursor; done ones are dropped.
    pub channels: Vec<ChannelCursor>,
    /// Messages from this id on are the recent history, indexed first.
    pub recent_from: MessageId,
    /// Searches are answered: the recent history is indexed, or the log was searchable
    /// before (a repair or a re-index goes on under answers that say so).
    pub recent_done: bool,
    /// Documents this backfill indexed so far.
    pub documents: u64,
    /// The generation of the log's documents it writes: the serving one (a first index, a
    /// repair), or the next (a re-index beside it, switched to when done).
    #[serde(default)]
    pub gen: u32,
}

/// A cursor before every message: above any snowflake, and still one when read back (the
/// largest a snowflake's decimal form holds; `u64::MAX` has a digit too many).
pub const BEFORE_ALL: MessageId = Snowflake(MAX_DECIMAL);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelCursor {
    pub channel: ChannelId,
    /// Only messages before this id are still to read.
    pub before: MessageId,
}

/// A channel's page to read next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageAsk {
    pub at: usize,
    pub channel: ChannelId,
    pub before: MessageId,
}

impl Backfill {
    /// A backfill of `channels` from their newest messages; the recent history is what is
    /// younger than `recent_ms` at `now_unix_ms`. `answering`: the log was searchable before.
    pub fn new(channels: &[ChannelId], now_unix_ms: u64, recent_ms: u64, answering: bool) -> Backfill {
        let mut b = Backfill {
            channels: channels.iter().map(|&channel| ChannelCursor { channel, before: BEFORE_ALL }).collect(),
            recent_from: Snowflake::from_unix_ms(now_unix_ms.saturating_sub(recent_ms)),
            recent_done: answering,
            documents: 0,
            gen: 0,
        };
        b.check_recent();
        b
    }

    /// Every channel is read to its first message.
    pub fn is_done(&self) -> bool {
        self.channels.is_empty()
    }

    /// The page to read next: the channel whose unread messages are newest (so the recent
    /// history of every channel comes before any channel's old history).
    pub fn next_page(&self) -> Option<PageAsk> {
        let (at, c) = self.channels.iter().enumerate().max_by_key(|(i, c)| (c.before, std::cmp::Reverse(*i)))?;
        Some(PageAsk { at, channel: c.channel, before: c.before })
    }

    /// A page of `ask` was read: `oldest` is its oldest message (none: the page was empty),
    /// `exhausted` whether it was shorter than asked (nothing older is left). Returns the id
    /// range `from..before` the page stands for: the cell's documents of the channel there
    /// are replaced by the page's.
    pub fn page_read(
        &mut self,
        ask: PageAsk,
        oldest: Option<MessageId>,
        read: usize,
        exhausted: bool,
    ) -> (MessageId, MessageId) {
        assert_eq!(self.channels.get(ask.at).map(|c| c.channel), Some(ask.channel), "the page asked for");
        let from = match oldest {
            Some(oldest) if !exhausted => oldest,
            _ => Snowflake(0),
        };
        if from == Snowflake(0) {
            self.channels.remove(ask.at);
        } else {
            self.channels[ask.at].before = from;
        }
        self.documents += read as u64;
        self.check_recent();
        (from, ask.before)
    }

    /// A channel that no longer exists: nothing of it to read.
    pub fn drop_channel(&mut self, ask: PageAsk) {
        if self.channels.get(ask.at).map(|c| c.channel) == Some(ask.channel) {
            self.channels.remove(ask.at);
        }
        self.check_recent();
    }

    fn check_recent(&mut self) {
        self.recent_done = self.recent_done || self.channels.iter().all(|c| c.before <= self.recent_from);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400_000;
    const NOW: u64 = 1_800_000_000_000;

    fn at_days_ago(days: u64) -> MessageId {
        Snowflake::from_unix_ms(NOW - days * DAY)
    }

    #[test]
    fn the_recent_days_of_every_channel_come_before_old_history() {
        let mut b = Backfill::new(&[Snowflake(1), Snowflake(2)], NOW, 7 * DAY, false);
        assert!(!b.recent_done && !b.is_done());
        // Channel 1 first (ties: the first listed); its page reaches 30 days back.
        let ask = b.next_page().unwrap();
        assert_eq!(ask.channel, Snowflake(1));
        assert_eq!(b.page_read(ask, Some(at_days_ago(30)), 100, false), (at_days_ago(30), BEFORE_ALL));
        assert!(!b.recent_done, "channel 2's recent days are not read");
        // Channel 2 is newer now; its page is short: the channel is done.
        let ask = b.next_page().unwrap();
        assert_eq!(ask.channel, Snowflake(2));
        assert_eq!(b.page_read(ask, Some(at_days_ago(1)), 3, true), (Snowflake(0), BEFORE_ALL));
        assert!(b.recent_done, "every channel's unread messages are older than the recent days");
        assert_eq!(b.documents, 103);
        // Then channel 1's old history, to its first message.
        let ask = b.next_page().unwrap();
        assert_eq!((ask.channel, ask.before), (Snowflake(1), at_days_ago(30)));
        assert_eq!(b.page_read(ask, None, 0, true), (Snowflake(0), at_days_ago(30)));
        assert!(b.is_done() && b.next_page().is_none());
    }

    #[test]
    fn a_repair_answers_from_the_start_and_a_vanished_channel_is_dropped() {
        let mut b = Backfill::new(&[Snowflake(1)], NOW, 7 * DAY, true);
        assert!(b.recent_done, "the log was searchable: answers go on");
        let ask = b.next_page().unwrap();
        b.drop_channel(ask);
        assert!(b.is_done());
    }

    /// Cells commit backfills in their payload: one must read back as it was written, or the
    /// cell does not open after a crash in the middle of it.
    #[test]
    fn a_backfill_in_progress_reads_back_as_committed() {
        let mut b = Backfill::new(&[Snowflake(1), Snowflake(2)], NOW, 7 * DAY, false);
        let ask = b.next_page().unwrap();
        b.page_read(ask, Some(at_days_ago(3)), 10, false);
        let json = serde_json::to_string(&b).unwrap();
        assert_eq!(serde_json::from_str::<Backfill>(&json).unwrap(), b, "{json}");
    }

    #[test]
    fn a_log_without_channels_is_done_and_answers_at_once() {
        let b = Backfill::new(&[], NOW, 7 * DAY, false);
        assert!(b.is_done() && b.recent_done);
    }
}
