//! The whole path through the built-in Twitch simulator, as `make run` wires
//! it: the service sets up its conduit and webhook shard (answering the
//! simulator's signed challenge), subscribes the channel when an overlay
//! opens, and the simulator's signed chat deliveries move the bar.

use std::time::Duration;

use chatpulse::domain::OverlayId;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(5);

/// A service with its own in-process simulator, like `make run`.
async fn demo_app() -> TestApp {
    spawn_demo_app_with(|_| {}).await
}

fn demo_overlay(app: &TestApp) -> OverlayId {
    let url = &app.demo.as_ref().expect("the demo is set up").overlay_url;
    url.rsplit('/').next().unwrap().parse().unwrap()
}

async fn demo_broadcaster(app: &TestApp) -> String {
    let overlay = demo_overlay(app);
    let setup = app.repo.overlay_setup(overlay).await.unwrap().expect("demo streamer stored");
    setup.streamer.twitch_user_id.to_string()
}

/// Posts one chat message through the simulator's JSON endpoint (202).
async fn say(app: &TestApp, broadcaster: &str, chatter: &str, text: &str) -> u16 {
    let sim = &app.demo.as_ref().expect("simulator").simulator_url;
    let body = serde_json::json!({ "broadcaster_user_id": broadcaster, "chatter_user_id": chatter, "text": text });
    app.http.post(format!("{sim}/sim/chat")).json(&body).send().await.unwrap().status().as_u16()
}

/// Opens the demo overlay and waits until chat typed in the simulator
/// reaches it (conduit verified, subscription created).
async fn connected(app: &TestApp) -> (OverlayClient, String) {
    let broadcaster = demo_broadcaster(app).await;
    let mut overlay = app.connect(&demo_overlay(app)).await;
    overlay.next_frame(WAIT).await.expect("initial frame");
    let mut n = 0;
    let live = eventually(Duration::from_secs(20), || {
        n += 1;
        let (app, broadcaster) = (&app, &broadcaster);
        let chatter = format!("9000{n}");
        async move {
            say(app, broadcaster, &chatter, "warming up").await;
            app.votes("no_match").await >= 1.0
        }
    })
    .await;
    assert!(live, "chat from the simulator never reached the webhook");
    (overlay, broadcaster)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_typed_in_the_simulator_moves_the_overlay() {
    let app = demo_app().await;
    let (mut overlay, broadcaster) = connected(&app).await;

    assert_eq!(say(&app, &broadcaster, "1001", "yes").await, 202);
    overlay.wait_for(WAIT, |f| f.value > 9.0).await.expect("right after yes");
    assert_eq!(say(&app, &broadcaster, "1002", "NO").await, 202);
    assert_eq!(say(&app, &broadcaster, "1003", "no").await, 202);
    overlay.wait_for(WAIT, |f| f.value < -5.0).await.expect("left after two noes");

    // Every delivery was verified and counted once.
    assert_eq!(app.votes("applied").await, 3.0);
    assert_eq!(
        app.metric("chatpulse_webhook_messages_total{message_type=\"notification\",outcome=\"forbidden\"}").await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulators_deliveries_obey_debounce_and_matching() {
    let app = demo_app().await;
    let (mut overlay, broadcaster) = connected(&app).await;

    say(&app, &broadcaster, "2001", "yes").await;
    say(&app, &broadcaster, "2001", "yes").await;
    say(&app, &broadcaster, "2002", "yes please").await;
    overlay.wait_for(WAIT, |f| f.value > 9.0).await.expect("one vote");
    assert!(eventually(WAIT, || async { app.votes("debounced").await == 1.0 }).await);
    assert_eq!(app.votes("applied").await, 1.0);
    assert!(app.votes("no_match").await >= 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conduit_shard_is_verified_through_our_own_webhook() {
    let app = demo_app().await;
    connected(&app).await;
    assert_eq!(
        app.metric(
            "chatpulse_webhook_messages_total{message_type=\"webhook_callback_verification\",outcome=\"challenge_answered\"}"
        )
        .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_online_and_offline_change_the_frame_status() {
    let app = demo_app().await;
    let (mut overlay, broadcaster) = connected(&app).await;
    say(&app, &broadcaster, "3001", "yes").await;
    overlay.wait_for(WAIT, |f| f.value > 9.0).await.expect("moved");
    let sim = app.demo.as_ref().unwrap().simulator_url.clone();

    let online = app.http.post(format!("{sim}/sim/streams/{broadcaster}/online")).send().await.unwrap();
    assert!(online.status().is_success(), "{}", online.status());
    let live = overlay.wait_for(WAIT, |f| f.status == "live").await.expect("live status");
    assert_eq!(live.value, 0.0, "a broadcast starts from the centre");

    say(&app, &broadcaster, "3002", "no").await;
    overlay.wait_for(WAIT, |f| f.value < -9.0 && f.status == "live").await.expect("votes count while live");
    let offline = app.http.post(format!("{sim}/sim/streams/{broadcaster}/offline")).send().await.unwrap();
    assert!(offline.status().is_success());
    overlay.wait_for(WAIT, |f| f.status == "offline").await.expect("offline status");
    let updated =
        app.metric("chatpulse_webhook_messages_total{message_type=\"notification\",outcome=\"status_updated\"}").await;
    assert_eq!(updated, 2.0);
}

async fn inject(app: &TestApp, fault: &str) {
    let sim = &app.demo.as_ref().unwrap().simulator_url;
    let body = serde_json::json!({ "fault": fault, "count": 1 });
    let response = app.http.post(format!("{sim}/sim/delivery-faults")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_twitch_sends_twice_is_applied_once() {
    let app = demo_app().await;
    let (mut overlay, broadcaster) = connected(&app).await;
    inject(&app, "duplicate").await;

    say(&app, &broadcaster, "4001", "yes").await;

    overlay.wait_for(WAIT, |f| f.value > 9.0).await.expect("applied");
    assert!(eventually(WAIT, || async { app.votes("duplicate").await == 1.0 }).await, "the redelivery was recognised");
    assert_eq!(app.votes("applied").await, 1.0);
    assert_eq!(overlay.next_frame(Duration::from_millis(300)).await.map(|f| f.value > 10.0), Some(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_or_badly_signed_deliveries_from_twitch_are_refused() {
    let app = demo_app().await;
    let (_overlay, broadcaster) = connected(&app).await;
    let forbidden = || async {
        app.metric("chatpulse_webhook_messages_total{message_type=\"notification\",outcome=\"forbidden\"}").await
    };

    inject(&app, "stale").await;
    say(&app, &broadcaster, "5001", "yes").await;
    assert!(eventually(WAIT, || async { forbidden().await >= 1.0 }).await, "a replayed timestamp is refused");
    inject(&app, "bad_signature").await;
    say(&app, &broadcaster, "5002", "no").await;
    assert!(eventually(WAIT, || async { forbidden().await >= 2.0 }).await, "a bad signature is refused");

    assert_eq!(app.votes("applied").await, 0.0, "nothing was applied");
    // Twitch retries a refused delivery (with the same message id); a good
    // message in between still counts.
    say(&app, &broadcaster, "5003", "yes").await;
    assert!(eventually(WAIT, || async { app.votes("applied").await == 1.0 }).await);
}
