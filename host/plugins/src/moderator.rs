//! Moderator instances: one store per (guild, plugin), reused across calls.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::engine::{LoadedPlugin, PluginEngine, PluginError};

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "moderator",
        imports: { default: async },
        exports: { default: async },
    });
}

use bindings::guildhall::plugin::{clock, guild, log, types};
pub use types::{Candidate, Channel, Member, User, Verdict};

/// Looks a member up for the `guild` interface (the host decides how: storage, a cache).
pub type MemberLookup = Arc<dyn Fn(u64) -> Pin<Box<dyn Future<Output = Option<Member>> + Send>> + Send + Sync>;

/// What an instance may see of its guild: nothing of any other.
#[derive(Clone)]
pub struct GuildView {
    pub guild_id: u64,
    pub channels: Arc<Vec<Channel>>,
    pub members: MemberLookup,
}

/// Longest log line a plugin may write (longer ones are cut).
const MAX_LOG_CHARS: usize = 1024;

pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    view: GuildView,
    plugin: String,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl types::Host for HostState {}

impl log::Host for HostState {
    async fn log(&mut self, level: log::Level, message: String) {
        let message: String = message.chars().take(MAX_LOG_CHARS).collect();
        let (plugin, guild) = (&self.plugin, self.view.guild_id);
        match level {
            log::Level::Debug => tracing::debug!(plugin, guild, "{message}"),
            log::Level::Info => tracing::info!(plugin, guild, "{message}"),
            log::Level::Warn => tracing::warn!(plugin, guild, "{message}"),
            log::Level::Error => tracing::error!(plugin, guild, "{message}"),
        }
    }
}

impl clock::Host for HostState {
    async fn now_ms(&mut self) -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
    }
}

impl guild::Host for HostState {
    async fn guild_id(&mut self) -> u64 {
        self.view.guild_id
    }
    async fn find_channel(&mut self, id: u64) -> Option<Channel> {
        self.view.channels.iter().find(|c| c.id == id).cloned()
    }
    async fn list_channels(&mut self) -> Vec<Channel> {
        self.view.channels.to_vec()
    }
    async fn find_member(&mut self, user_id: u64) -> Option<Member> {
        (self.view.members)(user_id).await
    }
}

pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    bindings::Moderator::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    Ok(linker)
}

/// A live moderator for one guild. After any error the caller must drop it.
pub struct ModeratorInstance {
    store: Store<HostState>,
    bindings: bindings::Moderator,
    ticks_per_ms: f64,
}

impl ModeratorInstance {
    /// Instantiates (from the pool) and calls `init(config)` within `deadline`.
    pub async fn new(
        engine: &PluginEngine,
        plugin: &LoadedPlugin,
        name: &str,
        view: GuildView,
        config: &str,
        deadline: Duration,
    ) -> Result<ModeratorInstance, PluginError> {
        let pre = plugin.moderator_pre.as_ref().ok_or(PluginError::UnknownWorld)?;
        let limits = StoreLimitsBuilder::new()
            .memory_size(engine.config.max_memory_bytes)
            .instances(32)
            .tables(32)
            .memories(4)
            .trap_on_grow_failure(true)
            .build();
        // WASI with nothing granted: no files, no sockets, no environment, no stdio.
        let wasi = WasiCtxBuilder::new().build();
        let state = HostState { wasi, table: ResourceTable::new(), limits, view, plugin: name.to_owned() };
        let mut store = Store::new(&engine.engine, state);
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_trap();
        let ticks_per_ms = 1.0 / engine.config.tick.as_secs_f64() / 1000.0;
        store.set_epoch_deadline(ticks(deadline, ticks_per_ms));
        let bindings = pre.instantiate_async(&mut store).await.map_err(instantiate_error)?;
        let mut instance = ModeratorInstance { store, bindings, ticks_per_ms };
        instance.store.set_epoch_deadline(ticks(deadline, ticks_per_ms));
        let init = instance.bindings.guildhall_plugin_moderation().call_init(&mut instance.store, config).await;
        match init {
            Ok(Ok(())) => Ok(instance),
            Ok(Err(refused)) => Err(PluginError::Config(refused)),
            Err(trap) => Err(PluginError::Trap(format!("{trap:#}"))),
        }
    }

    /// Asks for a verdict; a trap or a missed deadline is an error (drop the instance).
    pub async fn moderate(&mut self, candidate: &Candidate, deadline: Duration) -> Result<Verdict, PluginError> {
        self.store.set_epoch_deadline(ticks(deadline, self.ticks_per_ms));
        let call = self.bindings.guildhall_plugin_moderation().call_moderate(&mut self.store, candidate);
        // Host calls (a member lookup) do not tick the epoch: bound the whole call too.
        match tokio::time::timeout(deadline * 4 + Duration::from_millis(20), call).await {
            Ok(Ok(verdict)) => Ok(verdict),
            Ok(Err(trap)) => Err(PluginError::Trap(format!("{trap:#}"))),
            Err(_) => Err(PluginError::Trap("deadline exceeded in a host call".into())),
        }
    }
}

pub(crate) fn instantiate_error(e: wasmtime::Error) -> PluginError {
    let text = format!("{e:#}");
    if text.contains("maximum") || text.contains("pool") {
        PluginError::Capacity(text)
    } else {
        PluginError::Trap(text)
    }
}

pub(crate) fn ticks(deadline: Duration, ticks_per_ms: f64) -> u64 {
    // +1: the current tick may be nearly over when the call starts.
    (deadline.as_secs_f64() * 1000.0 * ticks_per_ms).ceil() as u64 + 1
}
