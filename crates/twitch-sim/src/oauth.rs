//! OAuth under `/oauth2` (§1): the authorize/consent page, the token
//! endpoint (authorization code, refresh token, client credentials),
//! validate and revoke.

use askama::Template;
use askama_web::WebTemplate;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::helix::Reject;
use super::state::{AccessToken, AuthCode, RefreshGrant};
use super::util::{Params, percent_encode, random_refresh_token, random_token, valid_login};
use super::{SimUser, Simulator, delivery};

/// Browser "session" on the simulated twitch.tv: who is logged in.
const SESSION_COOKIE: &str = "sim_twitch_user";

/// OAuth errors are `{"status", "message"}` (no `error` field, unlike Helix).
/// One use of the token endpoint's fault switch, if it is on.
fn take_token_fault(sim: &Simulator) -> Option<u16> {
    let mut state = sim.state();
    let fault = state.token_fault.as_mut()?;
    fault.remaining = fault.remaining.saturating_sub(1);
    let status = fault.status;
    if fault.remaining == 0 {
        state.token_fault = None;
    }
    Some(status)
}

fn oauth_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"status": status.as_u16(), "message": message}))).into_response()
}

/// A validated authorize request.
#[derive(Debug, Clone)]
struct AuthorizeRequest {
    client_id: String,
    redirect_uri: String,
    scopes: Vec<String>,
    state: Option<String>,
    force_verify: bool,
}

fn well_formed_scope(scope: &str) -> bool {
    scope.contains(':')
        && scope.split(':').all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
}

/// Appends query parameters to a redirect URI (which may already have a query).
fn with_query(uri: &str, pairs: &[(&str, &str)]) -> String {
    let mut url = uri.to_owned();
    let mut separator = if uri.contains('?') { '&' } else { '?' };
    for (key, value) in pairs {
        url.push(separator);
        url.push_str(key);
        url.push('=');
        url.push_str(&percent_encode(value));
        separator = '&';
    }
    url
}

fn found(location: &str) -> Response {
    let mut response = StatusCode::FOUND.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

fn redirect_error(request_uri: &str, state: Option<&str>, error: &str, description: &str) -> Response {
    let mut pairs = vec![("error", error), ("error_description", description)];
    if let Some(state) = state {
        pairs.push(("state", state));
    }
    found(&with_query(request_uri, &pairs))
}

impl AuthorizeRequest {
    /// Twitch never redirects to an unregistered URI: client and redirect URI
    /// errors are shown, later errors are redirected.
    fn parse(sim: &Simulator, params: &Params) -> Result<Self, Reject> {
        let config = sim.config();
        let client_id = params.get("client_id").unwrap_or_default();
        if client_id.is_empty() {
            return Err(Box::new(oauth_error(StatusCode::BAD_REQUEST, "missing client_id")));
        }
        if client_id != config.client_id {
            return Err(Box::new(oauth_error(StatusCode::BAD_REQUEST, "invalid client")));
        }
        let redirect_uri = params.get("redirect_uri").unwrap_or_default();
        if !config.redirect_uris.iter().any(|r| r == redirect_uri) {
            return Err(Box::new(oauth_error(
                StatusCode::BAD_REQUEST,
                "Parameter redirect_uri does not match registered URI",
            )));
        }
        let state = params.get("state").map(str::to_owned);
        if params.get("response_type") != Some("code") {
            let description = "response_type must be code";
            return Err(Box::new(redirect_error(
                redirect_uri,
                state.as_deref(),
                "unsupported_response_type",
                description,
            )));
        }
        let mut scopes: Vec<String> = Vec::new();
        for scope in params.get("scope").unwrap_or_default().split_whitespace() {
            if !well_formed_scope(scope) {
                let description = format!("invalid scope requested: '{scope}'");
                return Err(Box::new(redirect_error(redirect_uri, state.as_deref(), "invalid_scope", &description)));
            }
            if !scopes.iter().any(|s| s == scope) {
                scopes.push(scope.to_owned());
            }
        }
        Ok(Self {
            client_id: client_id.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            scopes,
            state,
            force_verify: params.get("force_verify").is_some_and(|v| v.eq_ignore_ascii_case("true")),
        })
    }
}

struct ScopeLine {
    name: String,
    description: &'static str,
}

struct UserChoice {
    login: String,
    display_name: String,
    id: String,
    checked: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "sim_authorize.html")]
struct AuthorizePage {
    client_id: String,
    redirect_uri: String,
    scope: String,
    scopes: Vec<ScopeLine>,
    state: Option<String>,
    force_verify: bool,
    users: Vec<UserChoice>,
    error: Option<String>,
}

fn describe_scope(scope: &str) -> &'static str {
    match scope {
        "channel:bot" => "Let the app's bot join and read your channel's chat",
        "clips:edit" => "Create clips of your broadcast",
        "user:read:chat" => "Receive chat messages as this account",
        "user:bot" => "Appear in chat as a bot through the app",
        "user:write:chat" => "Send chat messages as this account",
        "user:read:email" => "See your email address",
        "moderator:read:chatters" => "See who is in your chat",
        _ => "Additional permission requested by the app",
    }
}

fn session_user_id(headers: &HeaderMap) -> Option<String> {
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
    cookies.split(';').find_map(|c| c.trim().strip_prefix(&format!("{SESSION_COOKIE}=")).map(str::to_owned))
}

fn render_page(
    sim: &Simulator,
    request: &AuthorizeRequest,
    preselect: Option<&str>,
    error: Option<String>,
) -> Response {
    let users = sim.users();
    let preselect = preselect.map(str::to_owned).or_else(|| users.first().map(|u| u.id.clone()));
    let page = AuthorizePage {
        client_id: request.client_id.clone(),
        redirect_uri: request.redirect_uri.clone(),
        scope: request.scopes.join(" "),
        scopes: request.scopes.iter().map(|s| ScopeLine { name: s.clone(), description: describe_scope(s) }).collect(),
        state: request.state.clone(),
        force_verify: request.force_verify,
        users: users
            .into_iter()
            .map(|u| UserChoice {
                checked: preselect.as_deref() == Some(u.id.as_str()),
                login: u.login,
                display_name: u.display_name,
                id: u.id,
            })
            .collect(),
        error,
    };
    ([(header::CACHE_CONTROL, "no-store")], page).into_response()
}

/// Consent given: record the grant, issue a code, redirect with `code`, `scope`, `state`.
fn approve(sim: &Simulator, request: &AuthorizeRequest, user: &SimUser) -> Response {
    let config = sim.config();
    let code = random_token(30);
    let first_grant = {
        let mut state = sim.state();
        let first = !state.has_any_grant(&request.client_id, &user.id);
        state.grant(&request.client_id, &user.id, &request.scopes);
        if first {
            // An empty scope list still connects the app.
            state.grants.entry((request.client_id.clone(), user.id.clone())).or_default();
        }
        state.codes.insert(
            code.clone(),
            AuthCode {
                client_id: request.client_id.clone(),
                redirect_uri: request.redirect_uri.clone(),
                user_id: user.id.clone(),
                scopes: request.scopes.clone(),
                expires_at: sim.now() + config.code_ttl,
            },
        );
        first
    };
    if first_grant {
        let client_id = request.client_id.clone();
        let event = json!({
            "client_id": client_id, "user_id": user.id, "user_login": user.login, "user_name": user.display_name,
        });
        delivery::emit(sim, "user.authorization.grant", &user.id, &event, |s| {
            s.condition_str("client_id") == Some(&client_id)
        });
    }
    let scope = request.scopes.join(" ");
    let mut pairs = vec![("code", code.as_str()), ("scope", scope.as_str())];
    if let Some(state) = request.state.as_deref() {
        pairs.push(("state", state));
    }
    let mut response = found(&with_query(&request.redirect_uri, &pairs));
    let cookie = format!("{SESSION_COOKIE}={}; Path=/oauth2; HttpOnly; SameSite=Lax", user.id);
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

fn deny(request: &AuthorizeRequest) -> Response {
    redirect_error(&request.redirect_uri, request.state.as_deref(), "access_denied", "The user denied you access")
}

/// `GET /oauth2/authorize`: consent page, or an immediate redirect with
/// `sim_auto_approve=<login>` or for a logged-in user who already granted
/// every requested scope (unless `force_verify=true`).
pub(crate) async fn authorize_page(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params = Params::parse(query.as_deref());
    let request = match AuthorizeRequest::parse(&sim, &params) {
        Ok(r) => r,
        Err(response) => return *response,
    };
    if let Some(login) = params.get("sim_auto_approve").map(str::trim).filter(|l| !l.is_empty()) {
        let login = login.to_ascii_lowercase();
        if !valid_login(&login) {
            return oauth_error(StatusCode::BAD_REQUEST, "sim_auto_approve must be a valid login");
        }
        let user = sim.create_user(&login, &login);
        return approve(&sim, &request, &user);
    }
    let session = session_user_id(&headers).and_then(|id| sim.user(&id));
    if let Some(user) = &session
        && !request.force_verify
    {
        let granted = sim.granted_scopes(&user.id);
        let connected = sim.state().has_any_grant(&request.client_id, &user.id);
        if connected && request.scopes.iter().all(|s| granted.contains(s)) {
            return approve(&sim, &request, user);
        }
    }
    render_page(&sim, &request, session.as_ref().map(|u| u.id.as_str()), None)
}

/// `POST /oauth2/authorize`: the consent form's Approve / Deny.
pub(crate) async fn authorize_decision(State(sim): State<Simulator>, body: Bytes) -> Response {
    let params = Params::parse(Some(&String::from_utf8_lossy(&body)));
    let request = match AuthorizeRequest::parse(&sim, &params) {
        Ok(r) => r,
        Err(response) => return *response,
    };
    if params.get("decision") != Some("approve") {
        return deny(&request);
    }
    let new_login = params.get("new_login").map(str::trim).unwrap_or_default().to_ascii_lowercase();
    let user = if !new_login.is_empty() {
        if !valid_login(&new_login) {
            let message = "A login is 1–25 characters: lower-case letters, digits and underscores.";
            return render_page(&sim, &request, None, Some(message.into()));
        }
        Some(sim.create_user(&new_login, params.get("new_display_name").unwrap_or(&new_login)))
    } else {
        params.get("user_id").and_then(|id| sim.user(id))
    };
    match user {
        Some(user) => approve(&sim, &request, &user),
        None => render_page(&sim, &request, None, Some("Pick an account or type a new login.".into())),
    }
}

fn issue_user_token(sim: &Simulator, user_id: &str, scopes: &[String]) -> Value {
    let config = sim.config();
    let access_token = random_token(30);
    let refresh_token = random_refresh_token();
    let mut state = sim.state();
    state.tokens.insert(
        access_token.clone(),
        AccessToken {
            client_id: config.client_id.clone(),
            user_id: Some(user_id.to_owned()),
            scopes: scopes.to_vec(),
            expires_at: sim.now() + config.user_token_ttl,
        },
    );
    state.refresh_tokens.insert(
        refresh_token.clone(),
        RefreshGrant { client_id: config.client_id.clone(), user_id: user_id.to_owned(), scopes: scopes.to_vec() },
    );
    json!({
        "access_token": access_token,
        "expires_in": config.user_token_ttl.as_secs(),
        "refresh_token": refresh_token,
        "scope": scopes,
        "token_type": "bearer",
    })
}

/// `POST /oauth2/token` (form body, or query string).
pub(crate) async fn token(State(sim): State<Simulator>, RawQuery(query): RawQuery, body: Bytes) -> Response {
    if let Some(status) = take_token_fault(&sim) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return oauth_error(status, "simulated failure");
    }
    let mut params = Params::parse(Some(&String::from_utf8_lossy(&body)));
    params.extend(Params::parse(query.as_deref()));
    let config = sim.config();
    let client_id = params.get("client_id").unwrap_or_default();
    if client_id.is_empty() {
        return oauth_error(StatusCode::BAD_REQUEST, "missing client id");
    }
    if client_id != config.client_id {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid client");
    }
    match params.get("client_secret") {
        None | Some("") => return oauth_error(StatusCode::BAD_REQUEST, "missing client secret"),
        Some(secret) if secret != config.client_secret => {
            return oauth_error(StatusCode::FORBIDDEN, "invalid client secret");
        }
        Some(_) => {}
    }
    match params.get("grant_type").unwrap_or_default() {
        "authorization_code" => {
            let code = params.get("code").unwrap_or_default();
            let redirect_uri = params.get("redirect_uri").unwrap_or_default();
            // Single use: a presented code is gone whatever the outcome.
            let entry = sim.state().codes.remove(code);
            let valid = entry
                .filter(|c| c.client_id == client_id && c.redirect_uri == redirect_uri && c.expires_at > sim.now());
            match valid {
                Some(code) => Json(issue_user_token(&sim, &code.user_id, &code.scopes)).into_response(),
                None => oauth_error(StatusCode::BAD_REQUEST, "Invalid authorization code"),
            }
        }
        "refresh_token" => {
            let presented = params.get("refresh_token").unwrap_or_default();
            let entry = sim.state().refresh_tokens.remove(presented);
            let Some(grant) = entry.filter(|g| g.client_id == client_id) else {
                let body = json!({"error": "Bad Request", "status": 400, "message": "Invalid refresh token"});
                return (StatusCode::BAD_REQUEST, Json(body)).into_response();
            };
            Json(issue_user_token(&sim, &grant.user_id, &grant.scopes)).into_response()
        }
        "client_credentials" => {
            let access_token = random_token(30);
            sim.state().tokens.insert(
                access_token.clone(),
                AccessToken {
                    client_id: config.client_id.clone(),
                    user_id: None,
                    scopes: Vec::new(),
                    expires_at: sim.now() + config.app_token_ttl,
                },
            );
            Json(json!({
                "access_token": access_token, "expires_in": config.app_token_ttl.as_secs(), "token_type": "bearer",
            }))
            .into_response()
        }
        "" => oauth_error(StatusCode::BAD_REQUEST, "missing grant_type"),
        _ => oauth_error(StatusCode::BAD_REQUEST, "unsupported grant_type"),
    }
}

/// `GET /oauth2/validate` with `Authorization: OAuth <token>` (or `Bearer`).
pub(crate) async fn validate(State(sim): State<Simulator>, headers: HeaderMap) -> Response {
    let invalid = || oauth_error(StatusCode::UNAUTHORIZED, "invalid access token");
    let Some(authorization) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return oauth_error(StatusCode::UNAUTHORIZED, "missing authorization token");
    };
    let token = match authorization.trim().split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("oauth") || scheme.eq_ignore_ascii_case("bearer") => {
            token.trim()
        }
        _ => return invalid(),
    };
    let now = sim.now();
    let state = sim.state();
    let Some(access) = state.tokens.get(token).filter(|t| t.expires_at > now) else {
        return invalid();
    };
    let expires_in = (access.expires_at - now).whole_seconds().max(0);
    let body = match &access.user_id {
        Some(user_id) => json!({
            "client_id": access.client_id,
            "login": state.user(user_id).map(|u| u.login.clone()).unwrap_or_default(),
            "scopes": access.scopes,
            "user_id": user_id,
            "expires_in": expires_in,
        }),
        None => json!({"client_id": access.client_id, "scopes": access.scopes, "expires_in": expires_in}),
    };
    Json(body).into_response()
}

/// `POST /oauth2/revoke` (form `client_id`, `token`): 200 / 400 / 404.
pub(crate) async fn revoke(State(sim): State<Simulator>, RawQuery(query): RawQuery, body: Bytes) -> Response {
    let mut params = Params::parse(Some(&String::from_utf8_lossy(&body)));
    params.extend(Params::parse(query.as_deref()));
    let client_id = params.get("client_id").unwrap_or_default();
    if client_id != sim.config().client_id {
        return oauth_error(StatusCode::NOT_FOUND, "client does not exist");
    }
    let token = params.get("token").unwrap_or_default();
    let mut state = sim.state();
    let owned = state.tokens.get(token).is_some_and(|t| t.client_id == client_id);
    if !owned {
        return oauth_error(StatusCode::BAD_REQUEST, "Invalid token");
    }
    state.tokens.remove(token);
    StatusCode::OK.into_response()
}
