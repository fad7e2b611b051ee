//! `GET /`, `GET /auth/login`, `GET /auth/callback`, `POST /auth/logout`,
//! `POST /dashboard/scopes` (enable markers/clips), and
//! the operator's bot-account pages `GET /auth/bot`, `GET /auth/bot/start`.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use tower_sessions::Session;

use super::pages::{AuthErrorPage, BotPage, LoginPage};
use super::{AppState, Error, session};
use crate::app::accounts::{LoginError, OptionalFeature, Purpose};

pub async fn home(State(state): State<AppState>, session: Session) -> Result<Response, Error> {
    Ok(match session::streamer(&session, state.settings.login_session_max).await? {
        Some(_) => Redirect::to("/dashboard").into_response(),
        None => LoginPage { error: None }.into_response(),
    })
}

#[derive(Deserialize)]
pub struct LoginQuery {
    /// Optional features to allow too: `markers`, `clips` (comma-separated).
    scopes: Option<String>,
}

/// `GET /auth/login[?scopes=markers,clips]`: to Twitch's consent page, asking
/// for the optional features' scopes too when given.
pub async fn login(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<LoginQuery>,
) -> Result<Response, Error> {
    let features = OptionalFeature::parse_list(query.scopes.as_deref().unwrap_or_default())
        .map_err(|e| Error::BadRequest(format!("scopes: {e}")))?;
    if session::streamer(&session, state.settings.login_session_max).await?.is_some() {
        return Ok(Redirect::to("/dashboard").into_response());
    }
    start(&state, &session, Purpose::Login, &features).await
}

/// `POST /dashboard/scopes` (form: `csrf_token`, `scopes=markers,clips`):
/// the "enable markers/clips" button. Signs the streamer in again through
/// Twitch, asking for those features' scopes besides the usual.
pub async fn enable_features(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<FeaturesForm>,
) -> Result<Response, Error> {
    session::check_csrf(&session, form.csrf_token.as_deref()).await?;
    if session::streamer(&session, state.settings.login_session_max).await?.is_none() {
        return Err(Error::Unauthorized("log in first".into()));
    }
    let features = OptionalFeature::parse_list(form.scopes.as_deref().unwrap_or_default())
        .map_err(|e| Error::BadRequest(format!("scopes: {e}")))?;
    if features.is_empty() {
        return Err(Error::BadRequest("scopes: name at least one of markers, clips".into()));
    }
    start(&state, &session, Purpose::Login, &features).await
}

#[derive(Deserialize)]
pub struct FeaturesForm {
    csrf_token: Option<String>,
    scopes: Option<String>,
}

async fn start(
    state: &AppState,
    session: &Session,
    purpose: Purpose,
    features: &[OptionalFeature],
) -> Result<Response, Error> {
    match state.app.start_auth_with(purpose, features) {
        Ok((url, pending)) => {
            session::remember_pending(session, &pending).await?;
            Ok(Redirect::to(&url).into_response())
        }
        Err(e) => Ok((StatusCode::SERVICE_UNAVAILABLE, LoginPage { error: Some(e.to_string()) }).into_response()),
    }
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

fn problem(status: StatusCode, title: &str, message: &str, retry_url: &str) -> Response {
    let page = AuthErrorPage { title: title.into(), message: message.into(), retry_url: retry_url.into() };
    (status, page).into_response()
}

pub async fn callback(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<CallbackQuery>,
) -> Result<Response, Error> {
    let pending = session::take_pending(&session).await?;
    let Some(pending) = pending.filter(|p| query.state.as_deref() == Some(p.state.as_str())) else {
        return Ok(problem(
            StatusCode::BAD_REQUEST,
            "This sign-in link has expired",
            "The sign-in could not be matched to this browser, so nothing was changed. Please start again.",
            "/auth/login",
        ));
    };
    let retry = match pending.purpose {
        Purpose::Login => "/auth/login",
        Purpose::Bot => "/auth/bot",
    };
    if let Some(error) = query.error {
        let detail = query.error_description.unwrap_or(error);
        let message = format!("Twitch said: {detail}. Nothing was stored; you can try again whenever you like.");
        return Ok(problem(StatusCode::FORBIDDEN, "Access was not granted", &message, retry));
    }
    let Some(code) = query.code else {
        return Ok(problem(
            StatusCode::BAD_REQUEST,
            "Sign-in incomplete",
            "Twitch sent no code. Please start again.",
            retry,
        ));
    };
    match pending.purpose {
        Purpose::Login => match state.app.finish_login(&code).await {
            Ok(id) => {
                session::log_in(&session, id, state.settings.login_session_idle).await?;
                Ok(Redirect::to("/dashboard").into_response())
            }
            Err(e) => Ok(login_failed(&e, retry)),
        },
        Purpose::Bot => match state.app.finish_bot(&code).await {
            Ok(_) => {
                // Twitch confirmed the account is the configured bot.
                if let Some(bot) = state.app.bot_user_id() {
                    session::log_in_bot(&session, bot, state.settings.login_session_idle).await?;
                }
                Ok(Redirect::to("/auth/bot").into_response())
            }
            Err(e) => Ok(login_failed(&e, retry)),
        },
    }
}

fn login_failed(e: &LoginError, retry: &str) -> Response {
    tracing::warn!(error = %e, "Twitch sign-in failed");
    let (status, message) = match e {
        LoginError::WrongBotAccount { .. } => (StatusCode::FORBIDDEN, e.to_string()),
        LoginError::Storage(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, "We could not save your account right now. Please try again.".into())
        }
        _ => (
            StatusCode::BAD_GATEWAY,
            "Twitch did not confirm the sign-in. Nothing was stored; please try again.".into(),
        ),
    };
    problem(status, "Sign-in failed", &message, retry)
}

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf_token: Option<String>,
}

pub async fn logout(session: Session, Form(form): Form<CsrfForm>) -> Result<Response, Error> {
    session::check_csrf(&session, form.csrf_token.as_deref()).await?;
    session::log_out(&session).await?;
    Ok(Redirect::to("/").into_response())
}

/// The bot account's page. Its status (the bot's id, login, scopes, and a
/// check with Twitch) is shown only to a browser signed in as the bot
/// account; anyone else sees how to sign in as the bot, and nothing is
/// stored for them.
pub async fn bot(State(state): State<AppState>, session: Session) -> Result<Response, Error> {
    let signed_in = session::bot(&session, state.settings.login_session_max).await?;
    if signed_in.is_none() || signed_in.as_deref() != state.app.bot_user_id() {
        return Ok(BotPage::sign_in().into_response());
    }
    let status = state.app.bot_status().await.map_err(|e| Error::Unavailable(e.to_string()))?;
    let error = status
        .grant_lost
        .then(|| "Twitch no longer accepts the bot account's authorization. Authorize it again below.".to_owned());
    Ok(BotPage {
        bot_user_id: status.bot_user_id,
        authorized: status.authorized,
        bot_login: status.login,
        scopes: status.scopes,
        error,
        csrf_token: Some(session::csrf_token(&session).await?),
        signed_in: true,
    }
    .into_response())
}

pub async fn bot_start(State(state): State<AppState>, session: Session) -> Result<Response, Error> {
    start(&state, &session, Purpose::Bot, &[]).await
}
