//! The `LiveStore` contract, continued: the balance meter, participation and
//! the instances' activity reports, on every backend (in-process, Redis, a
//! 3-master Redis Cluster), like `live_store.rs`; and garbage in the balance
//! fields of a Redis session, which must never propagate.

use std::sync::Arc;

use chatpulse::domain::meter::{BALANCE_PRIOR, VOTERS_WINDOW_MS, WEIGHT_MAX};
use chatpulse::domain::{BroadcasterId, ChatterId, Direction, MeterModel, OverlayConfig, OverlayId, SessionStatus};
use chatpulse::store::{
    ActivityReport, Lease, LiveStore, OutcomeBucket, OutcomeCounts, SessionActivation, Snapshot, VoteLimits,
    VoteOutcome, VoteRequest,
};
use uuid::Uuid;

use crate::live_store::{memory, redis, redis_backend, redis_cluster};

const T0: i64 = 1_700_000_000_000;
const LEASE: Lease<'static> = Lease { instance: "meter-a", ttl_ms: 30_000 };
const K: f64 = 0.5;

fn random_broadcaster() -> BroadcasterId {
    BroadcasterId::parse(&(Uuid::new_v4().as_u128() % 10u128.pow(18)).to_string()).unwrap()
}

fn config(model: MeterModel) -> OverlayConfig {
    OverlayConfig { model, ..OverlayConfig::classic() }
}

async fn start(store: &dyn LiveStore, model: MeterModel, version: i64) -> (OverlayId, BroadcasterId) {
    let (overlay, broadcaster) = (OverlayId::random(), random_broadcaster());
    activate(store, overlay, &broadcaster, model, version, T0).await;
    (overlay, broadcaster)
}

async fn activate(store: &dyn LiveStore, o: OverlayId, b: &BroadcasterId, model: MeterModel, version: i64, now: i64) {
    let activation =
        SessionActivation { overlay: o, broadcaster: b.clone(), config: config(model), config_version: version };
    store.activate(&activation, LEASE, now).await.unwrap();
}

async fn vote(store: &dyn LiveStore, overlay: OverlayId, who: &str, direction: Direction, now: i64) -> VoteOutcome {
    let chatter = ChatterId::parse(who).unwrap();
    let id = Uuid::new_v4().to_string();
    store
        .vote(&VoteRequest { overlay, message_id: &id, chatter: &chatter, direction, record: true }, now)
        .await
        .unwrap()
}

async fn read(store: &dyn LiveStore, overlay: OverlayId, now: i64) -> Snapshot {
    store.read_many(&[overlay], now).await.unwrap()[0].expect("an active session")
}

#[track_caller]
fn assert_close(actual: f64, expected: f64) {
    assert!((actual - expected).abs() < 1e-9, "got {actual}, expected {expected}");
}

async fn one_vote_moves_the_balance_by_a_quarter_and_busy_votes_pin_it(store: &dyn LiveStore) {
    let (overlay, _) = start(store, MeterModel::Balance, 1).await;
    assert_eq!(
        vote(store, overlay, "a", Direction::For, T0).await,
        VoteOutcome::Applied(100.0 / (1.0 + BALANCE_PRIOR))
    );
    let s = read(store, overlay, T0).await;
    assert_eq!((s.model, s.weights, s.voters), (MeterModel::Balance, [1.0, 0.0], 1));
    // Twenty more chatters agree at once: F = 21.
    for i in 0..20 {
        vote(store, overlay, &format!("c{i}"), Direction::For, T0).await;
    }
    assert_close(read(store, overlay, T0).await.value, 100.0 * 21.0 / (21.0 + BALANCE_PRIOR));
    // One against, two seconds later: both counts decayed first.
    let f = 21.0 * (-K * 2.0f64).exp();
    let applied = vote(store, overlay, "z", Direction::Against, T0 + 2_000).await;
    let VoteOutcome::Applied(value) = applied else { panic!("{applied:?}") };
    assert_close(value, 100.0 * (f - 1.0) / (f + 1.0 + BALANCE_PRIOR));
    let s = read(store, overlay, T0 + 2_000).await;
    assert_close(s.weights[0], f);
    assert_close(s.weights[1], 1.0);
    assert_eq!(s.voters, 22);
}

async fn the_balance_decays_back_to_the_centre(store: &dyn LiveStore) {
    let (overlay, _) = start(store, MeterModel::Balance, 1).await;
    for i in 0..10 {
        vote(store, overlay, &format!("c{i}"), Direction::Against, T0).await;
    }
    let at = |ms: i64| {
        100.0 * -10.0 * (-K * ms as f64 / 1000.0).exp() / (10.0 * (-K * ms as f64 / 1000.0).exp() + BALANCE_PRIOR)
    };
    for ms in [1_000, 5_000, 20_000] {
        assert_close(read(store, overlay, T0 + ms).await.value, at(ms));
    }
    assert_eq!(read(store, overlay, T0 + 3_600_001).await.value, 0.0, "nothing after an hour");
}

async fn both_models_follow_the_same_votes_and_a_switch_shows_the_other_view(store: &dyn LiveStore) {
    let (overlay, b) = start(store, MeterModel::Classic, 1).await;
    for (i, direction) in [Direction::For, Direction::For, Direction::Against].into_iter().enumerate() {
        vote(store, overlay, &format!("c{i}"), direction, T0).await;
    }
    let classic = read(store, overlay, T0).await;
    assert_eq!((classic.value, classic.model), (10.0, MeterModel::Classic));
    assert_eq!(classic.weights, [2.0, 1.0], "the balance counts are kept on the classic meter too");
    activate(store, overlay, &b, MeterModel::Balance, 2, T0).await;
    let balance = read(store, overlay, T0).await;
    assert_close(balance.value, 100.0 * 1.0 / (3.0 + BALANCE_PRIOR));
    assert_eq!(balance.model, MeterModel::Balance);
    // An older config version (classic) does not switch it back.
    activate(store, overlay, &b, MeterModel::Classic, 1, T0).await;
    assert_eq!(read(store, overlay, T0).await.model, MeterModel::Balance);
}

async fn resetting_or_going_live_centres_both_meters(store: &dyn LiveStore) {
    let (overlay, _) = start(store, MeterModel::Balance, 1).await;
    vote(store, overlay, "a", Direction::For, T0).await;
    assert!(store.reset(overlay, T0 + 10).await.unwrap());
    let s = read(store, overlay, T0 + 10).await;
    assert_eq!((s.value, s.weights), (0.0, [0.0, 0.0]));
    vote(store, overlay, "b", Direction::Against, T0 + 2_000).await;
    assert!(store.set_status(overlay, SessionStatus::Live, T0 + 2_000).await.unwrap());
    let s = read(store, overlay, T0 + 2_000).await;
    assert_eq!((s.value, s.weights, s.status), (0.0, [0.0, 0.0], SessionStatus::Live));
    assert_eq!(s.voters, 2, "participation is not the bar: it stays");
}

async fn participation_counts_distinct_recent_voters(store: &dyn LiveStore) {
    let (overlay, _) = start(store, MeterModel::Balance, 1).await;
    vote(store, overlay, "a", Direction::For, T0).await;
    vote(store, overlay, "b", Direction::Against, T0 + 10_000).await;
    // "a" again, after the debounce: still one voter.
    vote(store, overlay, "a", Direction::For, T0 + 20_000).await;
    assert_eq!(read(store, overlay, T0 + 20_000).await.voters, 2);
    // A vote a window after "b"'s: "b" no longer counts, "a" (at +20 s) does.
    vote(store, overlay, "c", Direction::For, T0 + 10_000 + VOTERS_WINDOW_MS).await;
    assert_eq!(read(store, overlay, T0 + 10_000 + VOTERS_WINDOW_MS).await.voters, 2);
    // A minute after the last counted vote: nobody.
    assert_eq!(read(store, overlay, T0 + 10_000 + 2 * VOTERS_WINDOW_MS).await.voters, 0);
    // Refused votes do not count.
    let (other, _) = start(store, MeterModel::Balance, 1).await;
    vote(store, other, "a", Direction::For, T0).await;
    assert_eq!(vote(store, other, "a", Direction::For, T0 + 10).await, VoteOutcome::Debounced);
    assert_eq!(read(store, other, T0 + 10).await.voters, 1);
}

fn report(instance: &str, written_ms: i64, overlays: u32, applied: u32) -> ActivityReport {
    ActivityReport {
        instance: instance.to_owned(),
        written_ms,
        overlays,
        previews: 1,
        last_chat_ms: Some(written_ms - 5),
        last_vote_ms: None,
        buckets: vec![OutcomeBucket {
            start_ms: written_ms - 1_000,
            counts: OutcomeCounts { applied, ..Default::default() },
        }],
    }
}

async fn each_instance_keeps_its_latest_activity_report_for_a_while(store: &dyn LiveStore) {
    let (b, other) = (random_broadcaster(), random_broadcaster());
    store.report_activity(&b, &report("one", T0, 1, 3)).await.unwrap();
    store.report_activity(&b, &report("two", T0 + 5, 2, 4)).await.unwrap();
    store.report_activity(&b, &report("one", T0 + 10, 0, 7)).await.unwrap();
    let mut reports = store.activity_reports(&b, T0 + 20).await.unwrap();
    reports.sort_by(|x, y| x.instance.cmp(&y.instance));
    assert_eq!(reports, vec![report("one", T0 + 10, 0, 7), report("two", T0 + 5, 2, 4)]);
    assert!(store.activity_reports(&other, T0 + 20).await.unwrap().is_empty(), "per channel");
    let late = T0 + 5 + chatpulse::store::ACTIVITY_REPORT_TTL_MS + 1;
    let left = store.activity_reports(&b, late).await.unwrap();
    assert_eq!(left.iter().map(|r| r.instance.as_str()).collect::<Vec<_>>(), ["one"], "old reports are dropped");
}

macro_rules! meter_contract {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;
            meter_contract!(@tests $make;
                one_vote_moves_the_balance_by_a_quarter_and_busy_votes_pin_it,
                the_balance_decays_back_to_the_centre,
                both_models_follow_the_same_votes_and_a_switch_shows_the_other_view,
                resetting_or_going_live_centres_both_meters,
                participation_counts_distinct_recent_voters,
                each_instance_keeps_its_latest_activity_report_for_a_while,
            );
        }
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let Some((store, _guard)) = $make(VoteLimits::default()).await else { return };
            super::$name(store.as_ref()).await;
        }
    )*};
}

meter_contract!(memory, memory);
meter_contract!(redis, redis);
meter_contract!(redis_cluster, redis_cluster);

/// Garbage in a session's balance fields, participation fields or model reads
/// as safe values (no counts, classic, no voters) and is overwritten by the
/// next vote, in the Lua vote and the Rust read alike.
#[tokio::test]
async fn garbage_balance_fields_never_propagate() {
    use fred::prelude::{Builder, ClientLike, Config as RedisConfig, HashesInterface};
    let Some(store) = redis_backend("TEST_REDIS_URL", VoteLimits::default()).await else { return };
    let url = crate::helpers::test_server_url("TEST_REDIS_URL").await.unwrap();
    let raw = Builder::from_config(RedisConfig::from_url(&url).unwrap()).build().unwrap();
    raw.init().await.unwrap();
    let store: Arc<dyn LiveStore> = store;
    for garbage in ["banana", "nan", "inf", "-5", "1e999", "1e300", ""] {
        let (overlay, b) = start(store.as_ref(), MeterModel::Balance, 1).await;
        let key = format!("session:{{{overlay}}}");
        let fields =
            vec![("for_weight", garbage), ("against_weight", garbage), ("voters", garbage), ("voters_at", garbage)];
        let _: () = raw.hset(&key, fields).await.unwrap();
        let s = read(store.as_ref(), overlay, T0).await;
        let expected = if garbage == "1e300" { [WEIGHT_MAX, WEIGHT_MAX] } else { [0.0, 0.0] };
        assert_eq!((s.weights, s.voters), (expected, 0), "{garbage:?}");
        assert!(s.value.is_finite() && (-100.0..=100.0).contains(&s.value), "{garbage:?}: {}", s.value);
        let applied = vote(store.as_ref(), overlay, "a", Direction::For, T0).await;
        let VoteOutcome::Applied(value) = applied else { panic!("{garbage:?}: {applied:?}") };
        let f = (expected[0] + 1.0).min(WEIGHT_MAX);
        assert_close(value, (100.0 * (f - expected[1]) / (f + expected[1] + BALANCE_PRIOR)).clamp(-100.0, 100.0));
        assert_eq!(read(store.as_ref(), overlay, T0).await.voters, 1, "{garbage:?}");
        let _: () = raw.hset(&key, vec![("model", garbage)]).await.unwrap();
        assert_eq!(read(store.as_ref(), overlay, T0).await.model, MeterModel::Classic, "{garbage:?}: an unknown model");
        assert!(store.release(overlay, &b, LEASE.instance, T0).await.unwrap());
    }
    raw.quit().await.unwrap();
}
