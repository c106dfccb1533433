//! How a guild actor hands its events to the sessions: once per event to each relay of
//! this node that has sessions in the audience ([`relay`](super::relay)), and once per
//! other node that has (a forward, Manifold's grouping per node).
//!
//! Who is in an audience changes only when sessions, members, roles or channels do (the
//! state machine's `audience_epoch`), so what an audience resolves to is kept, already
//! grouped by relay and node, until the epoch moves: in a busy channel an event costs the
//! guild one serialization and one hand-off per relay, nothing per recipient. The only
//! recipients looked at per event are bot sessions without MESSAGE_CONTENT, whose form of
//! a message depends on the message (it mentions them or not).
//!
//! Hand-offs wait in an outbox that the actor empties between inputs ([`Fanout::flush`]),
//! so that the state machine's effects stay synchronous and a full relay slows the guild
//! instead of losing its events.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use guildhall_core::event::GuildEvent;
use guildhall_core::gateway::DispatchPrefix;
use guildhall_core::guild::{Audience, GuildState, SessionId};
use guildhall_core::model::GuildId;

use crate::actors::relay::{RelayMsg, Relays};
use crate::addresses::guild_ref::GuildRef;
use crate::addresses::reply::NodeId;
use crate::addresses::session::{SessionHandle, SessionRef, SessionRoute, SessionRouter};
use crate::infrastructure::metrics::Metrics;

/// The guild's connected sessions: their address and how to reach them.
pub type Sessions = HashMap<SessionId, (SessionRef, SessionRoute)>;

/// Audiences resolved at most at once (each is a few per channel); past it the cache is
/// emptied and fills again.
const MAX_CACHED_AUDIENCES: usize = 1024;

/// Some sessions, grouped the way they are reached.
#[derive(Default)]
struct Group {
    /// This node's sessions, by relay.
    local: Vec<(usize, Arc<[SessionHandle]>)>,
    /// Other nodes' sessions, by node.
    remote: Vec<(NodeId, Vec<SessionId>)>,
}

impl Group {
    fn of(ids: impl Iterator<Item = SessionId>, sessions: &Sessions, relays: &Relays) -> Group {
        let mut local: BTreeMap<usize, Vec<SessionHandle>> = BTreeMap::new();
        let mut remote: BTreeMap<NodeId, Vec<SessionId>> = BTreeMap::new();
        for id in ids {
            match sessions.get(&id) {
                Some((_, SessionRoute::Local(handle))) => local.entry(relays.of(id)).or_default().push(handle.clone()),
                Some((_, SessionRoute::Remote(node))) => remote.entry(*node).or_default().push(id),
                None => {}
            }
        }
        Group {
            local: local.into_iter().map(|(relay, handles)| (relay, handles.into())).collect(),
            remote: remote.into_iter().collect(),
        }
    }

    fn is_empty(&self) -> bool {
        self.local.is_empty() && self.remote.is_empty()
    }
}

/// An audience, resolved.
struct Resolved {
    /// Sessions that read every message whole (all but bots without MESSAGE_CONTENT).
    whole: Group,
    /// Bot sessions without MESSAGE_CONTENT: a message's content reaches them only where
    /// it is addressed to them.
    per_message: Vec<SessionId>,
}

pub struct Fanout {
    relays: Relays,
    /// The guild whose events these are (relays report gone sessions to it).
    guild: GuildRef,
    router: Arc<dyn SessionRouter>,
    metrics: Arc<Metrics>,
    /// The audience epoch `cache` was resolved at.
    epoch: u64,
    cache: HashMap<Audience, Arc<Resolved>>,
    outbox: Vec<(usize, RelayMsg)>,
}

impl Fanout {
    pub fn new(relays: Relays, guild: GuildRef, router: Arc<dyn SessionRouter>, metrics: Arc<Metrics>) -> Fanout {
        Fanout { relays, guild, router, metrics, epoch: u64::MAX, cache: HashMap::new(), outbox: Vec::new() }
    }

    /// Serializes `event` once per form and hands it to everyone in `audience`.
    pub fn dispatch(&mut self, state: &GuildState, sessions: &Sessions, audience: &Audience, event: &GuildEvent) {
        let resolved = self.resolve(state, sessions, audience);
        let message = match event {
            GuildEvent::MessageCreate { message, .. } | GuildEvent::MessageUpdate { message, .. } => Some(message),
            _ => None,
        };
        let (mut whole_too, mut blind) = (Vec::new(), Vec::new());
        for &id in &resolved.per_message {
            match message {
                Some(m) if !state.reads_content(id, m) => blind.push(id),
                _ => whole_too.push(id),
            }
        }
        if resolved.whole.is_empty() && whole_too.is_empty() && blind.is_empty() {
            return;
        }
        // Discord's JSON is made here, at the edge: once per event and form.
        Metrics::inc(&self.metrics.dispatches);
        let prefix = DispatchPrefix::encode(event.name(), &event.discord_data());
        self.hand_over(&resolved.whole, &prefix);
        if !whole_too.is_empty() {
            self.hand_over(&Group::of(whole_too.into_iter(), sessions, &self.relays), &prefix);
        }
        if !blind.is_empty() {
            let prefix = DispatchPrefix::encode(event.name(), &event.without_content().discord_data());
            self.hand_over(&Group::of(blind.into_iter(), sessions, &self.relays), &prefix);
        }
    }

    /// `session` (on this node) hears nothing more from this guild: its marker goes
    /// through its relay, after every dispatch handed to it before.
    pub fn moved(&mut self, session: SessionHandle, guild: GuildId) {
        let relay = self.relays.of(session.id);
        self.outbox.push((relay, RelayMsg::Moved { session, guild }));
    }

    /// Hands what waits in the outbox to the relays, in order.
    pub async fn flush(&mut self) {
        for (relay, msg) in self.outbox.drain(..) {
            self.relays.send(relay, msg).await;
        }
    }

    fn hand_over(&mut self, group: &Group, prefix: &DispatchPrefix) {
        for (relay, sessions) in &group.local {
            let msg =
                RelayMsg::Deliver { prefix: prefix.clone(), sessions: sessions.clone(), guild: self.guild.clone() };
            self.outbox.push((*relay, msg));
        }
        for (node, sessions) in &group.remote {
            self.router.forward(*node, self.guild.id, sessions, prefix);
            Metrics::inc(&self.metrics.node_forwards);
        }
    }

    fn resolve(&mut self, state: &GuildState, sessions: &Sessions, audience: &Audience) -> Arc<Resolved> {
        if self.epoch != state.audience_epoch() || self.cache.len() >= MAX_CACHED_AUDIENCES {
            self.cache.clear();
            self.epoch = state.audience_epoch();
        }
        if let Some(resolved) = self.cache.get(audience) {
            return resolved.clone();
        }
        let (whole, per_message): (Vec<_>, Vec<_>) =
            state.audience(audience).into_iter().partition(|id| state.reads_all_content(*id));
        let resolved = Arc::new(Resolved { whole: Group::of(whole.into_iter(), sessions, &self.relays), per_message });
        self.cache.insert(audience.clone(), resolved.clone());
        resolved
    }
}
