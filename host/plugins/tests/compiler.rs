//! Compiling in a process of its own (`compiler.rs`): what the process compiles loads and
//! runs in the host's engine, and the process's time and memory limits hold, which they
//! cannot inside the host (Cranelift cannot be stopped). This test binary is also the
//! compiler process its checks start (`harness = false`: its own `main`).

mod common;

use common::component;

use std::time::{Duration, Instant};

use guildhall_plugins::compiler::CHILD_ENV;
use guildhall_plugins::{compiler_child_main, CompilerProcess, EngineConfig, PluginEngine, PluginError, PluginKind};

fn engine(name: &str, time_limit: Duration, memory_limit_bytes: u64) -> PluginEngine {
    let cache_dir = std::env::temp_dir().join(format!("guildhall-compiler-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache_dir);
    let compiler =
        CompilerProcess { program: std::env::current_exe().unwrap(), args: Vec::new(), time_limit, memory_limit_bytes };
    PluginEngine::new(EngineConfig {
        cache_dir,
        pool_instances: 8,
        compiler: Some(compiler),
        ..EngineConfig::default()
    })
    .unwrap()
}

fn refusal(result: Result<guildhall_plugins::LoadedPlugin, PluginError>) -> String {
    match result {
        Err(PluginError::Compile(message)) => message,
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("compiled within limits that cannot hold it"),
    }
}

fn main() {
    if std::env::var_os(CHILD_ENV).is_some() {
        std::process::exit(compiler_child_main());
    }
    let automod = component("automod");

    // Within generous limits: compiled by the process, loaded and instantiated by the host.
    let host = engine("ok", Duration::from_secs(120), 3 << 30);
    let loaded = host.load(&automod).expect("compiled in its own process");
    assert_eq!(loaded.kind, PluginKind::Moderator);
    println!("compiled in a process of its own: ok");

    // A wall-clock limit too short for any compilation: killed, refused, quickly.
    let started = Instant::now();
    let message = refusal(engine("time", Duration::from_millis(1), 3 << 30).load(&automod));
    assert!(message.contains("limits"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(5), "killed at its limit: {:?}", started.elapsed());
    println!("time limit: refused ({message})");

    // An address space too small for the compiler: it fails, and the host does not.
    let message = refusal(engine("memory", Duration::from_secs(120), 32 << 20).load(&automod));
    println!("memory limit: refused ({message})");

    // What wasmtime itself refuses keeps its message.
    let mut broken = automod.clone();
    broken.truncate(automod.len() / 2);
    let message = refusal(engine("broken", Duration::from_secs(120), 3 << 30).load(&broken));
    assert!(!message.contains("limits"), "{message}");
    println!("a broken component: refused ({message})");
}
