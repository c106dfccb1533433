//! The Guildhall host: the HTTP and WebSocket edge (gateway, REST), authentication,
//! configuration and the composition root ([`app::App`]) that wires storage, the data
//! service, the plugin engine and the runtime's directories together. The `guildhall`
//! binary (host/cli) runs it with `serve`.

pub mod app;
pub mod auth;
pub mod config;
mod gateway;
mod prometheus;
mod rest;
pub mod server;
mod session_actor;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// What `guildhall serve` was given on the command line (each overrides the file).
pub struct ServeArgs {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub storage: Option<String>,
    /// A TOML configuration file.
    pub config: Option<PathBuf>,
}

/// Runs the host until SIGTERM or SIGINT, then drains and flushes storage.
pub async fn serve(args: ServeArgs) -> Result<(), String> {
    let ServeArgs { listen, data_dir, storage, config } = args;
    let mut config = config::Config::load(config.as_deref())?;
    if let Some(listen) = listen {
        config.listen = listen;
    }
    if let Some(dir) = data_dir {
        config.data_dir = dir;
    }
    if let Some(storage) = storage {
        config.storage = storage;
    }
    let store = tokio::select! {
        store = app::open_storage(&config) => store?,
        _ = wait_for_signal() => return Err("interrupted while connecting to storage".into()),
    };
    let listener =
        tokio::net::TcpListener::bind(config.listen).await.map_err(|e| format!("binding {}: {e}", config.listen))?;
    config.listen = listener.local_addr().map_err(|e| e.to_string())?;
    let engine_config = guildhall_plugins::EngineConfig {
        cache_dir: config.data_dir.join("plugin-cache"),
        max_component_bytes: config.plugins.max_component_bytes,
        max_memory_bytes: config.plugins.max_memory_mib << 20,
        pool_instances: config.plugins.pool_instances,
        ..guildhall_plugins::EngineConfig::default()
    };
    let plugins =
        Arc::new(guildhall_plugins::PluginEngine::new(engine_config).map_err(|e| format!("plugin engine: {e}"))?);
    let app = app::App::new(config, store, plugins);
    tracing::info!(listen = %app.config.listen, storage = %app.config.storage, "guildhall ready");
    // A machine-readable line for scripts and tests that start the server on port 0.
    println!("guildhall listening on {}", app.config.listen);

    let signal_app = app.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: closing sessions, finishing requests, flushing storage");
        signal_app.begin_shutdown();
    });
    server::serve(app.clone(), listener).await;
    app.store.flush().await.map_err(|e| format!("flushing storage: {e}"))?;
    tracing::info!("stopped cleanly");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
