//! Streams and clips (§2.6, §7).

use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn streams_go_online_and_offline_with_consistent_ids_and_clips_need_a_live_channel() {
    let t = start().await;
    let app = t.app_token().await;
    let receiver = Receiver::start(Challenge::Echo).await;
    let conduit = t.conduit_for(&app, &receiver).await;
    let (user_token, _) = t.user_token("pixelpaws", "channel:bot clips:edit").await;
    let streamer = t.sim.user_by_login("pixelpaws").unwrap();
    for kind in ["stream.online", "stream.offline"] {
        t.subscribe(&app, kind, json!({"broadcaster_user_id": streamer.id}), &conduit).await;
    }
    assert_eq!(t.post(&format!("/clips?broadcaster_id={}", streamer.id), &user_token, json!({})).await.0, 404);
    let (_, streams) = t.get(&format!("/streams?user_id={}", streamer.id), &app).await;
    assert_eq!(streams["data"], json!([]), "offline channels are absent");

    let (status, body) = t.sim_post(&format!("/sim/streams/{}/online", streamer.id), json!({})).await;
    assert_eq!(status, 200);
    let stream_id = body["stream_id"].as_str().unwrap().to_owned();
    let online = receiver.wait_count("notification", Some("stream.online"), 1).await.remove(0);
    assert!(signature_valid(SHARD_SECRET, &online));
    let event = online.json()["event"].clone();
    let keys: std::collections::BTreeSet<&str> = event.as_object().unwrap().keys().map(String::as_str).collect();
    let expected =
        ["broadcaster_user_id", "broadcaster_user_login", "broadcaster_user_name", "id", "started_at", "type"];
    assert!(expected.iter().all(|k| keys.contains(k)), "{event}");
    assert_eq!(event["id"], stream_id.as_str());
    assert_eq!(event["type"], "live");
    assert_eq!(event["broadcaster_user_login"], "pixelpaws");
    let started = event["started_at"].as_str().unwrap();
    assert!(time::OffsetDateTime::parse(started, &time::format_description::well_known::Rfc3339).is_ok());

    let (_, streams) = t.get(&format!("/streams?user_id={}&user_id=12345", streamer.id), &app).await;
    assert_eq!(streams["data"].as_array().unwrap().len(), 1);
    assert_eq!(streams["data"][0]["id"], stream_id.as_str(), "Get Streams id = stream.online id");
    assert_eq!(streams["data"][0]["type"], "live");

    // Clips: user token with clips:edit; app tokens are refused.
    let (status, clip) = t.post(&format!("/clips?broadcaster_id={}", streamer.id), &user_token, json!({})).await;
    assert_eq!(status, 202);
    let clip_id = clip["data"][0]["id"].as_str().unwrap();
    assert!(clip["data"][0]["edit_url"].as_str().unwrap().ends_with(&format!("/pixelpaws/clip/{clip_id}")));
    let (_, clips) = t.get(&format!("/clips?id={clip_id}"), &app).await;
    assert_eq!(clips["data"], json!([]), "still being processed (§7.3)");
    t.sim.advance_clock(t.sim.config().clip_processing_delay);
    let (_, clips) = t.get(&format!("/clips?id={clip_id}"), &app).await;
    assert_eq!(clips["data"][0]["id"], clip_id);
    assert_eq!(clips["data"][0]["broadcaster_id"], streamer.id.as_str());
    assert_eq!(t.post(&format!("/clips?broadcaster_id={}", streamer.id), &app, json!({})).await.0, 401);

    // Going live twice sends nothing new.
    t.sim.set_live(&streamer.id, true).await.unwrap();
    t.sim.set_live(&streamer.id, false).await.unwrap();
    let offline = receiver.wait_count("notification", Some("stream.offline"), 1).await.remove(0);
    let event = offline.json()["event"].clone();
    let keys: std::collections::BTreeSet<&str> = event.as_object().unwrap().keys().map(String::as_str).collect();
    let expected = ["broadcaster_user_id", "broadcaster_user_login", "broadcaster_user_name"];
    assert!(expected.iter().all(|k| keys.contains(k)) && !keys.contains("id"), "{event}");
    assert_eq!(receiver.of_type("notification", Some("stream.online")).len(), 1);
    let (_, streams) = t.get(&format!("/streams?user_id={}", streamer.id), &app).await;
    assert_eq!(streams["data"], json!([]));
    assert_eq!(streams["pagination"], json!({}));
}
