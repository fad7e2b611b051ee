//! How a streamer's bar looks: layout, colours, text, hint and extras. Saved
//! with the config, sent to open overlays in a `look` object (see
//! [`Appearance`]) and shown in the dashboard's preview.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::overlay_config::ConfigError;

/// Which way the bar runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// The tug-of-war across the screen ("against" left, "for" right); OBS
    /// source 800×100.
    Horizontal,
    /// Up the side of the screen ("for" at the top, "against" at the
    /// bottom); OBS source 200×600.
    Vertical,
}

impl Layout {
    pub const ALL: [Layout; 2] = [Layout::Horizontal, Layout::Vertical];

    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Horizontal => "horizontal",
            Layout::Vertical => "vertical",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.as_str() == raw)
    }

    /// The Browser Source size the overlay is designed for, in pixels.
    pub fn obs_size(self) -> (u32, u32) {
        match self {
            Layout::Horizontal => (800, 100),
            Layout::Vertical => (200, 600),
        }
    }
}

/// A colour as `#rrggbb`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Color([u8; 3]);

impl Color {
    pub const fn rgb(r: u8, g: u8, b: u8) -> Self {
        Self([r, g, b])
    }

    /// `#rrggbb` (either case; stored lower case). Anything else is refused,
    /// named by `field`.
    pub fn parse(raw: &str, field: &'static str) -> Result<Self, ConfigError> {
        let hex = raw.trim().strip_prefix('#').filter(|h| h.len() == 6 && h.bytes().all(|b| b.is_ascii_hexdigit()));
        let hex = hex.ok_or(ConfigError::NotAColor { field })?;
        let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| ConfigError::NotAColor { field });
        Ok(Self([byte(0)?, byte(2)?, byte(4)?]))
    }

    /// Relative luminance (WCAG 2): 0 for black, 1 for white.
    pub fn luminance(self) -> f64 {
        let linear = |c: u8| {
            let c = f64::from(c) / 255.0;
            if c <= 0.04045 { c / 12.92 } else { ((c + 0.055) / 1.055).powf(2.4) }
        };
        0.2126 * linear(self.0[0]) + 0.7152 * linear(self.0[1]) + 0.0722 * linear(self.0[2])
    }

    /// WCAG contrast ratio with another colour: 1 (the same) to 21.
    pub fn contrast(self, other: Color) -> f64 {
        let (a, b) = (self.luminance(), other.luminance());
        (a.max(b) + 0.05) / (a.min(b) + 0.05)
    }
}

impl fmt::Display for Color {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{:02x}{:02x}{:02x}", self.0[0], self.0[1], self.0[2])
    }
}

impl TryFrom<String> for Color {
    type Error = ConfigError;
    fn try_from(s: String) -> Result<Self, ConfigError> {
        Self::parse(&s, "colour")
    }
}

impl From<Color> for String {
    fn from(c: Color) -> String {
        c.to_string()
    }
}

/// The colours every streamer had before colours could be chosen.
pub const DEFAULT_FOR_COLOR: Color = Color::rgb(0x2f, 0xd6, 0x7b);
pub const DEFAULT_AGAINST_COLOR: Color = Color::rgb(0xff, 0x4d, 0x5e);
/// "For" and "against" colours told apart by every kind of colour vision
/// (Okabe & Ito's blue and orange: they differ in lightness as well as hue).
pub const COLOR_BLIND_SAFE: (Color, Color) = (Color::rgb(0x00, 0x72, 0xb2), Color::rgb(0xe6, 0x9f, 0x00));
/// The track behind the fills (overlay.css `--track`).
pub const TRACK_COLOR: Color = Color::rgb(0x0c, 0x0e, 0x16);
/// Below this contrast with the track, a fill is hard to see on stream
/// (WCAG's 3:1 for graphical objects).
pub const MIN_TRACK_CONTRAST: f64 = 3.0;
/// Below this contrast with each other, the two sides differ mainly in hue,
/// which colour-blind viewers (about one man in twelve) may not see.
pub const MIN_SIDE_CONTRAST: f64 = 1.5;

/// Text size of the labels, hint and participation count, in percent.
pub const SCALE_MIN: u16 = 50;
pub const SCALE_MAX: u16 = 150;
/// CSS font weights offered for the labels.
pub const FONT_WEIGHTS: [u16; 6] = [400, 500, 600, 700, 800, 900];

/// Everything about how the bar looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Look {
    pub layout: Layout,
    pub for_color: Color,
    pub against_color: Color,
    /// Text size in percent ([`SCALE_MIN`]..=[`SCALE_MAX`]).
    pub scale: u16,
    /// One of [`FONT_WEIGHTS`].
    pub font_weight: u16,
    pub show_labels: bool,
    /// A hint line generated from the words ("type yes" / "type no").
    pub show_hint: bool,
    /// The number of recent voters.
    pub show_voters: bool,
    /// A short celebration when one side holds beyond 80 for a few seconds.
    pub celebrate: bool,
}

impl Look {
    /// The look every streamer had before looks could be chosen.
    pub fn classic() -> Self {
        Self {
            layout: Layout::Horizontal,
            for_color: DEFAULT_FOR_COLOR,
            against_color: DEFAULT_AGAINST_COLOR,
            scale: 100,
            font_weight: 800,
            show_labels: true,
            show_hint: false,
            show_voters: false,
            celebrate: false,
        }
    }

    /// What a new streamer starts with: the classic look, with the hint that
    /// tells viewers what to type and the celebration.
    pub fn new_streamer() -> Self {
        Self { show_hint: true, celebrate: true, ..Self::classic() }
    }

    /// What may make the bar hard to read, in order of importance (advice:
    /// the look is saved anyway).
    pub fn warnings(&self) -> Vec<LookWarning> {
        let mut warnings = Vec::new();
        if self.for_color.contrast(self.against_color) < MIN_SIDE_CONTRAST {
            warnings.push(LookWarning::SidesAlike);
        }
        for (side, color) in [(Side::For, self.for_color), (Side::Against, self.against_color)] {
            if color.contrast(TRACK_COLOR) < MIN_TRACK_CONTRAST {
                warnings.push(LookWarning::TooDark(side));
            }
        }
        warnings
    }
}

/// One side of the bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    For,
    Against,
}

/// Why a look may be hard to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookWarning {
    /// The two colours differ mostly in hue: colour-blind viewers may not
    /// tell the sides apart.
    SidesAlike,
    /// This side's colour hardly shows on the dark track.
    TooDark(Side),
}

pub fn parse_scale(raw: &str) -> Result<u16, ConfigError> {
    let out_of_range = ConfigError::OutOfRange { field: "text size", min: SCALE_MIN.into(), max: SCALE_MAX.into() };
    let scale: u16 = raw.trim().trim_end_matches('%').trim().parse().map_err(|_| out_of_range.clone())?;
    if (SCALE_MIN..=SCALE_MAX).contains(&scale) { Ok(scale) } else { Err(out_of_range) }
}

pub fn parse_font_weight(raw: &str) -> Result<u16, ConfigError> {
    let weight = raw.trim().parse::<u16>().ok().filter(|w| FONT_WEIGHTS.contains(w));
    weight.ok_or(ConfigError::NotAChoice { field: "font weight", choices: "400, 500, 600, 700, 800 or 900" })
}

/// What an overlay page draws besides the value: the labels, the look and
/// the hint. Sent to open overlays in frames (`left_label`, `right_label`,
/// `look`) after a config change and on connect.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Appearance {
    /// The config version it comes from: an older one never replaces a newer.
    #[serde(skip)]
    pub version: i64,
    pub left_label: String,
    pub right_label: String,
    pub look: LookFrame,
}

/// The `look` object of a frame.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LookFrame {
    pub layout: Layout,
    pub for_color: Color,
    pub against_color: Color,
    pub scale: u16,
    pub font_weight: u16,
    pub show_labels: bool,
    pub show_hint: bool,
    pub show_voters: bool,
    pub celebrate: bool,
    /// The hint under each end ("type yes or yeah").
    pub hint_for: String,
    pub hint_against: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_parse_as_hash_and_six_hex_digits() {
        assert_eq!(Color::parse("#1A2b3C", "c").unwrap().to_string(), "#1a2b3c");
        assert_eq!(Color::parse(" #000000 ", "c").unwrap(), Color::rgb(0, 0, 0));
        for bad in ["", "1a2b3c", "#1a2b3", "#1a2b3c4", "#gggggg", "red", "#12345é"] {
            assert_eq!(Color::parse(bad, "for colour"), Err(ConfigError::NotAColor { field: "for colour" }), "{bad}");
        }
    }

    #[test]
    fn contrast_follows_wcag() {
        let (black, white) = (Color::rgb(0, 0, 0), Color::rgb(255, 255, 255));
        assert!((black.contrast(white) - 21.0).abs() < 1e-9);
        assert_eq!(white.contrast(white), 1.0);
    }

    #[test]
    fn the_defaults_and_the_colour_blind_preset_raise_no_warning() {
        assert!(Look::classic().warnings().is_empty());
        let (for_color, against_color) = COLOR_BLIND_SAFE;
        assert!(Look { for_color, against_color, ..Look::classic() }.warnings().is_empty());
    }

    #[test]
    fn alike_or_dark_colours_are_warned_about() {
        // Red and green of about the same lightness: the classic trap.
        let red_green =
            Look { for_color: Color::rgb(0, 128, 0), against_color: Color::rgb(255, 0, 0), ..Look::classic() };
        assert_eq!(red_green.warnings(), [LookWarning::SidesAlike]);
        let dark = Look { against_color: Color::rgb(0, 0, 90), ..Look::classic() };
        assert_eq!(dark.warnings(), [LookWarning::TooDark(Side::Against)]);
    }

    #[test]
    fn scale_and_weight_are_validated() {
        assert_eq!(parse_scale("120"), Ok(120));
        assert_eq!(parse_scale("80 %"), Ok(80));
        for bad in ["49", "151", "", "big", "-100"] {
            assert!(matches!(parse_scale(bad), Err(ConfigError::OutOfRange { .. })), "{bad}");
        }
        assert_eq!(parse_font_weight("700"), Ok(700));
        for bad in ["750", "bold", "1000", ""] {
            assert!(matches!(parse_font_weight(bad), Err(ConfigError::NotAChoice { .. })), "{bad}");
        }
    }
}
