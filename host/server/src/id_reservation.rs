//! The id reservation on disk: ids of this node are issued only for times a file in the
//! data directory says were reserved, [`AHEAD_MS`] ahead of the clock and extended every
//! [`EXTEND_EVERY`]. A restart reads it and issues nothing before it, so that a clock that
//! stepped back across the restart can never issue an id (and overwrite a record) twice.
//! Costs a small fsync'd write twice a second; a restart right after a crash waits at most
//! [`AHEAD_MS`] for its clock to pass the old reservation.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Acquire, Ordering::Release};
use std::sync::Arc;
use std::time::Duration;

use guildhall_core::clock::Clock;
use guildhall_store::Storage;

/// A single host's claim on its node id in shared storage: two hosts left on the same
/// `[ids]` would issue the same ids. Renewed with every extension of the reservation, so
/// that ids stop within [`AHEAD_MS`] of losing it. (A cluster leases node ids in NATS.)
pub struct NodeLease {
    pub store: Arc<dyn Storage>,
}

/// This host, as its lease names it: made once and kept in the data directory
/// (`host-id`), so that a host restarting after a crash takes its own lease back at once
/// while another host (another data directory) is refused.
fn host_id(data_dir: &Path) -> Result<String, String> {
    let path = data_dir.join("host-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
        Ok(_) => Err(format!("{} is empty", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = format!("{:032x}", rand::random::<u128>());
            std::fs::write(&path, &id).map_err(|e| format!("writing {}: {e}", path.display()))?;
            Ok(id)
        }
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
}

/// How long a lease lasts unless renewed.
const LEASE_MS: u64 = 10_000;

/// How far ahead of the clock ids are reserved.
pub const AHEAD_MS: u64 = 2_000;
/// How often the reservation is extended (ids stop if it cannot be, within
/// `AHEAD_MS - EXTEND_EVERY`).
pub const EXTEND_EVERY: Duration = Duration::from_millis(500);
/// Longest a start waits for its clock to pass the last run's reservation; beyond, the
/// clock stepped back and the host refuses to start.
pub const MAX_START_WAIT_MS: u64 = 10_000;

/// Where node `node`'s reservation lives.
pub fn path(data_dir: &Path, node: u16) -> PathBuf {
    data_dir.join(format!("id-reservation-{node}"))
}

/// The reservation in `path` (unix ms), 0 if there is none yet.
pub fn read(path: &Path) -> Result<u64, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.trim().parse().map_err(|_| format!("{}: not a reservation: {text:?}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
}

/// Replaces the reservation, durably: a whole new file, synced, renamed over the old one.
pub fn write(path: &Path, until_unix_ms: u64) -> Result<(), String> {
    use std::io::Write;
    let fail = |e: std::io::Error| format!("writing {}: {e}", path.display());
    let temporary = path.with_extension("next");
    let mut file = std::fs::File::create(&temporary).map_err(fail)?;
    file.write_all(until_unix_ms.to_string().as_bytes()).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    std::fs::rename(&temporary, path).map_err(fail)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(fail)?;
    }
    Ok(())
}

/// Starts node `node`'s reservation in `data_dir`: returns the last run's reservation (no
/// id before it) and this run's, kept extended by a thread of its own for as long as the
/// returned reservation is held.
/// Waits for the clock to pass the last run's reservation (a quick restart), or refuses
/// if it is far behind.
pub async fn start(
    data_dir: &Path,
    node: u16,
    lease: Option<NodeLease>,
    clock: Arc<dyn Clock>,
) -> Result<(u64, Arc<AtomicU64>), String> {
    std::fs::create_dir_all(data_dir).map_err(|e| format!("creating {}: {e}", data_dir.display()))?;
    let holder = host_id(data_dir)?;
    if let Some(lease) = &lease {
        let held = lease.store.lease_node_id(node, &holder, LEASE_MS).await.map_err(|e| e.to_string())?;
        if !held {
            return Err(format!(
                "node id {node} (ids.datacenter {}, ids.worker {}) is held by another host on this storage: \
                 two hosts issuing ids as one node would issue the same ids; give this host other [ids] values",
                node >> 5,
                node & 31
            ));
        }
    }
    let path = path(data_dir, node);
    let previous = read(&path)?;
    let now = clock.unix_ms();
    if previous > now {
        let behind = previous - now;
        if behind > MAX_START_WAIT_MS {
            return Err(format!(
                "the clock is {behind} ms behind ids this node may already have issued (reserved up to {previous} in {}): \
                 refusing to start until the clock is right",
                path.display()
            ));
        }
        tracing::info!(wait_ms = behind, "waiting for the clock to pass the last run's id reservation");
        tokio::time::sleep(Duration::from_millis(behind)).await;
    }
    let first = clock.unix_ms().max(previous) + AHEAD_MS;
    let written = path.clone();
    tokio::task::spawn_blocking(move || write(&written, first)).await.map_err(|e| e.to_string())??;
    let reserved = Arc::new(AtomicU64::new(first));
    let extended = reserved.clone();
    // A thread of its own, with a runtime of its own: a host whose workers are all busy
    // (fan-out to thousands of sessions) would otherwise extend too late, and every write
    // would be refused for want of ids. It ends when nobody holds the reservation.
    std::thread::Builder::new()
        .name("guildhall-id-reservation".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(e) => return tracing::error!(error = %e, "cannot extend the id reservation: no runtime"),
            };
            runtime.block_on(keep_extending(node, holder, lease, path, clock, extended));
        })
        .map_err(|e| format!("starting the id reservation's thread: {e}"))?;
    Ok((previous, reserved))
}

/// Extends the reservation every [`EXTEND_EVERY`] while somebody else holds `extended`.
async fn keep_extending(
    node: u16,
    holder: String,
    lease: Option<NodeLease>,
    path: PathBuf,
    clock: Arc<dyn Clock>,
    extended: Arc<AtomicU64>,
) {
    // The first extension one period after the start's own reservation.
    let mut every = tokio::time::interval_at(tokio::time::Instant::now() + EXTEND_EVERY, EXTEND_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Logged when extending starts failing and when it works again, not on every try
    // (a storage outage would otherwise log twice a second).
    let mut failing = false;
    while Arc::strong_count(&extended) > 1 {
        every.tick().await;
        let current = extended.load(Acquire);
        match extend(node, &holder, lease.as_ref(), &path, &*clock, current).await {
            Ok(until) => {
                extended.fetch_max(until, Release);
                if std::mem::take(&mut failing) {
                    tracing::info!(node, "the id reservation is extended again: ids resume");
                }
            }
            Err(e) if !failing => {
                failing = true;
                tracing::error!(node, error = %e, "cannot extend the id reservation: ids stop when it runs out");
            }
            Err(_) => {}
        }
    }
}

/// One extension: the lease renewed (if any), then the reservation written: until when.
/// It never moves back from `current` (a wall clock that stepped back must not shrink the
/// reservation below ids already issued: a restart would issue them again).
async fn extend(
    node: u16,
    holder: &str,
    lease: Option<&NodeLease>,
    path: &Path,
    clock: &dyn Clock,
    current: u64,
) -> Result<u64, String> {
    if let Some(lease) = lease {
        if !lease.store.lease_node_id(node, holder, LEASE_MS).await.map_err(|e| e.to_string())? {
            return Err("another host took this node id (give this host other [ids] values)".into());
        }
    }
    let until = (clock.unix_ms() + AHEAD_MS).max(current);
    write(path, until)?; // on the reservation's own thread: blocking it blocks nothing else
    Ok(until)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reservation_round_trips_and_a_missing_one_is_zero() {
        let dir = std::env::temp_dir().join(format!("guildhall-ids-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = path(&dir, 7);
        assert_eq!(read(&p).unwrap(), 0);
        write(&p, 1_700_000_000_123).unwrap();
        assert_eq!(read(&p).unwrap(), 1_700_000_000_123);
        std::fs::write(&p, "garbage").unwrap();
        assert!(read(&p).is_err(), "a damaged reservation is an error, not a zero");
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Bookkeeping that guards writes is never starved by the work it guards: with every
    /// worker of the runtime busy for longer than the reservation reaches ahead (a host
    /// saturated by fan-out), the reservation still stays ahead of the clock.
    #[test]
    fn the_reservation_is_extended_while_every_worker_is_busy() {
        let dir = std::env::temp_dir().join(format!("guildhall-ids-busy-{}", std::process::id()));
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let clock: Arc<dyn Clock> = Arc::new(crate::clock::SystemClock);
        let (_, reserved) = runtime.block_on(start(&dir, 5, None, clock.clone())).unwrap();
        let busy_for = Duration::from_millis(2 * AHEAD_MS + 500);
        for _ in 0..2 {
            runtime.spawn(async move {
                let started = std::time::Instant::now();
                while started.elapsed() < busy_for {
                    std::hint::spin_loop(); // never yields: the worker is taken
                }
            });
        }
        let mut least_ahead_ms = i64::MAX;
        let watched = std::time::Instant::now();
        while watched.elapsed() < busy_for {
            std::thread::sleep(Duration::from_millis(50));
            let ahead = reserved.load(std::sync::atomic::Ordering::Acquire) as i64 - clock.unix_ms() as i64;
            least_ahead_ms = least_ahead_ms.min(ahead);
        }
        drop(runtime);
        let _ = std::fs::remove_dir_all(dir);
        assert!(least_ahead_ms > 0, "ids ran out: the reservation fell {} ms behind the clock", -least_ahead_ms);
    }

    /// A wall clock that steps back while the host runs (NTP) never shrinks the reservation
    /// on disk: ids up to it may have been issued, and a restart must not issue them again.
    #[test]
    fn a_clock_that_steps_back_never_shrinks_the_reservation() {
        const T0: u64 = 1_700_000_000_000;
        let dir = std::env::temp_dir().join(format!("guildhall-ids-back-{}", std::process::id()));
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let clock = Arc::new(guildhall_core::clock::ManualClock::new(T0));
        let (_, reserved) = runtime.block_on(start(&dir, 6, None, clock.clone())).unwrap();
        let first = read(&path(&dir, 6)).unwrap();
        assert_eq!(first, T0 + AHEAD_MS);
        clock.set_unix_ms(T0 - 60_000);
        std::thread::sleep(EXTEND_EVERY * 3); // extended twice or more meanwhile
        let on_disk = read(&path(&dir, 6)).unwrap();
        drop(reserved);
        let _ = std::fs::remove_dir_all(dir);
        assert_eq!(on_disk, first, "the reservation moved back by {} ms", first.saturating_sub(on_disk));
    }

    /// A clock behind the last run's reservation, in virtual time: a few seconds behind,
    /// the start waits exactly that long and reserves from there; further behind than
    /// `MAX_START_WAIT_MS`, it refuses at once.
    #[tokio::test(start_paused = true)]
    async fn a_start_waits_out_a_clock_behind_the_last_reservation_or_refuses() {
        const T0: u64 = 1_700_000_000_000;
        let dir = std::env::temp_dir().join(format!("guildhall-ids-start-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write(&path(&dir, 3), T0 + 5_000).unwrap();
        let clock = Arc::new(guildhall_runtime::infrastructure::clock::TokioClock::new(T0));
        let started = tokio::time::Instant::now();
        let (not_before, reserved) = start(&dir, 3, None, clock.clone()).await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_millis(5_000), "waited until the clock passed it");
        assert_eq!(not_before, T0 + 5_000);
        assert_eq!(reserved.load(std::sync::atomic::Ordering::Acquire), T0 + 5_000 + AHEAD_MS);
        assert_eq!(read(&path(&dir, 3)).unwrap(), T0 + 5_000 + AHEAD_MS, "on disk before any id");

        write(&path(&dir, 4), clock.unix_ms() + MAX_START_WAIT_MS + 1).unwrap();
        let refused = start(&dir, 4, None, clock.clone()).await.expect_err("too far behind");
        assert!(refused.contains("refusing to start"), "{refused}");
        assert_eq!(started.elapsed(), Duration::from_millis(5_000), "refused without waiting");
        let _ = std::fs::remove_dir_all(dir);
    }
}
