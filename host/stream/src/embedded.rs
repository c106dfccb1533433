//! The stream on one host: a redb file of its own (`events.redb` in the data directory),
//! so that it survives restarts and fails apart from the message store.
//!
//! One writer thread commits every append and acknowledgement waiting in its queue in one
//! transaction (`Durability::Immediate`: an fsync), as the message store does, so many
//! actors' appends share one fsync. Entries are numbered by position; a log's entries at or
//! below the highest `seq` already appended for it are skipped (a relay that sends again after
//! a restart adds nothing). Entries every consumer acknowledged are deleted; without
//! consumers, the oldest go past `max_entries`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use guildhall_core::stream::LogEntry;
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};
use tokio::sync::{mpsc, oneshot, Notify};

use crate::{decode, encode, unavailable, Delivered, EventLog, LogConsumer, Result};

/// position -> LogEntry (JSON).
const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("entries");
/// log id -> the highest seq appended for it.
const HEADS: TableDefinition<u64, u64> = TableDefinition::new("heads");
/// consumer name -> the position it acknowledged.
const CONSUMERS: TableDefinition<&str, u64> = TableDefinition::new("consumers");
/// "next" -> the position the next entry gets. Kept apart from the entries: once trimming
/// emptied them, the last entry no longer says where numbering stood, and positions must
/// never go back (a consumer reads after the last one it saw).
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

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
}

impl EmbeddedLog {
    /// Opens (or creates) the log at `path`; without consumers, it keeps at most
    /// `max_entries`.
    pub fn open(path: &Path, max_entries: u64) -> Result<EmbeddedLog> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(unavailable)?;
        }
        let db = Database::create(path).map_err(unavailable)?;
        let tx = db.begin_write().map_err(unavailable)?;
        {
            tx.open_table(ENTRIES).map_err(unavailable)?;
            tx.open_table(HEADS).map_err(unavailable)?;
            tx.open_table(CONSUMERS).map_err(unavailable)?;
            tx.open_table(META).map_err(unavailable)?;
        }
        tx.commit().map_err(unavailable)?;
        let db = Arc::new(db);
        let appended = Arc::new(Notify::new());
        let (jobs, rx) = mpsc::channel(QUEUE);
        let (writer_db, writer_appended) = (db.clone(), appended.clone());
        std::thread::Builder::new()
            .name("guildhall-event-log".into())
            .spawn(move || writer_loop(&writer_db, rx, &writer_appended, max_entries))
            .map_err(unavailable)?;
        Ok(EmbeddedLog { db, jobs, appended })
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

fn writer_loop(db: &Database, mut rx: mpsc::Receiver<Queued>, appended: &Notify, max_entries: u64) {
    let mut batch: Vec<Queued> = Vec::with_capacity(MAX_JOBS);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_JOBS {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let result = commit(db, &batch, max_entries);
        if let Err(e) = &result {
            tracing::error!(error = %e, jobs = batch.len(), "event log commit failed");
        }
        for (_, reply) in batch.drain(..) {
            let _ = reply.send(result.clone());
        }
        appended.notify_waiters();
    }
}

fn commit(db: &Database, batch: &[Queued], max_entries: u64) -> Result<()> {
    let tx = db.begin_write().map_err(unavailable)?;
    for (job, _) in batch {
        match job {
            Job::Append(entries) => append(&tx, entries)?,
            Job::Ack(name, position) => {
                let mut consumers = tx.open_table(CONSUMERS).map_err(unavailable)?;
                let acked = consumers.get(name.as_str()).map_err(unavailable)?.map_or(0, |v| v.value());
                consumers.insert(name.as_str(), acked.max(*position)).map_err(unavailable)?;
            }
        }
    }
    trim(&tx, max_entries)?;
    tx.commit().map_err(unavailable)
}

fn append(tx: &WriteTransaction, entries: &[LogEntry]) -> Result<()> {
    let mut table = tx.open_table(ENTRIES).map_err(unavailable)?;
    let mut heads = tx.open_table(HEADS).map_err(unavailable)?;
    let mut meta = tx.open_table(META).map_err(unavailable)?;
    let after_last = table.last().map_err(unavailable)?.map_or(1, |(k, _)| k.value() + 1);
    let mut next = meta.get("next").map_err(unavailable)?.map_or(1, |v| v.value()).max(after_last);
    for entry in entries {
        let id = entry.key.id().0;
        let head = heads.get(id).map_err(unavailable)?.map_or(0, |v| v.value());
        if entry.seq <= head {
            continue; // already appended
        }
        heads.insert(id, entry.seq).map_err(unavailable)?;
        table.insert(next, encode(entry).as_slice()).map_err(unavailable)?;
        next += 1;
    }
    meta.insert("next", next).map_err(unavailable)?;
    Ok(())
}

/// Deletes what every consumer acknowledged, and past `max_entries` the oldest.
fn trim(tx: &WriteTransaction, max_entries: u64) -> Result<()> {
    let consumers = tx.open_table(CONSUMERS).map_err(unavailable)?;
    let mut acked_by_all: Option<u64> = None;
    for row in consumers.iter().map_err(unavailable)? {
        let position = row.map_err(unavailable)?.1.value();
        acked_by_all = Some(acked_by_all.map_or(position, |p| p.min(position)));
    }
    let mut table = tx.open_table(ENTRIES).map_err(unavailable)?;
    if let Some(upto) = acked_by_all {
        table.retain_in(..=upto, |_, _| false).map_err(unavailable)?;
    }
    let held = table.len().map_err(unavailable)?;
    if held > max_entries {
        let first = table.first().map_err(unavailable)?.map_or(0, |(k, _)| k.value());
        let cut = first + (held - max_entries);
        table.retain_in(..cut, |_, _| false).map_err(unavailable)?;
        tracing::warn!(dropped = held - max_entries, "event log full: the oldest entries were dropped");
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
}
