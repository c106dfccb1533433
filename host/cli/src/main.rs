//! `guildhall`: the host binary, the top of the crate graph. `serve` runs the host (the
//! `guildhall-server` crate); `plugin` scaffolds, builds and installs plugins; `bench` runs
//! the benchmark scenarios. The plugin and app commands talk to a running host only through
//! `guildhall-client`; the in-process benchmarks link the runtime and the plugin host.

mod app_cli;
mod bench;
mod bench_cluster;
mod bench_compression;
mod bench_gateway;
mod bench_search;
mod bench_search_cluster;
mod bench_storage;
mod components;
mod plugin_cli;
mod serve_child;
mod stats;

use std::net::SocketAddr;
use std::path::PathBuf;

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
        /// Run as one node of a cluster on this NATS server (`nats://HOST:PORT`); needs
        /// `--storage scylla://...`.
        #[arg(long)]
        cluster: Option<String>,
    },
    /// Run a cluster's background worker.
    Worker {
        #[command(subcommand)]
        kind: WorkerCmd,
    },
    /// Bot applications for Discord libraries: create one, add its bot to a guild.
    App {
        #[command(subcommand)]
        cmd: app_cli::AppCmd,
    },
    /// Scaffold, build and install guild plugins.
    Plugin {
        #[command(subcommand)]
        cmd: plugin_cli::PluginCmd,
    },
    /// Print the default configuration, or check a configuration file.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Run a benchmark scenario and print its results.
    Bench {
        #[command(subcommand)]
        scenario: bench::Scenario,
    },
    /// What the host runs to compile a plugin component in a process of its own (the
    /// component on stdin, the compiled form on stdout, limits from the environment).
    #[command(hide = true)]
    CompileComponent,
    /// What `bench gateway` runs to hold its sessions: gateway sessions on one thread,
    /// reporting over its standard streams.
    #[command(hide = true)]
    GatewayLoad(bench_gateway::load::LoadArgs),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let cli = match cli.command {
        Cmd::CompileComponent => {
            // Before a runtime exists: the process limits itself first thing.
            return std::process::ExitCode::from(guildhall_plugins::compiler_child_main() as u8);
        }
        // One thread of its own (a current-thread runtime), not the multi-threaded one.
        Cmd::GatewayLoad(args) => {
            return match bench_gateway::load::main(args) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("guildhall gateway-load: {e}");
                    std::process::ExitCode::FAILURE
                }
            };
        }
        command => Cli { command },
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("guildhall: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Cmd::Serve { listen, data_dir, storage, config, cluster } => {
                guildhall_server::serve(guildhall_server::ServeArgs { listen, data_dir, storage, config, cluster })
                    .await
            }
            Cmd::Worker { kind: WorkerCmd::Indexer { cluster, storage, data_dir, config, listen } } => {
                let args = guildhall_server::ServeArgs { listen, data_dir, storage, config, cluster };
                guildhall_server::indexer_node::run(args).await
            }
            Cmd::Bench { scenario } => bench::run(scenario).await,
            Cmd::Config { cmd } => config(cmd),
            Cmd::Plugin { cmd } => plugin_cli::run(cmd).await,
            Cmd::App { cmd } => app_cli::run(cmd).await,
            Cmd::CompileComponent | Cmd::GatewayLoad(_) => unreachable!("answered before the runtime starts"),
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

#[derive(Subcommand)]
enum WorkerCmd {
    /// An indexing worker: takes the search cells the ring gives it, indexes their stream
    /// entries and answers their searches (`guildhall serve` nodes route searches to it).
    Indexer {
        /// The cluster's NATS server (`nats://HOST:PORT`).
        #[arg(long)]
        cluster: Option<String>,
        /// The cluster's storage (`scylla://HOST:PORT[,HOST:PORT...]/KEYSPACE`): backfills read it.
        #[arg(long)]
        storage: Option<String>,
        /// Where this worker keeps its cells (default ./data; `search/cell-N`).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The cluster's configuration file (the same `search` section as its nodes').
        #[arg(long, env = "GUILDHALL_CONFIG")]
        config: Option<PathBuf>,
        /// Where `/metrics` and `/healthz` listen (default 127.0.0.1:8080; port 0 picks one).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Every key with its default value, as a configuration file (TOML).
    Defaults,
    /// Loads a file (and the GUILDHALL_* environment) as `serve` would and reports what
    /// is wrong with it, if anything.
    Check {
        #[arg(long, env = "GUILDHALL_CONFIG")]
        config: Option<PathBuf>,
    },
}

fn config(cmd: ConfigCmd) -> Result<(), String> {
    use guildhall_server::config::Config;
    match cmd {
        ConfigCmd::Defaults => {
            let text = toml::to_string_pretty(&Config::default()).map_err(|e| e.to_string())?;
            print!("{text}");
        }
        ConfigCmd::Check { config } => {
            Config::load(config.as_deref())?;
            println!("configuration is valid");
        }
    }
    Ok(())
}
