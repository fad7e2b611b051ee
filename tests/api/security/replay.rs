//! A captured signed delivery replayed (within its ten fresh minutes) does
//! nothing, whatever its type and whichever instance it is sent to: every
//! notification and revocation is de-duplicated by message id before it has
//! any effect.

use std::time::Duration;

use chatpulse::domain::BroadcasterId;
use serde_json::json;

use super::revocations::revocation;
use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(5);

/// A signed `stream.online` or `stream.offline` for `channel`.
fn stream(kind: &str, channel: &BroadcasterId) -> Delivery {
    let channel = channel.as_str();
    let mut event =
        json!({"broadcaster_user_id": channel, "broadcaster_user_login": "x", "broadcaster_user_name": "X"});
    if kind == "stream.online" {
        event["id"] = json!("9001");
        event["type"] = json!("live");
        event["started_at"] = json!("2026-03-14T19:00:00Z");
    }
    let body = json!({
        "subscription": {"id": uuid::Uuid::new_v4().to_string(), "status": "enabled", "type": kind, "version": "1",
            "condition": {"broadcaster_user_id": channel},
            "transport": {"method": "conduit", "conduit_id": "c0ffee00-0000-4000-8000-000000000001"},
            "created_at": "2026-03-14T18:59:42.117290301Z", "cost": 0},
        "event": event
    });
    Delivery::notification(kind, body.to_string())
}

const DUPLICATES: &str = "chatpulse_webhook_messages_total{message_type=\"notification\",outcome=\"duplicate\"}";

/// Live, a vote, offline through `first`; the captured `stream.online`
/// replayed through `second` is acknowledged as a duplicate there and
/// neither sets the status to live nor centres the bar.
async fn replay_online_after_offline(first: &TestApp, second: &TestApp) {
    let s = first.add_streamer().await;
    let channel = &s.streamer.twitch_user_id;
    let mut overlay = first.connect(&s.streamer.overlay_id).await;
    overlay.next_frame(WAIT).await.expect("initial frame");

    let online = stream("stream.online", channel);
    assert_eq!(first.deliver(&online).await.status(), 204);
    overlay.wait_for(WAIT, |f| f.status == "live").await.expect("live");
    assert_eq!(first.chat(channel, "1", "yes").await, 204);
    overlay.wait_for(WAIT, |f| f.value > 9.0).await.expect("the vote shows");
    assert_eq!(first.deliver(&stream("stream.offline", channel)).await.status(), 204);
    overlay.wait_for(WAIT, |f| f.status == "offline").await.expect("offline");

    let replayed = second.deliver(&online).await;
    assert_eq!(replayed.status(), 204, "a duplicate is acknowledged (Twitch would only send it again)");
    assert_eq!(second.metric(DUPLICATES).await, 1.0);
    // The next vote lands on the uncentred bar of a stream still offline.
    assert_eq!(first.chat(channel, "2", "yes").await, 204);
    let frame = overlay.wait_for(WAIT, |f| f.value > 15.0).await.expect("the second vote adds to the first");
    assert_eq!(frame.status, "offline", "the replay did not put the stream live");
}

both_modes! {
async fn a_replayed_stream_online_after_offline_changes_nothing() {
    let app = TestApp::builder().start().await;
    replay_online_after_offline(&app, &app).await;
}
}

/// Two instances of one deployment share the de-duplication: a delivery
/// handled by one is a duplicate on the other.
#[tokio::test]
async fn a_replay_through_another_instance_changes_nothing() {
    run_in(Mode::Distributed, async {
        let first = TestApp::builder().start().await;
        let second = TestApp::builder().start().await;
        replay_online_after_offline(&first, &second).await;
    })
    .await;
}

both_modes! {
async fn a_replayed_revocation_is_handled_once() {
    let app = TestApp::builder().start().await;
    let s = app.add_streamer().await;
    let id = uuid::Uuid::new_v4().to_string();
    let record = chatpulse::store::SubscriptionRecord {
        streamer: Some(s.streamer.id),
        broadcaster: Some(s.streamer.twitch_user_id.clone()),
        subscription_type: "channel.chat.message".into(),
        subscription_id: id.clone(),
        conduit_id: None,
        status: "enabled".into(),
        created_at: time::OffsetDateTime::now_utc(),
    };
    app.repo.upsert_subscription(&record).await.unwrap();
    let d = revocation(&id, "channel.chat.message", "moderator_removed", s.streamer.twitch_user_id.as_str());

    for _ in 0..3 {
        assert_eq!(app.deliver(&d).await.status(), 204);
    }

    assert_eq!(app.metric("chatpulse_eventsub_revocations_total{reason=\"moderator_removed\"}").await, 1.0);
    let duplicates = "chatpulse_webhook_messages_total{message_type=\"revocation\",outcome=\"duplicate\"}";
    assert_eq!(app.metric(duplicates).await, 2.0);
}
}
