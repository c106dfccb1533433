//! What the plugin host's tests share: components built from source.

use std::path::PathBuf;

/// `<target>/wasm32-wasip2/release/<name>.wasm`, next to the target dir of this test
/// (the test command builds them first).
pub fn component(name: &str) -> Vec<u8> {
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap().to_path_buf();
    let path: PathBuf = target.join("wasm32-wasip2/release").join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the components first: cargo build --release --target wasm32-wasip2 -p automod -p hostile-fixture",
            path.display()
        )
    })
}
