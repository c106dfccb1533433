//! The fence, in NATS JetStream KV: one key per running actor (`guild-{id}`, `dm-{id}`)
//! names the node that runs it.
//!
//! - A node takes an actor with `create` (no key, or a deleted one). If another node holds
//!   it and is still a live member, it is handing the actor off: wait for it to let go (it
//!   deletes the key once its actor stopped). If the holder is no longer a member (its
//!   node lease ran out: dead, or cut off), take over with a compare-and-set `update`.
//! - Before each write batch the actor checks that the key still holds its revision. A
//!   node presumed dead that wakes up finds the key taken over and its writes are refused
//!   (it also finds its node lease lost and shuts down).
//! - Giving back is a delete at the actor's revision, so it never removes a successor's.
//!
//! The check and the write are two steps, so a write racing a take-over in the moment
//! between them can still land; the take-over itself waits for the node lease to run out
//! (seconds), which is what makes that window matter only for a node that stalls exactly
//! then. Storage-side fencing (an epoch checked by the database) would close it and is
//! the next step if it ever matters.

use guildhall_core::clock::Clock;
use guildhall_core::sync::LockUnpoisoned;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, UpdateErrorKind};
use async_trait::async_trait;
use bytes::Bytes;
use guildhall_core::model::GuildId;
use guildhall_runtime::actors::ownership::{Ownership, OwnershipToken, PassedOn};
use guildhall_runtime::addresses::reply::NodeId;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::membership::{ClusterError, LeaseClock, View};

/// How long a node waits for the previous owner to hand an actor over.
pub const HANDOVER_WAIT: Duration = Duration::from_secs(4);

/// The most a hand-over carries in the key (the rest of the sessions go by message).
pub const MAX_HANDOVER_BYTES: usize = 192 * 1024;
/// Sessions handed over longer ago than this are not inherited any more: nobody took the
/// actor for so long that those sessions have reconnected or gone.
const HANDOVER_FRESH_MS: u64 = 60_000;

#[derive(Debug, Serialize, Deserialize)]
struct Holder {
    node: NodeId,
    /// Set when the holder stopped the actor and handed it over (then it is free to take).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    released_unix_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    sessions: Vec<PassedOn>,
}

/// Opens (creating it if needed) the ownership bucket of a cluster.
pub async fn open_ownership_bucket(client: &async_nats::Client, bucket: &str) -> Result<kv::Store, ClusterError> {
    let jetstream = async_nats::jetstream::new(client.clone());
    let config = kv::Config {
        bucket: bucket.to_owned(),
        description: "Guildhall actors: which node runs each guild and DM channel".into(),
        history: 1,
        max_value_size: (MAX_HANDOVER_BYTES + 1024) as i32,
        ..Default::default()
    };
    jetstream.create_or_update_key_value(config).await.map_err(|e| ClusterError::Nats(e.to_string()))
}

pub struct KvOwnership {
    bucket: kv::Store,
    me: NodeId,
    view: watch::Receiver<Arc<View>>,
    /// Where each ownership taken and given back is appended, if anywhere (an audit trail:
    /// `acquire|release KEY NODE REVISION UNIX_MS` per line).
    audit: Option<std::sync::Mutex<std::fs::File>>,
    /// With this node's lease clock, a write needs no round trip while the lease holds;
    /// the key is still read now and then (`backstop`), and whenever the clock lapsed.
    lease: Option<(LeaseClock, Duration)>,
    /// When each key held here was last read and found ours.
    checked: std::sync::Mutex<std::collections::HashMap<String, tokio::time::Instant>>,
    /// Stamps hand-overs (their freshness is judged by wall time on another node).
    clock: Arc<dyn Clock>,
}

impl KvOwnership {
    pub fn new(bucket: kv::Store, me: NodeId, view: watch::Receiver<Arc<View>>, clock: Arc<dyn Clock>) -> KvOwnership {
        KvOwnership { bucket, me, view, audit: None, lease: None, checked: Default::default(), clock }
    }

    /// Answers `still_owned` from this node's lease while it holds, reading the key itself
    /// only every `backstop` (and whenever the lease lapsed). Sound because nobody takes
    /// an actor over from a node whose lease has not run out.
    pub fn with_lease(mut self, clock: LeaseClock, backstop: Duration) -> KvOwnership {
        self.lease = Some((clock, backstop));
        self
    }

    fn forget_check(&self, key: &str) {
        self.checked.lock_unpoisoned().remove(key);
    }

    /// Appends every ownership taken and given back to `path` (`cluster.audit_actors`).
    pub fn with_audit(mut self, path: &std::path::Path) -> std::io::Result<KvOwnership> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        self.audit = Some(std::sync::Mutex::new(file));
        Ok(self)
    }

    fn record(&self, what: &str, token: &OwnershipToken) {
        use std::io::Write;
        if let Some(file) = &self.audit {
            let line = format!("{what} {} {} {} {}\n", token.key, self.me, token.revision, self.clock.unix_ms());
            let mut file = file.lock_unpoisoned();
            if let Err(e) = file.write_all(line.as_bytes()) {
                tracing::warn!(error = %e, "cannot write the ownership audit trail");
            }
        }
    }

    fn encode(&self) -> Bytes {
        let holder = Holder { node: self.me, released_unix_ms: None, sessions: Vec::new() };
        Bytes::from(serde_json::to_vec(&holder).expect("serializes"))
    }

    /// One attempt: `Ok(Some(token))` taken, `Ok(None)` held by a live node.
    async fn try_take(&self, key: &str) -> Result<Option<OwnershipToken>, String> {
        let entry = self.bucket.entry(key.to_owned()).await.map_err(|e| e.to_string())?;
        let token = |revision, inherited| Some(OwnershipToken { key: key.to_owned(), revision, inherited });
        match entry {
            Some(e) if e.operation == Operation::Put => {
                let holder: Option<Holder> = serde_json::from_slice(&e.value).ok();
                let holder_live = holder.as_ref().is_some_and(|h| self.view.borrow().members.contains_key(&h.node));
                let mine = holder.as_ref().is_some_and(|h| h.node == self.me);
                let released = holder.as_ref().and_then(|h| h.released_unix_ms);
                if holder_live && !mine && released.is_none() {
                    return Ok(None); // being handed off: wait
                }
                // Handed over, ours from before (this node's last run), or its holder is gone.
                let inherited = match (holder, released) {
                    (Some(h), Some(at)) if self.clock.unix_ms().saturating_sub(at) < HANDOVER_FRESH_MS => h.sessions,
                    _ => Vec::new(),
                };
                match self.bucket.update(key, self.encode(), e.revision).await {
                    Ok(revision) => Ok(token(revision, inherited)),
                    Err(err) if err.kind() == UpdateErrorKind::WrongLastRevision => Ok(None),
                    Err(err) => Err(err.to_string()),
                }
            }
            _ => match self.bucket.create(key, self.encode()).await {
                Ok(revision) => Ok(token(revision, Vec::new())),
                Err(err) if err.kind() == CreateErrorKind::AlreadyExists => Ok(None),
                Err(err) => Err(err.to_string()),
            },
        }
    }
}

#[async_trait]
impl Ownership for KvOwnership {
    async fn acquire(&self, kind: &'static str, id: GuildId) -> Result<OwnershipToken, String> {
        let key = format!("{kind}-{id}");
        let deadline = tokio::time::Instant::now() + HANDOVER_WAIT;
        loop {
            if let Some(token) = self.try_take(&key).await? {
                self.record("acquire", &token);
                return Ok(token);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("{kind} {id} is still held by another node"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn still_owned(&self, token: &OwnershipToken) -> bool {
        if let Some((clock, backstop)) = &self.lease {
            if !clock.holds() {
                return false; // this node may be presumed dead: its actors may be taken over
            }
            let checked = self.checked.lock_unpoisoned().get(&token.key).copied();
            if checked.is_some_and(|at| at.elapsed() < *backstop) {
                return true;
            }
        }
        let owned = match self.bucket.entry(token.key.clone()).await {
            Ok(Some(e)) => e.operation == Operation::Put && e.revision == token.revision,
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(key = %token.key, error = %e, "cannot check ownership; refusing the write");
                false
            }
        };
        if owned && self.lease.is_some() {
            let mut checked = self.checked.lock_unpoisoned();
            checked.insert(token.key.clone(), tokio::time::Instant::now());
        }
        owned
    }

    /// Writes the sessions into the key at the actor's revision, marked released: the next
    /// owner takes it at once and connects them first. What does not fit is returned.
    async fn hand_over(&self, token: OwnershipToken, mut sessions: Vec<PassedOn>) -> Vec<PassedOn> {
        if sessions.is_empty() {
            self.release(token).await;
            return sessions;
        }
        let mut carried = Vec::new();
        let mut bytes = 0;
        while let Some(next) = sessions.pop() {
            let size = serde_json::to_vec(&next).map(|v| v.len() + 1).unwrap_or(usize::MAX);
            if bytes + size > MAX_HANDOVER_BYTES {
                sessions.push(next);
                break;
            }
            bytes += size;
            carried.push(next);
        }
        self.record("release", &token);
        self.forget_check(&token.key);
        let holder = Holder { node: self.me, released_unix_ms: Some(self.clock.unix_ms()), sessions: carried };
        let value = Bytes::from(serde_json::to_vec(&holder).expect("serializes"));
        match self.bucket.update(&token.key, value, token.revision).await {
            Ok(_) => sessions,
            Err(e) => {
                tracing::debug!(key = %token.key, error = %e, "ownership not handed over");
                sessions.extend(holder.sessions);
                sessions
            }
        }
    }

    async fn release(&self, token: OwnershipToken) {
        self.record("release", &token);
        self.forget_check(&token.key);
        if let Err(e) = self.bucket.delete_expect_revision(&token.key, Some(token.revision)).await {
            // Taken over meanwhile (then it is not ours to delete), or NATS is away (then
            // the next owner takes over once this node's lease runs out).
            tracing::debug!(key = %token.key, error = %e, "ownership not given back");
        }
    }
}
