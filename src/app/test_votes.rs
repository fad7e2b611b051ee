//! Test mode: votes a streamer sends from the dashboard (or the streamer API)
//! to check the bar before going live. They go through the real pipeline —
//! the vote engine, the live store, the broadcaster, on every instance — as
//! chat messages marked `test`, so they move the bar exactly as chat would,
//! and are never recorded in history or moments.

use super::App;
use super::accounts::ActionError;
use crate::domain::{ChatMessage, ChatterId, Direction, StreamerId};
use crate::engine::ChatOutcome;

/// Most test votes one request may send.
pub const MAX_TEST_VOTES: u32 = 50;

/// How many test votes to send: 1 to [`MAX_TEST_VOTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestVoteCount(u32);

/// Why a test-vote request was refused before anything was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TestVoteError {
    #[error("side must be \"for\" or \"against\"")]
    BadSide,
    #[error("count must be a whole number from 1 to {MAX_TEST_VOTES}")]
    BadCount,
}

impl TestVoteError {
    /// A stable name for machine clients.
    pub fn code(&self) -> &'static str {
        match self {
            TestVoteError::BadSide => "bad_side",
            TestVoteError::BadCount => "bad_count",
        }
    }
}

impl TestVoteCount {
    pub fn new(count: u32) -> Result<Self, TestVoteError> {
        if (1..=MAX_TEST_VOTES).contains(&count) { Ok(Self(count)) } else { Err(TestVoteError::BadCount) }
    }

    /// From text, as a form or a query sends it.
    pub fn parse(raw: &str) -> Result<Self, TestVoteError> {
        raw.trim().parse::<u32>().map_err(|_| TestVoteError::BadCount).and_then(Self::new)
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// `for` or `against`, the side a test vote is for.
pub fn parse_side(raw: &str) -> Result<Direction, TestVoteError> {
    match raw.trim() {
        "for" => Ok(Direction::For),
        "against" => Ok(Direction::Against),
        _ => Err(TestVoteError::BadSide),
    }
}

/// What became of a batch of test votes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TestVotes {
    pub sent: u32,
    pub applied: u32,
    /// No overlay is open: votes only count while one is.
    pub no_session: u32,
    pub rate_limited: u32,
    /// The words cannot be told apart (a word of this side also names the
    /// other side), or the session's words changed meanwhile.
    pub no_match: u32,
    /// The live store failed.
    pub failed: u32,
    /// The bar's value after the last counted vote.
    pub value: Option<f64>,
}

impl App {
    /// Sends `count` test votes for `side` to the streamer's bar, each from a
    /// chatter of its own (so that the per-chatter debounce lets them all
    /// count), with the side's first word that votes for it.
    pub async fn send_test_votes(
        &self,
        streamer: StreamerId,
        side: Direction,
        count: TestVoteCount,
    ) -> Result<TestVotes, ActionError> {
        let setup = self.repo.streamer(streamer).await?.ok_or(ActionError::NotFound)?;
        let config = &setup.config.config;
        let message = |chatter: ChatterId, delivery_id: String, text: &str| ChatMessage {
            delivery_id,
            channel: setup.streamer.twitch_user_id.clone(),
            chatter,
            text: text.to_owned(),
            emotes: Vec::new(),
            relayed_from: None,
            test: true,
        };
        // A word of this side that the matcher counts for it: with words
        // matched anywhere, "not no" would name both sides.
        let counts_for_side =
            |word: &&str| config.vote_of(crate::domain::Said { text: word, emotes: &[] }) == Some(side);
        let trigger = config.trigger(side);
        let word = trigger.words().find(counts_for_side).or_else(|| trigger.words().next()).unwrap_or_default();
        let mut result = TestVotes { sent: count.get(), ..TestVotes::default() };
        for _ in 0..count.get() {
            // A chatter of its own for every vote: the debounce lets them all count.
            let id = uuid::Uuid::new_v4().simple().to_string();
            let chatter = ChatterId::parse(&format!("test_{}", &id[..16]))
                .map_err(|e| ActionError::Unavailable(format!("test chatter id: {e}")))?;
            match self.vote(message(chatter, format!("test-{id}"), word)).await {
                ChatOutcome::Applied { value, .. } => {
                    result.applied += 1;
                    result.value = Some(value);
                }
                ChatOutcome::NoSession => result.no_session += 1,
                ChatOutcome::RateLimited => result.rate_limited += 1,
                ChatOutcome::NoMatch => result.no_match += 1,
                ChatOutcome::Error => result.failed += 1,
                ChatOutcome::Duplicate | ChatOutcome::Debounced | ChatOutcome::Ignored => {}
            }
        }
        tracing::info!(streamer = %streamer, sent = result.sent, applied = result.applied, "test votes sent");
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn side_and_count_are_validated() {
        assert_eq!(parse_side("for"), Ok(Direction::For));
        assert_eq!(parse_side(" against "), Ok(Direction::Against));
        assert_eq!(parse_side("For"), Err(TestVoteError::BadSide));
        assert_eq!(parse_side(""), Err(TestVoteError::BadSide));
        assert_eq!(TestVoteCount::parse("1").map(TestVoteCount::get), Ok(1));
        assert_eq!(TestVoteCount::parse("50").map(TestVoteCount::get), Ok(50));
        for bad in ["0", "51", "-1", "", "ten", "2.5"] {
            assert_eq!(TestVoteCount::parse(bad), Err(TestVoteError::BadCount), "{bad}");
        }
        assert_eq!(TestVoteError::BadCount.code(), "bad_count");
    }
}
