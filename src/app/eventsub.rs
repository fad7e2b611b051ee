//! EventSub plumbing: our conduit, its webhook shard, and the chat
//! subscription of every channel that has an overlay open.
//!
//! This is the first cut of the EventSub lifecycle: set-up at start-up with
//! retries, and `channel.chat.message` + `stream.online`/`stream.offline`
//! ensured when a session activates (a 409 counts as success). Persisting the
//! subscriptions, reconciliation, revocation handling and clean-up follow.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::domain::BroadcasterId;
use crate::twitch::client::{TwitchClient, TwitchError};

/// Types subscribed per channel on the conduit.
const CHANNEL_TYPES: [&str; 3] = ["channel.chat.message", "stream.online", "stream.offline"];

pub struct EventSub {
    client: Arc<TwitchClient>,
    callback_url: String,
    secret: String,
    bot_user_id: String,
    /// Our conduit, once set up with an enabled webhook shard.
    conduit: RwLock<Option<String>>,
    /// Outcome of the last attempt to subscribe each channel (for the dashboard).
    channels: std::sync::Mutex<std::collections::HashMap<BroadcasterId, Result<(), String>>>,
    ready: tokio::sync::Notify,
}

impl EventSub {
    pub fn new(client: Arc<TwitchClient>, callback_url: &str, secret: &str, bot_user_id: &str) -> Self {
        Self {
            client,
            callback_url: callback_url.to_owned(),
            secret: secret.to_owned(),
            bot_user_id: bot_user_id.to_owned(),
            conduit: RwLock::new(None),
            channels: std::sync::Mutex::new(std::collections::HashMap::new()),
            ready: tokio::sync::Notify::new(),
        }
    }

    pub fn conduit_id(&self) -> Option<String> {
        self.conduit.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Sets up the conduit and its shard, retrying with backoff until it
    /// works. Never stops the service: failures are logged and retried.
    pub async fn run_setup(self: Arc<Self>, shutdown: CancellationToken) {
        let mut delay = Duration::from_millis(500);
        loop {
            match self.set_up().await {
                Ok(conduit) => {
                    tracing::info!(conduit_id = %conduit, callback = %self.callback_url, "EventSub conduit ready");
                    *self.conduit.write().unwrap_or_else(|p| p.into_inner()) = Some(conduit);
                    self.ready.notify_waiters();
                    return;
                }
                Err(e) => tracing::warn!(error = %e, retry_in = ?delay, "EventSub set-up failed"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(60));
        }
    }

    /// Finds or creates our conduit and points shard 0 at our webhook,
    /// waiting until Twitch has verified it.
    async fn set_up(&self) -> Result<String, anyhow::Error> {
        let conduit = match self.client.conduits().await?.into_iter().next() {
            Some(c) => c,
            None => self.client.create_conduit(1).await?,
        };
        let ours = |shards: &[crate::twitch::client::Shard]| {
            shards.iter().any(|s| {
                s.id == "0" && s.status == "enabled" && s.transport.callback.as_deref() == Some(&self.callback_url)
            })
        };
        if ours(&self.client.shards(&conduit.id).await?) {
            return Ok(conduit.id);
        }
        let update = self.client.update_webhook_shard(&conduit.id, "0", &self.callback_url, &self.secret).await?;
        if let Some(e) = update.errors.first() {
            anyhow::bail!("shard {} refused: {} ({})", e.id, e.message, e.code);
        }
        // Twitch verifies the callback by sending it a challenge, which our
        // own webhook answers; wait for the shard to become enabled.
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if ours(&self.client.shards(&conduit.id).await?) {
                return Ok(conduit.id);
            }
        }
        anyhow::bail!("shard 0 was not enabled; is {} reachable from Twitch?", self.callback_url)
    }

    /// The last subscription outcome for a channel; `None` if never tried.
    pub fn channel_status(&self, broadcaster: &BroadcasterId) -> Option<Result<(), String>> {
        self.channels.lock().unwrap_or_else(|p| p.into_inner()).get(broadcaster).cloned()
    }

    /// Makes sure the channel's subscriptions exist on our conduit, and
    /// records the outcome for the dashboard.
    pub async fn ensure_channel(&self, broadcaster: &BroadcasterId) -> Result<(), TwitchError> {
        let result = self.subscribe_channel(broadcaster).await;
        let status = result.as_ref().map(|_| ()).map_err(|e| match e {
            TwitchError::Status { status: 403, .. } => {
                "Twitch says the channel has not granted access to the bot (channel:bot), or the bot is not authorized"
                    .to_owned()
            }
            other => other.to_string(),
        });
        self.channels.lock().unwrap_or_else(|p| p.into_inner()).insert(broadcaster.clone(), status);
        result
    }

    /// Creates the channel's subscriptions, waiting (up to a limit) for the
    /// conduit set-up first. A 409 means it exists: success.
    async fn subscribe_channel(&self, broadcaster: &BroadcasterId) -> Result<(), TwitchError> {
        let conduit = match self.conduit_id() {
            Some(c) => c,
            None => {
                let _ = tokio::time::timeout(Duration::from_secs(30), self.ready.notified()).await;
                self.conduit_id().ok_or_else(|| TwitchError::Transport("EventSub conduit is not set up yet".into()))?
            }
        };
        for kind in CHANNEL_TYPES {
            let condition = if kind == "channel.chat.message" {
                json!({ "broadcaster_user_id": broadcaster.as_str(), "user_id": self.bot_user_id })
            } else {
                json!({ "broadcaster_user_id": broadcaster.as_str() })
            };
            match self.client.create_conduit_subscription(kind, condition, &conduit).await {
                Ok(s) => tracing::info!(subscription_id = %s.id, %broadcaster, kind, "EventSub subscription created"),
                Err(TwitchError::Status { status: 409, .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
