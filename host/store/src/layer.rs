//! Wrappers that see every call to a backend: [`Deadline`], which the host puts around
//! every backend so that no storage call can hang a caller forever, and (feature `faults`,
//! for tests) [`faults::Faults`], which injects errors, latency and hangs at the seam.
//!
//! A [`Layer`] says what to do around one call; [`Layered`] applies it to every method of
//! [`Storage`], so a new method cannot be forgotten by one wrapper and not the other.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use guildhall_core::guild::GuildWrite;
use guildhall_core::model::{
    AuditLogEntry, Ban, Channel, ChannelId, Guild, GuildId, Invite, Member, Message, MessageId, PluginRecord,
    PluginTimer, Reaction, User, UserId, UserRecord,
};
use guildhall_core::stream::{LogEntry, LogKey};
use guildhall_core::Snowflake;

use crate::{IdBounds, LoggedBatch, Order, Result, Storage, StoreError};

/// Whether a call changes what is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// One call through a layer: the [`Storage`] method's name and its access.
#[derive(Debug, Clone, Copy)]
pub struct Call {
    pub name: &'static str,
    pub access: Access,
}

/// What a wrapper does around each call to the backend it wraps.
#[async_trait]
pub trait Layer: Send + Sync + 'static {
    async fn around<T: Send, F: Future<Output = Result<T>> + Send>(&self, call: Call, inner: F) -> Result<T>;
}

/// A backend with `L` around every call.
pub struct Layered<L> {
    inner: Arc<dyn Storage>,
    layer: Arc<L>,
}

impl<L: Layer> Layered<L> {
    pub fn new(inner: Arc<dyn Storage>, layer: Arc<L>) -> Layered<L> {
        Layered { inner, layer }
    }
}

/// A deadline on every storage call: past it the call fails as `Unavailable` and the
/// caller (a guild actor, a request) moves on. A write that timed out may still land
/// later (the backend may have it already); callers treat it as not acknowledged, and a
/// message's nonce makes the client's retry safe.
pub struct Deadline {
    limit: Duration,
    timeouts: AtomicU64,
}

impl Deadline {
    pub fn new(limit: Duration) -> Deadline {
        assert!(!limit.is_zero(), "a zero deadline would fail every storage call");
        Deadline { limit, timeouts: AtomicU64::new(0) }
    }

    /// Calls that ran out of time so far.
    pub fn timeouts(&self) -> u64 {
        self.timeouts.load(Relaxed)
    }
}

#[async_trait]
impl Layer for Deadline {
    async fn around<T: Send, F: Future<Output = Result<T>> + Send>(&self, call: Call, inner: F) -> Result<T> {
        match tokio::time::timeout(self.limit, inner).await {
            Ok(result) => result,
            Err(_) => {
                self.timeouts.fetch_add(1, Relaxed);
                tracing::warn!(call = call.name, limit_ms = self.limit.as_millis() as u64, "storage call timed out");
                Err(StoreError::Unavailable(format!("{} took longer than {} ms", call.name, self.limit.as_millis())))
            }
        }
    }
}

#[cfg(feature = "faults")]
pub mod faults {
    //! Faults injected at the storage seam, switched while the host runs: every call of
    //! the chosen access fails, waits first, or never returns.

    use std::sync::Mutex;

    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Fault {
        /// The call fails at once as `Unavailable`; the backend never sees it.
        Fail,
        /// The call waits this long, then goes to the backend.
        Delay(Duration),
        /// The call never returns (only a deadline above ends it); the backend never sees it.
        Hang,
    }

    /// The fault plan, shared by the test and the layer.
    #[derive(Default)]
    pub struct Faults {
        plan: Mutex<Option<(Fault, Option<Access>)>>,
        injected: AtomicU64,
    }

    impl Faults {
        /// From now on, `fault` hits every call of `only` (every call for `None`).
        pub fn inject(&self, fault: Fault, only: Option<Access>) {
            *self.plan.lock().expect("fault plan") = Some((fault, only));
        }

        pub fn clear(&self) {
            *self.plan.lock().expect("fault plan") = None;
        }

        /// Calls a fault hit so far.
        pub fn injected(&self) -> u64 {
            self.injected.load(Relaxed)
        }
    }

    #[async_trait]
    impl Layer for Faults {
        async fn around<T: Send, F: Future<Output = Result<T>> + Send>(&self, call: Call, inner: F) -> Result<T> {
            let plan = *self.plan.lock().expect("fault plan");
            let fault = match plan {
                Some((fault, only)) if only.is_none_or(|access| access == call.access) => fault,
                _ => return inner.await,
            };
            self.injected.fetch_add(1, Relaxed);
            match fault {
                Fault::Fail => Err(StoreError::Unavailable(format!("injected fault in {}", call.name))),
                Fault::Delay(delay) => {
                    tokio::time::sleep(delay).await;
                    inner.await
                }
                Fault::Hang => std::future::pending().await,
            }
        }
    }
}

const fn read(name: &'static str) -> Call {
    Call { name, access: Access::Read }
}

const fn write(name: &'static str) -> Call {
    Call { name, access: Access::Write }
}

#[async_trait]
impl<L: Layer> Storage for Layered<L> {
    async fn create_user(&self, record: UserRecord) -> Result<()> {
        self.layer.around(write("create_user"), self.inner.create_user(record)).await
    }
    async fn update_user(&self, record: UserRecord) -> Result<()> {
        self.layer.around(write("update_user"), self.inner.update_user(record)).await
    }
    async fn user(&self, id: UserId) -> Result<Option<UserRecord>> {
        self.layer.around(read("user"), self.inner.user(id)).await
    }
    async fn user_by_username(&self, username: &str) -> Result<Option<UserRecord>> {
        self.layer.around(read("user_by_username"), self.inner.user_by_username(username)).await
    }
    async fn put_token(&self, token: &str, user: UserId) -> Result<()> {
        self.layer.around(write("put_token"), self.inner.put_token(token, user)).await
    }
    async fn token_user(&self, token: &str) -> Result<Option<UserId>> {
        self.layer.around(read("token_user"), self.inner.token_user(token)).await
    }
    async fn create_guild(&self, guild: Guild, owner: Member, channels: Vec<Channel>) -> Result<()> {
        self.layer.around(write("create_guild"), self.inner.create_guild(guild, owner, channels)).await
    }
    async fn guild(&self, id: GuildId) -> Result<Option<Guild>> {
        self.layer.around(read("guild"), self.inner.guild(id)).await
    }
    async fn guild_channels(&self, guild: GuildId) -> Result<Vec<Channel>> {
        self.layer.around(read("guild_channels"), self.inner.guild_channels(guild)).await
    }
    async fn members(&self, guild: GuildId, after: Option<UserId>, limit: usize) -> Result<Vec<Member>> {
        self.layer.around(read("members"), self.inner.members(guild, after, limit)).await
    }
    async fn member(&self, guild: GuildId, user: UserId) -> Result<Option<Member>> {
        self.layer.around(read("member"), self.inner.member(guild, user)).await
    }
    async fn user_guilds(&self, user: UserId) -> Result<Vec<GuildId>> {
        self.layer.around(read("user_guilds"), self.inner.user_guilds(user)).await
    }
    async fn channel(&self, id: ChannelId) -> Result<Option<Channel>> {
        self.layer.around(read("channel"), self.inner.channel(id)).await
    }
    async fn apply(&self, write_: GuildWrite) -> Result<()> {
        self.layer.around(write("apply"), self.inner.apply(write_)).await
    }
    async fn apply_logged_batch(&self, writes: Vec<GuildWrite>, log: Vec<LogEntry>) -> LoggedBatch {
        let n = writes.len();
        let batch = async { Ok(self.inner.apply_logged_batch(writes, log).await) };
        match self.layer.around(write("apply_batch"), batch).await {
            Ok(done) => done,
            Err(e) => LoggedBatch::failed(e, n),
        }
    }
    async fn log_head(&self, key: LogKey) -> Result<u64> {
        self.layer.around(read("log_head"), self.inner.log_head(key)).await
    }
    async fn log_entries(&self, key: LogKey, after: u64, limit: usize) -> Result<Vec<LogEntry>> {
        self.layer.around(read("log_entries"), self.inner.log_entries(key, after, limit)).await
    }
    async fn log_relayed(&self, key: LogKey, upto: u64, at_unix_ms: u64) -> Result<()> {
        self.layer.around(write("log_relayed"), self.inner.log_relayed(key, upto, at_unix_ms)).await
    }
    async fn logs_pending(&self, limit: usize) -> Result<Vec<LogKey>> {
        self.layer.around(read("logs_pending"), self.inner.logs_pending(limit)).await
    }
    async fn bans(&self, guild: GuildId, after: Option<UserId>, limit: usize) -> Result<Vec<Ban>> {
        self.layer.around(read("bans"), self.inner.bans(guild, after, limit)).await
    }
    async fn create_invite(&self, invite: Invite) -> Result<()> {
        self.layer.around(write("create_invite"), self.inner.create_invite(invite)).await
    }
    async fn invite(&self, code: &str) -> Result<Option<Invite>> {
        self.layer.around(read("invite"), self.inner.invite(code)).await
    }
    async fn use_invite(&self, code: &str, now_unix_ms: u64) -> Result<Option<Invite>> {
        self.layer.around(write("use_invite"), self.inner.use_invite(code, now_unix_ms)).await
    }
    async fn lease_node_id(&self, node: u16, holder: &str, ttl_ms: u64) -> Result<bool> {
        self.layer.around(write("lease_node_id"), self.inner.lease_node_id(node, holder, ttl_ms)).await
    }
    async fn delete_invite(&self, code: &str) -> Result<Option<Invite>> {
        self.layer.around(write("delete_invite"), self.inner.delete_invite(code)).await
    }
    async fn guild_invites(&self, guild: GuildId, limit: usize) -> Result<Vec<Invite>> {
        self.layer.around(read("guild_invites"), self.inner.guild_invites(guild, limit)).await
    }
    async fn get_or_create_dm(&self, a: User, b: User, new_id: ChannelId) -> Result<Channel> {
        self.layer.around(write("get_or_create_dm"), self.inner.get_or_create_dm(a, b, new_id)).await
    }
    async fn user_dms(&self, user: UserId) -> Result<Vec<Channel>> {
        self.layer.around(read("user_dms"), self.inner.user_dms(user)).await
    }
    async fn put_plugin(&self, plugin: PluginRecord) -> Result<()> {
        self.layer.around(write("put_plugin"), self.inner.put_plugin(plugin)).await
    }
    async fn delete_plugin(&self, guild: GuildId, plugin: Snowflake) -> Result<()> {
        self.layer.around(write("delete_plugin"), self.inner.delete_plugin(guild, plugin)).await
    }
    async fn guild_plugins(&self, guild: GuildId) -> Result<Vec<PluginRecord>> {
        self.layer.around(read("guild_plugins"), self.inner.guild_plugins(guild)).await
    }
    async fn put_component(&self, sha256: &str, bytes: Vec<u8>, at_unix_ms: u64) -> Result<()> {
        self.layer.around(write("put_component"), self.inner.put_component(sha256, bytes, at_unix_ms)).await
    }
    async fn collect_components(&self, stored_before_unix_ms: u64) -> Result<Vec<String>> {
        self.layer.around(write("collect_components"), self.inner.collect_components(stored_before_unix_ms)).await
    }
    async fn component(&self, sha256: &str) -> Result<Option<Vec<u8>>> {
        self.layer.around(read("component"), self.inner.component(sha256)).await
    }
    async fn kv_get(&self, plugin: Snowflake, guild: GuildId, key: &str) -> Result<Option<Vec<u8>>> {
        self.layer.around(read("kv_get"), self.inner.kv_get(plugin, guild, key)).await
    }
    async fn kv_put(&self, plugin: Snowflake, guild: GuildId, key: &str, value: Vec<u8>) -> Result<()> {
        self.layer.around(write("kv_put"), self.inner.kv_put(plugin, guild, key, value)).await
    }
    async fn kv_delete(&self, plugin: Snowflake, guild: GuildId, key: &str) -> Result<()> {
        self.layer.around(write("kv_delete"), self.inner.kv_delete(plugin, guild, key)).await
    }
    async fn kv_keys(
        &self,
        plugin: Snowflake,
        guild: GuildId,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, usize)>> {
        self.layer.around(read("kv_keys"), self.inner.kv_keys(plugin, guild, prefix, limit)).await
    }
    async fn reaction_users(
        &self,
        channel: ChannelId,
        message: MessageId,
        emoji: &str,
        after: Option<UserId>,
        limit: usize,
    ) -> Result<Vec<UserId>> {
        let inner = self.inner.reaction_users(channel, message, emoji, after, limit);
        self.layer.around(read("reaction_users"), inner).await
    }
    async fn has_reacted(&self, channel: ChannelId, message: MessageId, emoji: &str, user: UserId) -> Result<bool> {
        self.layer.around(read("has_reacted"), self.inner.has_reacted(channel, message, emoji, user)).await
    }
    async fn reactions(&self, channel: ChannelId, message: MessageId, viewer: UserId) -> Result<Vec<Reaction>> {
        self.layer.around(read("reactions"), self.inner.reactions(channel, message, viewer)).await
    }
    async fn put_timer(&self, plugin: Snowflake, guild: GuildId, timer: PluginTimer) -> Result<()> {
        self.layer.around(write("put_timer"), self.inner.put_timer(plugin, guild, timer)).await
    }
    async fn delete_timer(&self, plugin: Snowflake, guild: GuildId, id: u64) -> Result<()> {
        self.layer.around(write("delete_timer"), self.inner.delete_timer(plugin, guild, id)).await
    }
    async fn timers(&self, plugin: Snowflake, guild: GuildId) -> Result<Vec<PluginTimer>> {
        self.layer.around(read("timers"), self.inner.timers(plugin, guild)).await
    }
    async fn add_audit_entry(&self, entry: AuditLogEntry) -> Result<()> {
        self.layer.around(write("add_audit_entry"), self.inner.add_audit_entry(entry)).await
    }
    async fn audit_log(
        &self,
        guild: GuildId,
        before: Option<Snowflake>,
        limit: usize,
        at_unix_ms: u64,
    ) -> Result<Vec<AuditLogEntry>> {
        self.layer.around(read("audit_log"), self.inner.audit_log(guild, before, limit, at_unix_ms)).await
    }
    async fn message(&self, channel: ChannelId, id: MessageId) -> Result<Option<Message>> {
        self.layer.around(read("message"), self.inner.message(channel, id)).await
    }
    async fn messages_in_bucket(
        &self,
        channel: ChannelId,
        bucket: u32,
        bounds: IdBounds,
        order: Order,
        limit: usize,
    ) -> Result<Vec<Message>> {
        let inner = self.inner.messages_in_bucket(channel, bucket, bounds, order, limit);
        self.layer.around(read("messages_in_bucket"), inner).await
    }
    async fn flush(&self) -> Result<()> {
        self.layer.around(write("flush"), self.inner.flush()).await
    }
}
