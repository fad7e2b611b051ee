//! Helix basics (§2): tokens, Client-Id, rate-limit headers, the fault switch.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::harness::*;

#[tokio::test]
async fn helix_requires_token_and_client_id_and_sends_rate_limit_headers() {
    let t = start().await;
    let app = t.app_token().await;
    let (user, _) = t.user_token("pixelpaws", "").await;
    let url = format!("{}/helix/users?login=pixelpaws", t.base);

    let r = t.http.get(&url).bearer_auth(&app).send().await.unwrap();
    assert_eq!(r.status(), 401, "Client-Id is required");
    assert!(r.headers().contains_key("ratelimit-limit"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "Unauthorized");
    assert_eq!(body["status"], 401);
    assert!(body["message"].is_string());
    let r = t.http.get(&url).header("Client-Id", t.client_id()).send().await.unwrap();
    assert_eq!(r.status(), 401, "a token is required");
    let r = t.http.get(&url).bearer_auth(&app).header("Client-Id", "someotherclientid").send().await.unwrap();
    assert_eq!(r.status(), 401, "Client-Id must match the token");

    let r = t.helix(reqwest::Method::GET, "/users?login=pixelpaws", &app).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let limit = r.headers()["ratelimit-limit"].to_str().unwrap().to_owned();
    let first: u64 = r.headers()["ratelimit-remaining"].to_str().unwrap().parse().unwrap();
    let reset: u64 = r.headers()["ratelimit-reset"].to_str().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert_eq!(limit, "800");
    assert!(reset >= now && reset <= now + 61, "reset is epoch seconds: {reset} vs {now}");
    let r = t.helix(reqwest::Method::GET, "/users?login=pixelpaws", &app).send().await.unwrap();
    let second: u64 = r.headers()["ratelimit-remaining"].to_str().unwrap().parse().unwrap();
    assert!(second < first, "points are taken per request");

    // Users: repeated parameters, unknown ones omitted, "me" only with a user token.
    let other = t.sim.create_user("mossy_owl", "Mossy_Owl");
    let (status, body) = t.get(&format!("/users?login=pixelpaws&id={}&login=nobody&id=999", other.id), &app).await;
    assert_eq!(status, 200);
    let logins: Vec<&str> = body["data"].as_array().unwrap().iter().map(|u| u["login"].as_str().unwrap()).collect();
    assert_eq!(logins, ["mossy_owl", "pixelpaws"]);
    assert!(body["data"][0]["id"].is_string());
    assert_eq!(t.get("/users", &app).await.0, 400, "app token needs id or login");
    let (status, body) = t.get("/users", &user).await;
    assert_eq!((status, body["data"][0]["login"].as_str()), (StatusCode::OK, Some("pixelpaws")));
    let many: String = (0..101).map(|i| format!("id={i}&")).collect();
    assert_eq!(t.get(&format!("/users?{many}"), &app).await.0, 400);

    // App-only endpoints refuse user tokens.
    assert_eq!(t.get("/eventsub/conduits", &user).await.0, 401);
    let body = json!({"type": "stream.online", "version": "1", "condition": {"broadcaster_user_id": other.id},
        "transport": {"method": "webhook", "callback": "https://chatpulse.example/webhooks/eventsub", "secret": HOOK_SECRET}});
    assert_eq!(t.post("/eventsub/subscriptions", &user, body).await.0, 401);
}

#[tokio::test]
async fn fault_switch_answers_429_with_reset_and_5xx() {
    let t = start().await;
    let app = t.app_token().await;
    t.sim.fail_next(429, 2);
    for _ in 0..2 {
        let r = t.helix(reqwest::Method::GET, "/eventsub/conduits", &app).send().await.unwrap();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["ratelimit-remaining"], "0");
        let reset: u64 = r.headers()["ratelimit-reset"].to_str().unwrap().parse().unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        assert!(reset > now.saturating_sub(1) && reset <= now + 60);
        let body: Value = r.json().await.unwrap();
        assert_eq!((body["error"].as_str(), body["status"].as_u64()), (Some("Too Many Requests"), Some(429)));
    }
    assert_eq!(t.get("/eventsub/conduits", &app).await.0, 200);

    let (status, _) = t.sim_post("/sim/faults", json!({"status": 503, "count": 1})).await;
    assert_eq!(status, 200);
    let (status, body) = t.get("/eventsub/conduits", &app).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"], "Service Unavailable");
    assert_eq!(t.get("/eventsub/conduits", &app).await.0, 200);
}

#[tokio::test]
async fn the_twitch_cli_mock_layout_is_served_too() {
    // twurple's TWURPLE_MOCK_API_PORT: /auth/*, /mock/* and /eventsub/subscriptions.
    let t = start().await;
    let (id, secret) = (t.client_id(), t.client_secret());
    let form = [("client_id", id.as_str()), ("client_secret", secret.as_str()), ("grant_type", "client_credentials")];
    let r = t.http.post(format!("{}/auth/token", t.base)).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let app = r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
    let r = t.http.get(format!("{}/auth/validate", t.base)).header("Authorization", format!("OAuth {app}"));
    assert_eq!(r.send().await.unwrap().status(), 200);
    t.sim.create_user("pixelpaws", "PixelPaws");
    let mock =
        |path: &str| t.http.get(format!("{}{path}", t.base)).bearer_auth(&app).header("Client-Id", t.client_id());
    let (status, users) = send(mock("/mock/users?login=pixelpaws")).await;
    assert_eq!((status, users["data"][0]["login"].as_str()), (StatusCode::OK, Some("pixelpaws")));
    let r = mock("/mock/users?login=pixelpaws").send().await.unwrap();
    assert!(r.headers().contains_key("ratelimit-remaining"), "behind the same gate");
    let (status, subs) = send(mock("/eventsub/subscriptions")).await;
    assert_eq!((status, subs["max_total_cost"].as_u64()), (StatusCode::OK, Some(10_000)));
    let unauthenticated = t.http.get(format!("{}/eventsub/subscriptions", t.base));
    assert_eq!(send(unauthenticated).await.0, 401);
}
