//! `guildhall bench cluster`: real `guildhall serve --cluster` child processes on a running
//! nats-server (with JetStream; its monitoring port gives the message counts) and CQL node,
//! one node and then `nodes` nodes, in one run:
//! - message creates through every node at once (the guild runs on one of them, so most
//!   creates cross a node): creates/s and latency, against the single node;
//! - NATS messages and bytes per create (the server's own counters, /varz);
//! - a hot-channel burst of identical history reads spread over the nodes: requests
//!   against storage queries (the coalescing ratio, cluster-wide);
//! - fan-out: WebSocket sessions spread over the nodes, messages posted on the guild's
//!   node: deliveries per second, NATS messages and bytes per event (the server's counters,
//!   less what the idle cluster sends: lease renewals and view refreshes), forwards per
//!   event (the nodes' own counter);
//! - bots on other nodes (`plugins.bot_placement = "spread"`): `!ping` to `pong` through
//!   a gateway session, for bots that landed beside their guild and bots that landed on
//!   another node, in the same cluster, and NATS messages per ping of each;
//! - fail-over: the guild's node killed with SIGKILL, until a create succeeds again.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use guildhall_client::gateway::{connect_gateway, next_text, send_json, GatewaySocket};
use guildhall_client::{ApiClient, Method};
use serde_json::{json, Value};

use crate::stats::percentiles_us;

/// What the scenario needs from outside, and its size.
#[derive(clap::Args, Debug)]
pub struct ClusterBench {
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub nats: String,
    /// The NATS server's monitoring address (its /varz message counters).
    #[arg(long, default_value = "127.0.0.1:8222")]
    pub nats_monitor: String,
    #[arg(long, default_value = "127.0.0.1:9042")]
    pub cql: String,
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    #[arg(long, default_value_t = 12)]
    pub concurrency: usize,
    #[arg(long, default_value_t = 3000)]
    pub messages: usize,
    /// Identical history reads at once, spread over the nodes.
    #[arg(long, default_value_t = 300)]
    pub burst: usize,
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Gateway sessions (WebSockets) spread over the nodes for the fan-out stage.
    #[arg(long, default_value_t = 300)]
    pub sessions: usize,
    /// Messages posted for the fan-out stage (each delivered to every session).
    #[arg(long, default_value_t = 200)]
    pub fanout_messages: usize,
    /// The bot for the remote-bot stage (answers `!ping` with `pong`; default: the
    /// `commands` plugin cargo built next to this binary).
    #[arg(long)]
    pub bot_component: Option<PathBuf>,
    /// The nodes' `data.linger_ms` (0 to see the coalescing of reads in flight alone).
    #[arg(long, default_value_t = 50)]
    pub linger_ms: u64,
    /// `!ping`s per bot in that stage (a bot makes at most 30 writes a minute).
    #[arg(long, default_value_t = 25)]
    pub pings: usize,
}

pub(crate) struct Node {
    child: std::process::Child,
    dir: PathBuf,
    pub(crate) addr: SocketAddr,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn start_node(name: &str, storage: &str, b: &ClusterBench) -> Result<Node, String> {
    let env = [
        ("GUILDHALL_DATA__LINGER_MS", b.linger_ms.to_string()),
        ("GUILDHALL_PLUGINS__BOT_PLACEMENT", "spread".to_owned()),
    ];
    start_child(&["serve"], name, storage, &b.nats, &env).await
}

/// A `guildhall` child process (`serve`, or `worker indexer`) of the cluster `name`, with
/// `env` set besides what every one gets; returns once it printed where it listens.
pub(crate) async fn start_child(
    command: &[&str],
    name: &str,
    storage: &str,
    nats: &str,
    env: &[(&str, String)],
) -> Result<Node, String> {
    let dir = std::env::temp_dir().join(format!("guildhall-bench-{name}-{}", rand_suffix()));
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = std::process::Command::new(exe)
        .args(command)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .args(["--storage", storage, "--cluster", nats])
        .env("GUILDHALL_CLUSTER__NAME", name)
        .env("GUILDHALL_CLUSTER__LEASE_MS", "1500")
        // One load generator on one address, far past any client's limits.
        .env("GUILDHALL_RATE_LIMITS__ENABLED", "false")
        .env("RUST_LOG", "error")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {command:?}: {e}"))?;
    let stdout = child.stdout.take().expect("piped");
    let addr = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(stdout).lines();
        let line = lines.next().and_then(|l| l.ok()).unwrap_or_default();
        std::thread::spawn(move || for _ in lines {});
        line.strip_prefix("guildhall listening on ").and_then(|a| a.parse().ok())
    })
    .await
    .map_err(|e| e.to_string())?;
    let mut node = Node { child, dir, addr: SocketAddr::from(([0, 0, 0, 0], 0)) };
    node.addr = addr.ok_or("a child did not report its address")?; // (dropping `node` kills it)
    Ok(node)
}

pub(crate) fn rand_suffix() -> String {
    guildhall_server::auth::random_hex(4)
}

pub(crate) async fn metric(addr: SocketAddr, name: &str) -> Result<u64, String> {
    let mut client = ApiClient::connect(&addr.to_string()).await.map_err(|e| e.to_string())?;
    let text = client.metrics().await.map_err(|e| e.to_string())?;
    Ok(text.lines().find_map(|l| l.strip_prefix(&format!("{name} ")).and_then(|v| v.parse().ok())).unwrap_or(0))
}

async fn sum_metric(nodes: &[Node], name: &str) -> Result<u64, String> {
    let mut total = 0;
    for node in nodes {
        total += metric(node.addr, name).await?;
    }
    Ok(total)
}

/// (messages, bytes) the NATS server has received so far.
async fn nats_in(monitor: &str) -> Result<(u64, u64), String> {
    let mut client = ApiClient::connect(monitor).await.map_err(|e| format!("NATS monitoring at {monitor}: {e}"))?;
    let varz: Value = serde_json::from_str(&client.get_text("/varz").await.map_err(|e| e.to_string())?)
        .map_err(|e| format!("/varz: {e}"))?;
    Ok((varz["in_msgs"].as_u64().unwrap_or(0), varz["in_bytes"].as_u64().unwrap_or(0)))
}

pub(crate) async fn call(
    client: &mut ApiClient,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Result<(u16, Value), String> {
    let (status, body) = client.json(method, path, token, body.as_ref()).await.map_err(|e| e.to_string())?;
    Ok((status.as_u16(), body))
}

/// One layout of `n` nodes: its numbers.
async fn layout(b: &ClusterBench, n: usize) -> Result<Value, String> {
    let name = format!("ghbench_{}", rand_suffix());
    let storage = format!("scylla://{}/{name}", b.cql);
    let mut nodes = Vec::new();
    for _ in 0..n {
        nodes.push(start_node(&name, &storage, b).await?);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for node in &nodes {
        while metric(node.addr, "guildhall_cluster_nodes").await? != n as u64 {
            if Instant::now() > deadline {
                return Err("the nodes did not see each other within 30 s".into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let mut setup = ApiClient::connect(&nodes[0].addr.to_string()).await.map_err(|e| e.to_string())?;
    let (_, reg) = call(
        &mut setup,
        Method::POST,
        "/auth/register",
        None,
        Some(json!({ "username": "bench", "password": "bench password" })),
    )
    .await?;
    let token = reg["token"].as_str().ok_or("register failed")?.to_owned();
    let (_, guild) = call(&mut setup, Method::POST, "/guilds", Some(&token), Some(json!({ "name": "bench" }))).await?;
    let gid = guild["id"].as_str().ok_or("guild create failed")?.to_owned();
    let (_, channels) = call(&mut setup, Method::GET, &format!("/guilds/{gid}/channels"), Some(&token), None).await?;
    let cid = channels[0]["id"].as_str().ok_or("no channel")?.to_owned();
    let create_path = format!("/channels/{cid}/messages");
    // Warm up: the guild's actor starts on its node.
    call(&mut setup, Method::POST, &create_path, Some(&token), Some(json!({ "content": "warm-up" }))).await?;

    // Creates through every node at once.
    let (nats_msgs0, nats_bytes0) = nats_in(&b.nats_monitor).await?;
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..b.concurrency {
        let (addr, token, path, counter, total) =
            (nodes[c % n].addr, token.clone(), create_path.clone(), counter.clone(), b.messages);
        tasks.push(tokio::spawn(async move {
            let mut client = ApiClient::connect(&addr.to_string()).await.map_err(|e| e.to_string())?;
            let mut latencies = Vec::new();
            while counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < total {
                let t = Instant::now();
                let body = json!({ "content": "benchmark message with a typical length of about sixty chars" });
                let (status, answer) = call(&mut client, Method::POST, &path, Some(&token), Some(body)).await?;
                if status != 200 {
                    return Err(format!("create answered {status}: {answer}"));
                }
                latencies.push(t.elapsed());
            }
            Ok::<_, String>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.map_err(|e| e.to_string())??);
    }
    let create_secs = started.elapsed().as_secs_f64();
    let (nats_msgs1, nats_bytes1) = nats_in(&b.nats_monitor).await?;
    let (p50, p99, _) = percentiles_us(latencies);

    // A hot channel: bursts of identical reads spread over the nodes.
    let requests0 = sum_metric(&nodes, "guildhall_data_requests_total{route=\"history\"}").await?;
    let queries0 = sum_metric(&nodes, "guildhall_data_db_queries_total{route=\"history\"}").await?;
    let joined0 = sum_metric(&nodes, "guildhall_cluster_reads_joined_total").await?;
    for _ in 0..b.rounds {
        let mut burst = Vec::new();
        for r in 0..b.burst {
            let (addr, token, path) = (nodes[r % n].addr, token.clone(), format!("{create_path}?limit=50"));
            burst.push(tokio::spawn(async move {
                let mut client = ApiClient::connect(&addr.to_string()).await.map_err(|e| e.to_string())?;
                let (status, _) = call(&mut client, Method::GET, &path, Some(&token), None).await?;
                if status != 200 {
                    return Err(format!("history answered {status}"));
                }
                Ok::<_, String>(())
            }));
        }
        for r in burst {
            r.await.map_err(|e| e.to_string())??;
        }
    }
    let requests = (b.burst * b.rounds) as u64;
    let at_data_services = sum_metric(&nodes, "guildhall_data_requests_total{route=\"history\"}").await? - requests0;
    let queries = sum_metric(&nodes, "guildhall_data_db_queries_total{route=\"history\"}").await? - queries0;
    let joined = sum_metric(&nodes, "guildhall_cluster_reads_joined_total").await? - joined0;

    let mut report = json!({
        "nodes": n,
        "creates": b.messages,
        "creates_per_sec": b.messages as f64 / create_secs,
        "create_p50_us": p50,
        "create_p99_us": p99,
        "nats_msgs_per_create": (nats_msgs1 - nats_msgs0) as f64 / b.messages as f64,
        "nats_bytes_per_create": (nats_bytes1 - nats_bytes0) as f64 / b.messages as f64,
        "burst_reads": requests,
        "burst_reads_at_data_services": at_data_services,
        "burst_reads_joined_on_their_node": joined,
        "burst_db_queries": queries,
        "coalescing_ratio": requests as f64 / queries.max(1) as f64,
    });

    let mut owner = None;
    for (i, node) in nodes.iter().enumerate() {
        if metric(node.addr, "guildhall_guilds").await? == 1 {
            owner = Some(i);
        }
    }
    let owner = owner.ok_or("no node runs the guild")?;
    let fanout = fanout(b, &nodes, owner, &token, &create_path).await?;
    report["fanout"] = fanout;

    if n > 1 {
        report["bots"] = bots(b, &nodes, &token).await?;
        // Fail-over: kill the guild's node, then create through a survivor until it works.
        let survivor = nodes[(owner + 1) % n].addr;
        let mut client = ApiClient::connect(&survivor.to_string()).await.map_err(|e| e.to_string())?;
        let killed = Instant::now();
        drop(nodes.remove(owner)); // SIGKILL
        let failover = loop {
            let body = json!({ "content": "after the kill" });
            if let Ok((200, _)) = call(&mut client, Method::POST, &create_path, Some(&token), Some(body)).await {
                break killed.elapsed();
            }
            if killed.elapsed() > Duration::from_secs(30) {
                return Err("the guild did not serve again within 30 s".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        report["failover_ms"] = json!(failover.as_secs_f64() * 1e3);
    }
    Ok(report)
}

/// Opens a gateway session and waits for its guild (READY, then GUILD_CREATE).
async fn open_session(addr: SocketAddr, token: &str) -> Result<GatewaySocket, String> {
    let mut ws = connect_gateway(&addr.to_string(), "/gateway?v=10&encoding=json").await.map_err(|e| e.to_string())?;
    next_text(&mut ws).await.map_err(|e| e.to_string())?.ok_or("closed before HELLO")?;
    let intents = 1 | 1 << 9; // GUILDS, GUILD_MESSAGES
    let identify = json!({ "op": 2, "d": { "token": token, "intents": intents, "properties": { "os": "linux", "browser": "bench", "device": "bench" } } });
    send_json(&mut ws, &identify).await.map_err(|e| e.to_string())?;
    loop {
        let frame = next_text(&mut ws).await.map_err(|e| e.to_string())?.ok_or("closed before GUILD_CREATE")?;
        if contains(&frame, b"\"t\":\"GUILD_CREATE\"") {
            return Ok(ws);
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Fan-out to `sessions` WebSockets spread over the nodes; messages posted on the guild's
/// node, so what crosses NATS is the fan-out (and the cluster's idle chatter, measured
/// before and subtracted).
async fn fanout(b: &ClusterBench, nodes: &[Node], owner: usize, token: &str, path: &str) -> Result<Value, String> {
    let mut sessions = Vec::with_capacity(b.sessions);
    for s in 0..b.sessions {
        sessions.push(open_session(nodes[s % nodes.len()].addr, token).await?);
    }
    let idle = Duration::from_secs(1);
    let (idle0, idle_bytes0) = nats_in(&b.nats_monitor).await?;
    tokio::time::sleep(idle).await;
    let (idle1, idle_bytes1) = nats_in(&b.nats_monitor).await?;
    let idle_msgs_per_sec = (idle1 - idle0) as f64 / idle.as_secs_f64();
    let idle_bytes_per_sec = (idle_bytes1 - idle_bytes0) as f64 / idle.as_secs_f64();

    let expected = b.fanout_messages;
    let mut readers = Vec::with_capacity(sessions.len());
    for mut ws in sessions {
        readers.push(tokio::spawn(async move {
            let mut seen = 0;
            while seen < expected {
                let frame = next_text(&mut ws).await.map_err(|e| e.to_string())?.ok_or("a session was closed")?;
                seen += usize::from(contains(&frame, b"\"t\":\"MESSAGE_CREATE\""));
            }
            Ok::<_, String>(Instant::now())
        }));
    }
    let forwards0 = sum_metric(nodes, "guildhall_node_forwards_total").await?;
    let (msgs0, bytes0) = nats_in(&b.nats_monitor).await?;
    let started = Instant::now();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut posters = Vec::new();
    for _ in 0..4 {
        let (addr, token, path, next) = (nodes[owner].addr, token.to_owned(), path.to_owned(), next.clone());
        posters.push(tokio::spawn(async move {
            let mut client = ApiClient::connect(&addr.to_string()).await.map_err(|e| e.to_string())?;
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < expected {
                let body = json!({ "content": "fan-out message of a typical length, about sixty characters" });
                let (status, answer) = call(&mut client, Method::POST, &path, Some(&token), Some(body)).await?;
                if status != 200 {
                    return Err(format!("create answered {status}: {answer}"));
                }
            }
            Ok::<_, String>(())
        }));
    }
    for p in posters {
        p.await.map_err(|e| e.to_string())??;
    }
    let mut last = started;
    for r in readers {
        last = last.max(r.await.map_err(|e| e.to_string())??);
    }
    let secs = (last - started).as_secs_f64();
    let (msgs1, bytes1) = nats_in(&b.nats_monitor).await?;
    let forwards = sum_metric(nodes, "guildhall_node_forwards_total").await? - forwards0;
    let events = expected as f64;
    let nats_msgs = (msgs1 - msgs0) as f64;
    let nats_bytes = (bytes1 - bytes0) as f64;
    Ok(json!({
        "sessions": b.sessions,
        "messages": expected,
        "deliveries_per_sec": (b.sessions * expected) as f64 / secs,
        "seconds": secs,
        "node_forwards_per_event": forwards as f64 / events,
        "nats_msgs_per_event": ((nats_msgs - idle_msgs_per_sec * secs) / events).max(0.0),
        "nats_bytes_per_event": ((nats_bytes - idle_bytes_per_sec * secs) / events).max(0.0),
        "nats_msgs_per_event_raw": nats_msgs / events,
        "nats_idle_msgs_per_sec": idle_msgs_per_sec,
    }))
}

/// Bots beside their guild and bots on another node, in one cluster (spread placement
/// puts each on the ring owner of its plugin id, so guilds get both kinds): `!ping` to
/// `pong` as a client sees it, one at a time, through node 0.
async fn bots(b: &ClusterBench, nodes: &[Node], token: &str) -> Result<Value, String> {
    let component = crate::components::read_component(b.bot_component.clone(), "commands")?;
    let mut client = ApiClient::connect(&nodes[0].addr.to_string()).await.map_err(|e| e.to_string())?;
    // Guilds with one bot each, until there are 4 of each kind.
    let (mut beside, mut apart): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
    for g in 0..40 {
        if beside.len() >= 4 && apart.len() >= 4 {
            break;
        }
        let (_, guild) =
            call(&mut client, Method::POST, "/guilds", Some(token), Some(json!({ "name": format!("bots{g}") })))
                .await?;
        let gid = guild["id"].as_str().ok_or("guild create failed")?.to_owned();
        let (_, channels) =
            call(&mut client, Method::GET, &format!("/guilds/{gid}/channels"), Some(token), None).await?;
        let cid = channels[0]["id"].as_str().ok_or("no channel")?.to_owned();
        let hosted0 = sum_metric(nodes, "guildhall_bots_hosted").await?;
        let install = format!("/guilds/{gid}/plugins?name=commands");
        let answer = client
            .request(Method::POST, &install, Some(token), "application/wasm", component.clone().into())
            .await
            .map_err(|e| e.to_string())?;
        if answer.status.as_u16() != 201 {
            return Err(format!("installing the bot answered {}", answer.status));
        }
        // A bot placed elsewhere shows in that node's gauge once its start arrived.
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut remote = false;
        while !remote && Instant::now() < deadline {
            remote = sum_metric(nodes, "guildhall_bots_hosted").await? > hosted0;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        match remote {
            true if apart.len() < 4 => apart.push(cid),
            false if beside.len() < 4 => beside.push(cid),
            _ => {}
        }
    }
    if beside.is_empty() || apart.is_empty() {
        return Err("40 guilds gave no bot of one kind".into());
    }
    let mut ws = open_session(nodes[0].addr, token).await?;
    let pings = b.pings.min(28); // 30 writes a minute per bot, the warm-up one included
    let (idle0, _) = nats_in(&b.nats_monitor).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_per_sec = (nats_in(&b.nats_monitor).await?.0 - idle0) as f64;
    let kinds = [("beside", beside), ("apart", apart)];
    let mut report = json!({});
    for (kind, channels) in kinds {
        let (p50, p99, count, msgs, secs) = ping_bots(b, &mut ws, &mut client, token, &channels, pings).await?;
        report[kind] = json!({
            "bots": channels.len(),
            "pings": count,
            "ping_p50_us": p50,
            "ping_p99_us": p99,
            "nats_msgs_per_ping": ((msgs - idle_per_sec * secs) / (count + channels.len()) as f64).max(0.0),
        });
    }
    let ratio =
        |k: &str| report["apart"][k].as_f64().unwrap_or(0.0) / report["beside"][k].as_f64().unwrap_or(1.0).max(1.0);
    let (p50, p99) = (ratio("ping_p50_us"), ratio("ping_p99_us"));
    report["p50_apart_over_beside"] = json!(p50);
    report["p99_apart_over_beside"] = json!(p99);
    Ok(report)
}

/// `pings` rounds of `!ping` in each channel, one at a time, after a warm-up round:
/// (p50 µs, p99 µs, pings measured, NATS messages meanwhile, seconds).
async fn ping_bots(
    b: &ClusterBench,
    ws: &mut GatewaySocket,
    client: &mut ApiClient,
    token: &str,
    channels: &[String],
    pings: usize,
) -> Result<(f64, f64, usize, f64, f64), String> {
    let mut latencies = Vec::new();
    let (msgs0, _) = nats_in(&b.nats_monitor).await?;
    let started = Instant::now();
    for round in 0..=pings {
        for cid in channels {
            let t = Instant::now();
            let body = json!({ "content": "!ping" });
            let (status, _) =
                call(client, Method::POST, &format!("/channels/{cid}/messages"), Some(token), Some(body)).await?;
            if status != 200 {
                return Err(format!("!ping answered {status}"));
            }
            let pong = format!("\"channel_id\":\"{cid}\"");
            loop {
                let frame = tokio::time::timeout(Duration::from_secs(10), next_text(ws))
                    .await
                    .map_err(|_| "no pong within 10 s".to_owned())?
                    .map_err(|e| e.to_string())?
                    .ok_or("the session closed")?;
                if contains(&frame, b"\"content\":\"pong\"") && contains(&frame, pong.as_bytes()) {
                    break;
                }
            }
            if round > 0 {
                latencies.push(t.elapsed()); // round 0 warms the bots' instances up
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let (msgs1, _) = nats_in(&b.nats_monitor).await?;
    let count = latencies.len();
    let (p50, p99, _) = percentiles_us(latencies);
    Ok((p50, p99, count, (msgs1 - msgs0) as f64, secs))
}

pub async fn run(b: ClusterBench) -> Result<Value, String> {
    if b.nodes < 2 {
        return Err("--nodes must be at least 2 (it is compared with one node)".into());
    }
    let one = layout(&b, 1).await?;
    let many = layout(&b, b.nodes).await?;
    let ratio = |k: &str| many[k].as_f64().unwrap_or(0.0) / one[k].as_f64().unwrap_or(1.0).max(f64::MIN_POSITIVE);
    Ok(json!({
        "scenario": "cluster",
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "note": "every node, the load generator, nats-server and the CQL node share the machine",
        "concurrency": b.concurrency,
        "linger_ms": b.linger_ms,
        "one_node": one,
        "cluster": many,
        "creates_per_sec_cluster_over_one": ratio("creates_per_sec"),
        "create_p50_cluster_over_one": ratio("create_p50_us"),
        "fanout_deliveries_per_sec_cluster_over_one": many["fanout"]["deliveries_per_sec"].as_f64().unwrap_or(0.0)
            / one["fanout"]["deliveries_per_sec"].as_f64().unwrap_or(1.0).max(f64::MIN_POSITIVE),
    }))
}
