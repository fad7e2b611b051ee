//! Scenario 5: design choices side by side, straight against Redis with the
//! store's key schema and Functions library.
//!
//! - The broadcaster's read of S sessions: one round trip per session (the
//!   reference design of the Go original) versus one pipelined batch of
//!   `HMGET`s (what `RedisLiveStore::read_many` does), both decoded with the
//!   store's own decay function.
//! - The ceiling of the vote path: `FCALL chatpulse_vote` alone under many
//!   concurrent clients (`redis-benchmark`, or the harness itself when that
//!   tool is missing).

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use chatpulse::store::redis::{LIBRARY, snapshot_from_fields};
use fred::prelude::*;

use crate::scenarios::redis_client;

const FIELDS: [&str; 4] = ["value", "last_update", "decay", "status"];

#[derive(Debug, Default)]
pub struct Row {
    pub sessions: usize,
    pub per_session_ms: f64,
    pub pipelined_ms: f64,
}

#[derive(Debug, Default)]
pub struct SideBySide {
    pub rows: Vec<Row>,
    pub ceiling_per_s: f64,
    pub ceiling_p50_ms: Option<f64>,
    pub ceiling_source: String,
}

fn session_key(i: usize) -> String {
    // The store's key shape: the overlay id is the hash tag.
    format!("session:{{{}}}", uuid::Uuid::from_u128(0xbe7c_0000_0000_4000_8000_0000_0000_0000 | i as u128))
}

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v.get(v.len() / 2).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn decode(fields: &[Option<String>], now_ms: i64) -> Option<f64> {
    let fields: Vec<Option<&str>> = fields.iter().map(Option::as_deref).collect();
    snapshot_from_fields(&fields, now_ms).map(|s| s.value)
}

async fn create_sessions(client: &Client, n: usize) -> anyhow::Result<Vec<String>> {
    let now = chatpulse::now_ms();
    let keys: Vec<String> = (0..n).map(session_key).collect();
    for chunk in keys.chunks(1_000) {
        let pipeline = client.pipeline();
        for (i, key) in chunk.iter().enumerate() {
            let value = format!("{}", (i % 150) as f64 - 75.0);
            let fields: Vec<(&str, String)> = vec![
                ("value", value),
                ("last_update", now.to_string()),
                ("decay", "0.5".to_owned()),
                ("status", "active".to_owned()),
                ("config_version", "1".to_owned()),
            ];
            pipeline.hset::<(), _, _>(key.as_str(), fields).await?;
        }
        let _: Vec<Value> = pipeline.all().await?;
    }
    Ok(keys)
}

/// One tick's read, one round trip per session.
async fn read_one_by_one(client: &Client, keys: &[String]) -> anyhow::Result<usize> {
    let now = chatpulse::now_ms();
    let mut found = 0;
    for key in keys {
        let fields: Vec<Option<String>> = client.hmget(key.as_str(), FIELDS.to_vec()).await?;
        found += usize::from(decode(&fields, now).is_some());
    }
    Ok(found)
}

/// One tick's read as one pipelined batch (as `read_many` does).
async fn read_pipelined(client: &Client, keys: &[String]) -> anyhow::Result<usize> {
    let now = chatpulse::now_ms();
    let pipeline = client.pipeline();
    for key in keys {
        pipeline.hmget::<(), _, _>(key.as_str(), FIELDS.to_vec()).await?;
    }
    let rows: Vec<Vec<Option<String>>> = pipeline.all().await?;
    Ok(rows.iter().filter(|r| decode(r, now).is_some()).count())
}

pub async fn run(redis_url: &str, port: u16, sizes: &[usize], ceiling_requests: u64) -> anyhow::Result<SideBySide> {
    let client = redis_client(redis_url).await?;
    client.flushall::<()>(false).await?;
    let mut result = SideBySide::default();
    for &s in sizes {
        let keys = create_sessions(&client, s).await?;
        // Bounded: at most ~4 s of one-by-one reads per size.
        let (mut one, mut batch) = (Vec::new(), Vec::new());
        let budget = Instant::now() + Duration::from_secs(4);
        for round in 0..7 {
            let started = Instant::now();
            let found = read_one_by_one(&client, &keys).await?;
            one.push(started.elapsed());
            let started = Instant::now();
            let found_batched = read_pipelined(&client, &keys).await?;
            batch.push(started.elapsed());
            anyhow::ensure!(found == s && found_batched == s, "read {found}/{found_batched} of {s} sessions");
            if round >= 2 && Instant::now() > budget {
                break;
            }
        }
        for _ in 0..20 {
            let started = Instant::now();
            read_pipelined(&client, &keys).await?;
            batch.push(started.elapsed());
        }
        result.rows.push(Row { sessions: s, per_session_ms: median(one), pipelined_ms: median(batch) });
        client.flushall::<()>(false).await?;
    }

    client.function_load::<String, _>(true, LIBRARY).await.context("cannot load the Functions library")?;
    let session = "session:{bench-ceiling}";
    let now = chatpulse::now_ms();
    client
        .hset::<(), _, _>(
            session,
            vec![("value", "0".to_owned()), ("last_update", now.to_string()), ("decay", "0.5".to_owned())],
        )
        .await?;
    match redis_benchmark(port, now, ceiling_requests) {
        Ok((rps, p50)) => {
            result.ceiling_per_s = rps;
            result.ceiling_p50_ms = p50;
            result.ceiling_source = format!("redis-benchmark, 50 clients, {ceiling_requests} FCALLs");
        }
        Err(e) => {
            eprintln!("  redis-benchmark unavailable ({e:#}); measuring with the harness's own client");
            result.ceiling_per_s = fcall_flood(&client, now, Duration::from_secs(5)).await?;
            result.ceiling_source = "harness (fred), 256 FCALLs in flight, 5 s".to_owned();
        }
    }
    client.flushall::<()>(false).await?;
    client.quit().await?;
    Ok(result)
}

/// The vote function's arguments: time, delta, bucket capacity and refill
/// (huge, so no vote is rate limited), debounce and de-duplication windows,
/// and the chatter (its participation entry).
fn vote_args(now: i64, chatter: &str) -> Vec<String> {
    let limits = ["10", "1000000000", "1000000000000", "1000", "600000"];
    std::iter::once(now.to_string()).chain(limits.map(String::from)).chain([chatter.to_owned()]).collect()
}

/// `redis-benchmark` hammering `FCALL chatpulse_vote` with random message ids
/// and chatters. Returns requests/s and p50 latency.
fn redis_benchmark(port: u16, now: i64, requests: u64) -> anyhow::Result<(f64, Option<f64>)> {
    let mut command = Command::new("timeout");
    command.args(["120", "redis-benchmark", "-h", "127.0.0.1", "-p", &port.to_string(), "-c", "50"]);
    command.args(["-n", &requests.to_string(), "-r", "100000000", "--csv"]);
    command.args(["FCALL", "chatpulse_vote", "5", "session:{bench-ceiling}", "ratelimit:{bench-ceiling}"]);
    command.args([
        "msgid:{bench-ceiling}:__rand_int__",
        "debounce:{bench-ceiling}:__rand_int__",
        "voters:{bench-ceiling}",
    ]);
    command.args(vote_args(now, "c__rand_int__"));
    let out = command.output().context("cannot run redis-benchmark")?;
    anyhow::ensure!(out.status.success(), "redis-benchmark failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    // CSV: a header line, then "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",…
    let line = text.lines().find(|l| l.starts_with("\"FCALL")).context("no result line from redis-benchmark")?;
    let fields: Vec<&str> = line.split("\",\"").map(|f| f.trim_matches('"')).collect();
    let rps: f64 = fields.get(1).and_then(|f| f.parse().ok()).context("no rps in redis-benchmark output")?;
    Ok((rps, fields.get(4).and_then(|f| f.parse().ok())))
}

/// The harness's own flood of `FCALL chatpulse_vote`, when `redis-benchmark`
/// is not installed.
async fn fcall_flood(client: &Client, now: i64, duration: Duration) -> anyhow::Result<f64> {
    let pool = Builder::from_config(client.client_config()).build_pool(4)?;
    pool.init().await?;
    let started = Instant::now();
    let tasks: Vec<_> = (0..256)
        .map(|t| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                while started.elapsed() < duration && n < 10_000_000 {
                    let keys = vec![
                        "session:{bench-ceiling}".to_owned(),
                        "ratelimit:{bench-ceiling}".to_owned(),
                        format!("msgid:{{bench-ceiling}}:{t}-{n}"),
                        format!("debounce:{{bench-ceiling}}:{t}-{n}"),
                        "voters:{bench-ceiling}".to_owned(),
                    ];
                    let args = vote_args(now, &format!("c{t}_{n}"));
                    let reply: Result<Vec<String>, Error> = pool.fcall("chatpulse_vote", keys, args).await;
                    if reply.is_err() {
                        break;
                    }
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap_or(0);
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    pool.quit().await?;
    Ok(rate)
}
