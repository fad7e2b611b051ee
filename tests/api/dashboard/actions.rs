//! The dashboard's actions on the overlay — reset and rotating its URL —
//! need the CSRF token, act only on the streamer's own overlay, and reach
//! overlays held open on any instance.

use std::time::Duration;

use chatpulse::domain::OverlayId;

use super::WAIT;
use crate::helpers::*;

both_modes! {
async fn without_the_csrf_token_nothing_changes() {
    let app = TestApp::builder().demo().start().await;
    let login = unique_login();
    let LoggedIn { client, overlay, .. } = app.log_in(&login).await;
    let streamer = app.streamer_by_login(&login).await;
    // The bar is off the centre, so a reset that was wrongly accepted would show.
    let mut ws = app.connect(&overlay).await;
    ws.next_frame(WAIT).await.expect("initial frame");
    assert_eq!(app.chat(&streamer.twitch_user_id, "1", "yes").await, 204);
    ws.wait_for(WAIT, |f| f.value > 9.0).await.expect("moved");
    let config = [("for_trigger", "a"), ("against_trigger", "b"), ("left_label", "L"), ("right_label", "R"), ("decay_speed", "1")];
    let post = |path: &str| client.post(format!("{}{path}", app.base));

    let missing = post("/dashboard/config").form(&config).send().await.unwrap();
    assert_eq!(missing.status(), 403, "config without a token");
    let mut wrong = config.to_vec();
    wrong.push(("csrf_token", "0000"));
    assert_eq!(post("/dashboard/config").form(&wrong).send().await.unwrap().status(), 403, "config with a wrong token");
    assert_eq!(post("/api/rotate-overlay-uuid").send().await.unwrap().status(), 403, "rotate without a token");
    let rotate = post("/api/rotate-overlay-uuid").header("X-CSRF-Token", "wrong").send().await.unwrap();
    assert_eq!(rotate.status(), 403, "rotate with a wrong header token");
    let reset = post(&format!("/api/reset/{overlay}")).header("X-CSRF-Token", "bad").send().await.unwrap();
    assert_eq!(reset.status(), 403, "reset with a wrong header token");
    let reset = post(&format!("/api/reset/{overlay}")).form(&[("csrf_token", "bad")]).send().await.unwrap();
    assert_eq!(reset.status(), 403, "reset with a wrong form token");
    let logout = post("/auth/logout").form(&[("other", "field")]).send().await.unwrap();
    assert_eq!(logout.status(), 403, "logout without a token");

    let setup = app.repo.overlay_setup(overlay).await.unwrap().expect("same overlay URL");
    assert_eq!(setup.config.version, 1, "config unchanged");
    let mut fresh = app.connect(&overlay).await;
    let now = fresh.next_frame(WAIT).await.expect("initial frame");
    assert!(now.value > 1.0, "the bar was not reset: {now:?}");
    let still = client.get(format!("{}/dashboard", app.base)).send().await.unwrap();
    assert!(still.url().path().ends_with("/dashboard"), "still logged in");
}
}

both_modes! {
async fn reset_centres_the_bar_and_rotation_kills_the_old_url() {
    let app = TestApp::builder().demo().start().await;
    let login = unique_login();
    let LoggedIn { client, csrf: token, overlay: old, .. } = app.log_in(&login).await;
    let streamer = app.streamer_by_login(&login).await;
    let mut ws = app.connect(&old).await;
    ws.next_frame(WAIT).await;
    app.chat(&streamer.twitch_user_id, "1", "yes").await;
    ws.wait_for(WAIT, |f| f.value > 9.0).await.expect("moved");

    let reset = client.post(format!("{}/api/reset/{old}", app.base)).header("X-CSRF-Token", &token).send().await.unwrap();
    assert_eq!(reset.status(), 204);
    ws.wait_for(WAIT, |f| f.value == 0.0).await.expect("centred");
    // Someone else's overlay cannot be reset.
    let other = app.add_streamer().await;
    let foreign = client
        .post(format!("{}/api/reset/{}", app.base, other.streamer.overlay_id))
        .header("X-CSRF-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);

    let rotated = client.post(format!("{}/api/rotate-overlay-uuid", app.base)).header("X-CSRF-Token", &token).send().await.unwrap();
    assert_eq!(rotated.status(), 200);
    let body: serde_json::Value = rotated.json().await.unwrap();
    let new: OverlayId = body["overlay_url"].as_str().unwrap().rsplit('/').next().unwrap().parse().unwrap();
    assert_ne!(new, old);
    let close = ws.wait_for_close(WAIT).await.expect("old overlay closed").expect("close frame");
    assert_eq!(u16::from(close.code), 4404);
    assert_eq!(app.http.get(format!("{}/overlay/{old}", app.base)).send().await.unwrap().status(), 404);
    assert_eq!(app.http.get(format!("{}/overlay/{new}", app.base)).send().await.unwrap().status(), 200);
    assert!(app.try_connect(&old).await.is_err());
    let mut fresh = app.connect(&new).await;
    assert!(fresh.next_frame(WAIT).await.is_some());
}
}

/// Two instances of one deployment: what a streamer does on the dashboard
/// of instance 1 reaches the overlay held open on instance 2.
#[tokio::test]
async fn dashboard_actions_on_one_instance_reach_overlays_on_another() {
    let Some((db, redis)) = distributed_urls().await else { return eprintln!("SKIPPED: distributed URLs unset") };
    let leader_key = format!("cleanup:leader:{}", uuid::Uuid::new_v4());
    let instance = || TestApp::builder().distributed(&db, &redis).leader_key(&leader_key);
    let one = instance().demo().start().await;
    let two = instance().configure(|c| c.public_url = one.base.clone()).start().await;
    let login = unique_login();
    let LoggedIn { client, csrf: token, overlay: old, .. } = one.log_in(&login).await;
    let streamer = one.streamer_by_login(&login).await;
    let mut overlay = two.connect(&old).await;
    overlay.next_frame(WAIT).await.expect("initial frame");

    // Saving the settings on instance 1: instance 2's overlay shows the new
    // labels within a second.
    let config = [
        ("csrf_token", token.as_str()),
        ("for_trigger", "pizza"),
        ("against_trigger", "pasta"),
        ("left_label", "Team Pasta"),
        ("right_label", "Team Pizza"),
        ("decay_speed", "0.2"),
    ];
    let saved = client.post(format!("{}/dashboard/config", one.base)).form(&config).send().await.unwrap();
    assert!(saved.url().query().unwrap_or("").contains("saved"), "saved: {}", saved.status());
    let frame = overlay.next_with("left_label", Duration::from_secs(1)).await.expect("labels within a second");
    assert_eq!((frame["left_label"].as_str(), frame["right_label"].as_str()), (Some("Team Pasta"), Some("Team Pizza")));

    // Resetting on instance 1 centres the bar on instance 2.
    assert_eq!(two.chat(&streamer.twitch_user_id, "1", "pizza").await, 204, "the new word counts");
    overlay.wait_for(WAIT, |f| f.value > 9.0).await.expect("moved");
    let reset = client.post(format!("{}/api/reset/{old}", one.base)).header("X-CSRF-Token", &token).send().await;
    assert_eq!(reset.unwrap().status(), 204);
    overlay.wait_for(WAIT, |f| f.value == 0.0).await.expect("centred on instance 2");

    // Rotating on instance 1 closes instance 2's overlay; the old page is
    // gone on both.
    let rotate = client.post(format!("{}/api/rotate-overlay-uuid", one.base)).header("X-CSRF-Token", &token);
    assert_eq!(rotate.send().await.unwrap().status(), 200);
    let close = overlay.wait_for_close(WAIT).await.expect("instance 2 closed the overlay").expect("a close frame");
    assert_eq!(u16::from(close.code), 4404);
    for app in [&one, &two] {
        let page = app.http.get(format!("{}/overlay/{old}", app.base)).send().await.unwrap();
        assert_eq!(page.status(), 404, "the old overlay page on {}", app.base);
        assert!(app.try_connect(&old).await.is_err(), "the old overlay socket on {}", app.base);
    }
}
