//! A frame as a trajectory: what a read shows, and whether a client that
//! got the last frame already shows it by itself.

use super::Frame;
use crate::domain::MeterModel;
use crate::domain::sentiment::display_value;
use crate::store::Snapshot;

/// While a bar glides along the trajectory its last frame gave, a keyframe
/// (the same trajectory, from now) goes out about this often, so a client
/// that drifted is put right: with each glide read (one a glide period,
/// this by default), unless the last frame is younger than half of this (a
/// vote's frame just before the read).
pub(super) const KEYFRAME_MS: i64 = 1_000;
/// How far a read may be from the last frame's trajectory and still follow
/// it: the value (rounded to hundredths in frames) and the balance counts
/// (thousandths).
const VALUE_TOLERANCE: f64 = 0.02;
const WEIGHT_TOLERANCE: f64 = 0.002;

/// What a frame shows of a snapshot read at `now`: the value in hundredths,
/// the balance counts in thousandths, and the decay they follow from `now`.
/// A failed read (NaN) keeps the last frame's trajectory.
pub(super) fn shown_of(snapshot: &Snapshot, last: Option<&Frame>, now: i64) -> Frame {
    let failed = snapshot.value.is_nan();
    let round = |w: f64| (w * 1000.0).round() / 1000.0;
    let weights = match snapshot.model {
        MeterModel::Balance if !failed => snapshot.weights.map(round),
        _ => [0.0; 2],
    };
    match last {
        Some(last) if failed => Frame { status: snapshot.status, ..*last },
        None if failed => Frame { status: snapshot.status, ..Frame::centre() },
        _ => Frame {
            value: display_value(snapshot.value),
            status: snapshot.status,
            model: snapshot.model,
            weights,
            voters: snapshot.voters,
            at: now,
            decay: snapshot.decay,
        },
    }
}

/// Whether a client that got `last` shows `shown` at `now` by itself: same
/// status, model, voters and decay, and the read on the last frame's
/// trajectory.
pub(super) fn follows(last: &Frame, shown: &Frame, now: i64) -> bool {
    if last.status != shown.status || last.model != shown.model || last.voters != shown.voters {
        return false;
    }
    if (last.decay - shown.decay).abs() > 1e-9 {
        return false;
    }
    if (last.value_at(now) - shown.value).abs() > VALUE_TOLERANCE {
        return false;
    }
    let f = (-last.decay * (now - last.at).max(0) as f64 / 1000.0).exp();
    last.weights.iter().zip(shown.weights).all(|(w, s)| (w * f - s).abs() <= WEIGHT_TOLERANCE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SessionStatus;
    use crate::domain::meter::MeterState;

    const T0: i64 = 1_800_000_000_000;

    /// What the store reads at `now` for a meter last changed at T0.
    fn read(state: &MeterState, model: MeterModel, now: i64) -> Snapshot {
        let reading = state.read(model, now, 0.5);
        Snapshot {
            value: reading.value,
            status: SessionStatus::Active,
            model,
            weights: reading.weights,
            voters: 3,
            decay: 0.5,
        }
    }

    #[test]
    fn both_models_are_followed_along_their_decay_and_left_on_a_vote() {
        for model in [MeterModel::Classic, MeterModel::Balance] {
            let state = MeterState { value: 30.0, for_weight: 3.0, against_weight: 0.0, last_update_ms: T0 };
            let first = shown_of(&read(&state, model, T0), None, T0);
            assert_eq!((first.at, first.decay), (T0, 0.5));
            for ms in (50..6_000).step_by(50) {
                let now = T0 + ms;
                let shown = shown_of(&read(&state, model, now), Some(&first), now);
                assert!(follows(&first, &shown, now), "{model:?} at +{ms} ms: {first:?} vs {shown:?}");
                assert!((first.value_at(now) - shown.value).abs() <= VALUE_TOLERANCE);
            }
            let voted = state.vote(crate::domain::Direction::For, T0 + 2_000, 0.5);
            let shown = shown_of(&read(&voted, model, T0 + 2_000), Some(&first), T0 + 2_000);
            assert!(!follows(&first, &shown, T0 + 2_000), "{model:?}: a vote leaves the trajectory");
        }
    }

    #[test]
    fn a_status_or_participation_change_leaves_the_trajectory_and_a_failed_read_keeps_it() {
        let state = MeterState { value: 30.0, for_weight: 3.0, against_weight: 0.0, last_update_ms: T0 };
        let first = shown_of(&read(&state, MeterModel::Classic, T0), None, T0);
        let live = Snapshot { status: SessionStatus::Live, ..read(&state, MeterModel::Classic, T0 + 50) };
        assert!(!follows(&first, &shown_of(&live, Some(&first), T0 + 50), T0 + 50));
        let fewer = Snapshot { voters: 2, ..read(&state, MeterModel::Classic, T0 + 50) };
        assert!(!follows(&first, &shown_of(&fewer, Some(&first), T0 + 50), T0 + 50));
        let failed =
            Snapshot { value: f64::NAN, status: SessionStatus::Reconnecting, ..read(&state, MeterModel::Classic, T0) };
        let kept = shown_of(&failed, Some(&first), T0 + 500);
        assert_eq!((kept.value, kept.at, kept.decay, kept.status), (first.value, T0, 0.5, SessionStatus::Reconnecting));
    }
}
