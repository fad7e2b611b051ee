//! Use cases over the stores, shared by every handler: the session lifecycle,
//! the config reconciler, and the few reads and writes handlers need.
//! Handlers call this module; they never reach a store themselves.

pub mod accounts;
pub mod eventsub;
pub mod leader;
pub mod revocations;
pub mod sessions;
pub mod signals;
pub mod tokens;

use std::sync::Arc;

use crate::domain::OverlayId;
use crate::metrics::Metrics;
use crate::store::{LiveStore, OverlaySetup, Repository, RepositoryError};

pub use sessions::{AcquireError, SessionLease, SessionManager, SessionPorts, SessionSettings};

/// Everything the use cases need. Cheap to share behind an `Arc`.
pub struct App {
    pub repo: Arc<dyn Repository>,
    pub live: Arc<dyn LiveStore>,
    pub sessions: SessionManager,
    /// Schema state of the durable store: `Err` until migrations have run.
    pub migrations: Arc<std::sync::Mutex<Result<(), String>>>,
    pub metrics: Metrics,
    /// Tells every instance about config changes and rotated overlay URLs.
    pub signals: Arc<signals::SignalBus>,
    /// Twitch login; `None` when no Twitch (real or simulated) is configured.
    pub oauth: Option<Arc<crate::twitch::oauth::TwitchOAuth>>,
    /// Encrypts stored Twitch tokens.
    pub cipher: crate::crypto::TokenCipher,
    /// Chat subscriptions and their per-channel status.
    pub eventsub: Option<Arc<eventsub::EventSub>>,
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
}

/// The state of each dependency, for `/health/ready`.
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
    pub fn is_ready(&self) -> bool {
        self.durable_store.is_ok() && self.live_store.is_ok() && self.signals.is_ok()
    }
}

impl App {
    /// The streamer and config behind an overlay URL, if it exists.
    pub async fn overlay(&self, overlay: OverlayId) -> Result<Option<OverlaySetup>, RepositoryError> {
        self.repo.overlay_setup(overlay).await.inspect_err(|_| self.metrics.durable_error("overlay_setup"))
    }

    /// A channel went live or offline: the overlay frame's status follows,
    /// and going live starts the bar from the centre. Returns the outcome
    /// (a metric label).
    pub async fn stream_changed(&self, broadcaster: &str, live: bool) -> &'static str {
        let Ok(broadcaster) = crate::domain::BroadcasterId::parse(broadcaster) else { return "ignored" };
        let status = if live { crate::domain::SessionStatus::Live } else { crate::domain::SessionStatus::Offline };
        let session = match self.live.session_for(&broadcaster).await {
            Ok(Some(session)) => session,
            Ok(None) => return "no_session",
            Err(e) => {
                tracing::warn!(error = %e, "cannot record the stream state");
                return "error";
            }
        };
        match self.live.set_status(session.overlay, status, crate::now_ms()).await {
            Ok(true) => {
                self.sessions.touch(session.overlay);
                "status_updated"
            }
            Ok(false) => "no_session",
            Err(e) => {
                tracing::warn!(error = %e, "cannot record the stream state");
                "error"
            }
        }
    }

    pub async fn readiness(&self) -> Readiness {
        let (durable, live) = tokio::join!(self.repo.ping(), self.live.ping());
        // Reachable is not enough: the schema must be migrated too.
        let migrated = self.migrations.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Readiness {
            durable_store: migrated.and(durable.map_err(|e| e.to_string())),
            live_store: live.map_err(|e| e.to_string()),
            signals: self.signals.ready(),
            eventsub: self.eventsub.as_ref().map(|e| e.status()),
        }
    }
}
