//! The actor runtime: tasks and bounded mailboxes around the pure state machines of
//! `guildhall-core`. Depends on core, store, data, plugins and bus; nothing here knows HTTP
//! or WebSockets. Four folders, lowest first:
//!
//! - [`infrastructure`]: what everything else uses: the clock seam for tests in virtual
//!   time, the id generator, following a moving actor, counters, the `[guild]` and
//!   `[plugins]` settings, where messages are read.
//! - [`addresses`]: how actors and sessions are reached, wherever they run: a guild's
//!   address ([`addresses::guild_ref`]), answers as plain data ([`addresses::reply`]), a
//!   session's address ([`addresses::session`]) and this node's sessions
//!   ([`addresses::registry`]).
//! - [`plugin_runners`]: guild plugins at work: moderators on the message path, bots beside
//!   it (here or on another node), their pub/sub, what both share.
//! - [`actors`]: the guild and DM channel actors, the directory that starts them, the fence
//!   a cluster puts around them, and the audit log they write.
//!
//! Addresses come before actors: the actors and the plugin runners import addresses, never
//! the other way (`deploy/dev/check-layers` fails on a circle of modules).

pub mod actors;
pub mod addresses;
pub mod infrastructure;
pub mod plugin_runners;

pub use infrastructure::ids::Generator;
pub use infrastructure::metrics::Metrics;
