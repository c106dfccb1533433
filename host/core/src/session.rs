//! The session state machine: one per gateway session, sans-IO.
//!
//! It speaks the Discord Gateway v10 protocol with one client connection at a time:
//! HELLO, IDENTIFY, heartbeats and zombie detection, a per-connection rate limit,
//! per-session sequence numbers, and a bounded replay buffer so that RESUME on a new
//! connection replays exactly the dispatches the client missed. The runtime feeds it
//! [`Input`]s and carries out the [`Effect`]s; it never touches a socket or a clock.

use std::collections::VecDeque;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::gateway::{close, control_frame, op, DispatchPrefix, Intents, Status};
use crate::model::UserId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    pub heartbeat_interval_ms: u64,
    /// Dispatches kept for RESUME, by count and by bytes (whichever is hit first).
    pub replay_max_events: usize,
    pub replay_max_bytes: usize,
    /// Client frames allowed per window (Discord: 120 per 60 s), else close 4008.
    pub rate_limit_events: u32,
    pub rate_limit_window_ms: u64,
    /// How long a session whose connection dropped can still be resumed.
    pub resume_window_ms: u64,
    /// How long a connection may stay open without IDENTIFY or RESUME (heartbeats do not
    /// count): after it, close 4003. Without it, connections without an account could hold
    /// the gateway's slots forever.
    pub identify_timeout_ms: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            heartbeat_interval_ms: 41_250,
            replay_max_events: 1_000,
            replay_max_bytes: 1 << 20,
            rate_limit_events: 120,
            rate_limit_window_ms: 60_000,
            resume_window_ms: 120_000,
            identify_timeout_ms: 20_000,
        }
    }
}

impl SessionConfig {
    /// A connection that has not heartbeated for this long is a zombie (closed with 4009).
    pub fn zombie_after_ms(&self) -> u64 {
        self.heartbeat_interval_ms + self.heartbeat_interval_ms / 2
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Connected, HELLO sent, waiting for IDENTIFY or RESUME.
    AwaitingIdentify,
    /// IDENTIFY or RESUME received; the runtime is checking the token.
    Authenticating,
    Ready,
    /// The connection dropped; dispatches are still buffered until the resume window ends.
    Detached {
        since_ms: u64,
    },
    /// Over for good: the runtime leaves the guilds and forgets the session.
    Terminated,
}

#[derive(Debug)]
pub enum Input<'a> {
    /// A new connection is attached to this (fresh) session.
    Opened {
        now_ms: u64,
    },
    ClientText {
        payload: &'a [u8],
        now_ms: u64,
    },
    ClientBinary {
        now_ms: u64,
    },
    /// The client sent something that is not a usable frame (over the size limit, bad
    /// UTF-8, broken fragmentation); `reason` goes into the close frame.
    ClientMalformed {
        reason: &'static str,
    },
    Tick {
        now_ms: u64,
    },
    /// The runtime accepted the IDENTIFY token; `ready` is the encoded READY dispatch.
    Authenticated {
        user_id: UserId,
        session_id: String,
        ready: DispatchPrefix,
    },
    AuthenticationFailed,
    /// A dispatch from a guild (or a DM) for this session.
    Dispatch(&'a DispatchPrefix),
    /// The client connection is gone (EOF, error, or after we closed it).
    Disconnected {
        now_ms: u64,
    },
    /// The client sent a close frame. As on Discord, closing with 1000 or 1001 ends the
    /// session; any other code (or none) keeps it resumable.
    ClientClosed {
        code: Option<u16>,
        now_ms: u64,
    },
    /// On the fresh session: the resume target refused or does not exist.
    ResumeRejected {
        invalid_seq: bool,
    },
    /// The session's outbound queue overflowed: it cannot keep up.
    Overflowed,
    /// The host is shutting down.
    Shutdown,
    /// This node is leaving the cluster: op 7 RECONNECT, then close the connection; the
    /// session stays resumable (from another node, which takes it over with
    /// [`Session::hand_over`] and [`Session::adopt`]).
    Drain {
        now_ms: u64,
    },
}

/// Op 8 (Request Guild Members), as Discord defines it: members of one guild whose
/// username starts with `query` (up to `limit`; an empty query with limit 0 is every
/// member), or the members with these ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRequest {
    pub guild_id: crate::Snowflake,
    pub query: Option<String>,
    pub limit: usize,
    pub user_ids: Vec<crate::Snowflake>,
    pub presences: bool,
    pub nonce: Option<String>,
}

impl MemberRequest {
    /// Most user ids one request may name (Discord's limit).
    pub const MAX_USER_IDS: usize = 100;

    fn parse(d: &Value) -> Option<MemberRequest> {
        // Ids as strings, or as numbers (discord.py sends integers).
        let id = |v: &Value| match v {
            Value::String(s) => s.parse().ok(),
            Value::Number(n) => n.as_u64().map(crate::Snowflake),
            _ => None,
        };
        let guild_id = id(&d["guild_id"])?;
        let user_ids: Vec<crate::Snowflake> = match &d["user_ids"] {
            Value::Null => Vec::new(),
            Value::Array(ids) => ids.iter().map(id).collect::<Option<_>>()?,
            one => vec![id(one)?],
        };
        let query = d["query"].as_str().map(str::to_owned);
        if user_ids.len() > Self::MAX_USER_IDS || (query.is_none() && user_ids.is_empty()) {
            return None;
        }
        let nonce = d["nonce"].as_str().filter(|n| n.len() <= 32).map(str::to_owned);
        let limit = d["limit"].as_u64().unwrap_or(0).min(u64::from(u32::MAX)) as usize;
        Some(MemberRequest { guild_id, query, limit, user_ids, presences: d["presences"] == true, nonce })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Write this text frame to the client.
    Send(Bytes),
    /// Close the connection with this code. Whether the session survives is in `phase()`.
    Close {
        code: u16,
        reason: &'static str,
    },
    /// Check this IDENTIFY token; answer with `Authenticated` or `AuthenticationFailed`.
    Authenticate {
        token: String,
        intents: Intents,
        status: Option<Status>,
    },
    /// Find session `session_id` and offer it this connection (see [`Session::resume`]).
    Resume {
        token: String,
        session_id: String,
        seq: u64,
    },
    PresenceUpdate {
        status: Status,
    },
    /// Op 8: send the guild's members that match as GUILD_MEMBERS_CHUNK dispatches.
    RequestMembers(MemberRequest),
    /// Leave every guild, drop the registry entry, stop the actor.
    Terminate,
}

/// What a session hands to another node that takes it over: everything a RESUME needs.
/// The replay holds the shared serializations with this session's sequence numbers.
#[derive(Debug, Clone)]
pub struct Handover {
    pub user_id: UserId,
    pub session_id: String,
    pub seq: u64,
    pub replay: Vec<(u64, DispatchPrefix)>,
}

/// What the old session answers when a new connection asks to resume it.
#[derive(Debug, PartialEq, Eq)]
pub enum ResumeOutcome {
    /// The connection is now this session's; send these effects on it.
    Accepted(Vec<Effect>),
    Rejected {
        invalid_seq: bool,
    },
}

pub struct Session {
    cfg: SessionConfig,
    phase: Phase,
    user_id: Option<UserId>,
    session_id: Option<String>,
    /// Last sequence number assigned (0: none yet).
    seq: u64,
    /// Dispatches kept for RESUME: the shared serialization (one refcount each, not a
    /// copy per session) with this session's sequence number; frames are rebuilt on replay.
    replay: VecDeque<(u64, DispatchPrefix)>,
    replay_bytes: usize,
    last_heartbeat_ms: u64,
    /// When the connection opened (the IDENTIFY deadline counts from here).
    opened_ms: u64,
    window_start_ms: u64,
    window_count: u32,
}

#[derive(Deserialize)]
struct ClientFrame {
    op: u8,
    #[serde(default)]
    d: Value,
}

impl Session {
    pub fn new(cfg: SessionConfig) -> Session {
        Session {
            cfg,
            phase: Phase::AwaitingIdentify,
            user_id: None,
            session_id: None,
            seq: 0,
            replay: VecDeque::new(),
            replay_bytes: 0,
            last_heartbeat_ms: 0,
            opened_ms: 0,
            window_start_ms: 0,
            window_count: 0,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }
    pub fn seq(&self) -> u64 {
        self.seq
    }
    pub fn user_id(&self) -> Option<UserId> {
        self.user_id
    }
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }
    pub fn replay_len(&self) -> usize {
        self.replay.len()
    }
    /// When the runtime should next `Tick` this session.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        match self.phase {
            Phase::AwaitingIdentify => Some(
                (self.last_heartbeat_ms + self.cfg.zombie_after_ms())
                    .min(self.opened_ms + self.cfg.identify_timeout_ms),
            ),
            Phase::Authenticating | Phase::Ready => Some(self.last_heartbeat_ms + self.cfg.zombie_after_ms()),
            Phase::Detached { since_ms } => Some(since_ms + self.cfg.resume_window_ms),
            Phase::Terminated => None,
        }
    }

    pub fn handle(&mut self, input: Input<'_>) -> Vec<Effect> {
        let mut fx = Vec::new();
        if self.phase == Phase::Terminated {
            return fx;
        }
        match input {
            Input::Opened { now_ms } => {
                self.last_heartbeat_ms = now_ms;
                self.opened_ms = now_ms;
                self.window_start_ms = now_ms;
                fx.push(Effect::Send(control_frame(
                    op::HELLO,
                    &json!({ "heartbeat_interval": self.cfg.heartbeat_interval_ms }),
                )));
            }
            Input::ClientText { payload, now_ms } => self.on_client_frame(payload, now_ms, &mut fx),
            Input::ClientBinary { .. } => self.close(
                close::DECODE_ERROR,
                "a binary frame must hold UTF-8 JSON with encoding=json",
                false,
                &mut fx,
            ),
            Input::ClientMalformed { reason } => self.close(close::DECODE_ERROR, reason, false, &mut fx),
            Input::Tick { now_ms } => match self.phase {
                Phase::Detached { since_ms } if now_ms >= since_ms + self.cfg.resume_window_ms => {
                    self.terminate(&mut fx);
                }
                Phase::AwaitingIdentify if now_ms >= self.opened_ms + self.cfg.identify_timeout_ms => {
                    self.close(close::NOT_AUTHENTICATED, "no IDENTIFY in time", false, &mut fx);
                }
                Phase::AwaitingIdentify | Phase::Authenticating | Phase::Ready
                    if now_ms >= self.last_heartbeat_ms + self.cfg.zombie_after_ms() =>
                {
                    self.close(close::SESSION_TIMED_OUT, "session timed out", false, &mut fx);
                }
                _ => {}
            },
            Input::Authenticated { user_id, session_id, ready } => {
                if self.phase == Phase::Authenticating {
                    self.user_id = Some(user_id);
                    self.session_id = Some(session_id);
                    self.phase = Phase::Ready;
                    self.push_dispatch(&ready, &mut fx);
                }
            }
            Input::AuthenticationFailed => {
                self.close(close::AUTHENTICATION_FAILED, "authentication failed", false, &mut fx)
            }
            Input::Dispatch(prefix) => {
                if matches!(self.phase, Phase::Ready | Phase::Detached { .. }) {
                    self.push_dispatch(prefix, &mut fx);
                }
            }
            Input::Disconnected { now_ms } => match self.phase {
                Phase::Ready => self.phase = Phase::Detached { since_ms: now_ms },
                Phase::Detached { .. } => {}
                _ => self.terminate(&mut fx),
            },
            Input::ClientClosed { code, now_ms } => {
                if matches!(code, Some(1000) | Some(1001)) {
                    self.terminate(&mut fx);
                } else {
                    return self.handle(Input::Disconnected { now_ms });
                }
            }
            Input::ResumeRejected { invalid_seq } => {
                if self.phase == Phase::Authenticating {
                    if invalid_seq {
                        self.close(close::INVALID_SEQ, "invalid seq", false, &mut fx);
                    } else {
                        // Not resumable: op 9 with d=false, the client may IDENTIFY afresh.
                        self.phase = Phase::AwaitingIdentify;
                        fx.push(Effect::Send(control_frame(op::INVALID_SESSION, &false)));
                    }
                }
            }
            Input::Overflowed => self.close(close::SLOW_CONSUMER, "outbound queue overflow", false, &mut fx),
            // A detached session ends too: nothing here can resume it any more.
            Input::Shutdown if matches!(self.phase, Phase::Detached { .. }) => self.terminate(&mut fx),
            Input::Shutdown => self.close(close::GOING_AWAY, "server shutting down", false, &mut fx),
            Input::Drain { now_ms } => {
                if self.phase == Phase::Ready {
                    fx.push(Effect::Send(control_frame(op::RECONNECT, &Value::Null)));
                    // Not 1000/1001: clients keep the session and RESUME elsewhere.
                    self.close(close::UNKNOWN_ERROR, "reconnect: this node is leaving", true, &mut fx);
                    self.phase = Phase::Detached { since_ms: now_ms };
                } else if !matches!(self.phase, Phase::Detached { .. }) {
                    self.close(close::GOING_AWAY, "server shutting down", false, &mut fx);
                }
            }
        }
        fx
    }

    /// Gives the session away to another node: its identity, sequence and replay buffer.
    /// Only a live (ready or detached) session can be handed over; it is over here after.
    pub fn hand_over(&mut self) -> Option<Handover> {
        if !matches!(self.phase, Phase::Ready | Phase::Detached { .. }) {
            return None;
        }
        let handover = Handover {
            user_id: self.user_id?,
            session_id: self.session_id.clone()?,
            seq: self.seq,
            replay: std::mem::take(&mut self.replay).into(),
        };
        self.replay_bytes = 0;
        self.phase = Phase::Terminated;
        Some(handover)
    }

    /// A session taken over from another node, detached until a connection resumes it
    /// (with [`Session::resume`]); its sequence numbers continue where they were.
    pub fn adopt(cfg: SessionConfig, handover: Handover, now_ms: u64) -> Session {
        let mut session = Session::new(cfg);
        session.phase = Phase::Detached { since_ms: now_ms };
        session.user_id = Some(handover.user_id);
        session.session_id = Some(handover.session_id);
        session.seq = handover.seq;
        session.last_heartbeat_ms = now_ms;
        for (seq, prefix) in handover.replay {
            debug_assert!(seq <= handover.seq, "a replayed dispatch is not newer than the session");
            session.replay_bytes += prefix.len();
            session.replay.push_back((seq, prefix));
        }
        session
    }

    /// A new connection offers itself to this session (see [`ResumeOutcome`]).
    pub fn resume(&mut self, user_id: UserId, client_seq: u64, now_ms: u64) -> ResumeOutcome {
        let live = matches!(self.phase, Phase::Ready | Phase::Detached { .. });
        if !live || self.user_id != Some(user_id) {
            return ResumeOutcome::Rejected { invalid_seq: false };
        }
        if client_seq > self.seq {
            return ResumeOutcome::Rejected { invalid_seq: true };
        }
        let oldest_kept = self.replay.front().map(|(s, _)| *s).unwrap_or(self.seq + 1);
        if client_seq + 1 < oldest_kept {
            // The buffer no longer holds everything the client missed.
            return ResumeOutcome::Rejected { invalid_seq: false };
        }
        let mut fx: Vec<Effect> = self
            .replay
            .iter()
            .filter(|(s, _)| *s > client_seq)
            .map(|(s, prefix)| Effect::Send(prefix.with_seq(*s)))
            .collect();
        self.phase = Phase::Ready;
        self.last_heartbeat_ms = now_ms;
        self.window_start_ms = now_ms;
        self.window_count = 0;
        let resumed = DispatchPrefix::encode("RESUMED", &serde_json::json!({}));
        self.push_dispatch(&resumed, &mut fx);
        ResumeOutcome::Accepted(fx)
    }

    fn on_client_frame(&mut self, payload: &[u8], now_ms: u64, fx: &mut Vec<Effect>) {
        if now_ms >= self.window_start_ms + self.cfg.rate_limit_window_ms {
            self.window_start_ms = now_ms;
            self.window_count = 0;
        }
        self.window_count += 1;
        if self.window_count > self.cfg.rate_limit_events {
            return self.close(close::RATE_LIMITED, "rate limited", true, fx);
        }
        // serde would also accept a JSON array for a struct; the protocol wants an object.
        let is_object = payload.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        let frame: ClientFrame = match serde_json::from_slice(payload) {
            Ok(f) if is_object => f,
            _ => return self.close(close::DECODE_ERROR, "decode error", false, fx),
        };
        let authed = self.phase == Phase::Ready;
        match frame.op {
            op::HEARTBEAT => {
                self.last_heartbeat_ms = now_ms;
                fx.push(Effect::Send(control_frame(op::HEARTBEAT_ACK, &Value::Null)));
            }
            op::IDENTIFY => {
                if self.phase != Phase::AwaitingIdentify {
                    return self.close(close::ALREADY_AUTHENTICATED, "already authenticated", false, fx);
                }
                let d = &frame.d;
                let (Some(token), Some(_properties)) = (d["token"].as_str(), d["properties"].as_object()) else {
                    return self.close(close::DECODE_ERROR, "identify needs token and properties", false, fx);
                };
                let Some(bits) = d["intents"].as_u64() else {
                    return self.close(close::INVALID_INTENTS, "identify needs integer intents", false, fx);
                };
                let Some(intents) = Intents::from_bits(bits) else {
                    return self.close(close::INVALID_INTENTS, "invalid intents", false, fx);
                };
                // An empty status is as if none was given (libraries send one; Discord
                // takes it as online).
                let status = match d.get("presence").and_then(|p| p.get("status")) {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) if s.is_empty() => None,
                    Some(s) => match s.as_str().and_then(Status::parse) {
                        Some(s) => Some(s),
                        None => return self.close(close::DECODE_ERROR, "invalid presence status", false, fx),
                    },
                };
                self.phase = Phase::Authenticating;
                fx.push(Effect::Authenticate { token: token.to_owned(), intents, status });
            }
            op::RESUME => {
                if self.phase != Phase::AwaitingIdentify {
                    return self.close(close::ALREADY_AUTHENTICATED, "already authenticated", false, fx);
                }
                let d = &frame.d;
                let (Some(token), Some(session_id), Some(seq)) =
                    (d["token"].as_str(), d["session_id"].as_str(), d["seq"].as_u64())
                else {
                    return self.close(close::DECODE_ERROR, "resume needs token, session_id and seq", false, fx);
                };
                self.phase = Phase::Authenticating;
                fx.push(Effect::Resume { token: token.to_owned(), session_id: session_id.to_owned(), seq });
            }
            op::PRESENCE_UPDATE | op::VOICE_STATE_UPDATE | op::REQUEST_GUILD_MEMBERS if !authed => {
                self.close(close::NOT_AUTHENTICATED, "not authenticated", false, fx)
            }
            op::PRESENCE_UPDATE => match frame.d["status"].as_str().and_then(Status::parse) {
                Some(status) => fx.push(Effect::PresenceUpdate { status }),
                None => self.close(close::DECODE_ERROR, "invalid presence status", false, fx),
            },
            op::REQUEST_GUILD_MEMBERS => match MemberRequest::parse(&frame.d) {
                Some(request) => fx.push(Effect::RequestMembers(request)),
                None => self.close(close::DECODE_ERROR, "invalid request guild members payload", false, fx),
            },
            // Voice is not served: accepted and ignored, as Discord ignores what an intent
            // does not cover.
            op::VOICE_STATE_UPDATE => {}
            _ if !authed && self.phase != Phase::Authenticating => {
                // Discord answers anything but a heartbeat before IDENTIFY with 4003, but an
                // opcode that does not exist at all is still 4001.
                if is_known_client_op(frame.op) {
                    self.close(close::NOT_AUTHENTICATED, "not authenticated", false, fx)
                } else {
                    self.close(close::UNKNOWN_OPCODE, "unknown opcode", false, fx)
                }
            }
            _ => self.close(close::UNKNOWN_OPCODE, "unknown opcode", false, fx),
        }
    }

    fn push_dispatch(&mut self, prefix: &DispatchPrefix, fx: &mut Vec<Effect>) {
        self.seq += 1;
        // The byte budget counts each dispatch's full size even though it is shared: it
        // bounds what a replay would have to write.
        self.replay_bytes += prefix.len();
        self.replay.push_back((self.seq, prefix.clone()));
        while self.replay.len() > self.cfg.replay_max_events || self.replay_bytes > self.cfg.replay_max_bytes {
            match self.replay.pop_front() {
                Some((_, old)) => self.replay_bytes -= old.len(),
                None => break,
            }
        }
        if self.phase == Phase::Ready {
            fx.push(Effect::Send(prefix.with_seq(self.seq)));
        }
    }

    /// Close the current connection. A resumable close keeps a Ready session alive
    /// (detached) for the resume window; any other close ends the session.
    fn close(&mut self, code: u16, reason: &'static str, resumable: bool, fx: &mut Vec<Effect>) {
        if matches!(self.phase, Phase::Terminated | Phase::Detached { .. }) {
            return;
        }
        fx.push(Effect::Close { code, reason });
        if !(resumable && self.phase == Phase::Ready) {
            self.terminate(fx);
        }
    }

    fn terminate(&mut self, fx: &mut Vec<Effect>) {
        self.phase = Phase::Terminated;
        self.replay.clear();
        self.replay_bytes = 0;
        fx.push(Effect::Terminate);
    }
}

fn is_known_client_op(code: u8) -> bool {
    matches!(
        code,
        op::HEARTBEAT
            | op::IDENTIFY
            | op::PRESENCE_UPDATE
            | op::VOICE_STATE_UPDATE
            | op::RESUME
            | op::REQUEST_GUILD_MEMBERS
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snowflake::Snowflake;

    fn cfg() -> SessionConfig {
        SessionConfig {
            heartbeat_interval_ms: 1_000,
            replay_max_events: 5,
            replay_max_bytes: 1 << 20,
            rate_limit_events: 10,
            rate_limit_window_ms: 60_000,
            resume_window_ms: 10_000,
            identify_timeout_ms: 5_000,
        }
    }

    #[test]
    fn a_connection_that_never_identifies_is_closed_however_it_heartbeats() {
        let mut s = Session::new(cfg());
        s.handle(Input::Opened { now_ms: 0 });
        for now_ms in (500..5_000).step_by(500) {
            assert_eq!(
                close_code(&text(&mut s, json!({ "op": 1, "d": null }), now_ms)),
                None,
                "heartbeats are answered"
            );
            assert!(s.handle(Input::Tick { now_ms }).is_empty(), "not yet at {now_ms}");
        }
        assert_eq!(s.next_deadline_ms(), Some(5_000), "the IDENTIFY deadline comes before the zombie one");
        let fx = s.handle(Input::Tick { now_ms: 5_000 });
        assert_eq!(close_code(&fx), Some(close::NOT_AUTHENTICATED));
        assert_ne!(s.phase(), Phase::AwaitingIdentify);

        // Once identified, the deadline no longer applies.
        let mut s = Session::new(cfg());
        s.handle(Input::Opened { now_ms: 0 });
        text(&mut s, json!({ "op": 2, "d": { "token": "t", "intents": 1, "properties": {} } }), 100);
        assert_eq!(s.phase(), Phase::Authenticating);
        for now_ms in (500..=6_000).step_by(500) {
            text(&mut s, json!({ "op": 1, "d": null }), now_ms);
            assert!(s.handle(Input::Tick { now_ms }).is_empty(), "heartbeating past the deadline at {now_ms}");
        }
    }

    fn text(s: &mut Session, v: Value, now_ms: u64) -> Vec<Effect> {
        let bytes = serde_json::to_vec(&v).unwrap();
        s.handle(Input::ClientText { payload: &bytes, now_ms })
    }

    fn close_code(fx: &[Effect]) -> Option<u16> {
        fx.iter().find_map(|e| match e {
            Effect::Close { code, .. } => Some(*code),
            _ => None,
        })
    }

    fn sent(fx: &[Effect]) -> Vec<Value> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Send(b) => Some(serde_json::from_slice(b).unwrap()),
                _ => None,
            })
            .collect()
    }

    fn identify() -> Value {
        json!({"op": 2, "d": {"token": "t", "properties": {"os": "linux"}, "intents": 513}})
    }

    #[test]
    fn member_requests_take_ids_as_strings_or_numbers_and_need_a_query_or_ids() {
        let parse = |d: Value| MemberRequest::parse(&d);
        let all = parse(json!({ "guild_id": 10, "query": "", "limit": 0, "presences": true, "nonce": "n" })).unwrap();
        assert_eq!((all.guild_id.0, all.query.as_deref(), all.limit, all.presences), (10, Some(""), 0, true));
        assert_eq!(all.nonce.as_deref(), Some("n"));
        let some = parse(json!({ "guild_id": "10", "user_ids": ["1", 2] })).unwrap();
        assert_eq!(some.user_ids, vec![crate::Snowflake(1), crate::Snowflake(2)]);
        assert_eq!(parse(json!({ "guild_id": "10", "user_ids": "3" })).unwrap().user_ids, vec![crate::Snowflake(3)]);
        assert!(parse(json!({ "guild_id": "10" })).is_none(), "neither a query nor ids");
        assert!(parse(json!({ "guild_id": "x", "query": "" })).is_none());
        assert!(
            parse(json!({ "guild_id": "10", "user_ids": (0..101).collect::<Vec<_>>() })).is_none(),
            "at most 100 ids"
        );
    }

    fn ready_session() -> Session {
        let mut s = Session::new(cfg());
        s.handle(Input::Opened { now_ms: 0 });
        let fx = text(&mut s, identify(), 1);
        assert_eq!(fx, vec![Effect::Authenticate { token: "t".into(), intents: Intents(513), status: None }]);
        let ready = DispatchPrefix::encode("READY", &json!({"v": 10}));
        let fx = s.handle(Input::Authenticated { user_id: Snowflake(1), session_id: "abc".into(), ready });
        let frames = sent(&fx);
        assert_eq!(frames[0]["t"], "READY");
        assert_eq!(frames[0]["s"], 1);
        s
    }

    #[test]
    fn hello_then_identify_then_ready() {
        let mut s = Session::new(cfg());
        let fx = s.handle(Input::Opened { now_ms: 0 });
        assert_eq!(sent(&fx)[0]["op"], 10);
        assert_eq!(sent(&fx)[0]["d"]["heartbeat_interval"], 1000);
        drop(s);
        let s = ready_session();
        assert_eq!(s.phase(), Phase::Ready);
    }

    #[test]
    fn identify_presence_status_may_be_empty_but_not_unknown() {
        let with_status = |status: Value| {
            let mut s = Session::new(cfg());
            s.handle(Input::Opened { now_ms: 0 });
            let mut frame = identify();
            frame["d"]["presence"] = json!({ "status": status, "since": 0, "activities": [], "afk": false });
            text(&mut s, frame, 1)
        };
        let authenticate = |status: Option<&str>| {
            vec![Effect::Authenticate {
                token: "t".into(),
                intents: Intents(513),
                status: status.and_then(Status::parse),
            }]
        };
        assert_eq!(with_status(json!("")), authenticate(None), "empty: as if none");
        assert_eq!(with_status(json!("idle")), authenticate(Some("idle")));
        assert_eq!(close_code(&with_status(json!("sleepy"))), Some(close::DECODE_ERROR));
    }

    #[test]
    fn heartbeat_is_acked_and_keeps_session_alive() {
        let mut s = ready_session();
        let fx = text(&mut s, json!({"op": 1, "d": 1}), 900);
        assert_eq!(sent(&fx)[0]["op"], 11);
        assert!(s.handle(Input::Tick { now_ms: 2_000 }).is_empty(), "900 + 1500 not reached");
        let fx = s.handle(Input::Tick { now_ms: 2_400 });
        assert_eq!(close_code(&fx), Some(close::SESSION_TIMED_OUT));
        assert_eq!(s.phase(), Phase::Terminated);
    }

    #[test]
    fn protocol_errors_close_with_discord_codes() {
        let cases: Vec<(Value, u16)> = vec![
            (json!({"op": 99, "d": null}), close::UNKNOWN_OPCODE),
            (json!({"op": 3, "d": {"status": "online"}}), close::NOT_AUTHENTICATED),
            (json!({"op": 2, "d": {"token": 5, "properties": {}, "intents": 1}}), close::DECODE_ERROR),
            (json!({"op": 2, "d": {"token": "t", "properties": {}, "intents": 1u64 << 40}}), close::INVALID_INTENTS),
            (json!({"op": 2, "d": {"token": "t", "properties": {}}}), close::INVALID_INTENTS),
            (json!({"op": "two"}), close::DECODE_ERROR),
            (json!([1, 2]), close::DECODE_ERROR),
        ];
        for (frame, code) in cases {
            let mut s = Session::new(cfg());
            s.handle(Input::Opened { now_ms: 0 });
            assert_eq!(close_code(&text(&mut s, frame.clone(), 1)), Some(code), "{frame}");
            assert_eq!(s.phase(), Phase::Terminated);
        }
        let mut s = Session::new(cfg());
        s.handle(Input::Opened { now_ms: 0 });
        assert_eq!(
            close_code(&s.handle(Input::ClientText { payload: b"{not json", now_ms: 1 })),
            Some(close::DECODE_ERROR)
        );
    }

    #[test]
    fn second_identify_is_4005() {
        let mut s = ready_session();
        assert_eq!(close_code(&text(&mut s, identify(), 2)), Some(close::ALREADY_AUTHENTICATED));
    }

    #[test]
    fn rate_limit_closes_with_4008_and_keeps_session_resumable() {
        let mut s = ready_session(); // identify used 1 of 10
        for i in 0..9 {
            assert!(close_code(&text(&mut s, json!({"op": 1, "d": null}), 10 + i)).is_none());
        }
        let fx = text(&mut s, json!({"op": 1, "d": null}), 30);
        assert_eq!(close_code(&fx), Some(close::RATE_LIMITED));
        assert_eq!(s.phase(), Phase::Ready);
        s.handle(Input::Disconnected { now_ms: 31 });
        assert!(matches!(s.phase(), Phase::Detached { .. }));
    }

    #[test]
    fn dispatches_get_increasing_seq_and_resume_replays_exactly_the_missed_ones() {
        let mut s = ready_session();
        for i in 0..3 {
            let p = DispatchPrefix::encode("MESSAGE_CREATE", &json!({"n": i}));
            let f = sent(&s.handle(Input::Dispatch(&p)));
            assert_eq!(f[0]["s"], 2 + i);
        }
        // Client saw up to s=3, then the connection dropped; two more arrive meanwhile.
        s.handle(Input::Disconnected { now_ms: 100 });
        for i in 3..5 {
            let p = DispatchPrefix::encode("MESSAGE_CREATE", &json!({"n": i}));
            assert!(s.handle(Input::Dispatch(&p)).is_empty(), "detached: buffered, not sent");
        }
        assert_eq!(s.resume(Snowflake(2), 3, 200), ResumeOutcome::Rejected { invalid_seq: false }, "other user");
        assert_eq!(s.resume(Snowflake(1), 9, 200), ResumeOutcome::Rejected { invalid_seq: true });
        let ResumeOutcome::Accepted(fx) = s.resume(Snowflake(1), 3, 200) else { panic!() };
        let frames = sent(&fx);
        let seqs: Vec<u64> = frames.iter().map(|f| f["s"].as_u64().unwrap()).collect();
        assert_eq!(seqs, vec![4, 5, 6, 7], "the three missed dispatches, then RESUMED");
        assert_eq!(frames[0]["d"]["n"], 2);
        assert_eq!(frames[2]["d"]["n"], 4);
        assert_eq!((&frames[3]["t"], &frames[3]["d"]), (&json!("RESUMED"), &json!({})), "libraries write into d");
        assert_eq!(s.phase(), Phase::Ready);
    }

    #[test]
    fn a_drained_session_reconnects_and_resumes_on_another_node_where_it_left_off() {
        let mut s = ready_session();
        s.handle(Input::Dispatch(&DispatchPrefix::encode("MESSAGE_CREATE", &json!({"n": 0}))));
        let fx = s.handle(Input::Drain { now_ms: 50 });
        assert_eq!(sent(&fx)[0]["op"], 7, "op 7 RECONNECT first");
        assert_eq!(close_code(&fx), Some(close::UNKNOWN_ERROR), "a close code clients resume after");
        assert!(!fx.contains(&Effect::Terminate));
        assert_eq!(s.phase(), Phase::Detached { since_ms: 50 });
        // Buffered while the client reconnects elsewhere.
        assert!(s.handle(Input::Dispatch(&DispatchPrefix::encode("MESSAGE_CREATE", &json!({"n": 1})))).is_empty());
        let handover = s.hand_over().expect("a live session can be handed over");
        assert_eq!(s.phase(), Phase::Terminated);
        assert!(s.hand_over().is_none(), "only once");
        assert_eq!((handover.seq, handover.replay.len()), (3, 3));

        let mut moved = Session::adopt(cfg(), handover, 1_000);
        assert!(moved.handle(Input::Dispatch(&DispatchPrefix::encode("MESSAGE_CREATE", &json!({"n": 2})))).is_empty());
        assert_eq!(moved.resume(Snowflake(2), 2, 1_100), ResumeOutcome::Rejected { invalid_seq: false });
        let ResumeOutcome::Accepted(fx) = moved.resume(Snowflake(1), 2, 1_100) else { panic!("resumes") };
        let frames = sent(&fx);
        let seqs: Vec<u64> = frames.iter().map(|f| f["s"].as_u64().unwrap()).collect();
        assert_eq!(seqs, vec![3, 4, 5], "what it missed on both nodes, then RESUMED");
        assert_eq!((frames[0]["d"]["n"].clone(), frames[1]["d"]["n"].clone()), (json!(1), json!(2)));
        assert_eq!(frames[2]["t"], "RESUMED");
    }

    #[test]
    fn an_adopted_session_expires_like_any_detached_one() {
        let mut s = ready_session();
        let moved = Session::adopt(cfg(), s.hand_over().unwrap(), 500);
        assert_eq!(moved.next_deadline_ms(), Some(500 + cfg().resume_window_ms));
        let mut fresh = Session::new(cfg());
        assert!(fresh.hand_over().is_none(), "nothing to hand over before READY");
    }

    #[test]
    fn resume_fails_when_buffer_no_longer_covers_the_gap() {
        let mut s = ready_session();
        for i in 0..10 {
            s.handle(Input::Dispatch(&DispatchPrefix::encode("X", &json!(i))));
        }
        assert_eq!(s.replay_len(), 5);
        assert_eq!(s.seq(), 11);
        assert_eq!(s.resume(Snowflake(1), 5, 1), ResumeOutcome::Rejected { invalid_seq: false });
        assert!(matches!(s.resume(Snowflake(1), 6, 1), ResumeOutcome::Accepted(_)));
    }

    #[test]
    fn detached_session_expires_after_resume_window() {
        let mut s = ready_session();
        s.handle(Input::Disconnected { now_ms: 100 });
        assert!(s.handle(Input::Tick { now_ms: 5_000 }).is_empty());
        assert_eq!(s.handle(Input::Tick { now_ms: 10_100 }), vec![Effect::Terminate]);
        assert!(matches!(s.resume(Snowflake(1), 1, 10_200), ResumeOutcome::Rejected { .. }));
    }

    #[test]
    fn rejected_resume_sends_invalid_session_and_allows_identify() {
        let mut s = Session::new(cfg());
        s.handle(Input::Opened { now_ms: 0 });
        let fx = text(&mut s, json!({"op": 6, "d": {"token": "t", "session_id": "x", "seq": 3}}), 1);
        assert!(matches!(&fx[0], Effect::Resume { seq: 3, .. }));
        let fx = s.handle(Input::ResumeRejected { invalid_seq: false });
        assert_eq!(sent(&fx)[0]["op"], 9);
        assert_eq!(sent(&fx)[0]["d"], false);
        assert!(matches!(text(&mut s, identify(), 2)[0], Effect::Authenticate { .. }));
    }

    #[test]
    fn client_close_1000_ends_the_session_other_codes_keep_it() {
        let mut s = ready_session();
        assert_eq!(s.handle(Input::ClientClosed { code: Some(1000), now_ms: 5 }), vec![Effect::Terminate]);
        let mut s = ready_session();
        assert!(s.handle(Input::ClientClosed { code: Some(4000), now_ms: 5 }).is_empty());
        assert!(matches!(s.phase(), Phase::Detached { since_ms: 5 }));
    }

    #[test]
    fn overflow_closes_and_ends_the_session() {
        let mut s = ready_session();
        let fx = s.handle(Input::Overflowed);
        assert_eq!(close_code(&fx), Some(close::SLOW_CONSUMER));
        assert_eq!(s.phase(), Phase::Terminated);
    }
}
