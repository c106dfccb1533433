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
//!
//! Between live batches it backfills (see [`crate::backfill`]): logs a search found unknown,
//! logs with a gap in their events, and guilds whose indexer changed, a page at a time, live
//! entries first whenever there are any.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use guildhall_core::clock::Clock;
use guildhall_core::model::{ChannelId, GuildId, Message, MessageId, PluginKind, PluginRecord};
use guildhall_core::stream::{Arrival, LogEntry, LogKey, StreamEvent, LOG_SCHEMA_VERSION};
use guildhall_core::sync::LockUnpoisoned;
use guildhall_core::Snowflake;
use guildhall_plugins::{GuildEvent as PluginEvent, GuildView, IndexerInstance, MessageRef, PluginEngine};
use guildhall_runtime::addresses::guild_ref::Disabled;
use guildhall_runtime::plugin_runners::bots::to_bot_message;
use guildhall_runtime::plugin_runners::plugin_support::{disable, load_component, Faults};
use guildhall_runtime::Metrics;
use guildhall_store::history::HistoryQuery;
use guildhall_store::Storage;
use guildhall_stream::{Delivered, LogConsumer};
use tokio::sync::watch;

use crate::backfill::Backfill;
use crate::cell::{CellOp, Coverage, IndexDoc};
use crate::cells::Cells;
use crate::SearchError;

/// How a worker batches and how long an indexer may take.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Most entries one batch (one commit per cell it touches) takes.
    pub max_batch: usize,
    /// How long a batch waits for more entries after its first.
    pub linger: Duration,
    /// How long after a commit a batch waits for more entries at least: commits (each a few
    /// fsyncs) stay few under load, while a message alone is searchable after `linger`.
    pub commit_interval: Duration,
    /// A plugin indexer's CPU time for one log's batch.
    pub plugin_deadline: Duration,
    /// How long a guild's choice of indexer is trusted before storage is asked again.
    pub plugin_recheck: Duration,
    /// Messages a backfill reads (and commits) at a time.
    pub backfill_page: usize,
    /// The recent history a backfill indexes before searches are answered.
    pub recent: Duration,
}

impl Default for WorkerConfig {
    fn default() -> WorkerConfig {
        WorkerConfig {
            max_batch: 32_768,
            linger: Duration::from_millis(20),
            commit_interval: Duration::from_millis(500),
            plugin_deadline: Duration::from_millis(200),
            plugin_recheck: Duration::from_secs(10),
            backfill_page: 1000,
            recent: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// What the text and tags of one message are, as its indexer proposed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposed {
    pub text: String,
    pub tags: Vec<String>,
}

/// Why a log is backfilled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    /// A search found the log unknown (an existing deployment, a guild older than its index).
    Asked,
    /// Its events have a gap; `searchable`: the log was indexed before (answers go on).
    Gap { searchable: bool },
    /// Its guild's indexer changed: every message again, with the new one (answers go on).
    Reindex,
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
    /// The plugin's recent faults (a deadline missed, a trap, a refused start): the
    /// `MAX_FAULTS`th disables it, as any plugin.
    faults: Faults,
}

/// Entries a second from which batches wait for `commit_interval` (each commit fsyncs about
/// eight files, and the message store's fsyncs wait behind them); slower, a message is
/// committed `linger` after it comes.
const BUSY_ENTRIES_PER_S: f64 = 200.0;

/// How long an idle worker waits for the stream before it looks at what searches asked for.
const REQUESTS_EVERY: Duration = Duration::from_secs(1);

/// The default indexer's version: a change to what it makes re-indexes every guild that uses it.
pub const DEFAULT_INDEXER_VERSION: u32 = 1;

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
    /// Logs being backfilled, each in a cell, taken in turn; and logs to start a backfill
    /// of, where, and why.
    backfilling: Vec<(LogKey, usize)>,
    to_backfill: Vec<(LogKey, usize, Why)>,
    /// The next of `backfilling` to take a page of.
    next_backfill: usize,
    /// When the last batch was committed, and how fast entries came in its cycle.
    committed_at: tokio::time::Instant,
    entries_per_s: f64,
    /// Where an indexer plugin's disabling is told (its guild records it).
    disabled: Option<Arc<dyn DisabledIndexers>>,
    /// The one cell the consumer feeds (a cluster's cell worker): each batch records its
    /// stream position there.
    own_cell: Option<usize>,
    /// Checked before each commit: a worker that lost its cell stops.
    fence: Option<Arc<dyn Fence>>,
    /// What the stream lag metric is reported as, and when it was last read.
    lag_label: String,
    lag_read: Option<tokio::time::Instant>,
}

/// Where a worker tells of an indexer plugin it disabled: to the guild's actor, which
/// records it in the audit log (with the event to the owner), as a bot's runner does. On
/// one host the directory reaches it; a cluster's worker asks a node over the bus.
#[async_trait::async_trait]
pub trait DisabledIndexers: Send + Sync {
    async fn disabled(&self, guild: GuildId, notice: Disabled);
}

/// A cell worker's hold on its cell (in a cluster, the ownership fence).
#[async_trait::async_trait]
pub trait Fence: Send + Sync {
    /// Does this worker still own its cell? Once false, it commits nothing more.
    async fn holds(&self) -> bool;
}

/// How often a worker reads its consumer's lag for the metric.
const LAG_EVERY: Duration = Duration::from_secs(1);

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
            backfilling: Vec::new(),
            to_backfill: Vec::new(),
            next_backfill: 0,
            committed_at: tokio::time::Instant::now(),
            entries_per_s: 0.0,
            disabled: None,
            own_cell: None,
            fence: None,
            lag_label: "all".into(),
            lag_read: None,
        }
    }

    /// A worker of one cell, whose consumer reads only what is filed under it (a cluster's),
    /// fenced: it stops once `fence` no longer holds.
    pub fn for_cell(mut self, cell: usize, fence: Arc<dyn Fence>) -> IndexingWorker {
        assert!(self.cells.is_open(cell), "a cell worker's cell is open");
        self.own_cell = Some(cell);
        self.fence = Some(fence);
        self.lag_label = cell.to_string();
        self
    }

    async fn fence_holds(&mut self) -> bool {
        match self.fence.clone() {
            Some(fence) => fence.holds().await,
            None => true,
        }
    }

    /// Reads how far behind the stream the consumer is (at most every `LAG_EVERY`).
    async fn report_lag(&mut self) {
        if self.lag_read.is_some_and(|at| at.elapsed() < LAG_EVERY) {
            return;
        }
        self.lag_read = Some(tokio::time::Instant::now());
        if let Ok(progress) = self.consumer.progress().await {
            self.metrics.search_stream_lag.lock_unpoisoned().insert(self.lag_label.clone(), progress.pending);
        }
    }

    /// Tells `disabled` of each faulty indexer plugin this worker disables.
    pub fn telling(mut self, disabled: Arc<dyn DisabledIndexers>) -> IndexingWorker {
        self.disabled = Some(disabled);
        self
    }

    /// Runs until `stop` turns true (or, for a cell worker, its fence no longer holds).
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        // Backfills a previous run committed go on.
        self.backfilling = self.committed_backfills();
        let mut failures = 0u32;
        while !*stop.borrow() {
            self.report_lag().await;
            // Asked for by searches and plugin changes: looked at least once a second.
            self.start_requested_backfills().await;
            // With backfills to do, a look at the stream does not wait: pages go between batches.
            let wait = if self.backfilling.is_empty() { REQUESTS_EVERY } else { Duration::ZERO };
            // (Only stopping may cut a batch short: what it fetched and did not acknowledge
            // comes again to the next consumer, not to this one.)
            let batch = tokio::select! {
                batch = self.next_batch(wait) => batch,
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
            if !self.fence_holds().await {
                tracing::warn!(cell = ?self.own_cell, "this worker no longer owns its cell: it stops");
                break;
            }
            let Some(last) = batch.last().map(|d| d.position) else {
                self.backfill_page_or_wait().await;
                continue;
            };
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
            // A page between live batches, so that backfills go on under a steady stream.
            self.backfill_page_or_wait().await;
        }
    }

    /// Stages the backfills due (see [`Why`]), each log's channels listed from storage, and
    /// returns the cells to commit. A guild's backfill is in its home cell; a DM's in each
    /// cell that holds a recipient's DMs, for the recipients there (a cluster's cells are on
    /// different workers, each backfilling its own).
    async fn start_backfills(&mut self) -> Vec<usize> {
        let mut staged = Vec::new();
        for (log, cell, why) in std::mem::take(&mut self.to_backfill) {
            if !self.cells.is_open(cell) {
                continue;
            }
            let (coverage, reindexing) = {
                let writer = self.cells.writer(cell);
                (writer.coverage(log), writer.backfill(log).is_some_and(|b| b.gen != writer.serving(log)))
            };
            let answering = match (coverage, why) {
                (Coverage::Backfilling { .. }, _) => continue, // going on already
                // A re-index reads everything from storage anyway (the serving generation
                // lacks the gap's messages until it switches).
                (_, Why::Asked | Why::Gap { .. }) if reindexing => continue,
                (Coverage::Unknown, Why::Asked | Why::Gap { .. }) => false,
                // A search's request that raced the completion; a new indexer of a log never
                // indexed (its backfill will use it).
                (Coverage::Complete, Why::Asked) | (Coverage::Unknown, Why::Reindex) => continue,
                (Coverage::Complete, Why::Gap { searchable }) => searchable,
                (Coverage::Complete, Why::Reindex) => true,
            };
            let channels = match log {
                LogKey::Guild(guild) => {
                    self.store.guild_channels(guild).await.map(|c| c.into_iter().map(|c| c.id).collect())
                }
                LogKey::Dm(channel) => Ok(vec![channel]),
            };
            let channels: Vec<ChannelId> = match channels {
                Ok(channels) => channels,
                Err(e) => {
                    tracing::warn!(?log, error = %e, "listing a log's channels to backfill failed; retrying");
                    self.to_backfill.push((log, cell, why));
                    continue;
                }
            };
            let recent_ms = self.config.recent.as_millis() as u64;
            let mut backfill = Backfill::new(&channels, self.clock.unix_ms(), recent_ms, answering);
            let mut writer = self.cells.writer(cell);
            let serving = writer.serving(log);
            if why == Why::Reindex {
                // Beside the serving generation, from nothing (a re-index cut short before).
                backfill.gen = serving.wrapping_add(1);
                if let Err(e) = writer.apply(CellOp::DeleteGeneration { scope: log.id(), gen: backfill.gen }) {
                    tracing::warn!(?log, error = %e, "starting a re-index failed; retrying");
                    drop(writer);
                    self.to_backfill.push((log, cell, why));
                    continue;
                }
            } else {
                backfill.gen = serving;
            }
            let applied = writer.applied(log);
            writer.set_applied(log, applied); // known from now on: live entries apply as they come
            writer.set_backfill(log, Some(backfill));
            tracing::info!(?log, cell, channels = channels.len(), ?why, "backfilling a log's messages from storage");
            if !self.backfilling.contains(&(log, cell)) {
                self.backfilling.push((log, cell));
            }
            if !staged.contains(&cell) {
                staged.push(cell);
            }
        }
        staged
    }

    /// Starts the backfills searches asked for (and any other due), committed.
    pub async fn start_requested_backfills(&mut self) {
        self.plugins_changed().await;
        let asked = self.cells.take_requests();
        self.to_backfill.extend(asked.into_iter().map(|(log, cell)| (log, cell, Why::Asked)));
        self.start_backfills_now().await;
    }

    /// Starts the backfills due and commits them (between batches).
    async fn start_backfills_now(&mut self) {
        for cell in self.start_backfills().await {
            if let Err(e) = self.cells.writer(cell).commit() {
                tracing::warn!(error = %e, "committing a backfill's start failed; it starts again");
                self.cells.rollback_all();
                // Rolled back: started again from the committed state.
                self.backfilling = self.committed_backfills();
                return;
            }
        }
    }

    /// The backfills the open cells' last commits hold.
    fn committed_backfills(&self) -> Vec<(LogKey, usize)> {
        let cells = self.cells.open_cells().into_iter();
        cells.flat_map(|cell| self.cells.writer(cell).backfilling().into_iter().map(move |log| (log, cell))).collect()
    }

    /// One page of the next backfill in turn: read from storage, proposed by the guild's
    /// indexer, replacing the cell's documents in its range, committed with the cursor.
    pub async fn backfill_page(&mut self) -> Result<(), SearchError> {
        if self.backfilling.is_empty() {
            return Ok(());
        }
        self.next_backfill %= self.backfilling.len();
        let (log, cell) = self.backfilling[self.next_backfill];
        self.next_backfill += 1;
        let Some(mut backfill) = self.cells.writer(cell).backfill(log).cloned() else {
            self.backfilling.retain(|b| *b != (log, cell));
            return Ok(());
        };
        let Some(ask) = backfill.next_page() else {
            return self.finish_backfill(log, cell, backfill);
        };
        let channel = match self.store.channel(ask.channel).await {
            Ok(Some(channel)) => channel,
            Ok(None) => {
                backfill.drop_channel(ask);
                return self.finish_backfill(log, cell, backfill);
            }
            Err(e) => return Err(SearchError::Index(format!("reading channel {}: {e}", ask.channel))),
        };
        // Whose documents the page makes: the guild's; a DM's recipients whose DMs are here.
        let scopes: Vec<Snowflake> = match log {
            LogKey::Guild(guild) => vec![guild],
            LogKey::Dm(_) => {
                channel.recipients.iter().map(|u| u.id).filter(|&u| self.cells.cell_of(u) == cell).collect()
            }
        };
        let newest_bucket = Snowflake::from_unix_ms(self.clock.unix_ms()).bucket();
        let limit = self.config.backfill_page.max(1);
        let page = guildhall_store::history::history(
            self.store.as_ref(),
            &channel,
            HistoryQuery::Before(ask.before),
            limit,
            newest_bucket,
        )
        .await
        .map_err(|e| SearchError::Index(format!("reading channel {}'s history: {e}", ask.channel)))?;
        let entries: Vec<LogEntry> = page
            .iter()
            .map(|m| LogEntry {
                v: LOG_SCHEMA_VERSION,
                key: log,
                seq: 0,
                prev: 0,
                recipients: Vec::new(),
                event: StreamEvent::MessageCreate { message: m.clone() },
            })
            .collect();
        let refs: Vec<&LogEntry> = entries.iter().collect();
        let proposed = self.propose(log, &refs).await;
        let (from, before) = backfill.page_read(ask, page.last().map(|m| m.id), page.len(), page.len() < limit);
        let mut writer = self.cells.writer(cell);
        let gen = backfill.gen;
        for &scope in &scopes {
            writer.apply(CellOp::ClearRange { scope, gen, channel: ask.channel, from, before })?;
            // The range is cleared: the page's messages are inserted. Their creations that
            // come from the stream later replace them.
            for entry in &entries {
                for op in ops(scope, &[gen], &entry.event, &proposed, Snowflake(0)) {
                    writer.apply(op)?;
                }
            }
        }
        if let Some(newest) = page.iter().map(|m| m.id).max() {
            writer.note_backfilled(newest);
        }
        self.metrics.search_backfilled.fetch_add(page.len() as u64, Relaxed);
        drop(writer);
        self.finish_backfill(log, cell, backfill)
    }

    /// A backfill page, if any is due; after a failure (rolled back), a pause.
    async fn backfill_page_or_wait(&mut self) {
        if let Err(e) = self.backfill_page().await {
            self.cells.rollback_all();
            tracing::warn!(error = %e, "a backfill page failed; retrying");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Commits a backfill's state in its cell (ended once every channel is read).
    fn finish_backfill(&mut self, log: LogKey, cell: usize, backfill: Backfill) -> Result<(), SearchError> {
        let done = backfill.is_done();
        let mut writer = self.cells.writer(cell);
        let serving = writer.serving(log);
        if done && backfill.gen != serving {
            // A re-index caught up: searches switch to it with this commit, and the old
            // generation goes.
            writer.apply(CellOp::DeleteGeneration { scope: log.id(), gen: serving })?;
            writer.set_serving(log, backfill.gen);
            tracing::info!(?log, gen = backfill.gen, "re-index done: searches read it from now on");
        }
        writer.set_backfill(log, (!done).then_some(backfill));
        writer.commit()?;
        drop(writer);
        if done {
            self.backfilling.retain(|b| *b != (log, cell));
            tracing::info!(?log, cell, "backfill done: every message is indexed");
        }
        Ok(())
    }

    /// Up to `max_batch` entries: what is there (waiting at most `wait` for the first), and
    /// what came by the time the batch is due: `linger` after the first, and, while entries
    /// come fast, not before `commit_interval` after the last commit. In between it sleeps:
    /// a look at the stream per append would wake this thread for every commit of the store.
    async fn next_batch(&mut self, wait: Duration) -> Result<Vec<Delivered>, guildhall_stream::StreamError> {
        let max = self.config.max_batch;
        let mut batch = self.consumer.fetch(max, wait).await?;
        if batch.is_empty() || batch.len() >= max {
            return Ok(batch);
        }
        let mut due = tokio::time::Instant::now() + self.config.linger;
        if self.entries_per_s >= BUSY_ENTRIES_PER_S {
            due = due.max(self.committed_at + self.config.commit_interval);
        }
        tokio::time::sleep_until(due).await;
        while batch.len() < max {
            let more = self.consumer.fetch(max - batch.len(), Duration::ZERO).await?;
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
        // A plugin changed before these entries were appended is this batch's indexer.
        self.plugins_changed().await;
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
        let mut gaps = Vec::new();
        for (log, entries) in logs {
            let proposed = self.propose(log, &entries).await;
            let scopes: Vec<Snowflake> = match log {
                LogKey::Guild(guild) => vec![guild],
                LogKey::Dm(_) => entries[0].recipients.clone(),
            };
            // The scopes that share a cell are written together, against that cell's seq.
            let mut by_cell: HashMap<usize, Vec<Snowflake>> = HashMap::new();
            for scope in scopes {
                // (In a cluster, a DM's other recipients' cells are other workers'.)
                let cell = self.cells.cell_of(scope);
                if self.cells.is_open(cell) {
                    by_cell.entry(cell).or_default().push(scope);
                }
            }
            for (cell, scopes) in by_cell {
                let mut writer = self.cells.writer(cell);
                let mut applied = writer.applied(log);
                // A guild's serving generation, and the one a re-index builds (DMs: 0).
                let gens = match log {
                    LogKey::Guild(_) => writer.live_generations(log),
                    LogKey::Dm(_) => vec![0],
                };
                // What searches could rely on before this batch (a gap repaired under answers).
                let known_before = writer.coverage(log);
                if known_before == Coverage::Unknown && matches!(log, LogKey::Guild(_)) {
                    // A guild's first entry here: whatever its history holds (messages from
                    // before its events were streamed, or before this index) is read from
                    // storage. A new guild's is short.
                    gaps.push((log, cell, Why::Gap { searchable: false }));
                }
                // A cell rebuilt after another worker indexed it: a log's first entry here
                // finds the ones before it missing. Those were acknowledged by that worker,
                // so stored before the rebuild, and the backfill that made the log complete
                // here started after it: they are in. (A second backfill would only repeat
                // the first.)
                let covered = applied == 0 && known_before == Coverage::Complete && writer.rebuilt_at() > 0;
                // Entries are new here (repeats are skipped below): only a backfill page may
                // have indexed their messages.
                let new_from = Snowflake(writer.backfilled_upto().0 + 1);
                for entry in &entries {
                    match entry.arrival(applied) {
                        Arrival::Repeat => continue,
                        Arrival::Gap { .. } if covered => {}
                        Arrival::Gap { missing_after, missing_upto } => {
                            // Entries the stream does not have (lost past its retention, or
                            // from before the index): storage has what they did, a backfill
                            // brings it in; answers go on meanwhile if the log had an index.
                            Metrics::inc(&self.metrics.search_gaps);
                            tracing::warn!(?log, missing_after, missing_upto, "a gap in a log's events");
                            let searchable = known_before == Coverage::Complete;
                            gaps.push((log, cell, Why::Gap { searchable }));
                        }
                        Arrival::Next => {}
                    }
                    for scope in &scopes {
                        for op in ops(*scope, &gens, &entry.event, &proposed, new_from) {
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
        // Started in the same commit as the entries after the gap, so that no answer in
        // between takes the log for complete.
        for gap in gaps {
            if !self.to_backfill.iter().any(|(log, cell, _)| (*log, *cell) == (gap.0, gap.1)) {
                self.to_backfill.push(gap);
            }
        }
        for cell in self.start_backfills().await {
            if !touched.contains(&cell) {
                touched.push(cell);
            }
        }
        if let (Some(cell), Some(last)) = (self.own_cell, batch.last()) {
            self.cells.writer(cell).set_stream_position(last.position);
            if !touched.contains(&cell) {
                touched.push(cell);
            }
        }
        for cell in touched {
            let commit = Instant::now();
            self.cells.writer(cell).commit()?;
            self.metrics.search_commit_us.fetch_add(commit.elapsed().as_micros() as u64, Relaxed);
            Metrics::inc(&self.metrics.search_commits);
        }
        let now = tokio::time::Instant::now();
        let cycle = now.saturating_duration_since(self.committed_at).as_secs_f64().max(1e-3);
        self.entries_per_s = batch.len() as f64 / cycle;
        self.committed_at = now;
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
            let proposed = self.plugin_proposals(guild, entries, &messages).await;
            self.note_indexer(log, guild);
            // No plugin, or it failed: the default indexer.
            if let Some(proposed) = proposed {
                return proposed;
            }
        }
        messages.iter().map(|m| (m.id, default_proposal(m))).collect()
    }

    /// Reads which indexer plugin the guild has enabled, if what the worker knows is older
    /// than `plugin_recheck` (or `now`: its plugins changed); a changed one starts afresh.
    async fn refresh_indexer(&mut self, guild: GuildId, now: bool) {
        let recheck_ms = self.config.plugin_recheck.as_millis() as u64;
        let now_ms = self.clock.monotonic_ms();
        let known = self.guilds.get(&guild);
        if !now && known.is_some_and(|g| now_ms.saturating_sub(g.checked_at_ms) <= recheck_ms) {
            return;
        }
        let record = match self.store.guild_plugins(guild).await {
            Ok(records) => records.into_iter().find(|r| r.kind == PluginKind::Indexer && r.enabled),
            Err(_) => self.guilds.get(&guild).and_then(|g| g.record.clone()),
        };
        match self.guilds.get_mut(&guild).filter(|g| g.record == record) {
            Some(g) => g.checked_at_ms = now_ms,
            None => {
                let fresh = GuildIndexer {
                    record,
                    instance: None,
                    checked_at_ms: now_ms,
                    used_ms: now_ms,
                    faults: Faults::default(),
                };
                self.guilds.insert(guild, fresh);
            }
        }
    }

    /// Looks again at the indexers of the guilds whose plugins changed (a new one
    /// re-indexes its guild).
    async fn plugins_changed(&mut self) {
        if self.engine.is_none() {
            return;
        }
        for guild in self.cells.take_plugin_changes() {
            self.refresh_indexer(guild, true).await;
            self.note_indexer(LogKey::Guild(guild), guild);
        }
    }

    /// Records which indexer the guild has in its log's home cell; when that changed, the
    /// guild's messages are indexed again with the new one.
    fn note_indexer(&mut self, log: LogKey, guild: GuildId) {
        let identity = match self.guilds.get(&guild).and_then(|g| g.record.as_ref()) {
            Some(r) => format!("plugin:{}:{}:{}", r.id, r.component_sha256, r.config),
            None => format!("default:{DEFAULT_INDEXER_VERSION}"),
        };
        let home = self.cells.home_of(log);
        let mut cell = self.cells.writer(home);
        if cell.indexer(log) == Some(identity.as_str()) {
            return;
        }
        let changed = cell.indexer(log).is_some();
        cell.set_indexer(log, identity);
        drop(cell);
        if changed && !self.to_backfill.contains(&(log, home, Why::Reindex)) {
            tracing::info!(%guild, "the guild's indexer changed: its messages are indexed again");
            self.to_backfill.push((log, home, Why::Reindex));
        }
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
        self.refresh_indexer(guild, false).await;
        let now_ms = self.clock.monotonic_ms();
        if let Some(g) = self.guilds.get_mut(&guild) {
            g.used_ms = now_ms;
        }
        let state = self.guilds.get_mut(&guild)?;
        let record = state.record.clone()?;
        if state.instance.is_none() {
            let loaded = match load_component(&engine, self.store.as_ref(), &record).await {
                Ok(loaded) => loaded,
                Err(e) => {
                    self.fault(guild, format!("its component did not load: {e}")).await;
                    return None;
                }
            };
            let view = GuildView {
                guild_id: guild.0,
                channels: Arc::new(Vec::new()),
                members: Arc::new(|_| Box::pin(async { None })),
                clock: self.clock.clone(),
            };
            let config = record.config.to_string();
            match IndexerInstance::new(&engine, &loaded, &record.name, view, &config, self.config.plugin_deadline).await
            {
                Ok(instance) => self.guilds.get_mut(&guild)?.instance = Some(instance),
                Err(e) => {
                    self.fault(guild, format!("it did not start: {e}")).await;
                    return None;
                }
            }
        }
        let events: Vec<PluginEvent> = entries.iter().filter_map(|e| plugin_event(&e.event)).collect();
        let state = self.guilds.get_mut(&guild)?;
        let instance = state.instance.as_mut()?;
        match instance.index(&events, self.config.plugin_deadline).await {
            Ok(documents) => {
                state.faults.good_call();
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
                self.fault(guild, e).await;
                None
            }
        }
    }

    /// A fault of the guild's indexer plugin (the default indexes the batch instead): its
    /// instance goes, and at the `MAX_FAULTS`th recent fault the plugin is disabled (stored,
    /// with an audit entry); the default indexes the guild from then on.
    async fn fault(&mut self, guild: GuildId, error: impl std::fmt::Display) {
        Metrics::inc(&self.metrics.search_indexer_faults);
        let now_ms = self.clock.monotonic_ms();
        let Some(state) = self.guilds.get_mut(&guild) else { return };
        state.instance = None;
        let name = state.record.as_ref().map_or("", |r| r.name.as_str()).to_owned();
        tracing::warn!(%guild, plugin = %name, error = %error, "an indexer failed; the default indexed");
        if !state.faults.record(now_ms) {
            return;
        }
        let Some(record) = state.record.take() else { return };
        state.faults = Faults::default();
        let notice = disable(self.store.as_ref(), record, &error).await;
        tracing::warn!(%guild, plugin = %notice.record.name, reason = %notice.reason, "indexer disabled");
        if let Some(disabled) = &self.disabled {
            disabled.disabled(guild, notice).await;
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

/// What one event does to one scope's documents. `new_from`: a message created with an id
/// from there on is in none of them (inserted without a delete; see
/// [`Cell::backfilled_upto`](crate::cell::Cell::backfilled_upto)).
fn ops(
    scope: Snowflake,
    gens: &[u32],
    event: &StreamEvent,
    proposed: &HashMap<MessageId, Proposed>,
    new_from: MessageId,
) -> Vec<CellOp> {
    let deletes = |id: MessageId| gens.iter().map(move |&gen| CellOp::Delete { scope, gen, id });
    let new = matches!(event, StreamEvent::MessageCreate { message } if message.id >= new_from);
    match event {
        StreamEvent::MessageCreate { message } | StreamEvent::MessageUpdate { message } => {
            match proposed.get(&message.id) {
                Some(p) => gens
                    .iter()
                    .map(|&gen| {
                        let document = IndexDoc {
                            scope,
                            gen,
                            id: message.id,
                            channel: message.channel_id,
                            author: message.author.id,
                            text: vec![p.text.clone()],
                            tags: p.tags.clone(),
                        };
                        if new {
                            CellOp::Insert(document)
                        } else {
                            CellOp::Upsert(document)
                        }
                    })
                    .collect(),
                // Its indexer made no document: nothing of it is found (an edit's old
                // document goes too).
                None => deletes(message.id).collect(),
            }
        }
        StreamEvent::MessageDelete { id, .. } => deletes(*id).collect(),
        StreamEvent::MessagesDelete { ids, .. } => ids.iter().flat_map(|id| deletes(*id)).collect(),
        StreamEvent::ChannelDelete { channel_id } => vec![CellOp::DeleteChannel { scope, channel: *channel_id }],
        StreamEvent::AuthorPurge { author_id, since } => {
            vec![CellOp::PurgeAuthor { scope, author: *author_id, since: *since }]
        }
        StreamEvent::Void => Vec::new(),
    }
}
