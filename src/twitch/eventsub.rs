//! EventSub message bodies (twitch-protocol.md §5.3, §5.9–5.13).
//!
//! The types are lenient on purpose: unknown fields are ignored, and fields we
//! do not use are not declared, so Twitch adding or changing them cannot break
//! delivery. All ids are strings.

use serde::Deserialize;

/// `Twitch-Eventsub-Message-Type` values.
pub const MESSAGE_NOTIFICATION: &str = "notification";
pub const MESSAGE_VERIFICATION: &str = "webhook_callback_verification";
pub const MESSAGE_REVOCATION: &str = "revocation";

/// Subscription types ChatPulse subscribes to; only these get a challenge answered.
pub const CHANNEL_CHAT_MESSAGE: &str = "channel.chat.message";
pub const STREAM_ONLINE: &str = "stream.online";
pub const STREAM_OFFLINE: &str = "stream.offline";
pub const USER_AUTHORIZATION_REVOKE: &str = "user.authorization.revoke";
pub const CONDUIT_SHARD_DISABLED: &str = "conduit.shard.disabled";

pub const SUBSCRIPTION_TYPES: [&str; 5] =
    [CHANNEL_CHAT_MESSAGE, STREAM_ONLINE, STREAM_OFFLINE, USER_AUTHORIZATION_REVOKE, CONDUIT_SHARD_DISABLED];

pub fn is_supported_type(subscription_type: &str) -> bool {
    SUBSCRIPTION_TYPES.contains(&subscription_type)
}

#[derive(Debug, Clone, Deserialize)]
pub struct Subscription {
    pub id: String,
    pub status: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub version: String,
    #[serde(default)]
    pub condition: serde_json::Map<String, serde_json::Value>,
}

/// Body of `webhook_callback_verification`: a subscription's challenge, or a
/// conduit shard's (which has `conduit_shard` instead of `subscription`).
#[derive(Debug, Deserialize)]
pub struct Verification {
    pub challenge: String,
    pub subscription: Option<Subscription>,
    pub conduit_shard: Option<ConduitShard>,
}

#[derive(Debug, Deserialize)]
pub struct ConduitShard {
    pub conduit_id: String,
    pub shard: String,
}

/// Body of `notification`, generic over the event type.
#[derive(Debug, Deserialize)]
pub struct Notification<E> {
    pub subscription: Subscription,
    pub event: E,
}

/// Body of `revocation`; the reason is `subscription.status`.
#[derive(Debug, Deserialize)]
pub struct Revocation {
    pub subscription: Subscription,
}

/// The fields of a `channel.chat.message` event the vote engine uses.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatMessageEvent {
    pub broadcaster_user_id: String,
    pub chatter_user_id: String,
    #[serde(default)]
    pub chatter_user_login: Option<String>,
    pub message_id: String,
    pub message: ChatMessage,
    /// Set during Shared Chat when the message was sent in another channel.
    #[serde(default)]
    pub source_broadcaster_user_id: Option<String>,
}

/// The fields of a `stream.online` / `stream.offline` event we use.
#[derive(Debug, Clone, Deserialize)]
pub struct StreamEvent {
    pub broadcaster_user_id: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChatMessage {
    pub text: String,
}

/// `user.authorization.revoke` (§5.13): a user disconnected the app.
#[derive(Debug, Clone, Deserialize)]
pub struct AuthorizationRevokeEvent {
    pub client_id: String,
    pub user_id: String,
}

/// `conduit.shard.disabled` (§5.13).
#[derive(Debug, Clone, Deserialize)]
pub struct ShardDisabledEvent {
    pub conduit_id: String,
    pub shard_id: String,
    pub status: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_chat_message_parses_and_extra_fields_are_ignored() {
        let body = r#"{"subscription":{"id":"0f3d","status":"enabled","type":"channel.chat.message","version":"1",
            "condition":{"broadcaster_user_id":"41245072","user_id":"99887766"},
            "transport":{"method":"conduit","conduit_id":"e3a1"},"created_at":"2026-03-14T18:59:42.117290301Z","cost":0,
            "brand_new_field":{"x":1}},
            "event":{"broadcaster_user_id":"41245072","broadcaster_user_login":"pixelpaws","broadcaster_user_name":"PixelPaws",
            "chatter_user_id":"73310458","chatter_user_login":"mossy_owl","chatter_user_name":"Mossy_Owl",
            "message_id":"a3f1","message":{"text":"Cheer100 YES","fragments":[]},"message_type":"text","badges":[],
            "cheer":{"bits":100},"color":"","reply":null,"channel_points_custom_reward_id":null,
            "source_broadcaster_user_id":null,"source_broadcaster_user_login":null,"source_broadcaster_user_name":null,
            "source_message_id":null,"source_badges":null}}"#;
        let n: Notification<ChatMessageEvent> = serde_json::from_str(body).unwrap();
        assert_eq!(n.subscription.kind, CHANNEL_CHAT_MESSAGE);
        assert_eq!(n.event.chatter_user_id, "73310458");
        assert_eq!(n.event.message.text, "Cheer100 YES");
        assert_eq!(n.event.source_broadcaster_user_id, None);
    }

    #[test]
    fn the_documented_app_wide_events_parse() {
        let revoke = r#"{"subscription":{"id":"d41c","status":"enabled","type":"user.authorization.revoke","version":"1",
            "condition":{"client_id":"cp1"},"transport":{"method":"webhook","callback":"https://x.example/webhooks/eventsub"},
            "created_at":"2026-03-14T17:00:00.384920117Z","cost":1},
            "event":{"client_id":"cp1","user_id":"41245072","user_login":null,"user_name":null}}"#;
        let n: Notification<AuthorizationRevokeEvent> = serde_json::from_str(revoke).unwrap();
        assert_eq!((n.event.client_id.as_str(), n.event.user_id.as_str()), ("cp1", "41245072"));
        let disabled = r#"{"subscription":{"id":"5a8e","status":"enabled","type":"conduit.shard.disabled","version":"1",
            "condition":{"client_id":"cp1","conduit_id":"e3a1"},"transport":{"method":"webhook","callback":"https://x.example/w"},
            "created_at":"2026-03-14T17:00:01.002281994Z","cost":0},
            "event":{"conduit_id":"e3a1","shard_id":"0","status":"websocket_disconnected",
            "transport":{"method":"websocket","session_id":"AgoQ","connected_at":"2026-03-14T18:00:01Z","disconnected_at":null}}}"#;
        let n: Notification<ShardDisabledEvent> = serde_json::from_str(disabled).unwrap();
        assert_eq!((n.event.conduit_id.as_str(), n.event.shard_id.as_str()), ("e3a1", "0"));
        assert_eq!(n.event.status, "websocket_disconnected");
    }

    #[test]
    fn both_verification_shapes_parse() {
        let shard: Verification =
            serde_json::from_str(r#"{"challenge":"abc","conduit_shard":{"conduit_id":"c1","shard":"0"}}"#).unwrap();
        assert_eq!(shard.challenge, "abc");
        assert!(shard.subscription.is_none());
        assert_eq!(shard.conduit_shard.map(|s| s.shard), Some("0".to_owned()));
    }
}
