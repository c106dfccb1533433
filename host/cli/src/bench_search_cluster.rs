//! `guildhall bench search-takeover`: search in a cluster, on a running nats-server and CQL
//! node, with real child processes (one `serve --cluster` node, two `worker indexer`s):
//! - `messages` messages posted through the API into one guild (`concurrency` at a time):
//!   creates/s, and the time from the last acknowledgement until every one is found;
//! - searches through the API (routed over NATS to the worker that owns the guild's cell):
//!   latency p50/p99;
//! - the worker that owns the guild's cell killed with SIGKILL: the time until the other
//!   owns every cell, until the guild's searches are answered again (Discord's 202 while
//!   its recent history is rebuilt from storage), and until they find every message; the
//!   rebuild's rate (messages/s).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use guildhall_client::{ApiClient, Method};
use guildhall_core::stream::CellLayout;
use guildhall_core::Snowflake;
use serde_json::{json, Value};

use crate::bench_cluster::{call, metric, rand_suffix, start_child, Node};
use crate::stats::percentiles_us;

#[derive(clap::Args, Debug)]
pub struct TakeoverBench {
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub nats: String,
    #[arg(long, default_value = "127.0.0.1:9042")]
    pub cql: String,
    /// Messages in the guild before the take-over.
    #[arg(long, default_value_t = 20_000)]
    pub messages: usize,
    /// Creates in flight at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// The cluster's search cells.
    #[arg(long, default_value_t = 4)]
    pub cells: u32,
    /// Searches timed through the API before the take-over.
    #[arg(long, default_value_t = 200)]
    pub searches: usize,
}

/// Polls until `done` says so or `limit` passes; returns the time it took.
async fn until<F, Fut>(limit: Duration, what: &str, mut done: F) -> Result<Duration, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, String>>,
{
    let started = Instant::now();
    loop {
        if done().await? {
            return Ok(started.elapsed());
        }
        if started.elapsed() > limit {
            return Err(format!("{what}: not within {limit:?}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The guild search's answer: its status and `total_results`.
async fn search(addr: SocketAddr, path: &str, token: &str) -> Result<(u16, u64), String> {
    let mut client = ApiClient::connect(&addr.to_string()).await.map_err(|e| e.to_string())?;
    let (status, body) = call(&mut client, Method::GET, path, Some(token), None).await?;
    Ok((status, body["total_results"].as_u64().unwrap_or(0)))
}

/// Whether the worker at `addr` runs `cell` (it reports that cell's stream lag).
async fn runs_cell(addr: SocketAddr, cell: u32) -> Result<bool, String> {
    let mut client = ApiClient::connect(&addr.to_string()).await.map_err(|e| e.to_string())?;
    let text = client.metrics().await.map_err(|e| e.to_string())?;
    Ok(text.lines().any(|l| l.starts_with(&format!("guildhall_search_stream_lag{{cell=\"{cell}\"}} "))))
}

pub async fn run(b: TakeoverBench) -> Result<Value, String> {
    let name = format!("ghbench_{}", rand_suffix());
    let storage = format!("scylla://{}/{name}", b.cql);
    let env = [("GUILDHALL_SEARCH__CELLS", b.cells.to_string())];
    let node = start_child(&["serve"], &name, &storage, &b.nats, &env).await?;
    let mut workers: Vec<Node> = Vec::new();
    for _ in 0..2 {
        workers.push(start_child(&["worker", "indexer"], &name, &storage, &b.nats, &env).await?);
    }
    let cells = u64::from(b.cells);
    let owned = |workers: Vec<SocketAddr>| async move {
        let mut total = 0;
        for w in workers {
            total += metric(w, "guildhall_search_cells_owned").await?;
        }
        Ok::<u64, String>(total)
    };
    let addrs: Vec<SocketAddr> = workers.iter().map(|w| w.addr).collect();
    until(Duration::from_secs(30), "the workers share the cells", || {
        let addrs = addrs.clone();
        async move { Ok(owned(addrs).await? == cells) }
    })
    .await?;

    let mut setup = ApiClient::connect(&node.addr.to_string()).await.map_err(|e| e.to_string())?;
    let register = json!({ "username": "bench", "password": "bench password" });
    let (_, reg) = call(&mut setup, Method::POST, "/auth/register", None, Some(register)).await?;
    let token = reg["token"].as_str().ok_or("no token")?.to_owned();
    let (_, guild) = call(&mut setup, Method::POST, "/guilds", Some(&token), Some(json!({ "name": "bench" }))).await?;
    let gid = guild["id"].as_str().ok_or("no guild")?.to_owned();
    let (_, channels) = call(&mut setup, Method::GET, &format!("/guilds/{gid}/channels"), Some(&token), None).await?;
    let cid = channels[0]["id"].as_str().ok_or("no channel")?.to_owned();

    // Creates, `concurrency` at a time.
    let create_path = format!("/channels/{cid}/messages");
    let started = Instant::now();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..b.concurrency.max(1) {
        let (addr, path, token, next, total) =
            (node.addr, create_path.clone(), token.clone(), next.clone(), b.messages);
        tasks.push(tokio::spawn(async move {
            let mut client = ApiClient::connect(&addr.to_string()).await.map_err(|e| e.to_string())?;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return Ok::<(), String>(());
                }
                let body = json!({ "content": format!("needle {i} of the take-over bench") });
                let (status, answer) = call(&mut client, Method::POST, &path, Some(&token), Some(body)).await?;
                if status != 200 {
                    return Err(format!("a create answered {status}: {answer}"));
                }
            }
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    let creating = started.elapsed();
    let search_path = format!("/guilds/{gid}/messages/search?content=needle");
    let all = b.messages as u64;
    let (addr, path, tok) = (node.addr, search_path.clone(), token.clone());
    let searchable = until(Duration::from_secs(300), "every message found", || {
        let (path, tok) = (path.clone(), tok.clone());
        async move { Ok(search(addr, &path, &tok).await? == (200, all)) }
    })
    .await?;

    // Searches through the API, over NATS to the cell's owner.
    let mut client = ApiClient::connect(&node.addr.to_string()).await.map_err(|e| e.to_string())?;
    let mut latencies = Vec::with_capacity(b.searches);
    for i in 0..b.searches {
        let path = format!("/guilds/{gid}/messages/search?content=needle%20{}", i % 1000);
        let asked = Instant::now();
        let (status, _) = call(&mut client, Method::GET, &path, Some(&token), None).await?;
        if status != 200 {
            return Err(format!("a search answered {status}"));
        }
        latencies.push(asked.elapsed());
    }

    // Kill the worker that runs the guild's cell.
    let guild_id = Snowflake(gid.parse().map_err(|_| "a guild id")?);
    let cell = CellLayout::new(b.cells, &[]).cell_of(guild_id);
    let mut owner = None;
    for (i, w) in workers.iter().enumerate() {
        if runs_cell(w.addr, cell).await? {
            owner = Some(i);
        }
    }
    let owner = owner.ok_or("no worker runs the guild's cell")?;
    let survivor = workers[1 - owner].addr;
    let killed = Instant::now();
    drop(workers.remove(owner)); // SIGKILL
    until(Duration::from_secs(60), "the survivor owns every cell", || async move {
        Ok(metric(survivor, "guildhall_search_cells_owned").await? == cells)
    })
    .await?;
    let owned_ms = killed.elapsed();
    let (path, tok) = (search_path.clone(), token.clone());
    until(Duration::from_secs(120), "searches answered again", || {
        let (path, tok) = (path.clone(), tok.clone());
        async move { Ok(search(addr, &path, &tok).await?.0 == 200) }
    })
    .await?;
    let answering_ms = killed.elapsed();
    let (path, tok) = (search_path.clone(), token.clone());
    until(Duration::from_secs(600), "every message found again", || {
        let (path, tok) = (path.clone(), tok.clone());
        async move { Ok(search(addr, &path, &tok).await? == (200, all)) }
    })
    .await?;
    let complete_ms = killed.elapsed();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (p50, p99, _) = percentiles_us(latencies);
    Ok(json!({
        "scenario": "search-takeover",
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "note": "one serve node, two indexing workers, the load generator, nats-server and the CQL node share the machine; lease 1.5 s",
        "messages": b.messages,
        "cells": b.cells,
        "creates_per_sec": b.messages as f64 / creating.as_secs_f64(),
        "searchable_after_last_create_ms": ms(searchable),
        "search_p50_us": p50,
        "search_p99_us": p99,
        "takeover": {
            "survivor_owns_every_cell_ms": ms(owned_ms),
            "answers_again_ms": ms(answering_ms),
            "finds_every_message_ms": ms(complete_ms),
            "rebuild_messages_per_sec": b.messages as f64 / (complete_ms - owned_ms).as_secs_f64().max(1e-3),
        },
    }))
}
