//! Everything the simulated Twitch remembers. One `Mutex<State>` guards it all;
//! it is never held across an `.await`.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::Instant;

use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::websocket::WsSession;
use super::{DeliveryRecord, SimUser};

/// Most deliveries kept in the log.
pub(crate) const DELIVERY_LOG_LIMIT: usize = 5_000;
/// Subscription budget for app-token (webhook / conduit) subscriptions.
pub(crate) const MAX_TOTAL_COST: u64 = 10_000;
/// Plain WebSocket subscriptions (§4.5): the budget of one user of the client,
/// the enabled subscriptions one session may hold, and the sessions with
/// enabled subscriptions one user of the client may have.
pub(crate) const WEBSOCKET_MAX_TOTAL_COST: u64 = 10;
pub(crate) const WEBSOCKET_SUBSCRIPTIONS_PER_SESSION: usize = 300;
pub(crate) const WEBSOCKET_SESSIONS_PER_USER: usize = 3;
pub(crate) const MAX_CONDUITS: usize = 5;
pub(crate) const MAX_SHARDS: u64 = 20_000;
/// Helix bucket size and refill per minute.
pub(crate) const BUCKET_SIZE: f64 = 800.0;

#[derive(Debug, Clone)]
pub(crate) struct AccessToken {
    pub client_id: String,
    /// `None` for app access tokens.
    pub user_id: Option<String>,
    pub scopes: Vec<String>,
    /// On the simulator's clock.
    pub expires_at: OffsetDateTime,
}

#[derive(Debug, Clone)]
pub(crate) struct RefreshGrant {
    pub client_id: String,
    pub user_id: String,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct AuthCode {
    pub client_id: String,
    pub redirect_uri: String,
    pub user_id: String,
    pub scopes: Vec<String>,
    /// On the simulator's clock.
    pub expires_at: OffsetDateTime,
}

/// How a conduit shard is bound. New shards are unbound until Update Conduit Shards.
#[derive(Debug, Clone)]
pub(crate) enum ShardTransport {
    Unbound,
    Webhook {
        callback: String,
        secret: String,
    },
    /// Bound to an EventSub WebSocket session (§6).
    WebSocket {
        session_id: String,
        connected_at: String,
        disconnected_at: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Shard {
    pub status: String,
    pub transport: ShardTransport,
    /// Consecutive failed messages (each after all its retries).
    pub failures: u32,
    /// Bumped on every re-binding, so a late challenge answer cannot flip a newer binding.
    pub generation: u64,
}

impl Shard {
    pub(crate) fn unbound() -> Self {
        // Twitch documents no status for a shard that was never bound; the
        // simulator reports it as a disconnected WebSocket shard with no session.
        Self { status: "websocket_disconnected".into(), transport: ShardTransport::Unbound, failures: 0, generation: 0 }
    }

    /// The shard's `transport` object as Helix shows it (never the secret).
    pub(crate) fn transport_json(&self) -> Value {
        match &self.transport {
            ShardTransport::Unbound => {
                json!({"method": "websocket", "session_id": "", "connected_at": null, "disconnected_at": null})
            }
            ShardTransport::Webhook { callback, .. } => json!({"method": "webhook", "callback": callback}),
            ShardTransport::WebSocket { session_id, connected_at, disconnected_at } => json!({
                "method": "websocket", "session_id": session_id, "connected_at": connected_at,
                "disconnected_at": disconnected_at,
            }),
        }
    }

    pub(crate) fn to_json(&self, index: usize) -> Value {
        json!({"id": index.to_string(), "status": self.status, "transport": self.transport_json()})
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Conduit {
    pub id: String,
    pub client_id: String,
    pub shards: Vec<Shard>,
    /// Since when no shard has been `enabled` (`None` while one is); after
    /// 72 hours the conduit is deleted (§3.9). Kept by `clock::sweep`.
    pub no_enabled_shard_since: Option<OffsetDateTime>,
}

impl Conduit {
    pub(crate) fn to_json(&self) -> Value {
        json!({"id": self.id, "shard_count": self.shards.len()})
    }
}

#[derive(Debug, Clone)]
pub(crate) enum SubTransport {
    Conduit {
        conduit_id: String,
    },
    Webhook {
        callback: String,
        secret: String,
    },
    /// A plain WebSocket subscription (§6, user token): bound to one
    /// session, and moved to the new session by a reconnect (§6.5).
    WebSocket {
        session_id: String,
        /// The user whose token created it: it is theirs to list and delete.
        user_id: String,
        connected_at: String,
        /// Set when the session ended.
        disconnected_at: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Subscription {
    pub id: String,
    pub client_id: String,
    pub status: String,
    pub kind: String,
    pub version: String,
    pub condition: Map<String, Value>,
    pub created_at: String,
    pub transport: SubTransport,
    pub cost: u64,
    /// Creation order: Get EventSub Subscriptions is sorted oldest first.
    pub seq: u64,
    /// Consecutive failed notifications, each after all its retries (plain webhooks).
    pub failures: u32,
    /// When a plain WebSocket subscription lost its session; it is deleted a
    /// minute later (§4.2).
    pub disabled_at: Option<OffsetDateTime>,
}

impl SubTransport {
    /// `transport.method` as Helix shows it.
    pub(crate) fn method(&self) -> &'static str {
        match self {
            SubTransport::Conduit { .. } => "conduit",
            SubTransport::Webhook { .. } => "webhook",
            SubTransport::WebSocket { .. } => "websocket",
        }
    }
}

impl Subscription {
    pub(crate) fn transport_json(&self) -> Value {
        match &self.transport {
            SubTransport::Conduit { conduit_id } => json!({"method": "conduit", "conduit_id": conduit_id}),
            SubTransport::Webhook { callback, .. } => json!({"method": "webhook", "callback": callback}),
            SubTransport::WebSocket { session_id, connected_at, disconnected_at, .. } => {
                let mut transport =
                    json!({"method": "websocket", "session_id": session_id, "connected_at": connected_at});
                if let (Some(at), Some(object)) = (disconnected_at, transport.as_object_mut()) {
                    object.insert("disconnected_at".into(), json!(at));
                }
                transport
            }
        }
    }

    /// The subscription object exactly as Helix and EventSub bodies show it.
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "status": self.status,
            "type": self.kind,
            "version": self.version,
            "condition": self.condition,
            "transport": self.transport_json(),
            "created_at": self.created_at,
            "cost": self.cost,
        })
    }

    /// Whether any `*user_id` field of the condition names `user_id`.
    pub(crate) fn mentions_user(&self, user_id: &str) -> bool {
        self.condition.iter().any(|(k, v)| k.ends_with("user_id") && v.as_str() == Some(user_id))
    }

    pub(crate) fn condition_str(&self, key: &str) -> Option<&str> {
        self.condition.get(key).and_then(Value::as_str)
    }

    /// Subscriptions that count against the budget and block duplicates.
    pub(crate) fn is_active(&self) -> bool {
        self.status == "enabled" || self.status == "webhook_callback_verification_pending"
    }

    /// The user whose token owns a plain WebSocket subscription; `None` for
    /// the app's own (webhook and conduit) subscriptions.
    pub(crate) fn websocket_owner(&self) -> Option<&str> {
        match &self.transport {
            SubTransport::WebSocket { user_id, .. } => Some(user_id),
            _ => None,
        }
    }

    pub(crate) fn session_id(&self) -> Option<&str> {
        match &self.transport {
            SubTransport::WebSocket { session_id, .. } => Some(session_id),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct LiveStream {
    pub id: String,
    /// Helix style (whole seconds).
    pub started_at: String,
    pub started: OffsetDateTime,
    pub title: String,
    /// The past broadcast (VOD) being recorded, if the channel stores them.
    pub video_id: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Clip {
    pub id: String,
    pub broadcaster_id: String,
    pub creator_id: String,
    pub title: String,
    pub duration: f64,
    pub created_at: String,
    pub created: OffsetDateTime,
    /// When Get Clips starts returning it; `None`: never (a failed clip, §7.3).
    pub ready_at: Option<OffsetDateTime>,
    /// The VOD it was cut from (`""` without one) and its start in it.
    pub video_id: String,
    pub vod_offset: Option<u64>,
    pub is_featured: bool,
}

/// How long clips take to appear in Get Clips (§7.3). `Simulator::new`
/// sets it from `SimConfig::clip_processing_delay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum ClipProcessing {
    /// Visible once this long has passed on the simulator's clock.
    After(std::time::Duration),
    /// Never visible: creation failed after the 202.
    #[default]
    Never,
}

/// What a broadcaster has set up for their channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChannelSettings {
    /// Clips are allowed (else Create Clip answers 403, §7.4).
    pub clips_enabled: bool,
    /// Past broadcasts are stored (else Create Stream Marker answers 404, §7.6).
    pub vods_enabled: bool,
}

impl Default for ChannelSettings {
    fn default() -> Self {
        Self { clips_enabled: true, vods_enabled: true }
    }
}

/// A past broadcast, recorded while a channel with VODs on is live.
#[derive(Debug, Clone)]
pub(crate) struct Video {
    pub id: String,
    pub user_id: String,
}

/// A stream marker (§7.6).
#[derive(Debug, Clone)]
pub(crate) struct Marker {
    pub id: String,
    pub video_id: String,
    pub created_at: String,
    pub position_seconds: u64,
    pub description: String,
}

/// An `https://` origin that Twitch would call, forwarded to a local
/// `http://` address — what a tunnel (ngrok and the like) does for a
/// webhook receiver on a development machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tunnel {
    /// `https://host` (port 443), lower-case host.
    pub public_origin: String,
    /// `http://127.0.0.1:port`, no trailing slash.
    pub local_origin: String,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Bucket {
    pub tokens: f64,
    pub updated: Instant,
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * BUCKET_SIZE / 60.0).min(BUCKET_SIZE);
        self.updated = now;
    }

    /// Seconds until the bucket is full again.
    pub(crate) fn seconds_to_full(&self) -> u64 {
        let missing = (BUCKET_SIZE - self.tokens).max(0.0);
        // Bounded by 60 s, so the conversion cannot truncate meaningfully.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let seconds = (missing * 60.0 / BUCKET_SIZE).ceil() as u64;
        seconds
    }

    pub(crate) fn remaining(&self) -> u64 {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let remaining = self.tokens.max(0.0).floor() as u64;
        remaining
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Fault {
    pub status: u16,
    pub remaining: u32,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub users: HashMap<String, SimUser>,
    pub logins: HashMap<String, String>,
    pub user_order: Vec<String>,
    pub next_user: u64,
    /// Base of generated user ids (see `SimConfig::first_user_id`).
    pub first_user_id: u64,
    /// (client id, user id) → every scope the user ever granted the client.
    pub grants: HashMap<(String, String), BTreeSet<String>>,
    /// Users who are moderators in a channel: (broadcaster id, user id).
    pub moderators: HashSet<(String, String)>,
    pub tokens: HashMap<String, AccessToken>,
    pub refresh_tokens: HashMap<String, RefreshGrant>,
    pub codes: HashMap<String, AuthCode>,
    pub conduits: Vec<Conduit>,
    pub subscriptions: Vec<Subscription>,
    pub next_seq: u64,
    pub streams: HashMap<String, LiveStream>,
    pub next_stream: u64,
    pub clips: Vec<Clip>,
    pub buckets: HashMap<(String, Option<String>), Bucket>,
    pub fault: Option<Fault>,
    /// The fault switch of `/oauth2/token` (refresh, code exchange, app tokens).
    pub token_fault: Option<Fault>,
    /// Faults applied to the next webhook notifications, one each.
    pub delivery_faults: std::collections::VecDeque<super::DeliveryFault>,
    pub deliveries: VecDeque<DeliveryRecord>,
    /// Counts outgoing EventSub messages (every 7th carries an unknown field).
    pub messages: u64,
    /// Connected EventSub WebSocket sessions by id.
    pub sessions: HashMap<String, WsSession>,
    /// Recent chat messages (bounded), so that a message can reply to one.
    pub chat_log: VecDeque<super::chat::ChatRecord>,
    /// Channel settings by broadcaster id (absent: the defaults).
    pub channel_settings: HashMap<String, ChannelSettings>,
    /// The broadcaster's editors: (broadcaster id, user id).
    pub editors: HashSet<(String, String)>,
    /// Users banned from a channel: (broadcaster id, user id).
    pub bans: HashSet<(String, String)>,
    pub videos: Vec<Video>,
    pub next_video: u64,
    /// Stream markers, oldest first.
    pub markers: Vec<Marker>,
    /// How clips created from now on are processed.
    pub clip_processing: ClipProcessing,
    pub tunnels: Vec<Tunnel>,
}

impl State {
    pub(crate) fn user(&self, id: &str) -> Option<&SimUser> {
        self.users.get(id)
    }

    pub(crate) fn user_by_login(&self, login: &str) -> Option<&SimUser> {
        self.logins.get(&login.to_ascii_lowercase()).and_then(|id| self.users.get(id))
    }

    /// Creates a user (or returns the existing one with this login).
    pub(crate) fn create_user(&mut self, login: &str, display_name: &str, id: Option<&str>) -> SimUser {
        let login = login.trim().to_ascii_lowercase();
        if let Some(existing) = self.user_by_login(&login) {
            return existing.clone();
        }
        let id = match id {
            Some(id) if !id.is_empty() && !self.users.contains_key(id) => id.to_owned(),
            _ => loop {
                self.next_user += 1;
                let candidate = (self.first_user_id + self.next_user * 7).to_string();
                if !self.users.contains_key(&candidate) {
                    break candidate;
                }
            },
        };
        let display_name = if display_name.trim().is_empty() { login.clone() } else { display_name.trim().to_owned() };
        let user = SimUser { id: id.clone(), login: login.clone(), display_name };
        self.users.insert(id.clone(), user.clone());
        self.logins.insert(login, id.clone());
        self.user_order.push(id);
        user
    }

    pub(crate) fn users_in_order(&self) -> Vec<SimUser> {
        self.user_order.iter().filter_map(|id| self.users.get(id)).cloned().collect()
    }

    pub(crate) fn grant(&mut self, client_id: &str, user_id: &str, scopes: &[String]) {
        let entry = self.grants.entry((client_id.to_owned(), user_id.to_owned())).or_default();
        entry.extend(scopes.iter().filter(|s| !s.is_empty()).cloned());
    }

    pub(crate) fn has_scope(&self, client_id: &str, user_id: &str, scope: &str) -> bool {
        self.grants.get(&(client_id.to_owned(), user_id.to_owned())).is_some_and(|s| s.contains(scope))
    }

    pub(crate) fn has_any_grant(&self, client_id: &str, user_id: &str) -> bool {
        self.grants.contains_key(&(client_id.to_owned(), user_id.to_owned()))
    }

    pub(crate) fn conduit(&self, client_id: &str, id: &str) -> Option<&Conduit> {
        self.conduits.iter().find(|c| c.id == id && c.client_id == client_id)
    }

    pub(crate) fn conduit_mut(&mut self, client_id: &str, id: &str) -> Option<&mut Conduit> {
        self.conduits.iter_mut().find(|c| c.id == id && c.client_id == client_id)
    }

    /// Takes `cost` points from a bucket; returns (allowed, remaining, reset epoch seconds).
    pub(crate) fn take_points(&mut self, key: (String, Option<String>), cost: f64, now_epoch: u64) -> (bool, u64, u64) {
        let now = Instant::now();
        let bucket = self.buckets.entry(key).or_insert(Bucket { tokens: BUCKET_SIZE, updated: now });
        bucket.refill(now);
        let allowed = bucket.tokens >= cost;
        if allowed {
            bucket.tokens -= cost;
        }
        (allowed, bucket.remaining(), now_epoch + bucket.seconds_to_full())
    }

    pub(crate) fn log_delivery(&mut self, record: DeliveryRecord) {
        if self.deliveries.len() >= DELIVERY_LOG_LIMIT {
            self.deliveries.pop_front();
        }
        self.deliveries.push_back(record);
    }

    /// Sum of costs of the active subscriptions of `owner`: the client's
    /// app (`None`: webhook and conduit subscriptions) or one of its users
    /// (plain WebSocket subscriptions) — two separate budgets (§4.5).
    pub(crate) fn total_cost(&self, client_id: &str, owner: Option<&str>) -> u64 {
        self.owned_by(client_id, owner).filter(|s| s.is_active()).map(|s| s.cost).sum()
    }

    /// How many subscriptions `owner` has (any status).
    pub(crate) fn total(&self, client_id: &str, owner: Option<&str>) -> usize {
        self.owned_by(client_id, owner).count()
    }

    pub(crate) fn owned_by<'a>(
        &'a self,
        client_id: &'a str,
        owner: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Subscription> + 'a {
        self.subscriptions.iter().filter(move |s| s.client_id == client_id && s.websocket_owner() == owner)
    }

    pub(crate) fn channel_settings(&self, broadcaster_id: &str) -> ChannelSettings {
        self.channel_settings.get(broadcaster_id).copied().unwrap_or_default()
    }
}
