//! ChatPulse's client for Twitch's OAuth and Helix APIs
//! (twitch-protocol.md §1–4). One client for the real Twitch and for the
//! simulator: only the base URLs differ. Every Helix call follows one
//! policy ([`super::retry`]); callers see only its final result.

use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::time::Instant;

mod streams;

pub use streams::LiveStream;

use super::retry::RetryPolicy;
use super::status::SubscriptionStatus;
use crate::clock::Clock;
use crate::secret::Secret;

/// Renew the app token this long before Twitch says it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum TwitchError {
    /// Twitch answered with an error status (body's `message` included).
    #[error("Twitch answered {status}: {message}")]
    Status { status: u16, message: String, retry_after: Option<Duration> },
    #[error("Twitch is unreachable: {0}")]
    Transport(String),
    #[error("unexpected answer from Twitch: {0}")]
    Malformed(String),
}

impl TwitchError {
    pub fn status(&self) -> Option<u16> {
        match self {
            TwitchError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Worth retrying later: an exhausted rate limit, a request timeout,
    /// Twitch-side trouble, network errors. (A 429 with points left is a
    /// subscription limit.)
    pub fn is_transient(&self) -> bool {
        match self {
            TwitchError::Status { status: 429, retry_after, .. } => retry_after.is_some(),
            TwitchError::Status { status: 408, .. } => true,
            TwitchError::Status { status, .. } => *status >= 500,
            TwitchError::Transport(_) => true,
            TwitchError::Malformed(_) => false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Conduit {
    pub id: String,
    pub shard_count: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Shard {
    pub id: String,
    pub status: String,
    /// Absent on a shard that was never bound (§3.3): read as empty.
    #[serde(default)]
    pub transport: ShardTransport,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ShardTransport {
    #[serde(default)]
    pub method: String,
    #[serde(default)]
    pub callback: Option<String>,
    /// The bound EventSub WebSocket session (WebSocket shards only).
    #[serde(default)]
    pub session_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ShardError {
    pub id: String,
    pub message: String,
    #[serde(default)]
    pub code: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ShardUpdate {
    #[serde(default)]
    pub data: Vec<Shard>,
    #[serde(default)]
    pub errors: Vec<ShardError>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Subscription {
    pub id: String,
    pub status: SubscriptionStatus,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub condition: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub transport: SubscriptionTransport,
    #[serde(default)]
    pub cost: u64,
}

impl Subscription {
    /// A string value of the condition (`broadcaster_user_id`, `user_id`, ...).
    pub fn condition_str(&self, key: &str) -> Option<&str> {
        self.condition.get(key).and_then(|v| v.as_str())
    }

    /// Delivered through this conduit.
    pub fn on_conduit(&self, conduit_id: &str) -> bool {
        self.transport.method == "conduit" && self.transport.conduit_id.as_deref() == Some(conduit_id)
    }
}

/// Where Twitch delivers a subscription's events.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SubscriptionTransport {
    #[serde(default)]
    pub method: String,
    #[serde(default)]
    pub conduit_id: Option<String>,
    #[serde(default)]
    pub callback: Option<String>,
}

/// Every subscription of the client, with Twitch's totals (§4.2, §4.5).
#[derive(Debug, Clone, Default)]
pub struct SubscriptionList {
    pub subscriptions: Vec<Subscription>,
    pub total: u64,
    pub total_cost: u64,
    pub max_total_cost: u64,
}

/// Twitch's subscription totals for the client, as of one answer (§4.5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub total: u64,
    pub total_cost: u64,
    pub max_total_cost: u64,
}

/// A subscription just created, with the totals Twitch sent along.
#[derive(Debug, Clone)]
pub struct Created {
    pub subscription: Subscription,
    pub totals: Totals,
}

impl SubscriptionPage {
    fn into_created(self) -> Result<Created, TwitchError> {
        let totals = Totals { total: self.total, total_cost: self.total_cost, max_total_cost: self.max_total_cost };
        let subscription =
            self.data.into_iter().next().ok_or_else(|| TwitchError::Malformed("no subscription in answer".into()))?;
        Ok(Created { subscription, totals })
    }
}

#[derive(Debug, Deserialize)]
struct SubscriptionPage {
    data: Vec<Subscription>,
    #[serde(default)]
    total: u64,
    #[serde(default)]
    total_cost: u64,
    #[serde(default)]
    max_total_cost: u64,
    #[serde(default)]
    pagination: Option<Pagination>,
}

#[derive(Debug, Deserialize)]
struct Data<T> {
    data: Vec<T>,
    #[serde(default)]
    pagination: Option<Pagination>,
}

#[derive(Debug, Default, Deserialize)]
struct Pagination {
    #[serde(default)]
    cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: String,
}

struct AppToken {
    token: String,
    renew_at: Instant,
}

/// Client credentials and endpoints of one Twitch application.
pub struct TwitchClient {
    transport: Transport,
    api_url: String,
    auth_url: String,
    client_id: String,
    client_secret: Secret,
    app_token: tokio::sync::Mutex<Option<AppToken>>,
    retry: RetryPolicy,
    /// Reads the wall clock that `Ratelimit-Reset` is compared with.
    clock: Clock,
}

/// How requests leave the client: over HTTP, or (unit tests) to a scripted
/// stand-in for Twitch's HTTP API, so that the call policy runs on tokio's
/// paused clock without sockets.
enum Transport {
    Http(reqwest::Client),
    #[cfg(test)]
    Scripted(Box<dyn Fn(&str) -> Reply + Send + Sync>),
}

/// One request as the transport sends it.
struct Outgoing<'a> {
    method: Method,
    url: String,
    bearer: Option<&'a str>,
    client_id: Option<&'a str>,
    query: &'a [(&'a str, &'a str)],
    json: Option<&'a serde_json::Value>,
    form: Option<&'a [(&'a str, &'a str)]>,
}

/// One answer as the client reads it: the status, the two rate-limit
/// headers (§2.3) and the body.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: u16,
    pub ratelimit_remaining: Option<String>,
    pub ratelimit_reset: Option<String>,
    pub body: Vec<u8>,
}

impl Transport {
    async fn send(&self, out: Outgoing<'_>) -> Result<Reply, TwitchError> {
        match self {
            Transport::Http(http) => {
                let mut request = http.request(out.method, &out.url).query(out.query);
                if let Some(token) = out.bearer {
                    request = request.bearer_auth(token);
                }
                if let Some(client_id) = out.client_id {
                    request = request.header("Client-Id", client_id);
                }
                if let Some(body) = out.json {
                    request = request.json(body);
                }
                if let Some(form) = out.form {
                    request = request.form(form);
                }
                let response = request.send().await.map_err(|e| TwitchError::Transport(e.to_string()))?;
                let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
                let (ratelimit_remaining, ratelimit_reset) = (header("ratelimit-remaining"), header("ratelimit-reset"));
                let status = response.status().as_u16();
                let body = response.bytes().await.map_err(|e| TwitchError::Transport(e.to_string()))?.to_vec();
                Ok(Reply { status, ratelimit_remaining, ratelimit_reset, body })
            }
            #[cfg(test)]
            Transport::Scripted(answer) => Ok(answer(&out.url)),
        }
    }
}

#[derive(Serialize)]
struct NewSubscription<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    version: &'a str,
    condition: serde_json::Value,
    transport: serde_json::Value,
}

impl TwitchClient {
    pub fn new(api_url: &str, auth_url: &str, client_id: &str, client_secret: Secret) -> anyhow::Result<Self> {
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("ChatPulse")
            .build()?;
        Ok(Self {
            transport: Transport::Http(http),
            api_url: api_url.trim_end_matches('/').to_owned(),
            auth_url: auth_url.trim_end_matches('/').to_owned(),
            client_id: client_id.to_owned(),
            client_secret,
            app_token: tokio::sync::Mutex::new(None),
            retry: RetryPolicy::default(),
            clock: Clock::System,
        })
    }

    /// The same client under another call policy.
    pub fn with_retry(self, retry: RetryPolicy) -> Self {
        Self { retry, ..self }
    }

    /// A client whose requests `answer` serves (given the URL), on `clock`.
    #[cfg(test)]
    pub(crate) fn scripted(
        answer: impl Fn(&str) -> Reply + Send + Sync + 'static,
        client_secret: Secret,
        retry: RetryPolicy,
        clock: Clock,
    ) -> Self {
        Self {
            transport: Transport::Scripted(Box::new(answer)),
            api_url: "https://api.twitch.test/helix".to_owned(),
            auth_url: "https://id.twitch.test/oauth2".to_owned(),
            client_id: "client-id".to_owned(),
            client_secret,
            app_token: tokio::sync::Mutex::new(None),
            retry,
            clock,
        }
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The cached app access token, fetched (client credentials) when missing
    /// or about to expire. One request at a time refreshes it.
    pub async fn app_token(&self) -> Result<String, TwitchError> {
        let mut cached = self.app_token.lock().await;
        if let Some(t) = cached.as_ref()
            && Instant::now() < t.renew_at
        {
            return Ok(t.token.clone());
        }
        let form = [
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose()),
            ("grant_type", "client_credentials"),
        ];
        let reply = self
            .transport
            .send(Outgoing {
                method: Method::POST,
                url: format!("{}/token", self.auth_url),
                bearer: None,
                client_id: None,
                query: &[],
                json: None,
                form: Some(&form),
            })
            .await?;
        let token: TokenResponse = decode(reply, self.clock.now_ms())?;
        let lifetime = Duration::from_secs(token.expires_in).saturating_sub(RENEW_BEFORE);
        let renew_at = Instant::now() + lifetime.max(Duration::from_secs(token.expires_in / 2));
        *cached = Some(AppToken { token: token.access_token.clone(), renew_at });
        Ok(token.access_token)
    }

    async fn forget_app_token(&self) {
        *self.app_token.lock().await = None;
    }

    /// One Helix call with the app token, under the call policy.
    async fn helix<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&serde_json::Value>,
    ) -> Result<T, TwitchError> {
        let what = format!("{method} {path}");
        self.retry.run(&what, || self.helix_once(method.clone(), path, query, body)).await
    }

    /// One attempt of a Helix call: a 401 renews the app token and sends
    /// the request once more.
    async fn helix_once<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&serde_json::Value>,
    ) -> Result<T, TwitchError> {
        for attempt in 0..2 {
            let token = self.app_token().await?;
            let out = Outgoing {
                method: method.clone(),
                url: format!("{}{path}", self.api_url),
                bearer: Some(&token),
                client_id: Some(&self.client_id),
                query,
                json: body,
                form: None,
            };
            let reply = self.transport.send(out).await?;
            if reply.status == 401 && attempt == 0 {
                self.forget_app_token().await;
                continue;
            }
            return decode(reply, self.clock.now_ms());
        }
        Err(TwitchError::Malformed("unreachable retry loop".into()))
    }

    pub async fn conduits(&self) -> Result<Vec<Conduit>, TwitchError> {
        let page: Data<Conduit> = self.helix(Method::GET, "/eventsub/conduits", &[], None).await?;
        Ok(page.data)
    }

    pub async fn create_conduit(&self, shard_count: u32) -> Result<Conduit, TwitchError> {
        let body = json!({ "shard_count": shard_count });
        let page: Data<Conduit> = self.helix(Method::POST, "/eventsub/conduits", &[], Some(&body)).await?;
        page.data.into_iter().next().ok_or_else(|| TwitchError::Malformed("no conduit in answer".into()))
    }

    pub async fn shards(&self, conduit_id: &str) -> Result<Vec<Shard>, TwitchError> {
        let page: Data<Shard> =
            self.helix(Method::GET, "/eventsub/conduits/shards", &[("conduit_id", conduit_id)], None).await?;
        Ok(page.data)
    }

    /// Points one shard at a webhook; Twitch then sends it a challenge. The
    /// 202 can carry per-shard `errors`: the caller must look at them.
    pub async fn update_webhook_shard(
        &self,
        conduit_id: &str,
        shard_id: &str,
        callback: &str,
        secret: &str,
    ) -> Result<ShardUpdate, TwitchError> {
        let body = json!({
            "conduit_id": conduit_id,
            "shards": [{ "id": shard_id, "transport": { "method": "webhook", "callback": callback, "secret": secret } }]
        });
        self.helix(Method::PATCH, "/eventsub/conduits/shards", &[], Some(&body)).await
    }

    /// Points one shard at an EventSub WebSocket session (the id from its
    /// welcome, §6.3), within the 10 s window. The 202 can carry per-shard
    /// `errors` ("websocket session is not connected"): the caller must look
    /// at them.
    pub async fn update_websocket_shard(
        &self,
        conduit_id: &str,
        shard_id: &str,
        session_id: &str,
    ) -> Result<ShardUpdate, TwitchError> {
        let body = json!({
            "conduit_id": conduit_id,
            "shards": [{ "id": shard_id, "transport": { "method": "websocket", "session_id": session_id } }]
        });
        self.helix(Method::PATCH, "/eventsub/conduits/shards", &[], Some(&body)).await
    }

    /// Creates a subscription on a conduit. A 409 (it exists) comes back as
    /// `TwitchError::Status { status: 409, .. }` for the caller to adopt.
    pub async fn create_conduit_subscription(
        &self,
        kind: &str,
        condition: serde_json::Value,
        conduit_id: &str,
    ) -> Result<Created, TwitchError> {
        let body = NewSubscription {
            kind,
            version: "1",
            condition,
            transport: json!({ "method": "conduit", "conduit_id": conduit_id }),
        };
        let body = serde_json::to_value(body).map_err(|e| TwitchError::Malformed(e.to_string()))?;
        let page: SubscriptionPage = self.helix(Method::POST, "/eventsub/subscriptions", &[], Some(&body)).await?;
        page.into_created()
    }

    /// Every subscription whose condition mentions `user_id` (all pages).
    pub async fn subscriptions_for_user(&self, user_id: &str) -> Result<Vec<Subscription>, TwitchError> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![("user_id", user_id)];
            if let Some(c) = cursor.as_deref() {
                query.push(("after", c));
            }
            let page: Data<Subscription> = self.helix(Method::GET, "/eventsub/subscriptions", &query, None).await?;
            all.extend(page.data);
            match page.pagination.and_then(|p| p.cursor) {
                Some(next) if !next.is_empty() => cursor = Some(next),
                _ => return Ok(all),
            }
        }
    }

    /// Every subscription of this client (all pages), with the totals of
    /// the last page.
    pub async fn all_subscriptions(&self) -> Result<SubscriptionList, TwitchError> {
        let mut list = SubscriptionList::default();
        let mut cursor: Option<String> = None;
        // Bounded: Twitch's budget allows at most 10,000 costed subscriptions,
        // so even 100 per page ends long before this.
        for _ in 0..1_000 {
            let query: Vec<(&str, &str)> = cursor.as_deref().map(|c| vec![("after", c)]).unwrap_or_default();
            let page: SubscriptionPage = self.helix(Method::GET, "/eventsub/subscriptions", &query, None).await?;
            list.subscriptions.extend(page.data);
            (list.total, list.total_cost, list.max_total_cost) = (page.total, page.total_cost, page.max_total_cost);
            match page.pagination.and_then(|p| p.cursor) {
                Some(next) if !next.is_empty() => cursor = Some(next),
                _ => return Ok(list),
            }
        }
        Err(TwitchError::Malformed("subscription list does not end".into()))
    }

    /// Creates an app-wide subscription delivered by plain webhook (Twitch
    /// then verifies the callback with a challenge). A 409 means it exists.
    pub async fn create_webhook_subscription(
        &self,
        kind: &str,
        condition: serde_json::Value,
        callback: &str,
        secret: &str,
    ) -> Result<Created, TwitchError> {
        let body = NewSubscription {
            kind,
            version: "1",
            condition,
            transport: json!({ "method": "webhook", "callback": callback, "secret": secret }),
        };
        let body = serde_json::to_value(body).map_err(|e| TwitchError::Malformed(e.to_string()))?;
        let page: SubscriptionPage = self.helix(Method::POST, "/eventsub/subscriptions", &[], Some(&body)).await?;
        page.into_created()
    }

    pub async fn delete_subscription(&self, id: &str) -> Result<(), TwitchError> {
        match self.helix::<serde_json::Value>(Method::DELETE, "/eventsub/subscriptions", &[("id", id)], None).await {
            // 404: already gone, which is what we wanted.
            Err(TwitchError::Status { status: 404, .. }) => Ok(()),
            other => other.map(|_| ()),
        }
    }
}

/// Decodes a JSON answer, or turns an error status into [`TwitchError`]
/// (`now_ms`: the wall clock `Ratelimit-Reset` is compared with).
fn decode<T: DeserializeOwned>(reply: Reply, now_ms: i64) -> Result<T, TwitchError> {
    if !(200..300).contains(&reply.status) {
        let message = serde_json::from_slice::<ErrorBody>(&reply.body).map(|b| b.message).unwrap_or_default();
        let retry_after = reset_wait(&reply, now_ms);
        return Err(TwitchError::Status { status: reply.status, message, retry_after });
    }
    // 204 and other empty answers decode as JSON null.
    let body: &[u8] = if reply.body.is_empty() { b"null" } else { &reply.body };
    serde_json::from_slice(body).map_err(|e| TwitchError::Malformed(e.to_string()))
}

/// How long until the rate-limit bucket refills, if it is exhausted. Only
/// an exhausted bucket is worth waiting for (§2.3, §4.1): a 429 with points
/// left is a subscription limit, which waiting does not fix.
fn reset_wait(reply: &Reply, now_ms: i64) -> Option<Duration> {
    let exhausted = reply.ratelimit_remaining.as_deref().is_none_or(|r| r.trim() == "0");
    let reset_secs = reply.ratelimit_reset.as_deref()?.trim().parse::<i64>().ok().filter(|_| exhausted)?;
    let wait_ms = reset_secs.saturating_mul(1000).saturating_sub(now_ms).max(0);
    Some(Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_that_was_never_bound_has_no_transport_and_still_parses() {
        let shards: Data<Shard> =
            serde_json::from_str(r#"{"data":[{"id":"0","status":"enabled","transport":{"method":"webhook","callback":"https://x.example/w"}},{"id":"1","status":"websocket_disconnected"}],"pagination":{}}"#)
                .unwrap();
        assert_eq!(shards.data[0].transport.callback.as_deref(), Some("https://x.example/w"));
        assert_eq!(shards.data[1].transport.method, "");
    }

    #[test]
    fn a_created_subscription_carries_twitchs_totals() {
        let page: SubscriptionPage = serde_json::from_str(
            r#"{"data":[{"id":"26b1c993-bfcf-44d9-b876-379dacafe75a","status":"enabled","type":"stream.online","version":"1",
                "condition":{"broadcaster_user_id":"1234"},"created_at":"2026-03-14T18:59:42.117290301Z",
                "transport":{"method":"conduit","conduit_id":"bfcfc993-26b1-b876-44d9-afe75a379dac"},"cost":1}],
                "total":7,"total_cost":3,"max_total_cost":10000}"#,
        )
        .unwrap();
        let created = page.into_created().unwrap();
        assert_eq!(created.subscription.id, "26b1c993-bfcf-44d9-b876-379dacafe75a");
        assert_eq!(created.totals, Totals { total: 7, total_cost: 3, max_total_cost: 10_000 });
        let empty: SubscriptionPage = serde_json::from_str(r#"{"data":[]}"#).unwrap();
        assert!(matches!(empty.into_created(), Err(TwitchError::Malformed(_))));
    }
}
