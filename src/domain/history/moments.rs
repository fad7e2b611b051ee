//! Moment detection, per session, over its closed history buckets (each
//! bucket reaches exactly one detector: the instance that takes it).
//!
//! **Burst.** A bucket's counted votes (both sides) are at least
//! [`BurstRule::min_votes`] and above the session's rolling baseline by more
//! than [`BurstRule::k`] standard deviations: `votes > mean + k·stddev` of
//! the previous [`BurstRule::baseline_buckets`] buckets, quiet buckets
//! counting as 0. The baseline must span at least
//! [`BurstRule::min_baseline_buckets`] buckets first (so the opening votes of
//! a session are no burst), and after a burst none is detected for
//! [`BurstRule::cooldown_ms`]. A window of 10 s (the bucket) rather than 5 s
//! keeps detection on the buckets already written, at no extra cost per vote.
//!
//! **Swing.** The bar crosses from one side's strong half (|value| ≥
//! [`SwingRule::strong`]) to the other's quickly: a bucket whose opening value
//! is strong one way and whose closing value is strong the other (within
//! 10 s), or whose closing value is strong the other way from the closing
//! value of the bucket just before it (within 20 s). Then none for
//! [`SwingRule::cooldown_ms`].

use super::MomentDetail;
use super::bucket::{BUCKET_MS, BucketCounters};

/// The burst rule's parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurstRule {
    pub k: f64,
    pub min_votes: u32,
    pub baseline_buckets: usize,
    pub min_baseline_buckets: usize,
    pub cooldown_ms: i64,
}

impl Default for BurstRule {
    fn default() -> Self {
        Self { k: 2.0, min_votes: 10, baseline_buckets: 18, min_baseline_buckets: 3, cooldown_ms: 30_000 }
    }
}

/// The swing rule's parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SwingRule {
    pub strong: f64,
    pub cooldown_ms: i64,
}

impl Default for SwingRule {
    fn default() -> Self {
        Self { strong: 50.0, cooldown_ms: 30_000 }
    }
}

/// A detected moment: when, and what was measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Detected {
    pub at_ms: i64,
    pub detail: MomentDetail,
}

/// One session's detector state.
#[derive(Debug, Clone, Default)]
pub struct MomentDetector {
    burst: BurstRule,
    swing: SwingRule,
    /// Vote counts of the buckets before the last one fed, oldest first
    /// (quiet buckets as 0), at most `baseline_buckets`.
    baseline: std::collections::VecDeque<u32>,
    last: Option<BucketCounters>,
    last_burst_ms: Option<i64>,
    last_swing_ms: Option<i64>,
}

impl MomentDetector {
    pub fn new(burst: BurstRule, swing: SwingRule) -> Self {
        Self { burst, swing, ..Self::default() }
    }

    /// Feeds the session's next closed bucket (buckets come oldest first;
    /// an older or repeated one is ignored) and returns the moments it shows.
    pub fn feed(&mut self, bucket: &BucketCounters) -> Vec<Detected> {
        if let Some(last) = self.last {
            if bucket.start_ms <= last.start_ms {
                return Vec::new();
            }
            // The previous bucket joins the baseline, then one 0 per quiet
            // bucket in between (bounded by the baseline's length).
            self.push_baseline(last.votes_for + last.votes_against);
            let quiet = ((bucket.start_ms - last.start_ms) / BUCKET_MS - 1).max(0);
            let quiet = usize::try_from(quiet).unwrap_or(usize::MAX).min(self.burst.baseline_buckets);
            for _ in 0..quiet {
                self.push_baseline(0);
            }
        }
        let mut found = Vec::new();
        if let Some(burst) = self.burst(bucket) {
            found.push(burst);
        }
        if let Some(swing) = self.swing(bucket) {
            found.push(swing);
        }
        self.last = Some(*bucket);
        found
    }

    fn push_baseline(&mut self, votes: u32) {
        self.baseline.push_back(votes);
        while self.baseline.len() > self.burst.baseline_buckets {
            self.baseline.pop_front();
        }
    }

    fn burst(&mut self, bucket: &BucketCounters) -> Option<Detected> {
        let rule = self.burst;
        let votes = bucket.votes_for + bucket.votes_against;
        if votes < rule.min_votes || self.baseline.len() < rule.min_baseline_buckets {
            return None;
        }
        if self.last_burst_ms.is_some_and(|t| bucket.start_ms - t < rule.cooldown_ms) {
            return None;
        }
        let n = self.baseline.len() as f64;
        let mean = self.baseline.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let variance = self.baseline.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n;
        let stddev = variance.sqrt();
        if f64::from(votes) <= mean + rule.k * stddev {
            return None;
        }
        self.last_burst_ms = Some(bucket.start_ms);
        let per_second = |v: f64| v * 1_000.0 / BUCKET_MS as f64;
        Some(Detected {
            at_ms: bucket.start_ms,
            detail: MomentDetail::Burst {
                rate: per_second(f64::from(votes)),
                baseline_mean: per_second(mean),
                baseline_stddev: per_second(stddev),
            },
        })
    }

    fn swing(&mut self, bucket: &BucketCounters) -> Option<Detected> {
        let rule = self.swing;
        if self.last_swing_ms.is_some_and(|t| bucket.start_ms - t < rule.cooldown_ms) {
            return None;
        }
        let side = |v: f64| {
            if v >= rule.strong {
                1
            } else if v <= -rule.strong {
                -1
            } else {
                0
            }
        };
        let close = side(bucket.value_close);
        if close == 0 {
            return None;
        }
        let within = if side(bucket.value_open) == -close {
            Some((bucket.value_open, BUCKET_MS))
        } else {
            self.last
                .filter(|prev| bucket.start_ms - prev.start_ms == BUCKET_MS && side(prev.value_close) == -close)
                .map(|prev| (prev.value_close, 2 * BUCKET_MS))
        };
        let (from, millis) = within?;
        self.last_swing_ms = Some(bucket.start_ms);
        Some(Detected { at_ms: bucket.start_ms, detail: MomentDetail::Swing { from, to: bucket.value_close, millis } })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::history::MomentKind;
    use proptest::prelude::*;

    fn bucket(i: i64, votes: u32, open: f64, close: f64) -> BucketCounters {
        BucketCounters {
            start_ms: i * BUCKET_MS,
            value_open: open,
            value_close: close,
            value_min: open.min(close),
            value_max: open.max(close),
            votes_for: votes,
            votes_against: 0,
            voters: votes.min(1),
        }
    }

    fn kinds(found: &[Detected]) -> Vec<MomentKind> {
        found.iter().map(|d| d.detail.kind()).collect()
    }

    #[test]
    fn a_burst_is_votes_far_above_the_baseline_then_a_cooldown() {
        let mut d = MomentDetector::default();
        for i in 0..6 {
            assert!(d.feed(&bucket(i, 3 + (i as u32 % 2), 0.0, 10.0)).is_empty());
        }
        let found = d.feed(&bucket(6, 40, 0.0, 10.0));
        assert_eq!(kinds(&found), vec![MomentKind::Burst]);
        assert_eq!(found[0].at_ms, 60_000);
        let MomentDetail::Burst { rate, baseline_mean, .. } = found[0].detail else { panic!("not a burst") };
        assert_eq!(rate, 4.0);
        assert!((baseline_mean - 0.35).abs() < 1e-9, "{baseline_mean}");
        // Within the cooldown: another spike is no moment; after it, it is.
        assert!(d.feed(&bucket(7, 200, 0.0, 10.0)).is_empty());
        assert!(d.feed(&bucket(8, 3, 0.0, 10.0)).is_empty());
        assert_eq!(kinds(&d.feed(&bucket(9, 900, 0.0, 10.0))), vec![MomentKind::Burst]);
    }

    #[test]
    fn no_burst_without_a_baseline_below_the_minimum_or_at_a_steady_rate() {
        let mut d = MomentDetector::default();
        assert!(d.feed(&bucket(0, 500, 0.0, 10.0)).is_empty(), "first bucket: no baseline yet");
        let mut d = MomentDetector::default();
        for i in 0..10 {
            assert!(d.feed(&bucket(i, 0, 0.0, 0.0)).is_empty());
        }
        assert!(d.feed(&bucket(10, 9, 0.0, 10.0)).is_empty(), "below the minimum of 10 votes");
        let mut d = MomentDetector::default();
        for i in 0..20 {
            assert!(d.feed(&bucket(i, 50, 0.0, 10.0)).is_empty(), "a steady busy chat is no burst");
        }
    }

    #[test]
    fn quiet_stretches_count_as_zero_votes_in_the_baseline() {
        let mut d = MomentDetector::default();
        d.feed(&bucket(0, 12, 0.0, 10.0));
        // 30 quiet buckets: the baseline is all zeros, 12 votes is a burst.
        assert_eq!(kinds(&d.feed(&bucket(31, 12, 0.0, 10.0))), vec![MomentKind::Burst]);
    }

    #[test]
    fn a_swing_crosses_strong_halves_within_a_bucket_or_two_adjacent_ones() {
        let mut d = MomentDetector::default();
        let found = d.feed(&bucket(0, 1, 60.0, -55.0));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].detail, MomentDetail::Swing { from: 60.0, to: -55.0, millis: 10_000 });

        let mut d = MomentDetector::default();
        assert!(d.feed(&bucket(0, 1, 20.0, -70.0)).is_empty());
        let found = d.feed(&bucket(1, 1, -40.0, 50.0));
        assert_eq!(found[0].detail, MomentDetail::Swing { from: -70.0, to: 50.0, millis: 20_000 });
        // Cooldown: swinging straight back within 30 s is no new moment.
        assert!(d.feed(&bucket(2, 1, 50.0, -90.0)).is_empty());
    }

    #[test]
    fn no_swing_from_weak_values_or_across_a_gap() {
        let mut d = MomentDetector::default();
        assert!(d.feed(&bucket(0, 1, 49.9, -90.0)).is_empty());
        let mut d = MomentDetector::default();
        d.feed(&bucket(0, 1, 0.0, 80.0));
        assert!(d.feed(&bucket(2, 1, 0.0, -80.0)).is_empty(), "20 s apart with a quiet bucket between");
    }

    #[test]
    fn an_old_or_repeated_bucket_is_ignored() {
        let mut d = MomentDetector::default();
        d.feed(&bucket(5, 1, 90.0, 90.0));
        assert!(d.feed(&bucket(5, 1, 90.0, -90.0)).is_empty());
        assert!(d.feed(&bucket(4, 1, 90.0, -90.0)).is_empty());
    }

    proptest! {
        /// Whatever the buckets, moments of one kind are at least a cooldown apart.
        #[test]
        fn moments_respect_their_cooldowns(
            buckets in proptest::collection::vec((1i64..4, 0u32..200, -100.0f64..100.0, -100.0f64..100.0), 1..120)
        ) {
            let mut d = MomentDetector::default();
            let mut i = 0;
            let mut seen: Vec<(MomentKind, i64)> = Vec::new();
            for (gap, votes, open, close) in buckets {
                i += gap;
                for m in d.feed(&bucket(i, votes, open, close)) {
                    seen.push((m.detail.kind(), m.at_ms));
                }
            }
            for kind in [MomentKind::Burst, MomentKind::Swing] {
                let times: Vec<i64> = seen.iter().filter(|(k, _)| *k == kind).map(|(_, t)| *t).collect();
                for pair in times.windows(2) {
                    prop_assert!(pair[1] - pair[0] >= 30_000);
                }
            }
        }
    }
}
