//! A node's cells: `count` tantivy indexes under one directory, each scope (guild, or user
//! for DMs) in the cell its id hashes to. One writer per cell (behind a lock the indexing
//! worker takes); searches read the last commit without it.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use guildhall_core::sync::LockUnpoisoned;
use guildhall_core::Snowflake;

use crate::cell::{Cell, CellReader};
use crate::SearchError;

pub struct Cells {
    writers: Vec<Mutex<Cell>>,
    readers: Vec<CellReader>,
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
        Ok(Cells { writers, readers })
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

    /// Forgets every cell's uncommitted changes (a batch that failed half-way).
    pub fn rollback_all(&self) {
        for writer in &self.writers {
            if let Err(e) = writer.lock_unpoisoned().rollback() {
                tracing::error!(error = %e, "rolling a search cell back failed");
            }
        }
    }
}
