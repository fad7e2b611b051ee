//! The streamer's control room over real HTTP and WebSocket: test votes and
//! "Refresh overlays", the live "is it working?" status, the look and the
//! words in the settings form, and the overlay's own honesty (a removed or
//! unknown overlay says so).

use std::time::Duration;

use crate::helpers::*;

mod actions;
mod honesty;
mod looks;
mod status;
mod words;

/// How long an overlay may take to show a change.
const WAIT: Duration = Duration::from_secs(3);

/// `POST` a form (with the session's CSRF token) to a dashboard route.
async fn post_form(app: &TestApp, login: &LoggedIn, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
    let mut form: Vec<(&str, &str)> = vec![("csrf_token", login.csrf.as_str())];
    form.extend_from_slice(fields);
    login.client.post(format!("{}{path}", app.base)).form(&form).send().await.unwrap()
}

/// `POST` a form the way the page's script does: the CSRF token in the
/// `X-CSRF-Token` header, a JSON answer.
async fn post_json(app: &TestApp, login: &LoggedIn, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
    login
        .client
        .post(format!("{}{path}", app.base))
        .header("X-CSRF-Token", &login.csrf)
        .form(fields)
        .send()
        .await
        .unwrap()
}

/// `GET /dashboard/status` as the logged-in streamer.
async fn status(app: &TestApp, login: &LoggedIn) -> serde_json::Value {
    let r = login.client.get(format!("{}/dashboard/status", app.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}
