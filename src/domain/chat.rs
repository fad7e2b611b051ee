//! A chat message as the vote engine takes it, whichever way it arrived.

use super::{BroadcasterId, ChatterId, Said};

/// One viewer's chat message in a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// The delivery's id (`Twitch-Eventsub-Message-Id`): identical on
    /// redeliveries, so a message is counted once.
    pub delivery_id: String,
    /// The channel the message was delivered for.
    pub channel: BroadcasterId,
    pub chatter: ChatterId,
    pub text: String,
    /// The names of the Twitch emotes in the message (its emote fragments),
    /// so that an emote is matched as a word of its own.
    pub emotes: Vec<String>,
    /// Shared Chat: the channel the message was typed in, when Twitch relays
    /// it from another one.
    pub relayed_from: Option<BroadcasterId>,
    /// A test vote from the streamer's dashboard ("Test mode"), not chat: it
    /// goes through the real pipeline but is never recorded in history,
    /// moments or the "last chat seen" time.
    pub test: bool,
}

impl ChatMessage {
    /// What matching sees of the message.
    pub fn said(&self) -> Said<'_> {
        Said { text: &self.text, emotes: &self.emotes }
    }

    /// Typed in another channel and relayed here by Shared Chat: not a vote
    /// of this channel's audience.
    pub fn is_relayed(&self) -> bool {
        self.relayed_from.as_ref().is_some_and(|source| *source != self.channel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(relayed_from: Option<&str>) -> ChatMessage {
        ChatMessage {
            delivery_id: "d".into(),
            channel: BroadcasterId::parse("100").unwrap(),
            chatter: ChatterId::parse("200").unwrap(),
            text: "yes".into(),
            emotes: vec![],
            relayed_from: relayed_from.map(|s| BroadcasterId::parse(s).unwrap()),
            test: false,
        }
    }

    #[test]
    fn only_a_message_from_another_channel_counts_as_relayed() {
        assert!(!message(None).is_relayed());
        assert!(!message(Some("100")).is_relayed(), "Shared Chat names the channel itself as the source");
        assert!(message(Some("300")).is_relayed());
    }
}
