//! The EventSub lifecycle (twitch-protocol.md §3–§6): our conduit and its
//! shard, the subscriptions that follow sessions, the two app-wide alarms,
//! reconciliation with Twitch, and shard repair.
//!
//! Who does what:
//! - **Every instance** learns the conduit id (remembered in the durable
//!   store, checked against Twitch) and, when a session activates here,
//!   ensures that channel's three subscriptions; when the last lease of a
//!   session is released here, it deletes them.
//! - **The leader** (one instance at a time, elected by the leader loop in
//!   [`super::leader`] on the live store's `cleanup:leader` key) creates the
//!   conduit if there is none, binds shard 0 (our webhook, or a WebSocket
//!   session it holds open), keeps the `user.authorization.revoke` and
//!   `conduit.shard.disabled` webhooks, reconciles everything with
//!   Twitch at start-up and every 10 minutes, and releases the leases of
//!   crashed instances (deleting the subscriptions only they needed) every
//!   10 s.
//!
//! Where: this file has the [`EventSub`] type, its settings and status, and
//! the leader's duties; `conduit.rs` the conduit and shard 0,
//! `websocket.rs` the WebSocket shard, `channels.rs` the channel
//! subscriptions, `alarms.rs` the app-wide alarms, `crashes.rs` the
//! clean-up after crashed instances. Reconciliation is a pure
//! `plan.rs` (what to change, from one snapshot) and a short `reconcile.rs`
//! (take the snapshot, apply the plan).
//!
//! Helix calls follow the client's policy ([`crate::twitch::retry`]): what
//! comes back here is final.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::leader::{Leadership, Lease};
use crate::domain::BroadcasterId;
use crate::metrics::Metrics;
use crate::store::{LiveStore, Repository};
use crate::twitch::EventSubTransport;
use crate::twitch::client::{Totals, TwitchClient};
use crate::twitch::eventsub::Inbound;
use crate::twitch::eventsub::{CHANNEL_CHAT_MESSAGE, STREAM_OFFLINE, STREAM_ONLINE};

mod alarms;
mod channels;
mod conduit;
mod crashes;
mod plan;
mod reconcile;
mod websocket;

pub use plan::Repair;
pub use reconcile::Repairs;

/// [`channels::ChannelType::ALL`] as spelled on the wire.
pub const CHANNEL_TYPES: [&str; 3] = [CHANNEL_CHAT_MESSAGE, STREAM_ONLINE, STREAM_OFFLINE];

/// The revocation reasons after which the chat subscription is not made
/// again automatically (§5.8; [`crate::twitch::status::SubscriptionStatus::is_blocking`]), as
/// spelled on the wire: the streamer has to act, then log in again.
pub const BLOCKING_REASONS: [&str; 2] = ["chat_user_banned", "moderator_removed"];

/// How a channel whose chat subscription is blocked is reported.
const BLOCKED: &str = "Twitch revoked the chat subscription";

/// A shard's status while it delivers.
const SHARD_ENABLED: &str = "enabled";

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
    /// How often the leader looks for crashed instances (`crashes.rs`).
    pub crash_sweep_interval: Duration,
    pub shard_verify_timeout: Duration,
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

    /// Twitch's subscription totals, from any answer that carries them.
    fn export_totals(&self, totals: Totals) {
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.metrics.eventsub_total.set(gauge(totals.total));
        self.metrics.eventsub_total_cost.set(gauge(totals.total_cost));
        self.metrics.eventsub_max_total_cost.set(gauge(totals.max_total_cost));
    }

    /// What makes a subscription ours, with `conduit` as our conduit.
    fn ours<'a>(&'a self, conduit: &'a str) -> plan::Ours<'a> {
        let webhook = self.settings.transport == EventSubTransport::Webhook;
        plan::Ours {
            conduit,
            bot_user_id: &self.settings.bot_user_id,
            client_id: self.client.client_id(),
            alarm_callback: webhook.then_some(self.settings.callback_url.as_str()),
        }
    }

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
        tokio::spawn(Arc::clone(&self).sweep_crashes(token.child_token()));
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
}
