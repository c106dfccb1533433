//! `guildhall`: the host binary. `serve` runs the gateway and REST API on the embedded
//! store; `bench` runs the benchmark scenarios.

mod app;
mod auth;
mod bench;
mod config;
mod gateway;
mod plugin_cli;
mod rest;
mod server;
mod session_actor;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "guildhall", version, about = "A self-hostable, Discord-shaped realtime platform")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the gateway and REST API.
    Serve {
        /// Address to listen on (default 127.0.0.1:8080; port 0 picks a free one).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Where the embedded store keeps its file (default ./data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// `embedded` (default) or `scylla://HOST:PORT[,HOST:PORT...]/KEYSPACE`.
        #[arg(long)]
        storage: Option<String>,
        /// A TOML configuration file; GUILDHALL_* variables and flags override it.
        #[arg(long, env = "GUILDHALL_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Scaffold, build and install guild plugins.
    Plugin {
        #[command(subcommand)]
        cmd: plugin_cli::PluginCmd,
    },
    /// Run a benchmark scenario and print its results.
    Bench {
        #[command(subcommand)]
        scenario: bench::Scenario,
    },
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("guildhall: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Cmd::Serve { listen, data_dir, storage, config } => serve(listen, data_dir, storage, config).await,
            Cmd::Bench { scenario } => bench::run(scenario).await,
            Cmd::Plugin { cmd } => plugin_cli::run(cmd).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("guildhall: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    storage: Option<String>,
    config: Option<PathBuf>,
) -> Result<(), String> {
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
