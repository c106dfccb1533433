//! `guildhall bench compression`: what `compress=zlib-stream` costs and saves, on a real
//! `guildhall serve` child over real WebSockets. The same run does it twice, with the same
//! number of sessions and messages: plain JSON text frames, then zlib-stream binary frames
//! (each session inflating its stream to check every message). It reports bytes on the
//! wire per delivery, the server's CPU time per delivery (from /proc, so it includes
//! everything the server did for the message, not only compressing), and the time the
//! server spent inside compression (its `guildhall_zlib_*` counters).

use std::time::Instant;

use flate2::{Decompress, FlushDecompress};
use guildhall_client::gateway::{connect_gateway, next_frame, send_json, GatewaySocket};
use guildhall_client::{ApiClient, Method};
use serde_json::{json, Value};

use crate::serve_child::ServeChild;
use crate::stats::metric;

#[derive(clap::Args)]
pub struct CompressionBench {
    /// Gateway sessions receiving every message (one user; at most 500, the daily
    /// session-start limit covers both phases).
    #[arg(long, default_value_t = 200)]
    sessions: usize,
    /// Messages posted in each phase.
    #[arg(long, default_value_t = 300)]
    messages: usize,
}

const GUILDS_AND_MESSAGES: u64 = (1 << 0) | (1 << 9) | (1 << 15);

struct Phase {
    wire_bytes: u64,
    json_bytes: u64,
    deliveries: u64,
    server_cpu_s: f64,
    elapsed_s: f64,
    compress_ns: u64,
}

pub async fn run(bench: CompressionBench) -> Result<Value, String> {
    if !(1..=500).contains(&bench.sessions) {
        return Err("--sessions must be 1 to 500".into());
    }
    // 200 sessions of one user from one address: far past a client's limits.
    let server = ServeChild::start("compression", &[("GUILDHALL_RATE_LIMITS__ENABLED", "false")]).await?;
    let mut api = ApiClient::connect(&server.addr.to_string()).await.map_err(|e| e.to_string())?;
    let mut call = async |method: Method, path: &str, token: Option<&str>, body: Value| {
        let (status, value) = api.json(method, path, token, Some(&body)).await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{path}: {status} {value}"));
        }
        Ok::<Value, String>(value)
    };
    let creds = json!({ "username": "zlibbench", "password": "bench password" });
    let token = call(Method::POST, "/auth/register", None, creds).await?["token"].as_str().unwrap_or("").to_owned();
    let guild = call(Method::POST, "/guilds", Some(&token), json!({ "name": "compression" })).await?;
    let gid = guild["id"].as_str().ok_or("no guild id")?.to_owned();
    let channels = call(Method::GET, &format!("/guilds/{gid}/channels"), Some(&token), Value::Null).await?;
    let cid = channels[0]["id"].as_str().ok_or("no channel")?.to_owned();

    let mut phases = Vec::new();
    for zlib in [false, true] {
        phases.push(phase(&server, &token, &cid, zlib, bench.sessions, bench.messages).await?);
    }
    let (plain, zlib) = (&phases[0], &phases[1]);
    let per = |p: &Phase, v: f64| v / p.deliveries.max(1) as f64;
    Ok(json!({
        "scenario": "compression",
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "note": "load generator and server share the machine; CPU from /proc at 10 ms resolution",
        "sessions": bench.sessions,
        "messages": bench.messages,
        "deliveries_per_phase": plain.deliveries,
        "plain_bytes_per_delivery": per(plain, plain.wire_bytes as f64),
        "zlib_bytes_per_delivery": per(zlib, zlib.wire_bytes as f64),
        "zlib_json_bytes_per_delivery": per(zlib, zlib.json_bytes as f64),
        "bytes_ratio_plain_over_zlib": plain.wire_bytes as f64 / zlib.wire_bytes.max(1) as f64,
        "plain_server_cpu_us_per_delivery": per(plain, plain.server_cpu_s * 1e6),
        "zlib_server_cpu_us_per_delivery": per(zlib, zlib.server_cpu_s * 1e6),
        "cpu_ratio_zlib_over_plain": zlib.server_cpu_s / plain.server_cpu_s.max(1e-9),
        "zlib_compress_us_per_delivery": per(zlib, zlib.compress_ns as f64 / 1e3),
        "plain_elapsed_s": plain.elapsed_s,
        "zlib_elapsed_s": zlib.elapsed_s,
    }))
}

/// One phase: `sessions` sessions (zlib-stream or not) receive `messages` messages.
async fn phase(
    server: &ServeChild,
    token: &str,
    cid: &str,
    zlib: bool,
    sessions: usize,
    messages: usize,
) -> Result<Phase, String> {
    let query = if zlib { "/?v=10&encoding=json&compress=zlib-stream" } else { "/?v=10&encoding=json" };
    let mut readers = Vec::with_capacity(sessions);
    for _ in 0..sessions {
        let mut ws = connect_gateway(&server.addr.to_string(), query).await.map_err(|e| e.to_string())?;
        let mut reader = Reader { inflate: zlib.then(|| Decompress::new(true)), wire: 0, json: 0 };
        reader.next(&mut ws).await?; // HELLO
        let identify = json!({ "op": 2, "d": { "token": token, "intents": GUILDS_AND_MESSAGES, "properties": {} } });
        send_json(&mut ws, &identify).await.map_err(|e| e.to_string())?;
        while reader.next(&mut ws).await?["t"] != "GUILD_CREATE" {}
        readers.push((ws, reader));
    }
    let compress_before = metric(&server.addr.to_string(), "guildhall_zlib_compress_nanoseconds_total").await?;
    let cpu_before = server.cpu_seconds().ok_or("no /proc CPU time for the server")?;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(sessions);
    for (mut ws, mut reader) in readers {
        tasks.push(tokio::spawn(async move {
            let (mut seen, wire_before, json_before) = (0, reader.wire, reader.json);
            while seen < messages {
                if reader.next(&mut ws).await?["t"] == "MESSAGE_CREATE" {
                    seen += 1;
                }
            }
            Ok::<(u64, u64), String>((reader.wire - wire_before, reader.json - json_before))
        }));
    }
    let mut api = ApiClient::connect(&server.addr.to_string()).await.map_err(|e| e.to_string())?;
    for i in 0..messages {
        let body = json!({ "content": chatter(i) });
        let (status, value) = api
            .json(Method::POST, &format!("/channels/{cid}/messages"), Some(token), Some(&body))
            .await
            .map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("create answered {status}: {value}"));
        }
    }
    let (mut wire_bytes, mut json_bytes) = (0, 0);
    for task in tasks {
        let (wire, json) = task.await.map_err(|e| e.to_string())??;
        wire_bytes += wire;
        json_bytes += json;
    }
    let elapsed_s = started.elapsed().as_secs_f64();
    let server_cpu_s = server.cpu_seconds().ok_or("no /proc CPU time")? - cpu_before;
    let compress_ns =
        metric(&server.addr.to_string(), "guildhall_zlib_compress_nanoseconds_total").await? - compress_before;
    Ok(Phase { wire_bytes, json_bytes, deliveries: (sessions * messages) as u64, server_cpu_s, elapsed_s, compress_ns })
}

/// A chat line of 6 to 17 words drawn (deterministically) from a small vocabulary, so that
/// messages differ from each other as chat does rather than repeat one string.
pub(crate) fn chatter(i: usize) -> String {
    const WORDS: [&str; 32] = [
        "the", "raid", "starts", "at", "nine", "bring", "potions", "anyone", "seen", "my", "sword", "lol", "brb",
        "dinner", "patch", "notes", "are", "out", "nerfed", "again", "who", "wants", "to", "queue", "ranked",
        "tonight", "gg", "that", "was", "close", "thanks", "everyone",
    ];
    let mut state = (i as u64).wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut next = || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    let n = 6 + next() % 12;
    (0..n).map(|_| WORDS[next() % WORDS.len()]).collect::<Vec<_>>().join(" ")
}

/// A session's reading side: counts bytes on the wire and after inflating.
struct Reader {
    inflate: Option<Decompress>,
    wire: u64,
    json: u64,
}

impl Reader {
    async fn next(&mut self, ws: &mut GatewaySocket) -> Result<Value, String> {
        let (binary, bytes) = next_frame(ws).await.map_err(|e| e.to_string())?.ok_or("the server closed")?;
        self.wire += bytes.len() as u64;
        let text = match (&mut self.inflate, binary) {
            (Some(inflate), true) => {
                let mut out = Vec::with_capacity(bytes.len() * 4 + 64);
                let before = inflate.total_in();
                while ((inflate.total_in() - before) as usize) < bytes.len() {
                    let at = (inflate.total_in() - before) as usize;
                    out.reserve(out.capacity().max(1024));
                    inflate.decompress_vec(&bytes[at..], &mut out, FlushDecompress::Sync).map_err(|e| e.to_string())?;
                }
                out
            }
            (None, false) => bytes,
            (_, binary) => {
                return Err(format!("a {} frame on this connection", if binary { "binary" } else { "text" }))
            }
        };
        self.json += text.len() as u64;
        serde_json::from_slice(&text).map_err(|e| format!("not JSON: {e}"))
    }
}
