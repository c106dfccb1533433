//! What all plugin stores share: the state, WASI with nothing granted, and the host side
//! of the interfaces every world imports (types, log, clock, guild, text), implemented once
//! for every world. A world's own imports live in its module; what they act through (the
//! `BotHost` for bots) is in the state.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use guildhall_core::clock::Clock;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Store, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::bot_host::BotHost;
use crate::budget::{BudgetedLimits, OverBudget};
use crate::engine::Sandbox;
use crate::interfaces::guildhall::plugin::{clock, guild, log, text, types};
use crate::text::{PatternCache, Patterns, MAX_SETS_PER_INSTANCE};
use crate::world::InstanceLimits;
use crate::world::PluginError;
use types::{Channel, Member};

/// Looks a member up for the `guild` interface (the host decides how: storage, a cache).
pub type MemberLookup = Arc<dyn Fn(u64) -> Pin<Box<dyn Future<Output = Option<Member>> + Send>> + Send + Sync>;

/// What an instance may see of its guild (nothing of any other), and the time there.
#[derive(Clone)]
pub struct GuildView {
    pub guild_id: u64,
    pub channels: Arc<Vec<Channel>>,
    pub members: MemberLookup,
    /// What the `clock` interface reads: the process's clock, passed in.
    pub clock: Arc<dyn Clock>,
}

/// Longest log line a plugin may write (longer ones are cut).
const MAX_LOG_CHARS: usize = 1024;

/// What every plugin's store holds: WASI (nothing granted), its limits, its view of its
/// guild, and, for bots, what they may do there.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: BudgetedLimits,
    view: GuildView,
    plugin: String,
    /// For bots: what they may do in their guild (`None` for every other world).
    pub(crate) bot: Option<Arc<dyn BotHost>>,
    /// The engine's pattern-set cache (for `text::compile`) and this instance's sets.
    patterns: Arc<PatternCache>,
    sets: Vec<Arc<Patterns>>,
    /// Time this instance spent waiting in host calls (storage, the guild actor) since its
    /// deadline was last reached; given back then, see `new_store`. Kept as a duration so
    /// that many waits shorter than a tick add up.
    waited: Duration,
    ticks_per_ms: f64,
}

impl PluginState {
    /// A new call starts with no time given back yet.
    pub(crate) fn start_the_clock(&mut self) {
        self.waited = Duration::ZERO;
    }

    /// Awaits a host call that waits on IO. Its time does not count against the plugin's
    /// deadline, which bounds the plugin's own computation (the caller bounds the whole
    /// call in wall time, see [`wall_bound`]).
    pub(crate) async fn off_the_clock<T>(&mut self, io: impl Future<Output = T>) -> T {
        let started = std::time::Instant::now();
        let out = io.await;
        self.waited += started.elapsed();
        out
    }
}

/// The wall-clock bound on a call whose own computation has `deadline`: waiting in host
/// calls is given back to the deadline, so this is what stops a plugin that waits forever.
pub(crate) fn wall_bound(deadline: Duration) -> Duration {
    deadline * 4 + Duration::from_millis(20)
}

impl text::Host for PluginState {
    async fn compile(&mut self, patterns: Vec<String>) -> Result<u32, String> {
        if self.sets.len() >= MAX_SETS_PER_INSTANCE {
            return Err(format!("at most {MAX_SETS_PER_INSTANCE} pattern sets per instance"));
        }
        let set = self.patterns.get_or_compile(patterns)?;
        self.sets.push(set);
        Ok(self.sets.len() as u32 - 1)
    }

    async fn find(&mut self, set: u32, text: String) -> Option<u32> {
        self.sets.get(set as usize)?.first_match(&text)
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl types::Host for PluginState {}

impl log::Host for PluginState {
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

impl clock::Host for PluginState {
    async fn now_ms(&mut self) -> u64 {
        self.view.clock.unix_ms()
    }
}

impl guild::Host for PluginState {
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
        let lookup = (self.view.members)(user_id);
        self.off_the_clock(lookup).await
    }
}

/// A linker with WASI (nothing granted: no files, no network, no environment), to which a
/// world adds its own bindings.
pub(crate) fn linker_with_wasi(sandbox: &Sandbox) -> wasmtime::Result<Linker<PluginState>> {
    let mut linker = Linker::new(&sandbox.engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    Ok(linker)
}

/// A store for one (guild, plugin) instance, with its memory limit and epoch deadline armed,
/// holding one of its guild's instances (`Capacity` if the guild's share is taken).
pub(crate) fn new_store(
    engine: &Sandbox,
    limits: InstanceLimits,
    view: GuildView,
    plugin: &str,
    bot: Option<Arc<dyn BotHost>>,
    deadline: Duration,
) -> Result<(Store<PluginState>, f64), PluginError> {
    let ticks_per_ms = 1.0 / engine.config.tick.as_secs_f64() / 1000.0;
    let limits = StoreLimitsBuilder::new()
        .memory_size(limits.max_memory_bytes)
        .instances(limits.max_core_instances)
        .tables(32)
        .memories(4)
        .trap_on_grow_failure(true)
        .build();
    let limits = BudgetedLimits::new(limits, engine.budget.clone(), view.guild_id)
        .map_err(|over| PluginError::Capacity(over.to_string()))?;
    let state = PluginState {
        wasi: WasiCtxBuilder::new().build(),
        table: ResourceTable::new(),
        limits,
        view,
        plugin: plugin.to_owned(),
        bot,
        patterns: engine.patterns.clone(),
        sets: Vec::new(),
        waited: Duration::ZERO,
        ticks_per_ms,
    };
    let mut store = Store::new(&engine.engine, state);
    store.limiter(|s| &mut s.limits);
    // Epochs tick in wall time, also while the plugin waits in a host call. When the
    // deadline is reached, the time spent waiting since is given back; with none, it traps.
    store.epoch_deadline_callback(|mut cx| {
        let state = cx.data_mut();
        let waited = std::mem::take(&mut state.waited);
        match (waited.as_secs_f64() * 1000.0 * state.ticks_per_ms) as u64 {
            0 => Err(wasmtime::Trap::Interrupt.into()),
            credit => Ok(wasmtime::UpdateDeadline::Continue(credit)),
        }
    });
    store.set_epoch_deadline(ticks(deadline, ticks_per_ms));
    Ok((store, ticks_per_ms))
}

pub(crate) fn instantiate_error(e: wasmtime::Error) -> PluginError {
    let text = format!("{e:#}");
    if e.downcast_ref::<OverBudget>().is_some() || text.contains("maximum") || text.contains("pool") {
        PluginError::Capacity(text)
    } else {
        PluginError::Trap(text)
    }
}

/// What a failed call is: the plugin's fault (a trap, a limit of its own, its deadline), or
/// backpressure when the memory budget it grew into was spent (perhaps by other guilds).
pub(crate) fn call_error(e: wasmtime::Error) -> PluginError {
    match e.downcast_ref::<OverBudget>() {
        Some(over) => PluginError::Capacity(over.to_string()),
        None => PluginError::Trap(format!("{e:#}")),
    }
}

pub(crate) fn ticks(deadline: Duration, ticks_per_ms: f64) -> u64 {
    // +1: the current tick may be nearly over when the call starts.
    (deadline.as_secs_f64() * 1000.0 * ticks_per_ms).ceil() as u64 + 1
}
