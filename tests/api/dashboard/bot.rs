//! The bot account that reads chat: only the configured account can be
//! linked, its grant is kept fresh and its loss alarmed, and the dashboard
//! says whether the streamer's chat can be read and why not.

use std::time::Duration;

use chatpulse::crypto::TokenCipher;

use super::WAIT;
use crate::helpers::*;

#[tokio::test]
async fn only_the_configured_bot_account_can_be_linked() {
    let app = TestApp::builder().demo().start().await;
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
    let app = TestApp::builder()
        .demo()
        .configure(|c| c.tuning.token_check_interval = Duration::from_millis(200))
        .start()
        .await;
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
    let revoked =
        reqwest::Client::new().post(format!("{}/oauth2/revoke", app.simulator_url())).form(&form).send().await;
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
    let bot_id = app.sim_user_id("chatpulse_bot").await;
    reqwest::Client::new().post(format!("{}/sim/users/{bot_id}/disconnect", app.simulator_url())).send().await.unwrap();
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
    let app = TestApp::builder().demo().start().await;
    let login = unique_login();
    let LoggedIn { client, html, .. } = app.log_in(&login).await;
    assert!(!html.contains("does not allow the ChatPulse bot"), "granted at login");
    let streamer = app.streamer_by_login(&login).await;
    let mut tokens = app.repo.tokens(streamer.id).await.unwrap().unwrap();
    tokens.scopes = vec!["user:read:email".into()];
    app.repo.set_tokens(streamer.id, &tokens).await.unwrap();

    let page = client.get(format!("{}/dashboard", app.base)).send().await.unwrap().text().await.unwrap();

    assert!(page.contains("does not allow the ChatPulse bot into your chat"), "the missing grant is explained");
}

#[tokio::test]
async fn the_dashboard_says_whether_chat_can_be_read() {
    let app = TestApp::builder().demo().start().await;
    let LoggedIn { client, html, overlay, .. } = app.log_in(&unique_login()).await;
    assert!(html.contains("Chat connects as soon as your overlay is open"), "before any overlay");
    let mut overlay = app.connect(&overlay).await;
    overlay.next_frame(WAIT).await;
    let connected = eventually(Duration::from_secs(10), || async {
        let page = client.get(format!("{}/dashboard", app.base)).send().await.unwrap().text().await.unwrap();
        page.contains("Connected to your chat.")
    })
    .await;
    assert!(connected, "subscribed once the overlay opened");

    // The bot account disconnects the app: new channels cannot be subscribed.
    let bot = app.sim_user_id("chatpulse_bot").await;
    reqwest::Client::new().post(format!("{}/sim/users/{bot}/disconnect", app.simulator_url())).send().await.unwrap();
    let LoggedIn { client: second, overlay, .. } = app.log_in(&unique_login()).await;
    let mut overlay = app.connect(&overlay).await;
    overlay.next_frame(WAIT).await;
    let explained = eventually(Duration::from_secs(10), || async {
        let page = second.get(format!("{}/dashboard", app.base)).send().await.unwrap().text().await.unwrap();
        page.contains("Chat cannot be read yet") && page.contains("authorize the bot account")
    })
    .await;
    assert!(explained, "the dashboard explains why chat is not connected");
}
