//! Versioned schema migrations, applied at start-up. Every statement is idempotent
//! (`IF NOT EXISTS`), and a version is recorded only after all its statements succeeded,
//! so a start-up interrupted half-way simply runs again.
//!
//! Tables are designed query-first: one table per way the host reads.

/// (version, description, statements). `{ks}` is replaced by the keyspace.
pub const MIGRATIONS: &[(i32, &str, &[&str])] = &[(
    1,
    "initial schema",
    &[
        // The seed's table, keyed exactly as Discord's: one partition per channel and
        // 10-day bucket, newest first. `body` is the full message object (JSON);
        // `author_id` and `content` are kept as plain columns as in the seed.
        "CREATE TABLE IF NOT EXISTS {ks}.messages (
            channel_id bigint, bucket int, message_id bigint,
            author_id bigint, content text, body text,
            PRIMARY KEY ((channel_id, bucket), message_id)
        ) WITH CLUSTERING ORDER BY (message_id DESC)",
        "CREATE TABLE IF NOT EXISTS {ks}.users (id bigint PRIMARY KEY, record text)",
        // Username uniqueness through a lightweight transaction on this table.
        "CREATE TABLE IF NOT EXISTS {ks}.users_by_name (username text PRIMARY KEY, id bigint)",
        "CREATE TABLE IF NOT EXISTS {ks}.tokens (token_sha256 text PRIMARY KEY, user_id bigint)",
        "CREATE TABLE IF NOT EXISTS {ks}.guilds (id bigint PRIMARY KEY, body text)",
        "CREATE TABLE IF NOT EXISTS {ks}.channels (id bigint PRIMARY KEY, body text)",
        "CREATE TABLE IF NOT EXISTS {ks}.channels_by_guild (
            guild_id bigint, channel_id bigint, PRIMARY KEY (guild_id, channel_id))",
        "CREATE TABLE IF NOT EXISTS {ks}.members (
            guild_id bigint, user_id bigint, body text, PRIMARY KEY (guild_id, user_id))",
        "CREATE TABLE IF NOT EXISTS {ks}.guilds_by_user (
            user_id bigint, guild_id bigint, PRIMARY KEY (user_id, guild_id))",
        "CREATE TABLE IF NOT EXISTS {ks}.invites (code text PRIMARY KEY, body text)",
        // One DM channel per pair of users (low id, high id), claimed with a transaction.
        "CREATE TABLE IF NOT EXISTS {ks}.dm_pairs (low bigint, high bigint, channel_id bigint, PRIMARY KEY ((low, high)))",
        "CREATE TABLE IF NOT EXISTS {ks}.dms_by_user (
            user_id bigint, channel_id bigint, PRIMARY KEY (user_id, channel_id))",
    ],
), (
    2,
    "plugins",
    &[
        "CREATE TABLE IF NOT EXISTS {ks}.plugins (
            guild_id bigint, plugin_id bigint, body text, PRIMARY KEY (guild_id, plugin_id))",
        // Component bytes by content hash, shared by every guild installing them.
        "CREATE TABLE IF NOT EXISTS {ks}.components (sha256 text PRIMARY KEY, bytes blob)",
    ],
), (
    3,
    "plugin key-value stores",
    &["CREATE TABLE IF NOT EXISTS {ks}.plugin_kv (
            plugin_id bigint, guild_id bigint, key text, value blob, PRIMARY KEY ((plugin_id, guild_id), key))"],
), (
    4,
    "bot timers and audit logs",
    &[
        "CREATE TABLE IF NOT EXISTS {ks}.plugin_timers (
            plugin_id bigint, guild_id bigint, timer_id bigint, body text,
            PRIMARY KEY ((plugin_id, guild_id), timer_id))",
        // One partition per guild, newest first. Entries expire after the 45 days of
        // retention (AUDIT_LOG_RETENTION_DAYS); time-window compaction drops whole expired
        // SSTables instead of compacting tombstones.
        "CREATE TABLE IF NOT EXISTS {ks}.audit_log (
            guild_id bigint, entry_id bigint, body text, PRIMARY KEY (guild_id, entry_id)
        ) WITH CLUSTERING ORDER BY (entry_id DESC)
          AND default_time_to_live = 3888000
          AND compaction = {'class': 'TimeWindowCompactionStrategy', 'compaction_window_unit': 'DAYS', 'compaction_window_size': 1}",
    ],
), (
    5,
    "reactions",
    // One partition per message: its reactions are read together (counts) and deleted
    // with it (one partition delete).
    &["CREATE TABLE IF NOT EXISTS {ks}.reactions (
            channel_id bigint, message_id bigint, emoji text, user_id bigint,
            PRIMARY KEY ((channel_id, message_id), emoji, user_id))"],
), (
    6,
    "bans",
    // One partition per guild, in user id order (listed by pages; loaded by the guild actor).
    &["CREATE TABLE IF NOT EXISTS {ks}.bans (
            guild_id bigint, user_id bigint, body text, PRIMARY KEY (guild_id, user_id))"],
), (
    7,
    "node id leases",
    // Which host issues ids as node N (a single host on shared storage; a cluster leases
    // its node ids in NATS). Rows expire with their TTL; every write is a transaction.
    &["CREATE TABLE IF NOT EXISTS {ks}.node_leases (node int PRIMARY KEY, holder text)"],
), (
    8,
    "invites by guild",
    // Every invite's code under its guild, for the guild's quota and its invite lists.
    // Invites made before this version are not in it; they are not counted or listed.
    &["CREATE TABLE IF NOT EXISTS {ks}.invites_by_guild (
            guild_id bigint, code text, PRIMARY KEY (guild_id, code))"],
), (
    9,
    "message event log",
    &[
        // The outbox of message events (`guildhall_core::stream`): one partition per log (a
        // guild's or a DM channel's), entries in seq order until the stream has them; the
        // head (the highest seq ever stored) is static, so it outlives the entries.
        "CREATE TABLE IF NOT EXISTS {ks}.event_log (
            log_id bigint, seq bigint, head bigint static, entry text, PRIMARY KEY (log_id, seq))",
        // Which logs hold entries, spread over LOG_PARTS partitions.
        "CREATE TABLE IF NOT EXISTS {ks}.event_logs_pending (
            part int, log_id bigint, kind tinyint, PRIMARY KEY (part, log_id))",
    ],
)];
