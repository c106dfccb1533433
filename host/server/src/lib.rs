//! The Guildhall host: the HTTP and WebSocket edge (gateway, REST), authentication,
//! configuration and the composition root ([`app::App`]) that wires storage, the data
//! service, the plugin engine and the runtime's directories together. The `guildhall`
//! binary (host/cli) runs it with `serve`.

pub mod app;
pub mod auth;
pub mod clock;
pub mod compress;
pub mod config;
pub mod disabled_indexers;
mod gateway;
pub mod id_reservation;
pub mod indexer_node;
pub mod limits;
pub mod passwords;
mod prometheus;
mod rest;
pub mod server;
mod session_actor;
mod write_buffer;
/// Not used by the gateway yet: the codec the relays that own their sessions will read with.
pub mod ws_codec;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use guildhall_bus::NatsBus;
use guildhall_cluster::membership::open_bucket;
use guildhall_cluster::ownership::open_ownership_bucket;
use guildhall_cluster::{Heartbeat, KvOwnership, Lease, MembershipConfig, NodeInfo};
use guildhall_core::clock::Clock;
use guildhall_search::{BusCells, IndexingWorker, WorkerConfig};
use guildhall_stream::{JetStreamConfig, JetStreamLog};

use crate::clock::SystemClock;

/// What `guildhall serve` (or `worker indexer`) was given on the command line (each
/// overrides the file).
pub struct ServeArgs {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub storage: Option<String>,
    /// A TOML configuration file.
    pub config: Option<PathBuf>,
    /// NATS URL: run as one node of a cluster.
    pub cluster: Option<String>,
}

impl ServeArgs {
    /// The configuration: the file (and the GUILDHALL_* environment), then these flags,
    /// validated.
    pub fn load(self) -> Result<config::Config, String> {
        let ServeArgs { listen, data_dir, storage, config, cluster } = self;
        let mut config = config::Config::load(config.as_deref())?;
        if let Some(nats) = cluster {
            config.cluster.nats = nats;
        }
        if let Some(listen) = listen {
            config.listen = listen;
        }
        if let Some(dir) = data_dir {
            config.data_dir = dir;
        }
        if let Some(storage) = storage {
            config.storage = storage;
        }
        config.validate()?;
        Ok(config)
    }
}

/// Runs the host until SIGTERM or SIGINT, then drains and flushes storage.
pub async fn serve(args: ServeArgs) -> Result<(), String> {
    let mut config = args.load()?;
    // The one place `serve` reads the OS clock: everything below is handed this.
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = tokio::select! {
        store = app::open_storage(&config) => store?,
        _ = wait_for_signal() => return Err("interrupted while connecting to storage".into()),
    };
    let listener =
        tokio::net::TcpListener::bind(config.listen).await.map_err(|e| format!("binding {}: {e}", config.listen))?;
    config.listen = listener.local_addr().map_err(|e| e.to_string())?;
    let plugins = plugin_engine(&config)?;
    let (topology, heartbeat, nats) = if config.cluster.nats.is_empty() {
        (app::Topology::Single, None, None)
    } else {
        let (setup, heartbeat, nats) = join_cluster(&config, &clock).await?;
        (app::Topology::Cluster(setup), Some(heartbeat), Some(nats))
    };
    let app = app::App::new(config, store, plugins, topology, clock).await?;
    if let Some(nats) = nats {
        // Indexing workers' notices of the indexers they disabled, for the guilds' actors.
        let (cluster, directory) = (&app.config.cluster.name, app.directory.clone());
        disabled_indexers::answer_notices(nats, cluster, directory).await.map_err(|e| e.to_string())?;
    }
    tracing::info!(listen = %app.config.listen, storage = %app.config.storage, node = app.node, "guildhall ready");
    // A machine-readable line for scripts and tests that start the server on port 0.
    println!("guildhall listening on {}", app.config.listen);

    spawn_component_collector(app.clone());
    spawn_event_sweeper(app.clone());
    spawn_indexing_worker(&app).await?;
    let (signal_app, drainer) = (app.clone(), heartbeat.as_ref().map(Heartbeat::drainer));
    tokio::spawn(async move {
        wait_for_signal().await;
        if let Some(drainer) = drainer {
            // A second signal cuts the drain short.
            tokio::select! {
                _ = drain(&signal_app, drainer) => {}
                _ = wait_for_signal() => tracing::warn!("second signal: stopping without waiting for sessions"),
            }
        }
        tracing::info!("shutting down: closing sessions, finishing requests, flushing storage");
        signal_app.begin_shutdown();
    });
    if let Some(heartbeat) = &heartbeat {
        let (mut view, view_app) = (heartbeat.view(), app.clone());
        tokio::spawn(async move {
            loop {
                let members = view.borrow_and_update().ring.len() as u64;
                view_app.metrics.cluster_nodes.store(members, std::sync::atomic::Ordering::Relaxed);
                if view.changed().await.is_err() {
                    break;
                }
            }
        });
        // A node whose lease ran out and that took its id again (NATS was away longer than
        // the lease): what it ran may have been taken over meanwhile, so it starts afresh.
        let (mut rejoined, rejoined_app) = (heartbeat.rejoined(), app.clone());
        tokio::spawn(async move {
            while rejoined.changed().await.is_ok() {
                rejoined_app.metrics.cluster_rejoins.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let restarted = rejoined_app.restart_cluster_actors().await;
                tracing::warn!(restarted, "rejoined the cluster; actors handed off to start afresh");
            }
        });
        // A node that lost its lease for good may no longer mint ids or act for the cluster.
        let (mut lost, lost_app) = (heartbeat.lost(), app.clone());
        tokio::spawn(async move {
            if lost.wait_for(|lost| *lost).await.is_ok() {
                tracing::error!("this node lost its cluster membership; shutting down");
                lost_app.begin_shutdown();
            }
        });
    }
    server::serve(app.clone(), listener).await;
    app.store.flush().await.map_err(|e| format!("flushing storage: {e}"))?;
    if let Some(heartbeat) = heartbeat {
        if let Err(e) = heartbeat.stop().await.release().await {
            tracing::warn!(error = %e, "could not leave the cluster; the lease runs out on its own");
        }
    }
    tracing::info!("stopped cleanly");
    Ok(())
}

/// The plugin engine `config` asks for (the host's and the indexing workers').
pub(crate) fn plugin_engine(config: &config::Config) -> Result<Arc<guildhall_plugins::PluginEngine>, String> {
    let engine_config = guildhall_plugins::EngineConfig {
        cache_dir: match config.plugins.cache_dir.as_str() {
            "" => config.data_dir.join("plugin-cache"),
            shared => std::path::PathBuf::from(shared),
        },
        max_component_bytes: config.plugins.max_component_bytes,
        max_memory_bytes: config.plugins.max_memory_mib << 20,
        javascript: config.plugins.javascript.engine_limits(guildhall_plugins::InstanceLimits::JAVASCRIPT),
        python: config.plugins.python.engine_limits(guildhall_plugins::InstanceLimits::PYTHON),
        pool_instances: config.plugins.pool_instances,
        max_total_memory_bytes: config.plugins.max_total_memory_mib << 20,
        max_guild_memory_bytes: config.plugins.max_guild_memory_mib << 20,
        max_guild_instances: config.plugins.max_guild_instances,
        max_concurrent_compiles: config.plugins.max_concurrent_compiles,
        compiler: match config.plugins.compile_in_own_process {
            // This binary: `guildhall compile-component` (host/cli). Through /proc/self/exe
            // where there is one: the running image, even after the file was replaced.
            true => Some(guildhall_plugins::CompilerProcess {
                program: match std::path::Path::new("/proc/self/exe") {
                    running if running.exists() => running.to_path_buf(),
                    _ => std::env::current_exe().map_err(|e| format!("where this binary is: {e}"))?,
                },
                args: vec!["compile-component".into()],
                time_limit: std::time::Duration::from_millis(config.plugins.compile_time_limit_ms),
                memory_limit_bytes: config.plugins.compile_memory_mib << 20,
            }),
            false => None,
        },
        ..guildhall_plugins::EngineConfig::default()
    };
    let engine = guildhall_plugins::PluginEngine::new(engine_config).map_err(|e| format!("plugin engine: {e}"))?;
    Ok(Arc::new(engine))
}

/// Leaves the cluster gracefully: marked as draining, this node's guilds and DM channels
/// move to their new owners (with their sessions); then its own sessions get op 7 and
/// resume on other nodes, which take them over with their replay buffers.
async fn drain(app: &app::App, drainer: guildhall_cluster::Drainer) {
    const HAND_OFF_WAIT: std::time::Duration = std::time::Duration::from_secs(20);
    let poll = std::time::Duration::from_millis(100);
    tracing::info!("draining: handing guilds off to the other nodes");
    drainer.drain();
    let deadline = tokio::time::Instant::now() + HAND_OFF_WAIT;
    while app.cluster_actors_here() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(poll).await;
    }
    let sessions = app.local_sessions.len();
    tracing::info!(actors_left = app.cluster_actors_here(), sessions, "draining: sending sessions to the other nodes");
    app.begin_drain();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(app.config.cluster.drain_ms);
    while !app.local_sessions.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(poll).await;
    }
    tracing::info!(sessions_left = app.local_sessions.len(), "drained");
}

/// Connects to NATS, takes a node id (the configured one, or a free one) and starts
/// renewing it; the view of the cluster follows the membership bucket. Also the NATS
/// connection, for what the node answers besides its actors.
async fn join_cluster(
    config: &config::Config,
    clock: &Arc<dyn Clock>,
) -> Result<(app::ClusterSetup, Heartbeat, async_nats::Client), String> {
    let c = &config.cluster;
    let bus = NatsBus::connect(&c.nats, &format!("guildhall {}", config.listen)).await.map_err(|e| e.to_string())?;
    let membership =
        MembershipConfig { bucket: format!("{}_nodes", c.name), lease: std::time::Duration::from_millis(c.lease_ms) };
    let bucket = open_bucket(bus.client(), &membership).await.map_err(|e| format!("membership bucket: {e}"))?;
    let me = NodeInfo {
        node: 0,
        advertise: config.listen.to_string(),
        started_unix_ms: clock.unix_ms(),
        draining: false,
        incarnation: 0, // drawn by `Lease::acquire`
    };
    let requested = u16::try_from(c.node_id).ok();
    let lease = Lease::acquire(bucket, requested, me).await.map_err(|e| e.to_string())?;
    let node = lease.node();
    let heartbeat = Heartbeat::start(lease, membership.lease / 3, clock.clone()).await.map_err(|e| e.to_string())?;
    tracing::info!(node, nats = %c.nats, cluster = %c.name, "joined the cluster");
    let owners = open_ownership_bucket(bus.client(), &format!("{}_actors", c.name))
        .await
        .map_err(|e| format!("ownership bucket: {e}"))?;
    // Writes are fenced by this node's lease (no round trip while it holds), with the
    // actor's key read every third of a lease as a backstop.
    let mut ownership = KvOwnership::new(owners, node, heartbeat.view(), clock.clone())
        .with_lease(heartbeat.lease_clock(), membership.lease / 3);
    if c.audit_actors {
        let path = config.data_dir.join("actor-ownership.log");
        std::fs::create_dir_all(&config.data_dir).map_err(|e| format!("{}: {e}", config.data_dir.display()))?;
        ownership = ownership.with_audit(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let ownership = Arc::new(ownership);
    let events = JetStreamLog::open(bus.client().clone(), JetStreamConfig::new(&c.name, config.search.layout()))
        .await
        .map_err(|e| format!("event stream: {e}"))?;
    // Searches go to the indexing worker that owns the scope's cell.
    let search_timeout = std::time::Duration::from_millis(config.search.remote_timeout_ms.max(1));
    let search = BusCells::new(bus.client().clone(), &c.name, config.search.layout(), search_timeout);
    let nats = bus.client().clone();
    let setup = app::ClusterSetup {
        search: Arc::new(search),
        node,
        name: c.name.clone(),
        bus: Arc::new(bus),
        view: heartbeat.view(),
        ownership,
        events: Arc::new(events),
    };
    Ok((setup, heartbeat, nats))
}

/// Deletes stored components no plugin uses, every `plugins.unused_component_grace_s`,
/// those stored before that long ago (an upload stores its component, then its plugin,
/// within a few storage deadlines). Every node of a cluster may run it: it is idempotent.
fn spawn_component_collector(app: Arc<app::App>) {
    let grace_ms = app.config.plugins.unused_component_grace_s.saturating_mul(1_000);
    tokio::spawn(async move {
        // The first look one period after start-up: a start is not the time to scan
        // every plugin and component.
        let period = std::time::Duration::from_millis(grace_ms);
        let mut every = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let cutoff = app.clock.unix_ms().saturating_sub(grace_ms);
            match app.store.collect_components(cutoff).await {
                Ok(deleted) => {
                    for hash in &deleted {
                        app.plugins.forget(hash);
                        tracing::info!(component = %hash, "deleted a component no plugin uses");
                    }
                    let count = deleted.len() as u64;
                    app.metrics.components_collected.fetch_add(count, std::sync::atomic::Ordering::Relaxed);
                    guildhall_runtime::Metrics::inc(&app.metrics.component_collections);
                }
                Err(e) => tracing::warn!(error = %e, "could not collect unused components; trying again later"),
            }
        }
    });
}

/// The indexing worker of a single host: the `indexer` consumer of the embedded stream into
/// this node's cells, until shutdown.
async fn spawn_indexing_worker(app: &Arc<app::App>) -> Result<(), String> {
    let Some(cells) = app.local_cells.clone() else { return Ok(()) };
    let consumer = app.events.consumer("indexer").await.map_err(|e| format!("event stream consumer: {e}"))?;
    let c = &app.config.search;
    let config = WorkerConfig {
        max_batch: c.max_batch.max(1),
        linger: std::time::Duration::from_millis(c.linger_ms),
        commit_interval: std::time::Duration::from_millis(c.commit_interval_ms),
        plugin_deadline: std::time::Duration::from_millis(c.indexer_deadline_ms.max(1)),
        ..WorkerConfig::default()
    };
    let worker = IndexingWorker::new(
        consumer,
        cells,
        app.store.clone(),
        Some(app.plugins.clone()),
        app.clock.clone(),
        app.metrics.clone(),
        config,
    )
    .telling(Arc::new(disabled_indexers::ToGuildActors(app.directory.clone())));
    // On a thread of its own below request handling (see `guildhall_search::priority`).
    let (stop, background) = (app.shutdown_signal(), c.background);
    std::thread::Builder::new()
        .name("guildhall-indexer".into())
        .spawn(move || {
            if background {
                guildhall_search::priority::to_background();
            }
            match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime.block_on(worker.run(stop)),
                Err(e) => {
                    tracing::error!(error = %e, "the indexing worker's runtime did not start: nothing is indexed")
                }
            }
        })
        .map_err(|e| format!("starting the indexing worker: {e}"))?;
    Ok(())
}

/// How often stored message events the stream may miss are looked for, and how many logs
/// one look takes on.
const EVENT_SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(30);
const EVENT_SWEEP_LOGS: usize = 1_000;

/// Starts the actor of every log that holds events its last actor did not relay (it
/// stopped while the stream was down, or its node died): an actor relays what storage holds
/// before anything else. (A running actor is relaying already; it is left alone.) In a
/// cluster every node looks, and `locate` starts each actor on its owner.
fn spawn_event_sweeper(app: Arc<app::App>) {
    use guildhall_core::stream::LogKey;
    tokio::spawn(async move {
        let mut every = tokio::time::interval_at(tokio::time::Instant::now() + EVENT_SWEEP_EVERY, EVENT_SWEEP_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let pending = match app.store.logs_pending(EVENT_SWEEP_LOGS).await {
                Ok(pending) => pending,
                Err(e) => {
                    tracing::warn!(error = %e, "could not list logs with events to relay; trying again later");
                    continue;
                }
            };
            for key in pending {
                let directory = match key {
                    LogKey::Guild(_) => &app.directory,
                    LogKey::Dm(_) => &app.dms,
                };
                if directory.is_running_here(key.id()) {
                    continue;
                }
                if let Err(e) = directory.locate(key.id()).await {
                    tracing::warn!(log = ?key, error = %e, "could not start an actor to relay its stored events");
                }
            }
        }
    });
}

pub(crate) async fn wait_for_signal() {
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
