//! Page templates (askama) for the streamer-facing UI. Field names match
//! `templates/*.html`; everything is auto-escaped.

use askama::Template;
use askama_web::WebTemplate;

pub use crate::app::accounts::{ConfigForm, FieldErrors};

#[derive(Template, WebTemplate)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub error: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "auth_error.html")]
pub struct AuthErrorPage {
    pub title: String,
    pub message: String,
    pub retry_url: String,
}

/// The dashboard could not load the account (the durable store did not
/// answer): said plainly, with a way to retry.
#[derive(Template, WebTemplate)]
#[template(path = "unavailable.html")]
pub struct UnavailablePage {
    pub retry_url: String,
}

/// The overlay page while its settings cannot be read: transparent, with the
/// overlay's "reconnecting" badge, reloading itself every `retry_seconds`.
#[derive(Template, WebTemplate)]
#[template(path = "overlay_unavailable.html")]
pub struct OverlayUnavailablePage {
    pub retry_seconds: u64,
}

pub struct Notice {
    pub level: String,
    pub text: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "dashboard.html")]
pub struct DashboardPage {
    /// The account's data is shown (false: the settings form alone, when the
    /// durable store did not answer).
    pub account: bool,
    pub display_name: String,
    pub login: String,
    pub overlay_url: String,
    pub overlay_id: String,
    pub csrf_token: String,
    pub form: ConfigForm,
    pub errors: FieldErrors,
    pub saved: bool,
    pub reset_done: bool,
    pub rotated: bool,
    pub notices: Vec<Notice>,
    pub chat_status: String,
    pub stream_status: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "bot.html")]
pub struct BotPage {
    pub bot_user_id: Option<String>,
    pub authorized: bool,
    pub bot_login: Option<String>,
    pub scopes: Vec<String>,
    pub error: Option<String>,
    pub csrf_token: String,
}
