//! `GET /dashboard`, `POST /dashboard/config`, `POST /api/reset/{overlay_uuid}`,
//! `POST /api/rotate-overlay-uuid` (the control room's actions and status are
//! in `control`). Every state-changing request carries the session's CSRF
//! token (form field `csrf_token` or header `X-CSRF-Token`).

use axum::Json;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;
use tower_sessions::Session;

use super::control::{StatusWords, test_votes_words};
use super::pages::{ConfigForm, DashboardPage, FieldErrors, Notice, UnavailablePage};
use super::{AppState, Error, session};
use crate::app::accounts::{ActionError, ChatBlock, ChatConnection, DashboardView, StreamState};
use crate::app::status::StatusView;
use crate::domain::look::{COLOR_BLIND_SAFE, Side};
use crate::domain::{ConfigField, FieldProblem, Layout, LookWarning, OverlayConfig, OverlayId, StreamerId};

#[derive(Deserialize, Default)]
pub struct Flags {
    #[serde(default)]
    saved: Option<String>,
    #[serde(default)]
    reset: Option<String>,
    #[serde(default)]
    rotated: Option<String>,
    #[serde(default)]
    reloaded: Option<String>,
    /// After test votes: the side, how many were sent and counted, and how
    /// many found no overlay open.
    #[serde(default)]
    tested: Option<String>,
    #[serde(default)]
    sent: Option<u32>,
    #[serde(default)]
    applied: Option<u32>,
    #[serde(default)]
    no_overlay: Option<u32>,
}

impl Flags {
    /// The banner of the action just done, if any.
    fn action_done(&self) -> Option<String> {
        if self.reloaded.is_some() {
            return Some("Every open overlay was told to reload its page.".to_owned());
        }
        let side = self.tested.as_deref()?;
        Some(test_votes_words(side, self.sent.unwrap_or(0), self.applied.unwrap_or(0), self.no_overlay.unwrap_or(0)))
    }
}

/// The page's words for the look's warnings.
fn look_warnings(view: &DashboardView) -> Vec<String> {
    let side = |s: Side| if s == Side::For { "“for”" } else { "“against”" };
    view.setup
        .config
        .config
        .look
        .warnings()
        .into_iter()
        .map(|w| match w {
            LookWarning::SidesAlike => "The two colours differ mostly in hue: viewers with colour blindness may not \
                                        tell the sides apart. Try the colour-blind-safe pair, or make one side lighter."
                .to_owned(),
            LookWarning::TooDark(s) => {
                format!("The {} colour is hard to see on the dark track: choose a lighter one.", side(s))
            }
        })
        .collect()
}

/// The dashboard page. Without `view` (the durable store did not answer)
/// it is the settings form alone, with its messages: the streamer keeps what
/// they typed.
fn page(
    state: &AppState,
    view: Option<StatusView>,
    csrf_token: String,
    form: ConfigForm,
    errors: FieldErrors,
    flags: &Flags,
) -> DashboardPage {
    let account = view.is_some();
    let status = view.as_ref().map(StatusWords::of);
    let warnings = view.as_ref().map(|v| look_warnings(&v.dashboard)).unwrap_or_default();
    let layout = view.as_ref().map_or(Layout::Horizontal, |v| v.dashboard.setup.config.config.look.layout);
    let (preview_width, preview_height) = layout.obs_size();
    let (streamer, notices, chat_status, stream_status) = match view {
        Some(v) => {
            let (notices, chat, stream) = words(&v.dashboard);
            (Some(v.dashboard.setup.streamer), notices, chat, stream.to_owned())
        }
        None => (None, vec![], String::new(), String::new()),
    };
    DashboardPage {
        account,
        display_name: streamer.as_ref().map(|s| s.display_name.clone()).unwrap_or_default(),
        login: streamer.as_ref().map(|s| s.login.clone()).unwrap_or_default(),
        overlay_url: streamer.as_ref().map(|s| state.app.overlay_url(s.overlay_id)).unwrap_or_default(),
        overlay_id: streamer.as_ref().map(|s| s.overlay_id.to_string()).unwrap_or_default(),
        csrf_token,
        form,
        errors,
        saved: flags.saved.is_some(),
        reset_done: flags.reset.is_some(),
        rotated: flags.rotated.is_some(),
        notices,
        chat_status,
        stream_status,
        status,
        look_warnings: warnings,
        action_done: flags.action_done(),
        preview_width,
        preview_height,
        safe_for_color: COLOR_BLIND_SAFE.0.to_string(),
        safe_against_color: COLOR_BLIND_SAFE.1.to_string(),
    }
}

/// The chat line of the dashboard and the status panel.
pub(super) fn chat_line(chat: &ChatConnection) -> String {
    match chat {
        ChatConnection::Connected => "Connected to your chat.".to_owned(),
        ChatConnection::NoTwitch => "Chat is not connected (no Twitch configured).".to_owned(),
        ChatConnection::WaitingForOverlay => "Chat connects as soon as your overlay is open in OBS.".to_owned(),
        ChatConnection::Failed(_) => "Chat is not connected.".to_owned(),
    }
}

/// The stream line of the dashboard and the status panel.
pub(super) fn stream_line(stream: StreamState) -> &'static str {
    match stream {
        StreamState::Live => "Live now: the bar started from the centre.",
        StreamState::Offline => "Offline.",
        StreamState::Disconnected => "Your overlay shows \"reconnect Twitch\".",
        StreamState::NotKnownYet => "Not known yet: it updates when your stream goes live or offline.",
        StreamState::NoOverlay => "Shown once your overlay is open.",
        StreamState::Unavailable => "Not available right now.",
    }
}

/// The dashboard's words for the facts: banners, the chat line, the stream line.
fn words(view: &DashboardView) -> (Vec<Notice>, String, &'static str) {
    let mut notices = Vec::new();
    let mut notice = |level, text: &str| notices.push(Notice { level, text: text.to_owned() });
    if view.relogin_needed {
        notice("warning", "Twitch no longer accepts your login: log out and log in again to reconnect Twitch.");
    }
    match view.chat_blocked {
        Some(ChatBlock::BotBanned) => notice(
            "error",
            "Twitch says the bot account is banned from your chat: unban it, then log out and log in again.",
        ),
        Some(ChatBlock::ModeratorRemoved) => notice(
            "error",
            "Chat was read because the bot was a moderator, and it no longer is: log out and log in again to grant access.",
        ),
        None => {}
    }
    if view.missing_channel_bot {
        notice(
            "error",
            "Your Twitch login does not allow the ChatPulse bot into your chat (channel:bot): \
             log out and log in again to grant it.",
        );
    }
    match &view.chat {
        ChatConnection::NoTwitch => {
            notice("info", "This server has no Twitch connection configured, so chat cannot be read.");
        }
        ChatConnection::Failed(reason) => notice(
            "error",
            &format!(
                "Chat cannot be read yet: {reason}. Log in again to grant access, \
                 or ask the operator to authorize the bot account."
            ),
        ),
        ChatConnection::Connected | ChatConnection::WaitingForOverlay => {}
    }
    (notices, chat_line(&view.chat), stream_line(view.stream))
}

/// The logged-in streamer and their dashboard data; `Err(response)` redirects
/// to the login when there is none.
async fn view(state: &AppState, session: &Session) -> Result<Result<(StreamerId, StatusView), Response>, Error> {
    let Some(id) = session::streamer(session, state.settings.login_session_max).await? else {
        return Ok(Err(Redirect::to("/auth/login").into_response()));
    };
    match state.app.status(id).await.map_err(|e| Error::Unavailable(e.to_string()))? {
        Some(view) => Ok(Ok((id, view))),
        None => {
            // The account is gone (removed by an operator): start over.
            session::log_out(session).await?;
            Ok(Err(Redirect::to("/").into_response()))
        }
    }
}

pub async fn show(
    State(state): State<AppState>,
    session: Session,
    Query(flags): Query<Flags>,
) -> Result<Response, Error> {
    let (_, view) = match view(&state, &session).await {
        Ok(Ok(v)) => v,
        Ok(Err(redirect)) => return Ok(redirect),
        Err(Error::Unavailable(e)) => {
            tracing::warn!(error = %e, "dashboard unavailable");
            let page = UnavailablePage { retry_url: "/dashboard".into() };
            return Ok((StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "30")], page).into_response());
        }
        Err(e) => return Err(e),
    };
    let form = ConfigForm::from_config(&view.dashboard.setup.config.config);
    let csrf = session::csrf_token(&session).await?;
    Ok(page(&state, Some(view), csrf, form, FieldErrors::default(), &flags).into_response())
}

/// The settings form as posted: any subset of the config's fields (a field
/// left out keeps its saved value), and `look_form` when the form has the
/// look's checkboxes (then an unticked one, which browsers do not send, is
/// off).
#[derive(Deserialize)]
pub struct SettingsForm {
    csrf_token: Option<String>,
    look_form: Option<String>,
    #[serde(flatten)]
    fields: std::collections::HashMap<String, String>,
}

impl SettingsForm {
    /// The posted fields over `saved`.
    fn onto(&self, saved: ConfigForm) -> ConfigForm {
        let mut form = saved;
        for field in ConfigField::ALL {
            match self.fields.get(field.as_str()) {
                Some(text) => form.set(field, text.clone()),
                None if self.look_form.is_some() && form_switches().contains(&field) => {
                    form.set(field, String::new());
                }
                None => {}
            }
        }
        form
    }
}

/// `POST /dashboard/config`'s body as the handler reads it (decoded as
/// axum's `Form` does), laid over `saved` and validated; `Err` is the
/// decoding error. The fuzz target `form` drives it with arbitrary bodies.
pub fn read_settings_form(
    body: &[u8],
    saved: Option<&OverlayConfig>,
) -> Result<Result<OverlayConfig, Vec<FieldProblem>>, String> {
    let form: SettingsForm = serde_urlencoded::from_bytes(body).map_err(|e| e.to_string())?;
    let base = saved.map(ConfigForm::from_config).unwrap_or_default();
    Ok(form.onto(base).parse())
}

/// The fields the form shows as checkboxes.
fn form_switches() -> [ConfigField; 4] {
    [ConfigField::ShowLabels, ConfigField::ShowHint, ConfigField::ShowVoters, ConfigField::Celebrate]
}

pub async fn save(
    State(state): State<AppState>,
    session: Session,
    form: Result<Form<SettingsForm>, FormRejection>,
) -> Result<Response, Error> {
    let Form(form) = form.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => Error::PayloadTooLarge,
        _ => Error::BadRequest(e.body_text()),
    })?;
    session::check_csrf(&session, form.csrf_token.as_deref()).await?;
    let Some(id) = session::streamer(&session, state.settings.login_session_max).await? else {
        return Ok(Redirect::to("/auth/login").into_response());
    };
    // Fields the form left out keep their saved values. When the saved ones
    // cannot be read, the save fails below anyway; the form comes back with
    // what was typed.
    let saved_config = state.app.config_of(id).await;
    let typed = match &saved_config {
        Ok(Some(saved)) => form.onto(ConfigForm::from_config(saved)),
        _ => form.onto(ConfigForm::default()),
    };
    // The save is one statement: it is written entirely or not at all.
    let saved = match (saved_config, typed.parse()) {
        (Err(e), _) => Err(e),
        (Ok(None), _) => Err(ActionError::NotFound),
        (Ok(Some(_)), Ok(config)) => state.app.save_config(id, &config).await.map(Ok),
        (Ok(Some(_)), Err(problems)) => Ok(Err(problems)),
    };
    let (status, errors) = match saved {
        Ok(Ok(_)) => return Ok(Redirect::to("/dashboard?saved=1").into_response()),
        Ok(Err(problems)) => (StatusCode::UNPROCESSABLE_ENTITY, FieldErrors::from_problems(&problems)),
        Err(ActionError::Unavailable(e)) => {
            tracing::warn!(error = %e, "config save failed");
            let errors = FieldErrors::general(
                "Your settings could not be saved right now (storage unavailable). Nothing was changed; please try again in a moment.",
            );
            (StatusCode::SERVICE_UNAVAILABLE, errors)
        }
        Err(ActionError::NotFound) => {
            // The account is gone (removed by an operator): start over.
            session::log_out(&session).await?;
            return Ok(Redirect::to("/").into_response());
        }
        Err(e) => return Err(Error::BadRequest(e.to_string())),
    };
    // The form comes back with what was typed and why it was not saved. The
    // rest of the dashboard needs the durable store; when that is what
    // failed, the form is shown alone rather than an error page.
    let current = if status == StatusCode::SERVICE_UNAVAILABLE {
        None
    } else {
        match view(&state, &session).await {
            Ok(Ok((_, view))) => Some(view),
            Ok(Err(redirect)) => return Ok(redirect),
            Err(e) => {
                tracing::warn!(error = %e, "dashboard data unavailable; showing the settings form alone");
                None
            }
        }
    };
    let csrf = session::csrf_token(&session).await?;
    let page = page(&state, current, csrf, typed, errors, &Flags::default());
    Ok((status, page).into_response())
}

#[derive(Deserialize, Default)]
pub struct CsrfForm {
    csrf_token: Option<String>,
}

/// The CSRF token from the header (fetch) or the form (plain HTML), and
/// whether the caller wants a JSON answer rather than a redirect.
fn csrf_from(headers: &HeaderMap, form: Result<Form<CsrfForm>, FormRejection>) -> (Option<String>, bool) {
    if let Some(token) = headers.get("x-csrf-token").and_then(|v| v.to_str().ok()) {
        return (Some(token.to_owned()), true);
    }
    (form.ok().and_then(|Form(f)| f.csrf_token), false)
}

pub(super) async fn require_streamer(state: &AppState, session: &Session) -> Result<StreamerId, Error> {
    let max = state.settings.login_session_max;
    session::streamer(session, max).await?.ok_or_else(|| Error::Unauthorized("log in first".into()))
}

pub(super) fn action_error(e: ActionError) -> Error {
    match e {
        ActionError::NotFound => Error::NotFound,
        ActionError::Forbidden => Error::Forbidden(e.to_string()),
        ActionError::Unavailable(msg) => Error::Unavailable(msg),
    }
}

pub async fn reset(
    State(state): State<AppState>,
    session: Session,
    Path(raw): Path<String>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, Error> {
    let (token, json) = csrf_from(&headers, form);
    session::check_csrf(&session, token.as_deref()).await?;
    let id = require_streamer(&state, &session).await?;
    let overlay: OverlayId = raw.parse().map_err(|_| Error::NotFound)?;
    state.app.reset(id, overlay).await.map_err(action_error)?;
    Ok(if json { StatusCode::NO_CONTENT.into_response() } else { Redirect::to("/dashboard?reset=1").into_response() })
}

pub async fn rotate(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, Error> {
    let (token, json) = csrf_from(&headers, form);
    session::check_csrf(&session, token.as_deref()).await?;
    let id = require_streamer(&state, &session).await?;
    let overlay = state.app.rotate(id).await.map_err(action_error)?;
    if json {
        let url = state.app.overlay_url(overlay);
        return Ok(Json(json!({ "overlay_url": url })).into_response());
    }
    Ok(Redirect::to("/dashboard?rotated=1").into_response())
}
