//! The plugin engine as the host uses it: the [`Sandbox`] plus the worlds it knows, the
//! content-hashed cache of precompiled components, and validation (size, a component at all,
//! compiles, which world it exports, imports only what that world offers).
//!
//! [`worlds`] is the one place that lists the worlds: adding one is a module of its own with
//! an `entry`, and a line here.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use crate::engine::{EngineConfig, Sandbox};
use crate::world::{Language, LoadedPlugin, PluginError, WorldEntry};
use crate::{bot, indexer, moderator};

/// Distinct components kept loaded in memory.
const MAX_LOADED_COMPONENTS: usize = 1024;

fn worlds(sandbox: &Sandbox) -> wasmtime::Result<Vec<Box<dyn WorldEntry>>> {
    Ok(vec![moderator::entry(sandbox)?, bot::entry(sandbox)?, indexer::entry()])
}

pub struct PluginEngine {
    sandbox: Sandbox,
    worlds: Vec<Box<dyn WorldEntry>>,
    /// Loaded components by content hash: every guild that installs the same component
    /// shares one compiled copy (installed-but-idle plugins then cost only their record).
    loaded: Mutex<HashMap<String, LoadedPlugin>>,
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
        Ok(PluginEngine { sandbox, worlds, loaded: Mutex::new(HashMap::new()) })
    }

    /// Validates and compiles a component: within the size limit, a component (not a core
    /// module), compiles, exports a known world, imports only what that world offers.
    pub fn load(&self, bytes: &[u8]) -> Result<LoadedPlugin, PluginError> {
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
        if let Some(loaded) = self.loaded.lock().unwrap_or_else(|e| e.into_inner()).get(&hash) {
            return Ok(loaded.clone());
        }
        let component = self.compile_cached(&hash, bytes)?;
        let ty = component.component_type();
        let exports: Vec<String> = ty.exports(&self.engine).map(|(name, _)| name.to_owned()).collect();
        let world = self
            .worlds
            .iter()
            .find(|w| exports.iter().any(|e| e == w.info().export))
            .ok_or(PluginError::UnknownWorld)?;
        // WASI is what every component built for wasm32-wasip2 imports; it is linked with
        // nothing granted (no files, no network, no environment).
        let allowed = world.info().imports;
        for (name, _) in ty.imports(&self.engine) {
            let ours = name.strip_prefix("guildhall:plugin/").and_then(|n| n.strip_suffix("@0.1.0"));
            let ok = match ours {
                Some(iface) => allowed.contains(&iface),
                None => name.starts_with("wasi:"),
            };
            if !ok {
                return Err(PluginError::BadImports(format!(
                    "{name} (a {} may import {})",
                    world.info().kind.as_str(),
                    allowed.join(", ")
                )));
            }
        }
        let prepared = world.prepare(&component).map_err(|e| PluginError::BadImports(e.to_string()))?;
        let kind = world.info().kind;
        let loaded = LoadedPlugin { hash: hash.clone(), kind, language, limits, component, prepared };
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
            // same compatibility hash (it is in the name), in a directory only this host
            // (or hosts sharing `plugins.cache_dir`, of the same build) writes to.
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
