//! How tests start the service ([`TestApp::builder`]) and talk to it: signed
//! EventSub deliveries over real HTTP (`webhook`), overlay clients over real
//! WebSockets (`overlay`), a streamer logged in on the dashboard (`login`),
//! a Twitch simulator of its own (`twitch`) and servers a test can break
//! (`servers`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatpulse::config::{Config, Secret, StorageMode};
use chatpulse::dev::BuiltInTwitch;
use chatpulse::domain::{BroadcasterId, DecaySpeed, Label, OverlayConfig, Trigger};
use chatpulse::startup::Application;
use chatpulse::store::postgres::PostgresRepository;
use chatpulse::store::sqlite::SqliteRepository;
use chatpulse::store::{NewStreamer, OverlaySetup, Repository};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[cfg(feature = "testcontainers")]
mod containers;
mod login;
mod overlay;
mod servers;
mod twitch;
mod webhook;

pub use login::*;
pub use overlay::*;
pub use servers::*;
pub use twitch::*;
pub use webhook::*;

// ------------------------------------------------------ the storage shape

/// Which storage shape a test starts the service in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Embedded,
    Distributed,
}

tokio::task_local! {
    static MODE: Mode;
    /// The distributed test's own deployment: its PostgreSQL URL and Redis URL.
    static DEPLOYMENT: (String, String);
}

/// The storage shape this test starts the service in (see [`run_in`]).
pub fn mode() -> Mode {
    MODE.try_with(|m| *m).unwrap_or(Mode::Embedded)
}

/// A new deployment's PostgreSQL and Redis URLs, or `None` (the caller skips,
/// loudly) when `TEST_DATABASE_URL`/`TEST_REDIS_URL` are unset.
///
/// Every call gets a fresh, empty PostgreSQL schema: tests run at once, and a
/// service's background jobs (token checks, EventSub reconciliation, the bot
/// account) act on every streamer in its database, so two tests that shared
/// one would act on each other's streamers with the wrong Twitch. Instances
/// of one test share a deployment by sharing these URLs. Redis is shared: all
/// its keys are per overlay or per Twitch user, which tests never share.
pub async fn distributed_urls() -> Option<(String, String)> {
    let (base, redis) = test_servers().await?;
    Some((isolated_database_url(&base).await, redis))
}

/// The test PostgreSQL (its base URL) and Redis.
async fn test_servers() -> Option<(String, String)> {
    Some((test_server_url("TEST_DATABASE_URL").await?, test_server_url("TEST_REDIS_URL").await?))
}

/// A test server's URL: `TEST_DATABASE_URL` (a base for
/// [`isolated_database_url`]) and `TEST_REDIS_URL` from the environment or,
/// with the `testcontainers` feature and both unset, from containers this
/// test binary starts once; any other variable as [`test_env`] reads it.
#[cfg_attr(not(feature = "testcontainers"), allow(clippy::unused_async))]
pub async fn test_server_url(variable: &str) -> Option<String> {
    #[cfg(feature = "testcontainers")]
    if containers::wanted() {
        let (database, redis) = containers::urls().await;
        match variable {
            "TEST_DATABASE_URL" => return Some(database),
            "TEST_REDIS_URL" => return Some(redis),
            _ => {}
        }
    }
    test_env(variable)
}

/// A test server's URL (or tool's path) from the environment. Unset: `None`,
/// and the caller skips, saying so — unless `TEST_REQUIRE_ALL` is set, as
/// `make test` and CI set it: there a missing variable fails the test, so
/// no suite is ever skipped silently.
pub fn test_env(variable: &str) -> Option<String> {
    match std::env::var(variable) {
        Ok(value) if !value.trim().is_empty() => Some(value),
        _ if std::env::var_os("TEST_REQUIRE_ALL").is_some() => {
            panic!("{variable} is not set, and TEST_REQUIRE_ALL says every suite must run")
        }
        _ => None,
    }
}

/// `base` (the test database) with a new, empty schema of its own: a fresh
/// database for one test, at the cost of a `CREATE SCHEMA`. Panics when the
/// server is unreachable: a set URL must work.
pub async fn isolated_database_url(base: &str) -> String {
    let (client, connection) = tokio_postgres::connect(base, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("TEST_DATABASE_URL is set but PostgreSQL is unreachable: {e}"));
    tokio::spawn(connection);
    let schema = format!("test_{}", uuid::Uuid::new_v4().simple());
    client.batch_execute(&format!("CREATE SCHEMA {schema}")).await.expect("create the test schema");
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}options=-c%20search_path%3D{schema}")
}

/// This distributed test's PostgreSQL and Redis URLs (see [`run_in`]);
/// `None` in embedded mode.
pub fn deployment() -> Option<(String, String)> {
    if mode() != Mode::Distributed {
        return None;
    }
    DEPLOYMENT.try_with(Clone::clone).ok()
}

/// Runs a test body with apps started in `mode` (distributed: on a
/// deployment of its own, see [`distributed_urls`]).
pub async fn run_in(mode: Mode, body: impl std::future::Future<Output = ()>) {
    match mode {
        Mode::Embedded => MODE.scope(mode, body).await,
        Mode::Distributed => match distributed_urls().await {
            Some(urls) => MODE.scope(mode, DEPLOYMENT.scope(urls, body)).await,
            None => eprintln!("SKIPPED: TEST_DATABASE_URL/TEST_REDIS_URL are not set (make test sets them)"),
        },
    }
}

// ------------------------------------------------------------ the service

/// A running service on a loopback port.
pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    /// The internal listener (`METRICS_PORT`): `/metrics`, readiness details.
    pub metrics_base: String,
    pub http: reqwest::Client,
    pub shutdown: CancellationToken,
    pub server: Option<JoinHandle<anyhow::Result<()>>>,
    /// A second connection to the app's database, like the CLI would open.
    pub repo: Arc<dyn Repository>,
    /// The embedded store's data directory (`DATA_DIR`).
    pub data_dir: PathBuf,
    /// Set when the app runs the built-in Twitch simulator.
    pub demo: Option<chatpulse::dev::Demo>,
    /// The built-in simulator's first user id (a demo app only).
    first_user_id: Option<u64>,
    /// Removed when the app is dropped (unless another app's data is used).
    _data: Option<TempDir>,
}

/// How a test starts the service; every test starts it through this.
///
/// ```ignore
/// TestApp::builder().start().await                        // embedded, or the test's deployment
/// TestApp::builder().configure(|c| c.x = y).start().await  // with settings of its own
/// TestApp::builder().demo().start().await                 // like `make run`: its own simulator
/// TestApp::builder().twitch(&twitch).start().await        // on a standalone simulator
/// TestApp::builder().demo().restart_of(&app).start().await // `app` again: same port and data
/// ```
///
/// Apps are ready when `start` returns unless [`Builder::unready`] says
/// otherwise. Settings apply in this order: the test configuration, the
/// storage shape ([`run_in`], then [`Builder::distributed`]), the Twitch
/// wiring with the app's port, then each [`Builder::configure`] step.
#[must_use]
pub struct Builder<'a> {
    twitch: Wiring<'a>,
    port: Option<u16>,
    data_dir: Option<PathBuf>,
    first_user_id: Option<u64>,
    storage: Option<(String, String)>,
    leader_key: Option<String>,
    ready: bool,
    configure: Vec<ConfigChange<'a>>,
}

/// One [`Builder::configure`] step.
type ConfigChange<'a> = Box<dyn Fn(&mut Config) + 'a>;

impl TestApp {
    /// The start of every test's service (see [`Builder`]).
    pub fn builder<'a>() -> Builder<'a> {
        Builder {
            twitch: Wiring::None,
            port: None,
            data_dir: None,
            first_user_id: None,
            storage: None,
            leader_key: None,
            ready: true,
            configure: Vec::new(),
        }
    }
}

impl<'a> Builder<'a> {
    /// On its own built-in Twitch simulator, like `make run` (with the demo
    /// streamer and the login shortcut); the public URL and the webhook
    /// callback name the app's port.
    pub fn demo(mut self) -> Self {
        self.twitch = Wiring::BuiltIn;
        self
    }

    /// On a standalone simulator (see [`Twitch`]): its Helix, OAuth and
    /// EventSub WebSocket, its bot account; the webhook callback names the
    /// app's port.
    pub fn twitch(mut self, twitch: &'a Twitch) -> Self {
        self.twitch = Wiring::Standalone(twitch);
        self
    }

    /// On the simulator a demo app runs, for logins and token checks only:
    /// no bot account, so EventSub stays with that app.
    pub fn twitch_of(mut self, demo: &TestApp) -> Self {
        self.twitch = Wiring::LoginsOnly(demo.simulator_endpoints());
        self
    }

    /// Listens on `port` (chosen ahead by the test; not retried).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// On `app`'s embedded data (a distributed test's apps share their
    /// deployment anyway); `app` keeps owning it.
    pub fn data_of(mut self, app: &TestApp) -> Self {
        self.data_dir = Some(app.data_dir.clone());
        self
    }

    /// `app` started again: its port, its data and, for a demo app, its
    /// simulator's user ids (so it finds the same demo streamer).
    pub fn restart_of(self, app: &TestApp) -> Self {
        let mut builder = self.data_of(app).port(app.addr.port());
        builder.first_user_id = app.first_user_id;
        builder
    }

    /// On this PostgreSQL and Redis (a test's own servers or proxies).
    pub fn distributed(mut self, database_url: &str, redis_url: &str) -> Self {
        self.storage = Some((database_url.to_owned(), redis_url.to_owned()));
        self
    }

    /// Competes for this leader lease. By default every app is its own
    /// deployment with a leader lease of its own; instances of one
    /// deployment share one.
    pub fn leader_key(mut self, key: &str) -> Self {
        self.leader_key = Some(key.to_owned());
        self
    }

    /// One more change to the configuration (applied last, in order; again
    /// if the start is retried on another port, hence `Fn`).
    pub fn configure(mut self, change: impl Fn(&mut Config) + 'a) -> Self {
        self.configure.push(Box::new(change));
        self
    }

    /// Returns as soon as the service runs, without waiting for
    /// `/health/ready` (its servers may not be there yet).
    pub fn unready(mut self) -> Self {
        self.ready = false;
        self
    }

    /// Starts the service. A port picked here for the wiring is free when
    /// picked but may be taken before the service binds it: then another is
    /// tried.
    pub async fn start(self) -> TestApp {
        chatpulse::telemetry::init("warn", chatpulse::config::LogFormat::Text);
        chatpulse::install_crypto_provider();
        let pick_port = self.port.is_none() && self.twitch.names_the_port();
        let mut attempts = 0;
        let app = loop {
            let port = self.port.unwrap_or_else(|| if pick_port { free_port() } else { 0 });
            match self.try_start(port).await {
                Ok(app) => break app,
                Err(e) if pick_port && attempts < 5 && format!("{e:#}").contains("in use") => attempts += 1,
                Err(e) => panic!("app builds: {e:#}"),
            }
        };
        if self.ready {
            app.wait_until_ready().await;
        }
        app
    }

    async fn try_start(&self, port: u16) -> anyhow::Result<TestApp> {
        let scratch = match &self.data_dir {
            Some(_) => None,
            None => Some(tempfile::tempdir().expect("temp dir")),
        };
        let data_dir = self.data_dir.clone().unwrap_or_else(|| scratch.as_ref().unwrap().path().to_path_buf());
        let config = self.config(&data_dir, port);
        let repo = test_repository(&config, self.ready).await;
        let first_user_id = self.first_user_id.unwrap_or_else(demo_first_user_id);
        let (app, demo) = match self.twitch {
            Wiring::BuiltIn => {
                let builtin = BuiltInTwitch { port: 0, first_user_id };
                Application::build_with_simulator(config, builtin).await?
            }
            _ => (Application::build(config).await?, None),
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], app.port()));
        let metrics_base = format!("http://127.0.0.1:{}", app.metrics_port());
        let shutdown = app.shutdown_token();
        let server = tokio::spawn(app.run_until_stopped());
        Ok(TestApp {
            addr,
            base: format!("http://{addr}"),
            metrics_base,
            http: reqwest::Client::new(),
            shutdown,
            server: Some(server),
            repo,
            data_dir,
            first_user_id: matches!(self.twitch, Wiring::BuiltIn).then_some(first_user_id),
            demo,
            _data: scratch,
        })
    }

    fn config(&self, data_dir: &std::path::Path, port: u16) -> Config {
        let mut config = Config::for_tests(data_dir.to_path_buf());
        config.tuning.leader_key =
            self.leader_key.clone().unwrap_or_else(|| format!("cleanup:leader:{}", uuid::Uuid::new_v4()));
        let storage = match (&self.storage, deployment()) {
            (Some(urls), _) => Some(urls.clone()),
            (None, Some(urls)) => Some(urls),
            (None, None) if mode() == Mode::Distributed => panic!("run_in sets the deployment"),
            (None, None) => None,
        };
        if let Some((database_url, redis_url)) = storage {
            config.storage =
                StorageMode::Distributed { database_url: Secret::new(database_url), redis_url: Secret::new(redis_url) };
        }
        config.port = port;
        self.twitch.wire(&mut config, port);
        for change in &self.configure {
            change(&mut config);
        }
        config
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A base for the simulator's user ids of one app. Apps in one test run
/// may share a database: keep their Twitch ids apart.
fn demo_first_user_id() -> u64 {
    2_000_000_000 + (uuid::Uuid::new_v4().as_u128() % 1_000_000_000) as u64
}

/// A connection to the app's durable store, as the CLI would open. It
/// applies the migrations first when it can (the service does too; then
/// they are already there); an unready app's PostgreSQL may not be there yet.
async fn test_repository(config: &Config, must_migrate: bool) -> Arc<dyn Repository> {
    match &config.storage {
        StorageMode::Embedded { data_dir } => Arc::new(SqliteRepository::open(data_dir).expect("open repository")),
        StorageMode::Distributed { database_url, .. } => postgres_repository(database_url.expose(), must_migrate).await,
    }
}

/// A PostgreSQL repository on `url`, migrated first (a failure to migrate
/// panics when `must_migrate`).
pub async fn postgres_repository(url: &str, must_migrate: bool) -> Arc<dyn Repository> {
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = chatpulse::metrics::Metrics::register(&mut registry);
    let repo = PostgresRepository::new(url, 1, 4, metrics).expect("postgres pool");
    match repo.migrate().await {
        Err(e) if must_migrate => panic!("PostgreSQL cannot be migrated: {e:#}"),
        _ => Arc::new(repo),
    }
}

impl TestApp {
    /// Waits until `/health/ready` answers 200 with every dependency check
    /// passing (migrations applied, Redis functions loaded, signals heard):
    /// readiness alone only says the instance takes traffic.
    pub async fn wait_until_ready(&self) {
        let url = format!("{}/health/ready", self.base);
        let ready = eventually(Duration::from_secs(20), || async {
            let Ok(r) = self.http.get(&url).send().await else { return false };
            r.status() == 200 && r.json::<serde_json::Value>().await.is_ok_and(|b| b["dependencies_ok"] == true)
        })
        .await;
        let body = match self.http.get(&url).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(e) => e.to_string(),
        };
        assert!(ready, "the service never became ready: {body}");
    }

    /// `/health/ready` with its details (the internal listener's): its
    /// status and JSON body.
    pub async fn readiness(&self) -> (u16, serde_json::Value) {
        let r = self.http.get(format!("{}/health/ready", self.metrics_base)).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    /// A streamer on the classic meter (+10 a vote, words matched as the
    /// whole message: `OverlayConfig::classic`), whose values tests can
    /// state exactly. [`Self::add_new_streamer`] has a new streamer's
    /// defaults (the balance meter).
    pub async fn add_streamer(&self) -> OverlaySetup {
        self.add_streamer_with(&OverlayConfig::classic()).await
    }

    /// A streamer as the CLI or a first login creates one: the defaults.
    pub async fn add_new_streamer(&self) -> OverlaySetup {
        let new = NewStreamer {
            twitch_user_id: BroadcasterId::parse(&random_twitch_id()).unwrap(),
            login: "pixelpaws".into(),
            display_name: "PixelPaws".into(),
        };
        self.repo.create_streamer(&new).await.unwrap()
    }

    pub async fn add_streamer_with(&self, config: &OverlayConfig) -> OverlaySetup {
        let mut setup = self.add_new_streamer().await;
        setup.config = self.repo.save_config(setup.streamer.id, config).await.unwrap();
        setup
    }

    /// The value of one sample in `/metrics`, e.g.
    /// `chatpulse_votes_total{outcome="applied"}`; 0 when absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        let text = self.http.get(format!("{}/metrics", self.metrics_base)).send().await.unwrap().text().await.unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(sample).and_then(|rest| rest.strip_prefix(' ')))
            .map_or(0.0, |v| v.trim().parse().unwrap())
    }

    pub async fn votes(&self, outcome: &str) -> f64 {
        self.metric(&format!("chatpulse_votes_total{{outcome=\"{outcome}\"}}")).await
    }

    /// Triggers a graceful shutdown and waits for the server to finish.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        match self.server.take() {
            Some(server) => tokio::time::timeout(Duration::from_secs(15), server).await.expect("stops in time")?,
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

// ------------------------------------------------------------------ misc

pub fn random_twitch_id() -> String {
    let n = uuid::Uuid::new_v4().as_u128() % 9_000_000_000 + 1_000_000_000;
    n.to_string()
}

pub fn config(for_t: &str, against: &str, left: &str, right: &str, decay: f64) -> OverlayConfig {
    OverlayConfig::new(
        Trigger::parse(for_t).unwrap(),
        Trigger::parse(against).unwrap(),
        Label::parse(left).unwrap(),
        Label::parse(right).unwrap(),
        DecaySpeed::new(decay).unwrap(),
    )
    .unwrap()
}

/// Polls `f` until it returns true, for end-to-end waits on something the
/// service does in its own time (a metric, a page, Twitch's state); false
/// if it never did within `within`.
pub async fn eventually<F, Fut>(within: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
