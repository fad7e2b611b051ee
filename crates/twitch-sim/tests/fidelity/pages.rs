//! The chat page and the chat generator.

use std::time::Duration;

use serde_json::{Value, json};
use twitch_sim::ChatGenerator;

use crate::harness::*;

#[tokio::test]
async fn the_chat_page_lists_channels_and_its_form_sends_chat() {
    let t = start().await;
    let app = t.app_token().await;
    let receiver = Receiver::start(Challenge::Echo).await;
    let empty = t.http.get(format!("{}/sim/chat", t.base)).send().await.unwrap().text().await.unwrap();
    assert!(empty.contains("No channels yet"));
    let conduit = t.conduit_for(&app, &receiver).await;
    let (streamer, bot) = t.streamer_and_bot();
    t.subscribe(&app, "channel.chat.message", json!({"broadcaster_user_id": streamer, "user_id": bot}), &conduit).await;

    let r = t.http.get(format!("{}/", t.base)).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let page = t.http.get(format!("{}/sim/chat", t.base)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(html.contains("PixelPaws") && html.contains("1 app(s) listening"), "{html}");

    let form = [("channel", streamer.as_str()), ("viewer", "Mossy_Owl"), ("text", "yes please")];
    let r = t.http.post(format!("{}/sim/chat", t.base)).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/sim/chat?sent="), "{location}");
    let got = receiver.wait_count("notification", Some("channel.chat.message"), 1).await.remove(0);
    assert_eq!(got.json()["event"]["chatter_user_login"], "mossy_owl");
    assert_eq!(got.json()["event"]["message"]["text"], "yes please");
    let html = t.http.get(format!("{}{location}", t.base)).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("sent as mossy_owl: yes please") && html.contains("HTTP 204"), "{html}");

    let r = t.http.post(format!("{}/sim/chat", t.base)).form(&[("channel", streamer.as_str()), ("viewer", "")]);
    let location = r.send().await.unwrap().headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/sim/chat?error="), "{location}");

    let state = t.http.get(format!("{}/sim/state", t.base)).send().await.unwrap().json::<Value>().await.unwrap();
    assert_eq!(state["conduits"][0]["shards"][0]["status"], "enabled");
    assert!(state["conduits"][0]["shards"][0]["transport"].get("secret").is_none());
}

#[tokio::test]
async fn the_generator_sends_a_bounded_paced_crowd() {
    let t = start().await;
    let app = t.app_token().await;
    let receiver = Receiver::start(Challenge::Echo).await;
    let conduit = t.conduit_for(&app, &receiver).await;
    let (streamer, bot) = t.streamer_and_bot();
    t.subscribe(&app, "channel.chat.message", json!({"broadcaster_user_id": streamer, "user_id": bot}), &conduit).await;
    let generator = ChatGenerator {
        broadcaster_user_id: streamer.clone(),
        viewers: 20,
        for_share: 0.6,
        for_word: "yes".into(),
        against_word: "no".into(),
        other_share: 0.1,
        per_second: 200.0,
        duration: Duration::from_millis(300),
    };
    let report = generator.run(&t.sim).await;
    assert_eq!(report.sent, 60);
    assert_eq!(report.for_votes + report.against_votes + report.other, report.sent);
    assert!(report.for_votes > report.against_votes);
    assert!(report.elapsed < Duration::from_secs(2));
    let got = receiver.wait_count("notification", Some("channel.chat.message"), 60).await;
    let chatters: std::collections::HashSet<String> =
        got.iter().map(|r| r.json()["event"]["chatter_user_id"].as_str().unwrap().to_owned()).collect();
    assert!(chatters.len() > 5 && chatters.len() <= 20);

    let (status, body) = t
        .sim_post(
            "/sim/generator",
            json!({"broadcaster_user_id": streamer, "viewers": 5, "per_second": 50, "duration_seconds": 0.2}),
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(body["planned_messages"], 10);
    receiver.wait_count("notification", Some("channel.chat.message"), 70).await;
}
