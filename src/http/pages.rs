//! Page templates (askama) for the streamer-facing UI. Field names match
//! `templates/*.html`; everything is auto-escaped.

use std::collections::HashMap;

use askama::Template;
use askama_web::WebTemplate;

use crate::domain::{ConfigError, ConfigField, ConfigInput, FieldProblem};

/// The settings form as typed (kept for redisplay after errors).
pub type ConfigForm = ConfigInput;

/// One message per invalid field, shown next to it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldErrors {
    by_field: HashMap<ConfigField, String>,
    pub general: Option<String>,
}

impl FieldErrors {
    /// Only a message about the whole form.
    pub fn general(text: &str) -> Self {
        Self { general: Some(text.to_owned()), ..Self::default() }
    }

    /// The page's words for what validation found.
    pub fn from_problems(problems: &[FieldProblem]) -> Self {
        let mut errors = Self::default();
        for problem in problems {
            let what = match problem.field {
                ConfigField::ForTrigger | ConfigField::AgainstTrigger => "word",
                _ => "label",
            };
            let text = match &problem.error {
                ConfigError::Empty { .. } => format!("The {what} cannot be empty."),
                ConfigError::TooLong { max, .. } => format!("Each {what} can be at most {max} characters."),
                ConfigError::ControlCharacters { .. } => format!("The {what} cannot contain control characters."),
                ConfigError::DecayOutOfRange => "Choose a decay speed between 0.1 and 2.0.".to_owned(),
                ConfigError::SameTriggers => {
                    "A word can count for one side only: the two sides need different words.".to_owned()
                }
                ConfigError::TooManyWords { max, .. } => format!("Use at most {max} words, separated by commas."),
                ConfigError::NotAChoice { choices, .. } => format!("Choose one of: {choices}."),
                ConfigError::NotAColor { .. } => "Choose a colour, written #rrggbb.".to_owned(),
                ConfigError::OutOfRange { min, max, .. } => format!("Choose a whole number from {min} to {max}."),
            };
            errors.by_field.entry(problem.field).or_insert(text);
        }
        errors
    }

    /// The message next to the field named `name`, if any.
    pub fn of(&self, name: &str) -> Option<&str> {
        ConfigField::parse(name).and_then(|f| self.by_field.get(&f)).map(String::as_str)
    }

    /// Whether anything is wrong.
    pub fn any(&self) -> bool {
        self.general.is_some() || !self.by_field.is_empty()
    }
}

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

/// The overlay page of a URL that does not exist (never did, was replaced,
/// or its streamer was removed): transparent, with one line saying so, so
/// that an OBS source shows no black error text on stream.
#[derive(Template, WebTemplate)]
#[template(path = "overlay_gone.html")]
pub struct OverlayGonePage;

/// A banner on the dashboard.
pub struct Notice {
    pub level: &'static str,
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
    /// The status panel as first shown (the page then polls
    /// `/dashboard/status`).
    pub status: Option<super::control::StatusWords>,
    /// Advice on the saved look's colours.
    pub look_warnings: Vec<String>,
    /// The banner after an action (test votes, overlays reloaded).
    pub action_done: Option<String>,
    /// The preview's size: the saved layout's OBS size.
    pub preview_width: u32,
    pub preview_height: u32,
    /// The colour-blind-safe pair, for the preset button.
    pub safe_for_color: String,
    pub safe_against_color: String,
}

impl DashboardPage {
    /// Whether the form's switch `name` is on.
    pub fn on(&self, name: &str) -> bool {
        ConfigField::parse(name).is_some_and(|f| self.form.is_on(f))
    }

    /// Whether the form's field `name` has the value `value` (radio
    /// buttons, selects).
    pub fn is(&self, name: &str, value: &str) -> bool {
        ConfigField::parse(name).is_some_and(|f| self.form.get(f).trim() == value)
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "bot.html")]
pub struct BotPage {
    pub bot_user_id: Option<String>,
    pub authorized: bool,
    pub bot_login: Option<String>,
    pub scopes: Vec<String>,
    pub error: Option<String>,
    /// Only a page signed in as the bot has (and needs) one.
    pub csrf_token: Option<String>,
    /// Signed in as the bot account: the status is shown.
    pub signed_in: bool,
}

impl BotPage {
    /// The page for anyone not signed in as the bot: how to sign in.
    pub fn sign_in() -> Self {
        Self {
            bot_user_id: None,
            authorized: false,
            bot_login: None,
            scopes: vec![],
            error: None,
            csrf_token: None,
            signed_in: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::OverlayConfig;

    fn form(f: &str, a: &str, l: &str, r: &str, d: &str) -> ConfigForm {
        let mut form = ConfigForm::from_config(&OverlayConfig::default());
        (form.for_trigger, form.against_trigger, form.left_label, form.right_label, form.decay_speed) =
            (f.into(), a.into(), l.into(), r.into(), d.into());
        form
    }

    #[test]
    fn every_bad_field_gets_its_own_message_in_the_pages_words() {
        let e = FieldErrors::from_problems(&form("", &"x".repeat(51), "  ", "ok", "abc").parse().unwrap_err());
        assert_eq!(e.of("for_trigger"), Some("The word cannot be empty."));
        assert_eq!(e.of("against_trigger"), Some("Each word can be at most 50 characters."));
        assert_eq!(e.of("left_label"), Some("The label cannot be empty."));
        assert_eq!(e.of("right_label"), None);
        assert_eq!(e.of("decay_speed"), Some("Choose a decay speed between 0.1 and 2.0."));
        assert!(e.any());
    }

    #[test]
    fn a_shared_word_is_explained_at_the_against_word() {
        let e = FieldErrors::from_problems(&form("Yes", "yES", "a", "b", "1").parse().unwrap_err());
        assert_eq!(
            e.of("against_trigger"),
            Some("A word can count for one side only: the two sides need different words.")
        );
    }

    #[test]
    fn the_new_fields_are_explained_too() {
        let mut bad = form("yes", "no", "a", "b", "1");
        (bad.layout, bad.for_color, bad.scale) = ("round".into(), "red".into(), "7".into());
        let e = FieldErrors::from_problems(&bad.parse().unwrap_err());
        assert_eq!(e.of("layout"), Some("Choose one of: horizontal, vertical."));
        assert_eq!(e.of("for_color"), Some("Choose a colour, written #rrggbb."));
        assert_eq!(e.of("scale"), Some("Choose a whole number from 50 to 150."));
        assert!(!FieldErrors::default().any());
    }
}
