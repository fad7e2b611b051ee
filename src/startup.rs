//! The composition root: builds every component from a [`Config`] and runs
//! the service until it is told to stop. `main` and the integration tests
//! both start the service through [`Application`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::app::AppSettings;
use crate::app::eventsub::{EventSub, EventSubSettings, Inbound};
use crate::app::signals::SignalBus;
use crate::app::{App, SessionManager, SessionPorts, SessionSettings};
use crate::broadcast::{BroadcastTiming, Broadcaster};
use crate::config::{Config, StorageMode};
use crate::crypto::TokenCipher;
use crate::engine::VoteEngine;
use crate::http::limits::ConnectionLimits;
use crate::http::{self, AppState};
use crate::metrics::Metrics;
use crate::secret::Secret;
use crate::store::memory::MemoryLiveStore;
use crate::store::postgres::PostgresRepository;
use crate::store::redis::RedisLiveStore;
use crate::store::sqlite::SqliteRepository;
use crate::store::{LiveStore, Repository, VoteLimits};
use crate::twitch::client::TwitchClient;
use crate::twitch::oauth::TwitchOAuth;
use crate::twitch::retry::RetryPolicy;

/// Opens the durable store for a one-shot command (CLI): migrations are
/// applied first, and an unreachable server is an error, not a retry.
pub async fn open_repository(config: &Config) -> anyhow::Result<Arc<dyn Repository>> {
    match &config.storage {
        StorageMode::Embedded { data_dir } => {
            let data_dir = data_dir.clone();
            let repo = tokio::task::spawn_blocking(move || SqliteRepository::open(&data_dir)).await??;
            Ok(Arc::new(repo))
        }
        StorageMode::Distributed { database_url, .. } => {
            let mut registry = Registry::default();
            let metrics = Metrics::register(&mut registry);
            let repo = PostgresRepository::new(database_url.expose(), 1, 2, metrics)?;
            repo.migrate().await.context("DATABASE_URL: cannot apply migrations")?;
            Ok(Arc::new(repo))
        }
    }
}

fn vote_limits(config: &Config) -> VoteLimits {
    VoteLimits {
        bucket_capacity: config.vote_rate_limit_capacity,
        bucket_refill_per_minute: config.vote_rate_limit_rate,
        ..VoteLimits::default()
    }
}

/// The stores of the configured shape, plus the background tasks that keep
/// them healthy (connecting, migrating, loading Redis functions).
struct Stores {
    repo: Arc<dyn Repository>,
    live: Arc<dyn LiveStore>,
    migrations: Arc<Mutex<Result<(), String>>>,
    tasks: Vec<JoinHandle<()>>,
}

async fn open_stores(config: &Config, metrics: &Metrics) -> anyhow::Result<Stores> {
    match &config.storage {
        StorageMode::Embedded { .. } => Ok(Stores {
            repo: open_repository(config).await?,
            live: Arc::new(MemoryLiveStore::new(vote_limits(config))),
            migrations: Arc::new(Mutex::new(Ok(()))),
            tasks: vec![],
        }),
        StorageMode::Distributed { database_url, redis_url } => {
            // Neither server needs to be up yet: both are retried in the
            // background and readiness says what is missing.
            let pg = Arc::new(PostgresRepository::new(
                database_url.expose(),
                config.db_min_conns,
                config.db_max_conns,
                metrics.clone(),
            )?);
            let migrations = Arc::new(Mutex::new(Err("migrations not applied yet".to_owned())));
            let migrate =
                tokio::spawn(migrate_until_done(Arc::clone(&pg), Arc::clone(&migrations), config.db_min_conns));
            let redis = RedisLiveStore::new(redis_url.expose(), vote_limits(config), metrics.clone())?;
            let maintain = tokio::spawn(Arc::clone(&redis).maintain());
            Ok(Stores { repo: pg, live: redis, migrations, tasks: vec![migrate, maintain] })
        }
    }
}

/// Applies PostgreSQL migrations, retrying with backoff until they succeed.
async fn migrate_until_done(pg: Arc<PostgresRepository>, status: Arc<Mutex<Result<(), String>>>, min_conns: usize) {
    let mut delay = Duration::from_millis(250);
    loop {
        match pg.migrate().await {
            Ok(()) => {
                *status.lock().unwrap_or_else(|p| p.into_inner()) = Ok(());
                if let Err(e) = pg.warm_up(min_conns).await {
                    tracing::warn!(error = %e, "could not open the minimum number of database connections");
                }
                return;
            }
            Err(e) => {
                let message = format!("PostgreSQL migrations pending: {e:#}");
                tracing::warn!(retry_in = ?delay, "{message}");
                *status.lock().unwrap_or_else(|p| p.into_inner()) = Err(message);
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// How this process reaches Twitch: the real one (from the configuration)
/// or a simulator (the development wiring in `crate::dev`).
#[derive(Debug, Clone)]
pub(crate) struct TwitchEndpoints {
    /// Helix (`TWITCH_API_URL`).
    pub api_url: String,
    /// OAuth (`TWITCH_AUTH_URL`): the authorize page browsers are sent to and
    /// the token endpoint.
    pub auth_url: String,
    /// The EventSub WebSocket (`TWITCH_EVENTSUB_WS_URL`).
    pub ws_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// The bot account that reads chat (`BOT_USER_ID`); its own messages
    /// never vote. `None`: chat cannot be subscribed to.
    pub bot_user_id: Option<String>,
}

impl TwitchEndpoints {
    /// The configured Twitch application, if there is one.
    fn from_config(config: &Config) -> Option<Self> {
        let (client_id, client_secret) = (config.twitch_client_id.as_ref()?, config.twitch_client_secret.as_ref()?);
        Some(Self {
            api_url: config.twitch_api_url.clone(),
            auth_url: config.twitch_auth_url.clone(),
            ws_url: config.twitch_eventsub_ws_url.clone(),
            client_id: client_id.clone(),
            client_secret: client_secret.clone(),
            bot_user_id: config.bot_user_id.clone(),
        })
    }
}

/// Twitch as this process sees it; all `None` without a Twitch application.
#[derive(Default)]
struct Twitch {
    eventsub: Option<Arc<EventSub>>,
    oauth: Option<Arc<TwitchOAuth>>,
    bot_user_id: Option<String>,
}

/// What the EventSub manager needs besides its Twitch client.
struct EventSubDeps<'a> {
    config: &'a Config,
    repo: &'a Arc<dyn Repository>,
    live: &'a Arc<dyn LiveStore>,
    metrics: &'a Metrics,
    instance_id: &'a str,
}

impl EventSubDeps<'_> {
    fn build(&self, client: Arc<TwitchClient>, bot_user_id: &str, ws_url: &str) -> Arc<EventSub> {
        let c = self.config;
        let settings = EventSubSettings {
            transport: c.eventsub_transport,
            callback_url: c.webhook_callback_url.clone(),
            secret: c.webhook_secret.expose().to_owned(),
            bot_user_id: bot_user_id.to_owned(),
            ws_url: ws_url.to_owned(),
            instance_id: self.instance_id.to_owned(),
            leader_key: c.tuning.leader_key.clone(),
            leader_ttl: c.tuning.leader_ttl,
            leader_renew: c.tuning.leader_renew,
            reconcile_interval: c.tuning.eventsub_reconcile_interval,
            shard_verify_timeout: c.tuning.shard_verify_timeout,
        };
        Arc::new(EventSub::new(client, Arc::clone(self.repo), Arc::clone(self.live), self.metrics.clone(), settings))
    }
}

fn connect_twitch(deps: &EventSubDeps<'_>, endpoints: Option<TwitchEndpoints>) -> anyhow::Result<Twitch> {
    let Some(e) = endpoints else { return Ok(Twitch::default()) };
    let retry = RetryPolicy {
        base: deps.config.tuning.twitch_retry_base,
        max_rate_limit_wait: deps.config.tuning.twitch_rate_limit_wait,
        ..RetryPolicy::default()
    };
    let client = TwitchClient::new(&e.api_url, &e.auth_url, &e.client_id, e.client_secret.clone())?.with_retry(retry);
    let client = Arc::new(client);
    let redirect = &deps.config.twitch_redirect_uri;
    let oauth = TwitchOAuth::new(&e.auth_url, &e.api_url, &e.client_id, &e.client_secret, redirect)?;
    let eventsub = match &e.bot_user_id {
        Some(bot) => Some(deps.build(client, bot, &e.ws_url)),
        None => {
            tracing::warn!("BOT_USER_ID is not set: chat cannot be subscribed to");
            None
        }
    };
    Ok(Twitch { eventsub, oauth: Some(Arc::new(oauth)), bot_user_id: e.bot_user_id })
}

/// Wraps the HTTP router before it serves (the development wiring adds its
/// login shortcut this way).
type RouterWrap = Box<dyn FnOnce(axum::Router) -> axum::Router + Send>;

pub struct Application {
    eventsub: Option<Arc<EventSub>>,
    listener: TcpListener,
    state: AppState,
    config: Config,
    shutdown: CancellationToken,
    /// Cancelled once a shutdown's drain period is over: stops the listener
    /// and closes every overlay (1001).
    serving: CancellationToken,
    broadcaster_task: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
    wrap_router: Option<RouterWrap>,
}

impl Application {
    /// The service on the configured Twitch (or on none, without a Twitch
    /// application: overlays and signed webhooks still work).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let twitch = TwitchEndpoints::from_config(&config);
        Self::assemble(config, CancellationToken::new(), twitch).await
    }

    /// The service on the built-in Twitch simulator, started beside it in
    /// this process, like `make run`; with the demo streamer's URLs.
    #[cfg(feature = "simulator")]
    pub async fn build_with_simulator(
        config: Config,
        builtin: crate::dev::BuiltInTwitch,
    ) -> anyhow::Result<(Self, Option<crate::dev::Demo>)> {
        let shutdown = CancellationToken::new();
        let started = crate::dev::start(&builtin, &config, shutdown.child_token()).await?;
        let mut app = Self::assemble(config, shutdown, Some(started.endpoints.clone())).await?;
        let demo = started.demo(&app.state.app.repo, &app.config).await;
        app.wrap_router = Some(Box::new(started.wrap()));
        app.background.push(started.running.task);
        Ok((app, demo))
    }

    async fn assemble(
        config: Config,
        shutdown: CancellationToken,
        endpoints: Option<TwitchEndpoints>,
    ) -> anyhow::Result<Self> {
        crate::install_crypto_provider();
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let stores = open_stores(&config, &metrics).await?;
        let serving = CancellationToken::new();
        let instance_id = uuid::Uuid::new_v4().to_string();
        let deps = EventSubDeps {
            config: &config,
            repo: &stores.repo,
            live: &stores.live,
            metrics: &metrics,
            instance_id: &instance_id,
        };
        let twitch = connect_twitch(&deps, endpoints)?;
        let (missing_tx, missing_rx) = tokio::sync::mpsc::channel(1024);
        let (broadcaster, broadcaster_task) = Broadcaster::spawn(
            Arc::clone(&stores.live),
            metrics.clone(),
            BroadcastTiming { tick: config.tuning.broadcast_tick, resting_read: config.tuning.resting_read },
            missing_tx,
            serving.child_token(),
        );
        let settings = SessionSettings {
            instance_id: instance_id.clone(),
            lease_ttl: config.tuning.lease_ttl,
            grace: config.tuning.session_grace,
            max_clients: config.tuning.max_clients_per_session,
        };
        let signals = Arc::new(match &config.storage {
            StorageMode::Embedded { .. } => SignalBus::local(),
            StorageMode::Distributed { redis_url, .. } => SignalBus::redis(redis_url.expose())?,
        });
        let ports = SessionPorts {
            repo: Arc::clone(&stores.repo),
            live: Arc::clone(&stores.live),
            broadcaster: broadcaster.clone(),
            signals: Arc::clone(&signals),
            eventsub: twitch.eventsub.clone(),
        };
        let sessions = SessionManager::new(ports, metrics.clone(), settings, shutdown.clone());
        let mut background = stores.tasks;
        background.push(tokio::spawn(sessions.clone().run_repair(missing_rx, shutdown.child_token())));
        // The bot whose own messages never vote.
        let engine = VoteEngine::new(
            Arc::clone(&stores.live),
            twitch.bot_user_id.clone().or_else(|| config.bot_user_id.clone()),
            config.tuning.vote_timeout,
            metrics.clone(),
        );
        let limits = ConnectionLimits::new(
            config.max_websocket_connections,
            config.max_connections_per_ip,
            config.connection_rate_per_ip,
            config.connection_rate_burst,
        );
        background.push(tokio::spawn(sessions.clone().run_signals(signals.subscribe(), shutdown.child_token())));
        let cipher = TokenCipher::new(
            config.token_encryption_key.expose(),
            config.token_encryption_key_previous.as_ref().map(|k| k.expose()),
        )
        .context("TOKEN_ENCRYPTION_KEY")?;
        let app = App {
            repo: stores.repo,
            live: stores.live,
            sessions,
            migrations: stores.migrations,
            metrics: metrics.clone(),
            signals,
            oauth: twitch.oauth,
            cipher,
            eventsub: twitch.eventsub.clone(),
            settings: AppSettings {
                public_url: config.public_url.clone(),
                instance_id: instance_id.clone(),
                leader_key: config.tuning.leader_key.clone(),
                bot_user_id: twitch.bot_user_id,
            },
        };
        let state = AppState {
            app: Arc::new(app),
            engine: Arc::new(engine),
            broadcaster,
            limits: Arc::new(limits),
            metrics,
            registry: Arc::new(registry),
            webhook_secret: Arc::from(config.webhook_secret.expose()),
            tuning: config.tuning.clone(),
            accepting: Arc::new(AtomicBool::new(true)),
            proxies: http::client_ip::TrustedProxies::new(&config.trusted_proxies),
        };
        let address = SocketAddr::from(([0, 0, 0, 0], config.port));
        let listener =
            listen(address, config.tuning.socket_send_buffer).with_context(|| format!("cannot listen on {address}"))?;
        Ok(Self {
            eventsub: twitch.eventsub,
            listener,
            state,
            config,
            shutdown,
            serving,
            broadcaster_task,
            background,
            wrap_router: None,
        })
    }

    /// The port actually bound (useful with `PORT=0`).
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(self.config.port)
    }

    /// Cancelling this token starts a graceful shutdown, like SIGTERM does.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until the shutdown token is cancelled, then drains: readiness
    /// turns false, new connections are refused, every overlay gets close code
    /// 1001, in-flight requests finish — all within `SHUTDOWN_TIMEOUT`.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Self {
            listener,
            state,
            config,
            shutdown,
            serving,
            broadcaster_task,
            mut background,
            eventsub,
            wrap_router,
        } = self;
        background.push(tokio::spawn(state.app.sessions.clone().run_reconciler(
            config.tuning.reconcile_interval,
            config.tuning.config_check_interval,
            shutdown.child_token(),
        )));
        background.push(tokio::spawn(prune_limits(Arc::clone(&state.limits), shutdown.child_token())));
        background.push(tokio::spawn(crate::app::tokens::run_token_hygiene(
            Arc::clone(&state.app),
            config.tuning.token_check_interval,
            shutdown.child_token(),
        )));

        let router = match http::router(state.clone(), &config) {
            Ok(router) => match wrap_router {
                Some(wrap) => wrap(router),
                None => router,
            },
            Err(e) => {
                shutdown.cancel();
                background.iter().for_each(JoinHandle::abort);
                return Err(e.context("cannot build the HTTP router"));
            }
        };
        let server_shutdown = serving.clone();
        let mut server = tokio::spawn(
            axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(async move { server_shutdown.cancelled().await })
                .into_future(),
        );

        // The conduit's shard is verified through our own webhook, so this
        // starts once the server is listening. Messages from the WebSocket
        // shard take the webhook's path after its transport checks.
        if let Some(eventsub) = eventsub {
            let (inbound, mut messages) = tokio::sync::mpsc::channel::<Inbound>(1024);
            background.push(tokio::spawn(eventsub.run(inbound, shutdown.child_token())));
            let state = state.clone();
            background.push(tokio::spawn(async move {
                while let Some(m) = messages.recv().await {
                    let kind = m.subscription_type.as_deref();
                    match http::webhook::dispatch(&state, &m.message_id, &m.message_type, kind, m.payload.as_bytes())
                        .await
                    {
                        Ok(outcome) => state.metrics.webhook(http::webhook::type_label(&m.message_type), outcome),
                        Err(e) => tracing::warn!(error = %e, "EventSub WebSocket message rejected"),
                    }
                }
            }));
        }

        tokio::select! {
            result = &mut server => {
                // The server stopped by itself: that is an error worth reporting.
                shutdown.cancel();
                serving.cancel();
                background.iter().for_each(JoinHandle::abort);
                return match result {
                    Ok(Ok(())) => Err(anyhow::anyhow!("HTTP server stopped unexpectedly")),
                    Ok(Err(e)) => Err(anyhow::Error::new(e).context("HTTP server failed")),
                    Err(e) => Err(anyhow::Error::new(e).context("HTTP server task panicked")),
                };
            }
            _ = shutdown.cancelled() => {}
        }
        tracing::info!(timeout = ?config.shutdown_timeout, drain = ?config.tuning.shutdown_drain, "shutting down");
        // Readiness fails first; requests keep being served for the drain
        // period, so the load balancer takes this instance out of rotation
        // before its overlays are told to go elsewhere.
        state.accepting.store(false, Ordering::Release);
        let drain_period = config.tuning.shutdown_drain.min(config.shutdown_timeout);
        tokio::time::sleep(drain_period).await;
        serving.cancel();
        let drain = async {
            let _ = broadcaster_task.await;
            // Give every connection the moment it needs to write its close frame.
            while state.limits.open_connections() > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let _ = server.await;
        };
        if tokio::time::timeout(config.shutdown_timeout.saturating_sub(drain_period), drain).await.is_err() {
            tracing::warn!("shutdown timeout reached; closing remaining connections");
        }
        background.iter().for_each(JoinHandle::abort);
        Ok(())
    }
}

/// Binds the HTTP listener. Accepted sockets inherit its buffer sizes.
fn listen(address: SocketAddr, send_buffer: Option<u32>) -> std::io::Result<TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    if let Some(size) = send_buffer {
        socket.set_send_buffer_size(size)?;
    }
    socket.bind(address)?;
    socket.listen(1024)
}

async fn prune_limits(limits: Arc<ConnectionLimits>, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => limits.prune(),
        }
    }
}

/// Cancels `token` on SIGTERM or Ctrl-C.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {}
            _ = terminate => {}
        }
        token.cancel();
    });
}
