//! ChatPulse: Twitch chat → a live tug-of-war bar for OBS.
//!
//! The module map (dependencies point down; `domain` depends on nothing):
//!
//! - [`config`]    — typed configuration from the environment, validated once.
//! - [`clock`]     — wall-clock "now" for leases and rate-limit resets (tokio's paused clock in tests).
//! - [`domain`]    — pure types and rules: ids, config validation, trigger matching, decay math.
//! - [`store`]     — storage ports and adapters: SQLite + in-process (embedded), later PostgreSQL + Redis.
//! - [`twitch`]    — Twitch protocol: EventSub payload types and webhook signature checks.
//! - [`crypto`]    — AES-256-GCM encryption of stored Twitch tokens, with key rotation.
//! - [`engine`]    — the vote pipeline: chat event → session → one live-store call.
//! - [`broadcast`] — the broadcaster actor and per-connection WebSocket writers.
//! - [`app`]       — use cases over the stores: session lifecycle, config reconciliation.
//! - [`http`]      — axum router, handlers, limits, templates.
//! - [`metrics`], [`telemetry`] — Prometheus metrics and tracing set-up.
//! - [`startup`]   — the composition root: builds everything and runs it until stopped.

pub mod app;
pub mod broadcast;
pub mod clock;
pub mod config;
pub mod crypto;
#[cfg(test)]
mod dependency_rule;
#[cfg(feature = "simulator")]
pub mod dev;
pub mod domain;
pub mod engine;
pub mod http;
pub mod metrics;
pub mod secret;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod twitch;

/// Milliseconds since the Unix epoch: the one clock every live-state call
/// uses (components whose tests control time take a [`clock::Clock`]).
pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// Installs the process-wide TLS crypto provider (ring) that every HTTPS
/// client needs (reqwest is built without a default provider so that only
/// one is compiled in). Idempotent.
pub fn install_crypto_provider() {
    // An error only means a provider is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
