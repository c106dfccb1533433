//! One suite, two streams: the embedded log and JetStream (a real nats-server from
//! `deploy/dev/nats up`, or $GUILDHALL_TEST_NATS) must keep the same promises: appends in
//! order, durable consumers that resume after what they acknowledged, repeats skipped.
//!
//! In CI (or with GUILDHALL_REQUIRE_NATS=1) a missing server fails the JetStream tests.

use std::time::Duration;

use guildhall_core::stream::{LogEntry, LogKey, StreamEvent, LOG_SCHEMA_VERSION};
use guildhall_core::Snowflake;
use guildhall_stream::{
    CellLayout, EmbeddedLog, EventLog, JetStreamConfig, JetStreamLog, Progress, StreamError, SEGMENT_ENTRIES,
};

fn nats_url() -> String {
    std::env::var("GUILDHALL_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

fn required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("GUILDHALL_REQUIRE_NATS").is_some()
}

/// A cluster name of its own per test, so that tests sharing a server never meet.
fn unique(name: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("t{}_{}_{name}", std::process::id(), N.fetch_add(1, Relaxed))
}

async fn jetstream(name: &str) -> Option<JetStreamLog> {
    jetstream_with(&unique(name), CellLayout::new(4, &[])).await
}

async fn jetstream_with(cluster: &str, layout: CellLayout) -> Option<JetStreamLog> {
    let client = match async_nats::connect(nats_url()).await {
        Ok(client) => client,
        Err(e) if required() => panic!("no NATS server at {}: {e} (run deploy/dev/nats up)", nats_url()),
        Err(e) => {
            eprintln!("SKIPPED: no NATS server at {}: {e}", nats_url());
            return None;
        }
    };
    let mut config = JetStreamConfig::new(cluster, layout);
    config.max_age = Duration::from_secs(600);
    Some(JetStreamLog::open(client, config).await.expect("the stream opens"))
}

fn embedded(dir: &tempfile::TempDir) -> EmbeddedLog {
    EmbeddedLog::open(&dir.path().join("events.redb"), 1_000_000).unwrap()
}

fn within(dir: &tempfile::TempDir) -> EmbeddedLog {
    let db = redb::Database::create(dir.path().join("store.redb")).unwrap();
    EmbeddedLog::within(std::sync::Arc::new(db), 1_000_000).unwrap()
}

fn entry(log: u64, seq: u64) -> LogEntry {
    let event = StreamEvent::MessageDelete { channel_id: Snowflake(log + 1), id: Snowflake(seq) };
    LogEntry {
        v: LOG_SCHEMA_VERSION,
        key: LogKey::Guild(Snowflake(log)),
        seq,
        prev: seq - 1,
        recipients: vec![],
        event,
    }
}

fn seqs(delivered: &[guildhall_stream::Delivered]) -> Vec<(u64, u64)> {
    delivered.iter().map(|d| d.entry.as_ref().map(|e| (e.key.id().0, e.seq)).expect("decodes")).collect()
}

const WAIT: Duration = Duration::from_secs(2);

/// Two logs interleaved keep each one's order; a consumer gets them all once, resumes after
/// its acknowledgement, and a fetch with nothing new waits and answers empty.
async fn appends_in_order_and_consumers_resume(log: &dyn EventLog) {
    let mut reader = log.consumer("indexer").await.unwrap();
    let mut other = log.consumer("other").await.unwrap();
    log.append(&[entry(1, 1), entry(2, 1), entry(1, 2)]).await.unwrap();
    log.append(&[entry(2, 2), entry(1, 3)]).await.unwrap();
    let first = reader.fetch(3, WAIT).await.unwrap();
    assert_eq!(seqs(&first), vec![(1, 1), (2, 1), (1, 2)]);
    reader.ack(first[2].position).await.unwrap();
    let rest = reader.fetch(10, WAIT).await.unwrap();
    assert_eq!(seqs(&rest), vec![(2, 2), (1, 3)]);
    let progress = reader.progress().await.unwrap();
    assert_eq!(progress, Progress { acknowledged: first[2].position, pending: 2 }, "fetched is not acknowledged");
    assert!(reader.acknowledged_after(first[1].position).await.unwrap());
    assert!(!reader.acknowledged_after(first[2].position).await.unwrap());
    drop(reader);

    // A new reader under the same name starts after what was acknowledged.
    let mut again = log.consumer("indexer").await.unwrap();
    let redelivered = again.fetch(10, WAIT).await.unwrap();
    assert_eq!(seqs(&redelivered), vec![(2, 2), (1, 3)], "unacknowledged entries come again");
    again.ack(redelivered[1].position).await.unwrap();
    let started = std::time::Instant::now();
    assert!(again.fetch(10, Duration::from_millis(300)).await.unwrap().is_empty());
    assert!(started.elapsed() >= Duration::from_millis(250), "an empty fetch waits");

    // Another consumer reads everything, independently.
    assert_eq!(other.fetch(10, WAIT).await.unwrap().len(), 5);
}

/// A fetch waiting for entries wakes as soon as they are appended.
async fn a_waiting_fetch_wakes_on_append(log: &dyn EventLog) {
    let mut reader = log.consumer("waiter").await.unwrap();
    let fetch = async { reader.fetch(10, Duration::from_secs(10)).await.unwrap() };
    let append = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        log.append(&[entry(7, 1)]).await.unwrap();
    };
    let started = std::time::Instant::now();
    let (got, ()) = tokio::join!(fetch, append);
    assert_eq!(seqs(&got), vec![(7, 1)]);
    assert!(started.elapsed() < Duration::from_secs(5), "woke on the append, not at the timeout");
}

/// An entry sent again (a relay that restarted) is not stored twice.
async fn entries_sent_again_are_dropped(log: &dyn EventLog) {
    log.append(&[entry(3, 1), entry(3, 2)]).await.unwrap();
    log.append(&[entry(3, 2), entry(3, 3)]).await.unwrap();
    let mut reader = log.consumer("dedupe").await.unwrap();
    assert_eq!(seqs(&reader.fetch(10, WAIT).await.unwrap()), vec![(3, 1), (3, 2), (3, 3)]);
}

macro_rules! suite {
    ($($name:ident),*) => {
        mod embedded_log {
            $(
                #[tokio::test]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    super::$name(&super::embedded(&dir)).await;
                }
            )*
        }
        /// The log inside a database another writer owns (the embedded store's): appended
        /// through the trait here, acknowledgements without an fsync of their own.
        mod embedded_log_within {
            $(
                #[tokio::test]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    super::$name(&super::within(&dir)).await;
                }
            )*
        }
        mod jetstream_log {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(log) = super::jetstream(stringify!($name)).await else { return };
                    super::$name(&log).await;
                    log.context().delete_stream(log.config().stream_name()).await.unwrap();
                }
            )*
        }
    };
}

/// Everything acknowledged (and so deleted from the embedded log), then more appended: the
/// consumer still gets it, here and after a new reader takes over.
async fn entries_after_everything_was_acknowledged_still_arrive(log: &dyn EventLog) {
    let mut reader = log.consumer("drained").await.unwrap();
    log.append(&[entry(4, 1), entry(4, 2)]).await.unwrap();
    let got = reader.fetch(10, WAIT).await.unwrap();
    reader.ack(got[1].position).await.unwrap();
    log.append(&[entry(4, 3)]).await.unwrap();
    let next = reader.fetch(10, WAIT).await.unwrap();
    assert_eq!(seqs(&next), vec![(4, 3)]);
    assert!(next[0].position > got[1].position, "positions never go back");
    reader.ack(next[0].position).await.unwrap();
    drop(reader);
    log.append(&[entry(4, 4)]).await.unwrap();
    let mut again = log.consumer("drained").await.unwrap();
    assert_eq!(seqs(&again.fetch(10, WAIT).await.unwrap()), vec![(4, 4)]);
}

suite!(
    appends_in_order_and_consumers_resume,
    a_waiting_fetch_wakes_on_append,
    entries_sent_again_are_dropped,
    entries_after_everything_was_acknowledged_still_arrive
);

/// In a cluster each search cell's worker reads only what is filed under its cell: a guild's
/// entries under the guild's cell, a DM's under each recipient's (once per cell); a node
/// configured with other cells is refused.
#[tokio::test]
async fn jetstream_files_entries_under_their_cells() {
    let layout = CellLayout::new(4, &[Snowflake(5)]);
    let cluster = unique("cells");
    let Some(log) = jetstream_with(&cluster, layout.clone()).await else { return };
    // Guilds 1..=5 (5 has a cell of its own) and a DM between users in two cells.
    let users: Vec<Snowflake> = (10..100).map(Snowflake).collect();
    let a = users[0];
    let b = *users.iter().find(|u| layout.cell_of(**u) != layout.cell_of(a)).unwrap();
    let dm = LogEntry { key: LogKey::Dm(Snowflake(77)), recipients: vec![a, b], ..entry(77, 1) };
    let guilds: Vec<LogEntry> = (1..=5).map(|g| entry(g, 1)).collect();
    log.append(&guilds).await.unwrap();
    log.append(std::slice::from_ref(&dm)).await.unwrap();
    log.append(std::slice::from_ref(&dm)).await.unwrap(); // a relay's repeat: dropped
    let mut total = 0;
    let mut readers = Vec::new();
    for cell in 0..layout.count() {
        let mut reader = log.cell_consumer("indexer", cell).await.unwrap();
        let got = reader.fetch(100, Duration::from_millis(300)).await.unwrap();
        let mut expected: Vec<(u64, u64)> =
            guilds.iter().filter(|e| layout.cells_of(e) == vec![cell]).map(|e| (e.key.id().0, 1)).collect();
        if layout.cells_of(&dm).contains(&cell) {
            expected.push((77, 1));
        }
        assert_eq!(seqs(&got), expected, "cell {cell}");
        total += got.len();
        if let Some(last) = got.last() {
            reader.ack(last.position).await.unwrap();
            assert_eq!(reader.progress().await.unwrap(), Progress { acknowledged: last.position, pending: 0 });
        }
        readers.push((reader, got.last().map(|d| d.position)));
    }
    assert_eq!(total, 5 + 2, "five guild entries, the DM's under two cells");
    // Guild 5's cell alone gets more; a copy of another cell as of its last entry is not stale
    // (its consumer's floor may move past the others' entries: they are not its own).
    log.append(&[entry(5, 2), entry(5, 3)]).await.unwrap();
    let (big_reader, big_last) = &mut readers[4];
    let more = big_reader.fetch(10, WAIT).await.unwrap();
    big_reader.ack(more[1].position).await.unwrap();
    assert!(big_reader.acknowledged_after(big_last.unwrap()).await.unwrap(), "guild 5's own entries came after");
    for (cell, (reader, last)) in readers.iter_mut().enumerate().take(4) {
        let _ = reader.fetch(10, Duration::from_millis(100)).await.unwrap();
        let stale = reader.acknowledged_after(last.unwrap_or(0)).await.unwrap();
        assert!(!stale, "cell {cell}: nothing of its own after its last entry");
    }
    assert_eq!(layout.cell_of(Snowflake(5)), 4);

    let client = async_nats::connect(nats_url()).await.unwrap();
    let other = JetStreamLog::open(client, JetStreamConfig::new(&cluster, CellLayout::new(8, &[]))).await;
    assert!(matches!(other, Err(StreamError::Misconfigured(_))), "{:?}", other.err());
    log.context().delete_stream(log.config().stream_name()).await.unwrap();
}

/// The embedded log survives a restart (reopened from its file) and deletes what every
/// consumer acknowledged, a segment at a time.
#[tokio::test]
async fn the_embedded_log_survives_a_reopen_and_trims_what_was_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    // Positions 1.. : the first segment holds SEGMENT_ENTRIES - 1 of them, the second 11.
    let n = SEGMENT_ENTRIES + 10;
    {
        let log = embedded(&dir);
        let entries: Vec<LogEntry> = (1..=n).map(|seq| entry(1, seq)).collect();
        log.append(&entries).await.unwrap();
        assert_eq!(log.len().unwrap(), n);
        let mut reader = log.consumer("indexer").await.unwrap();
        let mut got = Vec::new();
        while got.len() < n as usize {
            got.extend(reader.fetch(5_000, WAIT).await.unwrap());
        }
        reader.ack(got[n as usize - 3].position).await.unwrap();
        assert_eq!(reader.progress().await.unwrap().pending, 2, "the acknowledgement is recorded");
        assert_eq!(log.len().unwrap(), 11, "the first segment, acknowledged to its end, is deleted; the second stays");
    }
    // The writer thread ends with the last handle; give it a moment to let the file go.
    let log = loop {
        match EmbeddedLog::open(&dir.path().join("events.redb"), 1_000_000) {
            Ok(log) => break log,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let mut reader = log.consumer("indexer").await.unwrap();
    assert_eq!(seqs(&reader.fetch(10, WAIT).await.unwrap()), vec![(1, n - 1), (1, n)]);
    log.append(&[entry(1, n), entry(1, n + 1)]).await.unwrap();
    assert_eq!(seqs(&reader.fetch(10, WAIT).await.unwrap()), vec![(1, n + 1)], "the heads survived too");
}

/// A log written before segments (one table of every entry) is read on, its numbering kept.
#[tokio::test]
async fn an_embedded_log_from_before_segments_is_read_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.redb");
    {
        let db = redb::Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut entries = tx.open_table(redb::TableDefinition::<u64, &[u8]>::new("stream_entries")).unwrap();
            for (position, seq) in [(7u64, 1u64), (8, 2)] {
                entries.insert(position, serde_json::to_vec(&entry(3, seq)).unwrap().as_slice()).unwrap();
            }
            let mut meta = tx.open_table(redb::TableDefinition::<&str, u64>::new("stream_meta")).unwrap();
            meta.insert("next", 7).unwrap();
        }
        tx.commit().unwrap();
    }
    let log = EmbeddedLog::open(&path, 1_000_000).unwrap();
    let mut reader = log.consumer("indexer").await.unwrap();
    let got = reader.fetch(10, WAIT).await.unwrap();
    assert_eq!((got.iter().map(|d| d.position).collect::<Vec<_>>(), seqs(&got)), (vec![7, 8], vec![(3, 1), (3, 2)]));
    log.append(&[entry(3, 3)]).await.unwrap();
    let more = reader.fetch(10, WAIT).await.unwrap();
    assert_eq!(more.iter().map(|d| d.position).collect::<Vec<_>>(), vec![9], "numbering goes on");
}

/// Without consumers the log keeps the newest `max_entries`, across segments.
#[tokio::test]
async fn the_embedded_log_keeps_its_newest_entries_without_consumers() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(&dir.path().join("events.redb"), 100).unwrap();
    let entries: Vec<LogEntry> = (1..=SEGMENT_ENTRIES + 50).map(|seq| entry(5, seq)).collect();
    log.append(&entries).await.unwrap();
    assert_eq!(log.len().unwrap(), 100);
    let mut reader = log.consumer("late").await.unwrap();
    let got = reader.fetch(1_000, WAIT).await.unwrap();
    assert_eq!(seqs(&got).first(), Some(&(5, SEGMENT_ENTRIES - 49)), "the newest hundred");
    assert_eq!(got.len(), 100);
}
