//! Servers a test can take away and give back: a switchable TCP proxy in
//! front of PostgreSQL, a private `redis-server` process.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{eventually, free_port};

/// A TCP forwarder on a fixed local port that can be switched off and on, to
/// take a server away from the service and give it back.
pub struct TcpProxy {
    pub port: u16,
    target: SocketAddr,
    /// The accepting task and what stops it, while it runs.
    running: std::sync::Mutex<Option<(CancellationToken, JoinHandle<()>)>>,
    /// The task that was stopped last: its listener is closed once it ends.
    stopped: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl TcpProxy {
    /// Reserves a free port; nothing listens on it until [`Self::start`].
    pub fn new(target: SocketAddr) -> Self {
        Self { port: free_port(), target, running: Default::default(), stopped: Default::default() }
    }

    pub async fn start(&self) {
        // The port is free again once the last listener is gone.
        let stopped = self.stopped.lock().unwrap().take();
        if let Some(task) = stopped {
            let _ = task.await;
        }
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap_or_else(|e| panic!("the proxy cannot listen on its port {} again: {e}", self.port));
        let token = CancellationToken::new();
        let target = self.target;
        let cancelled = token.clone();
        let task = tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = cancelled.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((mut inbound, _)) = accepted else { continue };
                let token = cancelled.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else { return };
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                });
            }
        });
        *self.running.lock().unwrap() = Some((token, task));
    }

    /// Stops listening and cuts every forwarded connection.
    pub fn stop(&self) {
        if let Some((token, task)) = self.running.lock().unwrap().take() {
            token.cancel();
            *self.stopped.lock().unwrap() = Some(task);
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A private `redis-server` process, so a test can stop and restart Redis
/// without disturbing the shared one.
pub struct RedisServer {
    pub port: u16,
    child: Option<std::process::Child>,
}

/// `redis-server` arguments for a default user that may do everything but
/// `FUNCTION` (so it cannot load the library), like a locked-down managed Redis.
pub const NO_FUNCTION_LOAD: &[&str] = &["--user", "default", "on", "nopass", "~*", "&*", "+@all", "-function"];

impl RedisServer {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts a server with extra `redis-server` arguments.
    pub async fn start_with(args: &[&str]) -> Self {
        let mut server = Self::unstarted();
        server.restart_with(args).await;
        server
    }

    /// A free port with nothing listening on it yet: connections are
    /// refused until [`Self::restart`] starts the server there.
    pub fn unstarted() -> Self {
        Self { port: free_port(), child: None }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts a fresh (empty) server on the same port.
    pub async fn restart(&mut self) {
        self.restart_with(&[]).await;
    }

    /// Starts a fresh (empty) server on the same port with extra arguments.
    pub async fn restart_with(&mut self, args: &[&str]) {
        self.kill();
        let dir = std::env::temp_dir();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .args(args)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test-services.sh installs it)");
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        assert!(eventually(Duration::from_secs(10), || async { TcpStream::connect(addr).await.is_ok() }).await);
    }

    /// Kills the server at once, like a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs one `redis-cli` command as the default user; its output.
    pub async fn cli(&self, args: &[&str]) -> String {
        redis_cli(&self.url(), args).await
    }

    /// `INFO commandstats` as command → calls.
    pub async fn command_calls(&self) -> std::collections::HashMap<String, u64> {
        self.cli(&["info", "commandstats"])
            .await
            .lines()
            .filter_map(|l| {
                let rest = l.strip_prefix("cmdstat_")?;
                let (name, stats) = rest.split_once(':')?;
                let calls = stats.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
                Some((name.to_owned(), calls.parse().ok()?))
            })
            .collect()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs one `redis-cli` command against `url`; its output, trimmed.
pub async fn redis_cli(url: &str, args: &[&str]) -> String {
    let out = tokio::process::Command::new("redis-cli").arg("-u").arg(url).args(args).output().await.unwrap();
    assert!(out.status.success(), "redis-cli {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
