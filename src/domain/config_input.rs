//! A config as a person or a tool typed it — the dashboard form, the streamer
//! API — validated field by field into an [`OverlayConfig`], so that each
//! problem can be shown next to its field (or named in a JSON error).

use serde::{Deserialize, Deserializer, Serialize};

use super::look::{Color, Layout, Look, parse_font_weight, parse_scale};
use super::meter::MeterModel;
use super::overlay_config::{ConfigError, DecaySpeed, Label, OverlayConfig};
use super::trigger::{MatchMode, Trigger};

/// Every field as text, nothing validated yet. JSON clients may send
/// booleans and numbers as such (`"show_hint": true`, `"scale": 120`); they
/// are read as their text. A missing field is empty: callers that patch a
/// config start from [`ConfigInput::from_config`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConfigInput {
    /// One or more words or phrases, comma-separated.
    #[serde(deserialize_with = "text")]
    pub for_trigger: String,
    #[serde(deserialize_with = "text")]
    pub against_trigger: String,
    #[serde(deserialize_with = "text")]
    pub left_label: String,
    #[serde(deserialize_with = "text")]
    pub right_label: String,
    #[serde(deserialize_with = "text")]
    pub decay_speed: String,
    /// `balance` or `classic`.
    #[serde(deserialize_with = "text")]
    pub model: String,
    /// `word` (anywhere in the message) or `exact` (the whole message).
    #[serde(deserialize_with = "text")]
    pub match_mode: String,
    /// `horizontal` or `vertical`.
    #[serde(deserialize_with = "text")]
    pub layout: String,
    /// `#rrggbb`.
    #[serde(deserialize_with = "text")]
    pub for_color: String,
    #[serde(deserialize_with = "text")]
    pub against_color: String,
    /// Text size in percent, 50–150.
    #[serde(deserialize_with = "text")]
    pub scale: String,
    /// 400, 500, …, 900.
    #[serde(deserialize_with = "text")]
    pub font_weight: String,
    /// Switches: `on`/`true`/`1`/`yes`, or empty/`off`/`false`/`0`/`no`
    /// (an unticked checkbox is not sent at all: empty).
    #[serde(deserialize_with = "text")]
    pub show_labels: String,
    #[serde(deserialize_with = "text")]
    pub show_hint: String,
    #[serde(deserialize_with = "text")]
    pub show_voters: String,
    #[serde(deserialize_with = "text")]
    pub celebrate: String,
}

/// A string, or a boolean or number read as its text.
fn text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Flag(bool),
        Number(serde_json::Number),
        Nothing(()),
    }
    Ok(match Scalar::deserialize(d)? {
        Scalar::Text(s) => s,
        Scalar::Flag(b) => b.to_string(),
        Scalar::Number(n) => n.to_string(),
        Scalar::Nothing(()) => String::new(),
    })
}

/// A field of [`ConfigInput`], by its name in forms and JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConfigField {
    ForTrigger,
    AgainstTrigger,
    LeftLabel,
    RightLabel,
    DecaySpeed,
    Model,
    MatchMode,
    Layout,
    ForColor,
    AgainstColor,
    Scale,
    FontWeight,
    ShowLabels,
    ShowHint,
    ShowVoters,
    Celebrate,
}

impl ConfigField {
    pub const ALL: [ConfigField; 16] = [
        ConfigField::ForTrigger,
        ConfigField::AgainstTrigger,
        ConfigField::LeftLabel,
        ConfigField::RightLabel,
        ConfigField::DecaySpeed,
        ConfigField::Model,
        ConfigField::MatchMode,
        ConfigField::Layout,
        ConfigField::ForColor,
        ConfigField::AgainstColor,
        ConfigField::Scale,
        ConfigField::FontWeight,
        ConfigField::ShowLabels,
        ConfigField::ShowHint,
        ConfigField::ShowVoters,
        ConfigField::Celebrate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConfigField::ForTrigger => "for_trigger",
            ConfigField::AgainstTrigger => "against_trigger",
            ConfigField::LeftLabel => "left_label",
            ConfigField::RightLabel => "right_label",
            ConfigField::DecaySpeed => "decay_speed",
            ConfigField::Model => "model",
            ConfigField::MatchMode => "match_mode",
            ConfigField::Layout => "layout",
            ConfigField::ForColor => "for_color",
            ConfigField::AgainstColor => "against_color",
            ConfigField::Scale => "scale",
            ConfigField::FontWeight => "font_weight",
            ConfigField::ShowLabels => "show_labels",
            ConfigField::ShowHint => "show_hint",
            ConfigField::ShowVoters => "show_voters",
            ConfigField::Celebrate => "celebrate",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == name)
    }
}

/// What is wrong with one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    pub field: ConfigField,
    pub error: ConfigError,
}

/// A switch as typed: `Some(true)` for on, `Some(false)` for off or empty.
pub fn switch(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "1" | "yes" => Some(true),
        "" | "off" | "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

fn choice<T>(
    raw: &str,
    parse: impl Fn(&str) -> Option<T>,
    field: &'static str,
    choices: &'static str,
) -> Result<T, ConfigError> {
    parse(raw.trim()).ok_or(ConfigError::NotAChoice { field, choices })
}

impl ConfigInput {
    pub fn from_config(c: &OverlayConfig) -> Self {
        let on = |b: bool| if b { "on" } else { "off" }.to_owned();
        Self {
            for_trigger: c.for_trigger.to_string(),
            against_trigger: c.against_trigger.to_string(),
            left_label: c.left_label.to_string(),
            right_label: c.right_label.to_string(),
            decay_speed: format!("{}", c.decay_speed.get()),
            model: c.model.as_str().to_owned(),
            match_mode: c.match_mode.as_str().to_owned(),
            layout: c.look.layout.as_str().to_owned(),
            for_color: c.look.for_color.to_string(),
            against_color: c.look.against_color.to_string(),
            scale: c.look.scale.to_string(),
            font_weight: c.look.font_weight.to_string(),
            show_labels: on(c.look.show_labels),
            show_hint: on(c.look.show_hint),
            show_voters: on(c.look.show_voters),
            celebrate: on(c.look.celebrate),
        }
    }

    /// The text of one field.
    pub fn get(&self, field: ConfigField) -> &str {
        match field {
            ConfigField::ForTrigger => &self.for_trigger,
            ConfigField::AgainstTrigger => &self.against_trigger,
            ConfigField::LeftLabel => &self.left_label,
            ConfigField::RightLabel => &self.right_label,
            ConfigField::DecaySpeed => &self.decay_speed,
            ConfigField::Model => &self.model,
            ConfigField::MatchMode => &self.match_mode,
            ConfigField::Layout => &self.layout,
            ConfigField::ForColor => &self.for_color,
            ConfigField::AgainstColor => &self.against_color,
            ConfigField::Scale => &self.scale,
            ConfigField::FontWeight => &self.font_weight,
            ConfigField::ShowLabels => &self.show_labels,
            ConfigField::ShowHint => &self.show_hint,
            ConfigField::ShowVoters => &self.show_voters,
            ConfigField::Celebrate => &self.celebrate,
        }
    }

    /// Replaces the text of one field.
    pub fn set(&mut self, field: ConfigField, text: String) {
        let slot = match field {
            ConfigField::ForTrigger => &mut self.for_trigger,
            ConfigField::AgainstTrigger => &mut self.against_trigger,
            ConfigField::LeftLabel => &mut self.left_label,
            ConfigField::RightLabel => &mut self.right_label,
            ConfigField::DecaySpeed => &mut self.decay_speed,
            ConfigField::Model => &mut self.model,
            ConfigField::MatchMode => &mut self.match_mode,
            ConfigField::Layout => &mut self.layout,
            ConfigField::ForColor => &mut self.for_color,
            ConfigField::AgainstColor => &mut self.against_color,
            ConfigField::Scale => &mut self.scale,
            ConfigField::FontWeight => &mut self.font_weight,
            ConfigField::ShowLabels => &mut self.show_labels,
            ConfigField::ShowHint => &mut self.show_hint,
            ConfigField::ShowVoters => &mut self.show_voters,
            ConfigField::Celebrate => &mut self.celebrate,
        };
        *slot = text;
    }

    /// Whether a switch field is on (an invalid one reads as off).
    pub fn is_on(&self, field: ConfigField) -> bool {
        switch(self.get(field)) == Some(true)
    }

    /// Validates every field, one problem per bad field (so each can be
    /// shown next to its field), or the config.
    pub fn parse(&self) -> Result<OverlayConfig, Vec<FieldProblem>> {
        fn check<T>(problems: &mut Vec<FieldProblem>, field: ConfigField, r: Result<T, ConfigError>) -> Option<T> {
            r.map_err(|error| problems.push(FieldProblem { field, error })).ok()
        }
        fn flag(
            problems: &mut Vec<FieldProblem>,
            input: &ConfigInput,
            field: ConfigField,
            name: &'static str,
        ) -> Option<bool> {
            let parsed = switch(input.get(field)).ok_or(ConfigError::NotAChoice { field: name, choices: "on, off" });
            check(problems, field, parsed)
        }
        use ConfigField as F;
        let p = &mut Vec::new();
        let for_trigger = check(p, F::ForTrigger, Trigger::parse(&self.for_trigger));
        let against = check(p, F::AgainstTrigger, Trigger::parse(&self.against_trigger));
        let left = check(p, F::LeftLabel, Label::parse(&self.left_label));
        let right = check(p, F::RightLabel, Label::parse(&self.right_label));
        let decay = self.decay_speed.trim().parse::<f64>().map_err(|_| ConfigError::DecayOutOfRange);
        let decay = check(p, F::DecaySpeed, decay.and_then(DecaySpeed::new));
        let model = check(p, F::Model, choice(&self.model, MeterModel::parse, "meter", "balance, classic"));
        let match_mode = check(p, F::MatchMode, choice(&self.match_mode, MatchMode::parse, "matching", "word, exact"));
        let layout = check(p, F::Layout, choice(&self.layout, Layout::parse, "layout", "horizontal, vertical"));
        let for_color = check(p, F::ForColor, Color::parse(&self.for_color, "for colour"));
        let against_color = check(p, F::AgainstColor, Color::parse(&self.against_color, "against colour"));
        let scale = check(p, F::Scale, parse_scale(&self.scale));
        let font_weight = check(p, F::FontWeight, parse_font_weight(&self.font_weight));
        let show_labels = flag(p, self, F::ShowLabels, "show labels");
        let show_hint = flag(p, self, F::ShowHint, "show hint");
        let show_voters = flag(p, self, F::ShowVoters, "show voters");
        let celebrate = flag(p, self, F::Celebrate, "celebrate");
        if let (Some(f), Some(a)) = (&for_trigger, &against)
            && f.shared_word(a).is_some()
        {
            p.push(FieldProblem { field: F::AgainstTrigger, error: ConfigError::SameTriggers });
        }
        let (
            (Some(f), Some(a), Some(l), Some(r), Some(d), Some(model), Some(match_mode)),
            (Some(layout), Some(for_color), Some(against_color), Some(scale), Some(font_weight)),
            (Some(show_labels), Some(show_hint), Some(show_voters), Some(celebrate)),
        ) = (
            (for_trigger, against, left, right, decay, model, match_mode),
            (layout, for_color, against_color, scale, font_weight),
            (show_labels, show_hint, show_voters, celebrate),
        )
        else {
            return Err(std::mem::take(p));
        };
        if !p.is_empty() {
            return Err(std::mem::take(p));
        }
        let look = Look {
            layout,
            for_color,
            against_color,
            scale,
            font_weight,
            show_labels,
            show_hint,
            show_voters,
            celebrate,
        };
        let mut config = OverlayConfig::new(f, a, l, r, d)
            .map_err(|error| vec![FieldProblem { field: F::AgainstTrigger, error }])?;
        config.model = model;
        config.match_mode = match_mode;
        config.look = look;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::look::Layout;

    fn input(f: &str, a: &str, l: &str, r: &str, d: &str) -> ConfigInput {
        let mut input = ConfigInput::from_config(&OverlayConfig::default());
        input.for_trigger = f.into();
        input.against_trigger = a.into();
        input.left_label = l.into();
        input.right_label = r.into();
        input.decay_speed = d.into();
        input
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
        let classic = OverlayConfig::classic();
        assert_eq!(ConfigInput::from_config(&classic).parse().unwrap(), classic);
    }

    #[test]
    fn every_bad_field_gets_its_own_problem() {
        let e = input("", &"x".repeat(51), "  ", "ok", "abc").parse().unwrap_err();
        assert_eq!(
            fields(&e),
            [ConfigField::ForTrigger, ConfigField::AgainstTrigger, ConfigField::LeftLabel, ConfigField::DecaySpeed]
        );
        assert_eq!(e[1].error, ConfigError::TooLong { field: "trigger", max: 50 });
    }

    #[test]
    fn decay_out_of_range_or_a_shared_word_are_refused() {
        assert_eq!(fields(&input("yes", "no", "a", "b", "2.5").parse().unwrap_err()), [ConfigField::DecaySpeed]);
        assert_eq!(fields(&input("yes", "no", "a", "b", "NaN").parse().unwrap_err()), [ConfigField::DecaySpeed]);
        let same = input("Yes", "yES", "a", "b", "1").parse().unwrap_err();
        assert_eq!(same, [FieldProblem { field: ConfigField::AgainstTrigger, error: ConfigError::SameTriggers }]);
        let shared = input("yes, maybe", "no, MAYBE", "a", "b", "1").parse().unwrap_err();
        assert_eq!(fields(&shared), [ConfigField::AgainstTrigger]);
        let both = input("Yes", "yES", "", "b", "9").parse().unwrap_err();
        assert_eq!(fields(&both), [ConfigField::LeftLabel, ConfigField::DecaySpeed, ConfigField::AgainstTrigger]);
    }

    #[test]
    fn the_new_fields_are_validated_one_by_one() {
        let mut bad = input("yes", "no", "a", "b", "1");
        bad.model = "loud".into();
        bad.match_mode = String::new();
        bad.layout = "diagonal".into();
        bad.for_color = "green".into();
        bad.against_color = "#12345".into();
        bad.scale = "300".into();
        bad.font_weight = "bold".into();
        bad.show_hint = "maybe".into();
        let e = bad.parse().unwrap_err();
        use ConfigField as F;
        assert_eq!(
            fields(&e),
            [F::Model, F::MatchMode, F::Layout, F::ForColor, F::AgainstColor, F::Scale, F::FontWeight, F::ShowHint]
        );
        assert_eq!(e[0].error.code(), "not_a_choice");
        assert_eq!(e[3].error, ConfigError::NotAColor { field: "for colour" });
        assert_eq!(e[5].error, ConfigError::OutOfRange { field: "text size", min: 50, max: 150 });
    }

    #[test]
    fn switches_read_as_forms_and_json_send_them() {
        let mut on = input("yes", "no", "a", "b", "1");
        on.layout = " vertical ".into();
        on.for_color = "#0072B2".into();
        (on.show_labels, on.show_hint, on.show_voters, on.celebrate) =
            ("".into(), "on".into(), "true".into(), "OFF".into());
        let c = on.parse().unwrap();
        assert_eq!(c.look.layout, Layout::Vertical);
        assert_eq!(c.look.for_color.to_string(), "#0072b2");
        assert_eq!(
            (c.look.show_labels, c.look.show_hint, c.look.show_voters, c.look.celebrate),
            (false, true, true, false)
        );
    }

    #[test]
    fn json_clients_may_send_booleans_and_numbers() {
        let json = serde_json::json!({
            "for_trigger": "yes, yeah", "against_trigger": "no", "left_label": "No", "right_label": "Yes",
            "decay_speed": 0.5, "model": "balance", "match_mode": "word", "layout": "horizontal",
            "for_color": "#2fd67b", "against_color": "#ff4d5e", "scale": 120, "font_weight": 700,
            "show_labels": true, "show_hint": false, "show_voters": true, "celebrate": null
        });
        let input: ConfigInput = serde_json::from_value(json).unwrap();
        assert_eq!((input.scale.as_str(), input.show_labels.as_str(), input.celebrate.as_str()), ("120", "true", ""));
        let c = input.parse().unwrap();
        assert_eq!((c.look.scale, c.look.font_weight, c.look.show_voters, c.look.celebrate), (120, 700, true, false));
    }

    #[test]
    fn fields_are_named_as_in_forms_and_json() {
        for field in ConfigField::ALL {
            assert_eq!(ConfigField::parse(field.as_str()), Some(field));
            let mut input = ConfigInput::default();
            input.set(field, "x".into());
            assert_eq!(input.get(field), "x");
        }
    }
}
