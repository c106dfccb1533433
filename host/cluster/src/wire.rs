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
//!
//! Bodies are JSON in an envelope carrying [`WIRE_VERSION`]; a node refuses versions it
//! does not know. The session fan-out carries the dispatch as raw bytes after a small JSON
//! header, so the Discord JSON made once by the guild is not escaped into another string.

use bytes::{BufMut, Bytes, BytesMut};
use guildhall_core::guild::SessionId;
use guildhall_core::model::{Channel, GuildId, Message, MessageId, UserId};
use guildhall_runtime::guild_ref::GuildMsg;
use guildhall_runtime::reply::{CommandResult, NodeId, ReplyTo};
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
    Dispatch { intent: u64 },
    JoinGuild(GuildId),
}

/// For a user's sessions: `dispatch` follows the header for `UserWire::Dispatch`.
#[derive(Debug, Serialize, Deserialize)]
pub struct UserHeader {
    pub origin: NodeId,
    pub user: UserId,
    pub msg: UserWire,
}

/// For some of a node's sessions: the dispatch follows the header.
#[derive(Debug, Serialize, Deserialize)]
pub struct SessionsHeader {
    pub guild: GuildId,
    pub sessions: Vec<SessionId>,
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
    use guildhall_core::guild::Command;
    use guildhall_core::Snowflake;

    #[test]
    fn guild_messages_round_trip_and_versions_are_checked() {
        let command = Command::Typing { user: Snowflake(1), channel_id: Snowflake(2), unix_s: 3 };
        let reply_to = ReplyTo { node: 4, correlation: 5 };
        let request = ActorRequest::Deliver {
            kind: ActorKind::Guild,
            id: Snowflake(9),
            msg: Box::new(GuildMsg::Command { command, reply_to }),
        };
        let bytes = encode(&request);
        let back: ActorRequest = decode(&bytes).unwrap();
        assert_eq!(format!("{back:?}"), format!("{request:?}"));
        let future = bytes.as_ref().to_vec();
        let future = String::from_utf8(future).unwrap().replacen("\"v\":1", "\"v\":2", 1);
        assert!(matches!(decode::<ActorRequest>(future.as_bytes()), Err(WireError::Version(2))));
        assert!(matches!(decode::<ActorRequest>(b"{\"v\":1,\"body\":3}"), Err(WireError::Malformed(_))));
    }

    #[test]
    fn framed_messages_carry_raw_bytes_unescaped() {
        let header = SessionsHeader { guild: Snowflake(7), sessions: vec![SessionId(1), SessionId(2)] };
        let dispatch = br#"{"op":0,"t":"MESSAGE_CREATE","d":{"content":"\"hi\""},"s":"#;
        let frame = encode_framed(&header, dispatch);
        let (back, raw): (SessionsHeader, Bytes) = decode_framed(&frame).unwrap();
        assert_eq!((back.guild, back.sessions), (Snowflake(7), vec![SessionId(1), SessionId(2)]));
        assert_eq!(raw.as_ref(), dispatch);
        assert!(decode_framed::<SessionsHeader>(&Bytes::from_static(&[0, 0, 0, 99, b'{'])).is_err());
        assert!(decode_framed::<SessionsHeader>(&Bytes::from_static(&[0])).is_err());
    }
}
