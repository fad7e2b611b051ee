//! Use cases over the stores, shared by every handler: the session lifecycle,
//! the config reconciler, and the few reads and writes handlers need.
//! Handlers call this module; they never reach a store themselves.

pub mod accounts;
pub mod activity;
pub mod api;
pub mod eventsub;
pub mod history;
pub mod inbound;
pub mod leader;
pub mod reports;
pub mod revocations;
pub mod sessions;
pub mod status;
pub mod test_votes;
pub mod tokens;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::domain::OverlayId;
use crate::metrics::Metrics;
use crate::store::{LiveStore, OverlaySetup, Repository, RepositoryError};

pub use sessions::{AcquireError, OpenOverlays, SessionLease, SessionManager, SessionPorts, SessionSettings};

/// Everything the use cases need. Cheap to share behind an `Arc`. Its
/// fields are private to `app`: handlers call its methods.
pub struct App {
    repo: Arc<dyn Repository>,
    live: Arc<dyn LiveStore>,
    sessions: SessionManager,
    /// Schema state of the durable store: `Err` until migrations have run.
    migrations: Arc<std::sync::Mutex<Result<(), String>>>,
    metrics: Metrics,
    /// Tells every instance about config changes and rotated overlay URLs.
    signals: Arc<crate::store::signals::SignalBus>,
    /// Twitch login; `None` when no Twitch (real or simulated) is configured.
    oauth: Option<Arc<crate::twitch::oauth::TwitchOAuth>>,
    /// Encrypts stored Twitch tokens.
    cipher: crate::crypto::TokenCipher,
    /// Chat subscriptions and their per-channel status.
    eventsub: Option<Arc<eventsub::EventSub>>,
    /// The vote pipeline (chat messages reach it through [`App::dispatch`]).
    engine: crate::engine::VoteEngine,
    /// What this instance saw of each channel's chat (the status panel).
    activity: activity::ActivityLog,
    /// The history flush's buckets in waiting and moment detectors.
    history: history::HistoryState,
    settings: AppSettings,
}

/// What an [`App`] is made of (the composition root assembles it).
pub struct AppParts {
    pub repo: Arc<dyn Repository>,
    pub live: Arc<dyn LiveStore>,
    pub sessions: SessionManager,
    /// Schema state of the durable store: `Err` until migrations have run.
    pub migrations: Arc<std::sync::Mutex<Result<(), String>>>,
    pub metrics: Metrics,
    /// Tells every instance about config changes and rotated overlay URLs.
    pub signals: Arc<crate::store::signals::SignalBus>,
    /// Twitch login; `None` when no Twitch (real or simulated) is configured.
    pub oauth: Option<Arc<crate::twitch::oauth::TwitchOAuth>>,
    /// Encrypts stored Twitch tokens.
    pub cipher: crate::crypto::TokenCipher,
    /// Chat subscriptions and their per-channel status.
    pub eventsub: Option<Arc<eventsub::EventSub>>,
    /// The vote pipeline (chat messages reach it through [`App::dispatch`]).
    pub engine: crate::engine::VoteEngine,
    pub settings: AppSettings,
}

/// Plain settings the use cases need.
#[derive(Debug, Clone)]
pub struct AppSettings {
    pub public_url: String,
    /// This instance's id (in leases).
    pub instance_id: String,
    /// Prefix of the keys that elect one instance for a periodic job.
    pub leader_key: String,
    pub bot_user_id: Option<String>,
    /// Our Twitch application's client id: `user.authorization.revoke`
    /// acts only when it names this one. `None` without a Twitch application.
    pub client_id: Option<String>,
}

/// How often the dependency gauges (`chatpulse_dependency_up`) are brought
/// up to date when nobody asks `/health/ready`.
pub const DEPENDENCY_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// The longest a readiness check waits for a dependency's answer. Probes
/// give up after a second or two (HAProxy's check, the kubelet's
/// `timeoutSeconds`): a probe that timed out would take the instance out of
/// rotation as surely as a failed one, so a silent dependency must not make
/// the probe itself slow.
pub const DEPENDENCY_PING_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// The state of each dependency, for `/health/ready` and the
/// `chatpulse_dependency_up` gauges. It never decides whether the instance
/// takes traffic: PostgreSQL and Redis are shared by every instance, so an
/// outage of either would take the whole fleet out of the load balancer
/// (docs/operations/readiness.md).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Readiness {
    pub durable_store: Result<(), String>,
    pub live_store: Result<(), String>,
    /// Instance-to-instance signals (config changes, rotations) are heard.
    pub signals: Result<(), String>,
    /// EventSub set-up, for information only: overlays and the dashboard
    /// work without it, so it never makes the instance unready.
    pub eventsub: Option<eventsub::EventSubStatus>,
}

impl Readiness {
    /// Each dependency by the name the readiness body and the metric use.
    pub fn checks(&self) -> [(&'static str, &Result<(), String>); 3] {
        [("durable_store", &self.durable_store), ("live_store", &self.live_store), ("signals", &self.signals)]
    }

    /// Every dependency reachable (and the schema migrated).
    pub fn dependencies_ok(&self) -> bool {
        self.checks().iter().all(|(_, state)| state.is_ok())
    }
}

impl App {
    pub fn new(parts: AppParts) -> Self {
        let AppParts { repo, live, sessions, migrations, metrics, signals, oauth, cipher, eventsub, engine, settings } =
            parts;
        let activity = activity::ActivityLog::default();
        let history = history::HistoryState::default();
        Self {
            repo,
            live,
            sessions,
            migrations,
            metrics,
            signals,
            oauth,
            cipher,
            eventsub,
            engine,
            activity,
            history,
            settings,
        }
    }

    /// Twitch is configured: there are logins, tokens and chat to handle.
    pub fn has_twitch(&self) -> bool {
        self.oauth.is_some()
    }

    /// The overlay URL a streamer pastes into OBS.
    pub fn overlay_url(&self, overlay: OverlayId) -> String {
        format!("{}/overlay/{overlay}", self.settings.public_url)
    }

    /// Joins the session of an overlay for one connection (activating it on
    /// the first one here; `preview`: the dashboard's preview of it, counted
    /// apart); dropping the lease leaves it.
    pub async fn join_overlay(&self, overlay: OverlayId, preview: bool) -> Result<SessionLease, AcquireError> {
        self.sessions.acquire_as(overlay, preview).await
    }

    /// The streamer's overlay, creating the streamer with the default config
    /// when there is none with this Twitch id.
    pub async fn ensure_streamer(&self, new: &crate::store::NewStreamer) -> Result<OverlayId, RepositoryError> {
        if let Some(setup) = self.repo.streamer_by_twitch_id(&new.twitch_user_id).await? {
            return Ok(setup.streamer.overlay_id);
        }
        Ok(self.repo.create_streamer(new).await?.streamer.overlay_id)
    }

    /// The streamer and config behind an overlay URL, if it exists.
    pub async fn overlay(&self, overlay: OverlayId) -> Result<Option<OverlaySetup>, RepositoryError> {
        self.repo.overlay_setup(overlay).await.inspect_err(|_| self.metrics.durable_error("overlay_setup"))
    }

    pub async fn readiness(&self) -> Readiness {
        let bounded = |store: &str, ping: Result<Result<(), String>, tokio::time::error::Elapsed>| {
            ping.unwrap_or_else(|_| Err(format!("the {store} gave no answer within {DEPENDENCY_PING_TIMEOUT:?}")))
        };
        let (durable, live) = tokio::join!(
            tokio::time::timeout(DEPENDENCY_PING_TIMEOUT, async { self.repo.ping().await.map_err(|e| e.to_string()) }),
            tokio::time::timeout(DEPENDENCY_PING_TIMEOUT, async { self.live.ping().await.map_err(|e| e.to_string()) }),
        );
        // Reachable is not enough: the schema must be migrated too.
        let migrated = self.migrations.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let readiness = Readiness {
            durable_store: migrated.and(bounded("durable store", durable)),
            live_store: bounded("live store", live),
            signals: self.signals.ready(),
            eventsub: self.eventsub.as_ref().map(|e| e.status()),
        };
        for (dependency, state) in readiness.checks() {
            self.metrics.dependency_up(dependency, state.is_ok());
        }
        readiness
    }

    /// Keeps the dependency gauges current between readiness probes.
    pub async fn watch_dependencies(self: Arc<Self>, every: std::time::Duration, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            self.readiness().await;
        }
    }
}
