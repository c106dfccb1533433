//! Bindings for the interfaces every world may import (WIT world `shared-imports`),
//! generated once; each world's bindings reuse them (`with`), so the host implements them
//! once for all worlds (see `state.rs`).

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "shared-imports",
    imports: { default: async },
});

/// Bindings for a plugin world (`moderator`, `bot`, ...) that reuse the shared interfaces
/// above instead of generating them again.
macro_rules! world_bindings {
    // A world that imports only the types, log and clock (an indexer).
    ($world:tt, log_and_clock) => {
        wasmtime::component::bindgen!({
            path: "../../wit",
            world: $world,
            imports: { default: async },
            exports: { default: async },
            with: {
                "guildhall:plugin/types": crate::interfaces::guildhall::plugin::types,
                "guildhall:plugin/log": crate::interfaces::guildhall::plugin::log,
                "guildhall:plugin/clock": crate::interfaces::guildhall::plugin::clock,
            },
        });
    };
    ($world:tt) => {
        wasmtime::component::bindgen!({
            path: "../../wit",
            world: $world,
            imports: { default: async },
            exports: { default: async },
            with: {
                "guildhall:plugin/types": crate::interfaces::guildhall::plugin::types,
                "guildhall:plugin/log": crate::interfaces::guildhall::plugin::log,
                "guildhall:plugin/clock": crate::interfaces::guildhall::plugin::clock,
                "guildhall:plugin/guild": crate::interfaces::guildhall::plugin::guild,
                "guildhall:plugin/text": crate::interfaces::guildhall::plugin::text,
            },
        });
    };
}
pub(crate) use world_bindings;
