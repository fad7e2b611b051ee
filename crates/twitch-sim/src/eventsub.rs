//! Conduits, conduit shards (§3) and EventSub subscriptions (§4).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::Simulator;
use super::delivery::{ChallengeFor, spawn_challenge};
use super::helix::{Caller, Reject, after, bad_request, error, page_size, paginate, require_app};
use super::state::{
    Conduit, MAX_CONDUITS, MAX_SHARDS, MAX_TOTAL_COST, Shard, ShardTransport, State as SimState, SubTransport,
    Subscription,
};
use super::util::{Params, check_callback, check_secret, decode_cursor, encode_cursor, now_nanos};

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

/// Whether `status` is a subscription status (§4.4): `enabled`, the two of
/// the webhook challenge, every revocation status, and `conduit_deleted`,
/// which Twitch's reference lists for a subscription whose conduit was
/// deleted (§3.5).
fn is_subscription_status(status: &str) -> bool {
    ["enabled", "webhook_callback_verification_pending", "webhook_callback_verification_failed", CONDUIT_DELETED]
        .contains(&status)
        || super::REVOCATION_STATUSES.contains(&status)
}

/// The status of a subscription whose conduit was deleted. §3.5 only says
/// such subscriptions "stop" and later "show as disabled"; Twitch's Get
/// EventSub Subscriptions reference names this status for it ("The conduit
/// associated with the subscription was deleted").
const CONDUIT_DELETED: &str = "conduit_deleted";

fn json_body(body: &Bytes) -> Result<Map<String, Value>, Reject> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(Box::new(bad_request("The request body must be a JSON object"))),
    }
}

macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(response) => return *response,
        }
    };
}

fn shard_count(value: Option<&Value>) -> Result<usize, Reject> {
    match value.and_then(Value::as_u64) {
        Some(n) if (1..=MAX_SHARDS).contains(&n) => Ok(usize::try_from(n).unwrap_or(1)),
        _ => Err(Box::new(bad_request(format!("shard_count must be an integer between 1 and {MAX_SHARDS}")))),
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

/// `POST /helix/eventsub/conduits` `{"shard_count": n}` → 200.
pub(crate) async fn create_conduit(
    State(sim): State<Simulator>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Response {
    tri!(require_app(&caller));
    let body = tri!(json_body(&body));
    let count = tri!(shard_count(body.get("shard_count")));
    let mut state = sim.state();
    if state.conduits.iter().filter(|c| c.client_id == caller.client_id).count() >= MAX_CONDUITS {
        return error(StatusCode::TOO_MANY_REQUESTS, "The conduit limit has been reached");
    }
    let conduit = Conduit {
        id: uuid::Uuid::new_v4().to_string(),
        client_id: caller.client_id.clone(),
        shards: vec![Shard::unbound(); count],
    };
    let data = conduit.to_json();
    state.conduits.push(conduit);
    Json(json!({"data": [data]})).into_response()
}

/// `PATCH /helix/eventsub/conduits` `{"id": …, "shard_count": n}` → 200;
/// shrinking drops the highest-numbered shards.
pub(crate) async fn update_conduit(
    State(sim): State<Simulator>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Response {
    tri!(require_app(&caller));
    let body = tri!(json_body(&body));
    let Some(id) = body.get("id").and_then(Value::as_str).filter(|s| !s.is_empty()) else {
        return bad_request("Missing required parameter \"id\"");
    };
    let count = tri!(shard_count(body.get("shard_count")));
    let mut state = sim.state();
    let Some(conduit) = state.conduit_mut(&caller.client_id, id) else {
        return error(StatusCode::NOT_FOUND, "Conduit not found");
    };
    conduit.shards.resize(count, Shard::unbound());
    Json(json!({"data": [conduit.to_json()]})).into_response()
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
    body: Bytes,
) -> Response {
    tri!(require_app(&caller));
    let body = tri!(json_body(&body));
    let Some(conduit_id) = body.get("conduit_id").and_then(Value::as_str).filter(|s| !s.is_empty()) else {
        return bad_request("Missing required parameter \"conduit_id\"");
    };
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
            }
        }
    }
    for (callback, secret, index, generation) in challenges {
        let what = ChallengeFor::Shard { conduit_id: conduit_id.to_owned(), index, generation };
        spawn_challenge(&sim, callback, secret, what);
    }
    (StatusCode::ACCEPTED, Json(json!({"data": data, "errors": errors}))).into_response()
}

/// Condition fields per type: (required, optional).
fn condition_fields(kind: &str) -> Option<(&'static [&'static str], &'static [&'static str])> {
    match kind {
        "channel.chat.message" => Some((&["broadcaster_user_id", "user_id"], &[])),
        "stream.online" | "stream.offline" => Some((&["broadcaster_user_id"], &[])),
        "user.authorization.revoke" | "user.authorization.grant" => Some((&["client_id"], &[])),
        "conduit.shard.disabled" => Some((&["client_id"], &["conduit_id"])),
        _ => None,
    }
}

/// A rejected request: status and message.
struct Refusal(StatusCode, String);

impl Refusal {
    fn bad(message: impl Into<String>) -> Self {
        Refusal(StatusCode::BAD_REQUEST, message.into())
    }

    fn into_response(self) -> Response {
        error(self.0, self.1)
    }
}

fn validate_condition(
    state: &SimState,
    caller: &Caller,
    kind: &str,
    condition: Option<&Value>,
) -> Result<Map<String, Value>, Refusal> {
    let Some((required, optional)) = condition_fields(kind) else {
        return Err(Refusal::bad("The subscription type and version combination is not supported"));
    };
    let Some(condition) = condition.and_then(Value::as_object) else {
        return Err(Refusal::bad("The condition is missing or is not an object"));
    };
    for (key, value) in condition {
        if !required.contains(&key.as_str()) && !optional.contains(&key.as_str()) {
            return Err(Refusal::bad(format!("The condition field \"{key}\" is not valid for {kind}")));
        }
        if value.as_str().is_none_or(str::is_empty) {
            return Err(Refusal::bad(format!("The condition field \"{key}\" must be a non-empty string")));
        }
    }
    for key in required {
        if !condition.contains_key(*key) {
            return Err(Refusal::bad(format!("The condition field \"{key}\" is required for {kind}")));
        }
    }
    for (key, value) in condition {
        let value = value.as_str().unwrap_or_default();
        if key.ends_with("user_id") && state.user(value).is_none() {
            return Err(Refusal::bad(format!("The user in condition.{key} does not exist")));
        }
        if key == "client_id" && value != caller.client_id {
            return Err(Refusal(StatusCode::FORBIDDEN, "condition.client_id must be the token's client ID".into()));
        }
        if key == "conduit_id" && state.conduit(&caller.client_id, value).is_none() {
            return Err(Refusal::bad("The conduit in condition.conduit_id does not exist"));
        }
    }
    Ok(condition.clone())
}

fn parse_transport(state: &SimState, caller: &Caller, transport: Option<&Value>) -> Result<SubTransport, Refusal> {
    let Some(transport) = transport.and_then(Value::as_object) else {
        return Err(Refusal::bad("The transport is missing or is not an object"));
    };
    let text = |key: &str| transport.get(key).and_then(Value::as_str).filter(|s| !s.is_empty());
    match text("method") {
        Some("conduit") => {
            let conduit_id = text("conduit_id").ok_or_else(|| Refusal::bad("transport.conduit_id is required"))?;
            if state.conduit(&caller.client_id, conduit_id).is_none() {
                return Err(Refusal::bad("The conduit in transport.conduit_id does not exist"));
            }
            Ok(SubTransport::Conduit { conduit_id: conduit_id.to_owned() })
        }
        Some("webhook") => {
            let callback = text("callback").ok_or_else(|| Refusal::bad("transport.callback is required"))?;
            check_callback(callback).map_err(Refusal::bad)?;
            let secret = text("secret").unwrap_or_default();
            check_secret(secret).map_err(Refusal::bad)?;
            Ok(SubTransport::Webhook { callback: callback.to_owned(), secret: secret.to_owned() })
        }
        Some("websocket") => {
            let session_id = text("session_id").ok_or_else(|| Refusal::bad("transport.session_id is required"))?;
            if state.sessions.get(session_id).is_some_and(|s| !s.superseded) {
                // ChatPulse binds sessions to conduit shards; plain WebSocket subscriptions are not simulated.
                return Err(Refusal::bad("The simulator supports WebSocket sessions only as conduit shards"));
            }
            Err(Refusal::bad("websocket session is not connected"))
        }
        _ => Err(Refusal::bad("transport.method must be webhook, websocket or conduit")),
    }
}

fn same_transport(a: &SubTransport, b: &SubTransport) -> bool {
    match (a, b) {
        (SubTransport::Conduit { conduit_id: x }, SubTransport::Conduit { conduit_id: y }) => x == y,
        (SubTransport::Webhook { callback: x, .. }, SubTransport::Webhook { callback: y, .. }) => x == y,
        (SubTransport::WebSocket { session_id: x, .. }, SubTransport::WebSocket { session_id: y, .. }) => x == y,
        _ => false,
    }
}

/// Twitch's authorization rule for subscriptions made with an app token (§4.6).
fn authorized(state: &SimState, caller: &Caller, kind: &str, condition: &Map<String, Value>) -> bool {
    let field = |k: &str| condition.get(k).and_then(Value::as_str).unwrap_or_default();
    match kind {
        "channel.chat.message" => {
            let (broadcaster, bot) = (field("broadcaster_user_id"), field("user_id"));
            let client = caller.client_id.as_str();
            let bot_ok = state.has_scope(client, bot, "user:read:chat") && state.has_scope(client, bot, "user:bot");
            let channel_ok = bot == broadcaster
                || state.has_scope(client, broadcaster, "channel:bot")
                || state.moderators.contains(&(broadcaster.to_owned(), bot.to_owned()));
            bot_ok && channel_ok
        }
        _ => true,
    }
}

/// Cost per §4.5.
fn cost(state: &SimState, caller: &Caller, kind: &str, condition: &Map<String, Value>) -> u64 {
    match kind {
        "stream.online" | "stream.offline" => {
            let broadcaster = condition.get("broadcaster_user_id").and_then(Value::as_str).unwrap_or_default();
            u64::from(!state.has_any_grant(&caller.client_id, broadcaster))
        }
        "user.authorization.revoke" | "user.authorization.grant" => 1,
        _ => 0,
    }
}

/// `POST /helix/eventsub/subscriptions` → 202 with `data[0]`, `total`, `total_cost`, `max_total_cost`.
pub(crate) async fn create_subscription(
    State(sim): State<Simulator>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Response {
    let body = tri!(json_body(&body));
    let method = body.get("transport").and_then(|t| t.get("method")).and_then(Value::as_str).unwrap_or_default();
    match method {
        "conduit" | "webhook" if !caller.is_app() => {
            return error(
                StatusCode::UNAUTHORIZED,
                "An app access token is required for webhook and conduit transports",
            );
        }
        "websocket" if caller.is_app() => {
            return error(StatusCode::UNAUTHORIZED, "A user access token is required for the websocket transport");
        }
        _ => {}
    }
    let Some(kind) = body.get("type").and_then(Value::as_str).filter(|s| !s.is_empty()) else {
        return bad_request("The subscription type is missing");
    };
    let version = match body.get("version") {
        Some(Value::String(v)) => v.clone(),
        Some(_) => return bad_request("The version must be a string"),
        None => return bad_request("The version is missing"),
    };
    if version != "1" || condition_fields(kind).is_none() {
        return bad_request("The subscription type and version combination is not supported");
    }
    // §4.6: the user.authorization.* types are "not usable with WebSockets".
    if kind.starts_with("user.authorization.") && method == "websocket" {
        return bad_request("The subscription type does not support the websocket transport");
    }
    let (subscription, response) = {
        let mut state = sim.state();
        let condition = match validate_condition(&state, &caller, kind, body.get("condition")) {
            Ok(c) => c,
            Err(refusal) => return refusal.into_response(),
        };
        let transport = match parse_transport(&state, &caller, body.get("transport")) {
            Ok(t) => t,
            Err(refusal) => return refusal.into_response(),
        };
        if !authorized(&state, &caller, kind, &condition) {
            return error(StatusCode::FORBIDDEN, "subscription missing proper authorization");
        }
        let same_condition: Vec<&Subscription> = state
            .subscriptions
            .iter()
            .filter(|s| s.client_id == caller.client_id && s.kind == kind && s.condition == condition && s.is_active())
            .collect();
        if same_condition.iter().any(|s| same_transport(&s.transport, &transport)) {
            return error(StatusCode::CONFLICT, "subscription already exists");
        }
        if same_condition.len() >= 3 {
            return error(StatusCode::TOO_MANY_REQUESTS, "too many subscriptions with the same type and condition");
        }
        let cost = cost(&state, &caller, kind, &condition);
        if state.total_cost(&caller.client_id) + cost > MAX_TOTAL_COST {
            return error(StatusCode::TOO_MANY_REQUESTS, "subscription cost budget exceeded");
        }
        let status = if matches!(transport, SubTransport::Webhook { .. }) {
            "webhook_callback_verification_pending"
        } else {
            "enabled"
        };
        state.next_seq += 1;
        let subscription = Subscription {
            id: uuid::Uuid::new_v4().to_string(),
            client_id: caller.client_id.clone(),
            status: status.into(),
            kind: kind.to_owned(),
            version,
            condition,
            created_at: now_nanos(),
            transport,
            cost,
            seq: state.next_seq,
            failures: 0,
        };
        state.subscriptions.push(subscription.clone());
        let response = json!({
            "data": [subscription.to_json()],
            "total": state.total(&caller.client_id),
            "total_cost": state.total_cost(&caller.client_id),
            "max_total_cost": MAX_TOTAL_COST,
        });
        (subscription, response)
    };
    if let SubTransport::Webhook { callback, secret } = &subscription.transport {
        let what = ChallengeFor::Subscription { subscription: Box::new(subscription.clone()) };
        spawn_challenge(&sim, callback.clone(), secret.clone(), what);
    }
    (StatusCode::ACCEPTED, Json(response)).into_response()
}

/// Subscriptions a caller may see: an app token sees the client's webhook and
/// conduit subscriptions, a user token its own WebSocket ones.
fn visible(caller: &Caller, sub: &Subscription) -> bool {
    if sub.client_id != caller.client_id {
        return false;
    }
    match (&sub.transport, &caller.user_id) {
        (SubTransport::WebSocket { user_id, .. }, Some(me)) => user_id == me,
        (SubTransport::WebSocket { .. }, None) => false,
        (_, user) => user.is_none(),
    }
}

/// `GET /helix/eventsub/subscriptions` with at most one of
/// `status` / `type` / `user_id` / `subscription_id`, oldest first.
pub(crate) async fn get_subscriptions(
    State(sim): State<Simulator>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Response {
    let params = Params::parse(query.as_deref());
    let filters = ["status", "type", "user_id", "subscription_id"];
    if filters.iter().filter(|f| params.has(f)).count() > 1 {
        return bad_request("Only one of status, type, user_id and subscription_id may be specified");
    }
    if let Some(status) = params.get("status")
        && !is_subscription_status(status)
    {
        return bad_request("Invalid status");
    }
    // §4.2: a bad type value is a 400, like a bad status (the simulator knows
    // the types of §4.6).
    if let Some(kind) = params.get("type")
        && condition_fields(kind).is_none()
    {
        return bad_request("Invalid type");
    }
    let size = tri!(page_size(&params, 100));
    let after = match params.get("after") {
        None | Some("") => 0,
        Some(cursor) => match decode_cursor(cursor) {
            Some(seq) => seq,
            None => return bad_request("Invalid cursor"),
        },
    };
    let state = sim.state();
    let mut matching: Vec<&Subscription> = state
        .subscriptions
        .iter()
        .filter(|s| visible(&caller, s))
        .filter(|s| params.get("status").is_none_or(|v| s.status == v))
        .filter(|s| params.get("type").is_none_or(|v| s.kind == v))
        .filter(|s| params.get("user_id").is_none_or(|v| s.mentions_user(v)))
        .filter(|s| params.get("subscription_id").is_none_or(|v| s.id == v))
        .collect();
    matching.sort_by_key(|s| s.seq);
    let rest: Vec<&Subscription> = matching.into_iter().filter(|s| s.seq > after).collect();
    let more = rest.len() > size;
    let page: Vec<&Subscription> = rest.into_iter().take(size).collect();
    let pagination = match page.last() {
        Some(last) if more => json!({"cursor": encode_cursor(last.seq)}),
        _ => json!({}),
    };
    let data: Vec<Value> = page.iter().map(|s| s.to_json()).collect();
    let (total, total_cost) = if caller.is_app() {
        (state.total(&caller.client_id), state.total_cost(&caller.client_id))
    } else {
        (data.len(), 0)
    };
    Json(json!({
        "data": data, "total": total, "total_cost": total_cost, "max_total_cost": MAX_TOTAL_COST,
        "pagination": pagination,
    }))
    .into_response()
}

/// `DELETE /helix/eventsub/subscriptions?id=…` → 204 / 404.
pub(crate) async fn delete_subscription(
    State(sim): State<Simulator>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Response {
    let params = Params::parse(query.as_deref());
    let Some(id) = params.get("id").filter(|s| !s.is_empty()) else {
        return bad_request("Missing required parameter \"id\"");
    };
    let mut state = sim.state();
    let Some(sub) = state.subscriptions.iter().find(|s| s.id == id && s.client_id == caller.client_id) else {
        return error(StatusCode::NOT_FOUND, "Subscription not found");
    };
    let websocket = matches!(sub.transport, SubTransport::WebSocket { .. });
    if websocket == caller.is_app() {
        return error(StatusCode::UNAUTHORIZED, "The access token type does not match the subscription's transport");
    }
    if !visible(&caller, sub) {
        return error(StatusCode::NOT_FOUND, "Subscription not found");
    }
    state.subscriptions.retain(|s| s.id != id);
    StatusCode::NO_CONTENT.into_response()
}
