//! Users, consent, moderators, going live, channel settings, editors, bans: what people do on Twitch.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{back_to_chat, is_form, parse_json, sim_error, yes};
use crate::Simulator;
use crate::helix::error;
use crate::util::{Params, valid_login};

pub(super) async fn list_users(State(sim): State<Simulator>) -> Response {
    Json(json!({"data": sim.users()})).into_response()
}

#[derive(Debug, Deserialize)]
struct NewUser {
    login: String,
    display_name: Option<String>,
}

/// `POST /sim/users` `{"login", "display_name"?}` → 201 (idempotent per login); also a form from the chat page.
pub(super) async fn create_user(State(sim): State<Simulator>, headers: HeaderMap, body: Bytes) -> Response {
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
pub(super) async fn grant(State(sim): State<Simulator>, body: Bytes) -> Response {
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

/// `POST /sim/moderators` `{"broadcaster_user_id", "user_id", "moderator": true}`.
pub(super) async fn moderator(State(sim): State<Simulator>, body: Bytes) -> Response {
    let body: ModeratorBody = match parse_json(&body) {
        Ok(b) => b,
        Err(response) => return *response,
    };
    sim.set_moderator(&body.broadcaster_user_id, &body.user_id, body.moderator);
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /sim/users/{id}/disconnect`: the user removes the app from their connections.
pub(super) async fn disconnect(State(sim): State<Simulator>, Path(id): Path<String>) -> Response {
    match sim.disconnect_app(&id).await {
        Ok(()) => (StatusCode::ACCEPTED, Json(json!({"user_id": id, "disconnected": true}))).into_response(),
        Err(e) => sim_error(&e),
    }
}

/// `POST /sim/streams/{broadcaster_id}/online|offline`.
pub(super) async fn stream(
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
#[serde(deny_unknown_fields)]
struct SettingsBody {
    clips_enabled: Option<bool>,
    vods_enabled: Option<bool>,
}

/// `POST /sim/channels/{id}/settings` `{"clips_enabled": false, "vods_enabled": false}` (either or both).
pub(super) async fn channel_settings(State(sim): State<Simulator>, Path(id): Path<String>, body: Bytes) -> Response {
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
pub(super) async fn editor(State(sim): State<Simulator>, Path(id): Path<String>, body: Bytes) -> Response {
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
pub(super) async fn ban(State(sim): State<Simulator>, Path(id): Path<String>, body: Bytes) -> Response {
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
