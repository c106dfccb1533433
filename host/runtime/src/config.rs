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
    /// Pub/sub subjects every plugin of every guild may publish and subscribe to, as
    /// patterns (`alerts.>`); plugins name them `shared.alerts...`. Empty: nothing crosses
    /// guilds.
    pub shared_subjects: Vec<String>,
    /// Where a cluster runs a guild's bots: `guild` (beside the guild, on its node) or
    /// `spread` (each on the ring owner of its plugin id, receiving the guild's events
    /// over the bus). A single host runs them beside their guild either way.
    pub bot_placement: BotPlacementMode,
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
            shared_subjects: Vec::new(),
            bot_placement: BotPlacementMode::Guild,
        }
    }
}
