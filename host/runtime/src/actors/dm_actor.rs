//! The DM actor: one tokio task per active DM channel, driving a `DmState`, addressed like a
//! guild (a [`GuildRef`] keyed by the channel id, found through the DM directory).
//!
//! DMs are two people talking, so writes are stored one at a time, in the order the actor
//! decided them (that is also the order they are delivered and answered). Events go to
//! every session of every recipient, found through the [`SessionRouter`] by user.
//! An idle DM actor is evicted like a guild's; the next message starts it again.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use guildhall_core::dm::{DmEffect, DmState};
use guildhall_core::event::GuildEvent;
use guildhall_core::gateway::{DispatchPrefix, Intents};
use guildhall_core::guild::{Command, Input, RequestId};
use guildhall_data::DataService;
use guildhall_store::{LoggedBatch, StoreError};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::actors::guild_actor::{write_error, Fence, GuildDeps};
use crate::addresses::guild_ref::{GuildMsg, GuildRef};
use crate::addresses::reply::{Replies, ReplyTo};
use crate::addresses::session::{SessionRouter, ToUser};
use crate::infrastructure::event_relay::{relay_finished, LogRelay, DRAIN_ON_STOP};
use crate::infrastructure::ids::Generator;
use crate::infrastructure::metrics::{Metrics, Metrics as M};

struct DmActor {
    state: DmState,
    reply_to: HashMap<RequestId, ReplyTo>,
    replies: Arc<Replies>,
    router: Arc<dyn SessionRouter>,
    data: Arc<DataService>,
    metrics: Arc<Metrics>,
    ids: Arc<Generator>,
    next_request: RequestId,
    fence: Option<Fence>,
    /// The channel's message event log (`None` without a stream).
    log: Option<LogRelay>,
}

/// Starts a DM channel's actor. The task ends when the actor stopped (evicted when idle or
/// handed off) and every write it accepted is stored and answered.
pub fn spawn_dm(
    state: DmState,
    deps: GuildDeps,
    fence: Option<Fence>,
    log: Option<LogRelay>,
) -> (GuildRef, JoinHandle<()>) {
    let id = state.channel().id;
    let (tx, rx) = mpsc::channel(deps.config.mailbox);
    let handle = GuildRef::local(id, tx, deps.replies.clone(), deps.locator.clone());
    let actor = DmActor {
        state,
        reply_to: HashMap::new(),
        replies: deps.replies,
        router: deps.sessions,
        data: deps.data,
        metrics: deps.metrics,
        ids: deps.ids,
        next_request: 1,
        fence,
        log,
    };
    actor.metrics.dms_loaded.fetch_add(1, Relaxed);
    let idle_limit = Duration::from_millis(deps.config.idle_evict_ms);
    (handle, tokio::spawn(actor.run(rx, idle_limit)))
}

impl DmActor {
    async fn run(mut self, mut rx: mpsc::Receiver<GuildMsg>, idle_limit: Duration) {
        if let Some(log) = &mut self.log {
            log.kick();
        }
        loop {
            // Every message is handled to the end (stored, delivered, answered) before the
            // next, so an idle wait means nothing is in flight but the relay's job.
            let next = async {
                if idle_limit.is_zero() {
                    Ok(rx.recv().await)
                } else {
                    tokio::time::timeout(idle_limit, rx.recv()).await
                }
            };
            let next = tokio::select! {
                next = next => next,
                () = relay_finished(&mut self.log) => continue,
            };
            let msg = if idle_limit.is_zero() {
                next.expect("no timeout")
            } else {
                match next {
                    Ok(msg) => msg,
                    Err(_) if self.log.as_ref().is_some_and(|log| !log.is_drained()) => continue,
                    Err(_) => {
                        // New sends fail from here on (their refs ask the directory for a
                        // fresh actor); what is already in the mailbox is still handled.
                        rx.close();
                        M::inc(&self.metrics.dms_evicted);
                        continue;
                    }
                }
            };
            match msg {
                None => break,
                Some(GuildMsg::HandOff) => rx.close(),
                Some(GuildMsg::Command { command, reply_to, expires_at_ms }) => {
                    if crate::actors::guild_actor::expired(expires_at_ms, self.replies.clock().unix_ms()) {
                        Metrics::inc(&self.metrics.commands_expired);
                        self.replies.deliver(reply_to, Err(guildhall_core::guild::GuildError::Busy));
                    } else {
                        self.on_command(*command, reply_to).await
                    }
                }
                // Sessions, presences, plugins and audit entries belong to guilds.
                Some(
                    GuildMsg::Connect { .. }
                    | GuildMsg::Disconnect { .. }
                    | GuildMsg::Move { .. }
                    | GuildMsg::Presence { .. }
                    | GuildMsg::PluginsChanged
                    | GuildMsg::PlaceBots
                    | GuildMsg::PluginDisabled(_)
                    | GuildMsg::Audit(_),
                ) => {}
            }
        }
        debug_assert!(self.reply_to.is_empty() && self.state.in_flight() == 0, "stopped with work in flight");
        if let Some(log) = &mut self.log {
            log.drain(DRAIN_ON_STOP).await;
        }
        if let Some(Fence { ownership, token }) = self.fence.take() {
            ownership.release(token).await;
        }
        self.metrics.dms_loaded.fetch_sub(1, Relaxed);
    }

    async fn on_command(&mut self, mut command: Command, reply_to: ReplyTo) {
        if let Err(e) = self.ids.stamp(&mut command) {
            return self.replies.deliver(reply_to, Err(e));
        }
        let request = self.next_request;
        self.next_request += 1;
        self.reply_to.insert(request, reply_to);
        let mut work: VecDeque<DmEffect> =
            self.state.handle(Input::Command { request, command: Box::new(command) }).into();
        while let Some(effect) = work.pop_front() {
            match effect {
                DmEffect::Persist { request, write } => {
                    let writes = vec![write];
                    let numbered = self.log.as_mut().map(|log| log.number(&writes)).unwrap_or_default();
                    let entries = numbered.iter().map(|(_, e)| e.clone()).collect();
                    let batch =
                        Fence::apply_through(self.fence.clone(), &self.data, writes, entries).await.unwrap_or_else(
                            |fenced_off| LoggedBatch::failed(StoreError::Unavailable(fenced_off.to_string()), 1),
                        );
                    if let Some(log) = &mut self.log {
                        log.stored(numbered, &batch);
                    }
                    let result = batch.writes.into_iter().next().unwrap_or(Ok(())).map_err(write_error);
                    work.extend(self.state.handle(Input::Persisted { request, result }));
                }
                DmEffect::Reply { request, result } => {
                    if let Some(to) = self.reply_to.remove(&request) {
                        self.replies.deliver(to, result); // the caller may have given up; fine
                    }
                }
                DmEffect::Deliver { intent, event } => self.deliver(intent, &event),
            }
        }
    }

    /// Offers the event to every session of every recipient that asked for `intent`.
    fn deliver(&self, intent: Intents, event: &GuildEvent) {
        if matches!(event, GuildEvent::MessageCreate { .. }) {
            M::inc(&self.metrics.messages_created);
        }
        // Discord's JSON is made here, at the edge: once per event.
        let prefix = DispatchPrefix::encode(event.name(), &event.discord_data());
        M::inc(&self.metrics.dispatches);
        let msg = ToUser::Dispatch { intent, dispatch: prefix };
        for user in self.state.recipients() {
            let delivered = self.router.to_user(user, &msg);
            self.metrics.deliveries.fetch_add(delivered.queued, Relaxed);
            self.metrics.slow_consumer_drops.fetch_add(delivered.overflowed, Relaxed);
        }
    }
}
