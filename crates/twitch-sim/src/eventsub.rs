//! EventSub subscriptions (§4) on all three transports: conduits and plain
//! webhooks (app token) and plain WebSocket sessions (user token, §6).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::Simulator;
use super::delivery::{ChallengeFor, spawn_challenge};
use super::helix::{Caller, Reject, bad_request, error, page_size};
use super::state::{
    MAX_TOTAL_COST, State as SimState, SubTransport, Subscription, WEBSOCKET_MAX_TOTAL_COST,
    WEBSOCKET_SESSIONS_PER_USER, WEBSOCKET_SUBSCRIPTIONS_PER_SESSION,
};
use super::util::{Params, check_callback, check_secret, decode_cursor, encode_cursor};

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
pub(crate) const CONDUIT_DELETED: &str = "conduit_deleted";

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
            let Some(session) = state.sessions.get(session_id).filter(|s| !s.superseded) else {
                return Err(Refusal::bad("websocket session is not connected"));
            };
            // The spec is silent on mixing; the simulator keeps a session
            // either a conduit shard's (the app's) or a user's subscriptions'.
            if session.shard_bound {
                return Err(Refusal::bad("websocket session is bound to a conduit shard"));
            }
            Ok(SubTransport::WebSocket {
                session_id: session_id.to_owned(),
                user_id: caller.user_id.clone().unwrap_or_default(),
                connected_at: session.connected_at.clone(),
                disconnected_at: None,
            })
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

/// Twitch's authorization rules (§4.6). With an app token (conduit,
/// webhook) consent is looked up by client ID; with a user token (plain
/// WebSocket) the token itself must carry it.
fn authorized(state: &SimState, caller: &Caller, kind: &str, condition: &Map<String, Value>) -> bool {
    let field = |k: &str| condition.get(k).and_then(Value::as_str).unwrap_or_default();
    let client = caller.client_id.as_str();
    match (kind, caller.user_id.as_deref()) {
        ("channel.chat.message", None) => {
            let (broadcaster, bot) = (field("broadcaster_user_id"), field("user_id"));
            let bot_ok = state.has_scope(client, bot, "user:read:chat") && state.has_scope(client, bot, "user:bot");
            let channel_ok = bot == broadcaster
                || state.has_scope(client, broadcaster, "channel:bot")
                || state.moderators.contains(&(broadcaster.to_owned(), bot.to_owned()));
            bot_ok && channel_ok
        }
        // Twitch's type reference: "user:read:chat scope from the chatting
        // user" — the token's own user; `user:bot` and the channel's
        // `channel:bot` are only needed with an app token.
        ("channel.chat.message", Some(me)) => {
            field("user_id") == me && caller.scopes.iter().any(|s| s == "user:read:chat")
        }
        // Keyed by client ID: "app access token where the client ID matches".
        ("conduit.shard.disabled", user) => user.is_none(),
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

/// The limits of plain WebSocket subscriptions (§4.5): 300 enabled ones per
/// session, 3 sessions with enabled ones per user of the client.
fn websocket_limits(state: &SimState, caller: &Caller, session_id: &str) -> Result<(), Refusal> {
    let mine: Vec<&Subscription> =
        state.owned_by(&caller.client_id, caller.user_id.as_deref()).filter(|s| s.status == "enabled").collect();
    if mine.iter().filter(|s| s.session_id() == Some(session_id)).count() >= WEBSOCKET_SUBSCRIPTIONS_PER_SESSION {
        let message = "websocket transport session subscriptions limit exceeded";
        return Err(Refusal(StatusCode::TOO_MANY_REQUESTS, message.into()));
    }
    let mut sessions: Vec<&str> = mine.iter().filter_map(|s| s.session_id()).collect();
    sessions.sort_unstable();
    sessions.dedup();
    if sessions.len() >= WEBSOCKET_SESSIONS_PER_USER && !sessions.contains(&session_id) {
        return Err(Refusal(StatusCode::TOO_MANY_REQUESTS, "number of websocket transports limit exceeded".into()));
    }
    Ok(())
}

/// Refuses what the token type, the type and the transport do not allow
/// together, before anything else is looked at.
fn check_kind_and_token(body: &Map<String, Value>, caller: &Caller) -> Result<(String, String), Refusal> {
    let method = body.get("transport").and_then(|t| t.get("method")).and_then(Value::as_str).unwrap_or_default();
    // §1.7 and §4.1: the wrong token type for the transport is a 401. (Real
    // Twitch has been seen answering 400 "invalid transport and auth
    // combination"; the reference and the spec say 401.)
    match method {
        "conduit" | "webhook" if !caller.is_app() => {
            let message = "An app access token is required for webhook and conduit transports";
            return Err(Refusal(StatusCode::UNAUTHORIZED, message.into()));
        }
        "websocket" if caller.is_app() => {
            let message = "A user access token is required for the websocket transport";
            return Err(Refusal(StatusCode::UNAUTHORIZED, message.into()));
        }
        _ => {}
    }
    let Some(kind) = body.get("type").and_then(Value::as_str).filter(|s| !s.is_empty()) else {
        return Err(Refusal::bad("The subscription type is missing"));
    };
    let version = match body.get("version") {
        Some(Value::String(v)) => v.clone(),
        Some(_) => return Err(Refusal::bad("The version must be a string")),
        None => return Err(Refusal::bad("The version is missing")),
    };
    if version != "1" || condition_fields(kind).is_none() {
        return Err(Refusal::bad("The subscription type and version combination is not supported"));
    }
    // §4.6: the user.authorization.* types are webhook-only ("not usable
    // with WebSockets"; Twitch's type reference says the same of conduits).
    if kind.starts_with("user.authorization.") && (method == "websocket" || method == "conduit") {
        return Err(Refusal::bad(format!("The subscription type does not support the {method} transport")));
    }
    Ok((kind.to_owned(), version))
}

/// `POST /helix/eventsub/subscriptions` → 202 with `data[0]`, `total`, `total_cost`, `max_total_cost`.
pub(crate) async fn create_subscription(
    State(sim): State<Simulator>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Response {
    let body = tri!(json_body(&body));
    let (kind, version) = match check_kind_and_token(&body, &caller) {
        Ok(checked) => checked,
        Err(refusal) => return refusal.into_response(),
    };
    let now = sim.now_nanos();
    let created = {
        let mut state = sim.state();
        create(&mut state, &caller, &kind, version, &body, now)
    };
    let (subscription, response) = match created {
        Ok(created) => created,
        Err(refusal) => return refusal.into_response(),
    };
    if let SubTransport::Webhook { callback, secret } = &subscription.transport {
        let what = ChallengeFor::Subscription { subscription: Box::new(subscription.clone()) };
        spawn_challenge(&sim, callback.clone(), secret.clone(), what);
    }
    (StatusCode::ACCEPTED, Json(response)).into_response()
}

/// The owner's `total`, `total_cost` and `max_total_cost` (§4.1): the app's
/// for webhook and conduit subscriptions, the user's for WebSocket ones.
fn totals(state: &SimState, client_id: &str, owner: Option<&str>) -> (usize, u64, u64) {
    let max = if owner.is_some() { WEBSOCKET_MAX_TOTAL_COST } else { MAX_TOTAL_COST };
    (state.total(client_id, owner), state.total_cost(client_id, owner), max)
}

fn create(
    state: &mut SimState,
    caller: &Caller,
    kind: &str,
    version: String,
    body: &Map<String, Value>,
    now: String,
) -> Result<(Subscription, Value), Refusal> {
    let condition = validate_condition(state, caller, kind, body.get("condition"))?;
    let transport = parse_transport(state, caller, body.get("transport"))?;
    if !authorized(state, caller, kind, &condition) {
        return Err(Refusal(StatusCode::FORBIDDEN, "subscription missing proper authorization".into()));
    }
    let owner = caller.user_id.as_deref();
    let same_condition: Vec<&Subscription> = state
        .owned_by(&caller.client_id, owner)
        .filter(|s| s.kind == kind && s.condition == condition && s.is_active())
        .collect();
    if same_condition.iter().any(|s| same_transport(&s.transport, &transport)) {
        return Err(Refusal(StatusCode::CONFLICT, "subscription already exists".into()));
    }
    if same_condition.len() >= 3 {
        let message = "too many subscriptions with the same type and condition";
        return Err(Refusal(StatusCode::TOO_MANY_REQUESTS, message.into()));
    }
    if let SubTransport::WebSocket { session_id, .. } = &transport {
        websocket_limits(state, caller, session_id)?;
    }
    let cost = cost(state, caller, kind, &condition);
    let (_, spent, budget) = totals(state, &caller.client_id, owner);
    if spent + cost > budget {
        return Err(Refusal(StatusCode::TOO_MANY_REQUESTS, "subscription cost budget exceeded".into()));
    }
    let status = if matches!(transport, SubTransport::Webhook { .. }) {
        "webhook_callback_verification_pending"
    } else {
        "enabled"
    };
    if let SubTransport::WebSocket { session_id, .. } = &transport
        && let Some(session) = state.sessions.get_mut(session_id)
    {
        // A subscription puts the session to use (no 4003, §6.4).
        session.used = true;
    }
    state.next_seq += 1;
    let subscription = Subscription {
        id: uuid::Uuid::new_v4().to_string(),
        client_id: caller.client_id.clone(),
        status: status.into(),
        kind: kind.to_owned(),
        version,
        condition,
        created_at: now,
        transport,
        cost,
        seq: state.next_seq,
        failures: 0,
        disabled_at: None,
    };
    state.subscriptions.push(subscription.clone());
    let (total, total_cost, max_total_cost) = totals(state, &caller.client_id, owner);
    let response = json!({
        "data": [subscription.to_json()], "total": total, "total_cost": total_cost, "max_total_cost": max_total_cost,
    });
    Ok((subscription, response))
}

/// Subscriptions a caller may see: an app token sees the client's webhook and
/// conduit subscriptions, a user token its own WebSocket ones.
fn visible(caller: &Caller, sub: &Subscription) -> bool {
    sub.client_id == caller.client_id && sub.websocket_owner() == caller.user_id.as_deref()
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
    let (total, total_cost, max_total_cost) = totals(&state, &caller.client_id, caller.user_id.as_deref());
    Json(json!({
        "data": data, "total": total, "total_cost": total_cost, "max_total_cost": max_total_cost,
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
