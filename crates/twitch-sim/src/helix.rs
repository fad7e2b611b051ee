//! Helix (§2): authentication, rate limits and the fault switch for every
//! `/helix` request, plus Get Users and Get Streams. Clips live in
//! `clips.rs`, stream markers in `markers.rs`, conduits in `conduits.rs`
//! and EventSub subscriptions in `eventsub.rs`.

use axum::extract::{Extension, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::state::State as SimState;
use super::util::{Params, decode_cursor, encode_cursor};
use super::{SimUser, Simulator, clips, conduits, eventsub, markers};

/// `Ratelimit-Limit`: the bucket size, also the refill per minute.
const BUCKET_LIMIT: u64 = 800;

/// An early error response, boxed so that `Result`s stay small.
pub(crate) type Reject = Box<Response>;

/// Who is calling, from the bearer token.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub client_id: String,
    /// `None` for an app access token.
    pub user_id: Option<String>,
    pub scopes: Vec<String>,
}

impl Caller {
    pub(crate) fn is_app(&self) -> bool {
        self.user_id.is_none()
    }
}

pub(crate) fn router(sim: Simulator) -> Router<Simulator> {
    Router::new()
        .route("/users", get(users))
        .route("/streams", get(streams))
        .route("/streams/markers", get(markers::get_markers).post(markers::create_marker))
        .route("/clips", get(clips::get_clips).post(clips::create_clip))
        .route(
            "/eventsub/conduits",
            get(conduits::get_conduits)
                .post(conduits::create_conduit)
                .patch(conduits::update_conduit)
                .delete(conduits::delete_conduit),
        )
        .route("/eventsub/conduits/shards", get(conduits::get_shards).patch(conduits::update_shards))
        .merge(subscription_routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(sim, gate))
}

fn subscription_routes() -> Router<Simulator> {
    Router::new().route(
        "/eventsub/subscriptions",
        get(eventsub::get_subscriptions).post(eventsub::create_subscription).delete(eventsub::delete_subscription),
    )
}

/// `/eventsub/subscriptions` at the root, behind the same gate: where the
/// Twitch CLI's mock API (and so twurple's `TWURPLE_MOCK_API_PORT`) has it.
pub(crate) fn subscriptions_router(sim: Simulator) -> Router<Simulator> {
    subscription_routes().layer(middleware::from_fn_with_state(sim, gate))
}

/// Twitch's error body: `{"error": <reason phrase>, "status": n, "message": …}`.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = json!({
        "error": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "message": message.into(),
    });
    (status, Json(body)).into_response()
}

pub(crate) fn bad_request(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, message)
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "Not Found")
}

async fn method_not_allowed() -> Response {
    error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
}

fn with_rate_headers(mut response: Response, remaining: u64, reset: u64) -> Response {
    let headers = response.headers_mut();
    for (name, value) in
        [("ratelimit-limit", BUCKET_LIMIT), ("ratelimit-remaining", remaining), ("ratelimit-reset", reset)]
    {
        headers.insert(name, HeaderValue::from(value));
    }
    response
}

fn authenticate(sim: &Simulator, headers: &HeaderMap) -> Result<Caller, Reject> {
    let unauthorized = |m: &str| error(StatusCode::UNAUTHORIZED, m);
    let Some(authorization) = headers.get(header::AUTHORIZATION) else {
        return Err(Box::new(unauthorized("OAuth token is missing")));
    };
    let authorization = authorization.to_str().unwrap_or_default().trim();
    let token = match authorization.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => return Err(Box::new(unauthorized("Invalid OAuth token"))),
    };
    let client_id = headers.get("client-id").and_then(|v| v.to_str().ok()).map(str::trim).unwrap_or_default();
    let now = sim.now();
    let state = sim.state();
    let Some(access) = state.tokens.get(token).filter(|t| t.expires_at > now) else {
        return Err(Box::new(unauthorized("Invalid OAuth token")));
    };
    if client_id.is_empty() {
        return Err(Box::new(unauthorized("Client ID is missing")));
    }
    if access.client_id != client_id {
        return Err(Box::new(unauthorized("Client ID and OAuth token do not match")));
    }
    Ok(Caller { client_id: access.client_id.clone(), user_id: access.user_id.clone(), scopes: access.scopes.clone() })
}

/// Authentication, the fault switch, the 800-point bucket and the
/// `Ratelimit-*` headers, for every Helix request.
async fn gate(State(sim): State<Simulator>, mut request: Request, next: Next) -> Response {
    sim.sweep();
    let now = sim.epoch_seconds();
    let caller = match authenticate(&sim, request.headers()) {
        Ok(caller) => caller,
        Err(response) => return with_rate_headers(*response, BUCKET_LIMIT, now),
    };
    let (allowed, remaining, reset, fault) = {
        let mut state = sim.state();
        let key = (caller.client_id.clone(), caller.user_id.clone());
        let (allowed, remaining, reset) = state.take_points(key, 1.0, now);
        let fault = state.fault.as_mut().map(|f| {
            f.remaining = f.remaining.saturating_sub(1);
            f.status
        });
        if state.fault.is_some_and(|f| f.remaining == 0) {
            state.fault = None;
        }
        (allowed, remaining, reset, fault)
    };
    if let Some(status) = fault {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status == StatusCode::TOO_MANY_REQUESTS {
            return with_rate_headers(error(status, "Too Many Requests (simulated)"), 0, now + 1);
        }
        return with_rate_headers(error(status, "simulated failure"), remaining, reset);
    }
    if !allowed {
        return with_rate_headers(error(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests"), 0, reset);
    }
    request.extensions_mut().insert(caller);
    let response = next.run(request).await;
    with_rate_headers(response, remaining, reset)
}

pub(crate) fn require_app(caller: &Caller) -> Result<(), Reject> {
    if caller.is_app() {
        Ok(())
    } else {
        Err(Box::new(error(StatusCode::UNAUTHORIZED, "An app access token is required")))
    }
}

/// The caller's user id, or 401 for an app access token.
pub(crate) fn require_user(caller: &Caller) -> Result<&str, Reject> {
    caller
        .user_id
        .as_deref()
        .ok_or_else(|| Box::new(error(StatusCode::UNAUTHORIZED, "A user access token is required")))
}

/// 401 unless the (user) token carries one of `scopes`.
pub(crate) fn require_scope(caller: &Caller, scopes: &[&str]) -> Result<(), Reject> {
    if caller.scopes.iter().any(|s| scopes.contains(&s.as_str())) {
        Ok(())
    } else {
        Err(Box::new(error(StatusCode::UNAUTHORIZED, format!("Missing scope: {}", scopes.join(" or ")))))
    }
}

const DEFAULT_PROFILE_IMAGE: &str = "https://static-cdn.jtvnw.net/user-default-pictures-uv/ebe4cd89-b4f4-4cd9-adac-2f30151b4209-profile_image-300x300.png";

fn user_json(user: &SimUser, email: bool) -> Value {
    let mut value = json!({
        "id": user.id, "login": user.login, "display_name": user.display_name, "type": "",
        "broadcaster_type": "", "description": "", "profile_image_url": DEFAULT_PROFILE_IMAGE,
        "offline_image_url": "", "view_count": 0, "created_at": "2019-05-02T17:44:10Z",
    });
    if email && let Some(object) = value.as_object_mut() {
        object.insert("email".into(), json!(format!("{}@users.sim.invalid", user.login)));
    }
    value
}

/// `GET /helix/users`: repeated `id` / `login` (≤100), or "me" with a user token.
async fn users(
    State(sim): State<Simulator>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Response {
    let params = Params::parse(query.as_deref());
    let ids = params.all("id");
    let logins = params.all("login");
    if ids.len() + logins.len() > 100 {
        return bad_request("The number of id and login values must not exceed 100");
    }
    let state = sim.state();
    let email_for = caller.user_id.as_deref().filter(|_| caller.scopes.iter().any(|s| s == "user:read:email"));
    let mut found: Vec<&SimUser> = Vec::new();
    if ids.is_empty() && logins.is_empty() {
        let Some(me) = caller.user_id.as_deref() else {
            return bad_request("Must provide an id or login parameter when using an app access token");
        };
        found.extend(state.user(me));
    } else {
        for id in ids {
            found.extend(state.user(id));
        }
        for login in logins {
            found.extend(state.user_by_login(login));
        }
    }
    let mut seen = std::collections::HashSet::new();
    let data: Vec<Value> = found
        .into_iter()
        .filter(|u| seen.insert(u.id.clone()))
        .map(|u| user_json(u, email_for == Some(u.id.as_str())))
        .collect();
    Json(json!({"data": data})).into_response()
}

/// Parses `first` (1..=100) with a default.
pub(crate) fn page_size(params: &Params, default: usize) -> Result<usize, Reject> {
    match params.get("first") {
        None => Ok(default),
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=100).contains(&n) => Ok(n),
            _ => Err(Box::new(bad_request("The parameter \"first\" must be between 1 and 100"))),
        },
    }
}

/// Parses `after` into a position.
pub(crate) fn after(params: &Params) -> Result<Option<u64>, Reject> {
    match params.get("after") {
        None | Some("") => Ok(None),
        Some(cursor) => decode_cursor(cursor).map(Some).ok_or_else(|| Box::new(bad_request("Invalid cursor"))),
    }
}

/// One page of `items` (positions are 1-based offsets), with Twitch's pagination object.
pub(crate) fn paginate<T>(items: Vec<T>, start: usize, size: usize) -> (Vec<T>, Value) {
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(start).take(size).collect();
    let end = start + page.len();
    let pagination =
        if end < total { json!({"cursor": encode_cursor(u64::try_from(end).unwrap_or(u64::MAX))}) } else { json!({}) };
    (page, pagination)
}

fn stream_json(state: &SimState, user: &SimUser) -> Option<Value> {
    let stream = state.streams.get(&user.id)?;
    Some(json!({
        "id": stream.id, "user_id": user.id, "user_login": user.login, "user_name": user.display_name,
        "game_id": "509658", "game_name": "Just Chatting", "type": "live", "title": stream.title,
        "tags": ["English"], "viewer_count": 1, "started_at": stream.started_at, "language": "en",
        "thumbnail_url": format!("https://static-cdn.jtvnw.net/previews-ttv/live_user_{}-{{width}}x{{height}}.jpg", user.login),
        "tag_ids": [], "is_mature": false,
    }))
}

/// `GET /helix/streams`: only live channels; offline ones are simply absent.
async fn streams(State(sim): State<Simulator>, RawQuery(query): RawQuery) -> Response {
    let params = Params::parse(query.as_deref());
    let ids = params.all("user_id");
    let logins = params.all("user_login");
    if ids.len() + logins.len() > 100 {
        return bad_request("The number of user_id and user_login values must not exceed 100");
    }
    if let Some(kind) = params.get("type")
        && kind != "all"
        && kind != "live"
    {
        return bad_request("The parameter \"type\" must be all or live");
    }
    let size = match page_size(&params, 20) {
        Ok(n) => n,
        Err(response) => return *response,
    };
    let start = match after(&params) {
        Ok(position) => usize::try_from(position.unwrap_or(0)).unwrap_or(usize::MAX),
        Err(response) => return *response,
    };
    let state = sim.state();
    let mut users: Vec<&SimUser> = Vec::new();
    if ids.is_empty() && logins.is_empty() {
        let mut live: Vec<&SimUser> = state.streams.keys().filter_map(|id| state.user(id)).collect();
        live.sort_by(|a, b| a.id.cmp(&b.id));
        users = live;
    } else {
        users.extend(ids.iter().filter_map(|id| state.user(id)));
        users.extend(logins.iter().filter_map(|login| state.user_by_login(login)));
    }
    let mut seen = std::collections::HashSet::new();
    let live: Vec<Value> =
        users.into_iter().filter(|u| seen.insert(u.id.clone())).filter_map(|u| stream_json(&state, u)).collect();
    let (data, pagination) = paginate(live, start, size);
    Json(json!({"data": data, "pagination": pagination})).into_response()
}
