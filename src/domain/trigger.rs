//! Trigger words and matching. Each side has one or more words or phrases
//! (comma-separated where a person types them). A streamer chooses how a
//! message is matched ([`MatchMode`]):
//!
//! - **exact** — the whole message, trimmed, equals one of the words ignoring
//!   case: "yes" counts, "yes please" does not (every streamer's matching
//!   before words could be matched anywhere);
//! - **word** — one of the words appears anywhere in the message as a whole
//!   word (a phrase as consecutive words), ignoring case and trailing
//!   punctuation: "yes!", "YES yes" and "oh yes." count once, "yesterday"
//!   does not. Twitch emotes are words too: an emote in the message (from
//!   its emote fragments) is matched by its exact name, so emotes such as
//!   `D:` or `<3` keep their punctuation. A message naming both sides counts
//!   for neither.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Direction;
use super::overlay_config::{ConfigError, parse_text};

/// Longest single word or phrase.
pub const TRIGGER_MAX_CHARS: usize = 50;
/// Most words or phrases per side.
pub const TRIGGER_MAX_WORDS: usize = 10;

/// The words or phrases of one side, validated: at least one, each trimmed,
/// non-empty, at most [`TRIGGER_MAX_CHARS`] characters, free of control
/// characters, no two the same (ignoring case). Stored and shown as they were
/// typed, joined by `", "`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Trigger(String);

impl Trigger {
    /// Parses a comma-separated list. Blank entries (a stray or trailing
    /// comma) are skipped; a repeated word is kept once.
    pub fn parse(raw: &str) -> Result<Self, ConfigError> {
        let mut words: Vec<String> = Vec::new();
        for entry in raw.split(',') {
            if entry.trim().is_empty() {
                continue;
            }
            let word = parse_text(entry, "trigger", TRIGGER_MAX_CHARS)?;
            if !words.iter().any(|w| eq_ignore_case(w, &word)) {
                words.push(word);
            }
        }
        if words.is_empty() {
            return Err(ConfigError::Empty { field: "trigger" });
        }
        if words.len() > TRIGGER_MAX_WORDS {
            return Err(ConfigError::TooManyWords { field: "trigger", max: TRIGGER_MAX_WORDS });
        }
        Ok(Self(words.join(", ")))
    }

    /// One word known to be valid (the defaults).
    pub(super) fn known(word: &'static str) -> Self {
        Self(word.to_owned())
    }

    /// The words as typed, joined by `", "`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Each word or phrase.
    pub fn words(&self) -> impl Iterator<Item = &str> {
        self.0.split(',').map(str::trim)
    }

    /// The first word a word on the other side is equal to, ignoring case.
    pub fn shared_word<'a>(&'a self, other: &Trigger) -> Option<&'a str> {
        self.words().find(|w| other.words().any(|o| eq_ignore_case(w, o)))
    }
}

impl TryFrom<String> for Trigger {
    type Error = ConfigError;
    fn try_from(s: String) -> Result<Self, ConfigError> {
        Self::parse(&s)
    }
}

impl From<Trigger> for String {
    fn from(t: Trigger) -> String {
        t.0
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a chat message is matched against the words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchMode {
    /// The whole message is one of the words.
    Exact,
    /// One of the words appears anywhere in the message, as a whole word.
    Word,
}

impl MatchMode {
    pub const ALL: [MatchMode; 2] = [MatchMode::Word, MatchMode::Exact];

    pub fn as_str(self) -> &'static str {
        match self {
            MatchMode::Exact => "exact",
            MatchMode::Word => "word",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == raw)
    }
}

/// What a message says, as matching sees it: its text and the names of the
/// emotes in it (from the message's emote fragments).
#[derive(Debug, Clone, Copy)]
pub struct Said<'a> {
    pub text: &'a str,
    pub emotes: &'a [String],
}

/// Which way `text` votes by whole-message matching, if at all. The "for"
/// words win if both match, which validation prevents anyway.
pub fn match_vote(text: &str, for_trigger: &Trigger, against_trigger: &Trigger) -> Option<Direction> {
    let text = text.trim();
    if for_trigger.words().any(|w| eq_ignore_case(text, w)) {
        Some(Direction::For)
    } else if against_trigger.words().any(|w| eq_ignore_case(text, w)) {
        Some(Direction::Against)
    } else {
        None
    }
}

/// Which way a message votes under `mode`, if at all.
pub fn match_said(
    said: Said<'_>,
    mode: MatchMode,
    for_trigger: &Trigger,
    against_trigger: &Trigger,
) -> Option<Direction> {
    match mode {
        MatchMode::Exact => match_vote(said.text, for_trigger, against_trigger),
        MatchMode::Word => {
            let names = |trigger: &Trigger| trigger.words().any(|w| contains_phrase(said, w));
            match (names(for_trigger), names(against_trigger)) {
                (true, false) => Some(Direction::For),
                (false, true) => Some(Direction::Against),
                _ => None,
            }
        }
    }
}

/// One whitespace-separated piece of a message: as typed, and (unless it is
/// an emote) without its trailing punctuation.
struct Token<'a> {
    raw: &'a str,
    bare: &'a str,
}

impl<'a> Token<'a> {
    fn of(raw: &'a str, emotes: &[String]) -> Self {
        let bare = if emotes.iter().any(|e| e == raw) { raw } else { raw.trim_end_matches(is_trailing_punctuation) };
        Self { raw, bare }
    }

    /// Either form equals `word`, ignoring case (so a word that itself ends
    /// in punctuation, like "gg!", still matches as typed).
    fn is(&self, word: &str) -> bool {
        eq_ignore_case(self.bare, word) || (self.raw.len() != self.bare.len() && eq_ignore_case(self.raw, word))
    }
}

/// Punctuation that may follow a word in chat: ASCII, and the common
/// non-ASCII marks (ellipsis, full-width and inverted marks, CJK stops).
fn is_trailing_punctuation(c: char) -> bool {
    c.is_ascii_punctuation() || matches!(c, '…' | '！' | '？' | '。' | '、' | '，' | '¡' | '¿' | '‼' | '⁉')
}

/// Whether the message contains `phrase`'s words consecutively. A single
/// word (the usual trigger) is looked for without allocating: this runs for
/// every chat message of a channel matched by word.
fn contains_phrase(said: Said<'_>, phrase: &str) -> bool {
    let tokens = said.text.split_whitespace().map(|t| Token::of(t, said.emotes));
    let mut parts = phrase.split_whitespace();
    let Some(first) = parts.next() else { return false };
    let rest: Vec<&str> = parts.collect();
    if rest.is_empty() {
        return tokens.into_iter().any(|t| t.is(first));
    }
    let tokens: Vec<Token<'_>> = tokens.collect();
    tokens.iter().enumerate().any(|(i, t)| {
        t.is(first)
            && tokens.len() - i > rest.len()
            && rest.iter().zip(&tokens[i + 1..]).all(|(part, token)| token.is(part))
    })
}

/// Unicode-aware case-insensitive equality without allocating (this runs for
/// every chat message in every channel).
pub(crate) fn eq_ignore_case(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(b);
    }
    a.chars().flat_map(char::to_lowercase).eq(b.chars().flat_map(char::to_lowercase))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn triggers(f: &str, a: &str) -> (Trigger, Trigger) {
        (Trigger::parse(f).unwrap(), Trigger::parse(a).unwrap())
    }

    fn word_match(text: &str, emotes: &[&str], f: &str, a: &str) -> Option<Direction> {
        let (f, a) = triggers(f, a);
        let emotes: Vec<String> = emotes.iter().map(|e| (*e).to_owned()).collect();
        match_said(Said { text, emotes: &emotes }, MatchMode::Word, &f, &a)
    }

    #[test]
    fn exact_words_vote_their_way() {
        let (f, a) = triggers("yes", "no");
        assert_eq!(match_vote("yes", &f, &a), Some(Direction::For));
        assert_eq!(match_vote("no", &f, &a), Some(Direction::Against));
    }

    #[test]
    fn case_and_surrounding_whitespace_are_ignored() {
        let (f, a) = triggers("yes", "no");
        assert_eq!(match_vote("  YeS \t", &f, &a), Some(Direction::For));
        assert_eq!(match_vote("\nNO\n", &f, &a), Some(Direction::Against));
    }

    #[test]
    fn words_inside_longer_messages_do_not_count_when_matching_exactly() {
        let (f, a) = triggers("yes", "no");
        assert_eq!(match_vote("yes please", &f, &a), None);
        assert_eq!(match_vote("noo", &f, &a), None);
        assert_eq!(match_vote("y e s", &f, &a), None);
        assert_eq!(match_vote("yes!", &f, &a), None);
        assert_eq!(match_vote("", &f, &a), None);
    }

    #[test]
    fn non_ascii_triggers_match_case_insensitively() {
        let (f, a) = triggers("Ja", "Straße");
        assert_eq!(match_vote("STRASSE", &f, &a), None, "no full case folding");
        assert_eq!(match_vote("straße", &f, &a), Some(Direction::Against));
        let (f, a) = triggers("ÉTÉ", "hiver");
        assert_eq!(match_vote("été", &f, &a), Some(Direction::For));
    }

    #[test]
    fn multi_word_triggers_match_as_a_whole() {
        let (f, a) = triggers("pineapple yes", "pineapple no");
        assert_eq!(match_vote("Pineapple YES", &f, &a), Some(Direction::For));
        assert_eq!(match_vote("pineapple", &f, &a), None);
    }

    #[test]
    fn every_word_of_a_side_counts() {
        let (f, a) = triggers("yes, yeah ,y", "no,nope");
        assert_eq!(f.as_str(), "yes, yeah, y");
        assert_eq!(f.words().collect::<Vec<_>>(), ["yes", "yeah", "y"]);
        assert_eq!(match_vote("YEAH", &f, &a), Some(Direction::For));
        assert_eq!(match_vote("nope", &f, &a), Some(Direction::Against));
    }

    #[test]
    fn word_lists_are_validated_word_by_word() {
        assert_eq!(Trigger::parse("yes,, yeah,").unwrap().as_str(), "yes, yeah", "blank entries skipped");
        assert_eq!(Trigger::parse("yes, YES, Yes").unwrap().as_str(), "yes", "repeats kept once");
        assert_eq!(Trigger::parse(" , ,"), Err(ConfigError::Empty { field: "trigger" }));
        let long = format!("yes, {}", "x".repeat(TRIGGER_MAX_CHARS + 1));
        assert_eq!(Trigger::parse(&long), Err(ConfigError::TooLong { field: "trigger", max: TRIGGER_MAX_CHARS }));
        let many = (0..=TRIGGER_MAX_WORDS).map(|i| format!("w{i}")).collect::<Vec<_>>().join(",");
        assert_eq!(Trigger::parse(&many), Err(ConfigError::TooManyWords { field: "trigger", max: TRIGGER_MAX_WORDS }));
        assert_eq!(Trigger::parse("ok, a\u{7}b"), Err(ConfigError::ControlCharacters { field: "trigger" }));
    }

    #[test]
    fn a_word_on_both_sides_is_found() {
        let (f, a) = triggers("yes, sure", "no, SURE");
        assert_eq!(f.shared_word(&a), Some("sure"));
        let (f, a) = triggers("yes", "no");
        assert_eq!(f.shared_word(&a), None);
    }

    #[test]
    fn a_whole_word_anywhere_counts_once_with_trailing_punctuation_ignored() {
        assert_eq!(word_match("yes!", &[], "yes", "no"), Some(Direction::For));
        assert_eq!(word_match("YES yes", &[], "yes", "no"), Some(Direction::For));
        assert_eq!(word_match("oh yes.", &[], "yes", "no"), Some(Direction::For));
        assert_eq!(word_match("hmm... no?!", &[], "yes", "no"), Some(Direction::Against));
        assert_eq!(word_match("no…", &[], "yes", "no"), Some(Direction::Against));
        assert_eq!(word_match("yesterday nobody came", &[], "yes", "no"), None, "whole words only");
        assert_eq!(word_match("yes or no", &[], "yes", "no"), None, "both sides: neither");
        assert_eq!(word_match("", &[], "yes", "no"), None);
    }

    #[test]
    fn phrases_match_as_consecutive_words() {
        assert_eq!(word_match("I say pineapple YES!", &[], "pineapple yes", "pineapple no"), Some(Direction::For));
        assert_eq!(word_match("pineapple, yes", &[], "pineapple yes", "pineapple no"), Some(Direction::For));
        assert_eq!(word_match("yes pineapple", &[], "pineapple yes", "pineapple no"), None);
        assert_eq!(word_match("pineapple", &[], "pineapple yes", "pineapple no"), None);
    }

    #[test]
    fn a_word_that_ends_in_punctuation_matches_as_typed() {
        assert_eq!(word_match("gg!", &[], "gg!", "ff"), Some(Direction::For));
        assert_eq!(word_match("gg", &[], "gg!", "ff"), None);
    }

    #[test]
    fn emotes_are_words_with_their_punctuation() {
        // `D:` is an emote: its colon is part of its name.
        assert_eq!(word_match("D: D:", &["D:"], "PogChamp", "D:"), Some(Direction::Against));
        assert_eq!(word_match("PogChamp PogChamp", &["PogChamp"], "PogChamp", "D:"), Some(Direction::For));
        // Without the emote fragment, `D:` is the letter D and a colon.
        assert_eq!(word_match("D:", &[], "PogChamp", "d"), Some(Direction::Against));
        assert_eq!(word_match("<3 this", &["<3"], "<3", "no"), Some(Direction::For));
    }
}
