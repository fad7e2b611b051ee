//! The honest meter's targets, over real HTTP and WebSocket at the default
//! settings, in both storage shapes: signed `channel.chat.message`
//! deliveries to the webhook, the value read from the frames an overlay
//! receives. New streamers are on the balance meter.
//!
//! - 300 distinct viewers voting "yes" once a second for 30 s keep the value
//!   at or above 90 throughout the last 20 s;
//! - 60 % "yes" / 40 % "no" at the same rate holds it between +10 and +40;
//! - a single "yes" in a quiet chat moves it by at least 10.
//!
//! The two busy channels run side by side in one 30-second test (600
//! deliveries a second), so the suite pays the 30 s once per shape.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::helpers::*;

const VIEWERS: u32 = 300;
const SECONDS: u32 = 30;
/// The targets hold over the last 20 of the 30 seconds.
const SETTLED_AFTER: Duration = Duration::from_secs(10);
/// Deliveries in flight at once, per channel.
const IN_FLIGHT: usize = 48;

/// Every frame an overlay receives, with when it arrived, until `done` fires:
/// the overlay stays open until the last delivery has been answered, so a
/// slow machine that takes longer than the planned seconds to send them all
/// still has every vote meet an open overlay.
fn record(
    mut overlay: OverlayClient,
    started: Instant,
    mut done: watch::Receiver<bool>,
) -> JoinHandle<Vec<(Duration, f64)>> {
    tokio::spawn(async move {
        let mut frames = Vec::new();
        loop {
            tokio::select! {
                _ = done.wait_for(|d| *d) => break,
                event = overlay.next_event(Duration::from_secs(120)) => match event {
                    Some(Event::Frame(f)) => frames.push((started.elapsed(), f.value)),
                    Some(Event::Closed(c)) => panic!("the overlay closed: {c:?}"),
                    None => break,
                },
            }
        }
        frames
    })
}

/// One second of a channel's chat: each viewer says `text(viewer)` once.
async fn one_second(app: &TestApp, broadcaster: &str, text: impl Fn(u32) -> &'static str) {
    let deliveries: Vec<Delivery> =
        (0..VIEWERS).map(|v| Delivery::chat(broadcaster, &(10_000 + v).to_string(), text(v))).collect();
    futures_util::stream::iter(deliveries)
        .for_each_concurrent(IN_FLIGHT, |d| async move {
            let status = app.deliver(&d).await.status();
            assert_eq!(status, 204, "every delivery is acknowledged");
        })
        .await;
}

/// The values shown from `from` on: the frame showing at `from` (the last
/// one before it) and every later one.
fn shown_after(frames: &[(Duration, f64)], from: Duration) -> Vec<f64> {
    let before = frames.iter().rev().find(|(at, _)| *at <= from).map(|(_, v)| *v);
    before.into_iter().chain(frames.iter().filter(|(at, _)| *at > from).map(|(_, v)| *v)).collect()
}

both_modes! {
async fn a_busy_unanimous_chat_pins_the_bar_and_a_sixty_forty_chat_shows_its_majority() {
    let app = TestApp::builder().start().await;
    let unanimous = app.add_new_streamer().await;
    let split = app.add_new_streamer().await;
    let mut unanimous_overlay = app.connect(&unanimous.streamer.overlay_id).await;
    let mut split_overlay = app.connect(&split.streamer.overlay_id).await;
    assert_eq!(unanimous_overlay.next_frame(Duration::from_secs(5)).await.map(|f| f.value), Some(0.0));
    assert_eq!(split_overlay.next_frame(Duration::from_secs(5)).await.map(|f| f.value), Some(0.0));

    let started = Instant::now();
    let (sent_all, done) = watch::channel(false);
    let unanimous_frames = record(unanimous_overlay, started, done.clone());
    let split_frames = record(split_overlay, started, done);
    let (u, s) = (unanimous.streamer.twitch_user_id.to_string(), split.streamer.twitch_user_id.to_string());
    for second in 0..SECONDS {
        // Each second's chat starts on the second, like viewers voting every second.
        tokio::time::sleep_until((started + Duration::from_secs(u64::from(second))).into()).await;
        tokio::join!(
            one_second(&app, &u, |_| "yes"),
            one_second(&app, &s, |v| if v % 5 < 3 { "yes" } else { "no" }),
        );
    }
    sent_all.send_replace(true);
    let (unanimous_frames, split_frames) = (unanimous_frames.await.unwrap(), split_frames.await.unwrap());

    let pinned = shown_after(&unanimous_frames, SETTLED_AFTER);
    let lowest = pinned.iter().copied().fold(f64::INFINITY, f64::min);
    assert!(!pinned.is_empty() && lowest >= 90.0, "unanimous: the lowest value of the last 20 s is {lowest}: {pinned:?}");
    let majority = shown_after(&split_frames, SETTLED_AFTER);
    let (low, high) = majority.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(*v), h.max(*v)));
    assert!(!majority.is_empty() && low >= 10.0 && high <= 40.0, "60/40: between {low} and {high}: {majority:?}");
    // The per-session limit is an abuse guard: it never bit this honest chat.
    assert_eq!(app.votes("rate_limited").await, 0.0);
    let applied = app.votes("applied").await;
    eprintln!(
        "meter targets ({:?}): unanimous lowest {lowest:.2}, 60/40 between {low:.2} and {high:.2}; \
         {applied} votes applied, {} debounced of {} sent",
        mode(),
        app.votes("debounced").await,
        2 * VIEWERS * SECONDS
    );
    // Every message met an open overlay and the live store: each one is
    // either counted or debounced (the same chatter within its second).
    let debounced = app.votes("debounced").await;
    assert_eq!(applied + debounced, f64::from(2 * VIEWERS * SECONDS), "every vote is accounted for");
    assert!(applied >= f64::from(VIEWERS * SECONDS), "most votes counted: {applied}");
}
}

both_modes! {
async fn a_single_yes_in_a_quiet_chat_moves_the_bar_visibly_and_it_returns_to_the_centre() {
    let app = TestApp::builder().start().await;
    let s = app.add_new_streamer().await;
    let mut overlay = app.connect(&s.streamer.overlay_id).await;
    assert_eq!(overlay.next_frame(Duration::from_secs(5)).await.map(|f| f.value), Some(0.0));

    assert_eq!(app.chat(&s.streamer.twitch_user_id, "777", "yes").await, 204);
    let moved = overlay.wait_for(Duration::from_secs(2), |f| f.value > 0.0).await.expect("moved");
    assert!(moved.value >= 10.0, "one vote in a quiet chat moves the bar at least 10: {moved:?}");
    let centred = overlay.wait_for(Duration::from_secs(40), |f| f.value == 0.0).await;
    assert!(centred.is_some(), "a quiet chat brings the bar back to the centre");
}
}
