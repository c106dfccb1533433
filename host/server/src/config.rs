//! Configuration: defaults, then a TOML file (`--config`), then `GUILDHALL_*` environment
//! variables, then command-line flags; each layer overrides the one before.
//!
//! Environment keys map onto the file's keys: `GUILDHALL_LISTEN` sets `listen`,
//! `GUILDHALL_GATEWAY__HEARTBEAT_INTERVAL_MS` sets `gateway.heartbeat_interval_ms`
//! (a double underscore descends into a table).

use std::net::SocketAddr;
use std::path::PathBuf;

use guildhall_core::ratelimit::Rate;
use guildhall_runtime::infrastructure::config::{GuildConfig, PluginsConfig};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    /// `embedded` (a redb file under `data_dir`) or `scylla://HOST:PORT[,...]/KEYSPACE[?...]`.
    pub storage: String,
    pub data_dir: PathBuf,
    /// The gateway URL clients are told to use; derived from `listen` when empty.
    pub public_gateway_url: String,
    pub ids: IdsConfig,
    pub cluster: ClusterConfig,
    pub gateway: GatewayConfig,
    pub rest: RestConfig,
    pub rate_limits: RateLimitsConfig,
    pub quotas: QuotasConfig,
    pub guild: GuildConfig,
    pub data: DataConfig,
    pub plugins: PluginsConfig,
    pub search: SearchConfig,
}

/// Message search (`{data_dir}/search`): the indexing worker inside `serve` on a single host.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SearchConfig {
    /// Index messages and answer searches.
    pub enabled: bool,
    /// Cells (tantivy indexes) guilds and users' DMs are spread over by the hash of their id.
    /// In a cluster, every node and indexing worker must have the same `cells` and
    /// `dedicated_guilds` (the stream records them); on one host, a change re-indexes.
    pub cells: usize,
    /// Guilds (ids) with a cell of their own, after the hashed ones: very large ones.
    pub dedicated_guilds: Vec<guildhall_core::Snowflake>,
    /// Most stream entries one indexing batch takes (one commit per cell it touches).
    pub max_batch: usize,
    /// How long a batch waits for more entries after its first.
    pub linger_ms: u64,
    /// While entries come at 200/s or more, how long after a commit a batch waits for more
    /// entries at least (each commit fsyncs; a quiet guild's message is committed after
    /// `linger_ms`).
    pub commit_interval_ms: u64,
    /// A guild's indexer plugin's time for one batch.
    pub indexer_deadline_ms: u64,
    /// Indexing threads run in the background (Linux's SCHED_IDLE): they yield the cores to
    /// request handling at once, and the index lags while the host is saturated, catching up
    /// after.
    pub background: bool,
    /// In a cluster, how long a search waits for the indexing worker that owns its cell.
    pub remote_timeout_ms: u64,
}

impl SearchConfig {
    /// How guilds and DMs are spread over cells.
    pub fn layout(&self) -> guildhall_core::stream::CellLayout {
        let hashed = u32::try_from(self.cells).unwrap_or(u32::MAX);
        guildhall_core::stream::CellLayout::new(hashed, &self.dedicated_guilds)
    }
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            enabled: true,
            cells: 4,
            dedicated_guilds: Vec::new(),
            max_batch: 32_768,
            linger_ms: 20,
            commit_interval_ms: 500,
            indexer_deadline_ms: 200,
            background: true,
            remote_timeout_ms: 5000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// Read-routing workers; 0 means one per core.
    pub workers: usize,
    /// Coalesce identical reads in flight (off only to measure what it saves).
    pub coalescing: bool,
    /// How long a finished read's answer may still be shared by identical reads, while no
    /// write to its channel was acknowledged since it started (0: only reads in flight).
    pub linger_ms: u64,
    /// Every storage call's deadline: past it the call fails as unavailable (503 for a
    /// request), so a hung database never holds a guild or a request forever.
    pub call_timeout_ms: u64,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig { workers: 0, coalescing: true, linger_ms: 50, call_timeout_ms: 5000 }
    }
}

/// Running as one node of a cluster (`--cluster nats://...`); empty `nats` runs alone.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// NATS server URL(s), comma-separated; empty: a single node (no cluster).
    pub nats: String,
    /// Names the cluster: its subjects and buckets, so several can share a NATS server.
    pub name: String,
    /// This node's id (0..1024, its snowflake datacenter and worker); -1 takes a free one.
    pub node_id: i32,
    /// How long a node stays a member without renewing its lease: about the fail-over
    /// time when a node dies. A NATS outage longer than this costs the nodes their
    /// leases; they take their ids again when it is back and restart their actors.
    pub lease_ms: u64,
    /// On SIGTERM, how long a node waits for its sessions to resume on other nodes (after
    /// handing its guilds off) before it stops; orchestrators' grace periods must be longer.
    pub drain_ms: u64,
    /// Append every actor ownership this node takes and gives back to
    /// `{data_dir}/actor-ownership.log` (an audit trail: one guild never on two nodes).
    pub audit_actors: bool,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            nats: String::new(),
            name: "guildhall".into(),
            node_id: -1,
            lease_ms: 3_000,
            drain_ms: 15_000,
            audit_actors: false,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdsConfig {
    pub datacenter: u8,
    pub worker: u8,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    pub heartbeat_interval_ms: u64,
    /// Largest client frame (after reassembly), as Discord's 4096-byte limit.
    pub max_frame_bytes: usize,
    /// Dispatches queued for one session before it is disconnected as too slow.
    pub session_queue: usize,
    pub replay_max_events: usize,
    pub replay_max_bytes: usize,
    pub resume_window_ms: u64,
    pub rate_limit_events: u32,
    pub rate_limit_window_ms: u64,
    /// A write to a client that takes longer than this ends the connection.
    pub write_timeout_ms: u64,
    /// A connection without IDENTIFY or RESUME this long is closed (4003).
    pub identify_timeout_ms: u64,
    pub max_connections: usize,
    /// Relays: the tasks that fan guilds' events out to this node's sessions (each session
    /// belongs to one); 0 means one per core.
    pub relays: usize,
    /// Events waiting for a relay; past it the guilds that feed it wait (their senders too).
    pub relay_queue: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RestConfig {
    pub max_body_bytes: usize,
    /// How long a request waits for a guild actor before answering 503.
    pub actor_timeout_ms: u64,
    /// How long a request body may take to arrive, whole; past it 408 (a slow body would
    /// otherwise hold its connection for as long as the client likes).
    pub body_timeout_ms: u64,
    /// Argon2 password hashes (register, login) running at once; 0 means one per core.
    pub password_hashes_running: usize,
    /// Password hashes waiting for a turn; beyond, 503 at once.
    pub password_hashes_waiting: usize,
}

/// Limits per user and per IP address, Discord's by default (see `crate::limits`). Rates are
/// written `LIMIT/DURATION` (`5/5s`). Route buckets count per user (per IP address without
/// a token) and per channel or guild in the path, as Discord's do.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitsConfig {
    /// Off: no REST limits, headers, gateway connect limits or IDENTIFY spacing (the daily
    /// session-start budget stays).
    pub enabled: bool,
    /// Requests per user, all routes together (Discord: 50 per second per bot).
    pub global: Rate,
    /// Requests without a valid token per IP address, all routes together.
    pub per_ip: Rate,
    /// 401, 403 and 429 answers per IP address; past it, every request from the address is
    /// refused until the window closes (Discord: 10,000 per 10 minutes).
    pub invalid_requests: Rate,
    /// Register and login, per IP address.
    pub auth: Rate,
    pub message_create: Rate,
    pub message_edit: Rate,
    pub message_delete: Rate,
    /// Adding and removing one's own reactions.
    pub reactions: Rate,
    pub typing: Rate,
    /// Message history, single messages and reaction lists.
    pub message_reads: Rate,
    /// Message searches, per guild or channel.
    pub search: Rate,
    /// New guilds, per user.
    pub guild_create: Rate,
    /// Guild settings, channels, roles, members, bans, overwrites and plugins, per guild.
    pub guild_manage: Rate,
    pub invite_create: Rate,
    /// `GET /invites/{code}`, per user or IP address (codes cannot be guessed by trying).
    pub invite_lookup: Rate,
    pub invite_accept: Rate,
    /// Opening DM channels, per user.
    pub dm_open: Rate,
    /// Plugin uploads (`POST /guilds/{id}/plugins`) per user, all guilds together: each
    /// may take seconds of the compiler.
    pub plugin_upload: Rate,
    /// Gateway connections opened per IP address.
    pub gateway_connects: Rate,
    /// IDENTIFYs per user: `/gateway/bot`'s `max_concurrency` is the limit, the window
    /// Discord's 5 s; an IDENTIFY beyond it waits for the next window.
    pub identify: Rate,
    /// Op 8 (Request Guild Members) per user per guild; past it the session gets Discord's
    /// RATE_LIMITED dispatch instead of member chunks.
    pub member_requests: Rate,
    /// Open TCP connections (HTTP and WebSocket) per IP address; 0: no limit but
    /// `gateway.max_connections`.
    pub connections_per_ip: usize,
    /// Rate windows kept in memory at most (each ~100 bytes); past it, new clients get 429
    /// until windows close.
    pub max_tracked: usize,
}

/// How much one user or guild may hold, Discord's by default; past a quota the request
/// gets Discord's "Maximum number of ... reached" error (HTTP 400, code 300xx).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotasConfig {
    /// Guilds a user may be in, created or joined (30001).
    pub guilds_per_user: usize,
    /// Channels in a guild (30013).
    pub channels_per_guild: usize,
    /// Different emojis on one message (30010).
    pub reactions_per_message: usize,
    /// Plugins installed in one guild: each runs on every message or event.
    pub plugins_per_guild: usize,
    /// Usable invites of one guild (30016); expired and used-up ones do not count.
    pub invites_per_guild: usize,
}

impl Default for QuotasConfig {
    fn default() -> Self {
        QuotasConfig {
            guilds_per_user: 100,
            channels_per_guild: 500,
            reactions_per_message: 20,
            plugins_per_guild: 25,
            invites_per_guild: 1_000,
        }
    }
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        RateLimitsConfig {
            enabled: true,
            global: Rate::new(50, 1_000),
            per_ip: Rate::new(50, 1_000),
            invalid_requests: Rate::new(10_000, 600_000),
            auth: Rate::new(10, 60_000),
            message_create: Rate::new(5, 5_000),
            message_edit: Rate::new(5, 5_000),
            message_delete: Rate::new(5, 1_000),
            reactions: Rate::new(1, 250),
            typing: Rate::new(5, 5_000),
            message_reads: Rate::new(5, 5_000),
            search: Rate::new(10, 10_000),
            guild_create: Rate::new(10, 3_600_000),
            guild_manage: Rate::new(10, 10_000),
            invite_create: Rate::new(5, 15_000),
            invite_lookup: Rate::new(10, 10_000),
            invite_accept: Rate::new(5, 60_000),
            dm_open: Rate::new(10, 10_000),
            plugin_upload: Rate::new(10, 600_000),
            gateway_connects: Rate::new(120, 60_000),
            identify: Rate::new(1, 5_000),
            member_requests: Rate::new(10, 30_000),
            connections_per_ip: 1_000,
            max_tracked: 1_000_000,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".parse().expect("valid address"),
            storage: "embedded".into(),
            data_dir: PathBuf::from("./data"),
            public_gateway_url: String::new(),
            ids: IdsConfig::default(),
            cluster: ClusterConfig::default(),
            gateway: GatewayConfig::default(),
            rest: RestConfig::default(),
            rate_limits: RateLimitsConfig::default(),
            quotas: QuotasConfig::default(),
            guild: GuildConfig::default(),
            data: DataConfig::default(),
            plugins: PluginsConfig::default(),
            search: SearchConfig::default(),
        }
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        // A session's own settings default to the core's, which say Discord's numbers once.
        let session = guildhall_core::session::SessionConfig::default();
        GatewayConfig {
            heartbeat_interval_ms: session.heartbeat_interval_ms,
            max_frame_bytes: 4096,
            session_queue: 1024,
            replay_max_events: session.replay_max_events,
            replay_max_bytes: session.replay_max_bytes,
            resume_window_ms: session.resume_window_ms,
            rate_limit_events: session.rate_limit_events,
            rate_limit_window_ms: session.rate_limit_window_ms,
            write_timeout_ms: 10_000,
            identify_timeout_ms: session.identify_timeout_ms,
            max_connections: 15_000,
            relays: 0,
            relay_queue: 4096,
        }
    }
}

impl Default for RestConfig {
    fn default() -> Self {
        RestConfig {
            max_body_bytes: 64 * 1024,
            actor_timeout_ms: 5_000,
            body_timeout_ms: 10_000,
            password_hashes_running: 0,
            password_hashes_waiting: 64,
        }
    }
}

impl Config {
    /// Builds the configuration from an optional file and the process environment.
    pub fn load(file: Option<&std::path::Path>) -> Result<Config, String> {
        let mut root = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
                text.parse::<toml::Table>().map_err(|e| format!("parsing {}: {e}", path.display()))?
            }
            None => toml::Table::new(),
        };
        let known = toml::Value::try_from(Config::default()).map_err(|e| e.to_string())?;
        let mut vars: Vec<(String, String)> = std::env::vars().filter(|(k, _)| k.starts_with("GUILDHALL_")).collect();
        vars.sort();
        for (key, value) in vars {
            let path: Vec<String> = key["GUILDHALL_".len()..].split("__").map(|s| s.to_lowercase()).collect();
            if !is_known(&known, &path) {
                // GUILDHALL_CONFIG (the CLI's) and tooling variables share the prefix.
                if path != ["config"] {
                    tracing::warn!(variable = %key, "ignoring an environment variable that names no configuration key");
                }
                continue;
            }
            set_path(&mut root, &path, parse_scalar(&value)).map_err(|e| format!("{key}: {e}"))?;
        }
        let mut config: Config =
            toml::Value::Table(root).try_into().map_err(|e| format!("invalid configuration: {e}"))?;
        config.plugins.guild_call_timeout_ms = config.rest.actor_timeout_ms;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.ids.datacenter > 31 || self.ids.worker > 31 {
            return Err("ids.datacenter and ids.worker must be 0..=31".into());
        }
        let c = &self.cluster;
        if !c.nats.is_empty() {
            if !self.storage.starts_with("scylla://") {
                return Err(format!(
                    "a cluster needs shared storage: --cluster with --storage {:?} is refused; use scylla://HOST:PORT/KEYSPACE",
                    self.storage
                ));
            }
            if !(-1..1024).contains(&c.node_id) {
                return Err("cluster.node_id must be -1 (take a free one) or 0..=1023".into());
            }
            if c.lease_ms < 500 {
                return Err("cluster.lease_ms must be at least 500".into());
            }
            let name_ok =
                !c.name.is_empty() && c.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !name_ok {
                return Err("cluster.name must be letters, digits, '_' or '-'".into());
            }
        }
        if self.gateway.heartbeat_interval_ms < 100
            || self.gateway.session_queue == 0
            || self.gateway.relay_queue == 0
            || self.guild.mailbox == 0
        {
            return Err("gateway.heartbeat_interval_ms >= 100, queues > 0".into());
        }
        if self.data.linger_ms > 1000 {
            return Err("data.linger_ms must be at most 1000".into());
        }
        if !(100..=600_000).contains(&self.data.call_timeout_ms) {
            return Err("data.call_timeout_ms must be 100..=600000".into());
        }
        let p = &self.plugins;
        if p.compile_time_limit_ms < 1_000 || p.compile_memory_mib < 256 {
            return Err("plugins.compile_time_limit_ms must be at least 1000, plugins.compile_memory_mib 256".into());
        }
        if p.unused_component_grace_s == 0 {
            return Err("plugins.unused_component_grace_s must be at least 1".into());
        }
        if !(1..=1000).contains(&p.moderation_deadline_ms) || !(1..=10_000).contains(&p.bot_event_deadline_ms) {
            return Err(
                "plugins.moderation_deadline_ms must be 1..=1000, plugins.bot_event_deadline_ms 1..=10000".into()
            );
        }
        if !(1..=4096).contains(&p.max_memory_mib)
            || p.pool_instances == 0
            || p.max_component_bytes == 0
            || p.max_concurrent_compiles == 0
            || p.max_guild_instances == 0
        {
            return Err("plugins.max_memory_mib must be 1..=4096; pool_instances, max_component_bytes, \
                        max_concurrent_compiles and max_guild_instances > 0"
                .into());
        }
        let mut largest_instance = p.max_memory_mib;
        for (name, l) in [("javascript", &p.javascript), ("python", &p.python)] {
            if !(1..=4096).contains(&l.max_memory_mib) || l.max_component_bytes == 0 {
                return Err(format!("plugins.{name}.max_memory_mib must be 1..=4096, max_component_bytes > 0"));
            }
            if l.enabled {
                largest_instance = largest_instance.max(l.max_memory_mib);
            }
        }
        // A guild's share below one instance's limit would stop a memory bomb as
        // backpressure (never disabled) instead of at its own limit (a fault).
        if p.max_guild_memory_mib < largest_instance || p.max_total_memory_mib < p.max_guild_memory_mib {
            return Err(format!(
                "plugins.max_guild_memory_mib must be at least the largest max_memory_mib of an accepted language \
                 ({largest_instance}), and plugins.max_total_memory_mib at least plugins.max_guild_memory_mib"
            ));
        }
        guildhall_runtime::plugin_runners::pubsub::check_grants(&p.shared_subjects)?;
        if self.rate_limits.max_tracked < 1024 {
            return Err("rate_limits.max_tracked must be at least 1024".into());
        }
        Ok(())
    }

    pub fn gateway_url(&self) -> String {
        if self.public_gateway_url.is_empty() {
            format!("ws://{}", self.listen)
        } else {
            self.public_gateway_url.trim_end_matches('/').to_owned()
        }
    }

    pub fn session_config(&self) -> guildhall_core::session::SessionConfig {
        let g = &self.gateway;
        guildhall_core::session::SessionConfig {
            heartbeat_interval_ms: g.heartbeat_interval_ms,
            replay_max_events: g.replay_max_events,
            replay_max_bytes: g.replay_max_bytes,
            rate_limit_events: g.rate_limit_events,
            rate_limit_window_ms: g.rate_limit_window_ms,
            resume_window_ms: g.resume_window_ms,
            identify_timeout_ms: g.identify_timeout_ms,
        }
    }
}

fn is_known(defaults: &toml::Value, path: &[String]) -> bool {
    match path.split_first() {
        None => true,
        Some((first, rest)) => defaults.get(first).is_some_and(|v| is_known(v, rest)),
    }
}

/// An environment value as TOML: integers, booleans and arrays (`["a.>", "b"]`) typed,
/// anything else a string.
fn parse_scalar(value: &str) -> toml::Value {
    if let Ok(i) = value.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    if value.starts_with('[') {
        if let Some(array) = format!("v = {value}").parse::<toml::Table>().ok().and_then(|mut t| t.remove("v")) {
            return array;
        }
    }
    match value {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(value.to_owned()),
    }
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    match path {
        [] => Err("empty key".into()),
        [last] => {
            table.insert(last.clone(), value);
            Ok(())
        }
        [first, rest @ ..] => {
            let entry = table.entry(first.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(t) => set_path(t, rest, value),
                _ => Err(format!("{first} is not a table")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bot's action waits for its guild as long as a REST request does: one setting.
    #[test]
    fn bots_wait_for_their_guild_as_long_as_requests_do() {
        let path = std::env::temp_dir().join(format!("guildhall-config-{}.toml", std::process::id()));
        std::fs::write(&path, "[rest]\nactor_timeout_ms = 1234\n").unwrap();
        let config = Config::load(Some(&path)).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!((config.rest.actor_timeout_ms, config.plugins.guild_call_timeout_ms), (1234, 1234));
        assert_eq!(Config::default().plugins.guild_call_timeout_ms, Config::default().rest.actor_timeout_ms);
    }

    /// The gateway's defaults for a session are the core's: a setting made in one place.
    #[test]
    fn a_sessions_defaults_are_the_cores() {
        assert_eq!(Config::default().session_config(), guildhall_core::session::SessionConfig::default());
    }

    #[test]
    fn nested_keys_and_types() {
        let mut t = toml::Table::new();
        set_path(&mut t, &["gateway".into(), "heartbeat_interval_ms".into()], parse_scalar("500")).unwrap();
        set_path(&mut t, &["listen".into()], parse_scalar("127.0.0.1:9999")).unwrap();
        let c: Config = toml::Value::Table(t).try_into().unwrap();
        assert_eq!(c.gateway.heartbeat_interval_ms, 500);
        assert_eq!(c.listen.port(), 9999);
        assert_eq!(c.gateway.max_frame_bytes, 4096, "untouched keys keep defaults");
    }

    #[test]
    fn lists_come_from_the_environment_as_toml_arrays() {
        let defaults = toml::Value::try_from(Config::default()).unwrap();
        let key = ["plugins".to_owned(), "shared_subjects".to_owned()];
        assert!(is_known(&defaults, &key));
        let mut t = toml::Table::new();
        set_path(&mut t, &key, parse_scalar(r#"["alerts.>", "scores.*"]"#)).unwrap();
        let c: Config = toml::Value::Table(t).try_into().unwrap();
        assert_eq!(c.plugins.shared_subjects, ["alerts.>", "scores.*"]);
        assert!(c.validate().is_ok());
        assert_eq!(parse_scalar("[not toml"), toml::Value::String("[not toml".into()), "a string after all");
        let mut bad = Config::default();
        bad.plugins.shared_subjects = vec!["alerts.>.x".into()];
        assert!(bad.validate().unwrap_err().contains("plugins.shared_subjects"));
    }

    #[test]
    fn known_paths() {
        let defaults = toml::Value::try_from(Config::default()).unwrap();
        let path = |p: &str| p.split('.').map(String::from).collect::<Vec<_>>();
        assert!(is_known(&defaults, &path("gateway.heartbeat_interval_ms")));
        assert!(is_known(&defaults, &path("storage")));
        assert!(!is_known(&defaults, &path("test_cql")));
        assert!(!is_known(&defaults, &path("gateway.nope")));
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let t: toml::Table = "lisen = \"x\"".parse().unwrap();
        assert!(toml::Value::Table(t).try_into::<Config>().is_err());
        let t: toml::Table = "[plugins.python]\nmax_memory = 1".parse().unwrap();
        assert!(toml::Value::Table(t).try_into::<Config>().is_err(), "also in an interpreter's limits");
    }

    #[test]
    fn an_interpreters_limits_keep_that_languages_defaults_for_what_is_not_set() {
        let t: toml::Table = "[plugins.python]\nmax_memory_mib = 200".parse().unwrap();
        let config: Config = toml::Value::Table(t).try_into().unwrap();
        let defaults = Config::default().plugins;
        let python = config.plugins.python;
        assert_eq!((python.enabled, python.max_memory_mib), (true, 200));
        assert_eq!(python.max_component_bytes, defaults.python.max_component_bytes, "Python's own default");
        assert_ne!(defaults.python.max_component_bytes, defaults.javascript.max_component_bytes);
        assert_eq!(config.plugins.javascript.max_memory_mib, defaults.javascript.max_memory_mib);
        // The printed defaults read back the same.
        let printed = toml::Value::try_from(Config::default()).unwrap();
        let again: Config = printed.try_into().unwrap();
        assert_eq!(again.plugins.python.max_memory_mib, defaults.python.max_memory_mib);
    }
}
