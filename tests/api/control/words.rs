//! Words that fit real chat, through signed webhooks: several words per
//! side, matched as the whole message or as a word anywhere (trailing
//! punctuation ignored, a message naming both sides counting for neither),
//! and Twitch emotes matched as words from the message's emote fragments.

use chatpulse::domain::{MatchMode, OverlayConfig, Trigger};

use super::WAIT;
use crate::helpers::*;

/// A chat delivery whose message has these fragments (`("emote", "D:")`,
/// `("text", " hi")`, …), as Twitch splits a message.
fn chat_with_fragments(broadcaster: &str, chatter: &str, fragments: &[(&str, &str)]) -> Delivery {
    let text: String = fragments.iter().map(|(_, t)| *t).collect();
    let mut body: serde_json::Value = serde_json::from_str(&chat_body(broadcaster, chatter, &text, None)).unwrap();
    body["event"]["message"]["fragments"] = fragments
        .iter()
        .map(|(kind, t)| {
            let emote = (*kind == "emote").then(
                || serde_json::json!({"id": "305954156", "emote_set_id": "0", "owner_id": "0", "format": ["static"]}),
            );
            serde_json::json!({"type": kind, "text": t, "cheermote": null, "emote": emote, "mention": null})
        })
        .collect();
    Delivery::notification("channel.chat.message", body.to_string())
}

fn words(for_words: &str, against_words: &str, mode: MatchMode) -> OverlayConfig {
    OverlayConfig {
        for_trigger: Trigger::parse(for_words).unwrap(),
        against_trigger: Trigger::parse(against_words).unwrap(),
        match_mode: mode,
        ..OverlayConfig::classic()
    }
}

both_modes! {
async fn a_word_anywhere_counts_once_and_a_message_naming_both_sides_counts_for_neither() {
    let app = TestApp::builder().start().await;
    let s = app.add_streamer_with(&words("yes, yeah, pineapple yes", "no, nope", MatchMode::Word)).await;
    let b = &s.streamer.twitch_user_id;
    let mut overlay = app.connect(&s.streamer.overlay_id).await;
    overlay.next_frame(WAIT).await.expect("initial frame");

    for (chatter, text) in [("1", "yes!"), ("2", "YES yes"), ("3", "oh, yeah."), ("4", "I say Pineapple YES")] {
        assert_eq!(app.chat(b, chatter, text).await, 204);
    }
    overlay.wait_for(WAIT, |f| f.value > 39.0).await.expect("four votes for: +40 on the classic meter");
    for (chatter, text) in [("5", "yes or no"), ("6", "yesterday"), ("7", "nobody"), ("8", "")] {
        assert_eq!(app.chat(b, chatter, text).await, 204);
    }
    assert_eq!(app.chat(b, "9", "nope!!").await, 204);
    overlay.wait_for(WAIT, |f| f.value < 31.0).await.expect("one vote against");
    assert!(eventually(WAIT, || async { app.votes("no_match").await == 4.0 }).await, "no_match {}", app.votes("no_match").await);
    assert_eq!(app.votes("applied").await, 5.0);
}
}

both_modes! {
async fn whole_message_matching_takes_any_of_the_words_and_nothing_else() {
    let app = TestApp::builder().start().await;
    let s = app.add_streamer_with(&words("yes, yeah", "no", MatchMode::Exact)).await;
    let b = &s.streamer.twitch_user_id;
    let mut overlay = app.connect(&s.streamer.overlay_id).await;
    overlay.next_frame(WAIT).await.expect("initial frame");
    for (chatter, text) in [("1", " YEAH "), ("2", "yes!"), ("3", "yes please")] {
        assert_eq!(app.chat(b, chatter, text).await, 204);
    }
    overlay.wait_for(WAIT, |f| f.value > 9.0).await.expect("yeah counts");
    assert!(eventually(WAIT, || async { app.votes("no_match").await == 2.0 }).await);
    assert_eq!(app.votes("applied").await, 1.0);
}
}

both_modes! {
async fn twitch_emotes_are_words_of_their_own() {
    let app = TestApp::builder().start().await;
    let s = app.add_streamer_with(&words("PogChamp, <3", "D:", MatchMode::Word)).await;
    let b = s.streamer.twitch_user_id.as_str();
    let mut overlay = app.connect(&s.streamer.overlay_id).await;
    overlay.next_frame(WAIT).await.expect("initial frame");

    // `D:` as an emote keeps its colon: it names the "against" side.
    let emote = chat_with_fragments(b, "1", &[("emote", "D:"), ("text", " "), ("emote", "D:")]);
    assert_eq!(app.deliver(&emote).await.status(), 204);
    overlay.wait_for(WAIT, |f| f.value < -9.0).await.expect("D: votes against");
    let love = chat_with_fragments(b, "2", &[("text", "so much "), ("emote", "<3")]);
    let pog = chat_with_fragments(b, "3", &[("emote", "PogChamp"), ("text", " PogChamp")]);
    for d in [love, pog] {
        assert_eq!(app.deliver(&d).await.status(), 204);
    }
    overlay.wait_for(WAIT, |f| f.value > 9.0).await.expect("two votes for");
    assert_eq!(app.votes("applied").await, 3.0);
}
}
