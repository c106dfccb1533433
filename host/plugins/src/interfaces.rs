//! Bindings for the interfaces every world may import (WIT world `shared-imports`),
//! generated once; each world's bindings reuse them (`with`), so the host implements them
//! once for all worlds (see `state.rs`).

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "shared-imports",
    imports: { default: async },
});
