//! The status of an EventSub subscription (twitch-protocol.md §4.4), typed.
//! Twitch may add statuses: an unknown one is kept as [`SubscriptionStatus::Other`]
//! and treated like any status that is not `enabled`.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(from = "String", into = "String")]
pub enum SubscriptionStatus {
    Enabled,
    WebhookCallbackVerificationPending,
    WebhookCallbackVerificationFailed,
    NotificationFailuresExceeded,
    AuthorizationRevoked,
    ModeratorRemoved,
    UserRemoved,
    ChatUserBanned,
    VersionRemoved,
    BetaMaintenance,
    /// Any other status, as Twitch spelled it (the plain-WebSocket
    /// `websocket_*` ones, which conduit subscriptions never have, and
    /// whatever Twitch adds).
    Other(String),
}

/// The named statuses and their spelling on the wire.
const NAMED: [(SubscriptionStatus, &str); 10] = [
    (SubscriptionStatus::Enabled, "enabled"),
    (SubscriptionStatus::WebhookCallbackVerificationPending, "webhook_callback_verification_pending"),
    (SubscriptionStatus::WebhookCallbackVerificationFailed, "webhook_callback_verification_failed"),
    (SubscriptionStatus::NotificationFailuresExceeded, "notification_failures_exceeded"),
    (SubscriptionStatus::AuthorizationRevoked, "authorization_revoked"),
    (SubscriptionStatus::ModeratorRemoved, "moderator_removed"),
    (SubscriptionStatus::UserRemoved, "user_removed"),
    (SubscriptionStatus::ChatUserBanned, "chat_user_banned"),
    (SubscriptionStatus::VersionRemoved, "version_removed"),
    (SubscriptionStatus::BetaMaintenance, "beta_maintenance"),
];

impl SubscriptionStatus {
    pub fn parse(status: &str) -> Self {
        NAMED
            .iter()
            .find(|(_, name)| *name == status)
            .map_or_else(|| Self::Other(status.to_owned()), |(s, _)| s.clone())
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Other(status) => status,
            named => NAMED.iter().find(|(s, _)| s == named).map_or("", |(_, name)| name),
        }
    }

    pub fn is_enabled(&self) -> bool {
        *self == Self::Enabled
    }

    /// Revoked for a reason that only the streamer can fix (§5.8): the bot
    /// was banned from the chat, or the moderator status that authorized it
    /// is gone. Such a subscription is not made again automatically.
    pub fn is_blocking(&self) -> bool {
        matches!(self, Self::ChatUserBanned | Self::ModeratorRemoved)
    }
}

impl From<&str> for SubscriptionStatus {
    fn from(status: &str) -> Self {
        Self::parse(status)
    }
}

impl From<String> for SubscriptionStatus {
    fn from(status: String) -> Self {
        Self::parse(&status)
    }
}

impl From<SubscriptionStatus> for String {
    fn from(status: SubscriptionStatus) -> Self {
        status.as_str().to_owned()
    }
}

impl fmt::Display for SubscriptionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_status_reads_back_as_it_is_spelled() {
        for (status, name) in NAMED {
            assert_eq!(SubscriptionStatus::parse(name), status);
            assert_eq!(status.as_str(), name);
        }
    }

    #[test]
    fn a_status_twitch_adds_later_is_kept_as_spelled_and_is_not_enabled() {
        let status: SubscriptionStatus = serde_json::from_str(r#""websocket_connection_unused""#).unwrap();
        assert_eq!(status, SubscriptionStatus::Other("websocket_connection_unused".into()));
        assert!(!status.is_enabled() && !status.is_blocking());
        assert_eq!(serde_json::to_string(&status).unwrap(), r#""websocket_connection_unused""#);
    }

    #[test]
    fn only_a_banned_bot_or_a_removed_moderator_blocks_resubscribing() {
        let blocking: Vec<&str> = NAMED.iter().filter(|(s, _)| s.is_blocking()).map(|(_, n)| *n).collect();
        assert_eq!(blocking, ["moderator_removed", "chat_user_banned"]);
    }
}
