//! Scenarios 1–4 of docs/PERFORMANCE.md, each run against a freshly started server in one
//! storage mode.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fred::prelude::*;
use fred::types::InfoKind;
use tokio_util::sync::CancellationToken;

use crate::load::{self, ClientCounters, HistogramDelta, HttpConn, Samples, Scrape, SharedTracker, Signer, Tracker};
use crate::procs::{ProcStats, RedisServer, Server, Storage, proc_stats};

/// The decay speed of a streamer created with the default configuration.
pub(crate) const DEFAULT_DECAY: f64 = 0.5;

/// How big each scenario is.
#[derive(Debug, Clone)]
pub struct Sizes {
    pub ingest_sessions: usize,
    pub ingest_connections: usize,
    pub ingest_duration: Duration,
    pub latency_sessions: usize,
    pub latency_rate: f64,
    pub latency_duration: Duration,
    pub fanout_sessions: usize,
    pub fanout_clients: usize,
    pub fanout_rate: f64,
    pub fanout_duration: Duration,
    pub idle_overlays: usize,
    pub idle_duration: Duration,
    pub history_sessions: usize,
    pub history_warmup: Duration,
    pub history_window: Duration,
    /// A second, smaller idle run (the 1,000-overlay target), before the big one.
    pub idle_small: Option<usize>,
    /// How long the decay scenario counts frames after its three votes.
    pub decay_window: Duration,
    pub side_by_side: Vec<usize>,
    pub ceiling_requests: u64,
}

impl Sizes {
    pub fn full() -> Self {
        Self {
            ingest_sessions: 100,
            ingest_connections: 64,
            ingest_duration: Duration::from_secs(20),
            latency_sessions: 100,
            latency_rate: 2_000.0,
            latency_duration: Duration::from_secs(20),
            fanout_sessions: 5_000,
            fanout_clients: 2,
            fanout_rate: 2_000.0,
            fanout_duration: Duration::from_secs(30),
            idle_overlays: 10_000,
            idle_duration: Duration::from_secs(30),
            history_sessions: 10_000,
            history_warmup: Duration::from_secs(12),
            history_window: Duration::from_secs(30),
            idle_small: Some(1_000),
            decay_window: Duration::from_secs(6),
            side_by_side: vec![100, 1_000, 10_000],
            ceiling_requests: 300_000,
        }
    }

    pub fn quick() -> Self {
        Self {
            ingest_sessions: 50,
            ingest_connections: 32,
            ingest_duration: Duration::from_secs(4),
            latency_sessions: 100,
            latency_rate: 2_000.0,
            latency_duration: Duration::from_secs(4),
            fanout_sessions: 500,
            fanout_clients: 2,
            fanout_rate: 500.0,
            fanout_duration: Duration::from_secs(4),
            idle_overlays: 1_000,
            idle_duration: Duration::from_secs(4),
            history_sessions: 1_000,
            history_warmup: Duration::from_secs(12),
            history_window: Duration::from_secs(10),
            idle_small: None,
            decay_window: Duration::from_secs(6),
            side_by_side: vec![100, 1_000, 10_000],
            ceiling_requests: 50_000,
        }
    }

    pub fn streamers_needed(&self) -> usize {
        [self.ingest_sessions, self.latency_sessions, self.fanout_sessions, self.idle_overlays, self.history_sessions]
            .into_iter()
            .max()
            .unwrap_or(0)
    }
}

/// One streamer created for the run.
#[derive(Debug, Clone)]
pub struct Streamer {
    pub overlay: String,
    pub broadcaster: String,
}

/// One storage mode, prepared: streamers exist, the private Redis runs.
pub struct Mode {
    pub name: &'static str,
    pub storage: Storage,
    pub redis: Option<RedisServer>,
    pub streamers: Vec<Streamer>,
}

/// What the scenarios share.
pub struct Ctx {
    pub http: reqwest::Client,
    pub server_bin: PathBuf,
    pub work_dir: PathBuf,
    pub sizes: Sizes,
}

impl Ctx {
    /// A fresh server for one scenario; in distributed mode on an emptied
    /// Redis with reset statistics.
    pub async fn server(&self, mode: &Mode) -> anyhow::Result<Server> {
        if let Some(redis) = &mode.redis {
            let client = redis_client(&redis.url()).await?;
            client.flushall::<()>(false).await?;
            client.quit().await?;
            // Statistics restart with each server (INFO commandstats in scenario 4).
            let reset = std::process::Command::new("redis-cli")
                .args(["-p", &redis.port.to_string(), "config", "resetstat"])
                .output()
                .context("cannot run redis-cli")?;
            anyhow::ensure!(reset.status.success(), "redis-cli config resetstat failed");
        }
        Server::start(&self.server_bin, &mode.storage, &self.work_dir, &self.http).await
    }
}

pub async fn redis_client(url: &str) -> anyhow::Result<Client> {
    let client = Builder::from_config(Config::from_url(url)?).build()?;
    client.init().await?;
    Ok(client)
}

pub(crate) fn cpu_percent(before: &ProcStats, after: &ProcStats, elapsed: Duration) -> f64 {
    (after.cpu_seconds - before.cpu_seconds) / elapsed.as_secs_f64().max(1e-9) * 100.0
}

fn redis_stats(mode: &Mode) -> Option<ProcStats> {
    mode.redis.as_ref().and_then(|r| proc_stats(r.pid()).ok())
}

pub(crate) async fn stop_clients(stop: CancellationToken, tasks: Vec<tokio::task::JoinHandle<()>>) {
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), futures_util::future::join_all(tasks)).await;
}

// ---------------------------------------------------------------- 1. ingest

#[derive(Debug, Default)]
pub struct Ingest {
    pub accepted_per_s: f64,
    pub applied_per_s: f64,
    pub rejected: u64,
    pub failed: u64,
    pub http_p50_ms: Option<f64>,
    pub http_p99_ms: Option<f64>,
    pub cpu_percent: f64,
    pub redis_cpu_percent: Option<f64>,
    pub rss_mib: f64,
    pub peak_rss_mib: f64,
    /// Server-side vote outcomes during the run, largest first.
    pub outcomes: String,
    /// Redis commands during the run (`INFO commandstats`), distributed only.
    pub redis_commands: Option<Calls>,
    pub seconds: f64,
}

/// What the chat of an ingest run says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chat {
    /// "yes" and "no", alternating: every message is a vote.
    Matching,
    /// Ordinary chat that is no trigger word: nothing is stored.
    NonMatching,
}

impl Chat {
    /// The text of message `i`.
    fn text(self, i: usize) -> &'static str {
        match (self, i.is_multiple_of(2)) {
            (Chat::Matching, true) => "yes",
            (Chat::Matching, false) => "no",
            (Chat::NonMatching, true) => "lol that was close",
            (Chat::NonMatching, false) => "yesterday was better",
        }
    }
}

struct WorkerReport {
    ok: u64,
    rejected: u64,
    failed: u64,
    latency: Samples,
}

/// Closed-loop senders: each worker posts one notification after the other on
/// its own keep-alive connection until `duration` has passed.
async fn closed_loop(
    addr: SocketAddr,
    broadcasters: Arc<Vec<String>>,
    workers: usize,
    duration: Duration,
    run_id: &str,
    chat: Chat,
) -> (Vec<WorkerReport>, Duration) {
    let started = Instant::now();
    let deadline = started + duration;
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let broadcasters = Arc::clone(&broadcasters);
            let prefix = format!("{run_id}-i{w}");
            tokio::spawn(async move {
                let mut conn = HttpConn::new(addr);
                let mut signer = Signer::new(addr, prefix);
                let mut report = WorkerReport { ok: 0, rejected: 0, failed: 0, latency: Samples::default() };
                let mut i = w;
                // Bounded in time and in count.
                while Instant::now() < deadline && i < w + 50_000_000 {
                    let broadcaster = &broadcasters[i % broadcasters.len()];
                    let text = chat.text(i / workers);
                    i += workers;
                    let (head, body) = signer.chat(broadcaster, text);
                    let sent = Instant::now();
                    match conn.request(&head, body.as_bytes()).await {
                        Ok(status) if (200..300).contains(&status) => {
                            report.ok += 1;
                            report.latency.push(sent.elapsed());
                        }
                        Ok(_) => report.rejected += 1,
                        Err(_) => {
                            report.failed += 1;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
                report
            })
        })
        .collect();
    let mut reports = Vec::new();
    for h in handles {
        if let Ok(r) = h.await {
            reports.push(r);
        }
    }
    (reports, started.elapsed())
}

fn outcomes(before: &Scrape, after: &Scrape) -> String {
    let mut parts: Vec<(String, f64)> = after
        .0
        .iter()
        .filter_map(|(k, v)| {
            let outcome = k.strip_prefix("chatpulse_votes_total{outcome=\"")?.strip_suffix("\"}")?;
            let n = v - before.get(k);
            (n > 0.0).then(|| (outcome.to_owned(), n))
        })
        .collect();
    parts.sort_by(|a, b| b.1.total_cmp(&a.1));
    parts.iter().map(|(o, n)| format!("{o} {n:.0}")).collect::<Vec<_>>().join(", ")
}

pub async fn ingest(ctx: &Ctx, mode: &Mode, chat: Chat) -> anyhow::Result<Ingest> {
    let s = &ctx.sizes;
    let server = ctx.server(mode).await?;
    let k = s.ingest_sessions.min(mode.streamers.len());
    let stop = CancellationToken::new();
    let counters = Arc::new(ClientCounters::default());
    // A channel's votes count only while its overlay is open somewhere.
    let overlays = mode.streamers[..k].iter().map(|st| (st.overlay.clone(), None)).collect();
    let (tasks, failed, error) = load::connect_many(server.addr(), overlays, &counters, &stop, 32).await;
    if failed > 0 {
        bail!("{failed} overlays could not connect: {}", error.unwrap_or_default());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let broadcasters = Arc::new(mode.streamers[..k].iter().map(|st| st.broadcaster.clone()).collect::<Vec<_>>());
    let redis = RedisCounter::open(mode).await?;
    let before = Scrape::take(&ctx.http, &server.metrics_base()).await?;
    let calls0 = redis.total().await?;
    let (cpu0, redis0) = (server.stats()?, redis_stats(mode));
    let run_id = format!("{}-{}", mode.name, uuid::Uuid::new_v4().simple());
    let (reports, elapsed) =
        closed_loop(server.addr(), broadcasters, s.ingest_connections, s.ingest_duration, &run_id, chat).await;
    let (cpu1, redis1) = (server.stats()?, redis_stats(mode));
    let calls1 = redis.total().await?;
    let after = Scrape::take(&ctx.http, &server.metrics_base()).await?;
    stop_clients(stop, tasks).await;
    redis.close().await;

    let mut latency = Samples::default();
    let (mut ok, mut rejected, mut failed) = (0, 0, 0);
    for r in reports {
        ok += r.ok;
        rejected += r.rejected;
        failed += r.failed;
        latency.extend(r.latency);
    }
    let secs = elapsed.as_secs_f64();
    let applied = after.get("chatpulse_votes_total{outcome=\"applied\"}")
        - before.get("chatpulse_votes_total{outcome=\"applied\"}");
    Ok(Ingest {
        accepted_per_s: ok as f64 / secs,
        applied_per_s: applied / secs,
        rejected,
        failed,
        http_p50_ms: latency.quantile_ms(0.5),
        http_p99_ms: latency.quantile_ms(0.99),
        cpu_percent: cpu_percent(&cpu0, &cpu1, elapsed),
        redis_cpu_percent: redis0.zip(redis1).map(|(a, b)| cpu_percent(&a, &b, elapsed)),
        rss_mib: cpu1.rss_kib as f64 / 1024.0,
        peak_rss_mib: cpu1.hwm_kib as f64 / 1024.0,
        outcomes: outcomes(&before, &after),
        redis_commands: calls0.zip(calls1).map(|(a, b)| b.since(a)),
        seconds: secs,
    })
}

// ------------------------------------------------------- paced vote senders

pub(crate) struct Paced {
    pub(crate) sent: u64,
    pub(crate) failed: u64,
    pub(crate) elapsed: Duration,
}

/// Sends `rate` votes per second in total, for `duration`, over `sessions`
/// (channel → its tracker). Each session belongs to one worker, which sends
/// its votes one after the other, so a tracker always knows the order.
pub(crate) async fn paced_votes(
    addr: SocketAddr,
    sessions: &[(String, SharedTracker)],
    rate: f64,
    workers: usize,
    duration: Duration,
    run_id: &str,
) -> Paced {
    let workers = workers.clamp(1, sessions.len().max(1));
    let per_worker = rate / workers as f64;
    let started = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let own: Vec<(String, SharedTracker)> =
                sessions.iter().skip(w).step_by(workers).map(|(b, t)| (b.clone(), Arc::clone(t))).collect();
            let prefix = format!("{run_id}-p{w}");
            tokio::spawn(async move {
                let mut conn = HttpConn::new(addr);
                let mut signer = Signer::new(addr, prefix);
                let (mut sent, mut failed, mut next) = (0u64, 0u64, 0usize);
                let planned = (per_worker * duration.as_secs_f64()) as u64;
                while sent + failed < planned && started.elapsed() < duration + Duration::from_secs(2) {
                    let due = ((started.elapsed().as_secs_f64() * per_worker) as u64 + 1).min(planned);
                    while sent + failed < due {
                        let (broadcaster, tracker) = &own[next % own.len()];
                        next += 1;
                        let up = load::lock(tracker).next_vote(Instant::now());
                        let (head, body) = signer.chat(broadcaster, if up { "yes" } else { "no" });
                        match conn.request(&head, body.as_bytes()).await {
                            Ok(status) if (200..300).contains(&status) => sent += 1,
                            _ => failed += 1,
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                (sent, failed)
            })
        })
        .collect();
    let (mut sent, mut failed) = (0, 0);
    for h in handles {
        if let Ok((s, f)) = h.await {
            sent += s;
            failed += f;
        }
    }
    Paced { sent, failed, elapsed: started.elapsed() }
}

fn merge_latencies(trackers: &[SharedTracker]) -> (Samples, u64) {
    let mut all = Samples::default();
    let mut unreflected = 0;
    for t in trackers {
        let mut t = load::lock(t);
        unreflected += t.unreflected();
        all.extend(std::mem::take(&mut t.latencies));
    }
    (all, unreflected)
}

// ----------------------------------------------------- 2. chat to bar latency

#[derive(Debug, Default)]
pub struct Latency {
    pub votes_per_s: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub samples: usize,
    pub unreflected: u64,
    pub failed: u64,
    pub cpu_percent: f64,
    pub redis_cpu_percent: Option<f64>,
    /// Redis commands per second during the run, distributed only.
    pub redis_commands_per_s: Option<f64>,
}

pub async fn latency(ctx: &Ctx, mode: &Mode) -> anyhow::Result<Latency> {
    let s = &ctx.sizes;
    let server = ctx.server(mode).await?;
    let n = s.latency_sessions.min(mode.streamers.len());
    let stop = CancellationToken::new();
    let counters = Arc::new(ClientCounters::default());
    let trackers: Vec<SharedTracker> =
        (0..n).map(|_| Arc::new(std::sync::Mutex::new(Tracker::new(DEFAULT_DECAY)))).collect();
    let overlays =
        mode.streamers[..n].iter().zip(&trackers).map(|(st, t)| (st.overlay.clone(), Some(Arc::clone(t)))).collect();
    let (tasks, failed, error) = load::connect_many(server.addr(), overlays, &counters, &stop, 32).await;
    if failed > 0 {
        bail!("{failed} overlays could not connect: {}", error.unwrap_or_default());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sessions: Vec<(String, SharedTracker)> =
        mode.streamers[..n].iter().zip(&trackers).map(|(st, t)| (st.broadcaster.clone(), Arc::clone(t))).collect();
    let run_id = format!("{}-{}", mode.name, uuid::Uuid::new_v4().simple());
    let redis = RedisCounter::open(mode).await?;
    let calls0 = redis.total().await?;
    let (cpu0, redis0) = (server.stats()?, redis_stats(mode));
    let paced = paced_votes(server.addr(), &sessions, s.latency_rate, 20, s.latency_duration, &run_id).await;
    let (cpu1, redis1) = (server.stats()?, redis_stats(mode));
    let calls1 = redis.total().await?;
    redis.close().await;
    let secs = paced.elapsed.as_secs_f64();
    // The last votes' frames are at most a tick or two away.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_clients(stop, tasks).await;
    let (mut all, unreflected) = merge_latencies(&trackers);
    Ok(Latency {
        votes_per_s: paced.sent as f64 / paced.elapsed.as_secs_f64(),
        p50_ms: all.quantile_ms(0.5),
        p99_ms: all.quantile_ms(0.99),
        max_ms: all.max_ms(),
        samples: all.len(),
        unreflected,
        failed: paced.failed,
        cpu_percent: cpu_percent(&cpu0, &cpu1, paced.elapsed),
        redis_cpu_percent: redis0.zip(redis1).map(|(a, b)| cpu_percent(&a, &b, paced.elapsed)),
        redis_commands_per_s: calls0.zip(calls1).map(|(a, b)| b.since(a).all as f64 / secs),
    })
}

// ------------------------------------------------------------- 3. fan-out

#[derive(Debug, Default)]
pub struct Fanout {
    pub sessions: usize,
    pub connected: usize,
    pub votes_per_s: f64,
    pub tick_p50_ms: Option<f64>,
    pub tick_p99_ms: Option<f64>,
    pub ticks_per_s: f64,
    pub frames_per_s: f64,
    pub lag_p50_ms: Option<f64>,
    pub lag_p99_ms: Option<f64>,
    pub evictions: f64,
    pub closed: u64,
    pub rss_per_conn_kib: f64,
    pub cpu_percent: f64,
    pub redis_cpu_percent: Option<f64>,
    /// Redis commands during the run, distributed only.
    pub redis_commands: Option<Calls>,
    /// Broadcaster ticks during the run (server histogram count).
    pub ticks: f64,
}

pub async fn fanout(ctx: &Ctx, mode: &Mode) -> anyhow::Result<Fanout> {
    let s = &ctx.sizes;
    let server = ctx.server(mode).await?;
    let n = s.fanout_sessions.min(mode.streamers.len());
    let stop = CancellationToken::new();
    let counters = Arc::new(ClientCounters::default());
    let trackers: Vec<SharedTracker> =
        (0..n).map(|_| Arc::new(std::sync::Mutex::new(Tracker::new(DEFAULT_DECAY)))).collect();
    // Client 0 of each session follows the votes; the others only count frames.
    let mut overlays = Vec::with_capacity(n * s.fanout_clients);
    for c in 0..s.fanout_clients {
        for (st, t) in mode.streamers[..n].iter().zip(&trackers) {
            overlays.push((st.overlay.clone(), (c == 0).then(|| Arc::clone(t))));
        }
    }
    let total = overlays.len();
    let rss0 = server.stats()?.rss_kib;
    let (tasks, failed, error) = load::connect_many(server.addr(), overlays, &counters, &stop, 64).await;
    if failed * 100 > total {
        bail!("{failed} of {total} overlays could not connect: {}", error.unwrap_or_default());
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss1 = server.stats()?.rss_kib;
    let connected = tasks.len();

    let sessions: Vec<(String, SharedTracker)> =
        mode.streamers[..n].iter().zip(&trackers).map(|(st, t)| (st.broadcaster.clone(), Arc::clone(t))).collect();
    let redis = RedisCounter::open(mode).await?;
    let before = Scrape::take(&ctx.http, &server.metrics_base()).await?;
    let calls0 = redis.total().await?;
    let frames0 = counters.frames.load(Ordering::Relaxed);
    let (cpu0, redis0) = (server.stats()?, redis_stats(mode));
    let run_id = format!("{}-{}", mode.name, uuid::Uuid::new_v4().simple());
    let paced = paced_votes(server.addr(), &sessions, s.fanout_rate, 16, s.fanout_duration, &run_id).await;
    let (cpu1, redis1) = (server.stats()?, redis_stats(mode));
    let calls1 = redis.total().await?;
    redis.close().await;
    let frames1 = counters.frames.load(Ordering::Relaxed);
    let after = Scrape::take(&ctx.http, &server.metrics_base()).await?;
    let elapsed = paced.elapsed;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop_clients(stop, tasks).await;

    let ticks = HistogramDelta::between(&before, &after, "chatpulse_broadcast_tick_duration_seconds");
    let (mut lag, _) = merge_latencies(&trackers);
    let secs = elapsed.as_secs_f64();
    Ok(Fanout {
        sessions: n,
        connected,
        votes_per_s: paced.sent as f64 / secs,
        tick_p50_ms: ticks.quantile_ms(0.5),
        tick_p99_ms: ticks.quantile_ms(0.99),
        ticks_per_s: ticks.count / secs,
        frames_per_s: (frames1 - frames0) as f64 / secs,
        lag_p50_ms: lag.quantile_ms(0.5),
        lag_p99_ms: lag.quantile_ms(0.99),
        evictions: after.get("chatpulse_websocket_evictions_total") - before.get("chatpulse_websocket_evictions_total"),
        closed: counters.closed.load(Ordering::Relaxed),
        rss_per_conn_kib: rss1.saturating_sub(rss0) as f64 / connected.max(1) as f64,
        cpu_percent: cpu_percent(&cpu0, &cpu1, elapsed),
        redis_cpu_percent: redis0.zip(redis1).map(|(a, b)| cpu_percent(&a, &b, elapsed)),
        redis_commands: calls0.zip(calls1).map(|(a, b)| b.since(a)),
        ticks: ticks.count,
    })
}

// ---------------------------------------------------------------- 4. idle

#[derive(Debug, Default)]
pub struct Idle {
    pub connected: usize,
    pub cpu_percent: f64,
    pub frames: u64,
    pub redis_commands_per_s: Option<f64>,
    pub redis_top: String,
    pub rss_per_conn_kib: f64,
    pub rss_mib: f64,
}

/// `INFO commandstats` as command → calls.
async fn command_calls(client: &Client) -> anyhow::Result<Vec<(String, u64)>> {
    let info: String = client.info(Some(InfoKind::CommandStats)).await?;
    Ok(info
        .lines()
        .filter_map(|l| {
            let (name, stats) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect())
}

/// Redis commands counted by `INFO commandstats`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Calls {
    /// Every command, including those a Function runs.
    pub all: u64,
    /// `FCALL`s (the vote is one).
    pub fcall: u64,
}

impl Calls {
    fn since(self, before: Calls) -> Calls {
        Calls { all: self.all.saturating_sub(before.all), fcall: self.fcall.saturating_sub(before.fcall) }
    }
}

/// Counts the Redis commands of a distributed run (`INFO commandstats`,
/// the `INFO` calls themselves excluded); does nothing in embedded mode.
pub struct RedisCounter(Option<Client>);

impl RedisCounter {
    pub async fn open(mode: &Mode) -> anyhow::Result<Self> {
        Ok(Self(match &mode.redis {
            Some(r) => Some(redis_client(&r.url()).await?),
            None => None,
        }))
    }

    /// Commands so far (those the Functions run count too), and of them
    /// the `FCALL`s.
    pub async fn total(&self) -> anyhow::Result<Option<Calls>> {
        let Some(client) = &self.0 else { return Ok(None) };
        let calls = command_calls(client).await?;
        let all = calls.iter().filter(|(name, _)| name != "info").map(|(_, n)| n).sum();
        let fcall = calls.iter().filter(|(name, _)| name == "fcall").map(|(_, n)| n).sum();
        Ok(Some(Calls { all, fcall }))
    }

    pub async fn close(self) {
        if let Some(c) = self.0 {
            let _ = c.quit().await;
        }
    }
}

pub async fn idle(ctx: &Ctx, mode: &Mode, overlays: usize) -> anyhow::Result<Idle> {
    let s = &ctx.sizes;
    let server = ctx.server(mode).await?;
    let n = overlays.min(mode.streamers.len());
    let stop = CancellationToken::new();
    let counters = Arc::new(ClientCounters::default());
    let overlays = mode.streamers[..n].iter().map(|st| (st.overlay.clone(), None)).collect();
    let rss0 = server.stats()?.rss_kib;
    let (tasks, failed, error) = load::connect_many(server.addr(), overlays, &counters, &stop, 64).await;
    if failed * 100 > n {
        bail!("{failed} of {n} overlays could not connect: {}", error.unwrap_or_default());
    }
    let connected = tasks.len();
    // Let connection set-up work (activations, first frames) finish.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let redis = match &mode.redis {
        Some(r) => Some(redis_client(&r.url()).await?),
        None => None,
    };
    let calls0 = match &redis {
        Some(c) => Some(command_calls(c).await?),
        None => None,
    };
    let frames0 = counters.frames.load(Ordering::Relaxed);
    let cpu0 = server.stats()?;
    let started = Instant::now();
    tokio::time::sleep(s.idle_duration).await;
    let elapsed = started.elapsed();
    let cpu1 = server.stats()?;
    let frames1 = counters.frames.load(Ordering::Relaxed);
    let calls1 = match &redis {
        Some(c) => Some(command_calls(c).await?),
        None => None,
    };
    stop_clients(stop, tasks).await;

    let secs = elapsed.as_secs_f64();
    let (redis_commands_per_s, redis_top) = match (calls0, calls1) {
        (Some(c0), Some(c1)) => {
            let before: std::collections::HashMap<String, u64> = c0.into_iter().collect();
            let mut delta: Vec<(String, u64)> = c1
                .into_iter()
                .map(|(name, calls)| {
                    let d = calls.saturating_sub(before.get(&name).copied().unwrap_or(0));
                    (name, d)
                })
                .filter(|(name, d)| *d > 0 && name != "info")
                .collect();
            delta.sort_by_key(|d| std::cmp::Reverse(d.1));
            let total: u64 = delta.iter().map(|(_, d)| d).sum();
            let top = delta
                .iter()
                .take(3)
                .map(|(name, d)| format!("{name} {:.0}/s", *d as f64 / secs))
                .collect::<Vec<_>>()
                .join(", ");
            (Some(total as f64 / secs), top)
        }
        _ => (None, String::new()),
    };
    if let Some(c) = redis {
        let _ = c.quit().await;
    }
    Ok(Idle {
        connected,
        cpu_percent: cpu_percent(&cpu0, &cpu1, elapsed),
        frames: frames1 - frames0,
        redis_commands_per_s,
        redis_top,
        rss_per_conn_kib: cpu1.rss_kib.saturating_sub(rss0) as f64 / connected.max(1) as f64,
        rss_mib: cpu1.rss_kib as f64 / 1024.0,
    })
}

/// Creates `n` streamers with the default configuration in the mode's
/// durable store, through the library's repository (as `chatpulse streamers
/// add` does).
pub async fn create_streamers(storage: &Storage, n: usize) -> anyhow::Result<Vec<Streamer>> {
    use chatpulse::domain::BroadcasterId;
    use chatpulse::store::{NewStreamer, Repository};
    use futures_util::StreamExt;

    let repo: Arc<dyn Repository> = match storage {
        Storage::Embedded { data_dir } => {
            let dir = data_dir.clone();
            Arc::new(
                tokio::task::spawn_blocking(move || chatpulse::store::sqlite::SqliteRepository::open(&dir)).await??,
            )
        }
        Storage::Distributed { database_url, .. } => {
            let mut registry = prometheus_client::registry::Registry::default();
            let metrics = chatpulse::metrics::Metrics::register(&mut registry);
            let repo = chatpulse::store::postgres::PostgresRepository::new(database_url, 1, 8, metrics)?;
            repo.migrate().await.context("cannot migrate the benchmark database")?;
            Arc::new(repo)
        }
    };
    let created: Vec<anyhow::Result<Streamer>> = futures_util::stream::iter(0..n)
        .map(|i| {
            let repo = Arc::clone(&repo);
            async move {
                let broadcaster = format!("{}", 700_000_000 + i);
                let new = NewStreamer {
                    twitch_user_id: BroadcasterId::parse(&broadcaster).map_err(|e| anyhow::anyhow!("{e}"))?,
                    login: format!("bench{i}"),
                    display_name: format!("Bench{i}"),
                };
                let setup = repo.create_streamer(&new).await?;
                // The classic meter (+10 a vote): chat-to-bar latency predicts
                // every value the server computes from it.
                repo.save_config(setup.streamer.id, &chatpulse::domain::OverlayConfig::classic()).await?;
                Ok(Streamer { overlay: setup.streamer.overlay_id.to_string(), broadcaster })
            }
        })
        .buffered(8)
        .collect()
        .await;
    created.into_iter().collect()
}
