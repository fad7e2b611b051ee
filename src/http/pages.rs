//! Page templates (askama) for the streamer-facing UI. Field names match
//! `templates/*.html`; everything is auto-escaped.

use askama::Template;
use askama_web::WebTemplate;

use crate::domain::{ConfigError, ConfigField, ConfigInput, FieldProblem};

/// The settings form as typed (kept for redisplay after errors).
pub type ConfigForm = ConfigInput;

/// One message per invalid field, shown next to it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldErrors {
    pub for_trigger: Option<String>,
    pub against_trigger: Option<String>,
    pub left_label: Option<String>,
    pub right_label: Option<String>,
    pub decay_speed: Option<String>,
    pub general: Option<String>,
}

impl FieldErrors {
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
                ConfigError::TooLong { max, .. } => format!("The {what} can be at most {max} characters."),
                ConfigError::ControlCharacters { .. } => format!("The {what} cannot contain control characters."),
                ConfigError::DecayOutOfRange => "Choose a decay speed between 0.1 and 2.0.".to_owned(),
                ConfigError::SameTriggers => "The two words must differ.".to_owned(),
            };
            let slot = match problem.field {
                ConfigField::ForTrigger => &mut errors.for_trigger,
                ConfigField::AgainstTrigger => &mut errors.against_trigger,
                ConfigField::LeftLabel => &mut errors.left_label,
                ConfigField::RightLabel => &mut errors.right_label,
                ConfigField::DecaySpeed => &mut errors.decay_speed,
            };
            slot.get_or_insert(text);
        }
        errors
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

#[cfg(test)]
mod tests {
    use super::*;

    fn form(f: &str, a: &str, l: &str, r: &str, d: &str) -> ConfigForm {
        ConfigForm {
            for_trigger: f.into(),
            against_trigger: a.into(),
            left_label: l.into(),
            right_label: r.into(),
            decay_speed: d.into(),
        }
    }

    #[test]
    fn every_bad_field_gets_its_own_message_in_the_pages_words() {
        let e = FieldErrors::from_problems(&form("", &"x".repeat(51), "  ", "ok", "abc").parse().unwrap_err());
        assert_eq!(e.for_trigger.as_deref(), Some("The word cannot be empty."));
        assert_eq!(e.against_trigger.as_deref(), Some("The word can be at most 50 characters."));
        assert_eq!(e.left_label.as_deref(), Some("The label cannot be empty."));
        assert_eq!(e.right_label, None);
        assert_eq!(e.decay_speed.as_deref(), Some("Choose a decay speed between 0.1 and 2.0."));
    }

    #[test]
    fn identical_words_are_explained_at_the_against_word() {
        let e = FieldErrors::from_problems(&form("Yes", "yES", "a", "b", "1").parse().unwrap_err());
        assert_eq!(e.against_trigger.as_deref(), Some("The two words must differ."));
    }
}
