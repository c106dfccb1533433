//! The sandbox every plugin runs in: one wasmtime engine (component model, pooling
//! allocator, epoch interruption with a ticker thread), its limits, and the native pattern
//! cache of the `text` interface. It knows no world; the loader (`loader.rs`) does.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::budget::PluginBudget;
use crate::compiler::{compiler_settings, CompilerProcess};
use crate::text::PatternCache;
use crate::world::{InstanceLimits, Language, PluginError};

/// What the engine is allowed to use.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Where precompiled components are cached (by content hash).
    pub cache_dir: PathBuf,
    /// Largest component accepted, in bytes (compiled languages).
    pub max_component_bytes: usize,
    /// Linear memory per instance (compiled languages).
    pub max_memory_bytes: usize,
    /// Limits of JavaScript components; `None`: refused.
    pub javascript: Option<InstanceLimits>,
    /// Limits of Python components; `None`: refused.
    pub python: Option<InstanceLimits>,
    /// Live instances the pool holds (each reserves address space and mappings).
    pub pool_instances: u32,
    /// Linear memory of every live instance together (see `budget.rs`).
    pub max_total_memory_bytes: usize,
    /// Linear memory of one guild's live instances together.
    pub max_guild_memory_bytes: usize,
    /// Live instances of one guild (its share of the pool).
    pub max_guild_instances: usize,
    /// Components compiled at once (Cranelift itself compiles one on several threads).
    pub max_concurrent_compiles: usize,
    /// Epoch tick: the granularity of deadlines.
    pub tick: Duration,
    /// Reset a dropped instance's dirty pages in place (where Linux has PAGEMAP_SCAN)
    /// instead of giving them back; off only to measure what it saves.
    pub reset_pages_in_place: bool,
    /// Compile in a process of its own, within its time and memory (`None`: in this
    /// process, bounded only by the component's size and `max_concurrent_compiles`).
    pub compiler: Option<CompilerProcess>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            cache_dir: std::env::temp_dir().join("guildhall-plugin-cache"),
            max_component_bytes: 8 << 20,
            max_memory_bytes: 16 << 20,
            javascript: Some(InstanceLimits::JAVASCRIPT),
            python: Some(InstanceLimits::PYTHON),
            pool_instances: 2_000,
            max_total_memory_bytes: 4 << 30,
            max_guild_memory_bytes: 256 << 20,
            max_guild_instances: 64,
            max_concurrent_compiles: 1,
            tick: Duration::from_millis(1),
            reset_pages_in_place: true,
            compiler: None,
        }
    }
}

impl EngineConfig {
    /// The limits of a language; `None` if its components are refused.
    pub fn limits(&self, language: Language) -> Option<InstanceLimits> {
        match language {
            Language::Compiled => Some(InstanceLimits {
                max_component_bytes: self.max_component_bytes,
                max_memory_bytes: self.max_memory_bytes,
                max_core_instances: 32,
            }),
            Language::JavaScript => self.javascript,
            Language::Python => self.python,
        }
    }

    /// The most any accepted language may have: the pool's slots and the upload's cap.
    fn most(&self, field: fn(&InstanceLimits) -> usize) -> usize {
        [Language::Compiled, Language::JavaScript, Language::Python]
            .into_iter()
            .filter_map(|l| self.limits(l))
            .map(|l| field(&l))
            .max()
            .unwrap_or(0)
    }
}

/// Core instances the pool allows per instance slot (see `Sandbox::new`).
const CORE_INSTANCES_PER_SLOT: u32 = 48;

/// Dirty bytes of a dropped instance's memory and tables reset in place (not decommitted)
/// so that the next instance in the slot does not page-fault; see `Sandbox::new`.
const KEEP_RESIDENT_MEMORY_BYTES: usize = 512 << 10;
const KEEP_RESIDENT_TABLE_BYTES: usize = 64 << 10;

/// Whether dropped instances' pages are reset in place (Linux 6.7+), see `Sandbox::new`.
pub fn pagemap_scan_available() -> bool {
    PoolingAllocationConfig::is_pagemap_scan_available()
}

/// The wasmtime engine with the limits every instance gets.
pub struct Sandbox {
    pub(crate) engine: Engine,
    pub(crate) config: EngineConfig,
    ticker_stop: Arc<AtomicBool>,
    /// Compiled pattern sets for the `text` interface, shared by every instance.
    pub(crate) patterns: Arc<PatternCache>,
    /// Linear memory reserved by live instances, host-wide and per guild, and each guild's
    /// live instances.
    pub(crate) budget: Arc<PluginBudget>,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl Sandbox {
    pub fn new(config: EngineConfig) -> Result<Sandbox, PluginError> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(config.pool_instances)
            // A counter, not a reservation: an interpreter's component links dozens of
            // core modules (a Python plugin instance takes 38), and a pool of Python
            // plugins must not run out of these long before its instance slots.
            .total_core_instances(config.pool_instances * CORE_INSTANCES_PER_SLOT)
            .total_memories(config.pool_instances * 2)
            .total_tables(config.pool_instances * 4)
            .total_stacks(config.pool_instances)
            // Each store gets its language's own limit (`state::new_store`).
            .max_memory_size(config.most(|l| l.max_memory_bytes));
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
        let mut wasm = compiler_settings();
        wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
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

        let patterns = Arc::new(PatternCache::default());
        let budget = Arc::new(PluginBudget::new(
            config.max_total_memory_bytes,
            config.max_guild_memory_bytes,
            config.max_guild_instances,
        ));
        Ok(Sandbox { engine, config, ticker_stop, patterns, budget })
    }

    /// Linear memory reserved by live instances: host-wide, and by one guild.
    pub fn memory_in_use(&self, guild: Option<u64>) -> usize {
        match guild {
            Some(guild) => self.budget.used_by(guild),
            None => self.budget.used(),
        }
    }

    /// The largest component any accepted language may have: what an upload may send.
    pub fn max_component_bytes(&self) -> usize {
        self.config.most(|l| l.max_component_bytes)
    }
}
