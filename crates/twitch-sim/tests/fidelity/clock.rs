//! The simulator's clock (§8.5): it only moves forward, and Twitch's
//! timestamps and times follow it.

use std::time::Duration;

use serde_json::json;
use twitch_sim::ChatInput;

use crate::harness::*;

fn parse(ts: &str) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).unwrap()
}

#[tokio::test]
async fn the_clock_moves_forward_on_request_and_never_back() {
    let t = start().await;
    let (status, before) = send(t.http.get(format!("{}/sim/clock", t.base))).await;
    assert_eq!(status, 200);
    assert_eq!(before["offset_seconds"], 0.0);
    let real = time::OffsetDateTime::now_utc();
    assert!((parse(before["now"].as_str().unwrap()) - real).abs() < time::Duration::seconds(5));

    let (status, after) = t.sim_post("/sim/clock", json!({"advance_seconds": 86_400})).await;
    assert_eq!(status, 200);
    assert_eq!(after["offset_seconds"], 86_400.0);
    let day = parse(after["now"].as_str().unwrap()) - parse(before["now"].as_str().unwrap());
    assert!((day - time::Duration::days(1)).abs() < time::Duration::seconds(5), "{day}");

    let target = parse(after["now"].as_str().unwrap()) + time::Duration::hours(1);
    let target = target.format(&time::format_description::well_known::Rfc3339).unwrap();
    let (status, set) = t.sim_post("/sim/clock", json!({"set": target})).await;
    assert_eq!(status, 200, "{set}");
    assert!(set["offset_seconds"].as_f64().unwrap() > 89_990.0, "{set}");
    let (status, body) = t.sim_post("/sim/clock", json!({"set": "2020-01-01T00:00:00Z"})).await;
    assert_eq!(status, 400, "no going back: {body}");
    for bad in [
        json!({}),
        json!({"advance_seconds": -5}),
        json!({"advance_seconds": 1, "set": target}),
        json!({"set": "tomorrow"}),
        json!({"advance": 1}),
    ] {
        assert_eq!(t.sim_post("/sim/clock", bad.clone()).await.0, 400, "{bad}");
    }
    assert!(t.sim.clock_offset() > Duration::from_secs(89_990));
}

#[tokio::test]
async fn timestamps_and_rate_limit_resets_follow_the_clock() {
    let t = start().await;
    let app = t.app_token().await;
    let (receiver, _, streamer, bot) = chat_receiver(&t, &app).await;
    t.sim.advance_clock(Duration::from_secs(7 * 86_400));
    let ahead = time::OffsetDateTime::now_utc() + time::Duration::days(7);

    let input =
        ChatInput { broadcaster_user_id: streamer, chatter_user_id: bot, chatter_login: None, text: "yes".into() };
    t.sim.post_chat(input).await.unwrap();
    let note = receiver.wait_count("notification", Some("channel.chat.message"), 1).await.remove(0);
    let stamp = parse(&note.header("twitch-eventsub-message-timestamp").unwrap());
    assert!((stamp - ahead).abs() < time::Duration::seconds(5), "{stamp}");
    assert!(!fresh(&note), "a receiver on real time sees it from the future (§5.5)");

    let r = t.helix(reqwest::Method::GET, "/users?login=pixelpaws", &app).send().await.unwrap();
    let reset: i64 = r.headers()["ratelimit-reset"].to_str().unwrap().parse().unwrap();
    assert!((reset - ahead.unix_timestamp()).abs() < 65, "Ratelimit-Reset is on Twitch's clock");

    let (_, state) = send(t.http.get(format!("{}/sim/state", t.base))).await;
    assert_eq!(state["clock"]["offset_seconds"], 604_800.0);
}
