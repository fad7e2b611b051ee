//! Failures on demand: Helix and token faults, delivery faults, revocations, failing shards, reconnects.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{parse_json, sim_error};
use crate::Simulator;
use crate::helix::error;

#[derive(Debug, Deserialize)]
struct RevokeBody {
    status: String,
}

/// `POST /sim/subscriptions/{id}/revoke` `{"status": "authorization_revoked"}` → 202.
pub(super) async fn revoke(State(sim): State<Simulator>, Path(id): Path<String>, body: Bytes) -> Response {
    let body: RevokeBody = match parse_json(&body) {
        Ok(b) => b,
        Err(response) => return *response,
    };
    match sim.revoke_subscription(&id, &body.status).await {
        Ok(()) => (StatusCode::ACCEPTED, Json(json!({"id": id, "status": body.status}))).into_response(),
        Err(e) => sim_error(&e),
    }
}

/// `POST /sim/conduits/{conduit_id}/shards/{shard_id}/disable`: the shard
/// fails as after a long delivery outage.
pub(super) async fn disable_shard(
    State(sim): State<Simulator>,
    Path((conduit_id, shard_id)): Path<(String, String)>,
) -> Response {
    match sim.disable_shard(&conduit_id, &shard_id) {
        Ok(()) => (StatusCode::ACCEPTED, Json(json!({"conduit_id": conduit_id, "shard_id": shard_id}))).into_response(),
        Err(e) => sim_error(&e),
    }
}

#[derive(Debug, Deserialize)]
struct FaultBody {
    status: u16,
    count: u32,
    /// `helix` (the default) or `oauth_token` (`/oauth2/token`).
    #[serde(default)]
    target: FaultTarget,
}

#[derive(Debug, serde::Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum FaultTarget {
    #[default]
    Helix,
    OauthToken,
}

/// `POST /sim/faults` `{"status": 429, "count": 2}` (count 0 clears): the
/// next Helix calls fail; with `"target": "oauth_token"`, the next calls to
/// `/oauth2/token` instead.
pub(super) async fn faults(State(sim): State<Simulator>, body: Bytes) -> Response {
    let body: FaultBody = match parse_json(&body) {
        Ok(b) => b,
        Err(response) => return *response,
    };
    if !(400..=599).contains(&body.status) {
        return error(StatusCode::BAD_REQUEST, "status must be an HTTP error status (400–599)");
    }
    let target = match body.target {
        FaultTarget::Helix => {
            sim.fail_next(body.status, body.count);
            "helix"
        }
        FaultTarget::OauthToken => {
            sim.fail_next_token_calls(body.status, body.count);
            "oauth_token"
        }
    };
    Json(json!({"status": body.status, "count": body.count, "target": target})).into_response()
}

#[derive(serde::Deserialize)]
struct DeliveryFaultBody {
    fault: crate::DeliveryFault,
    #[serde(default = "one")]
    count: u32,
}

fn one() -> u32 {
    1
}

/// `POST /sim/delivery-faults` `{"fault": "duplicate" | "stale" | "bad_signature", "count": 1}`:
/// the next notifications are delivered twice, or sent first with an
/// 11-minute-old timestamp or signed with the wrong secret (their retries are
/// sent correctly).
pub(super) async fn delivery_faults(State(sim): State<Simulator>, body: Bytes) -> Response {
    let body: DeliveryFaultBody = match parse_json(&body) {
        Ok(b) => b,
        Err(response) => return *response,
    };
    sim.inject_delivery_faults(body.fault, body.count);
    Json(json!({"fault": body.fault, "count": body.count})).into_response()
}

/// `POST /sim/websocket/{session_id}/reconnect` → 202 `{"reconnect_url"}`: starts §6.5's reconnect flow.
pub(super) async fn reconnect_websocket(State(sim): State<Simulator>, Path(session_id): Path<String>) -> Response {
    match sim.reconnect_websocket(&session_id) {
        Ok(url) => {
            (StatusCode::ACCEPTED, Json(json!({"session_id": session_id, "reconnect_url": url}))).into_response()
        }
        Err(e) => sim_error(&e),
    }
}
