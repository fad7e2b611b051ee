//! `/sim/*`: the parts of Twitch that are people, not APIs — typing in chat,
//! going live, disconnecting an app, moderators, channel settings, editors,
//! bans — plus faults, revocations, the clock, tunnels, a state dump,
//! synthetic chat, and the browser chat page.

use std::time::Duration;

use askama::Template;
use askama_web::WebTemplate;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::helix::{Reject, error};
use super::util::{Params, percent_encode, valid_login};
use super::{ChatGenerator, ChatInput, ChatOptions, SimError, Simulator};

pub(crate) fn router() -> Router<Simulator> {
    Router::new()
        .route("/", get(home))
        .route("/sim", get(home))
        .route("/sim/chat", get(chat_page).post(chat))
        .route("/sim/users", get(list_users).post(create_user))
        .route("/sim/users/{id}/disconnect", post(disconnect))
        .route("/sim/grants", post(grant))
        .route("/sim/moderators", post(moderator))
        .route("/sim/streams/{broadcaster_id}/{action}", post(stream))
        .route("/sim/subscriptions/{id}/revoke", post(revoke))
        .route("/sim/faults", post(faults))
        .route("/sim/conduits/{conduit_id}/shards/{shard_id}/disable", post(disable_shard))
        .route("/sim/delivery-faults", post(delivery_faults))
        .route("/sim/state", get(state))
        .route("/sim/generator", post(generator))
        .route("/sim/websocket/{session_id}/reconnect", post(reconnect_websocket))
        .route("/sim/clock", get(clock).post(set_clock))
        .route("/sim/channels/{broadcaster_id}/settings", post(channel_settings))
        .route("/sim/channels/{broadcaster_id}/editors", post(editor))
        .route("/sim/channels/{broadcaster_id}/bans", post(ban))
        .route("/sim/clips/processing", post(clip_processing))
        .route("/sim/tunnels", get(list_tunnels).post(add_tunnel).delete(remove_tunnel))
}

fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

async fn home() -> Response {
    see_other("/sim/chat")
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

fn sim_error(e: &SimError) -> Response {
    match e {
        SimError::NotFound(m) => error(StatusCode::NOT_FOUND, m.clone()),
        SimError::BadRequest(m) => error(StatusCode::BAD_REQUEST, m.clone()),
    }
}

fn parse_json<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, Reject> {
    serde_json::from_slice(body)
        .map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}"))))
}

/// Where the chat page sends the browser back to, with a notice or an error.
fn back_to_chat(channel: &str, viewer: &str, key: &str, message: &str) -> Response {
    let mut url = format!("/sim/chat?{key}={}", percent_encode(message));
    if !channel.is_empty() {
        url.push_str(&format!("&channel={}", percent_encode(channel)));
    }
    if !viewer.is_empty() {
        url.push_str(&format!("&viewer={}", percent_encode(viewer)));
    }
    see_other(&url)
}

#[derive(Debug, Deserialize)]
struct ChatBody {
    broadcaster_user_id: Option<String>,
    chatter_user_id: Option<String>,
    chatter_login: Option<String>,
    text: Option<String>,
    /// `badges`, `color`, `reply_to`, `source_broadcaster_user_id`, `source_badges` (all optional).
    #[serde(flatten)]
    options: ChatOptions,
}

/// `POST /sim/chat`: JSON → 202 `{"message_id"}`; the chat page's form → 303 back.
async fn chat(State(sim): State<Simulator>, headers: HeaderMap, body: Bytes) -> Response {
    if is_form(&headers) {
        let form = Params::parse(Some(&String::from_utf8_lossy(&body)));
        let channel = form.get("channel").unwrap_or_default().to_owned();
        let viewer = form.get("viewer").unwrap_or_default().trim().to_ascii_lowercase();
        let text = form.get("quick").filter(|q| !q.is_empty()).or(form.get("text")).unwrap_or_default().to_owned();
        if channel.is_empty() {
            return back_to_chat(&channel, &viewer, "error", "Pick a channel first.");
        }
        if !valid_login(&viewer) {
            let message = "Type a viewer name: 1–25 letters, digits or underscores.";
            return back_to_chat(&channel, &viewer, "error", message);
        }
        let input = ChatInput {
            broadcaster_user_id: channel.clone(),
            chatter_user_id: String::new(),
            chatter_login: Some(viewer.clone()),
            text: text.clone(),
        };
        return match sim.post_chat(input).await {
            Ok(_) => back_to_chat(&channel, &viewer, "sent", &format!("sent as {viewer}: {text}")),
            Err(e) => back_to_chat(&channel, &viewer, "error", &e.to_string()),
        };
    }
    let body: ChatBody = match parse_json(&body) {
        Ok(b) => b,
        Err(response) => return *response,
    };
    let (Some(broadcaster_user_id), Some(text)) = (body.broadcaster_user_id.filter(|s| !s.is_empty()), body.text)
    else {
        return error(StatusCode::BAD_REQUEST, "broadcaster_user_id and text are required");
    };
    let chatter_user_id = body.chatter_user_id.unwrap_or_default();
    if chatter_user_id.is_empty() && body.chatter_login.as_deref().is_none_or(str::is_empty) {
        return error(StatusCode::BAD_REQUEST, "chatter_user_id (or chatter_login) is required");
    }
    let input = ChatInput { broadcaster_user_id, chatter_user_id, chatter_login: body.chatter_login, text };
    match sim.post_chat_with(input, body.options).await {
        Ok(message_id) => (StatusCode::ACCEPTED, Json(json!({"message_id": message_id}))).into_response(),
        Err(e) => sim_error(&e),
    }
}

struct ChannelRow {
    id: String,
    login: String,
    display_name: String,
    live: bool,
    listeners: usize,
    selected: bool,
}

struct DeliveryRow {
    at: String,
    what: String,
    callback: String,
    outcome: String,
    ok: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "sim_chat.html")]
struct ChatPage {
    channels: Vec<ChannelRow>,
    viewer: String,
    notice: Option<String>,
    error: Option<String>,
    deliveries: Vec<DeliveryRow>,
    public_url: String,
    client_id: String,
    conduits: usize,
    subscriptions: usize,
}

/// `GET /sim/chat`: type into a channel's chat from the browser.
async fn chat_page(State(sim): State<Simulator>, RawQuery(query): RawQuery) -> Response {
    let params = Params::parse(query.as_deref());
    let users = sim.users();
    let (live, listeners, conduits, subscriptions) = {
        let state = sim.state();
        let live: std::collections::HashSet<String> = state.streams.keys().cloned().collect();
        let listeners: Vec<(String, usize)> = users
            .iter()
            .map(|u| {
                let n = state
                    .subscriptions
                    .iter()
                    .filter(|s| s.kind == "channel.chat.message" && s.status == "enabled")
                    .filter(|s| s.condition_str("broadcaster_user_id") == Some(u.id.as_str()))
                    .count();
                (u.id.clone(), n)
            })
            .collect();
        (live, listeners, state.conduits.len(), state.subscriptions.len())
    };
    // Default to the first channel that someone listens to, else the first one.
    let wanted = params.get("channel").map(str::to_owned);
    let selected = wanted
        .filter(|id| users.iter().any(|u| &u.id == id))
        .or_else(|| listeners.iter().find(|(_, n)| *n > 0).map(|(id, _)| id.clone()))
        .or_else(|| users.first().map(|u| u.id.clone()));
    let channels = users
        .iter()
        .map(|u| ChannelRow {
            id: u.id.clone(),
            login: u.login.clone(),
            display_name: u.display_name.clone(),
            live: live.contains(&u.id),
            listeners: listeners.iter().find(|(id, _)| id == &u.id).map_or(0, |(_, n)| *n),
            selected: selected.as_deref() == Some(u.id.as_str()),
        })
        .collect();
    let deliveries = sim
        .deliveries()
        .into_iter()
        .rev()
        .take(12)
        .map(|d| {
            let ok = d.delivered();
            let outcome = match (&d.status, &d.error) {
                (Some(status), None) => format!("HTTP {status}"),
                (Some(status), Some(e)) => format!("HTTP {status} — {e}"),
                (None, Some(e)) => e.clone(),
                (None, None) => "?".into(),
            };
            let what = match &d.subscription_type {
                Some(t) => format!("{} {t}", d.message_type),
                None => d.message_type.clone(),
            };
            let retry = if d.attempt > 0 { format!(" (retry {})", d.attempt) } else { String::new() };
            DeliveryRow {
                at: d.at.get(11..19).unwrap_or(&d.at).to_owned(),
                what: format!("{what}{retry}"),
                callback: d.callback,
                outcome,
                ok,
            }
        })
        .collect();
    let page = ChatPage {
        channels,
        viewer: params.get("viewer").unwrap_or("mossy_owl").to_owned(),
        notice: params.get("sent").map(str::to_owned),
        error: params.get("error").map(str::to_owned),
        deliveries,
        public_url: sim.config().public_url.clone(),
        client_id: sim.config().client_id.clone(),
        conduits,
        subscriptions,
    };
    ([(header::CACHE_CONTROL, "no-store")], page).into_response()
}

async fn list_users(State(sim): State<Simulator>) -> Response {
    Json(json!({"data": sim.users()})).into_response()
}

#[derive(Debug, Deserialize)]
struct NewUser {
    login: String,
    display_name: Option<String>,
}

/// `POST /sim/users` `{"login", "display_name"?}` → 201 (idempotent per login); also a form from the chat page.
async fn create_user(State(sim): State<Simulator>, headers: HeaderMap, body: Bytes) -> Response {
    let form = is_form(&headers);
    let new: NewUser = if form {
        let params = Params::parse(Some(&String::from_utf8_lossy(&body)));
        NewUser {
            login: params.get("login").unwrap_or_default().to_owned(),
            display_name: params.get("display_name").map(str::to_owned),
        }
    } else {
        match parse_json(&body) {
            Ok(n) => n,
            Err(response) => return *response,
        }
    };
    let login = new.login.trim().to_ascii_lowercase();
    if !valid_login(&login) {
        let message = "login must be 1–25 characters: letters, digits, underscores";
        return if form { back_to_chat("", "", "error", message) } else { error(StatusCode::BAD_REQUEST, message) };
    }
    let display_name = new.display_name.filter(|d| !d.trim().is_empty()).unwrap_or_else(|| new.login.trim().to_owned());
    let user = sim.create_user(&login, &display_name);
    if form {
        return back_to_chat(&user.id, "", "sent", &format!("channel {} is ready", user.login));
    }
    (StatusCode::CREATED, Json(json!(user))).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Scopes {
    List(Vec<String>),
    Spaced(String),
}

#[derive(Debug, Deserialize)]
struct GrantBody {
    user_id: Option<String>,
    login: Option<String>,
    scopes: Scopes,
}

/// `POST /sim/grants` `{"user_id" | "login", "scopes": [...] | "a b"}`: consent without the browser.
async fn grant(State(sim): State<Simulator>, body: Bytes) -> Response {
    let body: GrantBody = match parse_json(&body) {
        Ok(b) => b,
        Err(response) => return *response,
    };
    let user = match (&body.user_id, &body.login) {
        (Some(id), _) => sim.user(id),
        (None, Some(login)) => {
            let login = login.trim().to_ascii_lowercase();
            if !valid_login(&login) {
                return error(StatusCode::BAD_REQUEST, "invalid login");
            }
            Some(sim.create_user(&login, &login))
        }
        (None, None) => return error(StatusCode::BAD_REQUEST, "user_id or login is required"),
    };
    let Some(user) = user else { return error(StatusCode::NOT_FOUND, "unknown user") };
    let scopes: Vec<String> = match body.scopes {
        Scopes::List(list) => list,
        Scopes::Spaced(text) => text.split_whitespace().map(str::to_owned).collect(),
    };
    let refs: Vec<&str> = scopes.iter().map(String::as_str).collect();
    sim.grant(&user.id, &refs);
    Json(json!({"user_id": user.id, "login": user.login, "scopes": sim.granted_scopes(&user.id)})).into_response()
}

#[derive(Debug, Deserialize)]
struct ModeratorBody {
    broadcaster_user_id: String,
    user_id: String,
    #[serde(default = "yes")]
    moderator: bool,
}

fn yes() -> bool {
    true
}

/// `POST /sim/moderators` `{"broadcaster_user_id", "user_id", "moderator": true}`.
async fn moderator(State(sim): State<Simulator>, body: Bytes) -> Response {
    let body: ModeratorBody = match parse_json(&body) {
        Ok(b) => b,
        Err(response) => return *response,
    };
    sim.set_moderator(&body.broadcaster_user_id, &body.user_id, body.moderator);
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /sim/users/{id}/disconnect`: the user removes the app from their connections.
async fn disconnect(State(sim): State<Simulator>, Path(id): Path<String>) -> Response {
    match sim.disconnect_app(&id).await {
        Ok(()) => (StatusCode::ACCEPTED, Json(json!({"user_id": id, "disconnected": true}))).into_response(),
        Err(e) => sim_error(&e),
    }
}

/// `POST /sim/streams/{broadcaster_id}/online|offline`.
async fn stream(
    State(sim): State<Simulator>,
    Path((broadcaster_id, action)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let live = match action.as_str() {
        "online" => true,
        "offline" => false,
        _ => return error(StatusCode::NOT_FOUND, "use /online or /offline"),
    };
    let result = sim.set_live(&broadcaster_id, live).await;
    if is_form(&headers) {
        let verb = if live { "is live" } else { "went offline" };
        return match result {
            Ok(()) => back_to_chat(&broadcaster_id, "", "sent", &format!("the channel {verb}")),
            Err(e) => back_to_chat(&broadcaster_id, "", "error", &e.to_string()),
        };
    }
    match result {
        Ok(()) => Json(json!({
            "broadcaster_user_id": broadcaster_id, "live": live, "stream_id": sim.live_stream_id(&broadcaster_id),
        }))
        .into_response(),
        Err(e) => sim_error(&e),
    }
}

#[derive(Debug, Deserialize)]
struct RevokeBody {
    status: String,
}

/// `POST /sim/subscriptions/{id}/revoke` `{"status": "authorization_revoked"}` → 202.
async fn revoke(State(sim): State<Simulator>, Path(id): Path<String>, body: Bytes) -> Response {
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
async fn disable_shard(State(sim): State<Simulator>, Path((conduit_id, shard_id)): Path<(String, String)>) -> Response {
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
async fn faults(State(sim): State<Simulator>, body: Bytes) -> Response {
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
    fault: super::DeliveryFault,
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
async fn delivery_faults(State(sim): State<Simulator>, body: Bytes) -> Response {
    let body: DeliveryFaultBody = match parse_json(&body) {
        Ok(b) => b,
        Err(response) => return *response,
    };
    sim.inject_delivery_faults(body.fault, body.count);
    Json(json!({"fault": body.fault, "count": body.count})).into_response()
}

async fn state(State(sim): State<Simulator>) -> Response {
    Json(sim.snapshot()).into_response()
}

#[derive(Debug, Deserialize)]
struct GeneratorBody {
    broadcaster_user_id: Option<String>,
    broadcaster_login: Option<String>,
    viewers: Option<u32>,
    for_share: Option<f64>,
    for_word: Option<String>,
    against_word: Option<String>,
    other_share: Option<f64>,
    per_second: Option<f64>,
    duration_seconds: Option<f64>,
}

/// `POST /sim/generator` → 202; synthetic chat runs in the background and stops by itself.
async fn generator(State(sim): State<Simulator>, body: Bytes) -> Response {
    let body: GeneratorBody = match parse_json(&body) {
        Ok(b) => b,
        Err(response) => return *response,
    };
    let broadcaster = match (&body.broadcaster_user_id, &body.broadcaster_login) {
        (Some(id), _) => sim.user(id),
        (None, Some(login)) => sim.user_by_login(login),
        (None, None) => return error(StatusCode::BAD_REQUEST, "broadcaster_user_id or broadcaster_login is required"),
    };
    let Some(broadcaster) = broadcaster else { return error(StatusCode::NOT_FOUND, "unknown broadcaster") };
    let seconds = body.duration_seconds.unwrap_or(30.0);
    if !seconds.is_finite() || seconds <= 0.0 {
        return error(StatusCode::BAD_REQUEST, "duration_seconds must be positive");
    }
    let generator = ChatGenerator {
        broadcaster_user_id: broadcaster.id,
        viewers: body.viewers.unwrap_or(50),
        for_share: body.for_share.unwrap_or(0.5),
        for_word: body.for_word.unwrap_or_else(|| "yes".into()),
        against_word: body.against_word.unwrap_or_else(|| "no".into()),
        other_share: body.other_share.unwrap_or(0.2),
        per_second: body.per_second.unwrap_or(10.0),
        duration: Duration::from_secs_f64(seconds.min(super::generator::MAX_DURATION.as_secs_f64())),
    };
    let planned = generator.planned_messages();
    let summary = json!({
        "broadcaster_user_id": generator.broadcaster_user_id, "planned_messages": planned,
        "duration_seconds": generator.duration.as_secs_f64(), "per_second": generator.effective_rate(),
    });
    let background = sim.clone();
    tokio::spawn(async move {
        let report = generator.run(&background).await;
        tracing::info!(?report, "simulator: chat generator finished");
    });
    (StatusCode::ACCEPTED, Json(summary)).into_response()
}

/// `POST /sim/websocket/{session_id}/reconnect` → 202 `{"reconnect_url"}`: starts §6.5's reconnect flow.
async fn reconnect_websocket(State(sim): State<Simulator>, Path(session_id): Path<String>) -> Response {
    match sim.reconnect_websocket(&session_id) {
        Ok(url) => {
            (StatusCode::ACCEPTED, Json(json!({"session_id": session_id, "reconnect_url": url}))).into_response()
        }
        Err(e) => sim_error(&e),
    }
}

fn clock_json(sim: &Simulator) -> Response {
    Json(json!({
        "now": super::util::rfc3339_nanos(sim.now()),
        "offset_seconds": sim.clock_offset().as_secs_f64(),
    }))
    .into_response()
}

/// `GET /sim/clock` → `{"now", "offset_seconds"}`.
async fn clock(State(sim): State<Simulator>) -> Response {
    clock_json(&sim)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockBody {
    advance_seconds: Option<f64>,
    set: Option<String>,
}

/// `POST /sim/clock` `{"advance_seconds": 3600}` or `{"set": "2030-01-01T00:00:00Z"}`:
/// moves the simulator's clock forward (never back) and applies what is due.
async fn set_clock(State(sim): State<Simulator>, body: Bytes) -> Response {
    let body: ClockBody = match parse_json(&body) {
        Ok(b) => b,
        Err(response) => return *response,
    };
    match (body.advance_seconds, body.set) {
        (Some(seconds), None) => match Duration::try_from_secs_f64(seconds) {
            Ok(by) => sim.advance_clock(by),
            Err(_) => return error(StatusCode::BAD_REQUEST, "advance_seconds must be a number of seconds ≥ 0"),
        },
        (None, Some(at)) => {
            let Some(at) = super::util::parse_rfc3339(&at) else {
                return error(StatusCode::BAD_REQUEST, "set must be an RFC 3339 time");
            };
            if let Err(e) = sim.set_clock(at) {
                return sim_error(&e);
            }
        }
        _ => return error(StatusCode::BAD_REQUEST, "give exactly one of advance_seconds and set"),
    }
    clock_json(&sim)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsBody {
    clips_enabled: Option<bool>,
    vods_enabled: Option<bool>,
}

/// `POST /sim/channels/{id}/settings` `{"clips_enabled": false, "vods_enabled": false}` (either or both).
async fn channel_settings(State(sim): State<Simulator>, Path(id): Path<String>, body: Bytes) -> Response {
    let body: SettingsBody = match parse_json(&body) {
        Ok(b) => b,
        Err(response) => return *response,
    };
    let result = body
        .clips_enabled
        .map_or(Ok(()), |on| sim.set_clips_enabled(&id, on))
        .and_then(|()| body.vods_enabled.map_or(Ok(()), |on| sim.set_vods_enabled(&id, on)));
    if let Err(e) = result {
        return sim_error(&e);
    }
    let settings = sim.state().channel_settings(&id);
    Json(json!({"broadcaster_user_id": id, "clips_enabled": settings.clips_enabled,
        "vods_enabled": settings.vods_enabled}))
    .into_response()
}

#[derive(Debug, Deserialize)]
struct EditorBody {
    user_id: String,
    #[serde(default = "yes")]
    editor: bool,
}

/// `POST /sim/channels/{id}/editors` `{"user_id", "editor": true}` → 204.
async fn editor(State(sim): State<Simulator>, Path(id): Path<String>, body: Bytes) -> Response {
    let body: EditorBody = match parse_json(&body) {
        Ok(b) => b,
        Err(response) => return *response,
    };
    match sim.set_editor(&id, &body.user_id, body.editor) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => sim_error(&e),
    }
}

#[derive(Debug, Deserialize)]
struct BanBody {
    user_id: String,
    #[serde(default = "yes")]
    banned: bool,
}

/// `POST /sim/channels/{id}/bans` `{"user_id", "banned": true}` → 200
/// `{"revoked": [subscription ids]}` (chat subscriptions read as that user).
async fn ban(State(sim): State<Simulator>, Path(id): Path<String>, body: Bytes) -> Response {
    let body: BanBody = match parse_json(&body) {
        Ok(b) => b,
        Err(response) => return *response,
    };
    match sim.set_banned(&id, &body.user_id, body.banned) {
        Ok(revoked) => Json(json!({"broadcaster_user_id": id, "user_id": body.user_id, "banned": body.banned,
            "revoked": revoked}))
        .into_response(),
        Err(e) => sim_error(&e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClipProcessingBody {
    delay_seconds: Option<f64>,
    #[serde(default)]
    never: bool,
}

/// `POST /sim/clips/processing` `{"delay_seconds": 15}` or `{"never": true}`:
/// how clips created from now on appear in Get Clips.
async fn clip_processing(State(sim): State<Simulator>, body: Bytes) -> Response {
    let body: ClipProcessingBody = match parse_json(&body) {
        Ok(b) => b,
        Err(response) => return *response,
    };
    match (body.delay_seconds, body.never) {
        (Some(seconds), false) => match Duration::try_from_secs_f64(seconds) {
            Ok(delay) => sim.set_clip_processing(Some(delay)),
            Err(_) => return error(StatusCode::BAD_REQUEST, "delay_seconds must be a number of seconds ≥ 0"),
        },
        (None, true) => sim.set_clip_processing(None),
        _ => return error(StatusCode::BAD_REQUEST, "give either delay_seconds or \"never\": true"),
    }
    Json(json!({"delay_seconds": body.delay_seconds, "never": body.never})).into_response()
}

#[derive(Debug, Deserialize)]
struct TunnelBody {
    public_url: String,
    local_url: String,
}

async fn list_tunnels(State(sim): State<Simulator>) -> Response {
    Json(json!({"data": sim.snapshot()["tunnels"].clone()})).into_response()
}

/// `POST /sim/tunnels` `{"public_url": "https://hooks.example", "local_url": "http://127.0.0.1:8099"}` → 201.
async fn add_tunnel(State(sim): State<Simulator>, body: Bytes) -> Response {
    let body: TunnelBody = match parse_json(&body) {
        Ok(b) => b,
        Err(response) => return *response,
    };
    match sim.add_tunnel(&body.public_url, &body.local_url) {
        Ok(()) => (StatusCode::CREATED, Json(json!({"public_url": body.public_url, "local_url": body.local_url})))
            .into_response(),
        Err(e) => sim_error(&e),
    }
}

/// `DELETE /sim/tunnels?public_url=https://hooks.example` → 204.
async fn remove_tunnel(State(sim): State<Simulator>, RawQuery(query): RawQuery) -> Response {
    let params = Params::parse(query.as_deref());
    let Some(public_url) = params.get("public_url") else {
        return error(StatusCode::BAD_REQUEST, "public_url is required");
    };
    match sim.remove_tunnel(public_url) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => sim_error(&e),
    }
}
