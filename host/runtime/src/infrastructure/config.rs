//! The runtime's settings, as they appear in the configuration file's `[guild]` and
//! `[plugins]` tables (the `guildhall` crate loads and checks the whole file).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuildConfig {
    /// Commands and session events queued for one guild actor.
    pub mailbox: usize,
    /// Writes a guild may have waiting for storage before new ones are refused (503).
    pub max_pending_writes: usize,
    /// Writes one storage batch carries.
    pub max_write_batch: usize,
    /// A guild actor with no session, no bot and nothing in progress for this long stops
    /// (its state is in storage; the next message starts it again). 0 keeps every actor.
    pub idle_evict_ms: u64,
}

impl Default for GuildConfig {
    fn default() -> Self {
        GuildConfig { mailbox: 4096, max_pending_writes: 8192, max_write_batch: 256, idle_evict_ms: 600_000 }
    }
}

/// Limits for guild plugins (each applies per instance or per call).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginsConfig {
    /// Time a moderator has per message (it is in the message path).
    pub moderation_deadline_ms: u64,
    /// Time a bot has per event for its own computation (host calls not counted).
    pub bot_event_deadline_ms: u64,
    /// Linear memory per instance.
    pub max_memory_mib: usize,
    /// Largest component accepted at upload.
    pub max_component_bytes: usize,
    /// Live instances the pool holds (each reserves address space and memory mappings).
    pub pool_instances: u32,
    /// Linear memory of all live instances together.
    pub max_total_memory_mib: usize,
    /// Linear memory of one guild's live instances together.
    pub max_guild_memory_mib: usize,
    /// Live instances of one guild: its share of `pool_instances`.
    pub max_guild_instances: usize,
    /// Components compiled at once (each compilation uses several threads).
    pub max_concurrent_compiles: usize,
    /// Compile each component in a process of its own (the host's binary), which is
    /// killed past `compile_time_limit_ms` and may use `compile_memory_mib` of address
    /// space; off: in the host, bounded only by the component's size and the turns.
    pub compile_in_own_process: bool,
    pub compile_time_limit_ms: u64,
    pub compile_memory_mib: u64,
    /// Where compiled components are kept, by content hash and engine build (empty: the
    /// data directory's `plugin-cache`). Hosts of one build may share one.
    pub cache_dir: String,
    /// Components that carry a JavaScript engine (componentize-js): their own limits.
    #[serde(deserialize_with = "javascript_limits")]
    pub javascript: InterpreterLimits,
    /// Components that carry CPython (componentize-py): their own limits.
    #[serde(deserialize_with = "python_limits")]
    pub python: InterpreterLimits,
    /// Pub/sub subjects every plugin of every guild may publish and subscribe to, as
    /// patterns (`alerts.>`); plugins name them `shared.alerts...`. Empty: nothing crosses
    /// guilds.
    pub shared_subjects: Vec<String>,
    /// Where a cluster runs a guild's bots: `guild` (beside the guild, on its node) or
    /// `spread` (each on the ring owner of its plugin id, receiving the guild's events
    /// over the bus). A single host runs them beside their guild either way.
    pub bot_placement: BotPlacementMode,
    /// A stored component no plugin uses is deleted once it has gone unused and unstored
    /// this long; unused components are looked for this often.
    pub unused_component_grace_s: u64,
    /// How long a bot's action (a send, an edit, a reaction) waits for its guild actor: the
    /// server sets it from `rest.actor_timeout_ms`, so a bot waits as long as a REST request.
    /// Not a key of its own.
    #[serde(skip)]
    pub guild_call_timeout_ms: u64,
}

/// The limits of plugins in a language whose component carries its interpreter. Which
/// language a component is in is what it declares (its producers section): any plugin may
/// claim one and get these limits, so set them as for any plugin of this host.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct InterpreterLimits {
    /// Accept such components at all.
    pub enabled: bool,
    /// Linear memory per instance.
    pub max_memory_mib: usize,
    /// Largest component accepted at upload.
    pub max_component_bytes: usize,
}

impl InterpreterLimits {
    fn from_engine(limits: guildhall_plugins::InstanceLimits) -> InterpreterLimits {
        InterpreterLimits {
            enabled: true,
            max_memory_mib: limits.max_memory_bytes >> 20,
            max_component_bytes: limits.max_component_bytes,
        }
    }

    /// The engine's limits for these components (`None` if they are refused); `like` gives
    /// what the configuration does not set.
    pub fn engine_limits(&self, like: guildhall_plugins::InstanceLimits) -> Option<guildhall_plugins::InstanceLimits> {
        self.enabled.then_some(guildhall_plugins::InstanceLimits {
            max_memory_bytes: self.max_memory_mib << 20,
            max_component_bytes: self.max_component_bytes,
            ..like
        })
    }
}

/// A configuration's `[plugins.javascript]` or `[plugins.python]`: what it sets, over the
/// language's own defaults.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InterpreterLimitsSet {
    enabled: Option<bool>,
    max_memory_mib: Option<usize>,
    max_component_bytes: Option<usize>,
}

impl InterpreterLimitsSet {
    fn over(self, defaults: InterpreterLimits) -> InterpreterLimits {
        InterpreterLimits {
            enabled: self.enabled.unwrap_or(defaults.enabled),
            max_memory_mib: self.max_memory_mib.unwrap_or(defaults.max_memory_mib),
            max_component_bytes: self.max_component_bytes.unwrap_or(defaults.max_component_bytes),
        }
    }
}

fn javascript_limits<'de, D: serde::Deserializer<'de>>(d: D) -> Result<InterpreterLimits, D::Error> {
    let defaults = InterpreterLimits::from_engine(guildhall_plugins::InstanceLimits::JAVASCRIPT);
    Ok(InterpreterLimitsSet::deserialize(d)?.over(defaults))
}

fn python_limits<'de, D: serde::Deserializer<'de>>(d: D) -> Result<InterpreterLimits, D::Error> {
    let defaults = InterpreterLimits::from_engine(guildhall_plugins::InstanceLimits::PYTHON);
    Ok(InterpreterLimitsSet::deserialize(d)?.over(defaults))
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BotPlacementMode {
    #[default]
    Guild,
    Spread,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            moderation_deadline_ms: 5,
            bot_event_deadline_ms: 50,
            max_memory_mib: 16,
            max_component_bytes: 8 << 20,
            pool_instances: 2_000,
            max_total_memory_mib: 4096,
            max_guild_memory_mib: 256,
            max_guild_instances: 64,
            max_concurrent_compiles: 1,
            compile_in_own_process: true,
            compile_time_limit_ms: 120_000,
            compile_memory_mib: 3_072,
            cache_dir: String::new(),
            javascript: InterpreterLimits::from_engine(guildhall_plugins::InstanceLimits::JAVASCRIPT),
            python: InterpreterLimits::from_engine(guildhall_plugins::InstanceLimits::PYTHON),
            shared_subjects: Vec::new(),
            bot_placement: BotPlacementMode::Guild,
            unused_component_grace_s: 3_600,
            guild_call_timeout_ms: 5_000,
        }
    }
}
