//! Bot instances: one store per (guild, plugin), fed the guild's events one at a time.
//! What a bot can do (send messages, its key-value store, timers) goes through a
//! [`BotHost`] that the guild provides, scoped to that guild.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::HasSelf;
use wasmtime::Store;

pub use crate::bot_host::BotHost;
use crate::engine::Sandbox;
use crate::state::{
    call_error, instantiate_error, linker_with_wasi, new_store, ticks, wall_bound, GuildView, PluginState,
};
use crate::world::{LinkedWorld, LoadedPlugin, PluginError, PluginKind, WorldEntry, WorldInfo};

mod bindings {
    // The interfaces every world shares are generated once (`interfaces.rs`).
    crate::interfaces::world_bindings!("bot");
}

use crate::interfaces::guildhall::plugin::types;
use bindings::guildhall::plugin::{kv, messages, pubsub, timers};
pub use types::{
    GuildEvent, HostError, Member as BotMember, Message as BotMessage, MessageRef, Published, Reaction as BotReaction,
    TimerFired, User as BotUser,
};

type Pre = bindings::BotPre<PluginState>;

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

impl pubsub::Host for PluginState {
    async fn publish(&mut self, subject: String, payload: Vec<u8>) -> Result<(), HostError> {
        let bot = self.bot()?;
        self.off_the_clock(async move { bot.publish(subject, payload).await }).await
    }
}

pub(crate) fn entry(sandbox: &Sandbox) -> wasmtime::Result<Box<dyn WorldEntry>> {
    let mut linker = linker_with_wasi(sandbox)?;
    bindings::Bot::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    let info = WorldInfo {
        kind: PluginKind::Bot,
        export: "guildhall:plugin/events@0.1.0",
        imports: &["types", "log", "clock", "guild", "text", "messages", "kv", "timers", "pubsub"],
    };
    Ok(Box::new(LinkedWorld { info, linker, pre: Pre::new }))
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
        engine: &Sandbox,
        plugin: &LoadedPlugin,
        name: &str,
        view: GuildView,
        host: Arc<dyn BotHost>,
        config: &str,
        deadline: Duration,
    ) -> Result<BotInstance, PluginError> {
        let pre = plugin.prepared::<Pre>()?;
        let (mut store, ticks_per_ms) = new_store(engine, plugin.limits, view, name, Some(host), deadline)?;
        let bindings = pre.instantiate_async(&mut store).await.map_err(instantiate_error)?;
        let mut instance = BotInstance { store, bindings, ticks_per_ms };
        instance.store.set_epoch_deadline(ticks(deadline, ticks_per_ms));
        let init = instance.bindings.guildhall_plugin_events().call_init(&mut instance.store, config);
        match tokio::time::timeout(wall_bound(deadline), init).await {
            Ok(Ok(Ok(()))) => Ok(instance),
            Ok(Ok(Err(refused))) => Err(PluginError::Config(refused)),
            Ok(Err(trap)) => Err(call_error(trap)),
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
            Ok(Err(trap)) => Err(call_error(trap)),
            Err(_) => Err(PluginError::Trap("deadline exceeded in a host call".into())),
        }
    }
}
