//! The history flush: each instance, every `history_flush_interval`, takes
//! the closed buckets of the sessions it holds from the live store (each
//! bucket is handed out once, and one instance at a time takes a session's
//! buckets), writes them in one batched insert, and feeds them to the
//! session's moment detector. No write per vote: a session costs at most one
//! row per 10 seconds, and only for 10 seconds in which chat voted.
//!
//! Only sessions that may have closed buckets are asked ([`due`]): those with
//! a vote seen lately (a vote handled here, or another instance's signal
//! that it moved the bar from the centre), and every session once per
//! [`SWEEP_MS`] in case a vote went unseen. An idle deployment so costs the
//! live store almost nothing, whatever its number of sessions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::super::App;
use crate::domain::history::{
    ActionOutcome, ActionStatus, BUCKET_MS, BucketCounters, Detected, HistoryBucket, Moment, MomentDetector, MomentId,
    Page,
};
use crate::domain::{BroadcasterId, OverlayId, StreamerId};

/// Buckets kept for the next flush when a write fails, at most (the oldest
/// go first): a durable-store outage costs history, never memory.
const MAX_PENDING: usize = 100_000;

/// A session is asked for its buckets on every flush for this long after a
/// vote was seen or a take found buckets: long enough for the bucket of that
/// vote to close (10 s) and be taken.
pub const ACTIVE_FOR_MS: i64 = 60_000;

/// Every session is asked at least this often, in case a vote went unseen
/// here (one another instance handled while the bar was away from the
/// centre). Well within the live store's keep of waiting buckets (10 min).
pub const SWEEP_MS: i64 = 300_000;

/// When this instance last saw a session vote (or find buckets) and last
/// asked for its buckets, in ms since the epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    pub active_ms: i64,
    pub taken_ms: i64,
}

/// Whether a flush at `now_ms` asks for a session's buckets: never asked
/// before, active lately, or due for the sweep.
pub fn due(seen: Option<&Seen>, now_ms: i64) -> bool {
    seen.is_none_or(|s| now_ms - s.active_ms < ACTIVE_FOR_MS || now_ms - s.taken_ms >= SWEEP_MS)
}

/// What one instance remembers between flushes.
#[derive(Default)]
pub struct HistoryState {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Buckets taken but not written yet (a write failed).
    pending: Vec<HistoryBucket>,
    /// Each session's moment detector (sessions this instance takes).
    detectors: HashMap<OverlayId, MomentDetector>,
    /// What this instance saw of each session it holds (see [`due`]).
    seen: HashMap<OverlayId, Seen>,
}

impl HistoryState {
    /// A vote for this session was seen at `now_ms`: its buckets are asked
    /// for on the next flushes.
    pub fn touch(&self, overlay: OverlayId, now_ms: i64) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.seen.entry(overlay).or_default().active_ms = now_ms;
    }
}

/// What one flush did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Flushed {
    /// Buckets taken from the live store.
    pub taken: usize,
    /// Rows written (a bucket written before is not written again).
    pub written: u64,
    pub moments: Vec<Moment>,
}

fn time_of(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn row(streamer: StreamerId, b: &BucketCounters) -> HistoryBucket {
    HistoryBucket {
        streamer,
        stream: None,
        start: time_of(b.start_ms),
        value_open: b.value_open,
        value_close: b.value_close,
        value_min: b.value_min,
        value_max: b.value_max,
        votes_for: b.votes_for,
        votes_against: b.votes_against,
        voters: b.voters,
    }
}

impl App {
    /// Takes the closed history buckets of the sessions this instance holds,
    /// writes them, and records the moments they show.
    pub async fn flush_history(self: &Arc<Self>, claim: Duration, now_ms: i64) -> Flushed {
        let hosted = self.sessions.hosted();
        let owners: HashMap<OverlayId, (StreamerId, BroadcasterId)> =
            hosted.iter().map(|(o, s, b)| (*o, (*s, b.clone()))).collect();
        let claim_ms = i64::try_from(claim.as_millis()).unwrap_or(i64::MAX);
        let (overlays, nothing_pending) = {
            let mut inner = self.history.inner.lock().unwrap_or_else(|p| p.into_inner());
            inner.seen.retain(|overlay, _| owners.contains_key(overlay));
            let overlays: Vec<OverlayId> =
                hosted.iter().map(|(o, _, _)| *o).filter(|o| due(inner.seen.get(o), now_ms)).collect();
            for overlay in &overlays {
                inner.seen.entry(*overlay).or_default().taken_ms = now_ms;
            }
            (overlays, inner.pending.is_empty())
        };
        if overlays.is_empty() && nothing_pending {
            return Flushed::default();
        }
        let taken = match self.live.take_buckets(&overlays, &self.settings.instance_id, claim_ms, now_ms).await {
            Ok(taken) => taken,
            Err(e) => {
                self.metrics.live_error("take_buckets");
                tracing::warn!(error = %e, "cannot take history buckets; trying again next flush");
                Vec::new()
            }
        };
        let mut flushed = Flushed::default();
        let mut detected: Vec<(StreamerId, BroadcasterId, Detected)> = Vec::new();
        let batch = {
            let mut inner = self.history.inner.lock().unwrap_or_else(|p| p.into_inner());
            inner.detectors.retain(|overlay, _| owners.contains_key(overlay));
            for (overlay, buckets) in &taken {
                let Some((streamer, broadcaster)) = owners.get(overlay) else { continue };
                if !buckets.is_empty() {
                    inner.seen.entry(*overlay).or_default().active_ms = now_ms;
                }
                flushed.taken += buckets.len();
                let detector = inner.detectors.entry(*overlay).or_default();
                for bucket in buckets {
                    detected.extend(detector.feed(bucket).into_iter().map(|d| (*streamer, broadcaster.clone(), d)));
                }
                inner.pending.extend(buckets.iter().map(|b| row(*streamer, b)));
            }
            let excess = inner.pending.len().saturating_sub(MAX_PENDING);
            inner.pending.drain(..excess);
            std::mem::take(&mut inner.pending)
        };
        if !batch.is_empty() {
            match self.repo.save_buckets(&batch).await {
                Ok(written) => {
                    flushed.written = written;
                    self.metrics.history_buckets_written.inc_by(written);
                    self.metrics.history_batches_written.inc();
                }
                Err(e) => {
                    self.metrics.history_flush_failures.inc();
                    tracing::warn!(error = %e, buckets = batch.len(), "cannot write history buckets; kept for the next flush");
                    let mut inner = self.history.inner.lock().unwrap_or_else(|p| p.into_inner());
                    let mut kept = batch;
                    kept.append(&mut inner.pending);
                    inner.pending = kept;
                }
            }
        }
        for (streamer, broadcaster, found) in detected {
            if let Some(moment) = self.record_moment(streamer, &broadcaster, found).await {
                flushed.moments.push(moment);
            }
        }
        flushed
    }

    /// Stores a detected moment with its stream (if one is open), and starts
    /// its marker and clip where the streamer allowed them.
    async fn record_moment(
        self: &Arc<Self>,
        streamer: StreamerId,
        broadcaster: &BroadcasterId,
        found: Detected,
    ) -> Option<Moment> {
        let kind = found.detail.kind();
        self.metrics.moments.get_or_create(&crate::metrics::KindLabels { kind: kind.as_str() }).inc();
        let stream = match self.repo.streams_of(streamer, Page::new(1, 1)).await {
            Ok(page) => page.items.into_iter().next().filter(|s| s.is_open()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the stream of a moment");
                None
            }
        };
        let scopes = match self.repo.tokens(streamer).await {
            Ok(tokens) => tokens.map(|t| t.scopes).unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the scopes of a moment's streamer");
                Vec::new()
            }
        };
        let live = stream.is_some() && self.eventsub.is_some();
        let outcome = |action: crate::domain::history::MomentAction| {
            if !scopes.iter().any(|s| s == action.scope()) {
                ActionOutcome::status(ActionStatus::NoScope)
            } else if !live {
                ActionOutcome::status(ActionStatus::NotLive)
            } else {
                ActionOutcome::status(ActionStatus::Pending)
            }
        };
        use crate::domain::history::MomentAction::{Clip, Marker};
        // The moment's time: the end of the bucket it was seen in, capped at
        // now (it was seen when the bucket closed).
        let at_ms = (found.at_ms + BUCKET_MS).min(crate::now_ms());
        let moment = Moment {
            id: MomentId::generate(),
            streamer,
            stream: stream.map(|s| s.id),
            at: time_of(at_ms),
            kind,
            detail: found.detail,
            marker: outcome(Marker),
            clip: outcome(Clip),
        };
        if let Err(e) = self.repo.save_moment(&moment).await {
            tracing::warn!(error = %e, "cannot store a moment");
            return None;
        }
        let mut pending = Vec::new();
        for (action, outcome) in [(Marker, &moment.marker), (Clip, &moment.clip)] {
            if outcome.status == ActionStatus::Pending {
                pending.push(action);
            } else {
                let labels =
                    crate::metrics::MomentActionLabels { action: action.as_str(), outcome: outcome.status.as_str() };
                self.metrics.moment_actions.get_or_create(&labels).inc();
            }
        }
        if !pending.is_empty() {
            // One after the other: the marker first, at the moment itself.
            let app = Arc::clone(self);
            let (id, broadcaster) = (moment.id, broadcaster.clone());
            tokio::spawn(async move {
                for action in pending {
                    app.moment_action(id, streamer, &broadcaster, kind, action).await;
                }
            });
        }
        Some(moment)
    }
}

/// Flushes history every `interval` until shutdown (and once more then, so
/// closed buckets are not left behind).
pub async fn run_history_flush(app: Arc<App>, interval: Duration, shutdown: CancellationToken) {
    // A claim outlives a few missed flushes, so one instance keeps taking a
    // session's buckets (and keeps its detector's baseline).
    let claim = interval.saturating_mul(5).max(Duration::from_millis(u64::try_from(BUCKET_MS).unwrap_or(10_000)));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                app.flush_history(claim, crate::now_ms()).await;
                return;
            }
            _ = ticker.tick() => {}
        }
        app.flush_history(claim, crate::now_ms()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000_000;

    #[test]
    fn a_session_never_asked_is_asked() {
        assert!(due(None, NOW));
    }

    #[test]
    fn a_session_with_a_vote_lately_is_asked_on_every_flush_until_its_bucket_can_have_closed() {
        let seen = Seen { active_ms: NOW - 1_000, taken_ms: NOW - 5_000 };
        assert!(due(Some(&seen), NOW));
        assert!(due(Some(&seen), NOW + ACTIVE_FOR_MS - 1_001));
        assert!(!due(Some(&seen), NOW + ACTIVE_FOR_MS - 1_000), "quiet since: left to the sweep");
    }

    #[test]
    fn a_quiet_session_is_asked_only_by_the_sweep() {
        let seen = Seen { active_ms: NOW - 10 * ACTIVE_FOR_MS, taken_ms: NOW - 5_000 };
        assert!(!due(Some(&seen), NOW));
        assert!(!due(Some(&seen), NOW - 5_000 + SWEEP_MS - 1));
        assert!(due(Some(&seen), NOW - 5_000 + SWEEP_MS));
    }

    #[test]
    fn a_touch_makes_a_quiet_session_due_at_once() {
        let state = HistoryState::default();
        let overlay = OverlayId::random();
        {
            let mut inner = state.inner.lock().unwrap_or_else(|p| p.into_inner());
            inner.seen.insert(overlay, Seen { active_ms: 0, taken_ms: NOW - 1_000 });
            assert!(!due(inner.seen.get(&overlay), NOW));
        }
        state.touch(overlay, NOW);
        let inner = state.inner.lock().unwrap_or_else(|p| p.into_inner());
        assert!(due(inner.seen.get(&overlay), NOW + 5_000));
        assert_eq!(inner.seen.get(&overlay).map(|s| s.taken_ms), Some(NOW - 1_000), "a touch is not a take");
    }

    /// The idle cost: of 10,000 quiet sessions asked once, the flushes of
    /// one sweep period ask each once more, not once a flush.
    #[test]
    fn quiet_sessions_cost_one_take_per_sweep_not_per_flush() {
        let mut seen: Vec<Seen> =
            (0..10_000).map(|n| Seen { active_ms: 0, taken_ms: NOW - (n % 300) * 1_000 }).collect();
        let mut asked = 0;
        let mut now = NOW;
        while now <= NOW + SWEEP_MS {
            for s in seen.iter_mut().filter(|s| due(Some(s), now)) {
                s.taken_ms = now;
                asked += 1;
            }
            now += 5_000;
        }
        assert_eq!(asked, 10_000);
    }
}
