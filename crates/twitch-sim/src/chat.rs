//! `channel.chat.message` events as Twitch builds them (twitch-protocol.md
//! §5.9, §8.3): the text split into fragments (text, cheermote, emote,
//! mention), cheers, badges, the chatter's colour, replies and shared chat.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::state::State;
use super::util::valid_login;
use super::{SimError, SimUser};

/// Most chat messages remembered (they can be replied to).
pub(crate) const CHAT_LOG_LIMIT: usize = 10_000;
/// Twitch's limit on one chat message.
const MAX_CHARS: usize = 500;

/// A few global emotes, so that chat like "LUL" arrives as an emote fragment.
/// `LUL` is the id of §5.9's example; the others are Twitch's global ids.
const EMOTES: [(&str, &str); 7] = [
    ("Kappa", "25"),
    ("LUL", "425618"),
    ("PogChamp", "305954156"),
    ("Kreygasm", "41"),
    ("BibleThump", "86"),
    ("NotLikeThis", "58765"),
    ("SeemsGood", "64138"),
];
/// Cheermote tiers: a cheermote's `tier` is the highest one its bits reach.
const CHEER_TIERS: [u64; 6] = [1, 100, 1_000, 5_000, 10_000, 100_000];
const MAX_CHEER: u64 = 100_000;

/// One chat badge (§5.9): `info` carries the months for subscriber badges, else `""`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatBadge {
    pub set_id: String,
    pub id: String,
    #[serde(default)]
    pub info: String,
}

/// The optional parts of a chat message; the defaults are a plain message
/// (no badges, no colour set, not a reply, typed in the channel itself).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChatOptions {
    #[serde(default)]
    pub badges: Vec<ChatBadge>,
    /// `#RRGGBB`; `None` or `""` for a user who never set one.
    #[serde(default)]
    pub color: Option<String>,
    /// The chat message id this message answers (a message of the same channel).
    #[serde(default)]
    pub reply_to: Option<String>,
    /// Shared chat: the participating channel the message was typed in. The
    /// message is shown in `broadcaster_user_id`'s channel with the `source_*`
    /// fields set, and in the source channel itself as a plain message.
    #[serde(default)]
    pub source_broadcaster_user_id: Option<String>,
    /// The chatter's badges in the source channel (default: `badges`).
    #[serde(default)]
    pub source_badges: Option<Vec<ChatBadge>>,
}

/// A message the simulator remembers, so that it can be replied to.
#[derive(Debug, Clone)]
pub(crate) struct ChatRecord {
    pub message_id: String,
    pub broadcaster_id: String,
    pub chatter: SimUser,
    pub text: String,
    /// The message that started the reply thread (this one, if it is not a reply).
    pub thread_id: String,
    pub thread_user: SimUser,
}

/// What one typed message becomes: an event per channel that shows it.
#[derive(Debug)]
pub(crate) struct BuiltChat {
    pub message_id: String,
    /// (broadcaster id, event) in delivery order.
    pub events: Vec<(String, Value)>,
}

fn bad(message: impl Into<String>) -> SimError {
    SimError::BadRequest(message.into())
}

/// `#RRGGBB` (upper-cased) or `""`.
pub(crate) fn normalize_color(color: Option<&str>) -> Result<String, SimError> {
    let color = color.map(str::trim).unwrap_or_default();
    if color.is_empty() {
        return Ok(String::new());
    }
    let hex = color.strip_prefix('#').unwrap_or_default();
    if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("color must be #RRGGBB"));
    }
    Ok(color.to_ascii_uppercase())
}

fn check_badges(badges: &[ChatBadge]) -> Result<(), SimError> {
    if badges.len() > 20 {
        return Err(bad("at most 20 badges"));
    }
    if badges.iter().any(|b| b.set_id.trim().is_empty() || b.id.trim().is_empty()) {
        return Err(bad("every badge needs a set_id and an id"));
    }
    Ok(())
}

fn badges_json(badges: &[ChatBadge]) -> Value {
    json!(badges)
}

fn fragment(kind: &str, text: &str, cheermote: Value, emote: Value, mention: Value) -> Value {
    json!({"type": kind, "text": text, "cheermote": cheermote, "emote": emote, "mention": mention})
}

/// `Cheer100` → 100 (any case of the prefix; 1 to 100,000 bits).
fn cheer_bits(word: &str) -> Option<u64> {
    let prefix = word.get(..5)?;
    let digits = word.get(5..)?;
    if !prefix.eq_ignore_ascii_case("cheer") || digits.is_empty() || digits.len() > 6 {
        return None;
    }
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok().filter(|bits| (1..=MAX_CHEER).contains(bits))
}

fn cheer_tier(bits: u64) -> u64 {
    CHEER_TIERS.iter().copied().filter(|t| *t <= bits).max().unwrap_or(1)
}

/// `@login` of a known user, possibly followed by punctuation: (the
/// mention's text, the user, what follows it).
fn mention<'a>(state: &State, word: &'a str) -> Option<(&'a str, SimUser, &'a str)> {
    let name = word.strip_prefix('@')?;
    let end = name.bytes().position(|b| !(b.is_ascii_alphanumeric() || b == b'_')).unwrap_or(name.len());
    let login = name.get(..end)?.to_ascii_lowercase();
    if !valid_login(&login) {
        return None;
    }
    let user = state.user_by_login(&login)?.clone();
    Some((word.get(..=end)?, user, name.get(end..)?))
}

/// Splits a message into Twitch's fragments (§5.9): words are separated by
/// spaces; cheermotes, emotes and mentions of existing users become their own
/// fragments, and everything between them (spaces included) is one text
/// fragment. Returns the fragments and the bits cheered.
pub(crate) fn fragments(state: &State, text: &str) -> (Vec<Value>, u64) {
    let mut out = Vec::new();
    let mut pending = String::new();
    let mut bits: u64 = 0;
    let flush = |out: &mut Vec<Value>, pending: &mut String| {
        if !pending.is_empty() {
            out.push(fragment("text", pending, Value::Null, Value::Null, Value::Null));
            pending.clear();
        }
    };
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            pending.push(' ');
        }
        if let Some(cheered) = cheer_bits(word) {
            flush(&mut out, &mut pending);
            bits = bits.saturating_add(cheered);
            let cheermote = json!({"prefix": "cheer", "bits": cheered, "tier": cheer_tier(cheered)});
            out.push(fragment("cheermote", word, cheermote, Value::Null, Value::Null));
        } else if let Some((_, id)) = EMOTES.iter().find(|(name, _)| *name == word) {
            flush(&mut out, &mut pending);
            let emote = json!({"id": id, "emote_set_id": "0", "owner_id": "0", "format": ["static"]});
            out.push(fragment("emote", word, Value::Null, emote, Value::Null));
        } else if let Some((said, user, rest)) = mention(state, word) {
            flush(&mut out, &mut pending);
            let mention = json!({"user_id": user.id, "user_name": user.display_name, "user_login": user.login});
            out.push(fragment("mention", said, Value::Null, Value::Null, mention));
            pending.push_str(rest);
        } else {
            pending.push_str(word);
        }
    }
    flush(&mut out, &mut pending);
    (out, bits)
}

/// The event's fields about where the message came from (shared chat).
struct Source<'a> {
    broadcaster: &'a SimUser,
    message_id: &'a str,
    badges: &'a [ChatBadge],
}

/// Everything about one copy of a message except where it is shown.
struct Message<'a> {
    chatter: &'a SimUser,
    text: &'a str,
    fragments: &'a [Value],
    bits: u64,
    badges: &'a [ChatBadge],
    color: &'a str,
    reply: &'a Value,
}

fn event(broadcaster: &SimUser, message_id: &str, m: &Message<'_>, source: Option<&Source<'_>>) -> Value {
    let cheer = if m.bits > 0 { json!({"bits": m.bits}) } else { Value::Null };
    json!({
        "broadcaster_user_id": broadcaster.id,
        "broadcaster_user_login": broadcaster.login,
        "broadcaster_user_name": broadcaster.display_name,
        "chatter_user_id": m.chatter.id,
        "chatter_user_login": m.chatter.login,
        "chatter_user_name": m.chatter.display_name,
        "message_id": message_id,
        "message": {"text": m.text, "fragments": m.fragments},
        "message_type": "text",
        "badges": badges_json(m.badges),
        "cheer": cheer,
        "color": m.color,
        "reply": m.reply,
        "channel_points_custom_reward_id": null,
        "source_broadcaster_user_id": source.map(|s| s.broadcaster.id.clone()),
        "source_broadcaster_user_login": source.map(|s| s.broadcaster.login.clone()),
        "source_broadcaster_user_name": source.map(|s| s.broadcaster.display_name.clone()),
        "source_message_id": source.map(|s| s.message_id.to_owned()),
        "source_badges": source.map(|s| badges_json(s.badges)),
    })
}

fn remember(log: &mut VecDeque<ChatRecord>, record: ChatRecord) {
    if log.len() >= CHAT_LOG_LIMIT {
        log.pop_front();
    }
    log.push_back(record);
}

/// A message that passed every check, before its chatter is known.
pub(crate) struct Checked {
    text: String,
    color: String,
    source_user: Option<SimUser>,
    parent: Option<ChatRecord>,
}

/// Checks a message against the channel it is typed in (nothing is changed,
/// so a refused message leaves no trace).
pub(crate) fn check(
    state: &State,
    broadcaster: &SimUser,
    typed: &str,
    options: &ChatOptions,
) -> Result<Checked, SimError> {
    let color = normalize_color(options.color.as_deref())?;
    check_badges(&options.badges)?;
    if let Some(badges) = &options.source_badges {
        check_badges(badges)?;
    }
    let wanted_source = options.source_broadcaster_user_id.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let source_user = match wanted_source {
        None => None,
        Some(id) if id == broadcaster.id => {
            return Err(bad("source_broadcaster_user_id must be another channel than broadcaster_user_id"));
        }
        Some(id) => {
            Some(state.user(id).cloned().ok_or_else(|| bad(format!("source broadcaster {id} does not exist")))?)
        }
    };
    let wanted_parent = options.reply_to.as_deref().map(str::trim).filter(|s| !s.is_empty());
    if wanted_parent.is_some() && source_user.is_some() {
        return Err(bad("the simulator cannot combine reply_to with source_broadcaster_user_id"));
    }
    let parent = match wanted_parent {
        None => None,
        Some(id) => Some(
            state
                .chat_log
                .iter()
                .rev()
                .find(|r| r.message_id == id && r.broadcaster_id == broadcaster.id)
                .cloned()
                .ok_or_else(|| bad(format!("reply_to: no message {id} in this channel")))?,
        ),
    };
    // Observed (§5.9): a reply's text starts with "@<parent login> ".
    let text = match &parent {
        Some(p) => {
            let prefix = format!("@{} ", p.chatter.login);
            let starts = typed.get(..prefix.len()).is_some_and(|head| head.eq_ignore_ascii_case(&prefix));
            if starts { typed.to_owned() } else { format!("{prefix}{typed}") }
        }
        None => typed.to_owned(),
    };
    if text.chars().count() > MAX_CHARS {
        return Err(bad(format!("text is longer than {MAX_CHARS} characters")));
    }
    Ok(Checked { text, color, source_user, parent })
}

/// Builds the events of a checked message and remembers it for replies.
pub(crate) fn build(
    state: &mut State,
    broadcaster: &SimUser,
    chatter: &SimUser,
    checked: Checked,
    options: &ChatOptions,
) -> BuiltChat {
    let Checked { text, color, source_user, parent } = checked;
    let message_id = uuid::Uuid::new_v4().to_string();
    let (thread_id, thread_user, reply) = match &parent {
        Some(p) => (
            p.thread_id.clone(),
            p.thread_user.clone(),
            json!({
                "parent_message_id": p.message_id, "parent_message_body": p.text,
                "parent_user_id": p.chatter.id, "parent_user_name": p.chatter.display_name,
                "parent_user_login": p.chatter.login,
                "thread_message_id": p.thread_id, "thread_user_id": p.thread_user.id,
                "thread_user_name": p.thread_user.display_name, "thread_user_login": p.thread_user.login,
            }),
        ),
        None => (message_id.clone(), chatter.clone(), Value::Null),
    };
    let (fragments, bits) = fragments(state, &text);
    let message = Message {
        chatter,
        text: &text,
        fragments: &fragments,
        bits,
        badges: &options.badges,
        color: &color,
        reply: &reply,
    };
    let mut events = Vec::new();
    match &source_user {
        None => events.push((broadcaster.id.clone(), event(broadcaster, &message_id, &message, None))),
        Some(origin) => {
            // The copy in the channel it was typed in is a plain message with
            // its own id; the shared copy points at it (§5.9).
            let source_message_id = uuid::Uuid::new_v4().to_string();
            let source_badges = options.source_badges.as_deref().unwrap_or(&options.badges);
            let source = Source { broadcaster: origin, message_id: &source_message_id, badges: source_badges };
            events.push((broadcaster.id.clone(), event(broadcaster, &message_id, &message, Some(&source))));
            let at_home = Message { badges: source_badges, ..message };
            events.push((origin.id.clone(), event(origin, &source_message_id, &at_home, None)));
            let record = ChatRecord {
                message_id: source_message_id.clone(),
                broadcaster_id: origin.id.clone(),
                chatter: chatter.clone(),
                text: text.clone(),
                thread_id: source_message_id,
                thread_user: chatter.clone(),
            };
            remember(&mut state.chat_log, record);
        }
    }
    let record = ChatRecord {
        message_id: message_id.clone(),
        broadcaster_id: broadcaster.id.clone(),
        chatter: chatter.clone(),
        text,
        thread_id,
        thread_user,
    };
    remember(&mut state.chat_log, record);
    BuiltChat { message_id, events }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_with(logins: &[&str]) -> State {
        let mut state = State::default();
        for login in logins {
            state.create_user(login, login, None);
        }
        state
    }

    #[test]
    fn fragments_follow_the_documented_example() {
        let state = state_with(&["pixelpaws"]);
        let (fragments, bits) = fragments(&state, "Cheer100 YES pizza @PixelPaws LUL");
        let kinds: Vec<&str> = fragments.iter().map(|f| f["type"].as_str().unwrap_or_default()).collect();
        assert_eq!(kinds, ["cheermote", "text", "mention", "text", "emote"]);
        let texts: Vec<&str> = fragments.iter().map(|f| f["text"].as_str().unwrap_or_default()).collect();
        assert_eq!(texts, ["Cheer100", " YES pizza ", "@PixelPaws", " ", "LUL"]);
        assert_eq!(fragments[0]["cheermote"], json!({"prefix": "cheer", "bits": 100, "tier": 100}));
        assert_eq!(fragments[2]["mention"]["user_login"], "pixelpaws");
        assert_eq!(fragments[4]["emote"]["id"], "425618");
        assert_eq!(bits, 100);
    }

    #[test]
    fn unknown_mentions_and_lookalikes_stay_text() {
        let state = state_with(&["pixelpaws"]);
        let (fragments, bits) = fragments(&state, "@nobody cheer Cheer0 Cheerx10 hi  there");
        assert_eq!(fragments.len(), 1);
        assert_eq!(fragments[0]["text"], "@nobody cheer Cheer0 Cheerx10 hi  there");
        assert_eq!(bits, 0);
        let (fragments, _) = fragments_of(&state, "@pixelpaws, hi");
        assert_eq!(fragments[0]["text"], "@pixelpaws");
        assert_eq!(fragments[1]["text"], ", hi");
        assert_eq!(cheer_tier(1), 1);
        assert_eq!(cheer_tier(4_999), 1_000);
        assert_eq!(cheer_tier(100_000), 100_000);
    }

    fn fragments_of(state: &State, text: &str) -> (Vec<Value>, u64) {
        fragments(state, text)
    }

    #[test]
    fn colors_are_checked() {
        assert_eq!(normalize_color(None).ok(), Some(String::new()));
        assert_eq!(normalize_color(Some("#1e90ff")).ok(), Some("#1E90FF".into()));
        assert!(normalize_color(Some("1E90FF")).is_err());
        assert!(normalize_color(Some("#1E90F")).is_err());
        assert!(normalize_color(Some("#GGGGGG")).is_err());
    }
}
