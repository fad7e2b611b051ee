//! Graceful shutdown: readiness turns false, every overlay gets 1001, the
//! server stops within SHUTDOWN_TIMEOUT.

use std::time::Duration;

use crate::helpers::*;

both_modes! {
async fn shutdown_sends_1001_to_every_client_and_stops() {
    let mut app = spawn_app().await;
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
async fn readiness_reports_each_store() {
    let app = spawn_app().await;
    let body: serde_json::Value =
        app.http.get(format!("{}/health/ready", app.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["ready"], true);
    assert_eq!(body["checks"]["durable_store"]["ok"], true);
    assert_eq!(body["checks"]["live_store"]["ok"], true);
    assert_eq!(body["checks"]["signals"]["ok"], true);
    let live = app.http.get(format!("{}/health/live", app.base)).send().await.unwrap();
    assert_eq!(live.status(), 200);
}
}
