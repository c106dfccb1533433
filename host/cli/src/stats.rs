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
