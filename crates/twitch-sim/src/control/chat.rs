//! The chat page and `POST /sim/chat`: typing into a channel as a viewer.

use askama::Template;
use askama_web::WebTemplate;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{back_to_chat, is_form, parse_json, sim_error};
use crate::helix::error;
use crate::util::{Params, valid_login};
use crate::{ChatInput, ChatOptions, Simulator};

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
pub(super) async fn chat(State(sim): State<Simulator>, headers: HeaderMap, body: Bytes) -> Response {
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
pub(super) async fn chat_page(State(sim): State<Simulator>, RawQuery(query): RawQuery) -> Response {
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
