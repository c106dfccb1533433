//! The process-wide context every edge shares: configuration, storage, id generator,
//! directory, session registry, metrics and the shutdown signal.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use guildhall_core::clock::Clock;
use guildhall_core::guild::SessionId;
use guildhall_core::snowflake::NextIdError;
use guildhall_core::Snowflake;
use guildhall_data::DataService;
use guildhall_plugins::PluginEngine;
use guildhall_runtime::addresses::reply::{NodeId, Replies};
use guildhall_runtime::Generator;
use guildhall_scylla::{ScyllaConfig, ScyllaStore};
use guildhall_store::layer::{Deadline, Layered};
use guildhall_store::Storage;
use guildhall_store_redb::EmbeddedStore;
use tokio::sync::watch;

use crate::config::Config;
use guildhall_bus::{Bus, LocalBus};
use guildhall_cluster::wire::ActorKind;
use guildhall_cluster::{
    serve_hosted_bots, ClusterDirectory, ClusterMover, ClusterReads, ClusterRouter, SpreadBots, Transport, View,
};
use guildhall_runtime::actors::audit::AuditLog;
use guildhall_runtime::actors::directory::{Directory, LocalDirectory};
use guildhall_runtime::actors::guild_actor::{GuildDeps, Relays};
use guildhall_runtime::actors::ownership::Ownership;
use guildhall_runtime::addresses::registry::SessionRegistry;
use guildhall_runtime::addresses::session::{SessionMover, SessionRouter};
use guildhall_runtime::infrastructure::config::BotPlacementMode;
use guildhall_runtime::infrastructure::event_relay::EventStream;
use guildhall_runtime::infrastructure::reads::MessageReads;
use guildhall_runtime::plugin_runners::pubsub::PluginBus;
use guildhall_runtime::plugin_runners::remote_bots::{BotPlacement, HostedBots, HostedBotsDeps};
use guildhall_runtime::Metrics;
use guildhall_search::{Cells, SearchCells};
use guildhall_stream::{EmbeddedLog, EventLog};

/// Entries the embedded event log keeps at most while no consumer reads it.
const EMBEDDED_EVENTS_KEPT: u64 = 10_000_000;

pub struct App {
    pub config: Config,
    /// The durable stream of message events (what this node's actors relay to).
    pub events: Arc<dyn EventLog>,
    /// Where searches go (`None`: search is off): this host's cells, or in a cluster the
    /// indexing workers that own them (over the bus).
    pub search: Option<Arc<dyn SearchCells>>,
    /// One host's cells, which its own indexing worker fills (`None` in a cluster).
    pub local_cells: Option<Arc<Cells>>,
    /// The process's clock (see `clock.rs`); everything the app composes gets it.
    pub clock: Arc<dyn Clock>,
    pub store: Arc<dyn Storage>,
    /// The deadline on every call to `store` (it counts the calls that timed out).
    pub storage_deadline: Arc<Deadline>,
    /// Coalesced, channel-routed message reads; message writes that must invalidate them.
    pub data: Arc<DataService>,
    /// Where REST reads messages: the data service here, or in a cluster the data service
    /// of the node that runs the channel's actor.
    pub reads: Arc<dyn MessageReads>,
    /// Compiles, validates and runs guild plugins.
    pub plugins: Arc<PluginEngine>,
    pub ids: Arc<Generator>,
    /// Makes audit log entries (the guild actors store them).
    pub audit: AuditLog,
    /// Guild actors, by guild id.
    pub directory: Arc<dyn Directory>,
    /// DM channel actors, by channel id.
    pub dms: Arc<dyn Directory>,
    /// How to reach any session (by id, user or resume key): what REST and RESUME use.
    pub router: Arc<dyn SessionRouter>,
    /// This node's own sessions: only the gateway edge adds and removes entries.
    pub local_sessions: Arc<SessionRegistry>,
    /// Where plugins publish and subscribe (checks their subscriptions at configuration).
    pub plugin_bus: Arc<PluginBus>,
    /// In a cluster: finds a RESUME's session on another node and takes it over.
    pub mover: Option<Arc<dyn SessionMover>>,
    /// In a cluster: this node's guild and DM directories (to see what still runs here).
    cluster_directories: Vec<Arc<ClusterDirectory>>,
    /// This node's number in the cluster: its snowflake (datacenter, worker) pair.
    pub node: NodeId,
    pub metrics: Arc<Metrics>,
    next_session: AtomicU64,
    shutdown: watch::Sender<bool>,
    /// Set when this node leaves the cluster: sessions get op 7 and resume elsewhere.
    drain: watch::Sender<bool>,
    /// Rate limits and connection caps per user and per address (`rate_limits.*`), and the
    /// daily session starts.
    pub limits: crate::limits::Limits,
    /// Argon2 work for register and login, bounded (`rest.password_hashes_*`).
    pub passwords: crate::passwords::Passwords,
}

/// How this node fits in.
pub enum Topology {
    /// Alone: every guild runs here; sessions are all local.
    Single,
    /// One node of a cluster: guilds run on their ring owner, reached over the bus.
    Cluster(ClusterSetup),
}

/// What joining a cluster gave this node (see `serve`).
pub struct ClusterSetup {
    /// The id leased in the cluster's membership bucket: snowflake datacenter and worker.
    pub node: NodeId,
    pub name: String,
    pub bus: Arc<dyn Bus>,
    pub view: watch::Receiver<Arc<View>>,
    /// The fence that keeps each guild on one node.
    pub ownership: Arc<dyn Ownership>,
    /// The durable stream of message events (JetStream).
    pub events: Arc<dyn EventLog>,
    /// The cluster's search cells, owned by its indexing workers (`guildhall worker indexer`).
    pub search: Arc<dyn SearchCells>,
}

/// Between view changes, how often actors running here that the ring gives to another node
/// are looked for: one can start after the view changed (a request that reached this node
/// while it thought itself alone, e.g. as NATS came back) and would otherwise hold its
/// ownership, and keep the ring's owner from starting it, for as long as it runs.
const REBALANCE_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// When the ring changes, actors this node no longer owns are handed off, and this node's
/// sessions connected to guilds on a node that died connect to the guilds' new owners.
/// Bots follow: the guilds staying here place theirs anew, and the bots this node runs
/// for a node that left end (their guilds start them again where they restart). Actors
/// that started here after the last change are handed off by a periodic check.
fn spawn_rebalancer(
    mut view: watch::Receiver<Arc<View>>,
    transport: Arc<Transport>,
    directories: [Arc<ClusterDirectory>; 2],
    hosted_bots: Arc<HostedBots>,
    place_bots: bool,
) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(REBALANCE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                changed = view.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = every.tick() => {
                    for directory in &directories {
                        let moved = directory.rebalance_to_owners().await;
                        if moved > 0 {
                            tracing::info!(moved, "handed off actors that started here after the ring moved them");
                        }
                    }
                    continue;
                }
            }
            let members = view.borrow_and_update().members.clone();
            let ended = hosted_bots.keep_origins(|node| members.contains_key(&node));
            if ended > 0 {
                tracing::info!(ended, "ended the bots of guilds whose node left");
            }
            if place_bots {
                directories[0].place_bots().await;
            }
            for directory in &directories {
                let moved = directory.rebalance().await;
                if moved > 0 {
                    tracing::info!(moved, "handed actors off to their new owners");
                }
            }
            let guilds = transport.reconnect_orphans();
            if guilds > 0 {
                tracing::info!(guilds, "reconnecting sessions to guilds whose node died");
            }
        }
    });
}

impl App {
    /// Builds the node. In a cluster it also starts answering other nodes.
    pub async fn new(
        config: Config,
        opened: OpenedStorage,
        plugins: Arc<PluginEngine>,
        topology: Topology,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<App>, String> {
        let OpenedStorage { store, deadline: storage_deadline, events: storage_events } = opened;
        let metrics = Arc::new(Metrics::default());
        let node = match &topology {
            Topology::Single => NodeId::from(config.ids.datacenter) << 5 | NodeId::from(config.ids.worker),
            Topology::Cluster(setup) => setup.node,
        };
        // Snowflake ids carry the node: (datacenter, worker) = (node >> 5, node & 31). They
        // stay within the reservation on disk (none before the last run's).
        // A single host leases its node id in the storage (a cluster node leased it in NATS).
        let lease =
            matches!(topology, Topology::Single).then(|| crate::id_reservation::NodeLease { store: store.clone() });
        let (not_before, reserved) = crate::id_reservation::start(&config.data_dir, node, lease, clock.clone()).await?;
        let (dc, worker) = ((node >> 5) as u8, (node & 31) as u8);
        let ids = Arc::new(Generator::reserved(dc, worker, not_before, reserved, clock.clone()));
        let workers = if config.data.workers == 0 { num_cpus() } else { config.data.workers };
        let linger = std::time::Duration::from_millis(config.data.linger_ms);
        let data = DataService::with_linger(store.clone(), workers, config.data.coalescing, linger, clock.clone());
        let audit = AuditLog::spawn(store.clone(), ids.clone(), metrics.clone());
        let local_sessions = Arc::new(SessionRegistry::default());
        let replies = Replies::new(node, clock.clone());
        let transport = match &topology {
            Topology::Single => None,
            Topology::Cluster(setup) => Some(Transport::new(
                node,
                &setup.name,
                setup.bus.clone(),
                setup.view.clone(),
                local_sessions.clone(),
                metrics.clone(),
            )),
        };
        let router: Arc<dyn SessionRouter> = match &transport {
            None => local_sessions.clone(),
            Some(transport) => {
                replies.set_transport(transport.clone());
                Arc::new(ClusterRouter { transport: transport.clone() })
            }
        };
        // Plugins' pub/sub: in process alone, on the cluster's NATS otherwise.
        let (bus, cluster_name): (Arc<dyn Bus>, &str) = match &topology {
            Topology::Single => (Arc::new(LocalBus::new()), &config.cluster.name),
            Topology::Cluster(setup) => (setup.bus.clone(), &setup.name),
        };
        let plugin_bus = Arc::new(PluginBus::new(bus, cluster_name, &config.plugins.shared_subjects)?);
        let spread_bots = config.plugins.bot_placement == BotPlacementMode::Spread;
        // Message events: JetStream in a cluster; on one host the embedded store itself, or
        // (messages on ScyllaDB) a log file of its own.
        let storage_appends = storage_events.is_some() && matches!(topology, Topology::Single);
        let events: Arc<dyn EventLog> = match (&topology, storage_events) {
            (Topology::Single, Some(events)) => events,
            (Topology::Single, None) => {
                let path = config.data_dir.join("events.redb");
                let log =
                    EmbeddedLog::open(&path, EMBEDDED_EVENTS_KEPT).map_err(|e| format!("{}: {e}", path.display()))?;
                Arc::new(log)
            }
            (Topology::Cluster(setup), _) => setup.events.clone(),
        };
        let event_stream = EventStream {
            log: events.clone(),
            store: store.clone(),
            clock: clock.clone(),
            metrics: metrics.clone(),
            storage_appends,
        };
        let deps = GuildDeps {
            clock: clock.clone(),
            data: data.clone(),
            metrics: metrics.clone(),
            ids: ids.clone(),
            config: config.guild.clone(),
            plugins: Some(plugins.clone()),
            plugin_limits: config.plugins.clone(),
            audit: audit.clone(),
            replies: replies.clone(),
            sessions: router.clone(),
            locator: None, // the directory gives its own
            ownership: match &topology {
                Topology::Single => None,
                Topology::Cluster(setup) => Some(setup.ownership.clone()),
            },
            plugin_bus: Some(plugin_bus.clone()),
            bot_placement: match &transport {
                Some(transport) if spread_bots => {
                    Some(SpreadBots::new(transport.clone(), clock.clone()) as Arc<dyn BotPlacement>)
                }
                _ => None,
            },
            // On one host only search reads the events: without it, none are written (a guild
            // is backfilled from storage when search is turned on).
            events: match topology {
                Topology::Single if !config.search.enabled => None,
                _ => Some(event_stream),
            },
            relays: Relays::spawn(
                match config.gateway.relays {
                    0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
                    n => n,
                },
                config.gateway.relay_queue,
                metrics.clone(),
            ),
        };
        let reads: Arc<dyn MessageReads> = match &transport {
            None => data.clone(),
            Some(transport) => Arc::new(ClusterReads::new(transport.clone(), data.clone())),
        };
        let mut cluster_directories = Vec::new();
        let (directory, dms): (Arc<dyn Directory>, Arc<dyn Directory>) = match (&transport, &topology) {
            (Some(transport), Topology::Cluster(setup)) => {
                let guilds = ClusterDirectory::new(ActorKind::Guild, deps.clone(), transport.clone(), replies.clone());
                let dms = ClusterDirectory::new(ActorKind::Dm, deps, transport.clone(), replies.clone());
                let joining = |e| format!("joining the cluster's subjects: {e}");
                transport.serve(guilds.clone(), dms.clone(), replies, data.clone()).await.map_err(joining)?;
                // Every node runs bots for others' guilds if asked, whatever its own placement.
                let hosted_bots = HostedBots::new(HostedBotsDeps {
                    engine: plugins.clone(),
                    data: data.clone(),
                    reads: reads.clone(),
                    guilds: guilds.clone(),
                    plugin_bus: Some(plugin_bus.clone()),
                    limits: config.plugins.clone(),
                    metrics: metrics.clone(),
                    clock: clock.clone(),
                });
                serve_hosted_bots(transport, hosted_bots.clone()).await.map_err(joining)?;
                let directories = [guilds.clone(), dms.clone()];
                spawn_rebalancer(setup.view.clone(), transport.clone(), directories, hosted_bots, spread_bots);
                cluster_directories = vec![guilds.clone(), dms.clone()];
                (guilds, dms)
            }
            _ => (LocalDirectory::new(deps.clone()), LocalDirectory::dms(deps)),
        };
        let limits = crate::limits::Limits::new(config.rate_limits.clone(), clock.clone());
        let (config_hashes_running, config_hashes_waiting) =
            (config.rest.password_hashes_running, config.rest.password_hashes_waiting);
        let local_cells = match (&topology, config.search.enabled) {
            (Topology::Single, true) => {
                let dir = config.data_dir.join("search");
                let (layout, background) = (config.search.layout(), config.search.background);
                // A search index that does not open leaves search off (503), not the host down.
                match guildhall_search::priority::run_in_background(background, || Cells::open_layout(&dir, layout)) {
                    Ok(cells) => Some(Arc::new(cells)),
                    Err(e) => {
                        tracing::error!(dir = %dir.display(), error = %e, "the search index does not open: search is off");
                        None
                    }
                }
            }
            _ => None,
        };
        let search: Option<Arc<dyn SearchCells>> = match &topology {
            Topology::Single => local_cells.clone().map(|cells| cells as Arc<dyn SearchCells>),
            Topology::Cluster(setup) if config.search.enabled => Some(setup.search.clone()),
            Topology::Cluster(_) => None,
        };
        Ok(Arc::new(App {
            search,
            local_cells,
            events,
            clock,
            reads,
            ids,
            audit,
            config,
            store,
            storage_deadline,
            plugins,
            data,
            directory,
            dms,
            router,
            local_sessions,
            node,
            metrics,
            next_session: AtomicU64::new(1),
            plugin_bus,
            mover: transport.map(|transport| Arc::new(ClusterMover { transport }) as Arc<dyn SessionMover>),
            cluster_directories,
            shutdown: watch::channel(false).0,
            drain: watch::channel(false).0,
            limits,
            passwords: crate::passwords::Passwords::new(
                match config_hashes_running {
                    0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
                    n => n,
                },
                config_hashes_waiting,
            ),
        }))
    }

    pub fn new_id(&self) -> Result<Snowflake, NextIdError> {
        self.ids.next_id()
    }

    pub fn next_session_id(&self) -> SessionId {
        SessionId::new(self.node, self.next_session.fetch_add(1, Relaxed))
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Becomes true when this node starts leaving the cluster.
    pub fn drain_signal(&self) -> watch::Receiver<bool> {
        self.drain.subscribe()
    }

    /// Tells every session to reconnect (op 7); they resume on other nodes.
    pub fn begin_drain(&self) {
        self.drain.send_replace(true);
    }

    /// After this node's lease ran out and it took its id again: its actors start afresh.
    pub async fn restart_cluster_actors(&self) -> usize {
        let mut restarted = 0;
        for directory in &self.cluster_directories {
            restarted += directory.restart_all().await;
        }
        restarted
    }

    /// Guild and DM actors running on this node (a cluster's; a single host says 0).
    pub fn cluster_actors_here(&self) -> usize {
        self.cluster_directories.iter().map(|d| d.local().running().len()).sum()
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Opens the configured storage. A database that cannot be reached is retried with
/// exponential backoff (0.5 s doubling to 30 s), each failure logged, until it answers or
/// the process is told to stop: no silent exit, no crash loop.
/// The configured backend with a deadline on every call (`data.call_timeout_ms`), and
/// the deadline (it counts the calls that ran out of time).
/// The storage a node opened: the backend behind its deadline, and, where the embedded store
/// is also the host's stream of message events (one host, messages in redb), that stream.
pub struct OpenedStorage {
    pub store: Arc<dyn Storage>,
    pub deadline: Arc<Deadline>,
    pub events: Option<Arc<dyn EventLog>>,
}

pub async fn open_storage(config: &Config) -> Result<OpenedStorage, String> {
    let deadline = Arc::new(Deadline::new(std::time::Duration::from_millis(config.data.call_timeout_ms)));
    let (backend, events) = open_backend(config).await?;
    Ok(OpenedStorage { store: Arc::new(Layered::new(backend, deadline.clone())), deadline, events })
}

async fn open_backend(config: &Config) -> Result<(Arc<dyn Storage>, Option<Arc<dyn EventLog>>), String> {
    match config.storage.as_str() {
        // One host: the store is the stream too (a batch's events commit with it), if anything
        // reads it (search). A cluster node relays its events to JetStream from the outbox.
        "embedded" if config.cluster.nats.is_empty() && config.search.enabled => {
            let dir = &config.data_dir;
            let (store, events) = EmbeddedStore::open_streaming(dir, EMBEDDED_EVENTS_KEPT)
                .map_err(|e| format!("opening {}: {e}", dir.display()))?;
            Ok((Arc::new(store), Some(Arc::new(events))))
        }
        "embedded" => {
            let dir = &config.data_dir;
            let store = EmbeddedStore::open(dir).map_err(|e| format!("opening {}: {e}", dir.display()))?;
            Ok((Arc::new(store), None))
        }
        url if url.starts_with("scylla://") => {
            let scylla = ScyllaConfig::parse(url).map_err(|e| format!("--storage {url}: {e}"))?;
            let mut delay = std::time::Duration::from_millis(500);
            for attempt in 1u64.. {
                match ScyllaStore::connect(&scylla).await {
                    Ok(store) => {
                        tracing::info!(nodes = %scylla.nodes.join(","), keyspace = %scylla.keyspace, "connected to ScyllaDB");
                        return Ok((Arc::new(store), None));
                    }
                    Err(e) => {
                        let retry_in_ms = delay.as_millis() as u64;
                        tracing::error!(attempt, error = %e, retry_in_ms, "cannot reach the database; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(std::time::Duration::from_secs(30));
                    }
                }
            }
            unreachable!("the retry loop only ends by returning")
        }
        other => Err(format!("unknown storage {other:?}: use embedded or scylla://HOST:PORT/KEYSPACE")),
    }
}
