//! Process-wide counters, exposed as Prometheus text at `GET /metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Default)]
pub struct Metrics {
    pub sessions_open: AtomicU64,
    pub connections_open: AtomicU64,
    pub guilds_loaded: AtomicU64,
    /// Guild actors stopped because they were idle.
    pub guilds_evicted: AtomicU64,
    pub dms_loaded: AtomicU64,
    /// DM actors stopped because they were idle.
    pub dms_evicted: AtomicU64,
    /// Dispatches serialized (once each, whatever the number of recipients).
    pub dispatches: AtomicU64,
    /// Dispatches handed to a session's queue.
    pub deliveries: AtomicU64,
    /// Sessions disconnected because their outbound queue overflowed.
    pub slow_consumer_drops: AtomicU64,
    pub messages_created: AtomicU64,
    pub http_requests: AtomicU64,
    pub http_errors_4xx: AtomicU64,
    pub http_errors_5xx: AtomicU64,
    /// Audit log entries not stored (queue full or storage failed).
    pub audit_entries_lost: AtomicU64,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    pub fn render(&self) -> String {
        let mut out = String::with_capacity(1024);
        let mut line = |name: &str, kind: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(
                out,
                "# HELP guildhall_{name} {help}\n# TYPE guildhall_{name} {kind}\nguildhall_{name} {}",
                v.load(Relaxed)
            );
        };
        line("sessions", "gauge", "Gateway sessions alive (connected or resumable).", &self.sessions_open);
        line("connections", "gauge", "Open gateway WebSocket connections.", &self.connections_open);
        line("guilds", "gauge", "Guild actors running.", &self.guilds_loaded);
        line("guilds_evicted_total", "counter", "Guild actors stopped as idle.", &self.guilds_evicted);
        line("dm_channels", "gauge", "DM channel actors running.", &self.dms_loaded);
        line("dm_channels_evicted_total", "counter", "DM channel actors stopped as idle.", &self.dms_evicted);
        line("dispatches_total", "counter", "Dispatches serialized.", &self.dispatches);
        line("deliveries_total", "counter", "Dispatches queued to sessions.", &self.deliveries);
        line("drops_total", "counter", "Sessions dropped as too slow.", &self.slow_consumer_drops);
        line("messages_created_total", "counter", "Messages created.", &self.messages_created);
        line("http_requests_total", "counter", "HTTP requests served.", &self.http_requests);
        line("http_client_errors_total", "counter", "HTTP 4xx answers.", &self.http_errors_4xx);
        line("http_server_errors_total", "counter", "HTTP 5xx answers.", &self.http_errors_5xx);
        line("audit_entries_lost_total", "counter", "Audit log entries not stored.", &self.audit_entries_lost);
        out
    }
}
