//! `POST /webhooks/eventsub`: signed chat moves overlays; every bad input is
//! refused with the right status and changes nothing.

use std::time::{Duration, Instant};

use chatpulse::store::SubscriptionRecord;
use time::OffsetDateTime;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(2);

both_modes! {
async fn a_yes_vote_moves_a_connected_overlay_right_within_one_tick() {
    let app = TestApp::builder().start().await;
    let s = app.add_streamer().await;
    let mut overlay = app.connect(&s.streamer.overlay_id).await;
    assert_eq!(overlay.next_frame(WAIT).await, Some(Frame { value: 0.0, status: "active" }));

    let sent = Instant::now();
    assert_eq!(app.chat(&s.streamer.twitch_user_id, "1001", "yes").await, 204);
    let frame = overlay.wait_for(WAIT, |f| f.value > 0.0).await.expect("a frame above 0");
    let latency = sent.elapsed();

    assert!(frame.value > 9.0 && frame.value <= 10.0, "{frame:?}");
    // One tick is 50 ms; allow scheduling noise on a loaded 2-core machine.
    assert!(latency < Duration::from_millis(250), "took {latency:?}");
}
}

both_modes! {
async fn a_no_vote_moves_it_left() {
    let app = TestApp::builder().start().await;
    let s = app.add_streamer().await;
    let mut overlay = app.connect(&s.streamer.overlay_id).await;
    overlay.next_frame(WAIT).await;

    assert_eq!(app.chat(&s.streamer.twitch_user_id, "1002", "  NO ").await, 204);
    let frame = overlay.wait_for(WAIT, |f| f.value < 0.0).await.expect("a frame below 0");
    assert!(frame.value < -9.0 && frame.value >= -10.0, "{frame:?}");
}
}

both_modes! {
async fn the_value_decays_toward_zero_at_the_configured_speed() {
    let app = TestApp::builder().start().await;
    let k = 2.0;
    let s = app.add_streamer_with(&config("yes", "no", "L", "R", k)).await;
    let mut overlay = app.connect(&s.streamer.overlay_id).await;
    overlay.next_frame(WAIT).await;

    let sent = Instant::now();
    app.chat(&s.streamer.twitch_user_id, "1003", "yes").await;
    // Frames are trajectories: the value at the server time `at` and the
    // decay the client applies from then on. A few arrive: the vote's, then
    // a keyframe with each glide read.
    let mut frames = vec![];
    while let Some(left) = Duration::from_millis(2200).checked_sub(sent.elapsed()) {
        if let Some(f) = overlay.next_with("at", left).await {
            frames.push((sent.elapsed().as_secs_f64(), f));
        }
    }

    assert!((2..=4).contains(&frames.len()), "the vote's frame and a keyframe a second: {frames:?}");
    let at0 = frames[0].1["at"].as_i64().unwrap();
    for (t, f) in &frames {
        assert_eq!(f["decay"], k, "{f}");
        // The value at `at`: 10 decayed for the time since the vote's frame,
        // which came at most 0.2 s after the vote.
        let since = (f["at"].as_i64().unwrap() - at0) as f64 / 1000.0;
        let v = f["value"].as_f64().unwrap();
        let lowest = 10.0 * (-k * (since + 0.2)).exp() - 0.006;
        let highest = 10.0 * (-k * since).exp() + 0.006;
        assert!((lowest..=highest).contains(&v), "at {t:.3}s value {v} outside [{lowest:.3}, {highest:.3}]: {f}");
    }
    // Keyframes go with the glide read (one a second, spread over the ticks):
    // the first half a second or more after the vote's frame, then a second apart.
    for (n, pair) in frames.windows(2).enumerate() {
        let (a, b) = (pair[0].1["at"].as_i64().unwrap(), pair[1].1["at"].as_i64().unwrap());
        let least = if n == 0 { 500 } else { 950 };
        assert!(b - a >= least, "at most one keyframe a second: {frames:?}");
    }
    // What a client draws 1.2 s after the vote, from its last frame then.
    let (_, last) = frames.iter().rev().find(|(t, _)| *t <= 1.2).unwrap();
    let drawn = last["value"].as_f64().unwrap()
        * (-k * (1.2 - (last["at"].as_i64().unwrap() - at0) as f64 / 1000.0)).exp();
    assert!(drawn < 1.5, "after a second at k=2 the bar is near the centre: {drawn}");
}
}

both_modes! {
async fn one_chatter_counts_once_per_second_but_different_chatters_add_up() {
    let app = TestApp::builder().start().await;
    let s = app.add_streamer().await;
    let b = &s.streamer.twitch_user_id;
    let mut overlay = app.connect(&s.streamer.overlay_id).await;
    overlay.next_frame(WAIT).await;

    assert_eq!(app.chat(b, "2001", "yes").await, 204);
    assert_eq!(app.chat(b, "2001", "yes").await, 204);
    assert_eq!(app.chat(b, "2002", "yes").await, 204);

    let frame = overlay.wait_for(WAIT, |f| f.value > 15.0).await.expect("two votes counted");
    assert!(frame.value <= 20.0);
    assert_eq!(app.votes("applied").await, 2.0);
    assert_eq!(app.votes("debounced").await, 1.0);
}
}

both_modes! {
async fn the_token_bucket_caps_votes_per_session() {
    // Three tokens, refilled too slowly to matter during the test.
    let app = TestApp::builder()
        .configure(|c| {
            c.vote_rate_limit_capacity = 3;
            c.vote_rate_limit_rate = 1.0;
        })
        .start()
        .await;
    let s = app.add_streamer().await;
    let mut overlay = app.connect(&s.streamer.overlay_id).await;
    overlay.next_frame(WAIT).await;

    for chatter in 3001..3006 {
        assert_eq!(app.chat(&s.streamer.twitch_user_id, &chatter.to_string(), "yes").await, 204);
    }

    let frame = overlay.wait_for(WAIT, |f| f.value > 25.0).await.expect("three votes counted");
    assert!(frame.value <= 30.0, "{frame:?}");
    assert_eq!(app.votes("applied").await, 3.0);
    assert_eq!(app.votes("rate_limited").await, 2.0);
}
}

both_modes! {
async fn a_redelivered_message_is_acknowledged_but_not_applied_again() {
    let app = TestApp::builder().start().await;
    let s = app.add_streamer().await;
    let mut overlay = app.connect(&s.streamer.overlay_id).await;
    overlay.next_frame(WAIT).await;
    let delivery = Delivery::chat(s.streamer.twitch_user_id.as_str(), "4001", "yes");
    let mut again = delivery.clone();
    // A redelivery has the same message id (and, here, another chatter, so
    // only de-duplication can stop it).
    again.body = chat_body(s.streamer.twitch_user_id.as_str(), "4002", "yes", None).into_bytes();

    assert_eq!(app.deliver(&delivery).await.status(), 204);
    assert_eq!(app.deliver(&again).await.status(), 204);

    overlay.wait_for(WAIT, |f| f.value > 9.0).await.expect("first delivery applied");
    // Only keyframes of the same decay follow (one a glide read, within
    // 1.5 s of the vote's frame): never a second vote's 20.
    let later = overlay.next_frame(Duration::from_secs(3)).await.expect("a keyframe");
    assert!(later.value < 10.0, "{later:?}");
    assert_eq!(app.votes("applied").await, 1.0);
    assert_eq!(app.votes("duplicate").await, 1.0);
}
}

both_modes! {
async fn unmatched_relayed_and_bot_messages_do_not_vote() {
    let app = TestApp::builder().configure(|c| c.bot_user_id = Some("99887766".into())).start().await;
    let s = app.add_streamer().await;
    let b = s.streamer.twitch_user_id.as_str();
    let mut overlay = app.connect(&s.streamer.overlay_id).await;
    overlay.next_frame(WAIT).await;

    let relayed = Delivery::notification("channel.chat.message", chat_body(b, "5001", "yes", Some("11112222")));
    let own_channel = Delivery::notification("channel.chat.message", chat_body(b, "5002", "yes", Some(b)));
    assert_eq!(app.deliver(&relayed).await.status(), 204);
    assert_eq!(app.chat(&s.streamer.twitch_user_id, "99887766", "yes").await, 204);
    assert_eq!(app.chat(&s.streamer.twitch_user_id, "5003", "yes please").await, 204);
    assert_eq!(app.votes("ignored").await, 2.0);
    assert_eq!(app.votes("no_match").await, 1.0);
    assert_eq!(app.votes("applied").await, 0.0);

    // A Shared Chat message sent in the streamer's own channel does count.
    assert_eq!(app.deliver(&own_channel).await.status(), 204);
    assert!(overlay.wait_for(WAIT, |f| f.value > 0.0).await.is_some());
    assert_eq!(app.votes("applied").await, 1.0);
}
}

both_modes! {
async fn chat_for_a_channel_without_an_open_overlay_is_acknowledged_and_dropped() {
    let app = TestApp::builder().start().await;
    let s = app.add_streamer().await;
    assert_eq!(app.chat(&s.streamer.twitch_user_id, "6001", "yes").await, 204);
    assert_eq!(app.votes("no_session").await, 1.0);
}
}

/// Every bad delivery, with the status it must get.
fn bad_deliveries(broadcaster: &str) -> Vec<(&'static str, Delivery, u16)> {
    let good = || Delivery::chat(broadcaster, "7001", "yes");
    let mut cases = vec![];
    for header in [
        "Twitch-Eventsub-Message-Id",
        "Twitch-Eventsub-Message-Timestamp",
        "Twitch-Eventsub-Message-Signature",
        "Twitch-Eventsub-Message-Type",
    ] {
        let mut d = good();
        d.omit.push(header);
        cases.push((header, d, 400));
    }
    let mut d = good();
    d.secret = "some-other-secret-value".into();
    cases.push(("wrong secret", d, 403));
    let mut d = good();
    d.signature = Some(d.signature_header().replace("sha256=", ""));
    cases.push(("no sha256= prefix", d, 403));
    let mut d = good();
    d.signature = Some("sha256=not-hex".into());
    cases.push(("undecodable signature", d, 403));
    let mut d = good();
    let tampered = String::from_utf8(d.body.clone()).unwrap().replace("\"yes\"", "\"no\"");
    d.signature = Some(d.signature_header());
    d.body = tampered.into_bytes();
    cases.push(("body changed after signing", d, 403));
    let mut d = good();
    d.timestamp = timestamp(OffsetDateTime::now_utc() - time::Duration::minutes(11));
    cases.push(("older than 10 minutes", d, 403));
    let mut d = good();
    d.timestamp = timestamp(OffsetDateTime::now_utc() + time::Duration::minutes(5));
    cases.push(("from the future", d, 403));
    let mut d = good();
    d.timestamp = "last tuesday".into();
    cases.push(("unparseable timestamp", d, 400));
    cases.push(("malformed JSON", Delivery::notification("channel.chat.message", "{\"subscription\":".into()), 400));
    cases.push((
        "event without its fields",
        Delivery::notification(
            "channel.chat.message",
            r#"{"subscription":{"id":"x","status":"enabled","type":"channel.chat.message","version":"1"},"event":{}}"#
                .into(),
        ),
        400,
    ));
    let mut d = good();
    d.subscription_type = None;
    cases.push(("notification without subscription type", d, 400));
    // The header is not signed: a captured chat delivery relabelled as a
    // stream going live or offline must not reset the bar or its status.
    for relabelled in ["stream.online", "stream.offline"] {
        let mut d = good();
        d.subscription_type = Some(relabelled.into());
        cases.push(("chat body under a stream header", d, 400));
    }
    let follow = chat_body(broadcaster, "7003", "yes", None).replacen("channel.chat.message", "channel.follow", 1);
    cases.push((
        "another type's body under the chat header",
        Delivery::notification("channel.chat.message", follow),
        400,
    ));
    let padding = " ".repeat(70 * 1024);
    let body = chat_body(broadcaster, "7002", "yes", None).replacen('{', &format!("{{{padding}"), 1);
    cases.push(("body over 64 KiB", Delivery::notification("channel.chat.message", body), 413));
    cases
}

both_modes! {
async fn bad_deliveries_are_rejected_and_change_nothing() {
    let app = TestApp::builder().start().await;
    let s = app.add_streamer().await;
    let mut overlay = app.connect(&s.streamer.overlay_id).await;
    overlay.next_frame(WAIT).await;

    for (what, delivery, status) in bad_deliveries(s.streamer.twitch_user_id.as_str()) {
        let response = app.deliver(&delivery).await;
        assert_eq!(response.status().as_u16(), status, "{what}");
    }

    assert_eq!(overlay.next_frame(Duration::from_millis(300)).await, None, "no frame: the value never moved");
    for outcome in ["applied", "duplicate", "debounced", "rate_limited", "no_session", "no_match"] {
        assert_eq!(app.votes(outcome).await, 0.0, "{outcome}");
    }
    // Nothing was recorded either: the same (valid) vote still counts once.
    assert_eq!(app.chat(&s.streamer.twitch_user_id, "7001", "yes").await, 204);
    assert_eq!(app.votes("applied").await, 1.0);
}
}

fn verification(body: serde_json::Value, subscription_type: Option<&str>) -> Delivery {
    let mut d = Delivery::notification("unused", body.to_string()).of_type("webhook_callback_verification");
    d.subscription_type = subscription_type.map(str::to_owned);
    d
}

both_modes! {
async fn a_subscription_challenge_is_answered_with_the_raw_challenge() {
    let app = TestApp::builder().start().await;
    let body = serde_json::json!({
        "challenge": "pp-challenge-7f3a9c1e",
        "subscription": {"id": "s1", "status": "webhook_callback_verification_pending", "type": "stream.online",
            "version": "1", "condition": {"broadcaster_user_id": "41245072"},
            "transport": {"method": "webhook", "callback": "https://chatpulse.example/webhooks/eventsub"},
            "created_at": "2026-03-14T18:54:59.912345678Z", "cost": 0}
    });

    let response = app.deliver(&verification(body, Some("stream.online"))).await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/plain");
    assert_eq!(response.headers()["content-length"], "21");
    assert_eq!(response.text().await.unwrap(), "pp-challenge-7f3a9c1e");
}
}

both_modes! {
async fn a_conduit_shard_challenge_is_answered_without_subscription_headers() {
    let app = TestApp::builder().start().await;
    let body = serde_json::json!({
        "challenge": "3b9d0e6f-1a2c-47e8-b5f4-7c0a9d2e61f3",
        "conduit_shard": {"conduit_id": "e3a1c9d2-58b4-4f0e-a7c6-2d9f81b0c4aa", "shard": "0"}
    });
    let mut d = verification(body, None);
    d.omit.push("Twitch-Eventsub-Subscription-Version");

    let response = app.deliver(&d).await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "3b9d0e6f-1a2c-47e8-b5f4-7c0a9d2e61f3");
}
}

both_modes! {
async fn challenges_for_types_we_do_not_use_or_badly_signed_are_refused() {
    let app = TestApp::builder().start().await;
    let foreign = serde_json::json!({
        "challenge": "nope",
        "subscription": {"id": "s2", "status": "webhook_callback_verification_pending", "type": "channel.follow",
            "version": "2", "condition": {}}
    });
    assert_eq!(app.deliver(&verification(foreign, Some("channel.follow"))).await.status(), 400);

    let ours = serde_json::json!({"challenge": "c", "conduit_shard": {"conduit_id": "c1", "shard": "0"}});
    let mut forged = verification(ours, None);
    forged.secret = "attacker-guess-secret".into();
    let response = app.deliver(&forged).await;
    assert_eq!(response.status(), 403);
    assert_ne!(response.text().await.unwrap(), "c");
}
}

both_modes! {
async fn a_revocation_is_acknowledged_and_recorded() {
    let app = TestApp::builder().start().await;
    let s = app.add_streamer().await;
    let record = SubscriptionRecord {
        streamer: Some(s.streamer.id),
        broadcaster: Some(s.streamer.twitch_user_id.clone()),
        subscription_type: "channel.chat.message".into(),
        subscription_id: uuid::Uuid::new_v4().to_string(),
        conduit_id: Some("e3a1c9d2-58b4-4f0e-a7c6-2d9f81b0c4aa".into()),
        status: "enabled".into(),
        created_at: OffsetDateTime::now_utc(),
    };
    app.repo.upsert_subscription(&record).await.unwrap();
    let body = serde_json::json!({"subscription": {
        "id": record.subscription_id, "status": "authorization_revoked", "type": "channel.chat.message",
        "version": "1", "condition": {"broadcaster_user_id": s.streamer.twitch_user_id.as_str(), "user_id": "99887766"},
        "transport": {"method": "conduit", "conduit_id": "e3a1c9d2-58b4-4f0e-a7c6-2d9f81b0c4aa"},
        "created_at": "2026-03-14T18:59:42.117290301Z", "cost": 0}});
    let d = Delivery::notification("channel.chat.message", body.to_string()).of_type("revocation");

    assert_eq!(app.deliver(&d).await.status(), 204);

    let stored = app.repo.subscriptions().await.unwrap();
    let ours: Vec<_> = stored.iter().filter(|r| r.subscription_id == record.subscription_id).collect();
    assert_eq!(ours.len(), 1);
    assert_eq!(ours[0].status, "authorization_revoked");
}
}

both_modes! {
async fn the_webhook_is_never_rate_limited_per_address() {
    let app = TestApp::builder().configure(|c| {
        c.connection_rate_per_ip = std::num::NonZeroU32::new(1).unwrap();
        c.connection_rate_burst = std::num::NonZeroU32::new(1).unwrap();
    }).start()
    .await;
    let s = app.add_streamer().await;
    let mut statuses = std::collections::BTreeMap::new();
    for chatter in 0..300 {
        let status = app.chat(&s.streamer.twitch_user_id, &(8000 + chatter).to_string(), "yes").await;
        *statuses.entry(status).or_insert(0) += 1;
    }
    assert_eq!(statuses, std::collections::BTreeMap::from([(204, 300)]));
}
}
