//! Guildhall's pure core: ids, the data model, the gateway vocabulary, and the guild, DM and
//! session state machines. Nothing here does IO or needs an async runtime: every actor is
//! `handle(input) -> effects`, driven by the runtime in the `guildhall-runtime` crate. Time is
//! an input too ([`clock`]).

// Discord's guild object is one `json!` of ~45 fields, past the default macro recursion limit.
#![recursion_limit = "256"]

pub mod clock;
pub mod dm;
pub mod event;
pub mod gateway;
pub mod guild;
pub mod model;
pub mod nonces;
pub mod permissions;
pub mod plugin_subjects;
pub mod ratelimit;
pub mod session;
pub mod snowflake;
pub mod stream;
pub mod subject;
pub mod sync;
pub mod text;

pub use snowflake::Snowflake;
