//! How actors and sessions are reached, locally or on another node: plain data that can
//! cross a process boundary, and the tables that resolve it.

pub mod guild_ref;
pub mod registry;
pub mod reply;
pub mod session;
