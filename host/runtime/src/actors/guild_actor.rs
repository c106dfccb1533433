//! The guild actor: one tokio task per guild, driving a `GuildState`.
//!
//! It owns the guild's state and its sessions' handles, and does the IO the state machine
//! asks for: writes go to storage in ordered batches (one batch in flight at a time, so a
//! guild's writes are applied and acknowledged in the order it decided them, while many
//! messages share one commit), every caller of a stored batch is answered before its
//! fan-out, and dispatches are serialized once and handed to the relays (`fanout.rs`),
//! never offered per session here (a full session queue drops that session, never the guild).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::infrastructure::ids::Generator;
use guildhall_core::clock::Clock;
use guildhall_core::event::GuildEvent;
use guildhall_core::gateway::Status;
use guildhall_core::guild::{
    Audience, Effect, GuildState, GuildWrite, Input, ModerationCandidate, RequestId, SessionId, WriteError,
};
use guildhall_core::model::{audit_action, AuditLogEntry, PluginRecord};
use guildhall_core::stream::LogEntry;
use guildhall_core::Snowflake;
use guildhall_data::DataService;
use guildhall_plugins::{Channel as PluginChannel, PluginEngine, PluginKind};
use guildhall_store::{LoggedBatch, StoreError};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::actors::audit::{self, AuditLog};
use crate::actors::fanout::{Fanout, Sessions};
use crate::actors::ownership::{Ownership, OwnershipToken, PassedOn};
pub use crate::actors::relay::Relays;
use crate::addresses::guild_ref::Locate;
pub use crate::addresses::guild_ref::{CallError, GuildMsg, GuildRef};
use crate::addresses::reply::{NodeId, Replies, ReplyTo};
use crate::addresses::session::{SessionRef, SessionRoute, SessionRouter};
use crate::infrastructure::config::{GuildConfig, PluginsConfig};
use crate::infrastructure::event_relay::{relay_finished, EventStream, LogRelay, DRAIN_ON_STOP};
use crate::infrastructure::follow::follow;
use crate::infrastructure::metrics::{Metrics, Metrics as M};
use crate::plugin_runners::bots::{spawn_bot, BotSpec};
use crate::plugin_runners::moderation::{Disabled, Judgement, Moderation};
use crate::plugin_runners::plugin_support::load_component;
use crate::plugin_runners::pubsub::PluginBus;
use crate::plugin_runners::remote_bots::{BotPlacement, PlacedBot, RemoteBot};

/// What every guild actor needs from the process.
#[derive(Clone)]
pub struct GuildDeps {
    /// The process's clock (see `clock.rs`): idleness, fault windows, bots' timers.
    pub clock: Arc<dyn Clock>,
    /// Writes go through the data service, which keeps its coalesced reads honest.
    pub data: Arc<DataService>,
    pub metrics: Arc<Metrics>,
    /// Message ids are taken when the actor decides, so that within a guild id order
    /// and fan-out order are the same.
    pub ids: Arc<Generator>,
    pub config: GuildConfig,
    /// The plugin engine; `None` runs guilds without plugins.
    pub plugins: Option<Arc<PluginEngine>>,
    pub plugin_limits: PluginsConfig,
    pub audit: AuditLog,
    /// This node's callers waiting for answers (the handles the directory gives out).
    pub replies: Arc<Replies>,
    /// How to deliver to a session that connects.
    pub sessions: Arc<dyn SessionRouter>,
    /// Where handles find the guild's current actor after this one stopped (the directory).
    pub locator: Option<Weak<dyn Locate>>,
    /// The fence that keeps a guild on one node (a cluster's); `None` on a single host.
    pub ownership: Option<Arc<dyn Ownership>>,
    /// Where bots publish and subscribe (`None`: no pub/sub).
    pub plugin_bus: Option<Arc<PluginBus>>,
    /// Where bots run (a cluster's, with `plugins.bot_placement = "spread"`); `None`: beside
    /// their guild.
    pub bot_placement: Option<Arc<dyn BotPlacement>>,
    /// The durable stream of message events (`None`: messages make no events, as in tools
    /// and tests that do not need them).
    pub events: Option<EventStream>,
    /// This node's relays: the fan-out path to its sessions.
    pub relays: Relays,
}

type BatchFuture = Pin<Box<dyn Future<Output = Result<LoggedBatch, FencedOff>> + Send>>;

/// A write batch in flight: its requests, the log entries numbered for it (with the index
/// of their write), and the storage call.
type InFlight = (Vec<RequestId>, Vec<(usize, LogEntry)>, BatchFuture);

struct GuildActor {
    state: GuildState,
    /// The connected sessions: their address and how to reach them.
    sessions: Sessions,
    /// Hands events to the relays and other nodes.
    fanout: Fanout,
    /// Where each command in progress is answered.
    reply_to: HashMap<RequestId, ReplyTo>,
    replies: Arc<Replies>,
    /// Resolves the sessions that connect to their handles (once, at connect).
    router: Arc<dyn SessionRouter>,
    next_request: RequestId,
    /// Writes decided but not yet sent to storage, in decision order.
    queued: VecDeque<(RequestId, GuildWrite)>,
    clock: Arc<dyn Clock>,
    data: Arc<DataService>,
    metrics: Arc<Metrics>,
    ids: Arc<Generator>,
    config: GuildConfig,
    plugins: Option<Arc<PluginEngine>>,
    plugin_limits: PluginsConfig,
    plugin_bus: Option<Arc<PluginBus>>,
    bot_placement: Option<Arc<dyn BotPlacement>>,
    audit: AuditLog,
    moderation: Option<Moderation>,
    /// Messages waiting for the moderators, in order.
    to_moderate: VecDeque<(RequestId, ModerationCandidate)>,
    /// The channels as plugins see them, rebuilt when the channel count changes.
    plugin_channels: Arc<Vec<PluginChannel>>,
    /// Running bot plugins, here or on other nodes; dropping one stops it.
    bots: Vec<PlacedBot>,
    /// This actor's own address, for the bots it starts (they act through it).
    handle: GuildRef,
    /// Evicted: the mailbox is closed and what was in it is being handled.
    stopping: bool,
    /// In a cluster: the fence and this actor's token (checked before every write batch,
    /// given back when the actor has stopped).
    fence: Option<Fence>,
    /// The guild's message event log (`None` without a stream).
    log: Option<LogRelay>,
}

/// An ownership token and the fence that issued it.
#[derive(Clone)]
pub struct Fence {
    pub ownership: Arc<dyn Ownership>,
    pub token: OwnershipToken,
}

/// A fence's refusal of a batch: this node no longer owns the actor (another node may run
/// it now, or this node's lease lapsed). Nothing of the batch was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this node no longer owns the actor")]
pub struct FencedOff;

impl FencedOff {
    /// What each write of a refused batch reports to the state machine (a 503 to callers).
    pub fn as_write_error(self) -> WriteError {
        WriteError::Unavailable(self.to_string())
    }
}

impl Fence {
    /// Applies `writes` (with their log entries) only if this node still owns the actor;
    /// otherwise refuses them all.
    pub async fn apply(
        &self,
        data: &DataService,
        writes: Vec<GuildWrite>,
        log: Vec<LogEntry>,
    ) -> Result<LoggedBatch, FencedOff> {
        if !self.ownership.still_owned(&self.token).await {
            return Err(FencedOff);
        }
        Ok(data.apply_logged_batch(writes, log).await)
    }

    /// Applies a batch through the fence if there is one.
    pub async fn apply_through(
        fence: Option<Fence>,
        data: &DataService,
        writes: Vec<GuildWrite>,
        log: Vec<LogEntry>,
    ) -> Result<LoggedBatch, FencedOff> {
        match fence {
            Some(fence) => fence.apply(data, writes, log).await,
            None => Ok(data.apply_logged_batch(writes, log).await),
        }
    }
}

/// Starts a guild's actor. The task ends when the actor stopped (evicted when idle) and
/// every write it accepted is stored and answered.
pub fn spawn_guild(
    state: GuildState,
    deps: GuildDeps,
    fence: Option<Fence>,
    log: Option<LogRelay>,
) -> (GuildRef, JoinHandle<()>) {
    let id = state.guild().id;
    let (tx, rx) = mpsc::channel(deps.config.mailbox);
    let handle = GuildRef::local(id, tx.clone(), deps.replies.clone(), deps.locator.clone());
    let actor = GuildActor {
        state,
        sessions: HashMap::new(),
        fanout: Fanout::new(deps.relays, handle.clone(), deps.sessions.clone(), deps.metrics.clone()),
        reply_to: HashMap::new(),
        replies: deps.replies,
        router: deps.sessions,
        next_request: 1,
        queued: VecDeque::new(),
        clock: deps.clock,
        data: deps.data,
        metrics: deps.metrics,
        ids: deps.ids,
        config: deps.config,
        plugins: deps.plugins,
        plugin_limits: deps.plugin_limits,
        plugin_bus: deps.plugin_bus,
        bot_placement: deps.bot_placement,
        audit: deps.audit,
        moderation: None,
        to_moderate: VecDeque::new(),
        plugin_channels: Arc::new(Vec::new()),
        bots: Vec::new(),
        handle: handle.clone(),
        stopping: false,
        fence,
        log,
    };
    actor.metrics.guilds_loaded.fetch_add(1, Relaxed);
    let task = tokio::spawn(actor.run(rx));
    (handle, task)
}

/// Whether a command's caller has stopped waiting at `now_unix_ms` (see `GuildMsg::Command`).
pub(crate) fn expired(expires_at_ms: u64, now_unix_ms: u64) -> bool {
    expires_at_ms != 0 && now_unix_ms >= expires_at_ms
}

/// A store's refusal as the state machine hears it.
pub(crate) fn write_error(e: StoreError) -> WriteError {
    match e {
        StoreError::NotFound => WriteError::NotFound,
        other => WriteError::Unavailable(other.to_string()),
    }
}

/// Sends a message to the guild's next incarnation, from a task: here once this actor
/// has ended, or on another node once it took the guild over (which can take a few seconds
/// while ownership passes). Retried for a bounded time ([`follow`]), so that a session
/// does not silently stop hearing from a guild that moved; past it, a warning. A session
/// that is gone meanwhile is ignored by the next actor.
fn pass_on(guild: GuildRef, msg: impl Fn() -> GuildMsg + Send + 'static) {
    tokio::spawn(async move {
        let id = guild.id;
        let attempt = move || {
            let (guild, msg) = (guild.clone(), msg());
            async move { guild.send(msg).await }
        };
        if !follow(attempt).await {
            tracing::warn!(guild = %id, "a session could not follow its guild");
        }
    });
}

fn connect_msg(session: SessionRef, status: Status) -> impl Fn() -> GuildMsg + Send + 'static {
    move || GuildMsg::Connect { session, status }
}

impl GuildActor {
    async fn run(mut self, mut rx: mpsc::Receiver<GuildMsg>) {
        // Sessions handed over with the guild come first: they miss nothing it decides.
        let inherited = self.fence.as_mut().map(|f| std::mem::take(&mut f.token.inherited)).unwrap_or_default();
        for PassedOn { session, status } in inherited {
            self.connect_session(session, status);
        }
        self.reload_plugins().await;
        if let Some(log) = &mut self.log {
            log.kick();
        }
        let mut inflight: Option<InFlight> = None;
        let idle_limit_ms = self.config.idle_evict_ms;
        let period = match idle_limit_ms {
            0 => Duration::from_secs(60),
            ms => Duration::from_millis(ms) / 4,
        };
        let mut housekeeping = tokio::time::interval(period.clamp(Duration::from_millis(10), Duration::from_secs(60)));
        let mut last_active_ms = self.clock.monotonic_ms();
        let mut mailbox_open = true;
        loop {
            self.moderate_pending().await;
            self.fanout.flush().await;
            if !mailbox_open && inflight.is_none() && self.queued.is_empty() && self.to_moderate.is_empty() {
                break; // stopped, and everything it accepted is stored and answered
            }
            if inflight.is_none() && !self.queued.is_empty() {
                inflight = Some(self.start_batch());
            }
            tokio::select! {
                biased;
                results = async { inflight.as_mut().expect("guarded").2.as_mut().await }, if inflight.is_some() => {
                    let (requests, numbered, _) = inflight.take().expect("guarded");
                    // Idle is counted from the end of the last work, not its start: a slow
                    // write does not eat into the idle time.
                    last_active_ms = self.clock.monotonic_ms();
                    let fenced_off = results.is_err();
                    if fenced_off && mailbox_open && !self.stopping {
                        // Another node may run the guild now, or this node's lease lapsed:
                        // stop (answering what is queued) rather than refuse every write from
                        // here on; the next use starts an actor that takes ownership afresh.
                        tracing::warn!(guild = %self.state.guild().id, "fenced off: the actor stops");
                        rx.close();
                        self.stopping = true;
                    }
                    let batch = results.unwrap_or_else(|fenced_off| {
                        LoggedBatch::failed(StoreError::Unavailable(fenced_off.to_string()), requests.len())
                    });
                    if let Some(log) = &mut self.log {
                        log.stored(numbered, &batch);
                    }
                    let results: Vec<Result<(), WriteError>> =
                        batch.writes.into_iter().map(|r| r.map_err(write_error)).collect();
                    // Every caller of the batch is answered before anything of it is fanned
                    // out: the last message of a batch does not wait for the others' fan-out.
                    let mut fx = Vec::new();
                    for (request, result) in requests.into_iter().zip(results) {
                        fx.extend(self.state.handle(Input::Persisted { request, result }));
                    }
                    let (replies, rest): (Vec<_>, Vec<_>) =
                        fx.into_iter().partition(|e| matches!(e, Effect::Reply { .. }));
                    self.run_effects(replies);
                    self.run_effects(rest);
                }
                msg = rx.recv(), if mailbox_open => match msg {
                    Some(GuildMsg::HandOff) => {
                        rx.close();
                        self.stopping = true;
                    }
                    Some(msg) => {
                        last_active_ms = self.clock.monotonic_ms();
                        self.on_msg(msg).await;
                    }
                    None => mailbox_open = false,
                },
                () = relay_finished(&mut self.log) => {}
                _ = housekeeping.tick() => {
                    let now_ms = self.clock.monotonic_ms();
                    if let Some(m) = &mut self.moderation {
                        m.hibernate_idle(now_ms);
                    }
                    let idle = idle_limit_ms != 0 && now_ms.saturating_sub(last_active_ms) >= idle_limit_ms;
                    if mailbox_open && idle && inflight.is_none() && self.is_idle() {
                        // New sends fail from here on, and their handles go to the directory
                        // for a fresh actor; what is already in the mailbox is still handled.
                        rx.close();
                        self.stopping = true;
                        M::inc(&self.metrics.guilds_evicted);
                    }
                }
            }
            // What the input fanned out goes to the relays before the next input.
            self.fanout.flush().await;
        }
        // Its events go to the stream before another node may own the guild (what does not
        // in time stays stored: the next incarnation relays it).
        if let Some(log) = &mut self.log {
            log.drain(DRAIN_ON_STOP).await;
        }
        // Handed off with sessions connected: they live on in the next incarnation. From
        // tasks: the handle finds this mailbox closed and asks the directory, which starts
        // the next actor once this task has ended.
        let mut connected: Vec<PassedOn> = Vec::with_capacity(self.sessions.len());
        for (id, (session, _)) in self.sessions.drain() {
            let status = self.state.session_status(id).unwrap_or(Status::Online);
            connected.push(PassedOn { session, status });
        }
        if let Some(Fence { ownership, token }) = self.fence.take() {
            // Everything it accepted is stored and answered; the sessions go with the
            // ownership, so the next owner connects them before it takes any command.
            let handed_over = connected.len();
            connected = ownership.hand_over(token, connected).await;
            if connected.len() < handed_over {
                self.handle.start_successor(); // its inherited sessions hear from it again
            }
        }
        for PassedOn { session, status } in connected {
            pass_on(self.handle.clone(), connect_msg(session, status));
        }
        self.metrics.guilds_loaded.fetch_sub(1, Relaxed);
    }

    /// Nothing depends on this actor staying up: no session, no bot (their timers fire only
    /// while it runs), nothing waiting for storage or moderators, no caller waiting.
    fn is_idle(&self) -> bool {
        self.sessions.is_empty()
            && self.bots.is_empty()
            && self.queued.is_empty()
            && self.to_moderate.is_empty()
            && self.log.as_ref().is_none_or(LogRelay::is_drained)
            && self.reply_to.is_empty()
    }

    async fn reload_plugins(&mut self) {
        let Some(engine) = self.plugins.clone() else { return };
        let store = self.data.store().clone();
        let guild_id = self.state.guild().id;
        // Listed once for moderators and bots; on failure both stay off until the next reload.
        let records = store.guild_plugins(guild_id).await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot list plugins; they stay off until they load");
            Vec::new()
        });
        let deadline = Duration::from_millis(self.plugin_limits.moderation_deadline_ms);
        let moderation =
            Moderation::load(engine.clone(), store.clone(), guild_id, &records, deadline, self.clock.clone()).await;
        let enabled = moderation.active();
        self.moderation = enabled.then_some(moderation);
        let fx = self.state.handle(Input::SetModeration { enabled });
        self.run_effects(fx);

        self.start_bots(&engine, records).await;
    }

    /// (Re)starts the guild's enabled bots, each where the placement puts it.
    async fn start_bots(&mut self, engine: &Arc<PluginEngine>, records: Vec<PluginRecord>) {
        self.bots.clear(); // their runners end when their queues close (or get a Stop)
        let store = self.data.store().clone();
        let channels = Arc::new(self.plugin_channel_list());
        for record in records.into_iter().filter(|r| r.enabled && r.kind == PluginKind::Bot) {
            let Some(bot_user) = store.user(record.id).await.ok().flatten().map(|r| r.user) else {
                tracing::error!(plugin = %record.name, "bot user missing");
                continue;
            };
            if let Some((node, placement)) = self.bot_node(record.id) {
                self.bots.push(PlacedBot::There(RemoteBot::start(node, placement, record, bot_user, &channels)));
                continue;
            }
            match load_component(engine, &*store, &record).await {
                Ok(plugin) => {
                    let spec = BotSpec {
                        engine: engine.clone(),
                        plugin,
                        record,
                        bot_user,
                        guild: self.handle.clone(),
                        data: self.data.clone(),
                        reads: self.data.clone(),
                        channels: channels.clone(),
                        event_deadline: Duration::from_millis(self.plugin_limits.bot_event_deadline_ms),
                        guild_call_timeout: Duration::from_millis(self.plugin_limits.guild_call_timeout_ms),
                        plugin_bus: self.plugin_bus.clone(),
                        clock: self.clock.clone(),
                    };
                    self.bots.push(PlacedBot::Here(spawn_bot(spec)));
                }
                Err(e) => tracing::error!(plugin = %record.name, error = %e, "cannot load bot"),
            }
        }
    }

    /// The other node that should run this bot, if any.
    fn bot_node(&self, plugin: Snowflake) -> Option<(NodeId, Arc<dyn BotPlacement>)> {
        let placement = self.bot_placement.as_ref()?;
        let node = placement.node_for(plugin).filter(|n| *n != placement.me())?;
        Some((node, placement.clone()))
    }

    /// The cluster's view changed: bots whose node is no longer where the placement puts
    /// them start again there.
    async fn place_bots(&mut self) {
        let misplaced = self.bots.iter().any(|bot| self.bot_node(bot.plugin_id()).map(|(n, _)| n) != bot.node());
        let Some(engine) = self.plugins.clone().filter(|_| misplaced) else { return };
        match self.data.store().guild_plugins(self.state.guild().id).await {
            Ok(records) => self.start_bots(&engine, records).await,
            Err(e) => tracing::error!(error = %e, "cannot list plugins to place the bots anew"),
        }
    }

    fn plugin_channel_list(&self) -> Vec<PluginChannel> {
        self.state.channels().map(|c| PluginChannel { id: c.id.0, name: c.name.clone().unwrap_or_default() }).collect()
    }

    /// Runs the moderators for each message waiting for them, in order, and feeds the
    /// verdicts back to the state machine.
    async fn moderate_pending(&mut self) {
        while let Some((request, candidate)) = self.to_moderate.pop_front() {
            if self.plugin_channels.len() != self.state.channels().count() {
                self.plugin_channels = Arc::new(self.plugin_channel_list());
            }
            let judgement = match &mut self.moderation {
                Some(moderation) => {
                    let fail_closed = self.state.guild().moderation_fail_closed;
                    moderation.judge(&candidate, &self.plugin_channels, fail_closed).await
                }
                None => Judgement::default(),
            };
            for notice in judgement.disabled {
                self.audit_plugin_disabled(notice);
            }
            self.metrics.plugin_pool_full.fetch_add(judgement.pool_full as u64, Relaxed);
            for note in judgement.notes {
                let (guild_id, author) = (self.state.guild().id, candidate.author.id);
                if let Some(mut entry) = self.audit.entry(guild_id, None, Some(author), note.action_type) {
                    entry.reason = Some(note.reason);
                    entry.options.insert("channel_id".into(), json!(candidate.channel_id));
                    entry.options.insert("plugin_id".into(), json!(note.plugin_id));
                    entry.options.insert("auto_moderation_rule_name".into(), json!(note.plugin_name));
                    self.record_audit(entry);
                }
            }
            let verdict = judgement.verdict;
            if self.moderation.as_ref().is_some_and(|m| !m.active()) {
                self.moderation = None;
                let fx = self.state.handle(Input::SetModeration { enabled: false });
                self.run_effects(fx);
            }
            let fx = self.state.handle(Input::Moderated { request, verdict });
            self.run_effects(fx);
        }
    }

    /// Tells the owner (their sessions), the log and the audit log that a plugin was disabled.
    fn audit_plugin_disabled(&mut self, notice: Disabled) {
        let guild_id = self.state.guild().id;
        tracing::warn!(guild = %guild_id, plugin = %notice.record.name, reason = %notice.reason, "plugin disabled");
        let action = audit_action::INTEGRATION_UPDATE;
        if let Some(mut entry) = self.audit.entry(guild_id, None, Some(notice.record.id), action) {
            entry.reason = Some(notice.reason);
            entry.changes.extend(audit::change("enabled", json!(true), json!(false)));
            entry.options.insert("plugin_name".into(), json!(notice.record.name));
            self.record_audit(entry);
        }
    }

    /// Stores an audit entry (off the message path) and sends it to the owner's sessions.
    fn record_audit(&mut self, entry: AuditLogEntry) {
        let event = GuildEvent::AuditLogEntryCreate(Box::new(entry.clone()));
        self.audit.append(entry);
        let owner = self.state.guild().owner_id;
        self.run_effects(vec![Effect::Dispatch { audience: Audience::User(owner), event: Box::new(event) }]);
    }

    fn start_batch(&mut self) -> InFlight {
        let n = self.queued.len().min(self.config.max_write_batch);
        let (requests, writes): (Vec<_>, Vec<_>) = self.queued.drain(..n).unzip();
        let numbered = self.log.as_mut().map(|log| log.number(&writes)).unwrap_or_default();
        let entries = numbered.iter().map(|(_, e)| e.clone()).collect();
        let (data, fence) = (self.data.clone(), self.fence.clone());
        let batch = async move { Fence::apply_through(fence, &data, writes, entries).await };
        (requests, numbered, Box::pin(batch))
    }

    async fn on_msg(&mut self, msg: GuildMsg) {
        match msg {
            // A stopping actor starts no plugins: its next incarnation loads them.
            GuildMsg::PluginsChanged if self.stopping => {}
            GuildMsg::PluginsChanged => self.reload_plugins().await,
            GuildMsg::PlaceBots if self.stopping => {}
            GuildMsg::PlaceBots => self.place_bots().await,
            GuildMsg::PluginDisabled(notice) => {
                self.audit_plugin_disabled(notice);
                if !self.stopping {
                    self.reload_plugins().await;
                }
            }
            GuildMsg::Connect { session, status } if self.stopping => {
                // The session must live on in the next incarnation: sent from a task, the
                // handle finds the mailbox closed and asks the directory, which starts the
                // next actor once this one has finished.
                pass_on(self.handle.clone(), connect_msg(session, status));
            }
            GuildMsg::Move { from, to, status } if self.stopping => {
                pass_on(self.handle.clone(), move || GuildMsg::Move { from, to, status });
            }
            GuildMsg::Move { from, to, status } => self.move_session(from, to, status),
            GuildMsg::Audit(entry) => self.record_audit(entry),
            GuildMsg::Command { mut command, reply_to, expires_at_ms } => {
                if expired(expires_at_ms, self.clock.unix_ms()) {
                    Metrics::inc(&self.metrics.commands_expired);
                    return self.replies.deliver(reply_to, Err(guildhall_core::guild::GuildError::Busy));
                }
                if let Err(e) = self.ids.stamp(&mut command) {
                    return self.replies.deliver(reply_to, Err(e));
                }
                let request = self.next_request;
                self.next_request += 1;
                self.reply_to.insert(request, reply_to);
                let fx = self.state.handle(Input::Command { request, command });
                self.run_effects(fx);
            }
            GuildMsg::Connect { session, status } => self.connect_session(session, status),
            GuildMsg::Disconnect { session } => {
                self.sessions.remove(&session);
                let fx = self.state.handle(Input::SessionDisconnect { session });
                self.run_effects(fx);
            }
            GuildMsg::HandOff => debug_assert!(false, "the run loop takes hand-offs"),
            GuildMsg::Presence { session, status } => {
                let fx = self.state.handle(Input::PresenceUpdate { session, status });
                self.run_effects(fx);
            }
        }
    }

    fn connect_session(&mut self, session: SessionRef, status: Status) {
        let SessionRef { id, user, intents } = session;
        let Some(route) = self.router.route(id) else {
            return; // gone before it got here
        };
        self.sessions.insert(id, (session, route));
        let fx = self.state.handle(Input::SessionConnect { session: id, user, intents, status });
        if !self.state.has_session(id) {
            self.sessions.remove(&id); // not a member (any more)
        }
        self.run_effects(fx);
    }

    /// A session moved to another node (see [`GuildMsg::Move`]).
    fn move_session(&mut self, from: SessionId, to: SessionRef, status: Status) {
        let guild = self.state.guild().id;
        let old = self.sessions.remove(&from).map(|(_, route)| route);
        // The marker follows everything sent to `from` so far, on the same path.
        match old.clone().or_else(|| self.router.route(from)) {
            Some(SessionRoute::Local(handle)) => self.fanout.moved(handle, guild),
            Some(SessionRoute::Remote(node)) => self.router.moved(node, guild, from),
            None => {}
        }
        if old.is_none() || !self.state.has_session(from) {
            // Not connected here (it was still being passed on): connect it afresh.
            return self.connect_session(to, status);
        }
        match self.router.route(to.id) {
            Some(route) => {
                self.sessions.insert(to.id, (to, route));
                let fx = self.state.handle(Input::SessionMoved { from, to: to.id });
                self.run_effects(fx);
            }
            None => {
                let fx = self.state.handle(Input::SessionDisconnect { session: from });
                self.run_effects(fx);
            }
        }
    }

    fn run_effects(&mut self, fx: Vec<Effect>) {
        let mut work: VecDeque<Effect> = fx.into();
        while let Some(effect) = work.pop_front() {
            match effect {
                Effect::Persist { request, write } => {
                    if self.queued.len() >= self.config.max_pending_writes {
                        let result = Err(WriteError::Unavailable("guild write queue is full".into()));
                        work.extend(self.state.handle(Input::Persisted { request, result }));
                    } else {
                        self.queued.push_back((request, write));
                    }
                }
                Effect::Reply { request, result } => {
                    if let Some(to) = self.reply_to.remove(&request) {
                        self.replies.deliver(to, result); // the caller may have given up; fine
                    }
                }
                Effect::Dispatch { audience, event } => {
                    if matches!(*event, GuildEvent::MessageCreate { .. }) {
                        M::inc(&self.metrics.messages_created);
                    }
                    // A plugin bot is a member too (its user id is its plugin id): it hears
                    // a channel only if it may view it.
                    for bot in &self.bots {
                        if self.state.hears(bot.plugin_id(), &audience) {
                            bot.offer(&event);
                        }
                    }
                    self.fanout.dispatch(&self.state, &self.sessions, &audience, &event);
                }
                Effect::ForgetSession(session) => {
                    self.sessions.remove(&session);
                }
                Effect::Moderate { request, candidate } => self.to_moderate.push_back((request, candidate)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addresses::registry::SessionRegistry;
    use crate::addresses::session::{Delivered, SessionHandle, SessionMsg, SessionShared, ToUser};
    use crate::infrastructure::clock::TokioClock;
    use guildhall_core::gateway::{intents, DispatchPrefix};
    use guildhall_core::guild::{GuildCommand, GuildError, MessageCommand, Reply};
    use guildhall_core::model::{Channel, Guild, GuildId, Member, User, UserId};
    use guildhall_core::Snowflake;
    use guildhall_store_redb::EmbeddedStore;

    const GENERAL: Snowflake = Snowflake(100);

    fn user(id: u64) -> User {
        User::new(Snowflake(id), format!("u{id}"), false)
    }

    async fn guild_with(members: &[u64]) -> (GuildRef, Arc<Metrics>, std::path::PathBuf, Arc<SessionRegistry>) {
        let sessions = Arc::new(SessionRegistry::default());
        let (guild, metrics, dir) = guild_routed(members, sessions.clone()).await;
        (guild, metrics, dir, sessions)
    }

    fn temp_dir() -> std::path::PathBuf {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, Relaxed);
        std::env::temp_dir().join(format!("guildhall-actor-test-{}-{n}", std::process::id()))
    }

    async fn guild_routed(
        members: &[u64],
        router: Arc<dyn SessionRouter>,
    ) -> (GuildRef, Arc<Metrics>, std::path::PathBuf) {
        let dir = temp_dir();
        let store = Arc::new(EmbeddedStore::open(&dir).unwrap());
        let (guild, metrics) = guild_on(store, members, router);
        (guild, metrics, dir)
    }

    fn guild_on(
        store: Arc<dyn guildhall_store::Storage>,
        members: &[u64],
        router: Arc<dyn SessionRouter>,
    ) -> (GuildRef, Arc<Metrics>) {
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::new(1_700_000_000_000));
        let data = DataService::new(store, 1, true, clock.clone());
        let members =
            members.iter().map(|&id| Member::new(user(id), "2026-01-01T00:00:00.000000+00:00".into())).collect();
        let general = Channel::text(GENERAL, Snowflake(10), "general");
        let state = GuildState::new(Guild::new(Snowflake(10), "g", Snowflake(1)), vec![general], members);
        let metrics = Arc::new(Metrics::default());
        let ids = Arc::new(Generator::new(0, 9, clock.clone()));
        let audit = AuditLog::spawn(data.store().clone(), ids.clone(), metrics.clone());
        let deps = GuildDeps {
            clock: clock.clone(),
            data,
            metrics: metrics.clone(),
            ids,
            config: GuildConfig::default(),
            plugins: None,
            plugin_limits: Default::default(),
            audit,
            replies: Replies::new(0, clock),
            sessions: router,
            locator: None,
            ownership: None,
            plugin_bus: None,
            bot_placement: None,
            events: None,
            relays: Relays::spawn(2, 4096, metrics.clone()),
        };
        (spawn_guild(state, deps, None, None).0, metrics)
    }

    fn session(id: u64, user: UserId, queue: usize) -> (SessionHandle, mpsc::Receiver<SessionMsg>) {
        let (tx, rx) = mpsc::channel(queue);
        let shared = Arc::new(SessionShared::default());
        (SessionHandle { id: SessionId(id), user, intents: intents::GUILD_MESSAGES | intents::GUILDS, tx, shared }, rx)
    }

    /// Registers the session where the guild's router finds it, then connects it by address.
    async fn connect(guild: &GuildRef, sessions: &SessionRegistry, session: SessionHandle) {
        let address = session.address();
        sessions.insert(format!("key-{}", address.id.0), session);
        guild.send(GuildMsg::Connect { session: address, status: Status::Online }).await;
    }

    fn create(author: u64, content: String) -> MessageCommand {
        MessageCommand::Create {
            author: Snowflake(author),
            channel_id: GENERAL,
            id: Snowflake::default(),
            content,
            nonce: None,
            enforce_nonce: false,
        }
    }

    fn event(msg: SessionMsg) -> serde_json::Value {
        let SessionMsg::Dispatch(prefix) = msg else { panic!("not a dispatch") };
        serde_json::from_slice(&prefix.with_seq(1)).unwrap()
    }

    /// The contents of the MESSAGE_CREATEs a session receives: `n` of them (dispatches go
    /// through a relay after the sender was answered, so they may still be on their way),
    /// then whatever else is already queued.
    async fn created(rx: &mut mpsc::Receiver<SessionMsg>, n: usize) -> Vec<serde_json::Value> {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while seen.len() < n {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(msg)) => seen.push(event(msg)),
                _ => break,
            }
            seen.retain(|v| v["t"] == "MESSAGE_CREATE");
        }
        while let Ok(msg) = rx.try_recv() {
            seen.push(event(msg));
        }
        seen.retain(|v| v["t"] == "MESSAGE_CREATE");
        seen
    }

    /// Waits (up to 5 s) until `done` holds.
    async fn eventually(done: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !done() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_slow_session_is_dropped_and_nobody_else_waits() {
        let (guild, metrics, dir, sessions) = guild_with(&[1, 2]).await;
        let (fast, mut fast_rx) = session(1, Snowflake(1), 64);
        let (slow, mut slow_rx) = session(2, Snowflake(2), 4);
        let slow_shared = slow.shared.clone();
        connect(&guild, &sessions, fast).await;
        connect(&guild, &sessions, slow).await;
        for i in 0..20 {
            let reply = guild.call(create(1, format!("m{i}")), Duration::from_secs(5)).await;
            assert!(matches!(reply, Ok(Reply::Message(_))), "the guild keeps answering: {reply:?}");
        }
        let contents: Vec<String> =
            created(&mut fast_rx, 20).await.iter().map(|v| v["d"]["content"].as_str().unwrap().to_owned()).collect();
        assert_eq!(
            contents,
            (0..20).map(|i| format!("m{i}")).collect::<Vec<_>>(),
            "the fast session got everything, in order"
        );
        eventually(|| slow_shared.is_overflowed()).await;
        assert!(slow_shared.is_overflowed(), "the slow session was told it overflowed");
        assert_eq!(metrics.slow_consumer_drops.load(Relaxed), 1);
        let mut queued = 0;
        while slow_rx.try_recv().is_ok() {
            queued += 1;
        }
        assert_eq!(queued, 4, "nothing more was offered after the overflow");
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A caller that gave up (answered 503) before the actor took its command: the command
    /// does not happen. Before, it was stored and delivered anyway, so that a client that
    /// retried after a 503 posted twice.
    #[tokio::test]
    async fn a_command_whose_caller_gave_up_does_not_happen() {
        let (guild, metrics, dir, sessions) = guild_with(&[1]).await;
        let (listener, mut rx) = session(1, Snowflake(1), 64);
        connect(&guild, &sessions, listener).await;
        // No time at all: queued, and given up on before the actor can answer.
        let gave_up = guild.call(create(1, "too late".into()), Duration::ZERO).await;
        // (Whichever notices first: the caller's timeout, or the actor dropping it.)
        assert!(matches!(gave_up, Err(CallError::Busy | CallError::Guild(GuildError::Busy))), "{gave_up:?}");
        let reply = guild.call(create(1, "in time".into()), Duration::from_secs(5)).await;
        assert!(matches!(reply, Ok(Reply::Message(_))), "{reply:?}");
        let contents: Vec<String> =
            created(&mut rx, 1).await.iter().map(|v| v["d"]["content"].as_str().unwrap().to_owned()).collect();
        assert_eq!(contents, ["in time"]);
        assert_eq!(metrics.commands_expired.load(Relaxed), 1);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Storage hangs, fails and slows under a guild: with the host's deadline on every
    /// storage call, writes caught in it are answered as not stored within the deadline,
    /// the mailbox keeps being served, the guild takes writes again as soon as storage
    /// does, and every write it acknowledged is stored. Without the deadline, the batch
    /// caught in the hang never ends and the guild never writes again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hung_store_never_stalls_a_guild_and_loses_nothing_acknowledged() {
        use guildhall_store::layer::faults::{Fault, Faults};
        use guildhall_store::layer::{Access, Deadline, Layered};
        let dir = temp_dir();
        let backend: Arc<dyn guildhall_store::Storage> = Arc::new(EmbeddedStore::open(&dir).unwrap());
        let faults = Arc::new(Faults::default());
        let faulty = Arc::new(Layered::new(backend.clone(), faults.clone()));
        let deadline = Arc::new(Deadline::new(Duration::from_millis(300)));
        let sessions = Arc::new(SessionRegistry::default());
        let (guild, _) = guild_on(Arc::new(Layered::new(faulty, deadline.clone())), &[1], sessions.clone());
        let (s, _rx) = session(1, Snowflake(1), 4096);
        connect(&guild, &sessions, s).await;

        let mut acknowledged = Vec::new();
        let post = |phase: &'static str| {
            let guild = guild.clone();
            async move {
                let started = std::time::Instant::now();
                let reply = guild.call(create(1, phase.into()), Duration::from_secs(3)).await;
                (reply, started.elapsed())
            }
        };
        let mut keep = |reply: &Result<Reply, CallError>| {
            if let Ok(Reply::Message(m)) = reply {
                acknowledged.push(m.id);
            }
        };
        for _ in 0..5 {
            let (reply, _) = post("before").await;
            assert!(matches!(reply, Ok(Reply::Message(_))), "{reply:?}");
            keep(&reply);
        }

        for fault in [Fault::Hang, Fault::Fail] {
            faults.inject(fault, Some(Access::Write));
            let writes: Vec<_> = (0..10).map(|_| tokio::spawn(post("during"))).collect();
            // The mailbox is served meanwhile: a read of the guild's state answers at once.
            let snapshot = guild.call(GuildCommand::Snapshot { user: Snowflake(1) }, Duration::from_millis(200)).await;
            assert!(matches!(snapshot, Ok(Reply::Snapshot { .. })), "{fault:?}: {snapshot:?}");
            for write in writes {
                let (reply, took) = write.await.unwrap();
                assert!(took < Duration::from_secs(2), "{fault:?}: answered after {took:?}");
                assert!(matches!(&reply, Err(CallError::Guild(GuildError::Storage(_)))), "{fault:?}: {reply:?}");
            }
        }

        faults.inject(Fault::Delay(Duration::from_millis(50)), None);
        let (reply, _) = post("slow").await;
        assert!(matches!(reply, Ok(Reply::Message(_))), "a delay under the deadline only slows: {reply:?}");
        keep(&reply);
        faults.clear();
        for _ in 0..5 {
            let (reply, _) = post("after").await;
            assert!(matches!(reply, Ok(Reply::Message(_))), "the guild writes again: {reply:?}");
            keep(&reply);
        }
        assert!(deadline.timeouts() >= 1, "the hang was ended by the deadline");
        assert_eq!(acknowledged.len(), 11);
        for id in acknowledged {
            let stored = backend.message(GENERAL, id).await.unwrap();
            assert!(stored.is_some(), "acknowledged message {id} is stored");
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn concurrent_creates_fan_out_in_id_order() {
        let (guild, _, dir, sessions) = guild_with(&[1]).await;
        let (s, mut rx) = session(1, Snowflake(1), 1024);
        connect(&guild, &sessions, s).await;
        let calls: Vec<_> = (0..100)
            .map(|i| {
                let g = guild.clone();
                tokio::spawn(async move { g.call(create(1, format!("m{i}")), Duration::from_secs(5)).await })
            })
            .collect();
        let mut acked = Vec::new();
        for c in calls {
            let Ok(Reply::Message(m)) = c.await.unwrap() else { panic!("create failed") };
            acked.push(m.id);
        }
        let seen: Vec<u64> =
            created(&mut rx, 100).await.iter().map(|v| v["d"]["id"].as_str().unwrap().parse().unwrap()).collect();
        assert_eq!(seen.len(), 100);
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "dispatch order is id order");
        acked.sort();
        assert_eq!(acked.iter().map(|id| id.0).collect::<Vec<_>>(), seen);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A node's view of a three-node cluster: its own sessions in a registry, sessions 101
    /// and 102 on node 7, 103 on node 9; what it forwards is recorded.
    struct ThreeNodes {
        local: SessionRegistry,
        forwarded: std::sync::Mutex<Vec<(NodeId, Vec<SessionId>, String)>>,
    }

    impl SessionRouter for ThreeNodes {
        fn route(&self, session: SessionId) -> Option<SessionRoute> {
            match session.0 {
                101 | 102 => Some(SessionRoute::Remote(7)),
                103 => Some(SessionRoute::Remote(9)),
                _ => self.local.route(session),
            }
        }
        fn to_user(&self, user: UserId, msg: &ToUser) -> Delivered {
            self.local.to_user(user, msg)
        }
        fn resumable(&self, key: &str) -> Option<SessionHandle> {
            self.local.resumable(key)
        }
        fn forward(&self, node: NodeId, guild: GuildId, sessions: &[SessionId], dispatch: &DispatchPrefix) {
            assert_eq!(guild, Snowflake(10));
            let v: serde_json::Value = serde_json::from_slice(&dispatch.with_seq(1)).unwrap();
            let name = v["t"].as_str().unwrap_or_default().to_owned();
            self.forwarded.lock().unwrap().push((node, sessions.to_vec(), name));
        }
        fn moved(&self, node: NodeId, guild: GuildId, session: SessionId) {
            assert_eq!(guild, Snowflake(10));
            self.forwarded.lock().unwrap().push((node, vec![session], "MOVED".into()));
        }
    }

    #[tokio::test]
    async fn a_moved_session_gets_a_marker_after_its_last_dispatch_and_nothing_twice() {
        let router = Arc::new(ThreeNodes { local: SessionRegistry::default(), forwarded: Default::default() });
        let (guild, _, dir) = guild_routed(&[1, 2], router.clone()).await;
        let intents = intents::GUILD_MESSAGES | intents::GUILDS;
        let remote = SessionRef { id: SessionId(101), user: Snowflake(2), intents };
        guild.send(GuildMsg::Connect { session: remote, status: Status::Idle }).await;
        let post = |n: &str| guild.call(create(1, n.to_owned()), Duration::from_secs(5));
        assert!(post("before").await.is_ok());

        // Node 7's session 101 resumes here as session 5.
        let (here, mut here_rx) = session(5, Snowflake(2), 64);
        router.local.insert_route(here.clone());
        guild.send(GuildMsg::Move { from: SessionId(101), to: here.address(), status: Status::Idle }).await;
        assert!(post("after").await.is_ok());
        let forwarded: Vec<(NodeId, String)> =
            router.forwarded.lock().unwrap().iter().map(|(node, _, name)| (*node, name.clone())).collect();
        assert_eq!(
            forwarded,
            [(7, "GUILD_CREATE"), (7, "MESSAGE_CREATE"), (7, "MOVED")].map(|(n, s)| (n, s.to_owned())),
            "the old node hears up to the marker, then nothing"
        );
        // A call is answered after everything sent before it was handed to the relays.
        guild.call(GuildCommand::Snapshot { user: Snowflake(1) }, Duration::from_secs(5)).await.unwrap();
        let mut got = Vec::new();
        while got.is_empty() {
            got.push(event(here_rx.recv().await.unwrap()));
        }
        got.extend(std::iter::from_fn(|| here_rx.try_recv().ok()).map(event));
        assert_eq!(got.len(), 1, "no GUILD_CREATE, no presence: only what came after the move: {got:?}");
        assert_eq!(got[0]["d"]["content"], "after");

        // And back to another node: the local session gets its marker after its dispatches.
        let away = SessionRef { id: SessionId(102), user: Snowflake(2), intents };
        guild.send(GuildMsg::Move { from: SessionId(5), to: away, status: Status::Idle }).await;
        assert!(post("later").await.is_ok());
        let marker = tokio::time::timeout(Duration::from_secs(5), here_rx.recv()).await;
        assert!(matches!(marker, Ok(Some(SessionMsg::Moved(g))) if g == Snowflake(10)));
        guild.call(GuildCommand::Snapshot { user: Snowflake(1) }, Duration::from_secs(5)).await.unwrap();
        assert!(here_rx.try_recv().is_err(), "nothing after the marker");
        let last = router.forwarded.lock().unwrap().last().cloned().unwrap();
        assert_eq!(last, (7, vec![SessionId(102)], "MESSAGE_CREATE".to_owned()));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn remote_sessions_get_one_forward_per_node_and_event() {
        let router = Arc::new(ThreeNodes { local: SessionRegistry::default(), forwarded: Default::default() });
        let (guild, metrics, dir) = guild_routed(&[1, 2, 3], router.clone()).await;
        let (here, mut here_rx) = session(1, Snowflake(1), 64);
        connect(&guild, &router.local, here).await;
        for (id, user) in [(101, 2), (102, 3), (103, 2)] {
            let address = SessionRef {
                id: SessionId(id),
                user: Snowflake(user),
                intents: intents::GUILD_MESSAGES | intents::GUILDS,
            };
            guild.send(GuildMsg::Connect { session: address, status: Status::Online }).await;
        }
        // A call is handled after everything sent before it: the connects are done.
        guild.call(GuildCommand::Snapshot { user: Snowflake(1) }, Duration::from_secs(5)).await.unwrap();
        let connected = std::mem::take(&mut *router.forwarded.lock().unwrap());
        assert!(connected
            .iter()
            .any(|(node, ids, name)| (*node, ids.as_slice(), name.as_str())
                == (9, &[SessionId(103)][..], "GUILD_CREATE")));
        for i in 0..3 {
            let reply = guild.call(create(1, format!("m{i}")), Duration::from_secs(5)).await;
            assert!(matches!(reply, Ok(Reply::Message(_))), "{reply:?}");
        }
        // Answered after the last create's fan-out: every forward was made.
        guild.call(GuildCommand::Snapshot { user: Snowflake(1) }, Duration::from_secs(5)).await.unwrap();
        let forwarded = router.forwarded.lock().unwrap().clone();
        let expected: Vec<(NodeId, Vec<SessionId>, String)> = (0..3)
            .flat_map(|_| {
                [
                    (7, vec![SessionId(101), SessionId(102)], "MESSAGE_CREATE".to_owned()),
                    (9, vec![SessionId(103)], "MESSAGE_CREATE".to_owned()),
                ]
            })
            .collect();
        assert_eq!(forwarded, expected, "one forward per node with recipients, per event; never one per session");
        assert_eq!(created(&mut here_rx, 3).await.len(), 3, "the local session gets them through its relay");
        assert_eq!(metrics.node_forwards.load(Relaxed), 6 + connected.len() as u64);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A fence whose answer the test sets (the cluster's is tested against NATS in the
    /// cluster crate; this checks what the actor does with the answer).
    #[derive(Default)]
    struct SwitchableFence {
        taken_over: std::sync::atomic::AtomicBool,
        released: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl Ownership for SwitchableFence {
        async fn acquire(&self, _: &'static str, id: GuildId) -> Result<OwnershipToken, String> {
            Ok(OwnershipToken { key: format!("guild-{id}"), revision: 1, inherited: Vec::new() })
        }
        async fn still_owned(&self, _: &OwnershipToken) -> bool {
            !self.taken_over.load(Relaxed)
        }
        async fn release(&self, _: OwnershipToken) {
            self.released.store(true, Relaxed);
        }
    }

    #[tokio::test]
    async fn a_fenced_off_actor_stores_nothing_and_lets_go_when_it_stops() {
        let (guild, _, dir, sessions) = guild_with(&[1]).await;
        drop(guild); // only the fenced actor below is used
        let fence_state = Arc::new(SwitchableFence::default());
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::new(1_700_000_000_000));
        let data =
            DataService::new(Arc::new(EmbeddedStore::open(&dir.join("fenced")).unwrap()), 1, true, clock.clone());
        let general = Channel::text(GENERAL, Snowflake(10), "general");
        let members = vec![Member::new(user(1), "2026-01-01T00:00:00.000000+00:00".into())];
        let state = GuildState::new(Guild::new(Snowflake(10), "g", Snowflake(1)), vec![general.clone()], members);
        let metrics = Arc::new(Metrics::default());
        let ids = Arc::new(Generator::new(0, 9, clock.clone()));
        let deps = GuildDeps {
            clock: clock.clone(),
            data: data.clone(),
            metrics: metrics.clone(),
            ids: ids.clone(),
            config: GuildConfig::default(),
            plugins: None,
            plugin_limits: Default::default(),
            audit: AuditLog::spawn(data.store().clone(), ids, metrics.clone()),
            replies: Replies::new(0, clock),
            sessions,
            locator: None,
            ownership: None,
            plugin_bus: None,
            bot_placement: None,
            events: None,
            relays: Relays::spawn(2, 4096, metrics.clone()),
        };
        let ownership: Arc<dyn Ownership> = fence_state.clone();
        let token = ownership.acquire("guild", Snowflake(10)).await.unwrap();
        let (guild, task) = spawn_guild(state, deps, Some(Fence { ownership, token }), None);

        let kept = guild.call(create(1, "while owned".into()), Duration::from_secs(5)).await;
        assert!(matches!(kept, Ok(Reply::Message(_))), "{kept:?}");
        fence_state.taken_over.store(true, Relaxed); // another node took the guild over
        let refused = guild.call(create(1, "after the take-over".into()), Duration::from_secs(5)).await;
        assert!(matches!(refused, Err(CallError::Guild(GuildError::Storage(_)))), "{refused:?}");
        let stored = data.history(&general, guildhall_store::HistoryQuery::Latest, 10).await.unwrap();
        assert_eq!(stored.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(), ["while owned"]);

        // Fenced off, it stops on its own (the next use starts an actor that takes the
        // ownership afresh) and gives back what it held.
        tokio::time::timeout(Duration::from_secs(5), task).await.expect("a fenced-off actor stops").unwrap();
        assert!(fence_state.released.load(Relaxed), "a stopped actor gives its ownership back");
        let _ = std::fs::remove_dir_all(dir);
    }
}
