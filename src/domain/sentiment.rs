//! The sentiment math (ARCHITECTURE §4). The Lua Redis function implements the
//! same formulas; the shared contract tests keep the two identical.

use serde::Serialize;

/// The bar's range: -100 (fully "against") to 100 (fully "for").
pub const VALUE_MIN: f64 = -100.0;
pub const VALUE_MAX: f64 = 100.0;
/// How far one counted vote moves the bar.
pub const VOTE_STEP: f64 = 10.0;
/// After this long without a vote the value is 0, whatever the decay speed.
pub const RESET_AFTER_MS: i64 = 3_600_000;
/// Decay speeds the live store accepts; anything else is clamped into it. The
/// dashboard offers the narrower 0.1..=2.0 (see [`crate::domain::DecaySpeed`]).
pub const STORE_DECAY_MIN: f64 = 0.1;
pub const STORE_DECAY_MAX: f64 = 10.0;
pub const DEFAULT_DECAY: f64 = 0.5;

/// Which way a matched chat message pushes the bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    For,
    Against,
}

impl Direction {
    pub fn delta(self) -> f64 {
        match self {
            Direction::For => VOTE_STEP,
            Direction::Against => -VOTE_STEP,
        }
    }
}

/// What an overlay shows besides the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    /// Live state is readable and votes are counted (stream state unknown).
    Active,
    /// The channel is streaming (`stream.online`).
    Live,
    /// The channel's stream ended (`stream.offline`); votes still count.
    Offline,
    /// The live store cannot be read right now; the overlay shows its
    /// "reconnecting" indicator until it can.
    Reconnecting,
    /// The streamer's Twitch authorization is gone (revoked, or refused on
    /// refresh): no chat arrives until they log in again, so the overlay asks
    /// them to reconnect Twitch. Setting it keeps the value; setting `Active`
    /// (or `Live`/`Offline`) clears it.
    Disconnected,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Active => "active",
            SessionStatus::Live => "live",
            SessionStatus::Offline => "offline",
            SessionStatus::Reconnecting => "reconnecting",
            SessionStatus::Disconnected => "disconnected",
        }
    }

    /// A stored status; anything unknown reads as `Active`. `Reconnecting`
    /// describes the store, not a session, so a stored one reads as `Active`
    /// too.
    pub fn parse_stored(raw: Option<&str>) -> Self {
        match raw {
            Some("live") => SessionStatus::Live,
            Some("offline") => SessionStatus::Offline,
            Some("disconnected") => SessionStatus::Disconnected,
            _ => SessionStatus::Active,
        }
    }
}

/// A stored value made safe: non-finite becomes 0, out of range is clamped.
pub fn sanitize_value(value: f64) -> f64 {
    if value.is_finite() { value.clamp(VALUE_MIN, VALUE_MAX) } else { 0.0 }
}

/// A stored decay speed made safe: non-finite or non-positive becomes the
/// default, anything else is clamped to the store's range.
pub fn sanitize_decay(k: f64) -> f64 {
    if k.is_finite() && k > 0.0 { k.clamp(STORE_DECAY_MIN, STORE_DECAY_MAX) } else { DEFAULT_DECAY }
}

/// The value at `now_ms` of a session whose stored value is `value`, last
/// changed at `last_update_ms`, decaying with speed `k` (per second):
/// `value · e^(−k·Δt/1000)`, or 0 once more than an hour has passed.
///
/// A `last_update_ms` in the future (clock skew between instances) means no
/// decay yet rather than growth.
pub fn decayed(value: f64, last_update_ms: i64, now_ms: i64, k: f64) -> f64 {
    let value = sanitize_value(value);
    let k = sanitize_decay(k);
    let elapsed_ms = now_ms.saturating_sub(last_update_ms);
    if elapsed_ms <= 0 {
        return value;
    }
    if elapsed_ms > RESET_AFTER_MS {
        return 0.0;
    }
    value * (-k * elapsed_ms as f64 / 1000.0).exp()
}

/// The value after one counted vote.
pub fn apply_vote(current: f64, direction: Direction) -> f64 {
    sanitize_value(sanitize_value(current) + direction.delta())
}

/// Rounds a value to what an overlay can show (hundredths), so that a value
/// at rest stops producing frames; -0 becomes 0.
pub fn display_value(value: f64) -> f64 {
    let rounded = (sanitize_value(value) * 100.0).round() / 100.0;
    if rounded == 0.0 { 0.0 } else { rounded }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn session_statuses_round_trip_through_storage() {
        use SessionStatus::*;
        for status in [Active, Live, Offline, Disconnected] {
            assert_eq!(SessionStatus::parse_stored(Some(status.as_str())), status);
        }
        assert_eq!(SessionStatus::parse_stored(Some(Reconnecting.as_str())), Active);
        assert_eq!(SessionStatus::parse_stored(Some("garbage")), Active);
        assert_eq!(SessionStatus::parse_stored(None), Active);
        assert_eq!(serde_json::to_string(&Disconnected).unwrap(), r#""disconnected""#);
        assert_eq!(Disconnected.as_str(), "disconnected");
    }

    #[test]
    fn no_time_passed_means_no_decay() {
        assert_eq!(decayed(42.0, 1_000, 1_000, 0.5), 42.0);
    }

    #[test]
    fn value_halves_after_ln2_over_k_seconds() {
        // k = 0.5 → half-life = ln 2 / 0.5 ≈ 1386.29 ms
        let half_life_ms = (std::f64::consts::LN_2 / 0.5 * 1000.0).round() as i64;
        let v = decayed(80.0, 0, half_life_ms, 0.5);
        assert!((v - 40.0).abs() < 0.01, "got {v}");
    }

    #[test]
    fn decay_follows_the_exponential_formula() {
        let v = decayed(-50.0, 10_000, 12_500, 1.2);
        assert!(close(v, -50.0 * (-1.2f64 * 2.5).exp()));
    }

    #[test]
    fn value_resets_after_an_hour_without_votes() {
        assert_eq!(decayed(100.0, 0, RESET_AFTER_MS + 1, 0.1), 0.0);
        // exactly one hour still decays normally
        assert!(decayed(100.0, 0, RESET_AFTER_MS, 0.1) > 0.0);
    }

    #[test]
    fn future_timestamps_do_not_grow_the_value() {
        assert_eq!(decayed(30.0, 5_000, 1_000, 2.0), 30.0);
    }

    #[test]
    fn non_finite_stored_values_become_zero() {
        assert_eq!(decayed(f64::NAN, 0, 100, 0.5), 0.0);
        assert_eq!(decayed(f64::INFINITY, 0, 100, 0.5), 0.0);
        assert_eq!(decayed(f64::NEG_INFINITY, 0, 0, 0.5), 0.0);
    }

    #[test]
    fn out_of_range_stored_values_are_clamped() {
        assert_eq!(decayed(1e9, 0, 0, 0.5), 100.0);
        assert_eq!(decayed(-250.0, 0, 0, 0.5), -100.0);
    }

    #[test]
    fn garbage_decay_speeds_fall_back_to_safe_values() {
        assert_eq!(sanitize_decay(f64::NAN), DEFAULT_DECAY);
        assert_eq!(sanitize_decay(f64::INFINITY), DEFAULT_DECAY);
        assert_eq!(sanitize_decay(-3.0), DEFAULT_DECAY);
        assert_eq!(sanitize_decay(0.0), DEFAULT_DECAY);
        assert_eq!(sanitize_decay(0.01), STORE_DECAY_MIN);
        assert_eq!(sanitize_decay(500.0), STORE_DECAY_MAX);
        assert_eq!(sanitize_decay(1.5), 1.5);
    }

    #[test]
    fn a_vote_moves_ten_points_and_clamps_at_the_ends() {
        assert_eq!(apply_vote(0.0, Direction::For), 10.0);
        assert_eq!(apply_vote(0.0, Direction::Against), -10.0);
        assert_eq!(apply_vote(95.0, Direction::For), 100.0);
        assert_eq!(apply_vote(-95.0, Direction::Against), -100.0);
        assert_eq!(apply_vote(f64::NAN, Direction::For), 10.0);
    }

    #[test]
    fn display_value_rounds_to_hundredths_and_drops_negative_zero() {
        assert_eq!(display_value(12.3456), 12.35);
        assert_eq!(display_value(-0.001), 0.0);
        assert!(display_value(-0.001).is_sign_positive());
        assert_eq!(display_value(f64::NAN), 0.0);
    }

    proptest! {
        #[test]
        fn decay_never_leaves_the_range_nor_grows(
            value in prop::num::f64::ANY,
            last in -10_000_000i64..10_000_000,
            now in -10_000_000i64..10_000_000,
            k in prop::num::f64::ANY,
        ) {
            let v = decayed(value, last, now, k);
            prop_assert!(v.is_finite());
            prop_assert!((VALUE_MIN..=VALUE_MAX).contains(&v));
            prop_assert!(v.abs() <= sanitize_value(value).abs());
        }
    }
}
