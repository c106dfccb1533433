//! The plugin engine as the host uses it: the [`Sandbox`] plus the worlds it knows, the
//! content-hashed cache of precompiled components, and validation (size, a component at all,
//! compiles, which world it exports, imports only what that world offers).
//!
//! [`worlds`] is the one place that lists the worlds: adding one is a module of its own with
//! an `entry`, and a line here.

use guildhall_core::sync::LockUnpoisoned;
use std::collections::HashMap;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use crate::engine::{EngineConfig, Sandbox};
use crate::world::{Language, LoadedPlugin, PluginError, WorldEntry};
use crate::{bot, indexer, moderator};

/// Distinct components kept loaded in memory.
const MAX_LOADED_COMPONENTS: usize = 1024;

fn worlds(sandbox: &Sandbox) -> wasmtime::Result<Vec<Box<dyn WorldEntry>>> {
    Ok(vec![moderator::entry(sandbox)?, bot::entry(sandbox)?, indexer::entry(sandbox)?])
}

pub struct PluginEngine {
    sandbox: Sandbox,
    worlds: Vec<Box<dyn WorldEntry>>,
    /// Loaded components by content hash: every guild that installs the same component
    /// shares one compiled copy (installed-but-idle plugins then cost only their record).
    loaded: Mutex<HashMap<String, LoadedPlugin>>,
    /// Turns to compile (`EngineConfig::max_concurrent_compiles`), see `load_async`.
    compiles: Arc<tokio::sync::Semaphore>,
}

/// Instances are made from the sandbox: `ModeratorInstance::new(&engine, ..)` takes either.
impl Deref for PluginEngine {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.sandbox
    }
}

impl PluginEngine {
    pub fn new(config: EngineConfig) -> Result<PluginEngine, PluginError> {
        let sandbox = Sandbox::new(config)?;
        let worlds = worlds(&sandbox).map_err(|e| PluginError::Compile(format!("linker: {e}")))?;
        let compiles = Arc::new(tokio::sync::Semaphore::new(sandbox.config.max_concurrent_compiles.max(1)));
        Ok(PluginEngine { sandbox, worlds, loaded: Mutex::new(HashMap::new()), compiles })
    }

    /// Validates and compiles a component: within the size limit, a component (not a core
    /// module), compiles, exports a known world, imports only what that world offers.
    /// Synchronous and possibly seconds of CPU: the host calls [`PluginEngine::load_async`].
    pub fn load(&self, bytes: &[u8]) -> Result<LoadedPlugin, PluginError> {
        Ok(self.load_with(bytes, true)?.expect("a load that may compile gives a plugin or an error"))
    }

    /// [`PluginEngine::load`] on the blocking pool, compiling at most
    /// `max_concurrent_compiles` components at once: Cranelift takes seconds of CPU and
    /// hundreds of MiB for an interpreter's component, and an upload flood must not take
    /// every core (it cannot be interrupted; its size limit bounds it). A component
    /// already compiled (in memory or in the cache directory) loads without waiting; one
    /// that must be compiled waits for its turn at most `wait` (`None`: as long as it
    /// takes, for a guild loading what it has installed), then is refused as `Capacity`.
    pub async fn load_async(
        self: &Arc<Self>,
        bytes: Arc<[u8]>,
        wait: Option<Duration>,
    ) -> Result<LoadedPlugin, PluginError> {
        let (engine, input) = (self.clone(), bytes.clone());
        if let Some(loaded) = blocking(move || engine.load_with(&input, false)).await?? {
            return Ok(loaded);
        }
        let turn = self.compiles.clone().acquire_owned();
        let permit = match wait {
            Some(wait) => tokio::time::timeout(wait, turn)
                .await
                .map_err(|_| PluginError::Capacity("the plugin compiler is busy; try again later".into()))?,
            None => turn.await,
        }
        .expect("the compile semaphore is never closed");
        let engine = self.clone();
        // The permit goes with the work: a caller that stops waiting does not free its turn
        // while Cranelift still runs.
        blocking(move || {
            let _turn = permit;
            engine.load(&bytes)
        })
        .await?
    }

    /// The component with SHA-256 `hash` if it is loaded already: a guild that knows the
    /// hash of what it installed need not read megabytes from storage and hash them again.
    pub fn loaded(&self, hash: &str) -> Option<LoadedPlugin> {
        self.loaded.lock_unpoisoned().get(hash).cloned()
    }

    /// Drops what is kept of the component `hash` (it was deleted from storage): its loaded
    /// form (instances made from it keep theirs) and its compiled files in the cache, for
    /// every engine build. What a file could not be deleted for is logged.
    pub fn forget(&self, hash: &str) {
        self.loaded.lock_unpoisoned().remove(hash);
        let Ok(dir) = std::fs::read_dir(&self.config.cache_dir) else { return };
        let prefix = format!("{hash}-");
        for entry in dir.flatten() {
            let name = entry.file_name();
            if name.to_str().is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".cwasm")) {
                if let Err(e) = std::fs::remove_file(entry.path()) {
                    tracing::warn!(file = ?entry.path(), error = %e, "could not delete a compiled component");
                }
            }
        }
    }

    /// Compilations running now.
    pub fn compiling(&self) -> usize {
        self.config.max_concurrent_compiles.max(1) - self.compiles.available_permits()
    }

    /// `load`, or `None` if that would take a compilation and `may_compile` is false.
    /// Nothing is written to the cache before the component passed every check.
    fn load_with(&self, bytes: &[u8], may_compile: bool) -> Result<Option<LoadedPlugin>, PluginError> {
        let most = self.sandbox.max_component_bytes();
        if bytes.len() > most {
            return Err(PluginError::TooLarge { size: bytes.len(), limit: most });
        }
        match bytes.get(0..8) {
            Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => return Err(PluginError::CoreModule),
            Some([0, b'a', b's', b'm', _, _, 1, 0]) => {}
            _ => return Err(PluginError::NotWasm),
        }
        let language = language(bytes);
        let limits = self.config.limits(language).ok_or(PluginError::LanguageRefused(language.as_str()))?;
        if bytes.len() > limits.max_component_bytes {
            return Err(PluginError::TooLarge { size: bytes.len(), limit: limits.max_component_bytes });
        }
        let hash = hex(&Sha256::digest(bytes));
        if let Some(loaded) = self.loaded(&hash) {
            return Ok(Some(loaded));
        }
        let cache_file = self.cache_file(&hash);
        let (component, compiled) = match self.cached(&cache_file) {
            Some(component) => (component, None),
            None if !may_compile => return Ok(None),
            None => {
                let artifact = match &self.config.compiler {
                    Some(process) => crate::compiler::compile_in_child(process, bytes)?,
                    None => {
                        self.engine.precompile_component(bytes).map_err(|e| PluginError::Compile(format!("{e:#}")))?
                    }
                };
                // SAFETY: just produced by `precompile_component` of this build: this
                // engine's, or the compiler process's (this binary, the same settings;
                // `deserialize` checks the compatibility again). Its output is wasmtime's,
                // whatever the component it was given.
                let component = unsafe { Component::deserialize(&self.engine, &artifact) }
                    .map_err(|e| PluginError::Compile(format!("{e:#}")))?;
                (component, Some(artifact))
            }
        };
        let ty = component.component_type();
        let exports: Vec<String> = ty.exports(&self.engine).map(|(name, _)| name.to_owned()).collect();
        let world = self
            .worlds
            .iter()
            .find(|w| exports.iter().any(|e| e == w.info().export))
            .ok_or(PluginError::UnknownWorld)?;
        let allowed = world.info().imports;
        for (name, _) in ty.imports(&self.engine) {
            if !offered(name, allowed) {
                return Err(PluginError::BadImports(format!(
                    "{name} (a {} may import {})",
                    world.info().kind.as_str(),
                    allowed.join(", ")
                )));
            }
        }
        let prepared = world.prepare(&component).map_err(|e| PluginError::BadImports(e.to_string()))?;
        if let Some(artifact) = compiled {
            write_cache_file(&cache_file, &artifact)?;
        }
        let kind = world.info().kind;
        let loaded = LoadedPlugin { hash: hash.clone(), kind, language, limits, component, prepared };
        let mut cache = self.loaded.lock_unpoisoned();
        if cache.len() >= MAX_LOADED_COMPONENTS {
            cache.clear(); // rare: many distinct components; they reload from the disk cache
        }
        cache.insert(hash, loaded.clone());
        Ok(Some(loaded))
    }

    /// Where the compiled form of the component `hash` is cached: per content hash and
    /// engine build, so a later load maps it instead of running Cranelift again.
    fn cache_file(&self, hash: &str) -> PathBuf {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        self.config.cache_dir.join(format!("{hash}-{:016x}.cwasm", h.finish()))
    }

    fn cached(&self, path: &Path) -> Option<Component> {
        if !path.exists() {
            return None;
        }
        // SAFETY: the file was written by `precompile_component` of an engine with the same
        // compatibility hash (it is in the name), in a directory only this host (or hosts
        // sharing `plugins.cache_dir`, of the same build) writes to, and only after the
        // component passed validation.
        match unsafe { Component::deserialize_file(&self.engine, path) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "discarding a bad cached component");
                None
            }
        }
    }
}

fn write_cache_file(path: &Path, artifact: &[u8]) -> Result<(), PluginError> {
    // A name of its own per writer: two loads of the same component may race here.
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let n = WRITES.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
    std::fs::write(&tmp, artifact)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| PluginError::Cache(e.to_string()))
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, PluginError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| PluginError::Compile(format!("compiler task: {e}")))
}

/// The language a component declares in the producers section of its outermost
/// component (`language: JavaScript` from componentize-js; the Python SDK's build writes
/// `language: Python`). It is the uploader's claim: a component that claims an
/// interpreter's language gets that language's limits, which the operator sets for any
/// plugin that makes the claim. Unreadable sections are ignored (compile checks the rest).
fn language(bytes: &[u8]) -> Language {
    use wasmparser::{KnownCustom, Parser, Payload};
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let Ok(payload) = payload else { break };
        match payload {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::CustomSection(section) if depth == 0 => {
                let KnownCustom::Producers(producers) = section.as_known() else { continue };
                for field in producers.into_iter().flatten() {
                    if field.name != "language" {
                        continue;
                    }
                    for value in field.values.into_iter().flatten() {
                        match value.name {
                            "JavaScript" => return Language::JavaScript,
                            "Python" => return Language::Python,
                            _ => {}
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Language::Compiled
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The WASI packages a component may import: what a wasm32-wasip2 standard library links
/// (componentize-py's stubs and a trimmed componentize-js import none). The host links
/// them with nothing granted: no preopened directory, no environment, no arguments.
/// Sockets, HTTP and any other package are refused at upload, not merely denied later.
const WASI_OFFERED: [&str; 5] = ["wasi:cli/", "wasi:io/", "wasi:clocks/", "wasi:random/", "wasi:filesystem/"];

/// Whether a world whose own interfaces are `world_imports` offers the import `name`.
fn offered(name: &str, world_imports: &[&str]) -> bool {
    match name.strip_prefix("guildhall:plugin/").and_then(|n| n.strip_suffix("@0.1.0")) {
        Some(interface) => world_imports.contains(&interface),
        None => WASI_OFFERED.iter().any(|package| name.starts_with(package)),
    }
}

#[cfg(test)]
mod tests {
    use super::offered;

    #[test]
    fn a_world_offers_its_interfaces_and_inert_wasi_but_no_network() {
        let bot = ["log", "guild", "bot"];
        assert!(offered("guildhall:plugin/bot@0.1.0", &bot));
        assert!(!offered("guildhall:plugin/moderation@0.1.0", &bot), "another world's interface");
        assert!(!offered("guildhall:plugin/bot@0.2.0", &bot), "another version");
        for inert in ["wasi:cli/stdout@0.2.3", "wasi:io/streams@0.2.0", "wasi:filesystem/preopens@0.2.6"] {
            assert!(offered(inert, &bot), "{inert}");
        }
        for refused in ["wasi:sockets/tcp@0.2.0", "wasi:http/outgoing-handler@0.2.0", "wasi:keyvalue/store@0.2.0"] {
            assert!(!offered(refused, &bot), "{refused}");
        }
    }
}
