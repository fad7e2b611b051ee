//! Twitch OAuth for people: the authorization-code flow (streamer login, bot
//! linking), refresh, validation and revocation (twitch-protocol.md §1).
//!
//! Built on the `oauth2` crate with two Twitch-specific types: a token
//! response whose `scope` is a JSON array, and an error body shaped
//! `{status, message}` rather than RFC 6749's. HTTP goes through reqwest
//! (redirects disabled), adapted to oauth2's client trait.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use oauth2::basic::{BasicRevocationErrorResponse, BasicTokenIntrospectionResponse, BasicTokenType};
use oauth2::{
    AccessToken, AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    ErrorResponse, HttpRequest, HttpResponse, RedirectUrl, RefreshToken, RequestTokenError, Scope,
    StandardRevocableToken, TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// A token answer as Twitch sends it (`scope` is an array, possibly absent).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TwitchTokenResponse {
    access_token: AccessToken,
    #[serde(default)]
    refresh_token: Option<RefreshToken>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    scope: Vec<Scope>,
    token_type: BasicTokenType,
}

impl TokenResponse for TwitchTokenResponse {
    type TokenType = BasicTokenType;

    fn access_token(&self) -> &AccessToken {
        &self.access_token
    }
    fn token_type(&self) -> &BasicTokenType {
        &self.token_type
    }
    fn expires_in(&self) -> Option<Duration> {
        self.expires_in.map(Duration::from_secs)
    }
    fn refresh_token(&self) -> Option<&RefreshToken> {
        self.refresh_token.as_ref()
    }
    fn scopes(&self) -> Option<&Vec<Scope>> {
        Some(&self.scope)
    }
}

/// Twitch's OAuth error body: `{"status": 400, "message": "..."}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TwitchOAuthError {
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub message: String,
}

impl std::fmt::Display for TwitchOAuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.unwrap_or_default(), self.message)
    }
}

impl ErrorResponse for TwitchOAuthError {}

type OAuthClient = oauth2::Client<
    TwitchOAuthError,
    TwitchTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("Twitch refused: {0}")]
    Refused(String),
    #[error("Twitch is unreachable: {0}")]
    Unreachable(String),
    #[error("unexpected answer from Twitch: {0}")]
    Malformed(String),
}

/// Tokens of one user, in the clear (encrypt before storing).
#[derive(Debug, Clone)]
pub struct UserTokens {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: Duration,
    pub scopes: Vec<String>,
}

/// Who a user token belongs to.
#[derive(Debug, Clone, Deserialize)]
pub struct TwitchUser {
    pub id: String,
    pub login: String,
    pub display_name: String,
}

/// `/oauth2/validate` answer for a user token.
#[derive(Debug, Clone, Deserialize)]
pub struct Validation {
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub login: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub expires_in: u64,
}

/// The reqwest adapter for oauth2's async client trait.
struct Http<'a>(&'a reqwest::Client);

impl<'c> oauth2::AsyncHttpClient<'c> for Http<'_> {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let request = reqwest::Request::try_from(request).map_err(|e| HttpError(e.to_string()))?;
            let response = self.0.execute(request).await.map_err(|e| HttpError(e.to_string()))?;
            let mut builder = axum::http::Response::builder().status(response.status());
            for (name, value) in response.headers() {
                builder = builder.header(name, value);
            }
            let body = response.bytes().await.map_err(|e| HttpError(e.to_string()))?;
            builder.body(body.to_vec()).map_err(|e| HttpError(e.to_string()))
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpError(String);

pub struct TwitchOAuth {
    client: OAuthClient,
    http: reqwest::Client,
    auth_url: String,
    api_url: String,
    client_id: String,
}

/// Whether an HTTP status is Twitch's final word on a request (a 4xx other
/// than 429) rather than a moment's trouble (429, 5xx).
fn is_refusal(status: u16) -> bool {
    (400..500).contains(&status) && status != 429
}

fn map_token_error(e: RequestTokenError<HttpError, TwitchOAuthError>) -> OAuthError {
    match e {
        // oauth2 hands over any non-2xx JSON body as a "server response":
        // only a 4xx is a refusal; a 5xx or 429 is worth another try.
        RequestTokenError::ServerResponse(body) if body.status.is_some_and(is_refusal) => {
            OAuthError::Refused(body.to_string())
        }
        RequestTokenError::ServerResponse(body) => OAuthError::Unreachable(format!("Twitch answered {body}")),
        RequestTokenError::Request(e) => OAuthError::Unreachable(e.to_string()),
        RequestTokenError::Parse(e, _) => OAuthError::Malformed(e.to_string()),
        RequestTokenError::Other(e) => OAuthError::Malformed(e),
    }
}

fn into_tokens(t: TwitchTokenResponse) -> Result<UserTokens, OAuthError> {
    let refresh_token =
        t.refresh_token.ok_or_else(|| OAuthError::Malformed("no refresh token in a user token answer".into()))?;
    Ok(UserTokens {
        access_token: t.access_token.secret().clone(),
        refresh_token: refresh_token.secret().clone(),
        expires_in: Duration::from_secs(t.expires_in.unwrap_or(0)),
        scopes: t.scope.into_iter().map(|s| s.to_string()).collect(),
    })
}

impl TwitchOAuth {
    pub fn new(
        auth_url: &str,
        api_url: &str,
        client_id: &str,
        client_secret: &Secret,
        redirect_uri: &str,
    ) -> anyhow::Result<Self> {
        crate::install_crypto_provider();
        let auth_url = auth_url.trim_end_matches('/').to_owned();
        let client = oauth2::Client::new(ClientId::new(client_id.to_owned()))
            .set_client_secret(ClientSecret::new(client_secret.expose().to_owned()))
            .set_auth_uri(AuthUrl::new(format!("{auth_url}/authorize"))?)
            .set_token_uri(TokenUrl::new(format!("{auth_url}/token"))?)
            .set_redirect_uri(RedirectUrl::new(redirect_uri.to_owned())?)
            .set_auth_type(AuthType::RequestBody);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            client,
            http,
            auth_url,
            api_url: api_url.trim_end_matches('/').to_owned(),
            client_id: client_id.to_owned(),
        })
    }

    /// Where to send the browser, and the `state` to remember for the callback.
    pub fn authorize_url(&self, scopes: &[&str], force_verify: bool) -> (String, String) {
        let mut request = self.client.authorize_url(CsrfToken::new_random);
        for scope in scopes {
            request = request.add_scope(Scope::new((*scope).to_owned()));
        }
        if force_verify {
            request = request.add_extra_param("force_verify", "true");
        }
        let (url, state) = request.url();
        (url.to_string(), state.secret().clone())
    }

    /// Exchanges an authorization code (single use) for user tokens.
    pub async fn exchange_code(&self, code: &str) -> Result<UserTokens, OAuthError> {
        let answer = self
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .request_async(&Http(&self.http))
            .await
            .map_err(map_token_error)?;
        into_tokens(answer)
    }

    /// Trades a refresh token for new tokens (Twitch may rotate the refresh token).
    pub async fn refresh(&self, refresh_token: &str) -> Result<UserTokens, OAuthError> {
        let answer = self
            .client
            .exchange_refresh_token(&RefreshToken::new(refresh_token.to_owned()))
            .request_async(&Http(&self.http))
            .await
            .map_err(map_token_error)?;
        into_tokens(answer)
    }

    /// `Ok(None)` when Twitch says the token is invalid (401).
    pub async fn validate(&self, access_token: &str) -> Result<Option<Validation>, OAuthError> {
        let response = self
            .http
            .get(format!("{}/validate", self.auth_url))
            .header("Authorization", format!("OAuth {access_token}"))
            .send()
            .await
            .map_err(|e| OAuthError::Unreachable(e.to_string()))?;
        match response.status().as_u16() {
            401 => Ok(None),
            200 => response.json().await.map(Some).map_err(|e| OAuthError::Malformed(e.to_string())),
            other if is_refusal(other) => Err(OAuthError::Refused(format!("validate answered {other}"))),
            other => Err(OAuthError::Unreachable(format!("validate answered {other}"))),
        }
    }

    /// The user a token belongs to (Get Users with no parameters).
    pub async fn me(&self, access_token: &str) -> Result<TwitchUser, OAuthError> {
        #[derive(Deserialize)]
        struct Users {
            data: Vec<TwitchUser>,
        }
        let response = self
            .http
            .get(format!("{}/users", self.api_url))
            .bearer_auth(access_token)
            .header("Client-Id", &self.client_id)
            .send()
            .await
            .map_err(|e| OAuthError::Unreachable(e.to_string()))?;
        let status = response.status().as_u16();
        if is_refusal(status) {
            return Err(OAuthError::Refused(format!("Get Users answered {status}")));
        }
        if !response.status().is_success() {
            return Err(OAuthError::Unreachable(format!("Get Users answered {status}")));
        }
        let users: Users = response.json().await.map_err(|e| OAuthError::Malformed(e.to_string()))?;
        users.data.into_iter().next().ok_or_else(|| OAuthError::Malformed("Get Users returned nobody".into()))
    }

    /// Revokes a token (logout). Best effort: an invalid token is already gone.
    pub async fn revoke(&self, access_token: &str) -> Result<(), OAuthError> {
        let response = self
            .http
            .post(format!("{}/revoke", self.auth_url))
            .form(&[("client_id", self.client_id.as_str()), ("token", access_token)])
            .send()
            .await
            .map_err(|e| OAuthError::Unreachable(e.to_string()))?;
        match response.status().as_u16() {
            200 | 400 => Ok(()),
            other => Err(OAuthError::Refused(format!("revoke answered {other}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: Option<u16>) -> OAuthError {
        let body = TwitchOAuthError { status, message: "Invalid refresh token".into() };
        map_token_error(RequestTokenError::ServerResponse(body))
    }

    #[test]
    fn a_4xx_answer_is_a_refusal() {
        assert!(matches!(answered(Some(400)), OAuthError::Refused(_)));
        assert!(matches!(answered(Some(401)), OAuthError::Refused(_)));
    }

    #[test]
    fn a_5xx_a_429_or_an_answer_without_status_is_worth_another_try() {
        for status in [Some(500), Some(503), Some(429), None] {
            assert!(matches!(answered(status), OAuthError::Unreachable(_)), "{status:?}");
        }
    }
}
