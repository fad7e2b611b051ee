//! Our conduit and its shard 0: found or created, bound to our webhook or
//! WebSocket session, checked and repaired.

use std::time::Duration;

use super::{EventSub, SHARD_ENABLED, lock};
use crate::twitch::EventSubTransport;
use crate::twitch::client::{Shard, TwitchError};

impl EventSub {
    /// Finds our conduit: the remembered one if Twitch still has it, else the
    /// first Twitch lists; creates one only when `create` (the leader).
    pub(super) async fn find_conduit(&self, create: bool) -> anyhow::Result<String> {
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
    pub(super) fn shard_fingerprint(&self) -> String {
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
    pub(super) async fn bind_webhook_shard(&self, conduit: &str) -> anyhow::Result<bool> {
        let callback = self.settings.callback_url.as_str();
        let fingerprint = self.shard_fingerprint();
        let client_id = self.client.client_id();
        // Unreadable counts as unknown: re-binding is harmless, a stale
        // secret is not.
        let same_secret = self.repo.shard_fingerprint(client_id).await.ok().flatten().as_deref() == Some(&fingerprint);
        if same_secret && self.webhook_bound(&self.client.shards(conduit).await?) {
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
        self.await_verified(conduit).await?;
        tracing::info!(conduit_id = %conduit, callback, "webhook shard enabled");
        self.set_shard_ready(true);
        if let Err(e) = self.repo.save_shard_fingerprint(client_id, &fingerprint).await {
            // Next set-up binds once more; nothing worse.
            self.metrics.durable_error("save_shard_fingerprint");
            tracing::warn!(error = %e, "cannot record what shard 0 is bound with");
        }
        Ok(!same_secret)
    }

    /// Shard 0 is enabled and delivers to our webhook.
    fn webhook_bound(&self, shards: &[Shard]) -> bool {
        let callback = Some(self.settings.callback_url.as_str());
        shards.iter().any(|s| s.id == "0" && s.status == SHARD_ENABLED && s.transport.callback.as_deref() == callback)
    }

    /// Waits (up to `shard_verify_timeout`) until Twitch has verified shard 0
    /// through our own webhook.
    async fn await_verified(&self, conduit: &str) -> anyhow::Result<()> {
        let callback = self.settings.callback_url.as_str();
        let deadline = tokio::time::Instant::now() + self.settings.shard_verify_timeout;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let shards = self.client.shards(conduit).await?;
            if self.webhook_bound(&shards) {
                return Ok(());
            }
            if shards.iter().any(|s| s.id == "0" && s.status == "webhook_callback_verification_failed") {
                anyhow::bail!("Twitch could not verify {callback} (did it answer the challenge?)");
            }
        }
        anyhow::bail!("shard 0 was not enabled; can Twitch reach {callback}?")
    }

    /// Binds shard 0 to a WebSocket session we hold.
    pub(super) async fn bind_websocket_shard(&self, conduit: &str, session_id: &str) -> anyhow::Result<()> {
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
    pub(super) async fn set_up(&self) -> anyhow::Result<String> {
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
    pub(super) async fn wait_conduit(&self, limit: Duration) -> Result<String, TwitchError> {
        let mut rx = self.conduit.subscribe();
        let found = tokio::time::timeout(limit, rx.wait_for(Option::is_some)).await;
        match found {
            Ok(Ok(id)) => id.clone().ok_or_else(|| TwitchError::Transport("no conduit".into())),
            _ => Err(TwitchError::Transport("the EventSub conduit is not set up yet".into())),
        }
    }

    /// The leader checks shard 0 and re-binds it if it is not enabled with
    /// our webhook (or our WebSocket session). A conduit Twitch no longer
    /// has (it deletes one whose shards stayed disabled for 72 h) is
    /// replaced at once; reconciliation then subscribes the channels on it.
    pub(super) async fn check_shard(&self, conduit: &str) {
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
    pub(super) async fn bind_our_shard(&self, conduit: &str) -> anyhow::Result<()> {
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
                    s.id == "0"
                        && s.status == SHARD_ENABLED
                        && s.transport.session_id.as_deref() == Some(session.as_str())
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
}
