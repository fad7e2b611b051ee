//! The EventSub WebSocket (§6).

use std::time::Duration;

use serde_json::json;
use twitch_sim::ChatInput;

use crate::harness::*;

#[tokio::test]
async fn websocket_shards_get_notifications_and_report_disconnects() {
    let t = start().await;
    let app = t.app_token().await;
    let alarm = Receiver::start(Challenge::Echo).await;
    let (_, body) = t.post("/eventsub/conduits", &app, json!({"shard_count": 1})).await;
    let conduit = body["data"][0]["id"].as_str().unwrap().to_owned();

    let mut ws = ws_connect(&t.ws_url("?keepalive_timeout_seconds=3")).await;
    let welcome = next_message(&mut ws).await.unwrap();
    assert_eq!(welcome["metadata"]["message_type"], "session_welcome");
    assert!(is_nanosecond_rfc3339(welcome["metadata"]["message_timestamp"].as_str().unwrap()));
    let session = welcome["payload"]["session"].clone();
    assert_eq!(session["status"], "connected");
    assert_eq!(session["keepalive_timeout_seconds"], 10, "clamped to 10..600");
    assert!(session["reconnect_url"].is_null());
    let session_id = session["id"].as_str().unwrap().to_owned();

    let (status, body) = t.bind_websocket(&app, &conduit, &session_id).await;
    assert_eq!(status, 202);
    assert_eq!(body["errors"], json!([]));
    assert_eq!(body["data"][0]["status"], "enabled", "a WebSocket shard is enabled at once");
    assert_eq!(body["data"][0]["transport"]["session_id"], session_id.as_str());
    assert_eq!(body["data"][0]["transport"]["method"], "websocket");

    let alarm_sub = json!({"type": "conduit.shard.disabled", "version": "1", "condition": {"client_id": t.client_id()},
        "transport": {"method": "webhook", "callback": alarm.url, "secret": HOOK_SECRET}});
    assert_eq!(t.post("/eventsub/subscriptions", &app, alarm_sub).await.0, 202);
    alarm.wait_count("webhook_callback_verification", None, 1).await;
    let (streamer, bot) = t.streamer_and_bot();
    let sub = t
        .subscribe(&app, "channel.chat.message", json!({"broadcaster_user_id": streamer, "user_id": bot}), &conduit)
        .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let input =
        ChatInput { broadcaster_user_id: streamer, chatter_user_id: bot, chatter_login: None, text: "yes".into() };
    t.sim.post_chat(input).await.unwrap();
    let note = next_message(&mut ws).await.unwrap();
    assert_eq!(note["metadata"]["message_type"], "notification");
    assert_eq!(note["metadata"]["subscription_type"], "channel.chat.message");
    assert_eq!(note["metadata"]["subscription_version"], "1");
    assert!(note["metadata"]["message_id"].is_string());
    assert_eq!(note["payload"]["subscription"], sub, "the payload is the webhook body");
    assert_eq!(note["payload"]["event"]["message"]["text"], "yes");

    ws.close(None).await.unwrap();
    t.wait_shard(&app, &conduit, "0", "websocket_disconnected").await;
    let (_, shards) = t.get(&format!("/eventsub/conduits/shards?conduit_id={conduit}"), &app).await;
    assert!(shards["data"][0]["transport"]["disconnected_at"].is_string());
    let disabled = alarm.wait_count("notification", Some("conduit.shard.disabled"), 1).await.remove(0);
    let event = disabled.json()["event"].clone();
    assert_eq!(event["status"], "websocket_disconnected");
    assert_eq!(event["transport"]["method"], "websocket");
    assert_eq!(event["transport"]["session_id"], session_id.as_str());
    let (_, body) = t.bind_websocket(&app, &conduit, &session_id).await;
    assert_eq!(body["errors"][0]["message"], "websocket session is not connected");
}

#[tokio::test]
async fn websocket_sessions_close_on_misuse_and_survive_a_reconnect() {
    let t = start().await;
    let app = t.app_token().await;
    let mut unused = ws_connect(&t.ws_url("?sim_unused_timeout_ms=150")).await;
    assert!(next_message(&mut unused).await.is_some());
    assert_eq!(close_code(&mut unused).await, Some(4003), "unused sessions are closed");

    let mut chatty = ws_connect(&t.ws_url("")).await;
    next_message(&mut chatty).await.unwrap();
    {
        use futures_util::SinkExt;
        chatty.send(tokio_tungstenite::tungstenite::Message::Text("hello".into())).await.unwrap();
    }
    assert_eq!(close_code(&mut chatty).await, Some(4001), "clients must not send data frames");

    let (_, body) = t.post("/eventsub/conduits", &app, json!({"shard_count": 1})).await;
    let conduit = body["data"][0]["id"].as_str().unwrap().to_owned();
    let mut old = ws_connect(&t.ws_url("")).await;
    let old_id = next_message(&mut old).await.unwrap()["payload"]["session"]["id"].as_str().unwrap().to_owned();
    assert_eq!(t.bind_websocket(&app, &conduit, &old_id).await.0, 202);
    let (streamer, bot) = t.streamer_and_bot();
    t.subscribe(&app, "channel.chat.message", json!({"broadcaster_user_id": streamer, "user_id": bot}), &conduit).await;

    let (status, body) = t.sim_post(&format!("/sim/websocket/{old_id}/reconnect"), json!({})).await;
    assert_eq!(status, 202);
    let url = body["reconnect_url"].as_str().unwrap().to_owned();
    let reconnect = next_message(&mut old).await.unwrap();
    assert_eq!(reconnect["metadata"]["message_type"], "session_reconnect");
    assert_eq!(reconnect["payload"]["session"]["status"], "reconnecting");
    assert_eq!(reconnect["payload"]["session"]["reconnect_url"], url.as_str());

    let mut new = ws_connect(&url).await;
    let welcome = next_message(&mut new).await.unwrap();
    let new_id = welcome["payload"]["session"]["id"].as_str().unwrap().to_owned();
    assert_ne!(new_id, old_id);
    let (_, shards) = t.get(&format!("/eventsub/conduits/shards?conduit_id={conduit}"), &app).await;
    assert_eq!(shards["data"][0]["status"], "enabled");
    assert_eq!(shards["data"][0]["transport"]["session_id"], new_id.as_str(), "the binding carries over");
    old.close(None).await.unwrap();
    let input =
        ChatInput { broadcaster_user_id: streamer, chatter_user_id: bot, chatter_login: None, text: "yes".into() };
    t.sim.post_chat(input).await.unwrap();
    let note = next_message(&mut new).await.unwrap();
    assert_eq!(note["payload"]["event"]["message"]["text"], "yes");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, shards) = t.get(&format!("/eventsub/conduits/shards?conduit_id={conduit}"), &app).await;
    assert_eq!(shards["data"][0]["status"], "enabled", "closing the old socket does not disable the shard");

    let mut stale = ws_connect(&url).await;
    assert_eq!(close_code(&mut stale).await, Some(4007), "a used reconnect URL is invalid");
}

#[tokio::test]
async fn a_reconnected_session_keeps_its_keepalive_setting() {
    let t = start().await;
    let app = t.app_token().await;
    let (_, body) = t.post("/eventsub/conduits", &app, json!({"shard_count": 1})).await;
    let conduit = body["data"][0]["id"].as_str().unwrap().to_owned();
    let mut old = ws_connect(&t.ws_url("?keepalive_timeout_seconds=45")).await;
    let welcome = next_message(&mut old).await.unwrap();
    assert_eq!(welcome["payload"]["session"]["keepalive_timeout_seconds"], 45);
    let old_id = welcome["payload"]["session"]["id"].as_str().unwrap().to_owned();
    assert_eq!(t.bind_websocket(&app, &conduit, &old_id).await.0, 202);

    let (status, body) = t.sim_post(&format!("/sim/websocket/{old_id}/reconnect"), json!({})).await;
    assert_eq!(status, 202);
    let url = body["reconnect_url"].as_str().unwrap().to_owned();
    let mut new = ws_connect(&url).await;
    let welcome = next_message(&mut new).await.unwrap();
    assert_eq!(welcome["metadata"]["message_type"], "session_welcome");
    assert_eq!(welcome["payload"]["session"]["keepalive_timeout_seconds"], 45, "§6.5: the session carries over");
    let new_id = welcome["payload"]["session"]["id"].as_str().unwrap().to_owned();
    let sessions = t.sim.websocket_sessions();
    let session = sessions.iter().find(|s| s["id"] == new_id.as_str()).unwrap();
    assert_eq!(session["keepalive_timeout_seconds"], 45);
}
