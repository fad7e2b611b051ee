//! The vote pipeline: a `channel.chat.message` event → the channel's active
//! session → trigger match → one atomic live-store call.
//!
//! Nothing here waits on anything slow: the live-store call is bounded by a
//! timeout, and a failure is counted as a dropped vote rather than surfaced to
//! Twitch (which would only redeliver it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::domain::{BroadcasterId, ChatterId, Direction, OverlayId, match_vote};
use crate::metrics::Metrics;
use crate::store::{LiveStore, VoteOutcome, VoteRequest};
use crate::twitch::eventsub::ChatMessageEvent;

/// A bar within this distance of the centre before a vote may be resting
/// (read once a second) on other instances.
const REST_MARGIN: f64 = 0.5;

/// What happened to one chat message. Every variant is a metric label.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ChatOutcome {
    /// Counted: the session's new value. `from_rest`: the bar was at the
    /// centre before this vote (other instances may be reading it only
    /// once a second and must be told).
    Applied {
        value: f64,
        overlay: OverlayId,
        from_rest: bool,
    },
    Duplicate,
    Debounced,
    RateLimited,
    /// No overlay is open for this channel.
    NoSession,
    /// The text is not a trigger word.
    NoMatch,
    /// Not a viewer's own vote in this channel: the bot's own message, or a
    /// Shared Chat message relayed from another channel.
    Ignored,
    /// The live store failed or timed out; the vote is dropped.
    Error,
}

impl ChatOutcome {
    pub fn label(self) -> &'static str {
        match self {
            ChatOutcome::Applied { .. } => "applied",
            ChatOutcome::Duplicate => "duplicate",
            ChatOutcome::Debounced => "debounced",
            ChatOutcome::RateLimited => "rate_limited",
            ChatOutcome::NoSession => "no_session",
            ChatOutcome::NoMatch => "no_match",
            ChatOutcome::Ignored => "ignored",
            ChatOutcome::Error => "error",
        }
    }
}

impl ChatOutcome {
    fn of_vote(o: VoteOutcome, overlay: OverlayId, direction: Direction) -> Self {
        match o {
            VoteOutcome::Applied(value) => {
                // Unclamped, the value before the vote was `value - delta`
                // (a clamped one was far from the centre anyway). Half a
                // point of margin covers instances whose clocks differ a
                // little: where a bar shows 0.00, this side sees it near 0.
                let from_rest = (value - direction.delta()).abs() < REST_MARGIN;
                ChatOutcome::Applied { value, overlay, from_rest }
            }
            VoteOutcome::Duplicate => ChatOutcome::Duplicate,
            VoteOutcome::Debounced => ChatOutcome::Debounced,
            VoteOutcome::RateLimited => ChatOutcome::RateLimited,
            VoteOutcome::NoSession => ChatOutcome::NoSession,
        }
    }
}

pub struct VoteEngine {
    live: Arc<dyn LiveStore>,
    bot_user_id: Option<String>,
    timeout: Duration,
    metrics: Metrics,
}

impl VoteEngine {
    pub fn new(live: Arc<dyn LiveStore>, bot_user_id: Option<String>, timeout: Duration, metrics: Metrics) -> Self {
        Self { live, bot_user_id, timeout, metrics }
    }

    /// Runs one chat message through the pipeline and records the outcome.
    /// `delivery_id` is the `Twitch-Eventsub-Message-Id` (the de-duplication key).
    pub async fn handle_chat(&self, delivery_id: &str, event: &ChatMessageEvent) -> ChatOutcome {
        let started = Instant::now();
        let outcome = self.run(delivery_id, event).await;
        self.metrics.vote(outcome.label());
        self.metrics.vote_duration.observe(started.elapsed().as_secs_f64());
        outcome
    }

    async fn run(&self, delivery_id: &str, event: &ChatMessageEvent) -> ChatOutcome {
        let relayed =
            event.source_broadcaster_user_id.as_deref().is_some_and(|source| source != event.broadcaster_user_id);
        let from_bot = self.bot_user_id.as_deref() == Some(event.chatter_user_id.as_str());
        if relayed || from_bot {
            return ChatOutcome::Ignored;
        }
        let (Ok(broadcaster), Ok(chatter)) =
            (BroadcasterId::parse(&event.broadcaster_user_id), ChatterId::parse(&event.chatter_user_id))
        else {
            return ChatOutcome::Ignored;
        };

        let session = match tokio::time::timeout(self.timeout, self.live.session_for(&broadcaster)).await {
            Ok(Ok(Some(session))) => session,
            Ok(Ok(None)) => return ChatOutcome::NoSession,
            Ok(Err(e)) => return self.failed("session_for", &e),
            Err(_) => return self.failed("session_for", &"timed out"),
        };
        let Some(direction) =
            match_vote(&event.message.text, &session.config.for_trigger, &session.config.against_trigger)
        else {
            return ChatOutcome::NoMatch;
        };
        let request = VoteRequest { overlay: session.overlay, message_id: delivery_id, chatter: &chatter, direction };
        match tokio::time::timeout(self.timeout, self.live.vote(&request, crate::now_ms())).await {
            Ok(Ok(outcome)) => ChatOutcome::of_vote(outcome, session.overlay, direction),
            Ok(Err(e)) => self.failed("vote", &e),
            Err(_) => self.failed("vote", &"timed out"),
        }
    }

    fn failed(&self, operation: &'static str, error: &dyn std::fmt::Display) -> ChatOutcome {
        self.metrics.live_error(operation);
        tracing::warn!(operation, %error, "live store call failed; vote dropped");
        ChatOutcome::Error
    }
}
