//! The indexing worker over a real embedded stream: everything appended is indexed once,
//! edits replace, deletes remove, a DM is in both recipients' sets, and a worker that stops
//! after committing but before acknowledging leaves nothing indexed twice.

use std::sync::Arc;
use std::time::Duration;

use guildhall_core::clock::{Clock, ManualClock};
use guildhall_core::model::{Channel, Message, User};
use guildhall_core::stream::{LogEntry, LogKey, StreamEvent, LOG_SCHEMA_VERSION};
use guildhall_core::Snowflake;
use guildhall_runtime::Metrics;
use guildhall_search::{Cells, IndexingWorker, SearchRequest, WorkerConfig};
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
        let consumer = self.log.consumer("indexer").await.unwrap();
        let config = WorkerConfig { linger: Duration::from_millis(5), ..WorkerConfig::default() };
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
