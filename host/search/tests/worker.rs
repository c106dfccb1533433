//! The indexing worker over a real embedded stream: everything appended is indexed once,
//! edits replace, deletes remove, a DM is in both recipients' sets, and a worker that stops
//! after committing but before acknowledging leaves nothing indexed twice.

use std::sync::Arc;
use std::time::Duration;

use guildhall_core::clock::{Clock, ManualClock};
use guildhall_core::guild::GuildWrite;
use guildhall_core::model::{Channel, Guild, Member, Message, User};
use guildhall_core::stream::{LogEntry, LogKey, StreamEvent, LOG_SCHEMA_VERSION};
use guildhall_core::Snowflake;
use guildhall_runtime::Metrics;
use guildhall_search::{Cells, Coverage, IndexingWorker, SearchRequest, WorkerConfig};
use guildhall_stream::{EmbeddedLog, EventLog};

const GUILD: Snowflake = Snowflake(1 << 30);
const GENERAL: Snowflake = Snowflake((1 << 30) + 1);
const DM: Snowflake = Snowflake((1 << 30) + 2);
const ALICE: Snowflake = Snowflake(100);
const BOB: Snowflake = Snowflake(101);

fn message(id: u64, channel: &Channel, content: &str) -> Message {
    Message::new(Snowflake(id << 22), channel, User::new(ALICE, "alice", false), content.into(), None)
}

struct Log {
    key: LogKey,
    recipients: Vec<Snowflake>,
    seq: u64,
}

impl Log {
    fn entry(&mut self, event: StreamEvent) -> LogEntry {
        self.seq += 1;
        let recipients = self.recipients.clone();
        LogEntry { v: LOG_SCHEMA_VERSION, key: self.key, seq: self.seq, prev: self.seq - 1, recipients, event }
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    log: EmbeddedLog,
    cells: Arc<Cells>,
    metrics: Arc<Metrics>,
    store: Arc<dyn guildhall_store::Storage>,
    clock: Arc<dyn Clock>,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(&dir.path().join("events.redb"), 1_000_000).unwrap();
    let cells = Arc::new(Cells::open(&dir.path().join("search"), 3).unwrap());
    let store: Arc<dyn guildhall_store::Storage> =
        Arc::new(guildhall_store_redb::EmbeddedStore::open(&dir.path().join("store")).unwrap());
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(1_800_000_000_000));
    Setup { _dir: dir, log, cells, metrics: Arc::new(Metrics::default()), store, clock }
}

impl Setup {
    async fn worker(&self) -> IndexingWorker {
        self.worker_with(WorkerConfig { linger: Duration::from_millis(5), ..WorkerConfig::default() }).await
    }

    async fn worker_with(&self, config: WorkerConfig) -> IndexingWorker {
        let consumer = self.log.consumer("indexer").await.unwrap();
        IndexingWorker::new(
            consumer,
            self.cells.clone(),
            self.store.clone(),
            None,
            self.clock.clone(),
            self.metrics.clone(),
            config,
        )
    }

    fn count(&self, scope: Snowflake) -> usize {
        self.cells.reader(scope).count(scope).unwrap()
    }

    fn find(&self, scope: Snowflake, channel: Snowflake, content: &str) -> Vec<Snowflake> {
        let request = SearchRequest {
            scope,
            channels: vec![channel],
            content: Some(content.into()),
            limit: 25,
            ..Default::default()
        };
        request.run(self.cells.reader(scope)).unwrap().page.into_iter().map(|(id, _)| id).collect()
    }

    /// Runs a worker until `done`, then stops it.
    async fn run_until(&self, done: impl Fn(&Setup) -> bool) {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(self.worker().await.run(stopped));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !done(self) {
            assert!(tokio::time::Instant::now() < deadline, "the worker did not catch up");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.send(true).unwrap();
        task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_appended_is_indexed_once_with_edits_and_deletes_applied() {
    let s = setup();
    let general = Channel::text(GENERAL, GUILD, "general");
    let mut guild = Log { key: LogKey::Guild(GUILD), recipients: vec![], seq: 0 };
    let entries: Vec<LogEntry> = (1..=1000)
        .map(|i| guild.entry(StreamEvent::MessageCreate { message: message(i, &general, &format!("note number{i}")) }))
        .collect();
    s.log.append(&entries).await.unwrap();
    let mut edited = message(7, &general, "rewritten text");
    edited.edited_timestamp = Some("2026-01-01T00:00:00Z".into());
    let changes = [
        guild.entry(StreamEvent::MessageUpdate { message: edited }),
        guild.entry(StreamEvent::MessageDelete { channel_id: GENERAL, id: Snowflake(8 << 22) }),
        guild.entry(StreamEvent::Void),
    ];
    s.log.append(&changes).await.unwrap();
    let dm_channel = Channel::dm(DM, User::new(ALICE, "alice", false), User::new(BOB, "bob", false));
    let mut dm = Log { key: LogKey::Dm(DM), recipients: vec![ALICE, BOB], seq: 0 };
    s.log
        .append(&[dm.entry(StreamEvent::MessageCreate { message: message(2000, &dm_channel, "private words") })])
        .await
        .unwrap();

    s.run_until(|s| s.count(GUILD) == 999 && s.count(BOB) == 1).await;
    assert_eq!(s.find(GUILD, GENERAL, "\"number7\""), Vec::<Snowflake>::new(), "the edit replaced the text");
    assert_eq!(s.find(GUILD, GENERAL, "rewritten"), vec![Snowflake(7 << 22)]);
    assert!(s.find(GUILD, GENERAL, "\"number8\"").is_empty(), "deleted");
    assert_eq!(s.find(GUILD, GENERAL, "\"number999\""), vec![Snowflake(999 << 22)]);
    assert_eq!(s.find(ALICE, DM, "private"), vec![Snowflake(2000 << 22)], "in Alice's DMs");
    assert_eq!(s.find(BOB, DM, "private"), vec![Snowflake(2000 << 22)], "and in Bob's");
    assert_eq!(s.find(GUILD, DM, "private"), Vec::<Snowflake>::new(), "not in the guild's");
    assert_eq!(s.find(GUILD, GENERAL, "number99").len(), 11, "a word is a prefix: 99 and 990-999 (one page)");
    assert_eq!(s.metrics.search_gaps.load(std::sync::atomic::Ordering::Relaxed), 0);
}

/// A worker that committed a batch and stopped before acknowledging it (a crash): the next
/// gets the batch again, and the cells' committed seqs make it change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_committed_but_not_acknowledged_is_not_indexed_twice() {
    let s = setup();
    let general = Channel::text(GENERAL, GUILD, "general");
    let mut guild = Log { key: LogKey::Guild(GUILD), recipients: vec![], seq: 0 };
    let first: Vec<LogEntry> =
        (1..=50).map(|i| guild.entry(StreamEvent::MessageCreate { message: message(i, &general, "first") })).collect();
    s.log.append(&first).await.unwrap();
    {
        let mut consumer = s.log.consumer("indexer").await.unwrap();
        let batch = consumer.fetch(100, Duration::from_secs(1)).await.unwrap();
        let mut worker = s.worker().await;
        worker.index(&batch).await.unwrap();
        // Dropped here: committed, never acknowledged.
    }
    assert_eq!(s.count(GUILD), 50);
    // The message deleted after the crash must stay deleted when the old batch comes again.
    let later = [guild.entry(StreamEvent::MessageDelete { channel_id: GENERAL, id: Snowflake(1 << 22) })];
    s.log.append(&later).await.unwrap();
    s.run_until(|s| s.metrics.search_entries_indexed.load(std::sync::atomic::Ordering::Relaxed) >= 101).await;
    assert_eq!(s.count(GUILD), 49, "every message once, the deleted one gone");
}

const NOW_MS: u64 = 1_800_000_000_000;
const DAY_MS: u64 = 86_400_000;

/// A guild made (with its history) in storage alone, as before its index existed: a channel
/// with 300 messages over the last 60 days, another with 50 in the last 3.
async fn old_guild(s: &Setup) -> (Snowflake, Channel, Channel, Vec<Message>) {
    let at =
        |days_ago: f64, n: u64| Snowflake(Snowflake::from_unix_ms(NOW_MS - (days_ago * DAY_MS as f64) as u64).0 | n);
    let guild = at(100.0, 1);
    let (old, new) = (Channel::text(at(100.0, 2), guild, "old"), Channel::text(at(100.0, 3), guild, "new"));
    let owner = User::new(ALICE, "alice", false);
    let member = Member::new(owner.clone(), "2026-01-01T00:00:00.000000+00:00".into());
    s.store.create_guild(Guild::new(guild, "old", ALICE), member, vec![old.clone(), new.clone()]).await.unwrap();
    let mut messages = Vec::new();
    for i in 0..300u64 {
        messages.push(Message::new(at(i as f64 * 0.2, 10 + i), &old, owner.clone(), format!("old words {i}"), None));
    }
    for i in 0..50u64 {
        messages.push(Message::new(at(i as f64 * 0.06, 500 + i), &new, owner.clone(), format!("new words {i}"), None));
    }
    let writes = messages.iter().cloned().map(GuildWrite::PutMessage).collect();
    assert!(s.store.apply_batch(writes).await.iter().all(Result::is_ok));
    (guild, old, new, messages)
}

fn backfill_config() -> WorkerConfig {
    WorkerConfig { backfill_page: 40, recent: Duration::from_millis(7 * DAY_MS), ..WorkerConfig::default() }
}

/// Backfills `log` (as a search asks for it) to the end.
async fn backfill_completely(s: &Setup, worker: &mut IndexingWorker, log: LogKey) {
    s.cells.request_backfill(log);
    worker.start_requested_backfills().await;
    while s.cells.coverage(log) != Coverage::Complete {
        worker.backfill_page().await.unwrap();
    }
}

/// Stores `message`, then streams its entry (`seq`, after `prev`) and indexes it with `worker`.
async fn store_and_index(
    s: &Setup,
    worker: &mut IndexingWorker,
    log: LogKey,
    (seq, prev): (u64, u64),
    message: Message,
) {
    assert!(s.store.apply_batch(vec![GuildWrite::PutMessage(message.clone())]).await[0].is_ok());
    let event = StreamEvent::MessageCreate { message };
    let entry = LogEntry { v: LOG_SCHEMA_VERSION, key: log, seq, prev, recipients: vec![], event };
    s.log.append(&[entry]).await.unwrap();
    let mut consumer = s.log.consumer(&format!("at-{seq}")).await.unwrap();
    worker.index(&consumer.fetch(10, Duration::from_secs(1)).await.unwrap()).await.unwrap();
}

/// Documents of a scope with ids from `from` on.
fn count_since(s: &Setup, scope: Snowflake, channels: Vec<Snowflake>, from: Snowflake) -> usize {
    let request = SearchRequest { scope, channels, after: Some(Snowflake(from.0 - 1)), limit: 1, ..Default::default() };
    request.run(s.cells.reader(scope)).unwrap().total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guild_older_than_its_index_is_backfilled_recent_days_first_then_completely() {
    let s = setup();
    let (guild, old, new, messages) = old_guild(&s).await;
    let log = LogKey::Guild(guild);
    let channels = vec![old.id, new.id];
    assert_eq!(s.cells.coverage(log), Coverage::Unknown, "nothing known of it");
    s.cells.request_backfill(log);
    let mut worker = s.worker_with(backfill_config()).await;
    worker.start_requested_backfills().await;
    assert_eq!(s.cells.coverage(log), Coverage::Backfilling { recent_done: false, documents: 0 });

    let recent_from = Snowflake::from_unix_ms(NOW_MS - 7 * DAY_MS);
    let recent = messages.iter().filter(|m| m.id >= recent_from).count();
    let mut pages = 0;
    loop {
        worker.backfill_page().await.unwrap();
        pages += 1;
        assert!(pages < 100, "the backfill ends");
        match s.cells.coverage(log) {
            Coverage::Backfilling { recent_done: false, documents } => {
                assert_eq!(s.count(guild), documents as usize, "what it says it indexed is searchable");
                assert!(count_since(&s, guild, channels.clone(), recent_from) < recent, "recent days missing");
            }
            Coverage::Backfilling { recent_done: true, .. } => {
                let found = count_since(&s, guild, channels.clone(), recent_from);
                assert_eq!(found, recent, "answers begin once every recent message is found");
            }
            Coverage::Complete => break,
            Coverage::Unknown => panic!("a backfill in progress is known"),
        }
    }
    assert_eq!(s.count(guild), 350, "every message, once");
    assert_eq!(s.find(guild, old.id, "\"words 299\""), vec![messages[299].id], "the oldest too");
    assert_eq!(s.metrics.search_backfilled.load(std::sync::atomic::Ordering::Relaxed), 350);
}

/// A gap in a log's events (entries the stream lost): the log is read again from storage
/// while answers go on, so what the lost entries did (deletes, edits) shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_in_the_events_is_repaired_from_storage_while_searches_go_on() {
    let s = setup();
    let (guild, old, _new, messages) = old_guild(&s).await;
    let log = LogKey::Guild(guild);
    s.cells.request_backfill(log);
    let mut worker = s.worker_with(backfill_config()).await;
    worker.start_requested_backfills().await;
    while s.cells.coverage(log) != Coverage::Complete {
        worker.backfill_page().await.unwrap();
    }
    // Changes whose events never reach the stream: 100 deletes and an edit.
    let mut writes: Vec<GuildWrite> = messages[..100]
        .iter()
        .map(|m| GuildWrite::DeleteMessage { channel_id: m.channel_id, message_id: m.id })
        .collect();
    let mut edited = messages[150].clone();
    edited.content = "rewritten while nobody listened".into();
    writes.push(GuildWrite::EditMessage(edited.clone()));
    assert!(s.store.apply_batch(writes).await.iter().all(Result::is_ok));
    // The next entry the stream has says its log had 4 before it.
    let next =
        Message::new(Snowflake(messages[0].id.0 + 1), &old, User::new(ALICE, "alice", false), "after".into(), None);
    let entry = LogEntry {
        v: LOG_SCHEMA_VERSION,
        key: log,
        seq: 5,
        prev: 4,
        recipients: vec![],
        event: StreamEvent::MessageCreate { message: next.clone() },
    };
    assert!(s.store.apply_batch(vec![GuildWrite::PutMessage(next)]).await[0].is_ok());
    s.log.append(&[entry]).await.unwrap();
    let mut consumer = s.log.consumer("gap").await.unwrap();
    let batch = consumer.fetch(10, Duration::from_secs(1)).await.unwrap();
    worker.index(&batch).await.unwrap();
    assert_eq!(s.metrics.search_gaps.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert!(
        matches!(s.cells.coverage(log), Coverage::Backfilling { recent_done: true, .. }),
        "repaired under answers: {:?}",
        s.cells.coverage(log)
    );
    while s.cells.coverage(log) != Coverage::Complete {
        worker.backfill_page().await.unwrap();
    }
    assert_eq!(s.count(guild), 251, "350 - 100 deleted + 1 new");
    assert_eq!(s.find(guild, old.id, "nobody"), vec![edited.id], "the edit shows");
    assert!(s.find(guild, old.id, "\"words 50\"").is_empty(), "deleted ones are gone");
}

/// Searches asking for backfills while entries stream in: every entry is still indexed (a
/// worker that dropped a half-gathered batch to look at the requests lost its entries until
/// a restart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_for_backfills_never_cost_a_batch_its_entries() {
    let s = setup();
    let general = Channel::text(GENERAL, GUILD, "general");
    let mut guild = Log { key: LogKey::Guild(GUILD), recipients: vec![], seq: 0 };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(s.worker().await.run(stopped));
    let cells = s.cells.clone();
    let asking = tokio::spawn(async move {
        for n in 0u64.. {
            cells.request_backfill(LogKey::Guild(Snowflake(1 << 40 | n)));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    for chunk in 0..50u64 {
        let entries: Vec<LogEntry> = (0..10)
            .map(|i| {
                let id = 1 + chunk * 10 + i;
                guild.entry(StreamEvent::MessageCreate { message: message(id, &general, "streamed") })
            })
            .collect();
        s.log.append(&entries).await.unwrap();
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while s.count(GUILD) < 500 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    asking.abort();
    stop.send(true).unwrap();
    task.abort(); // (a worker that lost entries waits for them forever)
    assert_eq!(s.count(GUILD), 500, "every entry indexed");
}

/// What a search of a guild finds now: its serving generation, as a cell's owner runs it.
fn found_now(s: &Setup, guild: Snowflake, channels: Vec<Snowflake>) -> usize {
    let reader = s.cells.reader(guild);
    let gen = reader.serving(LogKey::Guild(guild));
    let request = SearchRequest { scope: guild, gen, channels, limit: 1, ..Default::default() };
    request.run(reader).unwrap().total
}

/// A guild whose indexer changed is re-indexed beside its live documents: searches find
/// every message of the old generation (live ones too) until the new one caught up, and the
/// commit that ends it switches them over and deletes the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reindex_builds_beside_the_live_index_and_switches_when_caught_up() {
    let s = setup();
    let (guild, old, new, messages) = old_guild(&s).await;
    let log = LogKey::Guild(guild);
    let channels = vec![old.id, new.id];
    let mut worker = s.worker_with(backfill_config()).await;
    backfill_completely(&s, &mut worker, log).await;
    assert_eq!((s.count(guild), found_now(&s, guild, channels.clone())), (350, 350));
    // The guild's index was made by another indexer than the one it has now (the default).
    {
        let mut cell = s.cells.writer(s.cells.home_of(log));
        cell.set_indexer(log, "plugin:replaced".into());
        cell.commit().unwrap();
    }
    // A live message: its batch notes the indexer change and starts the re-index.
    let live =
        Message::new(Snowflake(messages[0].id.0 + 1), &old, User::new(ALICE, "alice", false), "live one".into(), None);
    store_and_index(&s, &mut worker, log, (1, 0), live).await;
    assert_eq!(s.cells.reader(guild).serving(log), 0, "still the old generation");
    let mut pages = 0;
    while s.cells.reader(guild).serving(log) == 0 {
        assert_eq!(s.cells.coverage(log), Coverage::Complete, "answers as before, not as a backfill");
        assert_eq!(found_now(&s, guild, channels.clone()), 351, "every message, the live one too, at every step");
        worker.backfill_page().await.unwrap();
        pages += 1;
        assert!(pages < 100, "the re-index ends");
    }
    assert!(pages > 5, "it took several pages ({pages}), each committed");
    assert_eq!(s.cells.reader(guild).serving(log), 1);
    assert_eq!(found_now(&s, guild, channels), 351);
    assert_eq!(s.count(guild), 351, "the old generation is gone");
}

/// A log's first entry in a cell rebuilt after another worker indexed it finds the entries
/// before it missing; the backfill that made the log complete here read them from storage
/// already, so no second backfill starts. In a cell that was not rebuilt, the same entry is
/// a gap, repaired from storage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuilt_cells_first_entries_do_not_backfill_a_guild_twice() {
    for rebuilt in [true, false] {
        let s = setup();
        let (guild, old, _new, messages) = old_guild(&s).await;
        let log = LogKey::Guild(guild);
        if rebuilt {
            let mut cell = s.cells.writer(s.cells.home_of(log));
            cell.set_rebuilt_at(10);
            cell.commit().unwrap();
        }
        let mut worker = s.worker_with(backfill_config()).await;
        backfill_completely(&s, &mut worker, log).await;
        let next =
            Message::new(Snowflake(messages[0].id.0 + 1), &old, User::new(ALICE, "alice", false), "next".into(), None);
        store_and_index(&s, &mut worker, log, (5, 4), next).await;
        let gaps = s.metrics.search_gaps.load(std::sync::atomic::Ordering::Relaxed);
        match rebuilt {
            true => {
                assert_eq!((gaps, s.cells.coverage(log)), (0, Coverage::Complete), "no second backfill");
                assert_eq!(s.count(guild), 351);
            }
            false => {
                assert_eq!(gaps, 1, "a gap");
                assert!(matches!(s.cells.coverage(log), Coverage::Backfilling { recent_done: true, .. }));
            }
        }
    }
}

/// A message stored before a backfill read its channel, whose creation comes from the stream
/// only after the backfill indexed it, is one document: the creation replaces it. (Created
/// messages newer than anything a backfill indexed are inserted without a delete; this one
/// is not newer.) And messages created after it are one document each too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creation_streamed_after_a_backfill_indexed_its_message_is_one_document() {
    let s = setup();
    let (guild, old, _new, messages) = old_guild(&s).await;
    let log = LogKey::Guild(guild);
    let alice = User::new(ALICE, "alice", false);
    let after = |n: u64, content: &str| {
        Message::new(Snowflake(messages[0].id.0 + n), &old, alice.clone(), content.into(), None)
    };
    let mut worker = s.worker_with(backfill_config()).await;
    // The guild's first entry here: its history is backfilled.
    store_and_index(&s, &mut worker, log, (1, 0), after(1, "first")).await;
    // Stored, its entry still on its way, when the backfill reads the channel.
    let lagging = after(2, "lagging");
    assert!(s.store.apply_batch(vec![GuildWrite::PutMessage(lagging.clone())]).await[0].is_ok());
    backfill_completely(&s, &mut worker, log).await;
    assert_eq!(s.count(guild), 352);
    let entry = |seq, message| LogEntry {
        v: LOG_SCHEMA_VERSION,
        key: log,
        seq,
        prev: seq - 1,
        recipients: vec![],
        event: StreamEvent::MessageCreate { message },
    };
    s.log.append(&[entry(2, lagging), entry(3, after(3, "later"))]).await.unwrap();
    let mut consumer = s.log.consumer("late").await.unwrap();
    worker.index(&consumer.fetch(10, Duration::from_secs(1)).await.unwrap()).await.unwrap();
    assert_eq!(s.count(guild), 353, "every message once");
    assert_eq!(s.find(guild, old.id, "lagging"), vec![Snowflake(messages[0].id.0 + 2)]);
}

/// DMs from before the index (or before a cell was rebuilt) are backfilled like guilds: a
/// gap in a DM's events fills both recipients' copies, and a search that finds a DM unknown
/// in the user's cell asks for that copy. Answers say the index is incomplete meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dms_from_before_the_index_are_backfilled_for_their_recipients() {
    use guildhall_search::{routing::answer_here, CellQuery};
    let s = setup();
    let (alice, bob) = (User::new(ALICE, "alice", false), User::new(BOB, "bob", false));
    let dm = s.store.get_or_create_dm(alice.clone(), bob.clone(), Snowflake(1 << 32)).await.unwrap();
    let quiet = s
        .store
        .get_or_create_dm(alice.clone(), User::new(Snowflake(102), "carol", false), Snowflake(2 << 32))
        .await
        .unwrap();
    let history = |channel: &Channel, from: u64| -> Vec<Message> {
        (0..90u64)
            .map(|i| {
                Message::new(
                    Snowflake(Snowflake::from_unix_ms(NOW_MS - DAY_MS).0 + ((from + i) << 12)),
                    channel,
                    alice.clone(),
                    format!("old words {i}"),
                    None,
                )
            })
            .collect()
    };
    let (said, quietly_said) = (history(&dm, 0), history(&quiet, 1000));
    let writes = said.iter().chain(&quietly_said).cloned().map(GuildWrite::PutMessage).collect();
    assert!(s.store.apply_batch(writes).await.iter().all(Result::is_ok));
    let mut worker = s.worker_with(backfill_config()).await;

    // The DM's events start after its history: a gap, backfilled in both recipients' cells.
    let log = LogKey::Dm(dm.id);
    let next = Message::new(Snowflake::from_unix_ms(NOW_MS), &dm, bob.clone(), "new words".into(), None);
    assert!(s.store.apply_batch(vec![GuildWrite::PutMessage(next.clone())]).await[0].is_ok());
    let entry = LogEntry {
        v: LOG_SCHEMA_VERSION,
        key: log,
        seq: 91,
        prev: 90,
        recipients: vec![ALICE, BOB],
        event: StreamEvent::MessageCreate { message: next },
    };
    s.log.append(&[entry]).await.unwrap();
    let mut consumer = s.log.consumer("dm").await.unwrap();
    worker.index(&consumer.fetch(10, Duration::from_secs(1)).await.unwrap()).await.unwrap();
    assert_eq!(s.metrics.search_gaps.load(std::sync::atomic::Ordering::Relaxed), 1);
    let copies = [s.cells.cell_of(ALICE), s.cells.cell_of(BOB)];
    let complete = |s: &Setup| copies.iter().all(|&c| s.cells.writer(c).coverage(log) == Coverage::Complete);
    let mut pages = 0;
    while !complete(&s) {
        worker.backfill_page().await.unwrap();
        pages += 1;
        assert!(pages < 100, "the DM's backfill did not end");
    }
    assert_eq!(s.find(ALICE, dm.id, "old").len(), 25, "a page of them");
    for user in [ALICE, BOB] {
        let request = SearchRequest {
            scope: user,
            channels: vec![dm.id],
            content: Some("words".into()),
            limit: 1,
            ..Default::default()
        };
        let found = request.run(s.cells.reader(user)).unwrap();
        assert_eq!(found.total, 91, "every message of the DM, in {user}'s DMs");
    }

    // A search of Alice's DMs finds the quiet one unknown: answered as incomplete, its copy
    // in Alice's cell backfilled, then complete.
    let ask = || CellQuery {
        guild: None,
        request: SearchRequest {
            scope: ALICE,
            channels: vec![dm.id, quiet.id],
            content: Some("old".into()),
            limit: 1,
            ..Default::default()
        },
    };
    let first = answer_here(&s.cells, ask()).await.unwrap();
    assert!(matches!(first.coverage, Coverage::Backfilling { recent_done: true, .. }), "{first:?}");
    assert_eq!(first.hits.unwrap().total, 90, "what is indexed so far");
    worker.start_requested_backfills().await;
    while s.cells.writer(s.cells.cell_of(ALICE)).coverage(LogKey::Dm(quiet.id)) != Coverage::Complete {
        worker.backfill_page().await.unwrap();
    }
    let last = answer_here(&s.cells, ask()).await.unwrap();
    assert_eq!(last.coverage, Coverage::Complete);
    assert_eq!(last.hits.unwrap().total, 180, "both DMs' history");
}
