//! The actors and their lifecycle: a guild's ([`guild_actor`]: drives `GuildState`,
//! ordered write batches, fan-out) and a DM channel's ([`dm_actor`]); the [`directory`]
//! that starts one per id on first use and a successor after eviction; the fence a cluster
//! puts around each ([`ownership`]); the [`audit`] log they write off the message path;
//! the [`relay`]s that fan a guild's events out to this node's sessions, and how a guild
//! hands its events to them ([`fanout`]).

pub mod audit;
pub mod directory;
pub mod dm_actor;
pub mod fanout;
pub mod guild_actor;
pub mod ownership;
pub mod relay;
