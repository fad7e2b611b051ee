//! A streamer's overlay configuration, validated once when it enters the
//! system (dashboard form, streamer API, CLI, database row). What a person
//! types goes through [`super::ConfigInput`] first.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::look::{Appearance, Look, LookFrame};
use super::meter::MeterModel;
use super::trigger::{MatchMode, Said, match_said};
use super::{Direction, Trigger};

pub const LABEL_MAX_CHARS: usize = 50;
/// The range the dashboard slider offers.
pub const DECAY_MIN: f64 = 0.1;
pub const DECAY_MAX: f64 = 2.0;

/// What is wrong with a value. Each variant has a stable [`code`](Self::code)
/// for machine clients (the streamer API); people get words from the page.
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
    /// A word counts for both sides.
    #[error("the for and against triggers must differ")]
    SameTriggers,
    #[error("{field} can have at most {max} words")]
    TooManyWords { field: &'static str, max: usize },
    #[error("{field} must be one of: {choices}")]
    NotAChoice { field: &'static str, choices: &'static str },
    #[error("{field} must be a colour written #rrggbb")]
    NotAColor { field: &'static str },
    #[error("{field} must be a whole number from {min} to {max}")]
    OutOfRange { field: &'static str, min: i64, max: i64 },
}

impl ConfigError {
    /// A stable machine-readable name of the problem.
    pub fn code(&self) -> &'static str {
        match self {
            ConfigError::Empty { .. } => "empty",
            ConfigError::TooLong { .. } => "too_long",
            ConfigError::ControlCharacters { .. } => "control_characters",
            ConfigError::DecayOutOfRange => "decay_out_of_range",
            ConfigError::SameTriggers => "same_triggers",
            ConfigError::TooManyWords { .. } => "too_many_words",
            ConfigError::NotAChoice { .. } => "not_a_choice",
            ConfigError::NotAColor { .. } => "not_a_color",
            ConfigError::OutOfRange { .. } => "out_of_range",
        }
    }
}

pub(super) fn parse_text(raw: &str, field: &'static str, max: usize) -> Result<String, ConfigError> {
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

/// Text shown at one end of the bar. Escaped wherever it is rendered; a long
/// one is drawn smaller to fit rather than cut.
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

impl TryFrom<String> for Label {
    type Error = ConfigError;
    fn try_from(s: String) -> Result<Self, ConfigError> {
        Self::parse(&s)
    }
}

impl From<Label> for String {
    fn from(v: Label) -> String {
        v.0
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
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
///
/// Its JSON (the live store keeps a session's config as JSON) may come from
/// an instance that predates a field: a missing `model` or `match_mode` reads
/// as the classic behaviour, a missing `look` as the classic look.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverlayConfig {
    pub for_trigger: Trigger,
    pub against_trigger: Trigger,
    /// Shown on the left, the "against" end.
    pub left_label: Label,
    /// Shown on the right, the "for" end.
    pub right_label: Label,
    pub decay_speed: DecaySpeed,
    #[serde(default = "classic_model")]
    pub model: MeterModel,
    #[serde(default = "exact_matching")]
    pub match_mode: MatchMode,
    #[serde(default = "Look::classic")]
    pub look: Look,
}

fn classic_model() -> MeterModel {
    MeterModel::Classic
}

fn exact_matching() -> MatchMode {
    MatchMode::Exact
}

impl OverlayConfig {
    /// Builds a config with the classic meter, whole-message matching and
    /// the classic look, rejecting a word that counts for both sides.
    pub fn new(
        for_trigger: Trigger,
        against_trigger: Trigger,
        left_label: Label,
        right_label: Label,
        decay_speed: DecaySpeed,
    ) -> Result<Self, ConfigError> {
        if for_trigger.shared_word(&against_trigger).is_some() {
            return Err(ConfigError::SameTriggers);
        }
        Ok(Self {
            for_trigger,
            against_trigger,
            left_label,
            right_label,
            decay_speed,
            model: MeterModel::Classic,
            match_mode: MatchMode::Exact,
            look: Look::classic(),
        })
    }

    /// The settings every streamer had before the balance meter: "yes" /
    /// "no" matched as the whole message, +10 per vote, labels
    /// "Against" / "For", the classic look.
    pub fn classic() -> Self {
        Self {
            for_trigger: Trigger::known("yes"),
            against_trigger: Trigger::known("no"),
            left_label: Label("Against".into()),
            right_label: Label("For".into()),
            decay_speed: DecaySpeed(0.5),
            model: MeterModel::Classic,
            match_mode: MatchMode::Exact,
            look: Look::classic(),
        }
    }

    /// Which way a chat message votes, if at all.
    pub fn vote_of(&self, said: Said<'_>) -> Option<Direction> {
        match_said(said, self.match_mode, &self.for_trigger, &self.against_trigger)
    }

    /// The words of one side.
    pub fn trigger(&self, direction: Direction) -> &Trigger {
        match direction {
            Direction::For => &self.for_trigger,
            Direction::Against => &self.against_trigger,
        }
    }

    /// What the overlay page draws besides the value.
    pub fn appearance(&self, version: i64) -> Appearance {
        let look = self.look;
        Appearance {
            version,
            left_label: self.left_label.to_string(),
            right_label: self.right_label.to_string(),
            look: LookFrame {
                layout: look.layout,
                for_color: look.for_color,
                against_color: look.against_color,
                scale: look.scale,
                font_weight: look.font_weight,
                show_labels: look.show_labels,
                show_hint: look.show_hint,
                show_voters: look.show_voters,
                celebrate: look.celebrate,
                hint_for: hint(&self.for_trigger),
                hint_against: hint(&self.against_trigger),
            },
        }
    }
}

/// "type yes", "type yes or yeah": the first two words of a side, as typed.
fn hint(trigger: &Trigger) -> String {
    let words: Vec<&str> = trigger.words().take(2).collect();
    format!("type {}", words.join(" or "))
}

impl Default for OverlayConfig {
    /// What a new streamer starts with: "yes" pushes right and "no" left,
    /// anywhere in a message, on the balance meter, with the labels naming
    /// the words and a hint telling viewers what to type.
    fn default() -> Self {
        Self {
            left_label: Label("No".into()),
            right_label: Label("Yes".into()),
            model: MeterModel::Balance,
            match_mode: MatchMode::Word,
            look: Look::new_streamer(),
            ..Self::classic()
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
        use crate::domain::trigger::TRIGGER_MAX_CHARS;
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
    fn a_word_on_both_sides_is_rejected_ignoring_case() {
        let err = OverlayConfig::new(
            Trigger::parse("Yes, sure").unwrap(),
            Trigger::parse("no, SURE").unwrap(),
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
        let bad_colour = json.replace("#2fd67b", "green");
        assert!(serde_json::from_str::<OverlayConfig>(&bad_colour).is_err());
    }

    #[test]
    fn json_from_before_the_control_room_reads_as_the_classic_behaviour() {
        let old = r#"{"for_trigger":"yes","against_trigger":"no","left_label":"Against","right_label":"For","decay_speed":0.5}"#;
        assert_eq!(serde_json::from_str::<OverlayConfig>(old).unwrap(), OverlayConfig::classic());
    }

    #[test]
    fn new_streamers_get_the_balance_meter_words_anywhere_and_labels_naming_the_words() {
        let c = OverlayConfig::default();
        assert_eq!((c.model, c.match_mode), (MeterModel::Balance, MatchMode::Word));
        assert_eq!((c.left_label.as_str(), c.right_label.as_str()), ("No", "Yes"));
        assert!(c.look.show_hint);
        let classic = OverlayConfig::classic();
        assert_eq!((classic.model, classic.match_mode), (MeterModel::Classic, MatchMode::Exact));
        assert!(!classic.look.show_hint);
    }

    #[test]
    fn the_hint_names_the_first_two_words_of_each_side() {
        let c = OverlayConfig { for_trigger: Trigger::parse("yes, yeah, y").unwrap(), ..OverlayConfig::default() };
        let a = c.appearance(3);
        assert_eq!((a.look.hint_for.as_str(), a.look.hint_against.as_str()), ("type yes or yeah", "type no"));
        assert_eq!(a.version, 3);
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json["look"]["for_color"], "#2fd67b");
        assert_eq!(json["look"]["layout"], "horizontal");
        assert!(json.get("version").is_none(), "the version is not part of the frame");
    }

    #[test]
    fn error_codes_are_stable() {
        assert_eq!(ConfigError::SameTriggers.code(), "same_triggers");
        assert_eq!(ConfigError::NotAColor { field: "for colour" }.code(), "not_a_color");
    }
}
