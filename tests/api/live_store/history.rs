//! The history part of the `LiveStore` contract: counted votes accumulate in
//! the session's 10-second bucket (test votes do not), and each closed
//! bucket is taken exactly once, by one instance at a time.

use chatpulse::domain::history::BucketCounters;

use super::*;

const OTHER: &str = "instance-b";
const CLAIM_MS: i64 = 10_000;

fn close_to(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

async fn applied(store: &dyn LiveStore, overlay: OverlayId, msg: &str, who: &str, dir: Direction, now: i64) -> f64 {
    match vote(store, overlay, msg, who, dir, now).await {
        Applied(v) => v,
        other => panic!("vote {msg} not applied: {other:?}"),
    }
}

async fn take(store: &dyn LiveStore, overlay: OverlayId, instance: &str, now: i64) -> Vec<BucketCounters> {
    let taken = store.take_buckets(&[overlay], instance, CLAIM_MS, now).await.unwrap();
    assert!(taken.len() <= 1);
    taken
        .into_iter()
        .flat_map(|(o, b)| {
            assert_eq!(o, overlay);
            b
        })
        .collect()
}

pub(super) async fn a_closed_bucket_holds_the_counted_votes_and_is_taken_once(store: &dyn LiveStore) {
    let (overlay, _) = start(store, 0.5, T0).await;
    let v1 = applied(store, overlay, "m1", "alice", For, T0 + 100).await;
    let v2 = applied(store, overlay, "m2", "bob", Against, T0 + 2_000).await;
    assert_eq!(vote(store, overlay, "m2", "carol", For, T0 + 2_100).await, Duplicate);
    assert_eq!(vote(store, overlay, "m3", "bob", For, T0 + 2_500).await, Debounced);
    let v3 = applied(store, overlay, "m4", "alice", For, T0 + 3_500).await;
    assert!(take(store, overlay, ME, T0 + 9_999).await.is_empty(), "the bucket is not over yet");

    let taken = take(store, overlay, ME, T0 + 10_000).await;
    assert_eq!(taken.len(), 1, "{taken:?}");
    let b = taken[0];
    assert_eq!((b.start_ms, b.votes_for, b.votes_against, b.voters), (T0, 2, 1, 2));
    assert!(close_to(b.value_open, 0.0), "opened at the centre: {b:?}");
    assert!(close_to(b.value_close, v3), "{b:?} vs {v3}");
    for v in [0.0, v1, v2, v3] {
        assert!(b.value_min <= v + 1e-9 && v - 1e-9 <= b.value_max, "{v} within {b:?}");
    }
    assert!(close_to(b.value_max, v1.max(v3)), "{b:?}");
    assert!(take(store, overlay, ME, T0 + 60_000).await.is_empty(), "taken once");
}

pub(super) async fn a_vote_in_a_later_bucket_closes_the_current_one_and_test_votes_are_not_recorded(
    store: &dyn LiveStore,
) {
    let (overlay, _) = start(store, 0.5, T0).await;
    applied(store, overlay, "m1", "alice", For, T0 + 1_000).await;
    let who = chatter("tester");
    let unrecorded = VoteRequest { overlay, message_id: "t1", chatter: &who, direction: Against, record: false };
    assert!(matches!(store.vote(&unrecorded, T0 + 1_500).await.unwrap(), Applied(_)), "a test vote moves the bar");
    let later = applied(store, overlay, "m2", "bob", Against, T0 + 25_000).await;

    let taken = take(store, overlay, ME, T0 + 25_001).await;
    assert_eq!(
        taken.iter().map(|b| (b.start_ms, b.votes_for, b.votes_against, b.voters)).collect::<Vec<_>>(),
        vec![(T0, 1, 0, 1)]
    );
    let last = take(store, overlay, ME, T0 + 30_000).await;
    assert_eq!(last.len(), 1);
    assert_eq!((last[0].start_ms, last[0].votes_against), (T0 + 20_000, 1));
    assert!(close_to(last[0].value_close, later));

    // A session with only test votes has no history.
    let (quiet, _) = start(store, 0.5, T0).await;
    let unrecorded = VoteRequest { overlay: quiet, message_id: "t2", chatter: &who, direction: For, record: false };
    store.vote(&unrecorded, T0 + 100).await.unwrap();
    assert!(take(store, quiet, ME, T0 + 60_000).await.is_empty());
}

pub(super) async fn one_instance_takes_a_sessions_buckets_while_its_claim_lasts(store: &dyn LiveStore) {
    let (overlay, _) = start(store, 0.5, T0).await;
    assert!(take(store, overlay, ME, T0).await.is_empty(), "claims the session, nothing to take yet");
    applied(store, overlay, "m1", "alice", For, T0 + 1_000).await;
    assert!(take(store, overlay, OTHER, T0 + CLAIM_MS - 1).await.is_empty(), "claimed by the other instance");
    let mine = take(store, overlay, ME, T0 + CLAIM_MS - 1).await;
    assert!(mine.is_empty(), "the bucket is not over at {}", CLAIM_MS - 1);
    // ME's claim now lasts until T0 + 2·CLAIM_MS - 1.
    applied(store, overlay, "m2", "bob", For, T0 + 11_000).await;
    assert!(take(store, overlay, OTHER, T0 + 2 * CLAIM_MS - 2).await.is_empty());
    let theirs = take(store, overlay, OTHER, T0 + 2 * CLAIM_MS).await;
    assert_eq!(
        theirs.iter().map(|b| b.start_ms).collect::<Vec<_>>(),
        vec![T0, T0 + 10_000],
        "after ME's claim ran out"
    );
    assert!(take(store, overlay, ME, T0 + 2 * CLAIM_MS + 1).await.is_empty(), "OTHER holds it now, and all is taken");

    // Sessions without history are left out of the answer.
    let (idle, _) = start(store, 0.5, T0).await;
    let all = store.take_buckets(&[idle, overlay], ME, CLAIM_MS, T0 + 100_000).await.unwrap();
    assert!(all.is_empty(), "{all:?}");
}

pub(super) async fn history_outlives_the_release_of_its_session(store: &dyn LiveStore) {
    let (overlay, broadcaster) = start(store, 0.5, T0).await;
    applied(store, overlay, "m1", "alice", For, T0 + 1_000).await;
    assert!(store.release(overlay, &broadcaster, ME, T0 + 2_000).await.unwrap());
    let taken = take(store, overlay, ME, T0 + 10_000).await;
    assert_eq!(taken.iter().map(|b| (b.start_ms, b.votes_for)).collect::<Vec<_>>(), vec![(T0, 1)]);
}
