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

    /// Twitch revoked one of our subscriptions: record the reason, then act
    /// on it. Returns the outcome (a metric label).
    pub async fn revoked(&self, subscription: &Subscription) -> Result<&'static str, RepositoryError> {
        let reason = subscription.status.as_str();
        self.metrics
            .eventsub_revocations
            .get_or_create(&crate::metrics::ReasonLabels { reason: reason_label(reason) })
            .inc();
        let known = self
            .repo
            .set_subscription_status(&subscription.id, reason)
            .await
            .inspect_err(|_| self.metrics.durable_error("set_subscription_status"))?;
        let condition = |key: &str| subscription.condition.get(key).and_then(|v| v.as_str()).map(str::to_owned);
        let broadcaster = condition("broadcaster_user_id").and_then(|b| BroadcasterId::parse(&b).ok());
        tracing::warn!(
            subscription_id = %subscription.id, subscription_type = %subscription.kind, reason, known,
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
        Ok(if known { "revocation_recorded" } else { "revocation_unknown" })
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

    /// `user.authorization.revoke`: a user disconnected our app.
    pub async fn authorization_revoked(&self, user_id: &BroadcasterId) -> Result<&'static str, RepositoryError> {
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
