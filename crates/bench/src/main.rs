//! `chatpulse-bench`: the load harness behind `make bench` and
//! `make bench-quick` (docs/PERFORMANCE.md).
//!
//! It starts the real `chatpulse` server as a child process — in embedded
//! mode (SQLite + in-process state) and in distributed mode (PostgreSQL + a
//! private `redis-server`) — drives it over loopback with signed EventSub chat
//! notifications and overlay WebSockets, reads the server's CPU and memory
//! from `/proc` and its own histograms from `/metrics`, and prints one
//! Markdown report on stdout (progress goes to stderr). Every loop is bounded
//! in count and time; every child process is killed when the run ends, fails
//! or is interrupted.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;

mod decay;
mod history;
mod load;
mod procs;
mod report;
mod scenarios;
mod side_by_side;

use procs::{RedisServer, Storage};
use scenarios::{Ctx, Mode, Sizes};

/// Benchmarks a freshly started ChatPulse server and prints a Markdown table.
#[derive(Parser, Debug)]
#[command(name = "chatpulse-bench")]
struct Args {
    /// The CI-sized run (about a minute) instead of the full one.
    #[arg(long)]
    quick: bool,
    /// Storage modes to run, comma-separated: embedded, distributed.
    #[arg(long, value_delimiter = ',', default_value = "embedded,distributed")]
    modes: Vec<String>,
    /// Scenarios to run, comma-separated: 1 ingest, 2 latency, 3 fan-out,
    /// 4 idle, 5 side by side, 6 non-matching chat, 7 frames during decay,
    /// 8 history writes.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,4,5,6,7,8")]
    scenarios: Vec<u8>,
    /// The server binary (default: `chatpulse` next to this binary).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// PostgreSQL maintenance URL, used to (re)create the benchmark database.
    #[arg(long, env = "BENCH_PG_URL", default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pg_url: String,
    /// The benchmark's own database (dropped and re-created; never `chatpulse_test`).
    #[arg(long, default_value = "chatpulse_bench")]
    database: String,
    /// Override: sessions × clients of the fan-out scenario.
    #[arg(long)]
    fanout_sessions: Option<usize>,
    /// Override: overlays of the idle scenario.
    #[arg(long)]
    idle_overlays: Option<usize>,
    /// Override: sessions of the history scenario.
    #[arg(long)]
    history_sessions: Option<usize>,
    /// Hard limit on the whole run, in seconds.
    #[arg(long, default_value_t = 1_800)]
    time_limit: u64,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    chatpulse::install_crypto_provider();
    let limit = Duration::from_secs(args.time_limit);
    let outcome = tokio::select! {
        result = tokio::time::timeout(limit, run(args)) => match result {
            Ok(result) => result,
            Err(_) => Err(anyhow::anyhow!("the run exceeded its time limit of {limit:?}")),
        },
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    // Dropping `run` (above) has killed every child process it started.
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chatpulse-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Removes the scratch directory when the run ends, however it ends.
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

async fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut sizes = if args.quick { Sizes::quick() } else { Sizes::full() };
    if let Some(n) = args.fanout_sessions {
        sizes.fanout_sessions = n;
    }
    if let Some(n) = args.idle_overlays {
        sizes.idle_overlays = n;
    }
    if let Some(n) = args.history_sessions {
        sizes.history_sessions = n;
    }
    // Each overlay is one socket in this process and one in the server.
    let sockets =
        sizes.idle_overlays.max(sizes.history_sessions).max(sizes.fanout_sessions * sizes.fanout_clients) as u64 + 512;
    if let Some(limit) = open_files_limit()
        && limit < sockets
    {
        anyhow::bail!("open files limit is {limit}, the run needs {sockets}: raise it (`ulimit -n 65536`)");
    }
    let server_bin = match args.server_bin.clone() {
        Some(bin) => bin,
        None => std::env::current_exe()?.with_file_name("chatpulse"),
    };
    anyhow::ensure!(server_bin.exists(), "server binary {} not found (build it first)", server_bin.display());
    let work_dir = std::env::temp_dir().join(format!("chatpulse-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work_dir)?;
    let _scratch = ScratchDir(work_dir.clone());
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let ctx = Ctx { http, server_bin, work_dir: work_dir.clone(), sizes: sizes.clone() };

    let mut report = report::Report::new(args.quick, &sizes);
    let mut distributed_redis: Option<RedisServer> = None;
    for name in &args.modes {
        let mode = match prepare_mode(name, &args, &ctx).await {
            Ok(mode) => mode,
            Err(e) => {
                eprintln!("  {name}: cannot prepare: {e:#}");
                report.errors.push(format!("{name}: cannot prepare: {e:#}"));
                continue;
            }
        };
        let results = report.mode(mode.name);
        if args.scenarios.contains(&1) {
            eprintln!("[{}] 1 vote ingest", mode.name);
            results.ingest =
                Some(scenarios::ingest(&ctx, &mode, scenarios::Chat::Matching).await.map_err(|e| format!("{e:#}")));
        }
        if args.scenarios.contains(&6) {
            eprintln!("[{}] 6 non-matching chat", mode.name);
            results.non_matching =
                Some(scenarios::ingest(&ctx, &mode, scenarios::Chat::NonMatching).await.map_err(|e| format!("{e:#}")));
        }
        if args.scenarios.contains(&2) {
            eprintln!("[{}] 2 chat-to-bar latency", mode.name);
            results.latency = Some(scenarios::latency(&ctx, &mode).await.map_err(|e| format!("{e:#}")));
        }
        if args.scenarios.contains(&3) {
            eprintln!("[{}] 3 fan-out", mode.name);
            results.fanout = Some(scenarios::fanout(&ctx, &mode).await.map_err(|e| format!("{e:#}")));
        }
        if args.scenarios.contains(&4) {
            if let Some(n) = sizes.idle_small.filter(|n| *n < sizes.idle_overlays) {
                eprintln!("[{}] 4 idle cost, {n} overlays", mode.name);
                results.idle_small = Some(scenarios::idle(&ctx, &mode, n).await.map_err(|e| format!("{e:#}")));
            }
            eprintln!("[{}] 4 idle cost, {} overlays", mode.name, sizes.idle_overlays);
            results.idle = Some(scenarios::idle(&ctx, &mode, sizes.idle_overlays).await.map_err(|e| format!("{e:#}")));
        }
        if args.scenarios.contains(&7) {
            eprintln!("[{}] 7 frames during decay", mode.name);
            results.decay = Some(decay::frames_after_votes(&ctx, &mode).await.map_err(|e| format!("{e:#}")));
        }
        if args.scenarios.contains(&8) {
            eprintln!("[{}] 8 history writes", mode.name);
            results.history = Some(history::history(&ctx, &mode).await.map_err(|e| format!("{e:#}")));
        }
        if mode.name == "distributed" {
            distributed_redis = mode.redis;
            if let Err(e) = procs::drop_database(&args.pg_url, &args.database).await {
                eprintln!("  cannot drop database {}: {e:#}", args.database);
            }
        }
    }
    if args.scenarios.contains(&5) {
        eprintln!("[redis] 5 side by side");
        let redis = match distributed_redis.take() {
            Some(redis) => redis,
            None => RedisServer::start(&work_dir).await?,
        };
        report.side_by_side = Some(
            side_by_side::run(&redis.url(), redis.port, &sizes.side_by_side, sizes.ceiling_requests)
                .await
                .map_err(|e| format!("{e:#}")),
        );
    }
    drop(distributed_redis);
    report.duration = started.elapsed();
    let machine = report::Machine::probe(&args.pg_url).await;
    let text = report.render(&machine);
    println!("{text}");
    eprintln!("done in {:.0} s", started.elapsed().as_secs_f64());
    anyhow::ensure!(!report.has_errors(), "some scenarios failed (see the report)");
    Ok(())
}

async fn prepare_mode(name: &str, args: &Args, ctx: &Ctx) -> anyhow::Result<Mode> {
    let n = ctx.sizes.streamers_needed();
    let (name, storage, redis) = match name {
        "embedded" => {
            let data_dir = ctx.work_dir.join("embedded-data");
            std::fs::create_dir_all(&data_dir)?;
            ("embedded", Storage::Embedded { data_dir }, None)
        }
        "distributed" => {
            procs::recreate_database(&args.pg_url, &args.database).await?;
            let redis = RedisServer::start(&ctx.work_dir).await?;
            let database_url = procs::database_url(&args.pg_url, &args.database)?;
            ("distributed", Storage::Distributed { database_url, redis_url: redis.url() }, Some(redis))
        }
        other => anyhow::bail!("unknown mode {other:?} (embedded, distributed)"),
    };
    eprintln!("[{name}] creating {n} streamers");
    let started = Instant::now();
    let streamers = scenarios::create_streamers(&storage, n).await.context("cannot create streamers")?;
    eprintln!("  {n} streamers in {:.1} s", started.elapsed().as_secs_f64());
    Ok(Mode { name, storage, redis, streamers })
}

/// Formats a number with thousands separators.
pub fn thousands(v: f64) -> String {
    let n = v.round() as i64;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// `12.3` style milliseconds, or a dash.
pub fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), |v| if v < 10.0 { format!("{v:.2} ms") } else { format!("{v:.1} ms") })
}

/// Appends a line to a String (writing to a String cannot fail).
pub fn line(out: &mut String, text: impl std::fmt::Display) {
    let _ = writeln!(out, "{text}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_get_thousands_separators() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1_000.0), "1,000");
        assert_eq!(thousands(25_897.6), "25,898");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
        assert_eq!(thousands(-1_234.0), "-1,234");
    }

    #[test]
    fn milliseconds_keep_two_decimals_below_ten_and_one_above() {
        assert_eq!(ms(None), "–");
        assert_eq!(ms(Some(1.234)), "1.23 ms");
        assert_eq!(ms(Some(25.44)), "25.4 ms");
    }
}
