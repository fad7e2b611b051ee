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

/// A config as a person or a tool typed it (the dashboard form, the
/// streamer API): every field as text, nothing validated yet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConfigInput {
    pub for_trigger: String,
    pub against_trigger: String,
    pub left_label: String,
    pub right_label: String,
    pub decay_speed: String,
}

/// A field of [`ConfigInput`], by its name in forms and JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConfigField {
    ForTrigger,
    AgainstTrigger,
    LeftLabel,
    RightLabel,
    DecaySpeed,
}

impl ConfigField {
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigField::ForTrigger => "for_trigger",
            ConfigField::AgainstTrigger => "against_trigger",
            ConfigField::LeftLabel => "left_label",
            ConfigField::RightLabel => "right_label",
            ConfigField::DecaySpeed => "decay_speed",
        }
    }
}

/// What is wrong with one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    pub field: ConfigField,
    pub error: ConfigError,
}

impl ConfigInput {
    pub fn from_config(c: &OverlayConfig) -> Self {
        Self {
            for_trigger: c.for_trigger.to_string(),
            against_trigger: c.against_trigger.to_string(),
            left_label: c.left_label.to_string(),
            right_label: c.right_label.to_string(),
            decay_speed: format!("{}", c.decay_speed.get()),
        }
    }

    /// Validates every field, one problem per bad field (so each can be
    /// shown next to its field), or the config.
    pub fn parse(&self) -> Result<OverlayConfig, Vec<FieldProblem>> {
        fn check<T>(problems: &mut Vec<FieldProblem>, field: ConfigField, r: Result<T, ConfigError>) -> Option<T> {
            r.map_err(|error| problems.push(FieldProblem { field, error })).ok()
        }
        let p = &mut Vec::new();
        let for_trigger = check(p, ConfigField::ForTrigger, Trigger::parse(&self.for_trigger));
        let against = check(p, ConfigField::AgainstTrigger, Trigger::parse(&self.against_trigger));
        let left = check(p, ConfigField::LeftLabel, Label::parse(&self.left_label));
        let right = check(p, ConfigField::RightLabel, Label::parse(&self.right_label));
        let decay = self.decay_speed.trim().parse::<f64>().map_err(|_| ConfigError::DecayOutOfRange);
        let decay = check(p, ConfigField::DecaySpeed, decay.and_then(DecaySpeed::new));
        let problems = p;
        if let (Some(f), Some(a)) = (&for_trigger, &against)
            && eq_ignore_case(f.as_str(), a.as_str())
        {
            problems.push(FieldProblem { field: ConfigField::AgainstTrigger, error: ConfigError::SameTriggers });
        }
        match (for_trigger, against, left, right, decay) {
            (Some(f), Some(a), Some(l), Some(r), Some(d)) if problems.is_empty() => OverlayConfig::new(f, a, l, r, d)
                .map_err(|error| vec![FieldProblem { field: ConfigField::AgainstTrigger, error }]),
            _ => Err(std::mem::take(problems)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(f: &str, a: &str, l: &str, r: &str, d: &str) -> ConfigInput {
        ConfigInput {
            for_trigger: f.into(),
            against_trigger: a.into(),
            left_label: l.into(),
            right_label: r.into(),
            decay_speed: d.into(),
        }
    }

    fn fields(problems: &[FieldProblem]) -> Vec<ConfigField> {
        problems.iter().map(|p| p.field).collect()
    }

    #[test]
    fn valid_input_parses_into_a_config_and_back() {
        let c = input(" yes ", "no", "Nope", "Yep", "1.5").parse().unwrap();
        assert_eq!(c.for_trigger.as_str(), "yes");
        assert_eq!(c.decay_speed.get(), 1.5);
        assert_eq!(ConfigInput::from_config(&c).parse().unwrap(), c);
    }

    #[test]
    fn every_bad_field_gets_its_own_problem() {
        let e = input("", &"x".repeat(51), "  ", "ok", "abc").parse().unwrap_err();
        assert_eq!(
            fields(&e),
            [ConfigField::ForTrigger, ConfigField::AgainstTrigger, ConfigField::LeftLabel, ConfigField::DecaySpeed]
        );
        assert_eq!(e[1].error, ConfigError::TooLong { field: "trigger", max: TRIGGER_MAX_CHARS });
    }

    #[test]
    fn decay_out_of_range_or_identical_words_are_refused() {
        assert_eq!(fields(&input("yes", "no", "a", "b", "2.5").parse().unwrap_err()), [ConfigField::DecaySpeed]);
        assert_eq!(fields(&input("yes", "no", "a", "b", "NaN").parse().unwrap_err()), [ConfigField::DecaySpeed]);
        let same = input("Yes", "yES", "a", "b", "1").parse().unwrap_err();
        assert_eq!(same, [FieldProblem { field: ConfigField::AgainstTrigger, error: ConfigError::SameTriggers }]);
        let both = input("Yes", "yES", "", "b", "9").parse().unwrap_err();
        assert_eq!(fields(&both), [ConfigField::LeftLabel, ConfigField::DecaySpeed, ConfigField::AgainstTrigger]);
    }

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
