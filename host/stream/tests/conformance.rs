//! One suite, two streams: the embedded log and JetStream (a real nats-server from
//! `deploy/dev/nats up`, or $GUILDHALL_TEST_NATS) must keep the same promises: appends in
//! order, durable consumers that resume after what they acknowledged, repeats skipped.
//!
//! In CI (or with GUILDHALL_REQUIRE_NATS=1) a missing server fails the JetStream tests.

use std::time::Duration;

use guildhall_core::stream::{LogEntry, LogKey, StreamEvent, LOG_SCHEMA_VERSION};
use guildhall_core::Snowflake;
use guildhall_stream::{EmbeddedLog, EventLog, JetStreamConfig, JetStreamLog};

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
    let client = match async_nats::connect(nats_url()).await {
        Ok(client) => client,
        Err(e) if required() => panic!("no NATS server at {}: {e} (run deploy/dev/nats up)", nats_url()),
        Err(e) => {
            eprintln!("SKIPPED: no NATS server at {}: {e}", nats_url());
            return None;
        }
    };
    let mut config = JetStreamConfig::new(&unique(name));
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

/// The embedded log survives a restart (reopened from its file) and deletes what every
/// consumer acknowledged.
#[tokio::test]
async fn the_embedded_log_survives_a_reopen_and_trims_what_was_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = embedded(&dir);
        log.append(&[entry(1, 1), entry(1, 2), entry(1, 3)]).await.unwrap();
        let mut reader = log.consumer("indexer").await.unwrap();
        let got = reader.fetch(2, WAIT).await.unwrap();
        reader.ack(got[1].position).await.unwrap();
        assert_eq!(log.len().unwrap(), 1, "acknowledged by its only consumer: deleted");
    }
    // The writer thread ends with the last handle; give it a moment to let the file go.
    let log = loop {
        match EmbeddedLog::open(&dir.path().join("events.redb"), 1_000_000) {
            Ok(log) => break log,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let mut reader = log.consumer("indexer").await.unwrap();
    assert_eq!(seqs(&reader.fetch(10, WAIT).await.unwrap()), vec![(1, 3)]);
    log.append(&[entry(1, 3), entry(1, 4)]).await.unwrap();
    assert_eq!(seqs(&reader.fetch(10, WAIT).await.unwrap()), vec![(1, 4)], "the heads survived too");
}
