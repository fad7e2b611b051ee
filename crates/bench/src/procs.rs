//! The processes a benchmark run owns: the `chatpulse` server under test and a
//! private `redis-server`, both killed when their handle is dropped (also when
//! the run fails or is interrupted), plus the scratch PostgreSQL database and
//! the `/proc` readings (CPU time, RSS) that the report is built from.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A free TCP port on loopback (bound and released at once).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// CPU time and memory of one process, from `/proc/<pid>`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcStats {
    /// User + system CPU time so far, in seconds.
    pub cpu_seconds: f64,
    /// Resident set size now, in KiB.
    pub rss_kib: u64,
    /// Peak resident set size, in KiB.
    pub hwm_kib: u64,
}

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

pub fn proc_stats(pid: u32) -> anyhow::Result<ProcStats> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("process {pid}"))?;
    // Fields after the command name (which may contain spaces) start with
    // the state (field 3); utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("malformed /proc/<pid>/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    let cpu_seconds = (ticks(11) + ticks(12)) / clock_ticks();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(ProcStats { cpu_seconds, rss_kib: kib("VmRSS:"), hwm_kib: kib("VmHWM:") })
}

/// A child process that is killed when dropped.
struct Guard {
    child: Child,
    what: &'static str,
}

impl Guard {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        eprintln!("  stopped {} (pid {})", self.what, self.child.id());
    }
}

async fn wait_for_port(addr: SocketAddr, guard: &mut Guard, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(status) = guard.exited() {
            bail!("{} exited during start-up: {status}", guard.what);
        }
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bail!("{} did not listen on {addr} within {within:?}", guard.what)
}

/// A private, empty `redis-server` on a free port: no persistence, so its
/// `INFO commandstats` count only this run.
pub struct RedisServer {
    guard: Guard,
    pub port: u16,
}

impl RedisServer {
    pub async fn start(dir: &Path) -> anyhow::Result<Self> {
        let port = free_port()?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "no", "--loglevel", "warning"])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot run redis-server (is it installed?)")?;
        let mut guard = Guard { child, what: "redis-server" };
        wait_for_port(SocketAddr::from(([127, 0, 0, 1], port)), &mut guard, Duration::from_secs(10)).await?;
        eprintln!("  redis-server on port {port} (pid {})", guard.pid());
        Ok(Self { guard, port })
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }
}

/// Storage of the server under test, as environment variables.
#[derive(Debug, Clone)]
pub enum Storage {
    Embedded { data_dir: PathBuf },
    Distributed { database_url: String, redis_url: String },
}

/// The webhook secret the child is started with.
pub const WEBHOOK_SECRET: &str = "chatpulse-bench-webhook-secret";

/// A `chatpulse serve` child process on a free port.
pub struct Server {
    guard: Guard,
    pub port: u16,
    /// `METRICS_PORT`: where its `/metrics` is read.
    pub metrics_port: u16,
    pub log: PathBuf,
}

impl Server {
    /// Starts the server and waits until `/health/ready` answers 200.
    ///
    /// The environment is cleared and set explicitly: overlay connection
    /// limits and vote rate limits are raised so that the harness measures
    /// the service rather than its abuse protections, and Twitch is
    /// configured with a client id but no `BOT_USER_ID`, so nothing ever
    /// leaves the machine (no EventSub subscriptions, no simulator).
    pub async fn start(bin: &Path, storage: &Storage, work_dir: &Path, http: &reqwest::Client) -> anyhow::Result<Self> {
        let (port, metrics_port) = (free_port()?, free_port()?);
        let log = work_dir.join(format!("server-{port}.log"));
        let log_file = std::fs::File::create(&log)?;
        let mut command = Command::new(bin);
        command
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            // The service reads `.env` from its working directory: use one without.
            .current_dir(work_dir)
            .stdout(Stdio::from(log_file.try_clone()?))
            .stderr(Stdio::from(log_file));
        for (name, value) in server_env(port, metrics_port, storage) {
            command.env(name, value);
        }
        let child = command.spawn().with_context(|| format!("cannot run {}", bin.display()))?;
        let mut guard = Guard { child, what: "chatpulse server" };
        wait_for_port(SocketAddr::from(([127, 0, 0, 1], port)), &mut guard, Duration::from_secs(30))
            .await
            .with_context(|| format!("see {}", log.display()))?;
        let server = Self { guard, port, metrics_port, log };
        server.wait_ready(http).await?;
        Ok(server)
    }

    async fn wait_ready(&self, http: &reqwest::Client) -> anyhow::Result<()> {
        let url = format!("{}/health/ready", self.base());
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = String::new();
        while Instant::now() < deadline {
            match http.get(&url).send().await {
                Ok(r) if r.status() == 200 => return Ok(()),
                Ok(r) => last = r.text().await.unwrap_or_default(),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("the server never became ready: {last} (log: {})", self.log.display())
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The internal listener, where `/metrics` is served.
    pub fn metrics_base(&self) -> String {
        format!("http://127.0.0.1:{}", self.metrics_port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    pub fn stats(&self) -> anyhow::Result<ProcStats> {
        proc_stats(self.pid())
    }
}

/// The environment of the server under test (documented in docs/PERFORMANCE.md).
pub fn server_env(port: u16, metrics_port: u16, storage: &Storage) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("APP_ENV", "development".to_owned()),
        ("PORT", port.to_string()),
        ("METRICS_PORT", metrics_port.to_string()),
        ("PUBLIC_URL", format!("http://127.0.0.1:{port}")),
        ("LOG_LEVEL", "error".to_owned()),
        ("LOG_FORMAT", "text".to_owned()),
        ("SHUTDOWN_TIMEOUT", "5s".to_owned()),
        ("WEBHOOK_SECRET", WEBHOOK_SECRET.to_owned()),
        ("TWITCH_CLIENT_ID", "chatpulse-bench".to_owned()),
        ("TWITCH_CLIENT_SECRET", "chatpulse-bench-unused".to_owned()),
        // Unreachable on purpose (port 9, discard): nothing may leave loopback.
        ("TWITCH_API_URL", "http://127.0.0.1:9/helix".to_owned()),
        ("TWITCH_AUTH_URL", "http://127.0.0.1:9/oauth2".to_owned()),
        ("MAX_WEBSOCKET_CONNECTIONS", "60000".to_owned()),
        ("MAX_CONNECTIONS_PER_IP", "60000".to_owned()),
        ("MAX_OVERLAY_CONNECTIONS_PER_IP", "60000".to_owned()),
        // Every client of the bench comes from 127.0.0.1.
        ("MAX_HTTP_CONNECTIONS", "70000".to_owned()),
        ("MAX_HTTP_CONNECTIONS_PER_IP", "70000".to_owned()),
        ("CONNECTION_RATE_PER_IP", "100000/s".to_owned()),
        ("CONNECTION_RATE_BURST", "100000".to_owned()),
        ("VOTE_RATE_LIMIT_CAPACITY", "1000000".to_owned()),
        ("VOTE_RATE_LIMIT_RATE", "100000000/min".to_owned()),
    ];
    match storage {
        Storage::Embedded { data_dir } => env.push(("DATA_DIR", data_dir.to_string_lossy().into_owned())),
        Storage::Distributed { database_url, redis_url } => {
            env.push(("DATABASE_URL", database_url.clone()));
            env.push(("REDIS_URL", redis_url.clone()));
            env.push(("DB_MAX_CONNS", "16".to_owned()));
        }
    }
    env
}

/// Drops and re-creates the benchmark's own database. Refuses the test
/// suite's database.
pub async fn recreate_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    if name == "chatpulse_test" || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        bail!("refusing to use database {name:?} for benchmarks");
    }
    let (client, connection) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {admin_url}"))?;
    let task = tokio::spawn(connection);
    client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await?;
    client.batch_execute(&format!("CREATE DATABASE {name}")).await?;
    drop(client);
    let _ = task.await;
    Ok(())
}

pub async fn drop_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    if name == "chatpulse_test" {
        bail!("refusing to drop database {name:?}");
    }
    let (client, connection) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls).await?;
    let task = tokio::spawn(connection);
    client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await?;
    drop(client);
    let _ = task.await;
    Ok(())
}

/// `postgres://…/postgres` → the same server with database `name`.
pub fn database_url(admin_url: &str, name: &str) -> anyhow::Result<String> {
    let (server, _) = admin_url.rsplit_once('/').context("the PostgreSQL URL has no database part")?;
    Ok(format!("{server}/{name}"))
}
