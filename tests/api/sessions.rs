//! The session lifecycle (src/app/sessions.rs): the first overlay of a
//! session activates it; when the last one leaves, the session stays for a
//! grace period (an OBS scene that reloads keeps its bar), then it is
//! deactivated and removed from the live store.

use std::time::Duration;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(3);
const GRACE: Duration = Duration::from_millis(600);

/// Waits until the service has seen every overlay connection go.
async fn wait_until_no_overlay_is_connected(app: &TestApp) {
    let gone = eventually(WAIT, || async { app.metric("chatpulse_websocket_clients").await == 0.0 }).await;
    assert!(gone, "the service still counts an open overlay");
}

both_modes! {
async fn a_session_outlives_its_last_overlay_by_the_grace_period_and_then_ends() {
    let app = TestApp::builder().configure(|c| c.tuning.session_grace = GRACE).start().await;
    // A slow decay, so a kept value is far from the centre.
    let s = app.add_streamer_with(&config("yes", "no", "No", "Yes", 0.1)).await;
    let (overlay, channel) = (s.streamer.overlay_id, s.streamer.twitch_user_id.clone());
    let mut first = app.connect(&overlay).await;
    first.next_frame(WAIT).await.expect("initial frame");
    assert_eq!(app.chat(&channel, "1", "yes").await, 204);
    first.wait_for(WAIT, |f| f.value > 9.0).await.expect("the vote moved the bar");

    // The only overlay leaves and comes back within the grace period: the
    // bar is where it was.
    first.close().await;
    wait_until_no_overlay_is_connected(&app).await;
    let mut second = app.connect(&overlay).await;
    let kept = second.next_frame(WAIT).await.expect("initial frame");
    assert!(kept.value > 8.0, "the bar kept its value: {kept:?}");

    // It leaves again: within the grace period votes still count...
    second.close().await;
    wait_until_no_overlay_is_connected(&app).await;
    assert_eq!(app.chat(&channel, "2", "yes").await, 204);
    assert_eq!(app.votes("applied").await, 2.0, "the session is still active during the grace period");

    // ...after it, the session is deactivated: votes find no session and the
    // live store no longer has it.
    let ended = eventually(GRACE * 5, || async { app.metric("chatpulse_sessions_active").await == 0.0 }).await;
    assert!(ended, "the session was deactivated after the grace period");
    assert_eq!(app.chat(&channel, "3", "yes").await, 204);
    assert_eq!(app.votes("no_session").await, 1.0);
    assert_eq!(app.votes("applied").await, 2.0, "nothing applied after the session ended");
    if let Some((_, redis)) = deployment() {
        assert_eq!(redis_cli(&redis, &["EXISTS", &format!("session:{{{overlay}}}")]).await, "0", "session removed");
        assert_eq!(redis_cli(&redis, &["EXISTS", &format!("broadcaster:{channel}")]).await, "0", "channel unmapped");
    }
    // The next overlay starts a new session from the centre.
    let mut third = app.connect(&overlay).await;
    assert_eq!(third.next_frame(WAIT).await.expect("initial frame").value, 0.0, "a fresh session");
    assert_eq!(app.chat(&channel, "4", "yes").await, 204);
    assert_eq!(app.votes("applied").await, 3.0, "votes count again");
}
}
