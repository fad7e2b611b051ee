//! The dashboard's API tokens: `GET /dashboard/api-tokens` (the list),
//! `POST /dashboard/api-tokens` (create one: the token is shown in the answer,
//! this once), `POST /dashboard/api-tokens/{id}/revoke`. Like every dashboard
//! form they carry the session's CSRF token.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use time::OffsetDateTime;
use tower_sessions::Session;

use super::dashboard::action_error;
use super::{AppState, Error, session};
use crate::app::api::ApiToken;
use crate::domain::{ApiTokenId, StreamerId, TokenName};

/// One token as the page lists it.
pub struct TokenRow {
    pub id: String,
    pub name: String,
    pub created: String,
    pub last_used: String,
    pub active: bool,
    pub revoked: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "api_tokens.html")]
pub struct ApiTokensPage {
    pub csrf_token: String,
    pub tokens: Vec<TokenRow>,
    /// The token just created (shown once), and its name.
    pub created: Option<String>,
    pub created_name: String,
    pub revoked: bool,
    pub error: Option<String>,
    /// The name field as typed (after an error).
    pub name: String,
}

/// A time as the dashboard shows it: `2026-12-05 07:45 UTC`.
pub fn when(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!("{:04}-{:02}-{:02} {:02}:{:02} UTC", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute())
}

fn row(t: &ApiToken) -> TokenRow {
    TokenRow {
        id: t.id.to_string(),
        name: t.name.to_string(),
        created: when(t.created_at),
        last_used: t.last_used_at.map_or_else(|| "never".to_owned(), when),
        active: !t.is_revoked(),
        revoked: t.revoked_at.map(when).unwrap_or_default(),
    }
}

async fn logged_in(state: &AppState, session: &Session) -> Result<Option<StreamerId>, Error> {
    session::streamer(session, state.settings.login_session_max).await
}

async fn page(state: &AppState, session: &Session, streamer: StreamerId) -> Result<ApiTokensPage, Error> {
    let tokens = state.app.api_tokens_of(streamer).await.map_err(action_error)?;
    Ok(ApiTokensPage {
        csrf_token: session::csrf_token(session).await?,
        tokens: tokens.iter().map(row).collect(),
        created: None,
        created_name: String::new(),
        revoked: false,
        error: None,
        name: String::new(),
    })
}

#[derive(Deserialize, Default)]
pub struct Flags {
    revoked: Option<String>,
}

pub async fn show(
    State(state): State<AppState>,
    session: Session,
    Query(flags): Query<Flags>,
) -> Result<Response, Error> {
    let Some(streamer) = logged_in(&state, &session).await? else {
        return Ok(Redirect::to("/auth/login").into_response());
    };
    let page = ApiTokensPage { revoked: flags.revoked.is_some(), ..page(&state, &session, streamer).await? };
    Ok(page.into_response())
}

#[derive(Deserialize, Default)]
pub struct CreateForm {
    csrf_token: Option<String>,
    #[serde(default)]
    name: String,
}

pub async fn create(
    State(state): State<AppState>,
    session: Session,
    form: Result<Form<CreateForm>, FormRejection>,
) -> Result<Response, Error> {
    let Form(form) = form.unwrap_or_default();
    session::check_csrf(&session, form.csrf_token.as_deref()).await?;
    let Some(streamer) = logged_in(&state, &session).await? else {
        return Ok(Redirect::to("/auth/login").into_response());
    };
    let name = match TokenName::parse(&form.name) {
        Ok(name) => name,
        Err(e) => {
            let mut page = page(&state, &session, streamer).await?;
            (page.error, page.name) = (Some(format!("The token was not created: {e}.")), form.name.clone());
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
        }
    };
    let created = state.app.create_api_token(streamer, name).await.map_err(action_error)?;
    let mut page = page(&state, &session, streamer).await?;
    page.created = Some(created.secret.expose().to_owned());
    page.created_name = created.token.name.to_string();
    // The token is in this answer only: no cache may keep it.
    let mut response = page.into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[derive(Deserialize, Default)]
pub struct CsrfForm {
    csrf_token: Option<String>,
}

pub async fn revoke(
    State(state): State<AppState>,
    session: Session,
    Path(raw): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, Error> {
    let Form(form) = form.unwrap_or_default();
    session::check_csrf(&session, form.csrf_token.as_deref()).await?;
    let Some(streamer) = logged_in(&state, &session).await? else {
        return Ok(Redirect::to("/auth/login").into_response());
    };
    let id: ApiTokenId = raw.parse().map_err(|_| Error::NotFound)?;
    state.app.revoke_api_token(streamer, id).await.map_err(action_error)?;
    Ok(Redirect::to("/dashboard/api-tokens?revoked=1").into_response())
}
