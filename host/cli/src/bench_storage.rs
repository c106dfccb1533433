//! `guildhall bench storage-deadline`: what the deadline on every storage call
//! (`data.call_timeout_ms`, `guildhall_store::layer::Deadline`) costs. The same token
//! lookups (the read every REST request makes) go to one embedded store bare and through
//! the deadline, alternating round by round in one run; the report gives both and their
//! ratio.

use std::sync::Arc;
use std::time::{Duration, Instant};

use guildhall_core::model::{User, UserRecord};
use guildhall_core::Snowflake;
use guildhall_store::layer::{Deadline, Layered};
use guildhall_store::Storage;
use guildhall_store_redb::EmbeddedStore;
use serde_json::{json, Value};

use crate::serve_child::temp_dir;
use crate::stats::percentiles_us;

#[derive(clap::Args)]
pub struct DeadlineBench {
    /// Lookups per round and arm.
    #[arg(long, default_value_t = 200_000)]
    calls: usize,
    /// Lookups in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

pub async fn run(bench: DeadlineBench) -> Result<Value, String> {
    let DeadlineBench { calls, concurrency, rounds } = bench;
    let dir = temp_dir("deadline");
    let bare: Arc<dyn Storage> = Arc::new(EmbeddedStore::open(&dir).map_err(|e| e.to_string())?);
    let deadline = Arc::new(Deadline::new(Duration::from_secs(5)));
    let bounded: Arc<dyn Storage> = Arc::new(Layered::new(bare.clone(), deadline.clone()));
    let user = User::new(Snowflake(1 << 22), "bench", false);
    bare.create_user(UserRecord::person(user.clone(), String::new())).await.map_err(|e| e.to_string())?;
    bare.put_token("bench-token", user.id).await.map_err(|e| e.to_string())?;

    let mut runs = Vec::new();
    let mut per_sec = [0.0; 2];
    for round in 0..rounds.max(1) {
        for (arm, store) in [(0, &bare), (1, &bounded)] {
            let run = lookups(store.clone(), calls, concurrency).await?;
            per_sec[arm] += run["lookups_per_sec"].as_f64().unwrap_or(0.0);
            runs.push(json!({ "round": round, "deadline": arm == 1, "run": run }));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if deadline.timeouts() > 0 {
        return Err(format!("{} lookups ran past the 5 s deadline: the machine is overloaded", deadline.timeouts()));
    }
    Ok(json!({
        "scenario": "storage-deadline",
        "cores": crate::stats::cores(),
        "calls_per_round": calls,
        "concurrency": concurrency,
        "lookups_per_sec_with_deadline_over_without": per_sec[1] / per_sec[0],
        "runs": runs,
    }))
}

/// `calls` token lookups from `concurrency` tasks: lookups per second and latency.
async fn lookups(store: Arc<dyn Storage>, calls: usize, concurrency: usize) -> Result<Value, String> {
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let store = store.clone();
            let share = calls / concurrency.max(1);
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(share);
                for _ in 0..share {
                    let one = Instant::now();
                    let found = store.token_user("bench-token").await.map_err(|e| e.to_string())?;
                    latencies.push(one.elapsed());
                    if found.is_none() {
                        return Err("the token was not found".to_owned());
                    }
                }
                Ok::<_, String>(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(calls);
    for task in tasks {
        latencies.extend(task.await.map_err(|e| e.to_string())??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let done = latencies.len();
    let (p50, p99, max) = percentiles_us(latencies);
    Ok(json!({ "lookups_per_sec": done as f64 / elapsed, "p50_us": p50, "p99_us": p99, "max_us": max }))
}
