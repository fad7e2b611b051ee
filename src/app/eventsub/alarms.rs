//! The two app-wide alarms, as plain webhooks (a shard alarm must not ride
//! on the shard it reports on): `user.authorization.revoke` and
//! `conduit.shard.disabled`. The WebSocket transport has no public callback
//! and goes without them.

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::EventSub;
use super::channels::failure_label;
use super::plan::Ours;
use crate::store::SubscriptionRecord;
use crate::twitch::client::{Subscription, TwitchError};
use crate::twitch::eventsub::{CONDUIT_SHARD_DISABLED, USER_AUTHORIZATION_REVOKE};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlarmType {
    /// A user disconnected our app.
    AuthorizationRevoke,
    /// Twitch disabled a shard of our conduit.
    ShardDisabled,
}

impl AlarmType {
    pub const ALL: [AlarmType; 2] = [AlarmType::AuthorizationRevoke, AlarmType::ShardDisabled];

    pub fn as_str(self) -> &'static str {
        match self {
            AlarmType::AuthorizationRevoke => USER_AUTHORIZATION_REVOKE,
            AlarmType::ShardDisabled => CONDUIT_SHARD_DISABLED,
        }
    }

    pub fn parse(kind: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == kind)
    }

    fn condition(self, client_id: &str, conduit: &str) -> Value {
        match self {
            AlarmType::AuthorizationRevoke => json!({ "client_id": client_id }),
            AlarmType::ShardDisabled => json!({ "client_id": client_id, "conduit_id": conduit }),
        }
    }
}

/// One of our alarm subscriptions: an alarm type, delivered to our callback,
/// for our client (and our conduit).
pub(super) fn is_our_alarm(sub: &Subscription, ours: &Ours<'_>) -> bool {
    let Some(callback) = ours.alarm_callback else { return false };
    let mine = sub.transport.method == "webhook"
        && sub.transport.callback.as_deref() == Some(callback)
        && sub.condition_str("client_id") == Some(ours.client_id);
    match AlarmType::parse(&sub.kind) {
        Some(AlarmType::AuthorizationRevoke) => mine,
        Some(AlarmType::ShardDisabled) => mine && sub.condition_str("conduit_id") == Some(ours.conduit),
        None => false,
    }
}

impl EventSub {
    /// Deletes our alarm subscriptions (to make them again with the current
    /// secret). Failures are logged; reconciliation keeps one each.
    pub(super) async fn drop_app_subscriptions(&self, conduit: &str) {
        let list = match self.client.all_subscriptions().await {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the app-wide alarms to renew them");
                return;
            }
        };
        let ours = self.ours(conduit);
        for sub in list.subscriptions.iter().filter(|s| is_our_alarm(s, &ours)) {
            self.delete(&sub.id).await;
        }
    }

    /// Ensures both alarms exist. Failures are logged; reconciliation tries
    /// again.
    pub(super) async fn ensure_app_subscriptions(&self, conduit: &str) {
        for kind in AlarmType::ALL {
            self.ensure_alarm(conduit, kind).await;
        }
    }

    /// Creates one alarm (or adopts ours on 409) and records it; whether it
    /// exists now.
    pub(super) async fn ensure_alarm(&self, conduit: &str, kind: AlarmType) -> bool {
        let (callback, secret) = (&self.settings.callback_url, &self.settings.secret);
        let condition = kind.condition(self.client.client_id(), conduit);
        let created = self.client.create_webhook_subscription(kind.as_str(), condition, callback, secret).await;
        let sub = match created {
            Ok(created) => {
                self.metrics.subscription_call("create", "ok");
                self.export_totals(created.totals);
                Some(created.subscription)
            }
            Err(TwitchError::Status { status: 409, .. }) => match self.client.all_subscriptions().await {
                Ok(list) => {
                    self.metrics.subscription_call("adopt", "ok");
                    let ours = self.ours(conduit);
                    list.subscriptions.into_iter().find(|s| s.kind == kind.as_str() && is_our_alarm(s, &ours))
                }
                Err(e) => {
                    self.metrics.subscription_call("adopt", failure_label(&e));
                    None
                }
            },
            Err(e) => {
                self.metrics.subscription_call("create", failure_label(&e));
                tracing::warn!(kind = kind.as_str(), error = %e, "cannot subscribe to an app-wide alarm");
                None
            }
        };
        let Some(sub) = sub else { return false };
        self.record(alarm_record(kind, &sub), &[]).await;
        true
    }
}

fn alarm_record(kind: AlarmType, sub: &Subscription) -> SubscriptionRecord {
    SubscriptionRecord {
        streamer: None,
        broadcaster: None,
        subscription_type: kind.as_str().to_owned(),
        subscription_id: sub.id.clone(),
        conduit_id: None,
        status: sub.status.to_string(),
        created_at: OffsetDateTime::now_utc(),
    }
}
