//! `/metrics` and the readiness details live on the internal listener
//! (`METRICS_PORT`); the public listener answers `/metrics` with 404 and
//! `/health/ready` with the summary only.

use crate::helpers::*;

both_modes! {
async fn metrics_and_readiness_details_are_served_only_on_the_internal_port() {
    let app = TestApp::builder().start().await;

    let public = app.http.get(format!("{}/metrics", app.base)).send().await.unwrap();
    assert_eq!(public.status(), 404, "no metrics on the public port");
    let internal = app.http.get(format!("{}/metrics", app.metrics_base)).send().await.unwrap();
    assert_eq!(internal.status(), 200);
    assert!(internal.text().await.unwrap().contains("chatpulse_dependency_up"));

    let summary = app.http.get(format!("{}/health/ready", app.base)).send().await.unwrap();
    assert_eq!(summary.status(), 200);
    let summary: serde_json::Value = summary.json().await.unwrap();
    let mut keys: Vec<&str> = summary.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["dependencies_ok", "ready", "shutting_down"], "the summary only: {summary}");
    let (status, details) = app.readiness().await;
    assert_eq!(status, 200);
    assert_eq!(details["checks"]["live_store"]["ok"], true, "the details, internally: {details}");
    assert_ne!(app.metrics_base, app.base);
}
}
