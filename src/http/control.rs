//! The control room's actions and live status: `POST /dashboard/test-votes`,
//! `POST /dashboard/reload-overlays` and `GET /dashboard/status`. Like the
//! other dashboard actions they take the session's CSRF token from the form
//! (`csrf_token`: answered with a redirect back to the dashboard) or from the
//! `X-CSRF-Token` header (fetch: answered with JSON).

use axum::Json;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tower_sessions::Session;

use super::dashboard::{action_error, chat_line, require_streamer, stream_line};
use super::{AppState, Error, session};
use crate::app::accounts::{ChatBlock, ChatConnection, StreamState};
use crate::app::status::{Diagnosis, StatusView};
use crate::app::test_votes::{TestVoteCount, TestVoteError, TestVotes, parse_side};
use crate::domain::{Direction, MatchMode, MeterModel};

#[derive(Deserialize, Default)]
pub struct TestVotesForm {
    csrf_token: Option<String>,
    #[serde(default)]
    side: String,
    #[serde(default)]
    count: String,
}

/// The CSRF token from the header (fetch: JSON answers) or the form.
fn csrf(headers: &HeaderMap, form_token: Option<&str>) -> (Option<String>, bool) {
    match headers.get("x-csrf-token").and_then(|v| v.to_str().ok()) {
        Some(token) => (Some(token.to_owned()), true),
        None => (form_token.map(str::to_owned), false),
    }
}

/// A request refused before anything was sent: 422, with what was wrong.
fn refused(e: &TestVoteError, json: bool) -> Response {
    let body = json!({ "error": e.to_string(), "code": e.code() });
    if json {
        (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
    } else {
        (StatusCode::UNPROCESSABLE_ENTITY, e.to_string()).into_response()
    }
}

pub async fn test_votes(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    form: Result<Form<TestVotesForm>, FormRejection>,
) -> Result<Response, Error> {
    let Form(form) = form.unwrap_or_default();
    let (token, json) = csrf(&headers, form.csrf_token.as_deref());
    session::check_csrf(&session, token.as_deref()).await?;
    let id = require_streamer(&state, &session).await?;
    let side = match parse_side(&form.side) {
        Ok(side) => side,
        Err(e) => return Ok(refused(&e, json)),
    };
    let count = match TestVoteCount::parse(&form.count) {
        Ok(count) => count,
        Err(e) => return Ok(refused(&e, json)),
    };
    let votes = state.app.send_test_votes(id, side, count).await.map_err(action_error)?;
    if json {
        return Ok(Json(test_votes_json(&votes)).into_response());
    }
    let side = if side == Direction::For { "for" } else { "against" };
    let url = format!(
        "/dashboard?tested={side}&sent={}&applied={}&no_overlay={}#status",
        votes.sent, votes.applied, votes.no_session
    );
    Ok(Redirect::to(&url).into_response())
}

fn test_votes_json(v: &TestVotes) -> serde_json::Value {
    json!({
        "sent": v.sent, "applied": v.applied, "no_session": v.no_session, "rate_limited": v.rate_limited,
        "no_match": v.no_match, "failed": v.failed, "value": v.value,
    })
}

/// The dashboard's words for a batch of test votes sent (after the redirect).
pub fn test_votes_words(side: &str, sent: u32, applied: u32, no_overlay: u32) -> String {
    let side = if side == "for" { "for" } else { "against" };
    if no_overlay > 0 && applied == 0 {
        return format!(
            "{sent} test votes {side} were sent, but no overlay is open: votes only count while one is. \
             Open your overlay (this page's preview counts) and try again."
        );
    }
    format!("{sent} test votes {side} sent: {applied} counted. Your overlays show them now.")
}

#[derive(Deserialize, Default)]
pub struct CsrfOnly {
    csrf_token: Option<String>,
}

pub async fn reload_overlays(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    form: Result<Form<CsrfOnly>, FormRejection>,
) -> Result<Response, Error> {
    let Form(form) = form.unwrap_or_default();
    let (token, json) = csrf(&headers, form.csrf_token.as_deref());
    session::check_csrf(&session, token.as_deref()).await?;
    let id = require_streamer(&state, &session).await?;
    state.app.reload_overlays(id).await.map_err(action_error)?;
    Ok(if json {
        StatusCode::NO_CONTENT.into_response()
    } else {
        Redirect::to("/dashboard?reloaded=1").into_response()
    })
}

/// `GET /dashboard/status`: the status facts and their words, as JSON.
pub async fn status(State(state): State<AppState>, session: Session) -> Result<Response, Error> {
    let id = require_streamer(&state, &session).await?;
    match state.app.status(id).await {
        Ok(Some(view)) => Ok(Json(status_json(&view)).into_response()),
        Ok(None) => Err(Error::Unauthorized("log in first".into())),
        Err(e) => Err(Error::Unavailable(e.to_string())),
    }
}

/// The facts as JSON, with the page's words (`lines`, `diagnosis`), so the
/// page shows exactly what the server would render.
pub fn status_json(view: &StatusView) -> serde_json::Value {
    let a = &view.activity;
    let c = &a.last_minute;
    let chat = match &view.dashboard.chat {
        ChatConnection::Connected => ("connected", None),
        ChatConnection::NoTwitch => ("no_twitch", None),
        ChatConnection::WaitingForOverlay => ("waiting_for_overlay", None),
        ChatConnection::Failed(reason) => ("failed", Some(reason.clone())),
    };
    let stream = match view.dashboard.stream {
        StreamState::Live => "live",
        StreamState::Offline => "offline",
        StreamState::Disconnected => "disconnected",
        StreamState::NotKnownYet => "not_known_yet",
        StreamState::NoOverlay => "no_overlay",
        StreamState::Unavailable => "unavailable",
    };
    let words = StatusWords::of(view);
    json!({
        "at": view.at_ms,
        "chat": { "state": chat.0, "detail": chat.1 },
        "last_chat_at": a.last_chat_ms,
        "last_vote_at": a.last_vote_ms,
        "overlays": a.overlays,
        "previews": a.previews,
        "votes_last_minute": {
            "applied": c.applied, "duplicate": c.duplicate, "debounced": c.debounced,
            "rate_limited": c.rate_limited, "no_session": c.no_session, "no_match": c.no_match, "error": c.error,
        },
        "stream": stream,
        "value": view.value,
        "voters": view.voters,
        "model": view.dashboard.setup.config.config.model.as_str(),
        "diagnosis": {
            "code": view.diagnosis.code(), "problem": words.problem, "message": words.message, "fix": words.fix,
        },
        "lines": words.lines,
    })
}

/// One fact of the status panel, in words.
#[derive(Debug, Clone, Serialize)]
pub struct StatusLine {
    pub label: &'static str,
    pub text: String,
}

/// The status panel in words.
#[derive(Debug, Clone, Serialize)]
pub struct StatusWords {
    /// Whether the diagnosis is a problem to fix.
    pub problem: bool,
    pub message: String,
    pub fix: String,
    pub lines: Vec<StatusLine>,
}

/// "just now", "12 s ago", "4 min ago", "2 h ago".
fn ago(at_ms: Option<i64>, now_ms: i64, never: &str) -> String {
    let Some(at) = at_ms else { return never.to_owned() };
    let s = (now_ms - at).max(0) / 1000;
    match s {
        0..=1 => "just now".to_owned(),
        2..=119 => format!("{s} s ago"),
        120..=7199 => format!("{} min ago", s / 60),
        _ => format!("{} h ago", s / 3600),
    }
}

fn quoted(words: &str) -> String {
    words.split(", ").map(|w| format!("“{w}”")).collect::<Vec<_>>().join(", ")
}

impl StatusWords {
    pub fn of(view: &StatusView) -> Self {
        let (message, fix) = diagnosis_words(&view.diagnosis);
        let a = &view.activity;
        let c = &a.last_minute;
        let overlays = match (a.overlays, a.previews) {
            (0, 0) => "None open.".to_owned(),
            (0, p) => format!("None in OBS: only the dashboard's preview ({p} open)."),
            (n, 0) => format!("{n} open (OBS or another browser)."),
            (n, p) => format!(
                "{n} open (OBS or another browser), and {p} dashboard preview{}.",
                if p == 1 { "" } else { "s" }
            ),
        };
        let votes = format!(
            "{} counted (test votes included) · {} debounced · {} over the limit · {} with no overlay open · {} not matching{}",
            c.applied,
            c.debounced,
            c.rate_limited,
            c.no_session,
            c.no_match,
            if c.duplicate + c.error > 0 {
                format!(" · {} repeated · {} failed", c.duplicate, c.error)
            } else {
                String::new()
            }
        );
        let mut lines = vec![
            StatusLine { label: "Chat", text: chat_line(&view.dashboard.chat) },
            StatusLine { label: "Last chat seen", text: ago(a.last_chat_ms, view.at_ms, "None yet.") },
            StatusLine {
                label: "Last chat vote counted",
                text: ago(a.last_vote_ms, view.at_ms, "None yet (test votes apart)."),
            },
            StatusLine { label: "Overlays", text: overlays },
            StatusLine { label: "Last minute", text: votes },
            StatusLine { label: "Stream", text: stream_line(view.dashboard.stream).to_owned() },
        ];
        if let Some(value) = view.value {
            let model = match view.dashboard.setup.config.config.model {
                MeterModel::Balance => "balance",
                MeterModel::Classic => "classic",
            };
            let voters = view.voters.unwrap_or(0);
            lines.push(StatusLine {
                label: "Bar now",
                text: format!(
                    "{value:+.0} ({model} meter, {voters} voter{} in the last minute)",
                    if voters == 1 { "" } else { "s" }
                ),
            });
        }
        Self { problem: view.diagnosis.is_problem(), message, fix, lines }
    }
}

/// The diagnosis and its fix, in plain words.
fn diagnosis_words(d: &Diagnosis) -> (String, String) {
    let (message, fix): (String, &str) = match d {
        Diagnosis::NoTwitch => (
            "This server has no Twitch connection, so chat cannot be read.".into(),
            "Ask the operator to configure Twitch.",
        ),
        Diagnosis::ReloginNeeded => {
            ("Twitch no longer accepts your login.".into(), "Log out and log in again to reconnect Twitch.")
        }
        Diagnosis::ChatBlocked(ChatBlock::BotBanned) => {
            ("Twitch says the bot account is banned from your chat.".into(), "Unban it, then log out and log in again.")
        }
        Diagnosis::ChatBlocked(ChatBlock::ModeratorRemoved) => (
            "Chat was read because the bot was a moderator, and it no longer is.".into(),
            "Log out and log in again to grant access.",
        ),
        Diagnosis::MissingChannelBot => (
            "Your Twitch login does not let the ChatPulse bot into your chat (channel:bot).".into(),
            "Log out and log in again to grant it.",
        ),
        Diagnosis::SubscriptionFailed(reason) => (
            format!("Chat cannot be read yet: {reason}."),
            "Log in again to grant access, or ask the operator to authorize the bot account.",
        ),
        Diagnosis::LiveStoreDown => (
            "The live store is not answering: votes are dropped and overlays show “reconnecting”.".into(),
            "It recovers by itself; tell the operator if it lasts.",
        ),
        Diagnosis::NoOverlay { missed } => (
            if *missed > 0 {
                format!(
                    "No overlay is open: votes only count while one is ({missed} messages in the last minute found none)."
                )
            } else {
                "No overlay is open: votes only count while one is.".into()
            },
            "Open your overlay URL in OBS as a Browser Source (this page's preview counts too).",
        ),
        Diagnosis::Subscribing => ("Connecting to your chat…".into(), "Wait a few seconds."),
        Diagnosis::NoMatch { messages, for_words, against_words, match_mode } => (
            format!(
                "Chat arrives, but no message matched ({messages} in the last minute): your words are {} for and {} against.",
                quoted(for_words),
                quoted(against_words)
            ),
            match match_mode {
                MatchMode::Exact => {
                    "Viewers must type a word as the whole message: choose “anywhere in the message” to count “yes!” and “yes please” too."
                }
                MatchMode::Word => "Check the spelling, or add the words your chat really uses (comma-separated).",
            },
        ),
        Diagnosis::RateLimited { votes } => (
            format!("{votes} votes in the last minute were over the per-bar limit."),
            "The limit only stops floods of bots; if your chat is real, tell the operator (VOTE_RATE_LIMIT_*).",
        ),
        Diagnosis::ChatStopped { minutes } => (
            format!("Twitch has sent no chat for {minutes} minutes while you are live."),
            "If your chat is active, reconnect: log out and log in again.",
        ),
        Diagnosis::WaitingForChat => {
            ("No chat seen yet.".into(), "Type one of your words in your chat, or send test votes below.")
        }
        Diagnosis::PreviewOnly => (
            "Votes count, but only this page's preview shows the bar.".into(),
            "Add your overlay URL to OBS as a Browser Source.",
        ),
        Diagnosis::Working { applied } => (format!("Working: {applied} votes counted in the last minute."), ""),
        Diagnosis::Quiet => ("Working; chat was quiet for the last minute.".into(), ""),
    };
    (message, fix.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_told_as_how_long_ago() {
        let now = 1_000_000_000;
        assert_eq!(ago(None, now, "None yet."), "None yet.");
        assert_eq!(ago(Some(now - 500), now, ""), "just now");
        assert_eq!(ago(Some(now - 42_000), now, ""), "42 s ago");
        assert_eq!(ago(Some(now - 600_000), now, ""), "10 min ago");
        assert_eq!(ago(Some(now - 7_200_000), now, ""), "2 h ago");
        assert_eq!(ago(Some(now + 5_000), now, ""), "just now", "another instance's clock ahead");
    }

    #[test]
    fn a_no_match_diagnosis_names_the_words_and_the_matching_fix() {
        let d = Diagnosis::NoMatch {
            messages: 3,
            for_words: "yes, yeah".into(),
            against_words: "no".into(),
            match_mode: MatchMode::Exact,
        };
        let (message, fix) = diagnosis_words(&d);
        assert!(message.contains("“yes”, “yeah” for and “no” against"), "{message}");
        assert!(fix.contains("anywhere in the message"), "{fix}");
    }

    #[test]
    fn test_votes_are_told_with_what_counted() {
        assert_eq!(test_votes_words("for", 5, 5, 0), "5 test votes for sent: 5 counted. Your overlays show them now.");
        assert!(test_votes_words("against", 3, 0, 3).contains("no overlay is open"));
    }
}
