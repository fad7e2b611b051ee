//! The HTTP surface (ARCHITECTURE §7): router, handlers, limits, templates.

pub mod api;
mod api_tokens;
mod auth;
mod chart;
pub mod client_ip;
mod control;
mod dashboard;
mod error;
pub mod health;
mod history;
pub mod limits;
mod observe;
mod overlay;
mod pages;
mod request_log;
mod security;
pub mod server;
pub mod session;
pub mod webhook;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderName;
use axum::routing::{get, post};
use prometheus_client::registry::Registry;
use tower_http::request_id::PropagateRequestIdLayer;
use tower_http::services::ServeDir;
use tower_http::trace::TraceLayer;

pub use dashboard::read_settings_form;
pub use error::Error;
pub use overlay::public_origin;

use crate::app::App;
use crate::broadcast::Broadcaster;
use crate::broadcast::connection::ConnectionSettings;
use crate::metrics::Metrics;
use crate::secret::Secret;
use limits::ConnectionLimits;
use session::SessionStorage;

/// Largest EventSub delivery we accept; Twitch's are a few KiB.
pub const WEBHOOK_BODY_LIMIT: usize = 64 * 1024;
/// Largest dashboard form we accept.
pub const FORM_BODY_LIMIT: usize = 16 * 1024;

/// What the HTTP layer needs from the configuration (built by the
/// composition root).
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// `APP_ENV=production`: HSTS, and Secure session cookies.
    pub production: bool,
    /// Signs the session cookies.
    pub session_secret: Secret,
    /// A login session ends after this long without activity...
    pub login_session_idle: std::time::Duration,
    /// ...and this long after the login, however active.
    pub login_session_max: std::time::Duration,
    /// Per-IP request budgets, (per minute, burst): login pages, dashboard.
    pub auth_rate: (u32, u32),
    pub dashboard_rate: (u32, u32),
    /// Each streamer API token's request budget, (per minute, burst).
    pub api_rate: (u32, u32),
    /// How each overlay connection is kept.
    pub connection: ConnectionSettings,
    /// How often an overlay page asks its socket "are you there?"
    /// (`Tuning::overlay_keepalive`).
    pub overlay_keepalive: std::time::Duration,
    /// `PUBLIC_URL`'s origin: the only `Origin` an overlay socket accepts
    /// besides none (see [`public_origin`]).
    pub public_origin: String,
}

/// Shared state of every handler. Cheap to clone: one reference count
/// (axum clones it for every request, once per layer that takes it).
#[derive(Clone)]
pub struct AppState(Arc<SharedState>);

impl From<SharedState> for AppState {
    fn from(state: SharedState) -> Self {
        Self(Arc::new(state))
    }
}

impl std::ops::Deref for AppState {
    type Target = SharedState;

    fn deref(&self) -> &SharedState {
        &self.0
    }
}

/// What [`AppState`] shares.
pub struct SharedState {
    pub app: Arc<App>,
    pub broadcaster: Broadcaster,
    pub limits: Arc<ConnectionLimits>,
    pub metrics: Metrics,
    pub registry: Arc<Registry>,
    pub webhook_secret: Arc<str>,
    pub settings: Arc<HttpSettings>,
    /// False once shutdown has begun: readiness fails and upgrades are refused.
    pub accepting: Arc<AtomicBool>,
    /// False once a task the process cannot do without failed: `/health/live` fails.
    pub liveness: health::Liveness,
    /// Whose `X-Forwarded-For` names the client (per-IP limits).
    pub proxies: client_ip::TrustedProxies,
}

impl SharedState {
    pub fn is_accepting(&self) -> bool {
        self.accepting.load(Ordering::Acquire)
    }
}

pub fn router(state: AppState, sessions: SessionStorage) -> Router {
    let request_id = HeaderName::from_static(request_log::REQUEST_ID);
    let proxies = state.proxies.clone();
    let (auth_rate, dashboard_rate) = (state.settings.auth_rate, state.settings.dashboard_rate);
    let auth_limit = security::IpLimit::per_minute(auth_rate.0, auth_rate.1, proxies.clone());
    let dashboard_limit = security::IpLimit::per_minute(dashboard_rate.0, dashboard_rate.1, proxies);
    let auth = Router::new()
        .route("/auth/login", get(auth::login))
        .route("/auth/callback", get(auth::callback))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/bot", get(auth::bot))
        .route("/auth/bot/start", get(auth::bot_start))
        .layer(axum::middleware::from_fn_with_state(auth_limit, security::limit));
    let dashboard = Router::new()
        .route("/", get(auth::home))
        .route("/dashboard", get(dashboard::show))
        .route("/dashboard/config", post(dashboard::save))
        .route("/dashboard/test-votes", post(control::test_votes))
        .route("/dashboard/reload-overlays", post(control::reload_overlays))
        .route("/dashboard/scopes", post(auth::enable_features))
        .route("/dashboard/status", get(control::status))
        .route("/dashboard/api-tokens", get(api_tokens::show).post(api_tokens::create))
        .route("/dashboard/history", get(history::list))
        .route("/dashboard/history/{id}", get(history::show))
        .route("/dashboard/history/{id}/timeline.csv", get(history::export_csv))
        .route("/dashboard/history/{id}/timeline.json", get(history::export_json))
        .route("/dashboard/api-tokens/{id}/revoke", post(api_tokens::revoke))
        .route("/api/reset/{overlay_uuid}", post(dashboard::reset))
        .route("/api/rotate-overlay-uuid", post(dashboard::rotate))
        .layer(axum::middleware::from_fn_with_state(dashboard_limit, security::limit));
    let pages = session::with_sessions(auth.merge(dashboard), &state.settings, sessions)
        .layer(DefaultBodyLimit::max(FORM_BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(FORM_BODY_LIMIT, server::refuse_oversized));
    let hsts = state.settings.production;
    Router::new()
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/overlay/{overlay_uuid}", get(overlay::page))
        .route("/ws/overlay/{overlay_uuid}", get(overlay::websocket))
        .route(
            "/webhooks/eventsub",
            post(webhook::eventsub)
                .layer(DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT))
                .layer(axum::middleware::from_fn_with_state(WEBHOOK_BODY_LIMIT, server::refuse_oversized)),
        )
        .merge(pages)
        .nest("/api/v1", api::router(state.app.clone(), state.settings.api_rate))
        .nest_service("/static", ServeDir::new(static_dir()))
        .layer(axum::middleware::from_fn_with_state(hsts, security::headers))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe::record))
        .layer(TraceLayer::new_for_http().make_span_with(request_log::make_span).on_failure(request_log::on_failure))
        .layer(PropagateRequestIdLayer::new(request_id))
        .layer(axum::middleware::from_fn(request_log::assign_id))
        .with_state(state)
}

/// The internal listener's routes (`METRICS_PORT`): `/metrics`, the
/// readiness details, liveness. No sessions, no limits: it is reachable only
/// from inside the deployment.
pub fn internal_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(health::metrics))
        .route("/health/ready", get(health::ready_details))
        .route("/health/live", get(health::live))
        .with_state(state)
}

/// `static/` of the source tree, found relative to the crate so the binary
/// works from any working directory in development and tests.
fn static_dir() -> std::path::PathBuf {
    let local = std::path::PathBuf::from("static");
    if local.is_dir() { local } else { std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("static") }
}

/// The client address of a connection.
pub type ClientAddr = axum::extract::ConnectInfo<SocketAddr>;
