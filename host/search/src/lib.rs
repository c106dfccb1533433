//! Message search: tantivy cells fed from the durable stream of message events.
//!
//! - [`tokenizer`]: how text becomes terms (words folded; CJK characters one by one, so any
//!   substring is a phrase of them).
//! - [`backfill`]: a log's history indexed from storage, newest first (pure).
//! - [`cell`]: one index shared by many scopes (guilds, users' DMs), one writer, idempotent
//!   changes, each log's applied `seq` committed with the documents.
//! - [`query`]: a search as a cell runs it (content, filters, sort, page, total).
//! - [`cells`]: a node's cells, a scope's cell by the hash of its id.
//! - [`worker`]: the indexing worker (stream in, indexers, cells, commit, then acknowledge).
//! - [`priority`]: indexing threads below request handling.

pub mod backfill;
pub mod cell;
pub mod cells;
pub mod priority;
pub mod query;
pub mod tokenizer;
pub mod worker;

pub use backfill::{Backfill, ChannelCursor};
pub use cell::{Cell, CellOp, CellReader, Coverage, IndexDoc};
pub use cells::Cells;
pub use query::{Hits, SearchRequest, Sort};
pub use worker::{IndexingWorker, WorkerConfig};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    #[error("search index: {0}")]
    Index(String),
    #[error("search index files: {0}")]
    Io(String),
    #[error("search index metadata: {0}")]
    Corrupt(String),
}

impl From<tantivy::TantivyError> for SearchError {
    fn from(e: tantivy::TantivyError) -> SearchError {
        SearchError::Index(e.to_string())
    }
}

impl From<tantivy::directory::error::OpenDirectoryError> for SearchError {
    fn from(e: tantivy::directory::error::OpenDirectoryError) -> SearchError {
        SearchError::Io(e.to_string())
    }
}
