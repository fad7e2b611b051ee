//! The simulator on an ephemeral port, an HTTP client with Twitch's headers,
//! a webhook receiver that records everything, and independent checks
//! (HMAC, timestamps).

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
use twitch_sim::{SimConfig, Simulator};

/// Polls `f` every 20 ms until it holds or `within` has passed.
pub(crate) async fn eventually<F, Fut>(within: Duration, mut f: F) -> bool
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

pub(crate) const REDIRECT: &str = "http://127.0.0.1:9/auth/callback";
pub(crate) const SHARD_SECRET: &str = "shard-secret-0123456789";
pub(crate) const HOOK_SECRET: &str = "plain-webhook-secret-42";
pub(crate) const WAIT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------- harness

pub(crate) struct TestSim {
    pub(crate) sim: Simulator,
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
    pub(crate) shutdown: CancellationToken,
}

impl Drop for TestSim {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub(crate) fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).no_proxy().build().unwrap()
}

pub(crate) fn test_config() -> SimConfig {
    SimConfig {
        redirect_uris: vec![REDIRECT.into()],
        delivery_timeout: Duration::from_millis(800),
        retry_delays: vec![Duration::from_millis(40), Duration::from_millis(80)],
        failed_messages_before_disable: 3,
        ..SimConfig::default()
    }
}

pub(crate) async fn start() -> TestSim {
    start_with(test_config()).await
}

pub(crate) async fn start_with(config: SimConfig) -> TestSim {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sim = Simulator::new(SimConfig { public_url: format!("http://{addr}"), ..config });
    let shutdown = CancellationToken::new();
    tokio::spawn(sim.clone().serve(listener, shutdown.clone()));
    TestSim { sim, base: format!("http://{addr}"), http: http_client(), shutdown }
}

impl TestSim {
    pub(crate) fn client_id(&self) -> String {
        self.sim.config().client_id.clone()
    }

    pub(crate) fn client_secret(&self) -> String {
        self.sim.config().client_secret.clone()
    }

    pub(crate) async fn token_request(&self, form: &[(&str, &str)]) -> reqwest::Response {
        self.http.post(format!("{}/oauth2/token", self.base)).form(form).send().await.unwrap()
    }

    /// `grant_type=refresh_token` with this app's credentials.
    pub(crate) async fn refresh_request(&self, refresh: &str) -> reqwest::Response {
        let (id, secret) = (self.client_id(), self.client_secret());
        self.token_request(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("client_id", &id),
            ("client_secret", &secret),
        ])
        .await
    }

    pub(crate) async fn app_token(&self) -> String {
        let (id, secret) = (self.client_id(), self.client_secret());
        let r = self
            .token_request(&[("client_id", &id), ("client_secret", &secret), ("grant_type", "client_credentials")])
            .await;
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
    }

    pub(crate) fn authorize_url(&self, scope: &str, state: &str, extra: &str) -> String {
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
    pub(crate) async fn authorize(&self, login: &str, scope: &str, state: &str) -> Vec<(String, String)> {
        let url = self.authorize_url(scope, state, &format!("&sim_auto_approve={login}"));
        let r = self.http.get(url).send().await.unwrap();
        assert_eq!(r.status(), 302, "authorize redirects");
        redirect_query(&r)
    }

    pub(crate) async fn exchange(&self, code: &str) -> reqwest::Response {
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
    pub(crate) async fn user_token(&self, login: &str, scope: &str) -> (String, String) {
        let query = self.authorize(login, scope, "s").await;
        let body: Value = self.exchange(&param(&query, "code")).await.json().await.unwrap();
        (body["access_token"].as_str().unwrap().to_owned(), body["refresh_token"].as_str().unwrap().to_owned())
    }

    pub(crate) fn helix(&self, method: reqwest::Method, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}/helix{path}", self.base))
            .bearer_auth(token)
            .header("Client-Id", self.client_id())
    }

    pub(crate) async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        send(self.helix(reqwest::Method::GET, path, token)).await
    }

    pub(crate) async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        send(self.helix(reqwest::Method::POST, path, token).json(&body)).await
    }

    pub(crate) async fn patch(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        send(self.helix(reqwest::Method::PATCH, path, token).json(&body)).await
    }

    pub(crate) async fn delete(&self, path: &str, token: &str) -> StatusCode {
        self.helix(reqwest::Method::DELETE, path, token).send().await.unwrap().status()
    }

    pub(crate) async fn sim_post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        send(self.http.post(format!("{}{path}", self.base)).json(&body)).await
    }

    /// A conduit whose shard 0 is an enabled webhook pointing at `receiver`.
    pub(crate) async fn conduit_for(&self, app: &str, receiver: &Receiver) -> String {
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

    pub(crate) async fn wait_shard(&self, app: &str, conduit: &str, shard: &str, status: &str) {
        let ok = eventually(WAIT, || async {
            let (_, body) = self.get(&format!("/eventsub/conduits/shards?conduit_id={conduit}"), app).await;
            body["data"].as_array().unwrap().iter().any(|s| s["id"] == shard && s["status"] == status)
        })
        .await;
        assert!(ok, "shard {shard} never became {status}: {:?}", self.sim.conduits());
    }

    /// Streamer with `channel:bot`, bot with `user:read:chat user:bot`.
    pub(crate) fn streamer_and_bot(&self) -> (String, String) {
        let streamer = self.sim.create_user("pixelpaws", "PixelPaws");
        let bot = self.sim.create_user("chatpulsebot", "ChatPulseBot");
        self.sim.grant(&streamer.id, &["channel:bot"]);
        self.sim.grant(&bot.id, &["user:read:chat", "user:bot"]);
        (streamer.id, bot.id)
    }

    pub(crate) async fn subscribe(&self, app: &str, kind: &str, condition: Value, conduit: &str) -> Value {
        let body = json!({"type": kind, "version": "1", "condition": condition,
            "transport": {"method": "conduit", "conduit_id": conduit}});
        let (status, body) = self.post("/eventsub/subscriptions", app, body).await;
        assert_eq!(status, 202, "{body}");
        body["data"][0].clone()
    }
}

pub(crate) async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let r = request.send().await.unwrap();
    let status = StatusCode::from_u16(r.status().as_u16()).unwrap();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub(crate) fn shard_update(conduit: &str, shard: &str, callback: &str) -> Value {
    json!({"conduit_id": conduit, "shards": [{"id": shard,
        "transport": {"method": "webhook", "callback": callback, "secret": SHARD_SECRET}}]})
}

pub(crate) fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(crate) fn urldecode(s: &str) -> String {
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

pub(crate) fn redirect_query(r: &reqwest::Response) -> Vec<(String, String)> {
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

pub(crate) fn param(query: &[(String, String)], key: &str) -> String {
    query.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap_or_else(|| panic!("no {key} in {query:?}"))
}

// --------------------------------------------------------------- receiver

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Challenge {
    Echo,
    WrongBody,
}

#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Received {
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(|v| v.to_str().unwrap().to_owned())
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    pub(crate) fn message_type(&self) -> String {
        self.header("twitch-eventsub-message-type").unwrap_or_default()
    }

    pub(crate) fn id(&self) -> String {
        self.header("twitch-eventsub-message-id").unwrap()
    }
}

#[derive(Default)]
pub(crate) struct ReceiverState {
    pub(crate) received: Mutex<Vec<Received>>,
    pub(crate) wrong_challenge: AtomicBool,
    pub(crate) fail_next: AtomicU32,
    pub(crate) fail_always: AtomicBool,
    /// Refuse (403) notifications not signed with `SHARD_SECRET` or older than 10 minutes (§5.4, §5.5).
    pub(crate) verify: AtomicBool,
    /// The next notifications are answered only after `SLOW`.
    pub(crate) slow_next: AtomicU32,
}

/// Longer than the delivery timeout of `slow_config`.
pub(crate) const SLOW: Duration = Duration::from_millis(900);

/// §5.5: a timestamp more than 10 minutes old is refused.
pub(crate) fn fresh(r: &Received) -> bool {
    let Some(ts) = r.header("twitch-eventsub-message-timestamp") else { return false };
    let Ok(at) = time::OffsetDateTime::parse(&ts, &time::format_description::well_known::Rfc3339) else {
        return false;
    };
    (time::OffsetDateTime::now_utc() - at).abs() < time::Duration::minutes(10)
}

/// A stand-in for ChatPulse's webhook endpoint that records everything.
pub(crate) struct Receiver {
    pub(crate) url: String,
    pub(crate) state: Arc<ReceiverState>,
    pub(crate) shutdown: CancellationToken,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub(crate) async fn receive(State(state): State<Arc<ReceiverState>>, headers: HeaderMap, body: Bytes) -> Response {
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
    pub(crate) async fn start(challenge: Challenge) -> Self {
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

    pub(crate) fn all(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    pub(crate) fn of_type(&self, message_type: &str, subscription_type: Option<&str>) -> Vec<Received> {
        self.all()
            .into_iter()
            .filter(|r| r.message_type() == message_type)
            .filter(|r| {
                subscription_type.is_none_or(|t| r.header("twitch-eventsub-subscription-type").as_deref() == Some(t))
            })
            .collect()
    }

    pub(crate) async fn wait_count(
        &self,
        message_type: &str,
        subscription_type: Option<&str>,
        n: usize,
    ) -> Vec<Received> {
        let ok = eventually(WAIT, || async { self.of_type(message_type, subscription_type).len() >= n }).await;
        let got = self.of_type(message_type, subscription_type);
        assert!(ok, "expected {n} {message_type} {subscription_type:?}, got {}", got.len());
        got
    }
}

/// Independent check of §5.4: HMAC-SHA256(secret, id ‖ timestamp ‖ body).
pub(crate) fn signature_valid(secret: &str, r: &Received) -> bool {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(r.header("twitch-eventsub-message-id").unwrap().as_bytes());
    mac.update(r.header("twitch-eventsub-message-timestamp").unwrap().as_bytes());
    mac.update(&r.body);
    let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    r.header("twitch-eventsub-message-signature") == Some(format!("sha256={expected}"))
}

pub(crate) fn is_nanosecond_rfc3339(ts: &str) -> bool {
    let b = ts.as_bytes();
    ts.len() == 30
        && b[4] == b'-'
        && b[10] == b'T'
        && b[19] == b'.'
        && b[29] == b'Z'
        && b[20..29].iter().all(u8::is_ascii_digit)
        && time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).is_ok()
}

// ---------------------------------------------------- chat realism (§5.9)

pub(crate) async fn chat_receiver(t: &TestSim, app: &str) -> (Receiver, String, String, String) {
    let receiver = Receiver::start(Challenge::Echo).await;
    let conduit = t.conduit_for(app, &receiver).await;
    let (streamer, bot) = t.streamer_and_bot();
    t.subscribe(app, "channel.chat.message", json!({"broadcaster_user_id": streamer, "user_id": bot}), &conduit).await;
    (receiver, conduit, streamer, bot)
}

/// The `event` of the chat notification for chat message `id`.
pub(crate) async fn chat_event(receiver: &Receiver, id: &str) -> Value {
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

// ------------------------------------------------------------- WebSocket

pub(crate) type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(crate) async fn ws_connect(url: &str) -> Socket {
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// The next JSON data frame that is not a keepalive; `None` on close or timeout.
pub(crate) async fn next_message(ws: &mut Socket) -> Option<Value> {
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
pub(crate) async fn close_code(ws: &mut Socket) -> Option<u16> {
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
    pub(crate) fn ws_url(&self, query: &str) -> String {
        format!("{}/ws{query}", self.base.replace("http://", "ws://"))
    }

    pub(crate) async fn bind_websocket(&self, app: &str, conduit: &str, session: &str) -> (StatusCode, Value) {
        let body = json!({"conduit_id": conduit, "shards": [{"id": "0",
            "transport": {"method": "websocket", "session_id": session}}]});
        self.patch("/eventsub/conduits/shards", app, body).await
    }
}
