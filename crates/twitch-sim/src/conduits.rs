//! Conduits and conduit shards (§3). Create, Update and Update Shards take
//! their scalar parameters in the JSON body (Twitch's reference) or in the
//! query string (what twitchio and twurple send); both forms answer alike,
//! and a parameter given in both places must agree.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::Simulator;
use super::delivery::{ChallengeFor, spawn_challenge};
use super::eventsub::CONDUIT_DELETED;
use super::helix::{Caller, Reject, after, bad_request, error, page_size, paginate, require_app};
use super::state::{Conduit, MAX_CONDUITS, MAX_SHARDS, Shard, ShardTransport, State as SimState, SubTransport};
use super::util::{Params, check_callback, check_secret};

const SHARD_STATUSES: [&str; 11] = [
    "enabled",
    "webhook_callback_verification_pending",
    "webhook_callback_verification_failed",
    "notification_failures_exceeded",
    "websocket_disconnected",
    "websocket_failed_ping_pong",
    "websocket_received_inbound_traffic",
    "websocket_internal_error",
    "websocket_network_timeout",
    "websocket_network_error",
    "websocket_failed_to_reconnect",
];

macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(response) => return *response,
        }
    };
}

/// The JSON object body; an empty body is an empty object (the query form
/// sends none).
fn body_object(body: &Bytes) -> Result<Map<String, Value>, Reject> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(Box::new(bad_request("The request body must be a JSON object"))),
    }
}

fn disagree(key: &str, query: &str, body: &str) -> Reject {
    Box::new(bad_request(format!(
        "The parameter \"{key}\" is given in the query ({query}) and in the body ({body}) with different values"
    )))
}

/// A string parameter from the query, the body, or both (then equal).
fn text_param(query: &Params, body: &Map<String, Value>, key: &str) -> Result<Option<String>, Reject> {
    let from_query = query.get(key).filter(|v| !v.is_empty());
    let from_body = match body.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(v)) if v.is_empty() => None,
        Some(Value::String(v)) => Some(v.as_str()),
        Some(_) => return Err(Box::new(bad_request(format!("The parameter \"{key}\" must be a string")))),
    };
    match (from_query, from_body) {
        (Some(q), Some(b)) if q != b => Err(disagree(key, q, b)),
        (q, b) => Ok(q.or(b).map(str::to_owned)),
    }
}

fn count_error() -> Reject {
    Box::new(bad_request(format!("shard_count must be an integer between 1 and {MAX_SHARDS}")))
}

/// `shard_count` from the query, the body, or both (then equal); required.
fn shard_count(query: &Params, body: &Map<String, Value>) -> Result<usize, Reject> {
    let from_query = match query.get("shard_count") {
        None => None,
        Some(raw) => Some(raw.trim().parse::<u64>().map_err(|_| count_error())?),
    };
    let from_body = match body.get("shard_count") {
        None | Some(Value::Null) => None,
        Some(value) => Some(value.as_u64().ok_or_else(count_error)?),
    };
    let count = match (from_query, from_body) {
        (Some(q), Some(b)) if q != b => return Err(disagree("shard_count", &q.to_string(), &b.to_string())),
        (q, b) => q.or(b),
    };
    match count {
        Some(n) if (1..=MAX_SHARDS).contains(&n) => Ok(usize::try_from(n).unwrap_or(1)),
        _ => Err(count_error()),
    }
}

/// `GET /helix/eventsub/conduits`
pub(crate) async fn get_conduits(State(sim): State<Simulator>, Extension(caller): Extension<Caller>) -> Response {
    tri!(require_app(&caller));
    let state = sim.state();
    let data: Vec<Value> =
        state.conduits.iter().filter(|c| c.client_id == caller.client_id).map(Conduit::to_json).collect();
    Json(json!({"data": data})).into_response()
}

/// `POST /helix/eventsub/conduits` `{"shard_count": n}` (or `?shard_count=n`) → 200.
pub(crate) async fn create_conduit(
    State(sim): State<Simulator>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    tri!(require_app(&caller));
    let query = Params::parse(query.as_deref());
    let body = tri!(body_object(&body));
    let count = tri!(shard_count(&query, &body));
    let now = sim.now();
    let mut state = sim.state();
    if state.conduits.iter().filter(|c| c.client_id == caller.client_id).count() >= MAX_CONDUITS {
        return error(StatusCode::TOO_MANY_REQUESTS, "The conduit limit has been reached");
    }
    let conduit = Conduit {
        id: uuid::Uuid::new_v4().to_string(),
        client_id: caller.client_id.clone(),
        shards: vec![Shard::unbound(); count],
        // No shard is enabled yet: the 72 hours of §3.9 run from creation.
        no_enabled_shard_since: Some(now),
    };
    let data = conduit.to_json();
    state.conduits.push(conduit);
    Json(json!({"data": [data]})).into_response()
}

/// `PATCH /helix/eventsub/conduits` `{"id": …, "shard_count": n}` (or the
/// same in the query) → 200; shrinking drops the highest-numbered shards.
pub(crate) async fn update_conduit(
    State(sim): State<Simulator>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    tri!(require_app(&caller));
    let query = Params::parse(query.as_deref());
    let body = tri!(body_object(&body));
    let Some(id) = tri!(text_param(&query, &body, "id")) else {
        return bad_request("Missing required parameter \"id\"");
    };
    let count = tri!(shard_count(&query, &body));
    let data = {
        let mut state = sim.state();
        let Some(conduit) = state.conduit_mut(&caller.client_id, &id) else {
            return error(StatusCode::NOT_FOUND, "Conduit not found");
        };
        conduit.shards.resize(count, Shard::unbound());
        conduit.to_json()
    };
    sim.sweep();
    Json(json!({"data": [data]})).into_response()
}

/// `DELETE /helix/eventsub/conduits?id=…` → 204. Its subscriptions stop at
/// once and stay listed as `conduit_deleted` (§3.5: "all subscriptions on it
/// stop", shown as disabled, not removed; like other disabled subscriptions,
/// §4.2, they remain visible — here until deleted or the simulator stops).
pub(crate) async fn delete_conduit(
    State(sim): State<Simulator>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Response {
    tri!(require_app(&caller));
    let params = Params::parse(query.as_deref());
    let Some(id) = params.get("id").filter(|s| !s.is_empty()) else {
        return bad_request("Missing required parameter \"id\"");
    };
    let mut state = sim.state();
    if state.conduit(&caller.client_id, id).is_none() {
        return error(StatusCode::NOT_FOUND, "Conduit not found");
    }
    state.conduits.retain(|c| c.id != id);
    for sub in &mut state.subscriptions {
        if matches!(&sub.transport, SubTransport::Conduit { conduit_id } if conduit_id == id) && sub.is_active() {
            sub.status = CONDUIT_DELETED.into();
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /helix/eventsub/conduits/shards?conduit_id=…[&status=…][&after=…]`
pub(crate) async fn get_shards(
    State(sim): State<Simulator>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Response {
    tri!(require_app(&caller));
    let params = Params::parse(query.as_deref());
    let Some(conduit_id) = params.get("conduit_id").filter(|s| !s.is_empty()) else {
        return bad_request("Missing required parameter \"conduit_id\"");
    };
    let status = params.get("status");
    if status.is_some_and(|s| !SHARD_STATUSES.contains(&s)) {
        return bad_request("Invalid status");
    }
    let size = tri!(page_size(&params, 100));
    let start = usize::try_from(tri!(after(&params)).unwrap_or(0)).unwrap_or(usize::MAX);
    let state = sim.state();
    let Some(conduit) = state.conduit(&caller.client_id, conduit_id) else {
        return error(StatusCode::NOT_FOUND, "Conduit not found");
    };
    let shards: Vec<Value> = conduit
        .shards
        .iter()
        .enumerate()
        .filter(|(_, s)| status.is_none_or(|wanted| s.status == wanted))
        .map(|(i, s)| s.to_json(i))
        .collect();
    let (data, pagination) = paginate(shards, start, size);
    Json(json!({"data": data, "pagination": pagination})).into_response()
}

fn shard_error(id: &str, message: &str) -> Value {
    json!({"id": id, "message": message, "code": "invalid_parameter"})
}

/// Validates one entry of Update Conduit Shards; returns the shard index and transport.
fn parse_shard(
    entry: &Value,
    count: usize,
    state: &SimState,
) -> Result<(usize, ShardTransport), (String, &'static str)> {
    let id_text = match entry.get("id") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let index = match entry.get("id").and_then(Value::as_str).and_then(|s| s.parse::<usize>().ok()) {
        Some(i) if i < count => i,
        _ => return Err((id_text, "The shard id is outside the conduit's range")),
    };
    let fail = |m| Err((id_text.clone(), m));
    let Some(transport) = entry.get("transport").and_then(Value::as_object) else {
        return fail("The transport is missing");
    };
    match transport.get("method").and_then(Value::as_str) {
        Some("webhook") => {
            let Some(callback) = transport.get("callback").and_then(Value::as_str).filter(|c| !c.is_empty()) else {
                return fail("The callback is required for the webhook transport");
            };
            if let Err(message) = check_callback(callback) {
                return fail(message);
            }
            let secret = transport.get("secret").and_then(Value::as_str).unwrap_or_default();
            if let Err(message) = check_secret(secret) {
                return fail(message);
            }
            Ok((index, ShardTransport::Webhook { callback: callback.to_owned(), secret: secret.to_owned() }))
        }
        Some("websocket") => {
            let Some(session_id) = transport.get("session_id").and_then(Value::as_str).filter(|s| !s.is_empty()) else {
                return fail("The session_id is required for the websocket transport");
            };
            let Some(session) = state.sessions.get(session_id).filter(|s| !s.superseded) else {
                return fail("websocket session is not connected");
            };
            // The spec is silent on mixing; the simulator keeps a session
            // either a shard's (the app's) or a user's plain subscriptions'.
            if state.subscriptions.iter().any(|s| s.session_id() == Some(session_id)) {
                return fail("websocket session is used by websocket subscriptions");
            }
            Ok((
                index,
                ShardTransport::WebSocket {
                    session_id: session_id.to_owned(),
                    connected_at: session.connected_at.clone(),
                    disconnected_at: None,
                },
            ))
        }
        _ => fail("The transport method must be webhook or websocket"),
    }
}

/// `PATCH /helix/eventsub/conduits/shards` → 202 with `data` and `errors`;
/// webhook shards go `webhook_callback_verification_pending` and get a challenge.
pub(crate) async fn update_shards(
    State(sim): State<Simulator>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    tri!(require_app(&caller));
    let query = Params::parse(query.as_deref());
    let body = tri!(body_object(&body));
    let Some(conduit_id) = tri!(text_param(&query, &body, "conduit_id")) else {
        return bad_request("Missing required parameter \"conduit_id\"");
    };
    let conduit_id = conduit_id.as_str();
    let Some(entries) = body.get("shards").and_then(Value::as_array).filter(|a| !a.is_empty()) else {
        return bad_request("Missing required parameter \"shards\"");
    };
    let mut data = Vec::new();
    let mut errors = Vec::new();
    let mut challenges = Vec::new();
    {
        let mut state = sim.state();
        let Some(count) = state.conduit(&caller.client_id, conduit_id).map(|c| c.shards.len()) else {
            return error(StatusCode::NOT_FOUND, "Conduit not found");
        };
        let parsed: Vec<_> = entries.iter().map(|entry| parse_shard(entry, count, &state)).collect();
        let mut bound_sessions = Vec::new();
        let Some(conduit) = state.conduit_mut(&caller.client_id, conduit_id) else {
            return error(StatusCode::NOT_FOUND, "Conduit not found");
        };
        for result in parsed {
            match result {
                Err((id, message)) => errors.push(shard_error(&id, message)),
                Ok((index, transport)) => {
                    let Some(shard) = conduit.shards.get_mut(index) else { continue };
                    shard.generation += 1;
                    shard.failures = 0;
                    match &transport {
                        ShardTransport::Webhook { callback, secret } => {
                            shard.status = "webhook_callback_verification_pending".into();
                            challenges.push((callback.clone(), secret.clone(), index, shard.generation));
                        }
                        ShardTransport::WebSocket { session_id, .. } => {
                            shard.status = "enabled".into();
                            bound_sessions.push(session_id.clone());
                        }
                        ShardTransport::Unbound => {}
                    }
                    shard.transport = transport;
                    data.push(shard.to_json(index));
                }
            }
        }
        for session_id in bound_sessions {
            if let Some(session) = state.sessions.get_mut(&session_id) {
                session.used = true;
                session.shard_bound = true;
            }
        }
    }
    sim.sweep();
    for (callback, secret, index, generation) in challenges {
        let what = ChallengeFor::Shard { conduit_id: conduit_id.to_owned(), index, generation };
        spawn_challenge(&sim, callback, secret, what);
    }
    (StatusCode::ACCEPTED, Json(json!({"data": data, "errors": errors}))).into_response()
}
