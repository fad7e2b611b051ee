//! The overlay page and its WebSocket: rendering, limits, slow clients.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use chatpulse::domain::OverlayId;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(2);

fn http_status(error: tokio_tungstenite::tungstenite::Error) -> u16 {
    match error {
        tokio_tungstenite::tungstenite::Error::Http(response) => response.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other}"),
    }
}

both_modes! {
async fn the_overlay_page_shows_the_labels_escaped() {
    let app = TestApp::builder().start().await;
    let s = app.add_streamer_with(&config("yes", "no", "<b>\"Nope\"</b>", "Yes & more", 0.5)).await;

    let response = app.http.get(format!("{}/overlay/{}", app.base, s.streamer.overlay_id)).send().await.unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let html = response.text().await.unwrap();
    assert!(
        html.contains("&#60;b&#62;&#34;Nope&#34;&#60;/b&#62;") || html.contains("&lt;b&gt;&quot;Nope&quot;&lt;/b&gt;"),
        "{html}"
    );
    assert!(!html.contains("<b>\"Nope\"</b>"));
    assert!(html.contains("Yes &#38; more") || html.contains("Yes &amp; more"));
    assert!(html.contains(&s.streamer.overlay_id.to_string()));
    let js = app.http.get(format!("{}/static/overlay.js", app.base)).send().await.unwrap();
    assert_eq!(js.status(), 200);
}
}

both_modes! {
async fn unknown_or_malformed_overlay_ids_get_404_before_any_upgrade() {
    let app = TestApp::builder().start().await;
    let unknown = OverlayId::random();

    for path in [format!("/overlay/{unknown}"), "/overlay/not-a-uuid".to_owned()] {
        let response = app.http.get(format!("{}{path}", app.base)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
    }
    let refused = app.try_connect(&unknown).await.err().expect("refused");
    assert_eq!(http_status(refused), 404);
    let refused = tokio_tungstenite::connect_async(format!("ws://{}/ws/overlay/xyz", app.addr)).await.err().unwrap();
    assert_eq!(http_status(refused), 404);
}
}

both_modes! {
async fn a_reconnecting_client_gets_the_current_value_at_once() {
    let app = TestApp::builder().start().await;
    let s = app.add_streamer().await;
    let mut first = app.connect(&s.streamer.overlay_id).await;
    first.next_frame(WAIT).await;
    app.chat(&s.streamer.twitch_user_id, "1", "yes").await;
    app.chat(&s.streamer.twitch_user_id, "2", "yes").await;
    first.wait_for(WAIT, |f| f.value > 15.0).await.expect("both votes");

    let started = Instant::now();
    let mut second = app.connect(&s.streamer.overlay_id).await;
    let frame = second.next_frame(WAIT).await.expect("initial frame");

    assert!(frame.value > 15.0 && frame.value <= 20.0, "{frame:?}");
    assert_eq!(frame.status, "active");
    assert!(started.elapsed() < Duration::from_millis(500));
}
}

both_modes! {
async fn the_51st_client_of_a_session_is_refused() {
    let app = TestApp::builder().configure(|c| {
        c.max_overlay_connections_per_ip = 100;
        c.connection_rate_per_ip = NonZeroU32::new(1000).unwrap();
        c.connection_rate_burst = NonZeroU32::new(1000).unwrap();
    }).start()
    .await;
    let s = app.add_streamer().await;
    let other = app.add_streamer().await;
    let mut clients = Vec::new();
    for _ in 0..50 {
        clients.push(app.connect(&s.streamer.overlay_id).await);
    }

    let refused = app.try_connect(&s.streamer.overlay_id).await.err().expect("51st refused");
    assert_eq!(http_status(refused), 503);
    // Another session is unaffected, and a freed place can be taken again.
    assert!(app.try_connect(&other.streamer.overlay_id).await.is_ok());
    clients.pop().unwrap().close().await;
    assert!(eventually(WAIT, || async { app.try_connect(&s.streamer.overlay_id).await.is_ok() }).await);
    assert_eq!(app.metric("chatpulse_websocket_rejections_total{reason=\"session_full\"}").await, 1.0);
}
}

both_modes! {
async fn per_address_limits_refuse_with_429() {
    let app = TestApp::builder().configure(|c| c.max_connections_per_ip = 2).start().await;
    let s = app.add_streamer().await;
    let _a = app.connect(&s.streamer.overlay_id).await;
    let _b = app.connect(&s.streamer.overlay_id).await;
    let refused = app.try_connect(&s.streamer.overlay_id).await.err().expect("third refused");
    assert_eq!(http_status(refused), 429);

    let app = TestApp::builder().configure(|c| {
        c.connection_rate_per_ip = NonZeroU32::new(1).unwrap();
        c.connection_rate_burst = NonZeroU32::new(2).unwrap();
    }).start()
    .await;
    let s = app.add_streamer().await;
    let _a = app.connect(&s.streamer.overlay_id).await;
    let _b = app.connect(&s.streamer.overlay_id).await;
    let refused = app.try_connect(&s.streamer.overlay_id).await.err().expect("too fast");
    assert_eq!(http_status(refused), 429);
}
}

both_modes! {
async fn the_global_connection_limit_refuses_with_503() {
    let app = TestApp::builder().configure(|c| c.max_websocket_connections = 1).start().await;
    let s = app.add_streamer().await;
    let _a = app.connect(&s.streamer.overlay_id).await;
    let refused = app.try_connect(&s.streamer.overlay_id).await.err().expect("refused");
    assert_eq!(http_status(refused), 503);
}
}

both_modes! {
async fn cross_origin_upgrades_are_refused_but_same_host_and_no_origin_are_fine() {
    let app = TestApp::builder().start().await;
    let s = app.add_streamer().await;
    let with_origin = |origin: &str| {
        let mut request = app.ws_url(&s.streamer.overlay_id).into_client_request().unwrap();
        request.headers_mut().insert("origin", HeaderValue::from_str(origin).unwrap());
        request
    };

    let refused = tokio_tungstenite::connect_async(with_origin("https://evil.example")).await.err().unwrap();
    assert_eq!(http_status(refused), 403);
    let same = with_origin(&format!("http://{}", app.addr));
    assert!(tokio_tungstenite::connect_async(same).await.is_ok());
    assert!(app.try_connect(&s.streamer.overlay_id).await.is_ok(), "OBS sends no Origin");
}
}

both_modes! {
async fn a_client_that_stops_reading_is_evicted_while_others_keep_receiving() {
    // A fast tick and a fast-moving value produce frames quickly enough to
    // fill a stalled client's socket buffers and then its queue.
    let app = TestApp::builder().configure(|c| {
        c.tuning.broadcast_tick = Duration::from_millis(1);
        c.tuning.socket_send_buffer = Some(4096);
        c.vote_rate_limit_capacity = 100_000;
        c.vote_rate_limit_rate = 6_000_000.0;
    }).start()
    .await;
    let s = app.add_streamer_with(&config("yes", "no", "L", "R", 2.0)).await;
    let mut healthy = app.connect(&s.streamer.overlay_id).await;
    let stalled = {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(1024).unwrap();
        let stream = socket.connect(app.addr).await.unwrap();
        let (ws, _) = tokio_tungstenite::client_async(app.ws_url(&s.streamer.overlay_id), stream).await.unwrap();
        ws // never read again
    };

    let b = s.streamer.twitch_user_id.clone();
    let voter = {
        async {
            let mut n = 0u64;
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(20) {
                n += 1;
                let text = if n.is_multiple_of(2) { "yes" } else { "no" };
                app.chat(&b, &(100_000 + n).to_string(), text).await;
                if app.metric("chatpulse_websocket_evictions_total").await >= 1.0 {
                    return true;
                }
            }
            false
        }
    };
    let reader = async {
        let mut frames = 0u64;
        while healthy.next_frame(Duration::from_secs(1)).await.is_some() {
            frames += 1;
            if frames > 1_000_000 {
                break;
            }
        }
        frames
    };
    let evicted = tokio::select! {
        evicted = voter => evicted,
        _ = reader => false,
    };
    assert!(evicted, "the stalled client was evicted");

    // The healthy client still receives frames after the eviction.
    app.chat(&s.streamer.twitch_user_id, "999999", "yes").await;
    assert!(healthy.next_frame(WAIT).await.is_some());
    drop(stalled);
}
}

both_modes! {
async fn a_silent_connection_is_closed() {
    let app = TestApp::builder().configure(|c| {
        c.tuning.ping_interval = Duration::from_millis(50);
        c.tuning.idle_timeout = Duration::from_millis(300);
    }).start()
    .await;
    let s = app.add_streamer().await;
    // A client that never reads never answers pings.
    let mut silent = app.connect(&s.streamer.overlay_id).await;

    let closed = silent.close_arrived_unread(WAIT).await;

    assert!(closed, "the service closed the silent connection");
    let close = silent.wait_for_close(WAIT).await.expect("closed").expect("with a close frame");
    assert_eq!(u16::from(close.code), 1000);
    assert_eq!(close.reason.as_str(), "idle timeout");
}
}

both_modes! {
async fn a_client_that_answers_pings_stays_connected() {
    let app = TestApp::builder().configure(|c| {
        c.tuning.ping_interval = Duration::from_millis(50);
        c.tuning.idle_timeout = Duration::from_millis(300);
    }).start()
    .await;
    let s = app.add_streamer().await;
    let mut client = app.connect(&s.streamer.overlay_id).await;
    client.next_frame(WAIT).await;

    // Reading lets the client library answer the server's pings.
    assert!(client.next_event(Duration::from_millis(900)).await.is_none(), "nothing but pings for 0.9 s");
    app.chat(&s.streamer.twitch_user_id, "1", "yes").await;
    assert!(client.next_frame(WAIT).await.is_some(), "still open and receiving");
}
}
