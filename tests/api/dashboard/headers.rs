//! What every page sends: security headers, and a session cookie that is
//! HttpOnly, SameSite=Lax and signed (and Secure, with HSTS, in production).

use std::time::Duration;

use crate::helpers::*;

both_modes! {
async fn pages_carry_security_headers() {
    let app = TestApp::builder().demo().start().await;
    let client = app.log_in(&unique_login()).await.client;
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
    let app = TestApp::builder().demo().start().await;
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
        ("METRICS_PORT", "0"),
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
    let app = TestApp::builder().configure(|c| {
        let mut production = production_config();
        // This test's storage (embedded data directory or distributed
        // deployment) and leader key.
        production.storage = c.storage.clone();
        production.tuning.leader_key = c.tuning.leader_key.clone();
        production.tuning.shutdown_drain = Duration::ZERO;
        *c = production;
    }).start()
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
