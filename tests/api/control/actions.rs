//! Test votes go through the real pipeline and move open overlays; bad
//! requests are refused and send nothing; "Refresh overlays" reaches every
//! open overlay, on every instance.

use super::{WAIT, post_form, post_json, status};
use crate::helpers::*;

both_modes! {
async fn test_votes_move_the_open_overlay_through_the_real_pipeline() {
    let app = TestApp::builder().demo().start().await;
    let login = app.log_in(&unique_login()).await;
    let mut overlay = app.connect(&login.overlay).await;
    assert_eq!(overlay.next_frame(WAIT).await.map(|f| f.value), Some(0.0));

    // The form: a redirect back to the dashboard, which says what happened.
    let sent = post_form(&app, &login, "/dashboard/test-votes", &[("side", "for"), ("count", "5")]).await;
    assert_eq!(sent.status(), 200);
    assert!(sent.url().query().unwrap_or("").contains("tested=for"), "{}", sent.url());
    let page = sent.text().await.unwrap();
    assert!(page.contains("5 test votes for sent: 5 counted."), "the banner says what counted");
    let right = overlay.wait_for(WAIT, |f| f.value > 50.0).await.expect("five votes for move the bar right");
    assert!(right.value <= 100.0 * 5.0 / 8.0 + 0.01, "the balance of five votes: {right:?}");
    assert_eq!(app.votes("applied").await, 5.0, "counted like chat");

    // The page's script: JSON.
    let json = post_json(&app, &login, "/dashboard/test-votes", &[("side", "against"), ("count", "50")]).await;
    assert_eq!(json.status(), 200);
    let body: serde_json::Value = json.json().await.unwrap();
    assert_eq!((body["sent"].as_u64(), body["applied"].as_u64(), body["no_session"].as_u64()), (Some(50), Some(50), Some(0)));
    assert!(body["value"].as_f64().unwrap() < 0.0, "{body}");
    overlay.wait_for(WAIT, |f| f.value < -50.0).await.expect("fifty against pull it left");

    // Test votes are not chat: the status has seen no chat, but counted them.
    let st = status(&app, &login).await;
    assert!(st["last_chat_at"].is_null() && st["last_vote_at"].is_null(), "{st}");
    assert_eq!(st["votes_last_minute"]["applied"], 55);
}
}

both_modes! {
async fn bad_test_vote_requests_are_refused_and_send_nothing() {
    let app = TestApp::builder().demo().start().await;
    let login = app.log_in(&unique_login()).await;
    let mut overlay = app.connect(&login.overlay).await;
    overlay.next_frame(WAIT).await.expect("initial frame");

    for (side, count, code) in [("up", "5", "bad_side"), ("", "5", "bad_side"), ("for", "0", "bad_count"), ("for", "51", "bad_count"), ("against", "ten", "bad_count"), ("for", "", "bad_count")] {
        let r = post_json(&app, &login, "/dashboard/test-votes", &[("side", side), ("count", count)]).await;
        assert_eq!(r.status(), 422, "{side:?} {count:?}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["code"], code, "{side:?} {count:?}: {body}");
        let form = post_form(&app, &login, "/dashboard/test-votes", &[("side", side), ("count", count)]).await;
        assert_eq!(form.status(), 422, "the form too: {side:?} {count:?}");
    }
    // Without the session's CSRF token: refused.
    let forged = login
        .client
        .post(format!("{}/dashboard/test-votes", app.base))
        .form(&[("csrf_token", "forged"), ("side", "for"), ("count", "5")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let bare = login.client.post(format!("{}/dashboard/test-votes", app.base)).form(&[("side", "for"), ("count", "5")]);
    assert_eq!(bare.send().await.unwrap().status(), 403);
    // Nobody logged in: refused.
    let stranger = browser(true).post(format!("{}/dashboard/test-votes", app.base)).header("X-CSRF-Token", "x");
    assert_eq!(stranger.form(&[("side", "for"), ("count", "5")]).send().await.unwrap().status(), 403);

    assert_eq!(app.votes("applied").await, 0.0, "nothing was sent");
    assert_eq!(overlay.next_frame(std::time::Duration::from_millis(300)).await, None, "the bar never moved");
}
}

both_modes! {
async fn test_votes_with_no_overlay_open_say_that_votes_only_count_while_one_is() {
    let app = TestApp::builder().demo().start().await;
    let login = app.log_in(&unique_login()).await;
    let sent = post_form(&app, &login, "/dashboard/test-votes", &[("side", "for"), ("count", "3")]).await;
    let page = sent.text().await.unwrap();
    assert!(page.contains("no overlay is open: votes only count while one is"), "the banner explains");
    let json = post_json(&app, &login, "/dashboard/test-votes", &[("side", "for"), ("count", "2")]).await;
    let body: serde_json::Value = json.json().await.unwrap();
    assert_eq!((body["applied"].as_u64(), body["no_session"].as_u64()), (Some(0), Some(2)));
    assert!(body["value"].is_null());
}
}

both_modes! {
async fn refresh_overlays_tells_every_open_overlay_to_reload() {
    let app = TestApp::builder().demo().start().await;
    let login = app.log_in(&unique_login()).await;
    let mut first = app.connect(&login.overlay).await;
    let mut second = app.connect(&login.overlay).await;
    first.next_frame(WAIT).await.expect("initial frame");
    second.next_frame(WAIT).await.expect("initial frame");

    let done = post_form(&app, &login, "/dashboard/reload-overlays", &[]).await;
    assert!(done.url().query().unwrap_or("").contains("reloaded"), "{}", done.url());
    assert!(done.text().await.unwrap().contains("Every open overlay was told to reload its page."));
    for overlay in [&mut first, &mut second] {
        let frame = overlay.next_with("reload", WAIT).await.expect("a reload command");
        assert_eq!(frame["reload"], true);
        assert!(frame["value"].is_number() && frame["status"].is_string(), "still a frame: {frame}");
    }
    let json = login.client.post(format!("{}/dashboard/reload-overlays", app.base)).header("X-CSRF-Token", &login.csrf);
    assert_eq!(json.send().await.unwrap().status(), 204);
    assert!(first.next_with("reload", WAIT).await.is_some());
    let forged = login.client.post(format!("{}/dashboard/reload-overlays", app.base)).form(&[("csrf_token", "no")]);
    assert_eq!(forged.send().await.unwrap().status(), 403);
}
}

/// Two instances of one deployment: test votes and "Refresh overlays" asked
/// on instance 1 reach the overlay held open on instance 2.
#[tokio::test]
async fn test_votes_and_refresh_on_one_instance_reach_overlays_on_another() {
    let Some((db, redis)) = distributed_urls().await else { return eprintln!("SKIPPED: distributed URLs unset") };
    let leader_key = format!("cleanup:leader:{}", uuid::Uuid::new_v4());
    let instance = || TestApp::builder().distributed(&db, &redis).leader_key(&leader_key);
    let one = instance().demo().start().await;
    let two = instance().configure(|c| c.public_url = one.base.clone()).start().await;
    let login = one.log_in(&unique_login()).await;
    let mut overlay = two.connect(&login.overlay).await;
    overlay.next_frame(WAIT).await.expect("initial frame");

    // Instance 1 may remember for a second that the channel had no session
    // (its lookup cache): the first batch may find none.
    let deadline = std::time::Instant::now() + WAIT;
    let body = loop {
        let json = post_json(&one, &login, "/dashboard/test-votes", &[("side", "for"), ("count", "4")]).await;
        let body: serde_json::Value = json.json().await.unwrap();
        if body["applied"] == 4 || std::time::Instant::now() > deadline {
            break body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let shared = body["applied"] == 4;
    assert!(shared, "the session is shared: {body}");
    overlay.wait_for(WAIT, |f| f.value > 50.0).await.expect("instance 2's overlay moved");

    post_form(&one, &login, "/dashboard/reload-overlays", &[]).await;
    let frame = overlay.next_with("reload", WAIT).await.expect("instance 2's overlay was told to reload");
    assert_eq!(frame["reload"], true);
}
