//! The history bucket rules: what the live store accumulates for a
//! session's current 10-second bucket, the same in Rust (memory store) and
//! Lua (Redis Functions, `redis-functions/chatpulse.lua`).
//!
//! - A bucket starts at a multiple of [`BUCKET_MS`] since the epoch and is
//!   only kept when it holds at least one counted vote: a quiet stretch adds
//!   nothing (the bar just decays from the last `value_close` towards 0, by
//!   the session's known decay), so a quiet session costs no write.
//! - Each counted vote contributes the session's value just before it
//!   (decayed to the vote's time) and just after it. The first vote of a
//!   bucket sets `value_open` to the value before it; every vote sets
//!   `value_close` to the value after it; `value_min`/`value_max` are the
//!   extremes of every value seen in the bucket.
//! - Votes are counted by side; `voters` is the number of distinct chatters
//!   with a counted vote in the bucket.
//! - A bucket closes when a vote falls into a later bucket, or when it is
//!   taken after its end: each closed bucket is handed out exactly once.

use serde::{Deserialize, Serialize};

use crate::domain::Direction;

/// The length of one history bucket.
pub const BUCKET_MS: i64 = 10_000;

/// The start of the bucket holding `at_ms`.
pub fn bucket_start_ms(at_ms: i64) -> i64 {
    at_ms.div_euclid(BUCKET_MS) * BUCKET_MS
}

/// One session's counters for one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BucketCounters {
    pub start_ms: i64,
    pub value_open: f64,
    pub value_close: f64,
    pub value_min: f64,
    pub value_max: f64,
    pub votes_for: u32,
    pub votes_against: u32,
    pub voters: u32,
}

impl BucketCounters {
    /// The bucket opened by a counted vote at `now_ms` that moved the value
    /// from `before` to `after`; `new_voter` is whether the chatter is the
    /// bucket's first vote from them (always, for the first vote).
    pub fn first(now_ms: i64, direction: Direction, before: f64, after: f64) -> Self {
        let mut counters = Self {
            start_ms: bucket_start_ms(now_ms),
            value_open: before,
            value_close: after,
            value_min: before.min(after),
            value_max: before.max(after),
            votes_for: 0,
            votes_against: 0,
            voters: 1,
        };
        counters.count(direction);
        counters
    }

    /// A later counted vote of the same bucket.
    pub fn add(&mut self, direction: Direction, before: f64, after: f64, new_voter: bool) {
        self.value_close = after;
        self.value_min = self.value_min.min(before).min(after);
        self.value_max = self.value_max.max(before).max(after);
        if new_voter {
            self.voters = self.voters.saturating_add(1);
        }
        self.count(direction);
    }

    fn count(&mut self, direction: Direction) {
        match direction {
            Direction::For => self.votes_for = self.votes_for.saturating_add(1),
            Direction::Against => self.votes_against = self.votes_against.saturating_add(1),
        }
    }

    /// Whether the bucket is over at `now_ms`.
    pub fn closed_at(&self, now_ms: i64) -> bool {
        now_ms >= self.start_ms + BUCKET_MS
    }
}

/// A session's bucket in progress: the counters and the chatters seen in
/// it. What the memory store keeps per session (the Redis store keeps the
/// same in a hash and a set).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BucketAccumulator {
    current: Option<(BucketCounters, std::collections::HashSet<String>)>,
    /// Buckets closed by a later vote, waiting to be taken.
    closed: Vec<BucketCounters>,
}

/// How many closed buckets of one session wait at most (older ones are
/// dropped): with nobody taking them, history is lost rather than memory.
pub const MAX_WAITING_BUCKETS: usize = 60;

impl BucketAccumulator {
    /// Records a counted vote at `now_ms` by `chatter` that moved the value
    /// from `before` to `after`.
    pub fn vote(&mut self, now_ms: i64, chatter: &str, direction: Direction, before: f64, after: f64) {
        let start = bucket_start_ms(now_ms);
        match &mut self.current {
            Some((counters, chatters)) if counters.start_ms == start => {
                let new_voter = chatters.insert(chatter.to_owned());
                counters.add(direction, before, after, new_voter);
            }
            current => {
                if let Some((done, _)) = current.take() {
                    self.closed.push(done);
                    if self.closed.len() > MAX_WAITING_BUCKETS {
                        self.closed.remove(0);
                    }
                }
                let chatters = std::iter::once(chatter.to_owned()).collect();
                *current = Some((BucketCounters::first(now_ms, direction, before, after), chatters));
            }
        }
    }

    /// Takes every bucket closed by `now_ms`, oldest first; each is returned
    /// once.
    pub fn take_closed(&mut self, now_ms: i64) -> Vec<BucketCounters> {
        let mut out = std::mem::take(&mut self.closed);
        if let Some((counters, _)) = &self.current
            && counters.closed_at(now_ms)
        {
            out.push(*counters);
            self.current = None;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn buckets_start_at_multiples_of_ten_seconds_also_before_the_epoch() {
        assert_eq!(bucket_start_ms(0), 0);
        assert_eq!(bucket_start_ms(9_999), 0);
        assert_eq!(bucket_start_ms(10_000), 10_000);
        assert_eq!(bucket_start_ms(1_700_000_012_345), 1_700_000_010_000);
        assert_eq!(bucket_start_ms(-1), -10_000);
    }

    #[test]
    fn a_bucket_keeps_open_close_extremes_sides_and_distinct_voters() {
        let mut acc = BucketAccumulator::default();
        acc.vote(20_500, "a", Direction::For, 5.0, 15.0);
        acc.vote(21_000, "b", Direction::Against, 14.0, 4.0);
        acc.vote(22_000, "a", Direction::Against, 3.0, -7.0);
        acc.vote(29_999, "c", Direction::For, -6.0, 4.0);
        assert!(acc.take_closed(29_999).is_empty(), "the bucket is not over yet");
        let taken = acc.take_closed(30_000);
        assert_eq!(
            taken,
            vec![BucketCounters {
                start_ms: 20_000,
                value_open: 5.0,
                value_close: 4.0,
                value_min: -7.0,
                value_max: 15.0,
                votes_for: 2,
                votes_against: 2,
                voters: 3,
            }]
        );
        assert!(acc.take_closed(100_000).is_empty(), "a bucket is taken once");
    }

    #[test]
    fn a_vote_in_a_later_bucket_closes_the_current_one_and_quiet_buckets_are_skipped() {
        let mut acc = BucketAccumulator::default();
        acc.vote(1_000, "a", Direction::For, 0.0, 10.0);
        acc.vote(45_000, "a", Direction::For, 2.0, 12.0);
        let taken = acc.take_closed(45_001);
        assert_eq!(taken.iter().map(|b| b.start_ms).collect::<Vec<_>>(), vec![0]);
        assert_eq!(taken[0].voters, 1);
        let later = acc.take_closed(50_000);
        assert_eq!(later.len(), 1);
        assert_eq!((later[0].start_ms, later[0].value_open, later[0].value_close), (40_000, 2.0, 12.0));
    }

    #[test]
    fn waiting_buckets_are_bounded_and_the_oldest_are_dropped() {
        let mut acc = BucketAccumulator::default();
        let n = MAX_WAITING_BUCKETS as i64 + 5;
        for i in 0..=n {
            acc.vote(i * BUCKET_MS, "a", Direction::For, 0.0, 10.0);
        }
        let taken = acc.take_closed(n * BUCKET_MS);
        assert_eq!(taken.len(), MAX_WAITING_BUCKETS);
        assert_eq!(taken.last().map(|b| b.start_ms), Some((n - 1) * BUCKET_MS));
    }

    proptest! {
        /// Whatever the votes, every taken bucket is consistent: min ≤ open,
        /// close ≤ max, voters ≤ votes, and the votes add up.
        #[test]
        fn taken_buckets_are_consistent_and_count_every_vote(
            votes in proptest::collection::vec((0i64..5_000, 0u8..4, any::<bool>(), -100.0f64..100.0, -100.0f64..100.0), 1..80)
        ) {
            let mut acc = BucketAccumulator::default();
            let mut now = 0i64;
            let mut taken = Vec::new();
            for (step, chatter, side, before, after) in &votes {
                now += step;
                let direction = if *side { Direction::For } else { Direction::Against };
                acc.vote(now, &chatter.to_string(), direction, *before, *after);
                if step % 7 == 0 {
                    taken.extend(acc.take_closed(now));
                }
            }
            taken.extend(acc.take_closed(now + BUCKET_MS));
            let total: u32 = taken.iter().map(|b| b.votes_for + b.votes_against).sum();
            prop_assert_eq!(total as usize, votes.len());
            for pair in taken.windows(2) {
                prop_assert!(pair[0].start_ms < pair[1].start_ms);
            }
            for b in &taken {
                prop_assert!(b.value_min <= b.value_open && b.value_open <= b.value_max);
                prop_assert!(b.value_min <= b.value_close && b.value_close <= b.value_max);
                prop_assert!(b.voters >= 1 && b.voters <= b.votes_for + b.votes_against && b.voters <= 4);
                prop_assert_eq!(b.start_ms % BUCKET_MS, 0);
            }
        }
    }
}
