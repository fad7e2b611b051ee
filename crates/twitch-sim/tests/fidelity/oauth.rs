//! OAuth (§1, §8.1): the code flow, refresh, client credentials, validate, revoke, expiry.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::harness::*;

#[tokio::test]
async fn oauth_code_flow_issues_single_use_codes_and_documented_tokens() {
    let t = start().await;
    let state = "9b1c0e7d 4f2a/48a6+b3e5";
    let query = t.authorize("PixelPaws", "channel:bot clips:edit", state).await;
    assert_eq!(param(&query, "state"), state, "state comes back unchanged");
    assert_eq!(param(&query, "scope"), "channel:bot clips:edit");
    let code = param(&query, "code");

    let r = t.exchange(&code).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 5, "{body}");
    assert_eq!(body["scope"], json!(["channel:bot", "clips:edit"]), "scope is an array");
    assert_eq!(body["token_type"], "bearer");
    assert!(body["expires_in"].as_u64().unwrap() > 3600);
    let access = body["access_token"].as_str().unwrap();
    assert!(body["refresh_token"].is_string());

    let r = t.exchange(&code).await;
    assert_eq!(r.status(), 400, "codes are single-use");
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": 400, "message": "Invalid authorization code"}));

    for scheme in ["OAuth", "Bearer"] {
        let r = t
            .http
            .get(format!("{}/oauth2/validate", t.base))
            .header("Authorization", format!("{scheme} {access}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        let user = t.sim.user_by_login("pixelpaws").unwrap();
        assert_eq!(v["login"], "pixelpaws");
        assert_eq!(v["user_id"], user.id.as_str());
        assert_eq!(v["client_id"], t.client_id().as_str());
        assert_eq!(v["scopes"], json!(["channel:bot", "clips:edit"]));
        assert!(v["expires_in"].as_u64().unwrap() > 0);
    }
    let r = t.http.get(format!("{}/oauth2/validate", t.base)).header("Authorization", "OAuth nope").send().await;
    let r = r.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": 401, "message": "invalid access token"}));

    let user = t.sim.user_by_login("pixelpaws").unwrap();
    let (_, me) = t.get("/users", access).await;
    assert_eq!(me["data"][0]["id"], user.id.as_str(), "a user token's /users is 'me'");
}

#[tokio::test]
async fn oauth_rejects_bad_secrets_redirects_and_denials() {
    let t = start().await;
    let query = t.authorize("pixelpaws", "channel:bot", "st").await;
    let code = param(&query, "code");
    let id = t.client_id();
    let r = t
        .token_request(&[
            ("client_id", &id),
            ("client_secret", "wrong-secret-value"),
            ("code", &code),
            ("grant_type", "authorization_code"),
            ("redirect_uri", REDIRECT),
        ])
        .await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": 403, "message": "invalid client secret"}));

    // A code must be redeemed with the redirect URI it was issued for.
    let query = t.authorize("pixelpaws", "channel:bot", "st").await;
    let secret = t.client_secret();
    let r = t
        .token_request(&[
            ("client_id", &id),
            ("client_secret", &secret),
            ("code", &param(&query, "code")),
            ("grant_type", "authorization_code"),
            ("redirect_uri", "http://127.0.0.1:9/other"),
        ])
        .await;
    assert_eq!(r.status(), 400);

    // An unregistered redirect URI is never redirected to.
    let url =
        t.authorize_url("channel:bot", "st", "").replace(&urlencode(REDIRECT), &urlencode("http://evil.example/cb"));
    let r = t.http.get(url).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());

    // The consent page lists the scopes; Deny redirects with access_denied and the state.
    let r = t.http.get(t.authorize_url("channel:bot clips:edit", "xyz", "")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("channel:bot") && html.contains("clips:edit") && html.contains("Authorize"));
    let form = [
        ("client_id", id.as_str()),
        ("redirect_uri", REDIRECT),
        ("response_type", "code"),
        ("scope", "channel:bot"),
        ("state", "xyz"),
        ("decision", "deny"),
    ];
    let r = t.http.post(format!("{}/oauth2/authorize", t.base)).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let query = redirect_query(&r);
    assert_eq!(param(&query, "error"), "access_denied");
    assert_eq!(param(&query, "error_description"), "The user denied you access");
    assert_eq!(param(&query, "state"), "xyz");

    // Approving through the form as a new account works like auto-approve, and
    // afterwards (same browser, same scopes) consent is skipped unless force_verify.
    let mut form = form.to_vec();
    form.pop();
    form.extend([("decision", "approve"), ("new_login", "mossy_owl")]);
    let r = t.http.post(format!("{}/oauth2/authorize", t.base)).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 302);
    assert!(!param(&redirect_query(&r), "code").is_empty());
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let again = t.http.get(t.authorize_url("channel:bot", "s2", "")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(again.status(), 302, "already authorized: no consent screen");
    let forced = t.authorize_url("channel:bot", "s2", "&force_verify=true");
    let forced = t.http.get(forced).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(forced.status(), 200, "force_verify shows the consent screen");
}

#[tokio::test]
async fn refresh_rotates_and_client_credentials_has_no_refresh_token() {
    let t = start().await;
    let (access, refresh) = t.user_token("pixelpaws", "channel:bot").await;
    assert!(refresh.contains('%') && refresh.contains('='), "refresh tokens need URL-encoding");
    let (id, secret) = (t.client_id(), t.client_secret());
    let r = t.refresh_request(&refresh).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let new_refresh = body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(new_refresh, refresh, "the refresh token rotates");
    assert_ne!(body["access_token"].as_str().unwrap(), access);
    assert_eq!(body["scope"], json!(["channel:bot"]));
    assert_eq!(body["token_type"], "bearer");

    let r = t.refresh_request(&refresh).await;
    assert_eq!(r.status(), 400);
    let expected = json!({"error": "Bad Request", "status": 400, "message": "Invalid refresh token"});
    assert_eq!(r.json::<Value>().await.unwrap(), expected);

    // Parameters in the query string are accepted too.
    let url = format!(
        "{}/oauth2/token?grant_type=refresh_token&refresh_token={}&client_id={id}&client_secret={secret}",
        t.base,
        urlencode(&new_refresh)
    );
    assert_eq!(t.http.post(url).send().await.unwrap().status(), 200);

    let r =
        t.token_request(&[("client_id", &id), ("client_secret", &secret), ("grant_type", "client_credentials")]).await;
    let body: Value = r.json().await.unwrap();
    assert!(body.get("refresh_token").is_none());
    assert_eq!(body["token_type"], "bearer");
    assert!(body["expires_in"].as_u64().unwrap() > 86_400);
    let app = body["access_token"].as_str().unwrap();
    let v: Value = t
        .http
        .get(format!("{}/oauth2/validate", t.base))
        .header("Authorization", format!("OAuth {app}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["scopes"], json!([]));
    assert!(v.get("login").is_none() && v.get("user_id").is_none(), "{v}");
}

#[tokio::test]
async fn revoked_tokens_fail_validate_and_helix() {
    let t = start().await;
    let (access, _) = t.user_token("pixelpaws", "").await;
    let id = t.client_id();
    let revoke = |client: String, token: String| {
        let url = format!("{}/oauth2/revoke", t.base);
        let http = t.http.clone();
        async move { http.post(url).form(&[("client_id", client), ("token", token)]).send().await.unwrap() }
    };
    let r = revoke(id.clone(), access.clone()).await;
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap().is_empty());
    let r = t.http.get(format!("{}/oauth2/validate", t.base)).header("Authorization", format!("OAuth {access}"));
    assert_eq!(r.send().await.unwrap().status(), 401);
    assert_eq!(t.get("/users", &access).await.0, 401);
    let r = revoke(id, access.clone()).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": 400, "message": "Invalid token"}));
    let r = revoke("someoneelse".into(), access).await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": 404, "message": "client does not exist"}));
}

#[tokio::test]
async fn authorization_codes_expire_on_the_simulators_clock() {
    let t = start().await;
    let query = t.authorize("pixelpaws", "channel:bot", "s").await;
    let fresh_code = param(&t.authorize("pixelpaws", "channel:bot", "s").await, "code");
    assert_eq!(t.exchange(&fresh_code).await.status(), 200, "a code used in time works");
    t.sim.advance_clock(t.sim.config().code_ttl);
    let r = t.exchange(&param(&query, "code")).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": 400, "message": "Invalid authorization code"}));
}

#[tokio::test]
async fn expired_user_tokens_fail_validate_and_helix() {
    let t = start().await;
    let (access, refresh) = t.user_token("pixelpaws", "channel:bot").await;
    let validate = |token: String| {
        let request =
            t.http.get(format!("{}/oauth2/validate", t.base)).header("Authorization", format!("OAuth {token}"));
        async move { request.send().await.unwrap() }
    };
    assert_eq!(t.get("/users", &access).await.0, 200, "valid at first");
    let ttl = t.sim.config().user_token_ttl;
    let body: Value = validate(access.clone()).await.json().await.unwrap();
    assert!(body["expires_in"].as_u64().unwrap().abs_diff(ttl.as_secs()) <= 1, "{body}");

    // An hour later (sim time) the token has an hour less to live.
    let (status, _) = t.sim_post("/sim/clock", json!({"advance_seconds": 3600})).await;
    assert_eq!(status, 200);
    let body: Value = validate(access.clone()).await.json().await.unwrap();
    assert!(body["expires_in"].as_u64().unwrap().abs_diff(ttl.as_secs() - 3600) <= 1, "{body}");

    t.sim.advance_clock(ttl);
    let r = validate(access.clone()).await;
    assert_eq!(r.status(), 401, "the token expired");
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": 401, "message": "invalid access token"}));
    let (status, body) = t.get("/users", &access).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("Unauthorized")));

    // The refresh token still works (confidential clients' ones do not expire, §1.3).
    let r = t.refresh_request(&refresh).await;
    assert_eq!(r.status(), 200);
    let fresh: Value = r.json().await.unwrap();
    assert_eq!(t.get("/users", fresh["access_token"].as_str().unwrap()).await.0, 200);
}
