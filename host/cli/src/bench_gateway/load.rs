//! The receiving side of `guildhall bench gateway`: one process (`guildhall
//! gateway-load`, started by the benchmark, one per 18,000 sessions because a process
//! may hold 20,000 open files) holding many real gateway sessions on one thread.
//!
//! Each session is a TCP connection from a 127.0.0.x source address of its own range (so
//! that sessions are not limited by one source address's ephemeral ports), an RFC 6455
//! handshake, IDENTIFY, and then frames read straight from its buffer (`frames.rs`): the
//! send time of each benchmark message is read as digits after its marker, so the cost of
//! a delivery here is a buffer scan, not a JSON parse. zlib-stream sessions inflate their
//! stream first (into one scratch buffer the thread shares).
//!
//! It talks to the benchmark over its standard streams, one JSON object per line: it
//! prints `{"ready":..}` once every session has its GUILD_CREATE (or failed), then
//! `{"progress":..}` every 200 ms; each `report` line it reads is answered with a
//! `{"report":..}` of the deliveries, bytes and latencies since the previous one. It ends
//! when its input closes.

use std::cell::{Cell, RefCell};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use flate2::{Decompress, FlushDecompress};
use guildhall_core::clock::Clock;
use guildhall_core::gateway::intents;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use guildhall_server::ws_codec::{opcode, put_client_frame};

use super::frames::{self, Scanner};

#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    /// The host's gateway (`HOST:PORT`).
    #[arg(long)]
    authority: SocketAddr,
    /// A file of tokens, one per line; session `i` identifies with line `i`.
    #[arg(long)]
    tokens: PathBuf,
    /// The first line of `tokens` this process uses, and how many sessions it opens.
    #[arg(long)]
    first: usize,
    #[arg(long)]
    count: usize,
    /// Source addresses are 127.0.0.{source_octet}, then the next every
    /// `SESSIONS_PER_SOURCE` sessions.
    #[arg(long, default_value_t = 2)]
    source_octet: u8,
    /// `compress=zlib-stream`.
    #[arg(long)]
    compress: bool,
    /// Handshakes and IDENTIFYs in progress at once.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
}

/// What the sessions ask for: guilds and their messages with content.
const SESSION_INTENTS: u64 = intents::GUILDS.0 | intents::GUILD_MESSAGES.0 | intents::MESSAGE_CONTENT.0;

/// Sessions per source address: below the ephemeral port range of one address (28,232
/// ports by default) with room for the other connections of the machine.
pub const SESSIONS_PER_SOURCE: usize = 20_000;

/// A session not ready this long after it started counts as failed.
const SETUP_TIMEOUT: Duration = Duration::from_secs(180);

/// A read buffer grows to hold a whole frame (GUILD_CREATE can be large); an empty one
/// bigger than this shrinks back, so that idle sessions hold little.
const READ_CHUNK: usize = 16 * 1024;

/// The lowest and highest latency the histograms hold (1 µs to 1 hour), 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

/// What this process counts: since it started (progress), and since the last report.
struct Stats {
    ready: Cell<usize>,
    failed: Cell<usize>,
    closed: Cell<usize>,
    deliveries: Cell<u64>,
    bytes: Cell<u64>,
    reads: Cell<u64>,
    /// The same counts when the last report went out.
    reported: Cell<(u64, u64, u64)>,
    latency_us: RefCell<Histogram<u64>>,
    first_error: RefCell<Option<String>>,
    /// Inflated bytes of zlib-stream sessions (one thread: one scratch buffer).
    scratch: RefCell<Vec<u8>>,
    scanner: Scanner,
}

impl Stats {
    fn fail(&self, error: String) {
        self.failed.set(self.failed.get() + 1);
        self.first_error.borrow_mut().get_or_insert(error);
    }
}

pub fn main(args: LoadArgs) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, run(args))
}

async fn run(args: LoadArgs) -> Result<(), String> {
    let text = std::fs::read_to_string(&args.tokens).map_err(|e| format!("{}: {e}", args.tokens.display()))?;
    let tokens: Vec<String> = text.lines().skip(args.first).take(args.count).map(str::to_owned).collect();
    if tokens.len() != args.count {
        return Err(format!("{} holds {} tokens from line {}", args.tokens.display(), tokens.len(), args.first));
    }
    let clock = crate::stats::system_clock();
    let stats = Rc::new(Stats {
        ready: Cell::new(0),
        failed: Cell::new(0),
        closed: Cell::new(0),
        deliveries: Cell::new(0),
        bytes: Cell::new(0),
        reads: Cell::new(0),
        reported: Cell::new((0, 0, 0)),
        latency_us: RefCell::new(latency_histogram()),
        first_error: RefCell::new(None),
        scratch: RefCell::new(Vec::new()),
        scanner: Scanner::default(),
    });
    let path = if args.compress { "/?v=10&encoding=json&compress=zlib-stream" } else { "/?v=10&encoding=json" };
    let setup = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    for (i, token) in tokens.into_iter().enumerate() {
        let source = Ipv4Addr::new(127, 0, 0, args.source_octet.saturating_add((i / SESSIONS_PER_SOURCE) as u8));
        let permit = setup.clone().acquire_owned().await.expect("never closed");
        let session = SessionSpec { source, authority: args.authority, path, token, compress: args.compress };
        tokio::task::spawn_local(run_session(session, permit, stats.clone(), clock.clone()));
    }
    let started = tokio::time::Instant::now();
    while stats.ready.get() + stats.failed.get() < args.count && started.elapsed() < SETUP_TIMEOUT {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let error = stats.first_error.borrow().clone();
    print_line(&json!({ "ready": stats.ready.get(), "failed": stats.failed.get(), "error": error }));

    let progress = {
        let stats = stats.clone();
        tokio::task::spawn_local(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                print_line(&json!({ "progress": {
                    "deliveries": stats.deliveries.get(),
                    "bytes": stats.bytes.get(),
                    "closed": stats.closed.get(),
                }}));
            }
        })
    };
    let mut commands = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = commands.next_line().await {
        if line.trim() == "report" {
            print_line(&json!({ "report": report(&stats) }));
        }
    }
    progress.abort();
    Ok(())
}

/// What was counted since the previous report; the counting starts again.
fn report(stats: &Stats) -> Value {
    let (deliveries, bytes, reads) = (stats.deliveries.get(), stats.bytes.get(), stats.reads.get());
    let (d0, b0, r0) = stats.reported.replace((deliveries, bytes, reads));
    let mut histogram = stats.latency_us.replace(latency_histogram());
    let recorded: Vec<[u64; 2]> =
        histogram.iter_recorded().map(|v| [v.value_iterated_to(), v.count_at_value()]).collect();
    histogram.reset();
    json!({
        "deliveries": deliveries - d0,
        "bytes": bytes - b0,
        "reads": reads - r0,
        "closed": stats.closed.get(),
        "latency_us": recorded,
        "cpu_s": crate::stats::cpu_seconds(std::process::id()),
    })
}

fn print_line(value: &Value) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

struct SessionSpec {
    source: Ipv4Addr,
    authority: SocketAddr,
    path: &'static str,
    token: String,
    compress: bool,
}

/// One session's connection, as the read loop sees it: the stream and its buffer, and
/// the rest apart, so that a frame is looked at where it lies in the buffer.
struct Session {
    stream: TcpStream,
    buf: Vec<u8>,
    inflate: Option<Decompress>,
    state: SessionState,
}

struct SessionState {
    token: String,
    seq: Option<u64>,
    heartbeat: Option<Duration>,
    /// Held until the session is ready: bounds the handshakes in progress.
    setup: Option<OwnedSemaphorePermit>,
    mask: u32,
    /// Frames to send after this read (IDENTIFY, pongs, heartbeats).
    out: Vec<u8>,
}

async fn run_session(spec: SessionSpec, permit: OwnedSemaphorePermit, stats: Rc<Stats>, clock: Arc<dyn Clock>) {
    let connected = tokio::time::timeout(SETUP_TIMEOUT, connect(&spec)).await;
    let (stream, buf) = match connected {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return stats.fail(e),
        Err(_) => return stats.fail("the handshake timed out".into()),
    };
    let mut session = Session {
        stream,
        buf,
        inflate: spec.compress.then(|| Decompress::new(true)),
        state: SessionState {
            token: spec.token,
            seq: None,
            heartbeat: None,
            setup: Some(permit),
            mask: 0x9E37_79B9 ^ u32::from(spec.source.octets()[3]),
            out: Vec::new(),
        },
    };
    let setup_deadline = tokio::time::Instant::now() + SETUP_TIMEOUT;
    let mut next_beat: Option<tokio::time::Instant> = None;
    // HELLO may have come with the handshake's answer: what was read is looked at first.
    let mut read_already = !session.buf.is_empty();
    loop {
        if session.buf.capacity() - session.buf.len() < 4096 {
            session.buf.reserve(READ_CHUNK);
        }
        let beat = async {
            match next_beat {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let read = tokio::select! {
            read = session.stream.read_buf(&mut session.buf), if !read_already => read,
            _ = std::future::ready(()), if read_already => {
                read_already = false;
                Ok(session.buf.len())
            }
            _ = beat => {
                let state = &mut session.state;
                let seq = state.seq.map_or("null".to_owned(), |s| s.to_string());
                state.send(opcode::TEXT, format!(r#"{{"op":1,"d":{seq}}}"#).as_bytes());
                next_beat = state.heartbeat.map(|every| tokio::time::Instant::now() + every);
                Ok(usize::MAX)
            }
            _ = tokio::time::sleep_until(setup_deadline), if session.state.setup.is_some() => {
                return stats.fail("no GUILD_CREATE within the setup time".into());
            }
        };
        match read {
            Ok(0) | Err(_) => break,
            Ok(usize::MAX) => {}
            Ok(n) => {
                stats.bytes.set(stats.bytes.get() + n as u64);
                stats.reads.set(stats.reads.get() + 1);
                let now_us = clock.unix_us();
                let had_heartbeat = session.state.heartbeat.is_some();
                match session.take_frames(&stats, now_us) {
                    Ok(true) => {}
                    Ok(false) => break, // closed by the server
                    Err(e) if session.state.setup.is_some() => return stats.fail(e),
                    Err(_) => break,
                }
                if !had_heartbeat {
                    // After HELLO: the first beat at a random point of the interval, as Discord asks.
                    let state = &session.state;
                    next_beat = state.heartbeat.map(|every| {
                        tokio::time::Instant::now() + every.mul_f64(f64::from(state.mask % 1000) / 1000.0)
                    });
                }
            }
        }
        if !session.state.out.is_empty() {
            let out = std::mem::take(&mut session.state.out);
            if session.stream.write_all(&out).await.is_err() {
                break;
            }
        }
    }
    if session.state.setup.is_some() {
        return stats.fail("the connection closed before GUILD_CREATE".into());
    }
    stats.closed.set(stats.closed.get() + 1);
}

/// TCP from the session's source address, then the WebSocket handshake; returns the
/// stream and what the server sent after its answer.
async fn connect(spec: &SessionSpec) -> Result<(TcpStream, Vec<u8>), String> {
    let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    socket.bind(SocketAddr::from((spec.source, 0))).map_err(|e| format!("bind {}: {e}", spec.source))?;
    let mut stream = socket.connect(spec.authority).await.map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        spec.path,
        spec.authority,
        guildhall_client::gateway::websocket_key()
    );
    stream.write_all(request.as_bytes()).await.map_err(|e| format!("handshake: {e}"))?;
    let mut buf = Vec::with_capacity(READ_CHUNK);
    loop {
        if stream.read_buf(&mut buf).await.map_err(|e| format!("handshake: {e}"))? == 0 {
            return Err("closed during the handshake".into());
        }
        if let Some(end) = memchr::memmem::find(&buf, b"\r\n\r\n") {
            if !buf.starts_with(b"HTTP/1.1 101") {
                let status = String::from_utf8_lossy(&buf[..buf.len().min(200)]).into_owned();
                return Err(format!("the upgrade was refused: {status}"));
            }
            buf.drain(..end + 4);
            return Ok((stream, buf));
        }
        if buf.len() > 16 * 1024 {
            return Err("an answer to the upgrade without an end".into());
        }
    }
}

impl Session {
    /// Handles every complete frame in the buffer; `false` once the server closed.
    fn take_frames(&mut self, stats: &Stats, now_us: u64) -> Result<bool, String> {
        let (mut at, mut open) = (0, true);
        while let Some(frame) = frames::next_frame(&self.buf[at..])? {
            let payload = &self.buf[at + frame.payload_at..at + frame.len()];
            at += frame.len();
            match frame.opcode {
                opcode::TEXT | opcode::BINARY => match &mut self.inflate {
                    Some(inflate) => {
                        let mut scratch = stats.scratch.borrow_mut();
                        inflate_into(inflate, payload, &mut scratch)?;
                        self.state.on_message(&scratch, stats, now_us)?;
                    }
                    None => self.state.on_message(payload, stats, now_us)?,
                },
                opcode::PING => self.state.send(opcode::PONG, payload),
                opcode::CLOSE if self.state.setup.is_some() => {
                    let code = payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
                    let reason = String::from_utf8_lossy(payload.get(2..).unwrap_or_default());
                    return Err(format!("closed by the host while setting up: {code:?} {reason}"));
                }
                opcode::CLOSE => open = false,
                _ => {}
            }
        }
        self.buf.drain(..at);
        if self.buf.is_empty() && self.buf.capacity() > 4 * READ_CHUNK {
            self.buf = Vec::with_capacity(READ_CHUNK);
        }
        Ok(open)
    }
}

impl SessionState {
    fn on_message(&mut self, message: &[u8], stats: &Stats, now_us: u64) -> Result<(), String> {
        if let Some(seq) = frames::trailing_seq(message) {
            self.seq = Some(seq);
        }
        if let Some(sent_us) = stats.scanner.send_time_us(message) {
            stats.deliveries.set(stats.deliveries.get() + 1);
            let _ = stats.latency_us.borrow_mut().record(now_us.saturating_sub(sent_us).max(1));
            return Ok(());
        }
        if self.setup.is_none() {
            return Ok(());
        }
        // Setting up (HELLO, READY, GUILD_CREATE): only here is JSON parsed.
        let value: Value = serde_json::from_slice(message).map_err(|e| format!("not JSON while setting up: {e}"))?;
        match (value["op"].as_u64(), value["t"].as_str()) {
            (Some(10), _) => {
                let every = value["d"]["heartbeat_interval"].as_u64().ok_or("HELLO without an interval")?;
                self.heartbeat = Some(Duration::from_millis(every));
                let identify = json!({ "op": 2, "d": {
                    "token": self.token,
                    "intents": SESSION_INTENTS,
                    "properties": { "os": "linux", "browser": "guildhall-bench", "device": "guildhall-bench" },
                }});
                self.send(opcode::TEXT, identify.to_string().as_bytes());
            }
            (Some(9), _) => return Err(format!("INVALID_SESSION: {value}")),
            (Some(0), Some("GUILD_CREATE")) => {
                self.setup = None;
                stats.ready.set(stats.ready.get() + 1);
            }
            _ => {}
        }
        Ok(())
    }

    fn send(&mut self, opcode: u8, payload: &[u8]) {
        // A fresh mask per frame (xorshift); it need not be secret here, only present.
        self.mask ^= self.mask << 13;
        self.mask ^= self.mask >> 17;
        self.mask ^= self.mask << 5;
        put_client_frame(&mut self.out, 0x80 | opcode, payload, self.mask.to_be_bytes());
    }
}

/// Inflates one zlib-stream frame (it ends with a sync flush) into `out`.
fn inflate_into(inflate: &mut Decompress, input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    out.clear();
    let start = inflate.total_in();
    loop {
        let consumed = (inflate.total_in() - start) as usize;
        if out.capacity() - out.len() < 4096 {
            out.reserve(out.capacity().max(4096));
        }
        let out_before = out.len();
        inflate.decompress_vec(&input[consumed..], out, FlushDecompress::Sync).map_err(|e| format!("inflate: {e}"))?;
        let consumed_now = (inflate.total_in() - start) as usize;
        // All of the frame taken and room left over: everything it holds is out.
        if consumed_now == input.len() && out.len() < out.capacity() {
            return Ok(());
        }
        if consumed_now == consumed && out.len() == out_before {
            return Err("inflate made no progress".into());
        }
    }
}
