//! Plain WebSocket subscriptions (§4.1, §4.5, §6): user tokens, one session
//! each, notifications as frames, `websocket_*` statuses when the session
//! ends, carried over by a reconnect, and the per-session and per-user limits.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};
use twitch_sim::ChatInput;

use crate::harness::*;

fn websocket(session: &str) -> Value {
    json!({"method": "websocket", "session_id": session})
}

impl TestSim {
    /// Opens a session and returns it with its id.
    async fn session(&self, query: &str) -> (Socket, String) {
        let mut ws = ws_connect(&self.ws_url(query)).await;
        let welcome = next_message(&mut ws).await.unwrap();
        let id = welcome["payload"]["session"]["id"].as_str().unwrap().to_owned();
        (ws, id)
    }

    async fn ws_subscribe(&self, token: &str, kind: &str, condition: Value, session: &str) -> (StatusCode, Value) {
        let body = json!({"type": kind, "version": "1", "condition": condition, "transport": websocket(session)});
        self.post("/eventsub/subscriptions", token, body).await
    }

    /// A chatter's user token with `user:read:chat`, the chatter's id, and a channel.
    async fn chatter_and_channel(&self) -> (String, String, String) {
        let (token, _) = self.user_token("mossy_owl", "user:read:chat").await;
        let me = self.sim.user_by_login("mossy_owl").unwrap().id;
        let channel = self.sim.create_user("pixelpaws", "PixelPaws").id;
        (token, me, channel)
    }

    async fn chat(&self, channel: &str, text: &str) {
        let input = ChatInput {
            broadcaster_user_id: channel.to_owned(),
            chatter_user_id: String::new(),
            chatter_login: Some("tinyraccoon".into()),
            text: text.into(),
        };
        self.sim.post_chat(input).await.unwrap();
    }
}

#[tokio::test]
async fn a_user_token_subscribes_a_session_and_gets_notification_frames() {
    let t = start().await;
    let (token, me, channel) = t.chatter_and_channel().await;
    // A short unused window: the subscription must count as putting the session to use.
    let (mut ws, session) = t.session("?sim_unused_timeout_ms=300").await;

    let condition = json!({"broadcaster_user_id": channel, "user_id": me});
    let (status, body) = t.ws_subscribe(&token, "channel.chat.message", condition.clone(), &session).await;
    assert_eq!(status, 202, "{body}");
    let sub = body["data"][0].clone();
    assert_eq!(sub["status"], "enabled");
    assert_eq!(sub["cost"], 0);
    assert_eq!(sub["transport"]["method"], "websocket");
    assert_eq!(sub["transport"]["session_id"], session.as_str());
    assert!(is_nanosecond_rfc3339(sub["transport"]["connected_at"].as_str().unwrap()), "{sub}");
    assert!(sub["transport"].get("disconnected_at").is_none(), "{sub}");
    assert_eq!((body["total"].as_u64(), body["total_cost"].as_u64()), (Some(1), Some(0)));
    assert_eq!(body["max_total_cost"], 10, "§4.5: a user's WebSocket budget");

    tokio::time::sleep(Duration::from_millis(400)).await; // past the unused window
    t.chat(&channel, "yes").await;
    let note = next_message(&mut ws).await.expect("the session is still open and gets the notification");
    assert_eq!(note["metadata"]["message_type"], "notification");
    assert_eq!(note["metadata"]["subscription_type"], "channel.chat.message");
    assert!(is_nanosecond_rfc3339(note["metadata"]["message_timestamp"].as_str().unwrap()));
    assert_eq!(note["payload"]["subscription"], sub, "the subscription as created, transport included");
    assert_eq!(note["payload"]["event"]["message"]["text"], "yes");

    // The same again on the same session: 409.
    let (status, body) = t.ws_subscribe(&token, "channel.chat.message", condition, &session).await;
    assert_eq!((status, body["message"].as_str()), (StatusCode::CONFLICT, Some("subscription already exists")));
    assert_eq!(body["error"], "Conflict");

    // The user lists and deletes their own; the app sees none of them.
    let (status, listed) = t.get("/eventsub/subscriptions", &token).await;
    assert_eq!(status, 200);
    assert_eq!(listed["data"], json!([sub]));
    assert_eq!((listed["total"].as_u64(), listed["max_total_cost"].as_u64()), (Some(1), Some(10)));
    let app = t.app_token().await;
    let (_, listed) = t.get("/eventsub/subscriptions", &app).await;
    assert_eq!((listed["data"].clone(), listed["total"].as_u64()), (json!([]), Some(0)));
    let id = sub["id"].as_str().unwrap();
    assert_eq!(t.delete(&format!("/eventsub/subscriptions?id={id}"), &app).await, 401, "not the app's");
    assert_eq!(t.delete(&format!("/eventsub/subscriptions?id={id}"), &token).await, 204);
    t.chat(&channel, "no").await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), next_message(&mut ws)).await.is_err(),
        "nothing after the delete"
    );
}

#[tokio::test]
async fn websocket_subscriptions_need_the_right_token_and_authorization() {
    let t = start().await;
    let (token, me, channel) = t.chatter_and_channel().await;
    let (_ws, session) = t.session("").await;
    let app = t.app_token().await;
    let chat = json!({"broadcaster_user_id": channel, "user_id": me});

    let (status, body) = t.ws_subscribe(&app, "channel.chat.message", chat.clone(), &session).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("Unauthorized")), "{body}");
    let hook = json!({"type": "stream.online", "version": "1", "condition": {"broadcaster_user_id": channel},
        "transport": {"method": "webhook", "callback": "https://hooks.example/x", "secret": HOOK_SECRET}});
    assert_eq!(t.post("/eventsub/subscriptions", &token, hook).await.0, 401, "webhooks need an app token");

    let (status, body) = t.ws_subscribe(&token, "channel.chat.message", chat.clone(), "AgoQnotasession").await;
    assert_eq!(
        (status, body["message"].as_str()),
        (StatusCode::BAD_REQUEST, Some("websocket session is not connected"))
    );
    let (status, _) = t
        .post(
            "/eventsub/subscriptions",
            &token,
            json!({"type": "stream.online", "version": "1",
        "condition": {"broadcaster_user_id": channel}, "transport": {"method": "websocket"}}),
        )
        .await;
    assert_eq!(status, 400, "session_id is required");

    // Chat is read as the token's own user, with user:read:chat.
    let (other, _) = t.user_token("tinyraccoon", "user:read:chat").await;
    let (status, body) = t.ws_subscribe(&other, "channel.chat.message", chat.clone(), &session).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (StatusCode::FORBIDDEN, Some("subscription missing proper authorization"))
    );
    let (no_scope, _) = t.user_token("mossy_owl", "").await;
    assert_eq!(t.ws_subscribe(&no_scope, "channel.chat.message", chat.clone(), &session).await.0, 403);
    // No channel:bot and no bot user:bot needed with a user token.
    assert_eq!(t.ws_subscribe(&token, "channel.chat.message", chat, &session).await.0, 202);

    // Client-keyed types: app tokens only, and never user.authorization.*.
    let client = json!({"client_id": t.client_id()});
    assert_eq!(t.ws_subscribe(&token, "conduit.shard.disabled", client.clone(), &session).await.0, 403);
    let (status, body) = t.ws_subscribe(&token, "user.authorization.revoke", client, &session).await;
    assert_eq!(status, 400, "{body}");

    // A session is either a conduit shard or a home for subscriptions.
    let (_, conduit) = t.post("/eventsub/conduits", &app, json!({"shard_count": 1})).await;
    let conduit = conduit["data"][0]["id"].as_str().unwrap().to_owned();
    let (_, body) = t.bind_websocket(&app, &conduit, &session).await;
    assert_eq!(body["errors"][0]["message"], "websocket session is used by websocket subscriptions");
    let (_ws2, shard_session) = t.session("").await;
    assert_eq!(t.bind_websocket(&app, &conduit, &shard_session).await.1["errors"], json!([]));
    let online = json!({"broadcaster_user_id": channel});
    let (status, body) = t.ws_subscribe(&token, "stream.online", online, &shard_session).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (StatusCode::BAD_REQUEST, Some("websocket session is bound to a conduit shard"))
    );
}

#[tokio::test]
async fn a_closed_session_disables_its_subscriptions_and_twitch_deletes_them_a_minute_later() {
    let t = start().await;
    let (token, me, channel) = t.chatter_and_channel().await;
    let (ws, session) = t.session("").await;
    let chat = json!({"broadcaster_user_id": channel, "user_id": me});
    let (_, body) = t.ws_subscribe(&token, "channel.chat.message", chat.clone(), &session).await;
    let id = body["data"][0]["id"].as_str().unwrap().to_owned();

    drop(ws);
    let path = format!("/eventsub/subscriptions?subscription_id={id}");
    let gone =
        eventually(WAIT, || async { t.get(&path, &token).await.1["data"][0]["status"] == "websocket_disconnected" })
            .await;
    assert!(gone, "{:?}", t.sim.subscriptions());
    let (_, listed) = t.get(&path, &token).await;
    let transport = &listed["data"][0]["transport"];
    assert!(is_nanosecond_rfc3339(transport["disconnected_at"].as_str().unwrap()), "{transport}");
    assert_eq!(listed["total_cost"], 0, "a disabled subscription costs nothing");

    // §4.2: listed for at least a minute, then deleted.
    t.sim.advance_clock(Duration::from_secs(30));
    assert_eq!(t.get(&path, &token).await.1["data"].as_array().unwrap().len(), 1);
    t.sim.advance_clock(Duration::from_secs(31));
    assert_eq!(t.get(&path, &token).await.1["data"], json!([]));

    // A new session subscribes afresh (no 409 from the dead one).
    let (mut ws, session) = t.session("").await;
    assert_eq!(t.ws_subscribe(&token, "channel.chat.message", chat, &session).await.0, 202);
    t.chat(&channel, "back").await;
    assert_eq!(next_message(&mut ws).await.unwrap()["payload"]["event"]["message"]["text"], "back");
}

#[tokio::test]
async fn a_reconnect_carries_the_subscriptions_over_to_the_new_session() {
    let t = start().await;
    let (token, me, channel) = t.chatter_and_channel().await;
    let (mut old, old_id) = t.session("").await;
    let chat = json!({"broadcaster_user_id": channel, "user_id": me});
    let (_, body) = t.ws_subscribe(&token, "channel.chat.message", chat.clone(), &old_id).await;
    let id = body["data"][0]["id"].as_str().unwrap().to_owned();

    let (status, body) = t.sim_post(&format!("/sim/websocket/{old_id}/reconnect"), json!({})).await;
    assert_eq!(status, 202);
    let url = body["reconnect_url"].as_str().unwrap().to_owned();
    assert_eq!(next_message(&mut old).await.unwrap()["metadata"]["message_type"], "session_reconnect");
    let mut new = ws_connect(&url).await;
    let new_id = next_message(&mut new).await.unwrap()["payload"]["session"]["id"].as_str().unwrap().to_owned();
    old.close(None).await.unwrap();

    let path = format!("/eventsub/subscriptions?subscription_id={id}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, listed) = t.get(&path, &token).await;
    assert_eq!(listed["data"][0]["status"], "enabled", "closing the old socket after the switch is fine");
    assert_eq!(listed["data"][0]["transport"]["session_id"], new_id.as_str());
    t.chat(&channel, "moved").await;
    let note = next_message(&mut new).await.unwrap();
    assert_eq!(note["payload"]["event"]["message"]["text"], "moved");
    assert_eq!(note["payload"]["subscription"]["transport"]["session_id"], new_id.as_str());
    // §6.5: do not resubscribe — it would be a duplicate.
    assert_eq!(t.ws_subscribe(&token, "channel.chat.message", chat, &new_id).await.0, 409);
}

#[tokio::test]
async fn a_revocation_arrives_as_a_frame_on_the_session() {
    let t = start().await;
    let (token, me, channel) = t.chatter_and_channel().await;
    let (mut ws, session) = t.session("").await;
    let chat = json!({"broadcaster_user_id": channel, "user_id": me});
    let (_, body) = t.ws_subscribe(&token, "channel.chat.message", chat, &session).await;
    let id = body["data"][0]["id"].as_str().unwrap().to_owned();
    let (status, banned) = t.sim_post(&format!("/sim/channels/{channel}/bans"), json!({"user_id": me})).await;
    assert_eq!(status, 200);
    assert_eq!(banned["revoked"], json!([id]));
    let frame = next_message(&mut ws).await.unwrap();
    assert_eq!(frame["metadata"]["message_type"], "revocation");
    assert_eq!(frame["metadata"]["subscription_type"], "channel.chat.message");
    assert_eq!(frame["payload"]["subscription"]["status"], "chat_user_banned");
    assert!(frame["payload"].get("event").is_none());
}

#[tokio::test]
async fn a_user_has_a_budget_of_10_and_3_sessions_and_a_session_300_subscriptions() {
    let t = start().await;
    let (token, me, _) = t.chatter_and_channel().await;
    let (_ws, session) = t.session("").await;

    // stream.online of a channel that never authorized the app costs 1 (§4.5).
    for n in 0..10 {
        let channel = t.sim.create_user(&format!("stranger{n}"), "").id;
        let (status, body) =
            t.ws_subscribe(&token, "stream.online", json!({"broadcaster_user_id": channel}), &session).await;
        assert_eq!((status, body["data"][0]["cost"].as_u64()), (StatusCode::ACCEPTED, Some(1)), "{body}");
    }
    let channel = t.sim.create_user("stranger10", "").id;
    let (status, body) =
        t.ws_subscribe(&token, "stream.online", json!({"broadcaster_user_id": channel}), &session).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("subscription cost budget exceeded"))
    );
    // Its own channel costs nothing: the user authorized the app.
    let (status, body) = t.ws_subscribe(&token, "stream.online", json!({"broadcaster_user_id": me}), &session).await;
    assert_eq!((status, body["total_cost"].as_u64()), (StatusCode::ACCEPTED, Some(10)), "{body}");

    // Three sessions with enabled subscriptions per user; a fourth is refused.
    let mut sockets = Vec::new();
    for n in 0..2 {
        let (ws, id) = t.session("").await;
        let channel = t.sim.create_user(&format!("channel{n}"), "").id;
        let chat = json!({"broadcaster_user_id": channel, "user_id": me});
        assert_eq!(t.ws_subscribe(&token, "channel.chat.message", chat, &id).await.0, 202);
        sockets.push(ws);
    }
    let (_fourth, fourth) = t.session("").await;
    let chat = json!({"broadcaster_user_id": me, "user_id": me});
    let (status, body) = t.ws_subscribe(&token, "channel.chat.message", chat.clone(), &fourth).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("number of websocket transports limit exceeded"))
    );
    // Another user has sessions of their own.
    let (other, _) = t.user_token("tinyraccoon", "user:read:chat").await;
    let raccoon = t.sim.user_by_login("tinyraccoon").unwrap().id;
    let theirs = json!({"broadcaster_user_id": raccoon, "user_id": raccoon});
    assert_eq!(t.ws_subscribe(&other, "channel.chat.message", theirs, &fourth).await.0, 202);

    // 300 enabled subscriptions per session (chat costs 0).
    let (_ws, full) = t.session("").await;
    let (other2, _) = t.user_token("busy_reader", "user:read:chat").await;
    let reader = t.sim.user_by_login("busy_reader").unwrap().id;
    for n in 0..300 {
        let channel = t.sim.create_user(&format!("busy{n}"), "").id;
        let chat = json!({"broadcaster_user_id": channel, "user_id": reader});
        let (status, body) = t.ws_subscribe(&other2, "channel.chat.message", chat, &full).await;
        assert_eq!(status, 202, "{n}: {body}");
    }
    let chat = json!({"broadcaster_user_id": reader, "user_id": reader});
    let (status, body) = t.ws_subscribe(&other2, "channel.chat.message", chat, &full).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("websocket transport session subscriptions limit exceeded"))
    );
    drop(sockets);
}

#[tokio::test]
async fn an_old_socket_left_open_after_a_reconnect_is_closed_with_4004() {
    let t = start().await;
    let (token, me, channel) = t.chatter_and_channel().await;
    let chat = json!({"broadcaster_user_id": channel, "user_id": me});
    let t = &t;
    let reconnect = |session: String| {
        let path = format!("/sim/websocket/{session}/reconnect");
        async move { t.sim_post(&path, json!({})).await.1["reconnect_url"].as_str().unwrap().to_owned() }
    };

    // The client moves but never closes the old socket: Twitch closes it, the subscription stays.
    let (mut old, old_id) = t.session("?sim_reconnect_grace_ms=300").await;
    let (_, body) = t.ws_subscribe(&token, "channel.chat.message", chat.clone(), &old_id).await;
    let moved = body["data"][0]["id"].as_str().unwrap().to_owned();
    let url = reconnect(old_id).await;
    let mut new = ws_connect(&url).await;
    next_message(&mut new).await.unwrap();
    assert_eq!(close_code(&mut old).await, Some(4004));
    let path = format!("/eventsub/subscriptions?subscription_id={moved}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(t.get(&path, &token).await.1["data"][0]["status"], "enabled");
    t.chat(&channel, "still here").await;
    let note = next_message(&mut new).await.unwrap();
    assert_eq!(note["payload"]["event"]["message"]["text"], "still here");

    // The client never moves: the subscriptions fail with the old socket.
    let other = t.sim.create_user("otherchannel", "").id;
    let (mut stuck, stuck_id) = t.session("?sim_reconnect_grace_ms=300").await;
    let chat = json!({"broadcaster_user_id": other, "user_id": me});
    let (_, body) = t.ws_subscribe(&token, "channel.chat.message", chat, &stuck_id).await;
    let lost = body["data"][0]["id"].as_str().unwrap().to_owned();
    reconnect(stuck_id).await;
    assert_eq!(close_code(&mut stuck).await, Some(4004));
    let path = format!("/eventsub/subscriptions?subscription_id={lost}");
    let failed = eventually(WAIT, || async {
        t.get(&path, &token).await.1["data"][0]["status"] == "websocket_failed_to_reconnect"
    })
    .await;
    assert!(failed, "{:?}", t.sim.subscriptions());
}
