//! The whole of a stream's history, end to end over real HTTP in both
//! shapes: a signed `stream.online`, chat votes that swing the bar, test
//! votes (never recorded), a signed `stream.offline`; then the stream, its
//! summary, its timeline (JSON and CSV) and its moments — with the marker
//! and the clip made on the simulator — read through the streamer API and
//! on the dashboard.

use serde_json::Value;

use super::*;

async fn api_get(app: &TestApp, token: &str, path: &str) -> (u16, Value) {
    let r = app.http.get(format!("{}/api/v1{path}", app.base)).bearer_auth(token).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

both_modes! {
async fn a_streams_history_from_signed_webhooks_is_read_through_the_api_and_the_dashboard() {
    let live = live_streamer("markers,clips").await;
    let app = &live.app;
    let name = chatpulse::domain::TokenName::parse("e2e").unwrap();
    let token = chatpulse::app::api::create_token(app.repo.as_ref(), live.streamer, name).await.unwrap();
    let token = token.secret.expose().to_owned();
    let stream = streams(&*app.repo, live.streamer).await[0].clone();
    assert!(stream.is_open());

    // Chat swings the bar: a moment, with a marker and a clip on Twitch.
    live.swing().await;
    let moment = live.settled_swing().await;
    assert_eq!((moment.marker.status, moment.clip.status), (ActionStatus::Created, ActionStatus::Created));
    let buckets = || async { app.repo.stream_buckets(live.streamer, stream.id).await.unwrap() };
    assert!(eventually(BUCKET_WAIT, || async { votes(&buckets().await) == (7, 15) }).await, "{:?}", buckets().await);

    // Test votes move the bar but are never recorded: a real vote sent
    // right after them is, and its bucket holds it alone.
    let sent = app
        .http
        .post(format!("{}/api/v1/test-votes", app.base))
        .bearer_auth(&token)
        .json(&serde_json::json!({"side": "for", "count": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200);
    let sent: Value = sent.json().await.unwrap();
    assert_eq!(sent["applied"], 5, "{sent}");
    assert_eq!(app.chat(&live.broadcaster, "3300", "yes").await, 204);
    assert!(eventually(BUCKET_WAIT, || async { votes(&buckets().await) == (8, 15) }).await, "{:?}", buckets().await);

    let offline = stream_delivery(live.broadcaster.as_str(), None);
    assert_eq!(app.deliver(&offline).await.status(), 204);
    let id = stream.id.to_string();

    // The API.
    let (status, list) = api_get(app, &token, "/streams").await;
    assert_eq!((status, list["total"].as_u64()), (200, Some(1)), "{list}");
    assert_eq!((list["streams"][0]["id"].as_str(), list["streams"][0]["ended_by"].as_str()), (Some(id.as_str()), Some("offline")));
    assert_eq!(list["streams"][0]["live"], false);
    let (status, report) = api_get(app, &token, &format!("/streams/{id}")).await;
    assert_eq!(status, 200, "{report}");
    let summary = &report["summary"];
    assert_eq!((summary["votes_for"].as_u64(), summary["votes_against"].as_u64()), (Some(8), Some(15)), "{summary}");
    assert!(summary["peak_for"].as_f64().is_some_and(|p| p >= 50.0), "{summary}");
    assert!(summary["peak_against"].as_f64().is_some_and(|p| p <= -50.0), "{summary}");
    assert!(summary["moments"]["swings"].as_u64().is_some_and(|n| n >= 1), "{summary}");
    let (status, timeline) = api_get(app, &token, &format!("/streams/{id}/timeline")).await;
    assert_eq!(status, 200);
    let rows = timeline["buckets"].as_array().unwrap();
    let counted: u64 = rows.iter().map(|b| b["votes_for"].as_u64().unwrap() + b["votes_against"].as_u64().unwrap()).sum();
    assert_eq!(counted, 23, "{timeline}");
    let swing = timeline["moments"].as_array().unwrap().iter().find(|m| m["kind"] == "swing").cloned().unwrap();
    assert_eq!((swing["marker"]["status"].as_str(), swing["clip"]["status"].as_str()), (Some("created"), Some("created")));
    let csv = app.http.get(format!("{}/api/v1/streams/{id}/timeline?format=csv", app.base)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(csv.status(), 200);
    let csv = csv.text().await.unwrap();
    assert_eq!(csv.lines().count(), rows.len() + 1, "{csv}");
    let (status, moments) = api_get(app, &token, &format!("/moments?stream={id}")).await;
    assert_eq!(status, 200);
    assert!(moments["moments"].as_array().unwrap().iter().any(|m| m["kind"] == "swing" && m["marker"]["id"].is_string()), "{moments}");

    // The dashboard.
    let logged = app.log_in(&live.login).await;
    let list = logged.client.get(format!("{}/dashboard/history", app.base)).send().await.unwrap().text().await.unwrap();
    assert!(list.contains(&format!("href=\"/dashboard/history/{id}\"")), "the stream is listed");
    let page = logged.client.get(format!("{}/dashboard/history/{id}", app.base)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains("<svg class=\"timeline-chart\"") && page.contains("chart-moment-swing"), "chart with the swing");
    let export = logged.client.get(format!("{}/dashboard/history/{id}/timeline.csv", app.base)).send().await.unwrap();
    assert_eq!(export.status(), 200);
    assert_eq!(export.text().await.unwrap().lines().count(), rows.len() + 1, "the dashboard exports the same rows");
}
}
