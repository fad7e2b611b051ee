//! `/sim/*`: the parts of Twitch that are people, not APIs — typing in chat,
//! going live, disconnecting an app, moderators, channel settings, editors,
//! bans — plus faults, revocations, the clock, tunnels, a state dump,
//! synthetic chat, and the browser chat page.

mod chat;
mod faults;
mod people;
mod tools;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::helix::{Reject, error};
use super::util::percent_encode;
use super::{SimError, Simulator};

pub(crate) fn router() -> Router<Simulator> {
    Router::new()
        .route("/", get(home))
        .route("/sim", get(home))
        .route("/sim/chat", get(chat::chat_page).post(chat::chat))
        .route("/sim/users", get(people::list_users).post(people::create_user))
        .route("/sim/users/{id}/disconnect", post(people::disconnect))
        .route("/sim/grants", post(people::grant))
        .route("/sim/moderators", post(people::moderator))
        .route("/sim/streams/{broadcaster_id}/{action}", post(people::stream))
        .route("/sim/subscriptions/{id}/revoke", post(faults::revoke))
        .route("/sim/faults", post(faults::faults))
        .route("/sim/conduits/{conduit_id}/shards/{shard_id}/disable", post(faults::disable_shard))
        .route("/sim/delivery-faults", post(faults::delivery_faults))
        .route("/sim/state", get(tools::state))
        .route("/sim/generator", post(tools::generator))
        .route("/sim/websocket/{session_id}/reconnect", post(faults::reconnect_websocket))
        .route("/sim/clock", get(tools::clock).post(tools::set_clock))
        .route("/sim/channels/{broadcaster_id}/settings", post(people::channel_settings))
        .route("/sim/channels/{broadcaster_id}/editors", post(people::editor))
        .route("/sim/channels/{broadcaster_id}/bans", post(people::ban))
        .route("/sim/clips/processing", post(tools::clip_processing))
        .route("/sim/tunnels", get(tools::list_tunnels).post(tools::add_tunnel).delete(tools::remove_tunnel))
}

pub(super) fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

async fn home() -> Response {
    see_other("/sim/chat")
}

pub(super) fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

pub(super) fn sim_error(e: &SimError) -> Response {
    match e {
        SimError::NotFound(m) => error(StatusCode::NOT_FOUND, m.clone()),
        SimError::BadRequest(m) => error(StatusCode::BAD_REQUEST, m.clone()),
    }
}

pub(super) fn parse_json<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, Reject> {
    serde_json::from_slice(body)
        .map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}"))))
}

/// Where the chat page sends the browser back to, with a notice or an error.
pub(super) fn back_to_chat(channel: &str, viewer: &str, key: &str, message: &str) -> Response {
    let mut url = format!("/sim/chat?{key}={}", percent_encode(message));
    if !channel.is_empty() {
        url.push_str(&format!("&channel={}", percent_encode(channel)));
    }
    if !viewer.is_empty() {
        url.push_str(&format!("&viewer={}", percent_encode(viewer)));
    }
    see_other(&url)
}

/// Serde default: `true`.
pub(super) fn yes() -> bool {
    true
}
