//! The settings form: a save reaches open overlays at once, invalid input
//! is explained next to its field and kept, and a save while PostgreSQL is
//! down changes nothing and says so.

use std::time::Duration;

use super::WAIT;
use crate::helpers::*;

both_modes! {
async fn saving_the_config_bumps_the_version_and_updates_open_overlays() {
    let app = TestApp::builder().demo().start().await;
    let LoggedIn { client, csrf, overlay, .. } = app.log_in(&unique_login()).await;
    let mut ws = app.connect(&overlay).await;
    ws.next_frame(WAIT).await.expect("initial frame");

    let saved = client
        .post(format!("{}/dashboard/config", app.base))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("for_trigger", "pizza"),
            ("against_trigger", "pasta"),
            ("left_label", "Team <Pasta>"),
            ("right_label", "Team Pizza"),
            ("decay_speed", "1.5"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), 200);
    assert!(saved.url().query().unwrap_or("").contains("saved"));
    let page = saved.text().await.unwrap();
    assert!(page.contains("Team &#60;Pasta&#62;") || page.contains("Team &lt;Pasta&gt;"), "escaped");

    // The open overlay gets the new labels within a second, without a reload.
    let frame = ws.next_with("left_label", Duration::from_secs(1)).await.expect("labels within a second");
    assert_eq!(frame["left_label"], "Team <Pasta>");
    assert_eq!(frame["right_label"], "Team Pizza");
    let setup = app.repo.overlay_setup(overlay).await.unwrap().unwrap();
    assert_eq!(setup.config.version, 2);
    assert_eq!(setup.config.config.for_trigger.as_str(), "pizza");
}
}

both_modes! {
async fn invalid_settings_are_explained_kept_in_the_form_and_not_saved() {
    let app = TestApp::builder().demo().start().await;
    let LoggedIn { client, csrf: token, overlay, .. } = app.log_in(&unique_login()).await;
    let long = "x".repeat(51);
    type Case<'a> = (&'a str, [(&'a str, &'a str); 5], &'a str);
    let cases: Vec<Case> = vec![
        ("empty word", [("for_trigger", ""), ("against_trigger", "no"), ("left_label", "L"), ("right_label", "R"), ("decay_speed", "0.5")], "for_trigger-error"),
        ("too long", [("for_trigger", "yes"), ("against_trigger", &long), ("left_label", "L"), ("right_label", "R"), ("decay_speed", "0.5")], "against_trigger-error"),
        ("whitespace label", [("for_trigger", "yes"), ("against_trigger", "no"), ("left_label", "   "), ("right_label", "R"), ("decay_speed", "0.5")], "left_label-error"),
        ("same words", [("for_trigger", "Yes"), ("against_trigger", "yES"), ("left_label", "L"), ("right_label", "R"), ("decay_speed", "0.5")], "against_trigger-error"),
        ("decay too high", [("for_trigger", "yes"), ("against_trigger", "no"), ("left_label", "L"), ("right_label", "R"), ("decay_speed", "2.5")], "decay_speed-error"),
        ("decay not a number", [("for_trigger", "yes"), ("against_trigger", "no"), ("left_label", "L"), ("right_label", "R"), ("decay_speed", "fast")], "decay_speed-error"),
        ("whitespace word", [("for_trigger", "   "), ("against_trigger", "no"), ("left_label", "L"), ("right_label", "R"), ("decay_speed", "0.5")], "for_trigger-error"),
        ("decay too low", [("for_trigger", "yes"), ("against_trigger", "no"), ("left_label", "L"), ("right_label", "R"), ("decay_speed", "0.05")], "decay_speed-error"),
        ("decay zero", [("for_trigger", "yes"), ("against_trigger", "no"), ("left_label", "L"), ("right_label", "R"), ("decay_speed", "0")], "decay_speed-error"),
        ("decay negative", [("for_trigger", "yes"), ("against_trigger", "no"), ("left_label", "L"), ("right_label", "R"), ("decay_speed", "-1")], "decay_speed-error"),
    ];
    for (what, fields, error_id) in cases {
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        form.push(("csrf_token", &token));
        let response = client.post(format!("{}/dashboard/config", app.base)).form(&form).send().await.unwrap();
        assert_eq!(response.status(), 422, "{what}");
        let page = response.text().await.unwrap();
        assert!(page.contains(&format!("id=\"{error_id}\"")), "{what}: error shown next to the field");
        for (_, value) in fields.iter().filter(|(_, v)| v.len() < 40) {
            assert!(page.contains(&format!("value=\"{value}\"")), "{what}: typed value {value} kept");
        }
    }
    let huge = "x".repeat(20 * 1024);
    let oversized = client
        .post(format!("{}/dashboard/config", app.base))
        .form(&[("csrf_token", token.as_str()), ("for_trigger", &huge)])
        .send()
        .await
        .unwrap();
    assert_eq!(oversized.status(), 413);
    assert_eq!(app.repo.overlay_setup(overlay).await.unwrap().unwrap().config.version, 1, "nothing saved");
}
}

/// PostgreSQL goes away while a streamer saves their settings: they get the
/// form back, as typed, with a message saying nothing was changed, and
/// nothing was written; once PostgreSQL is back the same form saves.
#[tokio::test]
async fn a_save_while_postgres_is_down_gives_the_form_back_and_changes_nothing() {
    let Some((db, redis)) = distributed_urls().await else { return eprintln!("SKIPPED: distributed URLs unset") };
    let proxy = TcpProxy::new("127.0.0.1:5432".parse().unwrap());
    let proxied = db.replacen("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port), 1);
    assert_ne!(proxied, db, "TEST_DATABASE_URL points at 127.0.0.1:5432");
    proxy.start().await;
    let leader_key = format!("cleanup:leader:{}", uuid::Uuid::new_v4());
    let app = TestApp::builder().demo().distributed(&proxied, &redis).leader_key(&leader_key).start().await;
    let LoggedIn { client, csrf, overlay, .. } = app.log_in(&unique_login()).await;
    let mut ws = app.connect(&overlay).await;
    ws.next_frame(WAIT).await.expect("initial frame");
    let before = app.repo.overlay_setup(overlay).await.unwrap().expect("stored");
    let typed = [
        ("csrf_token", csrf),
        ("for_trigger", "pizza".to_owned()),
        ("against_trigger", "pasta".to_owned()),
        ("left_label", "Team Pasta".to_owned()),
        ("right_label", "Team Pizza".to_owned()),
        ("decay_speed", "1.5".to_owned()),
    ];

    proxy.stop();
    let refused = client.post(format!("{}/dashboard/config", app.base)).form(&typed).send().await.unwrap();

    assert_eq!(refused.status(), 503);
    assert!(refused.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let page = refused.text().await.unwrap();
    assert!(page.contains("could not be saved right now") && page.contains("Nothing was changed"), "{page}");
    for (name, value) in &typed[1..] {
        assert!(page.contains(&format!("value=\"{value}\"")), "{name} kept as typed: {page}");
    }
    assert!(page.contains("action=\"/dashboard/config\""), "the form can be sent again");
    assert!(page.contains(&format!("value=\"{}\"", typed[0].1)), "with its CSRF token");

    // Loading the dashboard meanwhile gets a page that says what is wrong,
    // not a bare error text.
    let shown = client.get(format!("{}/dashboard", app.base)).send().await.unwrap();
    assert_eq!(shown.status(), 503);
    assert_eq!(shown.headers()["retry-after"], "30");
    assert!(shown.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let shown = shown.text().await.unwrap();
    assert!(shown.contains("can’t be loaded right now") && shown.contains("Your overlay keeps working"), "{shown}");
    assert!(shown.contains("href=\"/dashboard\""), "with a way to retry: {shown}");

    proxy.start().await;
    let answers = eventually(Duration::from_secs(10), || async { app.repo.overlay_setup(overlay).await.is_ok() }).await;
    assert!(answers, "PostgreSQL answers again");
    let after = app.repo.overlay_setup(overlay).await.unwrap().expect("stored");
    assert_eq!(after.config.version, before.config.version, "nothing written");
    assert_eq!(after.config.config, before.config.config);
    let live = redis_cli(&redis, &["HGET", &format!("session:{{{overlay}}}"), "config"]).await;
    let live: serde_json::Value = serde_json::from_str(&live).unwrap();
    assert_eq!(live["for_trigger"], before.config.config.for_trigger.as_str(), "the live session is unchanged");

    let saved = eventually(Duration::from_secs(10), || async {
        let r = client.post(format!("{}/dashboard/config", app.base)).form(&typed).send().await.unwrap();
        r.url().query().unwrap_or("").contains("saved")
    })
    .await;
    assert!(saved, "the same form saves once PostgreSQL is back");
    let frame = ws.next_with("left_label", Duration::from_secs(1)).await.expect("labels within a second");
    assert_eq!(frame["left_label"], "Team Pasta");
}
