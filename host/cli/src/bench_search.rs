//! `guildhall bench search`: the search path in process, on this machine's disk: the
//! embedded stream, the indexing worker (the default indexer, tantivy, commits, then the
//! acknowledgement), and searches of the cells it built.
//!
//! 1. Indexing throughput end to end: the stream is seeded with `--messages` entries (as
//!    relays append them, 512 a call), then the worker takes them all: entries per second
//!    from its start until the last is committed and acknowledged.
//! 2. Acknowledgement to searchable: one message at a time appended (a relay's append is
//!    the acknowledgement's consequence), then searched for until found: p50 / p99.
//! 3. Searches over everything indexed, in the cells reopened (cold: the first pass after
//!    opening; warm: the same queries again): words, a phrase, a CJK substring, a filter
//!    with no text; newest first, 25 a page, within all of a guild's channels.
//! 4. Bytes of index per message.
//! 5. Backfill: a guild whose history is in storage and not in the stream (an existing
//!    deployment turning search on), indexed from storage newest first: the time until its
//!    searches are answered (its last 7 days indexed; 202 before) and until every message
//!    is, and messages backfilled per second.
//!
//! Not through the REST API (which adds reading the 25 hits back from storage and
//! checking the caller's channels): that is the next step of this benchmark.

use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use guildhall_core::clock::Clock;
use guildhall_core::guild::GuildWrite;
use guildhall_core::model::{Channel, Guild, Member, Message, User};
use guildhall_core::stream::{LogEntry, LogKey, StreamEvent, LOG_SCHEMA_VERSION};
use guildhall_core::Snowflake;
use guildhall_runtime::Metrics;
use guildhall_search::{Cells, Coverage, IndexingWorker, SearchRequest, WorkerConfig};
use guildhall_stream::{EmbeddedLog, EventLog};
use serde_json::{json, Value};

use crate::serve_child::temp_dir;
use crate::stats::{cores, cpu_seconds, percentiles_us, system_clock};

#[derive(clap::Args)]
pub struct SearchBench {
    /// Messages indexed, spread over the guilds and their channels.
    #[arg(long, default_value_t = 1_000_000)]
    messages: usize,
    #[arg(long, default_value_t = 100)]
    guilds: usize,
    #[arg(long, default_value_t = 10)]
    channels: usize,
    /// Searches of each kind timed (cold, then warm).
    #[arg(long, default_value_t = 500)]
    searches: usize,
    /// Messages timed from append to searchable.
    #[arg(long, default_value_t = 200)]
    latency_samples: usize,
    #[arg(long, default_value_t = 4)]
    cells: usize,
    /// Messages of the guild backfilled from storage (spread over its last 30 days).
    #[arg(long, default_value_t = 200_000)]
    backfill_messages: usize,
    /// The worker's largest batch (one commit per cell it touches); default: the worker's.
    #[arg(long)]
    max_batch: Option<usize>,
}

impl SearchBench {
    fn worker_config(&self) -> WorkerConfig {
        let default = WorkerConfig::default();
        WorkerConfig { max_batch: self.max_batch.unwrap_or(default.max_batch), ..default }
    }
}

const SYLLABLES: &[&str] = &[
    "ka", "lo", "mi", "ren", "tu", "sha", "vo", "qi", "dan", "pel", "ox", "ri", "sen", "ba", "ju", "ne", "tor", "wy",
    "ela", "mun",
];
const CJK: &[&str] = &["東京都に行きます", "今日は天気がいいですね", "한국어를 공부합니다", "我们明天见面吧"];

/// A deterministic generator (xorshift): the same messages every run.
struct Words(u64);

impl Words {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A word of a 8,000-word vocabulary, the low ranks far more often (as in text).
    fn word(&mut self) -> String {
        let r = (self.next() % 10_000) as f64 / 10_000.0;
        let rank = (r * r * 8_000.0) as usize;
        let s = SYLLABLES.len();
        format!("{}{}{}", SYLLABLES[rank % s], SYLLABLES[(rank / s) % s], SYLLABLES[(rank / (s * s)) % s])
    }

    fn content(&mut self) -> String {
        if self.next().is_multiple_of(10) {
            return CJK[(self.next() % CJK.len() as u64) as usize].to_owned();
        }
        let n = 4 + (self.next() % 12) as usize;
        let mut words: Vec<String> = (0..n).map(|_| self.word()).collect();
        if self.next().is_multiple_of(20) {
            words.push("https://example.com/x".into());
        }
        words.join(" ")
    }
}

fn guild_id(g: usize) -> Snowflake {
    Snowflake(1_000_000 + g as u64)
}

fn channel_id(g: usize, c: usize) -> Snowflake {
    Snowflake(10_000_000 + (g * 1000 + c) as u64)
}

fn entry(key: LogKey, seq: u64, message: Message) -> LogEntry {
    LogEntry {
        v: LOG_SCHEMA_VERSION,
        key,
        seq,
        prev: seq - 1,
        recipients: vec![],
        event: StreamEvent::MessageCreate { message },
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

struct Running {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

async fn start_worker(
    log: &EmbeddedLog,
    cells: Arc<Cells>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    store: Arc<dyn guildhall_store::Storage>,
    config: WorkerConfig,
) -> Result<Running, String> {
    let consumer = log.consumer("indexer").await.map_err(|e| e.to_string())?;
    let worker = IndexingWorker::new(consumer, cells, store, None, clock, metrics, config);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    Ok(Running { stop, task: tokio::spawn(worker.run(stopped)) })
}

pub async fn run(b: SearchBench) -> Result<Value, String> {
    let dir = temp_dir("search");
    let clock = system_clock();
    let log = EmbeddedLog::open(&dir.join("events.redb"), u64::MAX).map_err(|e| e.to_string())?;
    let store: Arc<dyn guildhall_store::Storage> =
        Arc::new(guildhall_store_redb::EmbeddedStore::open(&dir.join("store")).map_err(|e| e.to_string())?);
    let channels: Vec<Vec<Channel>> = (0..b.guilds)
        .map(|g| (0..b.channels).map(|c| Channel::text(channel_id(g, c), guild_id(g), "c")).collect())
        .collect();
    let author = User::new(Snowflake(42), "author", false);
    let mut words = Words(0x9E37_79B9_7F4A_7C15);
    let mut seqs = vec![0u64; b.guilds];
    let base_ms = clock.unix_ms() - 86_400_000;

    // 1. Seed the stream, then index it all.
    let seeded = Instant::now();
    let mut chunk: Vec<LogEntry> = Vec::with_capacity(512);
    let mut by_guild: Vec<Vec<LogEntry>> = vec![Vec::new(); b.guilds];
    for i in 0..b.messages {
        let g = i % b.guilds;
        let id = Snowflake(Snowflake::from_unix_ms(base_ms + (i / 4096) as u64).0 | (i % 4096) as u64);
        let channel = &channels[g][(i / b.guilds) % b.channels];
        let message = Message::new(id, channel, author.clone(), words.content(), None);
        seqs[g] += 1;
        by_guild[g].push(entry(LogKey::Guild(guild_id(g)), seqs[g], message));
        if by_guild[g].len() == 512 {
            chunk.append(&mut by_guild[g]);
            log.append(&chunk).await.map_err(|e| e.to_string())?;
            chunk.clear();
        }
    }
    for mut rest in by_guild {
        log.append(&rest).await.map_err(|e| e.to_string())?;
        rest.clear();
    }
    let seed_s = seeded.elapsed().as_secs_f64();
    let metrics = Arc::new(Metrics::default());
    let cells = Arc::new(Cells::open(&dir.join("search"), b.cells).map_err(|e| e.to_string())?);
    let indexing = Instant::now();
    let cpu_before = cpu_seconds(std::process::id()).unwrap_or(0.0);
    let worker =
        start_worker(&log, cells.clone(), metrics.clone(), clock.clone(), store.clone(), b.worker_config()).await?;
    while (metrics.search_entries_indexed.load(Relaxed) as usize) < b.messages {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let index_s = indexing.elapsed().as_secs_f64();
    let index_cpu_s = cpu_seconds(std::process::id()).unwrap_or(0.0) - cpu_before;
    let batches = metrics.search_batches.load(Relaxed);

    // 2. Append to searchable, one message at a time.
    let probe_guild = 0;
    let mut latencies = Vec::with_capacity(b.latency_samples);
    for k in 0..b.latency_samples {
        let id = Snowflake(Snowflake::from_unix_ms(clock.unix_ms()).0 | 4095);
        let token = format!("probe{k}x");
        let message = Message::new(id, &channels[probe_guild][0], author.clone(), format!("{token} now"), None);
        seqs[probe_guild] += 1;
        let appended = Instant::now();
        log.append(&[entry(LogKey::Guild(guild_id(probe_guild)), seqs[probe_guild], message)])
            .await
            .map_err(|e| e.to_string())?;
        let request = SearchRequest {
            scope: guild_id(probe_guild),
            channels: vec![channel_id(probe_guild, 0)],
            content: Some(format!("\"{token}\"")),
            limit: 1,
            ..Default::default()
        };
        loop {
            let found = request.run(cells.reader(guild_id(probe_guild))).map_err(|e| e.to_string())?;
            if found.total > 0 {
                break;
            }
            if appended.elapsed() > Duration::from_secs(10) {
                return Err(format!("probe {k} was not searchable after 10 s"));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        latencies.push(appended.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    worker.stop.send(true).ok();
    worker.task.await.map_err(|e| e.to_string())?;
    let index_bytes = dir_bytes(&dir.join("search"));
    drop(cells);

    // 3. Searches, in the cells opened afresh.
    let cells = Cells::open(&dir.join("search"), b.cells).map_err(|e| e.to_string())?;
    let mut queries: Vec<(&str, SearchRequest)> = Vec::new();
    let mut q = Words(0xDEAD_BEEF_1234_5678);
    for i in 0..b.searches {
        let g = (q.next() as usize) % b.guilds;
        let all = channels[g].iter().map(|c| c.id).collect::<Vec<_>>();
        let base = SearchRequest { scope: guild_id(g), channels: all, limit: 25, ..Default::default() };
        let kinds = [
            ("word", SearchRequest { content: Some(q.word()), ..base.clone() }),
            ("two_words", SearchRequest { content: Some(format!("{} {}", q.word(), q.word())), ..base.clone() }),
            ("phrase", SearchRequest { content: Some(format!("\"{} {}\"", q.word(), q.word())), ..base.clone() }),
            ("cjk", SearchRequest { content: Some("東京".into()), ..base.clone() }),
            ("has_link", SearchRequest { any_of_tags: vec![vec!["has:link".into()]], ..base.clone() }),
        ];
        queries.push(kinds[i % kinds.len()].clone());
    }
    let mut passes = Vec::new();
    for pass in ["cold", "warm"] {
        let mut all = Vec::with_capacity(queries.len());
        let mut by_kind: std::collections::BTreeMap<&str, Vec<Duration>> = Default::default();
        let mut hits = 0usize;
        for (kind, request) in &queries {
            let started = Instant::now();
            let found = request.run(cells.reader(request.scope)).map_err(|e| e.to_string())?;
            let took = started.elapsed();
            hits += found.page.len();
            all.push(took);
            by_kind.entry(kind).or_default().push(took);
        }
        let (p50, p99, max) = percentiles_us(all);
        let kinds: serde_json::Map<String, Value> = by_kind
            .into_iter()
            .map(|(kind, samples)| {
                let (p50, p99, _) = percentiles_us(samples);
                (kind.to_owned(), json!({ "p50_ms": p50 / 1e3, "p99_ms": p99 / 1e3 }))
            })
            .collect();
        passes.push((pass, json!({ "p50_ms": p50 / 1e3, "p99_ms": p99 / 1e3, "max_ms": max / 1e3, "hits_per_search": hits as f64 / queries.len() as f64, "by_kind": kinds })));
    }
    let (lat50, lat99, latmax) = percentiles_us(latencies);
    let backfill = backfill(&b, &dir, clock.clone()).await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(json!({
        "scenario": "search",
        "cores": cores(),
        "messages": b.messages,
        "guilds": b.guilds,
        "channels_per_guild": b.channels,
        "cells": b.cells,
        "seed_stream_s": seed_s,
        "index_s": index_s,
        "indexed_per_s": b.messages as f64 / index_s,
        "index_cores_busy": index_cpu_s / index_s,
        "index_cpu_us_per_message": index_cpu_s * 1e6 / b.messages as f64,
        "index_batches": batches,
        "max_batch": b.worker_config().max_batch,
        "append_to_searchable": { "samples": b.latency_samples, "p50_ms": lat50 / 1e3, "p99_ms": lat99 / 1e3, "max_ms": latmax / 1e3 },
        "index_bytes_per_message": index_bytes as f64 / b.messages as f64,
        "search_cold": passes[0].1,
        "search_warm": passes[1].1,
        "backfill": backfill,
    }))
}

const DAY_MS: u64 = 86_400_000;

/// 5. A guild with `backfill_messages` over its last 30 days in storage alone, backfilled.
async fn backfill(b: &SearchBench, dir: &Path, clock: Arc<dyn Clock>) -> Result<Value, String> {
    let store: Arc<dyn guildhall_store::Storage> =
        Arc::new(guildhall_store_redb::EmbeddedStore::open(&dir.join("backfill-store")).map_err(|e| e.to_string())?);
    let now = clock.unix_ms();
    // Ids of their time (a channel's history is walked back to its own id's partition).
    let at = |ms: u64, n: u64| Snowflake(Snowflake::from_unix_ms(ms).0 | (n & 4095));
    let guild = at(now - 40 * DAY_MS, 1);
    let channels: Vec<Channel> =
        (0..b.channels.max(1)).map(|c| Channel::text(at(now - 40 * DAY_MS, 2 + c as u64), guild, "c")).collect();
    let owner = User::new(Snowflake(42), "author", false);
    let member = Member::new(owner.clone(), "2026-01-01T00:00:00.000000+00:00".into());
    store
        .create_guild(Guild::new(guild, "history", owner.id), member, channels.clone())
        .await
        .map_err(|e| e.to_string())?;
    let mut words = Words(0x5EED_0F0B_ACCF_0011);
    let (n, span) = (b.backfill_messages.max(1) as u64, 30 * DAY_MS);
    let mut writes = Vec::with_capacity(512);
    for i in 0..n {
        let id = at(now - span + i * span / n, i);
        let channel = &channels[i as usize % channels.len()];
        writes.push(GuildWrite::PutMessage(Message::new(id, channel, owner.clone(), words.content(), None)));
        if writes.len() == 512 || i + 1 == n {
            let written = store.apply_batch(std::mem::take(&mut writes)).await;
            if let Some(Err(e)) = written.into_iter().find(Result::is_err) {
                return Err(format!("seeding the backfill's history: {e}"));
            }
        }
    }
    let log = EmbeddedLog::open(&dir.join("backfill-events.redb"), u64::MAX).map_err(|e| e.to_string())?;
    let cells = Arc::new(Cells::open(&dir.join("backfill-search"), b.cells).map_err(|e| e.to_string())?);
    let metrics = Arc::new(Metrics::default());
    let key = LogKey::Guild(guild);
    cells.request_backfill(key);
    let started = Instant::now();
    let worker = start_worker(&log, cells.clone(), metrics.clone(), clock, store, b.worker_config()).await?;
    let mut answering = None;
    loop {
        match cells.coverage(key) {
            Coverage::Complete => break,
            Coverage::Backfilling { recent_done: true, .. } if answering.is_none() => {
                answering = Some(started.elapsed())
            }
            _ => {}
        }
        if started.elapsed() > Duration::from_secs(1800) {
            return Err("the backfill did not finish in 30 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let done = started.elapsed();
    worker.stop.send(true).ok();
    worker.task.await.map_err(|e| e.to_string())?;
    let count = cells.reader(guild).count(guild).map_err(|e| e.to_string())?;
    if count as u64 != n {
        return Err(format!("backfilled {count} documents of {n} messages"));
    }
    Ok(json!({
        "messages": n,
        "days": 30,
        "answers_after_s": answering.unwrap_or(done).as_secs_f64(),
        "complete_after_s": done.as_secs_f64(),
        "backfilled_per_s": n as f64 / done.as_secs_f64(),
    }))
}
