//! The overlay in a real browser: headless Chromium driven over WebDriver
//! (chromedriver). The marker's rendered position is read from the page.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use serde_json::json;

use crate::helpers::*;

/// A chromedriver process and a headless Chromium session, sized like an OBS
/// Browser Source (800×100).
pub struct Browser {
    pub client: Client,
    driver: Child,
}

impl Browser {
    /// `None` (skipped, loudly) when `TEST_CHROMEDRIVER` is unset; panics when
    /// it is set but the browser cannot be started.
    pub async fn start() -> Option<Self> {
        let Some(driver_path) = crate::helpers::test_env("TEST_CHROMEDRIVER") else {
            eprintln!("SKIPPED: TEST_CHROMEDRIVER is not set (make test sets it)");
            return None;
        };
        let chromium = std::env::var("TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("TEST_CHROMEDRIVER={driver_path} cannot start: {e}"));
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        assert!(
            eventually(Duration::from_secs(10), || async { tokio::net::TcpStream::connect(addr).await.is_ok() }).await
        );
        let user_data = tempfile::tempdir().unwrap().keep();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--window-size=800,100", "--hide-scrollbars",
                    format!("--user-data-dir={}", user_data.display()),
                ]
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| panic!("cannot start headless Chromium through chromedriver: {e}"));
        let browser = Self { client, driver };
        browser.set_viewport(800, 100).await;
        Some(browser)
    }

    /// Resizes the window so that the page's viewport (what OBS gives a
    /// Browser Source) is exactly `width`×`height` CSS pixels.
    pub async fn set_viewport(&self, width: u32, height: u32) {
        let inner = || async {
            let v = self.client.execute("return [window.innerWidth, window.innerHeight]", vec![]).await.unwrap();
            (v[0].as_i64().unwrap_or(0), v[1].as_i64().unwrap_or(0))
        };
        // Window decorations differ between modes and versions: adjust the
        // outer size until the viewport is right.
        for _ in 0..5 {
            let (w, h) = inner().await;
            if (w, h) == (i64::from(width), i64::from(height)) {
                return;
            }
            let (outer_w, outer_h) = self.client.get_window_size().await.unwrap();
            let new_w = (outer_w as i64 + i64::from(width) - w).max(1) as u32;
            let new_h = (outer_h as i64 + i64::from(height) - h).max(1) as u32;
            self.client.set_window_size(new_w, new_h).await.unwrap();
        }
        assert_eq!(inner().await, (i64::from(width), i64::from(height)), "viewport size");
    }

    /// The marker's centre relative to the track's centre, as a fraction of
    /// half the track width: -1 far left, 0 centre, 1 far right.
    pub async fn marker_position(&self) -> f64 {
        let script = "const m = document.getElementById('marker').getBoundingClientRect();
                      const t = document.getElementById('track').getBoundingClientRect();
                      return ((m.left + m.width / 2) - (t.left + t.width / 2)) / (t.width / 2);";
        self.client.execute(script, vec![]).await.unwrap().as_f64().expect("a number")
    }

    pub async fn indicator_visible(&self) -> bool {
        let script = "const e = document.getElementById('status-indicator');
                      return !e.hidden && getComputedStyle(e).display !== 'none';";
        self.client.execute(script, vec![]).await.unwrap().as_bool().expect("a bool")
    }

    /// Polls the page until `pred` holds for the marker position (the
    /// browser renders in its own time; no event tells when it has drawn).
    pub async fn wait_for_marker(&self, within: Duration, pred: impl Fn(f64) -> bool) -> bool {
        eventually(within, || async { pred(self.marker_position().await) }).await
    }

    pub async fn save_screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), png).unwrap();
    }

    pub async fn quit(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}

/// Votes typed into the simulator's chat (`POST /sim/chat`), delivered
/// through the conduit's webhook shard like Twitch's own.
async fn say_all(app: &TestApp, broadcaster: &str, chatters: std::ops::RangeInclusive<u32>, text: &str) {
    for chatter in chatters {
        assert_eq!(app.sim_chat(broadcaster, &chatter.to_string(), text).await, 202);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_marker_follows_votes_and_returns_to_the_centre() {
    let Some(browser) = Browser::start().await else { return };
    // Like `make run`: the service on its built-in Twitch simulator.
    let app = TestApp::builder().demo().start().await;
    let setup = app.repo.overlay_setup(app.demo_overlay()).await.unwrap().expect("the demo streamer");
    let settings = config("yes", "no", "Pineapple NO", "Pineapple YES", 1.0);
    app.repo.save_config(setup.streamer.id, &settings).await.unwrap();
    let b = setup.streamer.twitch_user_id.to_string();
    browser.client.goto(&app.demo.as_ref().unwrap().overlay_url).await.unwrap();
    assert!(browser.wait_for_marker(Duration::from_secs(5), |p| p.abs() < 0.02).await, "starts centred");
    // The open page activated the channel: the service subscribed it on Twitch.
    app.wait_until_sim_delivers_chat_of(&b).await;

    say_all(&app, &b, 1..=4, "yes").await;
    let right = browser.wait_for_marker(Duration::from_secs(3), |p| p > 0.2).await;
    assert!(right, "right of centre after yes votes: {}", browser.marker_position().await);
    browser.save_screenshot("overlay-for.png").await;

    // Decay (k = 1/s) brings it back near the centre within a few seconds.
    let centred = browser.wait_for_marker(Duration::from_secs(8), |p| p.abs() < 0.03).await;
    assert!(centred, "back near the centre: {}", browser.marker_position().await);

    say_all(&app, &b, 11..=14, "no").await;
    let left = browser.wait_for_marker(Duration::from_secs(3), |p| p < -0.2).await;
    assert!(left, "left of centre after no votes: {}", browser.marker_position().await);
    browser.save_screenshot("overlay.png").await;
    let all = eventually(Duration::from_secs(3), || async { app.votes("applied").await == 8.0 }).await;
    assert!(all, "every vote came through the simulator: {} applied", app.votes("applied").await);

    let labels = browser
        .client
        .execute(
            "return [document.getElementById('left-label').textContent, document.getElementById('right-label').textContent]",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(labels, json!(["Pineapple NO", "Pineapple YES"]));
    let scroll = browser
        .client
        .execute("return [document.documentElement.scrollWidth, document.documentElement.clientWidth]", vec![])
        .await
        .unwrap();
    assert_eq!(scroll[0], scroll[1], "no horizontal overflow at 800 px");
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconnect_indicator_shows_while_the_server_is_away() {
    let Some(browser) = Browser::start().await else { return };
    let mut app = TestApp::builder().demo().start().await;
    let overlay = app.demo_overlay();
    let b = app.demo_broadcaster().await;
    browser.client.goto(&format!("{}/overlay/{overlay}", app.base)).await.unwrap();
    // The page starts "closed" (with the indicator hidden) until its socket opens.
    let connection = || async { browser.client.execute("return document.body.dataset.connection", vec![]).await };
    let open = eventually(Duration::from_secs(5), || async { connection().await.ok() == Some(json!("open")) }).await;
    assert!(open, "the overlay connects: {:?}", connection().await);
    assert!(!browser.indicator_visible().await, "no reconnect indicator while connected");

    app.stop().await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async { browser.indicator_visible().await }).await,
        "indicator appears when the server goes away"
    );
    browser.save_screenshot("overlay-reconnecting.png").await;

    // The same server (and its simulator) comes back on the same port and data.
    let back = TestApp::builder().demo().restart_of(&app).start().await;
    assert_eq!(back.demo_overlay(), overlay, "the same demo streamer");
    assert!(
        eventually(Duration::from_secs(20), || async { !browser.indicator_visible().await }).await,
        "indicator clears when the server returns"
    );
    // The reconnected page activated the channel again, on the new simulator.
    back.wait_until_sim_delivers_chat_of(&b).await;
    assert_eq!(back.sim_chat(&b, "1", "yes").await, 202);
    assert!(browser.wait_for_marker(Duration::from_secs(3), |p| p > 0.05).await, "live again");
    browser.quit().await;
}

/// Counts the distinct positions the marker takes over one second, sampled
/// on every animation frame the page draws.
async fn marker_positions_in_one_second(browser: &Browser) -> u64 {
    let script = "const done = arguments[arguments.length - 1];
                  const marker = document.getElementById('marker');
                  const seen = new Set();
                  const start = performance.now();
                  function sample() {
                    seen.add(marker.getBoundingClientRect().left.toFixed(2));
                    if (performance.now() - start < 1000) requestAnimationFrame(sample); else done(seen.size);
                  }
                  requestAnimationFrame(sample);";
    browser.client.execute_async(script, vec![]).await.unwrap().as_u64().expect("a count")
}

/// Four "yes" votes at decay 0.5/s: the page glides back towards the centre
/// on its own, drawing a new marker position on most animation frames,
/// while the server sends only the trajectory changes and a keyframe a
/// second.
async fn the_marker_glides_on_few_frames(model: chatpulse::domain::MeterModel) -> (u64, usize) {
    let Some(browser) = Browser::start().await else { return (0, 0) };
    let app = TestApp::builder().demo().start().await;
    let setup = app.repo.overlay_setup(app.demo_overlay()).await.unwrap().expect("the demo streamer");
    let mut settings = config("yes", "no", "No", "Yes", 0.5);
    settings.model = model;
    app.repo.save_config(setup.streamer.id, &settings).await.unwrap();
    let b = setup.streamer.twitch_user_id.to_string();
    browser.client.goto(&app.demo.as_ref().unwrap().overlay_url).await.unwrap();
    assert!(browser.wait_for_marker(Duration::from_secs(5), |p| p.abs() < 0.02).await, "starts centred");
    app.wait_until_sim_delivers_chat_of(&b).await;
    let mut counter = app.connect(&app.demo_overlay()).await;
    counter.next_frame(Duration::from_secs(5)).await.expect("the current frame");

    say_all(&app, &b, 1..=4, "yes").await;
    assert!(browser.wait_for_marker(Duration::from_secs(3), |p| p > 0.2).await, "right of centre");
    let positions = marker_positions_in_one_second(&browser).await;
    // Every frame the server sent from the votes on, for about 6 s.
    let until = std::time::Instant::now() + Duration::from_secs(5);
    let mut frames = 0;
    while let Some(left) = until.checked_duration_since(std::time::Instant::now()) {
        match counter.next_event(left).await {
            Some(Event::Frame(_)) => frames += 1,
            Some(Event::Closed(c)) => panic!("closed: {c:?}"),
            None => break,
        }
    }
    let position = browser.marker_position().await;
    assert!(position > 0.0 && position < 0.2, "still gliding back, not jumping: {position}");
    let line = format!("browser test ({model:?}): {positions} marker positions in 1 s, at most {frames} frames in 6 s");
    eprintln!("{line}");
    browser.quit().await;
    (positions, frames)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_classic_marker_glides_at_display_rate_on_a_few_frames() {
    let (positions, frames) = the_marker_glides_on_few_frames(chatpulse::domain::MeterModel::Classic).await;
    if positions == 0 && frames == 0 {
        return; // skipped: no browser
    }
    assert!(positions >= 30, "{positions} distinct marker positions in a second of decay");
    assert!(frames <= 15, "{frames} frames in 6 s of decay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_balance_marker_glides_at_display_rate_on_a_few_frames() {
    let (positions, frames) = the_marker_glides_on_few_frames(chatpulse::domain::MeterModel::Balance).await;
    if positions == 0 && frames == 0 {
        return; // skipped: no browser
    }
    assert!(positions >= 30, "{positions} distinct marker positions in a second of decay");
    assert!(frames <= 15, "{frames} frames in 6 s of decay");
}

/// Text of an element, or `None` while it does not exist.
async fn text_of(browser: &Browser, id: &str) -> Option<String> {
    let script = format!("const e = document.getElementById('{id}'); return e ? e.textContent : null;");
    browser.client.execute(&script, vec![]).await.ok()?.as_str().map(str::to_owned)
}

async fn input_value(browser: &Browser, id: &str) -> String {
    let script = format!("return document.getElementById('{id}').value;");
    browser.client.execute(&script, vec![]).await.unwrap().as_str().unwrap_or_default().to_owned()
}

async fn set_field(browser: &Browser, name: &str, value: &str) {
    let field = browser.client.find(fantoccini::Locator::Css(&format!("input[name='{name}']"))).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(value).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamer_logs_in_renames_the_sides_and_rotates_the_overlay_url() {
    let Some(dashboard) = Browser::start().await else { return };
    let Some(overlay) = Browser::start().await else { return };
    let app = TestApp::builder().demo().start().await;
    dashboard.set_viewport(1200, 1100).await;

    // The landing page, then a login through the simulator's Twitch.
    dashboard.client.goto(&format!("{}/", app.base)).await.unwrap();
    dashboard.save_screenshot("login.png").await;
    dashboard.client.goto(&format!("{}/auth/login?as=browserstreamer", app.base)).await.unwrap();
    let url = dashboard.client.current_url().await.unwrap();
    assert!(url.path().ends_with("/dashboard"), "landed on {url}");
    let overlay_url = input_value(&dashboard, "overlay-url").await;
    assert!(overlay_url.contains("/overlay/"), "{overlay_url}");

    overlay.client.goto(&overlay_url).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async { text_of(&overlay, "left-label").await.as_deref() == Some("No") })
            .await
    );

    // Rename both sides; the open overlay follows without a reload.
    set_field(&dashboard, "left_label", "Team Pasta").await;
    set_field(&dashboard, "right_label", "Team Pizza").await;
    dashboard
        .client
        .find(fantoccini::Locator::Css("#settings button[type='submit']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let renamed = eventually(Duration::from_secs(3), || async {
        text_of(&overlay, "left-label").await.as_deref() == Some("Team Pasta")
            && text_of(&overlay, "right-label").await.as_deref() == Some("Team Pizza")
    })
    .await;
    assert!(renamed, "the overlay shows the new labels");
    assert!(dashboard.client.current_url().await.unwrap().query().unwrap_or("").contains("saved"));
    dashboard.save_screenshot("dashboard.png").await;
    overlay.save_screenshot("overlay-renamed.png").await;

    // Rotate: confirm the dialog; the old overlay is closed for good.
    dashboard.client.find(fantoccini::Locator::Css("#rotate-form button")).await.unwrap().click().await.unwrap();
    dashboard.client.accept_alert().await.unwrap();
    let rotated =
        eventually(Duration::from_secs(3), || async { input_value(&dashboard, "overlay-url").await != overlay_url })
            .await;
    assert!(rotated, "a new overlay URL is shown");
    let gone = eventually(Duration::from_secs(5), || async {
        overlay.client.execute("return document.body.dataset.connection", vec![]).await.ok() == Some(json!("gone"))
    })
    .await;
    assert!(gone, "the old overlay was closed for good");
    let notice = "const e = document.getElementById('gone-notice'); return !e.hidden && e.offsetHeight > 0;";
    assert_eq!(overlay.client.execute(notice, vec![]).await.unwrap(), json!(true), "it says the URL was replaced");
    assert!(!overlay.indicator_visible().await, "and does not pretend to be reconnecting");
    overlay.save_screenshot("overlay-replaced.png").await;
    let old_page = app.http.get(&overlay_url).send().await.unwrap();
    assert_eq!(old_page.status(), 404);

    let new_url = input_value(&dashboard, "overlay-url").await;
    overlay.client.goto(&new_url).await.unwrap();
    let open = eventually(Duration::from_secs(5), || async {
        overlay.client.execute("return document.body.dataset.connection", vec![]).await.ok() == Some(json!("open"))
    })
    .await;
    assert!(open, "the new overlay URL works");
    assert_eq!(text_of(&overlay, "left-label").await.as_deref(), Some("Team Pasta"));
    dashboard.quit().await;
    overlay.quit().await;
}
