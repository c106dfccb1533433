//! The request bodies of the REST API, as Discord's clients send them. Each states its
//! constraints for the API description (lengths, patterns, ranges); the handlers check them
//! again, with Discord's error messages.

use guildhall_core::model::UserId;
use guildhall_core::permissions::{Overwrite, OverwriteKind, Permissions};
use guildhall_core::Snowflake;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::present;

// ---- Accounts and DMs ----

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    #[schemars(regex(pattern = r"^[A-Za-z0-9_.]{2,32}$"))]
    pub username: String,
    #[schemars(length(min = 8, max = 128))]
    pub password: String,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct OpenDm {
    pub recipient_id: UserId,
}

// ---- Applications (bots) ----

#[derive(Deserialize, schemars::JsonSchema)]
pub struct CreateApplication {
    /// The bot user's username too.
    #[schemars(regex(pattern = r"^[A-Za-z0-9_.]{2,32}$"))]
    pub name: String,
    #[serde(default)]
    #[schemars(length(max = 400))]
    pub description: Option<String>,
    /// Privileged intents to turn on (application flags).
    #[serde(default, deserialize_with = "crate::integral_opt")]
    #[schemars(extend("enum" = PRIVILEGED_FLAG_SETS))]
    pub flags: Option<u64>,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct UpdateApplication {
    #[serde(default)]
    #[schemars(length(max = 400))]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "crate::integral_opt")]
    #[schemars(extend("enum" = PRIVILEGED_FLAG_SETS))]
    pub flags: Option<u64>,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct Authorize {
    pub guild_id: Snowflake,
    #[serde(default)]
    pub permissions: Option<Permissions>,
    #[serde(default = "yes")]
    pub authorize: bool,
}

// ---- Guilds, channels and invites ----

#[derive(Deserialize, schemars::JsonSchema)]
pub struct CreateGuild {
    #[schemars(length(max = 100), regex(pattern = guildhall_core::model::NOT_ONLY_SPACES_PATTERN))]
    pub name: String,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateGuild {
    #[schemars(length(max = 100), regex(pattern = guildhall_core::model::NOT_ONLY_SPACES_PATTERN))]
    pub name: Option<String>,
    pub moderation_fail_closed: Option<bool>,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct CreateChannel {
    #[schemars(length(max = 100), regex(pattern = guildhall_core::model::NOT_ONLY_SPACES_PATTERN))]
    pub name: String,
    /// Only text channels (0).
    #[serde(rename = "type", default, deserialize_with = "crate::integral")]
    #[schemars(range(min = 0, max = 0))]
    pub kind: u8,
    #[serde(default)]
    #[schemars(length(max = 1024))]
    pub topic: Option<String>,
}

/// `POST /channels/{id}/invites` options (Discord's; `unique` is always so here: every
/// invite gets a new code).
#[derive(Deserialize, Default, schemars::JsonSchema)]
pub struct InviteOptions {
    #[serde(default, deserialize_with = "crate::integral_opt")]
    #[schemars(range(min = 0, max = 604_800))]
    pub max_age: Option<u32>,
    #[serde(default, deserialize_with = "crate::integral_opt")]
    #[schemars(range(min = 0, max = 100))]
    pub max_uses: Option<u32>,
    /// Temporary membership is not supported.
    #[serde(default)]
    #[schemars(extend("const" = false))]
    pub temporary: bool,
    #[serde(default, rename = "unique")]
    pub _unique: bool,
}

// ---- Messages ----

#[derive(Deserialize, schemars::JsonSchema)]
pub struct CreateMessage {
    /// Not empty nor only spaces: it is the message. (Without it, Discord's 50006.)
    #[schemars(required, length(max = 2000), regex(pattern = guildhall_core::model::NOT_ONLY_SPACES_PATTERN))]
    pub content: Option<String>,
    /// A string of at most 25 characters or an integer: with `enforce_nonce`, a retry with
    /// the same nonce gets the message the first try made.
    #[serde(default)]
    #[schemars(schema_with = "nonce_schema")]
    pub nonce: Option<Value>,
    /// Discord's: with a nonce, a retry gets the message the first try made.
    #[serde(default)]
    pub enforce_nonce: Option<bool>,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct EditMessage {
    #[schemars(required, length(max = 2000), regex(pattern = guildhall_core::model::NOT_ONLY_SPACES_PATTERN))]
    pub content: Option<String>,
}

// ---- Roles, members, channels and permission overwrites ----

#[derive(Deserialize, Default, schemars::JsonSchema)]
pub struct RoleBody {
    #[schemars(length(max = 100), regex(pattern = guildhall_core::model::NOT_ONLY_SPACES_PATTERN))]
    pub name: Option<String>,
    pub permissions: Option<Permissions>,
    #[serde(default, alias = "colour", deserialize_with = "crate::integral_opt")]
    #[schemars(range(min = 0, max = 0xFF_FFFF))]
    pub color: Option<u32>,
    pub hoist: Option<bool>,
    pub mentionable: Option<bool>,
    /// Only PATCH /roles/{id} takes it here (Discord moves roles with another route too).
    #[serde(default, deserialize_with = "crate::integral_opt")]
    pub position: Option<i32>,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct MemberBody {
    #[schemars(length(max = 250))]
    pub roles: Option<Vec<Snowflake>>,
    /// Absent keeps the nickname, null or "" clears it.
    #[serde(default, deserialize_with = "present")]
    #[schemars(length(max = 32))]
    pub nick: Option<Option<String>>,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct ChannelBody {
    #[schemars(length(max = 100), regex(pattern = guildhall_core::model::NOT_ONLY_SPACES_PATTERN))]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schemars(length(max = 1024))]
    pub topic: Option<Option<String>>,
    pub nsfw: Option<bool>,
    pub permission_overwrites: Option<Vec<OverwriteBody>>,
}

/// An overwrite as clients send it in a channel's list: its id and its bits.
#[derive(Deserialize, schemars::JsonSchema)]
pub struct OverwriteBody {
    pub id: Snowflake,
    #[serde(flatten)]
    pub bits: OverwriteBits,
}

/// An overwrite's type and bits (PUT /channels/{id}/permissions/{id} takes only these):
/// `allow` and `deny` may be left out.
#[derive(Deserialize, schemars::JsonSchema)]
pub struct OverwriteBits {
    #[serde(rename = "type")]
    pub kind: OverwriteKind,
    #[serde(default)]
    pub allow: Option<Permissions>,
    #[serde(default)]
    pub deny: Option<Permissions>,
}

// ---- Plugins ----

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginUpdate {
    pub enabled: Option<bool>,
    pub config: Option<Value>,
}

/// Every combination of the privileged intent flags (and null), what `flags` may be.
const PRIVILEGED_FLAG_SETS: [Option<u64>; 9] =
    [None, Some(0), Some(4096), Some(16384), Some(20480), Some(262144), Some(266240), Some(278528), Some(282624)];

fn yes() -> bool {
    true
}

fn nonce_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let integer = json!({ "type": "integer", "minimum": i64::MIN, "maximum": u64::MAX });
    schemars::json_schema!({ "anyOf": [{ "type": "string", "maxLength": 25 }, integer, { "type": "null" }] })
}

/// Characters of a string nonce, at most (Discord's).
pub const MAX_NONCE_CHARS: usize = 25;

impl CreateMessage {
    /// The nonce, if it is one: a string of at most 25 characters, or an integer within
    /// i64's and u64's ranges (written with a fraction of zero only below 2^53 in size,
    /// where a float is exact). Null is none.
    pub fn checked_nonce(&self) -> Result<Option<Value>, &'static str> {
        let whole_64_bit = |n: &serde_json::Number| {
            n.is_i64() || n.is_u64() || n.as_f64().and_then(guildhall_core::snowflake::whole_number).is_some()
        };
        match &self.nonce {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.chars().count() <= MAX_NONCE_CHARS => Ok(self.nonce.clone()),
            Some(Value::Number(n)) if whole_64_bit(n) => Ok(self.nonce.clone()),
            Some(_) => Err("nonce: must be a string of at most 25 characters or an integer"),
        }
    }
}

impl OverwriteBits {
    /// The overwrite of role or member `id` (bits the host does not know are dropped).
    pub fn into_overwrite(self, id: Snowflake) -> Overwrite {
        let bits = |p: Option<Permissions>| p.unwrap_or(Permissions::NONE).known();
        Overwrite { id, kind: self.kind, allow: bits(self.allow), deny: bits(self.deny) }
    }
}
