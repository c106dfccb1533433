//! What every kind of plugin runner shares (moderators in the message path, bots beside
//! it): loading a guild's component, the guild view an instance gets, and the fault rule
//! (too many recent faults disable the plugin for the guild, persistently).

use crate::addresses::guild_ref::Disabled;
use guildhall_core::sync::LockUnpoisoned;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use guildhall_core::clock::Clock;
use guildhall_core::model::{GuildId, PluginRecord};
use guildhall_core::ratelimit::{Rate, Windows};
use guildhall_core::Snowflake;
use guildhall_plugins::{
    Channel as PluginChannel, GuildView, LoadedPlugin, Member as PluginMember, MemberLookup, PluginEngine,
    User as PluginUser,
};
use guildhall_store::Storage;

/// Time a plugin has to instantiate and accept its configuration (`init`), in its calls'
/// deadlines: a moderator's (`plugins.moderation_deadline_ms`, so 50 ms by default) or a
/// bot's events' (`plugins.bot_event_deadline_ms`, 500 ms by default). Wall time: the
/// JavaScript and Python runtimes' start is tens of times a call.
pub const INIT_DEADLINES: u32 = 10;

pub const MAX_FAULTS: usize = 3;
/// A fault is forgotten after this long...
pub const FAULT_WINDOW: Duration = Duration::from_secs(600);
/// ...or once this many calls in a row went well since the last fault, whichever comes
/// first. A plugin is judged by its fault *rate*, not by a count that a busy guild reaches
/// anyway: an interpreter's garbage collector or the OS scheduler can push one call in
/// tens of thousands past the deadline, and at 100 messages a second that is several
/// misses in ten minutes from a plugin that is fine. A hostile plugin (a loop, a memory
/// bomb) faults on every call it is given and is still disabled at its third; one that
/// faults once every thousand calls costs its own guild at most a deadline per thousand
/// messages.
pub const FORGIVEN_AFTER_GOOD_CALLS: u32 = 1_000;
/// An instance unused for this long is dropped (its pool slot and memory go back); the
/// next call recreates it in microseconds.
pub const IDLE_AFTER: Duration = Duration::from_secs(300);

/// Whether an instance last used at `last_used_ms` has been idle past [`IDLE_AFTER`] at
/// `now_ms` (both monotonic).
pub fn idle_too_long(last_used_ms: u64, now_ms: u64) -> bool {
    now_ms.saturating_sub(last_used_ms) > IDLE_AFTER.as_millis() as u64
}

/// A plugin's remembered faults (see [`FAULT_WINDOW`] and [`FORGIVEN_AFTER_GOOD_CALLS`]);
/// the [`MAX_FAULTS`]th disables it.
#[derive(Default)]
pub struct Faults {
    /// When the remembered faults happened (monotonic ms).
    remembered: VecDeque<u64>,
    /// Calls that went well since the last fault or forgiveness.
    good_in_a_row: u32,
}

impl Faults {
    /// Counts a fault at `now_ms` (monotonic); true when it is one too many.
    pub fn record(&mut self, now_ms: u64) -> bool {
        self.remembered.push_back(now_ms);
        self.good_in_a_row = 0;
        while self.remembered.front().is_some_and(|t| now_ms.saturating_sub(*t) > FAULT_WINDOW.as_millis() as u64) {
            self.remembered.pop_front();
        }
        self.remembered.len() >= MAX_FAULTS
    }

    /// Counts a call that went well: enough of them in a row forgive the oldest fault.
    pub fn good_call(&mut self) {
        if self.remembered.is_empty() {
            return;
        }
        self.good_in_a_row += 1;
        if self.good_in_a_row >= FORGIVEN_AFTER_GOOD_CALLS {
            self.remembered.pop_front();
            self.good_in_a_row = 0;
        }
    }
}

/// Switches a plugin off for its guild (stored, so it stays off across reloads and
/// restarts) after its last fault `last`.
pub async fn disable(store: &dyn Storage, mut record: PluginRecord, last: impl std::fmt::Display) -> Disabled {
    record.enabled = false;
    if let Err(e) = store.put_plugin(record.clone()).await {
        tracing::error!(plugin = %record.name, error = %e, "could not persist the disabling of a plugin");
    }
    let reason = format!(
        "disabled after {MAX_FAULTS} faults in {} s without {FORGIVEN_AFTER_GOOD_CALLS} good calls between them; last: {last}",
        FAULT_WINDOW.as_secs()
    );
    Disabled { record, reason }
}

/// What an instance may see of its guild: its channels, and its members looked up on
/// demand (never another guild's); and the time, on the process's clock.
pub fn guild_view(
    store: Arc<dyn Storage>,
    guild: GuildId,
    channels: Arc<Vec<PluginChannel>>,
    clock: Arc<dyn Clock>,
) -> GuildView {
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
    GuildView { guild_id: guild.0, channels, members, clock }
}

/// The installed plugin's component: already loaded (by its hash), or from storage,
/// compiled (or from the engine's cache) off the async workers; a compilation waits for its
/// turn as long as it takes.
pub async fn load_component(
    engine: &Arc<PluginEngine>,
    store: &dyn Storage,
    record: &PluginRecord,
) -> Result<LoadedPlugin, String> {
    if let Some(loaded) = engine.loaded(&record.component_sha256) {
        return Ok(loaded);
    }
    let bytes = store
        .component(&record.component_sha256)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("component {} is missing from storage", record.component_sha256))?;
    engine.load_async(bytes.into(), None).await.map_err(|e| e.to_string())
}

/// At most `limit` events a minute (a plugin's writes, its publishes): the core's fixed
/// windows, as the REST edge's rate limits are, for one key, on the process's clock.
pub struct PerMinute {
    rate: Rate,
    window: std::sync::Mutex<Windows<()>>,
    clock: Arc<dyn Clock>,
}

impl PerMinute {
    pub fn new(limit: u32, clock: Arc<dyn Clock>) -> PerMinute {
        PerMinute { rate: Rate::new(limit, 60_000), window: std::sync::Mutex::new(Windows::new(1)), clock }
    }

    /// Counts one more now, if this minute's window leaves room for it.
    pub fn take(&self) -> bool {
        let now_ms = self.clock.monotonic_ms();
        self.window.lock_unpoisoned().take(&(), self.rate, now_ms).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use guildhall_core::clock::ManualClock;

    #[test]
    fn three_faults_within_the_window_are_too_many() {
        let (t0, window) = (5_000, FAULT_WINDOW.as_millis() as u64);
        let mut faults = Faults::default();
        assert!(!faults.record(t0));
        assert!(!faults.record(t0 + window + 1_000), "the first has expired");
        assert!(!faults.record(t0 + window + 2_000));
        assert!(faults.record(t0 + window + 3_000));
    }

    #[test]
    fn a_minutes_writes_are_counted_on_the_clock_passed_in() {
        let clock = Arc::new(ManualClock::new(0));
        let writes = PerMinute::new(3, clock.clone());
        assert!(writes.take() && writes.take() && writes.take());
        clock.advance(59_999);
        assert!(!writes.take(), "the fourth within the minute");
        clock.advance(1);
        assert!(writes.take(), "a new minute");
    }

    #[test]
    fn a_rare_fault_in_a_busy_guild_is_forgiven_but_a_frequent_one_is_not() {
        let t0 = 0;
        // One deadline miss in 20,000 calls (a garbage collector's pause), at 1,000 calls
        // a second: many misses within the window, never three remembered at once.
        let mut rare = Faults::default();
        for call in 1..=200_000u32 {
            let now = t0 + call as u64;
            if call % 20_000 == 0 {
                assert!(!rare.record(now), "disabled at call {call}");
            } else {
                rare.good_call();
            }
        }
        // One fault every 500 calls: the third disables it.
        let mut frequent = Faults::default();
        let mut disabled_at = None;
        for call in 1..=5_000u32 {
            if call % 500 == 0 {
                if frequent.record(t0 + call as u64) {
                    disabled_at = Some(call);
                    break;
                }
            } else {
                frequent.good_call();
            }
        }
        assert_eq!(disabled_at, Some(1_500));
        // Faults in a row (a hostile loop): the third.
        let mut hostile = Faults::default();
        assert!(!hostile.record(t0) && !hostile.record(t0));
        assert!(hostile.record(t0));
    }
}
