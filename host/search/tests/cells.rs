//! A cluster's cells, each opened by the one worker that owns it: a cell worker writes only
//! its own cell, records where in the stream it is, and stops (without acknowledging) once
//! its fence no longer holds; searches of a cell that is not open here are refused; a
//! rebuilt cell's DMs answer as incomplete; one host's cells follow their layout.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use guildhall_core::clock::{Clock, ManualClock};
use guildhall_core::model::{Channel, Message, User};
use guildhall_core::stream::{CellLayout, LogEntry, LogKey, StreamEvent, LOG_SCHEMA_VERSION};
use guildhall_core::Snowflake;
use guildhall_runtime::Metrics;
use guildhall_search::routing::answer_here;
use guildhall_search::{CellQuery, Cells, Coverage, Fence, IndexingWorker, SearchError, SearchRequest, WorkerConfig};
use guildhall_stream::{EmbeddedLog, EventLog};

const ALICE: Snowflake = Snowflake(100);

struct Switch(AtomicBool);

#[async_trait::async_trait]
impl Fence for Switch {
    async fn holds(&self) -> bool {
        self.0.load(Relaxed)
    }
}

/// Two users whose scopes fall in different cells of `layout`.
fn users_apart(layout: &CellLayout) -> (Snowflake, Snowflake) {
    let a = Snowflake(1 << 40);
    let b = (1..1000u64).map(|i| Snowflake((1 << 40) + (i << 22))).find(|u| layout.cell_of(*u) != layout.cell_of(a));
    (a, b.expect("two cells"))
}

fn dm_entry(seq: u64, dm: &Channel, recipients: Vec<Snowflake>, content: &str) -> LogEntry {
    let message = Message::new(Snowflake(seq << 22), dm, User::new(ALICE, "alice", false), content.into(), None);
    LogEntry {
        v: LOG_SCHEMA_VERSION,
        key: LogKey::Dm(dm.id),
        seq,
        prev: seq - 1,
        recipients,
        event: StreamEvent::MessageCreate { message },
    }
}

fn dm_request(scope: Snowflake, dm: &Channel) -> SearchRequest {
    SearchRequest { scope, channels: vec![dm.id], content: Some("hello".into()), limit: 25, ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cell_worker_writes_its_cell_alone_and_stops_when_its_fence_goes() {
    let dir = tempfile::tempdir().unwrap();
    let layout = CellLayout::new(2, &[]);
    let (a, b) = users_apart(&layout);
    let (cell_a, cell_b) = (layout.cell_of(a), layout.cell_of(b));
    let cells = Arc::new(Cells::open_some(&dir.path().join("search"), layout.clone(), &[cell_a]).unwrap());
    let log = EmbeddedLog::open(&dir.path().join("events.redb"), 1_000).unwrap();
    let store: Arc<dyn guildhall_store::Storage> =
        Arc::new(guildhall_store_redb::EmbeddedStore::open(&dir.path().join("store")).unwrap());
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(1_800_000_000_000));
    let dm = Channel::dm(Snowflake(1 << 35), User::new(a, "a", false), User::new(b, "b", false));
    log.append(&[dm_entry(1, &dm, vec![a, b], "hello there")]).await.unwrap();

    let fence = Arc::new(Switch(AtomicBool::new(true)));
    let consumer = log.consumer("indexer-cell").await.unwrap();
    let config = WorkerConfig { linger: Duration::from_millis(5), ..WorkerConfig::default() };
    let worker = IndexingWorker::new(consumer, cells.clone(), store, None, clock, Arc::new(Metrics::default()), config)
        .for_cell(cell_a as usize, fence.clone());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(worker.run(stopped));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while cells.reader(a).count(a).unwrap() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the cell worker indexed nothing");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!cells.is_open(cell_b as usize) && cells.reader_of(b).is_none(), "the other recipient's cell is not here");
    assert_eq!(cells.writer(cell_a as usize).stream_position(), 1, "its batch recorded where it is in the stream");

    // Its fence goes (another worker took the cell): what comes next is not indexed, and
    // not acknowledged either, so the next owner gets it.
    fence.0.store(false, Relaxed);
    log.append(&[dm_entry(2, &dm, vec![a, b], "hello again")]).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), task).await.expect("the worker stops by itself").unwrap();
    drop(stop);
    assert_eq!(cells.reader(a).count(a).unwrap(), 1, "nothing written after the fence went");
    let mut next = log.consumer("indexer-cell").await.unwrap();
    let again = next.fetch(10, Duration::from_secs(1)).await.unwrap();
    assert_eq!(again.len(), 1, "the entry after the fence went comes again: {again:?}");
    assert!(next.acknowledged_after(0).await.unwrap(), "the first batch was acknowledged");
}

#[tokio::test]
async fn searches_go_where_the_cell_is_open_and_unknown_logs_are_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let layout = CellLayout::new(2, &[]);
    let (a, b) = users_apart(&layout);
    let cell_a = layout.cell_of(a) as usize;
    let search_dir = dir.path().join("search");
    let cells = Cells::open_some(&search_dir, layout.clone(), &[layout.cell_of(a)]).unwrap();
    let dm = Channel::dm(Snowflake(1 << 35), User::new(a, "a", false), User::new(b, "b", false));
    let elsewhere = answer_here(&cells, CellQuery { guild: None, request: dm_request(b, &dm) }).await;
    assert_eq!(elsewhere, Err(SearchError::NotHere(layout.cell_of(b))));
    // A DM the cell knows nothing of (from before the index): answered, as incomplete, and
    // its backfill in the user's cell is asked for.
    let here = answer_here(&cells, CellQuery { guild: None, request: dm_request(a, &dm) }).await.unwrap();
    assert_eq!(here.coverage, Coverage::Backfilling { recent_done: true, documents: 0 });
    assert_eq!(here.hits.map(|h| h.total), Some(0));
    assert_eq!(cells.take_requests(), vec![(LogKey::Dm(dm.id), cell_a)]);
    // Once the cell knows it, complete.
    {
        let mut writer = cells.writer(cell_a);
        writer.set_applied(LogKey::Dm(dm.id), 0);
        writer.commit().unwrap();
    }
    let known = answer_here(&cells, CellQuery { guild: None, request: dm_request(a, &dm) }).await.unwrap();
    assert_eq!(known.coverage, Coverage::Complete);
    assert!(cells.take_requests().is_empty());

    // A guild unknown here: not answered yet, and a backfill is asked for.
    let guild =
        (1..1000u64).map(|i| Snowflake((1 << 41) + (i << 22))).find(|g| layout.cell_of(*g) == layout.cell_of(a));
    let guild = guild.expect("a guild in the open cell");
    let guild_request = SearchRequest { scope: guild, ..dm_request(guild, &dm) };
    let unknown = answer_here(&cells, CellQuery { guild: Some(guild), request: guild_request }).await.unwrap();
    assert_eq!((unknown.coverage, unknown.hits), (Coverage::Unknown, None));
    assert_eq!(cells.take_requests(), vec![(LogKey::Guild(guild), cell_a)]);
    drop(cells);

    // Rebuilt (its stream entries were indexed by another worker): it knows no DM again,
    // so DM answers say the index is being built while their backfills run.
    let rebuilt = Cells::rebuild_one(&search_dir, layout.clone(), layout.cell_of(a), 42).unwrap();
    assert_eq!(rebuilt.writer(cell_a).stream_position(), 42);
    let answer = answer_here(&rebuilt, CellQuery { guild: None, request: dm_request(a, &dm) }).await.unwrap();
    assert_eq!(answer.coverage, Coverage::Backfilling { recent_done: true, documents: 0 });
    assert!(answer.hits.is_some(), "answered, as incomplete");
    assert_eq!(rebuilt.take_requests(), vec![(LogKey::Dm(dm.id), cell_a)]);
}

#[test]
fn one_hosts_cells_follow_their_layout() {
    let dir = tempfile::tempdir().unwrap();
    let search = dir.path().join("search");
    // Made before layouts were recorded: three hashed cells.
    {
        let cells = Cells::open(&search, 3).unwrap();
        let mut writer = cells.writer(0);
        writer.set_applied(LogKey::Guild(Snowflake(5)), 9);
        writer.commit().unwrap();
    }
    let known = |cells: &Cells| cells.writer(0).applied(LogKey::Guild(Snowflake(5)));
    let same = Cells::open_layout(&search, CellLayout::new(3, &[])).unwrap();
    assert_eq!(known(&same), 9, "the same cells: kept");
    drop(same);
    let again = Cells::open_layout(&search, CellLayout::new(3, &[])).unwrap();
    assert_eq!(known(&again), 9, "recorded, and kept");
    drop(again);
    let bigger = Cells::open_layout(&search, CellLayout::new(3, &[Snowflake(77)])).unwrap();
    assert_eq!(bigger.len(), 4, "a dedicated guild's cell after the hashed ones");
    assert_eq!(bigger.cell_of(Snowflake(77)), 3);
    assert_eq!(known(&bigger), 0, "another layout: rebuilt from nothing");
}
