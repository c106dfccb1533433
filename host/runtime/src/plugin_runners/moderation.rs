//! A guild's moderators: the enabled moderation plugins, called in the message path.
//!
//! Each installed moderator gets one instance for this guild, created on first use and
//! reused. Moderators run in installation order, each seeing the content the previous
//! one left; the first block wins. A fault (trap, memory limit, missed deadline) drops
//! that instance, and by default the message goes on as if that moderator had allowed it:
//! the guild fails *open*, because a broken plugin must not silence a whole community. A
//! guild that prefers the opposite sets `moderation_fail_closed` (PATCH /guilds/{id}). After
//! [`MAX_FAULTS`](crate::plugin_runners::plugin_support::MAX_FAULTS) recent faults (ten minutes, unless a
//! thousand good calls came after one) the plugin is disabled for the guild, persistently,
//! with an audit entry to the owner.

use std::sync::Arc;
use std::time::Duration;

use guildhall_core::clock::Clock;

use guildhall_core::guild::{ModerationCandidate, ModerationVerdict};
use guildhall_core::model::{audit_action, GuildId, PluginRecord};
use guildhall_core::Snowflake;
use guildhall_plugins::{
    Candidate, Channel as PluginChannel, LoadedPlugin, ModeratorInstance, PluginEngine, PluginKind, User as PluginUser,
    Verdict,
};
use guildhall_store::Storage;

pub use crate::addresses::guild_ref::Disabled;
use crate::plugin_runners::plugin_support::{disable, guild_view, idle_too_long, load_component, Faults};

pub use crate::plugin_runners::plugin_support::INIT_DEADLINES;

struct Slot {
    record: PluginRecord,
    plugin: LoadedPlugin,
    instance: Option<ModeratorInstance>,
    /// When it last judged a message (monotonic ms).
    last_used_ms: u64,
    faults: Faults,
}

/// A block or a flag, for the audit log.
pub struct ModerationNote {
    pub plugin_id: Snowflake,
    pub plugin_name: String,
    /// `AUTO_MODERATION_BLOCK_MESSAGE` or `AUTO_MODERATION_FLAG_TO_CHANNEL`.
    pub action_type: u16,
    pub reason: String,
}

/// What the moderators made of one message.
#[derive(Default)]
pub struct Judgement {
    pub verdict: ModerationVerdict,
    /// Moderators switched off while reaching it.
    pub disabled: Vec<Disabled>,
    pub notes: Vec<ModerationNote>,
    /// Moderators that could not run: the host's instance pool was full. Not their fault
    /// (another guild may have filled it): backpressure, never counted against them.
    pub pool_full: usize,
}

pub struct Moderation {
    engine: Arc<PluginEngine>,
    store: Arc<dyn Storage>,
    guild_id: GuildId,
    slots: Vec<Slot>,
    /// Time a moderator has per message (`plugins.moderation_deadline_ms`).
    deadline: Duration,
    clock: Arc<dyn Clock>,
}

impl Moderation {
    /// Loads the enabled moderators among the guild's plugin `records` (components come
    /// from storage, compiled artifacts from the engine's cache). A component that no longer
    /// loads is skipped with an error in the log.
    pub async fn load(
        engine: Arc<PluginEngine>,
        store: Arc<dyn Storage>,
        guild_id: GuildId,
        records: &[PluginRecord],
        deadline: Duration,
        clock: Arc<dyn Clock>,
    ) -> Moderation {
        let mut slots = Vec::new();
        for record in records.iter().filter(|r| r.enabled && r.kind == PluginKind::Moderator) {
            match load_component(&engine, &*store, record).await {
                Ok(plugin) => {
                    let (last_used_ms, faults) = (clock.monotonic_ms(), Faults::default());
                    slots.push(Slot { record: record.clone(), plugin, instance: None, last_used_ms, faults });
                }
                Err(e) => tracing::error!(guild = %guild_id, plugin = %record.name, error = %e, "cannot load plugin"),
            }
        }
        Moderation { engine, store, guild_id, slots, deadline, clock }
    }

    /// Time an instance has to instantiate and accept its configuration.
    pub fn init_deadline(&self) -> Duration {
        self.deadline * INIT_DEADLINES
    }

    pub fn active(&self) -> bool {
        !self.slots.is_empty()
    }

    /// Drops instances idle too long at `now_ms` (monotonic; see [`idle_too_long`]);
    /// returns how many.
    pub fn hibernate_idle(&mut self, now_ms: u64) -> usize {
        let mut dropped = 0;
        for slot in &mut self.slots {
            if slot.instance.is_some() && idle_too_long(slot.last_used_ms, now_ms) {
                slot.instance = None;
                dropped += 1;
            }
        }
        dropped
    }

    /// The combined verdict, with what the audit log needs to know.
    pub async fn judge(
        &mut self,
        candidate: &ModerationCandidate,
        channels: &Arc<Vec<PluginChannel>>,
        fail_closed: bool,
    ) -> Judgement {
        let mut current = Candidate {
            channel_id: candidate.channel_id.0,
            author: PluginUser {
                id: candidate.author.id.0,
                username: candidate.author.username.clone(),
                bot: candidate.author.bot,
            },
            content: candidate.content.clone(),
            is_edit: candidate.is_edit,
            mentions: candidate.mentions.iter().map(|u| u.0).collect(),
        };
        let mut out = Judgement::default();
        let unavailable = || ModerationVerdict::Block("moderation is unavailable; try again later".into());
        let mut i = 0;
        while i < self.slots.len() {
            let note = |slot: &Slot, action_type, reason: &str| ModerationNote {
                plugin_id: slot.record.id,
                plugin_name: slot.record.name.clone(),
                action_type,
                reason: reason.to_owned(),
            };
            let asked = self.ask(i, &current, channels).await;
            if asked.is_ok() {
                self.slots[i].faults.good_call();
            }
            match asked {
                Ok(Verdict::Allow) => {}
                Ok(Verdict::Flag(reason)) => {
                    tracing::info!(guild = %self.guild_id, plugin = %self.slots[i].record.name, %reason, "message flagged");
                    out.notes.push(note(&self.slots[i], audit_action::AUTO_MODERATION_FLAG_TO_CHANNEL, &reason));
                }
                Ok(Verdict::Rewrite(content)) => {
                    current.content = content.clone();
                    out.verdict = ModerationVerdict::Rewrite(content);
                }
                Ok(Verdict::Block(reason)) => {
                    out.notes.push(note(&self.slots[i], audit_action::AUTO_MODERATION_BLOCK_MESSAGE, &reason));
                    out.verdict = ModerationVerdict::Block(reason);
                    return out;
                }
                Err(guildhall_plugins::PluginError::Capacity(reason)) => {
                    let plugin = &self.slots[i].record.name;
                    tracing::warn!(guild = %self.guild_id, %plugin, %reason, "no plugin instance free: moderator skipped");
                    out.pool_full += 1;
                    if fail_closed {
                        out.verdict = unavailable();
                        return out;
                    }
                }
                Err(e) => {
                    let slot = &mut self.slots[i];
                    tracing::warn!(guild = %self.guild_id, plugin = %slot.record.name, error = %e, "moderator fault");
                    slot.instance = None; // its memory may be inconsistent
                    if slot.faults.record(self.clock.monotonic_ms()) {
                        let record = self.slots.remove(i).record;
                        out.disabled.push(disable(&*self.store, record, e).await);
                        if fail_closed {
                            out.verdict = unavailable();
                            return out;
                        }
                        continue; // the next moderator is now at index i
                    }
                    if fail_closed {
                        out.verdict = unavailable();
                        return out;
                    }
                }
            }
            i += 1;
        }
        out
    }

    async fn ask(
        &mut self,
        i: usize,
        candidate: &Candidate,
        channels: &Arc<Vec<PluginChannel>>,
    ) -> Result<Verdict, guildhall_plugins::PluginError> {
        if self.slots[i].instance.is_none() {
            let view = guild_view(self.store.clone(), self.guild_id, channels.clone(), self.clock.clone());
            let slot = &self.slots[i];
            let config = slot.record.config.to_string();
            let instance = ModeratorInstance::new(
                &self.engine,
                &slot.plugin,
                &slot.record.name,
                view,
                &config,
                self.init_deadline(),
            )
            .await?;
            self.slots[i].instance = Some(instance);
        }
        self.slots[i].last_used_ms = self.clock.monotonic_ms();
        let instance = self.slots[i].instance.as_mut().expect("just created");
        instance.moderate(candidate, self.deadline).await
    }
}
