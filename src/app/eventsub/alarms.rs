//! The two app-wide alarms, as plain webhooks: `user.authorization.revoke`
//! and `conduit.shard.disabled`.

use serde_json::{Value, json};

use super::channels::failure_label;
use super::{ENABLED, EventSub, Repairs};
use crate::twitch::client::{Subscription, TwitchError};
use crate::twitch::eventsub::{CONDUIT_SHARD_DISABLED, USER_AUTHORIZATION_REVOKE};

impl EventSub {
    pub(super) fn app_conditions(&self, conduit: &str) -> [(&'static str, Value); 2] {
        let client_id = self.client.client_id();
        [
            (USER_AUTHORIZATION_REVOKE, json!({ "client_id": client_id })),
            (CONDUIT_SHARD_DISABLED, json!({ "client_id": client_id, "conduit_id": conduit })),
        ]
    }

    /// Is this one of our app-wide alarm subscriptions (right type, our
    /// callback, our conduit)?
    pub(super) fn is_our_alarm(&self, sub: &Subscription, conduit: &str) -> bool {
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
    pub(super) async fn drop_app_subscriptions(&self, conduit: &str) {
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
    pub(super) async fn ensure_app_subscriptions(&self, conduit: &str) {
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

    /// Exactly one working subscription per app-wide alarm.
    pub(super) async fn reconcile_alarms(&self, conduit: &str, subs: &[Subscription], repairs: &mut Repairs) {
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
