//! A streamer's overlay configuration, validated once when it enters the
//! system (dashboard form, CLI, database row).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::trigger::eq_ignore_case;

pub const TRIGGER_MAX_CHARS: usize = 50;
pub const LABEL_MAX_CHARS: usize = 50;
/// The range the dashboard slider offers.
pub const DECAY_MIN: f64 = 0.1;
pub const DECAY_MAX: f64 = 2.0;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{field} must not be empty")]
    Empty { field: &'static str },
    #[error("{field} must be at most {max} characters")]
    TooLong { field: &'static str, max: usize },
    #[error("{field} must not contain control characters")]
    ControlCharacters { field: &'static str },
    #[error("decay speed must be a number between {DECAY_MIN} and {DECAY_MAX}")]
    DecayOutOfRange,
    #[error("the for and against triggers must differ")]
    SameTriggers,
}

fn parse_text(raw: &str, field: &'static str, max: usize) -> Result<String, ConfigError> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(ConfigError::Empty { field });
    }
    if text.chars().count() > max {
        return Err(ConfigError::TooLong { field, max });
    }
    if text.chars().any(char::is_control) {
        return Err(ConfigError::ControlCharacters { field });
    }
    Ok(text.to_owned())
}

/// A word or phrase that counts as a vote. Stored trimmed, compared ignoring case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Trigger(String);

impl Trigger {
    pub fn parse(raw: &str) -> Result<Self, ConfigError> {
        parse_text(raw, "trigger", TRIGGER_MAX_CHARS).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Text shown at one end of the bar. Escaped wherever it is rendered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Label(String);

impl Label {
    pub fn parse(raw: &str) -> Result<Self, ConfigError> {
        parse_text(raw, "label", LABEL_MAX_CHARS).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How fast the bar returns to the centre, per second (dashboard range).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct DecaySpeed(f64);

impl DecaySpeed {
    pub fn new(value: f64) -> Result<Self, ConfigError> {
        if value.is_finite() && (DECAY_MIN..=DECAY_MAX).contains(&value) {
            Ok(Self(value))
        } else {
            Err(ConfigError::DecayOutOfRange)
        }
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

macro_rules! string_conversions {
    ($($t:ident),*) => {$(
        impl TryFrom<String> for $t {
            type Error = ConfigError;
            fn try_from(s: String) -> Result<Self, ConfigError> {
                Self::parse(&s)
            }
        }
        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    )*};
}
string_conversions!(Trigger, Label);

impl TryFrom<f64> for DecaySpeed {
    type Error = ConfigError;
    fn try_from(v: f64) -> Result<Self, ConfigError> {
        Self::new(v)
    }
}

impl From<DecaySpeed> for f64 {
    fn from(v: DecaySpeed) -> f64 {
        v.0
    }
}

/// Everything a streamer configures about their bar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverlayConfig {
    pub for_trigger: Trigger,
    pub against_trigger: Trigger,
    /// Shown on the left, the "against" end.
    pub left_label: Label,
    /// Shown on the right, the "for" end.
    pub right_label: Label,
    pub decay_speed: DecaySpeed,
}

impl OverlayConfig {
    /// Builds a config, rejecting triggers that would be indistinguishable.
    pub fn new(
        for_trigger: Trigger,
        against_trigger: Trigger,
        left_label: Label,
        right_label: Label,
        decay_speed: DecaySpeed,
    ) -> Result<Self, ConfigError> {
        if eq_ignore_case(for_trigger.as_str(), against_trigger.as_str()) {
            return Err(ConfigError::SameTriggers);
        }
        Ok(Self { for_trigger, against_trigger, left_label, right_label, decay_speed })
    }
}

impl Default for OverlayConfig {
    /// What a new streamer starts with: "yes" pushes right, "no" pushes left.
    fn default() -> Self {
        Self {
            for_trigger: Trigger("yes".into()),
            against_trigger: Trigger("no".into()),
            left_label: Label("Against".into()),
            right_label: Label("For".into()),
            decay_speed: DecaySpeed(0.5),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_and_labels_are_trimmed() {
        assert_eq!(Trigger::parse("  yes ").unwrap().as_str(), "yes");
        assert_eq!(Label::parse("\tFor ").unwrap().as_str(), "For");
    }

    #[test]
    fn empty_and_whitespace_only_text_is_rejected() {
        assert_eq!(Trigger::parse(""), Err(ConfigError::Empty { field: "trigger" }));
        assert_eq!(Trigger::parse("   "), Err(ConfigError::Empty { field: "trigger" }));
        assert_eq!(Label::parse("\n"), Err(ConfigError::Empty { field: "label" }));
    }

    #[test]
    fn length_is_counted_in_characters_not_bytes() {
        assert!(Trigger::parse(&"é".repeat(TRIGGER_MAX_CHARS)).is_ok());
        assert_eq!(
            Trigger::parse(&"a".repeat(TRIGGER_MAX_CHARS + 1)),
            Err(ConfigError::TooLong { field: "trigger", max: TRIGGER_MAX_CHARS })
        );
    }

    #[test]
    fn control_characters_are_rejected() {
        assert_eq!(Label::parse("a\u{0}b"), Err(ConfigError::ControlCharacters { field: "label" }));
    }

    #[test]
    fn decay_speed_must_be_finite_and_in_range() {
        assert!(DecaySpeed::new(0.1).is_ok());
        assert!(DecaySpeed::new(2.0).is_ok());
        for bad in [0.0, 0.09, 2.01, f64::NAN, f64::INFINITY, -1.0] {
            assert_eq!(DecaySpeed::new(bad), Err(ConfigError::DecayOutOfRange), "{bad}");
        }
    }

    #[test]
    fn identical_triggers_are_rejected_ignoring_case() {
        let err = OverlayConfig::new(
            Trigger::parse("Yes").unwrap(),
            Trigger::parse("yES").unwrap(),
            Label::parse("a").unwrap(),
            Label::parse("b").unwrap(),
            DecaySpeed::new(0.5).unwrap(),
        );
        assert_eq!(err, Err(ConfigError::SameTriggers));
    }

    #[test]
    fn config_json_round_trips_and_rejects_invalid_fields() {
        let c = OverlayConfig::default();
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<OverlayConfig>(&json).unwrap(), c);
        let bad = json.replace("0.5", "9.5");
        assert!(serde_json::from_str::<OverlayConfig>(&bad).is_err());
    }
}
