//! Indexer instances: the `indexer` world (events in, search documents out), run by the
//! indexing workers on a guild's batch of message events.
//!
//! An indexer only proposes: the host keeps what a document is about (message id, channel,
//! author, time) from its own data and takes from the plugin the text and the tags of the
//! documents whose id is a message of the batch; anything else is dropped (see
//! `guildhall-search`). Its imports are log and clock only: it sees nothing but the events.

use std::time::Duration;

use wasmtime::component::HasSelf;
use wasmtime::Store;

use crate::engine::Sandbox;
use crate::state::{
    call_error, instantiate_error, linker_with_wasi, new_store, ticks, wall_bound, GuildView, PluginState,
};
use crate::world::{LinkedWorld, LoadedPlugin, PluginError, PluginKind, WorldEntry, WorldInfo};

mod bindings {
    crate::interfaces::world_bindings!("indexer", log_and_clock);
}

pub use crate::interfaces::guildhall::plugin::types::Document;

type Pre = bindings::IndexerPre<PluginState>;

/// Most documents one call may return, and most text and tags kept per document.
pub const MAX_DOCUMENTS_PER_EVENT: usize = 1;
pub const MAX_TEXT_BYTES: usize = 16 * 1024;
pub const MAX_TAGS: usize = 64;
pub const MAX_TAG_BYTES: usize = 256;

pub(crate) fn entry(sandbox: &Sandbox) -> wasmtime::Result<Box<dyn WorldEntry>> {
    let mut linker = linker_with_wasi(sandbox)?;
    bindings::Indexer::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    let info = WorldInfo {
        kind: PluginKind::Indexer,
        export: "guildhall:plugin/indexing@0.1.0",
        imports: &["types", "log", "clock"],
    };
    Ok(Box::new(LinkedWorld { info, linker, pre: Pre::new }))
}

/// A live indexer for one guild. After any error the caller must drop it.
pub struct IndexerInstance {
    store: Store<PluginState>,
    bindings: bindings::Indexer,
    ticks_per_ms: f64,
}

impl IndexerInstance {
    /// Instantiates (from the pool) and calls `init(config)` within `deadline`.
    pub async fn new(
        engine: &Sandbox,
        plugin: &LoadedPlugin,
        name: &str,
        view: GuildView,
        config: &str,
        deadline: Duration,
    ) -> Result<IndexerInstance, PluginError> {
        let pre = plugin.prepared::<Pre>()?;
        let (mut store, ticks_per_ms) = new_store(engine, plugin.limits, view, name, None, deadline)?;
        let bindings = pre.instantiate_async(&mut store).await.map_err(instantiate_error)?;
        let mut instance = IndexerInstance { store, bindings, ticks_per_ms };
        instance.store.set_epoch_deadline(ticks(deadline, ticks_per_ms));
        let init = instance.bindings.guildhall_plugin_indexing().call_init(&mut instance.store, config);
        match tokio::time::timeout(wall_bound(deadline), init).await {
            Ok(Ok(Ok(()))) => Ok(instance),
            Ok(Ok(Err(refused))) => Err(PluginError::Config(refused)),
            Ok(Err(trap)) => Err(call_error(trap)),
            Err(_) => Err(PluginError::Trap("init exceeded its deadline in a host call".into())),
        }
    }

    /// The documents for a batch of events, within `deadline` of the plugin's own time; a
    /// trap or a missed deadline is an error (drop the instance). At most one document per
    /// event is kept, each cut to the limits above.
    pub async fn index(
        &mut self,
        events: &[crate::GuildEvent],
        deadline: Duration,
    ) -> Result<Vec<Document>, PluginError> {
        self.store.data_mut().start_the_clock();
        self.store.set_epoch_deadline(ticks(deadline, self.ticks_per_ms));
        let call = self.bindings.guildhall_plugin_indexing().call_index(&mut self.store, events);
        match tokio::time::timeout(wall_bound(deadline), call).await {
            Ok(Ok(mut documents)) => {
                documents.truncate(events.len() * MAX_DOCUMENTS_PER_EVENT);
                Ok(documents.into_iter().map(bounded).collect())
            }
            Ok(Err(trap)) => Err(call_error(trap)),
            Err(_) => Err(PluginError::Trap("deadline exceeded".into())),
        }
    }
}

/// A document cut to the limits: text to [`MAX_TEXT_BYTES`] (between characters), at most
/// [`MAX_TAGS`] tags of at most [`MAX_TAG_BYTES`] each (longer ones dropped).
fn bounded(mut d: Document) -> Document {
    d.text = guildhall_core::text::prefix_within_bytes(&d.text, MAX_TEXT_BYTES).to_owned();
    d.tags.retain(|t| !t.is_empty() && t.len() <= MAX_TAG_BYTES);
    d.tags.truncate(MAX_TAGS);
    d
}
