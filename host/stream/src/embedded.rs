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
//! already appended for it (a relay that sends again after a restart adds nothing). Entries every consumer acknowledged are
//! deleted; without consumers, the oldest go past `max_entries`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use guildhall_core::stream::LogEntry;
use redb::{Database, Durability, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};
use tokio::sync::{mpsc, oneshot, Notify};

use crate::{decode, encode, unavailable, Delivered, EventLog, LogConsumer, Progress, Result};

/// position -> LogEntry (JSON).
const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("stream_entries");
/// log id -> the highest seq appended for it.
const HEADS: TableDefinition<u64, u64> = TableDefinition::new("stream_heads");
/// consumer name -> the position it acknowledged.
const CONSUMERS: TableDefinition<&str, u64> = TableDefinition::new("stream_consumers");
/// "next" -> the position the next entry gets. Kept apart from the entries: once trimming
/// emptied them, the last entry no longer says where numbering stood, and positions must
/// never go back (a consumer reads after the last one it saw).
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
            tx.open_table(ENTRIES).map_err(unavailable)?;
            tx.open_table(HEADS).map_err(unavailable)?;
            tx.open_table(CONSUMERS).map_err(unavailable)?;
            tx.open_table(META).map_err(unavailable)?;
        }
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
        let (tx, rx) = oneshot::channel();
        self.jobs.send((job, tx)).await.map_err(|_| unavailable("event log writer stopped"))?;
        rx.await.map_err(|_| unavailable("event log writer stopped"))?
    }

    /// Entries held now (for tests and metrics).
    pub fn len(&self) -> Result<u64> {
        let tx = self.db.begin_read().map_err(unavailable)?;
        tx.open_table(ENTRIES).map_err(unavailable)?.len().map_err(unavailable)
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

/// Appends `entries` after the last position. `dedupe`: skips a log's entries at or below the
/// highest `seq` already appended for it (a relay may send again; the store, appending in
/// its own transactions, never does, and is spared the table).
fn append(tx: &WriteTransaction, entries: &[LogEntry], max_entries: u64, dedupe: bool) -> Result<()> {
    let mut table = tx.open_table(ENTRIES).map_err(unavailable)?;
    let after_last = table.last().map_err(unavailable)?.map_or(1, |(k, _)| k.value() + 1);
    let mut next = next_position(tx)?.max(after_last);
    let mut heads = if dedupe { Some(tx.open_table(HEADS).map_err(unavailable)?) } else { None };
    for entry in entries {
        if let Some(heads) = heads.as_mut() {
            let id = entry.key.id().0;
            let head = heads.get(id).map_err(unavailable)?.map_or(0, |v| v.value());
            if entry.seq <= head {
                continue; // already appended
            }
            heads.insert(id, entry.seq).map_err(unavailable)?;
        }
        table.insert(next, encode(entry).as_slice()).map_err(unavailable)?;
        next += 1;
    }
    cap(tx, &mut table, next, max_entries)
}

/// Where numbering stood when entries were last deleted (the position after the last one
/// then): once deletions emptied the table, the entries no longer say it.
fn next_position(tx: &WriteTransaction) -> Result<u64> {
    let meta = tx.open_table(META).map_err(unavailable)?;
    let next = meta.get("next").map_err(unavailable)?.map_or(1, |v| v.value());
    Ok(next)
}

/// Records, before entries are deleted, where numbering stands.
fn keep_next_position(tx: &WriteTransaction, table: &redb::Table<u64, &[u8]>) -> Result<()> {
    let after_last = table.last().map_err(unavailable)?.map_or(1, |(k, _)| k.value() + 1);
    let next = next_position(tx)?.max(after_last);
    tx.open_table(META).map_err(unavailable)?.insert("next", next).map_err(unavailable)?;
    Ok(())
}

/// Past `max_entries`, deletes the oldest (positions are contiguous: only a prefix is ever
/// deleted, so `next - first` is how many are held, without counting them).
fn cap(tx: &WriteTransaction, table: &mut redb::Table<u64, &[u8]>, next: u64, max_entries: u64) -> Result<()> {
    let Some(first) = table.first().map_err(unavailable)?.map(|(k, _)| k.value()) else { return Ok(()) };
    let held = next.saturating_sub(first);
    if held > max_entries {
        keep_next_position(tx, table)?;
        table.retain_in(..first + (held - max_entries), |_, _| false).map_err(unavailable)?;
        tracing::warn!(dropped = held - max_entries, "event log full: the oldest entries were dropped");
    }
    Ok(())
}

/// Deletes what every consumer acknowledged.
fn trim(tx: &WriteTransaction) -> Result<()> {
    let consumers = tx.open_table(CONSUMERS).map_err(unavailable)?;
    let mut acked_by_all: Option<u64> = None;
    for row in consumers.iter().map_err(unavailable)? {
        let position = row.map_err(unavailable)?.1.value();
        acked_by_all = Some(acked_by_all.map_or(position, |p| p.min(position)));
    }
    if let Some(upto) = acked_by_all {
        let mut table = tx.open_table(ENTRIES).map_err(unavailable)?;
        if table.first().map_err(unavailable)?.is_some_and(|(k, _)| k.value() <= upto) {
            keep_next_position(tx, &table)?;
            table.retain_in(..=upto, |_, _| false).map_err(unavailable)?;
        }
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
        Ok(Box::new(EmbeddedConsumer { log: self.clone(), name: name.to_owned(), fetched: acked }))
    }
}

struct EmbeddedConsumer {
    log: EmbeddedLog,
    name: String,
    /// The last position fetched.
    fetched: u64,
}

impl EmbeddedConsumer {
    async fn read(&self, max: usize) -> Result<Vec<Delivered>> {
        let (db, after) = (self.log.db.clone(), self.fetched);
        tokio::task::spawn_blocking(move || -> Result<Vec<Delivered>> {
            let tx = db.begin_read().map_err(unavailable)?;
            let table = tx.open_table(ENTRIES).map_err(unavailable)?;
            let mut out = Vec::new();
            for row in table.range(after + 1..).map_err(unavailable)?.take(max) {
                let (position, bytes) = row.map_err(unavailable)?;
                let position = position.value();
                out.push(Delivered { position, entry: decode(position, bytes.value()) });
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
        self.log.submit(Job::Ack(self.name.clone(), position)).await
    }

    async fn acknowledged_after(&mut self, position: u64) -> Result<bool> {
        // Every position is an entry of every consumer.
        Ok(self.progress().await?.acknowledged > position)
    }

    async fn progress(&mut self) -> Result<Progress> {
        let (db, name) = (self.log.db.clone(), self.name.clone());
        tokio::task::spawn_blocking(move || -> Result<Progress> {
            let tx = db.begin_read().map_err(unavailable)?;
            let consumers = tx.open_table(CONSUMERS).map_err(unavailable)?;
            let acknowledged = consumers.get(name.as_str()).map_err(unavailable)?.map_or(0, |v| v.value());
            let entries = tx.open_table(ENTRIES).map_err(unavailable)?;
            let last = entries.last().map_err(unavailable)?.map_or(0, |(k, _)| k.value());
            Ok(Progress { acknowledged, pending: last.saturating_sub(acknowledged) })
        })
        .await
        .map_err(unavailable)?
    }
}
