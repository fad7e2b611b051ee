//! The composition root: builds every component from a [`Config`] and runs
//! the service until it is told to stop. `main` and the integration tests
//! both start the service through [`Application`].

mod internal;
mod stores;
pub mod supervisor;
mod twitch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::Mutex as AsyncMutex;
use tokio_util::sync::CancellationToken;

use crate::app::eventsub::EventSub;
use crate::app::{App, AppParts, AppSettings, SessionManager, SessionPorts, SessionSettings};
use crate::broadcast::connection::ConnectionSettings;
use crate::broadcast::{BroadcastTiming, Broadcaster};
use crate::clock::Clock;
use crate::config::{AppEnv, Config};
use crate::crypto::TokenCipher;
use crate::domain::ChatterId;
use crate::engine::VoteEngine;
use crate::http::health::Liveness;
use crate::http::limits::ConnectionLimits;
use crate::http::{self, AppState, HttpSettings};
use crate::metrics::Metrics;
pub use stores::open_repository;
use stores::{Stores, open_stores};
use supervisor::Supervisor;
pub(crate) use twitch::TwitchEndpoints;
use twitch::{EventSubDeps, connect_twitch};

pub struct Application {
    eventsub: Option<Arc<EventSub>>,
    sessions: SessionManager,
    listener: TcpListener,
    /// `METRICS_PORT`: `/metrics` and the readiness details.
    internal: TcpListener,
    state: AppState,
    config: Config,
    shutdown: CancellationToken,
    /// Cancelled once a shutdown's drain period is over: stops the listener
    /// and closes every overlay (1001).
    serving: CancellationToken,
    supervisor: Supervisor,
    /// Every route, with its layers.
    router: axum::Router,
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
        let demo = started.demo(&app.state.app, &app.config).await;
        app.router = started.wrap()(app.router);
        let simulator = started.running.task;
        app.supervisor.once("simulator", async move {
            let _ = simulator.await;
        });
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
        let liveness = Liveness::new();
        let mut supervisor = Supervisor::new(shutdown.clone(), metrics.clone(), liveness.clone());
        let stores = open_stores(&config, &metrics, &mut supervisor).await?;
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
        let timing = BroadcastTiming {
            tick: config.tuning.broadcast_tick,
            resting_read: config.tuning.resting_read,
            glide_read: config.tuning.glide_read,
            clock: Clock::System,
        };
        let (broadcaster, broadcaster_task) =
            Broadcaster::spawn(Arc::clone(&stores.live), metrics.clone(), timing, missing_tx, serving.child_token());
        supervisor.essential("broadcaster", broadcaster_task);
        let ports = SessionPorts {
            repo: Arc::clone(&stores.repo),
            live: Arc::clone(&stores.live),
            broadcaster: broadcaster.clone(),
            signals: Arc::clone(&stores.signals),
            eventsub: twitch.eventsub.clone(),
        };
        let sessions =
            SessionManager::new(ports, metrics.clone(), session_settings(&config, &instance_id), shutdown.clone());
        supervise_sessions(&mut supervisor, &sessions, &stores, missing_rx, config.tuning.broadcast_tick);
        let app = Arc::new(assemble_app(&config, &stores, &twitch, sessions.clone(), &metrics, &instance_id)?);
        let (reporter, signals) = (Arc::clone(&app), Arc::clone(&stores.signals));
        supervisor.restarting("activity", move |stop| Arc::clone(&reporter).run_activity(signals.subscribe(), stop));
        let limits = Arc::new(ConnectionLimits::new(
            config.max_websocket_connections,
            config.max_connections_per_ip,
            config.max_overlay_connections_per_ip,
            config.connection_rate_per_ip,
            config.connection_rate_burst,
        ));
        let state = AppState::from(http::SharedState {
            app,
            broadcaster,
            limits,
            metrics,
            registry: Arc::new(registry),
            webhook_secret: Arc::from(config.webhook_secret.expose()),
            settings: Arc::new(http_settings(&config)),
            accepting: Arc::new(AtomicBool::new(true)),
            liveness,
            proxies: http::client_ip::TrustedProxies::new(&config.trusted_proxies),
        });
        let router = http::router(state.clone(), stores.sessions);
        let address = SocketAddr::from(([0, 0, 0, 0], config.port));
        let listener =
            listen(address, config.tuning.socket_send_buffer).with_context(|| format!("cannot listen on {address}"))?;
        let internal = internal::bind(config.metrics_port)
            .with_context(|| format!("cannot listen on METRICS_PORT {}", config.metrics_port))?;
        let eventsub = twitch.eventsub;
        Ok(Self { eventsub, sessions, listener, internal, state, router, config, shutdown, serving, supervisor })
    }

    /// The port actually bound (useful with `PORT=0`).
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(self.config.port)
    }

    /// The internal listener's port (`METRICS_PORT`; useful with `0`).
    pub fn metrics_port(&self) -> u16 {
        self.internal.local_addr().map(|a| a.port()).unwrap_or(self.config.metrics_port)
    }

    /// Cancelling this token starts a graceful shutdown, like SIGTERM does.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until the shutdown token is cancelled, then drains: readiness
    /// turns false, new connections are refused, every overlay gets close code
    /// 1001, in-flight requests finish — all within `SHUTDOWN_TIMEOUT`.
    /// Returns an error when an essential task failed instead (the process
    /// must then exit so that it is replaced).
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Self { eventsub, sessions, listener, internal, state, router, config, shutdown, serving, mut supervisor } =
            self;
        let t = &config.tuning;
        let (interval, config_every) = (t.reconcile_interval, t.config_check_interval);
        supervisor.restarting("reconciler", move |stop| sessions.clone().run_reconciler(interval, config_every, stop));
        let app = Arc::clone(&state.app);
        let every = crate::app::DEPENDENCY_CHECK_INTERVAL;
        supervisor.restarting("dependencies", move |stop| Arc::clone(&app).watch_dependencies(every, stop));
        let limits = Arc::clone(&state.limits);
        supervisor.restarting("limits", move |stop| prune_limits(Arc::clone(&limits), stop));
        // Without Twitch there are no tokens to check: no task that would
        // only end at once (and be restarted as if it had failed).
        if state.app.has_twitch() {
            let (app, every) = (Arc::clone(&state.app), t.token_check_interval);
            supervisor
                .restarting("tokens", move |stop| crate::app::tokens::run_token_hygiene(Arc::clone(&app), every, stop));
        }
        let (app, every) = (Arc::clone(&state.app), t.history_flush_interval);
        supervisor.restarting("history_flush", move |stop| {
            crate::app::history::recorder::run_history_flush(Arc::clone(&app), every, stop)
        });
        let (app, every) = (Arc::clone(&state.app), t.history_upkeep_interval);
        let retention = std::time::Duration::from_secs(u64::from(config.history_retention_days) * 86_400);
        supervisor.restarting("history_upkeep", move |stop| {
            crate::app::history::run_history_upkeep(Arc::clone(&app), every, retention, stop)
        });

        let h = &config.http;
        let limits = http::server::ServerLimits {
            header_timeout: h.header_timeout,
            body_timeout: h.body_timeout,
            idle_timeout: h.idle_timeout,
            max_connections: h.max_connections,
            max_connections_per_ip: h.max_connections_per_ip,
        };
        let proxies = state.proxies.clone();
        let server = tokio::spawn(http::server::serve(listener, router, limits, proxies, serving.clone()));
        let server_done = server.abort_handle();
        supervisor.essential("http_server", server);
        supervisor.essential("metrics_server", internal::serve(internal, state.clone(), serving.clone()));

        // The conduit's shard is verified through our own webhook, so this
        // starts once the server is listening. Messages from the WebSocket
        // shard go to the same dispatcher as the webhook's.
        if let Some(eventsub) = eventsub {
            supervise_eventsub(&mut supervisor, eventsub, Arc::clone(&state.app));
        }

        let failed = supervisor.failed();
        tokio::select! {
            reason = failed => {
                shutdown.cancel();
                serving.cancel();
                supervisor.abort_all();
                return Err(anyhow::anyhow!("{reason}"));
            }
            _ = shutdown.cancelled() => {}
        }
        tracing::info!(timeout = ?config.shutdown_timeout, drain = ?t.shutdown_drain, "shutting down");
        // Readiness fails first; requests keep being served for the drain
        // period, so the load balancer takes this instance out of rotation
        // before its overlays are told to go elsewhere.
        state.accepting.store(false, Ordering::Release);
        let drain_period = t.shutdown_drain.min(config.shutdown_timeout);
        tokio::time::sleep(drain_period).await;
        serving.cancel();
        let drain = async {
            // Every overlay gets its close frame (the broadcaster stops with
            // `serving` and closes them), then the server finishes.
            while state.limits.open_connections() > 0 || !server_done.is_finished() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        if tokio::time::timeout(config.shutdown_timeout.saturating_sub(drain_period), drain).await.is_err() {
            tracing::warn!("shutdown timeout reached; closing remaining connections");
        }
        supervisor.abort_all();
        Ok(())
    }
}

/// The use cases, over the stores and Twitch.
fn assemble_app(
    config: &Config,
    stores: &Stores,
    twitch: &twitch::Twitch,
    sessions: SessionManager,
    metrics: &Metrics,
    instance_id: &str,
) -> anyhow::Result<App> {
    // The bot whose own messages never vote.
    let bot = twitch.bot_user_id.as_deref().or(config.bot_user_id.as_deref());
    let engine = VoteEngine::new(
        Arc::clone(&stores.live),
        bot.and_then(|id| ChatterId::parse(id).ok()),
        config.tuning.vote_timeout,
        metrics.clone(),
    );
    let key_previous = config.token_encryption_key_previous.as_ref().map(|k| k.expose());
    let cipher =
        TokenCipher::new(config.token_encryption_key.expose(), key_previous).context("TOKEN_ENCRYPTION_KEY")?;
    Ok(App::new(AppParts {
        repo: Arc::clone(&stores.repo),
        live: Arc::clone(&stores.live),
        sessions,
        migrations: Arc::clone(&stores.migrations),
        metrics: metrics.clone(),
        signals: Arc::clone(&stores.signals),
        oauth: twitch.oauth.clone(),
        cipher,
        eventsub: twitch.eventsub.clone(),
        engine,
        settings: AppSettings {
            public_url: config.public_url.clone(),
            instance_id: instance_id.to_owned(),
            leader_key: config.tuning.leader_key.clone(),
            bot_user_id: twitch.bot_user_id.clone(),
            client_id: twitch.client_id.clone(),
        },
    }))
}

fn session_settings(config: &Config, instance_id: &str) -> SessionSettings {
    SessionSettings {
        instance_id: instance_id.to_owned(),
        lease_ttl: config.tuning.lease_ttl,
        heartbeat_ttl: config.tuning.heartbeat_ttl,
        grace: config.tuning.session_grace,
        max_clients: config.tuning.max_clients_per_session,
    }
}

/// The session manager's listeners: signals from other instances, and the
/// broadcaster's reports of sessions the live store lost; and its teller of
/// votes taken here (`Voted` signals).
fn supervise_sessions(
    supervisor: &mut Supervisor,
    sessions: &SessionManager,
    stores: &Stores,
    missing: tokio::sync::mpsc::Receiver<crate::domain::OverlayId>,
    tick: Duration,
) {
    let (manager, signals) = (sessions.clone(), Arc::clone(&stores.signals));
    supervisor.restarting("signals", move |stop| manager.clone().run_signals(signals.subscribe(), stop));
    let manager = sessions.clone();
    supervisor.restarting("voted", move |stop| manager.clone().run_voted(tick, stop));
    // A restarted listener takes the same receiver up again.
    let missing = Arc::new(AsyncMutex::new(missing));
    let manager = sessions.clone();
    supervisor.restarting("repair", move |stop| {
        let (manager, missing) = (manager.clone(), Arc::clone(&missing));
        async move { manager.run_repair(&mut *missing.lock().await, stop).await }
    });
}

/// The EventSub manager, and the dispatcher of its WebSocket shard's messages.
fn supervise_eventsub(supervisor: &mut Supervisor, eventsub: Arc<EventSub>, app: Arc<App>) {
    let (inbound, messages) = tokio::sync::mpsc::channel(1024);
    supervisor.restarting("eventsub", move |stop| Arc::clone(&eventsub).run(inbound.clone(), stop));
    let messages = Arc::new(AsyncMutex::new(messages));
    supervisor.restarting("inbound", move |stop| {
        let (app, messages) = (Arc::clone(&app), Arc::clone(&messages));
        async move { app.run_inbound(&mut *messages.lock().await, stop).await }
    });
}

/// The HTTP layer's share of the configuration.
fn http_settings(config: &Config) -> HttpSettings {
    let t = &config.tuning;
    HttpSettings {
        production: config.app_env == AppEnv::Production,
        session_secret: config.session_secret.clone(),
        login_session_idle: t.login_session_idle,
        login_session_max: t.login_session_max,
        auth_rate: t.auth_rate,
        dashboard_rate: t.dashboard_rate,
        api_rate: t.api_rate,
        overlay_keepalive: t.overlay_keepalive,
        public_origin: http::public_origin(&config.public_url),
        connection: ConnectionSettings {
            queue: t.client_queue,
            ping_interval: t.ping_interval,
            idle_timeout: t.idle_timeout,
            write_timeout: t.write_timeout,
        },
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
