//! Graceful shutdown: readiness turns false (and stays false through the
//! drain period while requests are still served), every overlay gets 1001,
//! the server stops within SHUTDOWN_TIMEOUT.

use std::time::Duration;

use crate::helpers::*;

both_modes! {
async fn shutdown_sends_1001_to_every_client_and_stops() {
    let mut app = TestApp::builder().start().await;
    let a = app.add_streamer().await;
    let b = app.add_streamer().await;
    let ready = app.http.get(format!("{}/health/ready", app.base)).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let mut clients = vec![
        app.connect(&a.streamer.overlay_id).await,
        app.connect(&a.streamer.overlay_id).await,
        app.connect(&b.streamer.overlay_id).await,
    ];
    for c in &mut clients {
        c.next_frame(Duration::from_secs(2)).await.expect("initial frame");
    }

    app.stop().await.expect("clean stop");

    for c in &mut clients {
        let close = c.wait_for_close(Duration::from_secs(2)).await.expect("closed").expect("close frame");
        assert_eq!(u16::from(close.code), 1001);
        assert_eq!(close.reason.as_str(), "server shutting down");
    }
    assert!(app.http.get(format!("{}/health/live", app.base)).send().await.is_err(), "no longer listening");
}
}

both_modes! {
async fn readiness_fails_first_and_requests_are_served_until_the_drain_period_ends() {
    let mut app = TestApp::builder().configure(|c| {
        c.tuning.shutdown_drain = Duration::from_millis(800);
        c.shutdown_timeout = Duration::from_secs(5);
    }).start()
    .await;
    let s = app.add_streamer().await;
    let mut overlay = app.connect(&s.streamer.overlay_id).await;
    overlay.next_frame(Duration::from_secs(2)).await.expect("initial frame");
    let started = std::time::Instant::now();

    app.shutdown.cancel();

    let ready = app.http.get(format!("{}/health/ready", app.base)).send().await.unwrap();
    assert_eq!(ready.status(), 503, "the load balancer is told at once");
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["shutting_down"], true);
    // Still serving: votes move the open overlay, the page still loads...
    assert_eq!(app.chat(&s.streamer.twitch_user_id, "1", "yes").await, 204);
    overlay.wait_for(Duration::from_secs(2), |f| f.value > 9.0).await.expect("still served during the drain");
    let page = app.http.get(format!("{}/overlay/{}", app.base, s.streamer.overlay_id)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    // ...but new overlays are sent elsewhere.
    assert!(app.try_connect(&s.streamer.overlay_id).await.is_err(), "no new overlay connections while draining");

    let close = overlay.wait_for_close(Duration::from_secs(4)).await.expect("closed").expect("close frame");
    assert_eq!(u16::from(close.code), 1001);
    assert!(started.elapsed() >= Duration::from_millis(800), "closed after the drain: {:?}", started.elapsed());
    app.stop().await.expect("clean stop");
}
}

both_modes! {
async fn readiness_reports_each_store() {
    let app = TestApp::builder().start().await;
    let body: serde_json::Value =
        app.http.get(format!("{}/health/ready", app.metrics_base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["ready"], true);
    assert_eq!(body["dependencies_ok"], true);
    assert_eq!(body["checks"]["durable_store"]["ok"], true);
    assert_eq!(body["checks"]["live_store"]["ok"], true);
    assert_eq!(body["checks"]["signals"]["ok"], true);
    for dependency in ["durable_store", "live_store", "signals"] {
        let gauge = format!("chatpulse_dependency_up{{dependency=\"{dependency}\"}}");
        assert_eq!(app.metric(&gauge).await, 1.0, "{gauge}");
    }
    let live = app.http.get(format!("{}/health/live", app.base)).send().await.unwrap();
    assert_eq!(live.status(), 200);
}
}
