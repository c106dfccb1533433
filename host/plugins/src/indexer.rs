//! The indexer world (events in, search documents out). Components are validated and
//! accepted at upload; no host runs them yet: the search issue adds the indexing workers,
//! and with them this world's linker and instances (in this file only).

use std::any::Any;
use std::sync::Arc;

use wasmtime::component::Component;

use crate::world::{PluginKind, WorldEntry, WorldInfo};

/// Checked at upload only: nothing to link against until indexers run.
struct Entry(WorldInfo);

pub(crate) fn entry() -> Box<dyn WorldEntry> {
    Box::new(Entry(WorldInfo {
        kind: PluginKind::Indexer,
        export: "guildhall:plugin/indexing@0.1.0",
        imports: &["types", "log", "clock"],
    }))
}

impl WorldEntry for Entry {
    fn info(&self) -> &WorldInfo {
        &self.0
    }
    fn prepare(&self, _component: &Component) -> wasmtime::Result<Arc<dyn Any + Send + Sync>> {
        Ok(Arc::new(()))
    }
}
