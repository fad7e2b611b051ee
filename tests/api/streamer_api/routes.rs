//! `/api/v1` over real HTTP: a token acts for its own streamer only; the bar,
//! its settings (validated like the dashboard's, all or nothing), reset and
//! test votes; 401 with a bearer challenge without a working token; each
//! token's own budget with `Retry-After`; JSON errors with stable codes; the
//! OpenAPI document served and every operation it lists mounted.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::token_for;
use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(3);

async fn call(app: &TestApp, token: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = app.http.request(method, format!("{}/api/v1{path}", app.base)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() })
}

both_modes! {
async fn a_token_reads_and_drives_its_streamers_bar() {
    let app = TestApp::builder().start().await;
    let setup = app.add_streamer().await;
    let token = token_for(&app, setup.streamer.id).await;

    let (status, state) = call(&app, &token, Method::GET, "/state", None).await;
    assert_eq!(status, 200);
    assert_eq!(state, json!({"value": 0.0, "status": "inactive", "live": false, "participation": 0,
                             "model": "classic", "overlay_open": false}));

    let mut overlay = app.connect(&setup.streamer.overlay_id).await;
    overlay.next_frame(WAIT).await.expect("initial frame");
    let (status, sent) = call(&app, &token, Method::POST, "/test-votes", Some(json!({"side": "for", "count": 3}))).await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!((sent["sent"].as_u64(), sent["applied"].as_u64(), sent["no_overlay"].as_u64()), (Some(3), Some(3), Some(0)));
    overlay.wait_for(WAIT, |f| f.value > 25.0).await.expect("three votes for move the bar");

    let (_, state) = call(&app, &token, Method::GET, "/state", None).await;
    assert!(state["value"].as_f64().unwrap() > 25.0, "{state}");
    assert_eq!((state["status"].as_str(), state["overlay_open"].as_bool()), (Some("active"), Some(true)));
    assert_eq!(state["participation"], 3, "each test vote comes from a chatter of its own");

    let (status, body) = call(&app, &token, Method::POST, "/reset", None).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    overlay.wait_for(WAIT, |f| f.value == 0.0).await.expect("the bar is centred");

    let (status, config) = call(&app, &token, Method::GET, "/config", None).await;
    assert_eq!(status, 200);
    assert_eq!((config["model"].as_str(), config["version"].as_i64()), (Some("classic"), Some(setup.config.version)));
    let patch = json!({"left_label": "Hype", "decay_speed": 1.5, "show_hint": true});
    let (status, saved) = call(&app, &token, Method::PATCH, "/config", Some(patch)).await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!((saved["left_label"].as_str(), saved["decay_speed"].as_f64(), saved["show_hint"].as_bool()),
               (Some("Hype"), Some(1.5), Some(true)));
    assert_eq!(saved["right_label"], config["right_label"], "fields not sent keep their values");
    assert_eq!(saved["version"].as_i64(), Some(setup.config.version + 1));
    let frame = overlay.next_with("left_label", WAIT).await.expect("open overlays get the new labels");
    assert_eq!(frame["left_label"], "Hype");
    let stored = app.repo.streamer(setup.streamer.id).await.unwrap().unwrap().config;
    assert_eq!(stored.config.left_label.to_string(), "Hype");
}
}

both_modes! {
async fn invalid_requests_are_refused_with_json_errors_and_change_nothing() {
    let app = TestApp::builder().start().await;
    let setup = app.add_streamer().await;
    let token = token_for(&app, setup.streamer.id).await;

    let (status, body) = call(&app, &token, Method::PATCH, "/config",
                              Some(json!({"decay_speed": 9, "layout": "diagonal", "left_label": "ok"}))).await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["code"], "validation_failed");
    let fields: Vec<&str> = body["error"]["fields"].as_array().unwrap().iter().map(|f| f["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["decay_speed", "layout"], "{body}");
    assert_eq!(body["error"]["fields"][0]["code"], "decay_out_of_range");

    for (patch, field, code) in [(json!({"nope": 1}), "nope", "unknown_field"), (json!({"scale": [100]}), "scale", "wrong_type")] {
        let (status, body) = call(&app, &token, Method::PATCH, "/config", Some(patch)).await;
        assert_eq!(status, 422);
        assert_eq!((body["error"]["fields"][0]["field"].as_str(), body["error"]["fields"][0]["code"].as_str()), (Some(field), Some(code)));
    }
    let (status, body) = call(&app, &token, Method::PATCH, "/config", Some(json!([1, 2]))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_request")));
    let raw = |content_type: &'static str, body: &'static str| {
        app.http.patch(format!("{}/api/v1/config", app.base)).bearer_auth(&token)
            .header("content-type", content_type).body(body).send()
    };
    let broken = raw("application/json", "{\"left_label\":").await.unwrap();
    assert_eq!(broken.status(), 400);
    assert_eq!(broken.json::<Value>().await.unwrap()["error"]["code"], "bad_request");
    let form = raw("application/x-www-form-urlencoded", "left_label=x").await.unwrap();
    assert_eq!(form.status(), 415);
    assert_eq!(form.json::<Value>().await.unwrap()["error"]["code"], "unsupported_media_type");
    let stored = app.repo.streamer(setup.streamer.id).await.unwrap().unwrap().config;
    assert_eq!(stored, setup.config, "nothing was saved");

    for (request, fields) in [
        (json!({"side": "up"}), vec!["side"]),
        (json!({"side": "for", "count": 51}), vec!["count"]),
        (json!({"count": 0}), vec!["side", "count"]),
        (json!({"side": "for", "count": "5", "extra": true}), vec!["count", "extra"]),
    ] {
        let (status, body) = call(&app, &token, Method::POST, "/test-votes", Some(request.clone())).await;
        assert_eq!(status, 422, "{request}");
        let named: Vec<&str> = body["error"]["fields"].as_array().unwrap().iter().map(|f| f["field"].as_str().unwrap()).collect();
        assert_eq!(named, fields, "{request}: {body}");
    }
    assert_eq!(app.votes("applied").await + app.votes("no_session").await, 0.0, "no vote was sent");
}
}

both_modes! {
async fn without_a_working_token_every_route_answers_401_with_a_bearer_challenge() {
    let app = TestApp::builder().start().await;
    let setup = app.add_streamer().await;
    let token = token_for(&app, setup.streamer.id).await;
    let url = |path: &str| format!("{}/api/v1{path}", app.base);

    let missing = app.http.get(url("/state")).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    assert_eq!(missing.headers()["www-authenticate"], "Bearer realm=\"ChatPulse API\"");
    assert_eq!(missing.json::<Value>().await.unwrap()["error"]["code"], "missing_token");

    let revoked = token_for(&app, setup.streamer.id).await;
    let digest = chatpulse::domain::api_token::presented_token_hash(&revoked).unwrap();
    let id = app.repo.api_token_by_hash(&digest).await.unwrap().unwrap().id;
    assert!(chatpulse::app::api::revoke_token(app.repo.as_ref(), id, None).await.unwrap());
    let wrong_scheme = format!("Basic {token}");
    let almost = format!("{}0", &token[..token.len() - 1]);
    for header in [format!("Bearer {revoked}"), format!("Bearer {almost}"), "Bearer cp_nope".to_owned(), wrong_scheme] {
        let r = app.http.get(url("/state")).header("authorization", &header).send().await.unwrap();
        assert_eq!(r.status(), 401, "{header}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"ChatPulse API\", error=\"invalid_token\"");
        assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "invalid_token");
    }

    // Every operation the document lists is mounted and guarded.
    let doc: Value = app.http.get(url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut guarded = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if path.ends_with("/openapi.json") {
                continue;
            }
            let path = path.replace("{id}", "00000000-0000-0000-0000-000000000000");
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = app.http.request(method.clone(), format!("{}{path}", app.base)).send().await.unwrap();
            assert_eq!(r.status(), 401, "{method} {path}");
            guarded += 1;
        }
    }
    assert!(guarded >= 5, "{guarded}");
    // Nothing was touched without the token; the valid one still works.
    assert_eq!(call(&app, &token, Method::GET, "/state", None).await.0, 200);
}
}

#[tokio::test]
async fn each_token_has_its_own_budget_and_a_spent_one_says_when_to_retry() {
    let app = TestApp::builder().configure(|c| c.tuning.api_rate = (2, 3)).start().await;
    let setup = app.add_streamer().await;
    let (first, second) = (token_for(&app, setup.streamer.id).await, token_for(&app, setup.streamer.id).await);
    for _ in 0..3 {
        assert_eq!(call(&app, &first, Method::GET, "/state", None).await.0, 200);
    }
    let spent = app.http.get(format!("{}/api/v1/state", app.base)).bearer_auth(&first).send().await.unwrap();
    assert_eq!(spent.status(), 429);
    let retry: u64 = spent.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry), "two a minute: the next one within 30 s, rounded up: {retry}");
    assert_eq!(spent.json::<Value>().await.unwrap()["error"]["code"], "rate_limited");
    assert_eq!(call(&app, &second, Method::GET, "/state", None).await.0, 200, "another token has its own budget");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json_errors() {
    let app = TestApp::builder().start().await;
    let setup = app.add_streamer().await;
    let token = token_for(&app, setup.streamer.id).await;
    let (status, body) = call(&app, &token, Method::GET, "/nothing-here", None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    let (status, body) = call(&app, &token, Method::DELETE, "/state", None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed")));
    let doc = app.http.get(format!("{}/api/v1/openapi.json", app.base)).send().await.unwrap();
    assert_eq!(doc.status(), 200, "the document needs no token");
    assert_eq!(doc.headers()["content-type"], "application/json");
}
