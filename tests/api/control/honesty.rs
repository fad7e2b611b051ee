//! The overlay's own honesty: an open socket answers "are you there?" (so a
//! page can tell a stale socket), a removed streamer's overlay is told it
//! no longer exists (a rotated one that its URL was replaced), and an
//! unknown URL serves a transparent page saying so instead of error text.

use std::time::Duration;

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

use super::WAIT;
use crate::helpers::*;

both_modes! {
async fn an_open_socket_answers_are_you_there_with_its_last_frame() {
    let app = TestApp::builder().start().await;
    // A fast decay, so that the bar is soon at rest.
    let s = app.add_streamer_with(&config("yes", "no", "L", "R", 2.0)).await;
    let mut overlay = app.connect(&s.streamer.overlay_id).await;
    overlay.next_frame(WAIT).await.expect("initial frame");
    assert_eq!(app.chat(&s.streamer.twitch_user_id, "1", "yes").await, 204);
    overlay.wait_for(WAIT, |f| f.value > 9.0).await.expect("moved");
    // Let the bar come to rest: no frames until it is asked.
    overlay.wait_for(Duration::from_secs(10), |f| f.value == 0.0).await.expect("back at the centre");
    assert_eq!(overlay.next_frame(Duration::from_millis(300)).await, None, "a bar at rest sends nothing");
    overlay.ws.send(Message::Text("ping".into())).await.unwrap();
    let answer = overlay.next_frame(WAIT).await.expect("the last frame again");
    assert_eq!(answer, Frame { value: 0.0, status: "active" });
    // Anything else an overlay might send is ignored.
    overlay.ws.send(Message::Text("hello".into())).await.unwrap();
    assert_eq!(overlay.next_frame(Duration::from_millis(300)).await, None);
}
}

both_modes! {
async fn a_removed_streamers_overlay_is_told_it_no_longer_exists_and_a_rotated_one_that_it_was_replaced() {
    let app = TestApp::builder()
        .demo()
        .configure(|c| {
            c.tuning.reconcile_interval = Duration::from_millis(100);
            c.tuning.config_check_interval = Duration::from_millis(100);
        })
        .start()
        .await;
    let removed = app.add_streamer().await;
    let mut overlay = app.connect(&removed.streamer.overlay_id).await;
    overlay.next_frame(WAIT).await.expect("initial frame");
    assert!(app.repo.remove_streamer(&removed.streamer.twitch_user_id).await.unwrap());
    let close = overlay.wait_for_close(WAIT).await.expect("closed").expect("a close frame");
    assert_eq!((u16::from(close.code), close.reason.as_str()), (4404, "overlay no longer exists"));

    let login = app.log_in(&unique_login()).await;
    let mut rotated = app.connect(&login.overlay).await;
    rotated.next_frame(WAIT).await.expect("initial frame");
    let r = login.client.post(format!("{}/api/rotate-overlay-uuid", app.base)).header("X-CSRF-Token", &login.csrf);
    assert_eq!(r.send().await.unwrap().status(), 200);
    let close = rotated.wait_for_close(WAIT).await.expect("closed").expect("a close frame");
    assert_eq!((u16::from(close.code), close.reason.as_str()), (4404, "overlay URL replaced"));
}
}

both_modes! {
async fn an_unknown_overlay_url_serves_a_transparent_page_that_says_so() {
    let app = TestApp::builder().start().await;
    for id in [uuid::Uuid::new_v4().to_string(), "not-an-id".to_owned()] {
        let page = app.http.get(format!("{}/overlay/{id}", app.base)).send().await.unwrap();
        assert_eq!(page.status(), 404, "{id}");
        assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"), "{id}");
        assert_eq!(page.headers()["cache-control"], "no-store");
        let html = page.text().await.unwrap();
        assert!(html.contains("this overlay no longer exists"), "{html}");
        assert!(html.contains("/static/overlay.css") && !html.contains("<script"), "the overlay's own transparent look, no socket");
    }
}
}
