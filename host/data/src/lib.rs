//! The data service (the seed's "Data Service Library"): the layer between the API / actors
//! and storage that coalesces identical reads and routes them by channel.
//!
//! - Reads are routed by `channel_id` to one of N workers (a hash), so every request for a
//!   hot channel meets in one place.
//! - A worker keeps the queries in flight ([`coalesce`] holds its rules, sans-IO). A read identical to one in flight (same channel,
//!   same query) joins it instead of querying again; the result, or the error, reaches
//!   every waiter. Leader election is the worker's single-threaded loop: no races.
//! - A waiter that goes away does not cancel the query for the others; when the last
//!   waiter is gone, the query is cancelled.
//! - Read-after-write: writes go through [`DataService::apply_batch`], which, once storage
//!   acknowledged them and *before* returning, tells the channel's worker to stop letting
//!   new reads join queries that are already in flight. A read that starts after a write
//!   was acknowledged therefore always runs a query that starts after the write.
//! - Linger: a finished query's answer stays joinable for `linger` (a few ms) unless a
//!   write to its channel was acknowledged since the query started: the same rule, so
//!   read-after-write holds the same, and a hot channel's burst that arrives spread over
//!   more than one query's time still costs one query.
//! - Time: the wall clock (which bucket is the newest) is the `Clock` the process hands
//!   in; the linger is measured on tokio's clock, which a test can pause and advance.

use guildhall_core::sync::LockUnpoisoned;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use guildhall_core::clock::Clock;
use guildhall_core::guild::GuildWrite;
use guildhall_core::model::{Channel, ChannelId, Message, MessageId};
use guildhall_core::Snowflake;
use tokio::sync::{mpsc, oneshot};

use guildhall_core::stream::LogEntry;
use guildhall_store::{history, HistoryQuery, LoggedBatch, Result, Storage, StoreError};

pub mod coalesce;
use coalesce::{Admit, Coalescer, FlightId, Recent};

/// Requests a worker may have queued before callers wait.
const WORKER_MAILBOX: usize = 4096;
/// Waiters one query may collect; beyond it a new query starts (bounds one result's fan-out).
const MAX_WAITERS: usize = 100_000;
/// Lingering answers one worker keeps at most (a page is up to 100 messages).
const MAX_LINGERING: usize = 256;

/// A read's answer, shared by every waiter of the same query.
type Shared<T> = Arc<Result<T>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ReadKind {
    History { query: HistoryQuery, limit: usize },
    Message(MessageId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ReadKey {
    channel: ChannelId,
    kind: ReadKind,
}

enum Answer {
    Messages(Arc<Vec<Message>>),
    Message(Option<Box<Message>>),
}

type Waiter = oneshot::Sender<Shared<Answer>>;

enum WorkerMsg {
    Read {
        key: ReadKey,
        channel: Box<Channel>,
        waiter: Waiter,
        waiter_id: u64,
    },
    /// A waiter went away before its answer.
    Cancel {
        key: ReadKey,
        waiter_id: u64,
    },
    Done {
        flight: FlightId,
        result: Box<Result<Answer>>,
    },
    /// Writes to this channel were acknowledged: in-flight reads stop taking new waiters.
    Wrote {
        channel: ChannelId,
        ack: oneshot::Sender<()>,
    },
}

/// Per-route counters.
#[derive(Default)]
pub struct RouteMetrics {
    pub requests: AtomicU64,
    pub db_queries: AtomicU64,
    pub coalesced: AtomicU64,
    pub errors: AtomicU64,
    /// Request latency histogram: bucket i counts latencies < 2^i microseconds.
    pub latency_us_log2: [AtomicU64; 32],
    pub latency_us_sum: AtomicU64,
}

impl RouteMetrics {
    fn observe(&self, started: Instant) {
        let us = started.elapsed().as_micros() as u64;
        let bucket = (64 - us.leading_zeros()).min(31) as usize;
        self.latency_us_log2[bucket].fetch_add(1, Relaxed);
        self.latency_us_sum.fetch_add(us, Relaxed);
    }
}

#[derive(Default)]
pub struct DataMetrics {
    pub history: RouteMetrics,
    pub message: RouteMetrics,
}

pub struct DataService {
    store: Arc<dyn Storage>,
    /// The wall clock, for the bucket a history read starts from.
    clock: Arc<dyn Clock>,
    workers: Vec<mpsc::Sender<WorkerMsg>>,
    coalescing: bool,
    next_waiter: AtomicU64,
    pub metrics: Arc<DataMetrics>,
    /// Which acknowledged writes each channel had last (see [`DataService::write_mark`]).
    writes: std::sync::Mutex<WriteMarks>,
}

/// A sequence number per acknowledged write, and each channel's last one; channels
/// whose last write is old are forgotten (a mark older than `floor` answers "written").
#[derive(Default)]
struct WriteMarks {
    seq: u64,
    floor: u64,
    last: HashMap<ChannelId, u64>,
}

/// Channels remembered before the oldest are forgotten.
const WRITE_MARKS: usize = 65_536;

impl WriteMarks {
    fn wrote(&mut self, channel: ChannelId) {
        self.seq += 1;
        self.last.insert(channel, self.seq);
        if self.last.len() > WRITE_MARKS {
            // Keep the newer half; anything marked before the new floor counts as written.
            self.floor = self.seq - (WRITE_MARKS / 2) as u64;
            let floor = self.floor;
            self.last.retain(|_, seq| *seq > floor);
        }
    }

    fn written_since(&self, channel: ChannelId, mark: u64) -> bool {
        match self.last.get(&channel) {
            Some(seq) => *seq > mark,
            None => mark < self.floor,
        }
    }
}

/// The bucket of messages sent now: where a history read starts walking back from.
fn now_bucket(clock: &dyn Clock) -> u32 {
    Snowflake::from_unix_ms(clock.unix_ms()).bucket()
}

/// Spreads channel ids over workers (snowflakes' low bits are mostly sequence numbers).
fn worker_of(channel: ChannelId, n: usize) -> usize {
    ((channel.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % n as u64) as usize
}

impl DataService {
    /// `workers` routing workers (the core count is a good default). With `coalescing`
    /// off every read is its own query (for comparison and benchmarks). No linger.
    pub fn new(store: Arc<dyn Storage>, workers: usize, coalescing: bool, clock: Arc<dyn Clock>) -> Arc<DataService> {
        DataService::with_linger(store, workers, coalescing, Duration::ZERO, clock)
    }

    /// The same, finished queries' answers lingering for `linger` (see the module's doc).
    pub fn with_linger(
        store: Arc<dyn Storage>,
        workers: usize,
        coalescing: bool,
        linger: Duration,
        clock: Arc<dyn Clock>,
    ) -> Arc<DataService> {
        let metrics = Arc::new(DataMetrics::default());
        let workers = (0..workers.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(WORKER_MAILBOX);
                let worker = Worker {
                    store: store.clone(),
                    clock: clock.clone(),
                    tx: tx.clone(),
                    coalescer: Coalescer::new(MAX_WAITERS),
                    recent: Recent::new(linger, MAX_LINGERING),
                    tasks: HashMap::new(),
                };
                tokio::spawn(worker.run(rx, metrics.clone()));
                tx
            })
            .collect();
        let writes = std::sync::Mutex::new(WriteMarks::default());
        Arc::new(DataService { store, clock, workers, coalescing, next_waiter: AtomicU64::new(1), metrics, writes })
    }

    /// A mark to ask later whether a channel had a write acknowledged since
    /// ([`DataService::written_since`]): how another node that shares one answer among
    /// several reads knows that none of them started after a write the answer may miss.
    pub fn write_mark(&self) -> u64 {
        self.writes.lock_unpoisoned().seq
    }

    /// Was a write to `channel` acknowledged (or about to be) since `mark`?
    pub fn written_since(&self, channel: ChannelId, mark: u64) -> bool {
        self.writes.lock_unpoisoned().written_since(channel, mark)
    }

    pub fn store(&self) -> &Arc<dyn Storage> {
        &self.store
    }

    /// Channel history (see [`history`]), coalesced with identical reads in flight.
    pub async fn history(&self, channel: &Channel, query: HistoryQuery, limit: usize) -> Result<Arc<Vec<Message>>> {
        let key = ReadKey { channel: channel.id, kind: ReadKind::History { query, limit } };
        match &*self.read(key, channel, &self.metrics.history).await {
            Ok(Answer::Messages(m)) => Ok(m.clone()),
            Ok(Answer::Message(_)) => Err(StoreError::Corrupt("wrong answer kind".into())),
            Err(e) => Err(e.clone()),
        }
    }

    /// One message, coalesced likewise.
    pub async fn message(&self, channel: &Channel, id: MessageId) -> Result<Option<Message>> {
        let key = ReadKey { channel: channel.id, kind: ReadKind::Message(id) };
        match &*self.read(key, channel, &self.metrics.message).await {
            Ok(Answer::Message(m)) => Ok(m.as_deref().cloned()),
            Ok(Answer::Messages(_)) => Err(StoreError::Corrupt("wrong answer kind".into())),
            Err(e) => Err(e.clone()),
        }
    }

    async fn read(&self, key: ReadKey, channel: &Channel, route: &RouteMetrics) -> Shared<Answer> {
        let started = Instant::now();
        route.requests.fetch_add(1, Relaxed);
        let answer = if self.coalescing {
            self.read_coalesced(key, channel).await
        } else {
            route.db_queries.fetch_add(1, Relaxed);
            Arc::new(run_query(&*self.store, key, channel, now_bucket(&*self.clock)).await)
        };
        if answer.is_err() {
            route.errors.fetch_add(1, Relaxed);
        }
        route.observe(started);
        answer
    }

    async fn read_coalesced(&self, key: ReadKey, channel: &Channel) -> Shared<Answer> {
        let worker = &self.workers[worker_of(key.channel, self.workers.len())];
        let waiter_id = self.next_waiter.fetch_add(1, Relaxed);
        let (tx, rx) = oneshot::channel();
        let msg = WorkerMsg::Read { key, channel: Box::new(channel.clone()), waiter: tx, waiter_id };
        if worker.send(msg).await.is_err() {
            return Arc::new(Err(StoreError::Unavailable("data service stopped".into())));
        }
        let mut guard = CancelOnDrop { worker, key, waiter_id, armed: true };
        let answer = rx.await;
        guard.armed = false;
        answer.unwrap_or_else(|_| Arc::new(Err(StoreError::Unavailable("data service dropped the read".into()))))
    }

    /// Applies writes (in order) and, before returning, makes sure no read that starts
    /// after this returns can be answered from a query that started before the writes.
    pub async fn apply_batch(&self, writes: Vec<GuildWrite>) -> Vec<Result<()>> {
        self.apply_logged_batch(writes, Vec::new()).await.writes
    }

    /// [`DataService::apply_batch`] with the event log's entries for the writes
    /// (`Storage::apply_logged_batch`).
    pub async fn apply_logged_batch(&self, writes: Vec<GuildWrite>, log: Vec<LogEntry>) -> LoggedBatch {
        let channels: Vec<ChannelId> = writes.iter().filter_map(written_channel).collect();
        let results = self.store.apply_logged_batch(writes, log).await;
        let mut done: Vec<ChannelId> = Vec::new();
        for channel in channels {
            if !done.contains(&channel) {
                done.push(channel);
                self.wrote(channel).await;
            }
        }
        results
    }

    pub async fn apply(&self, write: GuildWrite) -> Result<()> {
        self.apply_batch(vec![write]).await.pop().unwrap_or(Ok(()))
    }

    /// Invalidates joinable reads of `channel` (even if the write failed: it may have
    /// been applied without an acknowledgement).
    async fn wrote(&self, channel: ChannelId) {
        // Before the acknowledgement, like the invalidation below.
        self.writes.lock_unpoisoned().wrote(channel);
        if !self.coalescing {
            return;
        }
        let (ack, done) = oneshot::channel();
        let worker = &self.workers[worker_of(channel, self.workers.len())];
        if worker.send(WorkerMsg::Wrote { channel, ack }).await.is_ok() {
            let _ = done.await;
        }
    }
}

/// If the caller stops waiting (its request was dropped), the worker is told, so that a
/// query nobody waits for can be cancelled. Best effort: with a full mailbox the query
/// simply completes and its answer goes nowhere.
struct CancelOnDrop<'a> {
    worker: &'a mpsc::Sender<WorkerMsg>,
    key: ReadKey,
    waiter_id: u64,
    armed: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.worker.try_send(WorkerMsg::Cancel { key: self.key, waiter_id: self.waiter_id });
        }
    }
}

fn written_channel(w: &GuildWrite) -> Option<ChannelId> {
    match w {
        GuildWrite::PutMessage(m) | GuildWrite::EditMessage(m) => Some(m.channel_id),
        GuildWrite::DeleteMessage { channel_id, .. } => Some(*channel_id),
        // A single message read counts its reactions.
        GuildWrite::AddReaction { channel_id, .. } | GuildWrite::RemoveReaction { channel_id, .. } => Some(*channel_id),
        _ => None,
    }
}

async fn run_query(store: &dyn Storage, key: ReadKey, channel: &Channel, now_bucket: u32) -> Result<Answer> {
    match key.kind {
        ReadKind::History { query, limit } => {
            history(store, channel, query, limit, now_bucket).await.map(|m| Answer::Messages(Arc::new(m)))
        }
        ReadKind::Message(id) => store.message(channel.id, id).await.map(|m| Answer::Message(m.map(Box::new))),
    }
}

/// The tokio driver of one worker's [`Coalescer`]: it runs the queries the coalescer starts
/// and hands their answers to the waiters it names.
struct Worker {
    store: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
    tx: mpsc::Sender<WorkerMsg>,
    coalescer: Coalescer<ReadKey, Waiter>,
    recent: Recent<ReadKey, Shared<Answer>>,
    /// The running query of each flight, to abort when nobody waits any more.
    tasks: HashMap<FlightId, tokio::task::AbortHandle>,
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::Receiver<WorkerMsg>, metrics: Arc<DataMetrics>) {
        while let Some(msg) = rx.recv().await {
            match msg {
                WorkerMsg::Read { key, channel, waiter, waiter_id } => {
                    let route = match key.kind {
                        ReadKind::History { .. } => &metrics.history,
                        ReadKind::Message(_) => &metrics.message,
                    };
                    if let Some(answer) = self.recent.get(&key, tokio::time::Instant::now().into_std()) {
                        let _ = waiter.send(answer);
                        route.coalesced.fetch_add(1, Relaxed);
                        continue;
                    }
                    match self.coalescer.read(key, waiter_id, waiter) {
                        Admit::Joined(_) => route.coalesced.fetch_add(1, Relaxed),
                        Admit::Start(flight) => {
                            self.start(flight, key, *channel);
                            route.db_queries.fetch_add(1, Relaxed)
                        }
                    };
                }
                WorkerMsg::Cancel { key, waiter_id } => {
                    if let Some(flight) = self.coalescer.cancel(key, waiter_id) {
                        if let Some(task) = self.tasks.remove(&flight) {
                            task.abort(); // nobody wants the answer any more
                        }
                    }
                }
                WorkerMsg::Done { flight, result } => {
                    self.tasks.remove(&flight);
                    let shared = Arc::new(*result);
                    let (waiters, fresh) = self.coalescer.done(flight);
                    for waiter in waiters {
                        let _ = waiter.send(shared.clone());
                    }
                    if let (Some(key), true) = (fresh, shared.is_ok()) {
                        self.recent.keep(key, shared, tokio::time::Instant::now().into_std());
                    }
                }
                WorkerMsg::Wrote { channel, ack } => {
                    self.coalescer.wrote(|key| key.channel == channel);
                    self.recent.wrote(|key| key.channel == channel);
                    let _ = ack.send(());
                }
            }
        }
    }

    fn start(&mut self, flight: FlightId, key: ReadKey, channel: Channel) {
        let (store, tx, now_bucket) = (self.store.clone(), self.tx.clone(), now_bucket(&*self.clock));
        let task = tokio::spawn(async move {
            let result = run_query(&*store, key, &channel, now_bucket).await;
            let _ = tx.send(WorkerMsg::Done { flight, result: Box::new(result) }).await;
        });
        self.tasks.insert(flight, task.abort_handle());
    }
}

#[cfg(test)]
mod write_mark_tests {
    use super::*;

    #[test]
    fn a_mark_tells_whether_a_channel_was_written_since() {
        let mut marks = WriteMarks::default();
        let (a, b) = (Snowflake(1), Snowflake(2));
        let mark = marks.seq;
        marks.wrote(a);
        assert!(marks.written_since(a, mark));
        assert!(!marks.written_since(b, mark), "another channel's write does not count");
        assert!(!marks.written_since(a, marks.seq));
        for i in 0..(WRITE_MARKS as u64 + 10) {
            marks.wrote(Snowflake(100 + i));
        }
        assert!(marks.last.len() <= WRITE_MARKS, "bounded");
        assert!(marks.written_since(b, mark), "a mark older than what is remembered counts as written");
        assert!(!marks.written_since(b, marks.seq), "a recent mark is still exact");
    }
}
