//! `guildhall bench gateway`: fan-out over real WebSockets, as people feel it.
//!
//! N gateway sessions (processes of `guildhall gateway-load`, `load.rs`, one per 18,000
//! sessions) identify into one guild; M senders post messages to its channel through the
//! REST API at a fixed total rate, each message carrying its scheduled send time; every
//! session reads every message. It reports deliveries per second, the end-to-end latency
//! from the scheduled send to the read (p50, p99, p999; a sender that falls behind its
//! schedule shows in it, as it would for its users), the senders' POST latency from the
//! same scheduled time, the host's CPU and RSS (from /proc), its socket writes (its
//! `guildhall_gateway_socket_writes_total`: the host's sockets are written with `send`,
//! which /proc's write counters do not count), the bytes on the wire, and the generator's
//! own CPU, so that a result limited by the generator shows as one.
//!
//! Without `--url` it starts a host (`guildhall serve` on a temporary embedded store, rate
//! limits and search off) on a store it seeds directly: N + M users with their tokens,
//! members of one guild (registering thousands through the password hash would take
//! minutes). With `--url` it registers accounts on that host over REST instead.
//! `--pin` puts the host on core 0 and the generator on core 1; `--sweep` steps the rate
//! up until p99 passes `--p99-bound-ms` and reports the highest rate within it.

mod frames;
pub mod load;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use guildhall_client::{ApiClient, Method};
use guildhall_core::clock::Clock;
use guildhall_core::guild::GuildWrite;
use guildhall_core::model::{Channel, Guild, Member, User, UserRecord};
use guildhall_runtime::Generator;
use guildhall_store::Storage;
use guildhall_store_redb::EmbeddedStore;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin};
use tokio::sync::{mpsc, oneshot};

use crate::serve_child::{temp_dir, ServeChild};
use load::latency_histogram;

/// Sessions per load process: under the 20,000 open files a process may have here.
const SESSIONS_PER_PROCESS: usize = 18_000;

#[derive(clap::Args)]
pub struct GatewayBench {
    /// A running host (`http://HOST:PORT`, `ws://HOST:PORT` or `HOST:PORT`, an IP address);
    /// without it the benchmark starts one.
    #[arg(long)]
    url: Option<String>,
    /// With `--url`: the host's process id, to read its CPU, memory and writes.
    #[arg(long)]
    host_pid: Option<u32>,
    /// With `--url`: accounts registered for the sessions (they are spread over them).
    #[arg(long, default_value_t = 100)]
    users: usize,
    /// Gateway sessions in the guild.
    #[arg(long, default_value_t = 5_000)]
    sessions: usize,
    /// Messages per second, all senders together (deliveries per second = rate x sessions).
    #[arg(long, default_value_t = 100)]
    rate: u32,
    /// Seconds measured at each rate (after a warm-up of `--warmup` seconds).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// REST connections posting the messages (each its own user).
    #[arg(long, default_value_t = 8)]
    senders: usize,
    /// Sessions use `compress=zlib-stream`.
    #[arg(long)]
    compress: bool,
    /// The host on core 0, the generator (load processes and senders) on core 1.
    #[arg(long)]
    pin: bool,
    /// Step the rate up from `--rate` by `--sweep-step` until p99 passes `--p99-bound-ms`.
    #[arg(long)]
    sweep: bool,
    #[arg(long, default_value_t = 1.5)]
    sweep_step: f64,
    #[arg(long, default_value_t = 100.0)]
    p99_bound_ms: f64,
    /// Load processes (default: one per 18,000 sessions).
    #[arg(long)]
    workers: Option<usize>,
}

/// Where the load goes: the host, the senders' tokens, the sessions' tokens (a file the
/// load processes read), the channel.
struct Target {
    authority: SocketAddr,
    host_pid: Option<u32>,
    sender_tokens: Vec<String>,
    tokens_file: PathBuf,
    channel: String,
    /// The host this benchmark started (killed when dropped), and its seed's directory.
    _host: Option<ServeChild>,
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.tokens_file);
    }
}

pub async fn run(bench: GatewayBench) -> Result<Value, String> {
    if bench.sessions == 0 || bench.rate == 0 || bench.duration == 0 || bench.senders == 0 {
        return Err("--sessions, --rate, --duration and --senders must be at least 1".into());
    }
    if bench.sweep && bench.sweep_step <= 1.0 {
        return Err("--sweep-step must be more than 1".into());
    }
    let clock = crate::stats::system_clock();
    let target = match &bench.url {
        None => start_host(&bench).await?,
        Some(url) => register_on(url, &bench).await?,
    };
    if bench.pin {
        pin_generator_and_host(target.host_pid)?;
    }
    let mut senders = Senders::new(&target);
    // The guild's actor starts on its first command: before anything is measured.
    senders.post_one(&target.channel, &*clock).await?;

    let host_before_sessions = target.host_pid.map(HostSample::take);
    let kernel_before = kernel_memory_kib();
    let mut load = Load::start(&target, &bench).await?;
    tokio::time::sleep(Duration::from_secs(1)).await; // what connecting left behind settles
    let host_with_sessions = target.host_pid.map(HostSample::take);
    let kernel_with = kernel_memory_kib();
    let per_session = |before: Option<&HostSample>, with: Option<&HostSample>| {
        Some((with?.rss_kib as f64 - before?.rss_kib as f64) / bench.sessions as f64)
    };
    let rss_per_session_kib = per_session(host_before_sessions.as_ref(), host_with_sessions.as_ref());
    // Both ends of every connection are on this machine.
    let kernel_kib_per_connection = match (kernel_before, kernel_with) {
        (Some(b), Some(w)) => Some((w as f64 - b as f64) / bench.sessions as f64),
        _ => None,
    };

    let mut steps = Vec::new();
    let mut rate = f64::from(bench.rate);
    let mut best_within_bound: Option<Value> = None;
    loop {
        let step = measure(&bench, &target, &mut load, &mut senders, rate, &*clock).await?;
        let within = step.p99_ms <= bench.p99_bound_ms && step.delivered_share >= 0.999;
        let value = step.to_json();
        print_step(&value);
        if within {
            best_within_bound = Some(value.clone());
        }
        steps.push(value);
        if !bench.sweep || !within || steps.len() >= 16 {
            break;
        }
        rate = (rate * bench.sweep_step).ceil();
    }
    load.stop().await;

    let mut report = steps.last().cloned().unwrap_or(Value::Null);
    report["scenario"] = json!("gateway");
    report["cores"] = json!(crate::stats::cores());
    report["pinned"] = json!(bench.pin);
    report["compress"] = json!(bench.compress);
    report["sessions"] = json!(bench.sessions);
    report["senders"] = json!(bench.senders);
    report["load_processes"] = json!(load.processes);
    report["host_rss_kib_before_sessions"] = json!(host_before_sessions.map(|s| s.rss_kib));
    report["host_rss_kib_with_sessions"] = json!(host_with_sessions.map(|s| s.rss_kib));
    report["rss_per_session_kib"] = json!(rss_per_session_kib);
    report["kernel_kib_per_connection"] = json!(kernel_kib_per_connection);
    report["note"] = json!(
        "latency from each message's scheduled send time; writes are the host's write calls on \
         gateway sockets; the kernel's memory per connection is the slab and TCP buffer growth \
         over both ends of each connection"
    );
    if bench.sweep {
        report["steps"] = json!(steps);
        report["p99_bound_ms"] = json!(bench.p99_bound_ms);
        report["highest_rate_within_bound"] = json!(best_within_bound.as_ref().map(|s| s["rate"].clone()));
        report["deliveries_per_s_within_bound"] =
            json!(best_within_bound.as_ref().map(|s| s["deliveries_per_s"].clone()));
    }
    Ok(report)
}

/// One rate, measured.
struct Step {
    rate: f64,
    sent: u64,
    send_failures: u64,
    first_send_error: Option<String>,
    expected: u64,
    delivered: u64,
    delivered_share: f64,
    elapsed_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    post: Histogram<u64>,
    bytes: u64,
    reads: u64,
    closed_sessions: u64,
    host: Option<(HostSample, HostSample)>,
    /// The host's socket write calls and bytes in the step.
    socket_writes: u64,
    socket_write_bytes: u64,
    generator_cpu_s: f64,
}

impl Step {
    fn to_json(&self) -> Value {
        let per_delivery = |v: f64| v / self.delivered.max(1) as f64;
        let ms = |us: u64| us as f64 / 1e3;
        let mut v = json!({
            "rate": self.rate,
            "sent": self.sent,
            "send_failures": self.send_failures,
            "first_send_error": self.first_send_error,
            "expected_deliveries": self.expected,
            "delivered": self.delivered,
            "delivered_share": self.delivered_share,
            "deliveries_per_s": self.delivered as f64 / self.elapsed_s,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "p999_ms": self.p999_ms,
            "max_ms": self.max_ms,
            "post_p50_ms": ms(self.post.value_at_quantile(0.5)),
            "post_p99_ms": ms(self.post.value_at_quantile(0.99)),
            "post_max_ms": ms(self.post.max()),
            "bytes_per_delivery": per_delivery(self.bytes as f64),
            "deliveries_per_read": self.delivered as f64 / self.reads.max(1) as f64,
            "closed_sessions": self.closed_sessions,
            "generator_cpu_us_per_delivery": per_delivery(self.generator_cpu_s * 1e6),
            "writes_per_delivery": per_delivery(self.socket_writes as f64),
            "host_bytes_per_write": self.socket_write_bytes as f64 / self.socket_writes.max(1) as f64,
        });
        if let Some((before, after)) = &self.host {
            let cpu_s = after.cpu_s - before.cpu_s;
            v["host_cpu_cores"] = json!(cpu_s / self.elapsed_s);
            v["host_cpu_us_per_delivery"] = json!(per_delivery(cpu_s * 1e6));
            v["host_rss_kib"] = json!(after.rss_kib);
        }
        v
    }
}

/// Posts at `rate` for the warm-up (not counted), then for `duration`, and waits for the
/// deliveries (at most 10 s after the last send).
async fn measure(
    bench: &GatewayBench,
    target: &Target,
    load: &mut Load,
    senders: &mut Senders,
    rate: f64,
    clock: &dyn Clock,
) -> Result<Step, String> {
    if bench.warmup > 0 {
        senders.run(&target.channel, rate, Duration::from_secs(bench.warmup), clock, None).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    load.report().await?; // what the warm-up counted is left out
    let host_before = target.host_pid.map(HostSample::take);
    let writes_before = socket_writes(target).await?;
    let own_cpu_before = crate::stats::cpu_seconds(std::process::id()).unwrap_or(0.0);
    let delivered_before = load.delivered();
    let started = tokio::time::Instant::now();
    let progress = Progress { load_delivered: load.progress.clone(), from: delivered_before, sessions: bench.sessions };
    let sent = senders.run(&target.channel, rate, Duration::from_secs(bench.duration), clock, Some(progress)).await?;
    let expected = sent.sent * load.ready as u64;
    let give_up = tokio::time::Instant::now() + Duration::from_secs(10);
    while load.delivered() - delivered_before < expected && tokio::time::Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed_s = started.elapsed().as_secs_f64();
    let host_after = target.host_pid.map(HostSample::take);
    let writes_after = socket_writes(target).await?;
    let own_cpu_s = crate::stats::cpu_seconds(std::process::id()).unwrap_or(0.0) - own_cpu_before;
    let counted = load.report().await?;
    let latency = &counted.latency_us;
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1e3;
    Ok(Step {
        rate,
        sent: sent.sent,
        send_failures: sent.failures,
        first_send_error: sent.first_error,
        expected,
        delivered: counted.deliveries,
        delivered_share: counted.deliveries as f64 / expected.max(1) as f64,
        elapsed_s,
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        max_ms: latency.max() as f64 / 1e3,
        post: sent.post_us,
        bytes: counted.bytes,
        reads: counted.reads,
        closed_sessions: counted.closed,
        host: host_before.zip(host_after),
        socket_writes: writes_after.0 - writes_before.0,
        socket_write_bytes: writes_after.1 - writes_before.1,
        generator_cpu_s: counted.cpu_s + own_cpu_s,
    })
}

fn print_step(step: &Value) {
    eprintln!(
        "\rrate {:>7} msg/s: {:>9.0} deliveries/s, p50 {:.1} ms, p99 {:.1} ms, p999 {:.1} ms, POST p99 {:.1} ms{}",
        step["rate"].as_f64().unwrap_or(0.0),
        step["deliveries_per_s"].as_f64().unwrap_or(0.0),
        step["p50_ms"].as_f64().unwrap_or(0.0),
        step["p99_ms"].as_f64().unwrap_or(0.0),
        step["p999_ms"].as_f64().unwrap_or(0.0),
        step["post_p99_ms"].as_f64().unwrap_or(0.0),
        " ".repeat(10),
    );
}

/// The host's socket write calls and bytes so far (its counters).
async fn socket_writes(target: &Target) -> Result<(u64, u64), String> {
    let authority = target.authority.to_string();
    let writes = crate::stats::metric(&authority, "guildhall_gateway_socket_writes_total").await?;
    let bytes = crate::stats::metric(&authority, "guildhall_gateway_socket_write_bytes_total").await?;
    Ok((writes, bytes))
}

/// The host process, read from /proc.
#[derive(Debug, Clone, Copy)]
struct HostSample {
    cpu_s: f64,
    rss_kib: u64,
}

impl HostSample {
    fn take(pid: u32) -> HostSample {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        HostSample {
            cpu_s: crate::stats::cpu_seconds(pid).unwrap_or(0.0),
            rss_kib: proc_field(&status, "VmRSS:").unwrap_or(0),
        }
    }
}

/// A number after `key` in a /proc file of `key value` lines.
fn proc_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(key)).and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// The kernel's memory that connections grow: its slab caches (sockets, their inodes,
/// files, epoll entries) and the TCP buffers (`/proc/net/sockstat`, pages), machine-wide.
fn kernel_memory_kib() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let slab = proc_field(&meminfo, "Slab:")?;
    let sockstat = std::fs::read_to_string("/proc/net/sockstat").ok()?;
    let line = sockstat.lines().find(|l| l.starts_with("TCP:"))?;
    let mut words = line.split_whitespace();
    words.find(|w| *w == "mem")?;
    Some(slab + words.next()?.parse::<u64>().ok()? * 4)
}

/// `--pin`: every thread of the host on core 0, every thread of this process on core 1 (the
/// load processes started afterwards inherit it).
fn pin_generator_and_host(host: Option<u32>) -> Result<(), String> {
    if crate::stats::cores() < 2 {
        return Err("--pin needs two cores".into());
    }
    if let Some(pid) = host {
        pin_process(pid, 0)?;
    }
    pin_process(std::process::id(), 1)
}

fn pin_process(pid: u32, core: usize) -> Result<(), String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).map_err(|e| format!("threads of {pid}: {e}"))?;
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse::<i32>().ok()) else { continue };
        // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes within it; the
        // call only reads the set.
        let result = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(core, &mut set);
            libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set)
        };
        if result != 0 {
            return Err(format!("pinning thread {tid} to core {core}: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// Seeds a store with the guild, its channel and `senders + sessions` members with tokens,
/// then starts a host on it.
async fn start_host(bench: &GatewayBench) -> Result<Target, String> {
    let dir = temp_dir("gateway");
    let users = bench.senders + bench.sessions;
    let (tokens, channel) = seed(&dir, users).await?;
    let connections = (bench.sessions + 1000).to_string();
    let env = [
        ("GUILDHALL_RATE_LIMITS__ENABLED", "false"),
        ("GUILDHALL_RATE_LIMITS__CONNECTIONS_PER_IP", connections.as_str()),
        ("GUILDHALL_GATEWAY__MAX_CONNECTIONS", connections.as_str()),
        ("GUILDHALL_SEARCH__ENABLED", "false"),
    ];
    let host = ServeChild::start_in(dir, &env).await?;
    let tokens_file = write_tokens(&tokens[bench.senders..])?;
    Ok(Target {
        authority: host.addr,
        host_pid: Some(host.pid()),
        sender_tokens: tokens[..bench.senders].to_vec(),
        tokens_file,
        channel,
        _host: Some(host),
    })
}

/// The seed: users with tokens (and no password: nobody logs in as them), the guild the
/// first owns with one text channel, every user a member. Returns the tokens and the channel.
async fn seed(dir: &std::path::Path, users: usize) -> Result<(Vec<String>, String), String> {
    let store = Arc::new(EmbeddedStore::open(dir).map_err(|e| e.to_string())?);
    let ids = Generator::new(0, 31, crate::stats::system_clock());
    let next = || ids.next_id().map_err(|e| e.to_string());
    let salt = guildhall_server::auth::random_hex(8);
    let mut people = Vec::with_capacity(users);
    for i in 0..users {
        people.push((User::new(next()?, format!("gw{i}"), false), format!("gw{i}.{salt}")));
    }
    const CHUNK: usize = 512;
    for chunk in people.chunks(CHUNK) {
        let mut writes = tokio::task::JoinSet::new();
        for (user, token) in chunk.iter().cloned() {
            let store = store.clone();
            writes.spawn(async move {
                store.create_user(UserRecord::person(user.clone(), "!".into())).await?;
                store.put_token(&token, user.id).await
            });
        }
        while let Some(done) = writes.join_next().await {
            done.map_err(|e| e.to_string())?.map_err(|e| format!("seeding users: {e}"))?;
        }
    }
    let joined_at = "2026-01-01T00:00:00.000000+00:00".to_owned();
    let guild = Guild::new(next()?, "gateway bench", people[0].0.id);
    let channel = Channel::text(next()?, guild.id, "general");
    let owner = Member::new(people[0].0.clone(), joined_at.clone());
    store.create_guild(guild.clone(), owner, vec![channel.clone()]).await.map_err(|e| e.to_string())?;
    for chunk in people[1..].chunks(CHUNK) {
        let writes = chunk
            .iter()
            .map(|(user, _)| GuildWrite::AddMember {
                guild_id: guild.id,
                member: Member::new(user.clone(), joined_at.clone()),
                invite: None,
            })
            .collect();
        for result in store.apply_batch(writes).await {
            result.map_err(|e| format!("seeding members: {e}"))?;
        }
    }
    store.flush().await.map_err(|e| e.to_string())?;
    Arc::into_inner(store).ok_or("the store is still shared")?.close();
    Ok((people.into_iter().map(|(_, token)| token).collect(), channel.id.to_string()))
}

fn write_tokens(tokens: &[String]) -> Result<PathBuf, String> {
    let path = temp_dir("gateway-tokens");
    std::fs::write(&path, tokens.join("\n") + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// `--url`: accounts registered over REST (senders, then `--users` for the sessions), a
/// guild of the first sender's with an invite the others accept.
async fn register_on(url: &str, bench: &GatewayBench) -> Result<Target, String> {
    let authority = url.split("://").last().unwrap_or(url).trim_end_matches('/');
    let authority = authority.split('/').next().unwrap_or(authority);
    let addr: SocketAddr =
        authority.parse().map_err(|_| format!("--url {url}: give the host as an IP address and port"))?;
    let mut api = ApiClient::connect(&addr.to_string()).await.map_err(|e| e.to_string())?;
    let mut call = async |method: Method, path: &str, token: Option<&str>, body: Value| {
        let (status, value) = api.json(method, path, token, Some(&body)).await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{path}: {status} {value}"));
        }
        Ok::<Value, String>(value)
    };
    let run = guildhall_server::auth::random_hex(3);
    let users = bench.users.clamp(1, bench.sessions);
    let mut tokens = Vec::with_capacity(bench.senders + users);
    for i in 0..bench.senders + users {
        let creds = json!({ "username": format!("gw{run}x{i}"), "password": "gateway bench password" });
        let registered = call(Method::POST, "/auth/register", None, creds).await?;
        tokens.push(registered["token"].as_str().ok_or("no token")?.to_owned());
    }
    let guild = call(Method::POST, "/guilds", Some(&tokens[0]), json!({ "name": "gateway bench" })).await?;
    let gid = guild["id"].as_str().ok_or("no guild id")?.to_owned();
    let channels = call(Method::GET, &format!("/guilds/{gid}/channels"), Some(&tokens[0]), Value::Null).await?;
    let cid = channels[0]["id"].as_str().ok_or("no channel")?.to_owned();
    let invite = call(Method::POST, &format!("/channels/{cid}/invites"), Some(&tokens[0]), json!({})).await?;
    let code = invite["code"].as_str().ok_or("no invite code")?.to_owned();
    for token in &tokens[1..] {
        call(Method::POST, &format!("/invites/{code}"), Some(token), json!({})).await?;
    }
    let session_tokens: Vec<String> = (0..bench.sessions).map(|i| tokens[bench.senders + i % users].clone()).collect();
    Ok(Target {
        authority: addr,
        host_pid: bench.host_pid,
        sender_tokens: tokens[..bench.senders].to_vec(),
        tokens_file: write_tokens(&session_tokens)?,
        channel: cid,
        _host: None,
    })
}

/// The REST side: one keep-alive connection per sender, opened afresh for each run (a
/// host closes connections left idle while thousands of sessions connect).
struct Senders {
    authority: String,
    tokens: Vec<String>,
    next_number: u64,
}

/// What the senders did at one rate.
struct Sent {
    sent: u64,
    failures: u64,
    first_error: Option<String>,
    /// From each message's scheduled send to its answer.
    post_us: Histogram<u64>,
}

/// The progress line's source: deliveries the load processes counted.
struct Progress {
    load_delivered: Arc<AtomicU64>,
    from: u64,
    sessions: usize,
}

impl Senders {
    fn new(target: &Target) -> Senders {
        Senders { authority: target.authority.to_string(), tokens: target.sender_tokens.clone(), next_number: 0 }
    }

    async fn post_one(&mut self, channel: &str, clock: &dyn Clock) -> Result<(), String> {
        let mut client = ApiClient::connect(&self.authority).await.map_err(|e| e.to_string())?;
        post(&mut client, &self.tokens[0], channel, clock.unix_us(), 0).await
    }

    /// Posts at `rate` messages per second for `duration`, spread over the senders (sender
    /// `k` posts messages k, k + M, ...), each at its scheduled time or, when late, at once.
    async fn run(
        &mut self,
        channel: &str,
        rate: f64,
        duration: Duration,
        clock: &dyn Clock,
        progress: Option<Progress>,
    ) -> Result<Sent, String> {
        let total = (rate * duration.as_secs_f64()).round() as u64;
        let interval_us = 1e6 / rate;
        let start_us = clock.unix_us() + 20_000;
        let first = self.next_number;
        self.next_number += total;
        let m = self.tokens.len() as u64;
        let (done_tx, mut done_rx) = mpsc::unbounded_channel();
        let mut clients = Vec::with_capacity(self.tokens.len());
        for token in &self.tokens {
            let client = ApiClient::connect(&self.authority).await.map_err(|e| e.to_string())?;
            clients.push((client, token.clone()));
        }
        let clock = crate::stats::system_clock();
        let mut tasks = tokio::task::JoinSet::new();
        for (k, (mut client, token)) in clients.into_iter().enumerate() {
            let (channel, clock, done_tx) = (channel.to_owned(), clock.clone(), done_tx.clone());
            tasks.spawn(async move {
                let mut sent = Sent { sent: 0, failures: 0, first_error: None, post_us: latency_histogram() };
                let mut n = k as u64;
                while n < total {
                    let due_us = start_us + (n as f64 * interval_us) as u64;
                    let now_us = clock.unix_us();
                    if due_us > now_us {
                        tokio::time::sleep(Duration::from_micros(due_us - now_us)).await;
                    }
                    match post(&mut client, &token, &channel, due_us, first + n).await {
                        Ok(()) => sent.sent += 1,
                        Err(e) => {
                            sent.failures += 1;
                            sent.first_error.get_or_insert(e);
                        }
                    }
                    let _ = sent.post_us.record(clock.unix_us().saturating_sub(due_us).max(1));
                    let _ = done_tx.send(());
                    n += m;
                }
                sent
            });
        }
        drop(done_tx);
        let show = progress.map(|p| (p, std::io::IsTerminal::is_terminal(&std::io::stderr())));
        let mut posted = 0u64;
        let mut last_shown = tokio::time::Instant::now();
        let shown_from = last_shown;
        while done_rx.recv().await.is_some() {
            posted += 1;
            if let Some((p, terminal)) = &show {
                let every = if *terminal { Duration::from_millis(250) } else { Duration::from_secs(5) };
                if last_shown.elapsed() >= every {
                    last_shown = tokio::time::Instant::now();
                    let delivered = p.load_delivered.load(Relaxed) - p.from;
                    let rate_now = delivered as f64 / shown_from.elapsed().as_secs_f64();
                    let line = progress_line(posted, total, p.sessions, delivered, rate_now);
                    if *terminal {
                        eprint!("\r{line}");
                    } else {
                        eprintln!("{line}");
                    }
                }
            }
        }
        let mut all = Sent { sent: 0, failures: 0, first_error: None, post_us: latency_histogram() };
        while let Some(done) = tasks.join_next().await {
            let sent = done.map_err(|e| e.to_string())?;
            all.sent += sent.sent;
            all.failures += sent.failures;
            all.first_error = all.first_error.or(sent.first_error);
            all.post_us.add(&sent.post_us).map_err(|e| e.to_string())?;
        }
        Ok(all)
    }
}

fn progress_line(posted: u64, total: u64, sessions: usize, delivered: u64, per_s: f64) -> String {
    const WIDTH: usize = 30;
    let filled = (posted as usize * WIDTH) / total.max(1) as usize;
    let expected = posted * sessions as u64;
    format!(
        "[{}{}] {posted}/{total} messages, {delivered}/{expected} delivered, {per_s:.0}/s",
        "#".repeat(filled),
        " ".repeat(WIDTH - filled.min(WIDTH))
    )
}

/// One message: its scheduled send time and number after the marker the sessions look for,
/// then a line of chat.
async fn post(client: &mut ApiClient, token: &str, channel: &str, due_us: u64, n: u64) -> Result<(), String> {
    let content = format!("{}{due_us}:{n} {}", frames::CONTENT_PREFIX, crate::bench_compression::chatter(n as usize));
    let body = bytes::Bytes::from(json!({ "content": content }).to_string());
    let path = format!("/channels/{channel}/messages");
    let answer =
        client.request(Method::POST, &path, Some(token), "application/json", body).await.map_err(|e| e.to_string())?;
    if !answer.status.is_success() {
        return Err(format!("{} {}", answer.status, String::from_utf8_lossy(&answer.body)));
    }
    Ok(())
}

/// The load processes.
struct Load {
    processes: usize,
    ready: usize,
    workers: Vec<Worker>,
    /// Deliveries all of them counted so far (their progress lines).
    progress: Arc<AtomicU64>,
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    reports: mpsc::Receiver<Value>,
    /// The process's CPU time at its previous report.
    cpu_s: f64,
}

/// What the load processes counted since their previous reports.
struct Counted {
    deliveries: u64,
    bytes: u64,
    reads: u64,
    closed: u64,
    latency_us: Histogram<u64>,
    cpu_s: f64,
}

impl Load {
    async fn start(target: &Target, bench: &GatewayBench) -> Result<Load, String> {
        let processes = bench.workers.unwrap_or(bench.sessions.div_ceil(SESSIONS_PER_PROCESS)).clamp(1, 64);
        let per = bench.sessions.div_ceil(processes);
        if per > SESSIONS_PER_PROCESS {
            return Err(format!("{per} sessions per load process: more than its open files allow"));
        }
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let progress = Arc::new(AtomicU64::new(0));
        let (mut workers, mut readies) = (Vec::new(), Vec::new());
        let mut source_octet = 2usize;
        for w in 0..processes {
            let first = w * per;
            let count = per.min(bench.sessions - first);
            if count == 0 {
                break;
            }
            let mut command = tokio::process::Command::new(&exe);
            command
                .arg("gateway-load")
                .args(["--authority", &target.authority.to_string()])
                .arg("--tokens")
                .arg(&target.tokens_file)
                .args(["--first", &first.to_string(), "--count", &count.to_string()])
                .args(["--source-octet", &source_octet.to_string()])
                .env("RUST_LOG", "warn")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .kill_on_drop(true);
            if bench.compress {
                command.arg("--compress");
            }
            source_octet += count.div_ceil(load::SESSIONS_PER_SOURCE);
            if source_octet > 250 {
                return Err("too many sessions for 127.0.0.x source addresses".into());
            }
            let mut child = command.spawn().map_err(|e| format!("starting a load process: {e}"))?;
            let stdin = child.stdin.take().expect("piped");
            let stdout = child.stdout.take().expect("piped");
            let (ready_tx, ready_rx) = oneshot::channel();
            let (report_tx, reports) = mpsc::channel(4);
            tokio::spawn(read_worker(stdout, ready_tx, report_tx, progress.clone()));
            readies.push(ready_rx);
            workers.push(Worker { child, stdin, reports, cpu_s: 0.0 });
        }
        let mut ready = 0;
        for answer in readies {
            let line = answer.await.map_err(|_| "a load process ended before its sessions were ready")?;
            let failed = line["failed"].as_u64().unwrap_or(0);
            if failed > 0 {
                return Err(format!("{failed} sessions failed to connect: {}", line["error"]));
            }
            ready += line["ready"].as_u64().unwrap_or(0) as usize;
        }
        Ok(Load { processes: workers.len(), ready, workers, progress })
    }

    fn delivered(&self) -> u64 {
        self.progress.load(Relaxed)
    }

    async fn report(&mut self) -> Result<Counted, String> {
        let mut all =
            Counted { deliveries: 0, bytes: 0, reads: 0, closed: 0, latency_us: latency_histogram(), cpu_s: 0.0 };
        for worker in &mut self.workers {
            worker.stdin.write_all(b"report\n").await.map_err(|e| format!("a load process: {e}"))?;
        }
        for worker in &mut self.workers {
            let report = worker.reports.recv().await.ok_or("a load process ended")?;
            let count = |key: &str| report[key].as_u64().unwrap_or(0);
            all.deliveries += count("deliveries");
            all.bytes += count("bytes");
            all.reads += count("reads");
            all.closed += count("closed");
            for pair in report["latency_us"].as_array().into_iter().flatten() {
                let (value, n) = (pair[0].as_u64().unwrap_or(0), pair[1].as_u64().unwrap_or(0));
                all.latency_us.record_n(value.max(1), n).map_err(|e| e.to_string())?;
            }
            let cpu_s = report["cpu_s"].as_f64().unwrap_or(0.0);
            all.cpu_s += cpu_s - std::mem::replace(&mut worker.cpu_s, cpu_s);
        }
        Ok(all)
    }

    async fn stop(&mut self) {
        for mut worker in self.workers.drain(..) {
            drop(worker.stdin); // its input closes: it ends
            let _ = tokio::time::timeout(Duration::from_secs(5), worker.child.wait()).await;
        }
    }
}

/// A load process's output lines: its readiness once, progress (the deliveries counter),
/// and reports.
async fn read_worker(
    stdout: tokio::process::ChildStdout,
    ready: oneshot::Sender<Value>,
    reports: mpsc::Sender<Value>,
    delivered: Arc<AtomicU64>,
) {
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut ready = Some(ready);
    let mut last = 0u64;
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(value) = serde_json::from_str::<Value>(&line) else { continue };
        if value.get("ready").is_some() {
            if let Some(ready) = ready.take() {
                let _ = ready.send(value);
            }
        } else if let Some(progress) = value.get("progress") {
            let now = progress["deliveries"].as_u64().unwrap_or(0);
            delivered.fetch_add(now.saturating_sub(last), Relaxed);
            last = now;
        } else if let Some(report) = value.get("report") {
            let _ = reports.send(report.clone()).await;
        }
    }
}
