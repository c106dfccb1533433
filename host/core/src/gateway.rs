//! Discord Gateway v10 wire vocabulary: opcodes, close codes, intents, and the dispatch
//! frame encoding that lets one serialization serve every recipient.
//!
//! A dispatch is serialized once as `{"op":0,"t":"NAME","d":{...},"s":` (the *prefix*);
//! each session appends its own sequence number and `}`. Splicing `s` is a memcpy and an
//! integer format, never a re-serialization of `d`.

use bytes::Bytes;
use serde::Serialize;

pub mod op {
    pub const DISPATCH: u8 = 0;
    pub const HEARTBEAT: u8 = 1;
    pub const IDENTIFY: u8 = 2;
    pub const PRESENCE_UPDATE: u8 = 3;
    pub const VOICE_STATE_UPDATE: u8 = 4;
    pub const RESUME: u8 = 6;
    pub const RECONNECT: u8 = 7;
    pub const REQUEST_GUILD_MEMBERS: u8 = 8;
    pub const INVALID_SESSION: u8 = 9;
    pub const HELLO: u8 = 10;
    pub const HEARTBEAT_ACK: u8 = 11;
}

/// Close codes the gateway uses. 4000-4014 are Discord's own; 1001 is "going away".
pub mod close {
    pub const GOING_AWAY: u16 = 1001;
    pub const UNKNOWN_ERROR: u16 = 4000;
    pub const UNKNOWN_OPCODE: u16 = 4001;
    pub const DECODE_ERROR: u16 = 4002;
    pub const NOT_AUTHENTICATED: u16 = 4003;
    pub const AUTHENTICATION_FAILED: u16 = 4004;
    pub const ALREADY_AUTHENTICATED: u16 = 4005;
    pub const INVALID_SEQ: u16 = 4007;
    pub const RATE_LIMITED: u16 = 4008;
    pub const SESSION_TIMED_OUT: u16 = 4009;
    pub const INVALID_API_VERSION: u16 = 4012;
    pub const INVALID_INTENTS: u16 = 4013;
    /// A privileged intent the application has not turned on.
    pub const DISALLOWED_INTENTS: u16 = 4014;
    /// Guildhall's use of 4000 for a session whose outbound queue overflowed (it could
    /// not keep up with its guilds). The session is invalidated: RESUME answers op 9.
    pub const SLOW_CONSUMER: u16 = UNKNOWN_ERROR;
}

/// A session's gateway intents: which events it asked for. Discord's bitfield, an integer
/// on the wire (IDENTIFY's `intents`, and between nodes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Intents(pub u64);

impl Intents {
    pub const NONE: Intents = Intents(0);

    /// Intents from IDENTIFY's integer, if every bit is one Discord defines (else 4013).
    pub fn from_bits(bits: u64) -> Option<Intents> {
        (bits & !intents::ALL_KNOWN.0 == 0).then_some(Intents(bits))
    }
    pub fn bits(self) -> u64 {
        self.0
    }
    /// Has every intent of `other`.
    pub const fn contains(self, other: Intents) -> bool {
        self.0 & other.0 == other.0
    }
    /// Has any intent of `other`.
    pub const fn intersects(self, other: Intents) -> bool {
        self.0 & other.0 != 0
    }
    pub const fn without(self, other: Intents) -> Intents {
        Intents(self.0 & !other.0)
    }
}

impl std::ops::BitOr for Intents {
    type Output = Intents;
    fn bitor(self, other: Intents) -> Intents {
        Intents(self.0 | other.0)
    }
}

/// Discord's intents, by name.
pub mod intents {
    use super::Intents;

    pub const GUILDS: Intents = Intents(1 << 0);
    pub const GUILD_MEMBERS: Intents = Intents(1 << 1);
    /// Bans (Discord's GUILD_MODERATION, once GUILD_BANS).
    pub const GUILD_MODERATION: Intents = Intents(1 << 2);
    pub const GUILD_PRESENCES: Intents = Intents(1 << 8);
    pub const GUILD_MESSAGES: Intents = Intents(1 << 9);
    pub const GUILD_MESSAGE_REACTIONS: Intents = Intents(1 << 10);
    pub const GUILD_MESSAGE_TYPING: Intents = Intents(1 << 11);
    pub const DIRECT_MESSAGES: Intents = Intents(1 << 12);
    pub const DIRECT_MESSAGE_TYPING: Intents = Intents(1 << 14);
    pub const MESSAGE_CONTENT: Intents = Intents(1 << 15);
    /// Every bit Discord has defined up to now (0..=25); anything else is invalid (4013).
    pub const ALL_KNOWN: Intents = Intents((1 << 26) - 1);
}

/// A presence status a session sets (IDENTIFY's `presence`, op 3). On the wire it is
/// Discord's lowercase word, so old and new nodes read each other's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Online,
    /// Do not disturb.
    Dnd,
    Idle,
    /// Online but shown to others as offline.
    Invisible,
    Offline,
}

impl Status {
    /// Discord's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Online => "online",
            Status::Dnd => "dnd",
            Status::Idle => "idle",
            Status::Invisible => "invisible",
            Status::Offline => "offline",
        }
    }

    /// The status Discord's word names, if any.
    pub fn parse(word: &str) -> Option<Status> {
        [Status::Online, Status::Dnd, Status::Idle, Status::Invisible, Status::Offline]
            .into_iter()
            .find(|s| s.as_str() == word)
    }

    /// How others see a user with this status on one session: `None` is offline
    /// (invisible is shown as offline). The lower the rank, the more present: a user with
    /// several sessions shows the most present of them.
    pub fn visible_rank(self) -> Option<u8> {
        match self {
            Status::Online => Some(0),
            Status::Dnd => Some(1),
            Status::Idle => Some(2),
            Status::Invisible | Status::Offline => None,
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A dispatch serialized once, shared by every recipient (cheap to clone: one refcount).
#[derive(Clone, Debug)]
pub struct DispatchPrefix(pub Bytes);

impl DispatchPrefix {
    pub fn encode<T: Serialize + ?Sized>(event: &str, data: &T) -> DispatchPrefix {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(b"{\"op\":0,\"t\":");
        serde_json::to_writer(&mut out, event).expect("string serializes");
        out.extend_from_slice(b",\"d\":");
        serde_json::to_writer(&mut out, data).expect("model types serialize");
        out.extend_from_slice(b",\"s\":");
        DispatchPrefix(Bytes::from(out))
    }

    /// The complete frame with this session's sequence number spliced in.
    pub fn with_seq(&self, seq: u64) -> Bytes {
        let mut buf = itoa_buf(seq);
        let digits = buf.format();
        let mut out = Vec::with_capacity(self.0.len() + digits.len() + 1);
        out.extend_from_slice(&self.0);
        out.extend_from_slice(digits);
        out.push(b'}');
        Bytes::from(out)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Decimal formatting of a u64 without allocating.
struct ItoaBuf {
    bytes: [u8; 20],
    start: usize,
}
fn itoa_buf(mut n: u64) -> ItoaBuf {
    let mut bytes = [0u8; 20];
    let mut i = 20;
    loop {
        i -= 1;
        bytes[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    ItoaBuf { bytes, start: i }
}
impl ItoaBuf {
    fn format(&mut self) -> &[u8] {
        &self.bytes[self.start..]
    }
}

/// A non-dispatch frame (`s` and `t` null), e.g. HELLO or HEARTBEAT_ACK.
pub fn control_frame<T: Serialize + ?Sized>(opcode: u8, data: &T) -> Bytes {
    let v = serde_json::json!({ "op": opcode, "d": data, "s": null, "t": null });
    Bytes::from(serde_json::to_vec(&v).expect("json value serializes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spliced_frame_is_valid_json_with_seq() {
        let p = DispatchPrefix::encode("MESSAGE_CREATE", &serde_json::json!({"content": "hi \"there\""}));
        for seq in [0u64, 1, 9, 10, 4242, u64::MAX] {
            let frame = p.with_seq(seq);
            let v: serde_json::Value = serde_json::from_slice(&frame).unwrap();
            assert_eq!(v["op"], 0);
            assert_eq!(v["t"], "MESSAGE_CREATE");
            assert_eq!(v["s"], seq);
            assert_eq!(v["d"]["content"], "hi \"there\"");
        }
    }

    #[test]
    fn control_frames_have_null_seq() {
        let v: serde_json::Value = serde_json::from_slice(&control_frame(op::HEARTBEAT_ACK, &())).unwrap();
        assert_eq!(v["op"], 11);
        assert!(v["s"].is_null() && v["t"].is_null());
    }
}
