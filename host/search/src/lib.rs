//! Message search: tantivy cells fed from the durable stream of message events.
//!
//! - [`tokenizer`]: how text becomes terms (words folded; CJK characters one by one, so any
//!   substring is a phrase of them).
//! - [`backfill`]: a log's history indexed from storage, newest first (pure).
//! - [`cell`]: one index shared by many scopes (guilds, users' DMs), one writer, idempotent
//!   changes, each log's applied `seq` committed with the documents.
//! - [`query`]: a search as a cell runs it (content, filters, sort, page, total).
//! - [`cells`]: a node's cells, a scope's cell by the hash of its id.
//! - [`routing`]: a search to its cell, here or on its owner over the bus.
//! - [`worker`]: the indexing worker (stream in, indexers, cells, commit, then acknowledge).
//! - [`priority`]: indexing threads below request handling.

pub mod backfill;
pub mod cell;
pub mod cells;
pub mod priority;
pub mod query;
pub mod routing;
pub mod tokenizer;
pub mod worker;

pub use backfill::{Backfill, ChannelCursor};
pub use cell::{Cell, CellOp, CellReader, Coverage, IndexDoc};
pub use cells::Cells;
pub use query::{Hits, SearchRequest, Sort};
pub use routing::{BusCells, CellAnswer, CellQuery, SearchCells};
pub use worker::{DisabledIndexers, Fence, IndexingWorker, WorkerConfig};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum SearchError {
    /// The cell is not open here, or (in a cluster) no worker owns it this moment: it is
    /// being taken over. Asking again in a few seconds finds it.
    #[error("search cell {0} is not available here now")]
    NotHere(u32),
    /// A cell's owner did not answer (in time), or refused for now.
    #[error("search unavailable: {0}")]
    Unavailable(String),
    #[error("search index: {0}")]
    Index(String),
    #[error("search index files: {0}")]
    Io(String),
    #[error("search index metadata: {0}")]
    Corrupt(String),
}

impl SearchError {
    /// A file or directory operation on `path` failed.
    pub(crate) fn io(path: &std::path::Path, e: impl std::fmt::Display) -> SearchError {
        SearchError::Io(format!("{}: {e}", path.display()))
    }
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
