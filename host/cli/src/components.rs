//! Plugin components the tools load from where cargo built them.

use std::path::PathBuf;

/// The component at `path`, or else the `crate_name` plugin cargo built for wasm32-wasip2
/// next to this binary (`target/wasm32-wasip2/release/`).
pub fn read_component(path: Option<PathBuf>, crate_name: &str) -> Result<Vec<u8>, String> {
    let path = match path {
        Some(p) => p,
        None => {
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let target = exe.ancestors().nth(2).ok_or("cannot find the target directory")?.to_path_buf();
            target.join(format!("wasm32-wasip2/release/{}.wasm", crate_name.replace('-', "_")))
        }
    };
    std::fs::read(&path).map_err(|e| {
        format!("{}: {e} (build it: cargo build --release --target wasm32-wasip2 -p {crate_name})", path.display())
    })
}
