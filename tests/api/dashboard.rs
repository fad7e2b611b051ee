//! Streamer login through the Twitch simulator, the dashboard, and account
//! security: real HTTP with a cookie jar, in both storage shapes.

use std::time::Duration;

use chatpulse::crypto::TokenCipher;
use chatpulse::domain::OverlayId;
use futures_util::StreamExt;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(3);

/// A browser-like client: keeps cookies, follows redirects (or not).
fn browser(follow: bool) -> reqwest::Client {
    let policy = if follow { reqwest::redirect::Policy::limited(10) } else { reqwest::redirect::Policy::none() };
    reqwest::Client::builder().cookie_store(true).redirect(policy).build().unwrap()
}

fn sim_url(app: &TestApp) -> String {
    app.demo.as_ref().expect("simulator").simulator_url.clone()
}

/// Logs `login` in through the simulator (auto-approved) and returns the
/// client and the dashboard HTML.
async fn log_in(app: &TestApp, login: &str) -> (reqwest::Client, String) {
    let client = browser(true);
    let response = client.get(format!("{}/auth/login?as={login}", app.base)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.url().path().ends_with("/dashboard"), "landed on {}", response.url());
    let html = response.text().await.unwrap();
    (client, html)
}

fn csrf(html: &str) -> String {
    let pattern = "name=\"csrf_token\" value=\"";
    let start = html.find(pattern).expect("a CSRF field") + pattern.len();
    html[start..].split('"').next().unwrap().to_owned()
}

fn overlay_in(html: &str) -> OverlayId {
    let start = html.find("/overlay/").expect("an overlay URL") + 9;
    html[start..start + 36].parse().unwrap()
}

async fn streamer_by_login(app: &TestApp, login: &str) -> chatpulse::store::Streamer {
    app.repo.list_streamers().await.unwrap().into_iter().find(|s| s.login == login).expect("stored")
}

fn unique_login() -> String {
    format!("streamer{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

both_modes! {
async fn logging_in_with_twitch_creates_the_account_and_opens_the_dashboard() {
    let app = spawn_demo_app_with(|_| {}).await;
    let login = unique_login();

    let (client, html) = log_in(&app, &login).await;

    assert!(html.contains(&login), "greets the streamer");
    let streamer = streamer_by_login(&app, &login).await;
    let setup = app.repo.overlay_setup(streamer.overlay_id).await.unwrap().unwrap();
    assert_eq!(setup.config.version, 1, "default config on first login");
    assert_eq!(overlay_in(&html), streamer.overlay_id);
    // Already logged in: /auth/login goes straight to the dashboard.
    let again = client.get(format!("{}/auth/login", app.base)).send().await.unwrap();
    assert!(again.url().path().ends_with("/dashboard"));
    // Logging in again keeps the same account and overlay.
    let (_, html2) = log_in(&app, &login).await;
    assert_eq!(overlay_in(&html2), streamer.overlay_id);
}
}

both_modes! {
async fn tokens_are_stored_encrypted_and_decrypt_to_a_valid_twitch_token() {
    let app = spawn_demo_app_with(|_| {}).await;
    let login = unique_login();
    log_in(&app, &login).await;
    let streamer = streamer_by_login(&app, &login).await;

    let stored = app.repo.tokens(streamer.id).await.unwrap().expect("tokens stored");

    let cipher = TokenCipher::new(chatpulse::config::DEV_TOKEN_ENCRYPTION_KEY, None).unwrap();
    let access = cipher.decrypt(&stored.access_token, streamer.twitch_user_id.as_str()).unwrap();
    let refresh = cipher.decrypt(&stored.refresh_token, streamer.twitch_user_id.as_str()).unwrap();
    for (plain, bytes) in [(&access, &stored.access_token), (&refresh, &stored.refresh_token)] {
        assert!(!bytes.windows(plain.len()).any(|w| w == plain.as_bytes()), "no plaintext in the database");
    }
    assert_eq!(stored.scopes, vec!["channel:bot".to_owned()]);
    let validate = reqwest::Client::new()
        .get(format!("{}/oauth2/validate", sim_url(&app)))
        .header("Authorization", format!("OAuth {access}"))
        .send()
        .await
        .unwrap();
    assert_eq!(validate.status(), 200, "the decrypted token is the real one");
    // A copy of the ciphertext under another streamer's id does not open.
    assert!(cipher.decrypt(&stored.access_token, "12345").is_err());
}
}

/// Rows of the streamer's tables in which `token` appears in plain text:
/// inside a token column's bytes, or anywhere in the row as text.
async fn rows_containing(app: &TestApp, token: &str) -> i64 {
    match deployment() {
        None => {
            let db = rusqlite::Connection::open(app.data.path().join("chatpulse.db")).unwrap();
            db.query_row(
                "SELECT count(*) FROM users
                 WHERE instr(access_token, ?1) > 0 OR instr(refresh_token, ?1) > 0
                    OR instr(CAST(access_token AS TEXT), ?2) > 0 OR instr(CAST(refresh_token AS TEXT), ?2) > 0
                    OR instr(login || display_name || overlay_uuid || twitch_user_id, ?2) > 0",
                rusqlite::params![token.as_bytes(), token],
                |r| r.get(0),
            )
            .unwrap()
        }
        Some((database_url, _)) => {
            let (db, connection) = tokio_postgres::connect(&database_url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            let row = db
                .query_one(
                    "SELECT count(*) FROM users u
                     WHERE position($1::bytea IN u.access_token) > 0 OR position($1::bytea IN u.refresh_token) > 0
                        OR strpos(u::text, $2) > 0",
                    &[&token.as_bytes(), &token],
                )
                .await
                .unwrap();
            row.get(0)
        }
    }
}

both_modes! {
async fn no_plaintext_token_is_in_the_database() {
    let app = spawn_demo_app_with(|_| {}).await;
    let login = unique_login();
    log_in(&app, &login).await;
    let streamer = streamer_by_login(&app, &login).await;
    let cipher = TokenCipher::new(chatpulse::config::DEV_TOKEN_ENCRYPTION_KEY, None).unwrap();
    let stored = app.repo.tokens(streamer.id).await.unwrap().expect("tokens stored");
    let access = cipher.decrypt(&stored.access_token, streamer.twitch_user_id.as_str()).unwrap();
    let refresh = cipher.decrypt(&stored.refresh_token, streamer.twitch_user_id.as_str()).unwrap();
    assert_ne!(access, refresh);

    // The query finds what it looks for (the login is stored in plain text)...
    assert_eq!(rows_containing(&app, &login).await, 1);
    // ...and neither token.
    assert_eq!(rows_containing(&app, &access).await, 0, "the access token is not stored in plain text");
    assert_eq!(rows_containing(&app, &refresh).await, 0, "the refresh token is not stored in plain text");
}
}

both_modes! {
async fn denied_consent_shows_a_friendly_page_and_logs_nobody_in() {
    let app = spawn_demo_app_with(|_| {}).await;
    let client = browser(false);
    let start = client.get(format!("{}/auth/login", app.base)).send().await.unwrap();
    let location = start.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&format!("{}/oauth2/authorize?", sim_url(&app))), "{location}");
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
    let app = spawn_demo_app_with(|_| {}).await;
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

both_modes! {
async fn logging_in_gives_a_new_session_id_and_a_new_csrf_token() {
    let app = spawn_demo_app_with(|_| {}).await;
    let client = browser(false);
    // A visitor's session before login (the bot page mints a CSRF token).
    let page = client.get(format!("{}/auth/bot", app.base)).send().await.unwrap();
    let before = session_cookie(&page).expect("a session before login");
    let html = page.text().await.unwrap();
    let start = html.find("name=\"csrf-token\" content=\"").unwrap() + 26;
    let old_token = html[start..].split('"').next().unwrap().to_owned();

    // Log in on the same session, following the redirects by hand.
    let mut next = format!("{}/auth/login?as={}", app.base, unique_login());
    let mut after = None;
    for _ in 0..10 {
        let r = client.get(&next).send().await.unwrap();
        after = session_cookie(&r).or(after);
        match r.headers().get("location").and_then(|l| l.to_str().ok()) {
            Some(l) if l.starts_with("http") => next = l.to_owned(),
            Some(l) => next = format!("{}{l}", app.base),
            None => break,
        }
    }
    assert!(next.ends_with("/dashboard"), "logged in: {next}");
    let after = after.expect("a cookie set at login");

    assert_ne!(after, before, "the session id changed at login");
    let old = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let with_old = old.get(format!("{}/dashboard", app.base)).header("cookie", &before).send().await.unwrap();
    assert_eq!(with_old.headers()["location"], "/auth/login", "the pre-login id opens nothing");
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
    let app = spawn_demo_app_with(|_| {}).await;
    let (client, html) = log_in(&app, &unique_login()).await;

    let forged = client.post(format!("{}/auth/logout", app.base)).form(&[("csrf_token", "nope")]).send().await.unwrap();
    assert_eq!(forged.status(), 403);
    let still = client.get(format!("{}/dashboard", app.base)).send().await.unwrap();
    assert!(still.url().path().ends_with("/dashboard"));

    let out = client.post(format!("{}/auth/logout", app.base)).form(&[("csrf_token", csrf(&html))]).send().await.unwrap();
    assert_eq!(out.status(), 200);
    assert_eq!(out.url().path(), "/");
    assert!(out.text().await.unwrap().contains("Log in with Twitch"), "back on the login page");
    // The old session cookie no longer opens the dashboard.
    let cookieless = browser(false);
    let after = cookieless.get(format!("{}/dashboard", app.base)).send().await.unwrap();
    assert_eq!(after.headers()["location"], "/auth/login");
}
}

both_modes! {
async fn saving_the_config_bumps_the_version_and_updates_open_overlays() {
    let app = spawn_demo_app_with(|_| {}).await;
    let (client, html) = log_in(&app, &unique_login()).await;
    let overlay = overlay_in(&html);
    let mut ws = app.connect(&overlay).await;
    ws.next_frame(WAIT).await.expect("initial frame");

    let saved = client
        .post(format!("{}/dashboard/config", app.base))
        .form(&[
            ("csrf_token", csrf(&html).as_str()),
            ("for_trigger", "pizza"),
            ("against_trigger", "pasta"),
            ("left_label", "Team <Pasta>"),
            ("right_label", "Team Pizza"),
            ("decay_speed", "1.5"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), 200);
    assert!(saved.url().query().unwrap_or("").contains("saved"));
    let page = saved.text().await.unwrap();
    assert!(page.contains("Team &#60;Pasta&#62;") || page.contains("Team &lt;Pasta&gt;"), "escaped");

    // The open overlay gets the new labels within a second, without a reload.
    let labelled = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            match ws.ws.next().await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) if t.contains("left_label") => return t,
                Some(Ok(_)) => continue,
                other => panic!("connection ended: {other:?}"),
            }
        }
    })
    .await
    .expect("labels within a second");
    let frame: serde_json::Value = serde_json::from_str(&labelled).unwrap();
    assert_eq!(frame["left_label"], "Team <Pasta>");
    assert_eq!(frame["right_label"], "Team Pizza");
    let setup = app.repo.overlay_setup(overlay).await.unwrap().unwrap();
    assert_eq!(setup.config.version, 2);
    assert_eq!(setup.config.config.for_trigger.as_str(), "pizza");
}
}

both_modes! {
async fn invalid_settings_are_explained_kept_in_the_form_and_not_saved() {
    let app = spawn_demo_app_with(|_| {}).await;
    let (client, html) = log_in(&app, &unique_login()).await;
    let overlay = overlay_in(&html);
    let token = csrf(&html);
    let long = "x".repeat(51);
    type Case<'a> = (&'a str, [(&'a str, &'a str); 5], &'a str);
    let cases: Vec<Case> = vec![
        ("empty word", [("for_trigger", ""), ("against_trigger", "no"), ("left_label", "L"), ("right_label", "R"), ("decay_speed", "0.5")], "for_trigger-error"),
        ("too long", [("for_trigger", "yes"), ("against_trigger", &long), ("left_label", "L"), ("right_label", "R"), ("decay_speed", "0.5")], "against_trigger-error"),
        ("whitespace label", [("for_trigger", "yes"), ("against_trigger", "no"), ("left_label", "   "), ("right_label", "R"), ("decay_speed", "0.5")], "left_label-error"),
        ("same words", [("for_trigger", "Yes"), ("against_trigger", "yES"), ("left_label", "L"), ("right_label", "R"), ("decay_speed", "0.5")], "against_trigger-error"),
        ("decay too high", [("for_trigger", "yes"), ("against_trigger", "no"), ("left_label", "L"), ("right_label", "R"), ("decay_speed", "2.5")], "decay_speed-error"),
        ("decay not a number", [("for_trigger", "yes"), ("against_trigger", "no"), ("left_label", "L"), ("right_label", "R"), ("decay_speed", "fast")], "decay_speed-error"),
        ("whitespace word", [("for_trigger", "   "), ("against_trigger", "no"), ("left_label", "L"), ("right_label", "R"), ("decay_speed", "0.5")], "for_trigger-error"),
        ("decay too low", [("for_trigger", "yes"), ("against_trigger", "no"), ("left_label", "L"), ("right_label", "R"), ("decay_speed", "0.05")], "decay_speed-error"),
        ("decay zero", [("for_trigger", "yes"), ("against_trigger", "no"), ("left_label", "L"), ("right_label", "R"), ("decay_speed", "0")], "decay_speed-error"),
        ("decay negative", [("for_trigger", "yes"), ("against_trigger", "no"), ("left_label", "L"), ("right_label", "R"), ("decay_speed", "-1")], "decay_speed-error"),
    ];
    for (what, fields, error_id) in cases {
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        form.push(("csrf_token", &token));
        let response = client.post(format!("{}/dashboard/config", app.base)).form(&form).send().await.unwrap();
        assert_eq!(response.status(), 422, "{what}");
        let page = response.text().await.unwrap();
        assert!(page.contains(&format!("id=\"{error_id}\"")), "{what}: error shown next to the field");
        for (_, value) in fields.iter().filter(|(_, v)| v.len() < 40) {
            assert!(page.contains(&format!("value=\"{value}\"")), "{what}: typed value {value} kept");
        }
    }
    let huge = "x".repeat(20 * 1024);
    let oversized = client
        .post(format!("{}/dashboard/config", app.base))
        .form(&[("csrf_token", token.as_str()), ("for_trigger", &huge)])
        .send()
        .await
        .unwrap();
    assert_eq!(oversized.status(), 413);
    assert_eq!(app.repo.overlay_setup(overlay).await.unwrap().unwrap().config.version, 1, "nothing saved");
}
}

both_modes! {
async fn without_the_csrf_token_nothing_changes() {
    let app = spawn_demo_app_with(|_| {}).await;
    let login = unique_login();
    let (client, html) = log_in(&app, &login).await;
    let overlay = overlay_in(&html);
    let streamer = streamer_by_login(&app, &login).await;
    // The bar is off the centre, so a reset that was wrongly accepted would show.
    let mut ws = app.connect(&overlay).await;
    ws.next_frame(WAIT).await.expect("initial frame");
    assert_eq!(app.chat(&streamer.twitch_user_id, "1", "yes").await, 204);
    ws.wait_for(WAIT, |f| f.value > 9.0).await.expect("moved");
    let config = [("for_trigger", "a"), ("against_trigger", "b"), ("left_label", "L"), ("right_label", "R"), ("decay_speed", "1")];
    let post = |path: &str| client.post(format!("{}{path}", app.base));

    let missing = post("/dashboard/config").form(&config).send().await.unwrap();
    assert_eq!(missing.status(), 403, "config without a token");
    let mut wrong = config.to_vec();
    wrong.push(("csrf_token", "0000"));
    assert_eq!(post("/dashboard/config").form(&wrong).send().await.unwrap().status(), 403, "config with a wrong token");
    assert_eq!(post("/api/rotate-overlay-uuid").send().await.unwrap().status(), 403, "rotate without a token");
    let rotate = post("/api/rotate-overlay-uuid").header("X-CSRF-Token", "wrong").send().await.unwrap();
    assert_eq!(rotate.status(), 403, "rotate with a wrong header token");
    let reset = post(&format!("/api/reset/{overlay}")).header("X-CSRF-Token", "bad").send().await.unwrap();
    assert_eq!(reset.status(), 403, "reset with a wrong header token");
    let reset = post(&format!("/api/reset/{overlay}")).form(&[("csrf_token", "bad")]).send().await.unwrap();
    assert_eq!(reset.status(), 403, "reset with a wrong form token");
    let logout = post("/auth/logout").form(&[("other", "field")]).send().await.unwrap();
    assert_eq!(logout.status(), 403, "logout without a token");

    let setup = app.repo.overlay_setup(overlay).await.unwrap().expect("same overlay URL");
    assert_eq!(setup.config.version, 1, "config unchanged");
    let mut fresh = app.connect(&overlay).await;
    let now = fresh.next_frame(WAIT).await.expect("initial frame");
    assert!(now.value > 1.0, "the bar was not reset: {now:?}");
    let still = client.get(format!("{}/dashboard", app.base)).send().await.unwrap();
    assert!(still.url().path().ends_with("/dashboard"), "still logged in");
}
}

both_modes! {
async fn reset_centres_the_bar_and_rotation_kills_the_old_url() {
    let app = spawn_demo_app_with(|_| {}).await;
    let login = unique_login();
    let (client, html) = log_in(&app, &login).await;
    let token = csrf(&html);
    let old = overlay_in(&html);
    let streamer = streamer_by_login(&app, &login).await;
    let mut ws = app.connect(&old).await;
    ws.next_frame(WAIT).await;
    app.chat(&streamer.twitch_user_id, "1", "yes").await;
    ws.wait_for(WAIT, |f| f.value > 9.0).await.expect("moved");

    let reset = client.post(format!("{}/api/reset/{old}", app.base)).header("X-CSRF-Token", &token).send().await.unwrap();
    assert_eq!(reset.status(), 204);
    ws.wait_for(WAIT, |f| f.value == 0.0).await.expect("centred");
    // Someone else's overlay cannot be reset.
    let other = app.add_streamer().await;
    let foreign = client
        .post(format!("{}/api/reset/{}", app.base, other.streamer.overlay_id))
        .header("X-CSRF-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);

    let rotated = client.post(format!("{}/api/rotate-overlay-uuid", app.base)).header("X-CSRF-Token", &token).send().await.unwrap();
    assert_eq!(rotated.status(), 200);
    let body: serde_json::Value = rotated.json().await.unwrap();
    let new: OverlayId = body["overlay_url"].as_str().unwrap().rsplit('/').next().unwrap().parse().unwrap();
    assert_ne!(new, old);
    let close = ws.wait_for_close(WAIT).await.expect("old overlay closed").expect("close frame");
    assert_eq!(u16::from(close.code), 4404);
    assert_eq!(app.http.get(format!("{}/overlay/{old}", app.base)).send().await.unwrap().status(), 404);
    assert_eq!(app.http.get(format!("{}/overlay/{new}", app.base)).send().await.unwrap().status(), 200);
    assert!(app.try_connect(&old).await.is_err());
    let mut fresh = app.connect(&new).await;
    assert!(fresh.next_frame(WAIT).await.is_some());
}
}

#[tokio::test]
async fn login_pages_are_rate_limited_per_address() {
    let app = spawn_demo_app_with(|c| c.tuning.auth_rate = (1, 3)).await;
    let client = browser(false);
    let mut statuses = vec![];
    for _ in 0..5 {
        let r = client.get(format!("{}/auth/login", app.base)).send().await.unwrap();
        statuses.push((r.status().as_u16(), r.headers().get("retry-after").is_some()));
    }
    assert_eq!(&statuses[..3], &[(303, false); 3]);
    assert_eq!(statuses[3], (429, true));
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_has_its_own_budget_and_nobody_else_is_believed() {
    let login = |app: &TestApp, forwarded_for: &'static str| {
        let url = format!("{}/auth/login", app.base);
        async move {
            let r = browser(false).get(url).header("x-forwarded-for", forwarded_for).send().await.unwrap();
            r.status().as_u16()
        }
    };
    // The tests reach the service from 127.0.0.1: here, the load balancer.
    let behind = spawn_demo_app_with(|c| {
        c.tuning.auth_rate = (1, 2);
        c.trusted_proxies = vec![chatpulse::config::IpNet::parse("127.0.0.1").unwrap()];
    })
    .await;
    for _ in 0..2 {
        assert_eq!(login(&behind, "203.0.113.1").await, 303);
    }
    assert_eq!(login(&behind, "203.0.113.1").await, 429, "this client used its budget");
    assert_eq!(login(&behind, "203.0.113.2").await, 303, "another client behind the same balancer did not");
    // A client cannot pick its own address: the balancer appends the real one.
    assert_eq!(login(&behind, "198.51.100.9, 203.0.113.1").await, 429);

    // Without trusted proxies the header is nobody's word: one budget.
    let direct = spawn_demo_app_with(|c| c.tuning.auth_rate = (1, 2)).await;
    assert_eq!(login(&direct, "203.0.113.1").await, 303);
    assert_eq!(login(&direct, "203.0.113.2").await, 303);
    assert_eq!(login(&direct, "203.0.113.3").await, 429, "the header is ignored");
}

#[tokio::test]
async fn a_login_ends_after_its_maximum_age_however_active() {
    let app = spawn_demo_app_with(|c| c.tuning.login_session_max = Duration::from_millis(1500)).await;
    let (client, _) = log_in(&app, &unique_login()).await;
    // `/` sends a logged-in streamer to the dashboard and shows anyone else the login page.
    let home = |client: &reqwest::Client| client.get(format!("{}/", app.base)).send();
    assert_eq!(home(&client).await.unwrap().url().path(), "/dashboard", "logged in");

    tokio::time::sleep(Duration::from_millis(1700)).await;

    let after = home(&client).await.unwrap();
    assert_eq!(after.url().path(), "/", "logged out");
    assert!(after.text().await.unwrap().contains("Log in with Twitch"));
    let save = client.post(format!("{}/api/rotate-overlay-uuid", app.base)).send().await.unwrap();
    assert!(matches!(save.status().as_u16(), 401 | 403), "the old login can change nothing: {}", save.status());
}

both_modes! {
async fn dashboard_and_api_posts_are_rate_limited_per_address() {
    // Logging in spends one request of the budget (the dashboard page).
    let app = spawn_demo_app_with(|c| c.tuning.dashboard_rate = (1, 3)).await;
    let (client, html) = log_in(&app, &unique_login()).await;
    let (token, overlay) = (csrf(&html), overlay_in(&html));
    let reset = || client.post(format!("{}/api/reset/{overlay}", app.base)).header("X-CSRF-Token", &token).send();
    assert_eq!(reset().await.unwrap().status(), 204);
    assert_eq!(reset().await.unwrap().status(), 204);

    let limited = reset().await.unwrap();
    assert_eq!(limited.status(), 429, "an /api route");
    assert!(retry_after(&limited) >= 1);
    let config = [
        ("csrf_token", token.as_str()),
        ("for_trigger", "pizza"),
        ("against_trigger", "pasta"),
        ("left_label", "Pasta"),
        ("right_label", "Pizza"),
        ("decay_speed", "1"),
    ];
    let save = client.post(format!("{}/dashboard/config", app.base)).form(&config).send().await.unwrap();
    assert_eq!(save.status(), 429, "a dashboard POST");
    assert!(retry_after(&save) >= 1);
    let rotate = client.post(format!("{}/api/rotate-overlay-uuid", app.base)).header("X-CSRF-Token", &token).send().await.unwrap();
    assert_eq!(rotate.status(), 429);

    let setup = app.repo.overlay_setup(overlay).await.unwrap().expect("the overlay URL was not rotated");
    assert_eq!(setup.config.version, 1, "nothing saved");
}
}

/// `Retry-After` in whole seconds.
fn retry_after(response: &reqwest::Response) -> u64 {
    let value = response.headers().get("retry-after").expect("a Retry-After header");
    value.to_str().unwrap().parse().expect("Retry-After in seconds")
}

both_modes! {
async fn pages_carry_security_headers() {
    let app = spawn_demo_app_with(|_| {}).await;
    let (client, _) = log_in(&app, &unique_login()).await;
    let dashboard = client.get(format!("{}/dashboard", app.base)).send().await.unwrap();
    let h = dashboard.headers();
    assert!(h["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(h.get("strict-transport-security").is_none(), "HSTS only in production");
    let cookie = client.get(format!("{}/", app.base)).send().await.unwrap();
    assert_eq!(cookie.status(), 200);
    let s = app.add_streamer().await;
    let overlay = app.http.get(format!("{}/overlay/{}", app.base, s.streamer.overlay_id)).send().await.unwrap();
    assert!(overlay.headers()["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'self'"));
}
}

both_modes! {
async fn the_session_cookie_is_http_only_lax_and_signed() {
    let app = spawn_demo_app_with(|_| {}).await;
    let client = browser(false);
    let start = client.get(format!("{}/auth/login", app.base)).send().await.unwrap();
    let cookie = start.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("chatpulse_session="), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(!cookie.contains("Secure"), "not Secure in development: {cookie}");
}
}

/// A configuration that passes the production checks (`Config::from_lookup`
/// with `APP_ENV=production`), with Twitch on an https:// address where
/// nothing answers.
fn production_config() -> chatpulse::config::Config {
    let vars: &[(&str, &str)] = &[
        ("APP_ENV", "production"),
        ("PORT", "0"),
        ("PUBLIC_URL", "https://chatpulse.example"),
        ("TWITCH_CLIENT_ID", "cp1exampleclientid00000000000a"),
        ("TWITCH_CLIENT_SECRET", "s3cr3tvalue000000000000000000"),
        ("TWITCH_API_URL", "https://127.0.0.1:9/helix"),
        ("TWITCH_AUTH_URL", "https://127.0.0.1:9/oauth2"),
        ("TWITCH_EVENTSUB_WS_URL", "wss://127.0.0.1:9/ws"),
        ("SESSION_SECRET", "x7f3d9a0c2e4b6f8a1c3e5d7b9f0a2c4e6d8b0f1a3c5e7d9b2f4a6c8e0d1b3f5a7"),
        ("WEBHOOK_SECRET", "a-real-webhook-secret-42"),
        ("TOKEN_ENCRYPTION_KEY", "8e1f0a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7"),
        ("BOT_USER_ID", "99887766"),
    ];
    chatpulse::config::Config::from_lookup(|k| vars.iter().find(|(name, _)| *name == k).map(|(_, v)| (*v).to_owned()))
        .expect("a valid production configuration")
}

both_modes! {
async fn production_pages_send_hsts_and_secure_cookies() {
    let app = spawn_app_with(|c| {
        let mut production = production_config();
        // This test's storage (embedded data directory or distributed
        // deployment) and leader key.
        production.storage = c.storage.clone();
        production.tuning.leader_key = c.tuning.leader_key.clone();
        production.tuning.shutdown_drain = Duration::ZERO;
        *c = production;
    })
    .await;
    let client = browser(false);

    let start = client.get(format!("{}/auth/login", app.base)).send().await.unwrap();

    assert_eq!(start.status(), 303, "to Twitch");
    let cookie = start.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("chatpulse_session="), "{cookie}");
    assert!(cookie.contains("; Secure"), "Secure in production: {cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
    for path in ["/auth/login", "/", "/health/live"] {
        let r = client.get(format!("{}{path}", app.base)).send().await.unwrap();
        let hsts = r.headers().get("strict-transport-security").map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(hsts.as_deref(), Some("max-age=31536000; includeSubDomains"), "{path}");
    }
    let home = client.get(format!("{}/", app.base)).send().await.unwrap();
    assert_eq!(home.headers()["x-frame-options"], "DENY");
    assert_eq!(home.headers()["x-content-type-options"], "nosniff");
}
}

#[tokio::test]
async fn a_login_on_one_instance_is_valid_on_another() {
    let Some((db, redis)) = distributed_urls().await else { return eprintln!("SKIPPED: distributed URLs unset") };
    let distributed = |c: &mut chatpulse::config::Config| {
        c.storage = chatpulse::config::StorageMode::Distributed {
            database_url: chatpulse::config::Secret::new(db.clone()),
            redis_url: chatpulse::config::Secret::new(redis.clone()),
        };
    };
    let one = spawn_demo_app_with(distributed).await;
    let two = spawn_app_with(|c| {
        distributed(c);
        c.public_url = one.base.clone();
    })
    .await;
    let login = unique_login();
    let (client, _) = log_in(&one, &login).await;

    let there = client.get(format!("{}/dashboard", two.base)).send().await.unwrap();

    assert_eq!(there.status(), 200);
    assert!(there.url().path().ends_with("/dashboard"));
    assert!(there.text().await.unwrap().contains(&login));
}

/// A distributed deployment's settings for `spawn_*_with`.
fn deployment_of(db: &str, redis: &str, leader_key: &str) -> impl Fn(&mut chatpulse::config::Config) {
    let (db, redis, leader_key) = (db.to_owned(), redis.to_owned(), leader_key.to_owned());
    move |c| {
        c.storage = chatpulse::config::StorageMode::Distributed {
            database_url: chatpulse::config::Secret::new(db.clone()),
            redis_url: chatpulse::config::Secret::new(redis.clone()),
        };
        c.tuning.leader_key = leader_key.clone();
    }
}

/// The next text frame carrying labels, within `within`.
async fn labels_frame(ws: &mut OverlayClient, within: Duration) -> serde_json::Value {
    let text = tokio::time::timeout(within, async {
        loop {
            match ws.ws.next().await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) if t.contains("left_label") => return t,
                Some(Ok(_)) => continue,
                other => panic!("connection ended: {other:?}"),
            }
        }
    })
    .await
    .expect("labels within the time allowed");
    serde_json::from_str(&text).unwrap()
}

/// Two instances of one deployment: what a streamer does on the dashboard
/// of instance 1 reaches the overlay held open on instance 2.
#[tokio::test]
async fn dashboard_actions_on_one_instance_reach_overlays_on_another() {
    let Some((db, redis)) = distributed_urls().await else { return eprintln!("SKIPPED: distributed URLs unset") };
    let leader_key = format!("cleanup:leader:{}", uuid::Uuid::new_v4());
    let one = spawn_demo_app_with(deployment_of(&db, &redis, &leader_key)).await;
    let base_one = one.base.clone();
    let two = spawn_app_with(move |c| {
        deployment_of(&db, &redis, &leader_key)(c);
        c.public_url = base_one;
    })
    .await;
    let login = unique_login();
    let (client, html) = log_in(&one, &login).await;
    let (token, old) = (csrf(&html), overlay_in(&html));
    let streamer = streamer_by_login(&one, &login).await;
    let mut overlay = two.connect(&old).await;
    overlay.next_frame(WAIT).await.expect("initial frame");

    // Saving the settings on instance 1: instance 2's overlay shows the new
    // labels within a second.
    let config = [
        ("csrf_token", token.as_str()),
        ("for_trigger", "pizza"),
        ("against_trigger", "pasta"),
        ("left_label", "Team Pasta"),
        ("right_label", "Team Pizza"),
        ("decay_speed", "0.2"),
    ];
    let saved = client.post(format!("{}/dashboard/config", one.base)).form(&config).send().await.unwrap();
    assert!(saved.url().query().unwrap_or("").contains("saved"), "saved: {}", saved.status());
    let frame = labels_frame(&mut overlay, Duration::from_secs(1)).await;
    assert_eq!((frame["left_label"].as_str(), frame["right_label"].as_str()), (Some("Team Pasta"), Some("Team Pizza")));

    // Resetting on instance 1 centres the bar on instance 2.
    assert_eq!(two.chat(&streamer.twitch_user_id, "1", "pizza").await, 204, "the new word counts");
    overlay.wait_for(WAIT, |f| f.value > 9.0).await.expect("moved");
    let reset = client.post(format!("{}/api/reset/{old}", one.base)).header("X-CSRF-Token", &token).send().await;
    assert_eq!(reset.unwrap().status(), 204);
    overlay.wait_for(WAIT, |f| f.value == 0.0).await.expect("centred on instance 2");

    // Rotating on instance 1 closes instance 2's overlay; the old page is
    // gone on both.
    let rotate = client.post(format!("{}/api/rotate-overlay-uuid", one.base)).header("X-CSRF-Token", &token);
    assert_eq!(rotate.send().await.unwrap().status(), 200);
    let close = overlay.wait_for_close(WAIT).await.expect("instance 2 closed the overlay").expect("a close frame");
    assert_eq!(u16::from(close.code), 4404);
    for app in [&one, &two] {
        let page = app.http.get(format!("{}/overlay/{old}", app.base)).send().await.unwrap();
        assert_eq!(page.status(), 404, "the old overlay page on {}", app.base);
        assert!(app.try_connect(&old).await.is_err(), "the old overlay socket on {}", app.base);
    }
}

/// PostgreSQL goes away while a streamer saves their settings: they get the
/// form back, as typed, with a message saying nothing was changed, and
/// nothing was written; once PostgreSQL is back the same form saves.
#[tokio::test]
async fn a_save_while_postgres_is_down_gives_the_form_back_and_changes_nothing() {
    let Some((db, redis)) = distributed_urls().await else { return eprintln!("SKIPPED: distributed URLs unset") };
    let proxy = TcpProxy::new("127.0.0.1:5432".parse().unwrap());
    let proxied = db.replacen("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port), 1);
    assert_ne!(proxied, db, "TEST_DATABASE_URL points at 127.0.0.1:5432");
    proxy.start().await;
    let leader_key = format!("cleanup:leader:{}", uuid::Uuid::new_v4());
    let app = spawn_demo_app_with(deployment_of(&proxied, &redis, &leader_key)).await;
    let (client, html) = log_in(&app, &unique_login()).await;
    let overlay = overlay_in(&html);
    let mut ws = app.connect(&overlay).await;
    ws.next_frame(WAIT).await.expect("initial frame");
    let before = app.repo.overlay_setup(overlay).await.unwrap().expect("stored");
    let typed = [
        ("csrf_token", csrf(&html)),
        ("for_trigger", "pizza".to_owned()),
        ("against_trigger", "pasta".to_owned()),
        ("left_label", "Team Pasta".to_owned()),
        ("right_label", "Team Pizza".to_owned()),
        ("decay_speed", "1.5".to_owned()),
    ];

    proxy.stop();
    let refused = client.post(format!("{}/dashboard/config", app.base)).form(&typed).send().await.unwrap();

    assert_eq!(refused.status(), 503);
    assert!(refused.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let page = refused.text().await.unwrap();
    assert!(page.contains("could not be saved right now") && page.contains("Nothing was changed"), "{page}");
    for (name, value) in &typed[1..] {
        assert!(page.contains(&format!("value=\"{value}\"")), "{name} kept as typed: {page}");
    }
    assert!(page.contains("action=\"/dashboard/config\""), "the form can be sent again");
    assert!(page.contains(&format!("value=\"{}\"", typed[0].1)), "with its CSRF token");

    // Loading the dashboard meanwhile gets a page that says what is wrong,
    // not a bare error text.
    let shown = client.get(format!("{}/dashboard", app.base)).send().await.unwrap();
    assert_eq!(shown.status(), 503);
    assert_eq!(shown.headers()["retry-after"], "30");
    assert!(shown.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let shown = shown.text().await.unwrap();
    assert!(shown.contains("can’t be loaded right now") && shown.contains("Your overlay keeps working"), "{shown}");
    assert!(shown.contains("href=\"/dashboard\""), "with a way to retry: {shown}");

    proxy.start().await;
    let after = wait_for_setup(&app, overlay).await;
    assert_eq!(after.config.version, before.config.version, "nothing written");
    assert_eq!(after.config.config, before.config.config);
    let live = redis_cli(&redis, &["HGET", &format!("session:{{{overlay}}}"), "config"]).await;
    let live: serde_json::Value = serde_json::from_str(&live).unwrap();
    assert_eq!(live["for_trigger"], before.config.config.for_trigger.as_str(), "the live session is unchanged");

    let saved = eventually(Duration::from_secs(10), || async {
        let r = client.post(format!("{}/dashboard/config", app.base)).form(&typed).send().await.unwrap();
        r.url().query().unwrap_or("").contains("saved")
    })
    .await;
    assert!(saved, "the same form saves once PostgreSQL is back");
    assert_eq!(labels_frame(&mut ws, Duration::from_secs(1)).await["left_label"], "Team Pasta");
}

/// The overlay's stored setup, once the database answers again.
async fn wait_for_setup(app: &TestApp, overlay: OverlayId) -> chatpulse::store::OverlaySetup {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match app.repo.overlay_setup(overlay).await {
            Ok(Some(setup)) => return setup,
            other if std::time::Instant::now() > deadline => panic!("the database never answered: {other:?}"),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn sim_user_id(app: &TestApp, login: &str) -> String {
    let state: serde_json::Value =
        reqwest::get(format!("{}/sim/state", sim_url(app))).await.unwrap().json().await.unwrap();
    let users = state["users"].as_array().expect("users in the simulator state");
    users.iter().find(|u| u["login"] == login).and_then(|u| u["id"].as_str()).expect("user exists").to_owned()
}

async fn decrypted_access_token(app: &TestApp, login: &str) -> (chatpulse::store::Streamer, Option<String>) {
    let streamer = streamer_by_login(app, login).await;
    let stored = app.repo.tokens(streamer.id).await.unwrap();
    let cipher = TokenCipher::new(chatpulse::config::DEV_TOKEN_ENCRYPTION_KEY, None).unwrap();
    let token = stored.map(|t| cipher.decrypt(&t.access_token, streamer.twitch_user_id.as_str()).unwrap());
    (streamer, token)
}

#[tokio::test]
async fn a_token_twitch_no_longer_accepts_is_refreshed() {
    let app = spawn_demo_app_with(|c| c.tuning.token_check_interval = Duration::from_millis(200)).await;
    let login = unique_login();
    log_in(&app, &login).await;
    let (_, old) = decrypted_access_token(&app, &login).await;
    let old = old.unwrap();
    let client_id = twitch_sim::SimConfig::default().client_id;
    let revoked = reqwest::Client::new()
        .post(format!("{}/oauth2/revoke", sim_url(&app)))
        .form(&[("client_id", client_id.as_str()), ("token", old.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);

    let refreshed = eventually(Duration::from_secs(5), || async {
        decrypted_access_token(&app, &login).await.1.is_some_and(|t| t != old)
    })
    .await;

    assert!(refreshed, "a new access token was stored");
    let (streamer, new) = decrypted_access_token(&app, &login).await;
    assert!(!app.repo.streamer(streamer.id).await.unwrap().unwrap().streamer.needs_relogin);
    let validate = reqwest::Client::new()
        .get(format!("{}/oauth2/validate", sim_url(&app)))
        .header("Authorization", format!("OAuth {}", new.unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(validate.status(), 200);
    let counted =
        eventually(WAIT, || async { app.metric("chatpulse_token_checks_total{outcome=\"refreshed\"}").await >= 1.0 })
            .await;
    assert!(counted, "the refresh is counted");
}

#[tokio::test]
async fn a_twitch_outage_during_a_refresh_keeps_the_tokens() {
    let app = spawn_demo_app_with(|c| c.tuning.token_check_interval = Duration::from_millis(200)).await;
    let login = unique_login();
    log_in(&app, &login).await;
    let (streamer, old) = decrypted_access_token(&app, &login).await;
    let old = old.unwrap();
    let stored_before = app.repo.tokens(streamer.id).await.unwrap().unwrap();
    // The access token is dead, so the check must refresh; Twitch's token
    // endpoint is down (503 with its JSON error body) meanwhile.
    let faulted = reqwest::Client::new()
        .post(format!("{}/sim/faults", sim_url(&app)))
        .json(&serde_json::json!({"status": 503, "count": 1000, "target": "oauth_token"}))
        .send()
        .await
        .unwrap();
    assert_eq!(faulted.status(), 200);
    let client_id = twitch_sim::SimConfig::default().client_id;
    let form = [("client_id", client_id.as_str()), ("token", old.as_str())];
    let revoked = reqwest::Client::new().post(format!("{}/oauth2/revoke", sim_url(&app))).form(&form).send().await;
    assert_eq!(revoked.unwrap().status(), 200);

    let skipped = eventually(Duration::from_secs(5), || async {
        app.metric("chatpulse_token_checks_total{outcome=\"skipped\"}").await >= 2.0
    })
    .await;

    assert!(skipped, "the failed refreshes are counted as skipped");
    let kept = app.repo.tokens(streamer.id).await.unwrap().expect("tokens kept through the outage");
    assert_eq!(kept.access_token, stored_before.access_token, "unchanged");
    assert!(!app.repo.streamer(streamer.id).await.unwrap().unwrap().streamer.needs_relogin);
    assert_eq!(app.metric("chatpulse_token_checks_total{outcome=\"login_needed\"}").await, 0.0);

    // Twitch is back: the next check refreshes.
    let cleared = reqwest::Client::new()
        .post(format!("{}/sim/faults", sim_url(&app)))
        .json(&serde_json::json!({"status": 503, "count": 0, "target": "oauth_token"}))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), 200);
    let refreshed = eventually(Duration::from_secs(5), || async {
        decrypted_access_token(&app, &login).await.1.is_some_and(|t| t != old)
    })
    .await;
    assert!(refreshed, "refreshed once Twitch answered again");
}

/// A restart of the embedded `first` on its data directory with other token
/// encryption keys, still talking to `first`'s simulator (the same Twitch),
/// checking tokens every 200 ms.
async fn restart_with_keys(first: &TestApp, key: &str, previous: Option<&str>) -> TestApp {
    let (data_path, sim) = (first.data.path().to_path_buf(), sim_url(first));
    let sim_defaults = twitch_sim::SimConfig::default();
    spawn_in(tempfile::TempDir::with_prefix("unused").unwrap(), |c| {
        c.storage = chatpulse::config::StorageMode::Embedded { data_dir: data_path };
        c.twitch_client_id = Some(sim_defaults.client_id.clone());
        c.twitch_client_secret = Some(chatpulse::config::Secret::new(sim_defaults.client_secret.clone()));
        c.twitch_api_url = format!("{sim}/helix");
        c.twitch_auth_url = format!("{sim}/oauth2");
        c.token_encryption_key = chatpulse::config::Secret::new(key);
        c.token_encryption_key_previous = previous.map(chatpulse::config::Secret::new);
        c.tuning.token_check_interval = Duration::from_millis(200);
    })
    .await
}

#[tokio::test]
async fn tokens_that_no_longer_decrypt_are_kept_and_reported_not_deleted() {
    const OLD: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const WRONG: &str = "3333333333333333333333333333333333333333333333333333333333333333";
    let first = spawn_demo_app_with(|c| c.token_encryption_key = chatpulse::config::Secret::new(OLD)).await;
    let login = unique_login();
    log_in(&first, &login).await;
    let streamer = streamer_by_login(&first, &login).await;
    let before = first.repo.tokens(streamer.id).await.unwrap().unwrap();

    // The operator restarts with a new key and forgets the previous one.
    let second = restart_with_keys(&first, WRONG, None).await;

    let reported = eventually(Duration::from_secs(5), || async {
        second.metric("chatpulse_token_checks_total{outcome=\"undecryptable\"}").await >= 2.0
    })
    .await;
    assert!(reported, "reported on every check");
    let after = second.repo.tokens(streamer.id).await.unwrap().expect("not deleted");
    assert_eq!(after.access_token, before.access_token, "left as they were: restoring the key restores them");
    assert!(!second.repo.streamer(streamer.id).await.unwrap().unwrap().streamer.needs_relogin, "nobody logged out");
}

#[tokio::test]
async fn one_instance_at_a_time_checks_the_tokens() {
    let Some((db, redis)) = distributed_urls().await else { return eprintln!("SKIPPED: distributed URLs unset") };
    let distributed = |c: &mut chatpulse::config::Config| {
        c.storage = chatpulse::config::StorageMode::Distributed {
            database_url: chatpulse::config::Secret::new(db.clone()),
            redis_url: chatpulse::config::Secret::new(redis.clone()),
        };
        c.tuning.token_check_interval = Duration::from_millis(200);
    };
    // One deployment: both instances compete for the same leases.
    let key = format!("cleanup:leader:{}", uuid::Uuid::new_v4());
    let one = spawn_demo_app_with(|c| {
        distributed(c);
        c.tuning.leader_key = key.clone();
    })
    .await;
    log_in(&one, &unique_login()).await;
    let (sim, sim_defaults) = (sim_url(&one), twitch_sim::SimConfig::default());
    let two = spawn_app_with(|c| {
        distributed(c);
        c.tuning.leader_key = key.clone();
        c.twitch_client_id = Some(sim_defaults.client_id.clone());
        c.twitch_client_secret = Some(chatpulse::config::Secret::new(sim_defaults.client_secret.clone()));
        c.twitch_api_url = format!("{sim}/helix");
        c.twitch_auth_url = format!("{sim}/oauth2");
    })
    .await;

    tokio::time::sleep(Duration::from_millis(1500)).await;

    let valid = "chatpulse_token_checks_total{outcome=\"valid\"}";
    let (a, b) = (one.metric(valid).await, two.metric(valid).await);
    assert!(a + b >= 3.0, "checks ran: {a} + {b}");
    assert!(a == 0.0 || b == 0.0, "only one instance checks: {a} and {b}");
}

#[tokio::test]
async fn a_streamer_who_disconnected_the_app_must_log_in_again() {
    let app = spawn_demo_app_with(|c| c.tuning.token_check_interval = Duration::from_millis(200)).await;
    let login = unique_login();
    let (client, _) = log_in(&app, &login).await;
    let id = sim_user_id(&app, &login).await;
    let disconnected =
        reqwest::Client::new().post(format!("{}/sim/users/{id}/disconnect", sim_url(&app))).send().await.unwrap();
    assert!(disconnected.status().is_success(), "{}", disconnected.status());

    let flagged = eventually(Duration::from_secs(5), || async {
        let (streamer, token) = decrypted_access_token(&app, &login).await;
        token.is_none() && app.repo.streamer(streamer.id).await.unwrap().unwrap().streamer.needs_relogin
    })
    .await;

    assert!(flagged, "tokens deleted and the streamer flagged");
    let html = client.get(format!("{}/dashboard", app.base)).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("log in again"), "the dashboard says so");
    // Logging in again clears the flag.
    log_in(&app, &login).await;
    let (streamer, token) = decrypted_access_token(&app, &login).await;
    assert!(token.is_some());
    assert!(!app.repo.streamer(streamer.id).await.unwrap().unwrap().streamer.needs_relogin);
}

#[tokio::test]
async fn only_the_configured_bot_account_can_be_linked() {
    let app = spawn_demo_app_with(|_| {}).await;
    let client = browser(true);
    let page = client.get(format!("{}/auth/bot", app.base)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Authorize the bot account"));

    let wrong = client.get(format!("{}/auth/bot/start?as={}", app.base, unique_login())).send().await.unwrap();
    assert_eq!(wrong.status(), 403);
    assert!(wrong.text().await.unwrap().contains("but the bot account is"));
    assert!(app.repo.bot().await.unwrap().is_none_or(|b| b.login == "chatpulse_bot"), "nothing stored");

    let linked = client.get(format!("{}/auth/bot/start?as=chatpulse_bot", app.base)).send().await.unwrap();
    assert_eq!(linked.status(), 200);
    assert!(linked.url().path().ends_with("/auth/bot"));
    let bot = app.repo.bot().await.unwrap().expect("bot linked");
    assert_eq!(bot.login, "chatpulse_bot");
    assert!(bot.tokens.scopes.iter().any(|s| s == "user:bot"));
}

#[tokio::test]
async fn the_bots_grant_is_kept_fresh_and_its_loss_is_shown_and_alarmed() {
    let app = spawn_demo_app_with(|c| c.tuning.token_check_interval = Duration::from_millis(200)).await;
    let operator = browser(true);
    let linked = operator.get(format!("{}/auth/bot/start?as=chatpulse_bot", app.base)).send().await.unwrap();
    assert_eq!(linked.status(), 200);
    let bot = app.repo.bot().await.unwrap().expect("bot linked");
    let cipher = TokenCipher::new(chatpulse::config::DEV_TOKEN_ENCRYPTION_KEY, None).unwrap();
    let owner = bot.twitch_user_id.to_string();
    let first = cipher.decrypt(&bot.tokens.access_token, &owner).unwrap();

    // Twitch stops accepting the access token: the hourly check refreshes it.
    let client_id = twitch_sim::SimConfig::default().client_id;
    let form = [("client_id", client_id.as_str()), ("token", first.as_str())];
    let revoked = reqwest::Client::new().post(format!("{}/oauth2/revoke", sim_url(&app))).form(&form).send().await;
    assert_eq!(revoked.unwrap().status(), 200);
    let refreshed = eventually(Duration::from_secs(5), || async {
        let now = app.repo.bot().await.unwrap().unwrap();
        cipher.decrypt(&now.tokens.access_token, &owner).is_ok_and(|t| t != first)
    })
    .await;
    assert!(refreshed, "a new bot token was stored");
    let page = operator.get(format!("{}/auth/bot", app.base)).send().await.unwrap().text().await.unwrap();
    assert!(!page.contains("no longer accepts"), "still authorized");

    // The bot account disconnects ChatPulse: the operator is alarmed and told.
    let bot_id = sim_user_id(&app, "chatpulse_bot").await;
    reqwest::Client::new().post(format!("{}/sim/users/{bot_id}/disconnect", sim_url(&app))).send().await.unwrap();
    let alarmed = eventually(Duration::from_secs(5), || async {
        app.metric("chatpulse_bot_authorization_lost_total").await >= 1.0
    })
    .await;
    assert!(alarmed, "bot_authorization_lost counted");
    let page = operator.get(format!("{}/auth/bot", app.base)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("no longer accepts the bot account"), "the bot page says so");
    assert!(page.contains("Not authorized yet"), "and does not show it as authorized");
}

#[tokio::test]
async fn a_login_without_the_channel_bot_grant_is_told_to_grant_it() {
    let app = spawn_demo_app_with(|_| {}).await;
    let login = unique_login();
    let (client, html) = log_in(&app, &login).await;
    assert!(!html.contains("does not allow the ChatPulse bot"), "granted at login");
    let streamer = streamer_by_login(&app, &login).await;
    let mut tokens = app.repo.tokens(streamer.id).await.unwrap().unwrap();
    tokens.scopes = vec!["user:read:email".into()];
    app.repo.set_tokens(streamer.id, &tokens).await.unwrap();

    let page = client.get(format!("{}/dashboard", app.base)).send().await.unwrap().text().await.unwrap();

    assert!(page.contains("does not allow the ChatPulse bot into your chat"), "the missing grant is explained");
}

#[tokio::test]
async fn the_dashboard_says_whether_chat_can_be_read() {
    let app = spawn_demo_app_with(|_| {}).await;
    let (client, html) = log_in(&app, &unique_login()).await;
    assert!(html.contains("Chat connects as soon as your overlay is open"), "before any overlay");
    let mut overlay = app.connect(&overlay_in(&html)).await;
    overlay.next_frame(WAIT).await;
    let connected = eventually(Duration::from_secs(10), || async {
        let page = client.get(format!("{}/dashboard", app.base)).send().await.unwrap().text().await.unwrap();
        page.contains("Connected to your chat.")
    })
    .await;
    assert!(connected, "subscribed once the overlay opened");

    // The bot account disconnects the app: new channels cannot be subscribed.
    let bot = sim_user_id(&app, "chatpulse_bot").await;
    reqwest::Client::new().post(format!("{}/sim/users/{bot}/disconnect", sim_url(&app))).send().await.unwrap();
    let (second, html) = log_in(&app, &unique_login()).await;
    let mut overlay = app.connect(&overlay_in(&html)).await;
    overlay.next_frame(WAIT).await;
    let explained = eventually(Duration::from_secs(10), || async {
        let page = second.get(format!("{}/dashboard", app.base)).send().await.unwrap().text().await.unwrap();
        page.contains("Chat cannot be read yet") && page.contains("authorize the bot account")
    })
    .await;
    assert!(explained, "the dashboard explains why chat is not connected");
}

#[tokio::test]
async fn rotating_the_encryption_key_keeps_everyone_logged_in() {
    const OLD: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const NEW: &str = "2222222222222222222222222222222222222222222222222222222222222222";
    let first = spawn_demo_app_with(|c| c.token_encryption_key = chatpulse::config::Secret::new(OLD)).await;
    let login = unique_login();
    log_in(&first, &login).await;
    let streamer = streamer_by_login(&first, &login).await;

    // The operator restarts with a new key and the old one as "previous".
    let second = restart_with_keys(&first, NEW, Some(OLD)).await;

    // The token check reads the old ciphertext and rewrites it under the new key.
    let only_new = TokenCipher::new(NEW, None).unwrap();
    let owner = streamer.twitch_user_id.to_string();
    let rewritten = eventually(Duration::from_secs(5), || async {
        let stored = second.repo.tokens(streamer.id).await.unwrap();
        stored.is_some_and(|t| only_new.decrypt(&t.access_token, &owner).is_ok())
    })
    .await;
    assert!(rewritten, "tokens re-encrypted under the new key");
    let setup = second.repo.streamer(streamer.id).await.unwrap().unwrap();
    assert!(!setup.streamer.needs_relogin, "nobody was logged out");
}
