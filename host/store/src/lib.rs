//! The storage seam of Guildhall.
//!
//! [`Storage`] is what the host needs from a database; every backend implements it and must
//! pass the conformance suite (`conformance`, behind the `conformance` feature, for backends'
//! tests). The backends are crates of their own: `guildhall-store-redb` (embedded) and
//! `guildhall-scylla`; the coalescing data service is `guildhall-data`. Messages follow the seed's layout: partition `(channel_id, bucket)`
//! where the bucket is the 10-day window of the message id's timestamp, clustered by
//! `message_id` descending. Backends only answer per-partition queries
//! ([`Storage::messages_in_bucket`]); [`history`] walks the buckets, once for all backends.
//!
//! Durability contract: a method that returns `Ok` for a write has made it durable (on the
//! embedded backend, fsynced; on a CQL backend, acknowledged at the configured consistency).

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod history;
pub mod layer;

use async_trait::async_trait;
use guildhall_core::guild::GuildWrite;
use guildhall_core::model::{
    AuditLogEntry, Ban, Channel, ChannelId, Emoji, Guild, GuildId, Invite, Member, Message, MessageId, PluginRecord,
    PluginTimer, Reaction, User, UserId, UserRecord,
};
use guildhall_core::stream::{LogEntry, LogKey};
use guildhall_core::Snowflake;

pub use history::{history, HistoryQuery};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken (e.g. the username is taken).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The row a conditional write needed does not exist.
    #[error("not found")]
    NotFound,
    /// The database cannot be reached or failed; nothing was acknowledged.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// In a cluster, the node that serves this data cannot be reached now (no node is
    /// live, or the one that owns it does not answer): not the database's fault; retry.
    #[error("cluster unavailable: {0}")]
    Unreachable(String),
    /// Stored bytes that do not decode: a bug or corruption, never the caller's fault.
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which side of the partition a per-bucket query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Newest first (the clustering order).
    Desc,
    /// Oldest first.
    Asc,
}

/// Exclusive id bounds for a per-bucket query.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IdBounds {
    pub after: Option<MessageId>,
    pub before: Option<MessageId>,
}

/// Reaction rows read to count a message's reactions (a bound on one message read).
pub const MAX_COUNTED_REACTIONS: usize = 100_000;

/// Counts (emoji name, user) rows in emoji order into reaction objects.
pub fn count_reactions(rows: impl IntoIterator<Item = (String, UserId)>, viewer: UserId) -> Vec<Reaction> {
    let mut out: Vec<Reaction> = Vec::new();
    for (name, user) in rows.into_iter().take(MAX_COUNTED_REACTIONS) {
        match out.last_mut() {
            Some(r) if r.emoji.name == name => {
                r.count += 1;
                r.me |= user == viewer;
            }
            _ => out.push(Reaction { count: 1, me: user == viewer, emoji: Emoji { id: None, name } }),
        }
    }
    out
}

/// The oldest audit log id still kept at `now_unix_ms`.
pub fn audit_log_cutoff(now_unix_ms: u64) -> Snowflake {
    let retention_ms = guildhall_core::model::AUDIT_LOG_RETENTION_DAYS * 24 * 3600 * 1000;
    Snowflake::from_unix_ms(now_unix_ms.saturating_sub(retention_ms))
}

#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// `Conflict` if the username (case-insensitively) is taken.
    async fn create_user(&self, record: UserRecord) -> Result<()>;
    /// Overwrites an existing user's record (its username stays: `Conflict` if it differs).
    async fn update_user(&self, record: UserRecord) -> Result<()>;
    async fn user(&self, id: UserId) -> Result<Option<UserRecord>>;
    async fn user_by_username(&self, username: &str) -> Result<Option<UserRecord>>;
    /// Tokens are stored by their SHA-256, never in the clear.
    async fn put_token(&self, token: &str, user: UserId) -> Result<()>;
    async fn token_user(&self, token: &str) -> Result<Option<UserId>>;

    /// The guild, its owner's membership and its first channels, atomically.
    async fn create_guild(&self, guild: Guild, owner: Member, channels: Vec<Channel>) -> Result<()>;
    async fn guild(&self, id: GuildId) -> Result<Option<Guild>>;
    async fn guild_channels(&self, guild: GuildId) -> Result<Vec<Channel>>;
    /// Members ordered by user id, after `after`, at most `limit`.
    async fn members(&self, guild: GuildId, after: Option<UserId>, limit: usize) -> Result<Vec<Member>>;
    async fn member(&self, guild: GuildId, user: UserId) -> Result<Option<Member>>;
    async fn user_guilds(&self, user: UserId) -> Result<Vec<GuildId>>;
    async fn channel(&self, id: ChannelId) -> Result<Option<Channel>>;

    /// A guild actor's (or a DM's) write. `EditMessage` and `DeleteMessage` answer
    /// `NotFound` when the message does not exist; `AddMember` is idempotent.
    async fn apply(&self, write: GuildWrite) -> Result<()>;

    /// Applies writes in order and answers each. Used by guild actors to pipeline their
    /// writes while keeping them ordered; a backend may commit them together.
    async fn apply_batch(&self, writes: Vec<GuildWrite>) -> Vec<Result<()>> {
        self.apply_logged_batch(writes, Vec::new()).await.writes
    }

    /// [`Storage::apply_batch`] with the event log's entries that describe the writes (the
    /// outbox of `guildhall_core::stream`: all of one log, in `seq` order), stored with them.
    /// The entries are stored whatever becomes of their own writes, and no write is
    /// attempted unless they were: on the embedded store in one transaction; on a CQL store
    /// the entries first. `LoggedBatch::log` says whether they were stored (an error: not
    /// known to be). The log's head becomes the last entry's `seq`.
    async fn apply_logged_batch(&self, writes: Vec<GuildWrite>, log: Vec<LogEntry>) -> LoggedBatch;

    /// The highest `seq` ever stored in the log (0: none), even once its entries are gone.
    async fn log_head(&self, key: LogKey) -> Result<u64>;
    /// The log's stored entries with `seq` after `after`, in `seq` order, at most `limit`.
    async fn log_entries(&self, key: LogKey, after: u64, limit: usize) -> Result<Vec<LogEntry>>;
    /// The stream has every entry of the log up to `upto`: they are deleted here. A log left
    /// with none is no longer pending. `at_unix_ms` is now: a CQL store deletes the pending
    /// mark as of a second before it, so that a mark a new batch writes meanwhile survives
    /// (one written in that second survives too; a later call clears it).
    async fn log_relayed(&self, key: LogKey, upto: u64, at_unix_ms: u64) -> Result<()>;
    /// Logs that hold entries (the stream may miss them), at most `limit`, in no set order.
    async fn logs_pending(&self, limit: usize) -> Result<Vec<LogKey>>;

    /// A guild's bans in user id order, users after `after`, at most `limit`.
    async fn bans(&self, guild: GuildId, after: Option<UserId>, limit: usize) -> Result<Vec<Ban>>;

    /// Creates the invite if its code is free: `Conflict` (and nothing written) if another
    /// invite has it, so a colliding code never replaces another guild's invite.
    async fn create_invite(&self, invite: Invite) -> Result<()>;
    async fn invite(&self, code: &str) -> Result<Option<Invite>>;
    /// Counts one use of the invite if it is usable at `now_unix_ms` (not expired, uses
    /// left), atomically: two joins never both take its last use. The invite as used, or
    /// `None` if it is unknown, expired or used up.
    async fn use_invite(&self, code: &str, now_unix_ms: u64) -> Result<Option<Invite>>;
    /// Leases node id `node` (its snowflake datacenter and worker) to `holder` for `ttl_ms`:
    /// taken if free, renewed if `holder` has it; false if another holder does. Two hosts
    /// on one store issuing ids as the same node would issue the same ids.
    async fn lease_node_id(&self, node: u16, holder: &str, ttl_ms: u64) -> Result<bool>;
    /// Revokes the invite: the one removed, if there was one.
    async fn delete_invite(&self, code: &str) -> Result<Option<Invite>>;
    /// A guild's invites in code order, at most `limit`, usable or not (expired and used-up
    /// ones stay until they are deleted; a backend may drop expired ones by itself).
    async fn guild_invites(&self, guild: GuildId, limit: usize) -> Result<Vec<Invite>>;

    /// The DM channel between two users, created with `new_id` if there is none yet.
    /// Concurrent calls for the same pair return the same channel.
    async fn get_or_create_dm(&self, a: User, b: User, new_id: ChannelId) -> Result<Channel>;
    async fn user_dms(&self, user: UserId) -> Result<Vec<Channel>>;

    /// Installs or updates a plugin record (keyed by guild and plugin id).
    async fn put_plugin(&self, plugin: PluginRecord) -> Result<()>;
    /// Removes the plugin with its key-value store and its timers. `NotFound` if there is
    /// no such plugin in the guild.
    async fn delete_plugin(&self, guild: GuildId, plugin: Snowflake) -> Result<()>;
    /// The guild's plugins in installation order.
    async fn guild_plugins(&self, guild: GuildId) -> Result<Vec<PluginRecord>>;
    /// Stores component bytes under their SHA-256 (idempotent), as stored at
    /// `at_unix_ms` (the caller's clock). Storing them again makes them just stored, which
    /// spares them from collection (below) for its grace time.
    async fn put_component(&self, sha256: &str, bytes: Vec<u8>, at_unix_ms: u64) -> Result<()>;
    async fn component(&self, sha256: &str) -> Result<Option<Vec<u8>>>;
    /// Deletes the components that no plugin uses and that were last stored before
    /// `stored_before_unix_ms`: the SHA-256 of each one deleted. One stored again while
    /// this runs is not deleted. The caller's grace time (now minus the cutoff) must be
    /// longer than an upload takes from storing its component to storing its plugin.
    async fn collect_components(&self, stored_before_unix_ms: u64) -> Result<Vec<String>>;

    /// A plugin's key-value store in one guild (the host enforces the quotas).
    async fn kv_get(&self, plugin: Snowflake, guild: GuildId, key: &str) -> Result<Option<Vec<u8>>>;
    async fn kv_put(&self, plugin: Snowflake, guild: GuildId, key: &str, value: Vec<u8>) -> Result<()>;
    async fn kv_delete(&self, plugin: Snowflake, guild: GuildId, key: &str) -> Result<()>;
    /// Keys with `prefix`, in order, at most `limit`, with their value sizes.
    async fn kv_keys(
        &self,
        plugin: Snowflake,
        guild: GuildId,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, usize)>>;

    /// Who reacted to a message with `emoji` (its name), in user id order, ids after
    /// `after`, at most `limit`.
    async fn reaction_users(
        &self,
        channel: ChannelId,
        message: MessageId,
        emoji: &str,
        after: Option<UserId>,
        limit: usize,
    ) -> Result<Vec<UserId>>;
    /// Whether `user` reacted to the message with `emoji`.
    async fn has_reacted(&self, channel: ChannelId, message: MessageId, emoji: &str, user: UserId) -> Result<bool> {
        let before = Some(Snowflake(user.0.saturating_sub(1)));
        Ok(self.reaction_users(channel, message, emoji, before, 1).await?.first() == Some(&user))
    }
    /// Per emoji, how many users reacted to a message and whether `viewer` did, in emoji
    /// order; counts stop at [`MAX_COUNTED_REACTIONS`] rows.
    async fn reactions(&self, channel: ChannelId, message: MessageId, viewer: UserId) -> Result<Vec<Reaction>>;

    /// A bot's pending timers in one guild: set (or replace by id), cancel, list.
    async fn put_timer(&self, plugin: Snowflake, guild: GuildId, timer: PluginTimer) -> Result<()>;
    async fn delete_timer(&self, plugin: Snowflake, guild: GuildId, id: u64) -> Result<()>;
    async fn timers(&self, plugin: Snowflake, guild: GuildId) -> Result<Vec<PluginTimer>>;

    /// Appends to a guild's audit log.
    async fn add_audit_entry(&self, entry: AuditLogEntry) -> Result<()>;
    /// A guild's audit log, newest first, ids strictly below `before`, at most `limit`;
    /// entries older than `AUDIT_LOG_RETENTION_DAYS` at `at_unix_ms` (the caller's clock)
    /// are never returned.
    async fn audit_log(
        &self,
        guild: GuildId,
        before: Option<Snowflake>,
        limit: usize,
        at_unix_ms: u64,
    ) -> Result<Vec<AuditLogEntry>>;

    async fn message(&self, channel: ChannelId, id: MessageId) -> Result<Option<Message>>;
    /// One partition `(channel, bucket)`: ids strictly within `bounds`, in `order`, at most `limit`.
    async fn messages_in_bucket(
        &self,
        channel: ChannelId,
        bucket: u32,
        bounds: IdBounds,
        order: Order,
        limit: usize,
    ) -> Result<Vec<Message>>;

    /// Make everything acknowledged so far durable and stop accepting writes cleanly.
    async fn flush(&self) -> Result<()>;
}

/// What [`Storage::apply_logged_batch`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedBatch {
    /// Whether the log entries were stored (an error: not known to be).
    pub log: Result<()>,
    /// Each write's result, in order.
    pub writes: Vec<Result<()>>,
}

impl LoggedBatch {
    /// Nothing was stored, or not known to be: every write fails with `error`.
    pub fn failed(error: StoreError, writes: usize) -> LoggedBatch {
        LoggedBatch { log: Err(error.clone()), writes: vec![Err(error); writes] }
    }
}

/// Checks what [`Storage::apply_logged_batch`] requires of its entries: one log, `seq`
/// increasing. A violation is a bug of the caller.
pub fn assert_one_log_in_order(log: &[LogEntry]) {
    for pair in log.windows(2) {
        assert_eq!(pair[0].key, pair[1].key, "a batch's log entries belong to one log");
        assert!(pair[0].seq < pair[1].seq, "a batch's log entries are in seq order");
    }
}

/// How tokens are keyed in storage: their SHA-256 (hex), never the token itself.
pub fn token_key(token: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
