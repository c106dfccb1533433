//! The WebAssembly plugin host.
//!
//! One [`PluginEngine`] per process: the [`Sandbox`] (a wasmtime engine with the component
//! model, the pooling allocator and epoch interruption, a ticker thread for the epochs) and
//! the worlds it knows, with a content-hashed cache of precompiled components on disk.
//! [`PluginEngine::load`] validates a component (size, that it is a component at all, that
//! it compiles, and which world it implements); a loaded moderator becomes
//! [`ModeratorInstance`]s and a bot [`BotInstance`]s, one per (guild, plugin), each in its own
//! store with a memory limit and a deadline per call.
//!
//! Modules, lowest first: `world` (kinds, errors, the [`LoadedPlugin`] and the world entry
//! trait), `text` (the native pattern cache) and `budget` (the host's memory budget and
//! each guild's share); `compiler` (the engine settings compiled code depends on, and
//! compiling in a process of its own, within a time and a memory); `engine` (the sandbox); `interfaces` (the
//! bindings every world shares), `bot_host` (what bots act through) and `state` (the store state and the host side of those
//! interfaces, once for all worlds); one module per world (`moderator`, `bot`, `indexer`);
//! `loader` (the engine that lists the worlds and validates components).
//!
//! A trap of any kind (a panic, a limit, a deadline) fails only that call; the caller
//! then drops the instance (its memory may be inconsistent) and counts a fault.

mod bot;
mod bot_host;
mod budget;
pub mod compiler;
mod engine;
mod indexer;
mod interfaces;
mod loader;
mod moderator;
mod state;
mod text;
mod world;

pub use bot::{
    BotHost, BotInstance, BotMember, BotMessage, BotReaction, BotUser, GuildEvent, HostError, MessageRef, Published,
    TimerFired,
};
pub use budget::OverBudget;
pub use compiler::{compiler_child_main, CompilerProcess};
pub use engine::{pagemap_scan_available, EngineConfig, Sandbox};
pub use indexer::{Document, IndexerInstance};
pub use loader::PluginEngine;
pub use moderator::{Candidate, Channel, Member, ModeratorInstance, User, Verdict};
pub use state::{GuildView, MemberLookup};
pub use world::{InstanceLimits, Language, LoadedPlugin, PluginError, PluginKind};
