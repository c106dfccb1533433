//! The stream on one host, in a redb database: a file of its own (`events.redb`, when the
//! messages are elsewhere, on ScyllaDB), or inside the embedded message store's own file
//! ([`EmbeddedLog::within`]), where the store appends a batch's entries in the batch's own
//! transaction: then the stream costs a write nothing beyond the entries themselves (no
//! second fsync, no relay) and holds exactly what was stored.
//!
//! In a file of its own, one writer thread commits every append and acknowledgement waiting
//! in its queue in one transaction (`Durability::Immediate`: an fsync), as the message store
//! does, so many actors' appends share one fsync. Inside the store, acknowledgements commit
//! without an fsync of their own (they become durable with the store's next commit; one lost
//! in a crash only means a replay, which readers skip). Entries are numbered by position; an
//! append through [`EventLog::append`] skips a log's entries at or below the highest `seq`
//! already appended for it (a relay that sends again after a restart adds nothing).
//!
//! Entries are kept in *segments*, a table per [`SEGMENT_ENTRIES`] positions: a segment every
//! consumer acknowledged to its end is deleted whole (a B-tree dropped page by page, where
//! deleting its entries one by one cost the writer more than the appends did). So the log
//! holds what some consumer has not acknowledged, plus at most a segment; without
//! consumers, the oldest go past `max_entries`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use guildhall_core::stream::LogEntry;
use redb::{Database, Durability, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};
use tokio::sync::{mpsc, oneshot, Notify};

use crate::{decode, encode, unavailable, Delivered, EventLog, LogConsumer, Progress, Result};

/// Positions a segment holds (a power of two): `position / SEGMENT_ENTRIES` is its number.
pub const SEGMENT_ENTRIES: u64 = 1 << 14;
/// The entries of one segment, position -> LogEntry (JSON): `stream_entries_{segment}`.
fn segment_table(segment: u64) -> String {
    format!("stream_entries_{segment:012}")
}
/// Before segments, every entry was in one table: moved into segments at open.
const LEGACY_ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("stream_entries");
/// log id -> the highest seq appended for it.
const HEADS: TableDefinition<u64, u64> = TableDefinition::new("stream_heads");
/// consumer name -> the position it acknowledged.
const CONSUMERS: TableDefinition<&str, u64> = TableDefinition::new("stream_consumers");
/// "next" -> the position the next entry gets (positions never go back: a consumer reads
/// after the last one it saw); "first_segment" -> the oldest segment not deleted.
const META: TableDefinition<&str, u64> = TableDefinition::new("stream_meta");

/// Jobs one transaction takes at most.
const MAX_JOBS: usize = 256;
/// Appends that may wait for the writer before callers wait.
const QUEUE: usize = 4096;

enum Job {
    Append(Vec<LogEntry>),
    Ack(String, u64),
}

type Queued = (Job, oneshot::Sender<Result<()>>);

#[derive(Clone)]
pub struct EmbeddedLog {
    db: Arc<Database>,
    jobs: mpsc::Sender<Queued>,
    appended: Arc<Notify>,
    max_entries: u64,
}

impl EmbeddedLog {
    /// Opens (or creates) the log in a file of its own at `path`; without consumers, it keeps
    /// at most `max_entries`.
    pub fn open(path: &Path, max_entries: u64) -> Result<EmbeddedLog> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(unavailable)?;
        }
        let db = Database::create(path).map_err(unavailable)?;
        EmbeddedLog::start(Arc::new(db), max_entries, Durability::Immediate)
    }

    /// The log inside `db`, a database another writer owns: that writer appends with
    /// [`EmbeddedLog::append_in`] in its own transactions (and calls
    /// [`EmbeddedLog::appended`] after each commit); acknowledgements here commit without an
    /// fsync of their own.
    pub fn within(db: Arc<Database>, max_entries: u64) -> Result<EmbeddedLog> {
        EmbeddedLog::start(db, max_entries, Durability::None)
    }

    fn start(db: Arc<Database>, max_entries: u64, durability: Durability) -> Result<EmbeddedLog> {
        let tx = db.begin_write().map_err(unavailable)?;
        {
            tx.open_table(HEADS).map_err(unavailable)?;
            tx.open_table(CONSUMERS).map_err(unavailable)?;
            tx.open_table(META).map_err(unavailable)?;
        }
        migrate_legacy(&tx)?;
        tx.commit().map_err(unavailable)?;
        let appended = Arc::new(Notify::new());
        let (jobs, rx) = mpsc::channel(QUEUE);
        let (writer_db, writer_appended) = (db.clone(), appended.clone());
        std::thread::Builder::new()
            .name("guildhall-event-log".into())
            .spawn(move || writer_loop(&writer_db, rx, &writer_appended, max_entries, durability))
            .map_err(unavailable)?;
        Ok(EmbeddedLog { db, jobs, appended, max_entries })
    }

    /// Appends `entries` in the owner's transaction `tx` (the log made by
    /// [`EmbeddedLog::within`]): they are in the stream once `tx` commits.
    pub fn append_in(&self, tx: &WriteTransaction, entries: &[LogEntry]) -> Result<()> {
        append(tx, entries, self.max_entries, false)
    }

    /// Wakes the consumers waiting for entries (the owner committed an append).
    pub fn appended(&self) {
        self.appended.notify_waiters();
    }

    async fn submit(&self, job: Job) -> Result<()> {
        let committed = self.queue(job).await?;
        committed.await.map_err(|_| unavailable("event log writer stopped"))?
    }

    /// Queues `job` for the writer; the answer comes once it is committed.
    async fn queue(&self, job: Job) -> Result<oneshot::Receiver<Result<()>>> {
        let (tx, rx) = oneshot::channel();
        self.jobs.send((job, tx)).await.map_err(|_| unavailable("event log writer stopped"))?;
        Ok(rx)
    }

    /// Entries held now (for tests and metrics).
    pub fn len(&self) -> Result<u64> {
        let tx = self.db.begin_read().map_err(unavailable)?;
        let meta = tx.open_table(META).map_err(unavailable)?;
        let (first, next) = (meta_value(&meta, "first_segment")?, meta_value(&meta, "next")?.max(1));
        let mut held = 0;
        for segment in first..=(next - 1) / SEGMENT_ENTRIES {
            match tx.open_table(TableDefinition::<u64, &[u8]>::new(&segment_table(segment))) {
                Ok(table) => held += table.len().map_err(unavailable)?,
                Err(redb::TableError::TableDoesNotExist(_)) => {}
                Err(e) => return Err(unavailable(e)),
            }
        }
        Ok(held)
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
}

fn writer_loop(
    db: &Database,
    mut rx: mpsc::Receiver<Queued>,
    appended: &Notify,
    max_entries: u64,
    acks_durability: Durability,
) {
    let mut batch: Vec<Queued> = Vec::with_capacity(MAX_JOBS);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_JOBS {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // An append is always durable when answered; acknowledgements alone may wait for the
        // database's next durable commit.
        let only_acks = batch.iter().all(|(job, _)| matches!(job, Job::Ack(..)));
        let durability = if only_acks { acks_durability } else { Durability::Immediate };
        let result = commit(db, &batch, max_entries, durability);
        if let Err(e) = &result {
            tracing::error!(error = %e, jobs = batch.len(), "event log commit failed");
        }
        for (_, reply) in batch.drain(..) {
            let _ = reply.send(result.clone());
        }
        appended.notify_waiters();
    }
}

fn commit(db: &Database, batch: &[Queued], max_entries: u64, durability: Durability) -> Result<()> {
    let mut tx = db.begin_write().map_err(unavailable)?;
    tx.set_durability(durability);
    for (job, _) in batch {
        match job {
            Job::Append(entries) => append(&tx, entries, max_entries, true)?,
            Job::Ack(name, position) => {
                let mut consumers = tx.open_table(CONSUMERS).map_err(unavailable)?;
                let acked = consumers.get(name.as_str()).map_err(unavailable)?.map_or(0, |v| v.value());
                consumers.insert(name.as_str(), acked.max(*position)).map_err(unavailable)?;
            }
        }
    }
    trim(&tx)?;
    tx.commit().map_err(unavailable)
}

fn meta_value(meta: &impl ReadableTable<&'static str, u64>, key: &str) -> Result<u64> {
    Ok(meta.get(key).map_err(unavailable)?.map_or(0, |v| v.value()))
}

/// Moves the entries of the one table before segments into segments (once), and records
/// where the segments start.
fn migrate_legacy(tx: &WriteTransaction) -> Result<()> {
    let legacy: Vec<(u64, Vec<u8>)> = {
        let table = tx.open_table(LEGACY_ENTRIES).map_err(unavailable)?;
        let rows = table.iter().map_err(unavailable)?;
        rows.map(|row| row.map(|(k, v)| (k.value(), v.value().to_vec())).map_err(unavailable)).collect::<Result<_>>()?
    };
    tx.delete_table(LEGACY_ENTRIES).map_err(unavailable)?;
    let mut meta = tx.open_table(META).map_err(unavailable)?;
    let next = meta_value(&meta, "next")?.max(legacy.last().map_or(1, |(p, _)| p + 1));
    meta.insert("next", next).map_err(unavailable)?;
    if meta.get("first_segment").map_err(unavailable)?.is_none() {
        let first = legacy.first().map_or(next, |(p, _)| *p);
        meta.insert("first_segment", first / SEGMENT_ENTRIES).map_err(unavailable)?;
    }
    drop(meta);
    for (position, bytes) in &legacy {
        let name = segment_table(position / SEGMENT_ENTRIES);
        let mut table = tx.open_table(TableDefinition::<u64, &[u8]>::new(&name)).map_err(unavailable)?;
        table.insert(*position, bytes.as_slice()).map_err(unavailable)?;
    }
    Ok(())
}

/// Appends `entries` after the last position. `dedupe`: skips a log's entries at or below the
/// highest `seq` already appended for it (a relay may send again; the store, appending in
/// its own transactions, never does, and is spared the table).
fn append(tx: &WriteTransaction, entries: &[LogEntry], max_entries: u64, dedupe: bool) -> Result<()> {
    let mut meta = tx.open_table(META).map_err(unavailable)?;
    let mut next = meta_value(&meta, "next")?.max(1);
    let mut heads = if dedupe { Some(tx.open_table(HEADS).map_err(unavailable)?) } else { None };
    let mut open: Option<(u64, redb::Table<u64, &[u8]>)> = None;
    for entry in entries {
        if let Some(heads) = heads.as_mut() {
            let id = entry.key.id().0;
            let head = heads.get(id).map_err(unavailable)?.map_or(0, |v| v.value());
            if entry.seq <= head {
                continue; // already appended
            }
            heads.insert(id, entry.seq).map_err(unavailable)?;
        }
        let segment = next / SEGMENT_ENTRIES;
        if open.as_ref().is_none_or(|(s, _)| *s != segment) {
            drop(open.take());
            let name = segment_table(segment);
            let table = tx.open_table(TableDefinition::<u64, &[u8]>::new(&name)).map_err(unavailable)?;
            open = Some((segment, table));
        }
        let (_, table) = open.as_mut().expect("opened above");
        table.insert(next, encode(entry).as_slice()).map_err(unavailable)?;
        next += 1;
    }
    drop(open);
    meta.insert("next", next).map_err(unavailable)?;
    drop(meta);
    cap(tx, next, max_entries)
}

/// Past `max_entries`, deletes the oldest: whole segments, then the oldest entries of the
/// first one left (positions are contiguous, so `next - position` is how many come after).
fn cap(tx: &WriteTransaction, next: u64, max_entries: u64) -> Result<()> {
    let Some(keep_from) = next.checked_sub(max_entries).filter(|&p| p > 0) else { return Ok(()) };
    let first =
        tx.open_table(META).map_err(unavailable)?.get("first_segment").map_err(unavailable)?.map_or(0, |v| v.value());
    if first * SEGMENT_ENTRIES >= keep_from {
        return Ok(());
    }
    let dropped = delete_segments_before(tx, keep_from / SEGMENT_ENTRIES)?;
    let name = segment_table(keep_from / SEGMENT_ENTRIES);
    let mut table = tx.open_table(TableDefinition::<u64, &[u8]>::new(&name)).map_err(unavailable)?;
    let before = table.len().map_err(unavailable)?;
    table.retain_in(..keep_from, |_, _| false).map_err(unavailable)?;
    let dropped = dropped + before - table.len().map_err(unavailable)?;
    if dropped > 0 {
        tracing::warn!(dropped, "event log full: the oldest entries were dropped");
    }
    Ok(())
}

/// Deletes every segment before `segment`; returns how many entries they held.
fn delete_segments_before(tx: &WriteTransaction, segment: u64) -> Result<u64> {
    let mut meta = tx.open_table(META).map_err(unavailable)?;
    let first = meta_value(&meta, "first_segment")?;
    let mut dropped = 0;
    for old in first..segment {
        let name = segment_table(old);
        let definition = TableDefinition::<u64, &[u8]>::new(&name);
        dropped += match tx.open_table(definition) {
            Ok(table) => table.len().map_err(unavailable)?,
            Err(e) => return Err(unavailable(e)),
        };
        tx.delete_table(definition).map_err(unavailable)?;
    }
    if segment > first {
        meta.insert("first_segment", segment).map_err(unavailable)?;
    }
    Ok(dropped)
}

/// Deletes the segments every consumer acknowledged to their end.
fn trim(tx: &WriteTransaction) -> Result<()> {
    let consumers = tx.open_table(CONSUMERS).map_err(unavailable)?;
    let mut acked_by_all: Option<u64> = None;
    for row in consumers.iter().map_err(unavailable)? {
        let position = row.map_err(unavailable)?.1.value();
        acked_by_all = Some(acked_by_all.map_or(position, |p| p.min(position)));
    }
    if let Some(upto) = acked_by_all {
        // Segments whose last position is at or below `upto`.
        delete_segments_before(tx, (upto + 1) / SEGMENT_ENTRIES)?;
    }
    Ok(())
}

#[async_trait]
impl EventLog for EmbeddedLog {
    async fn append(&self, entries: &[LogEntry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        self.submit(Job::Append(entries.to_vec())).await
    }

    async fn consumer(&self, name: &str) -> Result<Box<dyn LogConsumer>> {
        let (db, owned) = (self.db.clone(), name.to_owned());
        let acked = tokio::task::spawn_blocking(move || -> Result<u64> {
            let tx = db.begin_read().map_err(unavailable)?;
            let consumers = tx.open_table(CONSUMERS).map_err(unavailable)?;
            Ok(consumers.get(owned.as_str()).map_err(unavailable)?.map_or(0, |v| v.value()))
        })
        .await
        .map_err(unavailable)??;
        // Registered at once, so that trimming keeps what it has not read yet.
        self.submit(Job::Ack(name.to_owned(), acked)).await?;
        Ok(Box::new(EmbeddedConsumer { log: self.clone(), name: name.to_owned(), fetched: acked, acking: None }))
    }
}

struct EmbeddedConsumer {
    log: EmbeddedLog,
    name: String,
    /// The last position fetched.
    fetched: u64,
    /// The last acknowledgement queued, until its commit is seen: the reader goes on
    /// meanwhile (its commit, and the deletion of what it covers, overlap the next batch).
    acking: Option<oneshot::Receiver<Result<()>>>,
}

impl EmbeddedConsumer {
    /// Waits for the acknowledgement queued last: what the stream records includes it.
    async fn settle(&mut self) -> Result<()> {
        match self.acking.take() {
            Some(committed) => committed.await.map_err(|_| unavailable("event log writer stopped"))?,
            None => Ok(()),
        }
    }
}

impl EmbeddedConsumer {
    async fn read(&self, max: usize) -> Result<Vec<Delivered>> {
        let (db, after) = (self.log.db.clone(), self.fetched);
        tokio::task::spawn_blocking(move || -> Result<Vec<Delivered>> {
            let tx = db.begin_read().map_err(unavailable)?;
            let next = meta_value(&tx.open_table(META).map_err(unavailable)?, "next")?.max(1);
            let mut out = Vec::new();
            let mut segment = (after + 1) / SEGMENT_ENTRIES;
            while out.len() < max && segment * SEGMENT_ENTRIES < next {
                let table = match tx.open_table(TableDefinition::<u64, &[u8]>::new(&segment_table(segment))) {
                    Ok(table) => table,
                    // Deleted (acknowledged by every consumer, or past `max_entries`).
                    Err(redb::TableError::TableDoesNotExist(_)) => {
                        segment += 1;
                        continue;
                    }
                    Err(e) => return Err(unavailable(e)),
                };
                for row in table.range(after + 1..).map_err(unavailable)?.take(max - out.len()) {
                    let (position, bytes) = row.map_err(unavailable)?;
                    let position = position.value();
                    out.push(Delivered { position, entry: decode(position, bytes.value()) });
                }
                segment += 1;
            }
            Ok(out)
        })
        .await
        .map_err(unavailable)?
    }
}

#[async_trait]
impl LogConsumer for EmbeddedConsumer {
    async fn fetch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivered>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Listening before reading: an append committed in between still wakes us.
            let appended = self.log.appended.clone();
            let notified = appended.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let got = self.read(max).await?;
            if let Some(last) = got.last() {
                self.fetched = last.position;
                return Ok(got);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    async fn ack(&mut self, position: u64) -> Result<()> {
        // The previous one first: its failure is this call's (acknowledgements are
        // committed in order, so a later one covers an earlier one anyway).
        self.settle().await?;
        self.acking = Some(self.log.queue(Job::Ack(self.name.clone(), position)).await?);
        Ok(())
    }

    async fn acknowledged_after(&mut self, position: u64) -> Result<bool> {
        // Every position is an entry of every consumer.
        Ok(self.progress().await?.acknowledged > position)
    }

    async fn progress(&mut self) -> Result<Progress> {
        self.settle().await?;
        let (db, name) = (self.log.db.clone(), self.name.clone());
        tokio::task::spawn_blocking(move || -> Result<Progress> {
            let tx = db.begin_read().map_err(unavailable)?;
            let consumers = tx.open_table(CONSUMERS).map_err(unavailable)?;
            let acknowledged = consumers.get(name.as_str()).map_err(unavailable)?.map_or(0, |v| v.value());
            let last = meta_value(&tx.open_table(META).map_err(unavailable)?, "next")?.saturating_sub(1);
            Ok(Progress { acknowledged, pending: last.saturating_sub(acknowledged) })
        })
        .await
        .map_err(unavailable)?
    }
}
