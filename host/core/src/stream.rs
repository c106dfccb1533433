//! The durable stream of message events, pure: what an entry is, and the writer's side of
//! one log (a guild's, or a DM channel's) as a state machine.
//!
//! How an event reaches the stream (the *outbox*): the actor that owns a log numbers an entry
//! for every message write of a batch and hands the entries to storage *with* the batch
//! (`Storage::apply_logged_batch`: one transaction on the embedded store; on ScyllaDB the
//! entries first, then the writes). The write is acknowledged when storage is, so the stream
//! adds no round trip to a sender's latency. Afterwards the actor relays the stored entries to
//! the stream (JetStream in a cluster, the embedded log on one host), in order, retrying while
//! the stream fails, and tells storage which entries the stream has (they are deleted there).
//! If it cannot keep them in memory (too many while the stream is down), or after a restart or
//! a crash, it reads them back from storage. So nothing stored is lost, whatever the stream.
//!
//! Reading the stream: entries of one log arrive in `seq` order, possibly more than once (a
//! relay that restarts sends again what the stream may already have). A reader keeps the
//! highest `seq` it applied per log: an entry at or below it is a repeat; an entry whose `prev`
//! is above it means entries are missing (a gap: repaired from storage).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::guild::GuildWrite;
use crate::model::{ChannelId, GuildId, Message, MessageId, UserId};
use crate::Snowflake;

/// The version of the serialized form of [`LogEntry`]. Bump it on any change a reader of the
/// old form would misread.
pub const LOG_SCHEMA_VERSION: u16 = 1;

/// Entries a writer keeps in memory for the stream; past it, they are read back from storage.
pub const MAX_WAITING: usize = 4096;
/// Most entries one append carries.
pub const MAX_APPEND: usize = 512;

/// Whose log: a guild's (its messages) or a DM channel's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum LogKey {
    Guild(GuildId),
    Dm(ChannelId),
}

impl LogKey {
    /// The id the log is stored under (guild and channel ids are snowflakes of one
    /// generator, so they never collide).
    pub fn id(self) -> Snowflake {
        match self {
            LogKey::Guild(id) | LogKey::Dm(id) => id,
        }
    }

    /// A stable one-byte tag of the kind (storage keeps it beside the id).
    pub fn kind(self) -> u8 {
        match self {
            LogKey::Guild(_) => 0,
            LogKey::Dm(_) => 1,
        }
    }

    pub fn from_parts(kind: u8, id: Snowflake) -> Option<LogKey> {
        match kind {
            0 => Some(LogKey::Guild(id)),
            1 => Some(LogKey::Dm(id)),
            _ => None,
        }
    }
}

/// What happened to messages. Whole messages travel, so a reader needs no storage read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    MessageCreate {
        message: Message,
    },
    MessageUpdate {
        message: Message,
    },
    MessageDelete {
        channel_id: ChannelId,
        id: MessageId,
    },
    /// Several messages of one channel at once (a bulk delete).
    MessagesDelete {
        channel_id: ChannelId,
        ids: Vec<MessageId>,
    },
    /// A channel and every message in it.
    ChannelDelete {
        channel_id: ChannelId,
    },
    /// An author's messages in the log's guild from `since` on (a ban that purges).
    AuthorPurge {
        author_id: UserId,
        since: MessageId,
    },
    /// The write this entry was numbered for was refused (a message deleted meanwhile):
    /// nothing happened, the number is used.
    Void,
}

impl StreamEvent {
    /// The event a guild or DM write makes, if it changes messages.
    pub fn of_write(write: &GuildWrite) -> Option<StreamEvent> {
        Some(match write {
            GuildWrite::PutMessage(m) => StreamEvent::MessageCreate { message: m.clone() },
            GuildWrite::EditMessage(m) => StreamEvent::MessageUpdate { message: m.clone() },
            GuildWrite::DeleteMessage { channel_id, message_id } => {
                StreamEvent::MessageDelete { channel_id: *channel_id, id: *message_id }
            }
            _ => return None,
        })
    }

    /// Whether `of_write` makes an event of `write` (without cloning its message).
    pub fn made_by(write: &GuildWrite) -> bool {
        matches!(write, GuildWrite::PutMessage(_) | GuildWrite::EditMessage(_) | GuildWrite::DeleteMessage { .. })
    }
}

/// One event in a log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub v: u16,
    pub key: LogKey,
    /// Increasing within the log, never reused.
    pub seq: u64,
    /// The entry before it that storage acknowledged (0: none). Entries between `prev` and
    /// `seq` were never acknowledged and may be absent.
    pub prev: u64,
    /// For a DM's log: its recipients (a DM is searched by each of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<UserId>,
    pub event: StreamEvent,
}

/// What a reader does with an entry, given the highest `seq` it applied for the entry's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Apply it.
    Next,
    /// Already applied (a repeat): skip it.
    Repeat,
    /// Entries after `applied` up to `prev` are missing: repair them first.
    Gap { missing_after: u64, missing_upto: u64 },
}

impl LogEntry {
    pub fn arrival(&self, applied: u64) -> Arrival {
        if self.seq <= applied {
            Arrival::Repeat
        } else if self.prev > applied {
            Arrival::Gap { missing_after: applied, missing_upto: self.prev }
        } else {
            Arrival::Next
        }
    }
}

/// How a batch's log entries fared in storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Written.
    Written,
    /// Certainly not written (refused: not found, conflict).
    Refused,
    /// Not known (a timeout): perhaps written.
    Unknown,
}

/// What the writer asks its driver to do next.
#[derive(Debug, Clone, PartialEq)]
pub enum RelayJob {
    /// Append these (in order), then tell storage the stream has everything up to the last.
    Append(Vec<LogEntry>),
    /// Read up to `limit` of the log's stored entries after `after` and append them.
    CatchUp { after: u64, limit: usize },
}

/// One log's writer: numbers the entries of the batches its actor stores, and relays the
/// stored ones to the stream in order. Pure: its driver does the IO.
#[derive(Debug)]
pub struct LogWriter {
    key: LogKey,
    recipients: Vec<UserId>,
    /// The last `seq` handed out.
    last_seq: u64,
    /// The last `seq` storage acknowledged (the `prev` of the next entry).
    last_stored: u64,
    /// Stored entries the stream may not have, in `seq` order.
    waiting: VecDeque<LogEntry>,
    /// Some stored entries are not in `waiting`: read them back from storage first.
    catching_up: bool,
    /// `waiting` overflowed while a catch-up read was in flight: it needs another.
    overflowed: bool,
    /// Every stored entry up to here is in the stream.
    relayed: u64,
    in_flight: Option<RelayJob>,
    /// Consecutive failed jobs (the driver waits longer after each).
    failures: u32,
    /// Storage itself is the stream (the embedded store): what it stores is relayed.
    storage_appends: bool,
}

impl LogWriter {
    /// A writer for a log whose highest stored `seq` is `head`. It first reads back what
    /// storage holds (the previous owner may have left entries the stream does not have).
    pub fn new(key: LogKey, recipients: Vec<UserId>, head: u64) -> LogWriter {
        LogWriter {
            key,
            recipients,
            last_seq: head,
            last_stored: head,
            waiting: VecDeque::new(),
            catching_up: true,
            overflowed: false,
            relayed: 0,
            in_flight: None,
            failures: 0,
            storage_appends: false,
        }
    }

    /// A writer for a log whose storage is the stream itself (it appends a batch's entries
    /// in the batch's transaction): it numbers entries and never relays.
    pub fn storage_appends(key: LogKey, recipients: Vec<UserId>, head: u64) -> LogWriter {
        LogWriter { catching_up: false, relayed: head, storage_appends: true, ..LogWriter::new(key, recipients, head) }
    }

    pub fn key(&self) -> LogKey {
        self.key
    }

    /// Entries for the writes of a batch, in order, with the index of the write each is for.
    pub fn number(&mut self, writes: &[GuildWrite]) -> Vec<(usize, LogEntry)> {
        let mut prev = self.last_stored;
        let mut out = Vec::new();
        for (i, write) in writes.iter().enumerate() {
            let Some(event) = StreamEvent::of_write(write) else { continue };
            debug_assert!(StreamEvent::made_by(write), "made_by agrees with of_write");
            self.last_seq += 1;
            let entry = LogEntry {
                v: LOG_SCHEMA_VERSION,
                key: self.key,
                seq: self.last_seq,
                prev,
                recipients: self.recipients.clone(),
                event,
            };
            prev = entry.seq;
            out.push((i, entry));
        }
        out
    }

    /// Storage answered a batch: `logged` says whether its entries were stored, `outcomes`
    /// how each entry's own write fared. Stored entries wait for the stream; those whose
    /// write was refused travel as [`StreamEvent::Void`].
    pub fn stored(&mut self, entries: Vec<LogEntry>, logged: bool, outcomes: &[WriteOutcome]) {
        assert_eq!(entries.len(), outcomes.len(), "one outcome per entry");
        if !logged || entries.is_empty() {
            return; // not stored (or nothing to store): the next batch's `prev` skips them
        }
        if self.storage_appends {
            let last = entries.last().expect("not empty").seq;
            assert!(last > self.last_stored, "entries are stored in order");
            (self.last_stored, self.relayed) = (last, last);
            return;
        }
        for (mut entry, outcome) in entries.into_iter().zip(outcomes) {
            assert!(entry.seq > self.last_stored, "entries are stored in order");
            self.last_stored = entry.seq;
            if entry.seq <= self.relayed {
                continue; // a catch-up read already found it in storage
            }
            if *outcome == WriteOutcome::Refused {
                entry.event = StreamEvent::Void;
            }
            self.waiting.push_back(entry);
        }
        if self.waiting.len() > MAX_WAITING {
            self.waiting.clear();
            self.catching_up = true;
            self.overflowed = true;
        }
    }

    /// The next job, if one is due and none is in flight.
    pub fn next_job(&mut self) -> Option<RelayJob> {
        if self.in_flight.is_some() {
            return None;
        }
        let job = if self.catching_up {
            self.overflowed = false;
            RelayJob::CatchUp { after: self.relayed, limit: MAX_APPEND }
        } else if self.waiting.is_empty() {
            return None;
        } else {
            let n = self.waiting.len().min(MAX_APPEND);
            RelayJob::Append(self.waiting.iter().take(n).cloned().collect())
        };
        self.in_flight = Some(job.clone());
        Some(job)
    }

    /// The job in flight finished: `Ok(n)` with the highest `seq` now in the stream (for a
    /// catch-up, and `n` the number of entries it read), or failed.
    pub fn finished(&mut self, result: Result<Relayed, ()>) {
        let job = self.in_flight.take().expect("a job was in flight");
        let Ok(relayed) = result else {
            self.failures += 1;
            return;
        };
        self.failures = 0;
        self.relayed = self.relayed.max(relayed.upto);
        while self.waiting.front().is_some_and(|e| e.seq <= self.relayed) {
            self.waiting.pop_front();
        }
        if let RelayJob::CatchUp { limit, .. } = job {
            // Fewer than asked: storage has nothing more that `waiting` does not hold,
            // unless it overflowed meanwhile.
            if relayed.read < limit && !self.overflowed {
                self.catching_up = false;
            }
        }
    }

    /// How long the driver waits before the next job after failures (ms): 0, then doubling
    /// from 100 ms up to 5 s.
    pub fn backoff_ms(&self) -> u64 {
        match self.failures {
            0 => 0,
            n => (100u64 << (n - 1).min(6)).min(5_000),
        }
    }

    /// Nothing waits for the stream and nothing is in flight.
    pub fn is_drained(&self) -> bool {
        self.in_flight.is_none() && !self.catching_up && self.waiting.is_empty()
    }

    /// The highest `seq` every entry up to which is in the stream.
    pub fn relayed(&self) -> u64 {
        self.relayed
    }
}

/// What a finished job achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relayed {
    /// The highest `seq` now in the stream (the job's last entry; for an empty catch-up,
    /// the writer's own `relayed`).
    pub upto: u64,
    /// Entries a catch-up read from storage.
    pub read: usize,
}

/// How a deployment's search cells divide what is searched (a guild's messages, a user's
/// DMs, each a *scope*): `hashed` cells that scopes fall into by the hash of their id, then a
/// cell of its own for each `dedicated` guild (a very large one). Every node and worker of a
/// deployment uses the same layout: the stream files each entry under its cells, and a
/// search goes to its scope's cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellLayout {
    hashed: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    dedicated: Vec<GuildId>,
}

impl CellLayout {
    /// `hashed` is at least one; a guild named twice in `dedicated` gets one cell.
    pub fn new(hashed: u32, dedicated: &[GuildId]) -> CellLayout {
        let mut unique: Vec<GuildId> = Vec::with_capacity(dedicated.len());
        for guild in dedicated {
            if !unique.contains(guild) {
                unique.push(*guild);
            }
        }
        CellLayout { hashed: hashed.max(1), dedicated: unique }
    }

    /// Cells in all: `0..count()`.
    pub fn count(&self) -> u32 {
        self.hashed + self.dedicated.len() as u32
    }

    /// The cell a scope's documents are in.
    pub fn cell_of(&self, scope: Snowflake) -> u32 {
        match self.dedicated.iter().position(|g| *g == scope) {
            Some(i) => self.hashed + i as u32,
            None => (mix(scope.0) % u64::from(self.hashed)) as u32,
        }
    }

    /// The cell that keeps what is known of a log's history: its id's (a guild's own cell).
    pub fn home_of(&self, log: LogKey) -> u32 {
        self.cell_of(log.id())
    }

    /// The cells an entry is indexed in, each once: its guild's, or each of its DM's
    /// recipients' (a DM is searched among each recipient's DMs).
    pub fn cells_of(&self, entry: &LogEntry) -> Vec<u32> {
        match entry.key {
            LogKey::Guild(guild) => vec![self.cell_of(guild)],
            LogKey::Dm(_) => {
                let mut cells: Vec<u32> = entry.recipients.iter().map(|r| self.cell_of(*r)).collect();
                cells.sort_unstable();
                cells.dedup();
                cells
            }
        }
    }
}

/// MurmurHash3's 64-bit finalizer: snowflakes differ mostly in their high (time) bits.
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Channel, Guild, Message, User};

    fn message(id: u64) -> Message {
        let channel = Channel::text(Snowflake(2), Snowflake(1), "general");
        Message::new(Snowflake(id), &channel, User::new(Snowflake(7), "a", false), "hi".into(), None)
    }

    fn put(id: u64) -> GuildWrite {
        GuildWrite::PutMessage(message(id))
    }

    fn seqs(job: &RelayJob) -> Vec<u64> {
        match job {
            RelayJob::Append(entries) => entries.iter().map(|e| e.seq).collect(),
            RelayJob::CatchUp { .. } => panic!("not an append"),
        }
    }

    /// A writer past its first (empty) catch-up.
    fn writer(head: u64) -> LogWriter {
        let mut w = LogWriter::new(LogKey::Guild(Snowflake(1)), vec![], head);
        assert_eq!(w.next_job(), Some(RelayJob::CatchUp { after: 0, limit: MAX_APPEND }));
        w.finished(Ok(Relayed { upto: head, read: 0 }));
        w
    }

    fn store(w: &mut LogWriter, writes: &[GuildWrite], logged: bool, outcomes: &[WriteOutcome]) -> Vec<LogEntry> {
        let entries: Vec<LogEntry> = w.number(writes).into_iter().map(|(_, e)| e).collect();
        w.stored(entries.clone(), logged, outcomes);
        entries
    }

    #[test]
    fn only_message_writes_get_entries_numbered_after_the_head_and_chained() {
        let mut w = writer(10);
        let writes = [put(100), GuildWrite::UpdateGuild(Guild::new(Snowflake(1), "g", Snowflake(7))), put(101)];
        let numbered = w.number(&writes);
        let at: Vec<(usize, u64, u64)> = numbered.iter().map(|(i, e)| (*i, e.seq, e.prev)).collect();
        assert_eq!(at, vec![(0, 11, 10), (2, 12, 11)]);
    }

    #[test]
    fn stored_entries_are_appended_in_order_and_a_refused_write_travels_as_void() {
        let mut w = writer(0);
        use WriteOutcome::*;
        store(&mut w, &[put(1), put(2), put(3)], true, &[Written, Refused, Written]);
        let job = w.next_job().expect("a job");
        assert_eq!(seqs(&job), vec![1, 2, 3]);
        let RelayJob::Append(entries) = &job else { unreachable!() };
        assert_eq!(entries[1].event, StreamEvent::Void);
        assert!(w.next_job().is_none(), "one job at a time");
        w.finished(Ok(Relayed { upto: 3, read: 0 }));
        assert!(w.is_drained());
        assert_eq!(w.relayed(), 3);
    }

    #[test]
    fn a_writer_whose_storage_is_the_stream_numbers_and_never_relays() {
        let mut w = LogWriter::storage_appends(LogKey::Guild(Snowflake(1)), vec![], 5);
        assert!(w.is_drained() && w.next_job().is_none(), "nothing to read back");
        use WriteOutcome::*;
        let entries = store(&mut w, &[put(1), put(2)], true, &[Written, Refused]);
        assert_eq!(entries.iter().map(|e| (e.seq, e.prev)).collect::<Vec<_>>(), vec![(6, 5), (7, 6)]);
        assert_eq!((w.next_job(), w.relayed()), (None, 7), "stored is relayed");
        store(&mut w, &[put(3)], false, &[Unknown]);
        let next = store(&mut w, &[put(4)], true, &[Written]);
        assert_eq!((next[0].seq, next[0].prev), (9, 7), "an entry storage did not take leaves a gap");
        assert!(w.is_drained());
    }

    #[test]
    fn the_writes_that_make_events_are_those_made_by_says() {
        let writes = [
            put(1),
            GuildWrite::EditMessage(message(1)),
            GuildWrite::DeleteMessage { channel_id: Snowflake(2), message_id: Snowflake(1) },
            GuildWrite::UpdateGuild(Guild::new(Snowflake(1), "g", Snowflake(7))),
            GuildWrite::CreateChannel(Channel::text(Snowflake(3), Snowflake(1), "c")),
        ];
        for write in &writes {
            assert_eq!(StreamEvent::made_by(write), StreamEvent::of_write(write).is_some(), "{write:?}");
        }
    }

    #[test]
    fn entries_storage_did_not_take_are_skipped_by_the_next_prev() {
        let mut w = writer(0);
        use WriteOutcome::*;
        store(&mut w, &[put(1)], false, &[Unknown]);
        let next = store(&mut w, &[put(2)], true, &[Written]);
        assert_eq!((next[0].seq, next[0].prev), (2, 0), "seq 1 was never acknowledged: no gap");
        assert_eq!(seqs(&w.next_job().unwrap()), vec![2]);
    }

    #[test]
    fn a_failed_append_is_retried_with_the_same_entries_after_a_growing_wait() {
        let mut w = writer(0);
        store(&mut w, &[put(1)], true, &[WriteOutcome::Written]);
        let first = w.next_job().unwrap();
        w.finished(Err(()));
        assert_eq!(w.backoff_ms(), 100);
        store(&mut w, &[put(2)], true, &[WriteOutcome::Written]);
        let again = w.next_job().unwrap();
        assert_eq!(seqs(&again), vec![1, 2], "nothing skipped, order kept");
        assert_eq!(seqs(&first), vec![1]);
        w.finished(Err(()));
        assert_eq!(w.backoff_ms(), 200);
        w.next_job();
        w.finished(Ok(Relayed { upto: 2, read: 0 }));
        assert_eq!(w.backoff_ms(), 0);
        assert!(w.is_drained());
    }

    #[test]
    fn too_many_waiting_switches_to_reading_back_from_storage_until_it_is_caught_up() {
        let mut w = writer(0);
        for i in 0..=MAX_WAITING as u64 {
            store(&mut w, &[put(i + 1)], true, &[WriteOutcome::Written]);
        }
        assert_eq!(w.next_job(), Some(RelayJob::CatchUp { after: 0, limit: MAX_APPEND }));
        w.finished(Ok(Relayed { upto: MAX_APPEND as u64, read: MAX_APPEND }));
        assert_eq!(w.next_job(), Some(RelayJob::CatchUp { after: MAX_APPEND as u64, limit: MAX_APPEND }));
        // A batch stored while the read is in flight waits in memory.
        let late = MAX_WAITING as u64 + 2;
        store(&mut w, &[put(late)], true, &[WriteOutcome::Written]);
        w.finished(Ok(Relayed { upto: late - 1, read: 10 }));
        assert_eq!(seqs(&w.next_job().unwrap()), vec![late]);
    }

    #[test]
    fn an_entry_a_catch_up_already_relayed_is_not_appended_again() {
        let mut w = LogWriter::new(LogKey::Guild(Snowflake(1)), vec![], 0);
        w.next_job();
        let entries: Vec<LogEntry> = w.number(&[put(1)]).into_iter().map(|(_, e)| e).collect();
        // The read found the entry before its batch's answer reached the writer.
        w.finished(Ok(Relayed { upto: 1, read: 1 }));
        w.stored(entries, true, &[WriteOutcome::Written]);
        assert!(w.next_job().is_none());
        assert!(w.is_drained());
    }

    #[test]
    fn a_reader_applies_the_next_skips_repeats_and_sees_gaps() {
        let entry = |seq, prev| LogEntry {
            v: LOG_SCHEMA_VERSION,
            key: LogKey::Guild(Snowflake(1)),
            seq,
            prev,
            recipients: vec![],
            event: StreamEvent::Void,
        };
        assert_eq!(entry(5, 4).arrival(4), Arrival::Next);
        assert_eq!(entry(5, 3).arrival(4), Arrival::Next, "seq 4 was never acknowledged");
        assert_eq!(entry(4, 3).arrival(4), Arrival::Repeat);
        assert_eq!(entry(7, 6).arrival(4), Arrival::Gap { missing_after: 4, missing_upto: 6 });
    }

    #[test]
    fn entries_round_trip_through_json() {
        let mut w = writer(0);
        let e = store(&mut w, &[put(1)], true, &[WriteOutcome::Written]).remove(0);
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<LogEntry>(&json).unwrap(), e);
        assert!(json.contains(r#""key":{"kind":"guild","id":"1"}"#), "{json}");
    }

    #[test]
    fn a_layout_files_guilds_by_hash_dedicated_guilds_alone_and_dms_under_each_recipient() {
        let big = Snowflake(7);
        let layout = CellLayout::new(4, &[big, big]);
        assert_eq!(layout.count(), 5, "four hashed cells and one for the big guild");
        assert_eq!(layout.cell_of(big), 4);
        let mut seen = [0u32; 4];
        for id in 1_000..5_000u64 {
            let cell = layout.cell_of(Snowflake(id << 22));
            assert!(cell < 4, "other scopes only in hashed cells");
            seen[cell as usize] += 1;
        }
        assert!(seen.iter().all(|n| *n > 800), "spread over every hashed cell: {seen:?}");
        let (a, b) = (Snowflake(1 << 22), Snowflake(2 << 22));
        let dm = |recipients: Vec<Snowflake>| LogEntry {
            v: LOG_SCHEMA_VERSION,
            key: LogKey::Dm(Snowflake(99)),
            seq: 1,
            prev: 0,
            recipients,
            event: StreamEvent::Void,
        };
        let mut both = vec![layout.cell_of(a), layout.cell_of(b)];
        both.sort_unstable();
        both.dedup();
        assert_eq!(layout.cells_of(&dm(vec![a, b])), both);
        assert_eq!(layout.cells_of(&dm(vec![a, a])), vec![layout.cell_of(a)], "one cell once");
        let guild = LogEntry { key: LogKey::Guild(big), ..dm(vec![]) };
        assert_eq!(layout.cells_of(&guild), vec![4]);
        let json = serde_json::to_string(&CellLayout::new(16, &[])).unwrap();
        assert_eq!(json, r#"{"hashed":16}"#);
    }
}
