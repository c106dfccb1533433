//! `guildhall worker indexer`: one of a cluster's indexing workers.
//!
//! The cluster's search cells (`search.cells` hashed ones and one per dedicated guild) are
//! placed on the workers by the same consistent hash ring as guilds are on nodes, over the
//! members of the workers' own membership bucket (`{cluster}_indexers`), and fenced the
//! same way (one key per cell in `{cluster}_cells`; see `guildhall_cluster::ownership`).
//! For each cell it owns, a worker runs:
//! - an [`IndexingWorker`] on a thread of its own, reading the cell's durable consumer of
//!   the JetStream stream (`indexer-cell-{n}`), checking its fence before each commit;
//! - the cell's responder ([`serve_cell`]): searches routed to the cell by any node.
//!
//! Where a cell's committed index lives: on the owning worker's disk (`data_dir/search`),
//! nowhere shared. A worker that takes a cell over keeps its own copy if that copy is as far
//! as the consumer (it was the last owner); otherwise it starts the cell empty and rebuilds
//! it from storage (backfills, newest first: a guild's searches answer Discord's 202 until
//! its recent days are in, then say the deep history is still being indexed) while the live
//! entries flow from the consumer's acknowledgement on.
//!
//! A worker leaves by SIGTERM: each cell finishes its batch and is given back, so the next
//! owner takes it at once; after kill -9, the others take its cells once its lease ran out.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use guildhall_bus::NatsBus;
use guildhall_cluster::membership::open_bucket;
use guildhall_cluster::ownership::open_ownership_bucket;
use guildhall_cluster::{Heartbeat, KvOwnership, Lease, MembershipConfig, NodeInfo, View};
use guildhall_core::clock::Clock;
use guildhall_core::stream::CellLayout;
use guildhall_core::sync::LockUnpoisoned;
use guildhall_core::Snowflake;
use guildhall_runtime::actors::ownership::{Ownership, OwnershipToken};
use guildhall_runtime::Metrics;
use guildhall_search::routing::serve_cell;
use guildhall_search::{Cells, Fence, IndexingWorker, WorkerConfig};
use guildhall_store::Storage;
use guildhall_stream::{JetStreamConfig, JetStreamLog};
use tokio::sync::watch;

use crate::clock::SystemClock;
use crate::disabled_indexers::OverTheBus;
use crate::ServeArgs;

/// The durable consumers' name (each cell's is `indexer-cell-{n}`).
const CONSUMER: &str = "indexer";

/// How often the cells this worker should own are looked at, besides view changes.
const PLACEMENT_EVERY: Duration = Duration::from_secs(1);

/// Runs an indexing worker until SIGTERM or SIGINT.
/// (`args.listen` is where `/metrics` and `/healthz` listen.)
pub async fn run(args: ServeArgs) -> Result<(), String> {
    let config = args.load()?;
    if config.cluster.nats.is_empty() {
        return Err("an indexing worker serves a cluster: give --cluster nats://HOST:PORT".into());
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = crate::app::open_storage(&config).await?.store;
    let plugins = crate::plugin_engine(&config)?;
    let metrics = Arc::new(Metrics::default());

    let c = &config.cluster;
    let bus =
        NatsBus::connect(&c.nats, &format!("guildhall indexer {}", config.listen)).await.map_err(|e| e.to_string())?;
    let client = bus.client().clone();
    let layout = config.search.layout();
    let events = JetStreamLog::open(client.clone(), JetStreamConfig::new(&c.name, layout.clone()))
        .await
        .map_err(|e| format!("event stream: {e}"))?;

    let listener =
        tokio::net::TcpListener::bind(config.listen).await.map_err(|e| format!("binding {}: {e}", config.listen))?;
    let listen = listener.local_addr().map_err(|e| e.to_string())?;
    let membership =
        MembershipConfig { bucket: format!("{}_indexers", c.name), lease: Duration::from_millis(c.lease_ms) };
    let bucket = open_bucket(&client, &membership).await.map_err(|e| format!("membership bucket: {e}"))?;
    let me = NodeInfo {
        node: 0,
        advertise: listen.to_string(),
        started_unix_ms: clock.unix_ms(),
        draining: false,
        incarnation: 0,
    };
    let lease = Lease::acquire(bucket, None, me).await.map_err(|e| e.to_string())?;
    let node = lease.node();
    let heartbeat = Heartbeat::start(lease, membership.lease / 3, clock.clone()).await.map_err(|e| e.to_string())?;
    let owners = open_ownership_bucket(&client, &format!("{}_cells", c.name))
        .await
        .map_err(|e| format!("cell ownership bucket: {e}"))?;
    let ownership = Arc::new(
        KvOwnership::new(owners, node, heartbeat.view(), clock.clone())
            .with_lease(heartbeat.lease_clock(), membership.lease / 3),
    );
    tokio::spawn(serve_metrics(listener, metrics.clone()));
    tracing::info!(node, nats = %c.nats, cluster = %c.name, cells = layout.count(), "indexing worker ready");
    // The line scripts and tests wait for (as `serve` prints it).
    println!("guildhall listening on {listen}");

    let s = &config.search;
    let worker_config = WorkerConfig {
        max_batch: s.max_batch.max(1),
        linger: Duration::from_millis(s.linger_ms),
        commit_interval: Duration::from_millis(s.commit_interval_ms),
        plugin_deadline: Duration::from_millis(s.indexer_deadline_ms.max(1)),
        ..WorkerConfig::default()
    };
    let shared = Shared {
        node,
        cluster: c.name.clone(),
        dir: config.data_dir.join("search"),
        layout,
        client,
        events,
        ownership,
        store,
        plugins,
        clock,
        metrics,
        worker_config,
    };
    let mut placement = Placement { shared: Arc::new(shared), running: HashMap::new() };
    let (mut view, mut lost) = (heartbeat.view(), heartbeat.lost());
    let signal = crate::wait_for_signal();
    tokio::pin!(signal);
    loop {
        let current = view.borrow_and_update().clone();
        placement.place(&current).await;
        tokio::select! {
            _ = &mut signal => break,
            _ = view.changed() => {}
            _ = lost.wait_for(|lost| *lost) => {
                placement.stop_all().await;
                return Err("this worker lost its cluster membership".into());
            }
            _ = tokio::time::sleep(PLACEMENT_EVERY) => {}
        }
    }
    tracing::info!("stopping: each cell finishes its batch and is given back");
    placement.stop_all().await;
    if let Err(e) = heartbeat.stop().await.release().await {
        tracing::warn!(error = %e, "could not leave the workers' membership; the lease runs out on its own");
    }
    tracing::info!("stopped cleanly");
    Ok(())
}

/// A cell's key on the ring: its number under a tag of its own (small numbers alone would
/// crowd one arc of the circle: the ring's mix maps 0 to 0).
fn cell_key(cell: u32) -> u64 {
    0x6365_6c6c_0000_0000 | u64::from(cell)
}

/// What every cell of this worker uses.
struct Shared {
    node: u16,
    cluster: String,
    dir: PathBuf,
    layout: CellLayout,
    client: async_nats::Client,
    events: JetStreamLog,
    ownership: Arc<KvOwnership>,
    store: Arc<dyn Storage>,
    plugins: Arc<guildhall_plugins::PluginEngine>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    worker_config: WorkerConfig,
}

/// A cell this worker runs.
struct RunningCell {
    stop: watch::Sender<bool>,
    /// Turns true when the cell's worker thread ended (stopped, or it lost its fence).
    ended: watch::Receiver<bool>,
    responder: tokio::task::JoinHandle<()>,
    token: OwnershipToken,
}

struct Placement {
    shared: Arc<Shared>,
    running: HashMap<u32, RunningCell>,
}

impl Placement {
    /// Starts the cells the ring gives this worker and stops the others (and any whose
    /// worker ended by itself, to start again if still its own).
    async fn place(&mut self, view: &View) {
        let mine: BTreeSet<u32> = (0..self.shared.layout.count())
            .filter(|cell| view.ring.owner(cell_key(*cell)) == Some(self.shared.node))
            .collect();
        let finished: Vec<u32> = self.running.iter().filter(|(_, r)| *r.ended.borrow()).map(|(c, _)| *c).collect();
        let leaving: Vec<u32> = self.running.keys().filter(|c| !mine.contains(c)).copied().collect();
        for cell in finished.into_iter().chain(leaving) {
            if let Some(running) = self.running.remove(&cell) {
                self.stop(cell, running).await;
            }
        }
        for cell in mine {
            if self.running.contains_key(&cell) {
                continue;
            }
            match start_cell(&self.shared, cell).await {
                Ok(running) => {
                    self.running.insert(cell, running);
                }
                // Its last owner still hands it over, or NATS or storage is away: again soon.
                Err(e) => tracing::info!(cell, error = %e, "cannot take a search cell yet"),
            }
        }
        self.shared.metrics.search_cells_owned.store(self.running.len() as u64, Relaxed);
    }

    async fn stop(&self, cell: u32, mut running: RunningCell) {
        running.responder.abort();
        running.stop.send_replace(true);
        if running.ended.wait_for(|ended| *ended).await.is_err() {
            tracing::error!(cell, "a search cell's worker thread vanished");
        }
        self.shared.ownership.release(running.token).await;
        self.shared.metrics.search_stream_lag.lock_unpoisoned().remove(&cell.to_string());
        tracing::info!(cell, "search cell given back");
    }

    async fn stop_all(&mut self) {
        let running: Vec<(u32, RunningCell)> = self.running.drain().collect();
        for (cell, running) in running {
            self.stop(cell, running).await;
        }
        self.shared.metrics.search_cells_owned.store(0, Relaxed);
    }
}

/// The fence of a cell: its ownership token, checked with this worker's lease.
struct CellFence {
    ownership: Arc<KvOwnership>,
    token: OwnershipToken,
}

#[async_trait]
impl Fence for CellFence {
    async fn holds(&self) -> bool {
        self.ownership.still_owned(&self.token).await
    }
}

/// Takes `cell`: the fence, its consumer, its index (kept, or emptied if stale), its worker
/// thread and its responder.
async fn start_cell(shared: &Arc<Shared>, cell: u32) -> Result<RunningCell, String> {
    let started = std::time::Instant::now();
    let token = shared.ownership.acquire("cell", Snowflake(u64::from(cell))).await?;
    let taken = async {
        let mut consumer = shared.events.cell_consumer(CONSUMER, cell).await.map_err(|e| e.to_string())?;
        let (dir, layout) = (shared.dir.clone(), shared.layout.clone());
        let opened = tokio::task::spawn_blocking(move || Cells::open_some(&dir, layout, &[cell]));
        let mut cells = opened.await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
        // The copy here is current if this worker indexed the cell last; otherwise it is rebuilt.
        let position = cells.writer(cell as usize).stream_position();
        let rebuilt = consumer.acknowledged_after(position).await.map_err(|e| e.to_string())?;
        let acknowledged = consumer.progress().await.map_err(|e| e.to_string())?.acknowledged;
        if rebuilt {
            drop(cells);
            let (dir, layout) = (shared.dir.clone(), shared.layout.clone());
            let rebuilding = tokio::task::spawn_blocking(move || Cells::rebuild_one(&dir, layout, cell, acknowledged));
            cells = rebuilding.await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
        }
        let cells = Arc::new(cells);
        let fence = Arc::new(CellFence { ownership: shared.ownership.clone(), token: token.clone() });
        let worker = IndexingWorker::new(
            consumer,
            cells.clone(),
            shared.store.clone(),
            Some(shared.plugins.clone()),
            shared.clock.clone(),
            shared.metrics.clone(),
            shared.worker_config.clone(),
        )
        .for_cell(cell as usize, fence)
        .telling(Arc::new(OverTheBus::new(shared.client.clone(), &shared.cluster)));
        let responder =
            serve_cell(shared.client.clone(), &shared.cluster, cell, cells).await.map_err(|e| e.to_string())?;
        let (stop, stopped) = watch::channel(false);
        let (ended_tx, ended) = watch::channel(false);
        // Its own thread and runtime: commits block, and must not hold up the lease's renewals.
        let spawned = std::thread::Builder::new().name(format!("guildhall-cell-{cell}")).spawn(move || {
            match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime.block_on(worker.run(stopped)),
                Err(e) => tracing::error!(cell, error = %e, "a search cell's runtime did not start"),
            }
            ended_tx.send_replace(true);
        });
        if let Err(e) = spawned {
            responder.abort();
            return Err(format!("starting cell {cell}'s worker: {e}"));
        }
        tracing::info!(
            cell,
            position,
            acknowledged,
            rebuilt,
            took_ms = started.elapsed().as_millis() as u64,
            "search cell taken"
        );
        Ok::<_, String>(RunningCell { stop, ended, responder, token: token.clone() })
    };
    match taken.await {
        Ok(running) => {
            Metrics::inc(&shared.metrics.search_cells_taken);
            Ok(running)
        }
        Err(e) => {
            shared.ownership.release(token).await;
            Err(e)
        }
    }
}

/// `/metrics` (Prometheus text) and `/healthz` for the worker.
async fn serve_metrics(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    use http_body_util::Full;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let metrics = metrics.clone();
                async move {
                    let (status, body) = match req.uri().path() {
                        "/metrics" => {
                            let readings = crate::prometheus::Readings::default();
                            let data = guildhall_data::DataMetrics::default();
                            (hyper::StatusCode::OK, crate::prometheus::render(&metrics, &data, &readings))
                        }
                        "/healthz" => (hyper::StatusCode::OK, r#"{"status":"ok"}"#.to_owned()),
                        _ => (hyper::StatusCode::NOT_FOUND, r#"{"code":0,"message":"404: Not Found"}"#.to_owned()),
                    };
                    let response = hyper::Response::builder()
                        .status(status)
                        .body(Full::new(bytes::Bytes::from(body)))
                        .expect("a valid response");
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "a metrics connection ended with an error");
            }
        });
    }
}
