//! In-process live store for the embedded shape. Same semantics as the Redis
//! functions (ARCHITECTURE §4–5), kept in one map behind a mutex.
//!
//! A `std::sync::Mutex` is right here: every operation is a few hash-map
//! steps, never awaits while holding the lock, and contention is far below
//! what an async mutex would be worth.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use super::{
    ACTIVITY_REPORT_TTL_MS, ActiveSession, ActivityReport, BUCKET_IDLE_MS, HISTORY_TTL_MS, Lease, LiveStore,
    LiveStoreError, SessionActivation, Snapshot, VoteLimits, VoteOutcome, VoteRequest,
};
use crate::domain::history::{BucketAccumulator, BucketCounters};
use crate::domain::meter::{MeterState, VOTERS_WINDOW_MS, recent_voters, voters_counted_at};
use crate::domain::sentiment::sanitize_decay;
use crate::domain::{BroadcasterId, ChatterId, OverlayId, SessionStatus};

pub struct MemoryLiveStore {
    limits: VoteLimits,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<OverlayId, Session>,
    broadcasters: HashMap<BroadcasterId, OverlayId>,
    message_ids: ExpiringSet<(OverlayId, Box<str>)>,
    /// EventSub message ids other than chat ([`LiveStore::claim_message`]).
    deliveries: ExpiringSet<Box<str>>,
    debounce: ExpiringSet<(OverlayId, ChatterId)>,
    /// Lease key → (holder, lease expiry in ms), for [`LiveStore::lead`].
    leaders: HashMap<String, (String, i64)>,
    /// Channel → instance → its latest activity report.
    activity: HashMap<BroadcasterId, HashMap<String, ActivityReport>>,
    /// Instance id → end of its heartbeat (ms).
    heartbeats: HashMap<String, i64>,
    /// Each session's history (outliving the session, like the Redis keys).
    history: HashMap<OverlayId, History>,
}

/// A session's history state, like the Redis keys `history:{U}`,
/// `history_voters:{U}` and `history_closed:{U}`.
#[derive(Default)]
struct History {
    buckets: BucketAccumulator,
    /// The instance that takes the buckets, and until when.
    owner: Option<(String, i64)>,
    /// Forgotten this long after the last vote or take.
    expires_ms: i64,
}

impl Inner {
    /// Removes `instance`'s lease on a session and every lease that ended by
    /// `now_ms`; when none is left, removes the session and the mapping of
    /// `channel` (the session's own when `None`) if it points at it, and
    /// returns the session's channel.
    fn drop_lease(
        &mut self,
        overlay: OverlayId,
        instance: &str,
        channel: Option<&BroadcasterId>,
        now_ms: i64,
    ) -> Option<BroadcasterId> {
        let session = self.sessions.get_mut(&overlay)?;
        session.leases.remove(instance);
        session.leases.retain(|_, until| *until > now_ms);
        if !session.leases.is_empty() {
            return None;
        }
        let session = self.sessions.remove(&overlay)?;
        let channel = channel.unwrap_or(&session.broadcaster);
        if self.broadcasters.get(channel) == Some(&overlay) {
            self.broadcasters.remove(channel);
        }
        Some(session.broadcaster)
    }
}

struct Session {
    broadcaster: BroadcasterId,
    config: Arc<crate::domain::OverlayConfig>,
    config_version: i64,
    meter: MeterState,
    voters: Voters,
    bucket: Option<Bucket>,
    /// Instance id → lease expiry (ms).
    leases: HashMap<String, i64>,
    status: SessionStatus,
}

/// Who voted when, like the Redis sorted set `voters:{U}`: each chatter's
/// last counted vote, ordered by time so that the old ones go cheaply.
#[derive(Default)]
struct Voters {
    last: HashMap<ChatterId, i64>,
    by_time: BTreeSet<(i64, ChatterId)>,
    /// The count at the last counted vote, and that vote's time.
    count: u32,
    counted_at: i64,
}

impl Voters {
    /// Records a counted vote (`ZADD GT`: a time never moves back), drops
    /// chatters whose last vote is a window old, and counts the rest.
    fn vote(&mut self, chatter: &ChatterId, now_ms: i64) {
        let previous = self.last.get(chatter).copied();
        if previous.is_none_or(|at| now_ms > at) {
            if let Some(at) = previous {
                self.by_time.remove(&(at, chatter.clone()));
            }
            self.last.insert(chatter.clone(), now_ms);
            self.by_time.insert((now_ms, chatter.clone()));
        }
        let oldest_kept = now_ms.saturating_sub(VOTERS_WINDOW_MS);
        while let Some((at, _)) = self.by_time.first()
            && *at <= oldest_kept
        {
            if let Some((_, gone)) = self.by_time.pop_first() {
                self.last.remove(&gone);
            }
        }
        self.count = u32::try_from(self.last.len()).unwrap_or(u32::MAX);
        self.counted_at = voters_counted_at(Some(self.counted_at), now_ms);
    }
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    last_update_ms: i64,
}

impl MemoryLiveStore {
    pub fn new(limits: VoteLimits) -> Self {
        Self { limits, inner: Mutex::new(Inner::default()) }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in
        // a way that matters (each step is a single insert/remove), so keep going.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes one token from the session's bucket, refilling it first for the
    /// time passed. Returns false when the bucket is empty.
    fn take_token(&self, bucket: &mut Option<Bucket>, now_ms: i64) -> bool {
        let capacity = f64::from(self.limits.bucket_capacity);
        let rate_per_ms = self.limits.bucket_refill_per_minute / 60_000.0;
        let mut b = match *bucket {
            // Forget a bucket idle for longer than its expiry, like the Redis key.
            Some(b) if now_ms - b.last_update_ms <= BUCKET_IDLE_MS => b,
            _ => Bucket { tokens: capacity, last_update_ms: now_ms },
        };
        let elapsed = (now_ms - b.last_update_ms).max(0) as f64;
        b.tokens = (b.tokens + elapsed * rate_per_ms).min(capacity);
        b.last_update_ms = now_ms.max(b.last_update_ms);
        let allowed = b.tokens >= 1.0;
        if allowed {
            b.tokens -= 1.0;
        }
        *bucket = Some(b);
        allowed
    }
}

#[async_trait]
impl LiveStore for MemoryLiveStore {
    async fn activate(&self, s: &SessionActivation, lease: Lease<'_>, now_ms: i64) -> Result<(), LiveStoreError> {
        let mut inner = self.lock();
        let session = inner.sessions.entry(s.overlay).or_insert_with(|| Session {
            broadcaster: s.broadcaster.clone(),
            config: Arc::new(s.config.clone()),
            config_version: s.config_version,
            meter: MeterState::centred(now_ms),
            voters: Voters::default(),
            bucket: None,
            leases: HashMap::new(),
            status: SessionStatus::Active,
        });
        if s.config_version >= session.config_version {
            session.config = Arc::new(s.config.clone());
            session.config_version = s.config_version;
            session.broadcaster = s.broadcaster.clone();
        }
        session.leases.insert(lease.instance.to_owned(), now_ms.saturating_add(lease.ttl_ms));
        session.leases.retain(|_, until| *until > now_ms);
        inner.broadcasters.insert(s.broadcaster.clone(), s.overlay);
        Ok(())
    }

    async fn renew(
        &self,
        sessions: &[(OverlayId, BroadcasterId)],
        lease: Lease<'_>,
        now_ms: i64,
    ) -> Result<Vec<OverlayId>, LiveStoreError> {
        let mut inner = self.lock();
        let mut missing = Vec::new();
        for (overlay, broadcaster) in sessions {
            match inner.sessions.get_mut(overlay) {
                Some(s) => {
                    s.leases.insert(lease.instance.to_owned(), now_ms.saturating_add(lease.ttl_ms));
                    s.leases.retain(|_, until| *until > now_ms);
                    inner.broadcasters.insert(broadcaster.clone(), *overlay);
                }
                None => missing.push(*overlay),
            }
        }
        Ok(missing)
    }

    async fn release(
        &self,
        overlay: OverlayId,
        broadcaster: &BroadcasterId,
        instance: &str,
        now_ms: i64,
    ) -> Result<bool, LiveStoreError> {
        Ok(self.lock().drop_lease(overlay, instance, Some(broadcaster), now_ms).is_some())
    }

    async fn heartbeat(&self, instance: &str, ttl_ms: i64, now_ms: i64) -> Result<(), LiveStoreError> {
        self.lock().heartbeats.insert(instance.to_owned(), now_ms.saturating_add(ttl_ms));
        Ok(())
    }

    async fn expired_instances(&self, now_ms: i64) -> Result<Vec<String>, LiveStoreError> {
        let inner = self.lock();
        let mut expired: Vec<String> =
            inner.heartbeats.iter().filter(|(_, until)| **until <= now_ms).map(|(i, _)| i.clone()).collect();
        expired.sort();
        Ok(expired)
    }

    async fn drop_instance(&self, instance: &str, now_ms: i64) -> Result<Vec<BroadcasterId>, LiveStoreError> {
        let mut inner = self.lock();
        let held: Vec<OverlayId> =
            inner.sessions.iter().filter(|(_, s)| s.leases.contains_key(instance)).map(|(o, _)| *o).collect();
        let ended = held.into_iter().filter_map(|overlay| inner.drop_lease(overlay, instance, None, now_ms)).collect();
        if inner.heartbeats.get(instance).is_some_and(|until| *until <= now_ms) {
            inner.heartbeats.remove(instance);
        }
        Ok(ended)
    }

    async fn reset(&self, overlay: OverlayId, now_ms: i64) -> Result<bool, LiveStoreError> {
        let mut inner = self.lock();
        let Some(session) = inner.sessions.get_mut(&overlay) else { return Ok(false) };
        session.meter = MeterState::centred(now_ms);
        Ok(true)
    }

    async fn set_status(&self, overlay: OverlayId, status: SessionStatus, now_ms: i64) -> Result<bool, LiveStoreError> {
        let mut inner = self.lock();
        let Some(session) = inner.sessions.get_mut(&overlay) else { return Ok(false) };
        // Going live centres the bar once; a repeated "live" (a redelivered
        // stream.online) keeps the running stream's value.
        let was_live = session.status == SessionStatus::Live;
        session.status = status;
        if status == SessionStatus::Live && !was_live {
            session.meter = MeterState::centred(now_ms);
        }
        Ok(true)
    }

    async fn session_for(&self, broadcaster: &BroadcasterId) -> Result<Option<ActiveSession>, LiveStoreError> {
        let inner = self.lock();
        Ok(inner.broadcasters.get(broadcaster).and_then(|overlay| {
            inner.sessions.get(overlay).map(|s| ActiveSession {
                overlay: *overlay,
                config: Arc::clone(&s.config),
                config_version: s.config_version,
            })
        }))
    }

    async fn vote(&self, vote: &VoteRequest<'_>, now_ms: i64) -> Result<VoteOutcome, LiveStoreError> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        inner.message_ids.expire(now_ms);
        inner.debounce.expire(now_ms);

        let Some(session) = inner.sessions.get_mut(&vote.overlay) else {
            return Ok(VoteOutcome::NoSession);
        };
        // Order matters and is the same in Lua: a duplicate is recognised before
        // anything else is touched; a debounced vote does not spend a token.
        let msg_key = (vote.overlay, Box::<str>::from(vote.message_id));
        if !inner.message_ids.insert_if_absent(msg_key, now_ms, self.limits.dedup_ms) {
            return Ok(VoteOutcome::Duplicate);
        }
        let chatter_key = (vote.overlay, vote.chatter.clone());
        if !inner.debounce.insert_if_absent(chatter_key, now_ms, self.limits.debounce_ms) {
            return Ok(VoteOutcome::Debounced);
        }
        if !self.take_token(&mut session.bucket, now_ms) {
            return Ok(VoteOutcome::RateLimited);
        }
        let k = sanitize_decay(session.config.decay_speed.get());
        let before = session.meter.read(session.config.model, now_ms, k).value;
        session.meter = session.meter.vote(vote.direction, now_ms, k);
        session.voters.vote(vote.chatter, now_ms);
        let after = session.meter.read(session.config.model, now_ms, k).value;
        if vote.record {
            let history = inner.history.entry(vote.overlay).or_default();
            history.buckets.vote(now_ms, vote.chatter.as_str(), vote.direction, before, after);
            history.expires_ms = now_ms.saturating_add(HISTORY_TTL_MS);
        }
        Ok(VoteOutcome::Applied(after))
    }

    async fn take_buckets(
        &self,
        overlays: &[OverlayId],
        instance: &str,
        claim_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<(OverlayId, Vec<BucketCounters>)>, LiveStoreError> {
        let mut inner = self.lock();
        inner.history.retain(|_, h| h.expires_ms > now_ms);
        let mut out = Vec::new();
        for overlay in overlays {
            let history = inner.history.entry(*overlay).or_default();
            if let Some((owner, until)) = &history.owner
                && owner != instance
                && *until > now_ms
            {
                continue;
            }
            history.owner = Some((instance.to_owned(), now_ms.saturating_add(claim_ms)));
            history.expires_ms = now_ms.saturating_add(HISTORY_TTL_MS);
            let taken = history.buckets.take_closed(now_ms);
            if !taken.is_empty() {
                out.push((*overlay, taken));
            }
        }
        Ok(out)
    }

    async fn read_many(&self, overlays: &[OverlayId], now_ms: i64) -> Result<Vec<Option<Snapshot>>, LiveStoreError> {
        let inner = self.lock();
        Ok(overlays
            .iter()
            .map(|overlay| {
                inner.sessions.get(overlay).map(|s| {
                    let model = s.config.model;
                    let reading = s.meter.read(model, now_ms, s.config.decay_speed.get());
                    let voters = recent_voters(s.voters.count, s.voters.counted_at, now_ms);
                    let decay = sanitize_decay(s.config.decay_speed.get());
                    Snapshot { value: reading.value, status: s.status, model, weights: reading.weights, voters, decay }
                })
            })
            .collect())
    }

    async fn lead(&self, key: &str, instance: &str, ttl_ms: i64, now_ms: i64) -> Result<bool, LiveStoreError> {
        let mut inner = self.lock();
        let until = now_ms.saturating_add(ttl_ms);
        match inner.leaders.get_mut(key) {
            Some((holder, expiry)) if *expiry > now_ms => {
                if holder != instance {
                    return Ok(false);
                }
                *expiry = until;
            }
            _ => {
                inner.leaders.insert(key.to_owned(), (instance.to_owned(), until));
            }
        }
        Ok(true)
    }

    async fn resign(&self, key: &str, instance: &str) -> Result<(), LiveStoreError> {
        let mut inner = self.lock();
        if inner.leaders.get(key).is_some_and(|(holder, _)| holder == instance) {
            inner.leaders.remove(key);
        }
        Ok(())
    }

    async fn report_activity(
        &self,
        broadcaster: &BroadcasterId,
        report: &ActivityReport,
    ) -> Result<(), LiveStoreError> {
        let mut inner = self.lock();
        let written = report.written_ms;
        // Forget channels nobody reported on for a while, like the Redis key's expiry.
        inner.activity.retain(|_, reports| reports.values().any(|r| written - r.written_ms <= ACTIVITY_REPORT_TTL_MS));
        inner.activity.entry(broadcaster.clone()).or_default().insert(report.instance.clone(), report.clone());
        Ok(())
    }

    async fn activity_reports(
        &self,
        broadcaster: &BroadcasterId,
        now_ms: i64,
    ) -> Result<Vec<ActivityReport>, LiveStoreError> {
        let inner = self.lock();
        let reports = inner.activity.get(broadcaster).map(|r| r.values()).into_iter().flatten();
        Ok(reports.filter(|r| now_ms - r.written_ms <= ACTIVITY_REPORT_TTL_MS).cloned().collect())
    }

    async fn claim_message(&self, message_id: &str, now_ms: i64) -> Result<bool, LiveStoreError> {
        let mut inner = self.lock();
        inner.deliveries.expire(now_ms);
        Ok(inner.deliveries.insert_if_absent(Box::from(message_id), now_ms, self.limits.dedup_ms))
    }

    async fn unclaim_message(&self, message_id: &str) -> Result<(), LiveStoreError> {
        self.lock().deliveries.expiry.remove(message_id);
        Ok(())
    }

    async fn ping(&self) -> Result<(), LiveStoreError> {
        Ok(())
    }
}

/// Keys that expire at a given time, like Redis keys with a TTL.
///
/// Expired keys are dropped lazily from the front of an insertion-ordered
/// queue, so memory stays proportional to the keys alive in the window.
struct ExpiringSet<K> {
    expiry: HashMap<K, i64>,
    order: VecDeque<(i64, K)>,
}

impl<K> Default for ExpiringSet<K> {
    fn default() -> Self {
        Self { expiry: HashMap::new(), order: VecDeque::new() }
    }
}

impl<K: Eq + Hash + Clone> ExpiringSet<K> {
    /// Inserts `key` for `ttl_ms` unless it is present and unexpired (Redis
    /// `SET NX PX`). Returns whether it was inserted.
    fn insert_if_absent(&mut self, key: K, now_ms: i64, ttl_ms: i64) -> bool {
        if self.expiry.get(&key).is_some_and(|&until| until > now_ms) {
            return false;
        }
        let until = now_ms.saturating_add(ttl_ms);
        self.order.push_back((until, key.clone()));
        self.expiry.insert(key, until);
        true
    }

    /// Drops keys expired at `now_ms` from the front of the queue. Entries
    /// whose key was re-inserted later are skipped by comparing expiry times.
    fn expire(&mut self, now_ms: i64) {
        while let Some((until, _)) = self.order.front() {
            if *until > now_ms {
                break;
            }
            if let Some((until, key)) = self.order.pop_front()
                && self.expiry.get(&key) == Some(&until)
            {
                self.expiry.remove(&key);
            }
        }
    }
}
