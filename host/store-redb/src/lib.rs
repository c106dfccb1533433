//! The embedded backend: one redb file, no other service.
//!
//! Writes go through a single writer thread that does *group commit*: it takes every write
//! waiting in its queue (up to [`MAX_BATCH`]), applies them in arrival order in one write
//! transaction, commits it with `Durability::Immediate` (an fsync), and only then answers
//! each caller. So an acknowledged write survives `kill -9`, and N concurrent writers share
//! one fsync. Reads run on tokio's blocking pool in their own read transactions (MVCC: they
//! never wait for the writer).
//!
//! Opened with [`EmbeddedStore::open_streaming`], the store is also the host's stream of
//! message events: a batch's log entries go straight into the stream's tables
//! (`guildhall_stream::EmbeddedLog::within`) in the batch's own transaction, the entries of
//! writes it refused as `Void`. Nothing waits in the outbox then, and nothing is relayed.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use guildhall_core::guild::GuildWrite;
use guildhall_core::model::{
    AuditLogEntry, Ban, Channel, ChannelId, Guild, GuildId, Invite, Member, Message, MessageId, PluginRecord,
    PluginTimer, Reaction, User, UserId, UserRecord,
};
use guildhall_core::stream::{LogEntry, LogKey, StreamEvent};
use guildhall_core::Snowflake;
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use guildhall_stream::EmbeddedLog;

use guildhall_store::{audit_log_cutoff, token_key, IdBounds, LoggedBatch, Order, Result, Storage, StoreError};

/// Most writes committed by one transaction (one fsync).
pub const MAX_BATCH: usize = 512;
/// Writes that may wait for the writer before callers are pushed back.
pub const WRITE_QUEUE: usize = 8_192;

const USERS: TableDefinition<u64, &[u8]> = TableDefinition::new("users");
const USERNAMES: TableDefinition<&str, u64> = TableDefinition::new("usernames");
const TOKENS: TableDefinition<&str, u64> = TableDefinition::new("token_sha256");
const GUILDS: TableDefinition<u64, &[u8]> = TableDefinition::new("guilds");
const CHANNELS: TableDefinition<u64, &[u8]> = TableDefinition::new("channels");
const GUILD_CHANNELS: TableDefinition<(u64, u64), ()> = TableDefinition::new("guild_channels");
const MEMBERS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("members");
const USER_GUILDS: TableDefinition<(u64, u64), ()> = TableDefinition::new("user_guilds");
const INVITES: TableDefinition<&str, &[u8]> = TableDefinition::new("invites");
/// Every invite's code under its guild: (guild, code).
const GUILD_INVITES: TableDefinition<(u64, &str), ()> = TableDefinition::new("guild_invites");
const DM_PAIRS: TableDefinition<(u64, u64), u64> = TableDefinition::new("dm_pairs");
const USER_DMS: TableDefinition<(u64, u64), ()> = TableDefinition::new("user_dms");
const PLUGINS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("plugins");
/// Plugin key-value stores: (plugin, guild, key) -> value.
const PLUGIN_KV: TableDefinition<(u64, u64, &str), &[u8]> = TableDefinition::new("plugin_kv");
/// Bots' pending timers: (plugin, guild, timer id) -> PluginTimer.
const PLUGIN_TIMERS: TableDefinition<(u64, u64, u64), &[u8]> = TableDefinition::new("plugin_timers");
/// Reactions: (channel, message, emoji name, user).
const REACTIONS: TableDefinition<(u64, u64, &str, u64), ()> = TableDefinition::new("reactions");
/// Audit logs: (guild, entry id) -> AuditLogEntry.
const AUDIT_LOG: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("audit_log");
/// (guild, user) -> the ban.
const BANS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("bans");
/// Component bytes by SHA-256 (shared by every guild that installs the same component).
const COMPONENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("components");
/// When each component was last stored (unix ms); one without a row counts as stored at 0.
const COMPONENTS_STORED: TableDefinition<&str, u64> = TableDefinition::new("components_stored");
/// The message event log's outbox: (log id, seq) -> LogEntry (`guildhall_core::stream`).
const EVENT_LOG: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("event_log");
/// Each log's highest seq ever stored.
const EVENT_LOG_HEADS: TableDefinition<u64, u64> = TableDefinition::new("event_log_heads");
/// Logs that hold entries: log id -> its kind (`LogKey::kind`).
const EVENT_LOG_PENDING: TableDefinition<u64, u8> = TableDefinition::new("event_log_pending");
/// The seed's messages table: key (channel_id, bucket, message_id).
const MESSAGES: TableDefinition<(u64, u32, u64), &[u8]> = TableDefinition::new("messages");

enum Write {
    CreateUser(UserRecord),
    UpdateUser(UserRecord),
    PutToken(String, UserId),
    CreateGuild(Guild, Member, Vec<Channel>),
    Apply(GuildWrite),
    /// Writes and the log entries that describe them (stored first, in the same transaction).
    ApplyBatch(Vec<GuildWrite>, Vec<LogEntry>),
    /// The stream has a log's entries up to the seq: they go.
    LogRelayed(LogKey, u64),
    CreateInvite(Invite),
    UseInvite(String, u64),
    DeleteInvite(String),
    GetOrCreateDm(User, User, ChannelId),
    PutPlugin(PluginRecord),
    DeletePlugin(GuildId, Snowflake),
    /// A component's SHA-256, its bytes and the time they are stored.
    PutComponent(String, Vec<u8>, u64),
    /// Deletes the components no plugin uses that were last stored before the time.
    CollectComponents(u64),
    KvPut(Snowflake, GuildId, String, Vec<u8>),
    KvDelete(Snowflake, GuildId, String),
    PutTimer(Snowflake, GuildId, PluginTimer),
    DeleteTimer(Snowflake, GuildId, u64),
    AddAuditEntry(AuditLogEntry),
    /// Answered once everything queued before it is committed.
    Barrier,
}

enum Written {
    Done,
    Invite(Option<Invite>),
    Channel(Channel),
    Batch(Vec<Result<()>>),
    Collected(Vec<String>),
}

type Job = (Write, oneshot::Sender<Result<Written>>);

pub struct EmbeddedStore {
    db: Arc<Database>,
    writes: mpsc::Sender<Job>,
    writer: std::thread::JoinHandle<()>,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("model types serialize")
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl EmbeddedStore {
    /// Opens (or creates) `dir/guildhall.redb` and starts the writer thread. Log entries wait
    /// in the outbox for a relay.
    pub fn open(dir: &Path) -> Result<EmbeddedStore> {
        EmbeddedStore::start(dir, None).map(|(store, _)| store)
    }

    /// Opens the store as the host's stream of message events too (see the module's
    /// comment); the stream keeps at most `max_entries` its consumers have not acknowledged.
    /// Entries an outbox still holds (the store was opened without the stream before) move
    /// into the stream.
    pub fn open_streaming(dir: &Path, max_entries: u64) -> Result<(EmbeddedStore, EmbeddedLog)> {
        EmbeddedStore::start(dir, Some(max_entries)).map(|(store, log)| (store, log.expect("asked for")))
    }

    fn start(dir: &Path, stream_entries: Option<u64>) -> Result<(EmbeddedStore, Option<EmbeddedLog>)> {
        std::fs::create_dir_all(dir).map_err(unavailable)?;
        let db = Database::create(dir.join("guildhall.redb")).map_err(unavailable)?;
        // Create every table up front so read transactions never find one missing.
        let tx = db.begin_write().map_err(unavailable)?;
        {
            tx.open_table(USERS).map_err(unavailable)?;
            tx.open_table(USERNAMES).map_err(unavailable)?;
            tx.open_table(TOKENS).map_err(unavailable)?;
            tx.open_table(GUILDS).map_err(unavailable)?;
            tx.open_table(CHANNELS).map_err(unavailable)?;
            tx.open_table(GUILD_CHANNELS).map_err(unavailable)?;
            tx.open_table(MEMBERS).map_err(unavailable)?;
            tx.open_table(USER_GUILDS).map_err(unavailable)?;
            tx.open_table(INVITES).map_err(unavailable)?;
            index_invites(&tx)?;
            tx.open_table(DM_PAIRS).map_err(unavailable)?;
            tx.open_table(USER_DMS).map_err(unavailable)?;
            tx.open_table(MESSAGES).map_err(unavailable)?;
            tx.open_table(PLUGINS).map_err(unavailable)?;
            tx.open_table(COMPONENTS).map_err(unavailable)?;
            tx.open_table(COMPONENTS_STORED).map_err(unavailable)?;
            tx.open_table(PLUGIN_KV).map_err(unavailable)?;
            tx.open_table(PLUGIN_TIMERS).map_err(unavailable)?;
            tx.open_table(AUDIT_LOG).map_err(unavailable)?;
            tx.open_table(BANS).map_err(unavailable)?;
            tx.open_table(REACTIONS).map_err(unavailable)?;
            tx.open_table(EVENT_LOG).map_err(unavailable)?;
            tx.open_table(EVENT_LOG_HEADS).map_err(unavailable)?;
            tx.open_table(EVENT_LOG_PENDING).map_err(unavailable)?;
        }
        tx.commit().map_err(unavailable)?;
        let db = Arc::new(db);
        let stream = match stream_entries {
            Some(max_entries) => {
                let log = EmbeddedLog::within(db.clone(), max_entries).map_err(unavailable)?;
                outbox_into_stream(&db, &log)?;
                Some(log)
            }
            None => None,
        };
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let (writer_db, writer_stream) = (db.clone(), stream.clone());
        let writer = std::thread::Builder::new()
            .name("guildhall-store-writer".into())
            .spawn(move || writer_loop(&writer_db, rx, writer_stream.as_ref()))
            .map_err(unavailable)?;
        Ok((EmbeddedStore { db, writes: tx, writer }, stream))
    }

    /// Closes the store: waits until everything queued is committed and the file is
    /// released, so that another process can open it at once (a tool that fills a data
    /// directory before it starts a host on it). A stream opened with it keeps the file
    /// open while it lives.
    pub fn close(self) {
        let EmbeddedStore { db, writes, writer } = self;
        drop((db, writes));
        let _ = writer.join(); // the writer ends when its queue closes; a panic already was reported
    }

    async fn write(&self, write: Write) -> Result<Written> {
        let (tx, rx) = oneshot::channel();
        self.writes.send((write, tx)).await.map_err(|_| unavailable("store writer stopped"))?;
        rx.await.map_err(|_| unavailable("store writer stopped"))?
    }

    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&redb::ReadTransaction) -> Result<T> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let tx = db.begin_read().map_err(unavailable)?;
            f(&tx)
        })
        .await
        .map_err(unavailable)?
    }
}

/// Moves what the outbox holds into the stream, log by log in `seq` order (once, at open).
fn outbox_into_stream(db: &Database, log: &EmbeddedLog) -> Result<()> {
    let tx = db.begin_write().map_err(unavailable)?;
    {
        let mut outbox = tx.open_table(EVENT_LOG).map_err(unavailable)?;
        let mut entries = Vec::new();
        for row in outbox.iter().map_err(unavailable)? {
            entries.push(decode::<LogEntry>(row.map_err(unavailable)?.1.value())?);
        }
        for one_log in entries.chunk_by(|a, b| a.key == b.key) {
            log.append_in(&tx, one_log).map_err(unavailable)?;
        }
        outbox.retain(|_, _| false).map_err(unavailable)?;
        tx.open_table(EVENT_LOG_PENDING).map_err(unavailable)?.retain(|_, _| false).map_err(unavailable)?;
    }
    tx.commit().map_err(unavailable)
}

fn writer_loop(db: &Database, mut rx: mpsc::Receiver<Job>, stream: Option<&EmbeddedLog>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let outcome = commit_batch(db, &mut batch, stream);
        for ((_, reply), result) in batch.drain(..).zip(outcome) {
            let _ = reply.send(result);
        }
        if let Some(stream) = stream {
            stream.appended();
        }
    }
    tracing::debug!("store writer: queue closed, exiting");
}

/// Applies every job in one transaction; per-job rule violations (a taken username) fail
/// only that job, an IO failure fails them all (nothing was committed).
fn commit_batch(db: &Database, batch: &mut [Job], stream: Option<&EmbeddedLog>) -> Vec<Result<Written>> {
    let run = || -> Result<Vec<Result<Written>>> {
        let tx = db.begin_write().map_err(unavailable)?;
        let mut results = Vec::with_capacity(batch.len());
        for (write, _) in batch.iter() {
            results.push(apply_one(&tx, write, stream));
        }
        if results.iter().any(|r| matches!(r, Err(StoreError::Unavailable(_)))) {
            return Err(unavailable("write failed; batch aborted"));
        }
        tx.commit().map_err(unavailable)?;
        Ok(results)
    };
    match run() {
        Ok(results) => results,
        Err(e) => {
            tracing::error!(error = %e, jobs = batch.len(), "store commit failed");
            batch.iter().map(|_| Err(e.clone())).collect()
        }
    }
}

/// Moves a log's head (its highest seq ever stored) up to `last`'s.
fn raise_log_head(tx: &WriteTransaction, last: &LogEntry) -> Result<()> {
    let mut heads = tx.open_table(EVENT_LOG_HEADS).map_err(unavailable)?;
    let id = last.key.id().0;
    let head = heads.get(id).map_err(unavailable)?.map_or(0, |h| h.value());
    heads.insert(id, head.max(last.seq)).map_err(unavailable)?;
    Ok(())
}

/// Stores a batch's log entries and moves its log's head to the last.
fn append_log(tx: &WriteTransaction, log: &[LogEntry]) -> Result<()> {
    guildhall_store::assert_one_log_in_order(log);
    let Some(last) = log.last() else { return Ok(()) };
    let id = last.key.id().0;
    let mut entries = tx.open_table(EVENT_LOG).map_err(unavailable)?;
    for entry in log {
        entries.insert((id, entry.seq), encode(entry).as_slice()).map_err(unavailable)?;
    }
    raise_log_head(tx, last)?;
    tx.open_table(EVENT_LOG_PENDING).map_err(unavailable)?.insert(id, last.key.kind()).map_err(unavailable)?;
    Ok(())
}

/// A batch's entries into the stream, after its writes: an entry whose write was refused
/// goes as `Void` (its `seq` is taken; readers must not see a change that did not happen).
/// Entries belong, in order, to the writes that make an event (as `LogWriter::number` made
/// them).
fn append_to_stream(
    tx: &WriteTransaction,
    stream: &EmbeddedLog,
    writes: &[GuildWrite],
    results: &[Result<()>],
    log: &[LogEntry],
) -> Result<()> {
    guildhall_store::assert_one_log_in_order(log);
    let Some(last) = log.last() else { return Ok(()) };
    let outcomes: Vec<bool> =
        writes.iter().zip(results).filter(|(w, _)| StreamEvent::made_by(w)).map(|(_, r)| r.is_ok()).collect();
    assert_eq!(outcomes.len(), log.len(), "one entry per write that makes an event");
    let mut entries = log.to_vec();
    for (entry, written) in entries.iter_mut().zip(outcomes) {
        if !written {
            entry.event = StreamEvent::Void;
        }
    }
    stream.append_in(tx, &entries).map_err(unavailable)?;
    raise_log_head(tx, last)?;
    Ok(())
}

fn apply_one(tx: &WriteTransaction, write: &Write, stream: Option<&EmbeddedLog>) -> Result<Written> {
    match write {
        Write::CreateUser(record) => {
            // Created only if absent: a collided id never overwrites an account.
            if tx.open_table(USERS).map_err(unavailable)?.get(record.user.id.0).map_err(unavailable)?.is_some() {
                return Err(StoreError::Conflict(format!("user id {} is taken", record.user.id)));
            }
            let mut names = tx.open_table(USERNAMES).map_err(unavailable)?;
            let key = record.user.username.to_lowercase();
            if names.get(key.as_str()).map_err(unavailable)?.is_some() {
                return Err(StoreError::Conflict("Username is already taken".into()));
            }
            names.insert(key.as_str(), record.user.id.0).map_err(unavailable)?;
            tx.open_table(USERS)
                .map_err(unavailable)?
                .insert(record.user.id.0, encode(record).as_slice())
                .map_err(unavailable)?;
        }
        Write::UpdateUser(record) => {
            let mut users = tx.open_table(USERS).map_err(unavailable)?;
            let old: UserRecord = match users.get(record.user.id.0).map_err(unavailable)? {
                Some(v) => decode(v.value())?,
                None => return Err(StoreError::NotFound),
            };
            if !old.user.username.eq_ignore_ascii_case(&record.user.username) {
                return Err(StoreError::Conflict("a username does not change here".into()));
            }
            users.insert(record.user.id.0, encode(record).as_slice()).map_err(unavailable)?;
        }
        Write::PutToken(token, user) => {
            tx.open_table(TOKENS)
                .map_err(unavailable)?
                .insert(token_key(token).as_str(), user.0)
                .map_err(unavailable)?;
        }
        Write::CreateGuild(guild, owner, channels) => {
            // Only if absent: an id issued twice never replaces a guild.
            let mut guilds = tx.open_table(GUILDS).map_err(unavailable)?;
            if guilds.get(guild.id.0).map_err(unavailable)?.is_some() {
                return Err(StoreError::Conflict(format!("guild id {} is taken", guild.id)));
            }
            guilds.insert(guild.id.0, encode(guild).as_slice()).map_err(unavailable)?;
            drop(guilds);
            for c in channels {
                put_channel(tx, c)?;
            }
            put_member(tx, guild.id, owner)?;
        }
        Write::Apply(w) => apply_guild_write(tx, w)?,
        Write::ApplyBatch(writes, log) => {
            if stream.is_none() {
                append_log(tx, log)?;
            }
            let mut results = Vec::with_capacity(writes.len());
            for w in writes {
                match apply_guild_write(tx, w) {
                    Err(e @ StoreError::Unavailable(_)) => return Err(e),
                    r => results.push(r),
                }
            }
            if let Some(stream) = stream {
                append_to_stream(tx, stream, writes, &results, log)?;
            }
            return Ok(Written::Batch(results));
        }
        Write::LogRelayed(key, upto) => {
            let id = key.id().0;
            let mut entries = tx.open_table(EVENT_LOG).map_err(unavailable)?;
            entries.retain_in((id, 0)..=(id, *upto), |_, _| false).map_err(unavailable)?;
            let left = entries.range((id, 0)..=(id, u64::MAX)).map_err(unavailable)?.next().is_some();
            if !left {
                tx.open_table(EVENT_LOG_PENDING).map_err(unavailable)?.remove(id).map_err(unavailable)?;
            }
        }
        Write::CreateInvite(invite) => {
            let mut invites = tx.open_table(INVITES).map_err(unavailable)?;
            if invites.get(invite.code.as_str()).map_err(unavailable)?.is_some() {
                return Err(StoreError::Conflict("an invite has this code".into()));
            }
            invites.insert(invite.code.as_str(), encode(invite).as_slice()).map_err(unavailable)?;
            let key = (invite.guild_id.0, invite.code.as_str());
            tx.open_table(GUILD_INVITES).map_err(unavailable)?.insert(key, ()).map_err(unavailable)?;
        }
        Write::UseInvite(code, now_unix_ms) => return Ok(Written::Invite(use_invite(tx, code, *now_unix_ms, None)?)),
        Write::DeleteInvite(code) => {
            let mut invites = tx.open_table(INVITES).map_err(unavailable)?;
            let removed: Option<Invite> = match invites.remove(code.as_str()).map_err(unavailable)? {
                Some(bytes) => Some(decode(bytes.value())?),
                None => None,
            };
            if let Some(invite) = &removed {
                let key = (invite.guild_id.0, invite.code.as_str());
                tx.open_table(GUILD_INVITES).map_err(unavailable)?.remove(key).map_err(unavailable)?;
            }
            return Ok(Written::Invite(removed));
        }
        Write::GetOrCreateDm(a, b, new_id) => {
            let pair = (a.id.0.min(b.id.0), a.id.0.max(b.id.0));
            let mut pairs = tx.open_table(DM_PAIRS).map_err(unavailable)?;
            let existing = pairs.get(pair).map_err(unavailable)?.map(|v| v.value());
            if let Some(id) = existing {
                let channels = tx.open_table(CHANNELS).map_err(unavailable)?;
                let bytes = channels
                    .get(id)
                    .map_err(unavailable)?
                    .ok_or_else(|| StoreError::Corrupt("dm pair without channel".into()))?;
                return Ok(Written::Channel(decode(bytes.value())?));
            }
            let channel = Channel::dm(*new_id, a.clone(), b.clone());
            pairs.insert(pair, new_id.0).map_err(unavailable)?;
            tx.open_table(CHANNELS)
                .map_err(unavailable)?
                .insert(new_id.0, encode(&channel).as_slice())
                .map_err(unavailable)?;
            let mut user_dms = tx.open_table(USER_DMS).map_err(unavailable)?;
            user_dms.insert((a.id.0, new_id.0), ()).map_err(unavailable)?;
            user_dms.insert((b.id.0, new_id.0), ()).map_err(unavailable)?;
            return Ok(Written::Channel(channel));
        }
        Write::PutPlugin(p) => {
            let key = (p.guild_id.0, p.id.0);
            tx.open_table(PLUGINS).map_err(unavailable)?.insert(key, encode(p).as_slice()).map_err(unavailable)?;
        }
        Write::DeletePlugin(guild, id) => {
            if tx.open_table(PLUGINS).map_err(unavailable)?.remove((guild.0, id.0)).map_err(unavailable)?.is_none() {
                return Err(StoreError::NotFound);
            }
            // Its key-value store and timers go with it (plugin ids are never reused).
            let (p, g) = (id.0, guild.0);
            let mut kv = tx.open_table(PLUGIN_KV).map_err(unavailable)?;
            kv.retain_in((p, g, "")..=(p, g, "\u{10FFFF}"), |_, _| false).map_err(unavailable)?;
            let mut timers = tx.open_table(PLUGIN_TIMERS).map_err(unavailable)?;
            timers.retain_in((p, g, 0)..=(p, g, u64::MAX), |_, _| false).map_err(unavailable)?;
        }
        Write::PutComponent(hash, bytes, now_unix_ms) => {
            tx.open_table(COMPONENTS)
                .map_err(unavailable)?
                .insert(hash.as_str(), bytes.as_slice())
                .map_err(unavailable)?;
            tx.open_table(COMPONENTS_STORED)
                .map_err(unavailable)?
                .insert(hash.as_str(), *now_unix_ms)
                .map_err(unavailable)?;
        }
        // One transaction: no plugin or component changes while it looks and deletes.
        Write::CollectComponents(stored_before) => {
            let mut in_use = std::collections::HashSet::new();
            for row in tx.open_table(PLUGINS).map_err(unavailable)?.iter().map_err(unavailable)? {
                let record: PluginRecord = decode(row.map_err(unavailable)?.1.value())?;
                in_use.insert(record.component_sha256);
            }
            let mut components = tx.open_table(COMPONENTS).map_err(unavailable)?;
            let mut stored = tx.open_table(COMPONENTS_STORED).map_err(unavailable)?;
            let mut unused = Vec::new();
            for row in components.iter().map_err(unavailable)? {
                let hash = row.map_err(unavailable)?.0.value().to_owned();
                let stored_at = stored.get(hash.as_str()).map_err(unavailable)?.map_or(0, |t| t.value());
                if !in_use.contains(&hash) && stored_at < *stored_before {
                    unused.push(hash);
                }
            }
            for hash in &unused {
                components.remove(hash.as_str()).map_err(unavailable)?;
                stored.remove(hash.as_str()).map_err(unavailable)?;
            }
            return Ok(Written::Collected(unused));
        }
        Write::KvPut(plugin, guild, key, value) => {
            let mut t = tx.open_table(PLUGIN_KV).map_err(unavailable)?;
            t.insert((plugin.0, guild.0, key.as_str()), value.as_slice()).map_err(unavailable)?;
        }
        Write::KvDelete(plugin, guild, key) => {
            tx.open_table(PLUGIN_KV)
                .map_err(unavailable)?
                .remove((plugin.0, guild.0, key.as_str()))
                .map_err(unavailable)?;
        }
        Write::PutTimer(plugin, guild, timer) => {
            let mut t = tx.open_table(PLUGIN_TIMERS).map_err(unavailable)?;
            t.insert((plugin.0, guild.0, timer.id), encode(timer).as_slice()).map_err(unavailable)?;
        }
        Write::DeleteTimer(plugin, guild, id) => {
            tx.open_table(PLUGIN_TIMERS).map_err(unavailable)?.remove((plugin.0, guild.0, *id)).map_err(unavailable)?;
        }
        Write::AddAuditEntry(entry) => {
            let mut t = tx.open_table(AUDIT_LOG).map_err(unavailable)?;
            t.insert((entry.guild_id.0, entry.id.0), encode(entry).as_slice()).map_err(unavailable)?;
            // Retention: the guild's expired entries go when it writes a new one.
            let cutoff = audit_log_cutoff(entry.id.unix_ms()).0;
            let g = entry.guild_id.0;
            t.retain_in((g, 0)..(g, cutoff), |_, _| false).map_err(unavailable)?;
        }
        Write::Barrier => {}
    }
    Ok(Written::Done)
}

fn put_channel(tx: &WriteTransaction, c: &Channel) -> Result<()> {
    tx.open_table(CHANNELS).map_err(unavailable)?.insert(c.id.0, encode(c).as_slice()).map_err(unavailable)?;
    if let Some(g) = c.guild_id {
        tx.open_table(GUILD_CHANNELS).map_err(unavailable)?.insert((g.0, c.id.0), ()).map_err(unavailable)?;
    }
    Ok(())
}

/// Counts one use of the invite if it is usable at `now_unix_ms` (and, given `of_guild`,
/// an invite to that guild): the invite as used, or `None` (nothing written) if it is
/// unknown, expired, used up or another guild's.
fn use_invite(
    tx: &WriteTransaction,
    code: &str,
    now_unix_ms: u64,
    of_guild: Option<GuildId>,
) -> Result<Option<Invite>> {
    let mut invites = tx.open_table(INVITES).map_err(unavailable)?;
    let found: Option<Invite> = match invites.get(code).map_err(unavailable)? {
        Some(bytes) => Some(decode(bytes.value())?),
        None => None,
    };
    let usable = |i: &Invite| i.usable(now_unix_ms) && of_guild.is_none_or(|g| g == i.guild_id);
    let Some(mut invite) = found.filter(usable) else {
        return Ok(None);
    };
    invite.uses += 1;
    invites.insert(code, encode(&invite).as_slice()).map_err(unavailable)?;
    Ok(Some(invite))
}

fn put_member(tx: &WriteTransaction, guild: GuildId, m: &Member) -> Result<()> {
    tx.open_table(MEMBERS)
        .map_err(unavailable)?
        .insert((guild.0, m.user.id.0), encode(m).as_slice())
        .map_err(unavailable)?;
    tx.open_table(USER_GUILDS).map_err(unavailable)?.insert((m.user.id.0, guild.0), ()).map_err(unavailable)?;
    Ok(())
}

fn remove_member(tx: &WriteTransaction, guild: GuildId, user: UserId) -> Result<()> {
    tx.open_table(MEMBERS).map_err(unavailable)?.remove((guild.0, user.0)).map_err(unavailable)?;
    tx.open_table(USER_GUILDS).map_err(unavailable)?.remove((user.0, guild.0)).map_err(unavailable)?;
    Ok(())
}

fn message_key(channel: ChannelId, id: MessageId) -> (u64, u32, u64) {
    (channel.0, id.bucket(), id.0)
}

fn apply_guild_write(tx: &WriteTransaction, w: &GuildWrite) -> Result<()> {
    match w {
        GuildWrite::PutMessage(m) => {
            tx.open_table(MESSAGES)
                .map_err(unavailable)?
                .insert(message_key(m.channel_id, m.id), encode(m).as_slice())
                .map_err(unavailable)?;
        }
        GuildWrite::EditMessage(m) => {
            let mut t = tx.open_table(MESSAGES).map_err(unavailable)?;
            let key = message_key(m.channel_id, m.id);
            if t.get(key).map_err(unavailable)?.is_none() {
                return Err(StoreError::NotFound);
            }
            t.insert(key, encode(m).as_slice()).map_err(unavailable)?;
        }
        GuildWrite::DeleteMessage { channel_id, message_id } => {
            let mut t = tx.open_table(MESSAGES).map_err(unavailable)?;
            if t.remove(message_key(*channel_id, *message_id)).map_err(unavailable)?.is_none() {
                return Err(StoreError::NotFound);
            }
            let (c, m) = (channel_id.0, message_id.0);
            let mut reactions = tx.open_table(REACTIONS).map_err(unavailable)?;
            reactions.retain_in((c, m, "", 0)..=(c, m, "\u{10FFFF}", u64::MAX), |_, _| false).map_err(unavailable)?;
        }
        GuildWrite::AddReaction { channel_id, message_id, emoji, user_id } => {
            let key = (channel_id.0, message_id.0, emoji.name.as_str(), user_id.0);
            tx.open_table(REACTIONS).map_err(unavailable)?.insert(key, ()).map_err(unavailable)?;
        }
        GuildWrite::RemoveReaction { channel_id, message_id, emoji, user_id } => {
            let key = (channel_id.0, message_id.0, emoji.name.as_str(), user_id.0);
            tx.open_table(REACTIONS).map_err(unavailable)?.remove(key).map_err(unavailable)?;
        }
        GuildWrite::CreateChannel(c) | GuildWrite::UpdateChannel(c) => put_channel(tx, c)?,
        GuildWrite::UpdateGuild(g) => {
            let mut guilds = tx.open_table(GUILDS).map_err(unavailable)?;
            if guilds.get(g.id.0).map_err(unavailable)?.is_none() {
                return Err(StoreError::NotFound);
            }
            guilds.insert(g.id.0, encode(g).as_slice()).map_err(unavailable)?;
        }
        GuildWrite::AddMember { guild_id, member, invite } => {
            if let Some(invite) = invite {
                // In the same transaction: the join takes a use only if it is written.
                if use_invite(tx, &invite.code, invite.at_unix_ms, Some(*guild_id))?.is_none() {
                    return Err(StoreError::NotFound);
                }
            }
            put_member(tx, *guild_id, member)?
        }
        GuildWrite::UpdateMember { guild_id, member } => put_member(tx, *guild_id, member)?,
        GuildWrite::RemoveMember { guild_id, user_id } => remove_member(tx, *guild_id, *user_id)?,
        GuildWrite::Ban { guild_id, ban } => {
            remove_member(tx, *guild_id, ban.user.id)?;
            let key = (guild_id.0, ban.user.id.0);
            tx.open_table(BANS).map_err(unavailable)?.insert(key, encode(ban).as_slice()).map_err(unavailable)?;
        }
        GuildWrite::Unban { guild_id, user_id } => {
            tx.open_table(BANS).map_err(unavailable)?.remove((guild_id.0, user_id.0)).map_err(unavailable)?;
        }
    }
    Ok(())
}

/// Indexes invites made before the guild index existed (a store from an older version):
/// done once, when the index is empty and invites are not.
fn index_invites(tx: &WriteTransaction) -> Result<()> {
    let mut index = tx.open_table(GUILD_INVITES).map_err(unavailable)?;
    if !index.is_empty().map_err(unavailable)? {
        return Ok(());
    }
    let invites = tx.open_table(INVITES).map_err(unavailable)?;
    for row in invites.iter().map_err(unavailable)? {
        let (code, bytes) = row.map_err(unavailable)?;
        let invite: Invite = decode(bytes.value())?;
        index.insert((invite.guild_id.0, code.value()), ()).map_err(unavailable)?;
    }
    Ok(())
}

fn get_json<K: redb::Key + 'static, T: DeserializeOwned>(
    tx: &redb::ReadTransaction,
    table: TableDefinition<K, &'static [u8]>,
    key: K::SelfType<'_>,
) -> Result<Option<T>> {
    let t = tx.open_table(table).map_err(unavailable)?;
    match t.get(key).map_err(unavailable)? {
        Some(v) => Ok(Some(decode(v.value())?)),
        None => Ok(None),
    }
}

#[async_trait]
impl Storage for EmbeddedStore {
    async fn create_user(&self, record: UserRecord) -> Result<()> {
        self.write(Write::CreateUser(record)).await.map(|_| ())
    }

    async fn update_user(&self, record: UserRecord) -> Result<()> {
        self.write(Write::UpdateUser(record)).await.map(|_| ())
    }

    async fn user(&self, id: UserId) -> Result<Option<UserRecord>> {
        self.read(move |tx| get_json(tx, USERS, id.0)).await
    }

    async fn user_by_username(&self, username: &str) -> Result<Option<UserRecord>> {
        let key = username.to_lowercase();
        self.read(move |tx| {
            let id = tx
                .open_table(USERNAMES)
                .map_err(unavailable)?
                .get(key.as_str())
                .map_err(unavailable)?
                .map(|v| v.value());
            match id {
                Some(id) => get_json(tx, USERS, id),
                None => Ok(None),
            }
        })
        .await
    }

    async fn put_token(&self, token: &str, user: UserId) -> Result<()> {
        self.write(Write::PutToken(token.to_owned(), user)).await.map(|_| ())
    }

    async fn token_user(&self, token: &str) -> Result<Option<UserId>> {
        let key = token_key(token);
        self.read(move |tx| {
            let t = tx.open_table(TOKENS).map_err(unavailable)?;
            Ok(t.get(key.as_str()).map_err(unavailable)?.map(|v| Snowflake(v.value())))
        })
        .await
    }

    async fn create_guild(&self, guild: Guild, owner: Member, channels: Vec<Channel>) -> Result<()> {
        self.write(Write::CreateGuild(guild, owner, channels)).await.map(|_| ())
    }

    async fn guild(&self, id: GuildId) -> Result<Option<Guild>> {
        self.read(move |tx| get_json(tx, GUILDS, id.0)).await
    }

    async fn guild_channels(&self, guild: GuildId) -> Result<Vec<Channel>> {
        self.read(move |tx| {
            let index = tx.open_table(GUILD_CHANNELS).map_err(unavailable)?;
            let channels = tx.open_table(CHANNELS).map_err(unavailable)?;
            let mut out = Vec::new();
            for row in index.range((guild.0, 0)..=(guild.0, u64::MAX)).map_err(unavailable)? {
                let (k, _) = row.map_err(unavailable)?;
                let (_, channel_id) = k.value();
                if let Some(v) = channels.get(channel_id).map_err(unavailable)? {
                    out.push(decode(v.value())?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn members(&self, guild: GuildId, after: Option<UserId>, limit: usize) -> Result<Vec<Member>> {
        self.read(move |tx| {
            let t = tx.open_table(MEMBERS).map_err(unavailable)?;
            let start = match after {
                Some(a) if a.0 == u64::MAX => return Ok(Vec::new()),
                Some(a) => a.0 + 1,
                None => 0,
            };
            let mut out = Vec::new();
            for row in t.range((guild.0, start)..=(guild.0, u64::MAX)).map_err(unavailable)?.take(limit) {
                let (_, v) = row.map_err(unavailable)?;
                out.push(decode(v.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn member(&self, guild: GuildId, user: UserId) -> Result<Option<Member>> {
        self.read(move |tx| get_json(tx, MEMBERS, (guild.0, user.0))).await
    }

    async fn user_guilds(&self, user: UserId) -> Result<Vec<GuildId>> {
        self.read(move |tx| {
            let t = tx.open_table(USER_GUILDS).map_err(unavailable)?;
            let mut out = Vec::new();
            for row in t.range((user.0, 0)..=(user.0, u64::MAX)).map_err(unavailable)? {
                out.push(Snowflake(row.map_err(unavailable)?.0.value().1));
            }
            Ok(out)
        })
        .await
    }

    async fn channel(&self, id: ChannelId) -> Result<Option<Channel>> {
        self.read(move |tx| get_json(tx, CHANNELS, id.0)).await
    }

    async fn apply(&self, write: GuildWrite) -> Result<()> {
        self.write(Write::Apply(write)).await.map(|_| ())
    }

    async fn apply_logged_batch(&self, writes: Vec<GuildWrite>, log: Vec<LogEntry>) -> LoggedBatch {
        let n = writes.len();
        match self.write(Write::ApplyBatch(writes, log)).await {
            Ok(Written::Batch(results)) => LoggedBatch { log: Ok(()), writes: results },
            Ok(_) => LoggedBatch::failed(StoreError::Corrupt("batch write returned no results".into()), n),
            Err(e) => LoggedBatch::failed(e, n),
        }
    }

    async fn log_head(&self, key: LogKey) -> Result<u64> {
        self.read(move |tx| {
            let heads = tx.open_table(EVENT_LOG_HEADS).map_err(unavailable)?;
            Ok(heads.get(key.id().0).map_err(unavailable)?.map_or(0, |h| h.value()))
        })
        .await
    }

    async fn log_entries(&self, key: LogKey, after: u64, limit: usize) -> Result<Vec<LogEntry>> {
        self.read(move |tx| {
            let entries = tx.open_table(EVENT_LOG).map_err(unavailable)?;
            let id = key.id().0;
            let mut out = Vec::new();
            if after == u64::MAX {
                return Ok(out);
            }
            for row in entries.range((id, after + 1)..=(id, u64::MAX)).map_err(unavailable)?.take(limit) {
                out.push(decode(row.map_err(unavailable)?.1.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn log_relayed(&self, key: LogKey, upto: u64, _at_unix_ms: u64) -> Result<()> {
        self.write(Write::LogRelayed(key, upto)).await.map(|_| ())
    }

    async fn logs_pending(&self, limit: usize) -> Result<Vec<LogKey>> {
        self.read(move |tx| {
            let pending = tx.open_table(EVENT_LOG_PENDING).map_err(unavailable)?;
            let mut out = Vec::new();
            for row in pending.iter().map_err(unavailable)?.take(limit) {
                let (id, kind) = row.map_err(unavailable)?;
                let key = LogKey::from_parts(kind.value(), Snowflake(id.value()))
                    .ok_or_else(|| StoreError::Corrupt(format!("log kind {}", kind.value())))?;
                out.push(key);
            }
            Ok(out)
        })
        .await
    }

    async fn create_invite(&self, invite: Invite) -> Result<()> {
        self.write(Write::CreateInvite(invite)).await.map(|_| ())
    }

    /// The database file is locked by the one process that opened it: no other host can
    /// share this store, so every node id is this host's.
    async fn lease_node_id(&self, _node: u16, _holder: &str, _ttl_ms: u64) -> Result<bool> {
        Ok(true)
    }

    async fn use_invite(&self, code: &str, now_unix_ms: u64) -> Result<Option<Invite>> {
        match self.write(Write::UseInvite(code.to_owned(), now_unix_ms)).await? {
            Written::Invite(invite) => Ok(invite),
            _ => Err(StoreError::Corrupt("an invite write returned no invite".into())),
        }
    }

    async fn delete_invite(&self, code: &str) -> Result<Option<Invite>> {
        match self.write(Write::DeleteInvite(code.to_owned())).await? {
            Written::Invite(invite) => Ok(invite),
            _ => Err(StoreError::Corrupt("an invite write returned no invite".into())),
        }
    }

    async fn invite(&self, code: &str) -> Result<Option<Invite>> {
        let code = code.to_owned();
        self.read(move |tx| get_json(tx, INVITES, code.as_str())).await
    }

    async fn guild_invites(&self, guild: GuildId, limit: usize) -> Result<Vec<Invite>> {
        self.read(move |tx| {
            let index = tx.open_table(GUILD_INVITES).map_err(unavailable)?;
            let invites = tx.open_table(INVITES).map_err(unavailable)?;
            let mut out = Vec::new();
            for row in index.range((guild.0, "")..).map_err(unavailable)? {
                let (key, _) = row.map_err(unavailable)?;
                let (of_guild, code) = key.value();
                if of_guild != guild.0 || out.len() == limit {
                    break;
                }
                // The index and the invites change in one transaction: never one without the other.
                let bytes = invites.get(code).map_err(unavailable)?;
                let bytes = bytes.ok_or_else(|| StoreError::Corrupt(format!("invite {code} is indexed but absent")))?;
                out.push(decode(bytes.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn get_or_create_dm(&self, a: User, b: User, new_id: ChannelId) -> Result<Channel> {
        match self.write(Write::GetOrCreateDm(a, b, new_id)).await? {
            Written::Channel(c) => Ok(c),
            _ => Err(StoreError::Corrupt("dm write returned no channel".into())),
        }
    }

    async fn user_dms(&self, user: UserId) -> Result<Vec<Channel>> {
        self.read(move |tx| {
            let index = tx.open_table(USER_DMS).map_err(unavailable)?;
            let channels = tx.open_table(CHANNELS).map_err(unavailable)?;
            let mut out = Vec::new();
            for row in index.range((user.0, 0)..=(user.0, u64::MAX)).map_err(unavailable)? {
                let channel_id = row.map_err(unavailable)?.0.value().1;
                if let Some(v) = channels.get(channel_id).map_err(unavailable)? {
                    out.push(decode(v.value())?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn kv_get(&self, plugin: Snowflake, guild: GuildId, key: &str) -> Result<Option<Vec<u8>>> {
        let key = key.to_owned();
        self.read(move |tx| {
            let t = tx.open_table(PLUGIN_KV).map_err(unavailable)?;
            Ok(t.get((plugin.0, guild.0, key.as_str())).map_err(unavailable)?.map(|v| v.value().to_vec()))
        })
        .await
    }

    async fn kv_put(&self, plugin: Snowflake, guild: GuildId, key: &str, value: Vec<u8>) -> Result<()> {
        self.write(Write::KvPut(plugin, guild, key.to_owned(), value)).await.map(|_| ())
    }

    async fn kv_delete(&self, plugin: Snowflake, guild: GuildId, key: &str) -> Result<()> {
        self.write(Write::KvDelete(plugin, guild, key.to_owned())).await.map(|_| ())
    }

    async fn kv_keys(
        &self,
        plugin: Snowflake,
        guild: GuildId,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, usize)>> {
        let prefix = prefix.to_owned();
        self.read(move |tx| {
            let t = tx.open_table(PLUGIN_KV).map_err(unavailable)?;
            let mut out = Vec::new();
            let start = (plugin.0, guild.0, prefix.as_str());
            for row in t.range(start..).map_err(unavailable)? {
                let (k, v) = row.map_err(unavailable)?;
                let (p, g, key) = k.value();
                if p != plugin.0 || g != guild.0 || !key.starts_with(prefix.as_str()) || out.len() >= limit {
                    break;
                }
                out.push((key.to_owned(), v.value().len()));
            }
            Ok(out)
        })
        .await
    }

    async fn put_plugin(&self, plugin: PluginRecord) -> Result<()> {
        self.write(Write::PutPlugin(plugin)).await.map(|_| ())
    }

    async fn reaction_users(
        &self,
        channel: ChannelId,
        message: MessageId,
        emoji: &str,
        after: Option<UserId>,
        limit: usize,
    ) -> Result<Vec<UserId>> {
        let emoji = emoji.to_owned();
        self.read(move |tx| {
            let t = tx.open_table(REACTIONS).map_err(unavailable)?;
            let (c, m, from) = (channel.0, message.0, after.map_or(0, |a| a.0.saturating_add(1)));
            let mut out = Vec::new();
            for row in t.range((c, m, emoji.as_str(), from)..=(c, m, emoji.as_str(), u64::MAX)).map_err(unavailable)? {
                if out.len() >= limit {
                    break;
                }
                out.push(Snowflake(row.map_err(unavailable)?.0.value().3));
            }
            Ok(out)
        })
        .await
    }

    async fn reactions(&self, channel: ChannelId, message: MessageId, viewer: UserId) -> Result<Vec<Reaction>> {
        self.read(move |tx| {
            let t = tx.open_table(REACTIONS).map_err(unavailable)?;
            let (c, m) = (channel.0, message.0);
            let mut rows = Vec::new();
            for row in t.range((c, m, "", 0)..=(c, m, "\u{10FFFF}", u64::MAX)).map_err(unavailable)? {
                let row = row.map_err(unavailable)?;
                let (_, _, emoji, user) = row.0.value();
                rows.push((emoji.to_owned(), Snowflake(user)));
                if rows.len() >= guildhall_store::MAX_COUNTED_REACTIONS {
                    break;
                }
            }
            Ok(guildhall_store::count_reactions(rows, viewer))
        })
        .await
    }

    async fn put_timer(&self, plugin: Snowflake, guild: GuildId, timer: PluginTimer) -> Result<()> {
        self.write(Write::PutTimer(plugin, guild, timer)).await.map(|_| ())
    }

    async fn delete_timer(&self, plugin: Snowflake, guild: GuildId, id: u64) -> Result<()> {
        self.write(Write::DeleteTimer(plugin, guild, id)).await.map(|_| ())
    }

    async fn timers(&self, plugin: Snowflake, guild: GuildId) -> Result<Vec<PluginTimer>> {
        self.read(move |tx| {
            let t = tx.open_table(PLUGIN_TIMERS).map_err(unavailable)?;
            let mut out = Vec::new();
            for row in t.range((plugin.0, guild.0, 0)..=(plugin.0, guild.0, u64::MAX)).map_err(unavailable)? {
                out.push(decode(row.map_err(unavailable)?.1.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn add_audit_entry(&self, entry: AuditLogEntry) -> Result<()> {
        self.write(Write::AddAuditEntry(entry)).await.map(|_| ())
    }

    async fn audit_log(
        &self,
        guild: GuildId,
        before: Option<Snowflake>,
        limit: usize,
        at_unix_ms: u64,
    ) -> Result<Vec<AuditLogEntry>> {
        let cutoff = audit_log_cutoff(at_unix_ms).0;
        let before = before.map_or(u64::MAX, |b| b.0);
        self.read(move |tx| {
            let t = tx.open_table(AUDIT_LOG).map_err(unavailable)?;
            let mut out = Vec::new();
            if before <= cutoff {
                return Ok(out);
            }
            for row in t.range((guild.0, cutoff)..(guild.0, before)).map_err(unavailable)?.rev().take(limit) {
                out.push(decode(row.map_err(unavailable)?.1.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn bans(&self, guild: GuildId, after: Option<UserId>, limit: usize) -> Result<Vec<Ban>> {
        let start = after.map_or(0, |a| a.0.saturating_add(1));
        self.read(move |tx| {
            let t = tx.open_table(BANS).map_err(unavailable)?;
            let mut out = Vec::new();
            for row in t.range((guild.0, start)..=(guild.0, u64::MAX)).map_err(unavailable)?.take(limit) {
                out.push(decode(row.map_err(unavailable)?.1.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn delete_plugin(&self, guild: GuildId, plugin: Snowflake) -> Result<()> {
        self.write(Write::DeletePlugin(guild, plugin)).await.map(|_| ())
    }

    async fn guild_plugins(&self, guild: GuildId) -> Result<Vec<PluginRecord>> {
        self.read(move |tx| {
            let t = tx.open_table(PLUGINS).map_err(unavailable)?;
            let mut out = Vec::new();
            for row in t.range((guild.0, 0)..=(guild.0, u64::MAX)).map_err(unavailable)? {
                out.push(decode(row.map_err(unavailable)?.1.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn put_component(&self, sha256: &str, bytes: Vec<u8>, at_unix_ms: u64) -> Result<()> {
        self.write(Write::PutComponent(sha256.to_owned(), bytes, at_unix_ms)).await.map(|_| ())
    }

    async fn collect_components(&self, stored_before_unix_ms: u64) -> Result<Vec<String>> {
        match self.write(Write::CollectComponents(stored_before_unix_ms)).await? {
            Written::Collected(hashes) => Ok(hashes),
            _ => Err(StoreError::Corrupt("a collection returned no components".into())),
        }
    }

    async fn component(&self, sha256: &str) -> Result<Option<Vec<u8>>> {
        let key = sha256.to_owned();
        self.read(move |tx| {
            let t = tx.open_table(COMPONENTS).map_err(unavailable)?;
            Ok(t.get(key.as_str()).map_err(unavailable)?.map(|v| v.value().to_vec()))
        })
        .await
    }

    async fn message(&self, channel: ChannelId, id: MessageId) -> Result<Option<Message>> {
        self.read(move |tx| get_json(tx, MESSAGES, message_key(channel, id))).await
    }

    async fn messages_in_bucket(
        &self,
        channel: ChannelId,
        bucket: u32,
        bounds: IdBounds,
        order: Order,
        limit: usize,
    ) -> Result<Vec<Message>> {
        self.read(move |tx| {
            let t = tx.open_table(MESSAGES).map_err(unavailable)?;
            let lo = bounds.after.map_or(Some(0), |a| a.0.checked_add(1));
            let hi = bounds.before.map_or(Some(u64::MAX), |b| b.0.checked_sub(1));
            let (Some(lo), Some(hi)) = (lo, hi) else {
                return Ok(Vec::new());
            };
            if lo > hi {
                return Ok(Vec::new());
            }
            let range = t.range((channel.0, bucket, lo)..=(channel.0, bucket, hi)).map_err(unavailable)?;
            let mut out = Vec::with_capacity(limit.min(100));
            let mut push = |row: std::result::Result<
                (redb::AccessGuard<(u64, u32, u64)>, redb::AccessGuard<&[u8]>),
                redb::StorageError,
            >|
             -> Result<()> {
                let (_, v) = row.map_err(unavailable)?;
                out.push(decode(v.value())?);
                Ok(())
            };
            match order {
                Order::Desc => range.rev().take(limit).try_for_each(&mut push)?,
                Order::Asc => range.take(limit).try_for_each(&mut push)?,
            }
            Ok(out)
        })
        .await
    }

    async fn flush(&self) -> Result<()> {
        self.write(Write::Barrier).await.map(|_| ())
    }
}

impl EmbeddedStore {
    /// Number of stored messages (for metrics and benchmarks).
    pub fn message_count(&self) -> Result<u64> {
        let tx = self.db.begin_read().map_err(unavailable)?;
        tx.open_table(MESSAGES).map_err(unavailable)?.len().map_err(unavailable)
    }
}
