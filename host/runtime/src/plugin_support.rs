//! What every kind of plugin runner shares (moderators in the message path, bots beside
//! it): loading a guild's component, the guild view an instance gets, and the fault rule
//! (too many faults in a window disable the plugin for the guild, persistently).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use guildhall_core::model::{GuildId, PluginRecord};
use guildhall_core::Snowflake;
use guildhall_plugins::{
    Channel as PluginChannel, GuildView, LoadedPlugin, Member as PluginMember, MemberLookup, PluginEngine,
    User as PluginUser,
};
use guildhall_store::Storage;

pub const MAX_FAULTS: usize = 3;
pub const FAULT_WINDOW: Duration = Duration::from_secs(600);
/// An instance unused for this long is dropped (its pool slot and memory go back); the
/// next call recreates it in microseconds.
pub const IDLE_AFTER: Duration = Duration::from_secs(300);

/// A plugin that was switched off after repeated faults.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Disabled {
    pub record: PluginRecord,
    pub reason: String,
}

/// A plugin's recent faults, at most [`MAX_FAULTS`] within [`FAULT_WINDOW`].
#[derive(Default)]
pub struct Faults(VecDeque<Instant>);

impl Faults {
    /// Counts a fault at `now`; true when it is one too many.
    pub fn record(&mut self, now: Instant) -> bool {
        self.0.push_back(now);
        while self.0.front().is_some_and(|t| now.duration_since(*t) > FAULT_WINDOW) {
            self.0.pop_front();
        }
        self.0.len() >= MAX_FAULTS
    }
}

/// Switches a plugin off for its guild (stored, so it stays off across reloads and
/// restarts) after its last fault `last`.
pub async fn disable(store: &dyn Storage, mut record: PluginRecord, last: impl std::fmt::Display) -> Disabled {
    record.enabled = false;
    if let Err(e) = store.put_plugin(record.clone()).await {
        tracing::error!(plugin = %record.name, error = %e, "could not persist the disabling of a plugin");
    }
    let reason = format!("disabled after {MAX_FAULTS} faults in {} s; last: {last}", FAULT_WINDOW.as_secs());
    Disabled { record, reason }
}

/// What an instance may see of its guild: its channels, and its members looked up on
/// demand (never another guild's).
pub fn guild_view(store: Arc<dyn Storage>, guild: GuildId, channels: Arc<Vec<PluginChannel>>) -> GuildView {
    let members: MemberLookup = Arc::new(move |user| {
        let store = store.clone();
        Box::pin(async move {
            let member = store.member(guild, Snowflake(user)).await.ok().flatten()?;
            Some(PluginMember {
                user: PluginUser { id: member.user.id.0, username: member.user.username, bot: member.user.bot },
                nick: member.nick,
                joined_at: member.joined_at,
            })
        })
    });
    GuildView { guild_id: guild.0, channels, members }
}

/// The installed plugin's component, from storage, compiled (or from the engine's cache).
pub async fn load_component(
    engine: &PluginEngine,
    store: &dyn Storage,
    record: &PluginRecord,
) -> Result<LoadedPlugin, String> {
    let bytes = store
        .component(&record.component_sha256)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("component {} is missing from storage", record.component_sha256))?;
    engine.load(&bytes).map_err(|e| e.to_string())
}

/// At most `limit` events in any sliding minute (a plugin's messages, its publishes).
pub struct PerMinute {
    limit: usize,
    recent: std::sync::Mutex<std::collections::VecDeque<std::time::Instant>>,
}

impl PerMinute {
    pub fn new(limit: usize) -> PerMinute {
        PerMinute { limit, recent: std::sync::Mutex::new(std::collections::VecDeque::new()) }
    }

    /// Counts one more now, if the last minute leaves room for it.
    pub fn take(&self) -> bool {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        while recent.front().is_some_and(|t| now.duration_since(*t) >= std::time::Duration::from_secs(60)) {
            recent.pop_front();
        }
        if recent.len() >= self.limit {
            return false;
        }
        recent.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_faults_within_the_window_are_too_many() {
        let t0 = Instant::now();
        let mut faults = Faults::default();
        assert!(!faults.record(t0));
        assert!(!faults.record(t0 + FAULT_WINDOW + Duration::from_secs(1)), "the first has expired");
        assert!(!faults.record(t0 + FAULT_WINDOW + Duration::from_secs(2)));
        assert!(faults.record(t0 + FAULT_WINDOW + Duration::from_secs(3)));
    }
}
