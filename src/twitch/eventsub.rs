//! EventSub messages (twitch-protocol.md §5.3, §5.9–5.13, §6): their bodies,
//! and [`parse_message`], which turns one verified message of either
//! transport (webhook or WebSocket) into the typed [`Inbound`] the
//! application dispatches.
//!
//! The types are lenient on purpose: unknown fields are ignored, and fields we
//! do not use are not declared, so Twitch adding or changing them cannot break
//! delivery. User ids are parsed into the domain's newtypes here, at the edge.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::domain::{BroadcasterId, ChatMessage as Chat, ChatterId};

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
    pub broadcaster_user_id: BroadcasterId,
    pub chatter_user_id: ChatterId,
    #[serde(default)]
    pub chatter_user_login: Option<String>,
    pub message_id: String,
    pub message: ChatMessage,
    /// Set during Shared Chat when the message was sent in another channel.
    #[serde(default)]
    pub source_broadcaster_user_id: Option<BroadcasterId>,
}

impl ChatMessageEvent {
    /// The message as the vote engine takes it; `delivery_id` is the
    /// EventSub message id (the de-duplication key), not the chat message's.
    pub fn into_chat(self, delivery_id: String) -> Chat {
        Chat {
            delivery_id,
            channel: self.broadcaster_user_id,
            chatter: self.chatter_user_id,
            emotes: self.message.fragments.into_iter().filter(|f| f.kind == "emote").map(|f| f.text).collect(),
            text: self.message.text,
            relayed_from: self.source_broadcaster_user_id,
            test: false,
        }
    }
}

/// The fields of a `stream.online` / `stream.offline` event we use
/// (`stream.offline` carries neither the stream's id nor a time).
#[derive(Debug, Clone, Deserialize)]
pub struct StreamEvent {
    pub broadcaster_user_id: BroadcasterId,
    /// `stream.online`: Twitch's id of the stream.
    #[serde(default)]
    pub id: Option<String>,
    /// `stream.online`: when the stream started (RFC 3339).
    #[serde(default)]
    pub started_at: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChatMessage {
    pub text: String,
    /// The message in pieces: text, emotes, mentions, cheermotes.
    #[serde(default)]
    pub fragments: Vec<Fragment>,
}

/// One piece of a chat message (§5.3); only its type and text are used.
#[derive(Debug, Clone, Deserialize)]
pub struct Fragment {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub text: String,
}

/// `user.authorization.revoke` (§5.13): a user disconnected the app.
#[derive(Debug, Clone, Deserialize)]
pub struct AuthorizationRevokeEvent {
    pub client_id: String,
    /// A streamer, or the bot account.
    pub user_id: BroadcasterId,
}

/// `conduit.shard.disabled` (§5.13).
#[derive(Debug, Clone, Deserialize)]
pub struct ShardDisabledEvent {
    pub conduit_id: String,
    pub shard_id: String,
    pub status: String,
}

/// The version of each subscription type this service reads; a
/// notification of another version is acknowledged and not acted on.
const VERSION: &str = "1";

/// One verified EventSub message, typed: what both transports hand to the
/// application's dispatcher.
#[derive(Debug, Clone)]
pub struct Inbound {
    /// The message id, identical on Twitch's redeliveries: the
    /// de-duplication key.
    pub message_id: String,
    pub kind: InboundKind,
}

#[derive(Debug, Clone)]
pub enum InboundKind {
    Notification {
        subscription: Subscription,
        event: Event,
    },
    /// The subscription ended; the reason is `subscription.status`.
    Revocation {
        subscription: Subscription,
    },
}

/// A notification's event, chosen by the signed body's `subscription.type`
/// and `version` (never by a header, which the signature does not cover).
#[derive(Debug, Clone)]
pub enum Event {
    ChatMessage(ChatMessageEvent),
    StreamOnline(StreamEvent),
    StreamOffline(StreamEvent),
    AuthorizationRevoke(AuthorizationRevokeEvent),
    ShardDisabled(ShardDisabledEvent),
    /// A valid notification of a type or version this service does not use:
    /// acknowledged, nothing else.
    Other,
}

/// One message as a transport received it.
#[derive(Debug)]
pub enum Message {
    /// A webhook's challenge (webhook transport only).
    Verification(Verification),
    Inbound(Inbound),
    /// A message type this service does not know: acknowledged and ignored.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Not JSON, or missing what its type requires (serde's words, never the body).
    #[error("malformed body: {0}")]
    Malformed(String),
    /// A notification or revocation without its subscription type (Twitch
    /// always sends it).
    #[error("the subscription type is missing")]
    MissingType,
    /// The unsigned subscription-type header names another type than the
    /// signed body: a tampered or confused delivery.
    #[error("the subscription type header says {header:?}, the body says {body:?}")]
    TypeMismatch { header: String, body: String },
}

#[derive(Deserialize)]
struct RawNotification<'a> {
    subscription: Subscription,
    #[serde(borrow)]
    event: &'a RawValue,
}

fn malformed(e: serde_json::Error) -> MessageError {
    MessageError::Malformed(e.to_string())
}

fn event<T: serde::de::DeserializeOwned>(raw: &RawValue) -> Result<T, MessageError> {
    serde_json::from_str(raw.get()).map_err(malformed)
}

impl Event {
    /// The event of a notification of `kind` and `version`.
    fn parse(kind: &str, version: &str, raw: &RawValue) -> Result<Self, MessageError> {
        if version != VERSION {
            return Ok(Event::Other);
        }
        Ok(match kind {
            CHANNEL_CHAT_MESSAGE => Event::ChatMessage(event(raw)?),
            STREAM_ONLINE => Event::StreamOnline(event(raw)?),
            STREAM_OFFLINE => Event::StreamOffline(event(raw)?),
            USER_AUTHORIZATION_REVOKE => Event::AuthorizationRevoke(event(raw)?),
            CONDUIT_SHARD_DISABLED => Event::ShardDisabled(event(raw)?),
            _ => Event::Other,
        })
    }
}

/// Parses one message whose origin its transport has already verified.
/// `subscription_type` is the `Twitch-Eventsub-Subscription-Type` header
/// (webhook) or `metadata.subscription_type` (WebSocket): a notification or
/// revocation must carry it, and it must agree with the signed body, which
/// alone decides what the message is.
pub fn parse_message(
    message_id: &str,
    message_type: &str,
    subscription_type: Option<&str>,
    body: &[u8],
) -> Result<Message, MessageError> {
    let agrees = |subscription: &Subscription| match subscription_type {
        None => Err(MessageError::MissingType),
        Some(header) if header != subscription.kind => {
            Err(MessageError::TypeMismatch { header: header.to_owned(), body: subscription.kind.clone() })
        }
        Some(_) => Ok(()),
    };
    let kind = match message_type {
        MESSAGE_VERIFICATION => return serde_json::from_slice(body).map(Message::Verification).map_err(malformed),
        MESSAGE_NOTIFICATION => {
            let raw: RawNotification<'_> = serde_json::from_slice(body).map_err(malformed)?;
            agrees(&raw.subscription)?;
            let event = Event::parse(&raw.subscription.kind, &raw.subscription.version, raw.event)?;
            InboundKind::Notification { subscription: raw.subscription, event }
        }
        MESSAGE_REVOCATION => {
            let revocation: Revocation = serde_json::from_slice(body).map_err(malformed)?;
            agrees(&revocation.subscription)?;
            InboundKind::Revocation { subscription: revocation.subscription }
        }
        _ => return Ok(Message::Unknown),
    };
    Ok(Message::Inbound(Inbound { message_id: message_id.to_owned(), kind }))
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
        assert_eq!(n.event.chatter_user_id.as_str(), "73310458");
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

    fn chat(kind: &str, version: &str) -> String {
        format!(
            r#"{{"subscription":{{"id":"0f3d","status":"enabled","type":"{kind}","version":"{version}","condition":{{}}}},
            "event":{{"broadcaster_user_id":"41245072","chatter_user_id":"73310458","message_id":"a3f1",
            "message":{{"text":"yes"}}}}}}"#
        )
    }

    #[test]
    fn the_signed_body_chooses_the_event_and_a_disagreeing_header_is_refused() {
        let body = chat(CHANNEL_CHAT_MESSAGE, "1");
        let header = Some(CHANNEL_CHAT_MESSAGE);
        let Ok(Message::Inbound(m)) = parse_message("m1", MESSAGE_NOTIFICATION, header, body.as_bytes()) else {
            panic!("a chat notification parses");
        };
        assert_eq!(m.message_id, "m1");
        assert!(matches!(m.kind, InboundKind::Notification { event: Event::ChatMessage(_), .. }));
        let e = parse_message("m1", MESSAGE_NOTIFICATION, Some(STREAM_ONLINE), body.as_bytes()).unwrap_err();
        assert!(matches!(e, MessageError::TypeMismatch { .. }), "{e}");
        let e = parse_message("m1", MESSAGE_NOTIFICATION, None, body.as_bytes()).unwrap_err();
        assert_eq!(e, MessageError::MissingType);
    }

    #[test]
    fn types_and_versions_we_do_not_use_are_acknowledged_without_an_event() {
        for (kind, version) in [("channel.follow", "2"), (CHANNEL_CHAT_MESSAGE, "2")] {
            let body = chat(kind, version);
            let Ok(Message::Inbound(m)) = parse_message("m", MESSAGE_NOTIFICATION, Some(kind), body.as_bytes()) else {
                panic!("parses");
            };
            assert!(matches!(m.kind, InboundKind::Notification { event: Event::Other, .. }));
        }
        assert!(matches!(parse_message("m", "something_new", None, b"{}"), Ok(Message::Unknown)));
    }

    #[test]
    fn a_chat_event_with_an_impossible_user_id_is_malformed() {
        let body = chat(CHANNEL_CHAT_MESSAGE, "1").replace("73310458", "not an id");
        let e = parse_message("m", MESSAGE_NOTIFICATION, Some(CHANNEL_CHAT_MESSAGE), body.as_bytes()).unwrap_err();
        assert!(matches!(e, MessageError::Malformed(_)));
    }

    #[test]
    fn a_chat_event_becomes_the_engines_chat_message() {
        let n: Notification<ChatMessageEvent> = serde_json::from_str(&chat(CHANNEL_CHAT_MESSAGE, "1")).unwrap();
        let chat = n.event.into_chat("delivery-1".into());
        assert_eq!(chat.delivery_id, "delivery-1");
        assert_eq!((chat.channel.as_str(), chat.chatter.as_str(), chat.text.as_str()), ("41245072", "73310458", "yes"));
        assert_eq!(chat.relayed_from, None);
        assert!(chat.emotes.is_empty() && !chat.test);
    }

    #[test]
    fn the_emotes_of_a_chat_message_come_from_its_emote_fragments() {
        let body = r#"{"broadcaster_user_id":"1","chatter_user_id":"2","message_id":"m",
            "message":{"text":"D: hi D:","fragments":[
              {"type":"emote","text":"D:","emote":{"id":"3"}},{"type":"text","text":" hi "},
              {"type":"mention","text":"@x"},{"type":"emote","text":"D:","emote":{"id":"3"}},{"type":"new_kind"}]}}"#;
        let event: ChatMessageEvent = serde_json::from_str(body).unwrap();
        assert_eq!(event.into_chat("d".into()).emotes, ["D:", "D:"]);
    }
}
