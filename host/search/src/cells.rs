//! A node's cells: `count` tantivy indexes under one directory, each scope (guild, or user
//! for DMs) in the cell its id hashes to. One writer per cell (behind a lock the indexing
//! worker takes); searches read the last commit without it.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use guildhall_core::stream::LogKey;
use guildhall_core::sync::LockUnpoisoned;
use guildhall_core::Snowflake;

use crate::cell::{Cell, CellReader, Coverage};
use crate::SearchError;

/// Backfills searches may ask for before the worker takes them (more are refused until it
/// does: the 202 answer tells the caller to come back).
const MAX_REQUESTED: usize = 10_000;

pub struct Cells {
    writers: Vec<Mutex<Cell>>,
    readers: Vec<CellReader>,
    /// Logs searches found unknown, for the indexing worker to backfill.
    requested: Mutex<BTreeSet<LogKey>>,
    /// Guilds whose plugins changed, for the worker to look at their indexer again.
    plugins_changed: Mutex<BTreeSet<Snowflake>>,
}

/// MurmurHash3's 64-bit finalizer: snowflakes differ mostly in their high (time) bits.
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

impl Cells {
    /// Opens (or creates) `count` cells in `dir` (`cell-0`, `cell-1`, ...). The count of a
    /// directory never changes: a scope's cell is its hash modulo the count.
    pub fn open(dir: &Path, count: usize) -> Result<Cells, SearchError> {
        assert!(count > 0, "at least one cell");
        let mut writers = Vec::with_capacity(count);
        let mut readers = Vec::with_capacity(count);
        for i in 0..count {
            let cell = Cell::open(&dir.join(format!("cell-{i}")))?;
            readers.push(cell.reader());
            writers.push(Mutex::new(cell));
        }
        Ok(Cells { writers, readers, requested: Mutex::default(), plugins_changed: Mutex::default() })
    }

    pub fn len(&self) -> usize {
        self.writers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.writers.is_empty()
    }

    /// The cell a scope's documents are in.
    pub fn cell_of(&self, scope: Snowflake) -> usize {
        (mix(scope.0) % self.writers.len() as u64) as usize
    }

    /// A cell's writer (held by one indexing batch at a time).
    pub fn writer(&self, cell: usize) -> MutexGuard<'_, Cell> {
        self.writers[cell].lock_unpoisoned()
    }

    /// What searches of a scope read.
    pub fn reader(&self, scope: Snowflake) -> &CellReader {
        &self.readers[self.cell_of(scope)]
    }

    /// The cell that keeps what is known of a log's history (its backfill): the cell of the
    /// log's id (for a guild, the guild's own cell).
    pub fn home_of(&self, log: LogKey) -> usize {
        self.cell_of(log.id())
    }

    /// What a search of `log` can rely on now.
    pub fn coverage(&self, log: LogKey) -> Coverage {
        self.readers[self.home_of(log)].coverage(log)
    }

    /// Asks the indexing worker to backfill `log` (a search found it unknown).
    pub fn request_backfill(&self, log: LogKey) {
        let mut requested = self.requested.lock_unpoisoned();
        if requested.len() < MAX_REQUESTED {
            requested.insert(log);
        }
    }

    /// Tells the indexing worker that a guild's plugins changed (installed, configured,
    /// enabled, disabled, removed): it looks at the guild's indexer again at once.
    pub fn plugins_changed(&self, guild: Snowflake) {
        let mut changed = self.plugins_changed.lock_unpoisoned();
        if changed.len() < MAX_REQUESTED {
            changed.insert(guild);
        }
    }

    /// The guilds whose plugins changed since the last call.
    pub fn take_plugin_changes(&self) -> Vec<Snowflake> {
        std::mem::take(&mut *self.plugins_changed.lock_unpoisoned()).into_iter().collect()
    }

    /// The backfills asked for since the last call.
    pub fn take_requests(&self) -> Vec<LogKey> {
        std::mem::take(&mut *self.requested.lock_unpoisoned()).into_iter().collect()
    }

    /// Forgets every cell's uncommitted changes (a batch that failed half-way).
    pub fn rollback_all(&self) {
        for writer in &self.writers {
            if let Err(e) = writer.lock_unpoisoned().rollback() {
                tracing::error!(error = %e, "rolling a search cell back failed");
            }
        }
    }
}
