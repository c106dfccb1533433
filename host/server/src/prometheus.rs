//! `GET /metrics`: the runtime's and the data service's counters as Prometheus text. The
//! counters are plain atomics where they are counted; only this edge knows the format.

use std::fmt::Write;

use guildhall_core::sync::LockUnpoisoned;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use guildhall_data::{DataMetrics, RouteMetrics};
use guildhall_runtime::Metrics;

/// Readings the edge takes when it renders, from parts that keep no atomics of their own.
#[derive(Default)]
pub struct Readings {
    /// What the plugin engine's memory budget has reserved now.
    pub plugin_memory_bytes: usize,
    /// Storage calls that ran out of time (`data.call_timeout_ms`).
    pub storage_timeouts: u64,
    /// Tasks alive on the runtime: a number that keeps growing is a leak.
    pub tasks_alive: usize,
}

pub fn render(runtime: &Metrics, data: &DataMetrics, readings: &Readings) -> String {
    let mut out = String::with_capacity(8192);
    render_runtime(&mut out, runtime);
    let mut reading = |name: &str, kind: &str, help: &str, v: u64| {
        let _ = writeln!(out, "# HELP guildhall_{name} {help}\n# TYPE guildhall_{name} {kind}\nguildhall_{name} {v}");
    };
    let r = readings;
    let plugin_help = "Linear memory of live plugin instances (the budget's use).";
    reading("plugin_memory_bytes", "gauge", plugin_help, r.plugin_memory_bytes as u64);
    let timeouts_help = "Storage calls that ran out of time (data.call_timeout_ms).";
    reading("storage_timeouts_total", "counter", timeouts_help, r.storage_timeouts);
    reading("tasks_alive", "gauge", "Tasks alive on the async runtime.", r.tasks_alive as u64);
    render_data(&mut out, data);
    let lag = runtime.search_stream_lag.lock_unpoisoned();
    if !lag.is_empty() {
        let name = "guildhall_search_stream_lag";
        let _ = writeln!(out, "# HELP {name} Stream entries a search cell's consumer has yet to index.");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (cell, pending) in lag.iter() {
            let _ = writeln!(out, "{name}{{cell=\"{cell}\"}} {pending}");
        }
    }
    drop(lag);
    out
}

fn render_runtime(out: &mut String, m: &Metrics) {
    let mut line = |name: &str, kind: &str, help: &str, v: &AtomicU64| {
        let _ = writeln!(
            out,
            "# HELP guildhall_{name} {help}\n# TYPE guildhall_{name} {kind}\nguildhall_{name} {}",
            v.load(Relaxed)
        );
    };
    line("sessions", "gauge", "Gateway sessions alive (connected or resumable).", &m.sessions_open);
    line("connections", "gauge", "Open gateway WebSocket connections.", &m.connections_open);
    line("guilds", "gauge", "Guild actors running.", &m.guilds_loaded);
    line("cluster_nodes", "gauge", "Live nodes in this node's view of the cluster.", &m.cluster_nodes);
    line(
        "cluster_rejoins_total",
        "counter",
        "Times this node's lease ran out and it took its id again.",
        &m.cluster_rejoins,
    );
    line("guilds_evicted_total", "counter", "Guild actors stopped as idle.", &m.guilds_evicted);
    line(
        "components_collected_total",
        "counter",
        "Stored plugin components deleted as unused.",
        &m.components_collected,
    );
    line(
        "component_collections_total",
        "counter",
        "Runs of the unused-component collector that finished.",
        &m.component_collections,
    );
    line("events_relayed_total", "counter", "Message events appended to the durable stream.", &m.events_relayed);
    line("event_relay_failures_total", "counter", "Relay jobs that failed (retried).", &m.event_relay_failures);
    line(
        "search_entries_indexed_total",
        "counter",
        "Stream entries the indexing worker took.",
        &m.search_entries_indexed,
    );
    line("search_batches_total", "counter", "Indexing batches.", &m.search_batches);
    line("search_batch_us_total", "counter", "Time indexing batches took (µs).", &m.search_batch_us);
    line("search_commits_total", "counter", "Search cell commits.", &m.search_commits);
    line("search_commit_us_total", "counter", "Time search cell commits took (µs).", &m.search_commit_us);
    line("search_lag_ms", "gauge", "The last batch's newest message: creation to searchable (ms).", &m.search_lag_ms);
    line(
        "search_indexer_faults_total",
        "counter",
        "Indexer plugins that failed (default used).",
        &m.search_indexer_faults,
    );
    line("search_gaps_total", "counter", "Gaps found in a log's events.", &m.search_gaps);
    line("search_corrupt_entries_total", "counter", "Stream entries that did not decode.", &m.search_corrupt_entries);
    line("search_backfilled_total", "counter", "Messages backfills indexed from storage.", &m.search_backfilled);
    line("search_cells_owned", "gauge", "Search cells this process indexes and answers for.", &m.search_cells_owned);
    line("search_cells_taken_total", "counter", "Search cells this process took on.", &m.search_cells_taken);
    line("dm_channels", "gauge", "DM channel actors running.", &m.dms_loaded);
    line("dm_channels_evicted_total", "counter", "DM channel actors stopped as idle.", &m.dms_evicted);
    line("dispatches_total", "counter", "Dispatches serialized.", &m.dispatches);
    line("deliveries_total", "counter", "Dispatches queued to sessions.", &m.deliveries);
    line(
        "node_forwards_total",
        "counter",
        "Dispatches forwarded to another node, one per node and event.",
        &m.node_forwards,
    );
    line(
        "cluster_reads_joined_total",
        "counter",
        "Reads answered with an identical read's answer from the channel's node.",
        &m.reads_joined,
    );
    line(
        "sessions_moved_in_total",
        "counter",
        "Sessions taken over from another node by a RESUME here.",
        &m.sessions_moved_in,
    );
    line("bots_hosted", "gauge", "Bots running here for guilds on other nodes.", &m.bots_hosted);
    line(
        "bots_hosted_started_total",
        "counter",
        "Runners started here for bots of guilds on other nodes.",
        &m.bots_hosted_started,
    );
    line("drops_total", "counter", "Sessions dropped as too slow.", &m.slow_consumer_drops);
    line(
        "gateway_socket_writes_total",
        "counter",
        "Write calls on gateway sockets (about one syscall each).",
        &m.socket_writes,
    );
    line("gateway_socket_write_bytes_total", "counter", "Bytes written to gateway sockets.", &m.socket_write_bytes);
    line("zlib_bytes_in_total", "counter", "Bytes given to zlib-stream compression.", &m.zlib_bytes_in);
    line("zlib_bytes_out_total", "counter", "Bytes zlib-stream compression sent.", &m.zlib_bytes_out);
    line("zlib_compress_nanoseconds_total", "counter", "Time spent compressing for zlib-stream.", &m.zlib_compress_ns);
    line("messages_created_total", "counter", "Messages created.", &m.messages_created);
    line("http_requests_total", "counter", "HTTP requests served.", &m.http_requests);
    line("http_client_errors_total", "counter", "HTTP 4xx answers.", &m.http_errors_4xx);
    line("http_server_errors_total", "counter", "HTTP 5xx answers.", &m.http_errors_5xx);
    let pool_full = &m.plugin_pool_full;
    line(
        "plugin_pool_full_total",
        "counter",
        "Plugin calls skipped: no instance slot or memory budget free.",
        pool_full,
    );
    line(
        "commands_expired_total",
        "counter",
        "Commands dropped: their caller had stopped waiting.",
        &m.commands_expired,
    );
    line("http_rate_limited_total", "counter", "HTTP 429 answers (rate limits).", &m.http_rate_limited);
    let refused = &m.connections_refused_per_ip;
    line("connections_refused_per_ip_total", "counter", "Connections refused: the address held its cap.", refused);
    line("audit_entries_lost_total", "counter", "Audit log entries not stored.", &m.audit_entries_lost);
}

/// Picks one counter of a route.
type RouteCounter = fn(&RouteMetrics) -> &AtomicU64;

fn render_data(out: &mut String, data: &DataMetrics) {
    let routes: [(&str, &RouteMetrics); 2] = [("history", &data.history), ("message", &data.message)];
    let counters: [(&str, &str, RouteCounter); 4] = [
        ("requests_total", "Reads asked of the data service.", |m| &m.requests),
        ("db_queries_total", "Queries sent to storage.", |m| &m.db_queries),
        ("coalesced_total", "Reads answered by joining a query in flight.", |m| &m.coalesced),
        ("errors_total", "Reads answered with an error.", |m| &m.errors),
    ];
    for (name, help, counter) in counters {
        let _ = writeln!(out, "# HELP guildhall_data_{name} {help}\n# TYPE guildhall_data_{name} counter");
        for (route, m) in routes {
            let _ = writeln!(out, "guildhall_data_{name}{{route=\"{route}\"}} {}", counter(m).load(Relaxed));
        }
    }
    let _ = writeln!(
        out,
        "# HELP guildhall_data_latency_us Data service read latency.\n# TYPE guildhall_data_latency_us histogram"
    );
    for (route, m) in routes {
        let mut cumulative = 0;
        for (i, bucket) in m.latency_us_log2.iter().enumerate() {
            cumulative += bucket.load(Relaxed);
            let _ = writeln!(
                out,
                "guildhall_data_latency_us_bucket{{route=\"{route}\",le=\"{}\"}} {cumulative}",
                1u64 << i
            );
        }
        let _ = writeln!(out, "guildhall_data_latency_us_bucket{{route=\"{route}\",le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "guildhall_data_latency_us_sum{{route=\"{route}\"}} {}", m.latency_us_sum.load(Relaxed));
        let _ = writeln!(out, "guildhall_data_latency_us_count{{route=\"{route}\"}} {cumulative}");
    }
}
