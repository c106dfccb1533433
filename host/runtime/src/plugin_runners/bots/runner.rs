//! A bot's runner task: its guild's events, its timers and its subscriptions in; one
//! instance at a time, re-created after a fault or idleness; faults counted, and the bot
//! disabled at one too many.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use guildhall_core::clock::Clock;
use guildhall_core::model::{PluginRecord, User};
use guildhall_core::sync::LockUnpoisoned;
use guildhall_core::Snowflake;
use guildhall_data::DataService;
use guildhall_plugins::{
    BotHost, BotInstance, Channel as PluginChannel, GuildEvent as BotEvent, LoadedPlugin, PluginEngine, PluginError,
    Published, TimerFired,
};
use tokio::sync::mpsc;

use super::host::{GuildBotHost, WRITES_PER_MINUTE};
use super::timers::Timers;
use crate::addresses::guild_ref::{GuildMsg, GuildRef};
use crate::infrastructure::reads::MessageReads;
use crate::plugin_runners::plugin_support::{disable, guild_view, idle_too_long, Faults, PerMinute, INIT_DEADLINES};
use crate::plugin_runners::pubsub::{PluginBus, Publisher, Scope};

/// Bound on one event including the host calls it makes (sending messages, storage).
pub const EVENT_HOST_DEADLINE: Duration = Duration::from_secs(10);
/// Events queued for a bot; beyond it events are dropped (and counted in the log).
pub const EVENT_QUEUE: usize = 256;

/// The guild actor's end of a running bot.
pub struct BotRunner {
    pub plugin_id: Snowflake,
    events: mpsc::Sender<BotEvent>,
}

impl BotRunner {
    /// Never waits: a bot that cannot keep up misses events rather than slowing its guild.
    pub fn offer(&self, event: BotEvent) {
        match self.events.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(plugin = %self.plugin_id, "bot event queue full; event dropped")
            }
            // It ended (refused its configuration, disabled, or could not load): its guild
            // learns of it and reloads or stops it.
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::debug!(plugin = %self.plugin_id, "bot ended; event dropped")
            }
        }
    }

    /// The runner's task has ended.
    pub fn has_ended(&self) -> bool {
        self.events.is_closed()
    }
}

pub struct BotSpec {
    pub engine: Arc<PluginEngine>,
    pub plugin: LoadedPlugin,
    pub record: PluginRecord,
    pub bot_user: User,
    pub guild: GuildRef,
    pub data: Arc<DataService>,
    /// Where it reads messages: its guild's data service beside the guild, the cluster's
    /// channel-routed reads on another node.
    pub reads: Arc<dyn MessageReads>,
    pub channels: Arc<Vec<PluginChannel>>,
    /// Time the bot has per event for its own computation (`plugins.bot_event_deadline_ms`).
    pub event_deadline: Duration,
    /// How long an action waits for the guild actor (as a REST request does).
    pub guild_call_timeout: Duration,
    /// Where it publishes and subscribes (`None`: no pub/sub here).
    pub plugin_bus: Option<Arc<PluginBus>>,
    /// The process's clock: timers are due in its wall time, idleness and the write
    /// limit are on its monotonic time.
    pub clock: Arc<dyn Clock>,
}

pub fn spawn_bot(spec: BotSpec) -> BotRunner {
    let plugin_id = spec.record.id;
    spawn_loading(plugin_id, async move { Some(spec) })
}

/// Starts a runner whose bot is still being loaded: events offered meanwhile wait in its
/// queue. The runner ends at once if `load` gives nothing.
pub fn spawn_loading(
    plugin_id: Snowflake,
    load: impl std::future::Future<Output = Option<BotSpec>> + Send + 'static,
) -> BotRunner {
    let (tx, rx) = mpsc::channel(EVENT_QUEUE);
    tokio::spawn(async move {
        if let Some(spec) = load.await {
            run(spec, rx).await
        }
    });
    BotRunner { plugin_id, events: tx }
}

async fn run(spec: BotSpec, mut events: mpsc::Receiver<BotEvent>) {
    let (plugin_id, guild_id) = (spec.record.id, spec.record.guild_id);
    let pending = spec.data.store().timers(plugin_id, guild_id).await.unwrap_or_else(|e| {
        tracing::error!(plugin = %spec.record.name, guild = %guild_id, error = %e, "cannot load the bot's timers");
        Vec::new()
    });
    let timers = Arc::new(Mutex::new(Timers::load(pending)));
    let scope = Scope { guild: guild_id, plugin: spec.record.name.clone() };
    let mut published = match &spec.plugin_bus {
        Some(bus) => subscribe(bus, &scope, &spec.record).await,
        None => mpsc::channel(1).1,
    };
    let clock = spec.clock.clone();
    let host = Arc::new(GuildBotHost {
        publisher: spec.plugin_bus.clone().map(|bus| Publisher::new(bus, scope, clock.clone())),
        guild_id: spec.record.guild_id,
        plugin_id: spec.record.id,
        bot_user: spec.bot_user.clone(),
        guild: spec.guild.clone(),
        guild_call_timeout: spec.guild_call_timeout,
        data: spec.data.clone(),
        reads: spec.reads.clone(),
        timers: timers.clone(),
        sent: PerMinute::new(WRITES_PER_MINUTE, clock.clone()),
        kv_usage: tokio::sync::Mutex::new(None),
        clock: clock.clone(),
    });
    let mut instance: Option<BotInstance> = None;
    let mut faults = Faults::default();
    let mut last_used_ms = clock.monotonic_ms();
    let mut idle = tokio::time::interval(Duration::from_secs(60));
    loop {
        let next_due = timers.lock_unpoisoned().next_due();
        let batch: Vec<BotEvent> = tokio::select! {
            event = events.recv() => match event {
                Some(e) => vec![e],
                None => return, // the guild reloaded its plugins or stopped
            },
            Some(message) = published.recv() => vec![message],
            _ = sleep_until(next_due, &*clock) => {
                let due = timers.lock_unpoisoned().pop_due(clock.unix_ms());
                due.into_iter().map(|(id, payload)| BotEvent::Timer(TimerFired { id, payload })).collect()
            }
            _ = idle.tick() => {
                if instance.is_some() && idle_too_long(last_used_ms, clock.monotonic_ms()) {
                    instance = None;
                }
                continue;
            }
        };
        for event in batch {
            last_used_ms = clock.monotonic_ms();
            let result = deliver(&spec, &host, &mut instance, &event).await;
            if let BotEvent::Timer(fired) = &event {
                if let Err(e) = spec.data.store().delete_timer(plugin_id, guild_id, fired.id).await {
                    tracing::warn!(plugin = %spec.record.name, error = %e, "a fired timer stays stored; it may fire again");
                }
            }
            let Err(e) = result else {
                faults.good_call();
                continue;
            };
            if let PluginError::Config(reason) = &e {
                // Not a fault: the owner must fix the configuration; the bot idles till then.
                tracing::warn!(plugin = %spec.record.name, guild = %spec.record.guild_id, %reason, "bot refused its configuration");
                return;
            }
            if let PluginError::Capacity(reason) = &e {
                // Not a fault either: the host's instance pool is full (perhaps through
                // another guild); this event is missed, the next tries again.
                tracing::warn!(plugin = %spec.record.name, guild = %spec.record.guild_id, %reason, "no plugin instance free: event missed");
                continue;
            }
            tracing::warn!(plugin = %spec.record.name, guild = %spec.record.guild_id, error = %e, "bot fault");
            instance = None;
            if faults.record(clock.monotonic_ms()) {
                let disabled = disable(&**spec.data.store(), spec.record.clone(), e).await;
                spec.guild.send(GuildMsg::PluginDisabled(disabled)).await;
                return;
            }
        }
    }
}

/// The bot's subscriptions (from its configuration), as one queue of `published` events
/// (bounded: a bot that cannot keep up misses messages, as a slow NATS subscriber does).
async fn subscribe(bus: &Arc<PluginBus>, scope: &Scope, record: &PluginRecord) -> mpsc::Receiver<BotEvent> {
    let (tx, rx) = mpsc::channel(EVENT_QUEUE);
    let subscriptions = match bus.subscriptions(scope, &record.config) {
        Ok(patterns) => bus.subscribe(&patterns).await,
        Err(e) => Err(e),
    };
    let subscriptions = subscriptions.unwrap_or_else(|e| {
        tracing::warn!(plugin = %record.name, guild = %record.guild_id, error = %e, "bot subscriptions refused");
        Vec::new()
    });
    for mut subscription in subscriptions {
        let (tx, bus, scope) = (tx.clone(), bus.clone(), scope.clone());
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    _ = tx.closed() => return, // the runner ended: unsubscribe
                    message = subscription.next() => match message {
                        Some(m) => m,
                        None => return,
                    },
                };
                let Some(subject) = bus.relative(&scope, &message.subject) else { continue };
                let event = BotEvent::Published(Published { subject, payload: message.payload.to_vec() });
                if tx.try_send(event).is_err() {
                    tracing::debug!(plugin = %scope.plugin, "bot's pub/sub queue full; message dropped");
                }
            }
        });
    }
    rx
}

async fn deliver(
    spec: &BotSpec,
    host: &Arc<GuildBotHost>,
    instance: &mut Option<BotInstance>,
    event: &BotEvent,
) -> Result<(), PluginError> {
    if instance.is_none() {
        let init_deadline = spec.event_deadline * INIT_DEADLINES;
        let view =
            guild_view(spec.data.store().clone(), spec.record.guild_id, spec.channels.clone(), spec.clock.clone());
        let config = spec.record.config.to_string();
        let host: Arc<dyn BotHost> = host.clone();
        *instance = Some(
            BotInstance::new(&spec.engine, &spec.plugin, &spec.record.name, view, host, &config, init_deadline).await?,
        );
    }
    instance.as_mut().expect("just created").on_event(event, spec.event_deadline, EVENT_HOST_DEADLINE).await
}

/// Sleeps until the clock's wall time reaches `unix_ms` (timers are persisted in wall time).
async fn sleep_until(unix_ms: Option<u64>, clock: &dyn Clock) {
    match unix_ms {
        Some(t) => tokio::time::sleep(Duration::from_millis(t.saturating_sub(clock.unix_ms()))).await,
        None => std::future::pending().await,
    }
}
