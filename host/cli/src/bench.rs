//! Benchmark scenarios: `guildhall bench fanout`, `rest`, `coalesce`, `plugins`, `cluster`,
//! `compression`, `gateway`, `storage-deadline` and `search` (the last five in modules of
//! their own).
//!
//! Each prints its numbers (as one JSON object with `--json`). Timings depend on the machine
//! and its load; every report includes the core count, and comparisons belong in one run.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use guildhall_client::{ApiClient, Method};

use crate::stats::{cores, percentiles_us, system_clock};
use guildhall_core::gateway::intents;
use guildhall_core::guild::{GuildState, MessageCommand, SessionId};
use guildhall_core::model::{Channel, Guild, Member, User};
use guildhall_runtime::Generator;
use guildhall_store_redb::EmbeddedStore;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify};

use guildhall_runtime::actors::guild_actor::{spawn_guild, GuildDeps, GuildMsg, Relays};
use guildhall_runtime::addresses::registry::SessionRegistry;
use guildhall_runtime::addresses::reply::Replies;
use guildhall_runtime::addresses::session::{SessionHandle, SessionMsg};
use guildhall_runtime::infrastructure::config::GuildConfig;
use guildhall_runtime::Metrics;

#[derive(clap::Subcommand)]
pub enum Scenario {
    /// In-process fan-out: one guild actor, N sessions (no sockets), M messages.
    Fanout {
        #[arg(long, default_value_t = 10_000)]
        sessions: usize,
        #[arg(long, default_value_t = 200)]
        messages: usize,
        /// Each session's outbound queue.
        #[arg(long, default_value_t = 1024)]
        queue: usize,
        #[arg(long)]
        json: bool,
    },
    /// A hot-channel burst: `concurrency` identical "latest 50 messages" reads of one
    /// channel at once, repeated `rounds` times, with coalescing and then without.
    Coalesce {
        /// `embedded` (a temporary store) or `scylla://HOST:PORT/KEYSPACE`.
        #[arg(long, default_value = "embedded")]
        storage: String,
        #[arg(long, default_value_t = 1000)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        rounds: usize,
        #[arg(long)]
        json: bool,
    },
    /// The automod plugin on the message path: per-call cost, instantiation, memory.
    Plugins {
        /// automod.wasm (default: the one cargo built next to this binary).
        #[arg(long)]
        component: Option<PathBuf>,
        /// Calls timed for the per-message cost.
        #[arg(long, default_value_t = 20_000)]
        calls: usize,
        /// Live instances kept at once for the memory measurement.
        #[arg(long, default_value_t = 10_000)]
        instances: usize,
        /// The plugin's configuration (JSON).
        #[arg(long, default_value = DEFAULT_AUTOMOD_CONFIG)]
        config: String,
        /// Measure automod in Rust, JavaScript and Python (automod, automod_js, automod_py
        /// next to this binary's target directory; deploy/dev/sdk-plugins builds the
        /// latter two) in one run, with their ratios to Rust. The interpreted languages
        /// keep at most 100 live instances for the memory measurement.
        #[arg(long)]
        languages: bool,
        #[arg(long)]
        json: bool,
    },
    /// Message search in process: indexing throughput (stream, indexer, tantivy, commit),
    /// append to searchable, searches cold and warm, bytes of index per message.
    Search {
        #[command(flatten)]
        bench: crate::bench_search::SearchBench,
        #[arg(long)]
        json: bool,
    },
    /// Search in a cluster (a node, two indexing workers): creates, searches through the
    /// API, and the take-over of the guild's cell after a SIGKILL of its worker.
    SearchTakeover {
        #[command(flatten)]
        bench: crate::bench_search_cluster::TakeoverBench,
        #[arg(long)]
        json: bool,
    },
    /// Real `guildhall serve --cluster` nodes (one, then `nodes`) on a running nats-server
    /// and CQL node: creates through every node, NATS messages per create, a hot-channel
    /// read burst over the nodes, fan-out to WebSocket sessions on every node, and
    /// fail-over after SIGKILL.
    Cluster {
        #[command(flatten)]
        bench: crate::bench_cluster::ClusterBench,
        #[arg(long)]
        json: bool,
    },
    /// Fan-out over real WebSockets: N sessions in one guild (load processes of their own),
    /// messages posted at a fixed rate; deliveries/s, latency percentiles, the senders' POST
    /// latency, host CPU, RSS per session and writes per delivery; `--sweep` finds the
    /// highest rate within a p99 bound.
    Gateway {
        #[command(flatten)]
        bench: crate::bench_gateway::GatewayBench,
        #[arg(long)]
        json: bool,
    },
    /// `compress=zlib-stream` against plain JSON on a real `guildhall serve` child: bytes
    /// on the wire and server CPU per delivery, in the same run.
    Compression {
        #[command(flatten)]
        bench: crate::bench_compression::CompressionBench,
        #[arg(long)]
        json: bool,
    },
    /// REST against a real `guildhall serve` child process on the embedded store:
    /// message-create throughput, then history read latency; with rate limits off and
    /// on (never reached), to show what their bookkeeping costs.
    /// What the deadline on every storage call costs (token lookups, bare and bounded).
    StorageDeadline {
        #[command(flatten)]
        bench: crate::bench_storage::DeadlineBench,
        #[arg(long)]
        json: bool,
    },
    Rest {
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        #[arg(long, default_value_t = 5_000)]
        messages: usize,
        #[arg(long, default_value_t = 5_000)]
        reads: usize,
        /// Runs of each configuration, alternating (rate limits off, then on), each on a
        /// fresh server.
        #[arg(long, default_value_t = 2)]
        rounds: usize,
        #[arg(long)]
        json: bool,
    },
}

use crate::serve_child::temp_dir;

pub async fn run(scenario: Scenario) -> Result<(), String> {
    let (report, as_json) = match scenario {
        Scenario::Fanout { sessions, messages, queue, json } => (fanout(sessions, messages, queue).await?, json),
        Scenario::Rest { concurrency, messages, reads, rounds, json } => {
            (rest(concurrency, messages, reads, rounds).await?, json)
        }
        Scenario::Coalesce { storage, concurrency, rounds, json } => {
            (coalesce(&storage, concurrency, rounds).await?, json)
        }
        Scenario::Cluster { bench, json } => (crate::bench_cluster::run(bench).await?, json),
        Scenario::Search { bench, json } => (crate::bench_search::run(bench).await?, json),
        Scenario::SearchTakeover { bench, json } => (crate::bench_search_cluster::run(bench).await?, json),
        Scenario::Gateway { bench, json } => (crate::bench_gateway::run(bench).await?, json),
        Scenario::Compression { bench, json } => (crate::bench_compression::run(bench).await?, json),
        Scenario::StorageDeadline { bench, json } => (crate::bench_storage::run(bench).await?, json),
        Scenario::Plugins { component, calls, instances, config, languages: false, json } => {
            (plugins(component, "automod", calls, instances, &config).await?, json)
        }
        Scenario::Plugins { calls, instances, config, languages: true, json, .. } => {
            (plugin_languages(calls, instances, &config).await?, json)
        }
    };
    if as_json {
        println!("{report}");
    } else {
        println!("{}", serde_json::to_string_pretty(&report).expect("json"));
    }
    Ok(())
}

async fn fanout(sessions: usize, messages: usize, queue: usize) -> Result<Value, String> {
    let dir = temp_dir("fanout");
    let store = Arc::new(EmbeddedStore::open(&dir).map_err(|e| e.to_string())?);
    let clock = system_clock();
    let ids = Generator::new(0, 1, clock.clone());
    let next = || ids.next_id().expect("ids");
    let users: Vec<User> = (0..sessions).map(|i| User::new(next(), format!("u{i}"), false)).collect();
    let guild = Guild::new(next(), "bench", users[0].id);
    let channel = Channel::text(next(), guild.id, "general");
    let members = users.iter().map(|u| Member::new(u.clone(), "2026-01-01T00:00:00.000000+00:00".into())).collect();
    let state = GuildState::new(guild, vec![channel.clone()], members);
    let metrics = Arc::new(Metrics::default());
    let ids = Arc::new(Generator::new(0, 2, clock.clone()));
    let registry = Arc::new(SessionRegistry::default());
    let deps = GuildDeps {
        clock: clock.clone(),
        data: guildhall_data::DataService::new(store.clone(), 1, true, clock.clone()),
        metrics: metrics.clone(),
        ids: ids.clone(),
        config: GuildConfig::default(),
        plugins: None,
        plugin_limits: Default::default(),
        audit: guildhall_runtime::actors::audit::AuditLog::spawn(store.clone(), ids, metrics.clone()),
        replies: Replies::new(0, clock),
        sessions: registry.clone(),
        locator: None,
        ownership: None,
        plugin_bus: None,
        bot_placement: None,
        events: None,
        relays: Relays::spawn(2, 4096, metrics.clone()),
    };
    let (handle, _task) = spawn_guild(state, deps, None, None);

    // Each session is a task that does what a session actor does per dispatch: take it
    // from the queue and splice in its sequence number (no socket).
    let done = Arc::new(AtomicU64::new(0));
    let all_done = Arc::new(Notify::new());
    let ready = Arc::new(AtomicU64::new(0));
    let all_ready = Arc::new(Notify::new());
    let connect_started = Instant::now();
    let bytes_out = Arc::new(AtomicU64::new(0));
    for (i, user) in users.iter().enumerate() {
        let (tx, mut rx) = mpsc::channel(queue);
        let session = SessionHandle {
            id: SessionId(i as u64 + 1),
            user: user.id,
            intents: intents::GUILDS | intents::GUILD_MESSAGES,
            tx,
            shared: Arc::default(),
        };
        let (done, all_done, bytes_out) = (done.clone(), all_done.clone(), bytes_out.clone());
        let (ready, all_ready) = (ready.clone(), all_ready.clone());
        let expected = messages + 1; // GUILD_CREATE, then the messages
        tokio::spawn(async move {
            let (mut seq, mut bytes) = (0u64, 0u64);
            while let Some(SessionMsg::Dispatch(prefix)) = rx.recv().await {
                seq += 1;
                bytes += prefix.with_seq(seq).len() as u64;
                if seq == 1 && ready.fetch_add(1, Relaxed) + 1 == sessions as u64 {
                    all_ready.notify_one(); // every session has its GUILD_CREATE
                }
                if seq as usize == expected {
                    break;
                }
            }
            bytes_out.fetch_add(bytes, Relaxed);
            if done.fetch_add(1, Relaxed) + 1 == sessions as u64 {
                all_done.notify_one();
            }
        });
        let address = session.address();
        registry.insert(format!("bench-{i}"), session);
        handle.send(GuildMsg::Connect { session: address, status: Default::default() }).await;
    }
    tokio::time::timeout(Duration::from_secs(300), all_ready.notified())
        .await
        .map_err(|_| "sessions did not all connect within 300 s".to_string())?;
    let connect_ms = connect_started.elapsed().as_secs_f64() * 1e3;
    let deliveries_before = metrics.deliveries.load(Relaxed);

    let started = Instant::now();
    let mut calls = Vec::with_capacity(messages);
    for i in 0..messages {
        let h = handle.clone();
        let command = MessageCommand::Create {
            author: users[i % users.len()].id,
            channel_id: channel.id,
            id: next(),
            content: format!("message {i}"),
            nonce: None,
            enforce_nonce: false,
        };
        calls.push(tokio::spawn(async move {
            let t = Instant::now();
            h.call(command, Duration::from_secs(60)).await.map(|_| t.elapsed())
        }));
    }
    let waited = tokio::time::timeout(Duration::from_secs(300), all_done.notified()).await;
    let elapsed = started.elapsed();
    let mut acks = Vec::with_capacity(messages);
    for c in calls {
        acks.push(c.await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?);
    }
    let _ = std::fs::remove_dir_all(&dir);
    if waited.is_err() {
        return Err(format!("sessions did not all receive {messages} messages within 300 s"));
    }
    let deliveries = metrics.deliveries.load(Relaxed) - deliveries_before;
    let (ack_p50, ack_p99, ack_max) = percentiles_us(acks);
    Ok(json!({
        "scenario": "fanout",
        "cores": cores(),
        "sessions": sessions,
        "messages": messages,
        "deliveries": deliveries,
        "drops": metrics.slow_consumer_drops.load(Relaxed),
        "elapsed_ms": elapsed.as_secs_f64() * 1e3,
        "deliveries_per_sec": deliveries as f64 / elapsed.as_secs_f64(),
        "bytes_per_delivery": bytes_out.load(Relaxed) as f64 / (sessions * (messages + 1)) as f64,
        "ack_p50_us": ack_p50,
        "ack_p99_us": ack_p99,
        "ack_max_us": ack_max,
        "connect_all_ms": connect_ms,
    }))
}

/// A keep-alive connection to the server under test, answering `(status, JSON)`.
struct Client(ApiClient);

impl Client {
    async fn connect(addr: std::net::SocketAddr) -> Result<Client, String> {
        ApiClient::connect(&addr.to_string()).await.map(Client).map_err(|e| e.to_string())
    }

    async fn call(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        let method = Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let (status, value) = self.0.json(method, path, token, body.as_ref()).await.map_err(|e| e.to_string())?;
        Ok((status.as_u16(), value))
    }
}

/// Rate limits on, with every limit far above what one run sends: all of the bookkeeping
/// (the caller's windows, the headers) and no refusal.
const LIMITS_NEVER_REACHED: &[(&str, &str)] = &[
    ("GUILDHALL_RATE_LIMITS__ENABLED", "true"),
    ("GUILDHALL_RATE_LIMITS__GLOBAL", "1000000000/1s"),
    ("GUILDHALL_RATE_LIMITS__PER_IP", "1000000000/1s"),
    ("GUILDHALL_RATE_LIMITS__MESSAGE_CREATE", "1000000000/1s"),
    ("GUILDHALL_RATE_LIMITS__MESSAGE_READS", "1000000000/1s"),
];

/// Message creates, then history reads, over keep-alive connections: `rounds` runs with
/// rate limits off and as many with them on (never reached), alternating, so the cost of
/// the rate-limit bookkeeping shows as the ratio of the two.
async fn rest(concurrency: usize, messages: usize, reads: usize, rounds: usize) -> Result<Value, String> {
    let mut runs = Vec::new();
    let (mut sums_off, mut sums_on) = ([0.0; 2], [0.0; 2]);
    for round in 0..rounds.max(1) {
        for limits in [false, true] {
            let env = if limits { LIMITS_NEVER_REACHED } else { &[("GUILDHALL_RATE_LIMITS__ENABLED", "false")][..] };
            let mut run = rest_run(concurrency, messages, reads, env).await?;
            let sums = if limits { &mut sums_on } else { &mut sums_off };
            sums[0] += run["creates_per_sec"].as_f64().unwrap_or(0.0);
            sums[1] += run["reads_per_sec"].as_f64().unwrap_or(0.0);
            run["round"] = json!(round);
            run["rate_limits"] = json!(limits);
            runs.push(run);
        }
    }
    Ok(json!({
        "scenario": "rest",
        "cores": cores(),
        "note": "load generator and server share the machine; creates and reads per second summed over the rounds",
        "limits_bookkeeping_ns_per_request": limits_bookkeeping_ns(),
        "concurrency": concurrency,
        "creates_per_sec_with_limits_over_without": sums_on[0] / sums_off[0],
        "reads_per_sec_with_limits_over_without": sums_on[1] / sums_off[1],
        "runs": runs,
    }))
}

/// The rate-limit bookkeeping of one REST request alone, in process (no sockets, no
/// noise from the rest of the request): 1,000,000 requests of 10,000 users over 100
/// channels each, through the global limit and a route bucket, as the server counts them.
fn limits_bookkeeping_ns() -> f64 {
    use guildhall_server::limits::{Bucket, IpKey, Limits, Subject};
    const REQUESTS: u64 = 1_000_000;
    let mut config = guildhall_server::config::RateLimitsConfig::default();
    config.global = "1000000000/1s".parse().expect("rate");
    config.message_create = config.global;
    let limits = Limits::new(config, system_clock());
    let ip = IpKey::from(std::net::IpAddr::from([127, 0, 0, 1]));
    let started = Instant::now();
    for n in 0..REQUESTS {
        let user = Subject::User(guildhall_core::Snowflake(n % 10_000));
        let standing = limits.rest(user, ip, Some((Bucket::MessageCreate, n % 100)));
        assert!(matches!(standing, Ok(Some(_))), "never limited here");
    }
    started.elapsed().as_nanos() as f64 / REQUESTS as f64
}

async fn rest_run(concurrency: usize, messages: usize, reads: usize, env: &[(&str, &str)]) -> Result<Value, String> {
    let server = crate::serve_child::ServeChild::start("rest", env).await?;
    let addr = server.addr;

    let mut setup = Client::connect(addr).await?;
    let (_, reg) = setup
        .call("POST", "/auth/register", None, Some(json!({ "username": "bench", "password": "bench password" })))
        .await?;
    let token = reg["token"].as_str().ok_or("register failed")?.to_owned();
    let (_, guild) = setup.call("POST", "/guilds", Some(&token), Some(json!({ "name": "bench" }))).await?;
    let gid = guild["id"].as_str().ok_or("guild create failed")?.to_owned();
    let (_, channels) = setup.call("GET", &format!("/guilds/{gid}/channels"), Some(&token), None).await?;
    let cid = channels[0]["id"].as_str().ok_or("no channel")?.to_owned();

    // Phase 1: message creates from `concurrency` keep-alive connections.
    let counter = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (token, cid, counter) = (token.clone(), cid.clone(), counter.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect(addr).await?;
            let (mut lat, mut ids) = (Vec::new(), Vec::new());
            while (counter.fetch_add(1, Relaxed) as usize) < messages {
                let t = Instant::now();
                let (status, body) = client
                    .call(
                        "POST",
                        &format!("/channels/{cid}/messages"),
                        Some(&token),
                        Some(json!({ "content": "benchmark message with a typical length of about sixty chars" })),
                    )
                    .await?;
                if status != 200 {
                    return Err(format!("create answered {status}: {body}"));
                }
                lat.push(t.elapsed());
                ids.push(body["id"].as_str().unwrap_or_default().to_owned());
            }
            Ok::<_, String>((lat, ids))
        }));
    }
    let (mut create_lat, mut ids) = (Vec::new(), Vec::new());
    for t in tasks {
        let (lat, i) = t.await.map_err(|e| e.to_string())??;
        create_lat.extend(lat);
        ids.extend(i);
    }
    let create_secs = started.elapsed().as_secs_f64();
    let (c50, c99, cmax) = percentiles_us(create_lat);

    // Phase 2: history reads (latest 50, or 50 before a random message), same concurrency.
    let ids = Arc::new(ids);
    let counter = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (token, cid, counter, ids) = (token.clone(), cid.clone(), counter.clone(), ids.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect(addr).await?;
            let mut lat = Vec::new();
            loop {
                let n = counter.fetch_add(1, Relaxed) as usize;
                if n >= reads {
                    break;
                }
                let path = if n.is_multiple_of(2) {
                    format!("/channels/{cid}/messages?limit=50")
                } else {
                    format!("/channels/{cid}/messages?limit=50&before={}", ids[(n * 7919) % ids.len()])
                };
                let t = Instant::now();
                let (status, body) = client.call("GET", &path, Some(&token), None).await?;
                if status != 200 {
                    return Err(format!("history answered {status}: {body}"));
                }
                lat.push(t.elapsed());
            }
            Ok::<_, String>(lat)
        }));
    }
    let mut read_lat = Vec::new();
    for t in tasks {
        read_lat.extend(t.await.map_err(|e| e.to_string())??);
    }
    let read_secs = started.elapsed().as_secs_f64();
    let (r50, r99, rmax) = percentiles_us(read_lat);
    Ok(json!({
        "creates": messages,
        "creates_per_sec": messages as f64 / create_secs,
        "create_p50_us": c50,
        "create_p99_us": c99,
        "create_max_us": cmax,
        "reads": reads,
        "reads_per_sec": reads as f64 / read_secs,
        "read_p50_us": r50,
        "read_p99_us": r99,
        "read_max_us": rmax,
    }))
}

/// Burst of identical history reads of one hot channel, with and without coalescing.
async fn coalesce(storage: &str, concurrency: usize, rounds: usize) -> Result<Value, String> {
    let dir = temp_dir("coalesce");
    let config =
        guildhall_server::config::Config { storage: storage.to_owned(), data_dir: dir.clone(), ..Default::default() };
    let store = guildhall_server::app::open_storage(&config).await?.store;
    let clock = system_clock();
    let ids = Generator::new(0, 3, clock.clone());
    let next = || ids.next_id().expect("ids");
    let channel = Channel::text(next(), next(), "announcements");
    let author = User::new(next(), "announcer", false);
    let writes = (0..200)
        .map(|i| {
            let m = guildhall_core::model::Message::new(
                next(),
                &channel,
                author.clone(),
                format!("announcement {i}"),
                None,
            );
            guildhall_core::guild::GuildWrite::PutMessage(m)
        })
        .collect();
    for r in store.apply_batch(writes).await {
        r.map_err(|e| format!("seeding messages: {e}"))?;
    }

    let mut runs = serde_json::Map::new();
    for coalescing in [false, true] {
        let data = guildhall_data::DataService::new(store.clone(), cores(), coalescing, clock.clone());
        burst(&data, &channel, concurrency).await?; // warm-up (caches, prepared paths)
        let requests_before = data.metrics.history.requests.load(Relaxed);
        let queries_before = data.metrics.history.db_queries.load(Relaxed);
        let mut latencies = Vec::with_capacity(concurrency * rounds);
        let started = Instant::now();
        for _ in 0..rounds {
            latencies.extend(burst(&data, &channel, concurrency).await?);
        }
        let secs = started.elapsed().as_secs_f64();
        let requests = data.metrics.history.requests.load(Relaxed) - requests_before;
        let queries = data.metrics.history.db_queries.load(Relaxed) - queries_before;
        let (p50, p99, max) = percentiles_us(latencies);
        let tag = if coalescing { "on" } else { "off" };
        runs.insert(format!("requests_{tag}"), json!(requests));
        runs.insert(format!("db_queries_{tag}"), json!(queries));
        runs.insert(format!("p50_ms_{tag}"), json!(p50 / 1e3));
        runs.insert(format!("p99_ms_{tag}"), json!(p99 / 1e3));
        runs.insert(format!("max_ms_{tag}"), json!(max / 1e3));
        runs.insert(format!("reads_per_sec_{tag}"), json!(requests as f64 / secs));
    }
    let _ = std::fs::remove_dir_all(&dir);
    let requests = runs["requests_on"].as_u64().unwrap_or(0);
    let db_queries = runs["db_queries_on"].as_u64().unwrap_or(0).max(1);
    let mut report = json!({
        "scenario": "coalesce",
        "storage": if storage.starts_with("scylla://") { "cql" } else { "embedded" },
        "cores": cores(),
        "concurrency": concurrency,
        "rounds": rounds,
        "requests": requests,
        "db_queries": db_queries,
        "ratio": requests as f64 / db_queries as f64,
    });
    report.as_object_mut().expect("object").extend(runs);
    Ok(report)
}

/// `concurrency` identical reads started together; their latencies.
async fn burst(
    data: &Arc<guildhall_data::DataService>,
    channel: &Channel,
    concurrency: usize,
) -> Result<Vec<Duration>, String> {
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (data, channel) = (data.clone(), channel.clone());
            tokio::spawn(async move {
                let t = Instant::now();
                let answer = data.history(&channel, guildhall_store::HistoryQuery::Latest, 50).await;
                answer.map(|m| (m.len(), t.elapsed()))
            })
        })
        .collect();
    let mut out = Vec::with_capacity(concurrency);
    for t in tasks {
        let (n, latency) = t.await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
        if n != 50 {
            return Err(format!("a read returned {n} messages, expected 50"));
        }
        out.push(latency);
    }
    Ok(out)
}

/// Bytes the allocator has handed out and not got back (glibc: every arena, and the
/// chunks it mmapped); `None` elsewhere. Unlike RSS, memory freed earlier and reused does
/// not hide new allocations.
fn heap_in_use_bytes() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads the allocator's statistics.
        let info = unsafe { libc::mallinfo2() };
        Some((info.uordblks + info.hblkhd) as u64)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}

/// Resident set size of this process, in KiB (Linux: `VmRSS`, which the kernel gives in
/// KiB whatever the page size).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss = status.lines().find_map(|l| l.strip_prefix("VmRSS:"));
    rss.and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(0)
}

/// A typical automod setup: three banned words, one banned pattern, a mention limit.
const DEFAULT_AUTOMOD_CONFIG: &str =
    r#"{"banned_words": ["heck", "darn", "frick"], "banned_patterns": ["(?i)free\\s+nitro"], "max_mentions": 5}"#;

/// 200 times: a new moderator instance, its init and its first call.
async fn recreate_times(
    engine: &guildhall_plugins::PluginEngine,
    plugin: &guildhall_plugins::LoadedPlugin,
    view: &guildhall_plugins::GuildView,
    config: &str,
    candidate: &guildhall_plugins::Candidate,
    deadline: Duration,
) -> Result<Vec<Duration>, String> {
    let mut times = Vec::with_capacity(200);
    for _ in 0..200 {
        let t = Instant::now();
        let mut fresh =
            guildhall_plugins::ModeratorInstance::new(engine, plugin, "bench", view.clone(), config, deadline * 10)
                .await
                .map_err(|e| e.to_string())?;
        fresh.moderate(candidate, deadline).await.map_err(|e| e.to_string())?;
        times.push(t.elapsed());
    }
    Ok(times)
}

/// `plugins` for automod's twins in each language, and what each costs relative to Rust.
async fn plugin_languages(calls: usize, instances: usize, config: &str) -> Result<Value, String> {
    const INTERPRETED_INSTANCES: usize = 100;
    let mut runs = serde_json::Map::new();
    for (language, name, live) in [
        ("rust", "automod", instances),
        ("javascript", "automod_js", instances.min(INTERPRETED_INSTANCES)),
        ("python", "automod_py", instances.min(INTERPRETED_INSTANCES)),
    ] {
        runs.insert(language.into(), plugins(None, name, calls, live, config).await?);
    }
    let ratio = |language: &str, key: &str| {
        let (theirs, rust) = (runs[language][key].as_f64(), runs["rust"][key].as_f64());
        match (theirs, rust) {
            (Some(t), Some(r)) if r > 0.0 => json!((t / r * 10.0).round() / 10.0),
            _ => Value::Null,
        }
    };
    let keys = [
        "component_bytes",
        "compile_ms",
        "p50_us",
        "p99_us",
        "instantiate_us",
        "instantiate_cold_slot_us",
        "kib_per_instance",
        "budget_kib_per_instance",
    ];
    let mut vs_rust = serde_json::Map::new();
    for language in ["javascript", "python"] {
        let ratios: serde_json::Map<String, Value> = keys.iter().map(|k| (k.to_string(), ratio(language, k))).collect();
        vs_rust.insert(language.into(), Value::Object(ratios));
    }
    Ok(json!({ "scenario": "plugins-languages", "cores": cores(), "runs": runs, "vs_rust": vs_rust }))
}

async fn plugins(
    component: Option<PathBuf>,
    default_name: &str,
    calls: usize,
    instances: usize,
    config: &str,
) -> Result<Value, String> {
    use guildhall_plugins::{
        Candidate, Channel as PluginChannel, EngineConfig, GuildView, ModeratorInstance, PluginEngine,
        User as PluginUser,
    };
    let bytes = crate::components::read_component(component, default_name)?;
    let cache_dir = temp_dir("plugin-cache");
    // No memory budget: this measures what instances take (the budget is tested elsewhere).
    let engine_config = EngineConfig {
        cache_dir: cache_dir.clone(),
        pool_instances: instances as u32 + 16,
        max_total_memory_bytes: 1 << 50,
        max_guild_memory_bytes: 1 << 50,
        max_guild_instances: instances + 16,
        ..EngineConfig::default()
    };
    let engine = PluginEngine::new(engine_config).map_err(|e| e.to_string())?;
    let compile_started = Instant::now();
    let plugin = engine.load(&bytes).map_err(|e| e.to_string())?;
    let compile_ms = compile_started.elapsed().as_secs_f64() * 1e3;
    let view = GuildView {
        guild_id: 1,
        channels: Arc::new(vec![PluginChannel { id: 100, name: "general".into() }]),
        members: Arc::new(|_| Box::pin(async { None })),
        clock: system_clock(),
    };
    let deadline = Duration::from_millis(5);
    let candidate = Candidate {
        channel_id: 100,
        author: PluginUser { id: 7, username: "someone".into(), bot: false },
        content: "hello everyone, the meeting moved to thursday at five, see you all there!".into(),
        is_edit: false,
        mentions: vec![],
    };
    let new_instance = || ModeratorInstance::new(&engine, &plugin, "automod", view.clone(), config, deadline * 10);

    // Per-message cost of the hook: one moderate call on a live instance.
    // A call that misses the deadline (as the host would count it: a fault) is counted,
    // and the instance made again, as the host does.
    let mut m = new_instance().await.map_err(|e| e.to_string())?;
    let mut deadline_misses = 0usize;
    let mut per_call = Vec::with_capacity(calls);
    for i in 0..1000 + calls {
        let t = Instant::now();
        match m.moderate(&candidate, deadline).await {
            Ok(verdict) if i >= 1000 => {
                per_call.push(t.elapsed());
                std::hint::black_box(verdict);
            }
            Ok(_) => {}
            Err(_) => {
                deadline_misses += 1;
                m = new_instance().await.map_err(|e| e.to_string())?;
            }
        }
    }
    drop(m);
    // The same measurement around nothing: what timing itself costs (the no-plugin path).
    let mut baseline = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        std::hint::black_box(&candidate);
        baseline.push(t.elapsed());
    }

    // Instantiation plus init plus the first call, into a slot this component used before
    // (an idle instance dropped and recreated on demand: the common case); then the same
    // on an engine that gives a dropped instance's pages back (madvise) instead of
    // resetting them in place, to show what the reset saves.
    let inst = recreate_times(&engine, &plugin, &view, config, &candidate, deadline).await?;
    let given_back = {
        let cache_dir = cache_dir.clone();
        let madvise =
            EngineConfig { cache_dir, pool_instances: 32, reset_pages_in_place: false, ..EngineConfig::default() };
        let engine = PluginEngine::new(madvise).map_err(|e| e.to_string())?;
        let plugin = engine.load(&bytes).map_err(|e| e.to_string())?;
        recreate_times(&engine, &plugin, &view, config, &candidate, deadline).await?
    };

    // Memory per live instance: RSS growth over `instances` live, called-once instances.
    // Each of these lands in a slot never used before, so their creation times are the cold
    // case (every page the instance touches is a fresh page fault).
    let before = rss_kib();
    let mut live = Vec::with_capacity(instances);
    let mut cold = Vec::with_capacity(instances);
    let mut stop_reason = String::new();
    for _ in 0..instances {
        let t = Instant::now();
        match new_instance().await {
            Ok(mut i) => {
                i.moderate(&candidate, deadline).await.map_err(|e| e.to_string())?;
                cold.push(t.elapsed());
                live.push(i);
            }
            Err(e) => {
                stop_reason = e.to_string();
                break;
            }
        }
    }
    let reached = live.len();
    let after = rss_kib();
    let kib_per_instance = after.saturating_sub(before) as f64 / reached.max(1) as f64;
    // What the memory budget counts per instance: the linear memory its memories declare.
    let budget_kib_per_instance = engine.memory_in_use(None) as f64 / 1024.0 / reached.max(1) as f64;
    drop(live);

    // Installed but idle: what a guild holds per installed moderator while no instance
    // exists (its record with the configuration, and a handle on the shared compiled
    // component), 100,000 times.
    let idle_installs = 100_000;
    let record = guildhall_core::model::PluginRecord {
        id: guildhall_core::Snowflake(1),
        guild_id: guildhall_core::Snowflake(1),
        name: "automod".into(),
        kind: guildhall_core::model::PluginKind::Moderator,
        enabled: true,
        config: serde_json::from_str(config).map_err(|e| e.to_string())?,
        component_sha256: plugin.hash.clone(),
        created_at: "2026-11-29T00:00:00.000000+00:00".into(),
    };
    let per_install = |with_component: bool| {
        let before = heap_in_use_bytes();
        let idle: Vec<_> = (0..idle_installs)
            .map(|i| {
                let mut r = record.clone();
                r.guild_id = guildhall_core::Snowflake(i as u64);
                (r, with_component.then(|| plugin.clone()))
            })
            .collect();
        let bytes = match (before, heap_in_use_bytes()) {
            (Some(before), Some(after)) => json!(after.saturating_sub(before) as f64 / idle_installs as f64),
            _ => Value::Null,
        };
        drop(idle);
        bytes
    };
    let bytes_per_idle_install = per_install(true);
    // The same without the component handle: the configuration record alone.
    let bytes_per_plugin_record = per_install(false);
    let _ = std::fs::remove_dir_all(&cache_dir);

    let (p50, p99, max) = percentiles_us(per_call);
    let (b50, b99, _) = percentiles_us(baseline);
    let (i50, i99, _) = percentiles_us(inst);
    let (g50, g99, _) = percentiles_us(given_back);
    let (c50, c99, _) = percentiles_us(cold);
    let mut report = json!({
        "scenario": "plugins",
        "cores": cores(),
        "component_bytes": bytes.len(),
        "compile_ms": compile_ms,
        "p50_us": p50 - b50,
        "p99_us": p99 - b99,
        "max_us": max,
        "baseline_p50_us": b50,
        "instantiate_us": i50,
        "instantiate_p99_us": i99,
        "instantiate_pages_given_back_us": g50,
        "instantiate_pages_given_back_p99_us": g99,
        "instantiate_cold_slot_us": c50,
        "instantiate_cold_slot_p99_us": c99,
        "deadline_misses": deadline_misses,
        "pagemap_scan": guildhall_plugins::pagemap_scan_available(),
        "live_instances": reached,
        "kib_per_instance": kib_per_instance,
        "budget_kib_per_instance": budget_kib_per_instance,
        "idle_installs": idle_installs,
        "bytes_per_idle_install": bytes_per_idle_install,
        "bytes_per_plugin_record": bytes_per_plugin_record,
        "instances_per_gib": if kib_per_instance > 0.0 { (1024.0 * 1024.0 / kib_per_instance).floor() } else { 0.0 },
    });
    if !stop_reason.is_empty() {
        report["stopped_early"] = json!(stop_reason);
    }
    Ok(report)
}
