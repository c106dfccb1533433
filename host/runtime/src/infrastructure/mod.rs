//! What the rest of the runtime stands on: [`clock`] (time passed in; `TokioClock` for
//! tests in virtual time), [`ids`] (the id generator), [`follow`] (a bounded retry after a
//! moving actor), [`metrics`] (counters), [`config`] (the `[guild]` and `[plugins]`
//! settings), [`reads`] (where message reads go: here or the channel's node) and
//! [`event_relay`] (an actor's message events from the outbox into the durable stream).

pub mod clock;
pub mod config;
pub mod event_relay;
pub mod follow;
pub mod ids;
pub mod metrics;
pub mod reads;
