//! Trigger matching: a chat message votes when its whole text, trimmed,
//! equals a trigger word ignoring case. "yes" counts, "yes please" does not.

use super::{Direction, Trigger};

/// Which way `text` votes, if at all. `for_trigger` wins if both match, which
/// [`crate::domain::OverlayConfig`] validation prevents anyway.
pub fn match_vote(text: &str, for_trigger: &Trigger, against_trigger: &Trigger) -> Option<Direction> {
    let text = text.trim();
    if eq_ignore_case(text, for_trigger.as_str()) {
        Some(Direction::For)
    } else if eq_ignore_case(text, against_trigger.as_str()) {
        Some(Direction::Against)
    } else {
        None
    }
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
    fn words_inside_longer_messages_do_not_count() {
        let (f, a) = triggers("yes", "no");
        assert_eq!(match_vote("yes please", &f, &a), None);
        assert_eq!(match_vote("noo", &f, &a), None);
        assert_eq!(match_vote("y e s", &f, &a), None);
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
}
