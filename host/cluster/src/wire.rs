//! What nodes send each other, and on which subjects.
//!
//! Subjects (`{c}` is the cluster's name, so clusters can share a NATS server):
//! - `{c}.node.{n}.actor`: requests to node `n` about an actor it should run: locate it
//!   (does it exist? start it) or deliver a [`GuildMsg`] to it. Answered with [`Accepted`].
//! - `{c}.node.{n}.read`: message reads of channels whose actor node `n` runs (its data
//!   service coalesces them and sees that channel's writes).
//! - `{c}.node.{n}.reply`: answers to commands whose callers live on node `n`.
//! - `{c}.node.{n}.sessions`: one dispatch for several of node `n`'s sessions (the
//!   Manifold step: one message per node and event).
//! - `{c}.user.{u}`: something for all of user `u`'s sessions, wherever they are.
//! - `{c}.resume`: which node has the session with this resume key? (Every node listens;
//!   only the one that has it answers.)
//! - `{c}.node.{n}.bots`: starts, events and stops of the bots node `n` runs for guilds
//!   on other nodes (`plugins.bot_placement = "spread"`; [`BotWire`]).
//! - `{c}.node.{n}.take`: hand session `from` of node `n` over to a session on the asking
//!   node (a RESUME reached that node); answered with the session's state.
//!
//! Bodies are JSON in an envelope carrying [`WIRE_VERSION`]; a node refuses versions it
//! does not know. The session fan-out carries the dispatch as raw bytes after a small JSON
//! header, so the Discord JSON made once by the guild is not escaped into another string.

use bytes::{BufMut, Bytes, BytesMut};
use guildhall_core::gateway::{DispatchPrefix, Intents, Status};
use guildhall_core::guild::SessionId;
use guildhall_core::model::{Channel, GuildId, Message, MessageId, UserId};
use guildhall_core::session::Handover;
use guildhall_runtime::addresses::guild_ref::GuildMsg;
use guildhall_runtime::addresses::reply::{CommandResult, NodeId, ReplyTo};
use guildhall_runtime::addresses::session::{MovedSession, SessionRef};
#[cfg(doc)]
use guildhall_runtime::plugin_runners::remote_bots::BotWire;
use guildhall_store::HistoryQuery;
use serde::{Deserialize, Serialize};

pub const WIRE_VERSION: u16 = 1;

#[derive(Debug, Clone)]
pub struct Subjects {
    cluster: String,
}

impl Subjects {
    pub fn new(cluster: &str) -> Subjects {
        Subjects { cluster: cluster.to_owned() }
    }
    pub fn actor(&self, node: NodeId) -> String {
        format!("{}.node.{node}.actor", self.cluster)
    }
    pub fn read(&self, node: NodeId) -> String {
        format!("{}.node.{node}.read", self.cluster)
    }
    pub fn reply(&self, node: NodeId) -> String {
        format!("{}.node.{node}.reply", self.cluster)
    }
    pub fn sessions(&self, node: NodeId) -> String {
        format!("{}.node.{node}.sessions", self.cluster)
    }
    pub fn user(&self, user: UserId) -> String {
        format!("{}.user.{user}", self.cluster)
    }
    pub fn resume(&self) -> String {
        format!("{}.resume", self.cluster)
    }
    pub fn take(&self, node: NodeId) -> String {
        format!("{}.node.{node}.take", self.cluster)
    }
    pub fn bots(&self, node: NodeId) -> String {
        format!("{}.node.{node}.bots", self.cluster)
    }
    pub fn all_users(&self) -> String {
        format!("{}.user.*", self.cluster)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Envelope<T> {
    v: u16,
    body: T,
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("wire version {0} is not {WIRE_VERSION}")]
    Version(u16),
    #[error("malformed message: {0}")]
    Malformed(String),
}

pub fn encode<T: Serialize>(body: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(&Envelope { v: WIRE_VERSION, body }).expect("wire types serialize"))
}

pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, WireError> {
    #[derive(Deserialize)]
    struct Version {
        v: u16,
    }
    let version: Version = serde_json::from_slice(bytes).map_err(|e| WireError::Malformed(e.to_string()))?;
    if version.v != WIRE_VERSION {
        return Err(WireError::Version(version.v));
    }
    let envelope: Envelope<T> = serde_json::from_slice(bytes).map_err(|e| WireError::Malformed(e.to_string()))?;
    Ok(envelope.body)
}

/// Which directory an actor belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActorKind {
    Guild,
    /// A DM channel, by channel id.
    Dm,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum ActorRequest {
    /// Is there such an actor (starting it if needed)?
    Locate {
        kind: ActorKind,
        id: GuildId,
    },
    Deliver {
        kind: ActorKind,
        id: GuildId,
        msg: Box<GuildMsg>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Accepted {
    /// It exists here (and the message, if any, is in its mailbox).
    Yes,
    /// This node does not own it (its view of the ring differs): locate again.
    NotHere,
    /// No such guild or DM channel.
    Unknown,
    /// It could not be started (storage).
    Failed(String),
}

#[derive(Debug, Serialize, Deserialize)]
pub enum ReadRequest {
    History { channel: Box<Channel>, query: HistoryQuery, limit: usize },
    Message { channel: Box<Channel>, id: MessageId },
}

impl ReadRequest {
    /// The channel read (its node answers).
    pub fn channel(&self) -> &Channel {
        match self {
            ReadRequest::History { channel, .. } | ReadRequest::Message { channel, .. } => channel,
        }
    }
}

/// A read's answer, and whether the asking node may share it among identical reads that
/// joined while it was in flight: only if no write to the channel was acknowledged
/// between the read's arrival and its answer (else a joiner may have started after that
/// write, and must read again).
#[derive(Debug, Serialize, Deserialize)]
pub struct ReadReply {
    pub answer: ReadAnswer,
    #[serde(default)]
    pub shareable: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum ReadAnswer {
    Messages(Vec<Message>),
    Message(Option<Box<Message>>),
    /// This node does not run the channel's actor (views differ): read again.
    NotHere,
    Failed(String),
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ReplyDelivery {
    pub to: ReplyTo,
    pub result: CommandResult,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UserWire {
    Dispatch { intent: Intents },
    JoinGuild(GuildId),
}

/// For a user's sessions: `dispatch` follows the header for `UserWire::Dispatch`.
#[derive(Debug, Serialize, Deserialize)]
pub struct UserHeader {
    pub origin: NodeId,
    pub user: UserId,
    pub msg: UserWire,
}

/// For some of a node's sessions: the dispatch follows the header. With `moved`, there is
/// no dispatch: the guild tells these sessions that it routes them elsewhere now.
#[derive(Debug, Serialize, Deserialize)]
pub struct SessionsHeader {
    pub guild: GuildId,
    pub sessions: Vec<SessionId>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub moved: bool,
}

/// Which node has the session a RESUME names?
#[derive(Debug, Serialize, Deserialize)]
pub struct FindSession {
    pub key: String,
    pub user: UserId,
}

/// Hand session `from` over to `to`.
#[derive(Debug, Serialize, Deserialize)]
pub struct TakeSession {
    pub from: SessionRef,
    pub to: SessionRef,
}

/// A session handed over; its replay buffer follows the header, the dispatches one after
/// the other (`replay` gives each one's sequence number and length).
#[derive(Debug, Serialize, Deserialize)]
pub struct HandoverHeader {
    pub user: UserId,
    pub key: String,
    pub seq: u64,
    pub status: Status,
    pub guilds: Vec<GuildId>,
    pub replay: Vec<(u64, u32)>,
}

/// The old node's answer to [`TakeSession`]: the session, or a refusal (it is gone, cannot
/// be resumed, or another take-over got it first).
#[derive(Debug)]
pub enum TakeAnswer {
    Moved(MovedSession),
    Refused,
}

/// A refusal is an envelope whose body is this word; a handed-over session is framed
/// (a 4-byte length first), so the two never look alike: a frame would need a header of
/// over a gigabyte to start with `{`.
#[derive(Serialize, Deserialize)]
enum Refusal {
    #[serde(rename = "refused")]
    Refused,
}

pub fn encode_take_answer(answer: &TakeAnswer, max_replay_bytes: usize) -> Bytes {
    match answer {
        TakeAnswer::Moved(moved) => encode_handover(moved, max_replay_bytes),
        TakeAnswer::Refused => encode(&Refusal::Refused),
    }
}

pub fn decode_take_answer(bytes: &Bytes) -> Result<TakeAnswer, WireError> {
    if bytes.first() == Some(&b'{') {
        let Refusal::Refused = decode(bytes)?;
        return Ok(TakeAnswer::Refused);
    }
    decode_handover(bytes).map(TakeAnswer::Moved)
}

/// Encodes a handed-over session, keeping at most `max_bytes` of its replay buffer (the
/// newest dispatches; a client that needs older ones gets op 9, as when a buffer is full).
pub fn encode_handover(moved: &MovedSession, max_bytes: usize) -> Bytes {
    let mut kept = 0;
    let mut start = moved.handover.replay.len();
    while start > 0 && kept + moved.handover.replay[start - 1].1.len() <= max_bytes {
        start -= 1;
        kept += moved.handover.replay[start].1.len();
    }
    let frames = &moved.handover.replay[start..];
    let header = HandoverHeader {
        user: moved.handover.user_id,
        key: moved.handover.session_id.clone(),
        seq: moved.handover.seq,
        status: moved.status,
        guilds: moved.guilds.clone(),
        replay: frames.iter().map(|(seq, p)| (*seq, p.len() as u32)).collect(),
    };
    let mut raw = BytesMut::with_capacity(kept);
    for (_, prefix) in frames {
        raw.put_slice(&prefix.0);
    }
    encode_framed(&header, &raw)
}

pub fn decode_handover(bytes: &Bytes) -> Result<MovedSession, WireError> {
    let (header, raw): (HandoverHeader, Bytes) = decode_framed(bytes)?;
    let mut replay = Vec::with_capacity(header.replay.len());
    let mut at = 0usize;
    for (seq, len) in header.replay {
        let end = at.checked_add(len as usize).filter(|end| *end <= raw.len());
        let end = end.ok_or_else(|| WireError::Malformed("replay longer than its frame".into()))?;
        replay.push((seq, DispatchPrefix(raw.slice(at..end))));
        at = end;
    }
    let handover = Handover { user_id: header.user, session_id: header.key, seq: header.seq, replay };
    Ok(MovedSession { handover, status: header.status, guilds: header.guilds })
}

/// A JSON header (length-prefixed) and raw bytes after it.
pub fn encode_framed<T: Serialize>(header: &T, raw: &[u8]) -> Bytes {
    let header = encode(header);
    let mut out = BytesMut::with_capacity(4 + header.len() + raw.len());
    out.put_u32(header.len() as u32);
    out.put_slice(&header);
    out.put_slice(raw);
    out.freeze()
}

pub fn decode_framed<T: for<'de> Deserialize<'de>>(bytes: &Bytes) -> Result<(T, Bytes), WireError> {
    let short = || WireError::Malformed("frame shorter than its header".into());
    let len = u32::from_be_bytes(bytes.get(..4).ok_or_else(short)?.try_into().expect("4 bytes")) as usize;
    let header = bytes.get(4..4 + len).ok_or_else(short)?;
    Ok((decode(header)?, bytes.slice(4 + len..)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use guildhall_core::guild::{Command, MessageCommand};
    use guildhall_core::Snowflake;

    #[test]
    fn guild_messages_round_trip_and_versions_are_checked() {
        let command: Command =
            MessageCommand::Typing { user: Snowflake(1), channel_id: Snowflake(2), unix_s: 3 }.into();
        let reply_to = ReplyTo { node: 4, correlation: 5 };
        let request = ActorRequest::Deliver {
            kind: ActorKind::Guild,
            id: Snowflake(9),
            msg: Box::new(GuildMsg::Command { command: Box::new(command), reply_to, expires_at_ms: 6 }),
        };
        let bytes = encode(&request);
        let back: ActorRequest = decode(&bytes).unwrap();
        assert_eq!(format!("{back:?}"), format!("{request:?}"));
        let future = bytes.as_ref().to_vec();
        let future = String::from_utf8(future).unwrap().replacen("\"v\":1", "\"v\":2", 1);
        assert!(matches!(decode::<ActorRequest>(future.as_bytes()), Err(WireError::Version(2))));
        assert!(matches!(decode::<ActorRequest>(b"{\"v\":1,\"body\":3}"), Err(WireError::Malformed(_))));
    }

    /// A take-over's answer is typed on both ends; a refusal is the bytes v1 sent (the
    /// envelope around the word), so a node of either version reads the other's.
    #[test]
    fn take_answers_are_a_session_or_a_refusal() {
        let refused = encode_take_answer(&TakeAnswer::Refused, 1024);
        assert_eq!(refused.as_ref(), br#"{"v":1,"body":"refused"}"#);
        assert!(matches!(decode_take_answer(&refused), Ok(TakeAnswer::Refused)));
        let handover = Handover { user_id: Snowflake(5), session_id: "k".into(), seq: 12, replay: Vec::new() };
        let moved = MovedSession { handover, status: Status::Idle, guilds: vec![Snowflake(3)] };
        let Ok(TakeAnswer::Moved(back)) = decode_take_answer(&encode_take_answer(&TakeAnswer::Moved(moved), 1024))
        else {
            panic!("a session comes back as one")
        };
        assert_eq!((back.handover.seq, back.status), (12, Status::Idle));
        let other = Bytes::from_static(br#"{"v":1,"body":"maybe"}"#);
        assert!(matches!(decode_take_answer(&other), Err(WireError::Malformed(_))), "neither is an error");
    }

    #[test]
    fn framed_messages_carry_raw_bytes_unescaped() {
        let header = SessionsHeader { guild: Snowflake(7), sessions: vec![SessionId(1), SessionId(2)], moved: false };
        let dispatch = br#"{"op":0,"t":"MESSAGE_CREATE","d":{"content":"\"hi\""},"s":"#;
        let frame = encode_framed(&header, dispatch);
        let (back, raw): (SessionsHeader, Bytes) = decode_framed(&frame).unwrap();
        assert_eq!((back.guild, back.sessions), (Snowflake(7), vec![SessionId(1), SessionId(2)]));
        assert_eq!(raw.as_ref(), dispatch);
        assert!(decode_framed::<SessionsHeader>(&Bytes::from_static(&[0, 0, 0, 99, b'{'])).is_err());
        assert!(decode_framed::<SessionsHeader>(&Bytes::from_static(&[0])).is_err());
    }

    #[test]
    fn a_handed_over_session_keeps_its_newest_dispatches_within_the_bound() {
        let prefix = |n: u64| DispatchPrefix::encode("MESSAGE_CREATE", &serde_json::json!({ "n": n }));
        let handover = Handover {
            user_id: Snowflake(5),
            session_id: "k".into(),
            seq: 12,
            replay: (10..=12).map(|s| (s, prefix(s))).collect(),
        };
        let moved = MovedSession { handover, status: Status::Idle, guilds: vec![Snowflake(3)] };
        let back = decode_handover(&encode_handover(&moved, 1 << 20)).unwrap();
        assert_eq!((back.handover.seq, back.status.as_str(), back.guilds.clone()), (12, "idle", vec![Snowflake(3)]));
        let seqs: Vec<u64> = back.handover.replay.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, vec![10, 11, 12]);
        assert_eq!(back.handover.replay[1].1 .0, prefix(11).0, "bytes as they were");
        let one = prefix(12).len();
        let cut = decode_handover(&encode_handover(&moved, one * 2)).unwrap();
        assert_eq!(cut.handover.replay.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![11, 12], "the newest");
        let mut lying = encode_handover(&moved, 1 << 20).to_vec();
        lying.truncate(lying.len() - 3);
        assert!(decode_handover(&Bytes::from(lying)).is_err(), "a replay longer than the frame is refused");
    }
}
