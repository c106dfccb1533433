//! Who is in the cluster, kept in NATS JetStream, nothing home-made.
//!
//! Every live node holds one key in a KV bucket, named by its node id, whose value says how
//! to reach it. The bucket's `max_age` is the lease: a key not rewritten within it is
//! removed by the server. So:
//! - **Node ids are leases.** A node takes its id with `create`, which succeeds only if
//!   no live node holds the key; two hosts can never mint snowflakes with the same
//!   (datacenter, worker) pair at once. `--node-id N` is checked the same way, and
//!   without one a node takes the lowest free id.
//! - **Heartbeats are compare-and-set renewals** (`update` at the revision the node last
//!   wrote). If the key expired (the node stalled longer than the lease, or was cut off),
//!   the renewal fails even if nobody took the id yet, and the node has lost its lease: it
//!   must stop minting ids and stop acting for the cluster ([`Heartbeat::lost`]).
//! - **The view is the bucket's keys.** Every node lists them each heartbeat and derives
//!   the same [`Ring`] from the same set. A node that dies (kill -9) disappears when its
//!   lease runs out; one that leaves deletes its key at once.
//!
//! Why KV with a TTL rather than heartbeat messages with timeouts: the lease and the id
//! reservation are the same record, kept by the server, so there is no window where a
//! node is "alive" to some and "dead" to others longer than one refresh, and a restarted
//! node cannot take an id that a live node still holds.

use guildhall_core::clock::Clock;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv::{self, CreateErrorKind, UpdateErrorKind};
use bytes::Bytes;
use futures_util::TryStreamExt;
use guildhall_runtime::addresses::reply::NodeId;
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::ring::Ring;

/// Node ids are snowflake (datacenter, worker) pairs: 5 bits each.
pub const MAX_NODES: u16 = 1 << 10;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub node: NodeId,
    /// Where its HTTP and gateway listen, as clients should be sent there.
    pub advertise: String,
    pub started_unix_ms: u64,
    /// Leaving: it hands its guilds off and takes no new ones.
    pub draining: bool,
    /// Random per acquisition: tells this lease's own writes from anyone else's (a renewal
    /// whose answer was lost may still have been applied).
    #[serde(default)]
    pub incarnation: u64,
}

#[derive(Debug, Clone)]
pub struct MembershipConfig {
    /// The KV bucket (default `guildhall_nodes`).
    pub bucket: String,
    /// How long a node stays a member without renewing (default 6 s; renewed every third).
    pub lease: Duration,
}

impl Default for MembershipConfig {
    fn default() -> Self {
        MembershipConfig { bucket: "guildhall_nodes".into(), lease: Duration::from_secs(6) }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("node id {node} is held by a live node ({holder})")]
    NodeIdTaken { node: NodeId, holder: String },
    #[error("node id {0} is out of range (0..{MAX_NODES})")]
    NodeIdOutOfRange(NodeId),
    #[error("all {MAX_NODES} node ids are taken")]
    NoFreeNodeId,
    #[error("this node's lease on id {0} ran out; it is no longer a member")]
    LeaseLost(NodeId),
    #[error("NATS: {0}")]
    Nats(String),
}

fn nats(e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Nats(e.to_string())
}

fn key(node: NodeId) -> String {
    format!("node-{node}")
}

fn encode(info: &NodeInfo) -> Bytes {
    Bytes::from(serde_json::to_vec(info).expect("NodeInfo serializes"))
}

/// Opens (creating it if needed) the membership bucket.
pub async fn open_bucket(client: &async_nats::Client, config: &MembershipConfig) -> Result<kv::Store, ClusterError> {
    let jetstream = async_nats::jetstream::new(client.clone());
    let bucket = kv::Config {
        bucket: config.bucket.clone(),
        description: "Guildhall nodes: one key per live node, kept alive by renewals".into(),
        history: 1,
        max_age: config.lease,
        // On disk, so that a restarted NATS server still knows who holds which id.
        storage: async_nats::jetstream::stream::StorageType::File,
        max_value_size: 4096,
        ..Default::default()
    };
    jetstream.create_or_update_key_value(bucket).await.map_err(nats)
}

/// The live members, by node id (expired keys are gone; unreadable values are skipped and
/// logged).
pub async fn members(bucket: &kv::Store) -> Result<BTreeMap<NodeId, NodeInfo>, ClusterError> {
    let keys: Vec<String> = bucket.keys().await.map_err(nats)?.try_collect().await.map_err(nats)?;
    let mut members = BTreeMap::new();
    for k in keys {
        let Some(value) = bucket.get(k.clone()).await.map_err(nats)? else { continue }; // expired meanwhile
        match serde_json::from_slice::<NodeInfo>(&value) {
            Ok(info) if key(info.node) == k => {
                members.insert(info.node, info);
            }
            _ => tracing::warn!(key = %k, "ignoring an unreadable membership entry"),
        }
    }
    Ok(members)
}

/// This node's hold on its id and its membership.
pub struct Lease {
    bucket: kv::Store,
    info: NodeInfo,
    revision: u64,
}

impl Lease {
    /// Takes `requested`, or the lowest free id, for `info` (whose `node` is filled in).
    pub async fn acquire(
        bucket: kv::Store,
        requested: Option<NodeId>,
        mut info: NodeInfo,
    ) -> Result<Lease, ClusterError> {
        info.incarnation = rand::random();
        if let Some(node) = requested {
            if node >= MAX_NODES {
                return Err(ClusterError::NodeIdOutOfRange(node));
            }
            info.node = node;
            return match Self::try_create(&bucket, &info).await? {
                Some(revision) => Ok(Lease { bucket, info, revision }),
                None => {
                    let holder = members(&bucket).await?.get(&node).map(|h| h.advertise.clone());
                    Err(ClusterError::NodeIdTaken { node, holder: holder.unwrap_or_else(|| "unknown".into()) })
                }
            };
        }
        let taken = members(&bucket).await?;
        for node in (0..MAX_NODES).filter(|n| !taken.contains_key(n)) {
            info.node = node;
            if let Some(revision) = Self::try_create(&bucket, &info).await? {
                return Ok(Lease { bucket, info, revision });
            } // taken meanwhile by another starting node: try the next
        }
        Err(ClusterError::NoFreeNodeId)
    }

    /// `Some(revision)` if the key was free and is now ours.
    async fn try_create(bucket: &kv::Store, info: &NodeInfo) -> Result<Option<u64>, ClusterError> {
        match bucket.create(key(info.node), encode(info)).await {
            Ok(revision) => Ok(Some(revision)),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(nats(e)),
        }
    }

    pub fn node(&self) -> NodeId {
        self.info.node
    }

    pub fn info(&self) -> &NodeInfo {
        &self.info
    }

    /// Rewrites the key at the revision last written: the heartbeat.
    pub async fn renew(&mut self) -> Result<(), ClusterError> {
        for _ in 0..2 {
            match self.bucket.update(key(self.info.node), encode(&self.info), self.revision).await {
                Ok(revision) => {
                    self.revision = revision;
                    return Ok(());
                }
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => {
                    // Someone else's write, or our own renewal whose answer was lost (NATS
                    // went away in between): only the latter keeps the lease.
                    match self.own_revision().await? {
                        Some(revision) => self.revision = revision,
                        None => return Err(ClusterError::LeaseLost(self.info.node)),
                    }
                }
                Err(e) => return Err(nats(e)),
            }
        }
        Err(ClusterError::LeaseLost(self.info.node))
    }

    /// The key's current revision if it still holds this lease's own value.
    async fn own_revision(&self) -> Result<Option<u64>, ClusterError> {
        let entry = self.bucket.entry(key(self.info.node)).await.map_err(nats)?;
        Ok(entry.filter(|e| e.operation == kv::Operation::Put).and_then(|e| {
            let held: NodeInfo = serde_json::from_slice(&e.value).ok()?;
            (held.incarnation == self.info.incarnation).then_some(e.revision)
        }))
    }

    /// Marks this node as leaving (others stop placing guilds on it).
    pub async fn set_draining(&mut self) -> Result<(), ClusterError> {
        self.info.draining = true;
        self.renew().await
    }

    /// Leaves at once (the others see it gone on their next refresh).
    pub async fn release(self) -> Result<(), ClusterError> {
        let (bucket, node, revision) = (self.bucket, self.info.node, self.revision);
        bucket.delete_expect_revision(key(node), Some(revision)).await.map_err(nats)
    }
}

/// What a node knows of the cluster: the members and the ring they make.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct View {
    pub members: BTreeMap<NodeId, NodeInfo>,
    /// Made of the members that are not draining.
    pub ring: Ring,
}

impl View {
    pub fn new(members: BTreeMap<NodeId, NodeInfo>) -> View {
        let ring = Ring::new(members.values().filter(|m| !m.draining).map(|m| m.node));
        View { members, ring }
    }
}

/// Until when this node's lease surely holds, by this process's monotonic clock: the send
/// time of the last renewal that succeeded, plus the lease, less a tenth of it. Nobody can
/// take this node's actors over before its lease ran out (a take-over waits for the
/// holder to leave the view), so a write checked against this needs no round trip.
/// Readings are on the process's monotonic clock (`Clock::monotonic_ms`).
#[derive(Clone)]
pub struct LeaseClock {
    until_ms: Arc<std::sync::atomic::AtomicU64>,
    clock: Arc<dyn Clock>,
}

impl LeaseClock {
    /// A lease clock that does not hold until a renewal succeeds.
    pub fn new(clock: Arc<dyn Clock>) -> LeaseClock {
        LeaseClock { until_ms: Arc::default(), clock }
    }

    /// A clock that holds for `for_` from now (tests and tools; nodes get theirs from
    /// their heartbeat).
    pub fn holding_for(for_: Duration, clock: Arc<dyn Clock>) -> LeaseClock {
        let lease = LeaseClock::new(clock);
        lease.renewed(lease.clock.monotonic_ms(), for_ + for_ / 9);
        lease
    }

    pub fn holds(&self) -> bool {
        self.clock.monotonic_ms() < self.until_ms.load(std::sync::atomic::Ordering::Acquire)
    }

    /// A renewal sent at `sent_ms` succeeded.
    fn renewed(&self, sent_ms: u64, lease: Duration) {
        let until = sent_ms + (lease - lease / 10).as_millis() as u64;
        self.until_ms.fetch_max(until, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Marks a node as leaving at once (not at its next renewal): the others' views, at their
/// next refresh, and then its own place no actor on it any more.
#[derive(Clone)]
pub struct Drainer(Arc<watch::Sender<bool>>);

impl Drainer {
    pub fn drain(&self) {
        self.0.send_replace(true);
    }
}

/// The renewal loop of a node: renews its lease and refreshes its view every third of the
/// lease. Dropping it stops both (the lease then expires).
pub struct Heartbeat {
    clock: LeaseClock,
    view: watch::Receiver<Arc<View>>,
    lost: watch::Receiver<bool>,
    rejoined: watch::Receiver<u64>,
    drain: Arc<watch::Sender<bool>>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Lease>,
}

impl Heartbeat {
    pub async fn start(mut lease: Lease, period: Duration, clock: Arc<dyn Clock>) -> Result<Heartbeat, ClusterError> {
        let first = View::new(members(&lease.bucket).await?);
        let lease_len = lease.bucket.status().await.map_err(nats)?.max_age();
        // Valid from the first renewal on (the first tick is now), never from the creation,
        // whose send time this loop does not know.
        let clock = LeaseClock::new(clock);
        let renewals = clock.clone();
        let (view_tx, view) = watch::channel(Arc::new(first));
        let (lost_tx, lost) = watch::channel(false);
        let (rejoined_tx, rejoined) = watch::channel(0u64);
        let (stop, mut stopped) = oneshot::channel();
        let (drain, mut draining) = watch::channel(false);
        let drain = Arc::new(drain);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let renewed = tokio::select! {
                    _ = tick.tick() => {
                        let sent = renewals.clock.monotonic_ms();
                        let renewed = lease.renew().await;
                        if renewed.is_ok() {
                            renewals.renewed(sent, lease_len);
                        }
                        renewed
                    }
                    Ok(()) = draining.changed(), if !lease.info.draining => {
                        let sent = renewals.clock.monotonic_ms();
                        let marked = lease.set_draining().await;
                        if marked.is_ok() {
                            renewals.renewed(sent, lease_len);
                        }
                        // The others see it at their next refresh, within a period; this
                        // node's own view changes after that, so that all hand actors to
                        // the same new owners at about the same time.
                        tokio::time::sleep(period + Duration::from_millis(200)).await;
                        marked
                    }
                    _ = &mut stopped => return lease,
                };
                match renewed {
                    Ok(()) => {}
                    Err(ClusterError::LeaseLost(node)) => {
                        // Its key ran out (NATS was away longer than the lease, or this node
                        // stalled). The same id may be taken again if nobody else took it:
                        // the node then hands its actors off and carries on.
                        let sent = renewals.clock.monotonic_ms();
                        match Lease::acquire(lease.bucket.clone(), Some(node), lease.info.clone()).await {
                            Ok(fresh) => {
                                renewals.renewed(sent, lease_len);
                                tracing::warn!(node, "lease lost and taken again; this node's actors start afresh");
                                lease = fresh;
                                rejoined_tx.send_modify(|n| *n += 1);
                            }
                            Err(ClusterError::NodeIdTaken { holder, .. }) => {
                                tracing::error!(node, %holder, "lease lost and the id taken: no longer a cluster member");
                                lost_tx.send_replace(true);
                                return lease;
                            }
                            Err(e) => tracing::warn!(node, error = %e, "lease lost; taking it again failed; retrying"),
                        }
                    }
                    // NATS away for a moment: try again next tick (the lease outlasts
                    // two missed renewals).
                    Err(e) => tracing::warn!(error = %e, "cannot renew the lease; retrying"),
                }
                match members(&lease.bucket).await {
                    Ok(members) => {
                        view_tx.send_if_modified(|current| {
                            if current.members == members {
                                return false;
                            }
                            *current = Arc::new(View::new(members));
                            true
                        });
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot list members; keeping the last view"),
                }
            }
        });
        Ok(Heartbeat { clock, view, lost, rejoined, drain, stop: Some(stop), task })
    }

    /// What marks this node as leaving (see [`Drainer`]).
    pub fn drainer(&self) -> Drainer {
        Drainer(self.drain.clone())
    }

    /// Until when this node's lease surely holds (see [`LeaseClock`]).
    pub fn lease_clock(&self) -> LeaseClock {
        self.clock.clone()
    }

    /// The current view; `changed()` on a clone waits for the next.
    pub fn view(&self) -> watch::Receiver<Arc<View>> {
        self.view.clone()
    }

    /// Becomes true once the lease is lost for good: its id taken by another node (then it
    /// stays lost).
    pub fn lost(&self) -> watch::Receiver<bool> {
        self.lost.clone()
    }

    /// Counts the times the lease ran out and this node took its id again: each time, what
    /// it ran may have been taken over meanwhile, so its actors must start afresh.
    pub fn rejoined(&self) -> watch::Receiver<u64> {
        self.rejoined.clone()
    }

    /// Stops renewing and hands the lease back (to release it, or to let it expire).
    pub async fn stop(mut self) -> Lease {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.expect("the heartbeat task does not panic")
    }
}

impl Drop for Heartbeat {
    /// Dropped without `stop`: renewals end, and the lease runs out on its own.
    fn drop(&mut self) {
        self.task.abort();
    }
}
