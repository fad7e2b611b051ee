//! What a visitor can make the service store and see: nothing until a login
//! starts, then a short-lived session; the bot account's page only for the
//! bot account.

use crate::helpers::*;

/// The `Max-Age` of the session cookie a response set, if it set one.
fn session_max_age(response: &reqwest::Response) -> Option<u64> {
    let cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("chatpulse_session="))?;
    let age = cookie.split(';').map(str::trim).find_map(|a| a.strip_prefix("Max-Age="));
    Some(age.expect("a Max-Age").parse().unwrap())
}

both_modes! {
async fn a_visitor_gets_no_session_until_login_starts_and_then_a_short_one() {
    let app = TestApp::builder().demo().start().await;
    let visitor = browser(false);
    for page in ["/", "/auth/bot", "/dashboard"] {
        let r = visitor.get(format!("{}{page}", app.base)).send().await.unwrap();
        assert_eq!(session_max_age(&r), None, "{page} stores nothing for a visitor");
    }

    let started = visitor.get(format!("{}/auth/login?as={}", app.base, unique_login())).send().await.unwrap();
    assert_eq!(started.status(), 303);
    let pending = session_max_age(&started).expect("the login's state is kept");
    assert!((1..=600).contains(&pending), "a started login lives 10 minutes, not {pending} s");

    // Following the login through, the session gets a login's lifetime.
    let mut next = started.headers()["location"].to_str().unwrap().to_owned();
    let mut lifetime = None;
    for _ in 0..10 {
        let r = visitor.get(&next).send().await.unwrap();
        lifetime = session_max_age(&r).or(lifetime);
        match r.headers().get("location").and_then(|l| l.to_str().ok()) {
            Some(l) if l.starts_with("http") => next = l.to_owned(),
            Some(l) => next = format!("{}{l}", app.base),
            None => break,
        }
    }
    assert!(next.ends_with("/dashboard"), "{next}");
    assert_eq!(lifetime, Some(7 * 24 * 3600), "upgraded to a login session");
}
}

#[tokio::test]
async fn the_bot_page_shows_the_bot_only_to_the_bot_account() {
    let app = TestApp::builder().demo().start().await;
    let bot_id = app.sim_user_id("chatpulse_bot").await;
    let page = |client: reqwest::Client| {
        let url = format!("{}/auth/bot", app.base);
        async move { client.get(url).send().await.unwrap().text().await.unwrap() }
    };

    let anonymous = page(browser(true)).await;
    assert!(anonymous.contains("Authorize the bot account"), "how to sign in as the bot");
    assert!(!anonymous.contains(&bot_id) && !anonymous.contains("Granted scopes"), "nothing about the bot");
    let streamer = app.log_in(&unique_login()).await.client;
    let seen_by_streamer = page(streamer).await;
    assert!(!seen_by_streamer.contains(&bot_id), "a streamer is not the bot");

    // Another account signing in at the bot page is refused and sees nothing.
    let operator = browser(true);
    let wrong = operator.get(format!("{}/auth/bot/start?as={}", app.base, unique_login())).send().await.unwrap();
    assert_eq!(wrong.status(), 403);
    assert!(!page(operator.clone()).await.contains(&bot_id));
    // The bot account itself sees its status.
    let signed_in = operator.get(format!("{}/auth/bot/start?as=chatpulse_bot", app.base)).send().await.unwrap();
    assert!(signed_in.url().path().ends_with("/auth/bot"));
    let status = signed_in.text().await.unwrap();
    assert!(status.contains(&bot_id) && status.contains("Granted scopes"), "{status}");
}
