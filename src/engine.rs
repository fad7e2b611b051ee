//! The vote pipeline: a chat message → the channel's active session →
//! trigger match → one atomic live-store call → who must hear of the change.
//!
//! Nothing here waits on anything slow: the live-store call is bounded by a
//! timeout, and a failure is counted as a dropped vote rather than surfaced to
//! Twitch (which would only redeliver it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::domain::meter::{BALANCE_PRIOR, MeterModel};
use crate::domain::{ChatMessage, ChatterId, Direction, OverlayId};
use crate::metrics::Metrics;
use crate::store::{LiveStore, VoteOutcome, VoteRequest};

/// A bar within this distance of the centre before a vote may be resting
/// (read once in a while) on other instances...
const REST_MARGIN: f64 = 0.5;
/// ...unless a vote went through this instance this recently: a bar counts
/// as resting only after three unchanged reads (three 50 ms ticks), so it
/// cannot be resting anywhere this soon after a change. Busy channels (a
/// bar swinging through the centre many times a second) thus cost no
/// signals.
const RECENT_VOTE: Duration = Duration::from_millis(100);
/// Bound on the remembered last-vote times; older entries go first.
const RECENT_MAX: usize = 50_000;

/// Who must be told that a vote moved a bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// This instance's overlays: other instances read a moving bar on every
    /// tick anyway.
    Here,
    /// Every instance: the bar was at the centre before this vote and no vote
    /// went through here just before, so elsewhere it may be resting (read
    /// only now and then).
    Everywhere,
}

/// What happened to one chat message. Every variant is a metric label.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ChatOutcome {
    /// Counted: the session's new value, and who must hear of it.
    Applied {
        value: f64,
        overlay: OverlayId,
        wake: Wake,
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
    fn of_vote(o: VoteOutcome, overlay: OverlayId, woke: impl FnOnce(f64) -> bool) -> Self {
        match o {
            VoteOutcome::Applied(value) => {
                let wake = if woke(value) { Wake::Everywhere } else { Wake::Here };
                ChatOutcome::Applied { value, overlay, wake }
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
    /// The bot account: its own messages never vote.
    bot: Option<ChatterId>,
    timeout: Duration,
    metrics: Metrics,
    /// When a vote was last applied through this instance, per session.
    last_applied: std::sync::Mutex<std::collections::HashMap<OverlayId, Instant>>,
}

impl VoteEngine {
    pub fn new(live: Arc<dyn LiveStore>, bot: Option<ChatterId>, timeout: Duration, metrics: Metrics) -> Self {
        let last_applied = std::sync::Mutex::new(std::collections::HashMap::new());
        Self { live, bot, timeout, metrics, last_applied }
    }

    /// Whether a vote that left the bar at `value` may have woken it from
    /// rest (see [`ChatOutcome::Applied`]); records this vote's time.
    fn woke(&self, overlay: OverlayId, value: f64, direction: Direction, model: MeterModel) -> bool {
        // Classic: unclamped, the value before the vote was `value - delta`
        // (a clamped one was far from the centre anyway). Balance: one vote
        // from rest moves the bar by 100 / (1 + c), and no further; a vote
        // that lands within that may have come from rest (erring towards a
        // signal too many). Half a point of margin covers instances whose
        // clocks differ a little.
        let near_centre = match model {
            MeterModel::Classic => (value - direction.delta()).abs() < REST_MARGIN,
            MeterModel::Balance => value.abs() < 100.0 / (1.0 + BALANCE_PRIOR) + REST_MARGIN,
        };
        let now = Instant::now();
        let mut recent = self.last_applied.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() >= RECENT_MAX {
            recent.retain(|_, at| now.duration_since(*at) < RECENT_VOTE);
        }
        let previous = recent.insert(overlay, now);
        near_centre && previous.is_none_or(|at| now.duration_since(at) >= RECENT_VOTE)
    }

    /// Runs one chat message through the pipeline and records the outcome.
    pub async fn handle_chat(&self, chat: &ChatMessage) -> ChatOutcome {
        let started = Instant::now();
        let outcome = self.run(chat).await;
        self.metrics.vote(outcome.label());
        self.metrics.vote_duration.observe(started.elapsed().as_secs_f64());
        outcome
    }

    async fn run(&self, chat: &ChatMessage) -> ChatOutcome {
        if chat.is_relayed() || self.bot.as_ref() == Some(&chat.chatter) {
            return ChatOutcome::Ignored;
        }
        let session = match tokio::time::timeout(self.timeout, self.live.session_for(&chat.channel)).await {
            Ok(Ok(Some(session))) => session,
            Ok(Ok(None)) => return ChatOutcome::NoSession,
            Ok(Err(e)) => return self.failed("session_for", &e),
            Err(_) => return self.failed("session_for", &"timed out"),
        };
        let Some(direction) = session.config.vote_of(chat.said()) else {
            return ChatOutcome::NoMatch;
        };
        let model = session.config.model;
        let request = VoteRequest {
            overlay: session.overlay,
            message_id: &chat.delivery_id,
            chatter: &chat.chatter,
            direction,
            record: !chat.test,
        };
        match tokio::time::timeout(self.timeout, self.live.vote(&request, crate::now_ms())).await {
            Ok(Ok(outcome)) => {
                ChatOutcome::of_vote(outcome, session.overlay, |v| self.woke(session.overlay, v, direction, model))
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryLiveStore;

    fn engine() -> VoteEngine {
        let live = Arc::new(MemoryLiveStore::new(crate::store::VoteLimits::default()));
        let metrics = Metrics::register(&mut prometheus_client::registry::Registry::default());
        VoteEngine::new(live, None, Duration::from_secs(1), metrics)
    }

    #[test]
    fn a_vote_from_the_centre_wakes_the_bar_unless_another_just_went_through() {
        let engine = engine();
        let (a, b) = (OverlayId::random(), OverlayId::random());
        let classic = MeterModel::Classic;
        assert!(engine.woke(a, 10.0, Direction::For, classic), "from the centre, nothing before");
        assert!(!engine.woke(a, 10.0, Direction::For, classic), "a vote here a moment ago: nobody rests yet");
        assert!(!engine.woke(b, 20.0, Direction::For, classic), "from 10: the bar was moving");
        assert!(!engine.woke(b, 100.0, Direction::For, classic), "clamped: far from the centre");
        std::thread::sleep(RECENT_VOTE);
        assert!(engine.woke(a, -10.0, Direction::Against, classic), "quiet long enough to rest elsewhere");
    }

    #[test]
    fn a_balance_vote_from_the_centre_wakes_the_bar() {
        let engine = engine();
        let (a, b) = (OverlayId::random(), OverlayId::random());
        assert!(engine.woke(a, 25.0, Direction::For, MeterModel::Balance), "one vote from rest lands at 25");
        assert!(!engine.woke(b, 80.0, Direction::For, MeterModel::Balance), "far from rest: moving already");
    }
}
