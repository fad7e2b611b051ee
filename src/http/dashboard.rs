//! `GET /dashboard`, `POST /dashboard/config`, `POST /api/reset/{overlay_uuid}`,
//! `POST /api/rotate-overlay-uuid`. Every state-changing request carries the
//! session's CSRF token (form field `csrf_token` or header `X-CSRF-Token`).

use axum::Json;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;
use tower_sessions::Session;

use super::pages::{ConfigForm, DashboardPage, FieldErrors, Notice};
use super::{AppState, Error, session};
use crate::app::accounts::{ActionError, DashboardView};
use crate::domain::{OverlayId, StreamerId};

#[derive(Deserialize, Default)]
pub struct Flags {
    #[serde(default)]
    saved: Option<String>,
    #[serde(default)]
    reset: Option<String>,
    #[serde(default)]
    rotated: Option<String>,
}

fn page(
    state: &AppState,
    view: DashboardView,
    csrf_token: String,
    form: ConfigForm,
    errors: FieldErrors,
    flags: &Flags,
) -> DashboardPage {
    let streamer = view.setup.streamer;
    DashboardPage {
        display_name: streamer.display_name,
        login: streamer.login,
        overlay_url: format!("{}/overlay/{}", state.app.settings.public_url, streamer.overlay_id),
        overlay_id: streamer.overlay_id.to_string(),
        csrf_token,
        form,
        errors,
        saved: flags.saved.is_some(),
        reset_done: flags.reset.is_some(),
        rotated: flags.rotated.is_some(),
        notices: view.notices.into_iter().map(|n| Notice { level: n.level.to_owned(), text: n.text }).collect(),
        chat_status: view.chat_status,
        stream_status: view.stream_status,
    }
}

/// The logged-in streamer and their dashboard data; `Err(response)` redirects
/// to the login when there is none.
async fn view(state: &AppState, session: &Session) -> Result<Result<(StreamerId, DashboardView), Response>, Error> {
    let Some(id) = session::streamer(session, state.tuning.login_session_max).await? else {
        return Ok(Err(Redirect::to("/auth/login").into_response()));
    };
    match state.app.dashboard(id).await.map_err(|e| Error::Unavailable(e.to_string()))? {
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
    let (_, view) = match view(&state, &session).await? {
        Ok(v) => v,
        Err(redirect) => return Ok(redirect),
    };
    let form = ConfigForm::from_config(&view.setup.config.config);
    let csrf = session::csrf_token(&session).await?;
    Ok(page(&state, view, csrf, form, FieldErrors::default(), &flags).into_response())
}

#[derive(Deserialize)]
pub struct SettingsForm {
    csrf_token: Option<String>,
    #[serde(flatten)]
    config: ConfigForm,
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
    let (id, current) = match view(&state, &session).await? {
        Ok(v) => v,
        Err(redirect) => return Ok(redirect),
    };
    let errors = match state.app.save_config(id, &form.config).await {
        Ok(Ok(_)) => return Ok(Redirect::to("/dashboard?saved=1").into_response()),
        Ok(Err(errors)) => *errors,
        Err(ActionError::Unavailable(e)) => {
            tracing::warn!(error = %e, "config save failed");
            FieldErrors {
                general: Some("Your settings could not be saved right now (storage unavailable). Nothing was changed; please try again.".into()),
                ..FieldErrors::default()
            }
        }
        Err(e) => return Err(Error::BadRequest(e.to_string())),
    };
    let csrf = session::csrf_token(&session).await?;
    let page = page(&state, current, csrf, form.config, errors, &Flags::default());
    Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
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

async fn require_streamer(state: &AppState, session: &Session) -> Result<StreamerId, Error> {
    let max = state.tuning.login_session_max;
    session::streamer(session, max).await?.ok_or_else(|| Error::Unauthorized("log in first".into()))
}

fn action_error(e: ActionError) -> Error {
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
        let url = format!("{}/overlay/{overlay}", state.app.settings.public_url);
        return Ok(Json(json!({ "overlay_url": url })).into_response());
    }
    Ok(Redirect::to("/dashboard?rotated=1").into_response())
}
