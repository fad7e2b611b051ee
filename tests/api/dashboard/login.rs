//! Logging in with Twitch (through the simulator), the login session's
//! life (a new id and CSRF token at login, logout, the maximum age) and its
//! reach (valid on every instance of a deployment).

use std::time::{Duration, Instant};

use crate::helpers::*;

both_modes! {
async fn logging_in_with_twitch_creates_the_account_and_opens_the_dashboard() {
    let app = TestApp::builder().demo().start().await;
    let login = unique_login();

    let LoggedIn { client, html, .. } = app.log_in(&login).await;

    assert!(html.contains(&login), "greets the streamer");
    let streamer = app.streamer_by_login(&login).await;
    let setup = app.repo.overlay_setup(streamer.overlay_id).await.unwrap().unwrap();
    assert_eq!(setup.config.version, 1, "default config on first login");
    assert_eq!(overlay_in(&html), streamer.overlay_id);
    // Already logged in: /auth/login goes straight to the dashboard.
    let again = client.get(format!("{}/auth/login", app.base)).send().await.unwrap();
    assert!(again.url().path().ends_with("/dashboard"));
    // Logging in again keeps the same account and overlay.
    let html2 = app.log_in(&login).await.html;
    assert_eq!(overlay_in(&html2), streamer.overlay_id);
}
}

both_modes! {
async fn denied_consent_shows_a_friendly_page_and_logs_nobody_in() {
    let app = TestApp::builder().demo().start().await;
    let client = browser(false);
    let start = client.get(format!("{}/auth/login", app.base)).send().await.unwrap();
    let location = start.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&format!("{}/oauth2/authorize?", app.simulator_url())), "{location}");
    assert!(location.contains("scope=channel%3Abot"), "{location}");
    let state = location.split("state=").nth(1).unwrap().split('&').next().unwrap().to_owned();
    let before = app.repo.list_streamers().await.unwrap().len();

    let denied = client
        .get(format!("{}/auth/callback?error=access_denied&error_description=The+user+denied+you+access&state={state}", app.base))
        .send()
        .await
        .unwrap();

    assert_eq!(denied.status(), 403);
    let html = denied.text().await.unwrap();
    assert!(html.contains("The user denied you access"), "{html}");
    let dashboard = client.get(format!("{}/dashboard", app.base)).send().await.unwrap();
    assert_eq!(dashboard.headers()["location"], "/auth/login", "no session");
    if mode() == Mode::Embedded {
        // (The distributed database is shared with tests running in parallel.)
        assert_eq!(app.repo.list_streamers().await.unwrap().len(), before, "nothing stored");
    }
}
}

both_modes! {
async fn a_wrong_state_or_a_reused_code_is_refused_and_stores_nothing() {
    let app = TestApp::builder().demo().start().await;
    let login = unique_login();
    // Walks the flow by hand up to Twitch's redirect back, returning the
    // callback URL (with code and state).
    let callback_of = |client: reqwest::Client| {
        let (base, login) = (app.base.clone(), login.clone());
        async move {
            let start = client.get(format!("{base}/auth/login?as={login}")).send().await.unwrap();
            let authorize = start.headers()["location"].to_str().unwrap().to_owned();
            let approved = client.get(&authorize).send().await.unwrap();
            approved.headers()["location"].to_str().unwrap().to_owned()
        }
    };

    let forger = browser(false);
    let callback = callback_of(forger.clone()).await;
    let forged = callback.replace("state=", "state=x");
    assert_eq!(forger.get(&forged).send().await.unwrap().status(), 400, "wrong state");
    assert!(app.repo.list_streamers().await.unwrap().iter().all(|s| s.login != login), "nothing stored");
    assert_eq!(forger.get(&callback).send().await.unwrap().status(), 400, "a state is good for one callback");

    // A code is spent by its first exchange...
    let first = browser(false);
    let spent = callback_of(first.clone()).await;
    assert_eq!(first.get(&spent).send().await.unwrap().status(), 303);
    // ...so replaying it with a fresh, valid state is refused by Twitch.
    let second = browser(false);
    let start = second.get(format!("{}/auth/login", app.base)).send().await.unwrap();
    let location = start.headers()["location"].to_str().unwrap().to_owned();
    let state = location.split("state=").nth(1).unwrap().split('&').next().unwrap();
    let code = spent.split("code=").nth(1).unwrap().split('&').next().unwrap();
    let reused = second.get(format!("{}/auth/callback?code={code}&state={state}", app.base)).send().await.unwrap();
    assert_eq!(reused.status(), 502, "Twitch refuses a used code");
    let dashboard = second.get(format!("{}/dashboard", app.base)).send().await.unwrap();
    assert_eq!(dashboard.headers()["location"], "/auth/login");
}
}

/// The `chatpulse_session` cookie a response set, as `name=value`.
fn session_cookie(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("chatpulse_session="))
        .and_then(|c| c.split(';').next())
        .map(str::to_owned)
}

/// Follows a login from `start` by hand on `client`: the last session
/// cookie set on the way, and the page it ends on (URL, HTML).
async fn follow_by_hand(app: &TestApp, client: &reqwest::Client, start: &str) -> (String, String, String) {
    let mut next = format!("{}{start}", app.base);
    let mut cookie = None;
    for _ in 0..10 {
        let r = client.get(&next).send().await.unwrap();
        cookie = session_cookie(&r).or(cookie);
        match r.headers().get("location").and_then(|l| l.to_str().ok()) {
            Some(l) if l.starts_with("http") => next = l.to_owned(),
            Some(l) => next = format!("{}{l}", app.base),
            None => break,
        }
    }
    let html = client.get(&next).send().await.unwrap().text().await.unwrap();
    (cookie.expect("a cookie set at login"), next, html)
}

both_modes! {
async fn logging_in_gives_a_new_session_id_and_a_new_csrf_token() {
    let app = TestApp::builder().demo().start().await;
    let client = browser(false);
    // A session with a CSRF token from before the login: the operator,
    // signed in as the bot account on this browser (visitors get none).
    let (before, page, html) = follow_by_hand(&app, &client, "/auth/bot/start?as=chatpulse_bot").await;
    assert!(page.ends_with("/auth/bot"), "{page}");
    let start = html.find("name=\"csrf-token\" content=\"").unwrap() + 26;
    let old_token = html[start..].split('"').next().unwrap().to_owned();

    let (after, page, html) = follow_by_hand(&app, &client, &format!("/auth/login?as={}", unique_login())).await;

    assert!(page.ends_with("/dashboard"), "logged in: {page}");
    assert_ne!(after, before, "the session id changed at login");
    assert_ne!(csrf(&html), old_token);
    let old = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let with_old = old.get(format!("{}/auth/bot", app.base)).header("cookie", &before).send().await.unwrap();
    assert!(!with_old.text().await.unwrap().contains("Granted scopes"), "the pre-login id opens nothing");
    let forged = client
        .post(format!("{}/auth/logout", app.base))
        .form(&[("csrf_token", old_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403, "a CSRF token from before the login is dead");
    let still = client.get(format!("{}/dashboard", app.base)).send().await.unwrap();
    assert_eq!(still.status(), 200, "still logged in");
}
}

both_modes! {
async fn logout_needs_the_csrf_token_and_ends_the_session() {
    let app = TestApp::builder().demo().start().await;
    let LoggedIn { client, csrf, .. } = app.log_in(&unique_login()).await;

    let forged = client.post(format!("{}/auth/logout", app.base)).form(&[("csrf_token", "nope")]).send().await.unwrap();
    assert_eq!(forged.status(), 403);
    let still = client.get(format!("{}/dashboard", app.base)).send().await.unwrap();
    assert!(still.url().path().ends_with("/dashboard"));

    let out = client.post(format!("{}/auth/logout", app.base)).form(&[("csrf_token", csrf)]).send().await.unwrap();
    assert_eq!(out.status(), 200);
    assert_eq!(out.url().path(), "/");
    assert!(out.text().await.unwrap().contains("Log in with Twitch"), "back on the login page");
    // The old session cookie no longer opens the dashboard.
    let cookieless = browser(false);
    let after = cookieless.get(format!("{}/dashboard", app.base)).send().await.unwrap();
    assert_eq!(after.headers()["location"], "/auth/login");
}
}

#[tokio::test]
async fn a_login_ends_after_its_maximum_age_however_active() {
    const MAX_AGE: Duration = Duration::from_millis(1500);
    let app = TestApp::builder()
        .demo()
        .configure(|c| {
            c.tuning.login_session_max = MAX_AGE;
            // Room for a request every few milliseconds.
            (c.tuning.auth_rate, c.tuning.dashboard_rate) = ((60_000, 1_000), (60_000, 1_000));
        })
        .start()
        .await;
    let before_login = Instant::now();
    let client = app.log_in(&unique_login()).await.client;
    // `/` sends a logged-in streamer to the dashboard and shows anyone else the login page.
    let home = |client: &reqwest::Client| client.get(format!("{}/", app.base)).send();
    assert_eq!(home(&client).await.unwrap().url().path(), "/dashboard", "logged in");

    // Active all along: a request every few milliseconds.
    let ended = eventually(MAX_AGE * 3, || async {
        let page = home(&client).await.unwrap();
        page.status() == 200 && page.url().path() == "/"
    })
    .await;

    assert!(ended, "logged out");
    assert!(before_login.elapsed() >= MAX_AGE, "not before its maximum age: {:?}", before_login.elapsed());
    let after = home(&client).await.unwrap();
    assert_eq!(after.url().path(), "/", "still logged out");
    assert!(after.text().await.unwrap().contains("Log in with Twitch"));
    let save = client.post(format!("{}/api/rotate-overlay-uuid", app.base)).send().await.unwrap();
    assert!(matches!(save.status().as_u16(), 401 | 403), "the old login can change nothing: {}", save.status());
}

#[tokio::test]
async fn a_login_on_one_instance_is_valid_on_another() {
    let Some((db, redis)) = distributed_urls().await else { return eprintln!("SKIPPED: distributed URLs unset") };
    let one = TestApp::builder().demo().distributed(&db, &redis).start().await;
    let two = TestApp::builder().distributed(&db, &redis).configure(|c| c.public_url = one.base.clone()).start().await;
    let login = unique_login();
    let client = one.log_in(&login).await.client;

    let there = client.get(format!("{}/dashboard", two.base)).send().await.unwrap();

    assert_eq!(there.status(), 200);
    assert!(there.url().path().ends_with("/dashboard"));
    assert!(there.text().await.unwrap().contains(&login));
}
