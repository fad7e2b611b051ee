//! Scenario 8 of docs/PERFORMANCE.md: the cost of stream history in
//! PostgreSQL row writes. Every session gets one vote per 10-second bucket
//! (the most a session can cost: more votes add nothing, quiet buckets are
//! not written), and the rows written are counted over a window aligned to
//! the buckets, in the server's counters and in the table itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;

use crate::load::{self, ClientCounters, Scrape, SharedTracker, Tracker};
use crate::procs::Storage;
use crate::scenarios::{Ctx, DEFAULT_DECAY, Mode, cpu_percent, paced_votes, stop_clients};

/// The length of a history bucket (src/domain/history/bucket.rs).
const BUCKET_MS: u128 = 10_000;

#[derive(Debug, Default)]
pub struct HistoryWrites {
    pub sessions: usize,
    pub connected: usize,
    pub votes_per_s: f64,
    /// Rows the server reports written (`chatpulse_history_buckets_written_total`).
    pub rows_per_s: f64,
    /// Rows the table gained (PostgreSQL only).
    pub table_rows_per_s: Option<f64>,
    /// Batched writes (`chatpulse_history_batches_written_total`).
    pub batches_per_s: f64,
    pub cpu_percent: f64,
}

impl HistoryWrites {
    /// The figure judged against the target: the table's rows where known.
    pub fn row_writes_per_s(&self) -> f64 {
        self.table_rows_per_s.unwrap_or(self.rows_per_s)
    }
}

async fn table_rows(database_url: &str) -> anyhow::Result<i64> {
    let (client, connection) = tokio_postgres::connect(database_url, tokio_postgres::NoTls)
        .await
        .context("cannot connect to the benchmark database")?;
    let task = tokio::spawn(connection);
    let row = client.query_one("SELECT count(*) FROM history_buckets", &[]).await?;
    drop(client);
    let _ = task.await;
    Ok(row.get(0))
}

async fn rows(storage: &Storage) -> anyhow::Result<Option<i64>> {
    match storage {
        Storage::Distributed { database_url, .. } => Ok(Some(table_rows(database_url).await?)),
        Storage::Embedded { .. } => Ok(None),
    }
}

/// Waits until `phase_ms` into the wall clock's current (or next) bucket.
async fn until_phase(phase_ms: u128) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
    let phase = now % BUCKET_MS;
    let wait = if phase <= phase_ms { phase_ms - phase } else { BUCKET_MS - phase + phase_ms };
    tokio::time::sleep(Duration::from_millis(u64::try_from(wait).unwrap_or(0))).await;
}

pub async fn history(ctx: &Ctx, mode: &Mode) -> anyhow::Result<HistoryWrites> {
    let s = &ctx.sizes;
    let server = ctx.server(mode).await?;
    let n = s.history_sessions.min(mode.streamers.len());
    let stop = CancellationToken::new();
    let counters = Arc::new(ClientCounters::default());
    let overlays = mode.streamers[..n].iter().map(|st| (st.overlay.clone(), None)).collect();
    let (tasks, failed, error) = load::connect_many(server.addr(), overlays, &counters, &stop, 64).await;
    if failed * 100 > n {
        bail!("{failed} of {n} overlays could not connect: {}", error.unwrap_or_default());
    }
    let connected = tasks.len();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // One vote per session per bucket, from before the window to after it.
    let sessions: Vec<(String, SharedTracker)> = mode.streamers[..n]
        .iter()
        .map(|st| (st.broadcaster.clone(), Arc::new(std::sync::Mutex::new(Tracker::new(DEFAULT_DECAY)))))
        .collect();
    let rate = n as f64 / 10.0;
    let voting = s.history_warmup + Duration::from_secs(10) + s.history_window + Duration::from_secs(5);
    let (addr, run_id) = (server.addr(), format!("{}-h{}", mode.name, uuid::Uuid::new_v4().simple()));
    let votes = tokio::spawn(async move { paced_votes(addr, &sessions, rate, 16, voting, &run_id).await });

    // The window starts and ends 8 s into a bucket: the buckets that closed
    // at its start were flushed (every 5 s) before it, so it holds exactly
    // the buckets of `window / 10 s` boundaries.
    tokio::time::sleep(s.history_warmup).await;
    until_phase(8_000).await;
    let metrics = server.metrics_base();
    let (before, rows0, cpu0) = (Scrape::take(&ctx.http, &metrics).await?, rows(&mode.storage).await?, server.stats()?);
    let started = Instant::now();
    tokio::time::sleep(s.history_window).await;
    let (after, rows1, cpu1) = (Scrape::take(&ctx.http, &metrics).await?, rows(&mode.storage).await?, server.stats()?);
    let window = started.elapsed();
    let paced = votes.await.context("the voters failed")?;
    stop_clients(stop, tasks).await;

    let secs = s.history_window.as_secs_f64();
    let delta = |name: &str| after.get(name) - before.get(name);
    Ok(HistoryWrites {
        sessions: n,
        connected,
        votes_per_s: paced.sent as f64 / paced.elapsed.as_secs_f64().max(1e-9),
        rows_per_s: delta("chatpulse_history_buckets_written_total") / secs,
        table_rows_per_s: rows0.zip(rows1).map(|(a, b)| (b - a) as f64 / secs),
        batches_per_s: delta("chatpulse_history_batches_written_total") / secs,
        cpu_percent: cpu_percent(&cpu0, &cpu1, window),
    })
}
