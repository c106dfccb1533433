//! The outbox's relay: how a guild or DM actor gets the message events it stored into the
//! durable stream (see `guildhall_core::stream` for the design: entries stored with the
//! writes, then relayed in order, read back from storage when memory or the stream failed).
//!
//! [`LogRelay`] drives one actor's pure `LogWriter`: it numbers the entries of each write
//! batch, hears how storage took them, and runs one relay job at a time (append to the
//! stream, then tell storage what the stream has), waiting longer after each failure. The
//! actor polls it in its loop, so the relay ends with the actor: one relayer per log.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use guildhall_core::clock::Clock;
use guildhall_core::guild::GuildWrite;
use guildhall_core::model::UserId;
use guildhall_core::stream::{LogEntry, LogKey, LogWriter, RelayJob, Relayed, WriteOutcome};
use guildhall_store::{LoggedBatch, Storage, StoreError};
use guildhall_stream::EventLog;

use crate::infrastructure::metrics::Metrics;

/// What a node's actors need to keep their logs: the stream, and the storage the outbox is in.
#[derive(Clone)]
pub struct EventStream {
    pub log: Arc<dyn EventLog>,
    pub store: Arc<dyn Storage>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    /// The storage is the stream (the embedded store opened with it): a batch's entries are
    /// in the stream once storage has them, and nothing is relayed.
    pub storage_appends: bool,
}

type Job = Pin<Box<dyn Future<Output = Result<Relayed, ()>> + Send>>;

/// One actor's log: its writer and the relay job in flight.
pub struct LogRelay {
    writer: LogWriter,
    stream: EventStream,
    job: Option<Job>,
}

/// How long an actor that stops waits for its relay to finish (the rest stays in storage
/// for the next incarnation, which the sweeper starts).
pub const DRAIN_ON_STOP: Duration = Duration::from_secs(5);

impl LogRelay {
    /// The relay of a log whose head is read from storage (an error: the actor cannot
    /// number entries safely, so it does not start).
    pub async fn load(key: LogKey, recipients: Vec<UserId>, stream: EventStream) -> Result<LogRelay, StoreError> {
        let head = stream.store.log_head(key).await?;
        let writer = if stream.storage_appends {
            LogWriter::storage_appends(key, recipients, head)
        } else {
            LogWriter::new(key, recipients, head)
        };
        Ok(LogRelay { writer, stream, job: None })
    }

    /// Entries for a batch's writes, in order.
    pub fn number(&mut self, writes: &[GuildWrite]) -> Vec<(usize, LogEntry)> {
        self.writer.number(writes)
    }

    /// Storage answered a batch whose entries were `numbered` (with the index of their write).
    pub fn stored(&mut self, numbered: Vec<(usize, LogEntry)>, batch: &LoggedBatch) {
        let outcomes: Vec<WriteOutcome> = numbered
            .iter()
            .map(|(i, _)| match batch.writes.get(*i) {
                Some(Ok(())) => WriteOutcome::Written,
                Some(Err(StoreError::NotFound | StoreError::Conflict(_))) => WriteOutcome::Refused,
                _ => WriteOutcome::Unknown,
            })
            .collect();
        let entries = numbered.into_iter().map(|(_, e)| e).collect();
        self.writer.stored(entries, batch.log.is_ok(), &outcomes);
        self.kick();
    }

    /// Starts the next job if one is due and none runs (the actor calls it once at start:
    /// the first job reads back what storage holds).
    pub fn kick(&mut self) {
        if self.job.is_some() {
            return;
        }
        let Some(job) = self.writer.next_job() else { return };
        let backoff = Duration::from_millis(self.writer.backoff_ms());
        let (key, relayed, stream) = (self.writer.key(), self.writer.relayed(), self.stream.clone());
        self.job = Some(Box::pin(async move {
            if !backoff.is_zero() {
                tokio::time::sleep(backoff).await;
            }
            let done = run(&stream, key, relayed, job).await;
            done.map_err(|e| {
                Metrics::inc(&stream.metrics.event_relay_failures);
                tracing::warn!(log = ?key, error = %e, "relaying message events failed; retrying");
            })
        }));
    }

    /// Whether a job is in flight (poll [`LogRelay::finished`] then).
    pub fn busy(&self) -> bool {
        self.job.is_some()
    }

    /// Waits for the job in flight (never returns if none) and starts the next.
    pub async fn finished(&mut self) {
        let Some(job) = self.job.as_mut() else { return std::future::pending().await };
        let result = job.await;
        self.job = None;
        self.writer.finished(result);
        self.kick();
    }

    /// Everything stored is in the stream.
    pub fn is_drained(&self) -> bool {
        self.writer.is_drained()
    }

    /// Relays what is left, for at most `limit` (an actor that stops).
    pub async fn drain(&mut self, limit: Duration) {
        self.kick();
        let drained = async {
            while self.busy() {
                self.finished().await;
            }
        };
        if tokio::time::timeout(limit, drained).await.is_err() {
            tracing::warn!(log = ?self.writer.key(), "stopping with message events not yet in the stream; they stay stored");
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Stream(#[from] guildhall_stream::StreamError),
}

/// One job's IO: the entries (from memory, or read back from storage) into the stream, then
/// storage told what the stream has. `relayed` is the writer's own mark (an empty catch-up
/// reports it).
async fn run(stream: &EventStream, key: LogKey, relayed: u64, job: RelayJob) -> Result<Relayed, RelayError> {
    let (entries, from_storage) = match job {
        RelayJob::Append(entries) => (entries, false),
        RelayJob::CatchUp { after, limit } => (stream.store.log_entries(key, after, limit).await?, true),
    };
    if !entries.is_empty() {
        stream.log.append(&entries).await?;
        stream.metrics.events_relayed.fetch_add(entries.len() as u64, Relaxed);
    }
    let upto = entries.last().map_or(relayed, |e| e.seq);
    // Also after an empty catch-up: it clears a pending mark left without entries.
    stream.store.log_relayed(key, upto, stream.clock.unix_ms()).await?;
    let read = if from_storage { entries.len() } else { 0 };
    Ok(Relayed { upto, read })
}

/// Waits for `log`'s job in flight; never returns if there is none (for `select!`).
pub async fn relay_finished(log: &mut Option<LogRelay>) {
    match log {
        Some(log) if log.busy() => log.finished().await,
        _ => std::future::pending().await,
    }
}
