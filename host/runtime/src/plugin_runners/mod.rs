//! Guild plugins at work: [`moderation`] (a guild's moderators, on the message path),
//! [`bots`] (a runner task per bot, beside it), [`remote_bots`] (bots on another node than
//! their guild's), [`pubsub`] (plugins' publish/subscribe) and [`plugin_support`] (what
//! the runners share: loading, the guild view, faults, the per-minute limits).

pub mod bots;
pub mod moderation;
pub mod plugin_support;
pub mod pubsub;
pub mod remote_bots;
