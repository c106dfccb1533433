//! The data model, in Discord v10 shapes. These are both what storage keeps and what the
//! API returns, so a field added here shows up on the wire; ids serialize as strings.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::permissions::{Overwrite, Permissions};
use crate::snowflake::Snowflake;

pub type UserId = Snowflake;
pub type GuildId = Snowflake;
pub type ChannelId = Snowflake;
pub type MessageId = Snowflake;

/// Longest message content, in characters (Discord's limit).
pub const MAX_CONTENT_CHARS: usize = 2000;
pub const MAX_NAME_CHARS: usize = 100;
pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_CHARS: usize = 128;
pub const MAX_USERNAME_CHARS: usize = 32;
pub const MIN_USERNAME_CHARS: usize = 2;
/// Most roles a guild may have (Discord's limit), @everyone included.
pub const MAX_ROLES: usize = 250;
/// Most permission overwrites on one channel (Discord's limit).
pub const MAX_OVERWRITES: usize = 100;

/// A user as others see it (Discord's user object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct User {
    pub id: UserId,
    pub username: String,
    #[serde(default = "zero_discriminator")]
    pub discriminator: String,
    #[serde(default)]
    pub global_name: Option<String>,
    #[serde(default)]
    pub avatar: Option<String>,
    #[serde(default)]
    pub bot: bool,
    /// Discord's account flags and profile fields: none set here yet, present as Discord
    /// always sends them (libraries read them without checking).
    #[serde(default)]
    pub public_flags: u64,
    #[serde(default)]
    pub flags: u64,
    #[serde(default)]
    pub banner: Option<String>,
    #[serde(default)]
    pub accent_color: Option<u32>,
    #[serde(default)]
    pub primary_guild: Option<serde_json::Value>,
}

fn zero_discriminator() -> String {
    "0".to_owned()
}

impl User {
    pub fn new(id: UserId, username: impl Into<String>, bot: bool) -> User {
        User {
            id,
            username: username.into(),
            discriminator: zero_discriminator(),
            global_name: None,
            avatar: None,
            bot,
            public_flags: 0,
            flags: 0,
            banner: None,
            accent_color: None,
            primary_guild: None,
        }
    }

    /// The user as they see themselves (READY's `user`, `GET /users/@me`): Discord's
    /// private fields too, with the values a new account has.
    pub fn as_self(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("a user serializes");
        v["mfa_enabled"] = false.into();
        v["locale"] = "en-US".into();
        v["verified"] = true.into();
        v["email"] = serde_json::Value::Null;
        v["premium_type"] = 0.into();
        v
    }
}

/// What storage keeps about a user beyond the public object.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UserRecord {
    pub user: User,
    /// Argon2id PHC string; empty for a bot, which has no password (only tokens).
    pub password_hash: String,
    /// A bot user's application (whose id is the bot's).
    #[serde(default)]
    pub application: Option<Application>,
}

impl UserRecord {
    pub fn person(user: User, password_hash: String) -> UserRecord {
        UserRecord { user, password_hash, application: None }
    }

    /// The privileged intents among `intents` this user may not use: a bot only those its
    /// application turned on (the gateway closes with 4014 otherwise); a person any.
    pub fn disallowed_intents(&self, intents: crate::gateway::Intents) -> crate::gateway::Intents {
        match &self.application {
            Some(application) => application.disallowed_intents(intents),
            None => crate::gateway::Intents::NONE,
        }
    }

    /// The application READY names and its flags: a bot's own; for a person none (their
    /// user id and no flags).
    pub fn application_of(&self) -> (UserId, u64) {
        self.application.as_ref().map_or((self.user.id, 0), |a| (a.id, a.flags))
    }
}

/// Application flags, as Discord numbers them: the privileged gateway intents an
/// application has turned on.
pub mod application_flags {
    pub const GATEWAY_PRESENCE: u64 = 1 << 12;
    pub const GATEWAY_GUILD_MEMBERS: u64 = 1 << 14;
    pub const GATEWAY_MESSAGE_CONTENT: u64 = 1 << 18;
    /// The flags an owner may set.
    pub const SETTABLE: u64 = GATEWAY_PRESENCE | GATEWAY_GUILD_MEMBERS | GATEWAY_MESSAGE_CONTENT;
}

/// A bot application (Discord's application object): its id is its bot user's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Application {
    pub id: Snowflake,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub owner_id: UserId,
    #[serde(default)]
    pub flags: u64,
    #[serde(default = "yes")]
    pub bot_public: bool,
}

fn yes() -> bool {
    true
}

impl Application {
    pub fn reads_message_content(&self) -> bool {
        self.flags & application_flags::GATEWAY_MESSAGE_CONTENT != 0
    }

    /// The privileged intents among `intents` this application has not turned on.
    pub fn disallowed_intents(&self, intents: crate::gateway::Intents) -> crate::gateway::Intents {
        use crate::gateway::intents as i;
        use application_flags as f;
        [
            (i::GUILD_PRESENCES, f::GATEWAY_PRESENCE),
            (i::GUILD_MEMBERS, f::GATEWAY_GUILD_MEMBERS),
            (i::MESSAGE_CONTENT, f::GATEWAY_MESSAGE_CONTENT),
        ]
        .into_iter()
        .filter(|(intent, flag)| intents.intersects(*intent) && self.flags & flag == 0)
        .fold(crate::gateway::Intents::NONE, |acc, (intent, _)| acc | intent)
    }

    /// Discord's application object, with its bot user and owner.
    pub fn discord_json(&self, bot: &User, owner: Option<&User>) -> Value {
        serde_json::json!({
            "id": self.id,
            "name": self.name,
            "icon": null,
            "description": self.description,
            "summary": "",
            "type": null,
            "bot_public": self.bot_public,
            "bot_require_code_grant": false,
            "verify_key": "",
            "flags": self.flags,
            "flags_new": self.flags.to_string(),
            "owner": owner,
            "role_connections_verification_url": null,
            "approximate_user_install_count": 0,
            "approximate_user_authorization_count": 0,
            "explicit_content_filter": 0,
            "eligible_oauth2_scopes": ["bot"],
            "team": null,
            "bot": bot,
            "rpc_origins": [],
            "tags": [],
            "redirect_uris": [],
            "interactions_endpoint_url": null,
            "approximate_guild_count": 0,
            "hook": true,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Guild {
    pub id: GuildId,
    pub name: String,
    pub owner_id: UserId,
    #[serde(default)]
    pub icon: Option<String>,
    /// When a moderation plugin faults: `false` (the default) lets the message through,
    /// `true` refuses it. Guildhall's own setting, not Discord's.
    #[serde(default)]
    pub moderation_fail_closed: bool,
    /// Every role, @everyone (whose id is the guild's) first. Guilds stored before roles
    /// existed have none here; [`Guild::normalized`] gives them Discord's default one.
    #[serde(default)]
    pub roles: Vec<Role>,
}

impl Guild {
    pub fn new(id: GuildId, name: impl Into<String>, owner_id: UserId) -> Guild {
        Guild { id, name: name.into(), owner_id, icon: None, moderation_fail_closed: false, roles: Vec::new() }
            .normalized()
    }

    /// The guild as stored by any version: an @everyone role (Discord's defaults) if it has
    /// none, and roles' `colors` agreeing with their `color`.
    pub fn normalized(mut self) -> Guild {
        if !self.roles.iter().any(|r| r.id == self.id) {
            self.roles.insert(0, Role::everyone(self.id));
        }
        for role in self.roles.iter_mut().filter(|r| r.colors.primary_color != r.color) {
            role.set_color(role.color);
        }
        self
    }

    /// Discord's guild object: the stored fields and every field Discord always sends, with
    /// the values a guild that uses none of those features has.
    pub fn discord_json(&self) -> Value {
        serde_json::json!({
            "id": self.id,
            "name": self.name,
            "icon": self.icon,
            "icon_hash": self.icon,
            "splash": null,
            "discovery_splash": null,
            "banner": null,
            "description": null,
            "owner_id": self.owner_id,
            "region": "deprecated",
            "afk_channel_id": null,
            "afk_timeout": 300,
            "widget_enabled": false,
            "widget_channel_id": null,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": self.roles,
            "emojis": [],
            "stickers": [],
            "features": [],
            "mfa_level": 0,
            "application_id": null,
            "system_channel_id": null,
            "system_channel_flags": 0,
            "rules_channel_id": null,
            "public_updates_channel_id": null,
            "safety_alerts_channel_id": null,
            "max_presences": null,
            "max_members": 500000,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
            "vanity_url_code": null,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": false,
            "preferred_locale": "en-US",
            "nsfw": false,
            "nsfw_level": 0,
            "incidents_data": null,
            "home_header": null,
            "moderation_fail_closed": self.moderation_fail_closed,
        })
    }

    /// What `member` may do in the guild as a whole (before any channel's overwrites).
    pub fn member_permissions(&self, member: &Member) -> Permissions {
        let grants: Vec<_> = self.roles.iter().map(Role::grant).collect();
        let roles = crate::permissions::GuildRoles { guild: self.id, owner: self.owner_id, roles: &grants };
        roles.base(crate::permissions::Subject { user: member.user.id, roles: &member.roles })
    }

    pub fn role(&self, id: Snowflake) -> Option<&Role> {
        self.roles.iter().find(|r| r.id == id)
    }
}

/// A guild role (Discord's role object). The @everyone role's id is the guild's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Role {
    pub id: Snowflake,
    pub name: String,
    #[serde(default)]
    pub color: u32,
    /// Discord's newer form of the color (gradients are not offered: only the primary).
    #[serde(default)]
    pub colors: RoleColors,
    #[serde(default)]
    pub hoist: bool,
    #[serde(default)]
    pub icon: Option<String>,
    #[serde(default)]
    pub unicode_emoji: Option<String>,
    /// Higher is more powerful; @everyone is 0.
    pub position: i32,
    pub permissions: Permissions,
    /// Managed by an integration (a bot's own role): nobody assigns or deletes it.
    #[serde(default)]
    pub managed: bool,
    #[serde(default)]
    pub mentionable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<RoleTags>,
    #[serde(default)]
    pub flags: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RoleColors {
    pub primary_color: u32,
    pub secondary_color: Option<u32>,
    pub tertiary_color: Option<u32>,
}

/// What a managed role belongs to (Discord's role tags): a bot's role names the bot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RoleTags {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot_id: Option<UserId>,
}

impl Role {
    pub fn everyone(guild: GuildId) -> Role {
        Role::new(guild, "@everyone", 0, Permissions::EVERYONE_DEFAULT)
    }

    pub fn new(id: Snowflake, name: impl Into<String>, position: i32, permissions: Permissions) -> Role {
        Role {
            id,
            name: name.into(),
            color: 0,
            colors: RoleColors::default(),
            hoist: false,
            icon: None,
            unicode_emoji: None,
            position,
            permissions,
            managed: false,
            mentionable: false,
            tags: None,
            flags: 0,
        }
    }

    pub fn set_color(&mut self, color: u32) {
        self.color = color;
        self.colors = RoleColors { primary_color: color, secondary_color: None, tertiary_color: None };
    }

    /// The role as the permission computation sees it.
    pub fn grant(&self) -> crate::permissions::RoleGrant {
        crate::permissions::RoleGrant { id: self.id, position: self.position, permissions: self.permissions }
    }
}

/// A ban: the user may not rejoin until it is lifted (Discord's ban object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Ban {
    pub user: User,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Discord channel types used here.
pub const CHANNEL_GUILD_TEXT: u8 = 0;
pub const CHANNEL_DM: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Channel {
    pub id: ChannelId,
    #[serde(rename = "type")]
    pub kind: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guild_id: Option<GuildId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub position: u32,
    #[serde(default)]
    pub topic: Option<String>,
    /// Guild channels: who may do what here beyond their roles, applied in Discord's order.
    #[serde(default)]
    pub permission_overwrites: Vec<Overwrite>,
    #[serde(default)]
    pub nsfw: bool,
    #[serde(default)]
    pub parent_id: Option<ChannelId>,
    /// Slow mode, in seconds (not enforced yet: always 0).
    #[serde(default)]
    pub rate_limit_per_user: u32,
    #[serde(default)]
    pub flags: u64,
    /// DM channels only: both users.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<User>,
}

impl Channel {
    /// A guild text channel.
    pub fn text(id: ChannelId, guild_id: GuildId, name: impl Into<String>) -> Channel {
        Channel {
            id,
            kind: CHANNEL_GUILD_TEXT,
            guild_id: Some(guild_id),
            name: Some(name.into()),
            position: 0,
            topic: None,
            permission_overwrites: Vec::new(),
            nsfw: false,
            parent_id: None,
            rate_limit_per_user: 0,
            flags: 0,
            recipients: vec![],
        }
    }

    /// The DM channel between two users.
    pub fn dm(id: ChannelId, a: User, b: User) -> Channel {
        Channel { kind: CHANNEL_DM, guild_id: None, name: None, recipients: vec![a, b], ..Channel::text(id, id, "") }
    }

    pub fn is_dm(&self) -> bool {
        self.kind == CHANNEL_DM
    }
    /// The bucket of the channel's creation: no message of the channel can be older.
    pub fn first_bucket(&self) -> u32 {
        self.id.bucket()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Member {
    pub user: User,
    #[serde(default)]
    pub nick: Option<String>,
    #[serde(default)]
    pub roles: Vec<Snowflake>,
    pub joined_at: String,
    #[serde(default)]
    pub deaf: bool,
    #[serde(default)]
    pub mute: bool,
    /// Discord's member flags and per-guild profile: none used here yet, present with the
    /// values Discord sends for a member without them (libraries index them directly).
    #[serde(default)]
    pub flags: u64,
    #[serde(default)]
    pub pending: bool,
    #[serde(default)]
    pub avatar: Option<String>,
    #[serde(default)]
    pub banner: Option<String>,
    #[serde(default)]
    pub premium_since: Option<String>,
    #[serde(default)]
    pub communication_disabled_until: Option<String>,
}

impl Member {
    pub fn new(user: User, joined_at: String) -> Member {
        Member {
            user,
            nick: None,
            roles: Vec::new(),
            joined_at,
            deaf: false,
            mute: false,
            flags: 0,
            pending: false,
            avatar: None,
            banner: None,
            premium_since: None,
            communication_disabled_until: None,
        }
    }
}

/// What a plugin is: the world its component implements. On the wire and in storage it is
/// the world's name (`bot`, `moderator`, `indexer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    /// Guild behaviour (world `bot`).
    Bot,
    /// In the message path (world `moderator`).
    Moderator,
    /// Events to search documents (world `indexer`).
    Indexer,
}

impl PluginKind {
    pub const ALL: [PluginKind; 3] = [PluginKind::Bot, PluginKind::Moderator, PluginKind::Indexer];

    /// The world's name.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Bot => "bot",
            PluginKind::Moderator => "moderator",
            PluginKind::Indexer => "indexer",
        }
    }
}

impl std::str::FromStr for PluginKind {
    type Err = String;
    fn from_str(name: &str) -> Result<PluginKind, String> {
        PluginKind::ALL
            .into_iter()
            .find(|k| k.as_str() == name)
            .ok_or_else(|| format!("no plugin kind {name:?} (bot, moderator or indexer)"))
    }
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A plugin installed in a guild. The component itself is stored once per content hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PluginRecord {
    pub id: Snowflake,
    pub guild_id: GuildId,
    pub name: String,
    /// The world the component implements.
    pub kind: PluginKind,
    pub enabled: bool,
    /// The JSON object handed to the plugin's `init`.
    pub config: Value,
    /// SHA-256 of the component bytes, hex.
    pub component_sha256: String,
    pub created_at: String,
}

/// Text that is not only spaces, as an ECMA-262 pattern (the API description's): it holds a
/// character outside Unicode's White_Space, which `str::trim` strips. (ECMA's `\S` is not
/// that set: it counts U+FEFF as a space and U+0085 as not.)
pub const NOT_ONLY_SPACES_PATTERN: &str =
    "[^\\t\\n\\v\\f\\r \\x85\\xA0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]";

/// Most characters of a reaction emoji (a Unicode emoji, possibly a ZWJ sequence).
pub const MAX_EMOJI_CHARS: usize = 16;

/// What [`Emoji::parse`] takes, as an ECMA-262 pattern (the API description's): characters
/// that are not ASCII letters, ':', controls or spaces, at least one of them not ASCII.
pub const EMOJI_PATTERN: &str = concat!(
    "^[^\\x00-\\x20\\x7F-\\xA0:A-Za-z\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000\\uFEFF]*",
    "[^\\x00-\\xA0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000\\uFEFF]",
    "[^\\x00-\\x20\\x7F-\\xA0:A-Za-z\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000\\uFEFF]*$",
);

/// The spaces [`EMOJI_PATTERN`] names (Unicode's White_Space above U+00A0, and U+FEFF).
fn is_space_beyond_latin1(c: char) -> bool {
    matches!(
        c,
        '\u{1680}' | '\u{2000}'
            ..='\u{200A}' | '\u{2028}' | '\u{2029}' | '\u{202F}' | '\u{205F}' | '\u{3000}' | '\u{FEFF}'
    )
}

/// An emoji as reactions carry it (Discord's partial emoji). Guilds have no custom emojis
/// yet, so `id` is always `None` and `name` is a Unicode emoji.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Emoji {
    pub id: Option<Snowflake>,
    pub name: String,
}

impl Emoji {
    /// Parses the emoji of a reaction route (already percent-decoded): a Unicode emoji.
    /// `name:id` names a custom emoji, which no guild has (Unknown Emoji).
    pub fn parse(text: &str) -> Result<Emoji, &'static str> {
        let allowed = |c: char| {
            !matches!(c, '\0'..=' ' | '\u{7F}'..='\u{A0}' | ':' | 'A'..='Z' | 'a'..='z') && !is_space_beyond_latin1(c)
        };
        let plausible =
            (1..=MAX_EMOJI_CHARS).contains(&text.chars().count()) && !text.is_ascii() && text.chars().all(allowed);
        if !plausible {
            return Err("Unknown Emoji");
        }
        Ok(Emoji { id: None, name: text.to_owned() })
    }
}

/// How many users reacted to a message with one emoji (Discord's reaction object; `me`
/// is filled in for the user who asked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Reaction {
    pub count: u32,
    pub me: bool,
    pub emoji: Emoji,
}

/// One entry of a guild's audit log (Discord's audit log entry object). Entries are kept
/// for [`AUDIT_LOG_RETENTION_DAYS`]; older ones are neither listed nor kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AuditLogEntry {
    pub id: Snowflake,
    pub guild_id: GuildId,
    /// Who did it; `None` when the host did (a plugin disabled after repeated faults).
    pub user_id: Option<UserId>,
    /// What it was done to: a plugin, a user, the guild.
    pub target_id: Option<Snowflake>,
    /// One of [`audit_action`].
    pub action_type: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<AuditLogChange>,
    /// Extra facts about the action (Discord's "optional audit entry info"), e.g. the
    /// channel and the plugin of an automatic moderation action.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub options: serde_json::Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AuditLogChange {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_value: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_value: Option<Value>,
}

pub const AUDIT_LOG_RETENTION_DAYS: u64 = 45;

/// Audit log action types, numbered as Discord's (plugins are Discord's integrations).
pub mod audit_action {
    pub const GUILD_UPDATE: u16 = 1;
    pub const CHANNEL_UPDATE: u16 = 11;
    pub const MEMBER_KICK: u16 = 20;
    pub const MEMBER_BAN_ADD: u16 = 22;
    pub const MEMBER_BAN_REMOVE: u16 = 23;
    pub const MEMBER_UPDATE: u16 = 24;
    pub const MEMBER_ROLE_UPDATE: u16 = 25;
    pub const ROLE_CREATE: u16 = 30;
    pub const ROLE_UPDATE: u16 = 31;
    pub const ROLE_DELETE: u16 = 32;
    pub const INTEGRATION_CREATE: u16 = 80;
    pub const INTEGRATION_UPDATE: u16 = 81;
    pub const INTEGRATION_DELETE: u16 = 82;
    pub const AUTO_MODERATION_BLOCK_MESSAGE: u16 = 143;
    pub const AUTO_MODERATION_FLAG_TO_CHANNEL: u16 = 144;
}

/// A timer a bot plugin set, kept in storage so that it fires even if the plugin is
/// reloaded or the host restarts in between.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PluginTimer {
    /// Unique per (plugin, guild).
    pub id: u64,
    /// When it is due, in Unix milliseconds.
    pub due_unix_ms: u64,
    pub payload: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Invite {
    pub code: String,
    pub guild_id: GuildId,
    pub channel_id: ChannelId,
    pub inviter_id: UserId,
    pub created_at: String,
    /// Seconds it lasts from its creation; 0: for ever (Discord's `max_age`).
    #[serde(default)]
    pub max_age: u32,
    /// Joins it allows; 0: any number (Discord's `max_uses`).
    #[serde(default)]
    pub max_uses: u32,
    #[serde(default)]
    pub uses: u32,
    /// When it stops working, unix ms; 0: never (from `max_age`).
    #[serde(default)]
    pub expires_unix_ms: u64,
}

impl Invite {
    /// Discord's longest `max_age` (7 days) and most `max_uses`.
    pub const MAX_AGE_SECONDS: u32 = 604_800;
    pub const MAX_USES: u32 = 100;

    /// Whether it can still be looked up and used at `now_unix_ms`: not expired, uses left.
    pub fn usable(&self, now_unix_ms: u64) -> bool {
        (self.expires_unix_ms == 0 || now_unix_ms < self.expires_unix_ms)
            && (self.max_uses == 0 || self.uses < self.max_uses)
    }
}

pub const MESSAGE_DEFAULT: u8 = 0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Message {
    pub id: MessageId,
    pub channel_id: ChannelId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guild_id: Option<GuildId>,
    pub author: User,
    pub content: String,
    pub timestamp: String,
    #[serde(default)]
    pub edited_timestamp: Option<String>,
    #[serde(default)]
    pub tts: bool,
    #[serde(default)]
    pub mention_everyone: bool,
    #[serde(default)]
    pub mentions: Vec<User>,
    #[serde(default)]
    pub mention_roles: Vec<Snowflake>,
    #[serde(default)]
    pub attachments: Vec<Value>,
    #[serde(default)]
    pub embeds: Vec<Value>,
    #[serde(default)]
    pub pinned: bool,
    #[serde(rename = "type", default)]
    pub kind: u8,
    /// Discord's message flags (none set here yet) and message components (none yet).
    #[serde(default)]
    pub flags: u64,
    #[serde(default)]
    pub components: Vec<Value>,
    /// Echoed back to the sender so a client can match its optimistic message; never stored
    /// beyond the message itself. Discord accepts a string or an integer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<Value>,
}

impl Message {
    pub fn new(id: MessageId, channel: &Channel, author: User, content: String, nonce: Option<Value>) -> Message {
        Message {
            id,
            channel_id: channel.id,
            guild_id: channel.guild_id,
            author,
            content,
            timestamp: id.iso_timestamp(),
            edited_timestamp: None,
            tts: false,
            mention_everyone: false,
            mentions: Vec::new(),
            mention_roles: Vec::new(),
            attachments: Vec::new(),
            embeds: Vec::new(),
            pinned: false,
            kind: MESSAGE_DEFAULT,
            flags: 0,
            components: Vec::new(),
            nonce,
        }
    }
}

impl Message {
    /// Whether a bot without the MESSAGE_CONTENT intent still reads this message's content
    /// (Discord's rule): its own messages, those that mention it, and DMs.
    pub fn shown_to_bots_without_content(&self, bot: UserId) -> bool {
        self.guild_id.is_none() || self.author.id == bot || self.mentions.iter().any(|u| u.id == bot)
    }

    /// The message as a bot without MESSAGE_CONTENT sees it: content, embeds, attachments
    /// and components emptied.
    pub fn without_content(&mut self) {
        self.content.clear();
        self.embeds.clear();
        self.attachments.clear();
        self.components.clear();
    }
}

/// User ids mentioned as `<@id>` or `<@!id>` in content, in order, without duplicates.
pub fn mentioned_user_ids(content: &str) -> Vec<UserId> {
    let mut out: Vec<UserId> = Vec::new();
    let mut rest = content;
    while let Some(start) = rest.find("<@") {
        rest = &rest[start + 2..];
        let digits = rest.strip_prefix('!').unwrap_or(rest);
        let end = digits.find('>');
        if let Some(end) = end {
            if let Ok(id) = digits[..end].parse::<u64>() {
                if !out.contains(&Snowflake(id)) {
                    out.push(Snowflake(id));
                }
            }
        }
    }
    out
}

/// Checks message content against Discord's rules: not empty, at most 2000 characters.
pub fn validate_content(content: &str) -> Result<(), &'static str> {
    if content.trim().is_empty() {
        return Err("Cannot send an empty message");
    }
    if content.chars().count() > MAX_CONTENT_CHARS {
        return Err("Must be 2000 or fewer in length.");
    }
    Ok(())
}

/// Guild and channel names: 1..=100 characters, not blank.
pub fn validate_name(name: &str) -> Result<(), &'static str> {
    if name.trim().is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err("Must be between 1 and 100 in length.");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pattern's class is exactly what `str::trim` strips (Unicode's White_Space).
    #[test]
    fn the_spaces_pattern_names_exactly_the_white_space_characters() {
        const SPACES: [(u32, u32); 10] = [
            (0x09, 0x0D),
            (0x20, 0x20),
            (0x85, 0x85),
            (0xA0, 0xA0),
            (0x1680, 0x1680),
            (0x2000, 0x200A),
            (0x2028, 0x2029),
            (0x202F, 0x202F),
            (0x205F, 0x205F),
            (0x3000, 0x3000),
        ];
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            let listed = SPACES.iter().any(|(lo, hi)| (*lo..=*hi).contains(&u32::from(c)));
            assert_eq!(c.is_whitespace(), listed, "U+{:04X}", u32::from(c));
        }
        let class = "[^\\t\\n\\v\\f\\r \\x85\\xA0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]";
        assert_eq!(NOT_ONLY_SPACES_PATTERN, class, "\\t..\\r is 0x09..0x0D, then the list above");
    }

    #[test]
    fn reaction_emoji_are_what_the_api_description_says() {
        for good in ["👍", "1️⃣", "#️⃣", "🏳️\u{200d}🌈", "¡", "é"] {
            assert!(Emoji::parse(good).is_ok(), "{good:?}");
        }
        let long = "👍".repeat(MAX_EMOJI_CHARS + 1);
        for bad in ["", "a", "12", "👍 ", "a👍", "👍:1", "\u{3000}👍", "\u{feff}👍", "\u{a0}", long.as_str()]
        {
            assert!(Emoji::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn mentions_are_parsed() {
        assert_eq!(mentioned_user_ids("hi <@12> and <@!34>, <@12> again, <@x> <@"), vec![Snowflake(12), Snowflake(34)]);
    }

    #[test]
    fn content_rules() {
        assert!(validate_content("").is_err());
        assert!(validate_content("   ").is_err());
        assert!(validate_content(&"é".repeat(2000)).is_ok());
        assert!(validate_content(&"é".repeat(2001)).is_err());
    }

    #[test]
    fn channel_json_uses_type_and_string_ids() {
        let c = Channel::text(Snowflake(5), Snowflake(7), "general");
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["type"], 0);
        assert_eq!(v["id"], "5");
        assert_eq!(v["guild_id"], "7");
    }

    #[test]
    fn reaction_emojis_are_unicode_emojis() {
        for ok in ["👍", "1️⃣", "👩‍👩‍👧", "❤️", "©"] {
            assert_eq!(Emoji::parse(ok).map(|e| e.name), Ok(ok.to_owned()), "{ok}");
        }
        for bad in ["", "a", "ab👍", "👍 ", "custom:123", "\u{7}👍", &"👍".repeat(20)] {
            assert!(Emoji::parse(bad).is_err(), "{bad:?}");
        }
    }
}
