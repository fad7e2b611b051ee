//! The whole path through the built-in Twitch simulator, as `make run` wires
//! it: the service sets up its conduit and webhook shard (answering the
//! simulator's signed challenge), subscribes the channel when an overlay
//! opens, and chat typed into the simulator (`POST /sim/chat`) is signed and
//! delivered through the shard to our webhook. These are the webhook tests
//! (`webhook.rs`, hand-signed deliveries) again, on Twitch's own delivery path.
//!
//! What a faithful Twitch cannot send is not here: malformed or unsigned
//! deliveries (only `webhook.rs` can forge those).

use std::time::{Duration, Instant};

use chatpulse::config::Secret;
use chatpulse::twitch::client::TwitchClient;
use serde_json::{Value, json};
use twitch_sim::SimConfig;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(5);

/// A service with its own in-process simulator, like `make run`, its demo
/// streamer on the classic meter (+10 a vote, whole-message matching): these
/// tests are about Twitch's delivery path, and that meter's values are exact.
async fn demo_app() -> TestApp {
    classic(TestApp::builder().demo().start().await).await
}

/// The demo streamer on the classic meter.
async fn classic(app: TestApp) -> TestApp {
    let setup = app.repo.overlay_setup(app.demo_overlay()).await.unwrap().expect("demo streamer");
    app.repo.save_config(setup.streamer.id, &chatpulse::domain::OverlayConfig::classic()).await.unwrap();
    app
}

/// Opens the demo overlay and waits until the simulator delivers the
/// channel's chat to us (conduit shard verified, chat subscription enabled);
/// one message then proves the path end to end, so `no_match` is 1 after it.
async fn connected(app: &TestApp) -> (OverlayClient, String) {
    let broadcaster = app.demo_broadcaster().await;
    let mut overlay = app.connect(&app.demo_overlay()).await;
    assert_eq!(overlay.next_frame(WAIT).await, Some(Frame { value: 0.0, status: "active" }));
    app.wait_until_sim_delivers_chat_of(&broadcaster).await;
    assert_eq!(app.sim_chat(&broadcaster, "90001", "warming up").await, 202);
    let live = eventually(WAIT, || async { app.votes("no_match").await == 1.0 }).await;
    assert!(live, "chat from the simulator never reached the webhook: {:#}", app.sim_state().await);
    (overlay, broadcaster)
}

/// The id of the channel's enabled chat subscription on the simulator.
async fn chat_subscription(app: &TestApp, broadcaster: &str) -> String {
    let state = app.sim_state().await;
    let subs = state["subscriptions"].as_array().cloned().unwrap_or_default();
    let sub = subs
        .iter()
        .find(|s| {
            s["type"] == "channel.chat.message"
                && s["status"] == "enabled"
                && s["condition"]["broadcaster_user_id"] == broadcaster
        })
        .expect("an enabled chat subscription");
    sub["id"].as_str().unwrap().to_owned()
}

/// The HTTP statuses our webhook answered to the simulator's attempts, in order.
async fn answered(app: &TestApp, subscription_id: &str) -> Vec<u64> {
    let deliveries = app.sim_deliveries_of(subscription_id).await;
    deliveries.iter().filter(|d| d["message_type"] == "notification").filter_map(|d| d["status"].as_u64()).collect()
}

/// Waits until the simulator's log shows exactly these answers for the
/// subscription (an attempt is logged once our answer is back).
async fn expect_answered(app: &TestApp, subscription_id: &str, expected: &[u64]) {
    let seen = eventually(WAIT, || async { answered(app, subscription_id).await == expected }).await;
    assert!(
        seen,
        "expected answers {expected:?}, the simulator logged {:#?}",
        app.sim_deliveries_of(subscription_id).await
    );
}

async fn inject(app: &TestApp, fault: &str) {
    let body = json!({ "fault": fault, "count": 1 });
    let url = format!("{}/sim/delivery-faults", app.simulator_url());
    let response = app.http.post(url).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

both_modes! {
async fn chat_typed_in_the_simulator_moves_the_overlay() {
    let app = demo_app().await;
    let (mut overlay, broadcaster) = connected(&app).await;

    assert_eq!(app.sim_chat(&broadcaster, "1001", "yes").await, 202);
    let right = overlay.wait_for(WAIT, |f| f.value > 0.0).await.expect("right after yes");
    assert!(right.value > 9.0 && right.value <= 10.0, "{right:?}");
    assert_eq!(app.sim_chat(&broadcaster, "1002", "  NO ").await, 202);
    assert_eq!(app.sim_chat(&broadcaster, "1003", "no").await, 202);
    overlay.wait_for(WAIT, |f| f.value < -5.0).await.expect("left after two noes");

    // Every delivery was verified, answered 204 at the first attempt, and counted once.
    assert_eq!(app.votes("applied").await, 3.0);
    assert_eq!(
        app.metric("chatpulse_webhook_messages_total{message_type=\"notification\",outcome=\"forbidden\"}").await,
        0.0
    );
    let chat = chat_subscription(&app, &broadcaster).await;
    expect_answered(&app, &chat, &[204, 204, 204, 204]).await; // the warm-up and three votes
}
}

both_modes! {
async fn a_vote_moves_a_connected_overlay_within_one_tick() {
    let app = demo_app().await;
    let (mut overlay, broadcaster) = connected(&app).await;

    let sent = Instant::now();
    assert_eq!(app.sim_chat(&broadcaster, "1101", "yes").await, 202);
    let frame = overlay.wait_for(WAIT, |f| f.value > 0.0).await.expect("a frame above 0");
    let latency = sent.elapsed();

    assert!(frame.value > 9.0 && frame.value <= 10.0, "{frame:?}");
    // One tick is 50 ms; the simulator's signed POST to our webhook is one
    // more loopback hop than webhook.rs has. Allow scheduling noise on a
    // loaded 2-core machine.
    assert!(latency < Duration::from_millis(300), "took {latency:?}");
}
}

both_modes! {
async fn the_value_decays_toward_zero_at_the_configured_speed() {
    let app = demo_app().await;
    let k = 2.0;
    let setup = app.repo.overlay_setup(app.demo_overlay()).await.unwrap().expect("demo streamer");
    app.repo.save_config(setup.streamer.id, &config("yes", "no", "L", "R", k)).await.unwrap();
    let (mut overlay, broadcaster) = connected(&app).await;

    app.sim_chat(&broadcaster, "1201", "yes").await;
    // The simulator's delivery takes its own time: measure from the first
    // frame after the vote landed rather than from the chat message.
    let first = overlay.next_with("at", WAIT).await.expect("the vote landed");
    let first = if first["value"].as_f64() == Some(0.0) { overlay.next_with("at", WAIT).await.unwrap() } else { first };
    let v0 = first["value"].as_f64().unwrap();
    assert!(v0 > 9.0 && v0 <= 10.0, "{first}");
    let at0 = first["at"].as_i64().unwrap();
    // Frames are trajectories (the value at the server time `at`, decaying
    // at `decay`): after the vote's frame, a keyframe with each glide read.
    let landed = Instant::now();
    let mut frames = vec![first];
    while let Some(left) = Duration::from_millis(2200).checked_sub(landed.elapsed()) {
        if let Some(f) = overlay.next_with("at", left).await {
            frames.push(f);
        }
    }
    assert!((2..=4).contains(&frames.len()), "the vote's frame and a keyframe a second: {frames:?}");
    for f in &frames {
        assert_eq!(f["decay"], k, "{f}");
        // On the first frame's trajectory: v = v0·e^(−k·Δ), Δ on the server's clock.
        let since = (f["at"].as_i64().unwrap() - at0) as f64 / 1000.0;
        let expected = v0 * (-k * since).exp();
        let v = f["value"].as_f64().unwrap();
        assert!((v - expected).abs() <= 0.02, "{since:.3}s after the first frame: {v}, expected {expected:.3}");
    }
    // Keyframes go with the glide read (one a second, spread over the ticks):
    // the first half a second or more after the vote's frame, then a second apart.
    for (n, pair) in frames.windows(2).enumerate() {
        let (a, b) = (pair[0]["at"].as_i64().unwrap(), pair[1]["at"].as_i64().unwrap());
        let least = if n == 0 { 500 } else { 950 };
        assert!(b - a >= least, "at most one keyframe a second: {frames:?}");
    }
    assert!(v0 * (-k * 1.2f64).exp() < 1.5, "after a second at k=2 the bar is near the centre");
}
}

both_modes! {
async fn one_chatter_counts_once_per_second_but_different_chatters_add_up() {
    let app = demo_app().await;
    let (mut overlay, broadcaster) = connected(&app).await;

    for (chatter, text) in [("2001", "yes"), ("2001", "yes"), ("2002", "yes"), ("2003", "yes please")] {
        assert_eq!(app.sim_chat(&broadcaster, chatter, text).await, 202);
    }

    let frame = overlay.wait_for(WAIT, |f| f.value > 15.0).await.expect("two votes counted");
    assert!(frame.value <= 20.0, "{frame:?}");
    let counted = eventually(WAIT, || async {
        app.votes("debounced").await == 1.0 && app.votes("no_match").await == 2.0
    })
    .await;
    assert!(counted, "debounced {}, no_match {}", app.votes("debounced").await, app.votes("no_match").await);
    assert_eq!(app.votes("applied").await, 2.0);
}
}

both_modes! {
async fn the_token_bucket_caps_votes_per_session() {
    // Three tokens, refilled too slowly to matter during the test.
    let app = TestApp::builder().demo().configure(|c| {
        c.vote_rate_limit_capacity = 3;
        c.vote_rate_limit_rate = 1.0;
    }).start()
    .await;
    let app = classic(app).await;
    let (mut overlay, broadcaster) = connected(&app).await;

    for chatter in 3001..3006 {
        assert_eq!(app.sim_chat(&broadcaster, &chatter.to_string(), "yes").await, 202);
    }

    let frame = overlay.wait_for(WAIT, |f| f.value > 25.0).await.expect("three votes counted");
    assert!(frame.value <= 30.0, "{frame:?}");
    let capped = eventually(WAIT, || async { app.votes("rate_limited").await == 2.0 }).await;
    assert!(capped, "rate_limited {}", app.votes("rate_limited").await);
    assert_eq!(app.votes("applied").await, 3.0);
    // Refused votes are still acknowledged: Twitch must not redeliver them.
    let chat = chat_subscription(&app, &broadcaster).await;
    expect_answered(&app, &chat, &[204; 6]).await; // the warm-up and five votes
}
}

both_modes! {
async fn unmatched_text_the_bots_own_messages_and_shared_chat_from_elsewhere_do_not_vote() {
    let app = demo_app().await;
    let (mut overlay, broadcaster) = connected(&app).await;
    let bot = app.sim_user_id("chatpulse_bot").await;

    assert_eq!(app.sim_chat(&broadcaster, &bot, "yes").await, 202);
    assert_eq!(app.sim_chat(&broadcaster, "5003", "yes please").await, 202);
    assert_eq!(app.sim_chat(&broadcaster, "5004", "maybe").await, 202);
    // Shared Chat: a "yes" typed in another channel of the session, relayed here.
    let relayed = serde_json::json!({
        "broadcaster_user_id": broadcaster, "chatter_user_id": "5006", "text": "yes",
        "source_broadcaster_user_id": bot,
    });
    let posted = app.http.post(format!("{}/sim/chat", app.simulator_url())).json(&relayed).send().await.unwrap();
    assert_eq!(posted.status(), 202);
    let handled =
        eventually(WAIT, || async { app.votes("ignored").await == 2.0 && app.votes("no_match").await == 3.0 }).await;
    assert!(
        handled,
        "ignored {}, no_match {}, applied {}",
        app.votes("ignored").await,
        app.votes("no_match").await,
        app.votes("applied").await
    );
    assert_eq!(app.votes("applied").await, 0.0);
    assert_eq!(overlay.next_frame(Duration::from_millis(300)).await, None, "no frame: the value never moved");

    // A viewer's own trigger word does count.
    assert_eq!(app.sim_chat(&broadcaster, "5005", "yes").await, 202);
    overlay.wait_for(WAIT, |f| f.value > 0.0).await.expect("moved");
    assert_eq!(app.votes("applied").await, 1.0);
}
}

/// Waits until EventSub is set up and the leader's start-up reconciliation
/// is done (the next one is 10 minutes away); returns the conduit id.
async fn settled(app: &TestApp) -> String {
    let readiness = || async {
        let r = app.http.get(format!("{}/health/ready", app.metrics_base)).send().await.unwrap();
        r.json::<Value>().await.unwrap()
    };
    let ready = eventually(Duration::from_secs(20), || async {
        readiness().await["eventsub"]["set_up"] == true
            && app.metric("chatpulse_eventsub_reconciliations_total{outcome=\"ok\"}").await >= 1.0
    })
    .await;
    let body = readiness().await;
    assert!(ready, "EventSub never settled: {body}");
    body["eventsub"]["conduit_id"].as_str().unwrap().to_owned()
}

both_modes! {
async fn chat_for_a_channel_without_an_open_overlay_is_acknowledged_and_dropped() {
    let app = demo_app().await;
    let conduit = settled(&app).await;
    let broadcaster = app.demo_broadcaster().await;
    let bot = app.sim_user_id("chatpulse_bot").await;
    // No overlay is open, so the service has not subscribed the channel.
    // Twitch delivers whatever is subscribed on our conduit, though: plant a
    // chat subscription as a crash (before reconciliation) would leave it.
    let defaults = SimConfig::default();
    let sim = app.simulator_url();
    let client = TwitchClient::new(
        &format!("{sim}/helix"),
        &format!("{sim}/oauth2"),
        &defaults.client_id,
        Secret::new(defaults.client_secret),
    )
    .unwrap();
    let condition = json!({ "broadcaster_user_id": broadcaster, "user_id": bot });
    let orphan = client.create_conduit_subscription("channel.chat.message", condition, &conduit).await.unwrap().subscription;
    assert!(app.sim_delivers_chat_of(&broadcaster).await);

    assert_eq!(app.sim_chat(&broadcaster, "6001", "yes").await, 202);

    assert!(eventually(WAIT, || async { app.votes("no_session").await == 1.0 }).await, "counted as no session");
    assert_eq!(app.votes("applied").await, 0.0);
    // Acknowledged (204) at the first attempt, so Twitch does not retry it.
    expect_answered(&app, &orphan.id, &[204]).await;
}
}

both_modes! {
async fn the_shard_and_the_alarm_subscriptions_are_verified_through_our_own_webhook() {
    let app = demo_app().await;
    let (_overlay, broadcaster) = connected(&app).await;
    // The simulator enables a shard or a webhook subscription only when our
    // answer is 200 with the raw challenge as the body; it logs its verdict.
    let verified = |d: &Value| d["status"] == 200 && d["error"].is_null();
    let all_verified = eventually(Duration::from_secs(10), || async {
        let state = app.sim_state().await;
        let subs = state["subscriptions"].as_array().cloned().unwrap_or_default();
        let alarms_enabled = ["user.authorization.revoke", "conduit.shard.disabled"].iter().all(|kind| {
            subs.iter().any(|s| s["type"] == *kind && s["status"] == "enabled" && s["transport"]["method"] == "webhook")
        });
        let challenges: Vec<Value> = state["deliveries"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|d| d["message_type"] == "webhook_callback_verification")
            .collect();
        alarms_enabled && challenges.len() == 3 && challenges.iter().all(verified)
    })
    .await;
    assert!(all_verified, "{:#}", app.sim_state().await);
    // One of them was the conduit shard's (no subscription), and chat flows through it.
    let state = app.sim_state().await;
    let shard_challenges = state["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["message_type"] == "webhook_callback_verification" && d["subscription_id"].is_null())
        .count();
    assert_eq!(shard_challenges, 1);
    assert!(app.sim_delivers_chat_of(&broadcaster).await);
    assert_eq!(
        app.metric(
            "chatpulse_webhook_messages_total{message_type=\"webhook_callback_verification\",outcome=\"challenge_answered\"}"
        )
        .await,
        3.0
    );
}
}

both_modes! {
async fn stream_online_and_offline_change_the_frame_status() {
    let app = demo_app().await;
    let (mut overlay, broadcaster) = connected(&app).await;
    app.sim_chat(&broadcaster, "3001", "yes").await;
    overlay.wait_for(WAIT, |f| f.value > 9.0).await.expect("moved");
    let sim = app.simulator_url().to_owned();

    let online = app.http.post(format!("{sim}/sim/streams/{broadcaster}/online")).send().await.unwrap();
    assert!(online.status().is_success(), "{}", online.status());
    let live = overlay.wait_for(WAIT, |f| f.status == "live").await.expect("live status");
    assert_eq!(live.value, 0.0, "a broadcast starts from the centre");

    app.sim_chat(&broadcaster, "3002", "no").await;
    overlay.wait_for(WAIT, |f| f.value < -9.0 && f.status == "live").await.expect("votes count while live");
    let offline = app.http.post(format!("{sim}/sim/streams/{broadcaster}/offline")).send().await.unwrap();
    assert!(offline.status().is_success());
    overlay.wait_for(WAIT, |f| f.status == "offline").await.expect("offline status");
    let updated =
        app.metric("chatpulse_webhook_messages_total{message_type=\"notification\",outcome=\"status_updated\"}").await;
    assert_eq!(updated, 2.0);
}
}

both_modes! {
async fn a_delivery_twitch_sends_twice_is_applied_once() {
    let app = demo_app().await;
    let (mut overlay, broadcaster) = connected(&app).await;
    inject(&app, "duplicate").await;

    app.sim_chat(&broadcaster, "4001", "yes").await;

    overlay.wait_for(WAIT, |f| f.value > 9.0).await.expect("applied");
    assert!(eventually(WAIT, || async { app.votes("duplicate").await == 1.0 }).await, "the redelivery was recognised");
    assert_eq!(app.votes("applied").await, 1.0);
    // Only keyframes of the same decay follow (one a glide read, within
    // 1.5 s of the vote's frame): never a second vote's 20.
    let later = overlay.next_frame(Duration::from_secs(3)).await.expect("a keyframe");
    assert!(later.value < 10.0, "{later:?}");
    // Both copies were acknowledged.
    let chat = chat_subscription(&app, &broadcaster).await;
    expect_answered(&app, &chat, &[204, 204, 204]).await; // the warm-up, the message and its copy
}
}

both_modes! {
async fn stale_or_badly_signed_deliveries_from_twitch_are_refused() {
    let app = demo_app().await;
    let (mut overlay, broadcaster) = connected(&app).await;
    let chat = chat_subscription(&app, &broadcaster).await;
    let forbidden = || async {
        app.metric("chatpulse_webhook_messages_total{message_type=\"notification\",outcome=\"forbidden\"}").await
    };

    inject(&app, "stale").await;
    app.sim_chat(&broadcaster, "5001", "yes").await;
    assert!(eventually(WAIT, || async { forbidden().await >= 1.0 }).await, "a replayed timestamp is refused");
    assert_eq!(app.votes("applied").await, 0.0, "nothing applied from the refused attempt");
    assert_eq!(overlay.next_frame(Duration::from_millis(300)).await, None, "no frame: the value never moved");
    // Twitch retries a refused delivery (same message id, sent correctly
    // this time): the retry is applied, once.
    assert!(eventually(WAIT, || async { app.votes("applied").await == 1.0 }).await, "the retry counts");
    overlay.wait_for(WAIT, |f| f.value > 9.0).await.expect("moved by the retry");

    inject(&app, "bad_signature").await;
    app.sim_chat(&broadcaster, "5002", "no").await;
    assert!(eventually(WAIT, || async { forbidden().await >= 2.0 }).await, "a bad signature is refused");
    assert!(eventually(WAIT, || async { app.votes("applied").await == 2.0 }).await, "the retry counts");

    // Each faulty first attempt was answered 403, each retry 2xx (plus the warm-up).
    let statuses = answered(&app, &chat).await;
    assert_eq!(statuses.iter().filter(|&&s| s == 403).count(), 2, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|&&s| (200..300).contains(&s)).count(), 3, "{statuses:?}");
    assert_eq!(app.votes("duplicate").await, 0.0, "a refused attempt used no message id");
}
}
