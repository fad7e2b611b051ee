//! Stream history end to end, over signed webhooks: `stream.online` and
//! `stream.offline` open and close a stream; counted votes are written in
//! 10-second buckets of that stream (test votes never); a stream that ended
//! unseen is closed by reconciliation (Helix "Get Streams" of the
//! simulator); a swing of the bar is a moment, with a Twitch marker and a
//! clip when the streamer allowed them, and the outcome of each recorded
//! under the simulator's faults.

use std::time::Duration;

use chatpulse::domain::history::{ActionStatus, HistoryBucket, MomentFilter, MomentKind, Page, StreamEnd};
use chatpulse::domain::{BroadcasterId, OverlayConfig, StreamerId};
use chatpulse::store::{NewStreamer, Repository};
use time::OffsetDateTime;

use crate::helpers::*;

mod e2e;
mod instances;
mod retention;

/// Long enough for a bucket to close (10 s) and be flushed, on a loaded machine.
const BUCKET_WAIT: Duration = Duration::from_secs(40);

/// A `stream.online` (with the stream's id) or `stream.offline` body.
fn stream_delivery(broadcaster: &str, online: Option<&str>) -> Delivery {
    let kind = if online.is_some() { "stream.online" } else { "stream.offline" };
    let mut event = serde_json::json!({
        "broadcaster_user_id": broadcaster, "broadcaster_user_login": "streamer", "broadcaster_user_name": "Streamer",
    });
    if let Some(id) = online {
        event["id"] = id.into();
        event["type"] = "live".into();
        event["started_at"] = timestamp(OffsetDateTime::now_utc()).into();
    }
    let body = serde_json::json!({
        "subscription": {
            "id": uuid::Uuid::new_v4().to_string(), "status": "enabled", "type": kind, "version": "1",
            "condition": {"broadcaster_user_id": broadcaster},
            "transport": {"method": "conduit", "conduit_id": "e3a1c9d2-58b4-4f0e-a7c6-2d9f81b0c4aa"},
            "created_at": "2026-03-14T18:59:42.117290301Z", "cost": 0
        },
        "event": event,
    });
    Delivery::notification(kind, body.to_string())
}

async fn streams(repo: &dyn Repository, streamer: StreamerId) -> Vec<chatpulse::domain::history::StreamRecord> {
    repo.streams_of(streamer, Page::new(1, 50)).await.unwrap().items
}

fn votes(buckets: &[HistoryBucket]) -> (u32, u32) {
    buckets.iter().fold((0, 0), |(f, a), b| (f + b.votes_for, a + b.votes_against))
}

/// Sleeps until `at_ms` into a 10-second bucket (a clock boundary, not an event).
async fn until_bucket_phase(at_ms: i64) {
    let now = chatpulse::now_ms();
    let phase = now.rem_euclid(10_000);
    let wait = if phase <= at_ms { at_ms - phase } else { 10_000 - phase + at_ms };
    tokio::time::sleep(Duration::from_millis(u64::try_from(wait).unwrap())).await;
}

/// Flushes history often. (Stream reconciliation keeps its long interval:
/// its Helix calls would meet the faults a test injects for a marker.)
fn fast_history(c: &mut chatpulse::config::Config) {
    c.tuning.history_flush_interval = Duration::from_millis(100);
    c.tuning.twitch_retry_base = Duration::from_millis(50);
}

both_modes! {
async fn online_votes_and_offline_make_a_stream_with_its_buckets() {
    let app = TestApp::builder().configure(fast_history).start().await;
    let s = app.add_streamer().await;
    let broadcaster = s.streamer.twitch_user_id.as_str();
    let _overlay = app.connect(&s.streamer.overlay_id).await;

    assert_eq!(app.deliver(&stream_delivery(broadcaster, Some("50123"))).await.status(), 204);
    assert_eq!(app.deliver(&stream_delivery(broadcaster, Some("50123"))).await.status(), 204, "a redelivery");
    let open = streams(&*app.repo, s.streamer.id).await;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!((open[0].twitch_stream_id.as_deref(), open[0].ended_at), (Some("50123"), None));

    for (chatter, text) in [("2001", "yes"), ("2002", "yes"), ("2003", "yes"), ("2004", "no"), ("2005", "maybe")] {
        assert_eq!(app.chat(&s.streamer.twitch_user_id, chatter, text).await, 204);
    }
    let recorded = eventually(BUCKET_WAIT, || async {
        votes(&app.repo.stream_buckets(s.streamer.id, open[0].id).await.unwrap()) == (3, 1)
    });
    assert!(recorded.await, "buckets: {:?}", app.repo.stream_buckets(s.streamer.id, open[0].id).await.unwrap());
    let buckets = app.repo.stream_buckets(s.streamer.id, open[0].id).await.unwrap();
    assert_eq!(buckets.iter().map(|b| b.voters).sum::<u32>(), 4, "{buckets:?}");
    assert!(buckets.iter().all(|b| b.stream == Some(open[0].id) && b.value_max > 0.0));

    assert_eq!(app.deliver(&stream_delivery(broadcaster, None)).await.status(), 204);
    let closed = streams(&*app.repo, s.streamer.id).await;
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].ended_by, Some(StreamEnd::Offline));
    assert!(closed[0].ended_at.is_some());
    assert_eq!(app.deliver(&stream_delivery(broadcaster, None)).await.status(), 204, "offline again: nothing open");
    assert_eq!(streams(&*app.repo, s.streamer.id).await, closed);
}
}

both_modes! {
async fn stream_events_of_channels_that_are_nobodys_change_nothing() {
    let app = TestApp::builder().start().await;
    let stranger = random_twitch_id();
    assert_eq!(app.deliver(&stream_delivery(&stranger, Some("1"))).await.status(), 204);
    assert_eq!(app.deliver(&stream_delivery(&stranger, None)).await.status(), 204);
    assert!(app.repo.open_streams().await.unwrap().iter().all(|(_, b)| b.as_str() != stranger));
}
}

both_modes! {
async fn a_stream_that_ended_unseen_is_closed_by_reconciliation() {
    let twitch = Twitch::start().await;
    let app = TestApp::builder()
        .twitch(&twitch)
        .configure(fast_history)
        .configure(|c| c.tuning.history_upkeep_interval = Duration::from_millis(300))
        .start()
        .await;
    let add = |id: &str, login: &str| NewStreamer {
        twitch_user_id: BroadcasterId::parse(id).unwrap(),
        login: login.into(),
        display_name: login.into(),
    };
    // One channel live on Twitch, one that is not (its offline never reached us).
    let live_user = twitch.streamer();
    let live = app.repo.create_streamer(&add(&live_user.id, &live_user.login)).await.unwrap().streamer;
    twitch.sim.set_live(&live_user.id, true).await.unwrap();
    let stream_id = twitch.sim.live_stream_id(&live_user.id).unwrap();
    let gone = app.repo.create_streamer(&add(&random_twitch_id(), "gone")).await.unwrap().streamer;
    assert_eq!(app.deliver(&stream_delivery(live.twitch_user_id.as_str(), Some(&stream_id))).await.status(), 204);
    assert_eq!(app.deliver(&stream_delivery(gone.twitch_user_id.as_str(), Some("777"))).await.status(), 204);

    let closed = eventually(BUCKET_WAIT, || async {
        streams(&*app.repo, gone.id).await.first().is_some_and(|st| st.ended_by == Some(StreamEnd::Reconciliation))
    });
    assert!(closed.await, "{:?}", streams(&*app.repo, gone.id).await);
    let still = streams(&*app.repo, live.id).await;
    assert!(still[0].is_open(), "the live channel's stream stays open: {still:?}");

    // The live channel ends while its stream.offline does not reach us.
    twitch.sim.set_live(&live_user.id, false).await.unwrap();
    let ended = eventually(BUCKET_WAIT, || async {
        streams(&*app.repo, live.id).await.first().is_some_and(|st| st.ended_by == Some(StreamEnd::Reconciliation))
    });
    assert!(ended.await, "{:?}", streams(&*app.repo, live.id).await);
}
}

/// A demo app with a streamer logged in (allowing `features`), live on the
/// simulator with its stream opened, an overlay open, and the classic meter.
struct LiveStreamer {
    app: TestApp,
    /// The streamer's Twitch login (to log in on the dashboard again).
    login: String,
    streamer: StreamerId,
    broadcaster: BroadcasterId,
    _overlay: OverlayClient,
}

async fn live_streamer(features: &str) -> LiveStreamer {
    let app = TestApp::builder().demo().configure(fast_history).start().await;
    let login = unique_login();
    let client = browser(true);
    let url = format!("{}/auth/login?as={login}&scopes={features}", app.base);
    let response = client.get(url).send().await.unwrap();
    assert!(response.url().path().ends_with("/dashboard"), "logged in: {}", response.url());
    let streamer = app.streamer_by_login(&login).await;
    app.repo.save_config(streamer.id, &OverlayConfig::classic()).await.unwrap();
    let overlay = app.connect(&streamer.overlay_id).await;
    let sim = app.simulator_url().to_owned();
    let live: serde_json::Value = app
        .http
        .post(format!("{sim}/sim/streams/{}/online", streamer.twitch_user_id))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stream_id = live["stream_id"].as_str().unwrap().to_owned();
    let online = stream_delivery(streamer.twitch_user_id.as_str(), Some(&stream_id));
    assert_eq!(app.deliver(&online).await.status(), 204);
    LiveStreamer { app, login, streamer: streamer.id, broadcaster: streamer.twitch_user_id, _overlay: overlay }
}

impl LiveStreamer {
    /// Swings the bar: strongly "for" at the end of one bucket, strongly
    /// "against" in the next.
    async fn swing(&self) {
        until_bucket_phase(1_000).await;
        for i in 0..7 {
            assert_eq!(self.app.chat(&self.broadcaster, &format!("31{i:02}"), "yes").await, 204);
        }
        until_bucket_phase(300).await;
        for i in 0..15 {
            assert_eq!(self.app.chat(&self.broadcaster, &format!("32{i:02}"), "no").await, 204);
        }
    }

    async fn fail_next_helix_calls(&self, status: u16, count: u32) {
        let url = format!("{}/sim/faults", self.app.simulator_url());
        let body = serde_json::json!({"status": status, "count": count});
        assert_eq!(self.app.http.post(url).json(&body).send().await.unwrap().status(), 200);
    }

    /// The swing's moment once its marker and clip are settled.
    async fn settled_swing(&self) -> chatpulse::domain::history::Moment {
        let settled = || async {
            let page =
                self.app.repo.moments_of(self.streamer, &MomentFilter::default(), Page::new(1, 10)).await.unwrap();
            page.items.into_iter().find(|m| {
                m.kind == MomentKind::Swing
                    && m.marker.status != ActionStatus::Pending
                    && m.clip.status != ActionStatus::Pending
            })
        };
        assert!(eventually(BUCKET_WAIT, || async { settled().await.is_some() }).await, "no settled swing");
        settled().await.unwrap()
    }
}

both_modes! {
async fn a_swing_is_a_moment_with_a_marker_and_a_clip_when_allowed() {
    let live = live_streamer("markers,clips").await;
    live.swing().await;
    let moment = live.settled_swing().await;
    assert_eq!(moment.marker.status, ActionStatus::Created, "{moment:?}");
    assert_eq!(moment.clip.status, ActionStatus::Created, "{moment:?}");
    assert!(moment.marker.id.is_some() && moment.clip.id.is_some());
    let stream = &streams(&*live.app.repo, live.streamer).await[0];
    assert_eq!(moment.stream, Some(stream.id), "the moment belongs to the open stream");
    let state = live.app.sim_state().await;
    assert_eq!((state["markers"].as_u64(), state["clips"].as_u64()), (Some(1), Some(1)), "made on Twitch");
}
}

#[tokio::test]
async fn without_the_scopes_a_moment_is_recorded_but_nothing_is_made_on_twitch() {
    let live = live_streamer("").await;
    live.swing().await;
    let moment = live.settled_swing().await;
    assert_eq!((moment.marker.status, moment.clip.status), (ActionStatus::NoScope, ActionStatus::NoScope));
    let state = live.app.sim_state().await;
    assert_eq!((state["markers"].as_u64(), state["clips"].as_u64()), (Some(0), Some(0)));
}

#[tokio::test]
async fn server_errors_are_retried_until_the_marker_is_made() {
    let live = live_streamer("markers,clips").await;
    live.swing().await;
    live.fail_next_helix_calls(503, 2).await;
    let moment = live.settled_swing().await;
    assert_eq!(
        (moment.marker.status, moment.clip.status),
        (ActionStatus::Created, ActionStatus::Created),
        "{moment:?}"
    );
    assert_eq!(live.app.sim_state().await["fault"], serde_json::Value::Null, "both faults were met");
}

#[tokio::test]
async fn a_request_timeout_is_retried_too() {
    let live = live_streamer("markers").await;
    live.swing().await;
    live.fail_next_helix_calls(408, 1).await;
    let moment = live.settled_swing().await;
    assert_eq!(
        (moment.marker.status, moment.clip.status),
        (ActionStatus::Created, ActionStatus::NoScope),
        "{moment:?}"
    );
}

#[tokio::test]
async fn a_refusal_is_final_and_recorded() {
    for status in [403u16, 400, 404] {
        let live = live_streamer("markers,clips").await;
        live.swing().await;
        live.fail_next_helix_calls(status, 1).await;
        let moment = live.settled_swing().await;
        assert_eq!(moment.marker.status, ActionStatus::Failed, "{status}: {moment:?}");
        assert!(moment.marker.error.as_deref().is_some_and(|e| e.starts_with(&status.to_string())), "{moment:?}");
        assert_eq!(moment.clip.status, ActionStatus::Created, "{status}: the clip after it is made");
        assert_eq!(live.app.sim_state().await["markers"].as_u64(), Some(0), "{status}: not retried");
    }
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_and_the_marker_made() {
    let live = live_streamer("markers").await;
    let before = live.app.repo.tokens(live.streamer).await.unwrap().unwrap();
    live.swing().await;
    live.fail_next_helix_calls(401, 1).await;
    let moment = live.settled_swing().await;
    assert_eq!(moment.marker.status, ActionStatus::Created, "{moment:?}");
    let after = live.app.repo.tokens(live.streamer).await.unwrap().unwrap();
    assert_ne!(after.access_token, before.access_token, "the refreshed token is stored");
    assert!(after.scopes.iter().any(|s| s == "channel:manage:broadcast"));
}

#[tokio::test]
async fn the_dashboard_asks_twitch_for_the_markers_and_clips_scopes() {
    let app = TestApp::builder().demo().start().await;
    let logged = app.log_in(&unique_login()).await;
    let sent = logged
        .client
        .post(format!("{}/dashboard/scopes", app.base))
        .form(&[("csrf_token", logged.csrf.as_str()), ("scopes", "markers,clips")])
        .send()
        .await
        .unwrap();
    // Followed to the simulator's consent page, which names both scopes.
    let url = sent.url().to_string();
    assert!(url.contains("channel%3Amanage%3Abroadcast") || url.contains("channel:manage:broadcast"), "{url}");
    assert!(url.contains("clips%3Aedit") || url.contains("clips:edit"), "{url}");

    let bad = logged
        .client
        .post(format!("{}/dashboard/scopes", app.base))
        .form(&[("csrf_token", logged.csrf.as_str()), ("scopes", "everything")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let forged = logged
        .client
        .post(format!("{}/dashboard/scopes", app.base))
        .form(&[("csrf_token", "forged"), ("scopes", "markers")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert!(logged.html.contains("action=\"/dashboard/scopes\""), "the dashboard shows the button");
}
