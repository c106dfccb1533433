//! The WebAssembly plugin host.
//!
//! One [`PluginEngine`] per process: a wasmtime engine with the component model, the
//! pooling allocator and epoch interruption, a ticker thread for the epochs, and a
//! content-hashed cache of precompiled components on disk. [`PluginEngine::load`]
//! validates a component (size, that it is a component at all, that it compiles, and which
//! world it implements); a loaded moderator becomes [`ModeratorInstance`]s, one per
//! (guild, plugin), each in its own store with a memory limit and a deadline per call.
//!
//! A trap of any kind (a panic, a limit, a deadline) fails only that call; the caller
//! then drops the instance (its memory may be inconsistent) and counts a fault.

mod bot;
mod engine;
mod host;
mod moderator;

pub use bot::{
    BotHost, BotInstance, BotMember, BotMessage, BotReaction, BotUser, GuildEvent, HostError, MessageRef, TimerFired,
};
pub use engine::{pagemap_scan_available, EngineConfig, LoadedPlugin, PluginEngine, PluginError, PluginKind};
pub use host::{GuildView, MemberLookup};
pub use moderator::{Candidate, Channel, Member, ModeratorInstance, User, Verdict};
