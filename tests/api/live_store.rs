//! The `LiveStore` contract (ARCHITECTURE §4–5): every implementation — the
//! in-process `MemoryLiveStore` today, Redis next — must pass this same suite.
//!
//! Each behaviour is one generic `async fn(&dyn LiveStore)`; `live_store_contract!`
//! turns the whole list into one `#[tokio::test]` per behaviour for a backend.
//! To add a backend, add one line at the bottom: a name and a constructor
//! `|limits: VoteLimits| async move { (store, guard) }`, where `guard` is kept
//! alive for the test (use `()` if there is nothing to keep). Every test builds
//! a fresh store and uses random overlay and broadcaster ids (and leader lease
//! keys), so backends that share one server across tests do not collide. Time
//! is only ever the explicit `now_ms` argument: synthetic timestamps, no
//! sleeping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::helpers::redis_cli;
use chatpulse::domain::{
    BroadcasterId, ChatterId, DecaySpeed, Direction, Label, MeterModel, OverlayConfig, OverlayId, SessionStatus,
    Trigger,
};
use chatpulse::store::memory::MemoryLiveStore;
use chatpulse::store::redis::{RedisConnection, RedisLiveStore};
use chatpulse::store::{
    ActiveSession, Lease, LiveStore, SessionActivation, Snapshot, VoteLimits, VoteOutcome, VoteRequest,
};
use std::sync::Arc;
use uuid::Uuid;

mod history;
use history::*;

use Direction::{Against, For};
use VoteOutcome::{Applied, Debounced, Duplicate, NoSession, RateLimited};

const T0: i64 = 1_700_000_000_000;
const ME: &str = "instance-a";
const LEASE: Lease<'static> = Lease { instance: ME, ttl_ms: 30_000 };
const DEBOUNCE_MS: i64 = 1_000;
const DEDUP_MS: i64 = 600_000;
const RESET_AFTER_MS: i64 = 3_600_000;
/// Capacity used by the token-bucket tests (refill: one token per second).
const SMALL_BUCKET: u32 = 5;

fn default_limits() -> VoteLimits {
    VoteLimits::default()
}

fn small_bucket() -> VoteLimits {
    VoteLimits { bucket_capacity: SMALL_BUCKET, bucket_refill_per_minute: 60.0, ..VoteLimits::default() }
}

fn config(k: f64) -> OverlayConfig {
    OverlayConfig::new(
        Trigger::parse("yes").unwrap(),
        Trigger::parse("no").unwrap(),
        Label::parse("Against").unwrap(),
        Label::parse("For").unwrap(),
        DecaySpeed::new(k).unwrap(),
    )
    .unwrap()
}

fn random_broadcaster() -> BroadcasterId {
    BroadcasterId::parse(&(Uuid::new_v4().as_u128() % 10u128.pow(18)).to_string()).unwrap()
}

fn chatter(name: &str) -> ChatterId {
    ChatterId::parse(name).unwrap()
}

fn activation(overlay: OverlayId, broadcaster: &BroadcasterId, k: f64, version: i64) -> SessionActivation {
    SessionActivation { overlay, broadcaster: broadcaster.clone(), config: config(k), config_version: version }
}

/// Activates a fresh session (random ids, decay speed `k`, version 1).
async fn start(store: &dyn LiveStore, k: f64, now: i64) -> (OverlayId, BroadcasterId) {
    let (overlay, broadcaster) = (OverlayId::random(), random_broadcaster());
    store.activate(&activation(overlay, &broadcaster, k, 1), LEASE, now).await.unwrap();
    (overlay, broadcaster)
}

async fn vote(
    store: &dyn LiveStore,
    overlay: OverlayId,
    msg: &str,
    who: &str,
    dir: Direction,
    now: i64,
) -> VoteOutcome {
    let who = chatter(who);
    let request = VoteRequest { overlay, message_id: msg, chatter: &who, direction: dir, record: true };
    store.vote(&request, now).await.unwrap()
}

async fn read(store: &dyn LiveStore, overlay: OverlayId, now: i64) -> Option<f64> {
    let snapshots = store.read_many(&[overlay], now).await.unwrap();
    assert_eq!(snapshots.len(), 1);
    snapshots[0].map(|s| {
        assert_eq!(s.status, SessionStatus::Active);
        s.value
    })
}

fn decay(value: f64, elapsed_ms: i64, k: f64) -> f64 {
    value * (-k * elapsed_ms as f64 / 1000.0).exp()
}

#[track_caller]
fn assert_close(actual: f64, expected: f64) {
    assert!((actual - expected).abs() < 1e-9, "got {actual}, expected {expected}");
}

#[track_caller]
fn applied(outcome: VoteOutcome) -> f64 {
    match outcome {
        Applied(value) => value,
        other => panic!("expected Applied, got {other:?}"),
    }
}

async fn a_vote_without_an_active_session_is_no_session(store: &dyn LiveStore) {
    let (b, chat) = (random_broadcaster(), "c1");
    assert_eq!(vote(store, OverlayId::random(), "m0", chat, For, T0).await, NoSession);
    let overlay = OverlayId::random();
    store.activate(&activation(overlay, &b, 0.5, 1), LEASE, T0).await.unwrap();
    assert_eq!(vote(store, overlay, "m1", chat, For, T0).await, Applied(10.0));
    assert!(store.release(overlay, &b, ME, T0 + 10).await.unwrap(), "last lease gone: session removed");
    assert_eq!(vote(store, overlay, "m2", "c2", For, T0 + 10).await, NoSession);
    assert_eq!(store.session_for(&b).await.unwrap(), None);
    assert_eq!(read(store, overlay, T0 + 10).await, None);
}

async fn releasing_the_last_lease_removes_the_session_but_keeps_de_duplication(store: &dyn LiveStore) {
    let (overlay, b) = start(store, 0.5, T0).await;
    assert_eq!(vote(store, overlay, "m1", "c1", For, T0).await, Applied(10.0));
    assert!(store.release(overlay, &b, ME, T0 + 10).await.unwrap());
    store.activate(&activation(overlay, &b, 0.5, 1), LEASE, T0 + 10).await.unwrap();
    assert_eq!(read(store, overlay, T0 + 10).await, Some(0.0), "a fresh value");
    // Twitch's redelivery of an applied message is still recognised, and the
    // chatter's debounce window still runs.
    assert_eq!(vote(store, overlay, "m1", "c2", Against, T0 + 20).await, Duplicate);
    assert_eq!(vote(store, overlay, "m2", "c1", Against, T0 + 20).await, Debounced);
    assert_eq!(vote(store, overlay, "m3", "c3", Against, T0 + 20).await, Applied(-10.0));
}

async fn a_session_lives_while_any_instance_holds_an_unexpired_lease(store: &dyn LiveStore) {
    let (overlay, b) = start(store, 0.5, T0).await;
    let other = Lease { instance: "instance-b", ttl_ms: 30_000 };
    store.activate(&activation(overlay, &b, 0.5, 1), other, T0).await.unwrap();
    assert_eq!(vote(store, overlay, "m1", "c1", For, T0).await, Applied(10.0));

    assert!(!store.release(overlay, &b, ME, T0 + 100).await.unwrap(), "instance-b still holds it");
    assert_eq!(read(store, overlay, T0 + 100).await.map(|v| v > 9.0), Some(true));
    assert_eq!(store.session_for(&b).await.unwrap().map(|s| s.overlay), Some(overlay));
    assert!(store.release(overlay, &b, "instance-b", T0 + 200).await.unwrap());
    assert_eq!(read(store, overlay, T0 + 200).await, None);
}

async fn an_expired_lease_does_not_keep_a_session_alive(store: &dyn LiveStore) {
    let (overlay, b) = start(store, 0.5, T0).await;
    let crashed = Lease { instance: "crashed", ttl_ms: 1_000 };
    store.activate(&activation(overlay, &b, 0.5, 1), crashed, T0).await.unwrap();
    assert!(!store.release(overlay, &b, ME, T0 + 500).await.unwrap(), "the other lease is still valid");
    store.activate(&activation(overlay, &b, 0.5, 1), LEASE, T0 + 600).await.unwrap();
    assert!(store.release(overlay, &b, ME, T0 + 1_001).await.unwrap(), "the crashed instance's lease expired");
}

fn random_instance(name: &str) -> String {
    format!("{name}-{}", Uuid::new_v4())
}

async fn dropping_a_silent_instance_ends_the_sessions_only_it_held(store: &dyn LiveStore) {
    let (crashed, alive) = (random_instance("crashed"), random_instance("alive"));
    let (crashed_lease, alive_lease) =
        (Lease { instance: &crashed, ttl_ms: 1_000 }, Lease { instance: &alive, ttl_ms: 30_000 });
    let (alone, alone_b) = (OverlayId::random(), random_broadcaster());
    let (shared, shared_b) = (OverlayId::random(), random_broadcaster());
    store.activate(&activation(alone, &alone_b, 0.5, 1), crashed_lease, T0).await.unwrap();
    store.activate(&activation(shared, &shared_b, 0.5, 1), crashed_lease, T0).await.unwrap();
    store.activate(&activation(shared, &shared_b, 0.5, 1), alive_lease, T0).await.unwrap();
    store.heartbeat(&crashed, 1_000, T0).await.unwrap();
    store.heartbeat(&alive, 30_000, T0).await.unwrap();

    assert!(!store.expired_instances(T0 + 999).await.unwrap().contains(&crashed), "beating until T0 + 1 s");
    let expired = store.expired_instances(T0 + 1_000).await.unwrap();
    assert!(expired.contains(&crashed) && !expired.contains(&alive), "{expired:?}");

    assert_eq!(store.drop_instance(&crashed, T0 + 1_000).await.unwrap(), vec![alone_b.clone()]);
    assert_eq!(store.session_for(&alone_b).await.unwrap(), None, "the session only it held ended");
    assert_eq!(read(store, alone, T0 + 1_000).await, None);
    assert_eq!(store.session_for(&shared_b).await.unwrap().map(|s| s.overlay), Some(shared), "a shared one stays");
    assert!(!store.expired_instances(T0 + 1_000).await.unwrap().contains(&crashed), "forgotten");
    assert_eq!(store.drop_instance(&crashed, T0 + 2_000).await.unwrap(), vec![], "nothing left to drop");
    assert!(store.release(shared, &shared_b, &alive, T0 + 2_000).await.unwrap(), "only the live lease was left");
}

async fn an_instance_that_beat_again_keeps_its_heartbeat_when_dropped(store: &dyn LiveStore) {
    let slow = random_instance("slow");
    let (overlay, b) = (OverlayId::random(), random_broadcaster());
    store.activate(&activation(overlay, &b, 0.5, 1), Lease { instance: &slow, ttl_ms: 1_000 }, T0).await.unwrap();
    store.heartbeat(&slow, 1_000, T0).await.unwrap();
    store.heartbeat(&slow, 1_000, T0 + 1_500).await.unwrap();

    assert!(!store.expired_instances(T0 + 1_600).await.unwrap().contains(&slow));
    // A drop decided on an older listing still gives up its leases…
    assert_eq!(store.drop_instance(&slow, T0 + 1_600).await.unwrap(), vec![b]);
    // …but the instance is not forgotten: its heartbeat ends when it says.
    assert!(store.expired_instances(T0 + 2_500).await.unwrap().contains(&slow));
    assert_eq!(store.drop_instance(&slow, T0 + 2_500).await.unwrap(), vec![]);
    assert!(!store.expired_instances(T0 + 2_500).await.unwrap().contains(&slow));
}

async fn renewal_extends_leases_and_reports_missing_sessions(store: &dyn LiveStore) {
    let short = Lease { instance: ME, ttl_ms: 1_000 };
    let (overlay, b) = (OverlayId::random(), random_broadcaster());
    store.activate(&activation(overlay, &b, 0.5, 1), short, T0).await.unwrap();
    let (gone, gone_b) = (OverlayId::random(), random_broadcaster());

    let missing = store.renew(&[(overlay, b.clone()), (gone, gone_b)], short, T0 + 900).await.unwrap();

    assert_eq!(missing, vec![gone]);
    let other = Lease { instance: "instance-b", ttl_ms: 1_000 };
    store.activate(&activation(overlay, &b, 0.5, 1), other, T0 + 1_000).await.unwrap();
    // Our lease now runs to T0 + 1_900, so releasing the other keeps the session.
    assert!(!store.release(overlay, &b, "instance-b", T0 + 1_500).await.unwrap());
    assert!(store.release(overlay, &b, "instance-b", T0 + 1_901).await.unwrap());
}

async fn renewal_maps_the_channel_to_its_session_again(store: &dyn LiveStore) {
    // A release elsewhere removed the channel's mapping while this session
    // lives (here: a second overlay of the channel came and went).
    let (overlay, b) = start(store, 0.5, T0).await;
    let passing = OverlayId::random();
    store.activate(&activation(passing, &b, 0.5, 1), LEASE, T0 + 10).await.unwrap();
    assert!(store.release(passing, &b, ME, T0 + 20).await.unwrap());
    assert_eq!(store.session_for(&b).await.unwrap().map(|s| s.overlay), None, "the mapping went with it");

    let missing = store.renew(&[(overlay, b.clone())], LEASE, T0 + 30).await.unwrap();

    assert!(missing.is_empty());
    assert_eq!(store.session_for(&b).await.unwrap().map(|s| s.overlay), Some(overlay), "votes find it again");
    assert_eq!(vote(store, overlay, "m1", "c1", For, T0 + 40).await, Applied(10.0));
}

async fn an_older_config_version_never_replaces_a_newer_one(store: &dyn LiveStore) {
    let (overlay, b) = (OverlayId::random(), random_broadcaster());
    store.activate(&activation(overlay, &b, 2.0, 5), LEASE, T0).await.unwrap();
    store.activate(&activation(overlay, &b, 0.5, 4), LEASE, T0).await.unwrap();
    let session = store.session_for(&b).await.unwrap().unwrap();
    assert_eq!((session.config_version, session.config.decay_speed.get()), (5, 2.0));
}

async fn activation_maps_the_broadcaster_and_reactivation_updates_the_config(store: &dyn LiveStore) {
    let (overlay, b) = (OverlayId::random(), random_broadcaster());
    store.activate(&activation(overlay, &b, 0.5, 1), LEASE, T0).await.unwrap();
    let expected = ActiveSession { overlay, config: config(0.5).into(), config_version: 1 };
    assert_eq!(store.session_for(&b).await.unwrap(), Some(expected));
    assert_eq!(vote(store, overlay, "m1", "c1", For, T0).await, Applied(10.0));

    // Same timestamp as the vote, so no decay question arises at re-activation.
    store.activate(&activation(overlay, &b, 2.0, 2), LEASE, T0).await.unwrap();
    let expected = ActiveSession { overlay, config: config(2.0).into(), config_version: 2 };
    assert_eq!(store.session_for(&b).await.unwrap(), Some(expected));
    assert_eq!(read(store, overlay, T0).await, Some(10.0), "value kept");
    assert_close(read(store, overlay, T0 + 1_500).await.unwrap(), decay(10.0, 1_500, 2.0));

    // A different overlay for the same channel takes over the mapping...
    let other = OverlayId::random();
    store.activate(&activation(other, &b, 1.0, 7), LEASE, T0 + 2_000).await.unwrap();
    let expected = ActiveSession { overlay: other, config: config(1.0).into(), config_version: 7 };
    assert_eq!(store.session_for(&b).await.unwrap(), Some(expected.clone()));
    // ...and releasing the old overlay leaves the new mapping alone.
    assert!(store.release(overlay, &b, ME, T0 + 2_000).await.unwrap());
    assert_eq!(store.session_for(&b).await.unwrap(), Some(expected));
    let snapshots = store.read_many(&[overlay, other], T0 + 2_000).await.unwrap();
    let centre = Snapshot {
        value: 0.0,
        status: SessionStatus::Active,
        model: MeterModel::Classic,
        weights: [0.0, 0.0],
        voters: 0,
        decay: 1.0,
    };
    assert_eq!(snapshots, vec![None, Some(centre)]);
}

async fn a_for_vote_moves_plus_ten_and_an_against_vote_minus_ten(store: &dyn LiveStore) {
    let (up, _) = start(store, 0.5, T0).await;
    let (down, _) = start(store, 0.5, T0).await;
    assert_eq!(vote(store, up, "m1", "c1", For, T0).await, Applied(10.0));
    assert_eq!(vote(store, down, "m2", "c2", Against, T0).await, Applied(-10.0));
    assert_eq!(read(store, up, T0).await, Some(10.0));
    assert_eq!(read(store, down, T0).await, Some(-10.0));
}

async fn the_value_decays_exponentially_and_votes_apply_to_the_decayed_value(store: &dyn LiveStore) {
    for k in [0.5, 2.0] {
        let (overlay, _) = start(store, k, T0).await;
        assert_eq!(vote(store, overlay, "m1", "c1", For, T0).await, Applied(10.0));
        for dt in [1, 250, 1_000, 2_500, 10_000] {
            assert_close(read(store, overlay, T0 + dt).await.unwrap(), decay(10.0, dt, k));
        }
        let dt = 1_700;
        let after = applied(vote(store, overlay, "m2", "c2", For, T0 + dt).await);
        assert_close(after, decay(10.0, dt, k) + 10.0);
        assert_close(read(store, overlay, T0 + dt + 300).await.unwrap(), decay(after, 300, k));
    }
}

async fn the_value_is_clamped_to_plus_and_minus_one_hundred(store: &dyn LiveStore) {
    for (dir, sign) in [(For, 1.0), (Against, -1.0)] {
        let (overlay, _) = start(store, 0.5, T0).await;
        for i in 1..=12 {
            let expected = sign * f64::min(10.0 * f64::from(i), 100.0);
            assert_eq!(vote(store, overlay, &format!("m{i}"), &format!("c{i}"), dir, T0).await, Applied(expected));
        }
        assert_eq!(read(store, overlay, T0).await, Some(sign * 100.0));
    }
}

async fn the_value_resets_to_zero_after_an_hour_without_votes(store: &dyn LiveStore) {
    let (overlay, _) = start(store, 0.1, T0).await;
    assert_eq!(vote(store, overlay, "m1", "c1", For, T0).await, Applied(10.0));
    // Exactly one hour still decays normally (10·e^−360 is tiny but positive).
    assert!(read(store, overlay, T0 + RESET_AFTER_MS).await.unwrap() > 0.0);
    assert_eq!(read(store, overlay, T0 + RESET_AFTER_MS + 1).await, Some(0.0));
    assert_eq!(vote(store, overlay, "m2", "c2", For, T0 + RESET_AFTER_MS + 1).await, Applied(10.0));
}

async fn a_repeated_message_id_is_a_duplicate_until_the_window_ends(store: &dyn LiveStore) {
    let (overlay, _) = start(store, 0.5, T0).await;
    assert_eq!(vote(store, overlay, "m1", "c1", For, T0).await, Applied(10.0));
    assert_eq!(vote(store, overlay, "m1", "c2", For, T0).await, Duplicate);
    assert_eq!(read(store, overlay, T0).await, Some(10.0), "a duplicate changes nothing");
    assert_eq!(vote(store, overlay, "m1", "c3", Against, T0 + DEDUP_MS - 1).await, Duplicate);
    let expected = decay(10.0, DEDUP_MS, 0.5) - 10.0;
    assert_close(applied(vote(store, overlay, "m1", "c4", Against, T0 + DEDUP_MS).await), expected);
}

/// EventSub messages other than chat (`claim_message`): one claim per id
/// within the de-duplication window, whichever instance asks.
async fn a_claimed_message_id_is_refused_until_the_window_ends_or_it_is_given_back(store: &dyn LiveStore) {
    let (m1, m2) = (Uuid::new_v4().to_string(), Uuid::new_v4().to_string());
    assert!(store.claim_message(&m1, T0).await.unwrap(), "the first claim");
    assert!(!store.claim_message(&m1, T0).await.unwrap(), "a redelivery");
    assert!(!store.claim_message(&m1, T0 + DEDUP_MS - 1).await.unwrap(), "still within ten minutes");
    assert!(store.claim_message(&m2, T0).await.unwrap(), "another id is its own");
    assert!(store.claim_message(&m1, T0 + DEDUP_MS).await.unwrap(), "the window has ended");
    store.unclaim_message(&m2).await.unwrap();
    assert!(store.claim_message(&m2, T0 + 1).await.unwrap(), "given back: claimable again");
    store.unclaim_message("never-claimed").await.unwrap();
}

async fn message_ids_are_de_duplicated_per_session(store: &dyn LiveStore) {
    let (first, _) = start(store, 0.5, T0).await;
    let (second, _) = start(store, 0.5, T0).await;
    assert_eq!(vote(store, first, "shared", "c1", For, T0).await, Applied(10.0));
    assert_eq!(vote(store, second, "shared", "c2", For, T0).await, Applied(10.0));
}

async fn a_chatter_is_debounced_for_one_second_per_session(store: &dyn LiveStore) {
    let (overlay, _) = start(store, 0.5, T0).await;
    let (other, _) = start(store, 0.5, T0).await;
    assert_eq!(vote(store, overlay, "m1", "alice", For, T0).await, Applied(10.0));
    assert_eq!(vote(store, overlay, "m2", "alice", For, T0 + 1).await, Debounced);
    assert_eq!(vote(store, overlay, "m3", "alice", For, T0 + DEBOUNCE_MS - 1).await, Debounced);
    // Other chatters, and the same chatter in another session, are independent.
    assert_close(applied(vote(store, overlay, "m4", "bob", For, T0 + 2).await), decay(10.0, 2, 0.5) + 10.0);
    assert_eq!(vote(store, other, "m5", "alice", Against, T0 + 2).await, Applied(-10.0));
    let before = read(store, overlay, T0 + DEBOUNCE_MS).await.unwrap();
    assert_close(applied(vote(store, overlay, "m6", "alice", For, T0 + DEBOUNCE_MS).await), before + 10.0);
    assert!(matches!(vote(store, overlay, "m7", "alice", For, T0 + 5 * DEBOUNCE_MS).await, Applied(_)));
}

/// Votes from fresh chatters at `now` until one is not applied; returns how
/// many were applied and the outcome that stopped it.
async fn drain(store: &dyn LiveStore, overlay: OverlayId, tag: &str, now: i64) -> (u32, VoteOutcome) {
    for n in 0..=SMALL_BUCKET {
        let outcome = vote(store, overlay, &format!("{tag}-m{n}"), &format!("{tag}_{n}"), For, now).await;
        if !matches!(outcome, Applied(_)) {
            return (n, outcome);
        }
    }
    panic!("more than {SMALL_BUCKET} votes applied at once");
}

async fn the_token_bucket_limits_votes_and_refills_over_time(store: &dyn LiveStore) {
    let (overlay, _) = start(store, 0.5, T0).await;
    assert_eq!(drain(store, overlay, "a", T0).await, (SMALL_BUCKET, RateLimited));
    // Refill is 60 per minute: one more token after one second.
    assert_eq!(drain(store, overlay, "b", T0 + 1_000).await, (1, RateLimited));
    assert_eq!(drain(store, overlay, "c", T0 + 3_000).await, (2, RateLimited));
}

async fn debounced_and_duplicate_votes_do_not_spend_tokens(store: &dyn LiveStore) {
    let (overlay, _) = start(store, 0.5, T0).await;
    assert_eq!(vote(store, overlay, "m1", "c1", For, T0).await, Applied(10.0));
    for i in 0..10 {
        assert_eq!(vote(store, overlay, "m1", &format!("d{i}"), For, T0).await, Duplicate);
        assert_eq!(vote(store, overlay, &format!("x{i}"), "c1", For, T0).await, Debounced);
    }
    assert_eq!(drain(store, overlay, "rest", T0).await, (SMALL_BUCKET - 1, RateLimited));
}

async fn a_rate_limited_vote_still_uses_its_message_id_and_debounce_slot(store: &dyn LiveStore) {
    let (overlay, _) = start(store, 0.5, T0).await;
    assert_eq!(drain(store, overlay, "a", T0).await, (SMALL_BUCKET, RateLimited));
    // The refused vote was "a-m5" from "a_5": its redelivery is a duplicate
    // (even after a refill), and its chatter is debounced for the second.
    assert_eq!(vote(store, overlay, "late", &format!("a_{SMALL_BUCKET}"), For, T0 + 500).await, Debounced);
    let redelivery = format!("a-m{SMALL_BUCKET}");
    assert_eq!(vote(store, overlay, &redelivery, "fresh", For, T0 + 2_000).await, Duplicate);
}

async fn token_buckets_are_per_session(store: &dyn LiveStore) {
    let (first, _) = start(store, 0.5, T0).await;
    let (second, _) = start(store, 0.5, T0).await;
    assert_eq!(drain(store, first, "a", T0).await, (SMALL_BUCKET, RateLimited));
    assert_eq!(drain(store, second, "a", T0).await, (SMALL_BUCKET, RateLimited));
}

async fn read_many_answers_in_request_order_with_none_for_inactive_sessions(store: &dyn LiveStore) {
    assert_eq!(store.read_many(&[], T0).await.unwrap(), vec![]);
    let speeds = [0.1, 0.5, 1.0, 2.0];
    let read_at = T0 + 2_000;
    let (mut request, mut expected) = (Vec::new(), Vec::new());
    // More than one batch of a standalone Redis read (256 sessions).
    for i in 0..600i32 {
        if i % 200 == 0 {
            request.push(OverlayId::random());
            expected.push(None);
        }
        let k = speeds[i as usize % speeds.len()];
        let (overlay, _) = start(store, k, T0).await;
        let (dir, delta) = if i % 2 == 0 { (For, 10.0) } else { (Against, -10.0) };
        let at = T0 + i64::from(i);
        assert_eq!(vote(store, overlay, "m", "c", dir, at).await, Applied(delta));
        request.push(overlay);
        expected.push(Some(decay(delta, read_at - at, k)));
    }
    let snapshots = store.read_many(&request, read_at).await.unwrap();
    assert_eq!(snapshots.len(), expected.len());
    assert_eq!(expected.iter().filter(|e| e.is_none()).count(), 3);
    for (i, (got, want)) in snapshots.iter().zip(&expected).enumerate() {
        match (got, want) {
            (None, None) => {}
            (Some(s), Some(v)) => {
                assert_eq!(s.status, SessionStatus::Active, "position {i}");
                assert_close(s.value, *v);
            }
            _ => panic!("position {i}: got {got:?}, expected {want:?}"),
        }
    }
}

async fn reset_centres_an_active_session_and_ignores_unknown_ones(store: &dyn LiveStore) {
    let (overlay, _) = start(store, 0.5, T0).await;
    assert_eq!(vote(store, overlay, "m1", "c1", For, T0).await, Applied(10.0));
    assert!(store.reset(overlay, T0 + 100).await.unwrap());
    assert_eq!(read(store, overlay, T0 + 100).await, Some(0.0));
    assert_eq!(
        vote(store, overlay, "m2", "c2", Against, T0 + 200).await,
        Applied(-10.0),
        "votes go on from the centre"
    );
    assert!(!store.reset(OverlayId::random(), T0).await.unwrap());
}

async fn going_live_centres_the_bar_and_the_status_is_read_back(store: &dyn LiveStore) {
    let (overlay, b) = start(store, 0.5, T0).await;
    assert_eq!(vote(store, overlay, "m1", "c1", For, T0).await, Applied(10.0));
    let status = |snapshots: Vec<Option<Snapshot>>| snapshots[0].map(|s| s.status);

    assert!(store.set_status(overlay, SessionStatus::Live, T0 + 100).await.unwrap());
    let read = store.read_many(&[overlay], T0 + 100).await.unwrap();
    assert_eq!(read[0].map(|s| s.value), Some(0.0), "each broadcast starts from the centre");
    assert_eq!(status(read), Some(SessionStatus::Live));

    assert_eq!(vote(store, overlay, "m2", "c2", For, T0 + 200).await, Applied(10.0));
    // Live again (a redelivered stream.online): the running stream keeps its bar.
    assert!(store.set_status(overlay, SessionStatus::Live, T0 + 250).await.unwrap());
    let read = store.read_many(&[overlay], T0 + 250).await.unwrap();
    assert!(read[0].is_some_and(|s| s.value > 9.0), "a repeated online keeps the value: {read:?}");
    assert!(store.set_status(overlay, SessionStatus::Offline, T0 + 300).await.unwrap());
    let read = store.read_many(&[overlay], T0 + 300).await.unwrap();
    assert!(read[0].is_some_and(|s| s.value > 9.0), "going offline keeps the value");
    assert_eq!(status(read), Some(SessionStatus::Offline));

    // A config update (re-activation) keeps the stream state.
    store.activate(&activation(overlay, &b, 0.5, 2), LEASE, T0 + 400).await.unwrap();
    assert_eq!(status(store.read_many(&[overlay], T0 + 400).await.unwrap()), Some(SessionStatus::Offline));
    assert!(!store.set_status(OverlayId::random(), SessionStatus::Live, T0).await.unwrap());
}

async fn a_disconnected_session_keeps_its_value_until_another_status_replaces_it(store: &dyn LiveStore) {
    let (overlay, b) = start(store, 0.5, T0).await;
    assert_eq!(vote(store, overlay, "m1", "c1", For, T0).await, Applied(10.0));

    assert!(store.set_status(overlay, SessionStatus::Disconnected, T0 + 100).await.unwrap());
    let read = store.read_many(&[overlay], T0 + 100).await.unwrap()[0].unwrap();
    assert_eq!(read.status, SessionStatus::Disconnected);
    assert_close(read.value, decay(10.0, 100, 0.5));

    // A config update (re-activation) keeps it; votes still count.
    store.activate(&activation(overlay, &b, 0.5, 2), LEASE, T0 + 200).await.unwrap();
    let read = store.read_many(&[overlay], T0 + 200).await.unwrap()[0].unwrap();
    assert_eq!(read.status, SessionStatus::Disconnected);
    let after = applied(vote(store, overlay, "m2", "c2", For, T0 + 300).await);
    assert_close(after, decay(10.0, 300, 0.5) + 10.0);

    assert!(store.set_status(overlay, SessionStatus::Active, T0 + 400).await.unwrap());
    let read = store.read_many(&[overlay], T0 + 400).await.unwrap()[0].unwrap();
    assert_eq!(read.status, SessionStatus::Active);
    assert_close(read.value, decay(after, 100, 0.5));
    assert!(!store.set_status(OverlayId::random(), SessionStatus::Disconnected, T0).await.unwrap());
}

/// A lease key of its own for each test (the deployment uses `cleanup:leader`).
fn leader_key() -> String {
    format!("test:leader:{}", Uuid::new_v4())
}

async fn one_instance_leads_until_its_lease_expires_and_the_holder_extends_it(store: &dyn LiveStore) {
    // Leases as long as the deployment's: a store may also let the keys
    // expire with the lease on its own clock, which this test does not move.
    const L: i64 = 30_000;
    let key = leader_key();
    assert!(store.lead(&key, "a", L, T0).await.unwrap(), "nobody held it");
    assert!(!store.lead(&key, "b", L, T0 + 15_000).await.unwrap(), "a holds it");
    assert!(store.lead(&key, "a", L, T0 + 27_000).await.unwrap(), "a extends to T0 + 57_000");
    assert!(!store.lead(&key, "b", L, T0 + 56_999).await.unwrap());
    assert!(store.lead(&key, "b", L, T0 + 57_000).await.unwrap(), "a's lease expired");
    assert!(!store.lead(&key, "a", L, T0 + 57_001).await.unwrap(), "b holds it now");
    assert!(store.lead(&key, "b", L, T0 + 57_001).await.unwrap());

    // Another key is another election.
    let other = leader_key();
    assert!(store.lead(&other, "a", L, T0 + 57_001).await.unwrap());
    assert!(!store.lead(&key, "a", L, T0 + 57_002).await.unwrap());

    // A lease as long as it gets.
    let forever = leader_key();
    assert!(store.lead(&forever, "a", i64::MAX, T0).await.unwrap());
    assert!(!store.lead(&forever, "b", L, T0 + RESET_AFTER_MS * 24 * 365).await.unwrap());
}

async fn resigning_frees_the_lease_only_for_its_holder(store: &dyn LiveStore) {
    let key = leader_key();
    store.resign(&key, "a").await.unwrap();
    assert!(store.lead(&key, "a", 30_000, T0).await.unwrap());
    store.resign(&key, "b").await.unwrap();
    assert!(!store.lead(&key, "b", 30_000, T0 + 1).await.unwrap(), "b did not hold it: nothing changed");
    store.resign(&key, "a").await.unwrap();
    assert!(store.lead(&key, "b", 30_000, T0 + 2).await.unwrap(), "free at once");
    assert!(!store.lead(&key, "a", 30_000, T0 + 3).await.unwrap());
}

async fn ping_succeeds(store: &dyn LiveStore) {
    store.ping().await.unwrap();
}

macro_rules! live_store_contract {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;
            live_store_contract!(@tests $make;
                a_vote_without_an_active_session_is_no_session => default_limits(),
                a_closed_bucket_holds_the_counted_votes_and_is_taken_once => default_limits(),
                a_vote_in_a_later_bucket_closes_the_current_one_and_test_votes_are_not_recorded => default_limits(),
                one_instance_takes_a_sessions_buckets_while_its_claim_lasts => default_limits(),
                history_outlives_the_release_of_its_session => default_limits(),
                releasing_the_last_lease_removes_the_session_but_keeps_de_duplication => default_limits(),
                a_session_lives_while_any_instance_holds_an_unexpired_lease => default_limits(),
                an_expired_lease_does_not_keep_a_session_alive => default_limits(),
                renewal_extends_leases_and_reports_missing_sessions => default_limits(),
                dropping_a_silent_instance_ends_the_sessions_only_it_held => default_limits(),
                an_instance_that_beat_again_keeps_its_heartbeat_when_dropped => default_limits(),
                renewal_maps_the_channel_to_its_session_again => default_limits(),
                an_older_config_version_never_replaces_a_newer_one => default_limits(),
                activation_maps_the_broadcaster_and_reactivation_updates_the_config => default_limits(),
                a_for_vote_moves_plus_ten_and_an_against_vote_minus_ten => default_limits(),
                the_value_decays_exponentially_and_votes_apply_to_the_decayed_value => default_limits(),
                the_value_is_clamped_to_plus_and_minus_one_hundred => default_limits(),
                the_value_resets_to_zero_after_an_hour_without_votes => default_limits(),
                a_repeated_message_id_is_a_duplicate_until_the_window_ends => default_limits(),
                message_ids_are_de_duplicated_per_session => default_limits(),
                a_claimed_message_id_is_refused_until_the_window_ends_or_it_is_given_back => default_limits(),
                a_chatter_is_debounced_for_one_second_per_session => default_limits(),
                the_token_bucket_limits_votes_and_refills_over_time => small_bucket(),
                debounced_and_duplicate_votes_do_not_spend_tokens => small_bucket(),
                a_rate_limited_vote_still_uses_its_message_id_and_debounce_slot => small_bucket(),
                token_buckets_are_per_session => small_bucket(),
                read_many_answers_in_request_order_with_none_for_inactive_sessions => default_limits(),
                reset_centres_an_active_session_and_ignores_unknown_ones => default_limits(),
                going_live_centres_the_bar_and_the_status_is_read_back => default_limits(),
                a_disconnected_session_keeps_its_value_until_another_status_replaces_it => default_limits(),
                one_instance_leads_until_its_lease_expires_and_the_holder_extends_it => default_limits(),
                resigning_frees_the_lease_only_for_its_holder => default_limits(),
                ping_succeeds => default_limits(),
            );
        }
    };
    (@tests $make:expr; $($name:ident => $limits:expr),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let make = $make;
            // `None`: this backend's server is not configured for this run.
            let Some((store, _guard)) = make($limits).await else { return };
            super::$name(store.as_ref()).await;
        }
    )*};
}

pub type Backend = Option<(Arc<dyn LiveStore>, ())>;

pub async fn memory(limits: VoteLimits) -> Backend {
    Some((Arc::new(MemoryLiveStore::new(limits)), ()))
}

/// A Redis store on the server named by `variable`. Unset: skipped, loudly.
/// Set but unreachable: the test fails.
pub async fn redis_backend(variable: &str, limits: VoteLimits) -> Option<Arc<RedisLiveStore>> {
    let Some(url) = crate::helpers::test_server_url(variable).await else {
        eprintln!("SKIPPED: {variable} is not set (make test sets it)");
        return None;
    };
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = chatpulse::metrics::Metrics::register(&mut registry);
    let store = RedisLiveStore::new(&RedisConnection::open(&url).unwrap(), limits, metrics);
    tokio::spawn(Arc::clone(&store).maintain());
    let reachable =
        crate::helpers::eventually(std::time::Duration::from_secs(15), || async { store.ping().await.is_ok() });
    assert!(reachable.await, "{variable}={url} is unreachable: {:?}", store.ping().await);
    Some(store)
}

pub async fn redis(limits: VoteLimits) -> Backend {
    redis_backend("TEST_REDIS_URL", limits).await.map(|s| (s as Arc<dyn LiveStore>, ()))
}

pub async fn redis_cluster(limits: VoteLimits) -> Backend {
    redis_backend("TEST_REDIS_CLUSTER_URL", limits).await.map(|s| (s as Arc<dyn LiveStore>, ()))
}

live_store_contract!(memory, memory);
live_store_contract!(redis, redis);
live_store_contract!(redis_cluster, redis_cluster);

/// `instances:{U}` keeps only unexpired leases: a renewal, an activation or a
/// release removes the entries of instances that stopped renewing.
#[tokio::test]
async fn redis_lease_hashes_lose_the_entries_of_leases_that_ended() {
    let Some(store) = redis_backend("TEST_REDIS_URL", default_limits()).await else { return };
    let url = crate::helpers::test_server_url("TEST_REDIS_URL").await.unwrap();
    let (overlay, b) = (OverlayId::random(), random_broadcaster());
    let key = format!("instances:{{{overlay}}}");
    let crashed = Lease { instance: "crashed", ttl_ms: 1_000 };
    store.activate(&activation(overlay, &b, 0.5, 1), crashed, T0).await.unwrap();
    store.activate(&activation(overlay, &b, 0.5, 1), LEASE, T0).await.unwrap();
    let fields = |raw: String| {
        let mut f: Vec<String> = raw.lines().map(str::to_owned).collect();
        f.sort();
        f
    };
    assert_eq!(fields(redis_cli(&url, &["HKEYS", &key]).await), ["crashed", ME]);
    store.renew(&[(overlay, b.clone())], LEASE, T0 + 999).await.unwrap();
    assert_eq!(fields(redis_cli(&url, &["HKEYS", &key]).await), ["crashed", ME], "not ended yet");
    store.renew(&[(overlay, b.clone())], LEASE, T0 + 1_000).await.unwrap();
    assert_eq!(fields(redis_cli(&url, &["HKEYS", &key]).await), [ME], "the ended lease is gone");
    // The instance lists the session as held, and no longer once released.
    let held = format!("{{instances}}:held:{ME}");
    let member = format!("{overlay} {b}");
    assert_eq!(redis_cli(&url, &["SISMEMBER", &held, &member]).await, "1");
    assert!(store.release(overlay, &b, ME, T0 + 2_000).await.unwrap());
    assert_eq!(redis_cli(&url, &["SISMEMBER", &held, &member]).await, "0");
}

/// The lease keys as ARCHITECTURE §5 names them: the lease key holds the
/// leader's instance id and expires with the lease; the lease's end sits
/// beside it. A lease written by an older library (one hash) keeps its
/// holder until it ends.
#[tokio::test]
async fn redis_lease_keys_hold_the_leaders_id_and_expire_with_the_lease() {
    let Some(store) = redis_backend("TEST_REDIS_URL", default_limits()).await else { return };
    let url = crate::helpers::test_server_url("TEST_REDIS_URL").await.unwrap();
    let key = leader_key();
    let until_key = format!("{{{key}}}:until");
    let now = chatpulse::now_ms();
    assert!(store.lead(&key, "instance-a", 30_000, now).await.unwrap());
    assert_eq!(redis_cli(&url, &["GET", &key]).await, "instance-a");
    assert_eq!(redis_cli(&url, &["GET", &until_key]).await, (now + 30_000).to_string());
    for k in [&key, &until_key] {
        let pttl: i64 = redis_cli(&url, &["PTTL", k]).await.parse().unwrap();
        assert!((1..=30_000).contains(&pttl), "{k} expires with the lease: {pttl}");
    }
    store.resign(&key, "instance-a").await.unwrap();
    assert_eq!(redis_cli(&url, &["EXISTS", &key, &until_key]).await, "0", "both gone");

    redis_cli(&url, &["HSET", &key, "instance", "instance-old", "until", &(now + 30_000).to_string()]).await;
    redis_cli(&url, &["PEXPIRE", &key, "90000"]).await;
    assert!(!store.lead(&key, "instance-b", 30_000, now + 1).await.unwrap(), "the old holder keeps its lease");
    assert_eq!(redis_cli(&url, &["GET", &key]).await, "instance-old", "rewritten as a string");
    store.resign(&key, "instance-b").await.unwrap();
    assert_eq!(redis_cli(&url, &["GET", &key]).await, "instance-old", "only the holder resigns");
    assert!(store.lead(&key, "instance-b", 30_000, now + 30_000).await.unwrap(), "until its lease ends");
    assert_eq!(redis_cli(&url, &["GET", &key]).await, "instance-b");
    store.resign(&key, "instance-b").await.unwrap();
}
