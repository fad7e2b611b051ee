//! A session's stored fields as the broadcaster's read decodes them, exactly
//! as the Lua functions compute (the meter math is shared with the
//! in-process store).

use crate::domain::meter::{MeterState, VOTERS_MAX, recent_voters};
use crate::domain::sentiment::{sanitize_decay, sanitize_value};
use crate::domain::{MeterModel, SessionStatus};
use crate::store::Snapshot;

/// A stored number as Lua's `num()` reads it: plain decimal notation only,
/// finite, else `None`.
pub(super) fn stored_number(raw: Option<&str>) -> Option<f64> {
    let raw = raw?;
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit() || b"eE.+-".contains(&b)) {
        return None;
    }
    raw.parse::<f64>().ok().filter(|n| n.is_finite())
}

/// The session fields a read takes, in this order (the Lua `READ_FIELDS`).
pub(super) const READ_FIELDS: [&str; 9] =
    ["value", "last_update", "decay", "status", "model", "for_weight", "against_weight", "voters", "voters_at"];

/// What overlays see of a session, from its stored [`READ_FIELDS`], exactly
/// as the Lua functions compute it (the meter math is shared with the
/// in-process store). `None` when the session does not exist.
pub fn snapshot_from_fields(fields: &[Option<&str>], now_ms: i64) -> Option<Snapshot> {
    let field = |i: usize| fields.get(i).copied().flatten();
    if (0..3).all(|i| field(i).is_none()) {
        return None;
    }
    let model = MeterModel::parse_stored(field(4));
    let status = SessionStatus::parse_stored(field(3));
    // Only ZCARD writes the count: anything but a whole number in range is garbage.
    let voters = stored_number(field(7))
        .filter(|n| n.fract() == 0.0 && (0.0..=f64::from(VOTERS_MAX)).contains(n))
        .map_or(0, |n| n as u32);
    let voters = stored_number(field(8)).map_or(0, |at| recent_voters(voters, at as i64, now_ms));
    let k = stored_number(field(2)).unwrap_or(f64::NAN);
    let decay = sanitize_decay(k);
    let Some(last) = stored_number(field(1)) else {
        // A garbage time reads as "reset", in both meters.
        return Some(Snapshot { value: 0.0, status, model, weights: [0.0, 0.0], voters, decay });
    };
    let state = MeterState {
        value: sanitize_value(stored_number(field(0)).unwrap_or(0.0)),
        for_weight: stored_number(field(5)).unwrap_or(0.0),
        against_weight: stored_number(field(6)).unwrap_or(0.0),
        last_update_ms: last as i64,
    };
    let reading = state.read(model, now_ms, k);
    Some(Snapshot { value: reading.value, status, model, weights: reading.weights, voters, decay })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_numbers_accept_plain_decimals_only() {
        assert_eq!(stored_number(Some("12.5")), Some(12.5));
        assert_eq!(stored_number(Some("-1e3")), Some(-1000.0));
        for garbage in ["abc", "nan", "inf", "-inf", "1e999", "0x10", "", " 5", "1,5"] {
            assert_eq!(stored_number(Some(garbage)), None, "{garbage}");
        }
        assert_eq!(stored_number(None), None);
    }

    fn value_of(value: &str, last: &str, decay: &str, now: i64) -> Option<f64> {
        snapshot_from_fields(&[Some(value), Some(last), Some(decay)], now).map(|s| s.value)
    }

    #[test]
    fn garbage_fields_read_as_safe_values() {
        let now = 1_000_000;
        assert_eq!(snapshot_from_fields(&[None, None, None, Some("live")], now), None, "missing session");
        assert_eq!(value_of("banana", "999000", "0.5", now), Some(0.0));
        assert_eq!(value_of("1e999", "1000000", "0.5", now), Some(0.0));
        assert_eq!(value_of("250", "1000000", "0.5", now), Some(100.0));
        assert_eq!(value_of("50", "yesterday", "0.5", now), Some(0.0));
        assert_eq!(value_of("50", "999000", "-3", now), Some(50.0 * (-0.5f64).exp()), "default decay 0.5");
    }

    #[test]
    fn a_balance_session_reads_its_counts_and_garbage_counts_read_as_none() {
        let now = 1_000_000;
        let read = |f: &str, a: &str| {
            let fields = [Some("10"), Some("1000000"), Some("0.5"), Some("live"), Some("balance"), Some(f), Some(a)];
            snapshot_from_fields(&fields, now).unwrap()
        };
        let s = read("3", "1");
        assert_eq!(
            (s.value, s.weights, s.model, s.status),
            (100.0 * 2.0 / 7.0, [3.0, 1.0], MeterModel::Balance, SessionStatus::Live)
        );
        assert_eq!(read("nan", "-4").weights, [0.0, 0.0]);
        assert_eq!(read("1e300", "0").weights, [crate::domain::meter::WEIGHT_MAX, 0.0]);
        let old = [Some("10"), Some("1000000"), Some("0.5")];
        assert_eq!(snapshot_from_fields(&old, now).unwrap().model, MeterModel::Classic, "a session from before");
    }

    #[test]
    fn participation_is_read_for_a_minute_after_the_last_counted_vote() {
        let fields = |voters: &'static str, at: &'static str| {
            [Some("0"), Some("0"), Some("0.5"), None, None, None, None, Some(voters), Some(at)]
        };
        assert_eq!(snapshot_from_fields(&fields("12", "950000"), 1_000_000).unwrap().voters, 12);
        assert_eq!(snapshot_from_fields(&fields("12", "940000"), 1_000_000).unwrap().voters, 0);
        assert_eq!(snapshot_from_fields(&fields("x", "950000"), 1_000_000).unwrap().voters, 0);
    }
}
