//! Process-wide counters (the HTTP edge renders them as Prometheus text at `GET /metrics`).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Default)]
pub struct Metrics {
    pub sessions_open: AtomicU64,
    pub connections_open: AtomicU64,
    pub guilds_loaded: AtomicU64,
    /// Live nodes in this node's view of the cluster (0 when running alone).
    pub cluster_nodes: AtomicU64,
    /// Times this node's cluster lease ran out and it took its id again.
    pub cluster_rejoins: AtomicU64,
    /// Guild actors stopped because they were idle.
    pub guilds_evicted: AtomicU64,
    pub dms_loaded: AtomicU64,
    /// DM actors stopped because they were idle.
    pub dms_evicted: AtomicU64,
    /// Dispatches serialized (once each, whatever the number of recipients).
    pub dispatches: AtomicU64,
    /// Dispatches forwarded to another node for its sessions (one per node and event).
    pub node_forwards: AtomicU64,
    /// Dispatches handed to a session's queue.
    pub deliveries: AtomicU64,
    /// Message reads answered by sharing another read's answer from the channel's node
    /// (identical reads in flight from this node: one request crosses the bus).
    pub reads_joined: AtomicU64,
    /// Sessions taken over from another node by a RESUME here.
    pub sessions_moved_in: AtomicU64,
    /// Bots this node runs for guilds on other nodes, and how many such runners started.
    pub bots_hosted: AtomicU64,
    pub bots_hosted_started: AtomicU64,
    /// Write calls on gateway sockets (one syscall each; one that would block may be one too)
    /// and the bytes they took: frames per write is how well writes are batched.
    pub socket_writes: AtomicU64,
    pub socket_write_bytes: AtomicU64,
    /// Sessions disconnected because their outbound queue overflowed.
    pub slow_consumer_drops: AtomicU64,
    /// zlib-stream connections: bytes before and after compression, and the time spent.
    pub zlib_bytes_in: AtomicU64,
    pub zlib_bytes_out: AtomicU64,
    pub zlib_compress_ns: AtomicU64,
    pub messages_created: AtomicU64,
    pub http_requests: AtomicU64,
    pub http_errors_4xx: AtomicU64,
    pub http_errors_5xx: AtomicU64,
    /// 429 answers: REST rate limits and refused gateway connects.
    pub http_rate_limited: AtomicU64,
    /// Plugin calls skipped because the instance pool was full (not counted as faults).
    pub plugin_pool_full: AtomicU64,
    /// Guild and DM commands dropped untouched: their caller had stopped waiting.
    pub commands_expired: AtomicU64,
    /// Connections refused because their address held `rate_limits.connections_per_ip`.
    pub connections_refused_per_ip: AtomicU64,
    /// Audit log entries not stored (queue full or storage failed).
    pub audit_entries_lost: AtomicU64,
    /// Stored components deleted because no plugin used them any more.
    pub components_collected: AtomicU64,
    /// Runs of the unused-component collector that finished (whatever they deleted).
    pub component_collections: AtomicU64,
    /// Message events appended to the durable stream by this node's actors (an entry
    /// relayed again after a failure counts again).
    pub events_relayed: AtomicU64,
    /// Relay jobs that failed (the stream or storage refused; retried with a growing wait).
    pub event_relay_failures: AtomicU64,
    /// Search indexing: stream entries taken, batches (one commit per cell touched), cell
    /// commits and the time they took, the time batches took (µs), the last batch's lag
    /// from its newest message's creation to searchable (ms), indexer plugins that failed
    /// (their guild's batch went to the default indexer), gaps in a log's events, entries
    /// that did not decode.
    pub search_entries_indexed: AtomicU64,
    pub search_batches: AtomicU64,
    pub search_batch_us: AtomicU64,
    pub search_commits: AtomicU64,
    pub search_commit_us: AtomicU64,
    pub search_lag_ms: AtomicU64,
    pub search_indexer_faults: AtomicU64,
    pub search_gaps: AtomicU64,
    pub search_corrupt_entries: AtomicU64,
    /// Messages backfills read from storage and indexed.
    pub search_backfilled: AtomicU64,
    /// Entries each consumer of the stream has yet to index, by the cell it feeds (`all`:
    /// one host's consumer, which feeds every cell); read from the stream now and then.
    pub search_stream_lag: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    /// Search cells this process indexes and answers for, and the times it took one over
    /// (a cluster's indexing worker).
    pub search_cells_owned: AtomicU64,
    pub search_cells_taken: AtomicU64,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }
}
