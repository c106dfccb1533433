//! The session actor: one task per gateway session, driving a `guildhall_core::session::Session`.
//!
//! It owns the session's state and, while one is attached, the client connection's write
//! half (a [`Conn`]); a separate reader task turns incoming frames into [`Inbound`] events.
//! Its mailbox is the session's bounded outbound queue: guilds offer dispatches without
//! waiting, and the actor writes them in batches (many frames, one flush). When the
//! connection drops, the actor lives on, detached and buffering, until the resume window
//! ends; a RESUME on a new connection hands that connection to this actor.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fastwebsockets::{Frame, Payload, WebSocketWrite};
use guildhall_core::clock::Clock;
use guildhall_core::gateway::{close, intents, DispatchPrefix, Intents, Status};
use guildhall_core::guild::SessionId;
use guildhall_core::model::{GuildId, Member, UserId};
use guildhall_core::session::{Effect, Input, MemberRequest, Phase, ResumeOutcome, Session};
use serde_json::json;
use tokio::io::AsyncWrite;
use tokio::sync::{mpsc, oneshot, watch};

use guildhall_runtime::addresses::guild_ref::{GuildMsg, GuildRef};
use guildhall_runtime::addresses::session::{MovedSession, SessionHandle, SessionMsg, SessionRef, SessionShared};

use crate::app::App;
use crate::write_buffer::GatheringWriter;

/// The write half of a client WebSocket: a batch of frames is gathered into one write, and
/// the buffer exists only while it holds something.
pub type Writer = WebSocketWrite<GatheringWriter<Box<dyn AsyncWrite + Send + Unpin>>>;

/// What the reader task reports about the client's side of the connection.
#[derive(Debug)]
pub enum Inbound {
    Text(Bytes),
    Binary,
    /// A frame or reassembled message over the size limit.
    TooLarge,
    /// Not valid WebSocket or UTF-8.
    Invalid,
    Ping(Bytes),
    Closed {
        code: Option<u16>,
    },
}

/// One client connection: its writer and the channel its reader task feeds.
pub struct Conn {
    pub writer: Writer,
    /// `compress=zlib-stream`: this connection's compression stream.
    pub zlib: Option<crate::compress::ZlibStream>,
    pub inbound: mpsc::Receiver<Inbound>,
    pub reader: tokio::task::AbortHandle,
    pub app: Arc<App>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reader.abort();
        self.app.metrics.connections_open.fetch_sub(1, Relaxed);
    }
}

/// A new connection offered to an existing session. The reply gives the connection back
/// (with whether the seq was invalid) if the session refuses it.
pub struct ResumeRequest {
    pub user: UserId,
    pub seq: u64,
    pub conn: Conn,
    pub reply: oneshot::Sender<Result<(), (Conn, bool)>>,
}

enum Flow {
    Continue,
    /// The connection went to another session actor (RESUME); this one just ends.
    HandedOff,
}

struct SessionActor {
    app: Arc<App>,
    id: SessionId,
    state: Session,
    conn: Option<Conn>,
    mailbox: mpsc::Receiver<SessionMsg>,
    tx: mpsc::Sender<SessionMsg>,
    shared: Arc<SessionShared>,
    shutdown: watch::Receiver<bool>,
    /// Set once READY went out: the registry key (the session_id clients resume with).
    key: Option<String>,
    user: Option<UserId>,
    intents: Intents,
    status: Status,
    guilds: Vec<GuildRef>,
    /// Frames were written since the last flush.
    dirty: bool,
    /// A non-dispatch message met while draining, handled next.
    held: Option<SessionMsg>,
    /// Set when this node leaves the cluster (op 7 to the client).
    drain: watch::Receiver<bool>,
    /// Being taken over by a session on another node (see [`SessionMsg::MoveOut`]).
    moving: Option<MovingOut>,
}

/// A session on its way to another node: it waits for each guild's marker.
struct MovingOut {
    waiting: HashSet<GuildId>,
    reply: oneshot::Sender<Option<MovedSession>>,
    deadline: tokio::time::Instant,
}

/// How long a session being moved waits for its guilds' markers before it hands itself
/// over anyway (a guild that has not answered by then may lose it a dispatch).
const MOVE_MARKER_WAIT: Duration = Duration::from_secs(3);

/// How a RESUME went for the connection that asked.
enum Resumed {
    /// Another session actor here took the connection; this one ends.
    HandedOff,
    /// Go on with these effects (a refusal, or a session taken over from another node).
    Continue(Vec<Effect>),
}

/// Runs a session for a freshly upgraded connection until it ends or is handed off.
pub async fn run_session(app: Arc<App>, conn: Conn) {
    let (tx, mailbox) = mpsc::channel(app.config.gateway.session_queue);
    let id = app.next_session_id();
    let app_drain = app.drain_signal();
    let mut actor = SessionActor {
        state: Session::new(app.config.session_config()),
        shutdown: app.shutdown_signal(),
        app,
        id,
        conn: Some(conn),
        mailbox,
        tx,
        shared: Arc::default(),
        key: None,
        user: None,
        intents: Intents::NONE,
        status: Status::Online,
        guilds: Vec::new(),
        dirty: false,
        held: None,
        drain: app_drain,
        moving: None,
    };
    let fx = actor.state.handle(Input::Opened { now_ms: actor.now_ms() });
    if let Flow::HandedOff = actor.apply(fx).await {
        return;
    }
    actor.flush().await;
    actor.run().await;
}

async fn recv_inbound(conn: &mut Option<Conn>) -> Inbound {
    match conn {
        Some(c) => c.inbound.recv().await.unwrap_or(Inbound::Closed { code: None }),
        None => std::future::pending().await,
    }
}

impl SessionActor {
    /// The session clock: the process's monotonic milliseconds.
    fn now_ms(&self) -> u64 {
        self.app.clock.monotonic_ms()
    }

    async fn run(mut self) {
        /// Dispatches written per flush, so one busy session cannot starve its own reader.
        const MAX_DRAIN: usize = 256;
        loop {
            if self.state.phase() == Phase::Terminated {
                self.teardown();
                return;
            }
            if let Some(msg) = self.held.take() {
                let fx = self.on_mail(msg).await;
                if let Flow::HandedOff = self.apply(fx).await {
                    return;
                }
                self.flush().await;
                continue;
            }
            // The state machine's deadline, on the clock's monotonic time, as a tokio instant.
            let now = self.now_ms();
            let deadline = self
                .state
                .next_deadline_ms()
                .map(|ms| tokio::time::Instant::now() + std::time::Duration::from_millis(ms.saturating_sub(now)));
            let move_deadline = self.moving.as_ref().map(|m| m.deadline);
            let fx = tokio::select! {
                biased;
                _ = self.shared.notified() => {
                    if self.shared.is_overflowed() { self.state.handle(Input::Overflowed) } else { Vec::new() }
                }
                _ = self.shutdown.changed() => self.state.handle(Input::Shutdown),
                _ = self.drain.changed() => {
                    if *self.drain.borrow_and_update() && self.moving.is_none() {
                        self.state.handle(Input::Drain { now_ms: self.now_ms() })
                    } else {
                        Vec::new()
                    }
                }
                _ = sleep_until_opt(move_deadline) => {
                    self.finish_move();
                    Vec::new()
                }
                inbound = recv_inbound(&mut self.conn) => self.on_inbound(inbound).await,
                msg = self.mailbox.recv() => {
                    let Some(msg) = msg else { return };
                    let mut fx = self.on_mail(msg).await;
                    // Write whatever else is queued in the same batch (one flush).
                    for _ in 0..MAX_DRAIN {
                        match self.mailbox.try_recv() {
                            Ok(SessionMsg::Dispatch(prefix)) => fx.extend(self.state.handle(Input::Dispatch(&prefix))),
                            Ok(other) => {
                                // A join or a resume waits until this batch is written, so a
                                // resumed connection never receives frames meant for the old one.
                                self.held = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    fx
                }
                _ = sleep_until_opt(deadline) => self.state.handle(Input::Tick { now_ms: self.now_ms() }),
            };
            if let Flow::HandedOff = self.apply(fx).await {
                return;
            }
            self.flush().await;
        }
    }

    async fn on_inbound(&mut self, inbound: Inbound) -> Vec<Effect> {
        let now = self.now_ms();
        match inbound {
            Inbound::Text(bytes) => self.state.handle(Input::ClientText { payload: &bytes, now_ms: now }),
            Inbound::Binary => self.state.handle(Input::ClientBinary { now_ms: now }),
            Inbound::TooLarge => self.state.handle(Input::ClientMalformed { reason: "payload too large" }),
            Inbound::Invalid => self.state.handle(Input::ClientMalformed { reason: "invalid frame" }),
            Inbound::Ping(payload) => {
                if let Some(c) = &mut self.conn {
                    let ok = c.writer.write_frame(Frame::pong(Payload::Borrowed(&payload))).await.is_ok();
                    self.dirty |= ok;
                }
                Vec::new()
            }
            Inbound::Closed { code } => {
                self.conn = None;
                self.state.handle(Input::ClientClosed { code, now_ms: now })
            }
        }
    }

    async fn on_mail(&mut self, msg: SessionMsg) -> Vec<Effect> {
        match msg {
            SessionMsg::Dispatch(prefix) => self.state.handle(Input::Dispatch(&prefix)),
            SessionMsg::JoinGuild(guild) => {
                self.subscribe(guild).await;
                Vec::new()
            }
            SessionMsg::Resume(req) => {
                let Ok(req) = req.downcast::<ResumeRequest>() else {
                    debug_assert!(false, "a resume request carries this edge's ResumeRequest");
                    return Vec::new();
                };
                self.take_over(*req)
            }
            SessionMsg::MoveOut { to, reply } => self.move_out(to, reply).await,
            SessionMsg::Moved(guild) => {
                if let Some(moving) = &mut self.moving {
                    moving.waiting.remove(&guild);
                    if moving.waiting.is_empty() {
                        self.finish_move();
                    }
                }
                Vec::new()
            }
        }
    }

    /// A RESUME on another node takes this session over as `to`: the guilds route there
    /// from their next dispatch on and each sends this session a marker after its last
    /// one; once all came, the state goes to the new node (see `finish_move`).
    async fn move_out(&mut self, to: SessionRef, reply: oneshot::Sender<Option<MovedSession>>) -> Vec<Effect> {
        let live = matches!(self.state.phase(), Phase::Ready | Phase::Detached { .. });
        let Some(key) = self.key.clone().filter(|_| live && self.moving.is_none()) else {
            let _ = reply.send(None);
            return Vec::new();
        };
        // Not resumable here any more; an old connection still attached hears op 7.
        self.app.local_sessions.forget_key(&key, self.id);
        let fx = self.state.handle(Input::Drain { now_ms: self.now_ms() });
        for guild in &self.guilds {
            guild.send(GuildMsg::Move { from: self.id, to, status: self.status }).await;
        }
        let waiting = self.guilds.iter().map(|g| g.id).collect::<HashSet<_>>();
        let deadline = tokio::time::Instant::now() + MOVE_MARKER_WAIT;
        let empty = waiting.is_empty();
        self.moving = Some(MovingOut { waiting, reply, deadline });
        if empty {
            self.finish_move();
        }
        fx
    }

    /// Hands the state to the session that took this one over; this actor then ends
    /// without leaving its guilds (they route to the new session now).
    fn finish_move(&mut self) {
        let Some(moving) = self.moving.take() else { return };
        if !moving.waiting.is_empty() {
            tracing::warn!(session = self.id.0, guilds = moving.waiting.len(), "moved before every guild confirmed");
        }
        let guilds = self.guilds.drain(..).map(|g| g.id).collect();
        let moved = self.state.hand_over().map(|handover| MovedSession { handover, status: self.status, guilds });
        let _ = moving.reply.send(moved);
        debug_assert_eq!(self.state.phase(), Phase::Terminated, "a session handed over is over here");
    }

    /// A RESUME on a new connection: this session takes the connection if the state agrees.
    fn take_over(&mut self, req: ResumeRequest) -> Vec<Effect> {
        if self.moving.is_some() {
            let _ = req.reply.send(Err((req.conn, false)));
            return Vec::new();
        }
        match self.state.resume(req.user, req.seq, self.now_ms()) {
            ResumeOutcome::Accepted(fx) => {
                // A still-attached old connection (a zombie the client gave up on) is dropped.
                self.conn = Some(req.conn);
                let _ = req.reply.send(Ok(()));
                fx
            }
            ResumeOutcome::Rejected { invalid_seq } => {
                let _ = req.reply.send(Err((req.conn, invalid_seq)));
                Vec::new()
            }
        }
    }

    async fn apply(&mut self, fx: Vec<Effect>) -> Flow {
        let mut work: VecDeque<Effect> = fx.into();
        while let Some(effect) = work.pop_front() {
            match effect {
                Effect::Send(frame) => {
                    if !self.write(&frame).await {
                        self.conn = None;
                        work.extend(self.state.handle(Input::Disconnected { now_ms: self.now_ms() }));
                    }
                }
                Effect::Close { code, reason } => {
                    if let Some(mut c) = self.conn.take() {
                        let timeout = Duration::from_millis(1000);
                        let _ = tokio::time::timeout(timeout, async {
                            c.writer.write_frame(Frame::close(code, reason.as_bytes())).await?;
                            c.writer.flush().await
                        })
                        .await;
                    }
                    self.dirty = false;
                    work.extend(self.state.handle(Input::Disconnected { now_ms: self.now_ms() }));
                }
                Effect::Authenticate { token, intents, status } => {
                    work.extend(self.identify(&token, intents, status).await);
                }
                Effect::Resume { token, session_id, seq } => match self.resume(&token, &session_id, seq).await {
                    Resumed::HandedOff => return Flow::HandedOff,
                    Resumed::Continue(fx) => work.extend(fx),
                },
                Effect::PresenceUpdate { status } => {
                    self.status = status;
                    for g in &self.guilds {
                        g.send(GuildMsg::Presence { session: self.id, status }).await;
                    }
                }
                Effect::RequestMembers(request) => work.extend(self.request_members(request).await),
                Effect::Terminate => {} // the run loop sees Phase::Terminated
            }
        }
        Flow::Continue
    }

    /// Writes one frame into the buffer; false if the connection is gone or stuck.
    async fn write(&mut self, frame: &Bytes) -> bool {
        let Some(c) = &mut self.conn else { return true }; // detached: buffered in the state
        let timeout = Duration::from_millis(self.app.config.gateway.write_timeout_ms);
        let Conn { writer, zlib, .. } = c;
        let frame = match zlib {
            None => Frame::text(Payload::Borrowed(frame)),
            Some(zlib) => {
                let started = std::time::Instant::now();
                let compressed = zlib.compress(frame);
                let m = &self.app.metrics;
                m.zlib_compress_ns.fetch_add(started.elapsed().as_nanos() as u64, Relaxed);
                m.zlib_bytes_in.fetch_add(frame.len() as u64, Relaxed);
                m.zlib_bytes_out.fetch_add(compressed.len() as u64, Relaxed);
                Frame::binary(Payload::Borrowed(compressed))
            }
        };
        let ok = matches!(tokio::time::timeout(timeout, writer.write_frame(frame)).await, Ok(Ok(())));
        self.dirty |= ok;
        ok
    }

    async fn flush(&mut self) {
        if !std::mem::take(&mut self.dirty) {
            return;
        }
        let Some(c) = &mut self.conn else { return };
        let timeout = Duration::from_millis(self.app.config.gateway.write_timeout_ms);
        if !matches!(tokio::time::timeout(timeout, c.writer.flush()).await, Ok(Ok(()))) {
            self.conn = None;
            let fx = self.state.handle(Input::Disconnected { now_ms: self.now_ms() });
            // Disconnecting only ever terminates or detaches; nothing to write.
            debug_assert!(fx.iter().all(|e| matches!(e, Effect::Terminate)));
        }
    }

    async fn identify(&mut self, token: &str, intents: Intents, status: Option<Status>) -> Vec<Effect> {
        let record = match crate::auth::record_for_token(&self.app, gateway_token(token)).await {
            Ok(Some(record)) => record,
            Ok(None) => return self.state.handle(Input::AuthenticationFailed),
            Err(e) => {
                tracing::warn!(error = %e, "identify: storage unavailable");
                return vec![Effect::Close { code: close::UNKNOWN_ERROR, reason: "storage unavailable" }];
            }
        };
        if record.disallowed_intents(intents) != Intents::NONE {
            return vec![Effect::Close { code: close::DISALLOWED_INTENTS, reason: "Disallowed intent(s)." }];
        }
        let (application_id, application_flags) = record.application_of();
        let user = record.user;
        // IDENTIFYs of one user are spaced (`rate_limits.identify`, `/gateway/bot`'s
        // max_concurrency per 5 s); one past it waits its turn, bounded by the IDENTIFY
        // deadline, then is refused as Discord refuses one sent too fast.
        let give_up = tokio::time::Instant::now() + Duration::from_millis(self.app.config.gateway.identify_timeout_ms);
        while let Err(wait_ms) = self.app.limits.identify(user.id) {
            let at = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
            if at > give_up {
                return vec![Effect::Close { code: close::RATE_LIMITED, reason: "too many IDENTIFYs at once" }];
            }
            tokio::time::sleep_until(at).await;
        }
        if !self.app.limits.take_session_start(user.id) {
            return vec![Effect::Close { code: close::RATE_LIMITED, reason: "daily session start limit reached" }];
        }
        let store = &self.app.store;
        let (guild_ids, dms) = match tokio::try_join!(store.user_guilds(user.id), store.user_dms(user.id)) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "identify: storage unavailable");
                return vec![Effect::Close { code: close::UNKNOWN_ERROR, reason: "storage unavailable" }];
            }
        };
        let key = crate::auth::random_hex(16);
        let ready = json!({
            "v": 10,
            "user": user.as_self(),
            "guilds": guild_ids.iter().map(|id| json!({ "id": id, "unavailable": true })).collect::<Vec<_>>(),
            "session_id": key,
            "resume_gateway_url": self.app.config.gateway_url(),
            "private_channels": dms,
            "relationships": [],
            "presences": [],
            "shard": [0, 1],
            "application": { "id": application_id, "flags": application_flags },
        });
        let fx = self.state.handle(Input::Authenticated {
            user_id: user.id,
            session_id: key.clone(),
            ready: DispatchPrefix::encode("READY", &ready),
        });
        self.intents = intents;
        self.status = status.unwrap_or_default();
        self.user = Some(user.id);
        self.app.local_sessions.insert(key.clone(), self.handle(user.id));
        self.key = Some(key);
        self.app.metrics.sessions_open.fetch_add(1, Relaxed);
        // GUILD_CREATEs arrive through the mailbox, so they follow READY on the wire.
        for guild in guild_ids {
            self.subscribe(guild).await;
        }
        fx
    }

    /// Op 8: the guild's matching members as GUILD_MEMBERS_CHUNK dispatches (at most 1000
    /// members each). Every member needs the GUILD_MEMBERS intent (4014 without it); a
    /// query is a case-insensitive prefix of the username or nickname, at most 100 found.
    /// A guild the session is not in gets nothing, as on Discord.
    async fn request_members(&mut self, request: MemberRequest) -> Vec<Effect> {
        const CHUNK: usize = 1000;
        /// Most members one request returns (a request walks the member list from storage).
        const MAX_MEMBERS: usize = 100_000;
        let guild_id = request.guild_id;
        if !self.guilds.iter().any(|g| g.id == guild_id) {
            return Vec::new();
        }
        let query = request.query.as_deref().map(str::to_lowercase);
        let everyone = request.user_ids.is_empty() && query.as_deref() == Some("") && request.limit == 0;
        if everyone && !self.intents.contains(intents::GUILD_MEMBERS) {
            return vec![Effect::Close {
                code: close::DISALLOWED_INTENTS,
                reason: "GUILD_MEMBERS is needed for every member",
            }];
        }
        let Some(user) = self.user else { return Vec::new() };
        if let Err(retry_after_ms) = self.app.limits.member_request(user, guild_id.0) {
            // Discord's answer to an op 8 past its limit: a RATE_LIMITED dispatch, no chunks.
            let mut meta = json!({ "guild_id": guild_id });
            if let Some(nonce) = &request.nonce {
                meta["nonce"] = json!(nonce);
            }
            let data = json!({ "opcode": 8, "retry_after": retry_after_ms as f64 / 1000.0, "meta": meta });
            return self.state.handle(Input::Dispatch(&DispatchPrefix::encode("RATE_LIMITED", &data)));
        }
        let store = &self.app.store;
        let (mut found, mut not_found) = (Vec::new(), Vec::new());
        let result: Result<(), guildhall_store::StoreError> = async {
            if !request.user_ids.is_empty() {
                for id in &request.user_ids {
                    match store.member(guild_id, *id).await? {
                        Some(m) => found.push(m),
                        None => not_found.push(*id),
                    }
                }
                return Ok(());
            }
            let query = query.unwrap_or_default();
            let limit = if everyone { MAX_MEMBERS } else { request.limit.clamp(1, 100) };
            let mut after = None;
            loop {
                let page = store.members(guild_id, after, CHUNK).await?;
                let last = page.last().map(|m| m.user.id);
                let matches = |m: &Member| {
                    m.user.username.to_lowercase().starts_with(&query)
                        || m.nick.as_ref().is_some_and(|n| n.to_lowercase().starts_with(&query))
                };
                found.extend(page.into_iter().filter(matches).take(limit - found.len()));
                match last {
                    Some(id) if found.len() < limit => after = Some(id),
                    _ => return Ok(()),
                }
            }
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "request guild members: storage unavailable");
            return Vec::new();
        }
        let chunk_count = found.len().div_ceil(CHUNK).max(1);
        let mut fx = Vec::new();
        let mut chunks: Vec<&[Member]> = found.chunks(CHUNK).collect();
        if chunks.is_empty() {
            chunks.push(&[]);
        }
        for (index, members) in chunks.into_iter().enumerate() {
            let mut data = json!({
                "guild_id": guild_id,
                "members": members,
                "chunk_index": index,
                "chunk_count": chunk_count,
            });
            if index == 0 && !not_found.is_empty() {
                data["not_found"] = json!(not_found);
            }
            if request.presences {
                data["presences"] = json!([]);
            }
            if let Some(nonce) = &request.nonce {
                data["nonce"] = json!(nonce);
            }
            let prefix = DispatchPrefix::encode("GUILD_MEMBERS_CHUNK", &data);
            fx.extend(self.state.handle(Input::Dispatch(&prefix)));
        }
        fx
    }

    fn handle(&self, user: UserId) -> SessionHandle {
        SessionHandle { id: self.id, user, intents: self.intents, tx: self.tx.clone(), shared: self.shared.clone() }
    }

    async fn subscribe(&mut self, guild: GuildId) {
        let Some(user) = self.user else { return };
        if self.guilds.iter().any(|g| g.id == guild) {
            return;
        }
        match self.app.directory.locate(guild).await {
            Ok(handle) => {
                let msg = GuildMsg::Connect { session: self.handle(user).address(), status: self.status };
                if handle.send(msg).await {
                    self.guilds.push(handle);
                }
            }
            Err(e) => tracing::warn!(%guild, error = %e, "session could not reach guild"),
        }
    }

    /// Offers this connection to the session being resumed, here or on another node.
    async fn resume(&mut self, token: &str, session_id: &str, seq: u64) -> Resumed {
        let user = match crate::auth::user_for_token(&self.app, gateway_token(token)).await {
            Ok(Some(user)) => user,
            Ok(None) => return Resumed::Continue(self.state.handle(Input::AuthenticationFailed)),
            Err(_) => {
                return Resumed::Continue(vec![Effect::Close {
                    code: close::UNKNOWN_ERROR,
                    reason: "storage unavailable",
                }])
            }
        };
        let Some(target) = self.app.router.resumable(session_id).filter(|t| t.user == user.id) else {
            return Resumed::Continue(self.resume_from_another_node(user.id, session_id, seq).await);
        };
        let Some(conn) = self.conn.take() else { return Resumed::HandedOff }; // the client is already gone
        let (reply, answer) = oneshot::channel();
        let request = ResumeRequest { user: user.id, seq, conn, reply };
        if let Err(e) = target.tx.send_timeout(SessionMsg::Resume(Box::new(request)), Duration::from_secs(5)).await {
            if let SessionMsg::Resume(request) = e.into_inner() {
                if let Ok(request) = request.downcast::<ResumeRequest>() {
                    self.conn = Some(request.conn);
                }
            }
            return Resumed::Continue(self.state.handle(Input::ResumeRejected { invalid_seq: false }));
        }
        match answer.await {
            Ok(Ok(())) => Resumed::HandedOff,
            Ok(Err((conn, invalid_seq))) => {
                self.conn = Some(conn);
                Resumed::Continue(self.state.handle(Input::ResumeRejected { invalid_seq }))
            }
            // The target ended while holding the connection; it is gone with it.
            Err(_) => Resumed::HandedOff,
        }
    }

    /// The session is not here: in a cluster, find it on another node and become it (this
    /// actor takes over its sequence, replay buffer, guilds and status).
    async fn resume_from_another_node(&mut self, user: UserId, key: &str, seq: u64) -> Vec<Effect> {
        let Some(mover) = self.app.mover.clone() else {
            return self.state.handle(Input::ResumeRejected { invalid_seq: false });
        };
        let Some(from) = mover.find(key, user).await else {
            return self.state.handle(Input::ResumeRejected { invalid_seq: false });
        };
        // Routed to by id from now on, so the guilds can switch to this actor; resumable
        // here and reached for DMs only once it has the state.
        self.intents = from.intents;
        self.app.local_sessions.insert_route(self.handle(user));
        let Some(moved) = mover.take(from, self.handle(user).address()).await else {
            self.app.local_sessions.remove(key, self.id);
            return self.state.handle(Input::ResumeRejected { invalid_seq: false });
        };
        let now = self.now_ms();
        self.state = Session::adopt(self.app.config.session_config(), moved.handover, now);
        self.status = moved.status;
        self.user = Some(user);
        let key = self.state.session_id().unwrap_or(key).to_owned();
        self.app.local_sessions.insert(key.clone(), self.handle(user));
        self.key = Some(key);
        self.app.metrics.sessions_open.fetch_add(1, Relaxed);
        self.app.metrics.sessions_moved_in.fetch_add(1, Relaxed);
        for guild in moved.guilds {
            match self.app.directory.locate(guild).await {
                Ok(handle) => self.guilds.push(handle),
                Err(e) => tracing::warn!(%guild, error = %e, "a moved session could not reach its guild"),
            }
        }
        match self.state.resume(user, seq, now) {
            ResumeOutcome::Accepted(fx) => fx,
            // The session is here now, detached; this connection cannot have it.
            ResumeOutcome::Rejected { invalid_seq: true } => {
                vec![Effect::Close { code: close::INVALID_SEQ, reason: "invalid seq" }]
            }
            ResumeOutcome::Rejected { invalid_seq: false } => vec![
                Effect::Send(guildhall_core::gateway::control_frame(
                    guildhall_core::gateway::op::INVALID_SESSION,
                    &false,
                )),
                Effect::Close { code: close::UNKNOWN_ERROR, reason: "session no longer resumable" },
            ],
        }
    }

    fn teardown(&mut self) {
        self.conn = None;
        if let Some(key) = self.key.take() {
            self.app.local_sessions.remove(&key, self.id);
            self.app.metrics.sessions_open.fetch_sub(1, Relaxed);
        }
        for guild in self.guilds.drain(..) {
            guild.disconnect(self.id);
        }
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The token of an IDENTIFY or RESUME: Discord takes it with or without the `Bot ` prefix.
fn gateway_token(token: &str) -> &str {
    token.strip_prefix("Bot ").unwrap_or(token).trim()
}
