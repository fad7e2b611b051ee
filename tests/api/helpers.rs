//! `spawn_app()` and the clients tests use to talk to it: signed EventSub
//! deliveries over real HTTP and overlay clients over real WebSockets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatpulse::config::{Config, Secret, StorageMode};
use chatpulse::dev::BuiltInTwitch;
use chatpulse::domain::{BroadcasterId, DecaySpeed, Label, OverlayConfig, OverlayId, Trigger};
use chatpulse::startup::Application;
use chatpulse::store::postgres::PostgresRepository;
use chatpulse::store::sqlite::SqliteRepository;
use chatpulse::store::{NewStreamer, OverlaySetup, Repository};
use chatpulse::twitch::signature;
use futures_util::{SinkExt, StreamExt};
use tempfile::TempDir;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

pub const SECRET: &str = chatpulse::config::DEV_WEBHOOK_SECRET;

/// Which storage shape `spawn_app` starts.
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

/// The storage shape `spawn_app` starts in this test.
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
    let base = test_env("TEST_DATABASE_URL")?;
    let redis = test_env("TEST_REDIS_URL")?;
    Some((isolated_database_url(&base).await, redis))
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

/// Runs a test body with `spawn_app` set to `mode` (distributed: on a
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

/// A running service on an ephemeral port with its own data directory.
pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub http: reqwest::Client,
    pub shutdown: CancellationToken,
    pub server: Option<JoinHandle<anyhow::Result<()>>>,
    /// A second connection to the app's database, like the CLI would open.
    pub repo: Arc<dyn Repository>,
    pub data: TempDir,
    /// Set when the app runs the built-in Twitch simulator.
    pub demo: Option<chatpulse::dev::Demo>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let data = tempfile::tempdir().expect("temp dir");
    spawn_in(data, adjust).await
}

/// Starts the service on an existing data directory (embedded) or on the
/// test PostgreSQL and Redis (distributed), and waits until it is ready.
pub async fn spawn_in(data: TempDir, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let app = start_in(data, adjust).await;
    app.wait_until_ready().await;
    app
}

/// Starts the service without waiting for it to be ready (its servers may
/// not be there yet).
pub async fn spawn_unready_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    start_in(tempfile::tempdir().expect("temp dir"), adjust).await
}

async fn start_in(data: TempDir, adjust: impl FnOnce(&mut Config)) -> TestApp {
    try_start_in(data, None, adjust).await.unwrap_or_else(|e| panic!("app builds: {e:#}"))
}

/// A service on a port chosen ahead (its public URL and webhook callback
/// name it), ready. A port picked from the OS and released can be taken by
/// anything else before the service binds it: then it tries another.
pub async fn spawn_on_a_free_port(adjust: impl Fn(&mut Config, u16)) -> TestApp {
    spawn_on_a_free_port_with(None, adjust).await
}

/// [`spawn_on_a_free_port`], on the built-in simulator when `simulator` is set.
async fn spawn_on_a_free_port_with(simulator: Option<BuiltInTwitch>, adjust: impl Fn(&mut Config, u16)) -> TestApp {
    let mut attempts = 0;
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let data = tempfile::tempdir().expect("temp dir");
        match try_start_in(data, simulator.clone(), |c| adjust(c, port)).await {
            Ok(app) => {
                app.wait_until_ready().await;
                return app;
            }
            Err(e) if attempts < 5 && format!("{e:#}").contains("in use") => attempts += 1,
            Err(e) => panic!("app builds: {e:#}"),
        }
    }
}

async fn try_start_in(
    data: TempDir,
    simulator: Option<BuiltInTwitch>,
    adjust: impl FnOnce(&mut Config),
) -> anyhow::Result<TestApp> {
    chatpulse::telemetry::init("warn", chatpulse::config::LogFormat::Text);
    chatpulse::install_crypto_provider();
    let mut config = Config::for_tests(data.path().to_path_buf());
    // Apps of one test run share Redis: each is its own deployment, with its
    // own leader (tests of several instances share one key on purpose).
    config.tuning.leader_key = format!("cleanup:leader:{}", uuid::Uuid::new_v4());
    if mode() == Mode::Distributed {
        let (database_url, redis_url) = DEPLOYMENT.try_with(Clone::clone).expect("run_in sets the deployment");
        config.storage =
            StorageMode::Distributed { database_url: Secret::new(database_url), redis_url: Secret::new(redis_url) };
    }
    adjust(&mut config);
    let repo = test_repository(&config).await;
    let (app, demo) = match simulator {
        Some(builtin) => Application::build_with_simulator(config, builtin).await?,
        None => (Application::build(config).await?, None),
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], app.port()));
    let shutdown = app.shutdown_token();
    let server = tokio::spawn(app.run_until_stopped());
    Ok(TestApp {
        addr,
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
        shutdown,
        server: Some(server),
        repo,
        data,
        demo,
    })
}

/// A migrated PostgreSQL repository on `url`.
pub async fn test_repository_at(url: &str) -> Arc<dyn Repository> {
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = chatpulse::metrics::Metrics::register(&mut registry);
    let repo = PostgresRepository::new(url, 1, 4, metrics).expect("postgres pool");
    repo.migrate().await.expect("PostgreSQL cannot be migrated");
    Arc::new(repo)
}

/// A second connection to the app's durable store, as the CLI would open.
pub async fn test_repository(config: &Config) -> Arc<dyn Repository> {
    match &config.storage {
        StorageMode::Embedded { data_dir } => Arc::new(SqliteRepository::open(data_dir).expect("open repository")),
        StorageMode::Distributed { database_url, .. } => test_repository_at(database_url.expose()).await,
    }
}

/// A service wired to its own in-process Twitch simulator, like `make run`
/// (public URL and webhook callback on a reserved port).
pub async fn spawn_demo_app_with(adjust: impl Fn(&mut Config)) -> TestApp {
    let simulator = BuiltInTwitch { port: 0, first_user_id: demo_first_user_id() };
    spawn_on_a_free_port_with(Some(simulator), |c, port| {
        wire_demo(c, port);
        adjust(c);
    })
    .await
}

/// A demo app (see [`spawn_demo_app_with`]) on `port` and the data in
/// `data`, whose simulator numbers its users from `first_user_id`: started
/// twice with the same three, it is the same service with the same demo
/// streamer.
pub async fn spawn_demo_in(data: TempDir, port: u16, first_user_id: u64, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let simulator = BuiltInTwitch { port: 0, first_user_id };
    let app = try_start_in(data, Some(simulator), |c| {
        wire_demo(c, port);
        adjust(c);
    })
    .await
    .unwrap_or_else(|e| panic!("app builds: {e:#}"));
    app.wait_until_ready().await;
    app
}

/// A base for the simulator's user ids of one demo app. Apps in one test run
/// may share a database: keep their Twitch ids apart.
pub fn demo_first_user_id() -> u64 {
    2_000_000_000 + (uuid::Uuid::new_v4().as_u128() % 1_000_000_000) as u64
}

/// Wires `c` like `make run`: the service's public URL and webhook
/// callback on `port`.
fn wire_demo(c: &mut Config, port: u16) {
    c.port = port;
    c.public_url = format!("http://127.0.0.1:{port}");
    c.twitch_redirect_uri = format!("http://127.0.0.1:{port}/auth/callback");
    c.webhook_callback_url = format!("http://127.0.0.1:{port}/webhooks/eventsub");
}

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

/// A Twitch timestamp as EventSub sends it (nanoseconds, UTC).
pub fn timestamp(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap()
}

/// A `channel.chat.message` body in Twitch's exact shape.
pub fn chat_body(broadcaster: &str, chatter: &str, text: &str, source: Option<&str>) -> String {
    let source = source.map_or("null".to_owned(), |s| format!("\"{s}\""));
    serde_json::json!({
        "subscription": {
            "id": "0f3d9a52-8c71-4b9e-a1d4-6e2c7b5f3a10", "status": "enabled", "type": "channel.chat.message",
            "version": "1", "condition": {"broadcaster_user_id": broadcaster, "user_id": "99887766"},
            "transport": {"method": "conduit", "conduit_id": "e3a1c9d2-58b4-4f0e-a7c6-2d9f81b0c4aa"},
            "created_at": "2026-03-14T18:59:42.117290301Z", "cost": 0
        },
        "event": {
            "broadcaster_user_id": broadcaster, "broadcaster_user_login": "streamer", "broadcaster_user_name": "Streamer",
            "chatter_user_id": chatter, "chatter_user_login": format!("viewer{chatter}"), "chatter_user_name": "Viewer",
            "message_id": uuid::Uuid::new_v4().to_string(),
            "message": {"text": text, "fragments": [{"type": "text", "text": text, "cheermote": null, "emote": null, "mention": null}]},
            "message_type": "text", "badges": [], "cheer": null, "color": "#1E90FF", "reply": null,
            "channel_points_custom_reward_id": null,
            "source_broadcaster_user_id": serde_json::from_str::<serde_json::Value>(&source).unwrap(),
            "source_broadcaster_user_login": null, "source_broadcaster_user_name": null,
            "source_message_id": null, "source_badges": null
        }
    })
    .to_string()
}

/// One EventSub delivery; fields are public so tests can break them.
#[derive(Clone)]
pub struct Delivery {
    pub id: String,
    pub timestamp: String,
    pub message_type: String,
    pub subscription_type: Option<String>,
    pub body: Vec<u8>,
    pub secret: String,
    /// Overrides the computed signature header when set.
    pub signature: Option<String>,
    /// Header names to leave out.
    pub omit: Vec<&'static str>,
}

impl Delivery {
    pub fn notification(subscription_type: &str, body: String) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            timestamp: timestamp(OffsetDateTime::now_utc()),
            message_type: "notification".into(),
            subscription_type: Some(subscription_type.into()),
            body: body.into_bytes(),
            secret: SECRET.into(),
            signature: None,
            omit: vec![],
        }
    }

    pub fn chat(broadcaster: &str, chatter: &str, text: &str) -> Self {
        Self::notification("channel.chat.message", chat_body(broadcaster, chatter, text, None))
    }

    pub fn of_type(mut self, message_type: &str) -> Self {
        self.message_type = message_type.into();
        self
    }

    pub fn signature_header(&self) -> String {
        self.signature.clone().unwrap_or_else(|| signature::sign(&self.secret, &self.id, &self.timestamp, &self.body))
    }
}

/// The POST of one EventSub delivery to `base`'s webhook, as Twitch sends it
/// (headers in `d.omit` left out).
pub fn delivery_request(http: &reqwest::Client, base: &str, d: &Delivery) -> reqwest::RequestBuilder {
    let mut req = http.post(format!("{base}/webhooks/eventsub")).header("content-type", "application/json");
    let signature = d.signature_header();
    let mut headers = vec![
        ("Twitch-Eventsub-Message-Id", d.id.clone()),
        ("Twitch-Eventsub-Message-Retry", "0".into()),
        ("Twitch-Eventsub-Message-Type", d.message_type.clone()),
        ("Twitch-Eventsub-Message-Signature", signature),
        ("Twitch-Eventsub-Message-Timestamp", d.timestamp.clone()),
        ("Twitch-Eventsub-Subscription-Version", "1".into()),
    ];
    if let Some(t) = &d.subscription_type {
        headers.push(("Twitch-Eventsub-Subscription-Type", t.clone()));
    }
    for (name, value) in headers {
        if !d.omit.contains(&name) {
            req = req.header(name, value);
        }
    }
    req.body(d.body.clone())
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

    /// `/health/ready`: its status and JSON body.
    pub async fn readiness(&self) -> (u16, serde_json::Value) {
        let r = self.http.get(format!("{}/health/ready", self.base)).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    pub async fn add_streamer(&self) -> OverlaySetup {
        let new = NewStreamer {
            twitch_user_id: BroadcasterId::parse(&random_twitch_id()).unwrap(),
            login: "pixelpaws".into(),
            display_name: "PixelPaws".into(),
        };
        self.repo.create_streamer(&new).await.unwrap()
    }

    pub async fn add_streamer_with(&self, config: &OverlayConfig) -> OverlaySetup {
        let mut setup = self.add_streamer().await;
        setup.config = self.repo.save_config(setup.streamer.id, config).await.unwrap();
        setup
    }

    pub async fn deliver(&self, d: &Delivery) -> reqwest::Response {
        delivery_request(&self.http, &self.base, d).send().await.expect("webhook request")
    }

    /// Posts one signed chat message and returns the HTTP status.
    pub async fn chat(&self, broadcaster: &BroadcasterId, chatter: &str, text: &str) -> u16 {
        self.deliver(&Delivery::chat(broadcaster.as_str(), chatter, text)).await.status().as_u16()
    }

    /// The built-in simulator's base URL (a demo app only).
    pub fn simulator_url(&self) -> &str {
        &self.demo.as_ref().expect("a demo app (spawn_demo_app_with) runs the simulator").simulator_url
    }

    /// The demo streamer's overlay (a demo app only).
    pub fn demo_overlay(&self) -> OverlayId {
        let url = &self.demo.as_ref().expect("the demo is set up").overlay_url;
        url.rsplit('/').next().unwrap().parse().unwrap()
    }

    /// The demo streamer's Twitch id, as stored.
    pub async fn demo_broadcaster(&self) -> String {
        let setup = self.repo.overlay_setup(self.demo_overlay()).await.unwrap().expect("demo streamer stored");
        setup.streamer.twitch_user_id.to_string()
    }

    /// Types one chat message into `broadcaster`'s channel through the
    /// simulator (`POST /sim/chat`), which signs it and delivers it through
    /// the conduit's shard to our webhook. Returns the simulator's status.
    pub async fn sim_chat(&self, broadcaster: &str, chatter: &str, text: &str) -> u16 {
        let body = serde_json::json!({ "broadcaster_user_id": broadcaster, "chatter_user_id": chatter, "text": text });
        let url = format!("{}/sim/chat", self.simulator_url());
        self.http.post(url).json(&body).send().await.unwrap().status().as_u16()
    }

    /// The simulator's state dump (`GET /sim/state`).
    pub async fn sim_state(&self) -> serde_json::Value {
        let url = format!("{}/sim/state", self.simulator_url());
        self.http.get(url).send().await.unwrap().json().await.unwrap()
    }

    /// A simulated Twitch user's id by login.
    pub async fn sim_user_id(&self, login: &str) -> String {
        let state = self.sim_state().await;
        let users = state["users"].as_array().cloned().unwrap_or_default();
        let user = users.iter().find(|u| u["login"] == login).unwrap_or_else(|| panic!("no user {login} in {users:?}"));
        user["id"].as_str().unwrap().to_owned()
    }

    /// Whether the simulator would deliver chat typed in `broadcaster`'s
    /// channel to us now: an enabled `channel.chat.message` subscription on a
    /// conduit whose shard is enabled (its challenge answered).
    pub async fn sim_delivers_chat_of(&self, broadcaster: &str) -> bool {
        let state = self.sim_state().await;
        let conduits = state["conduits"].as_array().cloned().unwrap_or_default();
        let shard_enabled = |conduit_id: &serde_json::Value| {
            conduits.iter().any(|c| {
                &c["id"] == conduit_id
                    && c["shards"]
                        .as_array()
                        .is_some_and(|s| !s.is_empty() && s.iter().all(|s| s["status"] == "enabled"))
            })
        };
        state["subscriptions"].as_array().is_some_and(|subs| {
            subs.iter().any(|s| {
                s["type"] == "channel.chat.message"
                    && s["status"] == "enabled"
                    && s["condition"]["broadcaster_user_id"] == broadcaster
                    && shard_enabled(&s["transport"]["conduit_id"])
            })
        })
    }

    /// Waits until [`Self::sim_delivers_chat_of`] (an overlay of the channel
    /// is open, so the service subscribes it).
    pub async fn wait_until_sim_delivers_chat_of(&self, broadcaster: &str) {
        let subscribed = eventually(Duration::from_secs(20), || self.sim_delivers_chat_of(broadcaster)).await;
        assert!(subscribed, "the simulator never got an enabled chat subscription: {:#}", self.sim_state().await);
    }

    /// The simulator's delivery attempts of one subscription, oldest first.
    pub async fn sim_deliveries_of(&self, subscription_id: &str) -> Vec<serde_json::Value> {
        let state = self.sim_state().await;
        let all = state["deliveries"].as_array().cloned().unwrap_or_default();
        all.into_iter().filter(|d| d["subscription_id"] == subscription_id).collect()
    }

    pub fn ws_url(&self, overlay: &OverlayId) -> String {
        format!("ws://{}/ws/overlay/{overlay}", self.addr)
    }

    pub async fn connect(&self, overlay: &OverlayId) -> OverlayClient {
        let (ws, _) = tokio_tungstenite::connect_async(self.ws_url(overlay)).await.expect("websocket connects");
        OverlayClient { ws }
    }

    pub async fn try_connect(&self, overlay: &OverlayId) -> Result<OverlayClient, tungstenite::Error> {
        tokio_tungstenite::connect_async(self.ws_url(overlay)).await.map(|(ws, _)| OverlayClient { ws })
    }

    /// The value of one sample in `/metrics`, e.g.
    /// `chatpulse_votes_total{outcome="applied"}`; 0 when absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        let text = self.http.get(format!("{}/metrics", self.base)).send().await.unwrap().text().await.unwrap();
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

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Frame {
    pub value: f64,
    pub status: &'static str,
}

pub struct OverlayClient {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What an overlay client saw next.
#[derive(Debug)]
pub enum Event {
    Frame(Frame),
    Closed(Option<CloseFrame>),
}

impl OverlayClient {
    pub async fn next_event(&mut self, within: Duration) -> Option<Event> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(left, self.ws.next()).await {
                Err(_) => return None,
                Ok(None) | Ok(Some(Err(_))) => return Some(Event::Closed(None)),
                Ok(Some(Ok(Message::Text(text)))) => {
                    let v: serde_json::Value = serde_json::from_str(&text).expect("frame is JSON");
                    let status = match v["status"].as_str().expect("status") {
                        "active" => "active",
                        "live" => "live",
                        "offline" => "offline",
                        "reconnecting" => "reconnecting",
                        "disconnected" => "disconnected",
                        other => panic!("unexpected status {other}"),
                    };
                    let value = v["value"].as_f64().expect("value is a number");
                    return Some(Event::Frame(Frame { value, status }));
                }
                Ok(Some(Ok(Message::Close(frame)))) => return Some(Event::Closed(frame)),
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    pub async fn next_frame(&mut self, within: Duration) -> Option<Frame> {
        match self.next_event(within).await? {
            Event::Frame(f) => Some(f),
            Event::Closed(c) => panic!("connection closed while waiting for a frame: {c:?}"),
        }
    }

    /// Reads frames until one satisfies `pred`.
    pub async fn wait_for(&mut self, within: Duration, pred: impl Fn(&Frame) -> bool) -> Option<Frame> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let frame = self.next_frame(left).await?;
            if pred(&frame) {
                return Some(frame);
            }
        }
    }

    /// Reads (and drops) frames until the server closes the connection.
    pub async fn wait_for_close(&mut self, within: Duration) -> Option<Option<CloseFrame>> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.next_event(left).await? {
                Event::Frame(_) => continue,
                Event::Closed(frame) => return Some(frame),
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        let _ = self.ws.send(Message::Close(None)).await;
    }
}

/// Polls `f` until it returns true.
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

/// A TCP forwarder on a fixed local port that can be switched off and on, to
/// take a server away from the service and give it back.
pub struct TcpProxy {
    pub port: u16,
    target: SocketAddr,
    running: std::sync::Mutex<Option<CancellationToken>>,
}

impl TcpProxy {
    /// Reserves a free port; nothing listens on it until [`Self::start`].
    pub fn new(target: SocketAddr) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Self { port, target, running: std::sync::Mutex::new(None) }
    }

    pub async fn start(&self) {
        let listener = loop {
            match tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        let token = CancellationToken::new();
        *self.running.lock().unwrap() = Some(token.clone());
        let target = self.target;
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = token.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((mut inbound, _)) = accepted else { continue };
                let token = token.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else { return };
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                });
            }
        });
    }

    /// Stops listening and cuts every forwarded connection.
    pub fn stop(&self) {
        if let Some(token) = self.running.lock().unwrap().take() {
            token.cancel();
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
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Self { port, child: None }
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
