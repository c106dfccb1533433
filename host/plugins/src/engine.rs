//! The engine, the precompiled-component cache, and validation.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::bot;
use crate::host::{PatternCache, PluginState};
use crate::moderator;

/// What the engine is allowed to use.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Where precompiled components are cached (by content hash).
    pub cache_dir: PathBuf,
    /// Largest component accepted, in bytes.
    pub max_component_bytes: usize,
    /// Linear memory per instance.
    pub max_memory_bytes: usize,
    /// Live instances the pool holds (each reserves address space and mappings).
    pub pool_instances: u32,
    /// Epoch tick: the granularity of deadlines.
    pub tick: Duration,
    /// Reset a dropped instance's dirty pages in place (where Linux has PAGEMAP_SCAN)
    /// instead of giving them back; off only to measure what it saves.
    pub reset_pages_in_place: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            cache_dir: std::env::temp_dir().join("guildhall-plugin-cache"),
            max_component_bytes: 8 << 20,
            max_memory_bytes: 16 << 20,
            pool_instances: 2_000,
            tick: Duration::from_millis(1),
            reset_pages_in_place: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    /// Guild behaviour (world `bot`).
    Bot,
    /// In the message path (world `moderator`).
    Moderator,
    /// Events to search documents (world `indexer`).
    Indexer,
}

impl PluginKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Bot => "bot",
            PluginKind::Moderator => "moderator",
            PluginKind::Indexer => "indexer",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("the component is {size} bytes; the limit is {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("not a WebAssembly component")]
    NotWasm,
    #[error("a core WebAssembly module, not a component: build with --target wasm32-wasip2")]
    CoreModule,
    #[error("the component does not compile: {0}")]
    Compile(String),
    #[error("the component implements no known world (exports none of guildhall:plugin/{{events,moderation,indexing}}@0.1.0)")]
    UnknownWorld,
    #[error("the component imports what its world does not offer: {0}")]
    BadImports(String),
    #[error("plugin init refused its configuration: {0}")]
    Config(String),
    #[error("the plugin trapped: {0}")]
    Trap(String),
    #[error("no room for another live instance: {0}")]
    Capacity(String),
    #[error("plugin cache: {0}")]
    Cache(String),
}

/// Dirty bytes of a dropped instance's memory and tables reset in place (not decommitted)
/// so that the next instance in the slot does not page-fault; see `PluginEngine::new`.
const KEEP_RESIDENT_MEMORY_BYTES: usize = 512 << 10;
const KEEP_RESIDENT_TABLE_BYTES: usize = 64 << 10;

/// Whether dropped instances' pages are reset in place (Linux 6.7+), see `PluginEngine::new`.
pub fn pagemap_scan_available() -> bool {
    PoolingAllocationConfig::is_pagemap_scan_available()
}

/// Distinct components kept loaded in memory.
const MAX_LOADED_COMPONENTS: usize = 1024;

const MODERATION_EXPORT: &str = "guildhall:plugin/moderation@0.1.0";
const EVENTS_EXPORT: &str = "guildhall:plugin/events@0.1.0";
const INDEXING_EXPORT: &str = "guildhall:plugin/indexing@0.1.0";

/// What each world may import besides WASI (which every component built for
/// wasm32-wasip2 imports; it is linked with nothing granted: no files, no network, no
/// environment).
fn allowed_imports(kind: PluginKind) -> &'static [&'static str] {
    match kind {
        PluginKind::Moderator => &["types", "log", "clock", "guild", "text"],
        PluginKind::Bot => &["types", "log", "clock", "guild", "text", "messages", "kv", "timers"],
        PluginKind::Indexer => &["types", "log", "clock"],
    }
}

/// A validated, compiled component.
#[derive(Clone)]
pub struct LoadedPlugin {
    /// SHA-256 of the component bytes, hex.
    pub hash: String,
    pub kind: PluginKind,
    pub component: Component,
    pub(crate) moderator_pre: Option<moderator::bindings::ModeratorPre<PluginState>>,
    pub(crate) bot_pre: Option<bot::bindings::BotPre<PluginState>>,
}

pub struct PluginEngine {
    pub(crate) engine: Engine,
    pub(crate) config: EngineConfig,
    moderator_linker: Linker<PluginState>,
    bot_linker: Linker<PluginState>,
    ticker_stop: Arc<AtomicBool>,
    /// Compiled pattern sets for the `text` interface, shared by every instance.
    pub(crate) patterns: Arc<PatternCache>,
    /// Loaded components by content hash: every guild that installs the same component
    /// shares one compiled copy (installed-but-idle plugins then cost only their record).
    loaded: Mutex<HashMap<String, LoadedPlugin>>,
}

impl Drop for PluginEngine {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl PluginEngine {
    pub fn new(config: EngineConfig) -> Result<PluginEngine, PluginError> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(config.pool_instances)
            .total_core_instances(config.pool_instances * 4)
            .total_memories(config.pool_instances * 2)
            .total_tables(config.pool_instances * 4)
            .total_stacks(config.pool_instances)
            .max_memory_size(config.max_memory_bytes);
        // Re-instantiating into a slot this process used before (the common case: idle
        // instances are dropped and recreated on demand) costs page faults unless the slot's
        // dirty pages are kept and reset in place. With Linux's PAGEMAP_SCAN (6.7+) wasmtime
        // finds exactly the pages an instance wrote and memsets only those, up to the limits
        // below (beyond them it falls back to madvise). Measured with automod: instantiate +
        // init + first call 33 -> 15 us. Without PAGEMAP_SCAN a keep-resident limit would memset
        // the whole range on every drop, which is slower than madvise, so it stays off there.
        // What this keeps resident is bounded by the warm unused slots (100 by default) times
        // these limits.
        if config.reset_pages_in_place && pagemap_scan_available() {
            pool.pagemap_scan(wasmtime::Enabled::Yes)
                .linear_memory_keep_resident(KEEP_RESIDENT_MEMORY_BYTES)
                .table_keep_resident(KEEP_RESIDENT_TABLE_BYTES);
        }
        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            // Component-model async adds cost to every call and nothing plugins need.
            .concurrency_support(false)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .max_wasm_stack(512 << 10);
        let engine = Engine::new(&wasm).map_err(|e| PluginError::Compile(format!("engine: {e}")))?;
        std::fs::create_dir_all(&config.cache_dir).map_err(|e| PluginError::Cache(e.to_string()))?;

        // Epochs advance on a ticker thread; a store's deadline is a number of ticks.
        let ticker_stop = Arc::new(AtomicBool::new(false));
        let (stop, ticking, tick) = (ticker_stop.clone(), engine.weak(), config.tick);
        std::thread::Builder::new()
            .name("guildhall-plugin-epochs".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    match ticking.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => return,
                    }
                }
            })
            .map_err(|e| PluginError::Compile(format!("epoch ticker: {e}")))?;

        let moderator_linker = moderator::linker(&engine).map_err(|e| PluginError::Compile(format!("linker: {e}")))?;
        let bot_linker = bot::linker(&engine).map_err(|e| PluginError::Compile(format!("linker: {e}")))?;
        let loaded = Mutex::new(HashMap::new());
        let patterns = Arc::new(PatternCache::default());
        Ok(PluginEngine { engine, config, moderator_linker, bot_linker, ticker_stop, loaded, patterns })
    }

    pub fn max_component_bytes(&self) -> usize {
        self.config.max_component_bytes
    }

    /// Validates and compiles a component: within the size limit, a component (not a core
    /// module), compiles, exports a known world, imports only what that world offers.
    pub fn load(&self, bytes: &[u8]) -> Result<LoadedPlugin, PluginError> {
        if bytes.len() > self.config.max_component_bytes {
            return Err(PluginError::TooLarge { size: bytes.len(), limit: self.config.max_component_bytes });
        }
        match bytes.get(0..8) {
            Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => return Err(PluginError::CoreModule),
            Some([0, b'a', b's', b'm', _, _, 1, 0]) => {}
            _ => return Err(PluginError::NotWasm),
        }
        let hash = hex(&Sha256::digest(bytes));
        if let Some(loaded) = self.loaded.lock().unwrap_or_else(|e| e.into_inner()).get(&hash) {
            return Ok(loaded.clone());
        }
        let component = self.compile_cached(&hash, bytes)?;
        let ty = component.component_type();
        let exports: Vec<String> = ty.exports(&self.engine).map(|(name, _)| name.to_owned()).collect();
        let kind = if exports.iter().any(|e| e == MODERATION_EXPORT) {
            PluginKind::Moderator
        } else if exports.iter().any(|e| e == EVENTS_EXPORT) {
            PluginKind::Bot
        } else if exports.iter().any(|e| e == INDEXING_EXPORT) {
            PluginKind::Indexer
        } else {
            return Err(PluginError::UnknownWorld);
        };
        let allowed = allowed_imports(kind);
        for (name, _) in ty.imports(&self.engine) {
            let ours = name.strip_prefix("guildhall:plugin/").and_then(|n| n.strip_suffix("@0.1.0"));
            let ok = match ours {
                Some(iface) => allowed.contains(&iface),
                None => name.starts_with("wasi:"),
            };
            if !ok {
                return Err(PluginError::BadImports(format!(
                    "{name} (a {} may import {})",
                    kind.as_str(),
                    allowed.join(", ")
                )));
            }
        }
        let moderator_pre = match kind {
            PluginKind::Moderator => {
                let pre = self
                    .moderator_linker
                    .instantiate_pre(&component)
                    .map_err(|e| PluginError::BadImports(e.to_string()))?;
                Some(moderator::bindings::ModeratorPre::new(pre).map_err(|e| PluginError::BadImports(e.to_string()))?)
            }
            _ => None,
        };
        let bot_pre = match kind {
            PluginKind::Bot => {
                let pre =
                    self.bot_linker.instantiate_pre(&component).map_err(|e| PluginError::BadImports(e.to_string()))?;
                Some(bot::bindings::BotPre::new(pre).map_err(|e| PluginError::BadImports(e.to_string()))?)
            }
            _ => None,
        };
        let loaded = LoadedPlugin { hash: hash.clone(), kind, component, moderator_pre, bot_pre };
        let mut cache = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_LOADED_COMPONENTS {
            cache.clear(); // rare: many distinct components; they reload from the disk cache
        }
        cache.insert(hash, loaded.clone());
        Ok(loaded)
    }

    /// Compiles once per content hash (and engine build): later loads map the cached
    /// artifact instead of running Cranelift again.
    fn compile_cached(&self, hash: &str, bytes: &[u8]) -> Result<Component, PluginError> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        let path = self.config.cache_dir.join(format!("{hash}-{:016x}.cwasm", h.finish()));
        if path.exists() {
            // SAFETY: the file was written by `precompile_component` of an engine with the
            // same compatibility hash (it is in the name), in a directory this process owns.
            match unsafe { Component::deserialize_file(&self.engine, &path) } {
                Ok(c) => return Ok(c),
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "discarding a bad cached component"),
            }
        }
        let artifact = self.engine.precompile_component(bytes).map_err(|e| PluginError::Compile(format!("{e:#}")))?;
        // A name of its own per writer: two loads of the same component may race here.
        static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = WRITES.fetch_add(1, Ordering::Relaxed);
        let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
        std::fs::write(&tmp, &artifact)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|e| PluginError::Cache(e.to_string()))?;
        // SAFETY: just produced by this engine.
        unsafe { Component::deserialize(&self.engine, &artifact) }.map_err(|e| PluginError::Compile(format!("{e:#}")))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
