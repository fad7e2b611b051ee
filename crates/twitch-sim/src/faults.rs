//! Failures on demand: revocations with any status that can happen to a
//! subscription (§4.4, §5.8), a webhook shard failing (§3.9, §5.7), and the
//! fault switches of Helix, the token endpoint and webhook deliveries.

use serde_json::json;

use super::state::{self, Fault};
use super::{DeliveryFault, REVOCATION_STATUSES, SimError, Simulator, delivery};

/// The revocation statuses that can happen to `sub` (§4.4, §5.8):
/// `version_removed` and `beta_maintenance` to any; `authorization_revoked`
/// and `user_removed` when its condition names a user; `chat_user_banned`
/// and `moderator_removed` to chat subscriptions (the bot in the condition);
/// `notification_failures_exceeded` only to a plain webhook; `websocket_*`
/// only to a plain WebSocket subscription (a conduit's shard fails instead).
pub(crate) fn revocation_statuses_for(sub: &state::Subscription) -> Vec<&'static str> {
    let mut statuses = vec!["version_removed", "beta_maintenance"];
    if sub.condition.keys().any(|k| k.ends_with("user_id")) {
        statuses.extend(["authorization_revoked", "user_removed"]);
    }
    if sub.kind == "channel.chat.message" {
        statuses.extend(["chat_user_banned", "moderator_removed"]);
    }
    match sub.transport {
        state::SubTransport::Webhook { .. } => statuses.push("notification_failures_exceeded"),
        state::SubTransport::WebSocket { .. } => {
            statuses.extend(REVOCATION_STATUSES.iter().filter(|s| s.starts_with("websocket_")));
        }
        state::SubTransport::Conduit { .. } => {}
    }
    statuses.sort_unstable_by_key(|s| REVOCATION_STATUSES.iter().position(|r| r == s));
    statuses
}

impl Simulator {
    /// Revokes a subscription with `status` (§4.4, §5.8): it gets that
    /// status, a `revocation` message is sent, and nothing more is delivered
    /// for it. Only a status that can happen to this subscription is
    /// accepted (`revocation_statuses_for`); anything else is a 400.
    #[allow(clippy::unused_async)] // async by contract: a WebSocket transport will await here
    pub async fn revoke_subscription(&self, subscription_id: &str, status: &str) -> Result<(), SimError> {
        if !REVOCATION_STATUSES.contains(&status) {
            return Err(SimError::BadRequest(format!("status must be one of {}", REVOCATION_STATUSES.join(", "))));
        }
        let outgoing = {
            let mut state = self.state();
            let sub = state
                .subscriptions
                .iter_mut()
                .find(|s| s.id == subscription_id)
                .ok_or_else(|| SimError::NotFound(format!("subscription {subscription_id}")))?;
            let possible = revocation_statuses_for(sub);
            if !possible.contains(&status) {
                return Err(SimError::BadRequest(format!(
                    "{status} cannot happen to a {} subscription with {} transport; possible: {}",
                    sub.kind,
                    sub.transport.method(),
                    possible.join(", ")
                )));
            }
            if !sub.is_active() {
                return Err(SimError::BadRequest(format!("subscription is already {}", sub.status)));
            }
            sub.status = status.to_owned();
            let sub = sub.clone();
            delivery::revocation(&mut state, &sub)
        };
        delivery::spawn(self, outgoing);
        Ok(())
    }

    /// Disables a webhook shard as Twitch does after a long run of failed
    /// deliveries (§3.9, §5.7): status `notification_failures_exceeded`, and
    /// `conduit.shard.disabled` sent to the client's plain-webhook alarms.
    pub fn disable_shard(&self, conduit_id: &str, shard_id: &str) -> Result<(), SimError> {
        let (client_id, event) = {
            let mut state = self.state();
            let conduit = state
                .conduits
                .iter_mut()
                .find(|c| c.id == conduit_id)
                .ok_or_else(|| SimError::NotFound(format!("conduit {conduit_id}")))?;
            let index: usize =
                shard_id.parse().map_err(|_| SimError::BadRequest("shard id must be a number".into()))?;
            let client_id = conduit.client_id.clone();
            let shard = conduit.shards.get_mut(index).ok_or_else(|| SimError::NotFound(format!("shard {shard_id}")))?;
            if shard.status != "enabled" {
                return Err(SimError::BadRequest(format!("shard is {}", shard.status)));
            }
            shard.status = "notification_failures_exceeded".into();
            let event = json!({
                "conduit_id": conduit_id, "shard_id": shard_id, "status": "notification_failures_exceeded",
                "transport": shard.transport_json(),
            });
            (client_id, event)
        };
        self.sweep();
        delivery::emit_shard_disabled(self, &client_id, conduit_id, &event);
        Ok(())
    }

    /// Applies `fault` to each of the next `count` webhook notifications. A
    /// `stale` or `bad_signature` fault spoils the first attempt only: a retry
    /// is sent correctly, as Twitch would. A `duplicate` one sends the message
    /// again once an attempt got through.
    pub fn inject_delivery_faults(&self, fault: DeliveryFault, count: u32) {
        let mut state = self.state();
        for _ in 0..count {
            state.delivery_faults.push_back(fault);
        }
    }

    /// Fault switch: the next `count` Helix calls answer `status` (429 comes
    /// with `Ratelimit-Remaining: 0` and a real `Ratelimit-Reset`). `count` 0 clears it.
    pub fn fail_next(&self, status: u16, count: u32) {
        self.state().fault = (count > 0).then_some(Fault { status, remaining: count });
    }

    /// Fault switch of the token endpoint: the next `count` calls to
    /// `/oauth2/token` answer `status` with Twitch's OAuth error body, as
    /// during an outage. `count` 0 clears it.
    pub fn fail_next_token_calls(&self, status: u16, count: u32) {
        self.state().token_fault = (count > 0).then_some(Fault { status, remaining: count });
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn revocation_statuses_depend_on_the_transport_and_type() {
        let mut condition = serde_json::Map::new();
        condition.insert("broadcaster_user_id".into(), json!("1"));
        condition.insert("user_id".into(), json!("2"));
        let mut sub = state::Subscription {
            id: "s".into(),
            client_id: "c".into(),
            status: "enabled".into(),
            kind: "channel.chat.message".into(),
            version: "1".into(),
            condition,
            created_at: String::new(),
            transport: state::SubTransport::Conduit { conduit_id: "x".into() },
            cost: 0,
            seq: 1,
            failures: 0,
            disabled_at: None,
        };
        let on_conduit = revocation_statuses_for(&sub);
        assert_eq!(on_conduit.len(), 6);
        assert!(!on_conduit.contains(&"notification_failures_exceeded"));
        assert!(!on_conduit.iter().any(|s| s.starts_with("websocket_")));
        sub.transport = state::SubTransport::Webhook { callback: String::new(), secret: String::new() };
        assert!(revocation_statuses_for(&sub).contains(&"notification_failures_exceeded"));
        sub.transport = state::SubTransport::WebSocket {
            session_id: String::new(),
            user_id: String::new(),
            connected_at: String::new(),
            disconnected_at: None,
        };
        let on_socket = revocation_statuses_for(&sub);
        assert_eq!(on_socket.len(), 14);
        assert!(!on_socket.contains(&"notification_failures_exceeded"));
        sub.kind = "stream.online".into();
        sub.condition.remove("user_id");
        sub.transport = state::SubTransport::Conduit { conduit_id: "x".into() };
        assert_eq!(
            revocation_statuses_for(&sub),
            ["authorization_revoked", "user_removed", "version_removed", "beta_maintenance"]
        );
    }
}
