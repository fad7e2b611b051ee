//! The HTTP server's own limits (`HTTP_*_TIMEOUT`, `MAX_HTTP_CONNECTIONS*`):
//! slow or silent clients are closed on, declared oversized bodies get 413 at
//! once, and one address cannot take the connections the health checks and
//! Twitch's webhooks need. Raw sockets, so that nothing is sent that the
//! test does not write. Timeouts are shortened by configuration; every wait
//! is for the socket's own closing, with generous deadlines.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::helpers::*;

/// Far above every configured timeout here: a socket still open then is a failure.
const DEADLINE: Duration = Duration::from_secs(20);

/// Reads until the server closes the connection; returns how long that took
/// (from `since`) and what it sent, or `None` if it stayed open past `within`.
async fn closed_by_server(stream: &mut TcpStream, since: Instant, within: Duration) -> Option<(Duration, Vec<u8>)> {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = within.checked_sub(since.elapsed())?;
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some((since.elapsed(), received)),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
}

/// A connection to `app` from `from` (any 127.0.0.0/8 address on Linux).
async fn connect_from(app: &TestApp, from: Ipv4Addr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0)).unwrap();
    socket.connect(app.addr).await.unwrap()
}

fn status_of(response: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(response).ok()?.lines().next()?;
    line.split(' ').nth(1)?.parse().ok()
}

async fn app_with(change: impl Fn(&mut chatpulse::config::Config) + 'static) -> TestApp {
    TestApp::builder().configure(change).start().await
}

#[tokio::test]
async fn a_half_sent_request_is_closed_after_the_header_timeout() {
    let app = app_with(|c| c.http.header_timeout = Duration::from_secs(1)).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let sent = Instant::now();
    stream.write_all(b"GET /health/live HTTP/1.1\r\nHost: chatpulse\r\nX-Half: ").await.unwrap();

    let (after, answer) = closed_by_server(&mut stream, sent, DEADLINE).await.expect("closed, not left open");
    assert!(after >= Duration::from_millis(900), "closed after {after:?}, before the header timeout");
    assert!(status_of(&answer).is_none_or(|s| s >= 400), "no answer to a request never finished: {answer:?}");
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_header_timeout() {
    let app = app_with(|c| c.http.header_timeout = Duration::from_secs(1)).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let opened = Instant::now();
    let (after, _) = closed_by_server(&mut stream, opened, DEADLINE).await.expect("closed, not left open");
    assert!(after >= Duration::from_millis(900), "closed after {after:?}");
}

#[tokio::test]
async fn one_header_byte_every_two_seconds_is_closed_at_the_header_timeout() {
    let app = app_with(|c| c.http.header_timeout = Duration::from_secs(3)).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let opened = Instant::now();
    let request = b"GET /health/live HTTP/1.1\r\nHost: chatpulse\r\n\r\n";
    let mut closed = None;
    for byte in request {
        // Each byte keeps the connection busy; none buys more time.
        if stream.write_all(&[*byte]).await.is_err() {
            break;
        }
        if let Some(result) = closed_by_server(&mut stream, Instant::now(), Duration::from_secs(2)).await {
            closed = Some((opened.elapsed(), result.1));
            break;
        }
    }
    let (after, answer) = closed.expect("closed before the request head was complete");
    assert!(after >= Duration::from_millis(2900) && after < Duration::from_secs(8), "closed after {after:?}");
    assert!(status_of(&answer).is_none_or(|s| s >= 400), "{answer:?}");
}

#[tokio::test]
async fn a_slow_body_is_closed_after_the_body_timeout() {
    let app = app_with(|c| c.http.body_timeout = Duration::from_secs(2)).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let head = "POST /webhooks/eventsub HTTP/1.1\r\nHost: chatpulse\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    let sent = Instant::now();
    let mut closed = None;
    for _ in 0..30 {
        if stream.write_all(b"{\"a\":1} ").await.is_err() {
            break;
        }
        if let Some(result) = closed_by_server(&mut stream, Instant::now(), Duration::from_millis(500)).await {
            closed = Some((sent.elapsed(), result.1));
            break;
        }
    }
    let (after, answer) = closed.expect("closed before the body was complete");
    assert!(after >= Duration::from_millis(1900) && after < Duration::from_secs(8), "closed after {after:?}");
    assert!(status_of(&answer).is_none_or(|s| s >= 400), "a half body was not handled: {answer:?}");
}

#[tokio::test]
async fn a_declared_body_over_the_limit_is_refused_at_once() {
    let app = app_with(|c| {
        c.http.header_timeout = Duration::from_secs(30);
        c.http.body_timeout = Duration::from_secs(30);
    })
    .await;
    for (path, length) in [("/webhooks/eventsub", "99999999"), ("/dashboard/config", "20000"), ("/nowhere", "70000")] {
        let mut stream = TcpStream::connect(app.addr).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: chatpulse\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n{{\"small\":1}}"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let sent = Instant::now();
        // Answered and closed long before any timeout could do it.
        let (after, answer) = closed_by_server(&mut stream, sent, Duration::from_secs(10)).await.expect("closed");
        assert_eq!(status_of(&answer), Some(413), "{path}: {}", String::from_utf8_lossy(&answer));
        assert!(after < Duration::from_secs(5), "{path}: took {after:?}");
    }
    // A body within the limit is still read and handled.
    let ok = app.http.post(format!("{}/webhooks/eventsub", app.base)).body("{}").send().await.unwrap();
    assert_eq!(ok.status(), 400, "read and refused for its missing headers, not for its size");
}

#[tokio::test]
async fn a_kept_alive_connection_is_closed_when_idle_but_an_overlay_websocket_stays() {
    let app = app_with(|c| c.http.idle_timeout = Duration::from_secs(1)).await;
    let s = app.add_streamer().await;
    let mut overlay = app.connect(&s.streamer.overlay_id).await;
    overlay.next_frame(Duration::from_secs(2)).await.expect("initial frame");

    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(b"GET /health/live HTTP/1.1\r\nHost: chatpulse\r\n\r\n").await.unwrap();
    let mut first = [0u8; 12];
    stream.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let answered = Instant::now();
    let (after, _) = closed_by_server(&mut stream, answered, DEADLINE).await.expect("idle connection closed");
    assert!(after >= Duration::from_millis(900), "closed after {after:?}");

    // Three idle timeouts later the overlay's upgraded connection still
    // carries votes.
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(answered.elapsed())).await;
    assert_eq!(app.chat(&s.streamer.twitch_user_id, "7001", "yes").await, 204);
    overlay.wait_for(Duration::from_secs(5), |f| f.value > 0.0).await.expect("the overlay is still connected");
}

#[tokio::test]
async fn idle_connections_over_the_per_address_cap_are_refused_while_others_still_answer() {
    let app = app_with(|c| {
        c.http.header_timeout = Duration::from_secs(60);
        c.http.max_connections_per_ip = 5;
        c.http.max_connections = 50;
    })
    .await;
    let s = app.add_streamer().await;
    // Not 127.0.0.1, where the test client keeps its own pooled connections.
    let attacker = Ipv4Addr::new(127, 0, 0, 3);
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(connect_from(&app, attacker).await);
    }
    // One more from the same address: told why and closed.
    let mut refused = connect_from(&app, attacker).await;
    let (_, answer) = closed_by_server(&mut refused, Instant::now(), DEADLINE).await.expect("refused and closed");
    assert_eq!(status_of(&answer), Some(429), "{}", String::from_utf8_lossy(&answer));

    // Someone else still gets in: the health check and a signed webhook.
    let elsewhere = reqwest::Client::builder().local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))).build().unwrap();
    let live = elsewhere.get(format!("{}/health/live", app.base)).send().await.unwrap();
    assert_eq!(live.status(), 200);
    let delivery = Delivery::chat(s.streamer.twitch_user_id.as_str(), "7002", "yes");
    let webhook = delivery_request(&elsewhere, &app.base, &delivery).send().await.unwrap();
    assert_eq!(webhook.status(), 204);

    // A place freed is a place taken again.
    drop(held.pop());
    assert!(
        eventually(DEADLINE, || async {
            let mut again = connect_from(&app, attacker).await;
            again.write_all(b"GET /health/live HTTP/1.1\r\nHost: chatpulse\r\nConnection: close\r\n\r\n").await.is_ok()
                && closed_by_server(&mut again, Instant::now(), Duration::from_secs(5))
                    .await
                    .is_some_and(|(_, answer)| status_of(&answer) == Some(200))
        })
        .await,
        "the address gets a place again once one of its connections closed"
    );
}

#[tokio::test]
async fn connections_over_the_global_cap_are_refused_with_503() {
    let app = app_with(|c| {
        c.http.header_timeout = Duration::from_secs(60);
        c.http.max_connections_per_ip = 2;
        c.http.max_connections = 4;
    })
    .await;
    let mut held = Vec::new();
    for last in 1..=4u8 {
        held.push(connect_from(&app, Ipv4Addr::new(127, 0, 1, last)).await);
    }
    let mut refused = connect_from(&app, Ipv4Addr::new(127, 0, 1, 9)).await;
    let (_, answer) = closed_by_server(&mut refused, Instant::now(), DEADLINE).await.expect("refused and closed");
    assert_eq!(status_of(&answer), Some(503), "{}", String::from_utf8_lossy(&answer));
}
