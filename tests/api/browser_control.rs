//! The control room in a real browser (headless Chromium at OBS sizes,
//! through `browser::Browser`): each layout renders and moves the right way
//! in the configured colours with its hint, a config change and test votes
//! from the dashboard reach an open overlay, "Refresh overlays" reloads it,
//! a stale socket shows "reconnecting", long labels shrink to fit.
//!
//! Screenshots go to `target/screenshots/`; `scripts/screenshots.sh` copies
//! the README's into `docs/img/`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chatpulse::domain::{Color, Layout, OverlayConfig};
use fantoccini::Locator;
use serde_json::json;

use crate::browser::Browser;
use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(5);

async fn eval(browser: &Browser, script: &str) -> serde_json::Value {
    browser.client.execute(script, vec![]).await.unwrap()
}

/// The marker's centre relative to the track's centre along the layout's
/// axis, as a fraction of half the track: -1 "against" end, 1 "for" end
/// (right, or the top of a vertical bar).
async fn along(browser: &Browser) -> f64 {
    let script = "const m = document.getElementById('marker').getBoundingClientRect();
                  const t = document.getElementById('track').getBoundingClientRect();
                  if (document.getElementById('bar').dataset.layout === 'vertical')
                    return -((m.top + m.height / 2) - (t.top + t.height / 2)) / (t.height / 2);
                  return ((m.left + m.width / 2) - (t.left + t.width / 2)) / (t.width / 2);";
    eval(browser, script).await.as_f64().expect("a number")
}

async fn wait_along(browser: &Browser, pred: impl Fn(f64) -> bool) -> bool {
    eventually(WAIT, || async { pred(along(browser).await) }).await
}

async fn connection(browser: &Browser) -> serde_json::Value {
    browser.client.execute("return document.body.dataset.connection", vec![]).await.unwrap_or_default()
}

async fn wait_open(browser: &Browser) {
    let open = eventually(WAIT, || async { connection(browser).await == json!("open") }).await;
    assert!(open, "the overlay connects: {:?}", connection(browser).await);
}

/// The computed `background-image` of an element (the fills are gradients of
/// the side's colour).
async fn background(browser: &Browser, id: &str) -> String {
    let script = format!("return getComputedStyle(document.getElementById('{id}')).backgroundImage;");
    eval(browser, &script).await.as_str().unwrap_or_default().to_owned()
}

/// Visible text of an element ("" when hidden).
async fn visible_text(browser: &Browser, id: &str) -> String {
    let script = format!(
        "const e = document.getElementById('{id}');
         return e && !e.hidden && getComputedStyle(e).visibility !== 'hidden' && e.offsetHeight > 0 ? e.textContent : '';"
    );
    eval(browser, &script).await.as_str().unwrap_or_default().to_owned()
}

fn rgb(c: Color) -> String {
    let hex = c.to_string();
    let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).unwrap();
    format!("rgb({}, {}, {})", byte(1), byte(3), byte(5))
}

/// An overlay in `browser`, opened at `width`×`height`.
async fn open_overlay(browser: &Browser, app: &TestApp, overlay: &chatpulse::domain::OverlayId, size: (u32, u32)) {
    browser.set_viewport(size.0, size.1).await;
    browser.client.goto(&format!("{}/overlay/{overlay}", app.base)).await.unwrap();
    wait_open(browser).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_layout_renders_and_moves_the_right_way_in_its_colours_with_its_hint() {
    let Some(browser) = Browser::start().await else { return };
    let app = TestApp::builder().start().await;

    // Vertical, at a vertical OBS size, in the colour-blind-safe pair.
    let (for_color, against_color) = chatpulse::domain::look::COLOR_BLIND_SAFE;
    let mut vertical = OverlayConfig::default();
    vertical.look.layout = Layout::Vertical;
    (vertical.look.for_color, vertical.look.against_color, vertical.look.show_voters) =
        (for_color, against_color, true);
    let s = app.add_streamer_with(&vertical).await;
    open_overlay(&browser, &app, &s.streamer.overlay_id, Layout::Vertical.obs_size()).await;
    assert!(along(&browser).await.abs() < 0.02, "starts centred");
    assert_eq!(visible_text(&browser, "hint-for").await, "type yes");
    assert_eq!(visible_text(&browser, "hint-against").await, "type no");
    for chatter in 1..=6 {
        assert_eq!(app.chat(&s.streamer.twitch_user_id, &chatter.to_string(), "yes!").await, 204);
    }
    assert!(wait_along(&browser, |p| p > 0.3).await, "up after yes votes: {}", along(&browser).await);
    assert!(
        background(&browser, "fill-for").await.contains(&rgb(for_color)),
        "{}",
        background(&browser, "fill-for").await
    );
    assert!(background(&browser, "fill-against").await.contains(&rgb(against_color)));
    let voters = eventually(WAIT, || async { visible_text(&browser, "voters").await == "6 voting" }).await;
    assert!(voters, "the participation count: {:?}", visible_text(&browser, "voters").await);
    let overflow = eval(&browser, "return [document.documentElement.scrollWidth, document.documentElement.clientWidth, document.documentElement.scrollHeight, document.documentElement.clientHeight]").await;
    assert_eq!(
        (overflow[0].clone(), overflow[2].clone()),
        (overflow[1].clone(), overflow[3].clone()),
        "no overflow at 200×600"
    );
    browser.save_screenshot("overlay-vertical.png").await;
    for chatter in 11..=30 {
        assert_eq!(app.chat(&s.streamer.twitch_user_id, &chatter.to_string(), "no").await, 204);
    }
    assert!(wait_along(&browser, |p| p < -0.3).await, "down after no votes: {}", along(&browser).await);

    // Horizontal, at 800×100, in the classic colours with a hint.
    let s = app.add_streamer_with(&OverlayConfig::default()).await;
    open_overlay(&browser, &app, &s.streamer.overlay_id, (800, 100)).await;
    assert_eq!(visible_text(&browser, "hint-for").await, "type yes");
    for chatter in 1..=3 {
        app.chat(&s.streamer.twitch_user_id, &chatter.to_string(), "no").await;
    }
    assert!(wait_along(&browser, |p| p < -0.3).await, "left after no votes: {}", along(&browser).await);
    let classic = chatpulse::domain::Look::classic();
    assert!(background(&browser, "fill-against").await.contains(&rgb(classic.against_color)));
    browser.save_screenshot("overlay-against.png").await;
    for chatter in 11..=20 {
        app.chat(&s.streamer.twitch_user_id, &chatter.to_string(), "YES yes").await;
    }
    assert!(wait_along(&browser, |p| p > 0.3).await, "right after yes votes: {}", along(&browser).await);
    browser.save_screenshot("overlay-horizontal.png").await;
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_label_shrinks_to_fit_instead_of_being_cut() {
    let Some(browser) = Browser::start().await else { return };
    let app = TestApp::builder().start().await;
    let long = OverlayConfig {
        left_label: chatpulse::domain::Label::parse("The pineapple belongs on pizza, no discussion!").unwrap(),
        ..OverlayConfig::default()
    };
    let s = app.add_streamer_with(&long).await;
    open_overlay(&browser, &app, &s.streamer.overlay_id, (800, 100)).await;
    let fits = "const e = document.getElementById('left-label');
                return [e.scrollWidth <= e.clientWidth + 1, parseFloat(getComputedStyle(e).fontSize)];";
    let fitted = eventually(WAIT, || async { eval(&browser, fits).await[0] == json!(true) }).await;
    let state = eval(&browser, fits).await;
    assert!(fitted, "the whole label shows: {state}");
    assert!(state[1].as_f64().unwrap() < 25.0, "drawn smaller than a short one: {state}");
    let short =
        eval(&browser, "return parseFloat(getComputedStyle(document.getElementById('right-label')).fontSize)").await;
    assert_eq!(short.as_f64(), Some(25.0), "a short label keeps its size");
    browser.save_screenshot("overlay-long-label.png").await;
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_changes_the_look_live_sends_test_votes_and_refreshes_the_overlay() {
    let Some(dashboard) = Browser::start().await else { return };
    let Some(overlay) = Browser::start().await else { return };
    let app = TestApp::builder().demo().start().await;
    dashboard.set_viewport(1200, 1400).await;
    dashboard.client.goto(&format!("{}/auth/login?as=controlroom", app.base)).await.unwrap();
    let overlay_url = eval(&dashboard, "return document.getElementById('overlay-url').value").await;
    let overlay_url = overlay_url.as_str().unwrap().to_owned();
    overlay.client.goto(&overlay_url).await.unwrap();
    wait_open(&overlay).await;
    assert_eq!(visible_text(&overlay, "hint-for").await, "type yes");

    // A config change, saved on the dashboard, reaches the open overlay.
    let script = "document.getElementById('for_trigger').value = 'pizza, pineapple';
                  document.getElementById('right_label').value = 'Team Pizza';
                  document.getElementById('colour-blind-preset').click();";
    dashboard.client.execute(script, vec![]).await.unwrap();
    dashboard.client.find(Locator::Css("#settings button[type='submit']")).await.unwrap().click().await.unwrap();
    let (for_color, _) = chatpulse::domain::look::COLOR_BLIND_SAFE;
    let applied = eventually(WAIT, || async {
        visible_text(&overlay, "hint-for").await == "type pizza or pineapple"
            && visible_text(&overlay, "right-label").await == "Team Pizza"
            && background(&overlay, "fill-for").await.contains(&rgb(for_color))
    })
    .await;
    assert!(
        applied,
        "the overlay took the new look: {:?} {:?}",
        visible_text(&overlay, "hint-for").await,
        background(&overlay, "fill-for").await
    );

    // Test votes from the dashboard move the bar.
    dashboard.client.find(Locator::Id("test-for")).await.unwrap().click().await.unwrap();
    assert!(
        overlay.wait_for_marker(WAIT, |p| p > 0.3).await,
        "right after test votes: {}",
        overlay.marker_position().await
    );
    overlay.save_screenshot("overlay-colour-blind.png").await;
    let working = eventually(Duration::from_secs(10), || async {
        eval(&dashboard, "return document.getElementById('diagnosis').dataset.code || ''").await == json!("working")
    })
    .await;
    assert!(working, "the status panel follows: {}", visible_text(&dashboard, "diagnosis-message").await);
    let panel = dashboard.client.find(Locator::Id("status")).await.unwrap();
    let png = panel.screenshot().await.unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("dashboard-status.png"), png).unwrap();

    // "Refresh overlays": the open overlay loads its page afresh.
    overlay.client.execute("window.beforeRefresh = true;", vec![]).await.unwrap();
    dashboard.client.find(Locator::Css("#reload-form button")).await.unwrap().click().await.unwrap();
    let reloaded = eventually(WAIT, || async {
        overlay.client.execute("return window.beforeRefresh === undefined", vec![]).await.ok() == Some(json!(true))
    })
    .await;
    assert!(reloaded, "the overlay page reloaded");
    wait_open(&overlay).await;
    dashboard.quit().await;
    overlay.quit().await;
}

/// A TCP forwarder whose connections can be frozen: open, but passing
/// nothing on — what a half-dead network path looks like to a browser.
/// Connections made after the freeze pass normally.
struct FreezingProxy {
    port: u16,
    frozen: Arc<AtomicBool>,
}

impl FreezingProxy {
    async fn start(target: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let frozen = Arc::new(AtomicBool::new(false));
        let freeze = Arc::clone(&frozen);
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = tokio::net::TcpStream::connect(target).await else { continue };
                // Only connections open at the time of a freeze stop.
                let stop = Arc::new(AtomicBool::new(false));
                if freeze.load(Ordering::SeqCst) {
                    // A new connection after the freeze: let it through.
                } else {
                    let (stop, freeze) = (Arc::clone(&stop), Arc::clone(&freeze));
                    tokio::spawn(async move {
                        while !freeze.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        stop.store(true, Ordering::SeqCst);
                    });
                }
                let (ri, wi) = inbound.into_split();
                let (ro, wo) = outbound.into_split();
                tokio::spawn(pump(ri, wo, Arc::clone(&stop)));
                tokio::spawn(pump(ro, wi, stop));
            }
        });
        Self { port, frozen }
    }
}

/// Copies until the connection ends or `stop` is set; then holds both ends
/// open, passing nothing.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    stop: Arc<AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0; 16 * 1024];
    loop {
        let read = tokio::time::timeout(Duration::from_millis(50), from.read(&mut buf)).await;
        if stop.load(Ordering::SeqCst) {
            // Frozen: keep the sockets, forward nothing, for as long as the test runs.
            let _keep = (from, to);
            std::future::pending::<()>().await;
            return;
        }
        match read {
            Err(_) => continue,
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(n)) => {
                if to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_socket_shows_reconnecting_and_heals_itself() {
    let Some(browser) = Browser::start().await else { return };
    let app = TestApp::builder().configure(|c| c.tuning.overlay_keepalive = Duration::from_secs(1)).start().await;
    let s = app.add_streamer().await;
    let proxy = FreezingProxy::start(app.addr).await;
    browser.client.goto(&format!("http://127.0.0.1:{}/overlay/{}", proxy.port, s.streamer.overlay_id)).await.unwrap();
    wait_open(&browser).await;
    assert!(!browser.indicator_visible().await);

    proxy.frozen.store(true, Ordering::SeqCst);
    // Nothing for 2.5 keepalives: the page says so instead of showing a frozen bar.
    let shown = eventually(Duration::from_secs(8), || async { browser.indicator_visible().await }).await;
    assert!(shown, "the reconnecting indicator shows on a stale socket");
    browser.save_screenshot("overlay-stale.png").await;
    // It connects afresh (new connections pass) and the indicator goes.
    let healed = eventually(Duration::from_secs(40), || async {
        connection(&browser).await == json!("open") && !browser.indicator_visible().await
    })
    .await;
    assert!(healed, "reconnected: {:?}", connection(&browser).await);
    assert_eq!(app.chat(&s.streamer.twitch_user_id, "1", "yes").await, 204);
    assert!(browser.wait_for_marker(WAIT, |p| p > 0.05).await, "live again");
    browser.quit().await;
}
