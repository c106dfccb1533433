//! Bot plugins: one runner task per (guild, bot), fed the guild's events through a
//! bounded queue, with its own timers. The bot acts as its bot user, through the guild
//! actor like any member would (so moderation and fan-out apply to it too), within
//! limits: writes per minute (sends, edits, deletes, reactions), key-value bytes and keys, pending timers, time per event.

use guildhall_core::sync::LockUnpoisoned;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use guildhall_core::clock::{Clock, SystemClock};
use guildhall_core::event::GuildEvent;
use guildhall_core::guild::{Command, GuildError, MessageCommand, Reply};
use guildhall_core::model::{
    validate_content, Channel, ChannelId, Emoji, GuildId, Member, Message, MessageId, PluginRecord, PluginTimer, User,
    UserId,
};
use guildhall_core::Snowflake;
use guildhall_data::DataService;
use guildhall_plugins::{
    BotHost, BotInstance, BotMember, BotMessage, BotReaction, BotUser, Channel as PluginChannel,
    GuildEvent as BotEvent, HostError, LoadedPlugin, MessageRef, PluginEngine, PluginError, Published, TimerFired,
};
use guildhall_store::HistoryQuery;
use tokio::sync::mpsc;

use crate::guild_ref::{CallError, GuildMsg, GuildRef};
use crate::plugin_support::{disable, guild_view, Faults, PerMinute, IDLE_AFTER, INIT_DEADLINES};
use crate::pubsub::{PluginBus, PublishError, Publisher, Scope};
use crate::reads::MessageReads;

/// Bound on one event including the host calls it makes (sending messages, storage).
pub const EVENT_HOST_DEADLINE: Duration = Duration::from_secs(10);
/// Events queued for a bot; beyond it events are dropped (and counted in the log).
pub const EVENT_QUEUE: usize = 256;
/// Sends, edits, deletes and reactions a bot may make per minute, together: every one is a
/// stored write and an event to every session (a bot that edited its own message on each
/// update it heard once made 28,459 writes in 11 s when edits were free).
pub const WRITES_PER_MINUTE: usize = 30;
pub const MAX_TIMERS: usize = 100;
pub const MAX_TIMER_DELAY_MS: u64 = 7 * 24 * 3600 * 1000;
pub const MAX_KV_KEYS: usize = 1000;
pub const MAX_KV_KEY_BYTES: usize = 128;
pub const MAX_KV_VALUE_BYTES: usize = 64 << 10;
pub const MAX_KV_TOTAL_BYTES: usize = 1 << 20;

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

/// A bot's pending timers, due in wall-clock Unix milliseconds (they are persisted, so
/// they must mean the same after a restart). Storage holds the same set: a timer is
/// written when set and deleted when cancelled or after it fired (at least once: a crash
/// between firing and the delete fires it again after the restart).
#[derive(Default)]
struct Timers {
    due: BinaryHeap<Reverse<(u64, u64)>>,
    payloads: HashMap<u64, String>,
    next_id: u64,
}

impl Timers {
    fn load(pending: Vec<PluginTimer>) -> Timers {
        let mut timers = Timers::default();
        for t in pending {
            timers.next_id = timers.next_id.max(t.id);
            timers.due.push(Reverse((t.due_unix_ms, t.id)));
            timers.payloads.insert(t.id, t.payload);
        }
        timers
    }
    fn next_due(&self) -> Option<u64> {
        self.due.peek().map(|Reverse((t, _))| *t)
    }
    fn pop_due(&mut self, now_unix_ms: u64) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        while let Some(Reverse((t, id))) = self.due.peek().copied() {
            if t > now_unix_ms {
                break;
            }
            self.due.pop();
            if let Some(payload) = self.payloads.remove(&id) {
                out.push((id, payload)); // a cancelled timer has no payload left
            }
        }
        out
    }
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
    let host = Arc::new(GuildBotHost {
        publisher: spec.plugin_bus.clone().map(|bus| Publisher::new(bus, scope)),
        guild_id: spec.record.guild_id,
        plugin_id: spec.record.id,
        bot_user: spec.bot_user.clone(),
        guild: spec.guild.clone(),
        guild_call_timeout: spec.guild_call_timeout,
        data: spec.data.clone(),
        reads: spec.reads.clone(),
        timers: timers.clone(),
        sent: PerMinute::new(WRITES_PER_MINUTE),
        kv_usage: tokio::sync::Mutex::new(None),
    });
    let mut instance: Option<BotInstance> = None;
    let mut faults = Faults::default();
    let mut last_used = Instant::now();
    let mut idle = tokio::time::interval(Duration::from_secs(60));
    loop {
        let next_due = timers.lock_unpoisoned().next_due();
        let batch: Vec<BotEvent> = tokio::select! {
            event = events.recv() => match event {
                Some(e) => vec![e],
                None => return, // the guild reloaded its plugins or stopped
            },
            Some(message) = published.recv() => vec![message],
            _ = sleep_until(next_due) => {
                let due = timers.lock_unpoisoned().pop_due(SystemClock.unix_ms());
                due.into_iter().map(|(id, payload)| BotEvent::Timer(TimerFired { id, payload })).collect()
            }
            _ = idle.tick() => {
                if instance.is_some() && last_used.elapsed() > IDLE_AFTER {
                    instance = None;
                }
                continue;
            }
        };
        for event in batch {
            last_used = Instant::now();
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
            if faults.record(Instant::now()) {
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
        let view = guild_view(spec.data.store().clone(), spec.record.guild_id, spec.channels.clone());
        let config = spec.record.config.to_string();
        let host: Arc<dyn BotHost> = host.clone();
        *instance = Some(
            BotInstance::new(&spec.engine, &spec.plugin, &spec.record.name, view, host, &config, init_deadline).await?,
        );
    }
    instance.as_mut().expect("just created").on_event(event, spec.event_deadline, EVENT_HOST_DEADLINE).await
}

async fn sleep_until(unix_ms: Option<u64>) {
    match unix_ms {
        Some(t) => tokio::time::sleep(Duration::from_millis(t.saturating_sub(SystemClock.unix_ms()))).await,
        None => std::future::pending().await,
    }
}

/// What a bot may do in its guild.
struct GuildBotHost {
    /// Its pub/sub end (its namespace and rate limit).
    publisher: Option<Publisher>,
    guild_id: GuildId,
    plugin_id: Snowflake,
    bot_user: User,
    guild: GuildRef,
    /// How long an action waits for the guild actor.
    guild_call_timeout: Duration,
    data: Arc<DataService>,
    reads: Arc<dyn MessageReads>,
    timers: Arc<Mutex<Timers>>,
    /// When the bot's recent messages were sent (the per-minute limit).
    sent: PerMinute,
    /// (keys, bytes) in the bot's key-value store, loaded on first use.
    kv_usage: tokio::sync::Mutex<Option<(usize, usize)>>,
}

fn unavailable(e: impl std::fmt::Display) -> HostError {
    HostError::Unavailable(e.to_string())
}

pub fn to_bot_message(m: &Message) -> BotMessage {
    BotMessage {
        id: m.id.0,
        channel_id: m.channel_id.0,
        guild_id: m.guild_id.map(|g| g.0).unwrap_or(0),
        author: BotUser { id: m.author.id.0, username: m.author.username.clone(), bot: m.author.bot },
        content: m.content.clone(),
        timestamp: m.timestamp.clone(),
        edited_timestamp: m.edited_timestamp.clone(),
        mentions: m.mentions.iter().map(|u| u.id.0).collect(),
    }
}

pub fn to_bot_member(m: &Member) -> BotMember {
    BotMember {
        user: BotUser { id: m.user.id.0, username: m.user.username.clone(), bot: m.user.bot },
        nick: m.nick.clone(),
        joined_at: m.joined_at.clone(),
    }
}

/// The bot's view of a guild event, if it is one bots receive.
pub fn bot_event(event: &GuildEvent) -> Option<BotEvent> {
    let reaction = |user_id: &UserId, channel_id: &ChannelId, message_id: &MessageId, emoji: &Emoji| BotReaction {
        user_id: user_id.0,
        channel_id: channel_id.0,
        message_id: message_id.0,
        emoji: emoji.name.clone(),
    };
    match event {
        GuildEvent::MessageCreate { message, .. } => Some(BotEvent::MessageCreate(to_bot_message(message))),
        GuildEvent::MessageUpdate { message, .. } => Some(BotEvent::MessageUpdate(to_bot_message(message))),
        GuildEvent::MessageDelete { id, channel_id, .. } => {
            Some(BotEvent::MessageDelete(MessageRef { id: id.0, channel_id: channel_id.0 }))
        }
        GuildEvent::ReactionAdd { user_id, channel_id, message_id, emoji, .. } => {
            Some(BotEvent::ReactionAdd(reaction(user_id, channel_id, message_id, emoji)))
        }
        GuildEvent::ReactionRemove { user_id, channel_id, message_id, emoji, .. } => {
            Some(BotEvent::ReactionRemove(reaction(user_id, channel_id, message_id, emoji)))
        }
        GuildEvent::MemberAdd { member, .. } => Some(BotEvent::MemberJoin(to_bot_member(member))),
        _ => None,
    }
}

impl GuildBotHost {
    /// The channel, if it is one of this guild's.
    async fn own_channel(&self, channel_id: u64) -> Result<Channel, HostError> {
        let channel = self.data.store().channel(Snowflake(channel_id)).await.map_err(unavailable)?;
        match channel {
            None => Err(HostError::NotFound),
            Some(c) if c.guild_id != Some(self.guild_id) => Err(HostError::Denied("a channel of another guild".into())),
            Some(c) => Ok(c),
        }
    }

    /// A message of one of this guild's channels.
    async fn own_message(&self, channel_id: u64, message_id: u64) -> Result<Message, HostError> {
        let channel = self.own_channel(channel_id).await?;
        let message = self.reads.message(&channel, Snowflake(message_id)).await.map_err(unavailable)?;
        message.ok_or(HostError::NotFound)
    }

    async fn call(&self, command: impl Into<Command>) -> Result<Reply, HostError> {
        let command = command.into();
        match self.guild.call(command, self.guild_call_timeout).await {
            Ok(reply) => Ok(reply),
            Err(CallError::Guild(GuildError::Blocked(reason))) => Err(HostError::Denied(reason)),
            Err(CallError::Guild(GuildError::UnknownMessage)) => Err(HostError::NotFound),
            Err(CallError::Guild(GuildError::Storage(m))) => Err(HostError::Unavailable(m)),
            Err(CallError::Guild(e)) => Err(HostError::Denied(e.to_string())),
            Err(e) => Err(unavailable(e)),
        }
    }

    fn check_content(content: &str) -> Result<(), HostError> {
        validate_content(content).map_err(|e| HostError::Invalid(e.into()))
    }

    fn take_write_budget(&self) -> Result<(), HostError> {
        if !self.sent.take() {
            return Err(HostError::Limited(format!("{WRITES_PER_MINUTE} writes per minute")));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl BotHost for GuildBotHost {
    async fn send(&self, channel_id: u64, content: String) -> Result<BotMessage, HostError> {
        Self::check_content(&content)?;
        self.own_channel(channel_id).await?;
        self.take_write_budget()?;
        let command = MessageCommand::Create {
            author: self.bot_user.id,
            channel_id: Snowflake(channel_id),
            id: Snowflake::default(), // taken by the guild actor
            content,
            nonce: None,
            enforce_nonce: false,
        };
        match self.call(command).await? {
            Reply::Message(m) => Ok(to_bot_message(&m)),
            _ => Err(unavailable("unexpected reply")),
        }
    }

    async fn edit(&self, channel_id: u64, message_id: u64, content: String) -> Result<BotMessage, HostError> {
        Self::check_content(&content)?;
        let existing = self.own_message(channel_id, message_id).await?;
        self.take_write_budget()?;
        let edited_timestamp = SystemClock.iso_now();
        let command =
            MessageCommand::Edit { user: self.bot_user.id, existing: Box::new(existing), content, edited_timestamp };
        match self.call(command).await? {
            Reply::Message(m) => Ok(to_bot_message(&m)),
            _ => Err(unavailable("unexpected reply")),
        }
    }

    async fn delete(&self, channel_id: u64, message_id: u64) -> Result<(), HostError> {
        let existing = self.own_message(channel_id, message_id).await?;
        self.take_write_budget()?;
        self.call(MessageCommand::Delete { user: self.bot_user.id, existing: Box::new(existing) }).await.map(|_| ())
    }

    async fn recent(&self, channel_id: u64, limit: u32) -> Result<Vec<BotMessage>, HostError> {
        let channel = self.own_channel(channel_id).await?;
        let messages = self
            .reads
            .history(&channel, HistoryQuery::Latest, limit.clamp(1, 100) as usize)
            .await
            .map_err(unavailable)?;
        Ok(messages.iter().map(to_bot_message).collect())
    }

    async fn react(&self, channel_id: u64, message_id: u64, emoji: String, add: bool) -> Result<(), HostError> {
        let emoji = Emoji::parse(&emoji).map_err(|e| HostError::Invalid(e.into()))?;
        let existing = Box::new(self.own_message(channel_id, message_id).await?);
        let store = self.data.store();
        let (channel, message, user) = (Snowflake(channel_id), Snowflake(message_id), self.bot_user.id);
        if store.has_reacted(channel, message, &emoji.name, user).await.map_err(unavailable)? == add {
            return Ok(()); // already so: nothing to do, nobody to tell
        }
        self.take_write_budget()?;
        let command = if add {
            MessageCommand::AddReaction { user, existing, emoji }
        } else {
            MessageCommand::RemoveReaction { user, existing, emoji }
        };
        self.call(command).await.map(|_| ())
    }

    async fn kv_get(&self, key: String) -> Option<Vec<u8>> {
        self.data.store().kv_get(self.plugin_id, self.guild_id, &key).await.ok().flatten()
    }

    async fn kv_set(&self, key: String, value: Vec<u8>) -> Result<(), HostError> {
        if key.is_empty() || key.len() > MAX_KV_KEY_BYTES {
            return Err(HostError::Invalid(format!("keys are 1 to {MAX_KV_KEY_BYTES} bytes")));
        }
        if value.len() > MAX_KV_VALUE_BYTES {
            return Err(HostError::Limited(format!("values are at most {MAX_KV_VALUE_BYTES} bytes")));
        }
        let store = self.data.store();
        let mut usage = self.kv_usage.lock().await;
        if usage.is_none() {
            let keys = store.kv_keys(self.plugin_id, self.guild_id, "", MAX_KV_KEYS + 1).await.map_err(unavailable)?;
            *usage = Some((keys.len(), keys.iter().map(|(k, v)| k.len() + v).sum()));
        }
        let (keys, bytes) = usage.expect("loaded");
        let old = store.kv_get(self.plugin_id, self.guild_id, &key).await.map_err(unavailable)?;
        let (new_keys, new_bytes) = match &old {
            Some(v) => (keys, bytes - v.len() + value.len()),
            None => (keys + 1, bytes + key.len() + value.len()),
        };
        if new_keys > MAX_KV_KEYS || new_bytes > MAX_KV_TOTAL_BYTES {
            return Err(HostError::Limited(format!("at most {MAX_KV_KEYS} keys and {MAX_KV_TOTAL_BYTES} bytes")));
        }
        store.kv_put(self.plugin_id, self.guild_id, &key, value).await.map_err(unavailable)?;
        *usage = Some((new_keys, new_bytes));
        Ok(())
    }

    async fn kv_delete(&self, key: String) {
        let store = self.data.store();
        let old = store.kv_get(self.plugin_id, self.guild_id, &key).await.ok().flatten();
        if let (Some(old), Ok(())) = (old, store.kv_delete(self.plugin_id, self.guild_id, &key).await) {
            let mut usage = self.kv_usage.lock().await;
            if let Some((keys, bytes)) = *usage {
                *usage = Some((keys.saturating_sub(1), bytes.saturating_sub(key.len() + old.len())));
            }
        }
    }

    async fn kv_keys(&self, prefix: String) -> Vec<String> {
        let keys =
            self.data.store().kv_keys(self.plugin_id, self.guild_id, &prefix, MAX_KV_KEYS).await.unwrap_or_default();
        keys.into_iter().map(|(k, _)| k).collect()
    }

    async fn set_timer(&self, delay_ms: u64, payload: String) -> Result<u64, HostError> {
        if delay_ms > MAX_TIMER_DELAY_MS || payload.len() > MAX_KV_VALUE_BYTES {
            return Err(HostError::Invalid(format!(
                "timers are at most {MAX_TIMER_DELAY_MS} ms away, payloads 64 KiB"
            )));
        }
        let timer = {
            let mut timers = self.timers.lock_unpoisoned();
            if timers.payloads.len() >= MAX_TIMERS {
                return Err(HostError::Limited(format!("at most {MAX_TIMERS} pending timers")));
            }
            timers.next_id += 1;
            let timer = PluginTimer { id: timers.next_id, due_unix_ms: SystemClock.unix_ms() + delay_ms, payload };
            timers.payloads.insert(timer.id, timer.payload.clone());
            timers.due.push(Reverse((timer.due_unix_ms, timer.id)));
            timer
        };
        let id = timer.id;
        if let Err(e) = self.data.store().put_timer(self.plugin_id, self.guild_id, timer).await {
            self.timers.lock_unpoisoned().payloads.remove(&id);
            return Err(unavailable(e));
        }
        Ok(id)
    }

    async fn publish(&self, subject: String, payload: Vec<u8>) -> Result<(), HostError> {
        let Some(publisher) = &self.publisher else {
            return Err(HostError::Unavailable("pub/sub is not enabled on this host".into()));
        };
        publisher.publish(&subject, payload).await.map_err(|e| match e {
            PublishError::Invalid(m) => HostError::Invalid(m),
            PublishError::Denied(m) => HostError::Denied(m),
            PublishError::Limited(m) => HostError::Limited(m),
            PublishError::Unavailable(m) => HostError::Unavailable(m),
        })
    }

    async fn cancel_timer(&self, id: u64) {
        if self.timers.lock_unpoisoned().payloads.remove(&id).is_some() {
            if let Err(e) = self.data.store().delete_timer(self.plugin_id, self.guild_id, id).await {
                tracing::warn!(plugin = %self.plugin_id, error = %e, "a cancelled timer stays stored; it may fire later");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_in_order_and_cancelled_ones_do_not() {
        let now = 1_000_000;
        let pending = [(1u64, 30u64), (2, 10), (3, 20)].map(|(id, ms)| PluginTimer {
            id,
            due_unix_ms: now + ms,
            payload: format!("p{id}"),
        });
        let mut t = Timers::load(pending.to_vec());
        assert_eq!(t.next_id, 3, "new ids continue after the loaded ones");
        t.payloads.remove(&3);
        assert_eq!(t.next_due(), Some(now + 10));
        assert!(t.pop_due(now).is_empty());
        let fired = t.pop_due(now + 40);
        assert_eq!(fired, vec![(2, "p2".to_owned()), (1, "p1".to_owned())]);
    }

    #[test]
    fn dispatches_become_bot_events() {
        let channel = Channel::text(Snowflake(6), Snowflake(7), "general");
        let author = User::new(Snowflake(8), "bob", false);
        let message = Message::new(Snowflake(5), &channel, author.clone(), "hi".into(), None);
        let member = Some(Member::new(author.clone(), "x".into()));
        let created = GuildEvent::MessageCreate { message, member };
        let Some(BotEvent::MessageCreate(m)) = bot_event(&created) else { panic!() };
        assert_eq!((m.id, m.channel_id, m.guild_id, m.author.id, m.content.as_str()), (5, 6, 7, 8, "hi"));
        let deleted = GuildEvent::MessageDelete { id: Snowflake(5), channel_id: Snowflake(6), guild_id: None };
        let Some(BotEvent::MessageDelete(r)) = bot_event(&deleted) else { panic!() };
        assert_eq!((r.id, r.channel_id), (5, 6));
        let typing = GuildEvent::TypingStart {
            channel_id: Snowflake(6),
            guild_id: Some(Snowflake(7)),
            user_id: author.id,
            unix_s: 1,
            member: None,
        };
        assert!(bot_event(&typing).is_none());
    }
}
