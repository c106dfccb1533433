//! What the benchmark scenarios share: latency percentiles, the core count, the clock.

use std::time::Duration;

/// (p50, p99, max) in microseconds; zeros when there are no samples.
pub fn percentiles_us(mut samples: Vec<Duration>) -> (f64, f64, f64) {
    if samples.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e6;
    (at(0.50), at(0.99), at(1.0))
}

/// The machine's cores, for every report (timings depend on them).
pub fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// The in-process benchmarks compose the host's parts themselves: with the OS clock.
pub fn system_clock() -> std::sync::Arc<dyn guildhall_core::clock::Clock> {
    std::sync::Arc::new(guildhall_server::clock::SystemClock)
}

/// CPU time process `pid` has used so far (user + system), from /proc (Linux).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after ") ".
    let rest = stat.rsplit_once(") ")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let (utime, stime): (f64, f64) = (fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?);
    const TICKS_PER_SECOND: f64 = 100.0; // sysconf(_SC_CLK_TCK) on Linux
    Some((utime + stime) / TICKS_PER_SECOND)
}

/// A counter from a host's `/metrics` (`authority` is `HOST:PORT`).
pub async fn metric(authority: &str, name: &str) -> Result<u64, String> {
    let mut api = guildhall_client::ApiClient::connect(authority).await.map_err(|e| e.to_string())?;
    let text = api.metrics().await.map_err(|e| e.to_string())?;
    let line = text.lines().find(|l| l.split_whitespace().next() == Some(name));
    line.and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).ok_or(format!("no metric {name}"))
}
