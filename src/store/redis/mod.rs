//! Redis live store for the distributed shape (ARCHITECTURE §4–5).
//!
//! Every vote is exactly one `FCALL chatpulse_vote`; the broadcaster's read of
//! all its sessions is one pipelined batch (one round trip per Redis node): on
//! a standalone Redis `FCALL_RO chatpulse_read` over 256 sessions per call, on
//! a cluster one `HMGET` per session. The fields are decayed here with the
//! same math as the Lua function. Every key of a session carries the overlay
//! id as a hash tag, so this works unchanged on Redis Cluster.
//!
//! Redis may disappear or come back empty at any time. Commands time out
//! quickly, a circuit breaker stops hammering a dead server, the Functions
//! library is (re)loaded whenever a connection is (re)established or a call
//! finds it missing, and lost sessions are re-activated by the session
//! manager.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use failsafe::backoff::Exponential;
use failsafe::failure_policy::ConsecutiveFailures;
use failsafe::futures::CircuitBreaker;
use fred::prelude::*;
use prometheus_client::metrics::gauge::Gauge;

use super::{
    ACTIVITY_REPORT_TTL_MS, ActiveSession, ActivityReport, Lease, LiveStore, LiveStoreError, SessionActivation,
    Snapshot, VoteLimits, VoteOutcome, VoteRequest,
};
use crate::domain::history::BucketCounters;
use crate::domain::{BroadcasterId, OverlayConfig, OverlayId, SessionStatus};
use crate::metrics::Metrics;

/// The Functions library, compiled into the binary.
mod connection;
mod fields;
mod history;
mod leases;

pub use connection::RedisConnection;
pub use fields::snapshot_from_fields;
use fields::{READ_FIELDS, stored_number};

pub const LIBRARY: &str = include_str!("../../../redis-functions/chatpulse.lua");

/// The `VERSION` constant of [`LIBRARY`].
pub fn library_version() -> &'static str {
    LIBRARY.lines().find_map(|l| l.trim().strip_prefix("local VERSION = '")?.strip_suffix('\'')).unwrap_or("unknown")
}

/// Key names (ARCHITECTURE §5). `{U}` is the hash tag that keeps a session's
/// keys in one cluster slot.
mod keys {
    use crate::domain::{BroadcasterId, ChatterId, OverlayId};

    /// `<prefix>{<uuid>}`, without the formatting machinery: the
    /// broadcaster builds thousands of these a second.
    fn tagged(prefix: &str, o: OverlayId) -> String {
        tagged_with(prefix, o, "", "")
    }

    /// `<prefix>{<uuid>}<sep><suffix>`: the per-vote keys, built in one
    /// allocation.
    fn tagged_with(prefix: &str, o: OverlayId, sep: &str, suffix: &str) -> String {
        let mut buf = uuid::Uuid::encode_buffer();
        let id = o.as_uuid().hyphenated().encode_lower(&mut buf);
        let mut key = String::with_capacity(prefix.len() + id.len() + 2 + sep.len() + suffix.len());
        key.push_str(prefix);
        key.push('{');
        key.push_str(id);
        key.push('}');
        key.push_str(sep);
        key.push_str(suffix);
        key
    }

    pub fn session(o: OverlayId) -> String {
        tagged("session:", o)
    }
    pub fn ratelimit(o: OverlayId) -> String {
        tagged("ratelimit:", o)
    }
    pub fn instances(o: OverlayId) -> String {
        tagged("instances:", o)
    }
    pub fn voters(o: OverlayId) -> String {
        tagged("voters:", o)
    }
    /// A session's history bucket in progress (and who takes its buckets).
    pub fn history(o: OverlayId) -> String {
        tagged("history:", o)
    }
    /// The chatters of the bucket in progress.
    pub fn history_voters(o: OverlayId) -> String {
        tagged("history_voters:", o)
    }
    /// Closed buckets waiting to be taken.
    pub fn history_closed(o: OverlayId) -> String {
        tagged("history_closed:", o)
    }
    /// The instances' reports on a channel (the dashboard's status).
    pub fn activity(b: &BroadcasterId) -> String {
        format!("activity:{{{b}}}")
    }
    pub fn msgid(o: OverlayId, message_id: &str) -> String {
        tagged_with("msgid:", o, ":", message_id)
    }
    /// An EventSub message id other than chat's (no hash tag: one key).
    pub fn message(message_id: &str) -> String {
        format!("eventsub:msgid:{message_id}")
    }
    pub fn debounce(o: OverlayId, chatter: &ChatterId) -> String {
        tagged_with("debounce:", o, ":", chatter.as_str())
    }
    pub fn broadcaster(b: &BroadcasterId) -> String {
        format!("broadcaster:{b}")
    }
    /// The instances' heartbeats (instance id → end, ms). All instance
    /// bookkeeping shares the hash tag `{instances}`: one slot.
    pub const HEARTBEAT: &str = "{instances}:heartbeat";
    /// The sessions an instance holds a lease on (`<U> <twitch user id>`).
    pub fn held(instance: &str) -> String {
        format!("{{instances}}:held:{instance}")
    }
    /// The key holding a lease's end, beside the lease key (which holds the
    /// leader's instance id): `{cleanup:leader}:until`. It must hash to the
    /// lease key's slot: a key without a hash tag hashes whole, so its name
    /// becomes the tag; a key with one keeps it.
    pub fn lease_until(lease: &str) -> String {
        let tagged = lease.find('{').is_some_and(|open| lease[open + 1..].find('}').is_some_and(|len| len > 0));
        if tagged { format!("{lease}:until") } else { format!("{{{lease}}}:until") }
    }
}

/// Session keys outlive the leases that hold them by this factor; a session
/// nobody renews (every holder crashed) disappears on its own.
const KEY_TTL_LEASES: i64 = 3;
/// How long a channel → session lookup is trusted without asking Redis.
const CACHE_HIT_TTL: Duration = Duration::from_secs(5);
const CACHE_MISS_TTL: Duration = Duration::from_secs(1);
const CACHE_MAX: usize = 50_000;
/// Sessions per renewal pipeline.
const RENEW_CHUNK: usize = 500;

type Breaker = failsafe::StateMachine<ConsecutiveFailures<Exponential>, BreakerGauge>;

/// Exports the circuit breaker's state: 0 closed, 1 open, 2 half-open.
#[derive(Clone)]
pub struct BreakerGauge(Gauge);

impl failsafe::Instrument for BreakerGauge {
    fn on_call_rejected(&self) {}
    fn on_open(&self) {
        tracing::warn!("Redis circuit breaker opened");
        self.0.set(1);
    }
    fn on_half_open(&self) {
        self.0.set(2);
    }
    fn on_closed(&self) {
        tracing::info!("Redis circuit breaker closed");
        self.0.set(0);
    }
}

struct Cached {
    at: Instant,
    session: Option<ActiveSession>,
}

pub struct RedisLiveStore {
    client: Client,
    limits: VoteLimits,
    metrics: Metrics,
    breaker: Breaker,
    library_loaded: AtomicBool,
    last_error: Mutex<Option<String>>,
    cache: Mutex<HashMap<BroadcasterId, Cached>>,
    /// The arguments of `chatpulse_vote` that are the same for every vote:
    /// the deltas (for, against) and the four limits, encoded once.
    vote_args: VoteArgs,
}

/// See [`RedisLiveStore::vote_args`]. A [`Value`] clone is a reference
/// count, not a copy.
struct VoteArgs {
    for_delta: Value,
    against_delta: Value,
    limits: [Value; 4],
}

impl VoteArgs {
    fn new(l: &VoteLimits) -> Self {
        use crate::domain::Direction;
        let text = |s: String| Value::from(s);
        Self {
            for_delta: text(Direction::For.delta().to_string()),
            against_delta: text(Direction::Against.delta().to_string()),
            limits: [
                text(l.bucket_capacity.to_string()),
                text(l.bucket_refill_per_minute.to_string()),
                text(l.debounce_ms.to_string()),
                text(l.dedup_ms.to_string()),
            ],
        }
    }
}

fn fred_err(e: Error) -> LiveStoreError {
    LiveStoreError(e.to_string())
}

/// Sessions per `chatpulse_read` call: small enough that one call never
/// holds Redis for long, large enough that a tick needs few replies.
const READ_CHUNK: usize = 256;

impl RedisLiveStore {
    /// Builds the client without waiting for Redis: a server that is down at
    /// start-up is retried in the background (see [`Self::maintain`]).
    pub fn new(connection: &RedisConnection, limits: VoteLimits, metrics: Metrics) -> Arc<Self> {
        let client = connection.client().clone();
        let gauge = BreakerGauge(metrics.circuit_breaker_state.clone());
        let breaker = failsafe::Config::new()
            .failure_policy(failsafe::failure_policy::consecutive_failures(
                5,
                failsafe::backoff::exponential(Duration::from_secs(1), Duration::from_secs(5)),
            ))
            .instrument(gauge)
            .build();
        Arc::new(Self {
            client,
            limits,
            metrics,
            breaker,
            library_loaded: AtomicBool::new(false),
            last_error: Mutex::new(Some("not connected yet".into())),
            cache: Mutex::new(HashMap::new()),
            vote_args: VoteArgs::new(&limits),
        })
    }

    /// Connects and keeps the Functions library loaded: on every (re)connect
    /// it checks the loaded version and replaces it when it differs. Runs
    /// until the client is dropped.
    ///
    /// Readiness says "loaded" only while that is known: the flag is cleared
    /// as soon as a connection drops (the server that answers next may be a
    /// restarted, empty one) and whenever loading fails, and set again only
    /// once the library is confirmed on the new connection.
    pub async fn maintain(self: Arc<Self>) {
        let mut reconnects = self.client.reconnect_rx();
        // fred reports every lost connection (and failed reconnection) here.
        let mut connection_errors = self.client.error_rx();
        let _connection = self.client.connect();
        loop {
            if self.client.wait_for_connect().await.is_ok() {
                while let Err(e) = self.ensure_library().await {
                    self.library_loaded.store(false, Ordering::Release);
                    self.set_error(Some(format!("cannot load the Functions library: {e}")));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            // Wait for the next reconnection (a restarted Redis has no
            // library) or the loss of the connection.
            tokio::select! {
                reconnected = reconnects.recv() => {
                    if matches!(reconnected, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
                lost = connection_errors.recv() => {
                    self.library_loaded.store(false, Ordering::Release);
                    match lost {
                        Ok((e, _)) => tracing::debug!(error = %e, "Redis connection lost; the library is checked again"),
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    }
                }
            }
        }
    }

    fn set_error(&self, error: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = error;
    }

    fn cache(&self) -> MutexGuard<'_, HashMap<BroadcasterId, Cached>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads the library with `FUNCTION LOAD REPLACE` unless this version is
    /// already loaded.
    pub async fn ensure_library(&self) -> Result<(), Error> {
        let loaded: Result<String, Error> =
            self.client.fcall("chatpulse_version", Vec::<String>::new(), Vec::<String>::new()).await;
        let want = library_version();
        if loaded.as_deref().ok() != Some(want) {
            tracing::info!(version = want, loaded = ?loaded.as_ref().ok(), "loading Redis Functions library");
            if self.client.is_clustered() {
                self.client.function_load_cluster::<(), _>(true, LIBRARY).await?;
            } else {
                self.client.function_load::<String, _>(true, LIBRARY).await?;
            }
        }
        self.library_loaded.store(true, Ordering::Release);
        self.set_error(None);
        Ok(())
    }

    /// `read_many` on a standalone Redis: `FCALL_RO chatpulse_read` over
    /// chunks of sessions, pipelined — a few replies per tick instead of one
    /// per session. (On a cluster the sessions live on different slots, so
    /// each is read on its own, pipelined.)
    async fn read_batched(&self, overlays: &[OverlayId], now_ms: i64) -> Result<Vec<Option<Snapshot>>, LiveStoreError> {
        // Keys are built once per read (a retry clones reference counts);
        // the replies stay fred's values, which borrow the read buffer, so a
        // tick copies no field into a string of its own.
        let chunks: Vec<Vec<Key>> =
            overlays.chunks(READ_CHUNK).map(|c| c.iter().map(|o| Key::from(keys::session(*o))).collect()).collect();
        let replies: Vec<Vec<Value>> = self
            .call("read_many", || async {
                let pipeline = self.client.pipeline();
                for keys in &chunks {
                    pipeline.fcall_ro::<(), _, _, _>("chatpulse_read", keys.clone(), Vec::<Value>::new()).await?;
                }
                if chunks.len() == 1 {
                    return Ok(vec![pipeline.last::<Vec<Value>>().await?]);
                }
                pipeline.all().await
            })
            .await?;
        let total: usize = replies.iter().map(Vec::len).sum();
        if total != overlays.len() * READ_FIELDS.len() {
            return Err(LiveStoreError(format!(
                "chatpulse_read returned {total} fields for {} sessions",
                overlays.len()
            )));
        }
        let mut snapshots = Vec::with_capacity(overlays.len());
        for reply in &replies {
            for f in reply.chunks(READ_FIELDS.len()) {
                let text: [Option<std::borrow::Cow<'_, str>>; READ_FIELDS.len()] =
                    std::array::from_fn(|i| f.get(i).and_then(Value::as_str));
                let fields: [Option<&str>; READ_FIELDS.len()] = std::array::from_fn(|i| text[i].as_deref());
                snapshots.push(snapshot_from_fields(&fields, now_ms));
            }
        }
        Ok(snapshots)
    }

    /// Runs one operation through the circuit breaker, timing it.
    async fn call<T, F, Fut>(&self, operation: &'static str, f: F) -> Result<T, LiveStoreError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let started = Instant::now();
        let mut result = self.breaker.call(f()).await;
        // A restarted (empty) Redis has lost the library: load it and retry once.
        if let Err(failsafe::Error::Inner(e)) = &result
            && e.to_string().contains("Function not found")
        {
            self.library_loaded.store(false, Ordering::Release);
            if self.ensure_library().await.is_ok() {
                result = self.breaker.call(f()).await;
            }
        }
        let ok = result.is_ok();
        self.metrics.store_call("redis", operation, started.elapsed(), ok);
        result.map_err(|e| match e {
            failsafe::Error::Rejected => LiveStoreError("Redis circuit breaker is open".into()),
            failsafe::Error::Inner(e) => fred_err(e),
        })
    }

    fn forget_overlay(&self, overlay: OverlayId) {
        self.cache().retain(|_, c| c.session.as_ref().is_none_or(|s| s.overlay != overlay));
    }

    /// A session whose stored `config` or `config_version` cannot be read
    /// (not JSON, not a valid config, not an integer): somebody or something
    /// wrote garbage into Redis.
    ///
    /// The choice: PostgreSQL holds the truth, so the unreadable live copy is
    /// deleted and the session treated as lost, like one a Redis restart took
    /// away. The instances holding its overlays notice on their next
    /// broadcaster tick (or lease renewal) and re-activate it from the
    /// durable store, trigger words and labels included; the bar restarts
    /// from the centre (a corrupt session's value is not trusted either).
    /// The vote at hand is dropped as an error — counted and logged, never
    /// silently — where before every vote of the channel would have been
    /// dropped as `no_session` for as long as the overlays stayed open.
    /// (A valid activation racing with the delete is harmless: the session
    /// is re-activated once more.)
    async fn discard_unreadable(&self, overlay: OverlayId, key: &str) -> LiveStoreError {
        tracing::warn!(overlay = %overlay.fingerprint(), "stored session config is unreadable; discarding it for re-activation");
        self.forget_overlay(overlay);
        match self.call("session_for", || self.client.del::<i64, _>(key)).await {
            Ok(_) => LiveStoreError(format!(
                "session {overlay} had an unreadable config in Redis; discarded, to be re-activated from the durable store"
            )),
            Err(e) => e,
        }
    }
}

fn parse_outcome(reply: &[String]) -> Result<VoteOutcome, LiveStoreError> {
    match reply.first().map(String::as_str) {
        Some("applied") => reply
            .get(1)
            .and_then(|v| stored_number(Some(v)))
            .map(VoteOutcome::Applied)
            .ok_or_else(|| LiveStoreError(format!("malformed vote reply {reply:?}"))),
        Some("duplicate") => Ok(VoteOutcome::Duplicate),
        Some("debounced") => Ok(VoteOutcome::Debounced),
        Some("rate_limited") => Ok(VoteOutcome::RateLimited),
        Some("no_session") => Ok(VoteOutcome::NoSession),
        _ => Err(LiveStoreError(format!("unexpected vote reply {reply:?}"))),
    }
}

#[async_trait]
impl LiveStore for RedisLiveStore {
    async fn activate(&self, s: &SessionActivation, lease: Lease<'_>, now_ms: i64) -> Result<(), LiveStoreError> {
        let config = serde_json::to_string(&s.config).map_err(|e| LiveStoreError(e.to_string()))?;
        let key_ttl = lease.ttl_ms.saturating_mul(KEY_TTL_LEASES);
        let keys = vec![keys::session(s.overlay), keys::instances(s.overlay)];
        let args = vec![
            now_ms.to_string(),
            s.broadcaster.to_string(),
            config,
            s.config_version.to_string(),
            s.config.decay_speed.get().to_string(),
            lease.instance.to_owned(),
            now_ms.saturating_add(lease.ttl_ms).to_string(),
            key_ttl.to_string(),
            s.config.model.as_str().to_owned(),
        ];
        let mapping = keys::broadcaster(&s.broadcaster);
        let overlay = s.overlay.to_string();
        let held = keys::held(lease.instance);
        let member = leases::held_member(s.overlay, &s.broadcaster);
        self.call("activate", || async {
            // Different slots (on a cluster, maybe different nodes): three
            // commands, sent together.
            let set =
                self.client.set::<(), _, _>(&mapping, overlay.as_str(), Some(Expiration::PX(key_ttl)), None, false);
            let activate = self.client.fcall::<i64, _, _, _>("chatpulse_activate", keys.clone(), args.clone());
            let hold = self.client.sadd::<i64, _, _>(&held, member.as_str());
            tokio::try_join!(activate, set, hold).map(|_| ())
        })
        .await?;
        self.cache().remove(&s.broadcaster);
        Ok(())
    }

    async fn renew(
        &self,
        sessions: &[(OverlayId, BroadcasterId)],
        lease: Lease<'_>,
        now_ms: i64,
    ) -> Result<Vec<OverlayId>, LiveStoreError> {
        if sessions.is_empty() {
            return Ok(vec![]);
        }
        let exists = self.renew_leases(sessions, lease, now_ms).await?;
        // A remembered "no session" for these channels is wrong now.
        let mut cache = self.cache();
        for (_, broadcaster) in sessions {
            if cache.get(broadcaster).is_some_and(|c| c.session.is_none()) {
                cache.remove(broadcaster);
            }
        }
        drop(cache);
        Ok(sessions.iter().zip(exists).filter(|(_, e)| *e == 0).map(|((o, _), _)| *o).collect())
    }

    async fn release(
        &self,
        overlay: OverlayId,
        broadcaster: &BroadcasterId,
        instance: &str,
        now_ms: i64,
    ) -> Result<bool, LiveStoreError> {
        let removed = self.release_lease(overlay, broadcaster, instance, now_ms).await?;
        let (held, member) = (keys::held(instance), leases::held_member(overlay, broadcaster));
        self.call("release", || self.client.srem::<i64, _, _>(&held, member.as_str())).await?;
        Ok(removed)
    }

    async fn heartbeat(&self, instance: &str, ttl_ms: i64, now_ms: i64) -> Result<(), LiveStoreError> {
        self.beat(instance, ttl_ms, now_ms).await
    }

    async fn expired_instances(&self, now_ms: i64) -> Result<Vec<String>, LiveStoreError> {
        self.expired(now_ms).await
    }

    async fn drop_instance(&self, instance: &str, now_ms: i64) -> Result<Vec<BroadcasterId>, LiveStoreError> {
        self.drop_held(instance, now_ms).await
    }

    async fn reset(&self, overlay: OverlayId, now_ms: i64) -> Result<bool, LiveStoreError> {
        let keys = vec![keys::session(overlay)];
        let args = vec![now_ms.to_string()];
        let done: i64 = self.call("reset", || self.client.fcall("chatpulse_reset", keys.clone(), args.clone())).await?;
        Ok(done == 1)
    }

    async fn set_status(&self, overlay: OverlayId, status: SessionStatus, now_ms: i64) -> Result<bool, LiveStoreError> {
        let keys = vec![keys::session(overlay)];
        let args = vec![status.as_str().to_owned(), now_ms.to_string()];
        let done: i64 =
            self.call("set_status", || self.client.fcall("chatpulse_status", keys.clone(), args.clone())).await?;
        Ok(done == 1)
    }

    fn forget_cached(&self, overlay: OverlayId) {
        self.forget_overlay(overlay);
    }

    async fn session_for(&self, broadcaster: &BroadcasterId) -> Result<Option<ActiveSession>, LiveStoreError> {
        if let Some(c) = self.cache().get(broadcaster) {
            let ttl = if c.session.is_some() { CACHE_HIT_TTL } else { CACHE_MISS_TTL };
            if c.at.elapsed() < ttl {
                return Ok(c.session.clone());
            }
        }
        let mapping = keys::broadcaster(broadcaster);
        let overlay: Option<String> = self.call("session_for", || self.client.get(&mapping)).await?;
        let session = match overlay.and_then(|o| o.parse::<OverlayId>().ok()) {
            None => None,
            Some(overlay) => {
                let key = keys::session(overlay);
                // `value` and `status` are only asked for to tell a session
                // that is gone (every field nil) from one that is unreadable.
                let fields: Vec<Value> = self
                    .call("session_for", || {
                        self.client.hmget(&key, vec!["config", "config_version", "value", "status"])
                    })
                    .await?;
                if fields.iter().all(Value::is_null) {
                    None
                } else {
                    let text = |i: usize| fields.get(i).and_then(Value::as_str);
                    let config = text(0).and_then(|c| serde_json::from_str::<OverlayConfig>(&c).ok());
                    let version = text(1).and_then(|v| v.parse::<i64>().ok());
                    match (config, version) {
                        (Some(config), Some(config_version)) => {
                            Some(ActiveSession { overlay, config: Arc::new(config), config_version })
                        }
                        _ => return Err(self.discard_unreadable(overlay, &key).await),
                    }
                }
            }
        };
        let mut cache = self.cache();
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, c| c.at.elapsed() < CACHE_HIT_TTL);
        }
        cache.insert(broadcaster.clone(), Cached { at: Instant::now(), session: session.clone() });
        Ok(session)
    }

    async fn vote(&self, vote: &VoteRequest<'_>, now_ms: i64) -> Result<VoteOutcome, LiveStoreError> {
        // Keys and arguments are built once (a retry clones reference
        // counts, not strings).
        let keys: Vec<Key> = vec![
            keys::session(vote.overlay).into(),
            keys::ratelimit(vote.overlay).into(),
            keys::msgid(vote.overlay, vote.message_id).into(),
            keys::debounce(vote.overlay, vote.chatter).into(),
            keys::voters(vote.overlay).into(),
            keys::history(vote.overlay).into(),
            keys::history_voters(vote.overlay).into(),
            keys::history_closed(vote.overlay).into(),
        ];
        let a = &self.vote_args;
        let delta = match vote.direction {
            crate::domain::Direction::For => a.for_delta.clone(),
            crate::domain::Direction::Against => a.against_delta.clone(),
        };
        let mut args: Vec<Value> = Vec::with_capacity(8);
        args.push(Value::from(now_ms.to_string()));
        args.push(delta);
        args.extend(a.limits.iter().cloned());
        args.push(Value::from(vote.chatter.as_str()));
        args.push(Value::from(if vote.record { "1" } else { "0" }));
        let reply: Vec<String> =
            self.call("vote", || self.client.fcall("chatpulse_vote", keys.clone(), args.clone())).await?;
        let outcome = parse_outcome(&reply)?;
        if outcome == VoteOutcome::NoSession {
            self.forget_overlay(vote.overlay);
        }
        Ok(outcome)
    }

    async fn take_buckets(
        &self,
        overlays: &[OverlayId],
        instance: &str,
        claim_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<(OverlayId, Vec<BucketCounters>)>, LiveStoreError> {
        self.take_history(overlays, instance, claim_ms, now_ms).await
    }

    async fn read_many(&self, overlays: &[OverlayId], now_ms: i64) -> Result<Vec<Option<Snapshot>>, LiveStoreError> {
        if overlays.is_empty() {
            return Ok(vec![]);
        }
        if !self.client.is_clustered() {
            return self.read_batched(overlays, now_ms).await;
        }
        let rows: Vec<Vec<Option<String>>> = self
            .call("read_many", || async {
                let pipeline = self.client.pipeline();
                for overlay in overlays {
                    pipeline.hmget::<(), _, _>(keys::session(*overlay), READ_FIELDS.to_vec()).await?;
                }
                // A one-command pipeline returns the bare reply, not a list of replies.
                if overlays.len() == 1 {
                    return Ok(vec![pipeline.last::<Vec<Option<String>>>().await?]);
                }
                pipeline.all().await
            })
            .await?;
        Ok(rows
            .iter()
            .map(|fields| snapshot_from_fields(&fields.iter().map(Option::as_deref).collect::<Vec<_>>(), now_ms))
            .collect())
    }

    async fn lead(&self, key: &str, instance: &str, ttl_ms: i64, now_ms: i64) -> Result<bool, LiveStoreError> {
        // The keys expire with the lease (`PX` = the lease), and the decision
        // also compares the stored end with `now_ms`, so a lease ends at the
        // earlier of the two clocks. (`PX` refuses an expiry past i64::MAX ms
        // from now, hence the upper bound.)
        let key_ttl = ttl_ms.clamp(1, i64::MAX / 4);
        let keys = vec![key.to_owned(), keys::lease_until(key)];
        let args = vec![instance.to_owned(), now_ms.to_string(), ttl_ms.to_string(), key_ttl.to_string()];
        let leads: i64 = self.call("lead", || self.client.fcall("chatpulse_lead", keys.clone(), args.clone())).await?;
        Ok(leads == 1)
    }

    async fn resign(&self, key: &str, instance: &str) -> Result<(), LiveStoreError> {
        let keys = vec![key.to_owned(), keys::lease_until(key)];
        let args = vec![instance.to_owned()];
        self.call("resign", || self.client.fcall::<i64, _, _, _>("chatpulse_resign", keys.clone(), args.clone()))
            .await?;
        Ok(())
    }

    async fn report_activity(
        &self,
        broadcaster: &BroadcasterId,
        report: &ActivityReport,
    ) -> Result<(), LiveStoreError> {
        let key = keys::activity(broadcaster);
        let json = serde_json::to_string(report).map_err(|e| LiveStoreError(e.to_string()))?;
        self.call("report_activity", || async {
            let pipeline = self.client.pipeline();
            pipeline.hset::<(), _, _>(&key, (report.instance.as_str(), json.as_str())).await?;
            pipeline.pexpire::<(), _>(&key, ACTIVITY_REPORT_TTL_MS, None).await?;
            pipeline.all::<Vec<Value>>().await.map(|_| ())
        })
        .await
    }

    async fn activity_reports(
        &self,
        broadcaster: &BroadcasterId,
        now_ms: i64,
    ) -> Result<Vec<ActivityReport>, LiveStoreError> {
        let key = keys::activity(broadcaster);
        let stored: HashMap<String, String> = self.call("activity_reports", || self.client.hgetall(&key)).await?;
        Ok(stored
            .values()
            .filter_map(|json| match serde_json::from_str::<ActivityReport>(json) {
                Ok(report) => Some(report),
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring an unreadable activity report");
                    None
                }
            })
            .filter(|r| now_ms - r.written_ms <= ACTIVITY_REPORT_TTL_MS)
            .collect())
    }

    async fn claim_message(&self, message_id: &str, now_ms: i64) -> Result<bool, LiveStoreError> {
        let keys = vec![keys::message(message_id)];
        let args = vec![now_ms.to_string(), self.limits.dedup_ms.to_string()];
        let first: i64 = self
            .call("claim_message", || self.client.fcall("chatpulse_claim_message", keys.clone(), args.clone()))
            .await?;
        Ok(first == 1)
    }

    async fn unclaim_message(&self, message_id: &str) -> Result<(), LiveStoreError> {
        let key = keys::message(message_id);
        self.call("unclaim_message", || self.client.del::<i64, _>(&key)).await.map(|_| ())
    }

    async fn ping(&self) -> Result<(), LiveStoreError> {
        let pong: Result<String, Error> = self.client.ping(None).await;
        pong.map_err(|e| LiveStoreError(format!("Redis unreachable: {e}")))?;
        if !self.library_loaded.load(Ordering::Acquire) {
            let reason = self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone();
            return Err(LiveStoreError(reason.unwrap_or_else(|| "Functions library not loaded yet".into())));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_keys_carry_the_overlay_id_as_their_hash_tag() {
        let o: OverlayId = "6f1c2a4e-8d3b-4f5a-9c7e-1b2d3f4a5c6e".parse().unwrap();
        assert_eq!(keys::session(o), "session:{6f1c2a4e-8d3b-4f5a-9c7e-1b2d3f4a5c6e}");
        assert_eq!(keys::ratelimit(o), "ratelimit:{6f1c2a4e-8d3b-4f5a-9c7e-1b2d3f4a5c6e}");
        assert_eq!(keys::instances(o), "instances:{6f1c2a4e-8d3b-4f5a-9c7e-1b2d3f4a5c6e}");
        assert_eq!(keys::session(o), format!("session:{{{o}}}"), "the same text as the URL's id");
    }

    #[test]
    fn a_lease_end_key_shares_its_lease_keys_slot() {
        assert_eq!(keys::lease_until("cleanup:leader"), "{cleanup:leader}:until");
        assert_eq!(keys::lease_until("cleanup:leader:tokens"), "{cleanup:leader:tokens}:until");
        // A key with a hash tag of its own keeps it.
        assert_eq!(keys::lease_until("lease:{abc}"), "lease:{abc}:until");
        for key in ["cleanup:leader", "cleanup:leader:tokens", "lease:{abc}"] {
            assert_eq!(
                fred::util::redis_keyslot(key.as_bytes()),
                fred::util::redis_keyslot(keys::lease_until(key).as_bytes()),
                "{key}"
            );
        }
    }

    #[test]
    fn the_library_version_is_read_from_the_lua_source() {
        assert_ne!(library_version(), "unknown");
        assert!(LIBRARY.starts_with("#!lua name=chatpulse"));
    }
}
