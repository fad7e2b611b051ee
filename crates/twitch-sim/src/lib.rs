//! A faithful local Twitch, served over real HTTP (`shared/twitch-protocol.md`):
//!
//! - OAuth under `/oauth2` (authorize page, token, validate, revoke) — §1;
//! - Helix under `/helix` (users, streams, clips, stream markers, conduits,
//!   shards, EventSub subscriptions) with Twitch's auth rules, error bodies
//!   and rate-limit headers — §2–§4, §7;
//! - an EventSub sender: signed, retried webhooks with shard disabling and
//!   revocations (§5), and the EventSub WebSocket at `/ws`, as a conduit
//!   shard or with plain WebSocket subscriptions (§6);
//! - controls under `/sim` (chat page, users, grants, streams, channel
//!   settings, faults, revocations, the clock, tunnels, state, synthetic chat)
//!   that stand in for the rest of Twitch.
//!
//! Point a client at it with `TWITCH_AUTH_URL=http://HOST:PORT/oauth2` and
//! `TWITCH_API_URL=http://HOST:PORT/helix`. The Twitch CLI's mock layout
//! (`/mock/…`, `/auth/…`, `/eventsub/subscriptions`) is served too, for
//! client libraries that can only be pointed at a mock by port. The crate's
//! README documents every route.
//!
//! The simulator serves plain HTTP. Its webhook sender calls `http://`
//! loopback callbacks and `https://…:443` ones, whose certificates it checks
//! against the public web roots (§5.1: "a publicly trusted certificate").

/// Channels: going live, settings (clips, VODs), editors and bans.
mod channels;
/// `channel.chat.message` events: fragments, cheers, badges, replies, shared chat.
mod chat;
/// Clips: Create Clip with its processing delay, Get Clips.
mod clips;
/// The controllable clock and the clean-up that runs on it.
mod clock;
/// Conduits and conduit shards (§3).
mod conduits;
/// `/sim/*`: the people and faults of Twitch.
mod control;
/// The EventSub sender: routing, signing, retries, challenges, revocations.
mod delivery;
/// EventSub subscriptions (§4), all three transports.
mod eventsub;
/// Failures on demand: revocations, failing shards, fault switches.
mod faults;
/// Synthetic chat crowds.
mod generator;
/// The Helix gate (auth, rate limits, faults), users and streams.
mod helix;
/// Stream markers (§7.6).
mod markers;
/// OAuth: authorize page, token, validate, revoke (§1).
mod oauth;
/// The shared set-up: a simulator on a port with the development accounts.
mod running;
/// Everything the simulator remembers.
mod state;
/// Tunnels: `https://` callbacks forwarded to local `http://` receivers.
mod tunnels;
/// Ids, timestamps, urlencoding, cursors, callback rules.
mod util;
/// The EventSub WebSocket (§6).
mod websocket;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub use chat::{ChatBadge, ChatOptions};
pub use generator::{ChatGenerator, GeneratorReport};
pub use running::{BOT_SCOPES, Endpoints, Running, STREAMER_SCOPES, run_standalone};
use state::State;

/// Configuration of the simulated Twitch application and its timings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The one registered client ID.
    pub client_id: String,
    pub client_secret: String,
    /// How browsers reach the simulator, e.g. `http://localhost:8081`.
    pub public_url: String,
    /// Registered redirect URIs; `/oauth2/authorize` requires an exact match.
    pub redirect_uris: Vec<String>,
    pub user_token_ttl: Duration,
    pub app_token_ttl: Duration,
    pub code_ttl: Duration,
    /// Per-attempt timeout for webhook deliveries.
    pub delivery_timeout: Duration,
    /// Pauses before the attempts after the first (one entry per retry).
    pub retry_delays: Vec<Duration>,
    /// Consecutive failed messages — each one counted once, after its last
    /// retry failed too — before a webhook shard (or a plain webhook
    /// subscription) is disabled: Twitch disables only after "a prolonged run
    /// of consecutive delivery failures" (§3.9, §5.7). A delivered message
    /// starts the count again.
    pub failed_messages_before_disable: u32,
    /// User ids are `first_user_id + 7·n` in creation order, so they are the
    /// same on every start. Simulators whose users share one database (tests)
    /// use different bases.
    pub first_user_id: u64,
    /// How long a created clip takes to appear in Get Clips, on the
    /// simulator's clock (§7.3: Twitch's are usually there within a few
    /// seconds, and one still missing after 15 s has failed).
    /// `POST /sim/clips/processing` changes it at run time.
    pub clip_processing_delay: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            client_id: "chatpulsesimclient0000000000000".into(),
            client_secret: "chatpulsesimsecret000000000000".into(),
            public_url: "http://localhost:8081".into(),
            redirect_uris: vec!["http://localhost:8080/auth/callback".into()],
            user_token_ttl: Duration::from_secs(4 * 3600),
            app_token_ttl: Duration::from_secs(60 * 24 * 3600),
            code_ttl: Duration::from_secs(600),
            delivery_timeout: Duration::from_secs(3),
            retry_delays: vec![Duration::from_secs(1), Duration::from_secs(2), Duration::from_secs(4)],
            failed_messages_before_disable: 10,
            first_user_id: 41_245_000,
            clip_processing_delay: Duration::from_secs(5),
        }
    }
}

/// A simulated Twitch account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimUser {
    /// Numeric, but a string — like every Twitch id.
    pub id: String,
    pub login: String,
    pub display_name: String,
}

/// A misbehaviour of Twitch's delivery that a receiver must survive
/// (twitch-protocol.md §5.5, §8.3), applied to the next notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryFault {
    /// Delivered, then delivered again with the same message id.
    Duplicate,
    /// First sent with a timestamp 11 minutes old (a replay); retries are fresh.
    Stale,
    /// First signed with the wrong secret; retries are signed correctly.
    BadSignature,
}

/// One chat message typed into a channel.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChatInput {
    pub broadcaster_user_id: String,
    /// An unknown id is registered on the fly (with `chatter_login`, or a
    /// generated login). Empty means "look the chatter up by login".
    pub chatter_user_id: String,
    pub chatter_login: Option<String>,
    pub text: String,
}

/// One webhook attempt (or a dropped message) in the delivery log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryRecord {
    /// When the attempt finished (RFC 3339, nanoseconds).
    pub at: String,
    /// `Twitch-Eventsub-Message-Id`, identical across retries.
    pub message_id: String,
    /// `notification`, `webhook_callback_verification` or `revocation`.
    pub message_type: String,
    pub subscription_type: Option<String>,
    pub subscription_id: Option<String>,
    /// The webhook URL, or `websocket:<session id>`; empty when the message
    /// was dropped before any attempt.
    pub callback: String,
    /// `Twitch-Eventsub-Message-Retry` of this attempt.
    pub attempt: u32,
    /// The HTTP status the callback answered, if it answered (`None` for WebSocket frames).
    pub status: Option<u16>,
    /// Transport error, timeout, or why the message was dropped.
    pub error: Option<String>,
}

impl DeliveryRecord {
    /// Delivered: a 2xx answer (webhooks), or a frame written to the socket
    /// (WebSocket shards: no status, no error).
    pub fn delivered(&self) -> bool {
        self.error.is_none() && self.status.is_none_or(|s| (200..300).contains(&s))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("bad request: {0}")]
    BadRequest(String),
}

/// Statuses a subscription can be revoked with (§4.4): every status but
/// `enabled` and the two of the webhook challenge.
pub const REVOCATION_STATUSES: [&str; 15] = [
    "authorization_revoked",
    "moderator_removed",
    "user_removed",
    "chat_user_banned",
    "version_removed",
    "beta_maintenance",
    "notification_failures_exceeded",
    "websocket_disconnected",
    "websocket_failed_ping_pong",
    "websocket_received_inbound_traffic",
    "websocket_connection_unused",
    "websocket_internal_error",
    "websocket_network_timeout",
    "websocket_network_error",
    "websocket_failed_to_reconnect",
];

pub(crate) struct Inner {
    config: SimConfig,
    state: Mutex<State>,
    /// Client for webhook deliveries; `None` only if it could not be built.
    http: Option<reqwest::Client>,
    /// Cancelled when [`Simulator::serve`] shuts down, to close WebSocket sessions.
    closing: CancellationToken,
    clock: clock::Clock,
}

/// The simulator; cheap to clone (all clones share one state).
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

/// The public web roots (Mozilla's, via `webpki-roots`): an `https://`
/// callback must present "a publicly trusted certificate" (§5.1).
fn delivery_roots() -> rustls::RootCertStore {
    rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() }
}

fn build_http_client(timeout: Duration) -> Option<reqwest::Client> {
    // An explicit provider keeps reqwest from needing a process-wide default.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(delivery_roots())
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .map_err(|e| tracing::error!(error = %e, "simulator: cannot build the webhook client"))
        .ok()
}

impl Simulator {
    pub fn new(config: SimConfig) -> Self {
        let http = build_http_client(config.delivery_timeout);
        let closing = CancellationToken::new();
        let state = State {
            first_user_id: config.first_user_id,
            clip_processing: state::ClipProcessing::After(config.clip_processing_delay),
            ..State::default()
        };
        let clock = clock::Clock::default();
        Self { inner: Arc::new(Inner { config, state: Mutex::new(state), http, closing, clock }) }
    }

    pub fn config(&self) -> &SimConfig {
        &self.inner.config
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn http(&self) -> Option<&reqwest::Client> {
        self.inner.http.as_ref()
    }

    pub(crate) fn closing(&self) -> CancellationToken {
        self.inner.closing.clone()
    }

    /// Every route: `/oauth2/*`, `/helix/*`, `/ws` (EventSub WebSocket), `/sim/*` and `/` (→ the chat page),
    /// and the same OAuth and Helix under the Twitch CLI's mock layout: `/auth/*`, `/mock/*` and
    /// `/eventsub/subscriptions` (twurple's `TWURPLE_MOCK_API_PORT` calls these).
    pub fn router(&self) -> Router {
        let oauth = |prefix: &str| {
            Router::new()
                .route(&format!("{prefix}/authorize"), get(oauth::authorize_page).post(oauth::authorize_decision))
                .route(&format!("{prefix}/token"), post(oauth::token))
                .route(&format!("{prefix}/validate"), get(oauth::validate))
                .route(&format!("{prefix}/revoke"), post(oauth::revoke))
        };
        Router::new()
            .nest("/helix", helix::router(self.clone()))
            .nest("/mock", helix::router(self.clone()))
            .merge(helix::subscriptions_router(self.clone()))
            .merge(oauth("/oauth2"))
            .merge(oauth("/auth"))
            .route("/ws", get(websocket::upgrade))
            .merge(control::router())
            .with_state(self.clone())
    }

    /// Serves [`Self::router`] on `listener` until `shutdown` is cancelled.
    pub async fn serve(self, listener: tokio::net::TcpListener, shutdown: CancellationToken) -> std::io::Result<()> {
        let app = self.router();
        let closing = self.closing();
        // Time-based clean-up also happens when nobody calls (§3.9's 72 hours on real time).
        let sweeper = self.clone();
        let stop_sweeping = closing.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(clock::SWEEP_EVERY);
            loop {
                tokio::select! {
                    () = stop_sweeping.cancelled() => break,
                    _ = every.tick() => sweeper.sweep(),
                }
            }
        });
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                shutdown.cancelled().await;
                closing.cancel();
            })
            .await
    }

    /// Creates a user; idempotent per login (returns the existing one).
    pub fn create_user(&self, login: &str, display_name: &str) -> SimUser {
        self.state().create_user(login, display_name, None)
    }

    pub fn user_by_login(&self, login: &str) -> Option<SimUser> {
        self.state().user_by_login(login).cloned()
    }

    pub fn user(&self, id: &str) -> Option<SimUser> {
        self.state().user(id).cloned()
    }

    pub fn users(&self) -> Vec<SimUser> {
        self.state().users_in_order()
    }

    /// Records that the user authorized our client with these scopes (added
    /// to any earlier grant), as if the consent screen had been approved.
    pub fn grant(&self, user_id: &str, scopes: &[&str]) {
        let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
        self.state().grant(&self.inner.config.client_id, user_id, &scopes);
    }

    /// Scopes the user has granted our client (empty if none).
    pub fn granted_scopes(&self, user_id: &str) -> Vec<String> {
        let key = (self.inner.config.client_id.clone(), user_id.to_owned());
        self.state().grants.get(&key).map(|s| s.iter().cloned().collect()).unwrap_or_default()
    }

    /// Makes `user_id` a moderator (or not) in `broadcaster_user_id`'s channel.
    pub fn set_moderator(&self, broadcaster_user_id: &str, user_id: &str, moderator: bool) {
        let key = (broadcaster_user_id.to_owned(), user_id.to_owned());
        let mut state = self.state();
        if moderator {
            state.moderators.insert(key);
        } else {
            state.moderators.remove(&key);
        }
    }

    /// Types a plain chat message; every enabled `channel.chat.message`
    /// subscription of the channel gets a notification. Returns the chat
    /// message id (`event.message_id`).
    pub async fn post_chat(&self, message: ChatInput) -> Result<String, SimError> {
        self.post_chat_with(message, ChatOptions::default()).await
    }

    /// [`Self::post_chat`] with badges, a colour, a reply or shared chat
    /// (§5.9). The text is split into Twitch's fragments: `@login` of a known
    /// user is a mention, `Cheer100` a cheermote (and the event's `cheer`),
    /// a few global emotes (`LUL`, `Kappa`, …) are emotes.
    #[allow(clippy::unused_async)] // async by contract: a WebSocket transport will await here
    pub async fn post_chat_with(&self, message: ChatInput, options: ChatOptions) -> Result<String, SimError> {
        if message.text.trim().is_empty() {
            return Err(SimError::BadRequest("text is required".into()));
        }
        let built = {
            let mut state = self.state();
            let broadcaster = state
                .user(&message.broadcaster_user_id)
                .cloned()
                .ok_or_else(|| SimError::NotFound(format!("broadcaster {}", message.broadcaster_user_id)))?;
            // Checked before the chatter is registered, so a refused message changes nothing.
            let checked = chat::check(&state, &broadcaster, &message.text, &options)?;
            let chatter = resolve_chatter(&mut state, &message)?;
            chat::build(&mut state, &broadcaster, &chatter, checked, &options)
        };
        for (channel, event) in &built.events {
            delivery::emit(self, "channel.chat.message", channel, event, |s| {
                s.condition_str("broadcaster_user_id") == Some(channel)
            });
        }
        Ok(built.message_id)
    }

    /// The user disconnects our app (§8.1): their tokens, refresh tokens and
    /// grant are gone, their subscriptions are revoked with
    /// `authorization_revoked`, and `user.authorization.revoke` is emitted.
    #[allow(clippy::unused_async)] // async by contract: a WebSocket transport will await here
    pub async fn disconnect_app(&self, user_id: &str) -> Result<(), SimError> {
        let client_id = self.inner.config.client_id.clone();
        let (user, revocations) = {
            let mut state = self.state();
            let user = state.user(user_id).cloned().ok_or_else(|| SimError::NotFound(format!("user {user_id}")))?;
            state.grants.remove(&(client_id.clone(), user.id.clone()));
            state.tokens.retain(|_, t| t.user_id.as_deref() != Some(&user.id));
            state.refresh_tokens.retain(|_, r| r.user_id != user.id);
            state.codes.retain(|_, c| c.user_id != user.id);
            let mut revoked = Vec::new();
            for sub in state.subscriptions.iter_mut() {
                if sub.client_id == client_id && sub.is_active() && sub.mentions_user(&user.id) {
                    sub.status = "authorization_revoked".into();
                    revoked.push(sub.clone());
                }
            }
            let revocations: Vec<_> = revoked.iter().map(|s| delivery::revocation(&mut state, s)).collect();
            (user, revocations)
        };
        for outgoing in revocations {
            delivery::spawn(self, outgoing);
        }
        let event = json!({
            "client_id": client_id, "user_id": user.id, "user_login": user.login, "user_name": user.display_name,
        });
        delivery::emit(self, "user.authorization.revoke", &user.id, &event, |s| {
            s.condition_str("client_id") == Some(&client_id)
        });
        Ok(())
    }

    /// Every subscription, in Helix shape, oldest first.
    pub fn subscriptions(&self) -> Vec<Value> {
        let state = self.state();
        let mut subs: Vec<_> = state.subscriptions.iter().collect();
        subs.sort_by_key(|s| s.seq);
        subs.iter().map(|s| s.to_json()).collect()
    }

    /// Every conduit with its shards (never secrets).
    pub fn conduits(&self) -> Vec<Value> {
        let state = self.state();
        state
            .conduits
            .iter()
            .map(|c| {
                let shards: Vec<Value> = c.shards.iter().enumerate().map(|(i, s)| s.to_json(i)).collect();
                json!({"id": c.id, "shard_count": c.shards.len(), "shards": shards})
            })
            .collect()
    }

    /// The webhook attempt log (most recent last; bounded).
    pub fn deliveries(&self) -> Vec<DeliveryRecord> {
        self.state().deliveries.iter().cloned().collect()
    }

    /// A JSON snapshot of everything, for debugging (`GET /sim/state`).
    pub fn snapshot(&self) -> Value {
        let users = self.users();
        let conduits = self.conduits();
        let subscriptions = self.subscriptions();
        let deliveries = self.deliveries();
        let sessions = self.websocket_sessions();
        let state = self.state();
        let grants: Vec<Value> = state
            .grants
            .iter()
            .map(|((client_id, user_id), scopes)| json!({"client_id": client_id, "user_id": user_id, "scopes": scopes}))
            .collect();
        let streams: Vec<Value> = state
            .streams
            .iter()
            .map(|(user_id, s)| json!({"user_id": user_id, "id": s.id, "started_at": s.started_at}))
            .collect();
        let fault = state.fault.map(|f| json!({"status": f.status, "remaining": f.remaining}));
        let token_fault = state.token_fault.map(|f| json!({"status": f.status, "remaining": f.remaining}));
        let channel_settings: Vec<Value> = state
            .channel_settings
            .iter()
            .map(|(id, s)| json!({"broadcaster_user_id": id, "clips_enabled": s.clips_enabled, "vods_enabled": s.vods_enabled}))
            .collect();
        let tunnels: Vec<Value> =
            state.tunnels.iter().map(|t| json!({"public_url": t.public_origin, "local_url": t.local_origin})).collect();
        let clip_processing = match state.clip_processing {
            state::ClipProcessing::After(delay) => json!({"delay_seconds": delay.as_secs_f64()}),
            state::ClipProcessing::Never => json!({"never": true}),
        };
        json!({
            "clock": {"now": util::rfc3339_nanos(self.now()), "offset_seconds": self.clock_offset().as_secs_f64()},
            "client_id": self.inner.config.client_id,
            "users": users,
            "grants": grants,
            "live_streams": streams,
            "conduits": conduits,
            "websocket_sessions": sessions,
            "subscriptions": subscriptions,
            "deliveries": deliveries,
            "fault": fault,
            "token_fault": token_fault,
            "active_tokens": state.tokens.len(),
            "channel_settings": channel_settings,
            "clips": state.clips.len(),
            "clip_processing": clip_processing,
            "markers": state.markers.len(),
            "tunnels": tunnels,
        })
    }
}

/// Finds (or registers) the chatting user of a message.
fn resolve_chatter(state: &mut State, message: &ChatInput) -> Result<SimUser, SimError> {
    let login = message.chatter_login.as_deref().map(str::trim).filter(|l| !l.is_empty());
    if let Some(login) = login
        && !util::valid_login(&login.to_ascii_lowercase())
    {
        return Err(SimError::BadRequest(format!("invalid chatter login {login:?}")));
    }
    let id = message.chatter_user_id.trim();
    if !id.is_empty() {
        if let Some(user) = state.user(id) {
            return Ok(user.clone());
        }
        if !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SimError::BadRequest("chatter_user_id must be numeric".into()));
        }
        let generated = format!("viewer{id}");
        let login = login.map_or(generated, str::to_owned);
        if state.user_by_login(&login).is_some() {
            return Err(SimError::BadRequest(format!("login {login} belongs to another user id")));
        }
        return Ok(state.create_user(&login, &login, Some(id)));
    }
    match login {
        Some(login) => Ok(state.create_user(login, login, None)),
        None => Err(SimError::BadRequest("chatter_user_id or chatter_login is required".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_callbacks_are_checked_against_the_public_roots() {
        // An empty store would make every https:// delivery fail (§5.1).
        let roots = delivery_roots();
        assert!(roots.len() > 100, "{} roots", roots.len());
        let subjects: Vec<String> =
            roots.roots.iter().map(|r| String::from_utf8_lossy(r.subject.as_ref()).into_owned()).collect();
        assert!(subjects.iter().any(|s| s.contains("ISRG Root X1")), "Let's Encrypt's root is trusted");
        assert!(Simulator::new(SimConfig::default()).http().is_some(), "the delivery client builds");
    }
}
