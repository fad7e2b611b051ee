//! A streamer logged in on the dashboard, as a browser would be: through
//! the Twitch simulator's consent page, auto-approved.

use chatpulse::domain::OverlayId;
use chatpulse::store::Streamer;

use super::TestApp;

/// A streamer on the dashboard after logging in.
pub struct LoggedIn {
    /// Keeps the session cookie and follows redirects, like a browser.
    pub client: reqwest::Client,
    /// The session's CSRF token (form field `csrf_token`, header `X-CSRF-Token`).
    pub csrf: String,
    /// The streamer's overlay, as the dashboard shows it.
    pub overlay: OverlayId,
    /// The dashboard page the login landed on.
    pub html: String,
}

impl TestApp {
    /// Logs `login` in through a demo app's simulator: `/auth/login?as=<login>`
    /// → the simulator's authorize page (approved at once as that user) →
    /// `/auth/callback` → the dashboard. Creates the streamer on first login.
    pub async fn log_in(&self, login: &str) -> LoggedIn {
        let client = browser(true);
        let response = client.get(format!("{}/auth/login?as={login}", self.base)).send().await.unwrap();
        assert_eq!(response.status(), 200, "logging {login} in");
        assert!(response.url().path().ends_with("/dashboard"), "logged in: landed on {}", response.url());
        let html = response.text().await.unwrap();
        LoggedIn { client, csrf: csrf(&html), overlay: overlay_in(&html), html }
    }

    /// Our streamer of that Twitch login.
    pub async fn streamer_by_login(&self, login: &str) -> Streamer {
        let streamers = self.repo.list_streamers().await.unwrap();
        streamers.into_iter().find(|s| s.login == login).unwrap_or_else(|| panic!("no streamer {login} stored"))
    }
}

/// A browser-like client: keeps cookies, follows redirects (or not).
pub fn browser(follow: bool) -> reqwest::Client {
    let policy = if follow { reqwest::redirect::Policy::limited(10) } else { reqwest::redirect::Policy::none() };
    reqwest::Client::builder().cookie_store(true).redirect(policy).build().unwrap()
}

/// A Twitch login no other test uses.
pub fn unique_login() -> String {
    format!("streamer{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

/// The CSRF token in a page's form.
pub fn csrf(html: &str) -> String {
    let pattern = "name=\"csrf_token\" value=\"";
    let start = html.find(pattern).expect("a CSRF field") + pattern.len();
    html[start..].split('"').next().unwrap().to_owned()
}

/// The overlay whose URL a page shows.
pub fn overlay_in(html: &str) -> OverlayId {
    let start = html.find("/overlay/").expect("an overlay URL") + 9;
    html[start..start + 36].parse().unwrap()
}
