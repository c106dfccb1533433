//! A node's cells: tantivy indexes under one directory (`cell-0`, `cell-1`, ...), each
//! scope (a guild, or a user for DMs) in the cell the deployment's [`CellLayout`] gives it.
//! One host opens every cell; a cluster's indexing worker opens the cells it owns. One
//! writer per cell (behind a lock the indexing worker takes); searches read the last
//! commit without it.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use guildhall_core::stream::{CellLayout, LogKey};
use guildhall_core::sync::LockUnpoisoned;
use guildhall_core::Snowflake;

use crate::cell::{Cell, CellReader, Coverage};
use crate::SearchError;

/// Backfills searches may ask for before the worker takes them (more are refused until it
/// does: the 202 answer tells the caller to come back).
const MAX_REQUESTED: usize = 10_000;

/// The file that records which layout a directory's cells were made with.
const LAYOUT_FILE: &str = "layout.json";

/// One open cell.
struct Slot {
    writer: Mutex<Cell>,
    reader: CellReader,
}

pub struct Cells {
    layout: CellLayout,
    /// By cell number; `None`: not open here (another worker's).
    slots: Vec<Option<Slot>>,
    /// Logs searches found unknown, for the indexing worker to backfill, each in a cell.
    requested: Mutex<BTreeSet<(LogKey, usize)>>,
    /// Guilds whose plugins changed, for the worker to look at their indexer again.
    plugins_changed: Mutex<BTreeSet<Snowflake>>,
}

fn cell_dir(dir: &Path, cell: u32) -> std::path::PathBuf {
    dir.join(format!("cell-{cell}"))
}

impl Cells {
    /// Opens (or creates) `count` cells in `dir`, scopes spread by hash alone.
    pub fn open(dir: &Path, count: usize) -> Result<Cells, SearchError> {
        assert!(count > 0, "at least one cell");
        let layout = CellLayout::new(u32::try_from(count).unwrap_or(u32::MAX), &[]);
        let all: Vec<u32> = (0..layout.count()).collect();
        Cells::open_some(dir, layout, &all)
    }

    /// Opens every cell of `layout` in `dir` (one host). A directory made with another
    /// layout holds documents in the wrong cells: it is emptied first (searches then
    /// backfill what they ask for), and the change is logged.
    pub fn open_layout(dir: &Path, layout: CellLayout) -> Result<Cells, SearchError> {
        let file = dir.join(LAYOUT_FILE);
        let wanted = serde_json::to_string(&layout).expect("a layout serializes");
        match std::fs::read_to_string(&file) {
            Ok(found) if found == wanted => {}
            Ok(found) => {
                tracing::warn!(dir = %dir.display(), %found, %wanted, "search cells changed: the index is rebuilt");
                std::fs::remove_dir_all(dir).map_err(|e| SearchError::io(dir, e))?;
            }
            // Made before layouts were recorded (hashed, as `open` makes): kept if its cell
            // count is the same.
            Err(_) if dir.exists() && hashed(dir) == layout => {}
            Err(_) if dir.exists() => {
                tracing::warn!(dir = %dir.display(), %wanted, "search cells changed: the index is rebuilt");
                std::fs::remove_dir_all(dir).map_err(|e| SearchError::io(dir, e))?;
            }
            Err(_) => {}
        }
        std::fs::create_dir_all(dir).map_err(|e| SearchError::io(dir, e))?;
        std::fs::write(&file, wanted).map_err(|e| SearchError::io(&file, e))?;
        let all: Vec<u32> = (0..layout.count()).collect();
        Cells::open_some(dir, layout, &all)
    }

    /// Opens the cells `open` of `layout` in `dir`; searches and writes of the others are
    /// another worker's.
    pub fn open_some(dir: &Path, layout: CellLayout, open: &[u32]) -> Result<Cells, SearchError> {
        let mut slots = Vec::with_capacity(layout.count() as usize);
        for i in 0..layout.count() {
            slots.push(match open.contains(&i) {
                true => {
                    let cell = Cell::open(&cell_dir(dir, i))?;
                    Some(Slot { reader: cell.reader(), writer: Mutex::new(cell) })
                }
                false => None,
            });
        }
        Ok(Cells { layout, slots, requested: Mutex::default(), plugins_changed: Mutex::default() })
    }

    /// Empties `cell` (a stale copy: its consumer acknowledged entries of it that another
    /// worker indexed) and opens it alone, recorded as at `acknowledged`: the worker that
    /// now owns it rebuilds it from storage (backfills: its logs are unknown until then,
    /// and searches are told to wait or that the index is incomplete, never answered
    /// short) while the live entries flow.
    pub fn rebuild_one(dir: &Path, layout: CellLayout, cell: u32, acknowledged: u64) -> Result<Cells, SearchError> {
        Cells::remove_cell(dir, cell)?;
        let cells = Cells::open_some(dir, layout, &[cell])?;
        let mut writer = cells.writer(cell as usize);
        writer.set_rebuilt_at(acknowledged);
        writer.commit()?;
        drop(writer);
        Ok(cells)
    }

    /// Deletes a cell's files (a stale copy that a rebuild replaces). It must not be open.
    fn remove_cell(dir: &Path, cell: u32) -> Result<(), SearchError> {
        let path = cell_dir(dir, cell);
        match std::fs::remove_dir_all(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(SearchError::io(&path, e)),
            _ => Ok(()),
        }
    }

    /// Every cell of the layout, open here or not.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The cells open here.
    pub fn open_cells(&self) -> Vec<usize> {
        (0..self.slots.len()).filter(|&i| self.slots[i].is_some()).collect()
    }

    pub fn is_open(&self, cell: usize) -> bool {
        self.slots.get(cell).is_some_and(Option::is_some)
    }

    /// The cell a scope's documents are in.
    pub fn cell_of(&self, scope: Snowflake) -> usize {
        self.layout.cell_of(scope) as usize
    }

    fn slot(&self, cell: usize) -> &Slot {
        match self.slots.get(cell) {
            Some(Some(slot)) => slot,
            _ => panic!("cell {cell} is not open here (open: {:?})", self.open_cells()),
        }
    }

    /// A cell's writer (held by one indexing batch at a time). The cell must be open here.
    pub fn writer(&self, cell: usize) -> MutexGuard<'_, Cell> {
        self.slot(cell).writer.lock_unpoisoned()
    }

    /// What searches of a scope read. Its cell must be open here (see [`Cells::reader_of`]).
    pub fn reader(&self, scope: Snowflake) -> &CellReader {
        &self.slot(self.cell_of(scope)).reader
    }

    /// What searches of a scope read, if its cell is open here.
    pub fn reader_of(&self, scope: Snowflake) -> Option<&CellReader> {
        self.slots.get(self.cell_of(scope))?.as_ref().map(|slot| &slot.reader)
    }

    /// The cell that keeps what is known of a log's history (its backfill): the cell of the
    /// log's id (for a guild, the guild's own cell).
    pub fn home_of(&self, log: LogKey) -> usize {
        self.layout.home_of(log) as usize
    }

    /// What a search of `log` can rely on now (`Unknown` where its home is not open here).
    pub fn coverage(&self, log: LogKey) -> Coverage {
        match self.slots.get(self.home_of(log)) {
            Some(Some(slot)) => slot.reader.coverage(log),
            _ => Coverage::Unknown,
        }
    }

    /// Asks the indexing worker to backfill `log` in its home cell (a search found a guild
    /// unknown).
    pub fn request_backfill(&self, log: LogKey) {
        self.request_backfill_in(log, self.home_of(log));
    }

    /// Asks the indexing worker to backfill `log` in `cell` (a search of a user's DMs found
    /// one of them unknown in the user's cell).
    pub fn request_backfill_in(&self, log: LogKey, cell: usize) {
        let mut requested = self.requested.lock_unpoisoned();
        if requested.len() < MAX_REQUESTED {
            requested.insert((log, cell));
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

    /// The backfills asked for since the last call, each with its cell.
    pub fn take_requests(&self) -> Vec<(LogKey, usize)> {
        std::mem::take(&mut *self.requested.lock_unpoisoned()).into_iter().collect()
    }

    /// Forgets every open cell's uncommitted changes (a batch that failed half-way).
    pub fn rollback_all(&self) {
        for slot in self.slots.iter().flatten() {
            if let Err(e) = slot.writer.lock_unpoisoned().rollback() {
                tracing::error!(error = %e, "rolling a search cell back failed");
            }
        }
    }
}

/// The hashed layout of as many cells as `dir` holds (`cell-0` .. `cell-{n-1}`).
fn hashed(dir: &Path) -> CellLayout {
    let mut n = 0;
    while cell_dir(dir, n).exists() {
        n += 1;
    }
    CellLayout::new(n.max(1), &[])
}
