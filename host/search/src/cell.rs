//! A cell: one tantivy index that many guilds (and users' DMs) share, with one writer.
//!
//! A document is one message in one *scope*: a guild, or for a DM the user whose DMs it is in
//! (a DM is indexed once per recipient, so that a user's DMs are one set). Its key is
//! `scope:id`. What a document is about (scope, message id, channel, author; the id gives its
//! time) is set by the host; its text and tags come from the guild's indexer.
//!
//! Replays are idempotent: an upsert deletes the key first; deletes are by key or by query.
//! The highest `seq` applied of every log (the stream's `LogEntry::seq`) is committed with
//! the documents, in the commit's payload, so after a crash the cell knows exactly which
//! entries its committed documents include. So is every backfill in progress (how far a log's
//! history has been indexed from storage): a crash resumes it where it was committed.
//!
//! What a search may say of a log ([`Coverage`]) follows from the last commit: a log the cell
//! applied entries of and backfills nothing of is complete; a backfill says how far it is; a
//! log the cell knows nothing of is not indexed yet.
//!
//! A guild re-indexed (its indexer changed) is rebuilt *beside* its live documents: they
//! carry a generation (`gen`), searches read the log's serving one, the re-index writes the
//! next (live entries go to both), and the commit that ends it switches the log over and
//! deletes the old generation: searches never see a half re-indexed guild.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use guildhall_core::model::{ChannelId, MessageId, UserId};
use guildhall_core::stream::LogKey;
use guildhall_core::Snowflake;
use serde::{Deserialize, Serialize};
use tantivy::directory::MmapDirectory;
use tantivy::query::{BooleanQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, INDEXED, STRING};
use tantivy::{doc, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use guildhall_core::sync::LockUnpoisoned;

use crate::backfill::Backfill;
use crate::tokenizer::{message_analyzer, MESSAGE_ANALYZER};
use crate::SearchError;

/// A message as a cell indexes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexDoc {
    /// The guild, or for a DM the user whose DMs it is in.
    pub scope: Snowflake,
    /// Which of the log's generations (see the module's documentation; DMs: 0).
    pub gen: u32,
    pub id: MessageId,
    pub channel: ChannelId,
    pub author: UserId,
    /// Searchable text (the indexer's).
    pub text: Vec<String>,
    /// Exact terms (the indexer's): `has:link`, `mentions:ID`, `author_type:bot`, ...
    pub tags: Vec<String>,
}

/// A change to a cell's documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CellOp {
    /// Adds the document, replacing the one of the same scope, id and generation.
    Upsert(IndexDoc),
    /// Adds a document the cell is known not to hold (see [`Cell::backfilled_upto`]): an
    /// upsert without the delete, which a commit would look up in every segment.
    Insert(IndexDoc),
    Delete {
        scope: Snowflake,
        gen: u32,
        id: MessageId,
    },
    /// Every document of a scope's generation (the one a re-index replaced).
    DeleteGeneration {
        scope: Snowflake,
        gen: u32,
    },
    /// Every document of a channel.
    DeleteChannel {
        scope: Snowflake,
        channel: ChannelId,
    },
    /// An author's documents in a scope from a message id on.
    PurgeAuthor {
        scope: Snowflake,
        author: UserId,
        since: MessageId,
    },
    /// A channel's documents with ids in `from..before` (a backfill's page replaces them
    /// with what storage holds there: messages deleted meanwhile go too), in a generation.
    ClearRange {
        scope: Snowflake,
        gen: u32,
        channel: ChannelId,
        from: MessageId,
        before: MessageId,
    },
}

/// What a search of a log can rely on (as of the cell's last commit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Coverage {
    /// Nothing is known of the log here: its history is not indexed (a backfill is due).
    Unknown,
    /// Its history is being indexed from storage; `recent_done` once the recent days are.
    Backfilling { recent_done: bool, documents: u64 },
    /// Every message of the log is indexed.
    Complete,
}

/// The fields of every cell.
#[derive(Debug, Clone, Copy)]
pub struct Fields {
    /// `scope:id`, the document's key.
    pub key: Field,
    pub scope: Field,
    pub gen: Field,
    pub id: Field,
    pub channel: Field,
    pub author: Field,
    pub text: Field,
    pub tags: Field,
}

impl Fields {
    fn schema() -> (Schema, Fields) {
        let mut b = Schema::builder();
        let text = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(MESSAGE_ANALYZER)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        );
        let fields = Fields {
            key: b.add_text_field("key", STRING),
            scope: b.add_u64_field("scope", INDEXED | FAST),
            gen: b.add_u64_field("gen", INDEXED),
            id: b.add_u64_field("id", INDEXED | FAST),
            channel: b.add_u64_field("channel", INDEXED | FAST),
            author: b.add_u64_field("author", INDEXED),
            text: b.add_text_field("text", text),
            tags: b.add_text_field("tags", STRING),
        };
        (b.build(), fields)
    }
}

fn key(scope: Snowflake, gen: u32, id: MessageId) -> String {
    format!("{}:{}:{gen}", scope.0, id.0)
}

fn log_name(log: LogKey) -> String {
    match log {
        LogKey::Guild(id) => format!("guild:{}", id.0),
        LogKey::Dm(id) => format!("dm:{}", id.0),
    }
}

/// What a commit records besides its documents.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Payload {
    /// The highest seq applied, per log.
    applied: HashMap<String, u64>,
    /// The backfills in progress, per log.
    #[serde(default)]
    backfills: HashMap<String, Backfill>,
    /// Which indexer made each log's documents (a change re-indexes the log).
    #[serde(default)]
    indexers: HashMap<String, String>,
    /// Each re-indexed log's serving generation (absent: 0).
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    serving: HashMap<String, u32>,
    /// Where in the stream this cell's own consumer stood at the commit (a cluster's cells
    /// each read their own; see [`Cell::stream_position`]).
    #[serde(default)]
    position: u64,
    /// Where its consumer stood when the cell was rebuilt empty, its entries up to there
    /// indexed by another worker (0: never).
    #[serde(default, skip_serializing_if = "is_zero")]
    rebuilt_at: u64,
    /// The highest message id a backfill page indexed here (0: none). Documents come from
    /// the stream once per entry (replays are skipped by seq) and from backfill pages, so a
    /// created message with a higher id is in no document yet.
    #[serde(default, skip_serializing_if = "is_zero")]
    backfilled_upto: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Payload {
    fn load(index: &Index) -> Result<Payload, SearchError> {
        match index.load_metas()?.payload {
            Some(json) => serde_json::from_str(&json).map_err(|e| SearchError::Corrupt(e.to_string())),
            None => Ok(Payload::default()),
        }
    }

    fn serving(&self, name: &str) -> u32 {
        self.serving.get(name).copied().unwrap_or(0)
    }

    fn coverage(&self, log: LogKey) -> Coverage {
        let name = log_name(log);
        match self.backfills.get(&name) {
            // A re-index beside the serving generation: that one is complete.
            Some(b) if b.gen != self.serving(&name) => Coverage::Complete,
            Some(b) => Coverage::Backfilling { recent_done: b.recent_done, documents: b.documents },
            None if self.applied.contains_key(&name) => Coverage::Complete,
            None => Coverage::Unknown,
        }
    }
}

fn parse_log_name(name: &str) -> Option<LogKey> {
    let (kind, id) = name.split_once(':')?;
    let id = Snowflake(id.parse().ok()?);
    match kind {
        "guild" => Some(LogKey::Guild(id)),
        "dm" => Some(LogKey::Dm(id)),
        _ => None,
    }
}

pub struct Cell {
    index: Index,
    writer: IndexWriter<TantivyDocument>,
    reader: IndexReader,
    fields: Fields,
    /// As committed, plus what was applied (and backfilled) since.
    state: Payload,
    /// The last commit's payload, which searches read.
    committed: Arc<Mutex<Payload>>,
    /// Changes staged since the last commit.
    staged: usize,
}

/// Heap of a cell's writer: its in-memory segment before a flush (tantivy's minimum is 15 MB).
pub const WRITER_HEAP_BYTES: usize = 32 << 20;

impl Cell {
    /// Opens (or creates) the cell in `dir`.
    pub fn open(dir: &Path) -> Result<Cell, SearchError> {
        std::fs::create_dir_all(dir).map_err(|e| SearchError::io(dir, e))?;
        let (schema, fields) = Fields::schema();
        let directory = MmapDirectory::open(dir)?;
        let index = match Index::open_or_create(directory, schema.clone()) {
            Err(tantivy::TantivyError::SchemaError(e)) => {
                // Made by a build whose documents had other fields: rebuilt from nothing (its
                // logs are unknown again, and backfilled as searches and entries come).
                tracing::warn!(dir = %dir.display(), error = %e, "a search cell of another schema is rebuilt");
                std::fs::remove_dir_all(dir).map_err(|e| SearchError::io(dir, e))?;
                std::fs::create_dir_all(dir).map_err(|e| SearchError::io(dir, e))?;
                Index::open_or_create(MmapDirectory::open(dir)?, schema)?
            }
            opened => opened?,
        };
        index.tokenizers().register(MESSAGE_ANALYZER, message_analyzer());
        let state = Payload::load(&index)?;
        // One indexing thread: a cell is one of many on a node, and commits are what cost.
        let writer = index.writer_with_num_threads(1, WRITER_HEAP_BYTES)?;
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        let committed = Arc::new(Mutex::new(state.clone()));
        Ok(Cell { index, writer, reader, fields, state, committed, staged: 0 })
    }

    pub fn fields(&self) -> Fields {
        self.fields
    }

    /// The highest seq of `log` this cell's documents include (committed or staged).
    pub fn applied(&self, log: LogKey) -> u64 {
        self.state.applied.get(&log_name(log)).copied().unwrap_or(0)
    }

    /// Records that the staged changes include `log`'s entries up to `seq` (at 0: that the
    /// cell knows the log, whose history holds nothing before).
    pub fn set_applied(&mut self, log: LogKey, seq: u64) {
        let at = self.state.applied.entry(log_name(log)).or_default();
        *at = (*at).max(seq);
    }

    /// What a search of `log` can rely on, counting what is staged.
    pub fn coverage(&self, log: LogKey) -> Coverage {
        self.state.coverage(log)
    }

    /// The backfill of `log` in progress, if any.
    pub fn backfill(&self, log: LogKey) -> Option<&Backfill> {
        self.state.backfills.get(&log_name(log))
    }

    /// Sets (or, with `None`, ends) `log`'s backfill; committed with the staged changes.
    pub fn set_backfill(&mut self, log: LogKey, backfill: Option<Backfill>) {
        match backfill {
            Some(b) => self.state.backfills.insert(log_name(log), b),
            None => self.state.backfills.remove(&log_name(log)),
        };
    }

    /// Which indexer made `log`'s documents here, if the cell knows.
    pub fn indexer(&self, log: LogKey) -> Option<&str> {
        self.state.indexers.get(&log_name(log)).map(String::as_str)
    }

    /// Records which indexer makes `log`'s documents from now on (committed with them).
    pub fn set_indexer(&mut self, log: LogKey, indexer: String) {
        self.state.indexers.insert(log_name(log), indexer);
    }

    /// The stream position up to which the entries filed under this cell are in it (a
    /// cluster's cell: its consumer's; 0 on one host, where one consumer feeds all cells). A
    /// consumer that acknowledged more was read by another copy of the cell: this copy is
    /// stale.
    pub fn stream_position(&self) -> u64 {
        self.state.position
    }

    /// Records the stream position the staged changes reach (committed with them).
    pub fn set_stream_position(&mut self, position: u64) {
        self.state.position = self.state.position.max(position);
    }

    /// The generation of `log`'s documents searches read (0 until it is first re-indexed).
    pub fn serving(&self, log: LogKey) -> u32 {
        self.state.serving(&log_name(log))
    }

    /// The generations live entries of `log` go to: the serving one, and the one a re-index
    /// is building beside it.
    pub fn live_generations(&self, log: LogKey) -> Vec<u32> {
        let serving = self.serving(log);
        match self.backfill(log) {
            Some(b) if b.gen != serving => vec![serving, b.gen],
            _ => vec![serving],
        }
    }

    /// Makes `gen` the serving generation of `log` (committed with the staged changes).
    pub fn set_serving(&mut self, log: LogKey, gen: u32) {
        self.state.serving.insert(log_name(log), gen);
    }

    /// Records that the cell was rebuilt empty at stream position `at`: everything up to
    /// it was indexed elsewhere (committed with the staged changes).
    pub fn set_rebuilt_at(&mut self, at: u64) {
        self.state.rebuilt_at = at;
        self.set_stream_position(at);
    }

    /// Where the cell was rebuilt (0: never; see [`Cell::set_rebuilt_at`]).
    pub fn rebuilt_at(&self) -> u64 {
        self.state.rebuilt_at
    }

    /// The highest message id a backfill page indexed here: a message created with a higher
    /// id (its entry not a replay) is not in the cell, and is inserted without a delete.
    pub fn backfilled_upto(&self) -> MessageId {
        Snowflake(self.state.backfilled_upto)
    }

    /// Records that a backfill page indexed messages up to `id` (committed with them).
    pub fn note_backfilled(&mut self, id: MessageId) {
        self.state.backfilled_upto = self.state.backfilled_upto.max(id.0);
    }

    /// The logs this cell is backfilling.
    pub fn backfilling(&self) -> Vec<LogKey> {
        let mut logs: Vec<LogKey> = self.state.backfills.keys().filter_map(|n| parse_log_name(n)).collect();
        logs.sort();
        logs
    }

    /// Stages a change (visible after [`Cell::commit`]).
    pub fn apply(&mut self, op: CellOp) -> Result<(), SearchError> {
        let f = self.fields;
        let replaces = matches!(op, CellOp::Upsert(_));
        match op {
            CellOp::Upsert(d) | CellOp::Insert(d) => {
                let key = key(d.scope, d.gen, d.id);
                if replaces {
                    self.writer.delete_term(Term::from_field_text(f.key, &key));
                }
                let mut document = doc!(
                    f.key => key,
                    f.scope => d.scope.0,
                    f.gen => u64::from(d.gen),
                    f.id => d.id.0,
                    f.channel => d.channel.0,
                    f.author => d.author.0,
                );
                for text in d.text {
                    document.add_text(f.text, text);
                }
                for tag in d.tags {
                    document.add_text(f.tags, tag);
                }
                self.writer.add_document(document)?;
            }
            CellOp::Delete { scope, gen, id } => {
                self.writer.delete_term(Term::from_field_text(f.key, &key(scope, gen, id)));
            }
            CellOp::DeleteGeneration { scope, gen } => {
                let query = BooleanQuery::new(vec![
                    (Occur::Must, term_u64(f.scope, scope.0)),
                    (Occur::Must, term_u64(f.gen, u64::from(gen))),
                ]);
                self.writer.delete_query(Box::new(query))?;
            }
            CellOp::DeleteChannel { scope, channel } => {
                let query = BooleanQuery::new(vec![
                    (Occur::Must, term_u64(f.scope, scope.0)),
                    (Occur::Must, term_u64(f.channel, channel.0)),
                ]);
                self.writer.delete_query(Box::new(query))?;
            }
            CellOp::ClearRange { scope, gen, channel, from, before } => {
                let (from, before) = (Term::from_field_u64(f.id, from.0), Term::from_field_u64(f.id, before.0));
                let query = BooleanQuery::new(vec![
                    (Occur::Must, term_u64(f.scope, scope.0)),
                    (Occur::Must, term_u64(f.gen, u64::from(gen))),
                    (Occur::Must, term_u64(f.channel, channel.0)),
                    (
                        Occur::Must,
                        Box::new(RangeQuery::new(std::ops::Bound::Included(from), std::ops::Bound::Excluded(before))),
                    ),
                ]);
                self.writer.delete_query(Box::new(query))?;
            }
            CellOp::PurgeAuthor { scope, author, since } => {
                let from = Term::from_field_u64(f.id, since.0);
                let query = BooleanQuery::new(vec![
                    (Occur::Must, term_u64(f.scope, scope.0)),
                    (Occur::Must, term_u64(f.author, author.0)),
                    (
                        Occur::Must,
                        Box::new(RangeQuery::new(std::ops::Bound::Included(from), std::ops::Bound::Unbounded)),
                    ),
                ]);
                self.writer.delete_query(Box::new(query))?;
            }
        }
        self.staged += 1;
        Ok(())
    }

    /// Changes staged since the last commit.
    pub fn staged(&self) -> usize {
        self.staged
    }

    /// Makes the staged changes durable and searchable, with the logs' applied seqs.
    pub fn commit(&mut self) -> Result<(), SearchError> {
        let payload = serde_json::to_string(&self.state).expect("payload serializes");
        let mut prepared = self.writer.prepare_commit()?;
        prepared.set_payload(&payload);
        prepared.commit()?;
        self.reader.reload()?;
        *self.committed.lock_unpoisoned() = self.state.clone();
        self.staged = 0;
        Ok(())
    }

    /// Forgets what was staged since the last commit (documents and applied seqs).
    pub fn rollback(&mut self) -> Result<(), SearchError> {
        self.writer.rollback()?;
        self.state = Payload::load(&self.index)?;
        self.staged = 0;
        Ok(())
    }

    /// The cell's committed documents, for searches (while the writer goes on).
    pub fn reader(&self) -> CellReader {
        CellReader { reader: self.reader.clone(), fields: self.fields, committed: self.committed.clone() }
    }

    /// Documents of a scope that are searchable now.
    pub fn count(&self, scope: Snowflake) -> Result<usize, SearchError> {
        self.reader().count(scope)
    }
}

/// What searches read: a cell's last commit.
#[derive(Clone)]
pub struct CellReader {
    reader: IndexReader,
    fields: Fields,
    committed: Arc<Mutex<Payload>>,
}

impl CellReader {
    /// What a search of `log` can rely on now.
    pub fn coverage(&self, log: LogKey) -> Coverage {
        self.committed.lock_unpoisoned().coverage(log)
    }

    /// The generation of `log`'s documents searches read.
    pub fn serving(&self, log: LogKey) -> u32 {
        self.committed.lock_unpoisoned().serving(&log_name(log))
    }

    pub fn fields(&self) -> Fields {
        self.fields
    }

    pub fn searcher(&self) -> tantivy::Searcher {
        self.reader.searcher()
    }

    /// Documents of a scope that are searchable now.
    pub fn count(&self, scope: Snowflake) -> Result<usize, SearchError> {
        let query = TermQuery::new(Term::from_field_u64(self.fields.scope, scope.0), IndexRecordOption::Basic);
        Ok(self.searcher().search(&query, &tantivy::collector::Count)?)
    }
}

/// The message id and channel of a document found (from its fast fields).
pub(crate) fn doc_ids(
    searcher: &tantivy::Searcher,
    address: tantivy::DocAddress,
) -> Result<(MessageId, ChannelId), SearchError> {
    let fast = searcher.segment_reader(address.segment_ord).fast_fields();
    let id = fast.u64("id")?.first(address.doc_id).unwrap_or(0);
    let channel = fast.u64("channel")?.first(address.doc_id).unwrap_or(0);
    Ok((Snowflake(id), Snowflake(channel)))
}

pub(crate) fn term_u64(field: Field, value: u64) -> Box<dyn Query> {
    Box::new(TermQuery::new(Term::from_field_u64(field, value), IndexRecordOption::Basic))
}
