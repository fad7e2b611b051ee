//! The two live stores are interchangeable: the same calls with the same
//! timestamps give the same answers from `MemoryLiveStore` (embedded shape) and
//! `RedisLiveStore` (distributed shape, Lua functions + decay in Rust).
//!
//! `memory_and_redis_stores_agree_on_random_operation_sequences` feeds random
//! sequences of votes, reads and re-activations to both and compares every
//! result — the value of each session's meter model (classic or balance, and
//! re-activations that switch it), the balance model's decayed counts and the
//! participation; a failure reports the smallest sequence proptest could
//! shrink it to.
//! It runs against a standalone Redis and against a Redis Cluster.
//! `stored_garbage_never_propagates` writes nonsense straight into Redis and
//! checks that reads, votes and the rewritten fields stay finite and in range;
//! the tests after it do the same for a session's status, config and config
//! version, and for message-id and debounce entries.
//!
//! They need `TEST_REDIS_URL` (and `TEST_REDIS_CLUSTER_URL` for the cluster
//! run; `eval "$(scripts/test-services.sh)"`) and are skipped, loudly,
//! without them. Every case uses fresh random overlay and
//! broadcaster ids: the Redis server is shared with tests running in parallel.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use chatpulse::domain::{
    BroadcasterId, ChatterId, DecaySpeed, Direction, Label, MeterModel, OverlayConfig, OverlayId, SessionStatus,
    Trigger,
};
use chatpulse::store::memory::MemoryLiveStore;
use chatpulse::store::redis::RedisLiveStore;
use chatpulse::store::{
    ActiveSession, Lease, LiveStore, SessionActivation, Snapshot, VoteLimits, VoteOutcome, VoteRequest,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};
use uuid::Uuid;

use crate::live_store::redis_backend;

const REDIS_URL_VAR: &str = "TEST_REDIS_URL";
const CLUSTER_URL_VAR: &str = "TEST_REDIS_CLUSTER_URL";
/// Timestamps start here (plus a random offset per case).
const BASE_MS: i64 = 1_700_000_000_000;
const LEASE: Lease<'static> = Lease { instance: "equivalence", ttl_ms: 30_000 };
/// Largest difference allowed between two values that should be equal.
const TOLERANCE: f64 = 1e-9;
const DEFAULT_CASES: u32 = 48;
/// Sessions per case, so per-session keys (dedup, debounce, bucket) are exercised.
const SESSIONS: usize = 2;
/// Few chatters, so debounce triggers (but more than the small bucket holds).
const CHATTERS: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];
/// Few reusable message ids per session, so de-duplication triggers.
const MESSAGE_POOL: u8 = 4;
/// Gaps that land exactly on (or next to) a window's edge: debounce 1 s,
/// bucket idle 5 min, de-duplication 10 min, reset after 1 h.
const EDGE_GAPS: [i64; 9] = [999, 1_000, 1_001, 300_000, 300_001, 600_000, 600_001, 3_600_000, 3_600_001];

// ---------------------------------------------------------------------------
// Generated input
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum Limits {
    Default,
    /// Capacity 3, one token per second: `RateLimited` happens.
    SmallBucket,
}

impl Limits {
    fn get(self) -> VoteLimits {
        match self {
            Limits::Default => VoteLimits::default(),
            Limits::SmallBucket => {
                VoteLimits { bucket_capacity: 3, bucket_refill_per_minute: 60.0, ..VoteLimits::default() }
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Message {
    /// `m<n>` from a small pool: may repeat a message id seen before.
    Pool(u8),
    /// An id never used before in this case.
    Fresh,
}

#[derive(Debug, Clone, Copy)]
enum Which {
    One(usize),
    Both,
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Vote {
        session: usize,
        chatter: usize,
        message: Message,
        direction: Direction,
    },
    Read(Which),
    /// Re-activates a session with decay speed `decay`: with the next config
    /// version, or (`stale`) with an older one that must be ignored.
    Reactivate {
        session: usize,
        decay: f64,
        model: MeterModel,
        stale: bool,
    },
}

#[derive(Debug, Clone, Copy)]
struct Step {
    /// Milliseconds since the previous step (timestamps never go back).
    gap_ms: i64,
    op: Op,
}

#[derive(Debug, Clone)]
struct Case {
    limits: Limits,
    start_offset_ms: i64,
    /// Decay speed and meter model of each session at its first activation
    /// (at the start time).
    decay: [f64; SESSIONS],
    model: [MeterModel; SESSIONS],
    steps: Vec<Step>,
}

fn gap() -> impl Strategy<Value = i64> {
    prop_oneof![
        // Bursts (the bucket and debounce only bite when votes come quickly)...
        8 => 0..50i64,
        5 => 0..2_000i64,
        // ...window edges...
        1 => prop::sample::select(EDGE_GAPS.to_vec()),
        // ...and long silences that cross the 5 min / 10 min / 1 h windows.
        1 => 0..4_000_000i64,
    ]
}

fn decay_speed() -> impl Strategy<Value = f64> {
    0.1f64..=2.0
}

fn model() -> impl Strategy<Value = MeterModel> {
    prop_oneof![Just(MeterModel::Classic), Just(MeterModel::Balance)]
}

fn op() -> impl Strategy<Value = Op> {
    let message = prop_oneof![1 => (0..MESSAGE_POOL).prop_map(Message::Pool), 2 => Just(Message::Fresh)];
    let direction = prop_oneof![Just(Direction::For), Just(Direction::Against)];
    // Most votes go to the first session, so its bucket runs dry in bursts.
    let session = prop_oneof![3 => Just(0), 1 => Just(1)];
    let vote = (session, 0..CHATTERS.len(), message, direction)
        .prop_map(|(session, chatter, message, direction)| Op::Vote { session, chatter, message, direction });
    let which = prop_oneof![(0..SESSIONS).prop_map(Which::One), Just(Which::Both)];
    let reactivate = (0..SESSIONS, decay_speed(), model(), prop::bool::weighted(0.25))
        .prop_map(|(session, decay, model, stale)| Op::Reactivate { session, decay, model, stale });
    prop_oneof![14 => vote, 4 => which.prop_map(Op::Read), 1 => reactivate]
}

fn case() -> impl Strategy<Value = Case> {
    let limits = prop_oneof![Just(Limits::Default), Just(Limits::SmallBucket)];
    let steps = prop::collection::vec((gap(), op()).prop_map(|(gap_ms, op)| Step { gap_ms, op }), 1..48);
    (limits, 0..1_000_000_000i64, [decay_speed(), decay_speed()], [model(), model()], steps).prop_map(
        |(limits, start_offset_ms, decay, model, steps)| Case { limits, start_offset_ms, decay, model, steps },
    )
}

// ---------------------------------------------------------------------------
// Running one case against both stores
// ---------------------------------------------------------------------------

fn overlay_config(decay: f64) -> OverlayConfig {
    meter_config(decay, MeterModel::Classic)
}

fn meter_config(decay: f64, model: MeterModel) -> OverlayConfig {
    let mut config = OverlayConfig::new(
        Trigger::parse("yes").unwrap(),
        Trigger::parse("no").unwrap(),
        Label::parse("Against").unwrap(),
        Label::parse("For").unwrap(),
        DecaySpeed::new(decay).unwrap(),
    )
    .unwrap();
    config.model = model;
    config
}

fn random_broadcaster() -> BroadcasterId {
    BroadcasterId::parse(&(Uuid::new_v4().as_u128() % 10u128.pow(18)).to_string()).unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= TOLERANCE
}

fn same_outcome(a: VoteOutcome, b: VoteOutcome) -> bool {
    match (a, b) {
        (VoteOutcome::Applied(x), VoteOutcome::Applied(y)) => close(x, y),
        _ => a == b,
    }
}

fn same_snapshots(a: &[Option<Snapshot>], b: &[Option<Snapshot>]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(a, b)| match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) => {
                a.status == b.status
                    && a.model == b.model
                    && a.voters == b.voters
                    && close(a.value, b.value)
                    && close(a.weights[0], b.weights[0])
                    && close(a.weights[1], b.weights[1])
            }
            _ => false,
        })
}

/// Equal, except that decay speeds need only be equal within [`TOLERANCE`]:
/// the Redis store reads the config back from JSON, and `serde_json` without
/// its `float_roundtrip` feature may return a 17-digit float one ULP off.
fn same_session(a: Option<&ActiveSession>, b: Option<&ActiveSession>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            let mut b = b.clone();
            if close(a.config.decay_speed.get(), b.config.decay_speed.get()) {
                std::sync::Arc::make_mut(&mut b.config).decay_speed = a.config.decay_speed;
            }
            *a == b
        }
        _ => false,
    }
}

/// Counts of what the stores answered over a whole run, to show what was covered.
#[derive(Debug, Default)]
struct Coverage {
    applied: u32,
    duplicate: u32,
    debounced: u32,
    rate_limited: u32,
    no_session: u32,
    reads: u32,
    /// Sessions read on the balance meter, and with voters counted.
    balance_reads: u32,
    reads_with_voters: u32,
    reactivations: u32,
}

impl Coverage {
    fn count(&mut self, outcome: VoteOutcome) {
        match outcome {
            VoteOutcome::Applied(_) => self.applied += 1,
            VoteOutcome::Duplicate => self.duplicate += 1,
            VoteOutcome::Debounced => self.debounced += 1,
            VoteOutcome::RateLimited => self.rate_limited += 1,
            VoteOutcome::NoSession => self.no_session += 1,
        }
    }
}

struct Divergence {
    step: usize,
    at: String,
    what: String,
    memory: String,
    redis: String,
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "step {} ({}), {}:\n  memory: {}\n  redis:  {}",
            self.step, self.at, self.what, self.memory, self.redis
        )
    }
}

fn fail(d: Divergence) -> TestCaseError {
    TestCaseError::fail(d.to_string())
}

fn redis_error(step: usize, what: &str, e: impl fmt::Display) -> TestCaseError {
    TestCaseError::fail(format!("step {step}, {what}: Redis store failed: {e}"))
}

struct Session {
    overlay: OverlayId,
    broadcaster: BroadcasterId,
    /// The newest config version given to the stores.
    version: i64,
}

/// Runs `case` against a fresh memory store and `redis` (built with the same
/// limits), comparing every answer.
async fn run_case(redis: &RedisLiveStore, case: &Case, coverage: &mut Coverage) -> Result<(), TestCaseError> {
    let memory = MemoryLiveStore::new(case.limits.get());
    let start = BASE_MS + case.start_offset_ms;
    let mut now = start;
    let mut sessions = Vec::with_capacity(SESSIONS);
    for (&decay, &model) in case.decay.iter().zip(&case.model) {
        let session = Session { overlay: OverlayId::random(), broadcaster: random_broadcaster(), version: 1 };
        let activation = SessionActivation {
            overlay: session.overlay,
            broadcaster: session.broadcaster.clone(),
            config: meter_config(decay, model),
            config_version: 1,
        };
        memory.activate(&activation, LEASE, now).await.unwrap();
        redis.activate(&activation, LEASE, now).await.map_err(|e| redis_error(0, "initial activation", e))?;
        sessions.push(session);
    }
    let chatters: Vec<ChatterId> = CHATTERS.iter().map(|c| ChatterId::parse(c).unwrap()).collect();

    for (i, step) in case.steps.iter().enumerate() {
        now += step.gap_ms;
        let at = format!("t = start + {} ms", now - start);
        match step.op {
            Op::Vote { session, chatter, message, direction } => {
                let message_id = match message {
                    Message::Pool(n) => format!("m{n}"),
                    Message::Fresh => format!("fresh{i}"),
                };
                let request = VoteRequest {
                    overlay: sessions[session].overlay,
                    message_id: &message_id,
                    chatter: &chatters[chatter],
                    direction,
                    record: true,
                };
                let m = memory.vote(&request, now).await.unwrap();
                let r = redis.vote(&request, now).await.map_err(|e| redis_error(i, "vote", e))?;
                coverage.count(m);
                if !same_outcome(m, r) {
                    return Err(fail(Divergence {
                        step: i,
                        at,
                        what: format!(
                            "vote in session {session} by {} with message {message_id} {direction:?}",
                            CHATTERS[chatter]
                        ),
                        memory: format!("{m:?}"),
                        redis: format!("{r:?}"),
                    }));
                }
            }
            Op::Read(which) => {
                let overlays: Vec<OverlayId> = match which {
                    Which::One(s) => vec![sessions[s].overlay],
                    Which::Both => sessions.iter().map(|s| s.overlay).collect(),
                };
                let m = memory.read_many(&overlays, now).await.unwrap();
                let r = redis.read_many(&overlays, now).await.map_err(|e| redis_error(i, "read_many", e))?;
                coverage.reads += 1;
                for snapshot in m.iter().flatten() {
                    coverage.balance_reads += u32::from(snapshot.model == MeterModel::Balance);
                    coverage.reads_with_voters += u32::from(snapshot.voters > 0);
                }
                if !same_snapshots(&m, &r) {
                    return Err(fail(Divergence {
                        step: i,
                        at,
                        what: format!("read_many of {which:?}"),
                        memory: format!("{m:?}"),
                        redis: format!("{r:?}"),
                    }));
                }
            }
            Op::Reactivate { session, decay, model, stale } => {
                let s = &mut sessions[session];
                let version = if stale {
                    s.version - 1
                } else {
                    s.version += 1;
                    s.version
                };
                let activation = SessionActivation {
                    overlay: s.overlay,
                    broadcaster: s.broadcaster.clone(),
                    config: meter_config(decay, model),
                    config_version: version,
                };
                memory.activate(&activation, LEASE, now).await.unwrap();
                redis.activate(&activation, LEASE, now).await.map_err(|e| redis_error(i, "activate", e))?;
                coverage.reactivations += 1;
                // The config that won must be the same too.
                let m = memory.session_for(&s.broadcaster).await.unwrap();
                let r = redis.session_for(&s.broadcaster).await.map_err(|e| redis_error(i, "session_for", e))?;
                if !same_session(m.as_ref(), r.as_ref()) {
                    return Err(fail(Divergence {
                        step: i,
                        at,
                        what: format!("session_for after re-activating session {session} with version {version}"),
                        memory: format!("{m:?}"),
                        redis: format!("{r:?}"),
                    }));
                }
            }
        }
    }

    // Final state, then clean up (both stores must agree that the session goes).
    let step = case.steps.len();
    let overlays: Vec<OverlayId> = sessions.iter().map(|s| s.overlay).collect();
    let m = memory.read_many(&overlays, now).await.unwrap();
    let r = redis.read_many(&overlays, now).await.map_err(|e| redis_error(step, "final read_many", e))?;
    if !same_snapshots(&m, &r) {
        return Err(fail(Divergence {
            step,
            at: format!("t = start + {} ms", now - start),
            what: "final read_many of both sessions".into(),
            memory: format!("{m:?}"),
            redis: format!("{r:?}"),
        }));
    }
    for s in &sessions {
        let m = memory.release(s.overlay, &s.broadcaster, LEASE.instance, now).await.unwrap();
        let r = redis
            .release(s.overlay, &s.broadcaster, LEASE.instance, now)
            .await
            .map_err(|e| redis_error(step, "release", e))?;
        if m != r {
            return Err(fail(Divergence {
                step,
                at: format!("t = start + {} ms", now - start),
                what: format!("release of {}", s.overlay),
                memory: format!("{m:?}"),
                redis: format!("{r:?}"),
            }));
        }
    }
    Ok(())
}

/// `PROPTEST_CASES` overrides the case count; `PROPTEST_RNG_SEED` replays a run.
fn runner_config() -> Config {
    let defaults = Config::default();
    let rng_seed = match defaults.rng_seed {
        // Pick the seed here so that it can be printed for a replay.
        RngSeed::Random => RngSeed::Fixed(Uuid::new_v4().as_u64_pair().0),
        fixed => fixed,
    };
    Config {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(DEFAULT_CASES),
        rng_seed,
        // No regression files: the failing sequence is printed instead.
        failure_persistence: None,
        max_shrink_iters: 4_096,
        ..defaults
    }
}

#[test]
fn memory_and_redis_stores_agree_on_random_operation_sequences() {
    agree_on_random_operation_sequences(REDIS_URL_VAR);
}

/// The same on a Redis Cluster, where the broadcaster's read takes another
/// path (pipelined `HMGET`s, decayed in Rust, instead of `FCALL_RO`) and a
/// session's keys must all land on one slot.
#[test]
fn memory_and_redis_cluster_stores_agree_on_random_operation_sequences() {
    agree_on_random_operation_sequences(CLUSTER_URL_VAR);
}

/// Runs the property against the Redis named by `variable` (skipped, loudly,
/// when it is unset).
fn agree_on_random_operation_sequences(variable: &str) {
    let started = Instant::now();
    // One runtime for everything: the Redis store's background task runs on it.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let Some(default_store) = rt.block_on(redis_backend(variable, Limits::Default.get())) else { return };
    let small_store: Arc<RedisLiveStore> = rt.block_on(redis_backend(variable, Limits::SmallBucket.get())).unwrap();

    let config = runner_config();
    let (cases, seed) = (config.cases, config.rng_seed);
    let mut runner = TestRunner::new(config);
    // `run` takes an `Fn`: the counts are shared through a `RefCell`.
    let coverage = RefCell::new(Coverage::default());
    let result = runner.run(&case(), |case| {
        let redis = match case.limits {
            Limits::Default => &default_store,
            Limits::SmallBucket => &small_store,
        };
        rt.block_on(run_case(redis, &case, &mut coverage.borrow_mut()))
    });
    eprintln!(
        "equivalence ({variable}): {cases} cases (seed {seed}; replay with PROPTEST_RNG_SEED={seed}) in {:.2?}; \
         vote outcomes and operations seen, shrinking included: {:?}",
        started.elapsed(),
        coverage.borrow(),
    );
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, minimal)) => {
            panic!("the stores diverge.\n{reason}\nminimal failing case: {minimal:#?}")
        }
        Err(TestError::Abort(reason)) => panic!("aborted: {reason}"),
    }
}

// ---------------------------------------------------------------------------
// Garbage in Redis
// ---------------------------------------------------------------------------

/// The stored value of a session as written by the Lua functions.
fn parse_stored(raw: Option<&str>, what: &str) -> f64 {
    let raw = raw.unwrap_or_else(|| panic!("{what} is missing"));
    let value: f64 = raw.parse().unwrap_or_else(|e| panic!("{what} {raw:?} is not a number: {e}"));
    assert!(value.is_finite(), "{what} {raw:?} is not finite");
    value
}

#[tokio::test]
async fn stored_garbage_never_propagates() {
    use fred::prelude::{Builder, ClientLike, Config as RedisConfig, HashesInterface};

    // One token, refilled once a minute: after the first vote the bucket is
    // empty, so a vote that is applied proves the limiter failed open.
    let limits = VoteLimits { bucket_capacity: 1, bucket_refill_per_minute: 1.0, ..VoteLimits::default() };
    let Some(store) = redis_backend(REDIS_URL_VAR, limits).await else { return };
    let url = crate::helpers::test_server_url(REDIS_URL_VAR).await.unwrap();
    let raw = Builder::from_config(RedisConfig::from_url(&url).unwrap()).build().unwrap();
    raw.init().await.unwrap();

    let t = BASE_MS;
    let later = t + 500;
    let valid_time = t.to_string();
    let chatter = |name: &str| ChatterId::parse(name).unwrap();
    let (first, second, control) = (chatter("first"), chatter("second"), chatter("control"));
    let mut checked = 0;
    for value in ["banana", "nan", "inf", "1e999", "250", "-0x10"] {
        for last_update in ["yesterday", valid_time.as_str()] {
            for decay in ["-3", "abc", "1e9"] {
                let fields = format!("value={value:?} last_update={last_update:?} decay={decay:?}");
                let (overlay, broadcaster) = (OverlayId::random(), random_broadcaster());
                let activation = SessionActivation {
                    overlay,
                    broadcaster: broadcaster.clone(),
                    config: overlay_config(0.5),
                    config_version: 1,
                };
                store.activate(&activation, LEASE, t).await.unwrap();
                let first_vote =
                    VoteRequest { overlay, message_id: "m1", chatter: &first, direction: Direction::For, record: true };
                assert_eq!(store.vote(&first_vote, t).await.unwrap(), VoteOutcome::Applied(10.0), "{fields}");
                let control_vote = VoteRequest {
                    overlay,
                    message_id: "m2",
                    chatter: &control,
                    direction: Direction::For,
                    record: true,
                };
                assert_eq!(
                    store.vote(&control_vote, t).await.unwrap(),
                    VoteOutcome::RateLimited,
                    "{fields}: the bucket should be empty before the garbage is written"
                );

                let session_key = format!("session:{{{overlay}}}");
                let bucket_key = format!("ratelimit:{{{overlay}}}");
                let _: () = raw
                    .hset(&session_key, vec![("value", value), ("last_update", last_update), ("decay", decay)])
                    .await
                    .unwrap();
                let _: () = raw.hset(&bucket_key, vec![("tokens", "x")]).await.unwrap();

                let snapshots = store.read_many(&[overlay], later).await.unwrap();
                let read = match snapshots.as_slice() {
                    [Some(s)] => s.value,
                    other => panic!("{fields}: read_many gave {other:?}"),
                };
                assert!(read.is_finite() && (-100.0..=100.0).contains(&read), "{fields}: read {read}");
                // What the garbage should read as: a bad value is 0, 250 is clamped to 100,
                // a bad time resets, a bad decay speed is the default 0.5 or clamped to 10.
                let sane_value = if value == "250" { 100.0 } else { 0.0 };
                let sane_decay = if decay == "1e9" { 10.0 } else { 0.5 };
                let expected_read =
                    if last_update == "yesterday" { 0.0 } else { sane_value * (-sane_decay * 0.5f64).exp() };
                assert!(close(read, expected_read), "{fields}: read {read}, expected {expected_read}");
                assert_eq!(snapshots[0].unwrap().status, SessionStatus::Active);

                let second_vote = VoteRequest {
                    overlay,
                    message_id: "m3",
                    chatter: &second,
                    direction: Direction::For,
                    record: true,
                };
                let applied = match store.vote(&second_vote, later).await.unwrap() {
                    VoteOutcome::Applied(v) => v,
                    other => panic!("{fields}: a vote on a garbage bucket gave {other:?} (the limiter fails open)"),
                };
                assert!(applied.is_finite() && (-100.0..=100.0).contains(&applied), "{fields}: applied {applied}");
                // Lua's decay of the garbage (the vote) and Rust's (the read) agree.
                let expected = (read + 10.0).clamp(-100.0, 100.0);
                assert!(
                    close(applied, expected),
                    "{fields}: read {read} then vote applied {applied}, expected {expected}"
                );

                let stored: Option<String> = raw.hget(&session_key, "value").await.unwrap();
                let stored = parse_stored(stored.as_deref(), &format!("{fields}: stored value"));
                assert!((-100.0..=100.0).contains(&stored), "{fields}: stored value {stored}");
                assert!(close(stored, applied), "{fields}: stored {stored}, applied {applied}");
                let tokens: Option<String> = raw.hget(&bucket_key, "tokens").await.unwrap();
                parse_stored(tokens.as_deref(), &format!("{fields}: stored bucket tokens"));

                assert!(store.release(overlay, &broadcaster, LEASE.instance, later).await.unwrap());
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 36);
    raw.quit().await.unwrap();
}

/// A plain connection to the test Redis, to write garbage with.
async fn raw_redis() -> fred::prelude::Client {
    use fred::prelude::{Builder, ClientLike, Config as RedisConfig};
    let url = crate::helpers::test_server_url(REDIS_URL_VAR).await.unwrap();
    let raw = Builder::from_config(RedisConfig::from_url(&url).unwrap()).build().unwrap();
    raw.init().await.unwrap();
    raw
}

/// A stored status nobody wrote: it reads as the safe default, `active`; the
/// value and votes are unaffected, and a real status replaces it.
#[tokio::test]
async fn a_garbage_status_reads_as_active() {
    use fred::prelude::HashesInterface;
    let Some(store) = redis_backend(REDIS_URL_VAR, VoteLimits::default()).await else { return };
    let raw = raw_redis().await;
    let t = BASE_MS;
    let (overlay, broadcaster) = (OverlayId::random(), random_broadcaster());
    let activation =
        SessionActivation { overlay, broadcaster: broadcaster.clone(), config: overlay_config(0.5), config_version: 1 };
    store.activate(&activation, LEASE, t).await.unwrap();
    let chatter = ChatterId::parse("viewer").unwrap();
    let vote = VoteRequest { overlay, message_id: "m1", chatter: &chatter, direction: Direction::For, record: true };
    assert_eq!(store.vote(&vote, t).await.unwrap(), VoteOutcome::Applied(10.0));

    for garbage in ["banana", "", "LIVE", "live ", "1e999"] {
        let _: () = raw.hset(format!("session:{{{overlay}}}"), vec![("status", garbage)]).await.unwrap();
        let read = store.read_many(&[overlay], t).await.unwrap();
        let (value, status) = (read[0].unwrap().value, read[0].unwrap().status);
        assert_eq!((value, status), (10.0, SessionStatus::Active), "status {garbage:?}");
    }
    // Going live from a garbage status is a change of status: the bar is centred.
    assert!(store.set_status(overlay, SessionStatus::Live, t + 10).await.unwrap());
    let read = store.read_many(&[overlay], t + 10).await.unwrap();
    assert_eq!((read[0].unwrap().value, read[0].unwrap().status), (0.0, SessionStatus::Live));
    assert!(store.release(overlay, &broadcaster, LEASE.instance, t + 10).await.unwrap());
}

/// Message-id (de-duplication) and debounce entries hold an expiry time.
/// Garbage there reads as "expired": the vote is applied (like the bucket,
/// these fail open) and the entry is rewritten with a real expiry, so the
/// next vote of that message or chatter is refused again.
#[tokio::test]
async fn garbage_message_id_and_debounce_entries_count_as_expired_and_are_rewritten() {
    use fred::prelude::KeysInterface;
    let Some(store) = redis_backend(REDIS_URL_VAR, VoteLimits::default()).await else { return };
    let raw = raw_redis().await;
    let t = BASE_MS;
    for garbage in ["banana", "nan", "inf", "-inf", "1e999", "0x7fffffffffff", ""] {
        let (overlay, broadcaster) = (OverlayId::random(), random_broadcaster());
        let activation = SessionActivation {
            overlay,
            broadcaster: broadcaster.clone(),
            config: overlay_config(0.5),
            config_version: 1,
        };
        store.activate(&activation, LEASE, t).await.unwrap();
        let (alice, bob) = (ChatterId::parse("alice").unwrap(), ChatterId::parse("bob").unwrap());
        let msgid_key = format!("msgid:{{{overlay}}}:m1");
        let debounce_key = format!("debounce:{{{overlay}}}:bob");
        let _: () = raw.set(&msgid_key, garbage, None, None, false).await.unwrap();
        let _: () = raw.set(&debounce_key, garbage, None, None, false).await.unwrap();

        let by_message =
            VoteRequest { overlay, message_id: "m1", chatter: &alice, direction: Direction::For, record: true };
        assert_eq!(store.vote(&by_message, t).await.unwrap(), VoteOutcome::Applied(10.0), "msgid {garbage:?}");
        let by_chatter =
            VoteRequest { overlay, message_id: "m2", chatter: &bob, direction: Direction::For, record: true };
        assert_eq!(store.vote(&by_chatter, t).await.unwrap(), VoteOutcome::Applied(20.0), "debounce {garbage:?}");

        for key in [&msgid_key, &debounce_key] {
            let stored: Option<String> = raw.get(key).await.unwrap();
            let until = parse_stored(stored.as_deref(), &format!("{key} after {garbage:?}"));
            assert!(until > t as f64, "{key}: a real expiry time, {until}");
        }
        let again =
            VoteRequest { overlay, message_id: "m1", chatter: &bob, direction: Direction::Against, record: true };
        assert_eq!(store.vote(&again, t + 1).await.unwrap(), VoteOutcome::Duplicate, "{garbage:?}");
        let bob_again =
            VoteRequest { overlay, message_id: "m3", chatter: &bob, direction: Direction::Against, record: true };
        assert_eq!(store.vote(&bob_again, t + 1).await.unwrap(), VoteOutcome::Debounced, "{garbage:?}");
        assert!(store.release(overlay, &broadcaster, LEASE.instance, t + 1).await.unwrap());
    }
}

/// An unreadable stored config or config version (not JSON, JSON that is
/// not a config, not an integer): the lookup does not answer "no session"
/// (which would drop every vote of the channel, silently, for as long as its
/// overlays stay open). It fails, and discards the session, which the
/// holders' repair (broadcaster read, lease renewal) then re-activates from
/// the durable store.
#[tokio::test]
async fn an_unreadable_stored_config_discards_the_session_for_reactivation() {
    use fred::prelude::HashesInterface;
    let Some(store) = redis_backend(REDIS_URL_VAR, VoteLimits::default()).await else { return };
    let raw = raw_redis().await;
    let t = BASE_MS;
    let garbage: [(&str, &str); 6] = [
        ("config", "{not json"),
        ("config", "{\"for_trigger\": 5}"),
        ("config", ""),
        ("config_version", "banana"),
        ("config_version", "1e3"),
        ("config_version", ""),
    ];
    for (field, value) in garbage {
        let what = format!("{field} = {value:?}");
        let (overlay, broadcaster) = (OverlayId::random(), random_broadcaster());
        let activation = SessionActivation {
            overlay,
            broadcaster: broadcaster.clone(),
            config: overlay_config(0.5),
            config_version: 3,
        };
        store.activate(&activation, LEASE, t).await.unwrap();
        let _: () = raw.hset(format!("session:{{{overlay}}}"), vec![(field, value)]).await.unwrap();

        let found = store.session_for(&broadcaster).await;
        let error = found.expect_err(&format!("{what}: the lookup fails rather than answering 'no session'"));
        assert!(error.to_string().contains("unreadable config"), "{what}: {error}");
        assert_eq!(store.read_many(&[overlay], t).await.unwrap(), vec![None], "{what}: the session is discarded");
        let sessions = [(overlay, broadcaster.clone())];
        assert_eq!(store.renew(&sessions, LEASE, t).await.unwrap(), vec![overlay], "{what}: reported for repair");

        // The repair: re-activation with the durable config.
        store.activate(&activation, LEASE, t + 1).await.unwrap();
        let session = store.session_for(&broadcaster).await.unwrap().expect("active again");
        assert_eq!((session.overlay, session.config_version), (overlay, 3), "{what}");
        assert!(close(session.config.decay_speed.get(), 0.5), "{what}");
        let chatter = ChatterId::parse("viewer").unwrap();
        let vote =
            VoteRequest { overlay, message_id: "m1", chatter: &chatter, direction: Direction::For, record: true };
        assert_eq!(store.vote(&vote, t + 1).await.unwrap(), VoteOutcome::Applied(10.0), "{what}");
        assert!(store.release(overlay, &broadcaster, LEASE.instance, t + 1).await.unwrap());
    }
}
