//! Bot instances: one store per (guild, plugin), fed the guild's events one at a time.
//! What a bot can do (send messages, its key-value store, timers) goes through a
//! [`BotHost`] that the guild provides, scoped to that guild.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::engine::{LoadedPlugin, PluginEngine, PluginError};
use crate::moderator::GuildView;

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "bot",
        imports: { default: async },
        exports: { default: async },
    });
}

use bindings::guildhall::plugin::{clock, guild, kv, log, messages, timers, types};
pub use types::{
    GuildEvent, HostError, Member as BotMember, Message as BotMessage, MessageRef, TimerFired, User as BotUser,
};

/// What a bot may do, as its guild allows it. Every call is scoped to the bot's guild.
#[async_trait::async_trait]
pub trait BotHost: Send + Sync + 'static {
    async fn send(&self, channel_id: u64, content: String) -> Result<BotMessage, HostError>;
    async fn edit(&self, channel_id: u64, message_id: u64, content: String) -> Result<BotMessage, HostError>;
    async fn delete(&self, channel_id: u64, message_id: u64) -> Result<(), HostError>;
    async fn recent(&self, channel_id: u64, limit: u32) -> Result<Vec<BotMessage>, HostError>;
    async fn kv_get(&self, key: String) -> Option<Vec<u8>>;
    async fn kv_set(&self, key: String, value: Vec<u8>) -> Result<(), HostError>;
    async fn kv_delete(&self, key: String);
    async fn kv_keys(&self, prefix: String) -> Vec<String>;
    fn set_timer(&self, delay_ms: u64, payload: String) -> Result<u64, HostError>;
    fn cancel_timer(&self, id: u64);
}

pub struct BotState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    view: GuildView,
    plugin: String,
    host: Arc<dyn BotHost>,
}

impl WasiView for BotState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl types::Host for BotState {}

impl log::Host for BotState {
    async fn log(&mut self, level: log::Level, message: String) {
        let message: String = message.chars().take(1024).collect();
        let (plugin, guild) = (&self.plugin, self.view.guild_id);
        match level {
            log::Level::Debug => tracing::debug!(plugin, guild, "{message}"),
            log::Level::Info => tracing::info!(plugin, guild, "{message}"),
            log::Level::Warn => tracing::warn!(plugin, guild, "{message}"),
            log::Level::Error => tracing::error!(plugin, guild, "{message}"),
        }
    }
}

impl clock::Host for BotState {
    async fn now_ms(&mut self) -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
    }
}

impl guild::Host for BotState {
    async fn guild_id(&mut self) -> u64 {
        self.view.guild_id
    }
    async fn find_channel(&mut self, id: u64) -> Option<types::Channel> {
        self.view.channels.iter().find(|c| c.id == id).map(|c| types::Channel { id: c.id, name: c.name.clone() })
    }
    async fn list_channels(&mut self) -> Vec<types::Channel> {
        self.view.channels.iter().map(|c| types::Channel { id: c.id, name: c.name.clone() }).collect()
    }
    async fn find_member(&mut self, user_id: u64) -> Option<types::Member> {
        let m = (self.view.members)(user_id).await?;
        Some(types::Member {
            user: types::User { id: m.user.id, username: m.user.username, bot: m.user.bot },
            nick: m.nick,
            joined_at: m.joined_at,
        })
    }
}

impl messages::Host for BotState {
    async fn send(&mut self, channel_id: u64, content: String) -> Result<BotMessage, HostError> {
        self.host.send(channel_id, content).await
    }
    async fn edit(&mut self, channel_id: u64, message_id: u64, content: String) -> Result<BotMessage, HostError> {
        self.host.edit(channel_id, message_id, content).await
    }
    async fn delete(&mut self, channel_id: u64, message_id: u64) -> Result<(), HostError> {
        self.host.delete(channel_id, message_id).await
    }
    async fn recent(&mut self, channel_id: u64, limit: u32) -> Result<Vec<BotMessage>, HostError> {
        self.host.recent(channel_id, limit.min(100)).await
    }
}

impl kv::Host for BotState {
    async fn get(&mut self, key: String) -> Option<Vec<u8>> {
        self.host.kv_get(key).await
    }
    async fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), HostError> {
        self.host.kv_set(key, value).await
    }
    async fn delete(&mut self, key: String) {
        self.host.kv_delete(key).await
    }
    async fn keys(&mut self, prefix: String) -> Vec<String> {
        self.host.kv_keys(prefix).await
    }
}

impl timers::Host for BotState {
    async fn set(&mut self, delay_ms: u64, payload: String) -> Result<u64, HostError> {
        self.host.set_timer(delay_ms, payload)
    }
    async fn cancel(&mut self, id: u64) {
        self.host.cancel_timer(id)
    }
}

pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<BotState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    bindings::Bot::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    Ok(linker)
}

/// A live bot for one guild. After any error the caller must drop it.
pub struct BotInstance {
    store: Store<BotState>,
    bindings: bindings::Bot,
    ticks_per_ms: f64,
}

impl BotInstance {
    /// Instantiates (from the pool) and calls `init(config)` within `deadline`.
    pub async fn new(
        engine: &PluginEngine,
        plugin: &LoadedPlugin,
        name: &str,
        view: GuildView,
        host: Arc<dyn BotHost>,
        config: &str,
        deadline: Duration,
    ) -> Result<BotInstance, PluginError> {
        let pre = plugin.bot_pre.as_ref().ok_or(PluginError::UnknownWorld)?;
        let limits = StoreLimitsBuilder::new()
            .memory_size(engine.config.max_memory_bytes)
            .instances(32)
            .tables(32)
            .memories(4)
            .trap_on_grow_failure(true)
            .build();
        let state = BotState {
            wasi: WasiCtxBuilder::new().build(),
            table: ResourceTable::new(),
            limits,
            view,
            plugin: name.to_owned(),
            host,
        };
        let mut store = Store::new(&engine.engine, state);
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_trap();
        let ticks_per_ms = 1.0 / engine.config.tick.as_secs_f64() / 1000.0;
        store.set_epoch_deadline(crate::moderator::ticks(deadline, ticks_per_ms));
        let bindings = pre.instantiate_async(&mut store).await.map_err(crate::moderator::instantiate_error)?;
        let mut instance = BotInstance { store, bindings, ticks_per_ms };
        instance.store.set_epoch_deadline(crate::moderator::ticks(deadline, ticks_per_ms));
        match instance.bindings.guildhall_plugin_events().call_init(&mut instance.store, config).await {
            Ok(Ok(())) => Ok(instance),
            Ok(Err(refused)) => Err(PluginError::Config(refused)),
            Err(trap) => Err(PluginError::Trap(format!("{trap:#}"))),
        }
    }

    /// Delivers one event. The deadline bounds the bot's own computation; host calls it
    /// makes (sending a message) are bounded separately, by `host_deadline` overall.
    pub async fn on_event(
        &mut self,
        event: &GuildEvent,
        deadline: Duration,
        host_deadline: Duration,
    ) -> Result<(), PluginError> {
        self.store.set_epoch_deadline(crate::moderator::ticks(deadline, self.ticks_per_ms));
        let call = self.bindings.guildhall_plugin_events().call_on_event(&mut self.store, event);
        match tokio::time::timeout(host_deadline, call).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(trap)) => Err(PluginError::Trap(format!("{trap:#}"))),
            Err(_) => Err(PluginError::Trap("deadline exceeded in a host call".into())),
        }
    }
}
