//! The meter: what the bar shows of the counted votes. Two models read the
//! same votes (the Lua functions in `redis-functions/chatpulse.lua` compute
//! the same formulas; the equivalence property test keeps them identical):
//!
//! - **classic** — every counted vote pushes the bar 10 points, and the value
//!   decays back to the centre (`sentiment::decayed`). Busy chats saturate it:
//!   a 60/40 chat and a 100/0 chat both sit at the end.
//! - **balance** — the bar shows the balance of recent opinion. `F` and `A`
//!   are the exponentially decayed counts of counted "for" and "against"
//!   votes (the session's decay speed `k`), and the value is
//!   `100 · (F − A) / (F + A + c)` with a small prior `c`
//!   ([`BALANCE_PRIOR`]): one vote in a quiet chat moves the bar by
//!   `100 / (1 + c)`, a unanimous busy chat pins it near the end, a 60/40
//!   chat sits at about +20, and as `F` and `A` decay the bar returns to the
//!   centre.
//!
//! A session keeps both models' state up to date on every vote, so a
//! streamer who switches models sees the other view of the same votes at
//! once.

use serde::{Deserialize, Serialize};

use super::Direction;
use super::sentiment::{RESET_AFTER_MS, VALUE_MAX, VALUE_MIN, apply_vote, decayed, sanitize_decay};

/// The balance model's prior `c`: how many votes' worth of "nobody said
/// anything" the balance starts from. One vote in a quiet chat moves the bar
/// by `100 / (1 + c)` = 25 points; ten unanimous votes by 77.
pub const BALANCE_PRIOR: f64 = 3.0;
/// Largest decayed vote count a session keeps: far beyond what the per-session
/// rate limit allows (`rate / k`), it only stops garbage from growing.
pub const WEIGHT_MAX: f64 = 1.0e6;
/// Participation: a chatter counts as a voter for this long after their last
/// counted vote.
pub const VOTERS_WINDOW_MS: i64 = 60_000;
/// More voters than this in one session is garbage, not a chat.
pub const VOTERS_MAX: u32 = 100_000_000;

/// How the bar turns counted votes into a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MeterModel {
    /// +10 per vote, decaying (every streamer's meter before the balance model).
    Classic,
    /// The balance of recent opinion (new streamers' default).
    Balance,
}

impl MeterModel {
    pub const ALL: [MeterModel; 2] = [MeterModel::Balance, MeterModel::Classic];

    pub fn as_str(self) -> &'static str {
        match self {
            MeterModel::Classic => "classic",
            MeterModel::Balance => "balance",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == raw)
    }

    /// A stored model; anything unknown (or nothing: a session written
    /// before the balance model existed) reads as classic.
    pub fn parse_stored(raw: Option<&str>) -> Self {
        raw.and_then(Self::parse).unwrap_or(MeterModel::Classic)
    }
}

/// A stored vote count made safe: non-finite or negative becomes 0, and it
/// never exceeds [`WEIGHT_MAX`].
pub fn sanitize_weight(w: f64) -> f64 {
    if w.is_finite() && w > 0.0 { w.min(WEIGHT_MAX) } else { 0.0 }
}

/// A decayed vote count at `now_ms`, by the same rules as the classic value
/// (`sentiment::decayed`): no decay for a time in the future, nothing left
/// after an hour.
pub fn decayed_weight(weight: f64, last_update_ms: i64, now_ms: i64, k: f64) -> f64 {
    let weight = sanitize_weight(weight);
    let k = sanitize_decay(k);
    let elapsed_ms = now_ms.saturating_sub(last_update_ms);
    if elapsed_ms <= 0 {
        return weight;
    }
    if elapsed_ms > RESET_AFTER_MS {
        return 0.0;
    }
    weight * (-k * elapsed_ms as f64 / 1000.0).exp()
}

/// The balance model's value of two decayed counts.
pub fn balance_value(for_weight: f64, against_weight: f64) -> f64 {
    let (f, a) = (sanitize_weight(for_weight), sanitize_weight(against_weight));
    (100.0 * (f - a) / (f + a + BALANCE_PRIOR)).clamp(VALUE_MIN, VALUE_MAX)
}

/// One session's meter as stored: the classic value and the balance model's
/// counts, all as of `last_update_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MeterState {
    pub value: f64,
    pub for_weight: f64,
    pub against_weight: f64,
    pub last_update_ms: i64,
}

/// What the bar shows at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeterReading {
    /// The value of the session's model.
    pub value: f64,
    /// The balance model's decayed counts `[F, A]` (kept in both models).
    pub weights: [f64; 2],
}

impl MeterState {
    /// A bar at the centre with no votes, as of `now_ms`.
    pub fn centred(now_ms: i64) -> Self {
        Self { value: 0.0, for_weight: 0.0, against_weight: 0.0, last_update_ms: now_ms }
    }

    /// The state after one counted vote at `now_ms`: both models' state
    /// decayed to `now_ms`, then the vote added to each.
    pub fn vote(&self, direction: Direction, now_ms: i64, k: f64) -> Self {
        let value = apply_vote(decayed(self.value, self.last_update_ms, now_ms, k), direction);
        let f = decayed_weight(self.for_weight, self.last_update_ms, now_ms, k);
        let a = decayed_weight(self.against_weight, self.last_update_ms, now_ms, k);
        let (for_weight, against_weight) = match direction {
            Direction::For => (sanitize_weight(f + 1.0), a),
            Direction::Against => (f, sanitize_weight(a + 1.0)),
        };
        Self { value, for_weight, against_weight, last_update_ms: now_ms }
    }

    /// What the bar shows at `now_ms` under `model`.
    pub fn read(&self, model: MeterModel, now_ms: i64, k: f64) -> MeterReading {
        let weights = [
            decayed_weight(self.for_weight, self.last_update_ms, now_ms, k),
            decayed_weight(self.against_weight, self.last_update_ms, now_ms, k),
        ];
        let value = match model {
            MeterModel::Classic => decayed(self.value, self.last_update_ms, now_ms, k),
            MeterModel::Balance => balance_value(weights[0], weights[1]),
        };
        MeterReading { value, weights }
    }
}

/// The participation a session shows: the distinct voters counted at its
/// last counted vote (`voters_at_ms`), for a minute after that vote; then 0.
/// (Counting exactly at every read would cost a read of every voter; this
/// costs nothing beyond the vote.)
/// A time more than a window ahead of `now_ms` is garbage, not a clock
/// ahead of ours: it counts nobody.
pub fn recent_voters(voters: u32, voters_at_ms: i64, now_ms: i64) -> u32 {
    let age = now_ms.saturating_sub(voters_at_ms);
    if (-VOTERS_WINDOW_MS..VOTERS_WINDOW_MS).contains(&age) { voters } else { 0 }
}

/// When a session's participation was last counted, after a vote at `now_ms`:
/// the later of the two, unless the stored time is garbage (more than a
/// window ahead).
pub fn voters_counted_at(stored_ms: Option<i64>, now_ms: i64) -> i64 {
    match stored_ms {
        Some(at) if at > now_ms && at - now_ms <= VOTERS_WINDOW_MS => at,
        _ => now_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const K: f64 = 0.5;

    fn votes(state: MeterState, direction: Direction, n: usize, at: i64) -> MeterState {
        (0..n).fold(state, |s, _| s.vote(direction, at, K))
    }

    #[test]
    fn one_vote_in_a_quiet_chat_moves_the_balance_by_a_quarter() {
        let s = MeterState::centred(0).vote(Direction::For, 1_000, K);
        assert_eq!(s.read(MeterModel::Balance, 1_000, K).value, 25.0);
        assert_eq!(s.read(MeterModel::Classic, 1_000, K).value, 10.0, "the classic view of the same vote");
        let against = MeterState::centred(0).vote(Direction::Against, 0, K);
        assert_eq!(against.read(MeterModel::Balance, 0, K).value, -25.0);
    }

    #[test]
    fn a_unanimous_busy_chat_pins_the_balance_and_a_split_chat_shows_its_majority() {
        // 300 votes a second for 30 s, all "for", at k = 0.5.
        let mut unanimous = MeterState::centred(0);
        let mut split = MeterState::centred(0);
        for second in 0..30 {
            let at = second * 1_000;
            unanimous = votes(unanimous, Direction::For, 300, at);
            // Three "for" in every five votes, interleaved as chat would be.
            for i in 0..300 {
                split = split.vote(if i % 5 < 3 { Direction::For } else { Direction::Against }, at, K);
            }
        }
        let pinned = unanimous.read(MeterModel::Balance, 29_999, K).value;
        assert!(pinned > 99.0, "{pinned}");
        let sixty_forty = split.read(MeterModel::Balance, 29_999, K).value;
        assert!((19.0..21.0).contains(&sixty_forty), "about 20: {sixty_forty}");
        // The classic meter shows both near the end: the complaint it answers.
        assert!(split.read(MeterModel::Classic, 29_000, K).value >= 80.0);
    }

    #[test]
    fn the_balance_returns_to_the_centre_when_chat_goes_quiet() {
        let s = votes(MeterState::centred(0), Direction::For, 50, 0);
        let later = |ms| s.read(MeterModel::Balance, ms, K).value;
        assert!(later(0) > 90.0);
        assert!(later(10_000) < later(5_000) && later(5_000) < later(0));
        assert!(later(30_000) < 0.01, "{}", later(30_000));
        assert_eq!(later(RESET_AFTER_MS + 1), 0.0);
    }

    #[test]
    fn weights_decay_like_the_classic_value() {
        let s = MeterState { value: 40.0, for_weight: 4.0, against_weight: 2.0, last_update_ms: 1_000 };
        let r = s.read(MeterModel::Balance, 3_000, K);
        let factor = (-K * 2.0f64).exp();
        assert_eq!(r.weights, [4.0 * factor, 2.0 * factor]);
        assert_eq!(s.read(MeterModel::Classic, 3_000, K).value, 40.0 * factor);
        assert_eq!(s.read(MeterModel::Balance, 500, K).weights, [4.0, 2.0], "no decay for a future time");
    }

    #[test]
    fn garbage_weights_read_as_nothing() {
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -5.0] {
            assert_eq!(sanitize_weight(bad), 0.0, "{bad}");
            assert_eq!(balance_value(bad, 0.0), 0.0);
        }
        assert_eq!(sanitize_weight(1e300), WEIGHT_MAX);
    }

    #[test]
    fn participation_lasts_a_minute_after_the_last_counted_vote() {
        assert_eq!(recent_voters(7, 1_000, 1_000 + VOTERS_WINDOW_MS - 1), 7);
        assert_eq!(recent_voters(7, 1_000, 1_000 + VOTERS_WINDOW_MS), 0);
        assert_eq!(recent_voters(7, 5_000, 1_000), 7, "a vote stamped by a clock ahead of ours");
        assert_eq!(recent_voters(7, i64::MAX, 1_000), 0, "garbage far ahead");
        assert_eq!(voters_counted_at(Some(5_000), 1_000), 5_000);
        assert_eq!(voters_counted_at(Some(500), 1_000), 1_000);
        assert_eq!(voters_counted_at(Some(i64::MAX), 1_000), 1_000);
        assert_eq!(voters_counted_at(None, 1_000), 1_000);
    }

    #[test]
    fn models_round_trip_and_unknown_ones_read_as_classic() {
        for m in MeterModel::ALL {
            assert_eq!(MeterModel::parse(m.as_str()), Some(m));
            assert_eq!(MeterModel::parse_stored(Some(m.as_str())), m);
        }
        assert_eq!(MeterModel::parse_stored(None), MeterModel::Classic);
        assert_eq!(MeterModel::parse_stored(Some("Balance")), MeterModel::Classic);
    }

    proptest! {
        #[test]
        fn the_balance_stays_in_range_and_on_the_majority_side(f in 0.0f64..1e7, a in 0.0f64..1e7) {
            let v = balance_value(f, a);
            prop_assert!((VALUE_MIN..=VALUE_MAX).contains(&v));
            prop_assert_eq!(v > 0.0, f.min(WEIGHT_MAX) > a.min(WEIGHT_MAX));
        }
    }
}
