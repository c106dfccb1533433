//! The runtime's seams, carried over the bus: guild and DM actors run on the node the ring
//! gives them, and everyone else reaches them through [`ClusterDirectory`] refs; answers,
//! forwarded dispatches and per-user deliveries travel on the node's subjects
//! ([`crate::wire`]).
//!
//! Delivery to another node's actor is a request: the owner answers once the message is in
//! the actor's mailbox, or says it does not own the actor (the sender then locates it
//! again, with a fresher view). A request that times out, or whose node leaves the view
//! while it is in flight, is not retried: the message may have arrived, and a command
//! must not run twice; its caller fails at once instead.

use guildhall_core::sync::LockUnpoisoned;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use guildhall_bus::{Bus, BusError};
use guildhall_core::gateway::{DispatchPrefix, Status};
use guildhall_core::guild::SessionId;
use guildhall_core::model::{Channel, GuildId, Message, MessageId, UserId};
use guildhall_data::DataService;
use guildhall_runtime::actors::directory::{Actors, Directory, LocalDirectory, LocateError};
use guildhall_runtime::actors::guild_actor::GuildDeps;
use guildhall_runtime::addresses::guild_ref::{GuildMsg, GuildRef, Locate, RemoteMailbox, Undelivered};
use guildhall_runtime::addresses::registry::SessionRegistry;
use guildhall_runtime::addresses::reply::{CommandResult, NodeId, Replies, ReplyTo, ReplyTransport};
use guildhall_runtime::addresses::session::{
    Delivered, MovedSession, Offer, SessionMover, SessionMsg, SessionRef, SessionRoute, SessionRouter, ToUser,
};
use guildhall_runtime::infrastructure::follow::follow;
use guildhall_runtime::infrastructure::reads::MessageReads;
use guildhall_runtime::Metrics;
use guildhall_store::StoreError;
use guildhall_store::{HistoryQuery, Result as StoreResult};
use tokio::sync::{mpsc, oneshot, watch};

use crate::membership::View;
use crate::wire::{
    decode, decode_framed, decode_take_answer, encode, encode_framed, encode_take_answer, Accepted, ActorKind,
    ActorRequest, FindSession, ReadAnswer, ReadReply, ReadRequest, ReplyDelivery, SessionsHeader, Subjects, TakeAnswer,
    TakeSession, UserHeader, UserWire,
};

/// How long a node waits for another to take a message into an actor's mailbox (the actor
/// may first have to be loaded from storage).
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Publishes queued for the bus before further ones are dropped (and logged).
const OUTBOX: usize = 65_536;
/// Reads from other nodes answered at once by this node's data service.
const MAX_READS_IN_FLIGHT: usize = 4096;
/// How long a RESUME waits for the node that has its session to say so.
const FIND_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a session's old node may take to hand it over (its guilds' markers included).
const TAKE_TIMEOUT: Duration = Duration::from_secs(6);
/// The session's own part of that: the guilds' markers must arrive within it.
const HAND_OVER_TIMEOUT: Duration = Duration::from_secs(5);
/// The replay buffer a handed-over session carries at most (NATS' default payload limit
/// is 1 MiB).
const MAX_HANDOVER_REPLAY: usize = 900 * 1024;

/// This node's end of the cluster: its id, the view of the ring, the bus, and the queue of
/// what it publishes from code that cannot wait (replies, forwards).
pub struct Transport {
    me: NodeId,
    subjects: Subjects,
    bus: Arc<dyn Bus>,
    view: watch::Receiver<Arc<View>>,
    outbox: mpsc::Sender<(String, Bytes)>,
    local_sessions: Arc<SessionRegistry>,
    metrics: Arc<Metrics>,
    /// This node's sessions connected to guilds on other nodes, by guild: whom they were
    /// connected through, to connect them again if that node dies.
    remote_subscriptions: Mutex<HashMap<GuildId, RemoteSubscription>>,
    /// The guild directory, for reconnecting sessions (set once `serve` starts).
    guilds: OnceLock<Weak<ClusterDirectory>>,
}

/// Sessions of this node connected to one guild running on another node.
struct RemoteSubscription {
    owner: NodeId,
    /// Each session's address and last status.
    sessions: HashMap<SessionId, (SessionRef, Status)>,
}

impl Transport {
    pub fn new(
        me: NodeId,
        cluster: &str,
        bus: Arc<dyn Bus>,
        view: watch::Receiver<Arc<View>>,
        local_sessions: Arc<SessionRegistry>,
        metrics: Arc<Metrics>,
    ) -> Arc<Transport> {
        let (outbox, mut queue) = mpsc::channel::<(String, Bytes)>(OUTBOX);
        let publisher = bus.clone();
        tokio::spawn(async move {
            while let Some((subject, payload)) = queue.recv().await {
                if let Err(e) = publisher.publish(&subject, payload).await {
                    tracing::warn!(%subject, error = %e, "cannot publish to the cluster");
                }
            }
        });
        Arc::new(Transport {
            me,
            subjects: Subjects::new(cluster),
            bus,
            view,
            outbox,
            local_sessions,
            metrics,
            remote_subscriptions: Mutex::new(HashMap::new()),
            guilds: OnceLock::new(),
        })
    }

    pub fn node(&self) -> NodeId {
        self.me
    }

    /// The node the ring gives `id` to, by this node's current view.
    pub fn owner(&self, id: GuildId) -> Option<NodeId> {
        self.view.borrow().ring.owner(id.0)
    }

    pub(crate) fn subjects(&self) -> &Subjects {
        &self.subjects
    }

    pub(crate) fn bus(&self) -> &Arc<dyn Bus> {
        &self.bus
    }

    /// Publishes without waiting, in order (the outbox; a full one drops and logs).
    pub(crate) fn post(&self, subject: String, payload: Bytes) {
        if self.outbox.try_send((subject, payload)).is_err() {
            tracing::error!("the cluster outbox is full; a message to another node was dropped");
        }
    }

    /// Starts answering other nodes: actor requests for `guilds` and `dms`, replies for
    /// `replies`, forwarded dispatches and user deliveries for this node's sessions.
    pub async fn serve(
        self: &Arc<Self>,
        routing: Arc<ClusterDirectory>,
        dm_routing: Arc<ClusterDirectory>,
        replies: Arc<Replies>,
        data: Arc<DataService>,
    ) -> Result<(), BusError> {
        let (guilds, dms) = (routing.local().clone(), dm_routing.local().clone());
        let _ = self.guilds.set(Arc::downgrade(&routing));
        let mut read_requests = self.bus.subscribe(&self.subjects.read(self.me)).await?;
        let me = self.clone();
        let reading = Arc::new(tokio::sync::Semaphore::new(MAX_READS_IN_FLIGHT));
        tokio::spawn(async move {
            // Concurrently (identical reads in flight are what the data service coalesces),
            // up to a bound; beyond it the subscription waits and NATS buffers.
            while let Some(request) = read_requests.next().await {
                let Ok(permit) = reading.clone().acquire_owned().await else { break };
                let (me, data) = (me.clone(), data.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    let Some(reply) = request.reply else { return };
                    let answer = match decode::<ReadRequest>(&request.payload) {
                        Ok(read) => me.answer_read(read, &data).await,
                        Err(e) => ReadReply { answer: ReadAnswer::Failed(e.to_string()), shareable: false },
                    };
                    let _ = me.bus.publish(&reply, encode(&answer)).await;
                });
            }
        });
        let mut actor_requests = self.bus.subscribe(&self.subjects.actor(self.me)).await?;
        let mut reply_inbox = self.bus.subscribe(&self.subjects.reply(self.me)).await?;
        let mut session_inbox = self.bus.subscribe(&self.subjects.sessions(self.me)).await?;
        let mut user_inbox = self.bus.subscribe(&self.subjects.all_users()).await?;
        let mut resume_requests = self.bus.subscribe(&self.subjects.resume()).await?;
        let mut take_requests = self.bus.subscribe(&self.subjects.take(self.me)).await?;
        self.bus.flush().await?;

        let me = self.clone();
        tokio::spawn(async move {
            while let Some(request) = resume_requests.next().await {
                let (Some(reply), Ok(find)) = (request.reply, decode::<FindSession>(&request.payload)) else {
                    continue;
                };
                let Some(session) = me.local_sessions.resumable(&find.key).filter(|s| s.user == find.user) else {
                    continue; // not here: another node answers
                };
                let _ = me.bus.publish(&reply, encode(&session.address())).await;
            }
        });
        let me = self.clone();
        tokio::spawn(async move {
            while let Some(request) = take_requests.next().await {
                let me = me.clone();
                tokio::spawn(async move {
                    let Some(reply) = request.reply else { return };
                    let answer = match decode::<TakeSession>(&request.payload) {
                        Ok(take) => me.hand_over(take).await,
                        Err(_) => None,
                    };
                    let answer = match answer {
                        Some(moved) => TakeAnswer::Moved(moved),
                        None => TakeAnswer::Refused,
                    };
                    let answer = encode_take_answer(&answer, MAX_HANDOVER_REPLAY);
                    let _ = me.bus.publish(&reply, answer).await;
                });
            }
        });

        let me = self.clone();
        tokio::spawn(async move {
            // One at a time, so that what one sender sends an actor arrives in order.
            while let Some(request) = actor_requests.next().await {
                let Some(reply) = request.reply else { continue };
                let answer = match decode::<ActorRequest>(&request.payload) {
                    Ok(ActorRequest::Locate { kind, id }) => me.accept(kind, id, None, &guilds, &dms).await,
                    Ok(ActorRequest::Deliver { kind, id, msg }) => me.accept(kind, id, Some(*msg), &guilds, &dms).await,
                    Err(e) => Accepted::Failed(e.to_string()),
                };
                let _ = me.bus.publish(&reply, encode(&answer)).await;
            }
        });
        tokio::spawn(async move {
            while let Some(message) = reply_inbox.next().await {
                match decode::<ReplyDelivery>(&message.payload) {
                    Ok(ReplyDelivery { to, result }) => replies.deliver(to, result),
                    Err(e) => tracing::warn!(error = %e, "dropping an unreadable reply"),
                }
            }
        });
        let me = self.clone();
        tokio::spawn(async move {
            while let Some(message) = session_inbox.next().await {
                match decode_framed::<SessionsHeader>(&message.payload) {
                    Ok((header, dispatch)) => me.offer_to_sessions(header, DispatchPrefix(dispatch), &routing),
                    Err(e) => tracing::warn!(error = %e, "dropping an unreadable forwarded dispatch"),
                }
            }
        });
        let me = self.clone();
        tokio::spawn(async move {
            while let Some(message) = user_inbox.next().await {
                match decode_framed::<UserHeader>(&message.payload) {
                    Ok((header, _)) if header.origin == me.me => {} // delivered here already
                    Ok((UserHeader { user, msg, .. }, raw)) => {
                        let msg = match msg {
                            UserWire::Dispatch { intent } => ToUser::Dispatch { intent, dispatch: DispatchPrefix(raw) },
                            UserWire::JoinGuild(guild) => ToUser::JoinGuild(guild),
                        };
                        let delivered = me.local_sessions.to_user(user, &msg);
                        me.count(delivered);
                    }
                    Err(e) => tracing::warn!(error = %e, "dropping an unreadable user delivery"),
                }
            }
        });
        Ok(())
    }

    async fn accept(
        &self,
        kind: ActorKind,
        id: GuildId,
        msg: Option<GuildMsg>,
        guilds: &LocalDirectory,
        dms: &LocalDirectory,
    ) -> Accepted {
        if self.owner(id) != Some(self.me) {
            return Accepted::NotHere;
        }
        let directory = match kind {
            ActorKind::Guild => guilds,
            ActorKind::Dm => dms,
        };
        match Directory::locate(directory, id).await {
            Ok(actor) => match msg {
                None => Accepted::Yes,
                Some(msg) => match actor.send(msg).await {
                    true => Accepted::Yes,
                    false => Accepted::Failed("the actor stopped".into()),
                },
            },
            Err(LocateError::UnknownGuild | LocateError::UnknownChannel) => Accepted::Unknown,
            Err(e) => Accepted::Failed(e.to_string()),
        }
    }

    /// A guild on another node fanned out to some of this node's sessions.
    fn offer_to_sessions(&self, header: SessionsHeader, dispatch: DispatchPrefix, routing: &Arc<ClusterDirectory>) {
        if header.moved {
            for session in header.sessions {
                if let Some(SessionRoute::Local(handle)) = self.local_sessions.route(session) {
                    let _ = handle.tx.try_send(SessionMsg::Moved(header.guild));
                    // full: it waits out its deadline
                }
            }
            return;
        }
        let mut delivered = Delivered::default();
        let mut gone = Vec::new();
        for session in header.sessions {
            let Some(SessionRoute::Local(handle)) = self.local_sessions.route(session) else {
                gone.push(session);
                continue;
            };
            match handle.offer(&dispatch) {
                Offer::Queued => delivered.queued += 1,
                Offer::Overflowed => {
                    delivered.overflowed += 1;
                    gone.push(session);
                }
                Offer::Gone => gone.push(session),
                Offer::Dropped => {}
            }
        }
        self.count(delivered);
        if !gone.is_empty() {
            // The guild must stop sending to them, as it would for its own sessions.
            let routing = routing.clone();
            tokio::spawn(async move {
                if let Ok(guild) = Directory::locate(routing.as_ref(), header.guild).await {
                    for session in gone {
                        guild.disconnect(session);
                    }
                }
            });
        }
    }

    /// Another node takes one of this node's sessions over: the session tells its guilds
    /// and answers with its state once they all confirmed.
    async fn hand_over(&self, take: TakeSession) -> Option<MovedSession> {
        let Some(SessionRoute::Local(handle)) = self.local_sessions.route(take.from.id) else { return None };
        if handle.user != take.from.user || take.to.id.node() == self.me {
            return None;
        }
        let (reply, answer) = oneshot::channel();
        let msg = SessionMsg::MoveOut { to: take.to, reply };
        handle.tx.send_timeout(msg, Duration::from_secs(1)).await.ok()?;
        tokio::time::timeout(HAND_OVER_TIMEOUT, answer).await.ok()?.ok()?
    }

    /// The node that runs a channel's actor: its guild's, or for a DM its own.
    fn channel_owner(&self, channel: &Channel) -> Option<NodeId> {
        self.owner(channel.guild_id.unwrap_or(channel.id))
    }

    async fn answer_read(&self, read: ReadRequest, data: &DataService) -> ReadReply {
        if self.channel_owner(read.channel()) != Some(self.me) {
            return ReadReply { answer: ReadAnswer::NotHere, shareable: false };
        }
        let (channel_id, mark) = (read.channel().id, data.write_mark());
        let answer = match read {
            ReadRequest::History { channel, query, limit } => match data.history(&channel, query, limit).await {
                Ok(messages) => ReadAnswer::Messages(messages.as_ref().clone()),
                Err(e) => ReadAnswer::Failed(e.to_string()),
            },
            ReadRequest::Message { channel, id } => match data.message(&channel, id).await {
                Ok(message) => ReadAnswer::Message(message.map(Box::new)),
                Err(e) => ReadAnswer::Failed(e.to_string()),
            },
        };
        let shareable =
            matches!(answer, ReadAnswer::Messages(_) | ReadAnswer::Message(_)) && !data.written_since(channel_id, mark);
        ReadReply { answer, shareable }
    }

    /// Notes what this node's sessions tell guilds on `owner`, to reconnect them if
    /// `owner` dies.
    fn track(&self, owner: NodeId, guild: GuildId, msg: &GuildMsg) {
        let mut subscriptions = self.remote_subscriptions.lock_unpoisoned();
        match msg {
            GuildMsg::Connect { session, status } if session.id.node() == self.me => {
                let entry = subscriptions
                    .entry(guild)
                    .or_insert_with(|| RemoteSubscription { owner, sessions: HashMap::new() });
                entry.owner = owner;
                entry.sessions.insert(session.id, (*session, *status));
            }
            GuildMsg::Presence { session, status } => {
                if let Some((_, s)) = subscriptions.get_mut(&guild).and_then(|e| e.sessions.get_mut(session)) {
                    *s = *status;
                }
            }
            GuildMsg::Disconnect { session } | GuildMsg::Move { from: session, .. } => {
                if let Some(entry) = subscriptions.get_mut(&guild) {
                    entry.sessions.remove(session);
                    if entry.sessions.is_empty() {
                        subscriptions.remove(&guild);
                    }
                }
            }
            _ => {}
        }
    }

    /// After the view changed: this node's sessions that were connected to guilds on a node
    /// that is gone connect again, to each guild's new owner (they get GUILD_CREATE again,
    /// as after a hand-off). The new owner may need a few seconds to take the guild over
    /// (its view must drop the dead node first), so each guild is retried from a task until
    /// it can be located. Returns how many guilds it is reconnecting.
    pub fn reconnect_orphans(&self) -> usize {
        let live: std::collections::BTreeSet<NodeId> = self.view.borrow().members.keys().copied().collect();
        let orphaned: Vec<(GuildId, Vec<(SessionRef, Status)>)> = {
            let mut subscriptions = self.remote_subscriptions.lock_unpoisoned();
            let dead: Vec<GuildId> =
                subscriptions.iter().filter(|(_, s)| !live.contains(&s.owner)).map(|(g, _)| *g).collect();
            dead.into_iter()
                .filter_map(|g| subscriptions.remove(&g).map(|s| (g, s.sessions.into_values().collect())))
                .collect()
        };
        let Some(guilds) = self.guilds.get().and_then(Weak::upgrade) else { return 0 };
        let count = orphaned.len();
        for (guild, sessions) in orphaned {
            let (guilds, local_sessions) = (guilds.clone(), self.local_sessions.clone());
            tokio::spawn(async move {
                let reconnected = follow(|| async {
                    let Ok(actor) = Directory::locate(guilds.as_ref(), guild).await else { return false };
                    for (session, status) in &sessions {
                        if local_sessions.route(session.id).is_some() {
                            actor.send(GuildMsg::Connect { session: *session, status: *status }).await;
                        }
                    }
                    true
                })
                .await;
                if !reconnected {
                    tracing::warn!(%guild, "sessions could not follow a guild whose node died");
                }
            });
        }
        count
    }

    fn count(&self, delivered: Delivered) {
        use std::sync::atomic::Ordering::Relaxed;
        self.metrics.deliveries.fetch_add(delivered.queued, Relaxed);
        self.metrics.slow_consumer_drops.fetch_add(delivered.overflowed, Relaxed);
    }

    /// Asks `node`'s actor service. A node that dies with the request in flight never
    /// answers: this gives up as soon as it leaves the view rather than after the timeout.
    async fn request(&self, node: NodeId, request: &ActorRequest) -> Result<Accepted, BusError> {
        let subject = self.subjects.actor(node);
        let answer = tokio::select! {
            answer = self.bus.request(&subject, encode(request), DELIVERY_TIMEOUT) => answer?,
            () = self.left(node) => return Err(BusError::Unavailable(format!("node {node} left the cluster"))),
        };
        decode(&answer).map_err(|e| BusError::Unavailable(e.to_string()))
    }

    /// Resolves once `node` is not in this node's view (at once if it is not there now).
    async fn left(&self, node: NodeId) {
        let mut view = self.view.clone();
        if view.wait_for(|v| !v.members.contains_key(&node)).await.is_err() {
            std::future::pending::<()>().await; // no more views (shutting down): never
        }
    }
}

impl ReplyTransport for Transport {
    fn send_reply(&self, to: ReplyTo, result: CommandResult) {
        self.post(self.subjects.reply(to.node), encode(&ReplyDelivery { to, result }));
    }
}

/// Routes to sessions anywhere: this node's through its registry, others' by their node
/// (a session id carries its node).
pub struct ClusterRouter {
    pub transport: Arc<Transport>,
}

impl SessionRouter for ClusterRouter {
    fn route(&self, session: SessionId) -> Option<SessionRoute> {
        if session.node() == self.transport.me {
            self.transport.local_sessions.route(session)
        } else {
            Some(SessionRoute::Remote(session.node()))
        }
    }

    fn to_user(&self, user: UserId, msg: &ToUser) -> Delivered {
        let t = &self.transport;
        let delivered = t.local_sessions.to_user(user, msg);
        let (wire, raw) = match msg {
            ToUser::Dispatch { intent, dispatch } => (UserWire::Dispatch { intent: *intent }, dispatch.0.clone()),
            ToUser::JoinGuild(guild) => (UserWire::JoinGuild(*guild), Bytes::new()),
        };
        let header = UserHeader { origin: t.me, user, msg: wire };
        t.post(t.subjects.user(user), encode_framed(&header, &raw));
        delivered
    }

    fn resumable(&self, key: &str) -> Option<guildhall_runtime::addresses::session::SessionHandle> {
        self.transport.local_sessions.resumable(key)
    }

    fn forward(&self, node: NodeId, guild: GuildId, sessions: &[SessionId], dispatch: &DispatchPrefix) {
        let header = SessionsHeader { guild, sessions: sessions.to_vec(), moved: false };
        self.transport.post(self.transport.subjects.sessions(node), encode_framed(&header, &dispatch.0));
    }

    /// On the subject the forwards take, so the marker arrives after them.
    fn moved(&self, node: NodeId, guild: GuildId, session: SessionId) {
        let header = SessionsHeader { guild, sessions: vec![session], moved: true };
        self.transport.post(self.transport.subjects.sessions(node), encode_framed(&header, &[]));
    }
}

/// Finds sessions on other nodes for a RESUME and takes them over ([`SessionMover`]).
pub struct ClusterMover {
    pub transport: Arc<Transport>,
}

#[async_trait]
impl SessionMover for ClusterMover {
    async fn find(&self, key: &str, user: UserId) -> Option<SessionRef> {
        let t = &self.transport;
        let ask = encode(&FindSession { key: key.to_owned(), user });
        // Only the node that has it answers; nobody answering in time means nobody has it.
        let answer = t.bus.request(&t.subjects.resume(), ask, FIND_TIMEOUT).await.ok()?;
        let found: SessionRef = decode(&answer).ok()?;
        (found.user == user && found.id.node() != t.me).then_some(found)
    }

    async fn take(&self, from: SessionRef, to: SessionRef) -> Option<MovedSession> {
        let t = &self.transport;
        let ask = encode(&TakeSession { from, to });
        let answer = t.bus.request(&t.subjects.take(from.id.node()), ask, TAKE_TIMEOUT).await.ok()?;
        let moved = match decode_take_answer(&answer) {
            Ok(TakeAnswer::Moved(moved)) => moved,
            Ok(TakeAnswer::Refused) => return None,
            Err(e) => {
                tracing::warn!(error = %e, node = from.id.node(), "an unreadable answer to a session take-over");
                return None;
            }
        };
        // `to` is now connected to those guilds: reconnect it if their node dies.
        for guild in &moved.guilds {
            if let Some(owner) = t.owner(*guild).filter(|owner| *owner != t.me) {
                let connect = GuildMsg::Connect { session: to, status: moved.status };
                t.track(owner, *guild, &connect);
            }
        }
        Some(moved)
    }
}

/// Where a guild (or DM channel) lives in the cluster: here, through the local directory,
/// or on its owner, through a [`NodeMailbox`].
pub struct ClusterDirectory {
    kind: ActorKind,
    local: Arc<LocalDirectory>,
    transport: Arc<Transport>,
    replies: Arc<Replies>,
    me: Weak<ClusterDirectory>,
}

impl ClusterDirectory {
    /// Builds the directory and the local one under it, whose refs relocate through this
    /// one (so a ref to an actor that moved away finds its new node).
    pub fn new(
        kind: ActorKind,
        deps: GuildDeps,
        transport: Arc<Transport>,
        replies: Arc<Replies>,
    ) -> Arc<ClusterDirectory> {
        Arc::new_cyclic(|me: &Weak<ClusterDirectory>| {
            let above: Weak<dyn Locate> = me.clone();
            let actors = match kind {
                ActorKind::Guild => Actors::Guilds,
                ActorKind::Dm => Actors::Dms,
            };
            let local = LocalDirectory::under(actors, deps, above);
            ClusterDirectory { kind, local, transport, replies, me: me.clone() }
        })
    }

    /// The actors running on this node.
    pub fn local(&self) -> &Arc<LocalDirectory> {
        &self.local
    }

    /// Hands off every actor running here that the ring now gives to another node (it
    /// stores and answers what it has, lets go of its ownership, and its sessions move to
    /// the new owner). Returns how many it asked to go.
    pub async fn rebalance(&self) -> usize {
        self.hand_off(false).await
    }

    /// Like [`rebalance`](Self::rebalance), but only actors the ring gives to another live
    /// node (not those it gives to nobody, as while this node cannot see the cluster): the
    /// periodic check between view changes.
    pub async fn rebalance_to_owners(&self) -> usize {
        let mut moved = 0;
        for id in self.local.running() {
            match self.transport.owner(id) {
                Some(owner) if owner != self.transport.me => {}
                _ => continue,
            }
            if let Ok(actor) = Directory::locate(self.local.as_ref(), id).await {
                if !actor.is_closed() && actor.send(GuildMsg::HandOff).await {
                    moved += 1;
                }
            }
        }
        moved
    }

    /// Hands off every actor running here (to start afresh: after this node's lease ran
    /// out, someone may have taken them over). The next use starts each again, here or
    /// on its owner, from storage.
    pub async fn restart_all(&self) -> usize {
        self.hand_off(true).await
    }

    /// Asks every guild actor staying here to start again, where the ring now puts them,
    /// the bots it runs on other nodes (a runner's node may have left or joined).
    pub async fn place_bots(&self) {
        for id in self.local.running() {
            match Directory::locate(self.local.as_ref(), id).await {
                // Not to one that stopped meanwhile: sending would start its successor.
                Ok(actor) if !actor.is_closed() => {
                    actor.send(GuildMsg::PlaceBots).await;
                }
                _ => {}
            }
        }
    }

    async fn hand_off(&self, all: bool) -> usize {
        let mut moved = 0;
        for id in self.local.running() {
            if !all && self.transport.owner(id) == Some(self.transport.me) {
                continue;
            }
            if let Ok(actor) = Directory::locate(self.local.as_ref(), id).await {
                if actor.send(GuildMsg::HandOff).await {
                    moved += 1;
                }
            }
        }
        moved
    }
}

#[async_trait]
impl Directory for ClusterDirectory {
    async fn locate(&self, id: GuildId) -> Result<GuildRef, LocateError> {
        let unavailable = LocateError::Unreachable;
        let owner = self.transport.owner(id).ok_or_else(|| unavailable("the cluster has no live node".into()))?;
        if owner == self.transport.me {
            return Directory::locate(self.local.as_ref(), id).await;
        }
        match self.transport.request(owner, &ActorRequest::Locate { kind: self.kind, id }).await {
            Ok(Accepted::Yes) => {}
            Ok(Accepted::Unknown) => {
                return Err(match self.kind {
                    ActorKind::Guild => LocateError::UnknownGuild,
                    ActorKind::Dm => LocateError::UnknownChannel,
                })
            }
            Ok(Accepted::NotHere) => return Err(unavailable(format!("node {owner} does not own {id} yet"))),
            Ok(Accepted::Failed(why)) => return Err(unavailable(why)),
            Err(e) => return Err(unavailable(format!("node {owner}: {e}"))),
        }
        let mailbox = Arc::new(NodeMailbox { node: owner, kind: self.kind, transport: self.transport.clone() });
        let locator: Weak<dyn Locate> = self.me.clone();
        Ok(GuildRef::remote(id, mailbox, self.replies.clone(), Some(locator)))
    }

    fn is_running_here(&self, id: GuildId) -> bool {
        self.transport.owner(id) == Some(self.transport.me) && self.local.is_running_here(id)
    }
}

#[async_trait]
impl Locate for ClusterDirectory {
    async fn locate(&self, id: GuildId) -> Result<GuildRef, LocateError> {
        Directory::locate(self, id).await
    }
}

/// The mailbox of an actor on another node.
pub struct NodeMailbox {
    node: NodeId,
    kind: ActorKind,
    transport: Arc<Transport>,
}

#[async_trait]
impl RemoteMailbox for NodeMailbox {
    async fn send(&self, id: GuildId, msg: GuildMsg) -> Result<(), Undelivered> {
        let request = ActorRequest::Deliver { kind: self.kind, id, msg: Box::new(msg) };
        let answer = self.transport.request(self.node, &request).await;
        let ActorRequest::Deliver { msg, .. } = request else { unreachable!("built above") };
        match answer {
            Ok(Accepted::Yes) => {
                if self.kind == ActorKind::Guild {
                    self.transport.track(self.node, id, &msg);
                }
                Ok(())
            }
            // Not (or no longer) there: the ref locates the actor again.
            Ok(Accepted::NotHere | Accepted::Unknown) | Err(BusError::NoResponders(_)) => {
                Err(Undelivered::Relocate(msg))
            }
            Ok(Accepted::Failed(why)) => {
                tracing::warn!(node = self.node, %id, %why, "another node could not take a message");
                Err(Undelivered::Relocate(msg))
            }
            Err(e) => {
                // It may have arrived: not sent again (see the module notes).
                tracing::warn!(node = self.node, %id, error = %e, "delivery to another node unconfirmed");
                Err(Undelivered::Unknown)
            }
        }
    }

    fn is_closed(&self) -> bool {
        false // another node's actor is found again when it answers NotHere
    }

    async fn gone(&self) {
        self.transport.left(self.node).await
    }
}

/// Message reads for a cluster: each goes to the node that runs the channel's actor (whose
/// data service coalesces it with every other read of that channel and has seen its
/// writes); this node's own channels are read here.
pub struct ClusterReads {
    pub transport: Arc<Transport>,
    pub data: Arc<DataService>,
    /// Per read forwarded from here and in flight: the identical reads that began since it
    /// was sent. They cannot take its answer (it may predate a write acknowledged before
    /// they began); when it lands, they share the next request, led by the first of them.
    /// A burst costs one request per round trip and node, whatever its size.
    in_flight: Mutex<HashMap<ReadKey, Vec<Joiner>>>,
}

/// What a read waiting for an identical one learns.
enum Turn {
    /// Its answer, asked for after it began.
    Answer(Arc<ReadAnswer>),
    /// Ask now, for yourself and these reads that wait with you.
    Lead(Vec<Joiner>),
    /// Ask on your own.
    Alone,
}

type Joiner = oneshot::Sender<Turn>;

/// What makes two reads identical.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ReadKey {
    History(guildhall_core::model::ChannelId, HistoryQuery, usize),
    Message(guildhall_core::model::ChannelId, MessageId),
}

/// Reads waiting for one request, at most (beyond, a read goes on its own).
const MAX_JOINED: usize = 100_000;

/// A forwarded read in flight and the reads that began before it was sent (its
/// followers). Landing gives them the answer if it may be shared, and hands the next
/// request to the reads that began meanwhile; dropped halfway, it sends them all off on
/// their own.
struct Flight<'a> {
    reads: &'a ClusterReads,
    key: Option<ReadKey>,
    followers: Vec<Joiner>,
}

impl Flight<'_> {
    fn land(mut self, shared: Option<Arc<ReadAnswer>>) {
        for follower in std::mem::take(&mut self.followers) {
            let _ = follower.send(shared.clone().map_or(Turn::Alone, Turn::Answer));
        }
        let Some(key) = self.key.take() else { return };
        let mut in_flight = self.reads.in_flight.lock_unpoisoned();
        let Some(waiting) = in_flight.get_mut(&key) else { return };
        let mut rest = std::mem::take(waiting);
        while !rest.is_empty() {
            let leader = rest.remove(0);
            match leader.send(Turn::Lead(rest)) {
                Ok(()) => return,                     // the entry stays: it collects the reads that begin meanwhile
                Err(Turn::Lead(back)) => rest = back, // that read was dropped: the next leads
                Err(_) => break,                      // (a send gives back what it was given: never)
            }
        }
        in_flight.remove(&key);
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        for follower in std::mem::take(&mut self.followers) {
            let _ = follower.send(Turn::Alone);
        }
        if let Some(key) = self.key.take() {
            let waiting = self.reads.in_flight.lock_unpoisoned().remove(&key);
            for waiter in waiting.unwrap_or_default() {
                let _ = waiter.send(Turn::Alone);
            }
        }
    }
}

impl ClusterReads {
    pub fn new(transport: Arc<Transport>, data: Arc<DataService>) -> ClusterReads {
        ClusterReads { transport, data, in_flight: Mutex::new(HashMap::new()) }
    }

    /// Reads through the channel's node, sharing requests among identical reads here.
    async fn read(&self, read: ReadRequest) -> Result<Arc<ReadAnswer>, StoreError> {
        if self.transport.channel_owner(read.channel()) == Some(self.transport.me) {
            // Here: the local data service coalesces.
            return Ok(Arc::new(self.ask(read).await?.answer));
        }
        let key = match &read {
            ReadRequest::History { channel, query, limit } => ReadKey::History(channel.id, *query, *limit),
            ReadRequest::Message { channel, id } => ReadKey::Message(channel.id, *id),
        };
        enum Role {
            Lead,
            Wait(oneshot::Receiver<Turn>),
            Alone,
        }
        let role = {
            let mut in_flight = self.in_flight.lock_unpoisoned();
            match in_flight.get_mut(&key) {
                Some(waiting) if waiting.len() < MAX_JOINED => {
                    let (tx, rx) = oneshot::channel();
                    waiting.push(tx);
                    Role::Wait(rx)
                }
                Some(_) => Role::Alone,
                None => {
                    in_flight.insert(key.clone(), Vec::new());
                    Role::Lead
                }
            }
        };
        let followers = match role {
            Role::Lead => Vec::new(),
            Role::Alone => return Ok(Arc::new(self.ask(read).await?.answer)),
            Role::Wait(turn) => match turn.await {
                Ok(Turn::Answer(shared)) => {
                    self.transport.metrics.reads_joined.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Ok(shared);
                }
                Ok(Turn::Lead(followers)) => followers,
                // A write landed meanwhile, or the read failed: this read goes on its own.
                Ok(Turn::Alone) | Err(_) => return Ok(Arc::new(self.ask(read).await?.answer)),
            },
        };
        // Every follower began before this request is sent.
        let flight = Flight { reads: self, key: Some(key), followers };
        let ReadReply { answer, shareable } = self.ask(read).await?; // (an error drops the flight)
        let answer = Arc::new(answer);
        flight.land(shareable.then(|| answer.clone()));
        Ok(answer)
    }

    async fn ask(&self, read: ReadRequest) -> Result<ReadReply, StoreError> {
        const ATTEMPTS: usize = 3;
        let unavailable = StoreError::Unreachable;
        let channel = read.channel().clone();
        for _ in 0..ATTEMPTS {
            let owner = self
                .transport
                .channel_owner(&channel)
                .ok_or_else(|| unavailable("the cluster has no live node".into()))?;
            if owner == self.transport.me {
                return Ok(self.transport.answer_read(read, &self.data).await);
            }
            let subject = self.transport.subjects.read(owner);
            let answer = tokio::select! {
                answer = self.transport.bus.request(&subject, encode(&read), DELIVERY_TIMEOUT) => answer,
                // It died with the read in flight: a read is safe to ask again, of the
                // channel's next owner.
                () = self.transport.left(owner) => continue,
            };
            match answer {
                Ok(bytes) => match decode::<ReadReply>(&bytes) {
                    Ok(ReadReply { answer: ReadAnswer::NotHere, .. }) => {
                        tokio::time::sleep(Duration::from_millis(100)).await
                    }
                    Ok(reply) => return Ok(reply),
                    Err(e) => return Err(unavailable(e.to_string())),
                },
                Err(BusError::NoResponders(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(e) => return Err(unavailable(format!("node {owner}: {e}"))),
            }
        }
        Err(unavailable(format!("no node answers reads of channel {}", channel.id)))
    }
}

#[async_trait]
impl MessageReads for ClusterReads {
    async fn history(&self, channel: &Channel, query: HistoryQuery, limit: usize) -> StoreResult<Arc<Vec<Message>>> {
        let read = ReadRequest::History { channel: Box::new(channel.clone()), query, limit };
        match &*self.read(read).await? {
            ReadAnswer::Messages(messages) => Ok(Arc::new(messages.clone())),
            ReadAnswer::Failed(why) => Err(StoreError::Unavailable(why.clone())),
            other => Err(StoreError::Corrupt(format!("a history read answered {other:?}"))),
        }
    }

    async fn message(&self, channel: &Channel, id: MessageId) -> StoreResult<Option<Message>> {
        match &*self.read(ReadRequest::Message { channel: Box::new(channel.clone()), id }).await? {
            ReadAnswer::Message(message) => Ok(message.as_deref().cloned()),
            ReadAnswer::Failed(why) => Err(StoreError::Unavailable(why.clone())),
            other => Err(StoreError::Corrupt(format!("a message read answered {other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::NodeInfo;
    use guildhall_bus::LocalBus;
    use guildhall_core::model::User;
    use guildhall_core::Snowflake;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    /// Node 1's `ClusterReads` in a two-node view, on an in-process bus; node 2 is played
    /// by the test, answering the read requests itself. Returns a channel of a guild that
    /// the ring gives to node 2.
    fn reading_node() -> (ClusterReads, Arc<dyn Bus>, Channel, PathBuf) {
        let bus: Arc<dyn Bus> = Arc::new(LocalBus::new());
        let members: BTreeMap<NodeId, NodeInfo> = [1, 2]
            .map(|node| {
                let info =
                    NodeInfo { node, advertise: String::new(), started_unix_ms: 0, draining: false, incarnation: 0 };
                (node, info)
            })
            .into();
        let (_, view) = watch::channel(Arc::new(View::new(members)));
        let metrics = Arc::new(Metrics::default());
        let transport = Transport::new(1, "t", bus.clone(), view, Arc::default(), metrics);
        let guild = (1..).map(Snowflake).find(|g| transport.owner(*g) == Some(2)).expect("some guild on node 2");
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("guildhall-reads-test-{}-{n}", std::process::id()));
        let store = guildhall_store_redb::EmbeddedStore::open(&dir).expect("store");
        let clock = Arc::new(guildhall_runtime::infrastructure::clock::TokioClock::new(1_700_000_000_000));
        let reads = ClusterReads::new(transport, DataService::new(Arc::new(store), 1, true, clock));
        (reads, bus, Channel::text(Snowflake(777), guild, "hot"), dir)
    }

    fn page(channel: &Channel, id: u64) -> ReadReply {
        let message = Message::new(Snowflake(id), channel, User::new(Snowflake(5), "u", false), "m".into(), None);
        ReadReply { answer: ReadAnswer::Messages(vec![message]), shareable: false }
    }

    /// Three identical reads on node 1: the second and third begin while the first is in
    /// flight, so the first's answer is not theirs (a write may have been acknowledged
    /// before they began, and after the channel's node answered); they share the next
    /// request, if the channel's node says its answer may be shared (`shareable`).
    async fn three_reads(shareable: bool) -> ([u64; 3], usize) {
        let (reads, bus, channel, dir) = reading_node();
        let reads = Arc::new(reads);
        let mut node2 = bus.subscribe("t.node.2.read").await.unwrap();
        let read = |reads: Arc<ClusterReads>, channel: Channel| {
            tokio::spawn(async move {
                let page = reads.history(&channel, HistoryQuery::Latest, 50).await.unwrap();
                page[0].id.0
            })
        };
        async fn next_request(node2: &mut guildhall_bus::Subscription) -> guildhall_bus::Message {
            tokio::time::timeout(Duration::from_secs(5), node2.next()).await.expect("a request").unwrap()
        }
        let first = read(reads.clone(), channel.clone());
        let request = next_request(&mut node2).await; // the first read is in flight, held here
        let (second, third) = (read(reads.clone(), channel.clone()), read(reads.clone(), channel.clone()));
        let key = ReadKey::History(channel.id, HistoryQuery::Latest, 50);
        while reads.in_flight.lock().unwrap().get(&key).map(Vec::len) != Some(2) {
            tokio::task::yield_now().await; // until both wait
        }
        let answer = |id| ReadReply { shareable, ..page(&channel, id) };
        bus.publish(&request.reply.unwrap(), encode(&answer(100))).await.unwrap();
        let first = first.await.unwrap();
        let request = next_request(&mut node2).await; // the second asks, for the third too
        bus.publish(&request.reply.unwrap(), encode(&answer(200))).await.unwrap();
        let second = second.await.unwrap();
        let mut asked = 2;
        if !shareable {
            let request = next_request(&mut node2).await; // the third asks on its own
            asked += 1;
            bus.publish(&request.reply.unwrap(), encode(&answer(300))).await.unwrap();
        }
        let third = third.await.unwrap();
        let _ = std::fs::remove_dir_all(dir);
        assert!(reads.in_flight.lock().unwrap().is_empty(), "nothing left in flight");
        ([first, second, third], asked)
    }

    #[tokio::test]
    async fn reads_that_began_during_a_request_share_the_next_one() {
        assert_eq!(three_reads(true).await, ([100, 200, 200], 2));
    }

    #[tokio::test]
    async fn a_read_whose_answer_may_predate_a_write_is_not_shared() {
        // Node 2 saw a write acknowledged while the second read was in flight: the third
        // read may have begun after that acknowledgement, so it asks again.
        assert_eq!(three_reads(false).await, ([100, 200, 300], 3));
    }
}
