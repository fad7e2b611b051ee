//! The simulator's clock and the housekeeping that runs on it.
//!
//! "Now" for the simulated Twitch is the real time plus an offset that only
//! ever grows (`POST /sim/clock`). Everything Twitch stamps or times runs on
//! it: message and Helix timestamps, token and code expiry, clip processing,
//! marker positions, the 72-hour conduit clean-up (§3.9) and the removal of
//! disconnected WebSocket subscriptions (§4.2). Network timings — WebSocket
//! keepalives, Pings, the 10-second unused window, the reconnect grace
//! period, webhook timeouts and retry pauses, the rate-limit refill — stay on
//! real time: they are about sockets, not about Twitch's calendar.
//!
//! A receiver that checks freshness (§5.5) against its own clock sees
//! timestamps from the future once the clock was advanced: that is how a
//! test exercises the 10-minute rule.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use time::OffsetDateTime;

use super::state::{State, SubTransport};
use super::{SimError, Simulator, util};

/// A conduit whose shards have all been disabled this long is deleted with
/// its subscriptions (§3.9).
pub(crate) const CONDUIT_ORPHAN_TTL: Duration = Duration::from_secs(72 * 3600);
/// How long a WebSocket subscription stays listed after its session ended.
/// §4.2: "WebSocket ones [remain visible] for at least 1 minute"; Twitch
/// then deletes them.
pub(crate) const DISCONNECTED_SUBSCRIPTION_TTL: Duration = Duration::from_secs(60);
/// How often the background sweep runs on real time.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Real time plus an offset (nanoseconds) that only grows.
#[derive(Debug, Default)]
pub(crate) struct Clock {
    offset_nanos: AtomicI64,
}

impl Clock {
    pub(crate) fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + time::Duration::nanoseconds(self.offset_nanos.load(Ordering::SeqCst))
    }

    fn offset(&self) -> time::Duration {
        time::Duration::nanoseconds(self.offset_nanos.load(Ordering::SeqCst))
    }

    fn advance(&self, by: Duration) {
        let nanos = i64::try_from(by.as_nanos()).unwrap_or(i64::MAX);
        let _ = self
            .offset_nanos
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |offset| Some(offset.saturating_add(nanos)));
    }
}

/// Deletes what Twitch deletes by time, and notes since when each conduit
/// has had no enabled shard. Cheap; called on every Helix request, on every
/// change of the clock, where a shard loses its `enabled` status, and by a
/// background task every [`SWEEP_EVERY`].
pub(crate) fn sweep(state: &mut State, now: OffsetDateTime) {
    let orphan_ttl = time::Duration::try_from(CONDUIT_ORPHAN_TTL).unwrap_or(time::Duration::MAX);
    let mut deleted = Vec::new();
    for conduit in &mut state.conduits {
        if conduit.shards.iter().any(|s| s.status == "enabled") {
            conduit.no_enabled_shard_since = None;
            continue;
        }
        let since = *conduit.no_enabled_shard_since.get_or_insert(now);
        if now - since >= orphan_ttl {
            deleted.push(conduit.id.clone());
        }
    }
    if !deleted.is_empty() {
        tracing::info!(conduits = ?deleted, "simulator: conduits without an enabled shard for 72 hours deleted");
        state.conduits.retain(|c| !deleted.contains(&c.id));
        // §3.9: "Twitch deletes the conduit (and with it all its subscriptions)".
        state
            .subscriptions
            .retain(|s| !matches!(&s.transport, SubTransport::Conduit { conduit_id } if deleted.contains(conduit_id)));
    }
    let listed_for = time::Duration::try_from(DISCONNECTED_SUBSCRIPTION_TTL).unwrap_or(time::Duration::MAX);
    state.subscriptions.retain(|s| {
        let disconnected = matches!(s.transport, SubTransport::WebSocket { .. }) && s.status != "enabled";
        !(disconnected && s.disabled_at.is_some_and(|at| now - at >= listed_for))
    });
}

impl Simulator {
    /// The simulated Twitch's "now" (real time unless the clock was advanced).
    pub fn now(&self) -> OffsetDateTime {
        self.inner.clock.now()
    }

    /// How far the clock is ahead of real time.
    pub fn clock_offset(&self) -> Duration {
        Duration::try_from(self.inner.clock.offset()).unwrap_or_default()
    }

    /// Moves the clock forward by `by` and applies whatever is due then
    /// (expired tokens and codes fail, clips become visible, conduits without
    /// an enabled shard for 72 hours are deleted). Also `POST /sim/clock`.
    pub fn advance_clock(&self, by: Duration) {
        // Notes the conduits without an enabled shard at the old time first,
        // so that the jump counts towards their 72 hours.
        self.sweep();
        self.inner.clock.advance(by);
        self.sweep();
    }

    /// Sets the clock to `to`, which must not be earlier than [`Self::now`]:
    /// Twitch's time does not run backwards.
    pub fn set_clock(&self, to: OffsetDateTime) -> Result<(), SimError> {
        let now = self.now();
        if to < now {
            return Err(SimError::BadRequest(format!(
                "the clock only moves forward: {} is before the simulator's now ({})",
                util::rfc3339_nanos(to),
                util::rfc3339_nanos(now)
            )));
        }
        self.advance_clock(Duration::try_from(to - now).unwrap_or_default());
        Ok(())
    }

    pub(crate) fn sweep(&self) {
        let now = self.now();
        sweep(&mut self.state(), now);
    }

    /// `now` as EventSub stamps it (nanoseconds).
    pub(crate) fn now_nanos(&self) -> String {
        util::rfc3339_nanos(self.now())
    }

    /// `now` in Unix seconds (`Ratelimit-Reset`).
    pub(crate) fn epoch_seconds(&self) -> u64 {
        u64::try_from(self.now().unix_timestamp()).unwrap_or_default()
    }
}
