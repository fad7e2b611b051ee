//! Webhook delivery (§5): headers, signatures, shapes, retries, faults, shard disabling, revocations.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use twitch_sim::{ChatInput, SimConfig};

use crate::harness::*;

const CHAT_EVENT_FIELDS: [&str; 19] = [
    "broadcaster_user_id",
    "broadcaster_user_login",
    "broadcaster_user_name",
    "chatter_user_id",
    "chatter_user_login",
    "chatter_user_name",
    "message_id",
    "message",
    "message_type",
    "badges",
    "cheer",
    "color",
    "reply",
    "channel_points_custom_reward_id",
    "source_broadcaster_user_id",
    "source_broadcaster_user_login",
    "source_broadcaster_user_name",
    "source_message_id",
    "source_badges",
];

#[tokio::test]
async fn chat_messages_arrive_signed_with_all_headers_and_the_documented_shape() {
    let t = start().await;
    let app = t.app_token().await;
    let receiver = Receiver::start(Challenge::Echo).await;
    let conduit = t.conduit_for(&app, &receiver).await;
    let (streamer, bot) = t.streamer_and_bot();
    let sub = t
        .subscribe(&app, "channel.chat.message", json!({"broadcaster_user_id": streamer, "user_id": bot}), &conduit)
        .await;

    let (status, body) = t
        .sim_post(
            "/sim/chat",
            json!({"broadcaster_user_id": streamer, "chatter_user_id": "", "chatter_login": "mossy_owl", "text": "YES pizza"}),
        )
        .await;
    assert_eq!(status, 202);
    let chat_id = body["message_id"].as_str().unwrap().to_owned();
    let got = receiver.wait_count("notification", Some("channel.chat.message"), 1).await.remove(0);

    assert_eq!(got.header("content-type").as_deref(), Some("application/json"));
    assert_eq!(got.header("twitch-eventsub-message-retry").as_deref(), Some("0"));
    assert_eq!(got.header("twitch-eventsub-subscription-version").as_deref(), Some("1"));
    assert!(!got.id().is_empty());
    assert!(is_nanosecond_rfc3339(&got.header("twitch-eventsub-message-timestamp").unwrap()));
    let signature = got.header("twitch-eventsub-message-signature").unwrap();
    assert!(signature.starts_with("sha256=") && signature.len() == 71);
    assert!(signature_valid(SHARD_SECRET, &got), "signed with the shard's secret");
    assert!(!signature_valid("some-other-secret-value", &got));

    let body = got.json();
    assert_eq!(body["subscription"], sub, "the subscription object as stored");
    let event = body["event"].as_object().unwrap();
    for field in CHAT_EVENT_FIELDS {
        assert!(event.contains_key(field), "event.{field} is present");
    }
    let mossy = t.sim.user_by_login("mossy_owl").unwrap();
    assert_eq!(event["message_id"], chat_id.as_str());
    assert_eq!(event["broadcaster_user_id"], streamer.as_str());
    assert_eq!(event["broadcaster_user_login"], "pixelpaws");
    assert_eq!(event["broadcaster_user_name"], "PixelPaws");
    assert_eq!(event["chatter_user_id"], mossy.id.as_str());
    assert_eq!(event["chatter_user_login"], "mossy_owl");
    assert_eq!(event["message"]["text"], "YES pizza");
    assert_eq!(
        event["message"]["fragments"],
        json!([{"type": "text", "text": "YES pizza", "cheermote": null, "emote": null, "mention": null}])
    );
    assert_eq!(event["message_type"], "text");
    assert_eq!(event["badges"], json!([]));
    assert_eq!(event["color"], "");
    for null_field in
        ["cheer", "reply", "channel_points_custom_reward_id", "source_broadcaster_user_id", "source_badges"]
    {
        assert!(event[null_field].is_null(), "{null_field} is null");
    }

    // Missing fields are refused.
    let (status, _) = t.sim_post("/sim/chat", json!({"broadcaster_user_id": streamer, "chatter_user_id": bot})).await;
    assert_eq!(status, 400);
    let (status, _) =
        t.sim_post("/sim/chat", json!({"broadcaster_user_id": "404404", "chatter_user_id": bot, "text": "x"})).await;
    assert_eq!(status, 404);

    // Every 7th message carries an unknown field (clients must ignore it).
    for i in 0..13 {
        let input = ChatInput {
            broadcaster_user_id: streamer.clone(),
            chatter_user_id: mossy.id.clone(),
            chatter_login: None,
            text: format!("msg {i}"),
        };
        t.sim.post_chat(input).await.unwrap();
    }
    let all = receiver.wait_count("notification", Some("channel.chat.message"), 14).await;
    let extra = all.iter().filter(|r| r.json()["event"].get("sim_unknown_field").is_some()).count();
    assert_eq!(extra, 2);
}

#[tokio::test]
async fn failed_deliveries_are_retried_with_the_same_message_id() {
    let t = start().await;
    let app = t.app_token().await;
    let receiver = Receiver::start(Challenge::Echo).await;
    let conduit = t.conduit_for(&app, &receiver).await;
    let (streamer, bot) = t.streamer_and_bot();
    t.subscribe(&app, "channel.chat.message", json!({"broadcaster_user_id": streamer, "user_id": bot}), &conduit).await;
    receiver.state.fail_next.store(2, Ordering::SeqCst);
    let input =
        ChatInput { broadcaster_user_id: streamer, chatter_user_id: bot, chatter_login: None, text: "yes".into() };
    t.sim.post_chat(input).await.unwrap();
    let got = receiver.wait_count("notification", None, 3).await;
    let ids: Vec<String> = got.iter().map(Received::id).collect();
    assert!(ids.iter().all(|id| id == &ids[0]), "same message id on every attempt");
    let retries: Vec<String> = got.iter().map(|r| r.header("twitch-eventsub-message-retry").unwrap()).collect();
    assert_eq!(retries, ["0", "1", "2"]);
    assert!(got.iter().all(|r| signature_valid(SHARD_SECRET, r)));
    assert!(got.windows(2).all(|w| w[0].body == w[1].body), "the body is identical on retries");

    let ok = eventually(WAIT, || async {
        let log: Vec<_> = t.sim.deliveries().into_iter().filter(|d| d.message_id == ids[0]).collect();
        log.iter().map(|d| d.status).collect::<Vec<_>>() == [Some(500), Some(500), Some(204)]
    })
    .await;
    assert!(ok, "{:?}", t.sim.deliveries());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.of_type("notification", None).len(), 3, "no redelivery after a 2xx");
}

#[tokio::test]
async fn a_failing_shard_is_disabled_and_reported_on_conduit_shard_disabled() {
    let t = start().await;
    let app = t.app_token().await;
    let shard_receiver = Receiver::start(Challenge::Echo).await;
    let alarm = Receiver::start(Challenge::Echo).await;
    let conduit = t.conduit_for(&app, &shard_receiver).await;
    let (streamer, bot) = t.streamer_and_bot();
    t.subscribe(&app, "channel.chat.message", json!({"broadcaster_user_id": streamer, "user_id": bot}), &conduit).await;
    let body = json!({"type": "conduit.shard.disabled", "version": "1",
        "condition": {"client_id": t.client_id(), "conduit_id": conduit},
        "transport": {"method": "webhook", "callback": alarm.url, "secret": HOOK_SECRET}});
    let (status, created) = t.post("/eventsub/subscriptions", &app, body).await;
    assert_eq!(status, 202);
    let alarm_id = created["data"][0]["id"].clone();
    let ok = eventually(WAIT, || async {
        t.sim.subscriptions().iter().any(|s| s["id"] == alarm_id && s["status"] == "enabled")
    })
    .await;
    assert!(ok, "the plain webhook subscription is verified");

    // Threshold 3 counts failed *messages* (each after its 3 attempts), in a row.
    shard_receiver.state.fail_always.store(true, Ordering::SeqCst);
    let input = ChatInput {
        broadcaster_user_id: streamer.clone(),
        chatter_user_id: bot.clone(),
        chatter_login: None,
        text: "yes".into(),
    };
    let attempts =
        || t.sim.deliveries().iter().filter(|d| d.message_type == "notification" && d.status.is_some()).count();
    for n in 1..=2 {
        t.sim.post_chat(input.clone()).await.unwrap();
        assert!(eventually(WAIT, || async { attempts() == 3 * n }).await, "{:?}", t.sim.deliveries());
        tokio::time::sleep(Duration::from_millis(50)).await;
        t.wait_shard(&app, &conduit, "0", "enabled").await;
    }
    // A delivered message starts the count again.
    shard_receiver.state.fail_always.store(false, Ordering::SeqCst);
    t.sim.post_chat(input.clone()).await.unwrap();
    assert!(eventually(WAIT, || async { attempts() == 7 }).await);
    shard_receiver.state.fail_always.store(true, Ordering::SeqCst);
    for n in 1..=2 {
        t.sim.post_chat(input.clone()).await.unwrap();
        assert!(eventually(WAIT, || async { attempts() == 7 + 3 * n }).await);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    t.wait_shard(&app, &conduit, "0", "enabled").await;
    assert!(alarm.of_type("notification", Some("conduit.shard.disabled")).is_empty());
    t.sim.post_chat(input.clone()).await.unwrap();
    t.wait_shard(&app, &conduit, "0", "notification_failures_exceeded").await;
    assert_eq!(shard_receiver.of_type("notification", None).len(), 16, "3 + 3 + 1 + 3 + 3 + 3 attempts");

    let disabled = alarm.wait_count("notification", Some("conduit.shard.disabled"), 1).await.remove(0);
    assert!(signature_valid(HOOK_SECRET, &disabled));
    let event = disabled.json()["event"].clone();
    assert_eq!(event["conduit_id"], conduit.as_str());
    assert_eq!(event["shard_id"], "0");
    assert_eq!(event["status"], "notification_failures_exceeded");
    assert_eq!(event["transport"], json!({"method": "webhook", "callback": shard_receiver.url}));

    // A disabled shard gets nothing more; the message is dropped and logged.
    t.sim.post_chat(input).await.unwrap();
    let ok = eventually(WAIT, || async {
        t.sim.deliveries().iter().any(|d| d.error.as_deref().is_some_and(|e| e.starts_with("dropped")))
    })
    .await;
    assert!(ok);
    assert_eq!(shard_receiver.of_type("notification", None).len(), 16);
}

#[tokio::test]
async fn revocations_are_delivered_and_stop_further_notifications() {
    let t = start().await;
    let app = t.app_token().await;
    let receiver = Receiver::start(Challenge::Echo).await;
    let conduit = t.conduit_for(&app, &receiver).await;
    let (streamer, bot) = t.streamer_and_bot();
    let sub = t
        .subscribe(&app, "channel.chat.message", json!({"broadcaster_user_id": streamer, "user_id": bot}), &conduit)
        .await;
    let id = sub["id"].as_str().unwrap();

    assert_eq!(t.sim_post(&format!("/sim/subscriptions/{id}/revoke"), json!({"status": "bored"})).await.0, 400);
    assert_eq!(t.sim_post("/sim/subscriptions/nope/revoke", json!({"status": "chat_user_banned"})).await.0, 404);
    let (status, _) =
        t.sim_post(&format!("/sim/subscriptions/{id}/revoke"), json!({"status": "chat_user_banned"})).await;
    assert_eq!(status, 202);
    let got = receiver.wait_count("revocation", Some("channel.chat.message"), 1).await.remove(0);
    assert!(signature_valid(SHARD_SECRET, &got));
    assert_eq!(got.header("twitch-eventsub-subscription-version").as_deref(), Some("1"));
    let body = got.json();
    assert!(body.get("event").is_none());
    let mut expected = sub.clone();
    expected["status"] = json!("chat_user_banned");
    assert_eq!(body["subscription"], expected);

    let (_, listed) = t.get(&format!("/eventsub/subscriptions?subscription_id={id}"), &app).await;
    assert_eq!(listed["data"][0]["status"], "chat_user_banned", "revoked subscriptions stay listed");
    let input =
        ChatInput { broadcaster_user_id: streamer, chatter_user_id: bot, chatter_login: None, text: "x".into() };
    t.sim.post_chat(input).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(receiver.of_type("notification", None).is_empty());
}

#[tokio::test]
async fn disconnecting_the_app_revokes_tokens_grants_and_subscriptions() {
    let t = start().await;
    let app = t.app_token().await;
    let receiver = Receiver::start(Challenge::Echo).await;
    let conduit = t.conduit_for(&app, &receiver).await;
    let (access, refresh) = t.user_token("pixelpaws", "channel:bot").await;
    let streamer = t.sim.user_by_login("pixelpaws").unwrap();
    let revoke_sub = json!({"type": "user.authorization.revoke", "version": "1", "condition": {"client_id": t.client_id()},
        "transport": {"method": "webhook", "callback": receiver.url, "secret": HOOK_SECRET}});
    assert_eq!(t.post("/eventsub/subscriptions", &app, revoke_sub).await.0, 202);
    receiver.wait_count("webhook_callback_verification", Some("user.authorization.revoke"), 1).await;
    let online = t.subscribe(&app, "stream.online", json!({"broadcaster_user_id": streamer.id}), &conduit).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let (status, _) = t.sim_post(&format!("/sim/users/{}/disconnect", streamer.id), json!({})).await;
    assert_eq!(status, 202);
    let revocation = receiver.wait_count("revocation", Some("stream.online"), 1).await.remove(0);
    assert_eq!(revocation.json()["subscription"]["id"], online["id"]);
    assert_eq!(revocation.json()["subscription"]["status"], "authorization_revoked");
    let note = receiver.wait_count("notification", Some("user.authorization.revoke"), 1).await.remove(0);
    assert!(signature_valid(HOOK_SECRET, &note));
    let event = note.json()["event"].clone();
    assert_eq!(event["user_id"], streamer.id.as_str());
    assert_eq!(event["user_login"], "pixelpaws");
    assert_eq!(event["client_id"], t.client_id().as_str());
    assert_eq!(t.get("/users", &access).await.0, 401, "the user's tokens are dead");
    let r = t.refresh_request(&refresh).await;
    assert_eq!(r.status(), 400);
    assert!(t.sim.granted_scopes(&streamer.id).is_empty());
}

fn slow_config() -> SimConfig {
    SimConfig { delivery_timeout: Duration::from_millis(300), ..test_config() }
}

#[tokio::test]
async fn a_delivery_that_times_out_is_retried() {
    let t = start_with(slow_config()).await;
    let app = t.app_token().await;
    let (receiver, _, streamer, bot) = chat_receiver(&t, &app).await;
    receiver.state.slow_next.store(1, Ordering::SeqCst);
    let input =
        ChatInput { broadcaster_user_id: streamer, chatter_user_id: bot, chatter_login: None, text: "yes".into() };
    t.sim.post_chat(input).await.unwrap();
    let got = receiver.wait_count("notification", Some("channel.chat.message"), 2).await;
    assert_eq!(got[0].id(), got[1].id(), "the same message id");
    let retries: Vec<String> = got.iter().map(|r| r.header("twitch-eventsub-message-retry").unwrap()).collect();
    assert_eq!(retries, ["0", "1"]);
    let ok = eventually(WAIT, || async {
        let log: Vec<_> = t.sim.deliveries().into_iter().filter(|d| d.message_id == got[0].id()).collect();
        log.len() == 2
            && log[0].error.as_deref() == Some("timeout")
            && log[0].status.is_none()
            && log[1].status == Some(204)
    })
    .await;
    assert!(ok, "{:?}", t.sim.deliveries());
}

#[tokio::test]
async fn an_injected_delivery_fault_spoils_only_the_first_attempt() {
    let t = start().await;
    let app = t.app_token().await;
    let (receiver, conduit, streamer, bot) = chat_receiver(&t, &app).await;
    receiver.state.verify.store(true, Ordering::SeqCst);
    let input =
        ChatInput { broadcaster_user_id: streamer, chatter_user_id: bot, chatter_login: None, text: "yes".into() };
    for (n, fault) in ["bad_signature", "stale"].into_iter().enumerate() {
        let (status, _) = t.sim_post("/sim/delivery-faults", json!({"fault": fault})).await;
        assert_eq!(status, 200);
        t.sim.post_chat(input.clone()).await.unwrap();
        let got = receiver.wait_count("notification", None, 2 * (n + 1)).await;
        let (first, retry) = (&got[2 * n], &got[2 * n + 1]);
        assert_eq!(first.id(), retry.id());
        assert_eq!(retry.header("twitch-eventsub-message-retry").as_deref(), Some("1"));
        assert!(!(signature_valid(SHARD_SECRET, first) && fresh(first)), "{fault}: the first attempt is spoiled");
        assert!(signature_valid(SHARD_SECRET, retry) && fresh(retry), "{fault}: the retry is sent correctly");
        let ok = eventually(WAIT, || async {
            let log: Vec<_> = t.sim.deliveries().into_iter().filter(|d| d.message_id == first.id()).collect();
            log.iter().map(|d| d.status).collect::<Vec<_>>() == [Some(403), Some(204)]
        })
        .await;
        assert!(ok, "{fault}: {:?}", t.sim.deliveries());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.of_type("notification", None).len(), 4, "nothing more once delivered");
    t.wait_shard(&app, &conduit, "0", "enabled").await;

    // A duplicate follows whichever attempt got through.
    receiver.state.fail_next.store(1, Ordering::SeqCst);
    assert_eq!(t.sim_post("/sim/delivery-faults", json!({"fault": "duplicate"})).await.0, 200);
    t.sim.post_chat(input).await.unwrap();
    let got = receiver.wait_count("notification", None, 7).await;
    let id = got[4].id();
    assert!(got[4..].iter().all(|r| r.id() == id && signature_valid(SHARD_SECRET, r)));
    let ok = eventually(WAIT, || async {
        let log: Vec<_> = t.sim.deliveries().into_iter().filter(|d| d.message_id == id).collect();
        log.iter().map(|d| (d.attempt, d.status)).collect::<Vec<_>>()
            == [(0, Some(500)), (1, Some(204)), (2, Some(204))]
    })
    .await;
    assert!(ok, "{:?}", t.sim.deliveries());
}

#[tokio::test]
async fn a_tunnel_forwards_an_https_callback_to_a_local_receiver() {
    let t = start().await;
    let app = t.app_token().await;
    let receiver = Receiver::start(Challenge::Echo).await;
    receiver.state.verify.store(true, Ordering::SeqCst);
    let local = receiver.url.trim_end_matches("/webhooks/eventsub").to_owned();
    let (status, _) =
        t.sim_post("/sim/tunnels", json!({"public_url": "https://hooks.example", "local_url": local})).await;
    assert_eq!(status, 201);
    let (_, listed) = send(t.http.get(format!("{}/sim/tunnels", t.base))).await;
    assert_eq!(listed["data"], json!([{"public_url": "https://hooks.example", "local_url": local}]));

    // A Twitch-valid callback (https, 443) that lands on the local receiver.
    let (streamer, _) = t.streamer_and_bot();
    let callback = "https://hooks.example/webhooks/eventsub";
    let body = json!({"type": "stream.online", "version": "1", "condition": {"broadcaster_user_id": streamer},
        "transport": {"method": "webhook", "callback": callback, "secret": SHARD_SECRET}});
    let (status, created) = t.post("/eventsub/subscriptions", &app, body).await;
    assert_eq!(status, 202, "{created}");
    assert_eq!(created["data"][0]["transport"], json!({"method": "webhook", "callback": callback}));
    let challenge = receiver.wait_count("webhook_callback_verification", None, 1).await.remove(0);
    assert!(signature_valid(SHARD_SECRET, &challenge));
    let id = created["data"][0]["id"].as_str().unwrap().to_owned();
    let enabled = eventually(WAIT, || async {
        t.get(&format!("/eventsub/subscriptions?subscription_id={id}"), &app).await.1["data"][0]["status"] == "enabled"
    })
    .await;
    assert!(enabled, "the challenge was answered through the tunnel");
    t.sim.set_live(&streamer, true).await.unwrap();
    let online = receiver.wait_count("notification", Some("stream.online"), 1).await.remove(0);
    assert!(signature_valid(SHARD_SECRET, &online));
    let logged = t.sim.deliveries().into_iter().find(|d| d.message_id == online.id()).unwrap();
    assert_eq!(logged.callback, callback, "the log shows the callback Twitch knows");

    for bad in [
        json!({"public_url": "http://hooks.example", "local_url": local}),
        json!({"public_url": "https://hooks.example:8443", "local_url": local}),
        json!({"public_url": "https://hooks.example", "local_url": "http://10.1.2.3:8080"}),
    ] {
        assert_eq!(t.sim_post("/sim/tunnels", bad.clone()).await.0, 400, "{bad}");
    }
    let delete = |url: &str| t.http.delete(format!("{}/sim/tunnels?public_url={}", t.base, urlencode(url)));
    assert_eq!(delete("https://hooks.example").send().await.unwrap().status(), 204);
    assert_eq!(delete("https://hooks.example").send().await.unwrap().status(), 404);
}
