//! The ScyllaDB backend of the `Storage` seam, over the `scylla` driver: prepared
//! statements (token-aware routing comes with them), paging for partition scans, LOCAL_QUORUM
//! by default, lightweight transactions where a rule must hold across racing writers
//! (unique usernames, one DM channel per pair, edit/delete only what exists). It speaks
//! plain CQL, so the tests run it against Apache Cassandra.

pub mod config;
pub mod schema;

use std::time::Duration;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use guildhall_core::guild::GuildWrite;
use guildhall_core::model::{
    AuditLogEntry, Ban, Channel, ChannelId, Guild, GuildId, Invite, Member, Message, MessageId, PluginRecord,
    PluginTimer, Reaction, User, UserId, UserRecord,
};
use guildhall_core::stream::{LogEntry, LogKey};
use guildhall_core::Snowflake;
use guildhall_store::{
    assert_one_log_in_order, audit_log_cutoff, count_reactions, token_key, IdBounds, LoggedBatch, Order, Result,
    Storage, StoreError, MAX_COUNTED_REACTIONS,
};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::response::query_result::QueryResult;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::SerialConsistency;
use scylla::value::{CqlValue, Row};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use config::{Replication, ScyllaConfig};

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn encode<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("model types serialize")
}

fn decode<T: DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Snowflakes are stored as CQL bigint (they fit in 63 bits until the year 2154).
/// An id as CQL's signed bigint. Ids above `i64::MAX` exist only as what a client may send
/// (Discord allows 19 decimal digits): they compare above every stored id, so they become
/// `i64::MAX` (wrapping them would make them negative: "before" them would be nothing).
fn big(id: Snowflake) -> i64 {
    i64::try_from(id.0).unwrap_or(i64::MAX)
}

struct Statements {
    insert_user: PreparedStatement,
    update_user: PreparedStatement,
    reserve_username: PreparedStatement,
    release_username: PreparedStatement,
    user: PreparedStatement,
    user_id_by_name: PreparedStatement,
    put_token: PreparedStatement,
    token_user: PreparedStatement,
    insert_guild: PreparedStatement,
    update_guild: PreparedStatement,
    guild: PreparedStatement,
    insert_channel: PreparedStatement,
    delete_channel: PreparedStatement,
    insert_guild_channel: PreparedStatement,
    guild_channels: PreparedStatement,
    channel: PreparedStatement,
    insert_member: PreparedStatement,
    insert_user_guild: PreparedStatement,
    delete_member: PreparedStatement,
    delete_user_guild: PreparedStatement,
    members_after: PreparedStatement,
    insert_ban: PreparedStatement,
    delete_ban: PreparedStatement,
    bans_after: PreparedStatement,
    member: PreparedStatement,
    user_guilds: PreparedStatement,
    insert_invite: PreparedStatement,
    invite: PreparedStatement,
    use_invite: PreparedStatement,
    index_invite: PreparedStatement,
    unindex_invite: PreparedStatement,
    guild_invite_codes: PreparedStatement,
    take_node_lease: PreparedStatement,
    renew_node_lease: PreparedStatement,
    delete_invite: PreparedStatement,
    claim_dm_pair: PreparedStatement,
    insert_user_dm: PreparedStatement,
    user_dms: PreparedStatement,
    insert_message: PreparedStatement,
    delete_message: PreparedStatement,
    message_exists: PreparedStatement,
    message: PreparedStatement,
    bucket_desc: PreparedStatement,
    bucket_asc: PreparedStatement,
    put_plugin: PreparedStatement,
    delete_plugin: PreparedStatement,
    plugin_exists: PreparedStatement,
    guild_plugins: PreparedStatement,
    plugin_bodies: PreparedStatement,
    component_writes: PreparedStatement,
    delete_component: PreparedStatement,
    put_component: PreparedStatement,
    component: PreparedStatement,
    kv_get: PreparedStatement,
    kv_put: PreparedStatement,
    kv_delete: PreparedStatement,
    kv_keys: PreparedStatement,
    kv_clear: PreparedStatement,
    put_timer: PreparedStatement,
    delete_timer: PreparedStatement,
    timers: PreparedStatement,
    timers_clear: PreparedStatement,
    add_audit_entry: PreparedStatement,
    audit_log: PreparedStatement,
    add_reaction: PreparedStatement,
    remove_reaction: PreparedStatement,
    clear_reactions: PreparedStatement,
    reaction_users: PreparedStatement,
    reactions: PreparedStatement,
    insert_log_entry: PreparedStatement,
    set_log_head: PreparedStatement,
    mark_log_pending: PreparedStatement,
    unmark_log_pending: PreparedStatement,
    log_head: PreparedStatement,
    log_entries: PreparedStatement,
    delete_log_upto: PreparedStatement,
    logs_pending: PreparedStatement,
}

/// Partitions of `event_logs_pending` (a log's is its id modulo this).
const LOG_PARTS: i32 = 16;

fn log_part(key: LogKey) -> i32 {
    (key.id().0 % LOG_PARTS as u64) as i32
}

pub struct ScyllaStore {
    session: Session,
    st: Statements,
}

impl ScyllaStore {
    /// Connects, creates the keyspace, applies pending migrations, prepares statements.
    pub async fn connect(config: &ScyllaConfig) -> Result<ScyllaStore> {
        // One execution profile for everything (statements, batches, DDL): the configured
        // consistency, LOCAL_SERIAL for transactions, and a bounded request time.
        let profile = ExecutionProfile::builder()
            .consistency(config.consistency)
            .serial_consistency(Some(SerialConsistency::LocalSerial))
            .request_timeout(Some(Duration::from_secs(10)))
            .build()
            .into_handle();
        let session = SessionBuilder::new()
            .known_nodes(&config.nodes)
            .default_execution_profile_handle(profile)
            .connection_timeout(Duration::from_secs(5))
            .build()
            .await
            .map_err(|e| unavailable(format!("connecting to {}: {e}", config.nodes.join(","))))?;
        migrate(&session, config).await?;
        let st = prepare_all(&session, config).await?;
        Ok(ScyllaStore { session, st })
    }

    async fn exec(
        &self,
        st: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> Result<QueryResult> {
        self.session.execute_unpaged(st, values).await.map_err(unavailable)
    }

    /// The first column of each row (ids, bodies).
    async fn column<T>(
        &self,
        st: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> Result<Vec<T>>
    where
        T: for<'f, 'm> scylla::deserialize::value::DeserializeValue<'f, 'm>,
    {
        let pager = self.session.execute_iter(st.clone(), values).await.map_err(unavailable)?;
        let rows = pager.rows_stream::<(T,)>().map_err(unavailable)?;
        let rows: Vec<(T,)> = rows.try_collect().await.map_err(unavailable)?;
        Ok(rows.into_iter().map(|(v,)| v).collect())
    }

    /// Stores a batch's log entries and head (one partition, one batch) and marks the log
    /// pending, together.
    async fn append_log(&self, log: &[LogEntry]) -> Result<()> {
        assert_one_log_in_order(log);
        let Some(last) = log.last() else { return Ok(()) };
        let id = big(last.key.id());
        let mut batch = Batch::new(BatchType::Unlogged);
        let mut values: Vec<Vec<CqlValue>> = Vec::with_capacity(log.len() + 1);
        for entry in log {
            batch.append_statement(self.st.insert_log_entry.clone());
            values.push(vec![CqlValue::BigInt(id), CqlValue::BigInt(entry.seq as i64), CqlValue::Text(encode(entry))]);
        }
        batch.append_statement(self.st.set_log_head.clone());
        values.push(vec![CqlValue::BigInt(last.seq as i64), CqlValue::BigInt(id)]);
        let entries = async { self.session.batch(&batch, values).await.map_err(unavailable) };
        let kind = last.key.kind() as i8;
        let mark = self.exec(&self.st.mark_log_pending, (log_part(last.key), id, kind));
        let (entries, mark) = futures_util::future::join(entries, mark).await;
        entries?;
        mark?;
        Ok(())
    }

    /// The `body` column of the first row, as stored. A row whose body is null reads as
    /// no row: an invite's use rewrites its body with what is left of its TTL, and an
    /// UPDATE writes no row marker, so the body can expire before the row marker the
    /// INSERT wrote (a second at most in service; for ever if the invite was stored
    /// without a TTL but with an expiry).
    async fn raw_body(
        &self,
        st: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> Result<Option<String>> {
        let result = self.exec(st, values).await?;
        let rows = result.into_rows_result().map_err(unavailable)?;
        Ok(rows.maybe_first_row::<(Option<String>,)>().map_err(unavailable)?.and_then(|(body,)| body))
    }

    async fn one_body<T: DeserializeOwned>(
        &self,
        st: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> Result<Option<T>> {
        match self.raw_body(st, values).await? {
            Some(body) => Ok(Some(decode(&body)?)),
            None => Ok(None),
        }
    }

    async fn bodies<T: DeserializeOwned>(
        &self,
        st: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> Result<Vec<T>> {
        self.column::<String>(st, values).await?.iter().map(|b| decode(b)).collect()
    }

    /// Runs a lightweight transaction; Ok(None) if applied, Ok(Some(row)) with the
    /// existing values if not.
    async fn lwt(
        &self,
        st: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> Result<Option<Row>> {
        let result = self.exec(st, values).await?;
        let rows = result.into_rows_result().map_err(unavailable)?;
        let row: Row = rows.first_row().map_err(unavailable)?;
        match row.columns.first() {
            Some(Some(CqlValue::Boolean(true))) => Ok(None),
            Some(Some(CqlValue::Boolean(false))) => Ok(Some(row)),
            other => Err(StoreError::Corrupt(format!("unexpected [applied] column: {other:?}"))),
        }
    }

    async fn message_exists(&self, channel: ChannelId, id: MessageId) -> Result<bool> {
        let values = (big(channel), id.bucket() as i32, big(id));
        let rows = self.exec(&self.st.message_exists, values).await?.into_rows_result().map_err(unavailable)?;
        Ok(rows.rows_num() > 0)
    }

    async fn apply_one(&self, write: &GuildWrite) -> Result<()> {
        let st = &self.st;
        match write {
            GuildWrite::PutMessage(m) => {
                let values =
                    (big(m.channel_id), m.id.bucket() as i32, big(m.id), big(m.author.id), &m.content, encode(m));
                self.exec(&st.insert_message, values).await?;
            }
            GuildWrite::EditMessage(m) => {
                if !self.message_exists(m.channel_id, m.id).await? {
                    return Err(StoreError::NotFound);
                }
                // The whole row again: an update of a row deleted meanwhile would leave a
                // partial one.
                let values =
                    (big(m.channel_id), m.id.bucket() as i32, big(m.id), big(m.author.id), &m.content, encode(m));
                self.exec(&st.insert_message, values).await?;
            }
            GuildWrite::DeleteMessage { channel_id, message_id } => {
                if !self.message_exists(*channel_id, *message_id).await? {
                    return Err(StoreError::NotFound);
                }
                let values = (big(*channel_id), message_id.bucket() as i32, big(*message_id));
                self.exec(&st.delete_message, values).await?;
                // Its reactions go with it (one partition delete; were it lost, the rows
                // would be unreachable: message ids are never reused).
                self.exec(&st.clear_reactions, (big(*channel_id), big(*message_id))).await?;
            }
            GuildWrite::AddReaction { channel_id, message_id, emoji, user_id } => {
                let values = (big(*channel_id), big(*message_id), emoji.name.as_str(), big(*user_id));
                self.exec(&st.add_reaction, values).await?;
            }
            GuildWrite::RemoveReaction { channel_id, message_id, emoji, user_id } => {
                let values = (big(*channel_id), big(*message_id), emoji.name.as_str(), big(*user_id));
                self.exec(&st.remove_reaction, values).await?;
            }
            GuildWrite::CreateChannel(c) | GuildWrite::UpdateChannel(c) => self.put_channel(c).await?,
            GuildWrite::UpdateGuild(g) => {
                if self.lwt(&st.update_guild, (encode(g), big(g.id))).await?.is_some() {
                    return Err(StoreError::NotFound);
                }
            }
            GuildWrite::AddMember { guild_id, member, invite } => {
                // The use first (compare-and-set): a join that is refused takes none. Should
                // the membership's write then fail, the use is spent (the join is answered
                // 503 and may be retried with another invite).
                if let Some(invite) = invite {
                    if self.take_invite_use(&invite.code, invite.at_unix_ms, Some(*guild_id)).await?.is_none() {
                        return Err(StoreError::NotFound);
                    }
                }
                self.put_member(*guild_id, member).await?;
            }
            GuildWrite::UpdateMember { guild_id, member } => self.put_member(*guild_id, member).await?,
            GuildWrite::RemoveMember { guild_id, user_id } => {
                let mut batch = Batch::new(BatchType::Logged);
                batch.append_statement(st.delete_member.clone());
                batch.append_statement(st.delete_user_guild.clone());
                let (g, u) = (big(*guild_id), big(*user_id));
                self.session.batch(&batch, ((g, u), (u, g))).await.map_err(unavailable)?;
            }
            GuildWrite::Ban { guild_id, ban } => {
                let mut batch = Batch::new(BatchType::Logged);
                batch.append_statement(st.insert_ban.clone());
                batch.append_statement(st.delete_member.clone());
                batch.append_statement(st.delete_user_guild.clone());
                let (g, u) = (big(*guild_id), big(ban.user.id));
                self.session.batch(&batch, ((g, u, encode(ban)), (g, u), (u, g))).await.map_err(unavailable)?;
            }
            GuildWrite::Unban { guild_id, user_id } => {
                self.exec(&st.delete_ban, (big(*guild_id), big(*user_id))).await?;
            }
        }
        Ok(())
    }

    async fn put_member(&self, guild_id: GuildId, member: &Member) -> Result<()> {
        let mut batch = Batch::new(BatchType::Logged);
        batch.append_statement(self.st.insert_member.clone());
        batch.append_statement(self.st.insert_user_guild.clone());
        let (g, u) = (big(guild_id), big(member.user.id));
        self.session.batch(&batch, ((g, u, encode(member)), (u, g))).await.map_err(unavailable)?;
        Ok(())
    }

    /// Counts one use of the invite if it is usable at `now_unix_ms` (and, given
    /// `of_guild`, an invite to that guild), by compare-and-set: two joins never both take
    /// its last use. The invite as used, or `None` if it is unknown, expired, used up or
    /// another guild's.
    async fn take_invite_use(&self, code: &str, now_unix_ms: u64, of_guild: Option<GuildId>) -> Result<Option<Invite>> {
        /// Compare-and-set rounds lost to other joins before giving up (503).
        const MAX_ROUNDS: usize = 16;
        for _ in 0..MAX_ROUNDS {
            // The stored text exactly, for the comparison (re-encoding may differ).
            let Some(stored) = self.raw_body(&self.st.invite, (code,)).await? else { return Ok(None) };
            let seen: Invite = decode(&stored)?;
            if !seen.usable(now_unix_ms) || of_guild.is_some_and(|g| g != seen.guild_id) {
                return Ok(None);
            }
            // The update keeps the row's expiry: what is left of its TTL (0: none).
            let ttl_left = match seen.expires_unix_ms {
                0 => 0,
                expires => i32::try_from((expires - now_unix_ms).div_ceil(1000)).unwrap_or(i32::MAX),
            };
            let used = Invite { uses: seen.uses + 1, ..seen };
            if self.lwt(&self.st.use_invite, (ttl_left, encode(&used), code, stored)).await?.is_none() {
                return Ok(Some(used));
            }
        }
        Err(StoreError::Unavailable(format!("invite {code}: too many joins at once, try again")))
    }

    async fn put_channel(&self, c: &Channel) -> Result<()> {
        match c.guild_id {
            Some(g) => {
                let mut batch = Batch::new(BatchType::Logged);
                batch.append_statement(self.st.insert_channel.clone());
                batch.append_statement(self.st.insert_guild_channel.clone());
                self.session.batch(&batch, ((big(c.id), encode(c)), (big(g), big(c.id)))).await.map_err(unavailable)?;
            }
            None => {
                self.exec(&self.st.insert_channel, (big(c.id), encode(c))).await?;
            }
        }
        Ok(())
    }

    async fn channels_by_id(&self, ids: Vec<i64>) -> Result<Vec<Channel>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(c) = self.one_body(&self.st.channel, (id,)).await? {
                out.push(c);
            }
        }
        Ok(out)
    }
}

/// Invite bodies read at once when a guild's invites are listed.
const INVITE_READS_AT_ONCE: usize = 32;

async fn migrate(session: &Session, config: &ScyllaConfig) -> Result<()> {
    let ks = &config.keyspace;
    let ddl = |cql: String| async move { session.query_unpaged(cql, &[]).await.map_err(unavailable) };
    ddl(format!("CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {}", config.replication.cql())).await?;
    ddl(format!(
        "CREATE TABLE IF NOT EXISTS {ks}.schema_migrations (version int PRIMARY KEY, description text, applied_at timestamp)"
    ))
    .await?;
    let applied: Vec<(i32,)> = session
        .query_unpaged(format!("SELECT version FROM {ks}.schema_migrations"), &[])
        .await
        .map_err(unavailable)?
        .into_rows_result()
        .map_err(unavailable)?
        .rows::<(i32,)>()
        .map_err(unavailable)?
        .collect::<std::result::Result<_, _>>()
        .map_err(unavailable)?;
    for (version, description, statements) in schema::MIGRATIONS {
        if applied.iter().any(|(v,)| v == version) {
            continue;
        }
        tracing::info!(version, description, keyspace = %ks, "applying schema migration");
        for cql in *statements {
            ddl(cql.replace("{ks}", ks)).await?;
        }
        session.await_schema_agreement().await.map_err(unavailable)?;
        ddl(format!(
            "INSERT INTO {ks}.schema_migrations (version, description, applied_at) VALUES ({version}, '{description}', toTimestamp(now()))"
        ))
        .await?;
    }
    Ok(())
}

async fn prepare_all(session: &Session, config: &ScyllaConfig) -> Result<Statements> {
    let ks = &config.keyspace;
    let prepare = |cql: String| async move { session.prepare(cql.replace("{ks}", ks)).await.map_err(unavailable) };
    let msg_cols = "message_id, author_id, content, body";
    Ok(Statements {
        // Users are written only with lightweight transactions (create if absent, update if
        // present): an id that collided could never overwrite an account, and LWT and plain
        // writes are never mixed on one row.
        insert_user: prepare("INSERT INTO {ks}.users (id, record) VALUES (?, ?) IF NOT EXISTS".into()).await?,
        update_user: prepare("UPDATE {ks}.users SET record = ? WHERE id = ? IF EXISTS".into()).await?,
        reserve_username: prepare("INSERT INTO {ks}.users_by_name (username, id) VALUES (?, ?) IF NOT EXISTS".into()).await?,
        release_username: prepare("DELETE FROM {ks}.users_by_name WHERE username = ? IF id = ?".into()).await?,
        user: prepare("SELECT record FROM {ks}.users WHERE id = ?".into()).await?,
        user_id_by_name: prepare("SELECT id FROM {ks}.users_by_name WHERE username = ?".into()).await?,
        put_token: prepare("INSERT INTO {ks}.tokens (token_sha256, user_id) VALUES (?, ?)".into()).await?,
        token_user: prepare("SELECT user_id FROM {ks}.tokens WHERE token_sha256 = ?".into()).await?,
        // Guilds are written with lightweight transactions only: created if absent (an id
        // issued twice never replaces a guild), updated if present.
        insert_guild: prepare("INSERT INTO {ks}.guilds (id, body) VALUES (?, ?) IF NOT EXISTS".into()).await?,
        update_guild: prepare("UPDATE {ks}.guilds SET body = ? WHERE id = ? IF EXISTS".into()).await?,
        guild: prepare("SELECT body FROM {ks}.guilds WHERE id = ?".into()).await?,
        insert_channel: prepare("INSERT INTO {ks}.channels (id, body) VALUES (?, ?)".into()).await?,
        delete_channel: prepare("DELETE FROM {ks}.channels WHERE id = ?".into()).await?,
        insert_guild_channel: prepare("INSERT INTO {ks}.channels_by_guild (guild_id, channel_id) VALUES (?, ?)".into()).await?,
        guild_channels: prepare("SELECT channel_id FROM {ks}.channels_by_guild WHERE guild_id = ?".into()).await?,
        channel: prepare("SELECT body FROM {ks}.channels WHERE id = ?".into()).await?,
        insert_member: prepare("INSERT INTO {ks}.members (guild_id, user_id, body) VALUES (?, ?, ?)".into()).await?,
        insert_user_guild: prepare("INSERT INTO {ks}.guilds_by_user (user_id, guild_id) VALUES (?, ?)".into()).await?,
        delete_member: prepare("DELETE FROM {ks}.members WHERE guild_id = ? AND user_id = ?".into()).await?,
        delete_user_guild: prepare("DELETE FROM {ks}.guilds_by_user WHERE user_id = ? AND guild_id = ?".into()).await?,
        members_after: prepare("SELECT body FROM {ks}.members WHERE guild_id = ? AND user_id > ? LIMIT ?".into()).await?,
        insert_ban: prepare("INSERT INTO {ks}.bans (guild_id, user_id, body) VALUES (?, ?, ?)".into()).await?,
        delete_ban: prepare("DELETE FROM {ks}.bans WHERE guild_id = ? AND user_id = ?".into()).await?,
        bans_after: prepare("SELECT body FROM {ks}.bans WHERE guild_id = ? AND user_id > ? LIMIT ?".into()).await?,
        member: prepare("SELECT body FROM {ks}.members WHERE guild_id = ? AND user_id = ?".into()).await?,
        user_guilds: prepare("SELECT guild_id FROM {ks}.guilds_by_user WHERE user_id = ?".into()).await?,
        // A lightweight transaction: a colliding code never replaces another invite.
        // An invite with a max_age lives as long (TTL), and so does its index row.
        insert_invite: prepare("INSERT INTO {ks}.invites (code, body) VALUES (?, ?) IF NOT EXISTS USING TTL ?".into())
            .await?,
        // The guild index is written plainly, index row first: an invite is never without
        // one (so the guild's quota counts it); a row left by a failed create or a crash
        // is dropped when the guild's invites are next listed.
        index_invite: prepare("INSERT INTO {ks}.invites_by_guild (guild_id, code) VALUES (?, ?) USING TTL ?".into())
            .await?,
        unindex_invite: prepare("DELETE FROM {ks}.invites_by_guild WHERE guild_id = ? AND code = ?".into()).await?,
        guild_invite_codes: prepare("SELECT code FROM {ks}.invites_by_guild WHERE guild_id = ? LIMIT ?".into()).await?,
        invite: prepare("SELECT body FROM {ks}.invites WHERE code = ?".into()).await?,
        // Every write to invites is a lightweight transaction (never mixed with plain ones
        // on a row): a use is compare-and-set on the whole record.
        use_invite: prepare("UPDATE {ks}.invites USING TTL ? SET body = ? WHERE code = ? IF body = ?".into()).await?,
        delete_invite: prepare("DELETE FROM {ks}.invites WHERE code = ? IF EXISTS".into()).await?,
        take_node_lease: prepare(
            "INSERT INTO {ks}.node_leases (node, holder) VALUES (?, ?) IF NOT EXISTS USING TTL ?".into(),
        )
        .await?,
        renew_node_lease: prepare(
            "UPDATE {ks}.node_leases USING TTL ? SET holder = ? WHERE node = ? IF holder = ?".into(),
        )
        .await?,
        claim_dm_pair: prepare("INSERT INTO {ks}.dm_pairs (low, high, channel_id) VALUES (?, ?, ?) IF NOT EXISTS".into()).await?,
        insert_user_dm: prepare("INSERT INTO {ks}.dms_by_user (user_id, channel_id) VALUES (?, ?)".into()).await?,
        user_dms: prepare("SELECT channel_id FROM {ks}.dms_by_user WHERE user_id = ?".into()).await?,
        insert_message: prepare(
            "INSERT INTO {ks}.messages (channel_id, bucket, message_id, author_id, content, body) VALUES (?, ?, ?, ?, ?, ?)".into(),
        )
        .await?,
        // Messages are written only plainly (a lightweight transaction on every create
        // would cost a Paxos round on the hottest path; mixing the two on one row can order
        // a delete before the create it follows): an edit or a delete reads that the message
        // exists first, and the guild actor keeps one write per message in flight.
        delete_message: prepare("DELETE FROM {ks}.messages WHERE channel_id = ? AND bucket = ? AND message_id = ?".into()).await?,
        message_exists: prepare("SELECT message_id FROM {ks}.messages WHERE channel_id = ? AND bucket = ? AND message_id = ?".into()).await?,
        message: prepare(format!("SELECT {msg_cols} FROM {{ks}}.messages WHERE channel_id = ? AND bucket = ? AND message_id = ?")).await?,
        bucket_desc: prepare(format!(
            "SELECT {msg_cols} FROM {{ks}}.messages WHERE channel_id = ? AND bucket = ? AND message_id > ? AND message_id < ? ORDER BY message_id DESC LIMIT ?"
        ))
        .await?,
        put_plugin: prepare("INSERT INTO {ks}.plugins (guild_id, plugin_id, body) VALUES (?, ?, ?)".into()).await?,
        // Plain writes only, as `put_plugin` (see messages).
        delete_plugin: prepare("DELETE FROM {ks}.plugins WHERE guild_id = ? AND plugin_id = ?".into()).await?,
        plugin_exists: prepare("SELECT plugin_id FROM {ks}.plugins WHERE guild_id = ? AND plugin_id = ?".into()).await?,
        guild_plugins: prepare("SELECT body FROM {ks}.plugins WHERE guild_id = ?".into()).await?,
        kv_get: prepare("SELECT value FROM {ks}.plugin_kv WHERE plugin_id = ? AND guild_id = ? AND key = ?".into()).await?,
        kv_put: prepare("INSERT INTO {ks}.plugin_kv (plugin_id, guild_id, key, value) VALUES (?, ?, ?, ?)".into()).await?,
        kv_delete: prepare("DELETE FROM {ks}.plugin_kv WHERE plugin_id = ? AND guild_id = ? AND key = ?".into()).await?,
        kv_keys: prepare("SELECT key, value FROM {ks}.plugin_kv WHERE plugin_id = ? AND guild_id = ? AND key >= ?".into()).await?,
        kv_clear: prepare("DELETE FROM {ks}.plugin_kv WHERE plugin_id = ? AND guild_id = ?".into()).await?,
        put_timer: prepare(
            "INSERT INTO {ks}.plugin_timers (plugin_id, guild_id, timer_id, body) VALUES (?, ?, ?, ?)".into(),
        )
        .await?,
        delete_timer: prepare(
            "DELETE FROM {ks}.plugin_timers WHERE plugin_id = ? AND guild_id = ? AND timer_id = ?".into(),
        )
        .await?,
        timers: prepare("SELECT body FROM {ks}.plugin_timers WHERE plugin_id = ? AND guild_id = ?".into()).await?,
        timers_clear: prepare("DELETE FROM {ks}.plugin_timers WHERE plugin_id = ? AND guild_id = ?".into()).await?,
        add_audit_entry: prepare("INSERT INTO {ks}.audit_log (guild_id, entry_id, body) VALUES (?, ?, ?)".into())
            .await?,
        audit_log: prepare(
            "SELECT body FROM {ks}.audit_log WHERE guild_id = ? AND entry_id > ? AND entry_id < ? LIMIT ?".into(),
        )
        .await?,
        add_reaction: prepare(
            "INSERT INTO {ks}.reactions (channel_id, message_id, emoji, user_id) VALUES (?, ?, ?, ?)".into(),
        )
        .await?,
        remove_reaction: prepare(
            "DELETE FROM {ks}.reactions WHERE channel_id = ? AND message_id = ? AND emoji = ? AND user_id = ?".into(),
        )
        .await?,
        clear_reactions: prepare("DELETE FROM {ks}.reactions WHERE channel_id = ? AND message_id = ?".into()).await?,
        reaction_users: prepare(
            "SELECT user_id FROM {ks}.reactions WHERE channel_id = ? AND message_id = ? AND emoji = ? AND user_id > ? LIMIT ?"
                .into(),
        )
        .await?,
        reactions: prepare("SELECT emoji, user_id FROM {ks}.reactions WHERE channel_id = ? AND message_id = ?".into())
            .await?,
        // Written at the caller's time, which collection compares with its cutoff and
        // deletes at (below): a component stored again later is never deleted.
        put_component: prepare("INSERT INTO {ks}.components (sha256, bytes) VALUES (?, ?) USING TIMESTAMP ?".into())
            .await?,
        component: prepare("SELECT bytes FROM {ks}.components WHERE sha256 = ?".into()).await?,
        // Collection: every plugin's component, every component's last write (its cell's
        // write time, in microseconds), and a delete at that time, which shadows only that
        // write and older ones: the component stored again meanwhile outlives it.
        plugin_bodies: prepare("SELECT body FROM {ks}.plugins".into()).await?,
        component_writes: prepare("SELECT sha256, WRITETIME(bytes) FROM {ks}.components".into()).await?,
        delete_component: prepare("DELETE FROM {ks}.components USING TIMESTAMP ? WHERE sha256 = ?".into()).await?,
        insert_log_entry: prepare("INSERT INTO {ks}.event_log (log_id, seq, entry) VALUES (?, ?, ?)".into()).await?,
        set_log_head: prepare("UPDATE {ks}.event_log SET head = ? WHERE log_id = ?".into()).await?,
        mark_log_pending: prepare("INSERT INTO {ks}.event_logs_pending (part, log_id, kind) VALUES (?, ?, ?)".into())
            .await?,
        // At the caller's time less a second: a mark written while the log was found empty
        // (a new batch) has a later time and survives the delete.
        unmark_log_pending: prepare(
            "DELETE FROM {ks}.event_logs_pending USING TIMESTAMP ? WHERE part = ? AND log_id = ?".into(),
        )
        .await?,
        log_head: prepare("SELECT head FROM {ks}.event_log WHERE log_id = ? LIMIT 1".into()).await?,
        log_entries: prepare("SELECT entry FROM {ks}.event_log WHERE log_id = ? AND seq > ? LIMIT ?".into()).await?,
        delete_log_upto: prepare("DELETE FROM {ks}.event_log WHERE log_id = ? AND seq <= ?".into()).await?,
        logs_pending: prepare("SELECT log_id, kind FROM {ks}.event_logs_pending WHERE part = ? LIMIT ?".into()).await?,
        bucket_asc: prepare(format!(
            "SELECT {msg_cols} FROM {{ks}}.messages WHERE channel_id = ? AND bucket = ? AND message_id > ? AND message_id < ? ORDER BY message_id ASC LIMIT ?"
        ))
        .await?,
    })
}

type MessageRow = (i64, i64, String, String);

fn message_from_row((_, _, _, body): MessageRow) -> Result<Message> {
    decode(&body)
}

fn limit_i32(limit: usize) -> i32 {
    limit.min(i32::MAX as usize) as i32
}

#[async_trait]
impl Storage for ScyllaStore {
    async fn create_user(&self, record: UserRecord) -> Result<()> {
        let name = record.user.username.to_lowercase();
        let id = big(record.user.id);
        if self.lwt(&self.st.reserve_username, (&name, id)).await?.is_some() {
            return Err(StoreError::Conflict("Username is already taken".into()));
        }
        let created = match self.lwt(&self.st.insert_user, (id, encode(&record))).await {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err(StoreError::Conflict(format!("user id {} is taken", record.user.id))),
            Err(e) => Err(e),
        };
        if created.is_err() {
            // Give the name back so a retry can succeed; if this fails too, the name stays
            // reserved for an id without a user (harmless, but not reusable).
            let _ = self.lwt(&self.st.release_username, (&name, id)).await;
        }
        created
    }

    async fn update_user(&self, record: UserRecord) -> Result<()> {
        let Some(old) = self.user(record.user.id).await? else { return Err(StoreError::NotFound) };
        if !old.user.username.eq_ignore_ascii_case(&record.user.username) {
            return Err(StoreError::Conflict("a username does not change here".into()));
        }
        match self.lwt(&self.st.update_user, (encode(&record), big(record.user.id))).await? {
            None => Ok(()),
            Some(_) => Err(StoreError::NotFound),
        }
    }

    async fn user(&self, id: UserId) -> Result<Option<UserRecord>> {
        let result = self.exec(&self.st.user, (big(id),)).await?;
        let rows = result.into_rows_result().map_err(unavailable)?;
        match rows.maybe_first_row::<(String,)>().map_err(unavailable)? {
            Some((record,)) => Ok(Some(decode(&record)?)),
            None => Ok(None),
        }
    }

    async fn user_by_username(&self, username: &str) -> Result<Option<UserRecord>> {
        let result = self.exec(&self.st.user_id_by_name, (username.to_lowercase(),)).await?;
        let rows = result.into_rows_result().map_err(unavailable)?;
        match rows.maybe_first_row::<(i64,)>().map_err(unavailable)? {
            Some((id,)) => self.user(Snowflake(id as u64)).await,
            None => Ok(None),
        }
    }

    async fn put_token(&self, token: &str, user: UserId) -> Result<()> {
        self.exec(&self.st.put_token, (token_key(token), big(user))).await.map(|_| ())
    }

    async fn token_user(&self, token: &str) -> Result<Option<UserId>> {
        let result = self.exec(&self.st.token_user, (token_key(token),)).await?;
        let rows = result.into_rows_result().map_err(unavailable)?;
        Ok(rows.maybe_first_row::<(i64,)>().map_err(unavailable)?.map(|(id,)| Snowflake(id as u64)))
    }

    async fn create_guild(&self, guild: Guild, owner: Member, channels: Vec<Channel>) -> Result<()> {
        // The guild row first, only if absent (a conditional batch cannot span partitions):
        // the id is ours once it is in. Then one logged batch: its channels and the owner's
        // membership appear together or not at all. Until that batch lands the guild has no
        // member, so nobody sees it; if the batch fails (it may still land after a timeout),
        // the row stays behind, unreachable: ids are never reused.
        let st = &self.st;
        let (g, u) = (big(guild.id), big(owner.user.id));
        if self.lwt(&st.insert_guild, (g, encode(&guild))).await?.is_some() {
            return Err(StoreError::Conflict(format!("guild id {} is taken", guild.id)));
        }
        let text = |s: String| CqlValue::Text(s);
        let mut batch = Batch::new(BatchType::Logged);
        let mut values: Vec<Vec<CqlValue>> = Vec::new();
        for c in &channels {
            batch.append_statement(st.insert_channel.clone());
            values.push(vec![CqlValue::BigInt(big(c.id)), text(encode(c))]);
            batch.append_statement(st.insert_guild_channel.clone());
            values.push(vec![CqlValue::BigInt(g), CqlValue::BigInt(big(c.id))]);
        }
        batch.append_statement(st.insert_member.clone());
        values.push(vec![CqlValue::BigInt(g), CqlValue::BigInt(u), text(encode(&owner))]);
        batch.append_statement(st.insert_user_guild.clone());
        values.push(vec![CqlValue::BigInt(u), CqlValue::BigInt(g)]);
        self.session.batch(&batch, values).await.map_err(unavailable)?;
        Ok(())
    }

    async fn guild(&self, id: GuildId) -> Result<Option<Guild>> {
        self.one_body(&self.st.guild, (big(id),)).await
    }

    async fn guild_channels(&self, guild: GuildId) -> Result<Vec<Channel>> {
        let ids = self.column::<i64>(&self.st.guild_channels, (big(guild),)).await?;
        self.channels_by_id(ids).await
    }

    async fn members(&self, guild: GuildId, after: Option<UserId>, limit: usize) -> Result<Vec<Member>> {
        let after = after.map(big).unwrap_or(-1);
        self.bodies(&self.st.members_after, (big(guild), after, limit_i32(limit))).await
    }

    async fn bans(&self, guild: GuildId, after: Option<UserId>, limit: usize) -> Result<Vec<Ban>> {
        if limit == 0 {
            return Ok(Vec::new()); // CQL refuses LIMIT 0
        }
        let after = after.map(big).unwrap_or(-1);
        self.bodies(&self.st.bans_after, (big(guild), after, limit_i32(limit))).await
    }

    async fn member(&self, guild: GuildId, user: UserId) -> Result<Option<Member>> {
        self.one_body(&self.st.member, (big(guild), big(user))).await
    }

    async fn user_guilds(&self, user: UserId) -> Result<Vec<GuildId>> {
        let ids = self.column::<i64>(&self.st.user_guilds, (big(user),)).await?;
        Ok(ids.into_iter().map(|id| Snowflake(id as u64)).collect())
    }

    async fn channel(&self, id: ChannelId) -> Result<Option<Channel>> {
        self.one_body(&self.st.channel, (big(id),)).await
    }

    async fn apply(&self, write: GuildWrite) -> Result<()> {
        self.apply_one(&write).await
    }

    /// Consecutive new messages (distinct rows) are written concurrently; anything else
    /// waits for what came before it, so the batch's order holds for every row.
    /// The log entries go first (one single-partition batch, with the head, and the log's
    /// pending mark beside it); no write is attempted unless both were stored.
    async fn apply_logged_batch(&self, writes: Vec<GuildWrite>, log: Vec<LogEntry>) -> LoggedBatch {
        if let Err(e) = self.append_log(&log).await {
            return LoggedBatch::failed(e, writes.len());
        }
        let mut out = Vec::with_capacity(writes.len());
        let mut i = 0;
        while i < writes.len() {
            let run = writes[i..].iter().take_while(|w| matches!(w, GuildWrite::PutMessage(_))).count();
            if run > 1 {
                let results =
                    futures_util::future::join_all(writes[i..i + run].iter().map(|w| self.apply_one(w))).await;
                out.extend(results);
                i += run;
            } else {
                out.push(self.apply_one(&writes[i]).await);
                i += 1;
            }
        }
        LoggedBatch { log: Ok(()), writes: out }
    }

    async fn create_invite(&self, invite: Invite) -> Result<()> {
        let ttl = i32::try_from(invite.max_age).unwrap_or(i32::MAX);
        let key = (big(invite.guild_id), invite.code.as_str());
        self.exec(&self.st.index_invite, (key.0, key.1, ttl)).await?;
        if self.lwt(&self.st.insert_invite, (&invite.code, encode(&invite), ttl)).await?.is_some() {
            // The code is another invite's; this guild's index row for it goes again.
            self.exec(&self.st.unindex_invite, key).await?;
            return Err(StoreError::Conflict("an invite has this code".into()));
        }
        Ok(())
    }

    async fn lease_node_id(&self, node: u16, holder: &str, ttl_ms: u64) -> Result<bool> {
        let ttl = i32::try_from(ttl_ms.div_ceil(1000).max(1)).unwrap_or(i32::MAX);
        let node = i32::from(node);
        if self.lwt(&self.st.take_node_lease, (node, holder, ttl)).await?.is_none() {
            return Ok(true);
        }
        Ok(self.lwt(&self.st.renew_node_lease, (ttl, holder, node, holder)).await?.is_none())
    }

    async fn use_invite(&self, code: &str, now_unix_ms: u64) -> Result<Option<Invite>> {
        self.take_invite_use(code, now_unix_ms, None).await
    }

    async fn delete_invite(&self, code: &str) -> Result<Option<Invite>> {
        let Some(seen) = self.one_body::<Invite>(&self.st.invite, (code,)).await? else { return Ok(None) };
        let deleted = self.lwt(&self.st.delete_invite, (code,)).await?.is_none();
        self.exec(&self.st.unindex_invite, (big(seen.guild_id), code)).await?;
        Ok(deleted.then_some(seen)) // else gone meanwhile
    }

    async fn guild_invites(&self, guild: GuildId, limit: usize) -> Result<Vec<Invite>> {
        let limit = i32::try_from(limit).unwrap_or(i32::MAX);
        let codes = self.column::<String>(&self.st.guild_invite_codes, (big(guild), limit)).await?;
        let mut bodies = Vec::with_capacity(codes.len());
        for chunk in codes.chunks(INVITE_READS_AT_ONCE) {
            let mut reads = Vec::with_capacity(chunk.len());
            for code in chunk {
                reads.push(self.invite(code));
            }
            bodies.extend(futures_util::future::try_join_all(reads).await?);
        }
        let mut out = Vec::with_capacity(codes.len());
        for (code, body) in codes.iter().zip(bodies) {
            match body {
                Some(invite) if invite.guild_id == guild => out.push(invite),
                // Left by a create that lost its code or did not finish, or expired.
                _ => self.exec(&self.st.unindex_invite, (big(guild), code.as_str())).await.map(|_| ())?,
            }
        }
        Ok(out)
    }

    async fn invite(&self, code: &str) -> Result<Option<Invite>> {
        self.one_body(&self.st.invite, (code,)).await
    }

    async fn get_or_create_dm(&self, a: User, b: User, new_id: ChannelId) -> Result<Channel> {
        let (low, high) = (a.id.0.min(b.id.0) as i64, a.id.0.max(b.id.0) as i64);
        let channel = Channel::dm(new_id, a.clone(), b.clone());
        // The channel row goes first, so whoever loses the race below finds it complete.
        self.put_channel(&channel).await?;
        match self.lwt(&self.st.claim_dm_pair, (low, high, big(new_id))).await? {
            None => {
                for user in [a.id, b.id] {
                    self.exec(&self.st.insert_user_dm, (big(user), big(new_id))).await?;
                }
                Ok(channel)
            }
            Some(existing) => {
                let _ = self.exec(&self.st.delete_channel, (big(new_id),)).await; // our unused row
                let id = existing
                    .columns
                    .iter()
                    .rev()
                    .find_map(|c| match c {
                        Some(CqlValue::BigInt(id)) => Some(*id),
                        _ => None,
                    })
                    .ok_or_else(|| StoreError::Corrupt("dm pair without channel".into()))?;
                // Make sure both users list it (the winner may have failed half-way).
                for user in [a.id, b.id] {
                    self.exec(&self.st.insert_user_dm, (big(user), id)).await?;
                }
                self.channel(Snowflake(id as u64))
                    .await?
                    .ok_or_else(|| StoreError::Corrupt("dm pair without channel".into()))
            }
        }
    }

    async fn user_dms(&self, user: UserId) -> Result<Vec<Channel>> {
        let ids = self.column::<i64>(&self.st.user_dms, (big(user),)).await?;
        self.channels_by_id(ids).await
    }

    async fn kv_get(&self, plugin: Snowflake, guild: GuildId, key: &str) -> Result<Option<Vec<u8>>> {
        let result = self.exec(&self.st.kv_get, (big(plugin), big(guild), key)).await?;
        let rows = result.into_rows_result().map_err(unavailable)?;
        Ok(rows.maybe_first_row::<(Vec<u8>,)>().map_err(unavailable)?.map(|(v,)| v))
    }

    async fn kv_put(&self, plugin: Snowflake, guild: GuildId, key: &str, value: Vec<u8>) -> Result<()> {
        self.exec(&self.st.kv_put, (big(plugin), big(guild), key, value)).await.map(|_| ())
    }

    async fn kv_delete(&self, plugin: Snowflake, guild: GuildId, key: &str) -> Result<()> {
        self.exec(&self.st.kv_delete, (big(plugin), big(guild), key)).await.map(|_| ())
    }

    async fn kv_keys(
        &self,
        plugin: Snowflake,
        guild: GuildId,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, usize)>> {
        let pager = self
            .session
            .execute_iter(self.st.kv_keys.clone(), (big(plugin), big(guild), prefix))
            .await
            .map_err(unavailable)?;
        let mut rows = pager.rows_stream::<(String, Vec<u8>)>().map_err(unavailable)?;
        let mut out = Vec::new();
        while let Some((key, value)) = rows.try_next().await.map_err(unavailable)? {
            if !key.starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((key, value.len()));
        }
        Ok(out)
    }

    async fn put_plugin(&self, plugin: PluginRecord) -> Result<()> {
        let values = (big(plugin.guild_id), big(plugin.id), encode(&plugin));
        self.exec(&self.st.put_plugin, values).await.map(|_| ())
    }

    async fn delete_plugin(&self, guild: GuildId, plugin: Snowflake) -> Result<()> {
        let found = self.exec(&self.st.plugin_exists, (big(guild), big(plugin))).await?;
        if found.into_rows_result().map_err(unavailable)?.rows_num() == 0 {
            return Err(StoreError::NotFound);
        }
        self.exec(&self.st.delete_plugin, (big(guild), big(plugin))).await?;
        // Its key-value store and timers go with it: two partition deletes. Were one lost
        // (the plugin row is already gone), the rows are unreachable, as plugin ids are
        // never reused.
        self.exec(&self.st.kv_clear, (big(plugin), big(guild))).await?;
        self.exec(&self.st.timers_clear, (big(plugin), big(guild))).await.map(|_| ())
    }

    async fn reaction_users(
        &self,
        channel: ChannelId,
        message: MessageId,
        emoji: &str,
        after: Option<UserId>,
        limit: usize,
    ) -> Result<Vec<UserId>> {
        if limit == 0 {
            return Ok(Vec::new()); // CQL refuses LIMIT 0
        }
        let after = after.map_or(i64::MIN, big);
        let values = (big(channel), big(message), emoji, after, limit.min(i32::MAX as usize) as i32);
        let ids: Vec<i64> = self.column(&self.st.reaction_users, values).await?;
        Ok(ids.into_iter().map(|id| Snowflake(id as u64)).collect())
    }

    async fn log_head(&self, key: LogKey) -> Result<u64> {
        let result = self.exec(&self.st.log_head, (big(key.id()),)).await?;
        let rows = result.into_rows_result().map_err(unavailable)?;
        let head = rows.maybe_first_row::<(Option<i64>,)>().map_err(unavailable)?.and_then(|(head,)| head);
        Ok(head.map_or(0, |h| h as u64))
    }

    async fn log_entries(&self, key: LogKey, after: u64, limit: usize) -> Result<Vec<LogEntry>> {
        let limit = i32::try_from(limit).unwrap_or(i32::MAX);
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let bodies: Vec<Option<String>> = self.column(&self.st.log_entries, (big(key.id()), after, limit)).await?;
        bodies.into_iter().flatten().map(|body| decode(&body)).collect()
    }

    async fn log_relayed(&self, key: LogKey, upto: u64, at_unix_ms: u64) -> Result<()> {
        let id = big(key.id());
        self.exec(&self.st.delete_log_upto, (id, i64::try_from(upto).unwrap_or(i64::MAX))).await?;
        if self.log_entries(key, 0, 1).await?.is_empty() {
            let at_us = (at_unix_ms.saturating_sub(1_000) * 1_000) as i64;
            self.exec(&self.st.unmark_log_pending, (at_us, log_part(key), id)).await?;
        }
        Ok(())
    }

    async fn logs_pending(&self, limit: usize) -> Result<Vec<LogKey>> {
        let mut out = Vec::new();
        for part in 0..LOG_PARTS {
            let left = i32::try_from(limit - out.len()).unwrap_or(i32::MAX);
            let pager =
                self.session.execute_iter(self.st.logs_pending.clone(), (part, left)).await.map_err(unavailable)?;
            let mut rows = pager.rows_stream::<(i64, i8)>().map_err(unavailable)?;
            while let Some((id, kind)) = rows.try_next().await.map_err(unavailable)? {
                let key = LogKey::from_parts(kind as u8, Snowflake(id as u64))
                    .ok_or_else(|| StoreError::Corrupt(format!("log kind {kind}")))?;
                out.push(key);
            }
            if out.len() >= limit {
                out.truncate(limit);
                break;
            }
        }
        Ok(out)
    }

    async fn reactions(&self, channel: ChannelId, message: MessageId, viewer: UserId) -> Result<Vec<Reaction>> {
        let pager = self
            .session
            .execute_iter(self.st.reactions.clone(), (big(channel), big(message)))
            .await
            .map_err(unavailable)?;
        let mut rows = pager.rows_stream::<(String, i64)>().map_err(unavailable)?;
        let mut out = Vec::new();
        while let Some((emoji, user)) = rows.try_next().await.map_err(unavailable)? {
            out.push((emoji, Snowflake(user as u64)));
            if out.len() >= MAX_COUNTED_REACTIONS {
                break;
            }
        }
        Ok(count_reactions(out, viewer))
    }

    async fn put_timer(&self, plugin: Snowflake, guild: GuildId, timer: PluginTimer) -> Result<()> {
        let values = (big(plugin), big(guild), timer.id as i64, encode(&timer));
        self.exec(&self.st.put_timer, values).await.map(|_| ())
    }

    async fn delete_timer(&self, plugin: Snowflake, guild: GuildId, id: u64) -> Result<()> {
        self.exec(&self.st.delete_timer, (big(plugin), big(guild), id as i64)).await.map(|_| ())
    }

    async fn timers(&self, plugin: Snowflake, guild: GuildId) -> Result<Vec<PluginTimer>> {
        self.bodies(&self.st.timers, (big(plugin), big(guild))).await
    }

    async fn add_audit_entry(&self, entry: AuditLogEntry) -> Result<()> {
        let values = (big(entry.guild_id), big(entry.id), encode(&entry));
        self.exec(&self.st.add_audit_entry, values).await.map(|_| ())
    }

    async fn audit_log(
        &self,
        guild: GuildId,
        before: Option<Snowflake>,
        limit: usize,
        at_unix_ms: u64,
    ) -> Result<Vec<AuditLogEntry>> {
        if limit == 0 {
            return Ok(Vec::new()); // CQL refuses LIMIT 0
        }
        let cutoff = audit_log_cutoff(at_unix_ms);
        let before = before.map_or(i64::MAX, big);
        let limit = limit.min(i32::MAX as usize) as i32;
        self.bodies(&self.st.audit_log, (big(guild), big(cutoff) - 1, before, limit)).await
    }

    async fn guild_plugins(&self, guild: GuildId) -> Result<Vec<PluginRecord>> {
        self.bodies(&self.st.guild_plugins, (big(guild),)).await
    }

    async fn put_component(&self, sha256: &str, bytes: Vec<u8>, at_unix_ms: u64) -> Result<()> {
        let at_us = i64::try_from(at_unix_ms.saturating_mul(1_000)).unwrap_or(i64::MAX);
        self.exec(&self.st.put_component, (sha256, bytes, at_us)).await.map(|_| ())
    }

    async fn collect_components(&self, stored_before_unix_ms: u64) -> Result<Vec<String>> {
        // Plugins first: a plugin stored after this scan has its component stored before
        // it, and so after the cutoff (the caller's grace time); the component scan then
        // sees that write, or the delete below is older than it.
        let plugins: Vec<PluginRecord> = self.bodies(&self.st.plugin_bodies, ()).await?;
        let in_use: std::collections::HashSet<String> = plugins.into_iter().map(|p| p.component_sha256).collect();
        let pager = self.session.execute_iter(self.st.component_writes.clone(), ()).await.map_err(unavailable)?;
        let rows = pager.rows_stream::<(String, Option<i64>)>().map_err(unavailable)?;
        let components: Vec<(String, Option<i64>)> = rows.try_collect().await.map_err(unavailable)?;
        let cutoff_us = i64::try_from(stored_before_unix_ms.saturating_mul(1_000)).unwrap_or(i64::MAX);
        let mut deleted = Vec::new();
        for (hash, written_us) in components {
            let written_us = written_us.unwrap_or(0);
            if !in_use.contains(&hash) && written_us < cutoff_us {
                self.exec(&self.st.delete_component, (written_us, hash.as_str())).await?;
                deleted.push(hash);
            }
        }
        Ok(deleted)
    }

    async fn component(&self, sha256: &str) -> Result<Option<Vec<u8>>> {
        let result = self.exec(&self.st.component, (sha256,)).await?;
        let rows = result.into_rows_result().map_err(unavailable)?;
        Ok(rows.maybe_first_row::<(Vec<u8>,)>().map_err(unavailable)?.map(|(b,)| b))
    }

    async fn message(&self, channel: ChannelId, id: MessageId) -> Result<Option<Message>> {
        let result = self.exec(&self.st.message, (big(channel), id.bucket() as i32, big(id))).await?;
        let rows = result.into_rows_result().map_err(unavailable)?;
        rows.maybe_first_row::<MessageRow>().map_err(unavailable)?.map(message_from_row).transpose()
    }

    async fn messages_in_bucket(
        &self,
        channel: ChannelId,
        bucket: u32,
        bounds: IdBounds,
        order: Order,
        limit: usize,
    ) -> Result<Vec<Message>> {
        let after = bounds.after.map(big).unwrap_or(i64::MIN);
        let before = bounds.before.map(big).unwrap_or(i64::MAX);
        let st = match order {
            Order::Desc => &self.st.bucket_desc,
            Order::Asc => &self.st.bucket_asc,
        };
        let values = (big(channel), bucket as i32, after, before, limit_i32(limit));
        let result = self.exec(st, values).await?;
        let rows = result.into_rows_result().map_err(unavailable)?;
        let rows = rows.rows::<MessageRow>().map_err(unavailable)?;
        rows.map(|r| r.map_err(unavailable).and_then(message_from_row)).collect()
    }

    async fn flush(&self) -> Result<()> {
        Ok(()) // every acknowledged write was acknowledged by the cluster at the set consistency
    }
}
