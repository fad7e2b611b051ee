//! The EventSub lifecycle (twitch-protocol.md §3–§6): our conduit and its
//! shard, the subscriptions that follow sessions, the two app-wide alarms,
//! reconciliation with Twitch, and shard repair.
//!
//! Who does what:
//! - **Every instance** learns the conduit id (remembered in the durable
//!   store, checked against Twitch) and, when a session activates here,
//!   ensures that channel's three subscriptions; when the last lease of a
//!   session is released here, it deletes them.
//! - **The leader** (one instance at a time, elected on the live store's
//!   `cleanup:leader` key) creates the conduit if there is none, binds
//!   shard 0 (our webhook, or a WebSocket session it holds open), keeps the
//!   `user.authorization.revoke` and `conduit.shard.disabled` webhooks, and
//!   reconciles everything with Twitch at start-up and every 10 minutes.
//!
//! Helix calls follow the client's policy ([`crate::twitch::retry`]): what
//! comes back here is final.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::leader::{Leadership, Lease};
use crate::config::EventSubTransport;
use crate::domain::{BroadcasterId, StreamerId};
use crate::metrics::Metrics;
use crate::store::{LiveStore, Repository, SubscriptionRecord};
use crate::twitch::client::{Subscription, Totals, TwitchClient, TwitchError};
use crate::twitch::eventsub::{
    CHANNEL_CHAT_MESSAGE, CONDUIT_SHARD_DISABLED, STREAM_OFFLINE, STREAM_ONLINE, USER_AUTHORIZATION_REVOKE,
};
use crate::twitch::eventsub_ws::{self, WsEvent, WsSettings};

/// Types subscribed per channel on the conduit.
pub const CHANNEL_TYPES: [&str; 3] = [CHANNEL_CHAT_MESSAGE, STREAM_ONLINE, STREAM_OFFLINE];

/// Revocation reasons after which the chat subscription is not re-created
/// automatically (§5.8): the streamer has to act, then log in again.
pub const BLOCKING_REASONS: [&str; 2] = ["chat_user_banned", "moderator_removed"];

/// How a channel whose chat subscription is blocked is reported.
const BLOCKED: &str = "Twitch revoked the chat subscription";

/// Status of a subscription record while Twitch has it enabled.
const ENABLED: &str = "enabled";

/// How the EventSub manager behaves; from [`crate::config::Config`].
#[derive(Debug, Clone)]
pub struct EventSubSettings {
    pub transport: EventSubTransport,
    pub callback_url: String,
    pub secret: String,
    pub bot_user_id: String,
    pub ws_url: String,
    pub instance_id: String,
    pub leader_key: String,
    pub leader_ttl: Duration,
    pub leader_renew: Duration,
    pub reconcile_interval: Duration,
    pub shard_verify_timeout: Duration,
}

/// One EventSub message that arrived over the WebSocket shard, for the same
/// handling as a webhook delivery.
#[derive(Debug)]
pub struct Inbound {
    pub message_id: String,
    pub message_type: String,
    pub subscription_type: Option<String>,
    pub payload: String,
}

/// What `/health/ready` shows about EventSub (it never fails readiness:
/// overlays work without it).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct EventSubStatus {
    pub transport: &'static str,
    pub leader: bool,
    pub conduit_id: Option<String>,
    /// Shard 0 is bound and enabled (as far as this instance knows: the
    /// leader binds and checks it).
    pub shard_ready: bool,
    /// The leader finished its set-up (conduit, shard, alarms); on other
    /// instances, the conduit is known.
    pub set_up: bool,
    /// The last set-up or repair problem, cleared on success.
    pub last_error: Option<String>,
}

/// What one reconciliation changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Repairs {
    pub kept: u64,
    pub missing: u64,
    pub duplicate: u64,
    pub orphan: u64,
    pub not_enabled: u64,
    pub stale_record: u64,
    pub failed: u64,
}

pub struct EventSub {
    client: Arc<TwitchClient>,
    repo: Arc<dyn Repository>,
    live: Arc<dyn LiveStore>,
    metrics: Metrics,
    settings: EventSubSettings,
    conduit: watch::Sender<Option<String>>,
    shard_ready: AtomicBool,
    set_up: AtomicBool,
    leading: AtomicBool,
    last_error: Mutex<Option<String>>,
    /// Outcome of the last attempt to subscribe each channel here (dashboard).
    channels: Mutex<HashMap<BroadcasterId, Result<(), String>>>,
    /// The EventSub WebSocket session this instance holds and bound to
    /// shard 0 (WebSocket transport, leader only).
    ws_session: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn channel_condition(kind: &str, broadcaster: &BroadcasterId, bot: &str) -> Value {
    if kind == CHANNEL_CHAT_MESSAGE {
        json!({ "broadcaster_user_id": broadcaster.as_str(), "user_id": bot })
    } else {
        json!({ "broadcaster_user_id": broadcaster.as_str() })
    }
}

/// A short, bounded label for a Helix failure.
fn failure_label(e: &TwitchError) -> &'static str {
    match e.status() {
        Some(429) => "rate_limited",
        _ if e.is_transient() => "transient",
        _ => "rejected",
    }
}

/// What the dashboard says about a failed subscription.
fn explain(e: &TwitchError) -> String {
    match e {
        TwitchError::Status { status: 403, message, .. } if message.starts_with(BLOCKED) => message.clone(),
        _ => explain_status(e),
    }
}

fn explain_status(e: &TwitchError) -> String {
    match e.status() {
        Some(403) => "Twitch says the channel has not granted access to the bot (channel:bot), \
                      or the bot is not authorized"
            .to_owned(),
        _ => e.to_string(),
    }
}

impl EventSub {
    pub fn new(
        client: Arc<TwitchClient>,
        repo: Arc<dyn Repository>,
        live: Arc<dyn LiveStore>,
        metrics: Metrics,
        settings: EventSubSettings,
    ) -> Self {
        Self {
            client,
            repo,
            live,
            metrics,
            settings,
            conduit: watch::channel(None).0,
            shard_ready: AtomicBool::new(false),
            set_up: AtomicBool::new(false),
            leading: AtomicBool::new(false),
            last_error: Mutex::new(None),
            channels: Mutex::new(HashMap::new()),
            ws_session: Mutex::new(None),
        }
    }

    pub fn client(&self) -> &TwitchClient {
        &self.client
    }

    pub fn conduit_id(&self) -> Option<String> {
        self.conduit.borrow().clone()
    }

    pub fn is_leader(&self) -> bool {
        self.leading.load(Ordering::Acquire)
    }

    pub fn status(&self) -> EventSubStatus {
        EventSubStatus {
            transport: match self.settings.transport {
                EventSubTransport::Webhook => "webhook",
                EventSubTransport::WebSocket => "websocket",
            },
            leader: self.is_leader(),
            conduit_id: self.conduit_id(),
            shard_ready: self.shard_ready.load(Ordering::Acquire),
            set_up: self.set_up.load(Ordering::Acquire),
            last_error: lock(&self.last_error).clone(),
        }
    }

    fn set_error(&self, error: Option<String>) {
        *lock(&self.last_error) = error;
    }

    fn set_conduit(&self, id: &str) {
        self.conduit.send_if_modified(|current| {
            let changed = current.as_deref() != Some(id);
            if changed {
                *current = Some(id.to_owned());
            }
            changed
        });
    }

    fn set_shard_ready(&self, ready: bool) {
        self.shard_ready.store(ready, Ordering::Release);
        self.metrics.eventsub_ready.set(i64::from(ready));
    }

    // --- Conduit and shard ----------------------------------------------------

    /// Finds our conduit: the remembered one if Twitch still has it, else the
    /// first Twitch lists; creates one only when `create` (the leader).
    async fn find_conduit(&self, create: bool) -> anyhow::Result<String> {
        let client_id = self.client.client_id();
        let remembered = match self.repo.conduit(client_id).await {
            Ok(id) => id,
            Err(e) => {
                self.metrics.durable_error("conduit");
                tracing::warn!(error = %e, "cannot read the remembered conduit; asking Twitch");
                None
            }
        };
        let conduits = self.client.conduits().await?;
        let known = remembered.clone().filter(|id| conduits.iter().any(|c| &c.id == id));
        let id = match known.or_else(|| conduits.first().map(|c| c.id.clone())) {
            Some(id) => id,
            None if create => {
                let conduit = self.client.create_conduit(1).await?;
                tracing::info!(conduit_id = %conduit.id, "EventSub conduit created");
                conduit.id
            }
            None => anyhow::bail!("no conduit yet (the leader creates it)"),
        };
        if remembered.as_deref() != Some(id.as_str())
            && let Err(e) = self.repo.save_conduit(client_id, &id).await
        {
            self.metrics.durable_error("save_conduit");
            tracing::warn!(error = %e, "cannot remember the conduit");
        }
        self.set_conduit(&id);
        Ok(id)
    }

    /// What shard 0 is bound with, as stored: a SHA-256 over the callback
    /// and the secret (Twitch never returns a shard's secret, so this is how
    /// a changed `WEBHOOK_SECRET` is noticed). The secret itself is never
    /// stored.
    fn shard_fingerprint(&self) -> String {
        use sha2::Digest;
        let mut hash = sha2::Sha256::new();
        hash.update(b"chatpulse shard 0\0");
        hash.update(self.settings.callback_url.as_bytes());
        hash.update(b"\0");
        hash.update(self.settings.secret.as_bytes());
        hex::encode(hash.finalize())
    }

    /// Points shard 0 at our webhook (unless it already is, enabled, with
    /// our current secret) and waits until Twitch has verified it through
    /// our own endpoint. `Ok(true)`: it was (re-)bound because the secret it
    /// had is not known to be ours.
    async fn bind_webhook_shard(&self, conduit: &str) -> anyhow::Result<bool> {
        let callback = self.settings.callback_url.as_str();
        let ours = |shards: &[crate::twitch::client::Shard]| {
            shards
                .iter()
                .any(|s| s.id == "0" && s.status == ENABLED && s.transport.callback.as_deref() == Some(callback))
        };
        let fingerprint = self.shard_fingerprint();
        let client_id = self.client.client_id();
        // Unreadable counts as unknown: re-binding is harmless, a stale
        // secret is not.
        let same_secret = self.repo.shard_fingerprint(client_id).await.ok().flatten().as_deref() == Some(&fingerprint);
        if same_secret && ours(&self.client.shards(conduit).await?) {
            self.set_shard_ready(true);
            return Ok(false);
        }
        if !same_secret {
            tracing::info!(conduit_id = %conduit, "binding shard 0 with this deployment's callback and secret");
        }
        self.set_shard_ready(false);
        let update = self.client.update_webhook_shard(conduit, "0", callback, &self.settings.secret).await?;
        if let Some(e) = update.errors.first() {
            anyhow::bail!("Twitch refused shard {}: {} ({})", e.id, e.message, e.code);
        }
        let deadline = tokio::time::Instant::now() + self.settings.shard_verify_timeout;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let shards = self.client.shards(conduit).await?;
            if ours(&shards) {
                tracing::info!(conduit_id = %conduit, callback, "webhook shard enabled");
                self.set_shard_ready(true);
                if let Err(e) = self.repo.save_shard_fingerprint(client_id, &fingerprint).await {
                    // Next set-up binds once more; nothing worse.
                    self.metrics.durable_error("save_shard_fingerprint");
                    tracing::warn!(error = %e, "cannot record what shard 0 is bound with");
                }
                return Ok(!same_secret);
            }
            if shards.iter().any(|s| s.id == "0" && s.status == "webhook_callback_verification_failed") {
                anyhow::bail!("Twitch could not verify {callback} (did it answer the challenge?)");
            }
        }
        anyhow::bail!("shard 0 was not enabled; can Twitch reach {callback}?")
    }

    /// Binds shard 0 to a WebSocket session we hold.
    async fn bind_websocket_shard(&self, conduit: &str, session_id: &str) -> anyhow::Result<()> {
        let update = self.client.update_websocket_shard(conduit, "0", session_id).await?;
        if let Some(e) = update.errors.first() {
            anyhow::bail!("Twitch refused shard {}: {} ({})", e.id, e.message, e.code);
        }
        tracing::info!(conduit_id = %conduit, "WebSocket shard bound");
        self.set_shard_ready(true);
        Ok(())
    }

    /// The leader's set-up: the conduit, the webhook shard and the app-wide
    /// alarms (webhook transport; the WebSocket holder binds its own shard).
    async fn set_up(&self) -> anyhow::Result<String> {
        let conduit = self.find_conduit(true).await?;
        if self.settings.transport == EventSubTransport::Webhook {
            if self.bind_webhook_shard(&conduit).await? {
                // The alarms are plain webhooks with a secret of their own:
                // ones made with another secret would fail our signature check.
                self.drop_app_subscriptions(&conduit).await;
            }
            self.ensure_app_subscriptions(&conduit).await;
        }
        Ok(conduit)
    }

    /// Waits (bounded) until the conduit id is known.
    async fn wait_conduit(&self, limit: Duration) -> Result<String, TwitchError> {
        let mut rx = self.conduit.subscribe();
        let found = tokio::time::timeout(limit, rx.wait_for(Option::is_some)).await;
        match found {
            Ok(Ok(id)) => id.clone().ok_or_else(|| TwitchError::Transport("no conduit".into())),
            _ => Err(TwitchError::Transport("the EventSub conduit is not set up yet".into())),
        }
    }

    // --- Running --------------------------------------------------------------

    /// Runs until shutdown: learns the conduit, competes for leadership and,
    /// while leading, does the leader's duties. `inbound` receives what the
    /// WebSocket shard delivers.
    pub async fn run(self: Arc<Self>, inbound: mpsc::Sender<Inbound>, shutdown: CancellationToken) {
        let discover = tokio::spawn(Arc::clone(&self).discover(shutdown.child_token()));
        let lease = Lease {
            key: self.settings.leader_key.clone(),
            instance: self.settings.instance_id.clone(),
            ttl: self.settings.leader_ttl,
            renew: self.settings.leader_renew,
        };
        let leadership = Leadership::new(Arc::clone(&self.live), self.metrics.clone(), lease);
        let on_change = |leads: bool| {
            let me = &self.settings.instance_id;
            if leads {
                tracing::info!(instance = %me, "this instance is now the leader");
            } else {
                tracing::warn!(instance = %me, "this instance is no longer the leader");
            }
            self.leading.store(leads, Ordering::Release);
            self.metrics.leader.set(i64::from(leads));
        };
        let duties = |token| Arc::clone(&self).lead(inbound.clone(), token);
        leadership.run_while_leading(shutdown, on_change, duties).await;
        discover.abort();
    }

    /// Every instance: learns the conduit id the leader set up, and keeps
    /// following it (every `reconcile_interval / 10`, 1 s to 1 min
    /// apart): a leader that had to replace a lost conduit remembers the new
    /// one, and the others must subscribe channels on that one.
    async fn discover(self: Arc<Self>, shutdown: CancellationToken) {
        let mut delay = Duration::from_millis(200);
        let follow = (self.settings.reconcile_interval / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
        loop {
            if !self.is_leader() {
                let before = self.conduit_id();
                match self.find_conduit(false).await {
                    Ok(id) => {
                        self.set_up.store(true, Ordering::Release);
                        if before.is_some_and(|b| b != id) {
                            tracing::warn!(conduit_id = %id, "the leader moved EventSub to another conduit");
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "conduit not known yet"),
                }
            }
            let pause = if self.conduit_id().is_some() { follow } else { delay };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(10));
        }
    }

    /// The leader's duties until `token` is cancelled: set-up with backoff,
    /// the WebSocket shard (if that is the transport), and a shard check plus
    /// reconciliation at once and every interval.
    async fn lead(self: Arc<Self>, inbound: mpsc::Sender<Inbound>, token: CancellationToken) {
        let mut delay = Duration::from_millis(500);
        let conduit = loop {
            match self.set_up().await {
                Ok(conduit) => {
                    self.set_error(None);
                    self.set_up.store(true, Ordering::Release);
                    tracing::info!(conduit_id = %conduit, "EventSub conduit ready");
                    break conduit;
                }
                Err(e) => {
                    self.metrics.eventsub_setup_failures.inc();
                    self.set_error(Some(e.to_string()));
                    tracing::warn!(error = %e, retry_in = ?delay, "EventSub set-up failed");
                }
            }
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(60));
        };
        if self.settings.transport == EventSubTransport::WebSocket {
            tokio::spawn(Arc::clone(&self).hold_websocket(conduit.clone(), inbound, token.child_token()));
        }
        let mut ticker = tokio::time::interval(self.settings.reconcile_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = ticker.tick() => {
                    let conduit = self.conduit_id().unwrap_or_else(|| conduit.clone());
                    self.check_shard(&conduit).await;
                    let _ = self.reconcile().await;
                }
            }
        }
    }

    /// The leader checks shard 0 and re-binds it if it is not enabled with
    /// our webhook (or our WebSocket session). A conduit Twitch no longer
    /// has (it deletes one whose shards stayed disabled for 72 h) is
    /// replaced at once; reconciliation then subscribes the channels on it.
    async fn check_shard(&self, conduit: &str) {
        let result = match self.bind_our_shard(conduit).await {
            Err(e) if matches!(e.downcast_ref::<TwitchError>(), Some(TwitchError::Status { status: 404, .. })) => {
                tracing::error!(conduit_id = %conduit, "our EventSub conduit is gone; setting up another");
                match self.find_conduit(true).await {
                    Ok(new) => self.bind_our_shard(&new).await,
                    Err(e) => Err(e),
                }
            }
            other => other,
        };
        match result {
            Ok(()) => self.set_error(None),
            Err(e) => {
                self.metrics
                    .eventsub_shard_repairs
                    .get_or_create(&crate::metrics::OutcomeLabels { outcome: "failed" })
                    .inc();
                self.set_error(Some(e.to_string()));
                tracing::error!(error = %e, "EventSub shard is not enabled and could not be re-assigned");
            }
        }
    }

    /// Shard 0 bound to this deployment's transport: the webhook (with the
    /// alarms renewed if the secret changed), or the WebSocket session held
    /// here (none held: the holder binds on its next connect).
    async fn bind_our_shard(&self, conduit: &str) -> anyhow::Result<()> {
        match self.settings.transport {
            EventSubTransport::Webhook => {
                if self.bind_webhook_shard(conduit).await? {
                    self.drop_app_subscriptions(conduit).await;
                    self.ensure_app_subscriptions(conduit).await;
                }
                Ok(())
            }
            EventSubTransport::WebSocket => {
                let Some(session) = lock(&self.ws_session).clone() else { return Ok(()) };
                let shards = self.client.shards(conduit).await?;
                let bound = shards.iter().any(|s| {
                    s.id == "0" && s.status == ENABLED && s.transport.session_id.as_deref() == Some(session.as_str())
                });
                if bound {
                    return Ok(());
                }
                tracing::warn!(conduit_id = %conduit, "shard 0 is not bound to our WebSocket session; binding it");
                self.bind_websocket_shard(conduit, &session).await
            }
        }
    }

    /// `conduit.shard.disabled` for one of our shards: alert. Returns whether
    /// it was about our conduit (then the caller starts [`Self::repair_shard`]).
    pub fn shard_disabled(&self, conduit_id: &str, shard_id: &str, status: &str) -> bool {
        if self.conduit_id().as_deref() != Some(conduit_id) {
            return false;
        }
        self.metrics.eventsub_shard_disabled.inc();
        self.set_shard_ready(false);
        tracing::error!(conduit_id, shard_id, status, "Twitch disabled our EventSub shard; re-assigning it");
        true
    }

    /// Re-assigns a disabled shard now (any instance may; the leader also
    /// does it on its next check).
    pub async fn repair_shard(&self) {
        let Some(conduit) = self.conduit_id() else { return };
        if self.settings.transport != EventSubTransport::Webhook {
            return;
        }
        let outcome = match self.bind_webhook_shard(&conduit).await {
            Ok(_) => {
                tracing::info!(conduit_id = %conduit, "EventSub shard re-assigned");
                self.set_error(None);
                "repaired"
            }
            Err(e) => {
                tracing::error!(error = %e, "EventSub shard could not be re-assigned");
                self.set_error(Some(e.to_string()));
                "failed"
            }
        };
        self.metrics.eventsub_shard_repairs.get_or_create(&crate::metrics::OutcomeLabels { outcome }).inc();
    }

    /// Holds the WebSocket shard while leading: binds every new session to
    /// shard 0 within Twitch's window and forwards messages.
    async fn hold_websocket(
        self: Arc<Self>,
        conduit: String,
        inbound: mpsc::Sender<Inbound>,
        token: CancellationToken,
    ) {
        let (tx, mut rx) = mpsc::channel(1024);
        let settings = WsSettings {
            url: self.settings.ws_url.clone(),
            keepalive_timeout: None,
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
        };
        let socket = tokio::spawn(eventsub_ws::run(settings, tx, token.clone()));
        while let Some(event) = rx.recv().await {
            match event {
                WsEvent::Session { session_id } => {
                    let conduit = self.conduit_id().unwrap_or_else(|| conduit.clone());
                    *lock(&self.ws_session) = Some(session_id.clone());
                    if let Err(e) = self.bind_websocket_shard(&conduit, &session_id).await {
                        self.set_error(Some(e.to_string()));
                        tracing::error!(error = %e, "cannot bind the WebSocket session to the shard");
                    } else {
                        self.set_error(None);
                    }
                }
                WsEvent::Message { message_id, message_type, subscription_type, payload } => {
                    let message = Inbound { message_id, message_type, subscription_type, payload };
                    if inbound.send(message).await.is_err() {
                        break;
                    }
                }
                WsEvent::Disconnected { code, reason } => {
                    *lock(&self.ws_session) = None;
                    self.set_shard_ready(false);
                    tracing::warn!(?code, %reason, "EventSub WebSocket lost; reconnecting");
                }
            }
        }
        *lock(&self.ws_session) = None;
        self.set_shard_ready(false);
        token.cancel();
        let _ = socket.await;
    }

    // --- Channels ----------------------------------------------------------

    /// The last subscription outcome for a channel on this instance.
    pub fn channel_status(&self, broadcaster: &BroadcasterId) -> Option<Result<(), String>> {
        lock(&self.channels).get(broadcaster).cloned()
    }

    /// Makes sure the channel's subscriptions exist on our conduit, records
    /// their ids, and remembers the outcome for the dashboard. Always asks
    /// Twitch: a stored record never stands in for a live subscription.
    pub async fn ensure_channel(
        &self,
        streamer: Option<StreamerId>,
        broadcaster: &BroadcasterId,
    ) -> Result<(), TwitchError> {
        let result = self.subscribe_channel(streamer, broadcaster).await;
        let status = result.as_ref().map(|_| ()).map_err(explain);
        lock(&self.channels).insert(broadcaster.clone(), status);
        result
    }

    async fn subscribe_channel(
        &self,
        streamer: Option<StreamerId>,
        broadcaster: &BroadcasterId,
    ) -> Result<(), TwitchError> {
        let conduit = self.wait_conduit(Duration::from_secs(30)).await?;
        let records = self.repo.subscriptions_of(broadcaster).await.unwrap_or_default();
        let blocked = records
            .iter()
            .find(|r| r.subscription_type == CHANNEL_CHAT_MESSAGE && BLOCKING_REASONS.contains(&r.status.as_str()));
        // Every type is tried: a chat subscription Twitch refuses must not
        // cost the channel its live status.
        let mut first_error = None;
        for kind in CHANNEL_TYPES {
            if kind == CHANNEL_CHAT_MESSAGE && blocked.is_some() {
                continue;
            }
            if let Err(e) = self.ensure_one(&conduit, streamer, broadcaster, kind, &records).await {
                first_error.get_or_insert(e);
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        match blocked {
            Some(r) => Err(TwitchError::Status {
                status: 403,
                message: format!("{BLOCKED} ({}); log in again once fixed", r.status),
                retry_after: None,
            }),
            None => Ok(()),
        }
    }

    /// Creates one subscription (or adopts the existing one on 409) and
    /// records it, replacing stale records of the same channel and type.
    async fn ensure_one(
        &self,
        conduit: &str,
        streamer: Option<StreamerId>,
        broadcaster: &BroadcasterId,
        kind: &'static str,
        records: &[SubscriptionRecord],
    ) -> Result<String, TwitchError> {
        let condition = channel_condition(kind, broadcaster, &self.settings.bot_user_id);
        let created = self.client.create_conduit_subscription(kind, condition.clone(), conduit).await;
        let id = match created {
            Ok(created) => {
                self.metrics.subscription_call("create", "ok");
                self.export_totals(created.totals);
                let sub = created.subscription;
                tracing::info!(subscription_id = %sub.id, %broadcaster, kind, "EventSub subscription created");
                sub.id
            }
            Err(TwitchError::Status { status: 409, .. }) => {
                let found = self
                    .client
                    .subscriptions_for_user(broadcaster.as_str())
                    .await
                    .inspect_err(|e| self.metrics.subscription_call("adopt", failure_label(e)))?;
                let existing = found
                    .into_iter()
                    .find(|s| {
                        s.kind == kind
                            && s.on_conduit(conduit)
                            && s.status == ENABLED
                            && s.condition_str("broadcaster_user_id") == Some(broadcaster.as_str())
                    })
                    .ok_or_else(|| {
                        TwitchError::Malformed(format!("409 for {kind}, but no such subscription listed"))
                    })?;
                self.metrics.subscription_call("adopt", "ok");
                existing.id
            }
            Err(e) => {
                self.metrics.subscription_call("create", failure_label(&e));
                return Err(e);
            }
        };
        self.record(streamer, Some(broadcaster), kind, &id, Some(conduit), ENABLED, records).await;
        Ok(id)
    }

    /// Stores a subscription's id, forgetting other records of the same
    /// channel and type. Store failures are logged: reconciliation repairs.
    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        streamer: Option<StreamerId>,
        broadcaster: Option<&BroadcasterId>,
        kind: &str,
        id: &str,
        conduit: Option<&str>,
        status: &str,
        records: &[SubscriptionRecord],
    ) {
        for old in records.iter().filter(|r| r.subscription_type == kind && r.subscription_id != id) {
            if let Err(e) = self.repo.delete_subscription(&old.subscription_id).await {
                self.metrics.durable_error("delete_subscription");
                tracing::warn!(error = %e, "cannot forget a replaced subscription record");
            }
        }
        let record = SubscriptionRecord {
            streamer,
            broadcaster: broadcaster.cloned(),
            subscription_type: kind.to_owned(),
            subscription_id: id.to_owned(),
            conduit_id: conduit.map(str::to_owned),
            status: status.to_owned(),
            created_at: OffsetDateTime::now_utc(),
        };
        if let Err(e) = self.repo.upsert_subscription(&record).await {
            self.metrics.durable_error("upsert_subscription");
            tracing::warn!(error = %e, subscription_id = id, "cannot record a subscription");
        }
    }

    /// A session was cleaned up: deletes the channel's subscriptions on
    /// Twitch and their records. If a session came back meanwhile (another
    /// instance), they are ensured again.
    pub async fn forget_channel(&self, streamer: Option<StreamerId>, broadcaster: &BroadcasterId) {
        self.drop_channel(broadcaster).await;
        if matches!(self.live.session_for(broadcaster).await, Ok(Some(_))) {
            let _ = self.ensure_channel(streamer, broadcaster).await;
        }
    }

    /// Deletes the channel's subscriptions on Twitch and their records
    /// (records of a blocking revocation stay: they say why).
    pub async fn drop_channel(&self, broadcaster: &BroadcasterId) {
        let records = match self.repo.subscriptions_of(broadcaster).await {
            Ok(records) => records,
            Err(e) => {
                self.metrics.durable_error("subscriptions_of");
                tracing::warn!(%broadcaster, error = %e, "cannot list the channel's subscriptions; reconciliation removes them");
                return;
            }
        };
        for record in records.iter().filter(|r| CHANNEL_TYPES.contains(&r.subscription_type.as_str())) {
            if BLOCKING_REASONS.contains(&record.status.as_str()) {
                continue; // kept as the reason the dashboard shows
            }
            self.delete(&record.subscription_id).await;
        }
        lock(&self.channels).remove(broadcaster);
    }

    /// Deletes a subscription on Twitch (404 counts as done) and its record.
    async fn delete(&self, id: &str) -> bool {
        self.delete_on_twitch(id, true).await
    }

    /// Deletes a subscription on Twitch (404 counts as done), and its record
    /// if `forget` (the record of a blocking revocation is kept: it is why the
    /// channel is not subscribed again, and what the dashboard shows).
    async fn delete_on_twitch(&self, id: &str, forget: bool) -> bool {
        match self.client.delete_subscription(id).await {
            Ok(()) => {
                self.metrics.subscription_call("delete", "ok");
                if !forget {
                    return true;
                }
                if let Err(e) = self.repo.delete_subscription(id).await {
                    self.metrics.durable_error("delete_subscription");
                    tracing::warn!(error = %e, "cannot forget a deleted subscription");
                }
                true
            }
            Err(e) => {
                self.metrics.subscription_call("delete", failure_label(&e));
                false
            }
        }
    }

    // --- App-wide alarms (plain webhooks) -----------------------------------

    fn app_conditions(&self, conduit: &str) -> [(&'static str, Value); 2] {
        let client_id = self.client.client_id();
        [
            (USER_AUTHORIZATION_REVOKE, json!({ "client_id": client_id })),
            (CONDUIT_SHARD_DISABLED, json!({ "client_id": client_id, "conduit_id": conduit })),
        ]
    }

    /// Is this one of our app-wide alarm subscriptions (right type, our
    /// callback, our conduit)?
    fn is_our_alarm(&self, sub: &Subscription, conduit: &str) -> bool {
        let ours = sub.transport.method == "webhook"
            && sub.transport.callback.as_deref() == Some(self.settings.callback_url.as_str())
            && sub.condition_str("client_id") == Some(self.client.client_id());
        match sub.kind.as_str() {
            USER_AUTHORIZATION_REVOKE => ours,
            CONDUIT_SHARD_DISABLED => ours && sub.condition_str("conduit_id") == Some(conduit),
            _ => false,
        }
    }

    /// Deletes our app-wide alarm subscriptions (to make them again with the
    /// current secret). Failures are logged; reconciliation keeps one each.
    async fn drop_app_subscriptions(&self, conduit: &str) {
        let list = match self.client.all_subscriptions().await {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the app-wide alarms to renew them");
                return;
            }
        };
        for sub in list.subscriptions.iter().filter(|s| self.is_our_alarm(s, conduit)) {
            self.delete(&sub.id).await;
        }
    }

    /// Ensures `user.authorization.revoke` and `conduit.shard.disabled`
    /// exist as plain webhooks (a shard alarm must not ride on the shard it
    /// reports on). Failures are logged; reconciliation tries again.
    async fn ensure_app_subscriptions(&self, conduit: &str) {
        for (kind, condition) in self.app_conditions(conduit) {
            let (callback, secret) = (&self.settings.callback_url, &self.settings.secret);
            let created = self.client.create_webhook_subscription(kind, condition.clone(), callback, secret).await;
            let sub = match created {
                Ok(created) => {
                    self.metrics.subscription_call("create", "ok");
                    self.export_totals(created.totals);
                    Some(created.subscription)
                }
                Err(TwitchError::Status { status: 409, .. }) => match self.client.all_subscriptions().await {
                    Ok(list) => {
                        self.metrics.subscription_call("adopt", "ok");
                        list.subscriptions.into_iter().find(|s| s.kind == kind && self.is_our_alarm(s, conduit))
                    }
                    Err(e) => {
                        self.metrics.subscription_call("adopt", failure_label(&e));
                        None
                    }
                },
                Err(e) => {
                    self.metrics.subscription_call("create", failure_label(&e));
                    tracing::warn!(kind, error = %e, "cannot subscribe to an app-wide alarm");
                    None
                }
            };
            if let Some(sub) = sub {
                self.record(None, None, kind, &sub.id, None, &sub.status, &[]).await;
            }
        }
    }

    /// Twitch's subscription totals, from any answer that carries them.
    fn export_totals(&self, totals: Totals) {
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.metrics.eventsub_total.set(gauge(totals.total));
        self.metrics.eventsub_total_cost.set(gauge(totals.total_cost));
        self.metrics.eventsub_max_total_cost.set(gauge(totals.max_total_cost));
    }

    // --- Reconciliation -----------------------------------------------------

    /// Compares Twitch's subscriptions (all pages) with the active sessions
    /// and our records: keeps one enabled subscription per wanted channel and
    /// type, creates what is missing, deletes duplicates, orphans and dead
    /// ones, forgets stale records, and exports Twitch's totals.
    pub async fn reconcile(&self) -> Result<Repairs, TwitchError> {
        let result = self.reconcile_once().await;
        match &result {
            Ok(r) => {
                self.metrics
                    .eventsub_reconciliations
                    .get_or_create(&crate::metrics::OutcomeLabels { outcome: "ok" })
                    .inc();
                for (kind, n) in [
                    ("missing", r.missing),
                    ("duplicate", r.duplicate),
                    ("orphan", r.orphan),
                    ("not_enabled", r.not_enabled),
                    ("stale_record", r.stale_record),
                ] {
                    self.metrics.repaired(kind, n);
                }
                let changed = r.missing + r.duplicate + r.orphan + r.not_enabled + r.stale_record;
                if changed > 0 || r.failed > 0 {
                    tracing::warn!(
                        kept = r.kept,
                        missing = r.missing,
                        duplicate = r.duplicate,
                        orphan = r.orphan,
                        not_enabled = r.not_enabled,
                        stale_record = r.stale_record,
                        failed = r.failed,
                        "EventSub reconciled with repairs"
                    );
                } else {
                    tracing::info!(kept = r.kept, "EventSub reconciled; nothing to repair");
                }
            }
            Err(e) => {
                self.metrics
                    .eventsub_reconciliations
                    .get_or_create(&crate::metrics::OutcomeLabels { outcome: "failed" })
                    .inc();
                tracing::warn!(error = %e, "EventSub reconciliation failed; trying again next time");
            }
        }
        result
    }

    async fn reconcile_once(&self) -> Result<Repairs, TwitchError> {
        let conduit = self.conduit_id().ok_or_else(|| TwitchError::Transport("no conduit yet".into()))?;
        let list = self.client.all_subscriptions().await?;
        self.export_totals(Totals {
            total: list.total,
            total_cost: list.total_cost,
            max_total_cost: list.max_total_cost,
        });
        let records = self.repo.subscriptions().await.map_err(|e| TwitchError::Transport(e.to_string()))?;
        let streamers = self.repo.list_streamers().await.map_err(|e| TwitchError::Transport(e.to_string()))?;
        let mut repairs = Repairs::default();

        // Channel subscriptions exactly as we make them (our conduit, our
        // condition, enabled), by channel and type. Everything else of a
        // channel type that is ours to clean: dead ones on our conduit, and
        // leftovers on other conduits (a deployment uses one conduit).
        let mut on_twitch: BTreeMap<(BroadcasterId, &'static str), Vec<&Subscription>> = BTreeMap::new();
        let mut dead: Vec<&Subscription> = Vec::new();
        let mut elsewhere: Vec<(Option<(BroadcasterId, &'static str)>, &Subscription)> = Vec::new();
        for sub in &list.subscriptions {
            let Some(kind) = CHANNEL_TYPES.iter().copied().find(|k| *k == sub.kind) else { continue };
            let broadcaster = sub.condition_str("broadcaster_user_id").and_then(|b| BroadcasterId::parse(b).ok());
            let exact = broadcaster.as_ref().is_some_and(|b| {
                let wanted = channel_condition(kind, b, &self.settings.bot_user_id);
                wanted.as_object().is_some_and(|w| *w == sub.condition)
            });
            if !sub.on_conduit(&conduit) {
                if sub.transport.method == "conduit" {
                    elsewhere.push((broadcaster.map(|b| (b, kind)), sub));
                }
                continue;
            }
            match broadcaster {
                _ if sub.status != ENABLED => dead.push(sub),
                Some(b) if exact => on_twitch.entry((b, kind)).or_default().push(sub),
                // Enabled, but not a condition we would make: not ours to keep.
                _ => elsewhere.push((None, sub)),
            }
        }

        // Which channels want subscriptions: streamers with an active session
        // whose authorization is intact.
        let known: HashMap<&BroadcasterId, &crate::store::Streamer> =
            streamers.iter().map(|s| (&s.twitch_user_id, s)).collect();
        let mut candidates: HashSet<BroadcasterId> = streamers.iter().map(|s| s.twitch_user_id.clone()).collect();
        candidates.extend(on_twitch.keys().map(|(b, _)| b.clone()));
        let live = &self.live;
        let active: HashSet<BroadcasterId> = futures_util::stream::iter(candidates)
            .map(|b| async move {
                let active = matches!(live.session_for(&b).await, Ok(Some(_)));
                (b, active)
            })
            .buffer_unordered(16)
            .filter_map(|(b, active)| async move { active.then_some(b) })
            .collect()
            .await;
        let blocked: HashSet<&BroadcasterId> = records
            .iter()
            .filter(|r| r.subscription_type == CHANNEL_CHAT_MESSAGE && BLOCKING_REASONS.contains(&r.status.as_str()))
            .filter_map(|r| r.broadcaster.as_ref())
            .collect();
        let wanted = |b: &BroadcasterId, kind: &str| {
            active.contains(b)
                && known.get(b).is_some_and(|s| !s.needs_relogin)
                && !(kind == CHANNEL_CHAT_MESSAGE && blocked.contains(b))
        };

        let mut keep: HashSet<String> = HashSet::new();
        let mut remove: Vec<(&'static str, String)> = Vec::new();
        let mut orphaned: HashSet<BroadcasterId> = HashSet::new();
        for ((b, kind), subs) in &on_twitch {
            if wanted(b, kind) {
                // Keep the one we have a record of, else the oldest.
                let kept = subs.iter().find(|s| records.iter().any(|r| r.subscription_id == s.id)).unwrap_or(&subs[0]);
                keep.insert(kept.id.clone());
                repairs.kept += 1;
                let owner = known.get(b).map(|s| s.id);
                let same: Vec<SubscriptionRecord> =
                    records.iter().filter(|r| r.broadcaster.as_ref() == Some(b)).cloned().collect();
                if !records.iter().any(|r| r.subscription_id == kept.id && r.status == ENABLED) {
                    self.record(owner, Some(b), kind, &kept.id, Some(&conduit), ENABLED, &same).await;
                }
                for s in subs.iter().filter(|s| s.id != kept.id) {
                    remove.push(("duplicate", s.id.clone()));
                }
            } else {
                for s in subs {
                    remove.push(("orphan", s.id.clone()));
                }
                orphaned.insert(b.clone());
            }
        }
        // Revoked for a reason that forbids subscribing again (the bot was
        // banned): gone from Twitch's list, but the record stays.
        let blocking: HashSet<&str> =
            dead.iter().filter(|s| BLOCKING_REASONS.contains(&s.status.as_str())).map(|s| s.id.as_str()).collect();
        for s in &dead {
            remove.push(("not_enabled", s.id.clone()));
        }
        for (key, s) in elsewhere {
            let kept_here = key.is_some_and(|(b, kind)| wanted(&b, kind));
            remove.push((if kept_here { "duplicate" } else { "orphan" }, s.id.clone()));
        }
        for (kind, id) in remove {
            if self.delete_on_twitch(&id, !blocking.contains(id.as_str())).await {
                match kind {
                    "duplicate" => repairs.duplicate += 1,
                    "orphan" => repairs.orphan += 1,
                    _ => repairs.not_enabled += 1,
                }
            } else {
                repairs.failed += 1;
            }
        }

        // Missing subscriptions of wanted channels.
        for b in active.iter().filter(|b| known.contains_key(b)) {
            for kind in CHANNEL_TYPES {
                if !wanted(b, kind) || on_twitch.contains_key(&(b.clone(), kind)) {
                    continue;
                }
                let owner = known.get(b).map(|s| s.id);
                let same: Vec<SubscriptionRecord> =
                    records.iter().filter(|r| r.broadcaster.as_ref() == Some(b)).cloned().collect();
                match self.ensure_one(&conduit, owner, b, kind, &same).await {
                    Ok(id) => {
                        keep.insert(id);
                        repairs.missing += 1;
                    }
                    Err(e) => {
                        repairs.failed += 1;
                        tracing::warn!(broadcaster = %b, kind, error = %e, "cannot create a missing subscription");
                    }
                }
            }
        }

        // Records of our conduit's subscriptions that Twitch no longer has
        // enabled (kept: the reasons the dashboard shows).
        for r in records.iter().filter(|r| r.conduit_id.as_deref() == Some(conduit.as_str())) {
            if keep.contains(&r.subscription_id) || BLOCKING_REASONS.contains(&r.status.as_str()) {
                continue;
            }
            let listed = list.subscriptions.iter().any(|s| s.id == r.subscription_id && s.status == ENABLED);
            if !listed {
                match self.repo.delete_subscription(&r.subscription_id).await {
                    Ok(_) => repairs.stale_record += 1,
                    Err(e) => {
                        self.metrics.durable_error("delete_subscription");
                        tracing::warn!(error = %e, "cannot forget a stale subscription record");
                    }
                }
            }
        }

        // A session may have started on some instance since the snapshot,
        // and adopted what was just deleted as an orphan: subscribe it again.
        for b in orphaned {
            if known.get(&b).is_some_and(|s| s.needs_relogin) {
                continue; // their grant is gone: nothing to subscribe with
            }
            if matches!(self.live.session_for(&b).await, Ok(Some(_))) {
                let owner = known.get(&b).map(|s| s.id);
                if self.ensure_channel(owner, &b).await.is_ok() {
                    repairs.missing += 1;
                }
            }
        }

        if self.settings.transport == EventSubTransport::Webhook {
            self.reconcile_alarms(&conduit, &list.subscriptions, &mut repairs).await;
        }
        Ok(repairs)
    }

    /// Exactly one working subscription per app-wide alarm.
    async fn reconcile_alarms(&self, conduit: &str, subs: &[Subscription], repairs: &mut Repairs) {
        let mut missing = false;
        for kind in [USER_AUTHORIZATION_REVOKE, CONDUIT_SHARD_DISABLED] {
            let (ours, others): (Vec<&Subscription>, Vec<&Subscription>) =
                subs.iter().filter(|s| s.kind == kind).partition(|s| self.is_our_alarm(s, conduit));
            let working: Vec<&&Subscription> = ours
                .iter()
                .filter(|s| s.status == ENABLED || s.status == "webhook_callback_verification_pending")
                .collect();
            let mut delete: Vec<(&str, &str)> = others.iter().map(|s| ("orphan", s.id.as_str())).collect();
            delete.extend(
                ours.iter().filter(|s| !working.iter().any(|w| w.id == s.id)).map(|s| ("not_enabled", s.id.as_str())),
            );
            delete.extend(working.iter().skip(1).map(|s| ("duplicate", s.id.as_str())));
            if working.is_empty() {
                missing = true;
            } else {
                repairs.kept += 1;
            }
            for (why, id) in delete {
                if self.delete(id).await {
                    match why {
                        "duplicate" => repairs.duplicate += 1,
                        "orphan" => repairs.orphan += 1,
                        _ => repairs.not_enabled += 1,
                    }
                } else {
                    repairs.failed += 1;
                }
            }
        }
        if missing {
            repairs.missing += 1;
            self.ensure_app_subscriptions(conduit).await;
        }
    }
}
