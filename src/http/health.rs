//! `/health/live`, `/health/ready` (the summary on the public listener, the
//! details on the internal one) and `/metrics` (internal listener only).

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::json;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::AppState;

/// Whether the process is still whole: false once an essential task failed.
#[derive(Clone, Default)]
pub struct Liveness(Arc<AtomicBool>);

impl Liveness {
    pub fn new() -> Self {
        Self(Arc::new(AtomicBool::new(true)))
    }

    pub fn is_live(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Marks the process as broken for good.
    pub fn fail(&self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The process is up, serving HTTP, and whole: 503 once a task it cannot do
/// without has failed (the process is about to exit; the orchestrator
/// replaces it).
pub async fn live(State(state): State<AppState>) -> impl IntoResponse {
    if state.liveness.is_live() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "a background task failed")
    }
}

/// Ready for traffic: initialised (this handler runs once the router serves)
/// and not shutting down. PostgreSQL and Redis are shared by every instance,
/// so their state never fails readiness — a load balancer would otherwise
/// take the whole fleet out at once (docs/operations/readiness.md). The
/// public body is the summary (`ready`, `shutting_down`, `dependencies_ok`):
/// the checks' errors name internal hosts and are for the operator
/// ([`ready_details`], on `METRICS_PORT`).
pub async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let dependencies_ok = state.app.readiness().await.dependencies_ok();
    let accepting = state.is_accepting();
    let body = json!({"ready": accepting, "shutting_down": !accepting, "dependencies_ok": dependencies_ok});
    let status = if accepting { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body))
}

/// [`ready`] with each dependency's check and the EventSub set-up (the
/// internal listener's `/health/ready`); `chatpulse_dependency_up` exports
/// the same.
pub async fn ready_details(State(state): State<AppState>) -> impl IntoResponse {
    let readiness = state.app.readiness().await;
    let accepting = state.is_accepting();
    let check = |r: &Result<(), String>| match r {
        Ok(()) => json!({"ok": true}),
        Err(e) => json!({"ok": false, "error": e}),
    };
    let body = json!({
        "ready": accepting,
        "shutting_down": !accepting,
        "dependencies_ok": readiness.dependencies_ok(),
        "checks": {
            "durable_store": check(&readiness.durable_store),
            "live_store": check(&readiness.live_store),
            "signals": check(&readiness.signals),
        },
        "eventsub": readiness.eventsub,
    });
    let status = if accepting { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body))
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut body = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        tracing::error!(error = %e, "metrics encoding failed");
        return (StatusCode::INTERNAL_SERVER_ERROR, [(header::CONTENT_TYPE, "text/plain")], String::new());
    }
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
}
