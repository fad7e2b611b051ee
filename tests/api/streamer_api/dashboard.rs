//! The dashboard's API tokens page: a token created there is shown once and
//! works on `/api/v1`; revoking it there stops it at once; the forms need the
//! session's CSRF token; one streamer cannot revoke another's token.

use reqwest::StatusCode;

use crate::helpers::*;

/// The value of the one-time token field on the page, if shown.
fn shown_token(html: &str) -> Option<String> {
    let start = html.find("id=\"new-token-value\" value=\"")? + "id=\"new-token-value\" value=\"".len();
    Some(html[start..].split('"').next()?.to_owned())
}

async fn api_state(app: &TestApp, token: &str) -> StatusCode {
    app.http.get(format!("{}/api/v1/state", app.base)).bearer_auth(token).send().await.unwrap().status()
}

both_modes! {
async fn a_token_made_on_the_dashboard_is_shown_once_works_and_is_revoked_there() {
    let app = TestApp::builder().demo().start().await;
    let login = app.log_in(&unique_login()).await;
    let page = |path: &str| login.client.get(format!("{}{path}", app.base)).send();
    assert!(login.html.contains("href=\"/dashboard/api-tokens\""), "the dashboard links to the tokens");
    let listed = page("/dashboard/api-tokens").await.unwrap().text().await.unwrap();
    assert!(listed.contains("No tokens yet."));

    let created = login.client.post(format!("{}/dashboard/api-tokens", app.base))
        .form(&[("csrf_token", login.csrf.as_str()), ("name", "Streamer.bot")]).send().await.unwrap();
    assert_eq!(created.status(), 200);
    assert_eq!(created.headers()["cache-control"], "no-store");
    let html = created.text().await.unwrap();
    let token = shown_token(&html).expect("the new token is shown");
    assert!(token.starts_with("cp_"), "{token}");
    assert_eq!(api_state(&app, &token).await, 200, "it works on the API");

    let listed = page("/dashboard/api-tokens").await.unwrap().text().await.unwrap();
    assert_eq!(shown_token(&listed), None, "shown only once");
    assert!(!listed.contains(&token[3..]), "never again");
    assert!(listed.contains("Streamer.bot") && listed.contains("Active"));
    let marker = "data-token-id=\"";
    let at = listed.find(marker).expect("the token's row") + marker.len();
    let id = listed[at..].split('"').next().unwrap().to_owned();

    // Without the CSRF token: refused, the token still works.
    let forged = login.client.post(format!("{}/dashboard/api-tokens/{id}/revoke", app.base))
        .form(&[("csrf_token", "forged")]).send().await.unwrap();
    assert_eq!(forged.status(), 403);
    assert_eq!(api_state(&app, &token).await, 200);
    // Another streamer cannot revoke it.
    let other = app.log_in(&unique_login()).await;
    let theirs = other.client.post(format!("{}/dashboard/api-tokens/{id}/revoke", app.base))
        .form(&[("csrf_token", other.csrf.as_str())]).send().await.unwrap();
    assert_eq!(theirs.status(), 404);
    assert_eq!(api_state(&app, &token).await, 200);

    let revoked = login.client.post(format!("{}/dashboard/api-tokens/{id}/revoke", app.base))
        .form(&[("csrf_token", login.csrf.as_str())]).send().await.unwrap();
    assert_eq!(revoked.status(), 200);
    assert!(revoked.url().as_str().ends_with("/dashboard/api-tokens?revoked=1"), "{}", revoked.url());
    let html = revoked.text().await.unwrap();
    assert!(html.contains("The token was revoked") && html.contains("Revoked "), "{html}");
    assert_eq!(api_state(&app, &token).await, 401, "it stops working at once");
}
}

both_modes! {
async fn a_bad_token_name_creates_nothing_and_says_why() {
    let app = TestApp::builder().demo().start().await;
    let login = app.log_in(&unique_login()).await;
    let long = "x".repeat(61);
    for name in ["", "   ", long.as_str()] {
        let r = login.client.post(format!("{}/dashboard/api-tokens", app.base))
            .form(&[("csrf_token", login.csrf.as_str()), ("name", name)]).send().await.unwrap();
        assert_eq!(r.status(), 422, "{name:?}");
        let html = r.text().await.unwrap();
        assert!(html.contains("The token was not created") && shown_token(&html).is_none(), "{name:?}");
    }
    let bare = login.client.post(format!("{}/dashboard/api-tokens", app.base)).form(&[("name", "x")]).send().await.unwrap();
    assert_eq!(bare.status(), 403, "no CSRF token: refused");
    let stranger = browser(false).get(format!("{}/dashboard/api-tokens", app.base)).send().await.unwrap();
    assert_eq!(stranger.status(), 303, "not logged in: to the login");
    let listed = login.client.get(format!("{}/dashboard/api-tokens", app.base)).send().await.unwrap().text().await.unwrap();
    assert!(listed.contains("No tokens yet."), "nothing was created");
}
}
