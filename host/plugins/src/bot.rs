//! Bot instances: one store per (guild, plugin), fed the guild's events one at a time.
//! What a bot can do (send messages, its key-value store, timers) goes through a
//! [`BotHost`] that the guild provides, scoped to that guild.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Engine, Store};

use crate::engine::{LoadedPlugin, PluginEngine, PluginError};
use crate::host::{instantiate_error, new_store, ticks, wall_bound, GuildView, PluginState};

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "bot",
        imports: { default: async },
        exports: { default: async },
        // The interfaces every world shares are generated once, with the moderator's.
        with: {
            "guildhall:plugin/types": crate::moderator::bindings::guildhall::plugin::types,
            "guildhall:plugin/log": crate::moderator::bindings::guildhall::plugin::log,
            "guildhall:plugin/clock": crate::moderator::bindings::guildhall::plugin::clock,
            "guildhall:plugin/guild": crate::moderator::bindings::guildhall::plugin::guild,
            "guildhall:plugin/text": crate::moderator::bindings::guildhall::plugin::text,
        },
    });
}

use crate::moderator::bindings::guildhall::plugin::types;
use bindings::guildhall::plugin::{kv, messages, timers};
pub use types::{
    GuildEvent, HostError, Member as BotMember, Message as BotMessage, MessageRef, Reaction as BotReaction, TimerFired,
    User as BotUser,
};

/// What a bot may do, as its guild allows it. Every call is scoped to the bot's guild.
#[async_trait::async_trait]
pub trait BotHost: Send + Sync + 'static {
    async fn send(&self, channel_id: u64, content: String) -> Result<BotMessage, HostError>;
    async fn edit(&self, channel_id: u64, message_id: u64, content: String) -> Result<BotMessage, HostError>;
    async fn delete(&self, channel_id: u64, message_id: u64) -> Result<(), HostError>;
    async fn recent(&self, channel_id: u64, limit: u32) -> Result<Vec<BotMessage>, HostError>;
    async fn react(&self, channel_id: u64, message_id: u64, emoji: String, add: bool) -> Result<(), HostError>;
    async fn kv_get(&self, key: String) -> Option<Vec<u8>>;
    async fn kv_set(&self, key: String, value: Vec<u8>) -> Result<(), HostError>;
    async fn kv_delete(&self, key: String);
    async fn kv_keys(&self, prefix: String) -> Vec<String>;
    /// Timers outlive the instance: the host keeps them (and may persist them).
    async fn set_timer(&self, delay_ms: u64, payload: String) -> Result<u64, HostError>;
    async fn cancel_timer(&self, id: u64);
}

fn not_a_bot() -> HostError {
    HostError::Denied("only bots may do this".into())
}

impl PluginState {
    fn bot(&self) -> Result<Arc<dyn BotHost>, HostError> {
        self.bot.clone().ok_or_else(not_a_bot)
    }
}

// Every bot host call waits on the guild actor or storage: off the plugin's clock.
impl messages::Host for PluginState {
    async fn send(&mut self, channel_id: u64, content: String) -> Result<BotMessage, HostError> {
        let bot = self.bot()?;
        self.off_the_clock(async move { bot.send(channel_id, content).await }).await
    }
    async fn edit(&mut self, channel_id: u64, message_id: u64, content: String) -> Result<BotMessage, HostError> {
        let bot = self.bot()?;
        self.off_the_clock(async move { bot.edit(channel_id, message_id, content).await }).await
    }
    async fn delete(&mut self, channel_id: u64, message_id: u64) -> Result<(), HostError> {
        let bot = self.bot()?;
        self.off_the_clock(async move { bot.delete(channel_id, message_id).await }).await
    }
    async fn recent(&mut self, channel_id: u64, limit: u32) -> Result<Vec<BotMessage>, HostError> {
        let bot = self.bot()?;
        self.off_the_clock(async move { bot.recent(channel_id, limit.min(100)).await }).await
    }
    async fn react(&mut self, channel_id: u64, message_id: u64, emoji: String) -> Result<(), HostError> {
        let bot = self.bot()?;
        self.off_the_clock(async move { bot.react(channel_id, message_id, emoji, true).await }).await
    }
    async fn unreact(&mut self, channel_id: u64, message_id: u64, emoji: String) -> Result<(), HostError> {
        let bot = self.bot()?;
        self.off_the_clock(async move { bot.react(channel_id, message_id, emoji, false).await }).await
    }
}

impl kv::Host for PluginState {
    async fn get(&mut self, key: String) -> Option<Vec<u8>> {
        let bot = self.bot().ok()?;
        self.off_the_clock(async move { bot.kv_get(key).await }).await
    }
    async fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), HostError> {
        let bot = self.bot()?;
        self.off_the_clock(async move { bot.kv_set(key, value).await }).await
    }
    async fn delete(&mut self, key: String) {
        if let Ok(bot) = self.bot() {
            self.off_the_clock(async move { bot.kv_delete(key).await }).await
        }
    }
    async fn keys(&mut self, prefix: String) -> Vec<String> {
        match self.bot() {
            Ok(bot) => self.off_the_clock(async move { bot.kv_keys(prefix).await }).await,
            Err(_) => Vec::new(),
        }
    }
}

impl timers::Host for PluginState {
    async fn set(&mut self, delay_ms: u64, payload: String) -> Result<u64, HostError> {
        let bot = self.bot()?;
        self.off_the_clock(async move { bot.set_timer(delay_ms, payload).await }).await
    }
    async fn cancel(&mut self, id: u64) {
        if let Ok(bot) = self.bot() {
            self.off_the_clock(async move { bot.cancel_timer(id).await }).await
        }
    }
}

pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<PluginState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    bindings::Bot::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    Ok(linker)
}

/// A live bot for one guild. After any error the caller must drop it.
pub struct BotInstance {
    store: Store<PluginState>,
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
        let (mut store, ticks_per_ms) = new_store(engine, view, name, Some(host), deadline);
        let bindings = pre.instantiate_async(&mut store).await.map_err(instantiate_error)?;
        let mut instance = BotInstance { store, bindings, ticks_per_ms };
        instance.store.set_epoch_deadline(ticks(deadline, ticks_per_ms));
        let init = instance.bindings.guildhall_plugin_events().call_init(&mut instance.store, config);
        match tokio::time::timeout(wall_bound(deadline), init).await {
            Ok(Ok(Ok(()))) => Ok(instance),
            Ok(Ok(Err(refused))) => Err(PluginError::Config(refused)),
            Ok(Err(trap)) => Err(PluginError::Trap(format!("{trap:#}"))),
            Err(_) => Err(PluginError::Trap("init exceeded its deadline in a host call".into())),
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
        self.store.data_mut().start_the_clock();
        self.store.set_epoch_deadline(ticks(deadline, self.ticks_per_ms));
        let call = self.bindings.guildhall_plugin_events().call_on_event(&mut self.store, event);
        match tokio::time::timeout(host_deadline, call).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(trap)) => Err(PluginError::Trap(format!("{trap:#}"))),
            Err(_) => Err(PluginError::Trap("deadline exceeded in a host call".into())),
        }
    }
}
