//! Conduits and shards (§3).

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::json;
use twitch_sim::ChatInput;

use crate::harness::*;

#[tokio::test]
async fn conduits_are_created_resized_listed_and_deleted() {
    let t = start().await;
    let app = t.app_token().await;
    let (status, body) = t.post("/eventsub/conduits", &app, json!({"shard_count": 2})).await;
    assert_eq!(status, 200, "Create Conduit answers 200");
    let id = body["data"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(body["data"][0]["shard_count"], 2);
    let (_, body) = t.get("/eventsub/conduits", &app).await;
    assert_eq!(body, json!({"data": [{"id": id, "shard_count": 2}]}));

    let (status, body) = t.patch("/eventsub/conduits", &app, json!({"id": id, "shard_count": 3})).await;
    assert_eq!((status, body["data"][0]["shard_count"].as_u64()), (StatusCode::OK, Some(3)));
    let (_, shards) = t.get(&format!("/eventsub/conduits/shards?conduit_id={id}"), &app).await;
    let ids: Vec<&str> = shards["data"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["0", "1", "2"]);
    assert_eq!(shards["pagination"], json!({}));
    let (_, page) = t.get(&format!("/eventsub/conduits/shards?conduit_id={id}&first=2"), &app).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    let cursor = page["pagination"]["cursor"].as_str().unwrap();
    let (_, rest) = t.get(&format!("/eventsub/conduits/shards?conduit_id={id}&first=2&after={cursor}"), &app).await;
    assert_eq!(rest["data"][0]["id"], "2");
    assert_eq!(rest["pagination"], json!({}));

    assert_eq!(t.patch("/eventsub/conduits", &app, json!({"id": "nope", "shard_count": 1})).await.0, 404);
    assert_eq!(t.patch("/eventsub/conduits", &app, json!({"shard_count": 1})).await.0, 400);
    assert_eq!(t.post("/eventsub/conduits", &app, json!({"shard_count": 0})).await.0, 400);
    assert_eq!(t.post("/eventsub/conduits", &app, json!({"shard_count": "1"})).await.0, 400);
    assert_eq!(t.get("/eventsub/conduits/shards", &app).await.0, 400);
    assert_eq!(t.get("/eventsub/conduits/shards?conduit_id=nope", &app).await.0, 404);

    for _ in 0..4 {
        assert_eq!(t.post("/eventsub/conduits", &app, json!({"shard_count": 1})).await.0, 200);
    }
    assert_eq!(t.post("/eventsub/conduits", &app, json!({"shard_count": 1})).await.0, 429, "at most 5 conduits");

    assert_eq!(t.delete(&format!("/eventsub/conduits?id={id}"), &app).await, 204);
    assert_eq!(t.delete(&format!("/eventsub/conduits?id={id}"), &app).await, 404);
    assert_eq!(t.delete("/eventsub/conduits", &app).await, 400);
}

#[tokio::test]
async fn webhook_shards_are_verified_with_a_signed_challenge() {
    let t = start().await;
    let app = t.app_token().await;
    let good = Receiver::start(Challenge::Echo).await;
    let (_, body) = t.post("/eventsub/conduits", &app, json!({"shard_count": 3})).await;
    let conduit = body["data"][0]["id"].as_str().unwrap().to_owned();

    let (status, body) = t.patch("/eventsub/conduits/shards", &app, shard_update(&conduit, "0", &good.url)).await;
    assert_eq!(status, 202);
    assert_eq!(body["data"][0]["status"], "webhook_callback_verification_pending");
    assert_eq!(body["data"][0]["transport"], json!({"method": "webhook", "callback": good.url}));
    let challenge = good.wait_count("webhook_callback_verification", None, 1).await.remove(0);
    assert!(signature_valid(SHARD_SECRET, &challenge), "signed with the shard's secret");
    assert_eq!(challenge.header("twitch-eventsub-message-retry").as_deref(), Some("0"));
    assert!(challenge.header("twitch-eventsub-subscription-type").is_none());
    assert!(is_nanosecond_rfc3339(&challenge.header("twitch-eventsub-message-timestamp").unwrap()));
    let b = challenge.json();
    assert!(b["challenge"].is_string());
    assert_eq!(b["conduit_shard"], json!({"conduit_id": conduit, "shard": "0"}));
    t.wait_shard(&app, &conduit, "0", "enabled").await;
    let (_, shards) = t.get(&format!("/eventsub/conduits/shards?conduit_id={conduit}&status=enabled"), &app).await;
    assert_eq!(shards["data"].as_array().unwrap().len(), 1);
    assert!(shards["data"][0]["transport"].get("secret").is_none(), "the secret is never returned");

    let bad = Receiver::start(Challenge::WrongBody).await;
    let (status, _) = t.patch("/eventsub/conduits/shards", &app, shard_update(&conduit, "1", &bad.url)).await;
    assert_eq!(status, 202);
    t.wait_shard(&app, &conduit, "1", "webhook_callback_verification_failed").await;

    // Per-shard validation: partial success is still 202, with errors.
    let body = json!({"conduit_id": conduit, "shards": [
        {"id": "2", "transport": {"method": "webhook", "callback": good.url, "secret": SHARD_SECRET}},
        {"id": "3", "transport": {"method": "webhook", "callback": good.url, "secret": SHARD_SECRET}},
        {"id": "0", "transport": {"method": "webhook", "callback": "https://chatpulse.example:8443/hook", "secret": SHARD_SECRET}},
        {"id": "0", "transport": {"method": "webhook", "callback": "http://chatpulse.example/hook", "secret": SHARD_SECRET}},
        {"id": "0", "transport": {"method": "webhook", "callback": good.url, "secret": "short"}},
        {"id": "1", "transport": {"method": "websocket", "session_id": "AgoQk3v7uYxQ"}},
    ]});
    let (status, body) = t.patch("/eventsub/conduits/shards", &app, body).await;
    assert_eq!(status, 202);
    assert_eq!(body["data"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["data"][0]["id"], "2");
    let errors = body["errors"].as_array().unwrap();
    let ids: Vec<&str> = errors.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["3", "0", "0", "0", "1"]);
    assert!(errors.iter().all(|e| e["code"] == "invalid_parameter" && e["message"].is_string()));
    assert_eq!(errors[4]["message"], "websocket session is not connected");
    assert!(
        t.patch("/eventsub/conduits/shards", &app, json!({"conduit_id": "nope", "shards": []}))
            .await
            .0
            .is_client_error()
    );
    let unknown = json!({"conduit_id": "nope", "shards": [{"id": "0", "transport": {"method": "webhook"}}]});
    assert_eq!(t.patch("/eventsub/conduits/shards", &app, unknown).await.0, 404);
}

#[tokio::test]
async fn deleting_a_conduit_stops_its_subscriptions_but_keeps_them_listed() {
    let t = start().await;
    let app = t.app_token().await;
    let (receiver, conduit, streamer, bot) = chat_receiver(&t, &app).await;
    let online = t.subscribe(&app, "stream.online", json!({"broadcaster_user_id": streamer}), &conduit).await;
    assert_eq!(t.delete(&format!("/eventsub/conduits?id={conduit}"), &app).await, 204);

    let (status, body) = t.get("/eventsub/subscriptions", &app).await;
    assert_eq!(status, 200);
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "still listed: {body}");
    assert!(data.iter().all(|s| s["status"] == "conduit_deleted"), "{body}");
    assert_eq!(data[1]["id"], online["id"]);
    assert_eq!(data[1]["transport"], json!({"method": "conduit", "conduit_id": conduit}));
    let (status, body) = t.get("/eventsub/subscriptions?status=conduit_deleted", &app).await;
    assert_eq!((status, body["data"].as_array().map(Vec::len)), (StatusCode::OK, Some(2)));
    let (_, body) = t.get("/eventsub/subscriptions?status=enabled", &app).await;
    assert_eq!(body["data"], json!([]));

    let input =
        ChatInput { broadcaster_user_id: streamer, chatter_user_id: bot, chatter_login: None, text: "yes".into() };
    t.sim.post_chat(input).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(receiver.of_type("notification", None).is_empty(), "stopped");
    assert!(receiver.of_type("revocation", None).is_empty(), "no transport left to send a revocation to");
}

/// A request with no body at all, as the query form sends it.
async fn bare(t: &TestSim, method: reqwest::Method, path: &str, token: &str) -> (StatusCode, serde_json::Value) {
    send(t.helix(method, path, token)).await
}

#[tokio::test]
async fn conduit_calls_take_their_parameters_in_the_query_or_the_body() {
    let t = start().await;
    let app = t.app_token().await;
    let receiver = Receiver::start(Challenge::Echo).await;

    // Create: query form, body form, both (agreeing) — the same answer.
    let (status, body) = bare(&t, reqwest::Method::POST, "/eventsub/conduits?shard_count=2", &app).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"][0]["shard_count"], 2);
    let conduit = body["data"][0]["id"].as_str().unwrap().to_owned();
    let (status, body) = t.post("/eventsub/conduits?shard_count=1", &app, json!({"shard_count": 1})).await;
    assert_eq!((status, body["data"][0]["shard_count"].as_u64()), (StatusCode::OK, Some(1)));
    let (status, body) = t.post("/eventsub/conduits?shard_count=1", &app, json!({"shard_count": 2})).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "Bad Request");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("shard_count") && message.contains("query (1)") && message.contains("body (2)"), "{body}");
    for bad in ["/eventsub/conduits", "/eventsub/conduits?shard_count=0", "/eventsub/conduits?shard_count=x"] {
        assert_eq!(bare(&t, reqwest::Method::POST, bad, &app).await.0, 400, "{bad}");
    }

    // Update: id and shard_count from either place.
    let path = format!("/eventsub/conduits?id={conduit}&shard_count=3");
    let (status, body) = bare(&t, reqwest::Method::PATCH, &path, &app).await;
    assert_eq!((status, body["data"][0]["shard_count"].as_u64()), (StatusCode::OK, Some(3)), "{body}");
    let path = format!("/eventsub/conduits?id={conduit}");
    let (status, body) = t.patch(&path, &app, json!({"shard_count": 1})).await;
    assert_eq!((status, body["data"][0]["shard_count"].as_u64()), (StatusCode::OK, Some(1)), "{body}");
    let (status, body) = t.patch(&path, &app, json!({"id": "another-conduit", "shard_count": 1})).await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("\"id\""), "{body}");
    let (status, body) = bare(&t, reqwest::Method::PATCH, "/eventsub/conduits?shard_count=1", &app).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (StatusCode::BAD_REQUEST, Some("Missing required parameter \"id\""))
    );

    // Update Conduit Shards: conduit_id in the query, shards in the body.
    let mut shards = shard_update(&conduit, "0", &receiver.url);
    shards.as_object_mut().unwrap().remove("conduit_id");
    let (status, body) =
        t.patch(&format!("/eventsub/conduits/shards?conduit_id={conduit}"), &app, shards.clone()).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["errors"], json!([]));
    assert_eq!(body["data"][0]["status"], "webhook_callback_verification_pending");
    t.wait_shard(&app, &conduit, "0", "enabled").await;
    let mut disagreeing = shards.clone();
    disagreeing["conduit_id"] = json!("another-conduit");
    let (status, _) = t.patch(&format!("/eventsub/conduits/shards?conduit_id={conduit}"), &app, disagreeing).await;
    assert_eq!(status, 400);
    let (status, body) = t.patch("/eventsub/conduits/shards", &app, shards).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (StatusCode::BAD_REQUEST, Some("Missing required parameter \"conduit_id\""))
    );
}

#[tokio::test]
async fn a_conduit_without_an_enabled_shard_for_72_hours_is_deleted_with_its_subscriptions() {
    let t = start().await;
    let app = t.app_token().await;
    let receiver = Receiver::start(Challenge::Echo).await;
    let (streamer, _) = t.streamer_and_bot();
    let working = t.conduit_for(&app, &receiver).await;
    let (_, body) = t.post("/eventsub/conduits", &app, json!({"shard_count": 1})).await;
    let unbound = body["data"][0]["id"].as_str().unwrap().to_owned();
    let orphan = t.subscribe(&app, "stream.online", json!({"broadcaster_user_id": streamer}), &unbound).await;
    let kept = t.subscribe(&app, "stream.online", json!({"broadcaster_user_id": streamer}), &working).await;
    let hour = Duration::from_secs(3600);

    t.sim.advance_clock(71 * hour);
    assert_eq!(t.get("/eventsub/conduits", &app).await.1["data"].as_array().unwrap().len(), 2, "71 h: still there");
    let (status, _) = t.sim_post("/sim/clock", json!({"advance_seconds": 3600})).await;
    assert_eq!(status, 200);
    let (_, conduits) = t.get("/eventsub/conduits", &app).await;
    assert_eq!(conduits["data"], json!([{"id": working, "shard_count": 1}]), "72 h without an enabled shard");
    let (_, subs) = t.get("/eventsub/subscriptions", &app).await;
    let ids: Vec<&str> = subs["data"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [kept["id"].as_str().unwrap()], "its subscriptions went with it: {subs}");
    assert!(!ids.contains(&orphan["id"].as_str().unwrap()));

    // A shard enabled again within the 72 hours starts the count anew.
    let (_, body) = t.sim_post(&format!("/sim/conduits/{working}/shards/0/disable"), json!({})).await;
    assert_eq!(body["shard_id"], "0");
    t.sim.advance_clock(48 * hour);
    let (_, body) = t.patch("/eventsub/conduits/shards", &app, shard_update(&working, "0", &receiver.url)).await;
    assert_eq!(body["errors"], json!([]));
    t.wait_shard(&app, &working, "0", "enabled").await;
    t.sim.advance_clock(48 * hour);
    assert_eq!(t.get("/eventsub/conduits", &app).await.1["data"].as_array().unwrap().len(), 1, "re-enabled in time");

    // A WebSocket shard whose session dropped counts as disabled too.
    let (_, body) = t.post("/eventsub/conduits", &app, json!({"shard_count": 1})).await;
    let socketed = body["data"][0]["id"].as_str().unwrap().to_owned();
    let mut ws = ws_connect(&t.ws_url("")).await;
    let session = next_message(&mut ws).await.unwrap()["payload"]["session"]["id"].as_str().unwrap().to_owned();
    assert_eq!(t.bind_websocket(&app, &socketed, &session).await.0, 202);
    t.sim.advance_clock(100 * hour);
    assert_eq!(t.get("/eventsub/conduits", &app).await.1["data"].as_array().unwrap().len(), 2, "enabled: kept");
    ws.close(None).await.unwrap();
    t.wait_shard(&app, &socketed, "0", "websocket_disconnected").await;
    t.sim.advance_clock(72 * hour);
    let (_, conduits) = t.get("/eventsub/conduits", &app).await;
    assert!(conduits["data"].as_array().unwrap().iter().all(|c| c["id"] != socketed.as_str()), "{conduits}");
    drop(receiver);
}
