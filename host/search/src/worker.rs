//! The indexing worker: a durable consumer of the event stream that batches events (by count
//! and time), runs each log's batch through its guild's indexer, writes the documents to the
//! cells, commits them, and only then acknowledges the stream. A crash before the
//! acknowledgement means the batch comes again; the cells' committed `seq`s make the replay
//! change nothing twice.
//!
//! Which indexer: the guild's enabled `indexer` plugin (a Wasm component, sandboxed like any
//! plugin), or the first-party default (`plugins/indexer`, linked natively: trusted code,
//! and no sandbox on the path of every guild that installs none). DMs always use the default.
//! A plugin's documents only propose text and tags for the messages of the batch: the host
//! sets scope, id, channel and author from the messages themselves.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use guildhall_core::clock::Clock;
use guildhall_core::model::{GuildId, Message, MessageId, PluginKind, PluginRecord};
use guildhall_core::stream::{Arrival, LogEntry, LogKey, StreamEvent};
use guildhall_core::Snowflake;
use guildhall_plugins::{GuildEvent as PluginEvent, GuildView, IndexerInstance, MessageRef, PluginEngine};
use guildhall_runtime::plugin_runners::bots::to_bot_message;
use guildhall_runtime::plugin_runners::plugin_support::load_component;
use guildhall_runtime::Metrics;
use guildhall_store::Storage;
use guildhall_stream::{Delivered, LogConsumer};
use tokio::sync::watch;

use crate::cell::{CellOp, IndexDoc};
use crate::cells::Cells;
use crate::SearchError;

/// How a worker batches and how long an indexer may take.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Most entries one batch (one commit per cell it touches) takes.
    pub max_batch: usize,
    /// How long a batch waits for more entries after its first.
    pub linger: Duration,
    /// A plugin indexer's CPU time for one log's batch.
    pub plugin_deadline: Duration,
    /// How long a guild's choice of indexer is trusted before storage is asked again.
    pub plugin_recheck: Duration,
}

impl Default for WorkerConfig {
    fn default() -> WorkerConfig {
        WorkerConfig {
            max_batch: 4096,
            linger: Duration::from_millis(20),
            plugin_deadline: Duration::from_millis(200),
            plugin_recheck: Duration::from_secs(10),
        }
    }
}

/// What the text and tags of one message are, as its indexer proposed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposed {
    pub text: String,
    pub tags: Vec<String>,
}

/// A guild's indexer as the worker keeps it.
struct GuildIndexer {
    /// The enabled indexer plugin, if any (`None`: the default).
    record: Option<PluginRecord>,
    instance: Option<IndexerInstance>,
    /// When storage was last asked (the clock's monotonic ms).
    checked_at_ms: u64,
    /// When a batch of the guild last came (idle ones, and their instances, are dropped).
    used_ms: u64,
}

/// A guild's indexer (and its instance) is forgotten after this long without a batch, as
/// idle plugin instances are elsewhere.
const GUILD_IDLE_MS: u64 = 5 * 60 * 1000;

pub struct IndexingWorker {
    consumer: Box<dyn LogConsumer>,
    cells: Arc<Cells>,
    store: Arc<dyn Storage>,
    engine: Option<Arc<PluginEngine>>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    config: WorkerConfig,
    guilds: HashMap<GuildId, GuildIndexer>,
    /// When idle guilds were last dropped from `guilds` (monotonic ms).
    evicted_at_ms: u64,
}

impl IndexingWorker {
    pub fn new(
        consumer: Box<dyn LogConsumer>,
        cells: Arc<Cells>,
        store: Arc<dyn Storage>,
        engine: Option<Arc<PluginEngine>>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        config: WorkerConfig,
    ) -> IndexingWorker {
        IndexingWorker {
            consumer,
            cells,
            store,
            engine,
            clock,
            metrics,
            config,
            guilds: HashMap::new(),
            evicted_at_ms: 0,
        }
    }

    /// Runs until `stop` turns true.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut failures = 0u32;
        while !*stop.borrow() {
            let batch = tokio::select! {
                batch = self.next_batch() => batch,
                _ = stop.changed() => break,
            };
            let batch = match batch {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(error = %e, "the indexing worker cannot read the event stream; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let Some(last) = batch.last().map(|d| d.position) else { continue };
            // The batch is retried until it is in the cells: it is not acknowledged before.
            loop {
                match self.index(&batch).await {
                    Ok(()) => break,
                    Err(e) => {
                        failures += 1;
                        tracing::warn!(error = %e, "indexing a batch failed; retrying");
                        self.cells.rollback_all();
                        tokio::time::sleep(Duration::from_millis(100 << failures.min(6))).await;
                    }
                }
            }
            failures = 0;
            if let Err(e) = self.consumer.ack(last).await {
                // Indexed and committed; the batch may come again, which changes nothing.
                tracing::warn!(error = %e, "acknowledging indexed events failed");
            }
        }
    }

    /// Up to `max_batch` entries: what is there, and what comes within `linger` of the first.
    async fn next_batch(&mut self) -> Result<Vec<Delivered>, guildhall_stream::StreamError> {
        let mut batch = self.consumer.fetch(self.config.max_batch, Duration::from_secs(1)).await?;
        if batch.is_empty() || batch.len() >= self.config.max_batch {
            return Ok(batch);
        }
        let until = tokio::time::Instant::now() + self.config.linger;
        while batch.len() < self.config.max_batch {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            let more = self.consumer.fetch(self.config.max_batch - batch.len(), left).await?;
            if more.is_empty() {
                break;
            }
            batch.extend(more);
        }
        Ok(batch)
    }

    /// Indexes a batch into the cells and commits every cell it touched.
    pub async fn index(&mut self, batch: &[Delivered]) -> Result<(), SearchError> {
        let started = Instant::now();
        // Each log's entries, in stream order (logs in the order they first appear).
        let mut logs: Vec<(LogKey, Vec<&LogEntry>)> = Vec::new();
        let mut log_at: HashMap<LogKey, usize> = HashMap::new();
        for delivered in batch {
            let entry = match &delivered.entry {
                Ok(entry) => entry,
                Err(e) => {
                    Metrics::inc(&self.metrics.search_corrupt_entries);
                    tracing::error!(error = %e, "an event the stream holds does not decode; skipped");
                    continue;
                }
            };
            match log_at.get(&entry.key) {
                Some(&at) => logs[at].1.push(entry),
                None => {
                    log_at.insert(entry.key, logs.len());
                    logs.push((entry.key, vec![entry]));
                }
            }
        }
        let mut touched = Vec::new();
        for (log, entries) in logs {
            let proposed = self.propose(log, &entries).await;
            let scopes: Vec<Snowflake> = match log {
                LogKey::Guild(guild) => vec![guild],
                LogKey::Dm(_) => entries[0].recipients.clone(),
            };
            // The scopes that share a cell are written together, against that cell's seq.
            let mut by_cell: HashMap<usize, Vec<Snowflake>> = HashMap::new();
            for scope in scopes {
                by_cell.entry(self.cells.cell_of(scope)).or_default().push(scope);
            }
            for (cell, scopes) in by_cell {
                let mut writer = self.cells.writer(cell);
                let mut applied = writer.applied(log);
                for entry in &entries {
                    match entry.arrival(applied) {
                        Arrival::Repeat => continue,
                        Arrival::Gap { missing_after, missing_upto } => {
                            // Entries the stream lost (past its retention): counted; the
                            // guild's backfill repairs them from storage.
                            Metrics::inc(&self.metrics.search_gaps);
                            tracing::warn!(?log, missing_after, missing_upto, "a gap in a log's events");
                        }
                        Arrival::Next => {}
                    }
                    for scope in &scopes {
                        for op in ops(*scope, &entry.event, &proposed) {
                            writer.apply(op)?;
                        }
                    }
                    applied = entry.seq;
                }
                writer.set_applied(log, applied);
                if !touched.contains(&cell) {
                    touched.push(cell);
                }
            }
        }
        for cell in touched {
            let commit = Instant::now();
            self.cells.writer(cell).commit()?;
            self.metrics.search_commit_us.fetch_add(commit.elapsed().as_micros() as u64, Relaxed);
            Metrics::inc(&self.metrics.search_commits);
        }
        self.metrics.search_entries_indexed.fetch_add(batch.len() as u64, Relaxed);
        Metrics::inc(&self.metrics.search_batches);
        self.metrics.search_batch_us.fetch_add(started.elapsed().as_micros() as u64, Relaxed);
        let now_ms = self.clock.monotonic_ms();
        if now_ms.saturating_sub(self.evicted_at_ms) >= 60_000 {
            self.evicted_at_ms = now_ms;
            self.guilds.retain(|_, g| now_ms.saturating_sub(g.used_ms) < GUILD_IDLE_MS);
        }
        // Time from the newest message's creation (its id) to searchable.
        if let Some(newest) = batch.iter().filter_map(|d| d.entry.as_ref().ok()).filter_map(created_id).max() {
            let lag = self.clock.unix_ms().saturating_sub(newest.unix_ms());
            self.metrics.search_lag_ms.store(lag, Relaxed);
        }
        Ok(())
    }

    /// The text and tags of the messages a log's entries create or edit, by message id.
    async fn propose(&mut self, log: LogKey, entries: &[&LogEntry]) -> HashMap<MessageId, Proposed> {
        let messages: Vec<&Message> = entries
            .iter()
            .filter_map(|e| match &e.event {
                StreamEvent::MessageCreate { message } | StreamEvent::MessageUpdate { message } => Some(message),
                _ => None,
            })
            .collect();
        if messages.is_empty() {
            return HashMap::new();
        }
        if let LogKey::Guild(guild) = log {
            // No plugin, or it failed: the default indexer.
            if let Some(proposed) = self.plugin_proposals(guild, entries, &messages).await {
                return proposed;
            }
        }
        messages.iter().map(|m| (m.id, default_proposal(m))).collect()
    }

    /// The guild's indexer plugin's proposals, or `None` if it has none or it failed (a
    /// fault: the default indexes this batch, and the instance is dropped).
    async fn plugin_proposals(
        &mut self,
        guild: GuildId,
        entries: &[&LogEntry],
        messages: &[&Message],
    ) -> Option<HashMap<MessageId, Proposed>> {
        let engine = self.engine.clone()?;
        let recheck_ms = self.config.plugin_recheck.as_millis() as u64;
        let now_ms = self.clock.monotonic_ms();
        let stale = self.guilds.get(&guild).is_none_or(|g| now_ms.saturating_sub(g.checked_at_ms) > recheck_ms);
        if stale {
            let record = match self.store.guild_plugins(guild).await {
                Ok(records) => records.into_iter().find(|r| r.kind == PluginKind::Indexer && r.enabled),
                Err(_) => self.guilds.get(&guild).and_then(|g| g.record.clone()),
            };
            let keep = self.guilds.get_mut(&guild).filter(|g| g.record == record);
            match keep {
                Some(g) => g.checked_at_ms = now_ms,
                None => {
                    let fresh = GuildIndexer { record, instance: None, checked_at_ms: now_ms, used_ms: now_ms };
                    self.guilds.insert(guild, fresh);
                }
            }
        }
        if let Some(g) = self.guilds.get_mut(&guild) {
            g.used_ms = now_ms;
        }
        let state = self.guilds.get_mut(&guild)?;
        let record = state.record.clone()?;
        if state.instance.is_none() {
            let loaded = load_component(&engine, self.store.as_ref(), &record).await.ok()?;
            let view = GuildView {
                guild_id: guild.0,
                channels: Arc::new(Vec::new()),
                members: Arc::new(|_| Box::pin(async { None })),
                clock: self.clock.clone(),
            };
            let config = record.config.to_string();
            match IndexerInstance::new(&engine, &loaded, &record.name, view, &config, self.config.plugin_deadline).await
            {
                Ok(instance) => state.instance = Some(instance),
                Err(e) => {
                    Metrics::inc(&self.metrics.search_indexer_faults);
                    tracing::warn!(guild = %guild, plugin = %record.name, error = %e, "an indexer did not start");
                    return None;
                }
            }
        }
        let events: Vec<PluginEvent> = entries.iter().filter_map(|e| plugin_event(&e.event)).collect();
        let instance = state.instance.as_mut()?;
        match instance.index(&events, self.config.plugin_deadline).await {
            Ok(documents) => {
                let ids: HashMap<MessageId, ()> = messages.iter().map(|m| (m.id, ())).collect();
                let mut proposed = HashMap::new();
                for d in documents {
                    // Only the batch's own messages: a document can file nothing elsewhere.
                    let Ok(id) = d.id.parse::<u64>().map(Snowflake) else { continue };
                    if ids.contains_key(&id) {
                        proposed.insert(id, Proposed { text: d.text, tags: d.tags });
                    }
                }
                Some(proposed)
            }
            Err(e) => {
                state.instance = None;
                Metrics::inc(&self.metrics.search_indexer_faults);
                tracing::warn!(guild = %guild, plugin = %record.name, error = %e, "an indexer failed; the default indexed");
                None
            }
        }
    }
}

/// The default indexer's proposal (the first-party plugin's own code, run natively).
pub fn default_proposal(m: &Message) -> Proposed {
    use guildhall_sdk::indexing as sdk;
    let message = sdk::Message {
        id: m.id.0,
        channel_id: m.channel_id.0,
        guild_id: m.guild_id.map_or(0, |g| g.0),
        author: sdk::User { id: m.author.id.0, username: m.author.username.clone(), bot: m.author.bot },
        content: m.content.clone(),
        timestamp: m.timestamp.clone(),
        edited_timestamp: m.edited_timestamp.clone(),
        mentions: m.mentions.iter().map(|u| u.id.0).collect(),
    };
    let document = indexer::document(&message);
    Proposed { text: document.text, tags: document.tags }
}

fn plugin_event(event: &StreamEvent) -> Option<PluginEvent> {
    Some(match event {
        StreamEvent::MessageCreate { message } => PluginEvent::MessageCreate(to_bot_message(message)),
        StreamEvent::MessageUpdate { message } => PluginEvent::MessageUpdate(to_bot_message(message)),
        StreamEvent::MessageDelete { channel_id, id } => {
            PluginEvent::MessageDelete(MessageRef { id: id.0, channel_id: channel_id.0 })
        }
        _ => return None,
    })
}

fn created_id(entry: &LogEntry) -> Option<MessageId> {
    match &entry.event {
        StreamEvent::MessageCreate { message } => Some(message.id),
        _ => None,
    }
}

/// What one event does to one scope's documents.
fn ops(scope: Snowflake, event: &StreamEvent, proposed: &HashMap<MessageId, Proposed>) -> Vec<CellOp> {
    match event {
        StreamEvent::MessageCreate { message } | StreamEvent::MessageUpdate { message } => {
            match proposed.get(&message.id) {
                Some(p) => vec![CellOp::Upsert(IndexDoc {
                    scope,
                    id: message.id,
                    channel: message.channel_id,
                    author: message.author.id,
                    text: vec![p.text.clone()],
                    tags: p.tags.clone(),
                })],
                // Its indexer made no document: nothing of it is found (an edit's old
                // document goes too).
                None => vec![CellOp::Delete { scope, id: message.id }],
            }
        }
        StreamEvent::MessageDelete { id, .. } => vec![CellOp::Delete { scope, id: *id }],
        StreamEvent::MessagesDelete { ids, .. } => ids.iter().map(|id| CellOp::Delete { scope, id: *id }).collect(),
        StreamEvent::ChannelDelete { channel_id } => vec![CellOp::DeleteChannel { scope, channel: *channel_id }],
        StreamEvent::AuthorPurge { author_id, since } => {
            vec![CellOp::PurgeAuthor { scope, author: *author_id, since: *since }]
        }
        StreamEvent::Void => Vec::new(),
    }
}
