//! Per-address rate limits on the login pages and on dashboard and API
//! posts, with `Retry-After`; behind a trusted proxy each client has its
//! own budget.

use crate::helpers::*;

#[tokio::test]
async fn login_pages_are_rate_limited_per_address() {
    let app = TestApp::builder().demo().configure(|c| c.tuning.auth_rate = (1, 3)).start().await;
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
    let behind = TestApp::builder()
        .demo()
        .configure(|c| {
            c.tuning.auth_rate = (1, 2);
            c.trusted_proxies = vec![chatpulse::config::IpNet::parse("127.0.0.1").unwrap()];
        })
        .start()
        .await;
    for _ in 0..2 {
        assert_eq!(login(&behind, "203.0.113.1").await, 303);
    }
    assert_eq!(login(&behind, "203.0.113.1").await, 429, "this client used its budget");
    assert_eq!(login(&behind, "203.0.113.2").await, 303, "another client behind the same balancer did not");
    // A client cannot pick its own address: the balancer appends the real one.
    assert_eq!(login(&behind, "198.51.100.9, 203.0.113.1").await, 429);

    // Without trusted proxies the header is nobody's word: one budget.
    let direct = TestApp::builder().demo().configure(|c| c.tuning.auth_rate = (1, 2)).start().await;
    assert_eq!(login(&direct, "203.0.113.1").await, 303);
    assert_eq!(login(&direct, "203.0.113.2").await, 303);
    assert_eq!(login(&direct, "203.0.113.3").await, 429, "the header is ignored");
}

both_modes! {
async fn dashboard_and_api_posts_are_rate_limited_per_address() {
    // Logging in spends one request of the budget (the dashboard page).
    let app = TestApp::builder().demo().configure(|c| c.tuning.dashboard_rate = (1, 3)).start().await;
    let LoggedIn { client, csrf: token, overlay, .. } = app.log_in(&unique_login()).await;
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
