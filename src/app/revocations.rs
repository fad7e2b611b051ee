//! What Twitch tells us about lost access (twitch-protocol.md §5.8, §5.13):
//! subscription revocations by reason, `user.authorization.revoke`, and a
//! streamer coming back by logging in again.

use super::App;
use super::eventsub::{BLOCKING_REASONS, CHANNEL_TYPES};
use crate::domain::{BroadcasterId, SessionStatus};
use crate::store::signals::Signal;
use crate::store::{OverlaySetup, RepositoryError};
use crate::twitch::eventsub::Subscription;

/// Revocation reasons as bounded metric labels.
fn reason_label(status: &str) -> &'static str {
    match status {
        "authorization_revoked" => "authorization_revoked",
        "user_removed" => "user_removed",
        "chat_user_banned" => "chat_user_banned",
        "moderator_removed" => "moderator_removed",
        "version_removed" => "version_removed",
        "beta_maintenance" => "beta_maintenance",
        "notification_failures_exceeded" => "notification_failures_exceeded",
        _ => "other",
    }
}

impl App {
    fn is_bot(&self, user_id: &str) -> bool {
        self.settings.bot_user_id.as_deref() == Some(user_id)
    }

    /// A signed message about something that is not ours: counted, logged,
    /// nothing else. Returns the outcome label.
    fn not_ours(&self, reason: &'static str) -> &'static str {
        self.metrics.eventsub_not_ours.get_or_create(&crate::metrics::ReasonLabels { reason }).inc();
        tracing::warn!(reason, "ignoring a signed EventSub message about something that is not ours");
        "not_ours"
    }

    /// Whether a revoked subscription is one we created: its id is in our
    /// records, for the same type and the same channel (or no channel) as
    /// the revocation's condition. `Err(label)` says why not.
    async fn is_ours(
        &self,
        subscription: &Subscription,
        broadcaster: Option<&BroadcasterId>,
    ) -> Result<Result<(), &'static str>, RepositoryError> {
        let records = match broadcaster {
            Some(b) => self.repo.subscriptions_of(b).await,
            // App-wide subscriptions (the alarms) have no channel; revocations are rare.
            None => self.repo.subscriptions().await,
        }
        .inspect_err(|_| self.metrics.durable_error("subscriptions_of"))?;
        let Some(record) = records.iter().find(|r| r.subscription_id == subscription.id) else {
            return Ok(Err("unknown_subscription"));
        };
        if record.subscription_type != subscription.kind || record.broadcaster.as_ref() != broadcaster {
            return Ok(Err("condition_mismatch"));
        }
        Ok(Ok(()))
    }

    /// Twitch revoked one of our subscriptions: record the reason, then act
    /// on it. A revocation of a subscription we did not create (or whose
    /// condition is not what we created) changes nothing. Returns the
    /// outcome (a metric label).
    pub async fn revoked(&self, subscription: &Subscription) -> Result<&'static str, RepositoryError> {
        let reason = subscription.status.as_str();
        let condition = |key: &str| subscription.condition.get(key).and_then(|v| v.as_str()).map(str::to_owned);
        let broadcaster = match condition("broadcaster_user_id").map(|b| BroadcasterId::parse(&b)) {
            Some(Ok(b)) => Some(b),
            Some(Err(_)) => return Ok(self.not_ours("condition_mismatch")),
            None => None,
        };
        if let Err(why) = self.is_ours(subscription, broadcaster.as_ref()).await? {
            return Ok(self.not_ours(why));
        }
        self.metrics
            .eventsub_revocations
            .get_or_create(&crate::metrics::ReasonLabels { reason: reason_label(reason) })
            .inc();
        self.repo
            .set_subscription_status(&subscription.id, reason)
            .await
            .inspect_err(|_| self.metrics.durable_error("set_subscription_status"))?;
        tracing::warn!(
            subscription_id = %subscription.id, subscription_type = %subscription.kind, reason,
            "subscription revoked by Twitch"
        );
        match reason {
            "authorization_revoked" => {
                // A chat subscription's condition names the streamer and the
                // bot: either may have withdrawn. Only a streamer whose own
                // grant is gone is flagged; otherwise it is the bot, and
                // flagging would log out every streamer at once.
                let names_bot = condition("user_id").is_some_and(|u| self.is_bot(&u));
                match &broadcaster {
                    Some(b) if names_bot && self.grant_intact(b).await => self.bot_lost(),
                    Some(b) => {
                        self.streamer_disconnected(b).await?;
                    }
                    None if names_bot => self.bot_lost(),
                    None => {}
                }
            }
            "user_removed" => {
                if let Some(b) = &broadcaster {
                    self.streamer_deleted(b).await?;
                }
            }
            "version_removed" | "beta_maintenance" => {
                tracing::error!(
                    subscription_type = %subscription.kind, version = %subscription.version, reason,
                    "Twitch retired a subscription type this service relies on; re-creating it — if this repeats, the service needs an update"
                );
                self.resubscribe(broadcaster.as_ref()).await;
            }
            "notification_failures_exceeded" => {
                tracing::error!(subscription_type = %subscription.kind, "a plain webhook subscription failed too often; re-creating it");
                self.resubscribe(broadcaster.as_ref()).await;
            }
            r if BLOCKING_REASONS.contains(&r) => {
                // The dashboard explains; no automatic re-subscription (§5.8).
            }
            _ => {}
        }
        Ok("revocation_recorded")
    }

    /// Re-creates a revoked subscription: a channel's (if its session is
    /// active), or the app-wide alarms through the leader's reconciliation.
    async fn resubscribe(&self, broadcaster: Option<&BroadcasterId>) {
        let Some(eventsub) = self.eventsub.clone() else { return };
        match broadcaster {
            Some(b) => {
                if matches!(self.live.session_for(b).await, Ok(Some(_))) {
                    let owner = self.repo.streamer_by_twitch_id(b).await.ok().flatten().map(|s| s.streamer.id);
                    let b = b.clone();
                    tokio::spawn(async move {
                        let _ = eventsub.ensure_channel(owner, &b).await;
                    });
                }
            }
            None if eventsub.is_leader() => {
                tokio::spawn(async move {
                    let _ = eventsub.reconcile().await;
                });
            }
            None => {}
        }
    }

    /// The bot account's authorization is gone: an alarm for the operator.
    fn bot_lost(&self) {
        self.metrics.bot_authorization_lost.inc();
        tracing::error!(
            "the bot account's Twitch authorization was withdrawn: chat cannot be read in any channel until the operator re-authorizes it at /auth/bot"
        );
    }

    /// Whether Twitch still accepts the streamer's own grant (`channel:bot`
    /// on a valid token). `false` when it cannot be told (no stored token,
    /// Twitch unreachable): the streamer is then asked to log in again,
    /// which is harmless if their grant was in fact fine.
    async fn grant_intact(&self, broadcaster: &BroadcasterId) -> bool {
        let Some(oauth) = &self.oauth else { return false };
        let Ok(Some(setup)) = self.repo.streamer_by_twitch_id(broadcaster).await else { return false };
        let Ok(Some(tokens)) = self.repo.tokens(setup.streamer.id).await else { return false };
        let Ok(access) = self.cipher.decrypt(&tokens.access_token, broadcaster.as_str()) else { return false };
        // Bounded: this runs while Twitch waits for the webhook's answer.
        match tokio::time::timeout(std::time::Duration::from_secs(2), oauth.validate(&access)).await {
            Ok(Ok(Some(v))) => v.scopes.iter().any(|s| s == "channel:bot"),
            _ => false,
        }
    }

    /// `user.authorization.revoke`: a user disconnected our app — if
    /// `client_id` is ours; another application's changes nothing.
    pub async fn authorization_revoked(
        &self,
        client_id: &str,
        user_id: &BroadcasterId,
    ) -> Result<&'static str, RepositoryError> {
        if self.settings.client_id.as_deref() != Some(client_id) {
            return Ok(self.not_ours("foreign_client"));
        }
        if self.is_bot(user_id.as_str()) {
            self.bot_lost();
            return Ok("bot_revoked");
        }
        self.streamer_disconnected(user_id).await
    }

    /// A streamer's grant is gone: their tokens are deleted, they must log in
    /// again (the dashboard says so), their open overlays show it, and their
    /// subscriptions are removed (Twitch revokes them anyway).
    async fn streamer_disconnected(&self, broadcaster: &BroadcasterId) -> Result<&'static str, RepositoryError> {
        let Some(setup) = self.repo.streamer_by_twitch_id(broadcaster).await? else { return Ok("unknown_user") };
        if !setup.streamer.needs_relogin {
            self.metrics.authorizations_revoked.inc();
            tracing::warn!(streamer = %setup.streamer.id, "streamer withdrew their Twitch authorization");
        }
        self.repo.clear_tokens(setup.streamer.id, true).await?;
        let overlay = setup.streamer.overlay_id;
        match self.live.set_status(overlay, SessionStatus::Disconnected, crate::now_ms()).await {
            Ok(_) => self.sessions.touch(overlay),
            Err(e) => tracing::warn!(error = %e, "cannot show the overlay as disconnected"),
        }
        if let Some(eventsub) = self.eventsub.clone() {
            let b = broadcaster.clone();
            tokio::spawn(async move { eventsub.drop_channel(&b).await });
        }
        Ok("streamer_flagged")
    }

    /// The streamer's Twitch account no longer exists: their data goes (§5.8).
    async fn streamer_deleted(&self, broadcaster: &BroadcasterId) -> Result<&'static str, RepositoryError> {
        let Some(setup) = self.repo.streamer_by_twitch_id(broadcaster).await? else { return Ok("unknown_user") };
        self.repo.remove_streamer(broadcaster).await?;
        tracing::warn!(streamer = %setup.streamer.id, "Twitch account removed; streamer data deleted");
        let overlay = setup.streamer.overlay_id;
        if let Err(e) = self.signals.publish(Signal::OverlayRemoved { overlay }).await {
            tracing::warn!(error = %e, "other instances were not told; their reconciler closes the overlay");
        }
        Ok("streamer_removed")
    }

    /// After a successful login: a streamer who had lost access gets chat
    /// back at once if their overlay is open (blocked subscriptions are
    /// cleared: logging in again is how they say the cause is fixed).
    pub async fn reconnected(&self, setup: &OverlaySetup) {
        let b = &setup.streamer.twitch_user_id;
        if let Ok(records) = self.repo.subscriptions_of(b).await {
            for r in records
                .iter()
                .filter(|r| CHANNEL_TYPES.contains(&r.subscription_type.as_str()) && r.status != "enabled")
            {
                let _ = self.repo.delete_subscription(&r.subscription_id).await;
            }
        }
        let Ok(Some(session)) = self.live.session_for(b).await else { return };
        match self.live.set_status(session.overlay, SessionStatus::Active, crate::now_ms()).await {
            Ok(_) => self.sessions.touch(session.overlay),
            Err(e) => tracing::warn!(error = %e, "cannot clear the overlay's disconnected status"),
        }
        self.sessions.ensure_subscriptions(setup.streamer.id, b);
    }
}
