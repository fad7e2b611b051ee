//! Clips (§7.1–§7.4) and stream markers (§7.6), on the simulator's clock.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::harness::*;

impl TestSim {
    /// Takes the channel live and advances the clock by `seconds` into the broadcast.
    async fn live_for(&self, broadcaster: &str, seconds: u64) {
        let (status, _) = self.sim_post(&format!("/sim/streams/{broadcaster}/online"), json!({})).await;
        assert_eq!(status, 200);
        self.sim.advance_clock(Duration::from_secs(seconds));
    }

    async fn create_clip(&self, token: &str, broadcaster: &str) -> (StatusCode, Value) {
        self.post(&format!("/clips?broadcaster_id={broadcaster}&has_delay=false"), token, json!({})).await
    }
}

#[tokio::test]
async fn clips_appear_in_get_clips_once_processed_with_their_vod_details() {
    let t = start().await;
    let app = t.app_token().await;
    let (token, _) = t.user_token("pixelpaws", "clips:edit").await;
    let streamer = t.sim.user_by_login("pixelpaws").unwrap().id;
    t.live_for(&streamer, 600).await;

    let (status, created) = t.create_clip(&token, &streamer).await;
    assert_eq!(status, 202, "{created}");
    let id = created["data"][0]["id"].as_str().unwrap().to_owned();
    let by_id = format!("/clips?id={id}");
    assert_eq!(t.get(&by_id, &app).await.1["data"], json!([]), "processing");
    t.sim.advance_clock(Duration::from_secs(4));
    assert_eq!(t.get(&by_id, &app).await.1["data"], json!([]), "the default takes 5 s");
    t.sim.advance_clock(Duration::from_secs(1));
    let (_, clips) = t.get(&by_id, &app).await;
    let clip = &clips["data"][0];
    assert_eq!(clip["id"], id.as_str());
    assert_eq!(clip["creator_name"], "pixelpaws");
    assert_eq!(clip["duration"], 30.0);
    assert!(!clip["video_id"].as_str().unwrap().is_empty(), "cut from the VOD being recorded: {clip}");
    assert!(clip["vod_offset"].is_null(), "null for a while after creation");
    assert_eq!(clips["pagination"], json!({}));
    t.sim.advance_clock(Duration::from_secs(60));
    let (_, clips) = t.get(&by_id, &app).await;
    assert_eq!(clips["data"][0]["vod_offset"], 600 - 30, "the clip starts 30 s before the call");
    let created_at = clips["data"][0]["created_at"].as_str().unwrap().to_owned();

    // Never processed: the 202 stands, Get Clips stays empty (the 15 s rule, §7.3).
    assert_eq!(t.sim_post("/sim/clips/processing", json!({"never": true})).await.0, 200);
    let (_, failed) = t.create_clip(&token, &streamer).await;
    let failed = failed["data"][0]["id"].as_str().unwrap().to_owned();
    t.sim.advance_clock(Duration::from_secs(3600));
    assert_eq!(t.get(&format!("/clips?id={failed}"), &app).await.1["data"], json!([]));
    assert_eq!(t.sim_post("/sim/clips/processing", json!({"delay_seconds": 0})).await.0, 200);
    let (_, quick) = t.create_clip(&token, &streamer).await;
    let quick = quick["data"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(t.get(&format!("/clips?id={quick}"), &app).await.1["data"][0]["id"], quick.as_str());
    for bad in [json!({}), json!({"delay_seconds": -1}), json!({"delay_seconds": 1, "never": true})] {
        assert_eq!(t.sim_post("/sim/clips/processing", bad.clone()).await.0, 400, "{bad}");
    }

    // By broadcaster: paged, filtered by time and featured-ness.
    let (_, page) = t.get(&format!("/clips?broadcaster_id={streamer}&first=1"), &app).await;
    assert_eq!(page["data"][0]["id"], id.as_str());
    let cursor = page["pagination"]["cursor"].as_str().unwrap().to_owned();
    let (_, page) = t.get(&format!("/clips?broadcaster_id={streamer}&first=1&after={cursor}"), &app).await;
    assert_eq!((page["data"][0]["id"].as_str(), page["pagination"].clone()), (Some(quick.as_str()), json!({})));
    let after = urlencode(&created_at);
    let (_, later) = t.get(&format!("/clips?broadcaster_id={streamer}&started_at={after}"), &app).await;
    assert_eq!(later["data"].as_array().unwrap().len(), 2, "both created at or after the first");
    let (_, featured) = t.get(&format!("/clips?broadcaster_id={streamer}&is_featured=true"), &app).await;
    assert_eq!(featured["data"], json!([]));
    assert_eq!(t.get(&format!("/clips?broadcaster_id={streamer}&started_at=yesterday"), &app).await.0, 400);
    assert_eq!(t.get(&format!("/clips?broadcaster_id={streamer}&game_id=509658"), &app).await.0, 400);
}

#[tokio::test]
async fn create_clip_answers_403_when_clips_are_disabled_or_the_user_is_banned() {
    let t = start().await;
    let app = t.app_token().await;
    let (receiver, conduit, streamer, bot) = chat_receiver(&t, &app).await;
    let (token, _) = t.user_token("mossy_owl", "clips:edit").await;
    let viewer = t.sim.user_by_login("mossy_owl").unwrap().id;
    t.live_for(&streamer, 60).await;
    assert_eq!(t.create_clip(&token, &streamer).await.0, 202);

    let settings = format!("/sim/channels/{streamer}/settings");
    let (status, body) = t.sim_post(&settings, json!({"clips_enabled": false})).await;
    assert_eq!((status, body["clips_enabled"].as_bool()), (StatusCode::OK, Some(false)));
    let (status, body) = t.create_clip(&token, &streamer).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::FORBIDDEN, Some("Forbidden")), "{body}");
    assert_eq!(body["status"], 403);
    t.sim_post(&settings, json!({"clips_enabled": true})).await;
    assert_eq!(t.sim_post(&settings, json!({"clips": "maybe"})).await.0, 400);

    // A ban: 403 for the banned user's clips, and the chat read as that user is revoked.
    let (status, body) = t.sim_post(&format!("/sim/channels/{streamer}/bans"), json!({"user_id": viewer})).await;
    assert_eq!((status, body["revoked"].clone()), (StatusCode::OK, json!([])));
    assert_eq!(t.create_clip(&token, &streamer).await.0, 403);
    let (_, body) = t.sim_post(&format!("/sim/channels/{streamer}/bans"), json!({"user_id": bot})).await;
    assert_eq!(body["revoked"].as_array().unwrap().len(), 1, "{body}");
    let revoked = receiver.wait_count("revocation", Some("channel.chat.message"), 1).await.remove(0);
    assert_eq!(revoked.json()["subscription"]["status"], "chat_user_banned");
    t.sim_post(&format!("/sim/channels/{streamer}/bans"), json!({"user_id": viewer, "banned": false})).await;
    assert_eq!(t.create_clip(&token, &streamer).await.0, 202, "the ban is lifted");
    let unknown = t.sim_post("/sim/channels/404404/bans", json!({"user_id": viewer})).await;
    assert_eq!(unknown.0, 404);
    let _ = conduit;
}

#[tokio::test]
async fn stream_markers_need_a_live_channel_with_vods_and_the_broadcaster_or_an_editor() {
    let t = start().await;
    let app = t.app_token().await;
    let (token, _) = t.user_token("pixelpaws", "channel:manage:broadcast").await;
    let streamer = t.sim.user_by_login("pixelpaws").unwrap().id;
    let marker = |description: &str| json!({"user_id": streamer, "description": description});

    let (status, body) = t.post("/streams/markers", &token, marker("offline")).await;
    assert_eq!((status, body["message"].as_str()), (StatusCode::NOT_FOUND, Some("The broadcaster is not live")));
    t.live_for(&streamer, 5312).await;
    let (status, body) = t.post("/streams/markers", &token, marker("ChatPulse: chat swung to YES")).await;
    assert_eq!(status, 200, "{body}");
    let created = &body["data"][0];
    assert_eq!(created["position_seconds"], 5312, "seconds since the stream started");
    assert_eq!(created["description"], "ChatPulse: chat swung to YES");
    assert!(created["id"].is_string());
    let at = created["created_at"].as_str().unwrap();
    assert!(time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).is_ok(), "{at}");
    let (status, body) = t.post("/streams/markers", &token, json!({"user_id": streamer})).await;
    assert_eq!((status, body["data"][0]["description"].as_str()), (StatusCode::OK, Some("")), "optional");

    // 400, 401, 403, 404 as §7.6 lists them.
    assert_eq!(t.post("/streams/markers", &token, marker(&"x".repeat(141))).await.0, 400);
    assert_eq!(t.post("/streams/markers", &token, json!({"description": "no user"})).await.0, 400);
    assert_eq!(t.post("/streams/markers", &app, marker("app token")).await.0, 401);
    let (no_scope, _) = t.user_token("pixelpaws", "channel:bot").await;
    let (status, body) = t.post("/streams/markers", &no_scope, marker("no scope")).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("Unauthorized")));
    let (editor, _) = t.user_token("mossy_owl", "channel:manage:broadcast").await;
    let mossy = t.sim.user_by_login("mossy_owl").unwrap().id;
    let (status, body) = t.post("/streams/markers", &editor, marker("not an editor")).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::FORBIDDEN, Some("Forbidden")));
    let editors = format!("/sim/channels/{streamer}/editors");
    assert_eq!(t.sim_post(&editors, json!({"user_id": mossy})).await.0, 204);
    assert_eq!(t.post("/streams/markers", &editor, marker("by an editor")).await.0, 200);
    let settings = format!("/sim/channels/{streamer}/settings");
    t.sim_post(&settings, json!({"vods_enabled": false})).await;
    let (status, body) = t.post("/streams/markers", &token, marker("no vods")).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (StatusCode::NOT_FOUND, Some("The broadcaster has not enabled VODs"))
    );
    t.sim_post(&settings, json!({"vods_enabled": true})).await;
    assert_eq!(t.post("/streams/markers", &token, json!({"user_id": "404404"})).await.0, 404);

    // Reading them back: newest first, grouped per user and video.
    let (status, body) = t.get(&format!("/streams/markers?user_id={streamer}"), &token).await;
    assert_eq!(status, 200, "{body}");
    let user = &body["data"][0];
    assert_eq!((user["user_id"].as_str(), user["user_login"].as_str()), (Some(streamer.as_str()), Some("pixelpaws")));
    let video = &user["videos"][0];
    let markers = video["markers"].as_array().unwrap();
    let descriptions: Vec<&str> = markers.iter().map(|m| m["description"].as_str().unwrap()).collect();
    assert_eq!(descriptions, ["by an editor", "", "ChatPulse: chat swung to YES"]);
    let video_id = video["video_id"].as_str().unwrap();
    assert_eq!(markers[2]["URL"], format!("https://twitch.tv/videos/{video_id}?t=1h28m32s"));
    let (_, page) = t.get(&format!("/streams/markers?video_id={video_id}&first=2"), &token).await;
    assert_eq!(page["data"][0]["videos"][0]["markers"].as_array().unwrap().len(), 2);
    let cursor = page["pagination"]["cursor"].as_str().unwrap();
    let (_, rest) = t.get(&format!("/streams/markers?video_id={video_id}&first=2&after={cursor}"), &token).await;
    assert_eq!(rest["data"][0]["videos"][0]["markers"][0]["description"], "ChatPulse: chat swung to YES");
    assert_eq!(rest["pagination"], json!({}));
    let both = format!("/streams/markers?user_id={streamer}&video_id={video_id}");
    assert_eq!(t.get(&both, &token).await.0, 400);
    assert_eq!(t.get(&format!("/streams/markers?user_id={streamer}"), &no_scope).await.0, 401);
    let (stranger, _) = t.user_token("tinyraccoon", "user:read:broadcast").await;
    assert_eq!(t.get(&format!("/streams/markers?user_id={streamer}"), &stranger).await.0, 403);
    assert_eq!(t.get(&format!("/streams/markers?user_id={mossy}"), &editor).await.0, 404, "no videos");
}
