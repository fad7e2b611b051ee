//! A streamer's Twitch tokens: stored encrypted (never in plain text),
//! refreshed when Twitch stops accepting them, kept through Twitch's and
//! our own key trouble, checked by one instance at a time, and given up
//! (the streamer asked to log in again) only when the app was disconnected.

use std::time::Duration;

use chatpulse::config::Secret;
use chatpulse::crypto::TokenCipher;

use super::WAIT;
use crate::helpers::*;

both_modes! {
async fn tokens_are_stored_encrypted_and_decrypt_to_a_valid_twitch_token() {
    let app = TestApp::builder().demo().start().await;
    let login = unique_login();
    app.log_in(&login).await;
    let streamer = app.streamer_by_login(&login).await;

    let stored = app.repo.tokens(streamer.id).await.unwrap().expect("tokens stored");

    let cipher = TokenCipher::new(chatpulse::config::DEV_TOKEN_ENCRYPTION_KEY, None).unwrap();
    let access = cipher.decrypt(&stored.access_token, streamer.twitch_user_id.as_str()).unwrap();
    let refresh = cipher.decrypt(&stored.refresh_token, streamer.twitch_user_id.as_str()).unwrap();
    for (plain, bytes) in [(&access, &stored.access_token), (&refresh, &stored.refresh_token)] {
        assert!(!bytes.windows(plain.len()).any(|w| w == plain.as_bytes()), "no plaintext in the database");
    }
    assert_eq!(stored.scopes, vec!["channel:bot".to_owned()]);
    let validate = reqwest::Client::new()
        .get(format!("{}/oauth2/validate", app.simulator_url()))
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
            let db = rusqlite::Connection::open(app.data_dir.join("chatpulse.db")).unwrap();
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
    let app = TestApp::builder().demo().start().await;
    let login = unique_login();
    app.log_in(&login).await;
    let streamer = app.streamer_by_login(&login).await;
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

async fn decrypted_access_token(app: &TestApp, login: &str) -> (chatpulse::store::Streamer, Option<String>) {
    let streamer = app.streamer_by_login(login).await;
    let stored = app.repo.tokens(streamer.id).await.unwrap();
    let cipher = TokenCipher::new(chatpulse::config::DEV_TOKEN_ENCRYPTION_KEY, None).unwrap();
    let token = stored.map(|t| cipher.decrypt(&t.access_token, streamer.twitch_user_id.as_str()).unwrap());
    (streamer, token)
}

#[tokio::test]
async fn a_token_twitch_no_longer_accepts_is_refreshed() {
    let app = TestApp::builder()
        .demo()
        .configure(|c| c.tuning.token_check_interval = Duration::from_millis(200))
        .start()
        .await;
    let login = unique_login();
    app.log_in(&login).await;
    let (_, old) = decrypted_access_token(&app, &login).await;
    let old = old.unwrap();
    let client_id = twitch_sim::SimConfig::default().client_id;
    let revoked = reqwest::Client::new()
        .post(format!("{}/oauth2/revoke", app.simulator_url()))
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
        .get(format!("{}/oauth2/validate", app.simulator_url()))
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
    let app = TestApp::builder()
        .demo()
        .configure(|c| c.tuning.token_check_interval = Duration::from_millis(200))
        .start()
        .await;
    let login = unique_login();
    app.log_in(&login).await;
    let (streamer, old) = decrypted_access_token(&app, &login).await;
    let old = old.unwrap();
    let stored_before = app.repo.tokens(streamer.id).await.unwrap().unwrap();
    // The access token is dead, so the check must refresh; Twitch's token
    // endpoint is down (503 with its JSON error body) meanwhile.
    let faulted = reqwest::Client::new()
        .post(format!("{}/sim/faults", app.simulator_url()))
        .json(&serde_json::json!({"status": 503, "count": 1000, "target": "oauth_token"}))
        .send()
        .await
        .unwrap();
    assert_eq!(faulted.status(), 200);
    let client_id = twitch_sim::SimConfig::default().client_id;
    let form = [("client_id", client_id.as_str()), ("token", old.as_str())];
    let revoked =
        reqwest::Client::new().post(format!("{}/oauth2/revoke", app.simulator_url())).form(&form).send().await;
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
        .post(format!("{}/sim/faults", app.simulator_url()))
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
    let restart = TestApp::builder().data_of(first).twitch_of(first);
    restart
        .configure(|c| {
            c.token_encryption_key = Secret::new(key);
            c.token_encryption_key_previous = previous.map(Secret::new);
            c.tuning.token_check_interval = Duration::from_millis(200);
        })
        .start()
        .await
}

#[tokio::test]
async fn tokens_that_no_longer_decrypt_are_kept_and_reported_not_deleted() {
    const OLD: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const WRONG: &str = "3333333333333333333333333333333333333333333333333333333333333333";
    let first = TestApp::builder()
        .demo()
        .configure(|c| c.token_encryption_key = chatpulse::config::Secret::new(OLD))
        .start()
        .await;
    let login = unique_login();
    first.log_in(&login).await;
    let streamer = first.streamer_by_login(&login).await;
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
    // One deployment: both instances compete for the same leases.
    let key = format!("cleanup:leader:{}", uuid::Uuid::new_v4());
    let instance = || {
        let often = |c: &mut chatpulse::config::Config| c.tuning.token_check_interval = Duration::from_millis(200);
        TestApp::builder().distributed(&db, &redis).leader_key(&key).configure(often)
    };
    let one = instance().demo().start().await;
    one.log_in(&unique_login()).await;
    let two = instance().twitch_of(&one).start().await;
    let valid = "chatpulse_token_checks_total{outcome=\"valid\"}";
    let checks = || async { one.metric(valid).await + two.metric(valid).await };
    let before = checks().await;

    // Five checks (a second's worth) while both instances run.
    let ran = eventually(Duration::from_secs(5), || async { checks().await >= before + 5.0 }).await;

    let (a, b) = (one.metric(valid).await, two.metric(valid).await);
    assert!(ran, "checks ran: {a} + {b}");
    assert!(a == 0.0 || b == 0.0, "only one instance checks: {a} and {b}");
}

#[tokio::test]
async fn a_streamer_who_disconnected_the_app_must_log_in_again() {
    let app = TestApp::builder()
        .demo()
        .configure(|c| c.tuning.token_check_interval = Duration::from_millis(200))
        .start()
        .await;
    let login = unique_login();
    let client = app.log_in(&login).await.client;
    let id = app.sim_user_id(&login).await;
    let disconnected =
        reqwest::Client::new().post(format!("{}/sim/users/{id}/disconnect", app.simulator_url())).send().await.unwrap();
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
    app.log_in(&login).await;
    let (streamer, token) = decrypted_access_token(&app, &login).await;
    assert!(token.is_some());
    assert!(!app.repo.streamer(streamer.id).await.unwrap().unwrap().streamer.needs_relogin);
}

#[tokio::test]
async fn rotating_the_encryption_key_keeps_everyone_logged_in() {
    const OLD: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const NEW: &str = "2222222222222222222222222222222222222222222222222222222222222222";
    let first = TestApp::builder()
        .demo()
        .configure(|c| c.token_encryption_key = chatpulse::config::Secret::new(OLD))
        .start()
        .await;
    let login = unique_login();
    first.log_in(&login).await;
    let streamer = first.streamer_by_login(&login).await;

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
