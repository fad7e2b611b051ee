//! Per-address limits an attacker cannot step around: an IPv6 /64 is one
//! client; `Retry-After` is the real wait; one address cannot take every
//! place of an overlay; an overlay socket accepts only our own origin.

use chatpulse::config::IpNet;
use chatpulse::domain::OverlayId;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::helpers::*;

/// The tests reach the service from 127.0.0.1: trusted here as the load
/// balancer, so `X-Forwarded-For` names the client.
fn behind_a_balancer(c: &mut chatpulse::config::Config) {
    c.trusted_proxies = vec![IpNet::parse("127.0.0.1").unwrap()];
}

async fn login_from(app: &TestApp, client: &str) -> reqwest::Response {
    let url = format!("{}/auth/login", app.base);
    browser(false).get(url).header("x-forwarded-for", client).send().await.unwrap()
}

#[tokio::test]
async fn an_ipv6_64_is_one_client_for_the_login_budget() {
    let app = TestApp::builder()
        .demo()
        .configure(|c| {
            c.tuning.auth_rate = (1, 2);
            behind_a_balancer(c);
        })
        .start()
        .await;
    assert_eq!(login_from(&app, "2001:db8:1:2::1").await.status(), 303);
    assert_eq!(login_from(&app, "2001:db8:1:2:aaaa:bbbb:cccc:dddd").await.status(), 303);
    let third = login_from(&app, "2001:db8:1:2::3").await;
    assert_eq!(third.status(), 429, "a third address of the same /64 is the same client");
    assert_eq!(login_from(&app, "2001:db8:1:3::1").await.status(), 303, "the next /64 is another client");
    assert_eq!(login_from(&app, "203.0.113.9").await.status(), 303, "IPv4 clients by their address");
}

#[tokio::test]
async fn retry_after_is_the_real_wait_rounded_up() {
    // One login a minute: the budget refills a whole minute after the first.
    let app = TestApp::builder().demo().configure(|c| c.tuning.auth_rate = (1, 1)).start().await;
    let client = browser(false);
    let url = format!("{}/auth/login", app.base);
    assert_eq!(client.get(&url).send().await.unwrap().status(), 303);
    let refused = client.get(&url).send().await.unwrap();
    assert_eq!(refused.status(), 429);
    // A few milliseconds have passed: 59.99… s remain, announced as 60 (never 59).
    assert_eq!(refused.headers()["retry-after"], "60");
}

/// An overlay socket request from `client` (through the trusted balancer),
/// with `extra` headers.
async fn socket_from(
    app: &TestApp,
    overlay: &OverlayId,
    client: &str,
    extra: &[(&'static str, &str)],
) -> Result<OverlayClient, u16> {
    let mut request = app.ws_url(overlay).into_client_request().unwrap();
    request.headers_mut().insert("x-forwarded-for", HeaderValue::from_str(client).unwrap());
    for (name, value) in extra {
        request.headers_mut().insert(*name, HeaderValue::from_str(value).unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(OverlayClient { ws }),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(other) => panic!("expected an HTTP answer, got {other}"),
    }
}

both_modes! {
async fn one_address_cannot_take_every_place_of_an_overlay() {
    let app = TestApp::builder()
        .configure(|c| {
            c.max_overlay_connections_per_ip = 2;
            behind_a_balancer(c);
        })
        .start()
        .await;
    let s = app.add_streamer().await;
    let overlay = s.streamer.overlay_id;
    let other = app.add_streamer().await.streamer.overlay_id;

    // Whoever found the URL holds two places from one /64...
    let _a = socket_from(&app, &overlay, "2001:db8:7::1", &[]).await.expect("first");
    let b = socket_from(&app, &overlay, "2001:db8:7::2", &[]).await.expect("second");
    assert_eq!(socket_from(&app, &overlay, "2001:db8:7::3", &[]).await.err(), Some(429), "and no more");
    // ...while the streamer's OBS, elsewhere, still connects; so do other overlays.
    let mut obs = socket_from(&app, &overlay, "203.0.113.20", &[]).await.expect("OBS connects");
    obs.next_frame(std::time::Duration::from_secs(5)).await.expect("and gets frames");
    assert!(socket_from(&app, &other, "2001:db8:7::3", &[]).await.is_ok());
    assert_eq!(
        app.metric("chatpulse_websocket_rejections_total{reason=\"per_overlay_limit\"}").await,
        1.0
    );
    // A freed place can be taken again.
    b.close().await;
    let again = eventually(std::time::Duration::from_secs(5), || async {
        socket_from(&app, &overlay, "2001:db8:7::3", &[]).await.is_ok()
    });
    assert!(again.await);
}
}

both_modes! {
async fn an_overlay_socket_accepts_only_the_public_urls_origin() {
    let app = TestApp::builder().configure(|c| c.public_url = "https://chatpulse.example".into()).start().await;
    let overlay = app.add_streamer().await.streamer.overlay_id;
    let from = |origin: &'static str, host: &'static str| {
        let app = &app;
        async move {
            let mut request = app.ws_url(&overlay).into_client_request().unwrap();
            request.headers_mut().insert("origin", HeaderValue::from_static(origin));
            request.headers_mut().insert("host", HeaderValue::from_static(host));
            match tokio_tungstenite::connect_async(request).await {
                Ok(_) => 101,
                Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
                Err(e) => panic!("{e}"),
            }
        }
    };
    // A page on a domain the attacker points at us: Origin and Host agree,
    // which the request's sender controls.
    assert_eq!(from("http://rebound.example", "rebound.example").await, 403);
    assert_eq!(from("https://chatpulse.example", "chatpulse.example").await, 101, "our own dashboard");
    assert_eq!(from("https://ChatPulse.example", "127.0.0.1").await, 101, "origins compare case-insensitively");
    assert!(app.try_connect(&overlay).await.is_ok(), "OBS sends no Origin");
}
}
