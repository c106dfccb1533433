//! # guildhall-sdk
//!
//! Write Guildhall guild plugins in Rust. A plugin is a WebAssembly component built with
//! `cargo build --target wasm32-wasip2`; the guild's owner installs it, and it runs
//! sandboxed next to the guild, with a limit on everything it can use.
//!
//! Three kinds are supported here:
//!
//! - a **moderator** ([`moderation`]) is called synchronously for every message before it
//!   is stored or anyone sees it, and answers allow, block, rewrite or flag;
//! - a **bot** ([`bot`]) receives the guild's events and acts through host calls: send,
//!   edit and delete messages, react, read recent messages, a private key-value store,
//!   timers;
//! - an **indexer** ([`indexing`]) turns batches of the guild's message events into search
//!   documents (text and tags) for the search cells.
//!
//! Implement a trait, then export your type with one macro:
//!
//! ```ignore
//! use guildhall_sdk::bot::{self, Bot, GuildEvent};
//! use guildhall_sdk::Config;
//!
//! struct Echo;
//!
//! impl Bot for Echo {
//!     fn init(_config: &Config) -> Result<Self, String> {
//!         Ok(Echo)
//!     }
//!
//!     fn on_event(&mut self, event: GuildEvent) {
//!         if let GuildEvent::MessageCreate(m) = event {
//!             if m.content == "!ping" {
//!                 let _ = bot::send(m.channel_id, "pong");
//!             }
//!         }
//!     }
//! }
//!
//! guildhall_sdk::export_bot!(Echo);
//! ```
//!
//! The crate type must be `cdylib`. `guildhall plugin new NAME` scaffolds such a crate.

/// A plugin's configuration: the JSON object the guild owner set (`{}` if none).
pub type Config = serde_json::Value;

#[doc(hidden)]
pub fn parse_config(config: &str) -> Result<Config, String> {
    let value: Config = serde_json::from_str(config).map_err(|e| format!("configuration is not JSON: {e}"))?;
    if !value.is_object() {
        return Err("configuration must be a JSON object".into());
    }
    Ok(value)
}

/// Raw bindings for the `moderator` world (generated from `wit/`).
#[doc(hidden)]
pub mod moderator_world {
    wit_bindgen::generate!({
        path: "../wit",
        world: "moderator",
        pub_export_macro: true,
        export_macro_name: "export_moderator_world",
        default_bindings_module: "guildhall_sdk::moderator_world",
    });
}

/// Raw bindings for the `indexer` world (generated from `wit/`).
#[doc(hidden)]
pub mod indexer_world {
    wit_bindgen::generate!({
        path: "../wit",
        world: "indexer",
        pub_export_macro: true,
        export_macro_name: "export_indexer_world",
        default_bindings_module: "guildhall_sdk::indexer_world",
    });
}

/// Raw bindings for the `bot` world (generated from `wit/`).
#[doc(hidden)]
pub mod bot_world {
    wit_bindgen::generate!({
        path: "../wit",
        world: "bot",
        pub_export_macro: true,
        export_macro_name: "export_bot_world",
        default_bindings_module: "guildhall_sdk::bot_world",
    });
}

/// Moderation plugins: see [`Moderator`].
pub mod moderation {
    pub use crate::moderator_world::guildhall::plugin::clock::now_ms;
    pub use crate::moderator_world::guildhall::plugin::log::{log, Level};
    pub use crate::moderator_world::guildhall::plugin::types::{Candidate, Channel, Member, User, Verdict};
    pub use crate::moderator_world::guildhall::plugin::{guild, text};

    /// A moderator: `moderate` runs in the message path under a deadline of a few
    /// milliseconds, so keep it to string work; it has read-only access to the guild.
    pub trait Moderator: Sized + 'static {
        /// Called once per instance with the guild owner's configuration.
        fn init(config: &crate::Config) -> Result<Self, String>;
        fn moderate(&mut self, candidate: &Candidate) -> Verdict;
    }
}

/// Indexers: see [`Indexer`].
pub mod indexing {
    pub use crate::indexer_world::guildhall::plugin::clock::now_ms;
    pub use crate::indexer_world::guildhall::plugin::log::{log, Level};
    pub use crate::indexer_world::guildhall::plugin::types::{Document, GuildEvent, Message, MessageRef, User};

    /// An indexer: gets a guild's message events in batches (creates and edits carry the
    /// whole message) and returns at most one document per message, whose `id` is the
    /// message id (decimal). The host decides what a document is about (its channel, author
    /// and time come from the message, whatever the document says) and who may find it;
    /// the indexer chooses its `text` (what content searches match) and `tags` (exact
    /// terms: `has:link`, `mentions:ID`, `author_type:bot`, `link_hostname:HOST`, or tags
    /// of its own). Deletes need no document: the host removes what it indexed.
    pub trait Indexer: Sized + 'static {
        /// Called once per instance with the guild owner's configuration.
        fn init(config: &crate::Config) -> Result<Self, String>;
        fn index(&mut self, events: Vec<GuildEvent>) -> Vec<Document>;
    }
}

/// Bots: see [`Bot`].
pub mod bot {
    pub use crate::bot_world::guildhall::plugin::clock::now_ms;
    pub use crate::bot_world::guildhall::plugin::log::{log, Level};
    pub use crate::bot_world::guildhall::plugin::types::{
        Channel, GuildEvent, HostError, Member, Message, MessageRef, Published, Reaction, TimerFired, User,
    };
    pub use crate::bot_world::guildhall::plugin::{guild, kv, text, timers};
    use crate::bot_world::guildhall::plugin::{messages, pubsub};

    /// A bot: receives the guild's events one at a time.
    pub trait Bot: Sized + 'static {
        /// Called once per instance with the guild owner's configuration.
        fn init(config: &crate::Config) -> Result<Self, String>;
        fn on_event(&mut self, event: GuildEvent);
    }

    /// Sends a message as the bot user.
    pub fn send(channel_id: u64, content: &str) -> Result<Message, HostError> {
        messages::send(channel_id, content)
    }

    /// Edits one of the bot's own messages. Sends, edits, deletes and reactions count
    /// together against the bot's writes per minute (30).
    pub fn edit(channel_id: u64, message_id: u64, content: &str) -> Result<Message, HostError> {
        messages::edit(channel_id, message_id, content)
    }

    /// Deletes one of the bot's own messages.
    pub fn delete(channel_id: u64, message_id: u64) -> Result<(), HostError> {
        messages::delete(channel_id, message_id)
    }

    /// The latest `limit` (at most 100) messages of a channel, newest first.
    pub fn recent(channel_id: u64, limit: u32) -> Result<Vec<Message>, HostError> {
        messages::recent(channel_id, limit)
    }

    /// Reacts to a message with a Unicode emoji (e.g. "👍"), as the bot user. Reactions
    /// count against the bot's writes per minute.
    pub fn react(channel_id: u64, message_id: u64, emoji: &str) -> Result<(), HostError> {
        messages::react(channel_id, message_id, emoji)
    }

    /// Takes the bot's reaction back.
    pub fn unreact(channel_id: u64, message_id: u64, emoji: &str) -> Result<(), HostError> {
        messages::unreact(channel_id, message_id, emoji)
    }

    /// Publishes on `subject` in the bot's namespace: the plugins of its guild subscribed to
    /// `BOTNAME.subject` receive it as `GuildEvent::Published` (`shared.…` subjects reach
    /// every guild, if the host operator granted them). Subscriptions are set in the
    /// plugin's configuration: `{"subscribe": ["other-plugin.>"]}`.
    pub fn publish(subject: &str, payload: &[u8]) -> Result<(), HostError> {
        pubsub::publish(subject, payload)
    }

    /// Sets a one-shot timer; it comes back as `GuildEvent::Timer` with this payload.
    pub fn set_timer(delay_ms: u64, payload: &str) -> Result<u64, HostError> {
        timers::set(delay_ms, payload)
    }
}

/// Exports a [`moderation::Moderator`] as the component's `moderator` world.
#[macro_export]
macro_rules! export_moderator {
    ($ty:ty) => {
        #[allow(dead_code)]
        struct __GuildhallModerator;
        // Marks the plugin's type as used in native builds, where the exports are absent.
        const _: fn(&$crate::Config) -> ::core::result::Result<$ty, ::std::string::String> =
            <$ty as $crate::moderation::Moderator>::init;
        ::std::thread_local! {
            static __GUILDHALL_STATE: ::core::cell::RefCell<::core::option::Option<$ty>> =
                const { ::core::cell::RefCell::new(::core::option::Option::None) };
        }
        impl $crate::moderator_world::exports::guildhall::plugin::moderation::Guest for __GuildhallModerator {
            fn init(config: ::std::string::String) -> ::core::result::Result<(), ::std::string::String> {
                let config = $crate::parse_config(&config)?;
                let state = <$ty as $crate::moderation::Moderator>::init(&config)?;
                __GUILDHALL_STATE.with(|s| *s.borrow_mut() = ::core::option::Option::Some(state));
                Ok(())
            }

            fn moderate(candidate: $crate::moderation::Candidate) -> $crate::moderation::Verdict {
                __GUILDHALL_STATE.with(|s| match &mut *s.borrow_mut() {
                    ::core::option::Option::Some(m) => $crate::moderation::Moderator::moderate(m, &candidate),
                    // Not initialised (the host always calls init first): change nothing.
                    ::core::option::Option::None => $crate::moderation::Verdict::Allow,
                })
            }
        }
        // The component exports exist only in the wasm build; a native build (unit tests of
        // the plugin's logic) compiles the same code without them.
        #[cfg(target_arch = "wasm32")]
        $crate::moderator_world::export_moderator_world!(__GuildhallModerator with_types_in $crate::moderator_world);
    };
}

/// Exports an [`indexing::Indexer`] as the component's `indexer` world.
#[macro_export]
macro_rules! export_indexer {
    ($ty:ty) => {
        #[allow(dead_code)]
        struct __GuildhallIndexer;
        const _: fn(&$crate::Config) -> ::core::result::Result<$ty, ::std::string::String> =
            <$ty as $crate::indexing::Indexer>::init;
        ::std::thread_local! {
            static __GUILDHALL_STATE: ::core::cell::RefCell<::core::option::Option<$ty>> =
                const { ::core::cell::RefCell::new(::core::option::Option::None) };
        }
        impl $crate::indexer_world::exports::guildhall::plugin::indexing::Guest for __GuildhallIndexer {
            fn init(config: ::std::string::String) -> ::core::result::Result<(), ::std::string::String> {
                let config = $crate::parse_config(&config)?;
                let state = <$ty as $crate::indexing::Indexer>::init(&config)?;
                __GUILDHALL_STATE.with(|s| *s.borrow_mut() = ::core::option::Option::Some(state));
                Ok(())
            }

            fn index(
                events: ::std::vec::Vec<$crate::indexing::GuildEvent>,
            ) -> ::std::vec::Vec<$crate::indexing::Document> {
                __GUILDHALL_STATE.with(|s| match &mut *s.borrow_mut() {
                    ::core::option::Option::Some(i) => $crate::indexing::Indexer::index(i, events),
                    ::core::option::Option::None => ::std::vec::Vec::new(),
                })
            }
        }
        #[cfg(target_arch = "wasm32")]
        $crate::indexer_world::export_indexer_world!(__GuildhallIndexer with_types_in $crate::indexer_world);
    };
}

/// Exports a [`bot::Bot`] as the component's `bot` world.
#[macro_export]
macro_rules! export_bot {
    ($ty:ty) => {
        #[allow(dead_code)]
        struct __GuildhallBot;
        const _: fn(&$crate::Config) -> ::core::result::Result<$ty, ::std::string::String> =
            <$ty as $crate::bot::Bot>::init;
        ::std::thread_local! {
            static __GUILDHALL_STATE: ::core::cell::RefCell<::core::option::Option<$ty>> =
                const { ::core::cell::RefCell::new(::core::option::Option::None) };
        }
        impl $crate::bot_world::exports::guildhall::plugin::events::Guest for __GuildhallBot {
            fn init(config: ::std::string::String) -> ::core::result::Result<(), ::std::string::String> {
                let config = $crate::parse_config(&config)?;
                let state = <$ty as $crate::bot::Bot>::init(&config)?;
                __GUILDHALL_STATE.with(|s| *s.borrow_mut() = ::core::option::Option::Some(state));
                Ok(())
            }

            fn on_event(event: $crate::bot::GuildEvent) {
                __GUILDHALL_STATE.with(|s| {
                    if let ::core::option::Option::Some(b) = &mut *s.borrow_mut() {
                        $crate::bot::Bot::on_event(b, event);
                    }
                });
            }
        }
        #[cfg(target_arch = "wasm32")]
        $crate::bot_world::export_bot_world!(__GuildhallBot with_types_in $crate::bot_world);
    };
}
