//! What a world is to the host, and what every world shares: the kinds of plugin, their
//! errors, a validated component ([`LoadedPlugin`]) and the [`WorldEntry`] each world module
//! registers (its export, what it may import, and how to link a component against it).

use std::any::Any;
use std::sync::Arc;

use wasmtime::component::{Component, InstancePre, Linker};

pub use guildhall_core::model::PluginKind;

/// The language runtime a component says it carries (the `language` field of its
/// producers section, which componentize-js writes and the Python SDK's build adds).
/// JavaScript and Python components embed a whole interpreter, so they get limits of their
/// own; everything else is compiled code (Rust, C, Go, ...) and gets the tight ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Compiled,
    JavaScript,
    Python,
}

impl Language {
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Compiled => "compiled",
            Language::JavaScript => "javascript",
            Language::Python => "python",
        }
    }
}

/// What one instance of a component may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceLimits {
    /// Largest component accepted, in bytes.
    pub max_component_bytes: usize,
    /// Linear memory per instance.
    pub max_memory_bytes: usize,
    /// Core instances per component instance (an interpreter's component links several
    /// modules: CPython's about 40).
    pub max_core_instances: usize,
}

impl InstanceLimits {
    /// Default limits of JavaScript components (componentize-js: a SpiderMonkey-based
    /// engine, about 12 MiB of component).
    pub const JAVASCRIPT: InstanceLimits =
        InstanceLimits { max_component_bytes: 24 << 20, max_memory_bytes: 64 << 20, max_core_instances: 32 };
    /// Default limits of Python components (componentize-py: CPython and its standard
    /// library, about 18 MiB of component).
    pub const PYTHON: InstanceLimits =
        InstanceLimits { max_component_bytes: 32 << 20, max_memory_bytes: 96 << 20, max_core_instances: 64 };
}

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("the component is {size} bytes; the limit is {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("{0} plugins are not accepted on this host")]
    LanguageRefused(&'static str),
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

/// A validated, compiled component, linked against its world.
#[derive(Clone)]
pub struct LoadedPlugin {
    /// SHA-256 of the component bytes, hex.
    pub hash: String,
    pub kind: PluginKind,
    /// The language runtime it declares, and the limits its instances get for it.
    pub language: Language,
    pub limits: InstanceLimits,
    pub component: Component,
    /// The world's pre-instantiated form (its bindings' `...Pre`); only that world's
    /// module knows the type and takes it back out with [`LoadedPlugin::prepared`].
    pub(crate) prepared: Arc<dyn Any + Send + Sync>,
}

impl LoadedPlugin {
    pub(crate) fn prepared<P: 'static>(&self) -> Result<&P, PluginError> {
        self.prepared.downcast_ref::<P>().ok_or(PluginError::UnknownWorld)
    }
}

/// What the loader checks a component against: the world it claims and what it may import.
pub(crate) struct WorldInfo {
    pub kind: PluginKind,
    /// The interface a component of this world exports, e.g. `guildhall:plugin/moderation@0.1.0`.
    pub export: &'static str,
    /// What it may import besides WASI (interface names of `guildhall:plugin`).
    pub imports: &'static [&'static str],
}

/// One world as the loader sees it. Each world module provides one (`entry`); the loader
/// lists them, and nothing else names a world.
pub(crate) trait WorldEntry: Send + Sync {
    fn info(&self) -> &WorldInfo;
    /// Links the component against this world's imports (the world's `...Pre`, type-erased).
    fn prepare(&self, component: &Component) -> wasmtime::Result<Arc<dyn Any + Send + Sync>>;
}

/// The entry of a world whose components run here: its linker, and the bindings' `...Pre::new`
/// that turns a linked component into the world's pre-instantiated form `P`.
pub(crate) struct LinkedWorld<T: 'static, P> {
    pub info: WorldInfo,
    pub linker: Linker<T>,
    pub pre: fn(InstancePre<T>) -> wasmtime::Result<P>,
}

impl<T: Send + 'static, P: Send + Sync + 'static> WorldEntry for LinkedWorld<T, P> {
    fn info(&self) -> &WorldInfo {
        &self.info
    }
    fn prepare(&self, component: &Component) -> wasmtime::Result<Arc<dyn Any + Send + Sync>> {
        Ok(Arc::new((self.pre)(self.linker.instantiate_pre(component)?)?))
    }
}
