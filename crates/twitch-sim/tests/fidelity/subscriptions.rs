//! EventSub subscriptions (§4): validation, authorization, cost, duplicates, listing, revocations.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::harness::*;

#[tokio::test]
async fn subscriptions_are_validated_authorized_costed_and_deduplicated() {
    let t = start().await;
    let app = t.app_token().await;
    let receiver = Receiver::start(Challenge::Echo).await;
    let conduit = t.conduit_for(&app, &receiver).await;
    let streamer = t.sim.create_user("pixelpaws", "PixelPaws");
    let bot = t.sim.create_user("chatpulsebot", "ChatPulseBot");
    let chat = |condition: Value| {
        json!({"type": "channel.chat.message", "version": "1", "condition": condition,
            "transport": {"method": "conduit", "conduit_id": conduit}})
    };
    let condition = json!({"broadcaster_user_id": streamer.id, "user_id": bot.id});

    let (status, body) = t.post("/eventsub/subscriptions", &app, chat(condition.clone())).await;
    assert_eq!(status, 403, "no grants yet: {body}");
    t.sim.grant(&bot.id, &["user:read:chat", "user:bot"]);
    assert_eq!(
        t.post("/eventsub/subscriptions", &app, chat(condition.clone())).await.0,
        403,
        "streamer lacks channel:bot"
    );
    t.sim.grant(&streamer.id, &["channel:bot"]);

    let (status, body) = t.post("/eventsub/subscriptions", &app, chat(condition.clone())).await;
    assert_eq!(status, 202, "{body}");
    let sub = &body["data"][0];
    assert_eq!(sub["status"], "enabled");
    assert_eq!(sub["type"], "channel.chat.message");
    assert_eq!(sub["version"], "1");
    assert_eq!(sub["condition"], condition);
    assert_eq!(sub["transport"], json!({"method": "conduit", "conduit_id": conduit}));
    assert_eq!(sub["cost"], 0);
    assert!(is_nanosecond_rfc3339(sub["created_at"].as_str().unwrap()));
    assert_eq!((body["total"].as_u64(), body["total_cost"].as_u64()), (Some(1), Some(0)));
    assert_eq!(body["max_total_cost"], 10000);

    let (status, body) = t.post("/eventsub/subscriptions", &app, chat(condition.clone())).await;
    assert_eq!((status, body["message"].as_str()), (StatusCode::CONFLICT, Some("subscription already exists")));

    let mut numeric = chat(condition.clone());
    numeric["version"] = json!(1);
    assert_eq!(t.post("/eventsub/subscriptions", &app, numeric).await.0, 400, "version must be a string");
    let (status, body) =
        t.post("/eventsub/subscriptions", &app, chat(json!({"broadcaster_user_id": streamer.id}))).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("Bad Request")));
    let bad_user = json!({"broadcaster_user_id": "1", "user_id": bot.id});
    assert_eq!(t.post("/eventsub/subscriptions", &app, chat(bad_user)).await.0, 400);
    let mut unknown_conduit = chat(condition.clone());
    unknown_conduit["transport"]["conduit_id"] = json!("0000");
    assert_eq!(t.post("/eventsub/subscriptions", &app, unknown_conduit).await.0, 400);
    let mut unknown_type = chat(condition.clone());
    unknown_type["type"] = json!("channel.pizza");
    assert_eq!(t.post("/eventsub/subscriptions", &app, unknown_type).await.0, 400);

    // Cost: 1 for a stream type of a user who never authorized the app, else 0.
    let stranger = t.sim.create_user("stranger", "Stranger");
    let online = |id: &str| {
        json!({"type": "stream.online", "version": "1", "condition": {"broadcaster_user_id": id},
            "transport": {"method": "conduit", "conduit_id": conduit}})
    };
    let (_, body) = t.post("/eventsub/subscriptions", &app, online(&streamer.id)).await;
    assert_eq!(body["data"][0]["cost"], 0);
    let (_, body) = t.post("/eventsub/subscriptions", &app, online(&stranger.id)).await;
    assert_eq!(body["data"][0]["cost"], 1);
    assert_eq!((body["total"].as_u64(), body["total_cost"].as_u64()), (Some(3), Some(1)));

    // Client-scoped types: the client ID must be the token's.
    let revoke = |client: &str| {
        json!({"type": "user.authorization.revoke", "version": "1", "condition": {"client_id": client},
            "transport": {"method": "webhook", "callback": receiver.url, "secret": HOOK_SECRET}})
    };
    assert_eq!(t.post("/eventsub/subscriptions", &app, revoke("otherclient")).await.0, 403);
    let (status, body) = t.post("/eventsub/subscriptions", &app, revoke(&t.client_id())).await;
    assert_eq!(status, 202);
    assert_eq!(body["data"][0]["status"], "webhook_callback_verification_pending");
    assert_eq!(body["data"][0]["transport"], json!({"method": "webhook", "callback": receiver.url}));
    let verification = receiver.wait_count("webhook_callback_verification", Some("user.authorization.revoke"), 1).await;
    assert!(signature_valid(HOOK_SECRET, &verification[0]), "plain webhooks use their own secret");
    assert_eq!(verification[0].json()["subscription"]["id"], body["data"][0]["id"]);
    let insecure = json!({"type": "user.authorization.revoke", "version": "1", "condition": {"client_id": t.client_id()},
        "transport": {"method": "webhook", "callback": "http://chatpulse.example/hook", "secret": HOOK_SECRET}});
    assert_eq!(t.post("/eventsub/subscriptions", &app, insecure).await.0, 400);
}

#[tokio::test]
async fn subscriptions_list_with_one_filter_and_opaque_cursors_then_delete() {
    let t = start().await;
    let app = t.app_token().await;
    let receiver = Receiver::start(Challenge::Echo).await;
    let conduit = t.conduit_for(&app, &receiver).await;
    let (streamer, bot) = t.streamer_and_bot();
    let mut ids = Vec::new();
    for kind in ["stream.online", "stream.offline"] {
        ids.push(t.subscribe(&app, kind, json!({"broadcaster_user_id": streamer}), &conduit).await["id"].clone());
    }
    let chat = json!({"broadcaster_user_id": streamer, "user_id": bot});
    ids.push(t.subscribe(&app, "channel.chat.message", chat, &conduit).await["id"].clone());
    let other = t.sim.create_user("other", "Other");
    t.sim.grant(&other.id, &["channel:bot"]);
    for kind in ["stream.online", "stream.offline"] {
        ids.push(t.subscribe(&app, kind, json!({"broadcaster_user_id": other.id}), &conduit).await["id"].clone());
    }

    let mut seen = Vec::new();
    let mut path = "/eventsub/subscriptions?first=2".to_owned();
    loop {
        let (status, body) = t.get(&path, &app).await;
        assert_eq!(status, 200);
        assert_eq!(body["total"], 5);
        assert_eq!(body["max_total_cost"], 10000);
        seen.extend(body["data"].as_array().unwrap().iter().map(|s| s["id"].clone()));
        match body["pagination"].get("cursor") {
            Some(cursor) => {
                let cursor = cursor.as_str().unwrap();
                assert!(!cursor.contains(char::is_whitespace));
                path = format!("/eventsub/subscriptions?first=2&after={cursor}");
            }
            None => {
                assert_eq!(body["pagination"], json!({}));
                break;
            }
        }
    }
    assert_eq!(seen, ids, "oldest first, every subscription once");

    let (_, body) = t.get("/eventsub/subscriptions?type=stream.online", &app).await;
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    let (_, body) = t.get(&format!("/eventsub/subscriptions?user_id={bot}"), &app).await;
    assert_eq!(body["data"].as_array().unwrap().len(), 1, "user_id matches any user field of the condition");
    let (_, body) = t.get(&format!("/eventsub/subscriptions?subscription_id={}", ids[1].as_str().unwrap()), &app).await;
    assert_eq!(body["data"][0]["id"], ids[1]);
    let (_, body) = t.get("/eventsub/subscriptions?status=enabled", &app).await;
    assert_eq!(body["data"].as_array().unwrap().len(), 5);
    assert_eq!(t.get("/eventsub/subscriptions?status=enabled&type=stream.online", &app).await.0, 400);
    assert_eq!(t.get("/eventsub/subscriptions?after=garbage!", &app).await.0, 400);

    let id = ids[0].as_str().unwrap();
    assert_eq!(t.delete(&format!("/eventsub/subscriptions?id={id}"), &app).await, 204);
    assert_eq!(t.delete(&format!("/eventsub/subscriptions?id={id}"), &app).await, 404);
    assert_eq!(t.delete("/eventsub/subscriptions", &app).await, 400);
    let (_, body) = t.get("/eventsub/subscriptions", &app).await;
    assert_eq!(body["total"], 4);
}

#[tokio::test]
async fn an_unknown_type_filter_is_a_bad_request() {
    let t = start().await;
    let app = t.app_token().await;
    let (status, body) = t.get("/eventsub/subscriptions?type=channel.pizza", &app).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "Bad Request");
    assert_eq!(t.get("/eventsub/subscriptions?type=stream.online", &app).await.0, 200);
}

#[tokio::test]
async fn revocations_are_limited_to_what_can_happen_to_the_subscription() {
    let t = start().await;
    let app = t.app_token().await;
    let (receiver, conduit, streamer, _) = chat_receiver(&t, &app).await;
    let (_, listed) = t.get("/eventsub/subscriptions?type=channel.chat.message", &app).await;
    let chat = listed["data"][0]["id"].as_str().unwrap().to_owned();
    let online = t.subscribe(&app, "stream.online", json!({"broadcaster_user_id": streamer}), &conduit).await;
    let online = online["id"].as_str().unwrap().to_owned();
    let sim = &t;
    let revoke = |id: &str, status: &str| {
        let path = format!("/sim/subscriptions/{id}/revoke");
        let body = json!({"status": status});
        async move { sim.sim_post(&path, body).await }
    };

    for status in ["notification_failures_exceeded", "websocket_disconnected", "websocket_connection_unused"] {
        let (code, body) = revoke(&chat, status).await;
        assert_eq!(code, 400, "{status} cannot happen on a conduit");
        assert!(body["message"].as_str().unwrap().contains("conduit transport"), "{body}");
    }
    let (code, body) = revoke(&online, "chat_user_banned").await;
    assert_eq!(code, 400, "no bot in a stream.online condition: {body}");
    assert_eq!(revoke(&online, "user_removed").await.0, 202);
    assert_eq!(revoke(&chat, "moderator_removed").await.0, 202);
    receiver.wait_count("revocation", None, 2).await;

    // A plain webhook can fail too often; a client-scoped one has no user to remove.
    let body = json!({"type": "user.authorization.revoke", "version": "1", "condition": {"client_id": t.client_id()},
        "transport": {"method": "webhook", "callback": receiver.url, "secret": HOOK_SECRET}});
    let (status, created) = t.post("/eventsub/subscriptions", &app, body).await;
    assert_eq!(status, 202);
    let hook = created["data"][0]["id"].as_str().unwrap().to_owned();
    receiver.wait_count("webhook_callback_verification", Some("user.authorization.revoke"), 1).await;
    assert_eq!(revoke(&hook, "user_removed").await.0, 400);
    assert_eq!(revoke(&hook, "notification_failures_exceeded").await.0, 202);
    let revoked = receiver.wait_count("revocation", Some("user.authorization.revoke"), 1).await.remove(0);
    assert_eq!(revoked.json()["subscription"]["status"], "notification_failures_exceeded");
}

#[tokio::test]
async fn user_authorization_types_are_webhook_only() {
    let t = start().await;
    let app = t.app_token().await;
    let (user, _) = t.user_token("pixelpaws", "").await;
    let (_, conduit) = t.post("/eventsub/conduits", &app, json!({"shard_count": 1})).await;
    let conduit = conduit["data"][0]["id"].as_str().unwrap().to_owned();
    let receiver = Receiver::start(Challenge::Echo).await;
    for kind in ["user.authorization.revoke", "user.authorization.grant"] {
        let condition = json!({"client_id": t.client_id()});
        let body = json!({"type": kind, "version": "1", "condition": condition,
            "transport": {"method": "websocket", "session_id": "AgoQk3v7uYxQ"}});
        let (status, body) = t.post("/eventsub/subscriptions", &user, body).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("Bad Request")), "{kind}: {body}");
        assert!(body["message"].as_str().unwrap().contains("type does not support the websocket"), "{body}");
        let body = json!({"type": kind, "version": "1", "condition": condition,
            "transport": {"method": "conduit", "conduit_id": conduit}});
        let (status, body) = t.post("/eventsub/subscriptions", &app, body).await;
        assert_eq!(status, 400, "{kind} on a conduit: {body}");
        assert!(body["message"].as_str().unwrap().contains("type does not support the conduit"), "{body}");
        let body = json!({"type": kind, "version": "1", "condition": condition,
            "transport": {"method": "webhook", "callback": receiver.url, "secret": HOOK_SECRET}});
        assert_eq!(t.post("/eventsub/subscriptions", &app, body).await.0, 202, "{kind} on a webhook");
    }
}
