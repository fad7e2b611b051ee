//! Fidelity suite for the local Twitch simulator (the `twitch-sim` crate),
//! judged against `shared/twitch-protocol.md`. The simulator runs in-process on
//! an ephemeral port and is spoken to over real HTTP; EventSub deliveries land
//! in a small receiver app, and signatures are checked with an independent
//! HMAC implementation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;
use twitch_sim::{ChatBadge, ChatGenerator, ChatInput, ChatOptions, SimConfig, Simulator};

/// Polls `f` every 20 ms until it holds or `within` has passed.
async fn eventually<F, Fut>(within: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

const REDIRECT: &str = "http://127.0.0.1:9/auth/callback";
const SHARD_SECRET: &str = "shard-secret-0123456789";
const HOOK_SECRET: &str = "plain-webhook-secret-42";
const WAIT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------- harness

struct TestSim {
    sim: Simulator,
    base: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
}

impl Drop for TestSim {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).no_proxy().build().unwrap()
}

fn test_config() -> SimConfig {
    SimConfig {
        redirect_uris: vec![REDIRECT.into()],
        delivery_timeout: Duration::from_millis(800),
        retry_delays: vec![Duration::from_millis(40), Duration::from_millis(80)],
        failed_messages_before_disable: 3,
        ..SimConfig::default()
    }
}

async fn start() -> TestSim {
    start_with(test_config()).await
}

async fn start_with(config: SimConfig) -> TestSim {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sim = Simulator::new(SimConfig { public_url: format!("http://{addr}"), ..config });
    let shutdown = CancellationToken::new();
    tokio::spawn(sim.clone().serve(listener, shutdown.clone()));
    TestSim { sim, base: format!("http://{addr}"), http: http_client(), shutdown }
}

impl TestSim {
    fn client_id(&self) -> String {
        self.sim.config().client_id.clone()
    }

    fn client_secret(&self) -> String {
        self.sim.config().client_secret.clone()
    }

    async fn token_request(&self, form: &[(&str, &str)]) -> reqwest::Response {
        self.http.post(format!("{}/oauth2/token", self.base)).form(form).send().await.unwrap()
    }

    /// `grant_type=refresh_token` with this app's credentials.
    async fn refresh_request(&self, refresh: &str) -> reqwest::Response {
        let (id, secret) = (self.client_id(), self.client_secret());
        self.token_request(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("client_id", &id),
            ("client_secret", &secret),
        ])
        .await
    }

    async fn app_token(&self) -> String {
        let (id, secret) = (self.client_id(), self.client_secret());
        let r = self
            .token_request(&[("client_id", &id), ("client_secret", &secret), ("grant_type", "client_credentials")])
            .await;
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
    }

    fn authorize_url(&self, scope: &str, state: &str, extra: &str) -> String {
        let client = self.client_id();
        let query = [
            ("response_type", "code"),
            ("client_id", client.as_str()),
            ("redirect_uri", REDIRECT),
            ("scope", scope),
            ("state", state),
        ];
        let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={}", urlencode(v))).collect();
        format!("{}/oauth2/authorize?{}{extra}", self.base, query.join("&"))
    }

    /// Runs the code flow with `sim_auto_approve` and returns the redirect's query pairs.
    async fn authorize(&self, login: &str, scope: &str, state: &str) -> Vec<(String, String)> {
        let url = self.authorize_url(scope, state, &format!("&sim_auto_approve={login}"));
        let r = self.http.get(url).send().await.unwrap();
        assert_eq!(r.status(), 302, "authorize redirects");
        redirect_query(&r)
    }

    async fn exchange(&self, code: &str) -> reqwest::Response {
        let (id, secret) = (self.client_id(), self.client_secret());
        self.token_request(&[
            ("client_id", &id),
            ("client_secret", &secret),
            ("code", code),
            ("grant_type", "authorization_code"),
            ("redirect_uri", REDIRECT),
        ])
        .await
    }

    /// A user token (access, refresh) for `login` with `scope`.
    async fn user_token(&self, login: &str, scope: &str) -> (String, String) {
        let query = self.authorize(login, scope, "s").await;
        let body: Value = self.exchange(&param(&query, "code")).await.json().await.unwrap();
        (body["access_token"].as_str().unwrap().to_owned(), body["refresh_token"].as_str().unwrap().to_owned())
    }

    fn helix(&self, method: reqwest::Method, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}/helix{path}", self.base))
            .bearer_auth(token)
            .header("Client-Id", self.client_id())
    }

    async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        send(self.helix(reqwest::Method::GET, path, token)).await
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        send(self.helix(reqwest::Method::POST, path, token).json(&body)).await
    }

    async fn patch(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        send(self.helix(reqwest::Method::PATCH, path, token).json(&body)).await
    }

    async fn delete(&self, path: &str, token: &str) -> StatusCode {
        self.helix(reqwest::Method::DELETE, path, token).send().await.unwrap().status()
    }

    async fn sim_post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        send(self.http.post(format!("{}{path}", self.base)).json(&body)).await
    }

    /// A conduit whose shard 0 is an enabled webhook pointing at `receiver`.
    async fn conduit_for(&self, app: &str, receiver: &Receiver) -> String {
        let (status, body) = self.post("/eventsub/conduits", app, json!({"shard_count": 1})).await;
        assert_eq!(status, 200, "{body}");
        let conduit = body["data"][0]["id"].as_str().unwrap().to_owned();
        let (status, body) =
            self.patch("/eventsub/conduits/shards", app, shard_update(&conduit, "0", &receiver.url)).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["errors"], json!([]));
        self.wait_shard(app, &conduit, "0", "enabled").await;
        conduit
    }

    async fn wait_shard(&self, app: &str, conduit: &str, shard: &str, status: &str) {
        let ok = eventually(WAIT, || async {
            let (_, body) = self.get(&format!("/eventsub/conduits/shards?conduit_id={conduit}"), app).await;
            body["data"].as_array().unwrap().iter().any(|s| s["id"] == shard && s["status"] == status)
        })
        .await;
        assert!(ok, "shard {shard} never became {status}: {:?}", self.sim.conduits());
    }

    /// Streamer with `channel:bot`, bot with `user:read:chat user:bot`.
    fn streamer_and_bot(&self) -> (String, String) {
        let streamer = self.sim.create_user("pixelpaws", "PixelPaws");
        let bot = self.sim.create_user("chatpulsebot", "ChatPulseBot");
        self.sim.grant(&streamer.id, &["channel:bot"]);
        self.sim.grant(&bot.id, &["user:read:chat", "user:bot"]);
        (streamer.id, bot.id)
    }

    async fn subscribe(&self, app: &str, kind: &str, condition: Value, conduit: &str) -> Value {
        let body = json!({"type": kind, "version": "1", "condition": condition,
            "transport": {"method": "conduit", "conduit_id": conduit}});
        let (status, body) = self.post("/eventsub/subscriptions", app, body).await;
        assert_eq!(status, 202, "{body}");
        body["data"][0].clone()
    }
}

async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let r = request.send().await.unwrap();
    let status = StatusCode::from_u16(r.status().as_u16()).unwrap();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn shard_update(conduit: &str, shard: &str, callback: &str) -> Value {
    json!({"conduit_id": conduit, "shards": [{"id": shard,
        "transport": {"method": "webhook", "callback": callback, "secret": SHARD_SECRET}}]})
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn urldecode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

fn redirect_query(r: &reqwest::Response) -> Vec<(String, String)> {
    let location = r.headers()["location"].to_str().unwrap();
    let (base, query) = location.split_once('?').unwrap();
    assert_eq!(base, REDIRECT, "redirects to the registered URI");
    query
        .split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (urldecode(k), urldecode(v))
        })
        .collect()
}

fn param(query: &[(String, String)], key: &str) -> String {
    query.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap_or_else(|| panic!("no {key} in {query:?}"))
}

// --------------------------------------------------------------- receiver

#[derive(Debug, Clone, Copy, PartialEq)]
enum Challenge {
    Echo,
    WrongBody,
}

#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(|v| v.to_str().unwrap().to_owned())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn message_type(&self) -> String {
        self.header("twitch-eventsub-message-type").unwrap_or_default()
    }

    fn id(&self) -> String {
        self.header("twitch-eventsub-message-id").unwrap()
    }
}

#[derive(Default)]
struct ReceiverState {
    received: Mutex<Vec<Received>>,
    wrong_challenge: AtomicBool,
    fail_next: AtomicU32,
    fail_always: AtomicBool,
    /// Refuse (403) notifications not signed with `SHARD_SECRET` or older than 10 minutes (§5.4, §5.5).
    verify: AtomicBool,
    /// The next notifications are answered only after `SLOW`.
    slow_next: AtomicU32,
}

/// Longer than the delivery timeout of `slow_config`.
const SLOW: Duration = Duration::from_millis(900);

/// §5.5: a timestamp more than 10 minutes old is refused.
fn fresh(r: &Received) -> bool {
    let Some(ts) = r.header("twitch-eventsub-message-timestamp") else { return false };
    let Ok(at) = time::OffsetDateTime::parse(&ts, &time::format_description::well_known::Rfc3339) else {
        return false;
    };
    (time::OffsetDateTime::now_utc() - at).abs() < time::Duration::minutes(10)
}

/// A stand-in for ChatPulse's webhook endpoint that records everything.
struct Receiver {
    url: String,
    state: Arc<ReceiverState>,
    shutdown: CancellationToken,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn receive(State(state): State<Arc<ReceiverState>>, headers: HeaderMap, body: Bytes) -> Response {
    let received = Received { headers, body };
    state.received.lock().unwrap().push(received.clone());
    if received.message_type() == "webhook_callback_verification" {
        let challenge = received.json()["challenge"].as_str().unwrap().to_owned();
        if state.wrong_challenge.load(Ordering::SeqCst) {
            return (StatusCode::OK, format!("\"{challenge}\"")).into_response();
        }
        return (StatusCode::OK, [("content-type", "text/plain")], challenge).into_response();
    }
    if state.verify.load(Ordering::SeqCst) && !(signature_valid(SHARD_SECRET, &received) && fresh(&received)) {
        return StatusCode::FORBIDDEN.into_response();
    }
    if state.fail_always.load(Ordering::SeqCst)
        || state.fail_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
    {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    if state.slow_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
        tokio::time::sleep(SLOW).await;
    }
    StatusCode::NO_CONTENT.into_response()
}

impl Receiver {
    async fn start(challenge: Challenge) -> Self {
        let state = Arc::new(ReceiverState::default());
        state.wrong_challenge.store(challenge == Challenge::WrongBody, Ordering::SeqCst);
        let app =
            axum::Router::new().route("/webhooks/eventsub", axum::routing::post(receive)).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            axum::serve(listener, app).with_graceful_shutdown(async move { stop.cancelled().await }).await
        });
        Self { url: format!("http://{addr}/webhooks/eventsub"), state, shutdown }
    }

    fn all(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    fn of_type(&self, message_type: &str, subscription_type: Option<&str>) -> Vec<Received> {
        self.all()
            .into_iter()
            .filter(|r| r.message_type() == message_type)
            .filter(|r| {
                subscription_type.is_none_or(|t| r.header("twitch-eventsub-subscription-type").as_deref() == Some(t))
            })
            .collect()
    }

    async fn wait_count(&self, message_type: &str, subscription_type: Option<&str>, n: usize) -> Vec<Received> {
        let ok = eventually(WAIT, || async { self.of_type(message_type, subscription_type).len() >= n }).await;
        let got = self.of_type(message_type, subscription_type);
        assert!(ok, "expected {n} {message_type} {subscription_type:?}, got {}", got.len());
        got
    }
}

/// Independent check of §5.4: HMAC-SHA256(secret, id ‖ timestamp ‖ body).
fn signature_valid(secret: &str, r: &Received) -> bool {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(r.header("twitch-eventsub-message-id").unwrap().as_bytes());
    mac.update(r.header("twitch-eventsub-message-timestamp").unwrap().as_bytes());
    mac.update(&r.body);
    let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    r.header("twitch-eventsub-message-signature") == Some(format!("sha256={expected}"))
}

fn is_nanosecond_rfc3339(ts: &str) -> bool {
    let b = ts.as_bytes();
    ts.len() == 30
        && b[4] == b'-'
        && b[10] == b'T'
        && b[19] == b'.'
        && b[29] == b'Z'
        && b[20..29].iter().all(u8::is_ascii_digit)
        && time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).is_ok()
}

// ------------------------------------------------------------------ OAuth

#[tokio::test]
async fn oauth_code_flow_issues_single_use_codes_and_documented_tokens() {
    let t = start().await;
    let state = "9b1c0e7d 4f2a/48a6+b3e5";
    let query = t.authorize("PixelPaws", "channel:bot clips:edit", state).await;
    assert_eq!(param(&query, "state"), state, "state comes back unchanged");
    assert_eq!(param(&query, "scope"), "channel:bot clips:edit");
    let code = param(&query, "code");

    let r = t.exchange(&code).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 5, "{body}");
    assert_eq!(body["scope"], json!(["channel:bot", "clips:edit"]), "scope is an array");
    assert_eq!(body["token_type"], "bearer");
    assert!(body["expires_in"].as_u64().unwrap() > 3600);
    let access = body["access_token"].as_str().unwrap();
    assert!(body["refresh_token"].is_string());

    let r = t.exchange(&code).await;
    assert_eq!(r.status(), 400, "codes are single-use");
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": 400, "message": "Invalid authorization code"}));

    for scheme in ["OAuth", "Bearer"] {
        let r = t
            .http
            .get(format!("{}/oauth2/validate", t.base))
            .header("Authorization", format!("{scheme} {access}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        let user = t.sim.user_by_login("pixelpaws").unwrap();
        assert_eq!(v["login"], "pixelpaws");
        assert_eq!(v["user_id"], user.id.as_str());
        assert_eq!(v["client_id"], t.client_id().as_str());
        assert_eq!(v["scopes"], json!(["channel:bot", "clips:edit"]));
        assert!(v["expires_in"].as_u64().unwrap() > 0);
    }
    let r = t.http.get(format!("{}/oauth2/validate", t.base)).header("Authorization", "OAuth nope").send().await;
    let r = r.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": 401, "message": "invalid access token"}));

    let user = t.sim.user_by_login("pixelpaws").unwrap();
    let (_, me) = t.get("/users", access).await;
    assert_eq!(me["data"][0]["id"], user.id.as_str(), "a user token's /users is 'me'");
}

#[tokio::test]
async fn oauth_rejects_bad_secrets_redirects_and_denials() {
    let t = start().await;
    let query = t.authorize("pixelpaws", "channel:bot", "st").await;
    let code = param(&query, "code");
    let id = t.client_id();
    let r = t
        .token_request(&[
            ("client_id", &id),
            ("client_secret", "wrong-secret-value"),
            ("code", &code),
            ("grant_type", "authorization_code"),
            ("redirect_uri", REDIRECT),
        ])
        .await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": 403, "message": "invalid client secret"}));

    // A code must be redeemed with the redirect URI it was issued for.
    let query = t.authorize("pixelpaws", "channel:bot", "st").await;
    let secret = t.client_secret();
    let r = t
        .token_request(&[
            ("client_id", &id),
            ("client_secret", &secret),
            ("code", &param(&query, "code")),
            ("grant_type", "authorization_code"),
            ("redirect_uri", "http://127.0.0.1:9/other"),
        ])
        .await;
    assert_eq!(r.status(), 400);

    // An unregistered redirect URI is never redirected to.
    let url =
        t.authorize_url("channel:bot", "st", "").replace(&urlencode(REDIRECT), &urlencode("http://evil.example/cb"));
    let r = t.http.get(url).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());

    // The consent page lists the scopes; Deny redirects with access_denied and the state.
    let r = t.http.get(t.authorize_url("channel:bot clips:edit", "xyz", "")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("channel:bot") && html.contains("clips:edit") && html.contains("Authorize"));
    let form = [
        ("client_id", id.as_str()),
        ("redirect_uri", REDIRECT),
        ("response_type", "code"),
        ("scope", "channel:bot"),
        ("state", "xyz"),
        ("decision", "deny"),
    ];
    let r = t.http.post(format!("{}/oauth2/authorize", t.base)).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let query = redirect_query(&r);
    assert_eq!(param(&query, "error"), "access_denied");
    assert_eq!(param(&query, "error_description"), "The user denied you access");
    assert_eq!(param(&query, "state"), "xyz");

    // Approving through the form as a new account works like auto-approve, and
    // afterwards (same browser, same scopes) consent is skipped unless force_verify.
    let mut form = form.to_vec();
    form.pop();
    form.extend([("decision", "approve"), ("new_login", "mossy_owl")]);
    let r = t.http.post(format!("{}/oauth2/authorize", t.base)).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 302);
    assert!(!param(&redirect_query(&r), "code").is_empty());
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let again = t.http.get(t.authorize_url("channel:bot", "s2", "")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(again.status(), 302, "already authorized: no consent screen");
    let forced = t.authorize_url("channel:bot", "s2", "&force_verify=true");
    let forced = t.http.get(forced).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(forced.status(), 200, "force_verify shows the consent screen");
}

#[tokio::test]
async fn refresh_rotates_and_client_credentials_has_no_refresh_token() {
    let t = start().await;
    let (access, refresh) = t.user_token("pixelpaws", "channel:bot").await;
    assert!(refresh.contains('%') && refresh.contains('='), "refresh tokens need URL-encoding");
    let (id, secret) = (t.client_id(), t.client_secret());
    let r = t.refresh_request(&refresh).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let new_refresh = body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(new_refresh, refresh, "the refresh token rotates");
    assert_ne!(body["access_token"].as_str().unwrap(), access);
    assert_eq!(body["scope"], json!(["channel:bot"]));
    assert_eq!(body["token_type"], "bearer");

    let r = t.refresh_request(&refresh).await;
    assert_eq!(r.status(), 400);
    let expected = json!({"error": "Bad Request", "status": 400, "message": "Invalid refresh token"});
    assert_eq!(r.json::<Value>().await.unwrap(), expected);

    // Parameters in the query string are accepted too.
    let url = format!(
        "{}/oauth2/token?grant_type=refresh_token&refresh_token={}&client_id={id}&client_secret={secret}",
        t.base,
        urlencode(&new_refresh)
    );
    assert_eq!(t.http.post(url).send().await.unwrap().status(), 200);

    let r =
        t.token_request(&[("client_id", &id), ("client_secret", &secret), ("grant_type", "client_credentials")]).await;
    let body: Value = r.json().await.unwrap();
    assert!(body.get("refresh_token").is_none());
    assert_eq!(body["token_type"], "bearer");
    assert!(body["expires_in"].as_u64().unwrap() > 86_400);
    let app = body["access_token"].as_str().unwrap();
    let v: Value = t
        .http
        .get(format!("{}/oauth2/validate", t.base))
        .header("Authorization", format!("OAuth {app}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["scopes"], json!([]));
    assert!(v.get("login").is_none() && v.get("user_id").is_none(), "{v}");
}

#[tokio::test]
async fn revoked_tokens_fail_validate_and_helix() {
    let t = start().await;
    let (access, _) = t.user_token("pixelpaws", "").await;
    let id = t.client_id();
    let revoke = |client: String, token: String| {
        let url = format!("{}/oauth2/revoke", t.base);
        let http = t.http.clone();
        async move { http.post(url).form(&[("client_id", client), ("token", token)]).send().await.unwrap() }
    };
    let r = revoke(id.clone(), access.clone()).await;
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap().is_empty());
    let r = t.http.get(format!("{}/oauth2/validate", t.base)).header("Authorization", format!("OAuth {access}"));
    assert_eq!(r.send().await.unwrap().status(), 401);
    assert_eq!(t.get("/users", &access).await.0, 401);
    let r = revoke(id, access.clone()).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": 400, "message": "Invalid token"}));
    let r = revoke("someoneelse".into(), access).await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": 404, "message": "client does not exist"}));
}

// ------------------------------------------------------------------ Helix

#[tokio::test]
async fn helix_requires_token_and_client_id_and_sends_rate_limit_headers() {
    let t = start().await;
    let app = t.app_token().await;
    let (user, _) = t.user_token("pixelpaws", "").await;
    let url = format!("{}/helix/users?login=pixelpaws", t.base);

    let r = t.http.get(&url).bearer_auth(&app).send().await.unwrap();
    assert_eq!(r.status(), 401, "Client-Id is required");
    assert!(r.headers().contains_key("ratelimit-limit"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "Unauthorized");
    assert_eq!(body["status"], 401);
    assert!(body["message"].is_string());
    let r = t.http.get(&url).header("Client-Id", t.client_id()).send().await.unwrap();
    assert_eq!(r.status(), 401, "a token is required");
    let r = t.http.get(&url).bearer_auth(&app).header("Client-Id", "someotherclientid").send().await.unwrap();
    assert_eq!(r.status(), 401, "Client-Id must match the token");

    let r = t.helix(reqwest::Method::GET, "/users?login=pixelpaws", &app).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let limit = r.headers()["ratelimit-limit"].to_str().unwrap().to_owned();
    let first: u64 = r.headers()["ratelimit-remaining"].to_str().unwrap().parse().unwrap();
    let reset: u64 = r.headers()["ratelimit-reset"].to_str().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert_eq!(limit, "800");
    assert!(reset >= now && reset <= now + 61, "reset is epoch seconds: {reset} vs {now}");
    let r = t.helix(reqwest::Method::GET, "/users?login=pixelpaws", &app).send().await.unwrap();
    let second: u64 = r.headers()["ratelimit-remaining"].to_str().unwrap().parse().unwrap();
    assert!(second < first, "points are taken per request");

    // Users: repeated parameters, unknown ones omitted, "me" only with a user token.
    let other = t.sim.create_user("mossy_owl", "Mossy_Owl");
    let (status, body) = t.get(&format!("/users?login=pixelpaws&id={}&login=nobody&id=999", other.id), &app).await;
    assert_eq!(status, 200);
    let logins: Vec<&str> = body["data"].as_array().unwrap().iter().map(|u| u["login"].as_str().unwrap()).collect();
    assert_eq!(logins, ["mossy_owl", "pixelpaws"]);
    assert!(body["data"][0]["id"].is_string());
    assert_eq!(t.get("/users", &app).await.0, 400, "app token needs id or login");
    let (status, body) = t.get("/users", &user).await;
    assert_eq!((status, body["data"][0]["login"].as_str()), (StatusCode::OK, Some("pixelpaws")));
    let many: String = (0..101).map(|i| format!("id={i}&")).collect();
    assert_eq!(t.get(&format!("/users?{many}"), &app).await.0, 400);

    // App-only endpoints refuse user tokens.
    assert_eq!(t.get("/eventsub/conduits", &user).await.0, 401);
    let body = json!({"type": "stream.online", "version": "1", "condition": {"broadcaster_user_id": other.id},
        "transport": {"method": "webhook", "callback": "https://chatpulse.example/webhooks/eventsub", "secret": HOOK_SECRET}});
    assert_eq!(t.post("/eventsub/subscriptions", &user, body).await.0, 401);
}

#[tokio::test]
async fn fault_switch_answers_429_with_reset_and_5xx() {
    let t = start().await;
    let app = t.app_token().await;
    t.sim.fail_next(429, 2);
    for _ in 0..2 {
        let r = t.helix(reqwest::Method::GET, "/eventsub/conduits", &app).send().await.unwrap();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["ratelimit-remaining"], "0");
        let reset: u64 = r.headers()["ratelimit-reset"].to_str().unwrap().parse().unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        assert!(reset > now.saturating_sub(1) && reset <= now + 60);
        let body: Value = r.json().await.unwrap();
        assert_eq!((body["error"].as_str(), body["status"].as_u64()), (Some("Too Many Requests"), Some(429)));
    }
    assert_eq!(t.get("/eventsub/conduits", &app).await.0, 200);

    let (status, _) = t.sim_post("/sim/faults", json!({"status": 503, "count": 1})).await;
    assert_eq!(status, 200);
    let (status, body) = t.get("/eventsub/conduits", &app).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"], "Service Unavailable");
    assert_eq!(t.get("/eventsub/conduits", &app).await.0, 200);
}

// -------------------------------------------------------- conduits, shards

#[tokio::test]
async fn conduits_are_created_resized_listed_and_deleted() {
    let t = start().await;
    let app = t.app_token().await;
    let (status, body) = t.post("/eventsub/conduits", &app, json!({"shard_count": 2})).await;
    assert_eq!(status, 200, "Create Conduit answers 200");
    let id = body["data"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(body["data"][0]["shard_count"], 2);
    let (_, body) = t.get("/eventsub/conduits", &app).await;
    assert_eq!(body, json!({"data": [{"id": id, "shard_count": 2}]}));

    let (status, body) = t.patch("/eventsub/conduits", &app, json!({"id": id, "shard_count": 3})).await;
    assert_eq!((status, body["data"][0]["shard_count"].as_u64()), (StatusCode::OK, Some(3)));
    let (_, shards) = t.get(&format!("/eventsub/conduits/shards?conduit_id={id}"), &app).await;
    let ids: Vec<&str> = shards["data"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["0", "1", "2"]);
    assert_eq!(shards["pagination"], json!({}));
    let (_, page) = t.get(&format!("/eventsub/conduits/shards?conduit_id={id}&first=2"), &app).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    let cursor = page["pagination"]["cursor"].as_str().unwrap();
    let (_, rest) = t.get(&format!("/eventsub/conduits/shards?conduit_id={id}&first=2&after={cursor}"), &app).await;
    assert_eq!(rest["data"][0]["id"], "2");
    assert_eq!(rest["pagination"], json!({}));

    assert_eq!(t.patch("/eventsub/conduits", &app, json!({"id": "nope", "shard_count": 1})).await.0, 404);
    assert_eq!(t.patch("/eventsub/conduits", &app, json!({"shard_count": 1})).await.0, 400);
    assert_eq!(t.post("/eventsub/conduits", &app, json!({"shard_count": 0})).await.0, 400);
    assert_eq!(t.post("/eventsub/conduits", &app, json!({"shard_count": "1"})).await.0, 400);
    assert_eq!(t.get("/eventsub/conduits/shards", &app).await.0, 400);
    assert_eq!(t.get("/eventsub/conduits/shards?conduit_id=nope", &app).await.0, 404);

    for _ in 0..4 {
        assert_eq!(t.post("/eventsub/conduits", &app, json!({"shard_count": 1})).await.0, 200);
    }
    assert_eq!(t.post("/eventsub/conduits", &app, json!({"shard_count": 1})).await.0, 429, "at most 5 conduits");

    assert_eq!(t.delete(&format!("/eventsub/conduits?id={id}"), &app).await, 204);
    assert_eq!(t.delete(&format!("/eventsub/conduits?id={id}"), &app).await, 404);
    assert_eq!(t.delete("/eventsub/conduits", &app).await, 400);
}

#[tokio::test]
async fn webhook_shards_are_verified_with_a_signed_challenge() {
    let t = start().await;
    let app = t.app_token().await;
    let good = Receiver::start(Challenge::Echo).await;
    let (_, body) = t.post("/eventsub/conduits", &app, json!({"shard_count": 3})).await;
    let conduit = body["data"][0]["id"].as_str().unwrap().to_owned();

    let (status, body) = t.patch("/eventsub/conduits/shards", &app, shard_update(&conduit, "0", &good.url)).await;
    assert_eq!(status, 202);
    assert_eq!(body["data"][0]["status"], "webhook_callback_verification_pending");
    assert_eq!(body["data"][0]["transport"], json!({"method": "webhook", "callback": good.url}));
    let challenge = good.wait_count("webhook_callback_verification", None, 1).await.remove(0);
    assert!(signature_valid(SHARD_SECRET, &challenge), "signed with the shard's secret");
    assert_eq!(challenge.header("twitch-eventsub-message-retry").as_deref(), Some("0"));
    assert!(challenge.header("twitch-eventsub-subscription-type").is_none());
    assert!(is_nanosecond_rfc3339(&challenge.header("twitch-eventsub-message-timestamp").unwrap()));
    let b = challenge.json();
    assert!(b["challenge"].is_string());
    assert_eq!(b["conduit_shard"], json!({"conduit_id": conduit, "shard": "0"}));
    t.wait_shard(&app, &conduit, "0", "enabled").await;
    let (_, shards) = t.get(&format!("/eventsub/conduits/shards?conduit_id={conduit}&status=enabled"), &app).await;
    assert_eq!(shards["data"].as_array().unwrap().len(), 1);
    assert!(shards["data"][0]["transport"].get("secret").is_none(), "the secret is never returned");

    let bad = Receiver::start(Challenge::WrongBody).await;
    let (status, _) = t.patch("/eventsub/conduits/shards", &app, shard_update(&conduit, "1", &bad.url)).await;
    assert_eq!(status, 202);
    t.wait_shard(&app, &conduit, "1", "webhook_callback_verification_failed").await;

    // Per-shard validation: partial success is still 202, with errors.
    let body = json!({"conduit_id": conduit, "shards": [
        {"id": "2", "transport": {"method": "webhook", "callback": good.url, "secret": SHARD_SECRET}},
        {"id": "3", "transport": {"method": "webhook", "callback": good.url, "secret": SHARD_SECRET}},
        {"id": "0", "transport": {"method": "webhook", "callback": "https://chatpulse.example:8443/hook", "secret": SHARD_SECRET}},
        {"id": "0", "transport": {"method": "webhook", "callback": "http://chatpulse.example/hook", "secret": SHARD_SECRET}},
        {"id": "0", "transport": {"method": "webhook", "callback": good.url, "secret": "short"}},
        {"id": "1", "transport": {"method": "websocket", "session_id": "AgoQk3v7uYxQ"}},
    ]});
    let (status, body) = t.patch("/eventsub/conduits/shards", &app, body).await;
    assert_eq!(status, 202);
    assert_eq!(body["data"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["data"][0]["id"], "2");
    let errors = body["errors"].as_array().unwrap();
    let ids: Vec<&str> = errors.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["3", "0", "0", "0", "1"]);
    assert!(errors.iter().all(|e| e["code"] == "invalid_parameter" && e["message"].is_string()));
    assert_eq!(errors[4]["message"], "websocket session is not connected");
    assert!(
        t.patch("/eventsub/conduits/shards", &app, json!({"conduit_id": "nope", "shards": []}))
            .await
            .0
            .is_client_error()
    );
    let unknown = json!({"conduit_id": "nope", "shards": [{"id": "0", "transport": {"method": "webhook"}}]});
    assert_eq!(t.patch("/eventsub/conduits/shards", &app, unknown).await.0, 404);
}

// ----------------------------------------------------------- subscriptions

#[tokio::test]
async fn subscriptions_are_validated_authorized_costed_and_deduplicated() {
    let t = start().await;
    let app = t.app_token().await;
    let receiver = Receiver::start(Challenge::Echo).await;
    let conduit = t.conduit_for(&app, &receiver).await;
    let streamer = t.sim.create_user("pixelpaws", "PixelPaws");
    let bot = t.sim.create_user("chatpulsebot", "ChatPulseBot");
    let chat = |condition: Value| {
        json!({"type": "channel.chat.message", "version": "1", "condition": condition,
            "transport": {"method": "conduit", "conduit_id": conduit}})
    };
    let condition = json!({"broadcaster_user_id": streamer.id, "user_id": bot.id});

    let (status, body) = t.post("/eventsub/subscriptions", &app, chat(condition.clone())).await;
    assert_eq!(status, 403, "no grants yet: {body}");
    t.sim.grant(&bot.id, &["user:read:chat", "user:bot"]);
    assert_eq!(
        t.post("/eventsub/subscriptions", &app, chat(condition.clone())).await.0,
        403,
        "streamer lacks channel:bot"
    );
    t.sim.grant(&streamer.id, &["channel:bot"]);

    let (status, body) = t.post("/eventsub/subscriptions", &app, chat(condition.clone())).await;
    assert_eq!(status, 202, "{body}");
    let sub = &body["data"][0];
    assert_eq!(sub["status"], "enabled");
    assert_eq!(sub["type"], "channel.chat.message");
    assert_eq!(sub["version"], "1");
    assert_eq!(sub["condition"], condition);
    assert_eq!(sub["transport"], json!({"method": "conduit", "conduit_id": conduit}));
    assert_eq!(sub["cost"], 0);
    assert!(is_nanosecond_rfc3339(sub["created_at"].as_str().unwrap()));
    assert_eq!((body["total"].as_u64(), body["total_cost"].as_u64()), (Some(1), Some(0)));
    assert_eq!(body["max_total_cost"], 10000);

    let (status, body) = t.post("/eventsub/subscriptions", &app, chat(condition.clone())).await;
    assert_eq!((status, body["message"].as_str()), (StatusCode::CONFLICT, Some("subscription already exists")));

    let mut numeric = chat(condition.clone());
    numeric["version"] = json!(1);
    assert_eq!(t.post("/eventsub/subscriptions", &app, numeric).await.0, 400, "version must be a string");
    let (status, body) =
        t.post("/eventsub/subscriptions", &app, chat(json!({"broadcaster_user_id": streamer.id}))).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("Bad Request")));
    let bad_user = json!({"broadcaster_user_id": "1", "user_id": bot.id});
    assert_eq!(t.post("/eventsub/subscriptions", &app, chat(bad_user)).await.0, 400);
    let mut unknown_conduit = chat(condition.clone());
    unknown_conduit["transport"]["conduit_id"] = json!("0000");
    assert_eq!(t.post("/eventsub/subscriptions", &app, unknown_conduit).await.0, 400);
    let mut unknown_type = chat(condition.clone());
    unknown_type["type"] = json!("channel.pizza");
    assert_eq!(t.post("/eventsub/subscriptions", &app, unknown_type).await.0, 400);

    // Cost: 1 for a stream type of a user who never authorized the app, else 0.
    let stranger = t.sim.create_user("stranger", "Stranger");
    let online = |id: &str| {
        json!({"type": "stream.online", "version": "1", "condition": {"broadcaster_user_id": id},
            "transport": {"method": "conduit", "conduit_id": conduit}})
    };
    let (_, body) = t.post("/eventsub/subscriptions", &app, online(&streamer.id)).await;
    assert_eq!(body["data"][0]["cost"], 0);
    let (_, body) = t.post("/eventsub/subscriptions", &app, online(&stranger.id)).await;
    assert_eq!(body["data"][0]["cost"], 1);
    assert_eq!((body["total"].as_u64(), body["total_cost"].as_u64()), (Some(3), Some(1)));

    // Client-scoped types: the client ID must be the token's.
    let revoke = |client: &str| {
        json!({"type": "user.authorization.revoke", "version": "1", "condition": {"client_id": client},
            "transport": {"method": "webhook", "callback": receiver.url, "secret": HOOK_SECRET}})
    };
    assert_eq!(t.post("/eventsub/subscriptions", &app, revoke("otherclient")).await.0, 403);
    let (status, body) = t.post("/eventsub/subscriptions", &app, revoke(&t.client_id())).await;
    assert_eq!(status, 202);
    assert_eq!(body["data"][0]["status"], "webhook_callback_verification_pending");
    assert_eq!(body["data"][0]["transport"], json!({"method": "webhook", "callback": receiver.url}));
    let verification = receiver.wait_count("webhook_callback_verification", Some("user.authorization.revoke"), 1).await;
    assert!(signature_valid(HOOK_SECRET, &verification[0]), "plain webhooks use their own secret");
    assert_eq!(verification[0].json()["subscription"]["id"], body["data"][0]["id"]);
    let insecure = json!({"type": "user.authorization.revoke", "version": "1", "condition": {"client_id": t.client_id()},
        "transport": {"method": "webhook", "callback": "http://chatpulse.example/hook", "secret": HOOK_SECRET}});
    assert_eq!(t.post("/eventsub/subscriptions", &app, insecure).await.0, 400);
}

#[tokio::test]
async fn subscriptions_list_with_one_filter_and_opaque_cursors_then_delete() {
    let t = start().await;
    let app = t.app_token().await;
    let receiver = Receiver::start(Challenge::Echo).await;
    let conduit = t.conduit_for(&app, &receiver).await;
    let (streamer, bot) = t.streamer_and_bot();
    let mut ids = Vec::new();
    for kind in ["stream.online", "stream.offline"] {
        ids.push(t.subscribe(&app, kind, json!({"broadcaster_user_id": streamer}), &conduit).await["id"].clone());
    }
    let chat = json!({"broadcaster_user_id": streamer, "user_id": bot});
    ids.push(t.subscribe(&app, "channel.chat.message", chat, &conduit).await["id"].clone());
    let other = t.sim.create_user("other", "Other");
    t.sim.grant(&other.id, &["channel:bot"]);
    for kind in ["stream.online", "stream.offline"] {
        ids.push(t.subscribe(&app, kind, json!({"broadcaster_user_id": other.id}), &conduit).await["id"].clone());
    }

    let mut seen = Vec::new();
    let mut path = "/eventsub/subscriptions?first=2".to_owned();
    loop {
        let (status, body) = t.get(&path, &app).await;
        assert_eq!(status, 200);
        assert_eq!(body["total"], 5);
        assert_eq!(body["max_total_cost"], 10000);
        seen.extend(body["data"].as_array().unwrap().iter().map(|s| s["id"].clone()));
        match body["pagination"].get("cursor") {
            Some(cursor) => {
                let cursor = cursor.as_str().unwrap();
                assert!(!cursor.contains(char::is_whitespace));
                path = format!("/eventsub/subscriptions?first=2&after={cursor}");
            }
            None => {
                assert_eq!(body["pagination"], json!({}));
                break;
            }
        }
    }
    assert_eq!(seen, ids, "oldest first, every subscription once");

    let (_, body) = t.get("/eventsub/subscriptions?type=stream.online", &app).await;
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    let (_, body) = t.get(&format!("/eventsub/subscriptions?user_id={bot}"), &app).await;
    assert_eq!(body["data"].as_array().unwrap().len(), 1, "user_id matches any user field of the condition");
    let (_, body) = t.get(&format!("/eventsub/subscriptions?subscription_id={}", ids[1].as_str().unwrap()), &app).await;
    assert_eq!(body["data"][0]["id"], ids[1]);
    let (_, body) = t.get("/eventsub/subscriptions?status=enabled", &app).await;
    assert_eq!(body["data"].as_array().unwrap().len(), 5);
    assert_eq!(t.get("/eventsub/subscriptions?status=enabled&type=stream.online", &app).await.0, 400);
    assert_eq!(t.get("/eventsub/subscriptions?after=garbage!", &app).await.0, 400);

    let id = ids[0].as_str().unwrap();
    assert_eq!(t.delete(&format!("/eventsub/subscriptions?id={id}"), &app).await, 204);
    assert_eq!(t.delete(&format!("/eventsub/subscriptions?id={id}"), &app).await, 404);
    assert_eq!(t.delete("/eventsub/subscriptions", &app).await, 400);
    let (_, body) = t.get("/eventsub/subscriptions", &app).await;
    assert_eq!(body["total"], 4);
}

// ---------------------------------------------------------------- delivery

const CHAT_EVENT_FIELDS: [&str; 19] = [
    "broadcaster_user_id",
    "broadcaster_user_login",
    "broadcaster_user_name",
    "chatter_user_id",
    "chatter_user_login",
    "chatter_user_name",
    "message_id",
    "message",
    "message_type",
    "badges",
    "cheer",
    "color",
    "reply",
    "channel_points_custom_reward_id",
    "source_broadcaster_user_id",
    "source_broadcaster_user_login",
    "source_broadcaster_user_name",
    "source_message_id",
    "source_badges",
];

#[tokio::test]
async fn chat_messages_arrive_signed_with_all_headers_and_the_documented_shape() {
    let t = start().await;
    let app = t.app_token().await;
    let receiver = Receiver::start(Challenge::Echo).await;
    let conduit = t.conduit_for(&app, &receiver).await;
    let (streamer, bot) = t.streamer_and_bot();
    let sub = t
        .subscribe(&app, "channel.chat.message", json!({"broadcaster_user_id": streamer, "user_id": bot}), &conduit)
        .await;

    let (status, body) = t
        .sim_post(
            "/sim/chat",
            json!({"broadcaster_user_id": streamer, "chatter_user_id": "", "chatter_login": "mossy_owl", "text": "YES pizza"}),
        )
        .await;
    assert_eq!(status, 202);
    let chat_id = body["message_id"].as_str().unwrap().to_owned();
    let got = receiver.wait_count("notification", Some("channel.chat.message"), 1).await.remove(0);

    assert_eq!(got.header("content-type").as_deref(), Some("application/json"));
    assert_eq!(got.header("twitch-eventsub-message-retry").as_deref(), Some("0"));
    assert_eq!(got.header("twitch-eventsub-subscription-version").as_deref(), Some("1"));
    assert!(!got.id().is_empty());
    assert!(is_nanosecond_rfc3339(&got.header("twitch-eventsub-message-timestamp").unwrap()));
    let signature = got.header("twitch-eventsub-message-signature").unwrap();
    assert!(signature.starts_with("sha256=") && signature.len() == 71);
    assert!(signature_valid(SHARD_SECRET, &got), "signed with the shard's secret");
    assert!(!signature_valid("some-other-secret-value", &got));

    let body = got.json();
    assert_eq!(body["subscription"], sub, "the subscription object as stored");
    let event = body["event"].as_object().unwrap();
    for field in CHAT_EVENT_FIELDS {
        assert!(event.contains_key(field), "event.{field} is present");
    }
    let mossy = t.sim.user_by_login("mossy_owl").unwrap();
    assert_eq!(event["message_id"], chat_id.as_str());
    assert_eq!(event["broadcaster_user_id"], streamer.as_str());
    assert_eq!(event["broadcaster_user_login"], "pixelpaws");
    assert_eq!(event["broadcaster_user_name"], "PixelPaws");
    assert_eq!(event["chatter_user_id"], mossy.id.as_str());
    assert_eq!(event["chatter_user_login"], "mossy_owl");
    assert_eq!(event["message"]["text"], "YES pizza");
    assert_eq!(
        event["message"]["fragments"],
        json!([{"type": "text", "text": "YES pizza", "cheermote": null, "emote": null, "mention": null}])
    );
    assert_eq!(event["message_type"], "text");
    assert_eq!(event["badges"], json!([]));
    assert_eq!(event["color"], "");
    for null_field in
        ["cheer", "reply", "channel_points_custom_reward_id", "source_broadcaster_user_id", "source_badges"]
    {
        assert!(event[null_field].is_null(), "{null_field} is null");
    }

    // Missing fields are refused.
    let (status, _) = t.sim_post("/sim/chat", json!({"broadcaster_user_id": streamer, "chatter_user_id": bot})).await;
    assert_eq!(status, 400);
    let (status, _) =
        t.sim_post("/sim/chat", json!({"broadcaster_user_id": "404404", "chatter_user_id": bot, "text": "x"})).await;
    assert_eq!(status, 404);

    // Every 7th message carries an unknown field (clients must ignore it).
    for i in 0..13 {
        let input = ChatInput {
            broadcaster_user_id: streamer.clone(),
            chatter_user_id: mossy.id.clone(),
            chatter_login: None,
            text: format!("msg {i}"),
        };
        t.sim.post_chat(input).await.unwrap();
    }
    let all = receiver.wait_count("notification", Some("channel.chat.message"), 14).await;
    let extra = all.iter().filter(|r| r.json()["event"].get("sim_unknown_field").is_some()).count();
    assert_eq!(extra, 2);
}

#[tokio::test]
async fn failed_deliveries_are_retried_with_the_same_message_id() {
    let t = start().await;
    let app = t.app_token().await;
    let receiver = Receiver::start(Challenge::Echo).await;
    let conduit = t.conduit_for(&app, &receiver).await;
    let (streamer, bot) = t.streamer_and_bot();
    t.subscribe(&app, "channel.chat.message", json!({"broadcaster_user_id": streamer, "user_id": bot}), &conduit).await;
    receiver.state.fail_next.store(2, Ordering::SeqCst);
    let input =
        ChatInput { broadcaster_user_id: streamer, chatter_user_id: bot, chatter_login: None, text: "yes".into() };
    t.sim.post_chat(input).await.unwrap();
    let got = receiver.wait_count("notification", None, 3).await;
    let ids: Vec<String> = got.iter().map(Received::id).collect();
    assert!(ids.iter().all(|id| id == &ids[0]), "same message id on every attempt");
    let retries: Vec<String> = got.iter().map(|r| r.header("twitch-eventsub-message-retry").unwrap()).collect();
    assert_eq!(retries, ["0", "1", "2"]);
    assert!(got.iter().all(|r| signature_valid(SHARD_SECRET, r)));
    assert!(got.windows(2).all(|w| w[0].body == w[1].body), "the body is identical on retries");

    let ok = eventually(WAIT, || async {
        let log: Vec<_> = t.sim.deliveries().into_iter().filter(|d| d.message_id == ids[0]).collect();
        log.iter().map(|d| d.status).collect::<Vec<_>>() == [Some(500), Some(500), Some(204)]
    })
    .await;
    assert!(ok, "{:?}", t.sim.deliveries());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.of_type("notification", None).len(), 3, "no redelivery after a 2xx");
}

#[tokio::test]
async fn a_failing_shard_is_disabled_and_reported_on_conduit_shard_disabled() {
    let t = start().await;
    let app = t.app_token().await;
    let shard_receiver = Receiver::start(Challenge::Echo).await;
    let alarm = Receiver::start(Challenge::Echo).await;
    let conduit = t.conduit_for(&app, &shard_receiver).await;
    let (streamer, bot) = t.streamer_and_bot();
    t.subscribe(&app, "channel.chat.message", json!({"broadcaster_user_id": streamer, "user_id": bot}), &conduit).await;
    let body = json!({"type": "conduit.shard.disabled", "version": "1",
        "condition": {"client_id": t.client_id(), "conduit_id": conduit},
        "transport": {"method": "webhook", "callback": alarm.url, "secret": HOOK_SECRET}});
    let (status, created) = t.post("/eventsub/subscriptions", &app, body).await;
    assert_eq!(status, 202);
    let alarm_id = created["data"][0]["id"].clone();
    let ok = eventually(WAIT, || async {
        t.sim.subscriptions().iter().any(|s| s["id"] == alarm_id && s["status"] == "enabled")
    })
    .await;
    assert!(ok, "the plain webhook subscription is verified");

    // Threshold 3 counts failed *messages* (each after its 3 attempts), in a row.
    shard_receiver.state.fail_always.store(true, Ordering::SeqCst);
    let input = ChatInput {
        broadcaster_user_id: streamer.clone(),
        chatter_user_id: bot.clone(),
        chatter_login: None,
        text: "yes".into(),
    };
    let attempts =
        || t.sim.deliveries().iter().filter(|d| d.message_type == "notification" && d.status.is_some()).count();
    for n in 1..=2 {
        t.sim.post_chat(input.clone()).await.unwrap();
        assert!(eventually(WAIT, || async { attempts() == 3 * n }).await, "{:?}", t.sim.deliveries());
        tokio::time::sleep(Duration::from_millis(50)).await;
        t.wait_shard(&app, &conduit, "0", "enabled").await;
    }
    // A delivered message starts the count again.
    shard_receiver.state.fail_always.store(false, Ordering::SeqCst);
    t.sim.post_chat(input.clone()).await.unwrap();
    assert!(eventually(WAIT, || async { attempts() == 7 }).await);
    shard_receiver.state.fail_always.store(true, Ordering::SeqCst);
    for n in 1..=2 {
        t.sim.post_chat(input.clone()).await.unwrap();
        assert!(eventually(WAIT, || async { attempts() == 7 + 3 * n }).await);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    t.wait_shard(&app, &conduit, "0", "enabled").await;
    assert!(alarm.of_type("notification", Some("conduit.shard.disabled")).is_empty());
    t.sim.post_chat(input.clone()).await.unwrap();
    t.wait_shard(&app, &conduit, "0", "notification_failures_exceeded").await;
    assert_eq!(shard_receiver.of_type("notification", None).len(), 16, "3 + 3 + 1 + 3 + 3 + 3 attempts");

    let disabled = alarm.wait_count("notification", Some("conduit.shard.disabled"), 1).await.remove(0);
    assert!(signature_valid(HOOK_SECRET, &disabled));
    let event = disabled.json()["event"].clone();
    assert_eq!(event["conduit_id"], conduit.as_str());
    assert_eq!(event["shard_id"], "0");
    assert_eq!(event["status"], "notification_failures_exceeded");
    assert_eq!(event["transport"], json!({"method": "webhook", "callback": shard_receiver.url}));

    // A disabled shard gets nothing more; the message is dropped and logged.
    t.sim.post_chat(input).await.unwrap();
    let ok = eventually(WAIT, || async {
        t.sim.deliveries().iter().any(|d| d.error.as_deref().is_some_and(|e| e.starts_with("dropped")))
    })
    .await;
    assert!(ok);
    assert_eq!(shard_receiver.of_type("notification", None).len(), 16);
}

#[tokio::test]
async fn revocations_are_delivered_and_stop_further_notifications() {
    let t = start().await;
    let app = t.app_token().await;
    let receiver = Receiver::start(Challenge::Echo).await;
    let conduit = t.conduit_for(&app, &receiver).await;
    let (streamer, bot) = t.streamer_and_bot();
    let sub = t
        .subscribe(&app, "channel.chat.message", json!({"broadcaster_user_id": streamer, "user_id": bot}), &conduit)
        .await;
    let id = sub["id"].as_str().unwrap();

    assert_eq!(t.sim_post(&format!("/sim/subscriptions/{id}/revoke"), json!({"status": "bored"})).await.0, 400);
    assert_eq!(t.sim_post("/sim/subscriptions/nope/revoke", json!({"status": "chat_user_banned"})).await.0, 404);
    let (status, _) =
        t.sim_post(&format!("/sim/subscriptions/{id}/revoke"), json!({"status": "chat_user_banned"})).await;
    assert_eq!(status, 202);
    let got = receiver.wait_count("revocation", Some("channel.chat.message"), 1).await.remove(0);
    assert!(signature_valid(SHARD_SECRET, &got));
    assert_eq!(got.header("twitch-eventsub-subscription-version").as_deref(), Some("1"));
    let body = got.json();
    assert!(body.get("event").is_none());
    let mut expected = sub.clone();
    expected["status"] = json!("chat_user_banned");
    assert_eq!(body["subscription"], expected);

    let (_, listed) = t.get(&format!("/eventsub/subscriptions?subscription_id={id}"), &app).await;
    assert_eq!(listed["data"][0]["status"], "chat_user_banned", "revoked subscriptions stay listed");
    let input =
        ChatInput { broadcaster_user_id: streamer, chatter_user_id: bot, chatter_login: None, text: "x".into() };
    t.sim.post_chat(input).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(receiver.of_type("notification", None).is_empty());
}

#[tokio::test]
async fn disconnecting_the_app_revokes_tokens_grants_and_subscriptions() {
    let t = start().await;
    let app = t.app_token().await;
    let receiver = Receiver::start(Challenge::Echo).await;
    let conduit = t.conduit_for(&app, &receiver).await;
    let (access, refresh) = t.user_token("pixelpaws", "channel:bot").await;
    let streamer = t.sim.user_by_login("pixelpaws").unwrap();
    let revoke_sub = json!({"type": "user.authorization.revoke", "version": "1", "condition": {"client_id": t.client_id()},
        "transport": {"method": "webhook", "callback": receiver.url, "secret": HOOK_SECRET}});
    assert_eq!(t.post("/eventsub/subscriptions", &app, revoke_sub).await.0, 202);
    receiver.wait_count("webhook_callback_verification", Some("user.authorization.revoke"), 1).await;
    let online = t.subscribe(&app, "stream.online", json!({"broadcaster_user_id": streamer.id}), &conduit).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let (status, _) = t.sim_post(&format!("/sim/users/{}/disconnect", streamer.id), json!({})).await;
    assert_eq!(status, 202);
    let revocation = receiver.wait_count("revocation", Some("stream.online"), 1).await.remove(0);
    assert_eq!(revocation.json()["subscription"]["id"], online["id"]);
    assert_eq!(revocation.json()["subscription"]["status"], "authorization_revoked");
    let note = receiver.wait_count("notification", Some("user.authorization.revoke"), 1).await.remove(0);
    assert!(signature_valid(HOOK_SECRET, &note));
    let event = note.json()["event"].clone();
    assert_eq!(event["user_id"], streamer.id.as_str());
    assert_eq!(event["user_login"], "pixelpaws");
    assert_eq!(event["client_id"], t.client_id().as_str());
    assert_eq!(t.get("/users", &access).await.0, 401, "the user's tokens are dead");
    let r = t.refresh_request(&refresh).await;
    assert_eq!(r.status(), 400);
    assert!(t.sim.granted_scopes(&streamer.id).is_empty());
}

#[tokio::test]
async fn streams_go_online_and_offline_with_consistent_ids_and_clips_need_a_live_channel() {
    let t = start().await;
    let app = t.app_token().await;
    let receiver = Receiver::start(Challenge::Echo).await;
    let conduit = t.conduit_for(&app, &receiver).await;
    let (user_token, _) = t.user_token("pixelpaws", "channel:bot clips:edit").await;
    let streamer = t.sim.user_by_login("pixelpaws").unwrap();
    for kind in ["stream.online", "stream.offline"] {
        t.subscribe(&app, kind, json!({"broadcaster_user_id": streamer.id}), &conduit).await;
    }
    assert_eq!(t.post(&format!("/clips?broadcaster_id={}", streamer.id), &user_token, json!({})).await.0, 404);
    let (_, streams) = t.get(&format!("/streams?user_id={}", streamer.id), &app).await;
    assert_eq!(streams["data"], json!([]), "offline channels are absent");

    let (status, body) = t.sim_post(&format!("/sim/streams/{}/online", streamer.id), json!({})).await;
    assert_eq!(status, 200);
    let stream_id = body["stream_id"].as_str().unwrap().to_owned();
    let online = receiver.wait_count("notification", Some("stream.online"), 1).await.remove(0);
    assert!(signature_valid(SHARD_SECRET, &online));
    let event = online.json()["event"].clone();
    let keys: std::collections::BTreeSet<&str> = event.as_object().unwrap().keys().map(String::as_str).collect();
    let expected =
        ["broadcaster_user_id", "broadcaster_user_login", "broadcaster_user_name", "id", "started_at", "type"];
    assert!(expected.iter().all(|k| keys.contains(k)), "{event}");
    assert_eq!(event["id"], stream_id.as_str());
    assert_eq!(event["type"], "live");
    assert_eq!(event["broadcaster_user_login"], "pixelpaws");
    let started = event["started_at"].as_str().unwrap();
    assert!(time::OffsetDateTime::parse(started, &time::format_description::well_known::Rfc3339).is_ok());

    let (_, streams) = t.get(&format!("/streams?user_id={}&user_id=12345", streamer.id), &app).await;
    assert_eq!(streams["data"].as_array().unwrap().len(), 1);
    assert_eq!(streams["data"][0]["id"], stream_id.as_str(), "Get Streams id = stream.online id");
    assert_eq!(streams["data"][0]["type"], "live");

    // Clips: user token with clips:edit; app tokens are refused.
    let (status, clip) = t.post(&format!("/clips?broadcaster_id={}", streamer.id), &user_token, json!({})).await;
    assert_eq!(status, 202);
    let clip_id = clip["data"][0]["id"].as_str().unwrap();
    assert!(clip["data"][0]["edit_url"].as_str().unwrap().ends_with(&format!("/pixelpaws/clip/{clip_id}")));
    let (_, clips) = t.get(&format!("/clips?id={clip_id}"), &app).await;
    assert_eq!(clips["data"], json!([]), "still being processed (§7.3)");
    t.sim.advance_clock(t.sim.config().clip_processing_delay);
    let (_, clips) = t.get(&format!("/clips?id={clip_id}"), &app).await;
    assert_eq!(clips["data"][0]["id"], clip_id);
    assert_eq!(clips["data"][0]["broadcaster_id"], streamer.id.as_str());
    assert_eq!(t.post(&format!("/clips?broadcaster_id={}", streamer.id), &app, json!({})).await.0, 401);

    // Going live twice sends nothing new.
    t.sim.set_live(&streamer.id, true).await.unwrap();
    t.sim.set_live(&streamer.id, false).await.unwrap();
    let offline = receiver.wait_count("notification", Some("stream.offline"), 1).await.remove(0);
    let event = offline.json()["event"].clone();
    let keys: std::collections::BTreeSet<&str> = event.as_object().unwrap().keys().map(String::as_str).collect();
    let expected = ["broadcaster_user_id", "broadcaster_user_login", "broadcaster_user_name"];
    assert!(expected.iter().all(|k| keys.contains(k)) && !keys.contains("id"), "{event}");
    assert_eq!(receiver.of_type("notification", Some("stream.online")).len(), 1);
    let (_, streams) = t.get(&format!("/streams?user_id={}", streamer.id), &app).await;
    assert_eq!(streams["data"], json!([]));
    assert_eq!(streams["pagination"], json!({}));
}

// ------------------------------------------------------- pages, generator

#[tokio::test]
async fn the_chat_page_lists_channels_and_its_form_sends_chat() {
    let t = start().await;
    let app = t.app_token().await;
    let receiver = Receiver::start(Challenge::Echo).await;
    let empty = t.http.get(format!("{}/sim/chat", t.base)).send().await.unwrap().text().await.unwrap();
    assert!(empty.contains("No channels yet"));
    let conduit = t.conduit_for(&app, &receiver).await;
    let (streamer, bot) = t.streamer_and_bot();
    t.subscribe(&app, "channel.chat.message", json!({"broadcaster_user_id": streamer, "user_id": bot}), &conduit).await;

    let r = t.http.get(format!("{}/", t.base)).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let page = t.http.get(format!("{}/sim/chat", t.base)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(html.contains("PixelPaws") && html.contains("1 app(s) listening"), "{html}");

    let form = [("channel", streamer.as_str()), ("viewer", "Mossy_Owl"), ("text", "yes please")];
    let r = t.http.post(format!("{}/sim/chat", t.base)).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/sim/chat?sent="), "{location}");
    let got = receiver.wait_count("notification", Some("channel.chat.message"), 1).await.remove(0);
    assert_eq!(got.json()["event"]["chatter_user_login"], "mossy_owl");
    assert_eq!(got.json()["event"]["message"]["text"], "yes please");
    let html = t.http.get(format!("{}{location}", t.base)).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("sent as mossy_owl: yes please") && html.contains("HTTP 204"), "{html}");

    let r = t.http.post(format!("{}/sim/chat", t.base)).form(&[("channel", streamer.as_str()), ("viewer", "")]);
    let location = r.send().await.unwrap().headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/sim/chat?error="), "{location}");

    let state = t.http.get(format!("{}/sim/state", t.base)).send().await.unwrap().json::<Value>().await.unwrap();
    assert_eq!(state["conduits"][0]["shards"][0]["status"], "enabled");
    assert!(state["conduits"][0]["shards"][0]["transport"].get("secret").is_none());
}

#[tokio::test]
async fn the_generator_sends_a_bounded_paced_crowd() {
    let t = start().await;
    let app = t.app_token().await;
    let receiver = Receiver::start(Challenge::Echo).await;
    let conduit = t.conduit_for(&app, &receiver).await;
    let (streamer, bot) = t.streamer_and_bot();
    t.subscribe(&app, "channel.chat.message", json!({"broadcaster_user_id": streamer, "user_id": bot}), &conduit).await;
    let generator = ChatGenerator {
        broadcaster_user_id: streamer.clone(),
        viewers: 20,
        for_share: 0.6,
        for_word: "yes".into(),
        against_word: "no".into(),
        other_share: 0.1,
        per_second: 200.0,
        duration: Duration::from_millis(300),
    };
    let report = generator.run(&t.sim).await;
    assert_eq!(report.sent, 60);
    assert_eq!(report.for_votes + report.against_votes + report.other, report.sent);
    assert!(report.for_votes > report.against_votes);
    assert!(report.elapsed < Duration::from_secs(2));
    let got = receiver.wait_count("notification", Some("channel.chat.message"), 60).await;
    let chatters: std::collections::HashSet<String> =
        got.iter().map(|r| r.json()["event"]["chatter_user_id"].as_str().unwrap().to_owned()).collect();
    assert!(chatters.len() > 5 && chatters.len() <= 20);

    let (status, body) = t
        .sim_post(
            "/sim/generator",
            json!({"broadcaster_user_id": streamer, "viewers": 5, "per_second": 50, "duration_seconds": 0.2}),
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(body["planned_messages"], 10);
    receiver.wait_count("notification", Some("channel.chat.message"), 70).await;
}

// -------------------------------------------------------- WebSocket (§6)

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws_connect(url: &str) -> Socket {
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// The next JSON data frame that is not a keepalive; `None` on close or timeout.
async fn next_message(ws: &mut Socket) -> Option<Value> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.ok()?? {
            Ok(Message::Text(text)) => {
                let v: Value = serde_json::from_str(&text).unwrap();
                if v["metadata"]["message_type"] != "session_keepalive" {
                    return Some(v);
                }
            }
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Reads until the server closes; returns the close code.
async fn close_code(ws: &mut Socket) -> Option<u16> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.ok()?? {
            Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
            Err(_) => return None,
            Ok(_) => {}
        }
    }
}

impl TestSim {
    fn ws_url(&self, query: &str) -> String {
        format!("{}/ws{query}", self.base.replace("http://", "ws://"))
    }

    async fn bind_websocket(&self, app: &str, conduit: &str, session: &str) -> (StatusCode, Value) {
        let body = json!({"conduit_id": conduit, "shards": [{"id": "0",
            "transport": {"method": "websocket", "session_id": session}}]});
        self.patch("/eventsub/conduits/shards", app, body).await
    }
}

#[tokio::test]
async fn websocket_shards_get_notifications_and_report_disconnects() {
    let t = start().await;
    let app = t.app_token().await;
    let alarm = Receiver::start(Challenge::Echo).await;
    let (_, body) = t.post("/eventsub/conduits", &app, json!({"shard_count": 1})).await;
    let conduit = body["data"][0]["id"].as_str().unwrap().to_owned();

    let mut ws = ws_connect(&t.ws_url("?keepalive_timeout_seconds=3")).await;
    let welcome = next_message(&mut ws).await.unwrap();
    assert_eq!(welcome["metadata"]["message_type"], "session_welcome");
    assert!(is_nanosecond_rfc3339(welcome["metadata"]["message_timestamp"].as_str().unwrap()));
    let session = welcome["payload"]["session"].clone();
    assert_eq!(session["status"], "connected");
    assert_eq!(session["keepalive_timeout_seconds"], 10, "clamped to 10..600");
    assert!(session["reconnect_url"].is_null());
    let session_id = session["id"].as_str().unwrap().to_owned();

    let (status, body) = t.bind_websocket(&app, &conduit, &session_id).await;
    assert_eq!(status, 202);
    assert_eq!(body["errors"], json!([]));
    assert_eq!(body["data"][0]["status"], "enabled", "a WebSocket shard is enabled at once");
    assert_eq!(body["data"][0]["transport"]["session_id"], session_id.as_str());
    assert_eq!(body["data"][0]["transport"]["method"], "websocket");

    let alarm_sub = json!({"type": "conduit.shard.disabled", "version": "1", "condition": {"client_id": t.client_id()},
        "transport": {"method": "webhook", "callback": alarm.url, "secret": HOOK_SECRET}});
    assert_eq!(t.post("/eventsub/subscriptions", &app, alarm_sub).await.0, 202);
    alarm.wait_count("webhook_callback_verification", None, 1).await;
    let (streamer, bot) = t.streamer_and_bot();
    let sub = t
        .subscribe(&app, "channel.chat.message", json!({"broadcaster_user_id": streamer, "user_id": bot}), &conduit)
        .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let input =
        ChatInput { broadcaster_user_id: streamer, chatter_user_id: bot, chatter_login: None, text: "yes".into() };
    t.sim.post_chat(input).await.unwrap();
    let note = next_message(&mut ws).await.unwrap();
    assert_eq!(note["metadata"]["message_type"], "notification");
    assert_eq!(note["metadata"]["subscription_type"], "channel.chat.message");
    assert_eq!(note["metadata"]["subscription_version"], "1");
    assert!(note["metadata"]["message_id"].is_string());
    assert_eq!(note["payload"]["subscription"], sub, "the payload is the webhook body");
    assert_eq!(note["payload"]["event"]["message"]["text"], "yes");

    ws.close(None).await.unwrap();
    t.wait_shard(&app, &conduit, "0", "websocket_disconnected").await;
    let (_, shards) = t.get(&format!("/eventsub/conduits/shards?conduit_id={conduit}"), &app).await;
    assert!(shards["data"][0]["transport"]["disconnected_at"].is_string());
    let disabled = alarm.wait_count("notification", Some("conduit.shard.disabled"), 1).await.remove(0);
    let event = disabled.json()["event"].clone();
    assert_eq!(event["status"], "websocket_disconnected");
    assert_eq!(event["transport"]["method"], "websocket");
    assert_eq!(event["transport"]["session_id"], session_id.as_str());
    let (_, body) = t.bind_websocket(&app, &conduit, &session_id).await;
    assert_eq!(body["errors"][0]["message"], "websocket session is not connected");
}

#[tokio::test]
async fn websocket_sessions_close_on_misuse_and_survive_a_reconnect() {
    let t = start().await;
    let app = t.app_token().await;
    let mut unused = ws_connect(&t.ws_url("?sim_unused_timeout_ms=150")).await;
    assert!(next_message(&mut unused).await.is_some());
    assert_eq!(close_code(&mut unused).await, Some(4003), "unused sessions are closed");

    let mut chatty = ws_connect(&t.ws_url("")).await;
    next_message(&mut chatty).await.unwrap();
    {
        use futures_util::SinkExt;
        chatty.send(tokio_tungstenite::tungstenite::Message::Text("hello".into())).await.unwrap();
    }
    assert_eq!(close_code(&mut chatty).await, Some(4001), "clients must not send data frames");

    let (_, body) = t.post("/eventsub/conduits", &app, json!({"shard_count": 1})).await;
    let conduit = body["data"][0]["id"].as_str().unwrap().to_owned();
    let mut old = ws_connect(&t.ws_url("")).await;
    let old_id = next_message(&mut old).await.unwrap()["payload"]["session"]["id"].as_str().unwrap().to_owned();
    assert_eq!(t.bind_websocket(&app, &conduit, &old_id).await.0, 202);
    let (streamer, bot) = t.streamer_and_bot();
    t.subscribe(&app, "channel.chat.message", json!({"broadcaster_user_id": streamer, "user_id": bot}), &conduit).await;

    let (status, body) = t.sim_post(&format!("/sim/websocket/{old_id}/reconnect"), json!({})).await;
    assert_eq!(status, 202);
    let url = body["reconnect_url"].as_str().unwrap().to_owned();
    let reconnect = next_message(&mut old).await.unwrap();
    assert_eq!(reconnect["metadata"]["message_type"], "session_reconnect");
    assert_eq!(reconnect["payload"]["session"]["status"], "reconnecting");
    assert_eq!(reconnect["payload"]["session"]["reconnect_url"], url.as_str());

    let mut new = ws_connect(&url).await;
    let welcome = next_message(&mut new).await.unwrap();
    let new_id = welcome["payload"]["session"]["id"].as_str().unwrap().to_owned();
    assert_ne!(new_id, old_id);
    let (_, shards) = t.get(&format!("/eventsub/conduits/shards?conduit_id={conduit}"), &app).await;
    assert_eq!(shards["data"][0]["status"], "enabled");
    assert_eq!(shards["data"][0]["transport"]["session_id"], new_id.as_str(), "the binding carries over");
    old.close(None).await.unwrap();
    let input =
        ChatInput { broadcaster_user_id: streamer, chatter_user_id: bot, chatter_login: None, text: "yes".into() };
    t.sim.post_chat(input).await.unwrap();
    let note = next_message(&mut new).await.unwrap();
    assert_eq!(note["payload"]["event"]["message"]["text"], "yes");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, shards) = t.get(&format!("/eventsub/conduits/shards?conduit_id={conduit}"), &app).await;
    assert_eq!(shards["data"][0]["status"], "enabled", "closing the old socket does not disable the shard");

    let mut stale = ws_connect(&url).await;
    assert_eq!(close_code(&mut stale).await, Some(4007), "a used reconnect URL is invalid");
}

#[tokio::test]
async fn a_reconnected_session_keeps_its_keepalive_setting() {
    let t = start().await;
    let app = t.app_token().await;
    let (_, body) = t.post("/eventsub/conduits", &app, json!({"shard_count": 1})).await;
    let conduit = body["data"][0]["id"].as_str().unwrap().to_owned();
    let mut old = ws_connect(&t.ws_url("?keepalive_timeout_seconds=45")).await;
    let welcome = next_message(&mut old).await.unwrap();
    assert_eq!(welcome["payload"]["session"]["keepalive_timeout_seconds"], 45);
    let old_id = welcome["payload"]["session"]["id"].as_str().unwrap().to_owned();
    assert_eq!(t.bind_websocket(&app, &conduit, &old_id).await.0, 202);

    let (status, body) = t.sim_post(&format!("/sim/websocket/{old_id}/reconnect"), json!({})).await;
    assert_eq!(status, 202);
    let url = body["reconnect_url"].as_str().unwrap().to_owned();
    let mut new = ws_connect(&url).await;
    let welcome = next_message(&mut new).await.unwrap();
    assert_eq!(welcome["metadata"]["message_type"], "session_welcome");
    assert_eq!(welcome["payload"]["session"]["keepalive_timeout_seconds"], 45, "§6.5: the session carries over");
    let new_id = welcome["payload"]["session"]["id"].as_str().unwrap().to_owned();
    let sessions = t.sim.websocket_sessions();
    let session = sessions.iter().find(|s| s["id"] == new_id.as_str()).unwrap();
    assert_eq!(session["keepalive_timeout_seconds"], 45);
}

// ---------------------------------------------------- chat realism (§5.9)

async fn chat_receiver(t: &TestSim, app: &str) -> (Receiver, String, String, String) {
    let receiver = Receiver::start(Challenge::Echo).await;
    let conduit = t.conduit_for(app, &receiver).await;
    let (streamer, bot) = t.streamer_and_bot();
    t.subscribe(app, "channel.chat.message", json!({"broadcaster_user_id": streamer, "user_id": bot}), &conduit).await;
    (receiver, conduit, streamer, bot)
}

/// The `event` of the chat notification for chat message `id`.
async fn chat_event(receiver: &Receiver, id: &str) -> Value {
    let found = eventually(WAIT, || async {
        receiver
            .of_type("notification", Some("channel.chat.message"))
            .iter()
            .any(|r| r.json()["event"]["message_id"] == id)
    })
    .await;
    assert!(found, "no chat notification for {id}");
    let all = receiver.of_type("notification", Some("channel.chat.message"));
    all.iter().map(Received::json).find(|b| b["event"]["message_id"] == id).unwrap()["event"].clone()
}

#[tokio::test]
async fn chat_is_split_into_fragments_with_cheers_badges_and_colours() {
    let t = start().await;
    let app = t.app_token().await;
    let (receiver, _, streamer, _) = chat_receiver(&t, &app).await;
    let (status, body) = t
        .sim_post(
            "/sim/chat",
            json!({"broadcaster_user_id": streamer, "chatter_login": "mossy_owl",
                "text": "Cheer100 YES pizza @PixelPaws LUL",
                "badges": [{"set_id": "subscriber", "id": "3012", "info": "14"}, {"set_id": "bits", "id": "1000"}],
                "color": "#1e90ff"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let event = chat_event(&receiver, body["message_id"].as_str().unwrap()).await;
    // Exactly §5.9's example.
    assert_eq!(
        event["message"]["fragments"],
        json!([
            {"type": "cheermote", "text": "Cheer100",
                "cheermote": {"prefix": "cheer", "bits": 100, "tier": 100}, "emote": null, "mention": null},
            {"type": "text", "text": " YES pizza ", "cheermote": null, "emote": null, "mention": null},
            {"type": "mention", "text": "@PixelPaws", "cheermote": null, "emote": null,
                "mention": {"user_id": streamer, "user_name": "PixelPaws", "user_login": "pixelpaws"}},
            {"type": "text", "text": " ", "cheermote": null, "emote": null, "mention": null},
            {"type": "emote", "text": "LUL", "cheermote": null, "mention": null,
                "emote": {"id": "425618", "emote_set_id": "0", "owner_id": "0", "format": ["static"]}},
        ])
    );
    assert_eq!(event["message"]["text"], "Cheer100 YES pizza @PixelPaws LUL");
    assert_eq!(event["cheer"], json!({"bits": 100}));
    assert_eq!(
        event["badges"],
        json!([{"set_id": "subscriber", "id": "3012", "info": "14"}, {"set_id": "bits", "id": "1000", "info": ""}])
    );
    assert_eq!(event["color"], "#1E90FF");
    assert!(event["reply"].is_null() && event["source_broadcaster_user_id"].is_null());

    // An unknown user's @name stays text; no cheer without a cheermote.
    let (_, body) = t
        .sim_post(
            "/sim/chat",
            json!({"broadcaster_user_id": streamer, "chatter_login": "mossy_owl", "text": "@nobody_here yes"}),
        )
        .await;
    let event = chat_event(&receiver, body["message_id"].as_str().unwrap()).await;
    assert_eq!(
        event["message"]["fragments"],
        json!([{"type": "text", "text": "@nobody_here yes", "cheermote": null, "emote": null, "mention": null}])
    );
    assert!(event["cheer"].is_null());

    for bad in [json!({"color": "blue"}), json!({"badges": [{"set_id": "", "id": "1"}]}), json!({"reply_to": "nope"})] {
        let mut body = json!({"broadcaster_user_id": streamer, "chatter_login": "mossy_owl", "text": "x"});
        body.as_object_mut().unwrap().extend(bad.as_object().unwrap().clone());
        assert_eq!(t.sim_post("/sim/chat", body.clone()).await.0, 400, "{body}");
    }
}

#[tokio::test]
async fn replies_carry_the_parent_and_the_thread() {
    let t = start().await;
    let app = t.app_token().await;
    let (receiver, _, streamer, _) = chat_receiver(&t, &app).await;
    let raccoon = t.sim.create_user("tinyraccoon", "TinyRaccoon");
    let parent = t
        .sim
        .post_chat(ChatInput {
            broadcaster_user_id: streamer.clone(),
            chatter_user_id: raccoon.id.clone(),
            chatter_login: None,
            text: "is pineapple allowed?".into(),
        })
        .await
        .unwrap();
    let (status, body) = t
        .sim_post(
            "/sim/chat",
            json!({"broadcaster_user_id": streamer, "chatter_login": "mossy_owl", "text": "yes", "reply_to": parent}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let reply_id = body["message_id"].as_str().unwrap().to_owned();
    let event = chat_event(&receiver, &reply_id).await;
    assert_eq!(event["message"]["text"], "@tinyraccoon yes", "observed: a reply starts with @<parent login>");
    assert_eq!(event["message"]["fragments"][0]["type"], "mention");
    assert_eq!(event["message"]["fragments"][0]["mention"]["user_id"], raccoon.id.as_str());
    let expected = json!({
        "parent_message_id": parent, "parent_message_body": "is pineapple allowed?",
        "parent_user_id": raccoon.id, "parent_user_name": "TinyRaccoon", "parent_user_login": "tinyraccoon",
        "thread_message_id": parent, "thread_user_id": raccoon.id, "thread_user_name": "TinyRaccoon",
        "thread_user_login": "tinyraccoon",
    });
    assert_eq!(event["reply"], expected);

    // A reply to the reply stays in the thread of the first message.
    let options = ChatOptions { reply_to: Some(reply_id.clone()), ..ChatOptions::default() };
    let input = ChatInput {
        broadcaster_user_id: streamer.clone(),
        chatter_user_id: raccoon.id.clone(),
        chatter_login: None,
        text: "@mossy_owl really?".into(),
    };
    let second = t.sim.post_chat_with(input, options).await.unwrap();
    let event = chat_event(&receiver, &second).await;
    assert_eq!(event["message"]["text"], "@mossy_owl really?", "no second prefix");
    assert_eq!(event["reply"]["parent_message_id"], reply_id.as_str());
    assert_eq!(event["reply"]["parent_user_login"], "mossy_owl");
    assert_eq!(event["reply"]["thread_message_id"], parent.as_str());
    assert_eq!(event["reply"]["thread_user_login"], "tinyraccoon");

    // Only messages of the same channel can be replied to.
    let other = t.sim.create_user("otherchannel", "OtherChannel");
    let body = json!({"broadcaster_user_id": other.id, "chatter_login": "mossy_owl", "text": "hi", "reply_to": parent});
    let (status, body) = t.sim_post("/sim/chat", body).await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("reply_to"), "{body}");
}

#[tokio::test]
async fn shared_chat_messages_name_their_source_channel() {
    let t = start().await;
    let app = t.app_token().await;
    let (receiver, conduit, streamer, bot) = chat_receiver(&t, &app).await;
    let partner = t.sim.create_user("partnerchan", "PartnerChan");
    t.sim.grant(&partner.id, &["channel:bot"]);
    t.subscribe(&app, "channel.chat.message", json!({"broadcaster_user_id": partner.id, "user_id": bot}), &conduit)
        .await;
    let vip = ChatBadge { set_id: "vip".into(), id: "1".into(), info: String::new() };
    let sub = ChatBadge { set_id: "subscriber".into(), id: "0".into(), info: "3".into() };
    let (status, body) = t
        .sim_post(
            "/sim/chat",
            json!({"broadcaster_user_id": streamer, "chatter_login": "mossy_owl", "text": "yes",
                "badges": [vip], "source_broadcaster_user_id": partner.id, "source_badges": [sub]}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let event = chat_event(&receiver, body["message_id"].as_str().unwrap()).await;
    assert_eq!(event["broadcaster_user_id"], streamer.as_str());
    assert_eq!(event["source_broadcaster_user_id"], partner.id.as_str());
    assert_eq!(event["source_broadcaster_user_login"], "partnerchan");
    assert_eq!(event["source_broadcaster_user_name"], "PartnerChan");
    assert_eq!(event["badges"], json!([vip]));
    assert_eq!(event["source_badges"], json!([sub]));
    let source_id = event["source_message_id"].as_str().unwrap().to_owned();
    assert_ne!(source_id, event["message_id"].as_str().unwrap());

    // The channel it was typed in sees it as its own message.
    let home = chat_event(&receiver, &source_id).await;
    assert_eq!(home["broadcaster_user_id"], partner.id.as_str());
    assert_eq!(home["chatter_user_login"], "mossy_owl");
    assert_eq!(home["badges"], json!([sub]));
    for field in ["source_broadcaster_user_id", "source_broadcaster_user_login", "source_message_id", "source_badges"] {
        assert!(home[field].is_null(), "{field} is null in the source channel");
    }

    let same = json!({"broadcaster_user_id": streamer, "chatter_login": "mossy_owl", "text": "x",
        "source_broadcaster_user_id": streamer});
    assert_eq!(t.sim_post("/sim/chat", same).await.0, 400);
    let unknown = json!({"broadcaster_user_id": streamer, "chatter_login": "mossy_owl", "text": "x",
        "source_broadcaster_user_id": "404404"});
    assert_eq!(t.sim_post("/sim/chat", unknown).await.0, 400);
}

// ------------------------------------------- retries, faults and disabling

fn slow_config() -> SimConfig {
    SimConfig { delivery_timeout: Duration::from_millis(300), ..test_config() }
}

#[tokio::test]
async fn a_delivery_that_times_out_is_retried() {
    let t = start_with(slow_config()).await;
    let app = t.app_token().await;
    let (receiver, _, streamer, bot) = chat_receiver(&t, &app).await;
    receiver.state.slow_next.store(1, Ordering::SeqCst);
    let input =
        ChatInput { broadcaster_user_id: streamer, chatter_user_id: bot, chatter_login: None, text: "yes".into() };
    t.sim.post_chat(input).await.unwrap();
    let got = receiver.wait_count("notification", Some("channel.chat.message"), 2).await;
    assert_eq!(got[0].id(), got[1].id(), "the same message id");
    let retries: Vec<String> = got.iter().map(|r| r.header("twitch-eventsub-message-retry").unwrap()).collect();
    assert_eq!(retries, ["0", "1"]);
    let ok = eventually(WAIT, || async {
        let log: Vec<_> = t.sim.deliveries().into_iter().filter(|d| d.message_id == got[0].id()).collect();
        log.len() == 2
            && log[0].error.as_deref() == Some("timeout")
            && log[0].status.is_none()
            && log[1].status == Some(204)
    })
    .await;
    assert!(ok, "{:?}", t.sim.deliveries());
}

#[tokio::test]
async fn an_injected_delivery_fault_spoils_only_the_first_attempt() {
    let t = start().await;
    let app = t.app_token().await;
    let (receiver, conduit, streamer, bot) = chat_receiver(&t, &app).await;
    receiver.state.verify.store(true, Ordering::SeqCst);
    let input =
        ChatInput { broadcaster_user_id: streamer, chatter_user_id: bot, chatter_login: None, text: "yes".into() };
    for (n, fault) in ["bad_signature", "stale"].into_iter().enumerate() {
        let (status, _) = t.sim_post("/sim/delivery-faults", json!({"fault": fault})).await;
        assert_eq!(status, 200);
        t.sim.post_chat(input.clone()).await.unwrap();
        let got = receiver.wait_count("notification", None, 2 * (n + 1)).await;
        let (first, retry) = (&got[2 * n], &got[2 * n + 1]);
        assert_eq!(first.id(), retry.id());
        assert_eq!(retry.header("twitch-eventsub-message-retry").as_deref(), Some("1"));
        assert!(!(signature_valid(SHARD_SECRET, first) && fresh(first)), "{fault}: the first attempt is spoiled");
        assert!(signature_valid(SHARD_SECRET, retry) && fresh(retry), "{fault}: the retry is sent correctly");
        let ok = eventually(WAIT, || async {
            let log: Vec<_> = t.sim.deliveries().into_iter().filter(|d| d.message_id == first.id()).collect();
            log.iter().map(|d| d.status).collect::<Vec<_>>() == [Some(403), Some(204)]
        })
        .await;
        assert!(ok, "{fault}: {:?}", t.sim.deliveries());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.of_type("notification", None).len(), 4, "nothing more once delivered");
    t.wait_shard(&app, &conduit, "0", "enabled").await;

    // A duplicate follows whichever attempt got through.
    receiver.state.fail_next.store(1, Ordering::SeqCst);
    assert_eq!(t.sim_post("/sim/delivery-faults", json!({"fault": "duplicate"})).await.0, 200);
    t.sim.post_chat(input).await.unwrap();
    let got = receiver.wait_count("notification", None, 7).await;
    let id = got[4].id();
    assert!(got[4..].iter().all(|r| r.id() == id && signature_valid(SHARD_SECRET, r)));
    let ok = eventually(WAIT, || async {
        let log: Vec<_> = t.sim.deliveries().into_iter().filter(|d| d.message_id == id).collect();
        log.iter().map(|d| (d.attempt, d.status)).collect::<Vec<_>>()
            == [(0, Some(500)), (1, Some(204)), (2, Some(204))]
    })
    .await;
    assert!(ok, "{:?}", t.sim.deliveries());
}

// ------------------------------------------------ subscriptions: edge cases

#[tokio::test]
async fn deleting_a_conduit_stops_its_subscriptions_but_keeps_them_listed() {
    let t = start().await;
    let app = t.app_token().await;
    let (receiver, conduit, streamer, bot) = chat_receiver(&t, &app).await;
    let online = t.subscribe(&app, "stream.online", json!({"broadcaster_user_id": streamer}), &conduit).await;
    assert_eq!(t.delete(&format!("/eventsub/conduits?id={conduit}"), &app).await, 204);

    let (status, body) = t.get("/eventsub/subscriptions", &app).await;
    assert_eq!(status, 200);
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "still listed: {body}");
    assert!(data.iter().all(|s| s["status"] == "conduit_deleted"), "{body}");
    assert_eq!(data[1]["id"], online["id"]);
    assert_eq!(data[1]["transport"], json!({"method": "conduit", "conduit_id": conduit}));
    let (status, body) = t.get("/eventsub/subscriptions?status=conduit_deleted", &app).await;
    assert_eq!((status, body["data"].as_array().map(Vec::len)), (StatusCode::OK, Some(2)));
    let (_, body) = t.get("/eventsub/subscriptions?status=enabled", &app).await;
    assert_eq!(body["data"], json!([]));

    let input =
        ChatInput { broadcaster_user_id: streamer, chatter_user_id: bot, chatter_login: None, text: "yes".into() };
    t.sim.post_chat(input).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(receiver.of_type("notification", None).is_empty(), "stopped");
    assert!(receiver.of_type("revocation", None).is_empty(), "no transport left to send a revocation to");
}

#[tokio::test]
async fn an_unknown_type_filter_is_a_bad_request() {
    let t = start().await;
    let app = t.app_token().await;
    let (status, body) = t.get("/eventsub/subscriptions?type=channel.pizza", &app).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "Bad Request");
    assert_eq!(t.get("/eventsub/subscriptions?type=stream.online", &app).await.0, 200);
}

#[tokio::test]
async fn revocations_are_limited_to_what_can_happen_to_the_subscription() {
    let t = start().await;
    let app = t.app_token().await;
    let (receiver, conduit, streamer, _) = chat_receiver(&t, &app).await;
    let (_, listed) = t.get("/eventsub/subscriptions?type=channel.chat.message", &app).await;
    let chat = listed["data"][0]["id"].as_str().unwrap().to_owned();
    let online = t.subscribe(&app, "stream.online", json!({"broadcaster_user_id": streamer}), &conduit).await;
    let online = online["id"].as_str().unwrap().to_owned();
    let sim = &t;
    let revoke = |id: &str, status: &str| {
        let path = format!("/sim/subscriptions/{id}/revoke");
        let body = json!({"status": status});
        async move { sim.sim_post(&path, body).await }
    };

    for status in ["notification_failures_exceeded", "websocket_disconnected", "websocket_connection_unused"] {
        let (code, body) = revoke(&chat, status).await;
        assert_eq!(code, 400, "{status} cannot happen on a conduit");
        assert!(body["message"].as_str().unwrap().contains("conduit transport"), "{body}");
    }
    let (code, body) = revoke(&online, "chat_user_banned").await;
    assert_eq!(code, 400, "no bot in a stream.online condition: {body}");
    assert_eq!(revoke(&online, "user_removed").await.0, 202);
    assert_eq!(revoke(&chat, "moderator_removed").await.0, 202);
    receiver.wait_count("revocation", None, 2).await;

    // A plain webhook can fail too often; a client-scoped one has no user to remove.
    let body = json!({"type": "user.authorization.revoke", "version": "1", "condition": {"client_id": t.client_id()},
        "transport": {"method": "webhook", "callback": receiver.url, "secret": HOOK_SECRET}});
    let (status, created) = t.post("/eventsub/subscriptions", &app, body).await;
    assert_eq!(status, 202);
    let hook = created["data"][0]["id"].as_str().unwrap().to_owned();
    receiver.wait_count("webhook_callback_verification", Some("user.authorization.revoke"), 1).await;
    assert_eq!(revoke(&hook, "user_removed").await.0, 400);
    assert_eq!(revoke(&hook, "notification_failures_exceeded").await.0, 202);
    let revoked = receiver.wait_count("revocation", Some("user.authorization.revoke"), 1).await.remove(0);
    assert_eq!(revoked.json()["subscription"]["status"], "notification_failures_exceeded");
}

#[tokio::test]
async fn user_authorization_types_refuse_the_websocket_transport() {
    let t = start().await;
    let (user, _) = t.user_token("pixelpaws", "").await;
    for kind in ["user.authorization.revoke", "user.authorization.grant"] {
        let body = json!({"type": kind, "version": "1", "condition": {"client_id": t.client_id()},
            "transport": {"method": "websocket", "session_id": "AgoQk3v7uYxQ"}});
        let (status, body) = t.post("/eventsub/subscriptions", &user, body).await;
        assert_eq!(status, 400, "{kind}: {body}");
        assert!(body["message"].as_str().unwrap().contains("type does not support the websocket"), "{body}");
    }
}

// ------------------------------------------------------------ expiry (§8.1)

#[tokio::test]
async fn authorization_codes_expire() {
    let t = start_with(SimConfig { code_ttl: Duration::from_millis(200), ..test_config() }).await;
    let query = t.authorize("pixelpaws", "channel:bot", "s").await;
    let fresh_code = param(&t.authorize("pixelpaws", "channel:bot", "s").await, "code");
    assert_eq!(t.exchange(&fresh_code).await.status(), 200, "a code used in time works");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = t.exchange(&param(&query, "code")).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": 400, "message": "Invalid authorization code"}));
}

#[tokio::test]
async fn expired_user_tokens_fail_validate_and_helix() {
    let t = start_with(SimConfig { user_token_ttl: Duration::from_millis(400), ..test_config() }).await;
    let (access, refresh) = t.user_token("pixelpaws", "channel:bot").await;
    let validate = |token: String| {
        let request =
            t.http.get(format!("{}/oauth2/validate", t.base)).header("Authorization", format!("OAuth {token}"));
        async move { request.send().await.unwrap() }
    };
    assert_eq!(t.get("/users", &access).await.0, 200, "valid at first");
    let expired = eventually(WAIT, || async { validate(access.clone()).await.status() == 401 }).await;
    assert!(expired, "the token expires");
    let r = validate(access.clone()).await;
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": 401, "message": "invalid access token"}));
    let (status, body) = t.get("/users", &access).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("Unauthorized")));

    // The refresh token still works (confidential clients' ones do not expire, §1.3).
    let r = t.refresh_request(&refresh).await;
    assert_eq!(r.status(), 200);
    let fresh: Value = r.json().await.unwrap();
    assert_eq!(t.get("/users", fresh["access_token"].as_str().unwrap()).await.0, 200);
}
