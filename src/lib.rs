//! ChatPulse: Twitch chat → a live tug-of-war bar for OBS.
//!
//! The module map. Dependencies point down the list; `docs/architecture.md`
//! has the table of allowed arrows, which `dependency_rule` enforces.
//!
//! Leaves (used from anywhere):
//! - [`secret`]    — `Secret`: a value that never prints.
//! - [`clock`]     — wall-clock "now" for leases, reads and rate-limit resets (tokio's paused clock in tests).
//! - [`metrics`]   — every Prometheus metric; bounded labels, never an id.
//!
//! The core:
//! - [`domain`]    — pure types and rules: ids, config validation, chat messages, trigger matching, decay math.
//! - [`store`]     — the ports (`Repository`, `LiveStore`) and their adapters: SQLite and in-process
//!   (embedded), PostgreSQL and Redis (distributed); instance signals.
//! - [`twitch`]    — the Twitch edge: EventSub messages (typed at the serde edge), signatures, the
//!   WebSocket transport, the Helix and OAuth clients with their retry policy.
//! - [`crypto`]    — AES-256-GCM encryption of stored Twitch tokens, with key rotation.
//! - [`engine`]    — the vote pipeline: chat message → session → match → one live-store call.
//! - [`broadcast`] — the broadcaster actor (the tick, the frames) and per-connection WebSocket writers.
//! - [`app`]       — the use cases: the EventSub dispatcher, sessions, accounts and the dashboard's
//!   facts, EventSub set-up and reconciliation, leader election, token hygiene.
//! - [`http`]      — axum router, handlers, pages and their words, limits, sessions, health.
//!
//! Wiring:
//! - [`config`]    — typed configuration from the environment, validated once.
//! - [`telemetry`] — tracing set-up.
//! - [`startup`]   — the composition root: builds everything, supervises the background tasks, runs
//!   until stopped and drains.
//! - [`dev`]       — development wiring around the built-in Twitch simulator (feature `simulator`).

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
