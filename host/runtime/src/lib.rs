//! The actor runtime: tasks and bounded mailboxes around the pure state machines of
//! `guildhall-core`. A guild actor ([`guild_actor`]) owns one guild; the [`directory`]
//! answers "where does guild X live"; [`session`] is how actors reach a gateway session
//! (the session actor itself lives at the WebSocket edge, in the `guildhall` crate) and the
//! [`registry`] finds sessions by id (RESUME) and by user (DMs, joins). Guild plugins run in
//! [`moderation`] (on the message path) and [`bots`] (beside it); [`audit`] stores what they
//! and the owners did.
//!
//! Depends on core, store and plugins; nothing here knows HTTP or WebSockets.

pub mod audit;
pub mod bots;
pub mod clock;
pub mod config;
pub mod directory;
pub mod dm_actor;
pub mod follow;
pub mod guild_actor;
pub mod guild_ref;
pub mod ids;
pub mod metrics;
pub mod moderation;
pub mod ownership;
pub mod plugin_support;
pub mod pubsub;
pub mod reads;
pub mod registry;
pub mod remote_bots;
pub mod reply;
pub mod session;

pub use ids::Generator;
pub use metrics::Metrics;
