//! Signed EventSub deliveries to our webhook, as Twitch sends them (or, with
//! a field broken, as it never would).

use chatpulse::domain::BroadcasterId;
use chatpulse::twitch::signature;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::TestApp;

pub const SECRET: &str = chatpulse::config::DEV_WEBHOOK_SECRET;

/// A Twitch timestamp as EventSub sends it (nanoseconds, UTC).
pub fn timestamp(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap()
}

/// A `channel.chat.message` body in Twitch's exact shape.
pub fn chat_body(broadcaster: &str, chatter: &str, text: &str, source: Option<&str>) -> String {
    let source = source.map_or("null".to_owned(), |s| format!("\"{s}\""));
    serde_json::json!({
        "subscription": {
            "id": "0f3d9a52-8c71-4b9e-a1d4-6e2c7b5f3a10", "status": "enabled", "type": "channel.chat.message",
            "version": "1", "condition": {"broadcaster_user_id": broadcaster, "user_id": "99887766"},
            "transport": {"method": "conduit", "conduit_id": "e3a1c9d2-58b4-4f0e-a7c6-2d9f81b0c4aa"},
            "created_at": "2026-03-14T18:59:42.117290301Z", "cost": 0
        },
        "event": {
            "broadcaster_user_id": broadcaster, "broadcaster_user_login": "streamer", "broadcaster_user_name": "Streamer",
            "chatter_user_id": chatter, "chatter_user_login": format!("viewer{chatter}"), "chatter_user_name": "Viewer",
            "message_id": uuid::Uuid::new_v4().to_string(),
            "message": {"text": text, "fragments": [{"type": "text", "text": text, "cheermote": null, "emote": null, "mention": null}]},
            "message_type": "text", "badges": [], "cheer": null, "color": "#1E90FF", "reply": null,
            "channel_points_custom_reward_id": null,
            "source_broadcaster_user_id": serde_json::from_str::<serde_json::Value>(&source).unwrap(),
            "source_broadcaster_user_login": null, "source_broadcaster_user_name": null,
            "source_message_id": null, "source_badges": null
        }
    })
    .to_string()
}

/// One EventSub delivery; fields are public so tests can break them.
#[derive(Clone)]
pub struct Delivery {
    pub id: String,
    pub timestamp: String,
    pub message_type: String,
    pub subscription_type: Option<String>,
    pub body: Vec<u8>,
    pub secret: String,
    /// Overrides the computed signature header when set.
    pub signature: Option<String>,
    /// Header names to leave out.
    pub omit: Vec<&'static str>,
}

impl Delivery {
    pub fn notification(subscription_type: &str, body: String) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            timestamp: timestamp(OffsetDateTime::now_utc()),
            message_type: "notification".into(),
            subscription_type: Some(subscription_type.into()),
            body: body.into_bytes(),
            secret: SECRET.into(),
            signature: None,
            omit: vec![],
        }
    }

    pub fn chat(broadcaster: &str, chatter: &str, text: &str) -> Self {
        Self::notification("channel.chat.message", chat_body(broadcaster, chatter, text, None))
    }

    pub fn of_type(mut self, message_type: &str) -> Self {
        self.message_type = message_type.into();
        self
    }

    pub fn signature_header(&self) -> String {
        self.signature.clone().unwrap_or_else(|| signature::sign(&self.secret, &self.id, &self.timestamp, &self.body))
    }
}

/// The POST of one EventSub delivery to `base`'s webhook, as Twitch sends it
/// (headers in `d.omit` left out).
pub fn delivery_request(http: &reqwest::Client, base: &str, d: &Delivery) -> reqwest::RequestBuilder {
    let mut req = http.post(format!("{base}/webhooks/eventsub")).header("content-type", "application/json");
    let signature = d.signature_header();
    let mut headers = vec![
        ("Twitch-Eventsub-Message-Id", d.id.clone()),
        ("Twitch-Eventsub-Message-Retry", "0".into()),
        ("Twitch-Eventsub-Message-Type", d.message_type.clone()),
        ("Twitch-Eventsub-Message-Signature", signature),
        ("Twitch-Eventsub-Message-Timestamp", d.timestamp.clone()),
        ("Twitch-Eventsub-Subscription-Version", "1".into()),
    ];
    if let Some(t) = &d.subscription_type {
        headers.push(("Twitch-Eventsub-Subscription-Type", t.clone()));
    }
    for (name, value) in headers {
        if !d.omit.contains(&name) {
            req = req.header(name, value);
        }
    }
    req.body(d.body.clone())
}

impl TestApp {
    pub async fn deliver(&self, d: &Delivery) -> reqwest::Response {
        delivery_request(&self.http, &self.base, d).send().await.expect("webhook request")
    }

    /// Posts one signed chat message and returns the HTTP status.
    pub async fn chat(&self, broadcaster: &BroadcasterId, chatter: &str, text: &str) -> u16 {
        self.deliver(&Delivery::chat(broadcaster.as_str(), chatter, text)).await.status().as_u16()
    }
}
