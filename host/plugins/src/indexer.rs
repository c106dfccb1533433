//! The indexer world (events in, search documents out). Components are validated and
//! accepted at upload; no host runs them yet: the search issue adds the indexing workers,
//! and with them this world's linker and instances (in this file only).

use std::any::Any;
use std::sync::Arc;

use wasmtime::component::Component;

use crate::world::{PluginKind, WorldEntry};

struct Entry;

pub(crate) fn entry() -> Box<dyn WorldEntry> {
    Box::new(Entry)
}

impl WorldEntry for Entry {
    fn kind(&self) -> PluginKind {
        PluginKind::Indexer
    }
    fn export(&self) -> &'static str {
        "guildhall:plugin/indexing@0.1.0"
    }
    fn imports(&self) -> &'static [&'static str] {
        &["types", "log", "clock"]
    }
    fn prepare(&self, _component: &Component) -> wasmtime::Result<Arc<dyn Any + Send + Sync>> {
        Ok(Arc::new(()))
    }
}
