//! Bot plugins: one runner task per (guild, bot), fed the guild's events through a
//! bounded queue, with its own timers. The bot acts as its bot user, through the guild
//! actor like any member would (so moderation and fan-out apply to it too), within
//! limits: writes per minute (sends, edits, deletes, reactions), key-value bytes and keys,
//! pending timers, time per event.
//!
//! Four jobs, one module each: [`runner`] (the task: events, timers and pub/sub in, the
//! instance, faults and idleness), [`timers`] (a bot's pending timers), [`events`] (the
//! guild's typed events as a bot sees them) and [`host`] (what a bot may do in its guild:
//! `GuildBotHost`, the `BotHost` the plugin host calls).

mod events;
mod host;
mod runner;
mod timers;

pub use events::{bot_event, to_bot_member, to_bot_message};
pub use host::{
    MAX_KV_KEYS, MAX_KV_KEY_BYTES, MAX_KV_TOTAL_BYTES, MAX_KV_VALUE_BYTES, MAX_TIMERS, MAX_TIMER_DELAY_MS,
    WRITES_PER_MINUTE,
};
pub use runner::{spawn_bot, spawn_loading, BotRunner, BotSpec, EVENT_HOST_DEADLINE, EVENT_QUEUE};
