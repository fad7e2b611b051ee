//! "Is it working?": `GET /dashboard/status` (the logged-in streamer only)
//! gives the facts and a diagnosis with the fix, gathered from every
//! instance; the dashboard renders the same words.

use std::time::Duration;

use super::{WAIT, status};
use crate::helpers::*;

/// Polls the status until `pred` holds; the last status either way.
async fn status_until(app: &TestApp, login: &LoggedIn, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while std::time::Instant::now() < deadline {
        last = status(app, login).await;
        if pred(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

both_modes! {
async fn the_status_is_for_the_logged_in_streamer_only() {
    let app = TestApp::builder().demo().start().await;
    let stranger = browser(true).get(format!("{}/dashboard/status", app.base)).send().await.unwrap();
    assert_eq!(stranger.status(), 401);
    let login = app.log_in(&unique_login()).await;
    let st = status(&app, &login).await;
    for field in ["at", "chat", "last_chat_at", "last_vote_at", "overlays", "previews", "votes_last_minute", "stream", "diagnosis", "lines"] {
        assert!(st.get(field).is_some(), "{field} in {st}");
    }
}
}

both_modes! {
async fn each_failure_mode_is_diagnosed_with_its_fix() {
    let app = TestApp::builder().demo().start().await;
    let name = unique_login();
    let login = app.log_in(&name).await;
    let b = app.streamer_by_login(&name).await.twitch_user_id;
    let classic_words = [
        ("csrf_token", login.csrf.as_str()),
        ("for_trigger", "yes, yeah"),
        ("against_trigger", "no"),
        ("match_mode", "exact"),
    ];
    let saved = login.client.post(format!("{}/dashboard/config", app.base)).form(&classic_words).send().await.unwrap();
    assert!(saved.url().query().unwrap_or("").contains("saved"));

    // No overlay open: chat finds no session, and the status says why.
    assert_eq!(app.chat(&b, "1", "yes").await, 204);
    let st = status_until(&app, &login, |s| s["diagnosis"]["code"] == "no_overlay" && s["votes_last_minute"]["no_session"] == 1).await;
    assert_eq!(st["diagnosis"]["code"], "no_overlay", "{st}");
    let message = st["diagnosis"]["message"].as_str().unwrap();
    assert!(message.contains("No overlay is open: votes only count while one is"), "{message}");
    assert!(st["diagnosis"]["fix"].as_str().unwrap().contains("OBS"), "{st}");
    assert_eq!(st["diagnosis"]["problem"], true);
    assert_eq!(st["overlays"], 0);

    // An overlay open; chat arrives but nothing matches the words.
    let mut overlay = app.connect(&login.overlay).await;
    overlay.next_frame(WAIT).await.expect("initial frame");
    for (chatter, text) in [("2", "yes!"), ("3", "hello"), ("4", "no way")] {
        assert_eq!(app.chat(&b, chatter, text).await, 204);
    }
    let st = status_until(&app, &login, |s| s["diagnosis"]["code"] == "no_match").await;
    assert_eq!(st["diagnosis"]["code"], "no_match", "{st}");
    let message = st["diagnosis"]["message"].as_str().unwrap();
    assert!(message.contains("“yes”, “yeah” for and “no” against"), "names the words: {message}");
    assert!(st["diagnosis"]["fix"].as_str().unwrap().contains("anywhere in the message"), "{st}");
    assert_eq!((st["overlays"].as_u64(), st["votes_last_minute"]["no_match"].as_u64()), (Some(1), Some(3)));
    assert!(st["last_chat_at"].is_i64() && st["last_vote_at"].is_null(), "{st}");

    // Votes count: it works.
    assert_eq!(app.chat(&b, "5", "yeah").await, 204);
    let st = status_until(&app, &login, |s| s["diagnosis"]["code"] == "working").await;
    assert_eq!(st["diagnosis"]["code"], "working", "{st}");
    assert_eq!(st["diagnosis"]["problem"], false);
    assert!(st["last_vote_at"].is_i64(), "{st}");
    assert_eq!(st["voters"], 1);
    let lines: Vec<&str> = st["lines"].as_array().unwrap().iter().map(|l| l["label"].as_str().unwrap()).collect();
    assert_eq!(lines, ["Chat", "Last chat seen", "Last chat vote counted", "Overlays", "Last minute", "Stream", "Bar now"]);

    // The dashboard renders the same diagnosis.
    let page = login.client.get(format!("{}/dashboard", app.base)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Working: 1 votes counted in the last minute."), "the page shows the status");
}
}

both_modes! {
async fn a_dashboard_preview_alone_is_told_apart_from_an_overlay_in_obs() {
    let app = TestApp::builder().demo().start().await;
    let name = unique_login();
    let login = app.log_in(&name).await;
    let b = app.streamer_by_login(&name).await.twitch_user_id;
    let url = format!("ws://{}/ws/overlay/{}?preview=1", app.addr, login.overlay);
    let (mut preview, _) = tokio_tungstenite::connect_async(url).await.expect("the preview connects");
    futures_util::StreamExt::next(&mut preview).await.expect("a first frame").unwrap();
    assert_eq!(app.chat(&b, "1", "yes").await, 204);
    let st = status_until(&app, &login, |s| s["diagnosis"]["code"] == "preview_only").await;
    assert_eq!(st["diagnosis"]["code"], "preview_only", "{st}");
    assert_eq!((st["overlays"].as_u64(), st["previews"].as_u64()), (Some(0), Some(1)));
    // The overlay page of the preview says so to its socket.
    let page = app.http.get(format!("{}/overlay/{}?preview", app.base, login.overlay)).send().await.unwrap();
    assert!(page.text().await.unwrap().contains("data-preview=\"1\""));
}
}

/// Two instances: the overlay is open on instance 2, the chat reaches
/// instance 2's webhook, the streamer asks instance 1: it sees both.
#[tokio::test]
async fn the_status_gathers_what_every_instance_sees() {
    let Some((db, redis)) = distributed_urls().await else { return eprintln!("SKIPPED: distributed URLs unset") };
    let leader_key = format!("cleanup:leader:{}", uuid::Uuid::new_v4());
    let instance = || TestApp::builder().distributed(&db, &redis).leader_key(&leader_key);
    let one = instance().demo().start().await;
    let two = instance().configure(|c| c.public_url = one.base.clone()).start().await;
    let name = unique_login();
    let login = one.log_in(&name).await;
    let b = one.streamer_by_login(&name).await.twitch_user_id;
    let mut overlay = two.connect(&login.overlay).await;
    overlay.next_frame(WAIT).await.expect("initial frame");
    for chatter in ["1", "2", "3"] {
        assert_eq!(two.chat(&b, chatter, "maybe").await, 204);
    }
    assert_eq!(two.chat(&b, "4", "yes").await, 204);
    let st = status_until(&one, &login, |s| s["overlays"] == 1 && s["votes_last_minute"]["no_match"] == 3).await;
    assert_eq!((st["overlays"].as_u64(), st["votes_last_minute"]["no_match"].as_u64()), (Some(1), Some(3)), "{st}");
    assert_eq!(st["votes_last_minute"]["applied"], 1);
    assert!(st["last_chat_at"].is_i64() && st["last_vote_at"].is_i64(), "{st}");
    // Closing the overlay on instance 2: instance 1 sees it gone.
    overlay.close().await;
    let st = status_until(&one, &login, |s| s["overlays"] == 0).await;
    assert_eq!(st["overlays"], 0, "{st}");
}
