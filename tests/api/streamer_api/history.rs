//! A streamer's history through the API and on the dashboard, over real
//! HTTP in both shapes: the streams (newest first, paginated), one stream's
//! summary, its timeline as JSON and CSV, the moments; another streamer's
//! stream is not found; bad queries name their fields.
//!
//! The history is written through the repository here (the recording itself
//! has its own tests): what matters is what these routes make of it.

use chatpulse::domain::StreamerId;
use chatpulse::domain::history::{
    ActionOutcome, ActionStatus, HistoryBucket, Moment, MomentDetail, MomentId, MomentKind, StreamEnd, StreamId,
};
use serde_json::Value;
use time::OffsetDateTime;

use super::token_for;
use crate::helpers::*;

/// A whole 10-second boundary `seconds` after a start an hour ago.
fn at(seconds: i64) -> OffsetDateTime {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    OffsetDateTime::from_unix_timestamp(now - now % 10 - 3_600 + seconds).unwrap()
}

fn bucket(
    streamer: StreamerId,
    stream: StreamId,
    start: i64,
    open: f64,
    close: f64,
    votes: (u32, u32),
) -> HistoryBucket {
    HistoryBucket {
        streamer,
        stream: Some(stream),
        start: at(start),
        value_open: open,
        value_close: close,
        value_min: open.min(close),
        value_max: open.max(close),
        votes_for: votes.0,
        votes_against: votes.1,
        voters: votes.0 + votes.1,
    }
}

/// A 100-second stream with three buckets and a swing; returns its id.
async fn recorded_stream(app: &TestApp, streamer: StreamerId, offset: i64) -> StreamId {
    let opened = app.repo.open_stream(streamer, Some(&format!("4000{offset}")), at(offset)).await.unwrap();
    let id = opened.stream.id;
    let buckets = [
        bucket(streamer, id, offset, 0.0, 20.0, (3, 0)),
        bucket(streamer, id, offset + 10, 20.0, -40.0, (1, 6)),
        bucket(streamer, id, offset + 40, 2.0, -2.0, (1, 1)),
    ];
    app.repo.save_buckets(&buckets).await.unwrap();
    let swing = Moment {
        id: MomentId::generate(),
        streamer,
        stream: Some(id),
        at: at(offset + 15),
        kind: MomentKind::Swing,
        detail: MomentDetail::Swing { from: 20.0, to: -40.0, millis: 8_000 },
        marker: ActionOutcome::created("marker-1"),
        clip: ActionOutcome::status(ActionStatus::NoScope),
    };
    app.repo.save_moment(&swing).await.unwrap();
    app.repo.close_stream(streamer, at(offset + 100), StreamEnd::Offline).await.unwrap().expect("closed");
    id
}

async fn get(app: &TestApp, token: &str, path: &str) -> (u16, Value) {
    let r = app.http.get(format!("{}/api/v1{path}", app.base)).bearer_auth(token).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

both_modes! {
async fn a_streams_summary_timeline_and_moments_are_read_through_the_api() {
    let app = TestApp::builder().start().await;
    let setup = app.add_streamer().await;
    let streamer = setup.streamer.id;
    let older = recorded_stream(&app, streamer, 0).await;
    let newer = recorded_stream(&app, streamer, 600).await;
    let token = token_for(&app, streamer).await;

    let (status, page) = get(&app, &token, "/streams?per_page=1").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!((page["total"].as_u64(), page["per_page"].as_u64()), (Some(2), Some(1)));
    assert_eq!(page["streams"][0]["id"], newer.to_string(), "newest first");
    let (_, second) = get(&app, &token, "/streams?per_page=1&page=2").await;
    assert_eq!(second["streams"][0]["id"], older.to_string());
    assert_eq!(second["streams"][0]["ended_by"], "offline");
    assert_eq!(second["streams"][0]["live"], false);

    let (status, report) = get(&app, &token, &format!("/streams/{older}")).await;
    assert_eq!(status, 200, "{report}");
    let s = &report["summary"];
    assert_eq!((s["duration_seconds"].as_i64(), s["votes_for"].as_u64(), s["votes_against"].as_u64()), (Some(100), Some(5), Some(7)));
    assert_eq!((s["peak_for"].as_f64(), s["peak_against"].as_f64()), (Some(20.0), Some(-40.0)));
    assert_eq!(s["time_share"], serde_json::json!({"for_side": 0.1, "against_side": 0.1, "centre": 0.1, "quiet": 0.7}));
    assert_eq!(s["moments"], serde_json::json!({"total": 1, "bursts": 0, "swings": 1}));

    let (status, timeline) = get(&app, &token, &format!("/streams/{older}/timeline")).await;
    assert_eq!(status, 200);
    assert_eq!(timeline["bucket_seconds"], 10);
    let closes: Vec<f64> = timeline["buckets"].as_array().unwrap().iter().map(|b| b["value_close"].as_f64().unwrap()).collect();
    assert_eq!(closes, [20.0, -40.0, -2.0], "oldest first");
    assert_eq!(timeline["moments"][0]["kind"], "swing");
    assert_eq!(timeline["moments"][0]["marker"]["status"], "created");

    let csv = app.http.get(format!("{}/api/v1/streams/{older}/timeline?format=csv", app.base)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(csv.status(), 200);
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let text = csv.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!(lines[0], "start,value_open,value_close,value_min,value_max,votes_for,votes_against,voters");
    assert!(lines[2].ends_with(",20,-40,-40,20,1,6,7"), "{}", lines[2]);

    let (status, moments) = get(&app, &token, "/moments").await;
    assert_eq!((status, moments["total"].as_u64()), (200, Some(2)));
    assert_eq!(moments["moments"][0]["stream_id"], newer.to_string(), "newest first");
    let (_, only) = get(&app, &token, &format!("/moments?stream={older}")).await;
    assert_eq!((only["total"].as_u64(), only["moments"][0]["stream_id"].as_str()), (Some(1), Some(older.to_string().as_str())));
    let from = at(300).format(&time::format_description::well_known::Rfc3339).unwrap();
    let (_, later) = get(&app, &token, &format!("/moments?from={}", from.replace('+', "%2B"))).await;
    assert_eq!(later["total"], 1);
}
}

both_modes! {
async fn another_streamers_history_is_not_found_and_bad_queries_name_their_fields() {
    let app = TestApp::builder().start().await;
    let (owner, other) = (app.add_streamer().await.streamer.id, app.add_streamer().await.streamer.id);
    let theirs = recorded_stream(&app, owner, 0).await;
    let token = token_for(&app, other).await;
    for path in [format!("/streams/{theirs}"), format!("/streams/{theirs}/timeline"), "/streams/not-a-uuid".to_owned()] {
        let (status, body) = get(&app, &token, &path).await;
        assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")), "{path}");
    }
    let (_, mine) = get(&app, &token, "/streams").await;
    assert_eq!(mine["total"], 0);
    let (_, moments) = get(&app, &token, &format!("/moments?stream={theirs}")).await;
    assert_eq!(moments["total"], 0);

    for (path, fields) in [
        ("/streams?page=0", vec!["page"]),
        ("/streams?per_page=101&page=x", vec!["page", "per_page"]),
        ("/moments?from=yesterday&stream=nope", vec!["from", "stream"]),
    ] {
        let (status, body) = get(&app, &token, path).await;
        assert_eq!(status, 422, "{path}");
        let mut named: Vec<&str> = body["error"]["fields"].as_array().unwrap().iter().map(|f| f["field"].as_str().unwrap()).collect();
        named.sort_unstable();
        assert_eq!(named, fields, "{path}");
    }
    let (status, body) = get(&app, &token, &format!("/streams/{theirs}/timeline?format=xml")).await;
    assert_eq!((status, body["error"]["fields"][0]["field"].as_str()), (422, Some("format")));
}
}

both_modes! {
async fn the_dashboard_shows_the_history_with_a_chart_and_exports_it() {
    let app = TestApp::builder().demo().start().await;
    let name = unique_login();
    let login = app.log_in(&name).await;
    assert!(login.html.contains("href=\"/dashboard/history\""), "the dashboard links to the history");
    let html = login.client.get(format!("{}/dashboard/history", app.base)).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("id=\"no-streams\""), "no streams yet");
    let streamer = app.streamer_by_login(&name).await.id;
    let id = recorded_stream(&app, streamer, 0).await;

    let list = login.client.get(format!("{}/dashboard/history", app.base)).send().await.unwrap();
    assert_eq!(list.status(), 200);
    let html = list.text().await.unwrap();
    assert!(html.contains(&format!("href=\"/dashboard/history/{id}\"")), "the stream is listed");
    assert!(html.contains("1 min 40 s") && html.contains("5 / 7") && html.contains("+20 / -40") && html.contains("10 % / 10 %"), "{html}");

    let page = login.client.get(format!("{}/dashboard/history/{id}", app.base)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("<svg class=\"timeline-chart\""), "a chart drawn by the server");
    assert!(html.contains("chart-moment chart-moment-swing"), "the swing is marked");
    assert!(html.contains("<polyline class=\"chart-value\" points=\"0.0,120.0"), "the bar's line");
    assert!(html.contains("created (marker-1)"), "the marker's outcome");

    let csv = login.client.get(format!("{}/dashboard/history/{id}/timeline.csv", app.base)).send().await.unwrap();
    assert_eq!(csv.status(), 200);
    assert!(csv.headers()["content-disposition"].to_str().unwrap().contains(&format!("stream-{id}.csv")));
    assert_eq!(csv.text().await.unwrap().lines().count(), 4);
    let json: Value = login.client.get(format!("{}/dashboard/history/{id}/timeline.json", app.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(json["buckets"].as_array().map(Vec::len), Some(3));

    // Another streamer's stream is not theirs to see; nobody logged in goes to the login.
    let other = app.log_in(&unique_login()).await;
    let theirs = other.client.get(format!("{}/dashboard/history/{id}", app.base)).send().await.unwrap();
    assert_eq!(theirs.status(), 404);
    let export = other.client.get(format!("{}/dashboard/history/{id}/timeline.csv", app.base)).send().await.unwrap();
    assert_eq!(export.status(), 404);
    let stranger = browser(false).get(format!("{}/dashboard/history/{id}", app.base)).send().await.unwrap();
    assert_eq!(stranger.status(), 303);
}
}
