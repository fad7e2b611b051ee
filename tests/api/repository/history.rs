//! The stream-history part of the `Repository` contract: streams, history
//! buckets, moments and the retention sweep. Each test creates its own
//! streamers and only looks at their rows.

use chatpulse::domain::history::{
    ActionOutcome, ActionStatus, HistoryBucket, Moment, MomentAction, MomentDetail, MomentFilter, MomentId, MomentKind,
    Page, StreamEnd, StreamId,
};
use time::Duration as TimeDuration;

use super::*;

/// A whole-second instant `secs` after a base in 2025 (after anything the
/// retention test deletes).
fn at(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_750_000_000 + secs).unwrap()
}

fn bucket(streamer: StreamerId, start: OffsetDateTime, votes_for: u32, close: f64) -> HistoryBucket {
    HistoryBucket {
        streamer,
        stream: None,
        start,
        value_open: 0.0,
        value_close: close,
        value_min: close.min(0.0),
        value_max: close.max(0.0),
        votes_for,
        votes_against: 1,
        voters: votes_for.min(3),
    }
}

fn moment(streamer: StreamerId, at: OffsetDateTime, kind: MomentKind) -> Moment {
    let detail = match kind {
        MomentKind::Burst => MomentDetail::Burst { rate: 4.5, baseline_mean: 0.3, baseline_stddev: 0.1 },
        MomentKind::Swing => MomentDetail::Swing { from: 62.5, to: -51.25, millis: 10_000 },
    };
    Moment {
        id: MomentId::generate(),
        streamer,
        stream: None,
        at,
        kind,
        detail,
        marker: ActionOutcome::status(ActionStatus::Pending),
        clip: ActionOutcome::status(ActionStatus::NoScope),
    }
}

pub(super) async fn a_stream_is_opened_once_per_twitch_stream_and_closed_once(repo: &dyn Repository) {
    let s = repo.create_streamer(&new_streamer()).await.unwrap().streamer;
    let opened = repo.open_stream(s.id, Some("40001"), at(0)).await.unwrap();
    assert!(opened.created);
    assert_eq!(opened.closed, None);
    let stream = opened.stream.clone();
    assert_eq!((stream.streamer, stream.twitch_stream_id.as_deref(), stream.started_at), (s.id, Some("40001"), at(0)));
    assert!(stream.is_open());
    assert_eq!(repo.stream(s.id, stream.id).await.unwrap(), Some(stream.clone()));

    let again = repo.open_stream(s.id, Some("40001"), at(5)).await.unwrap();
    assert_eq!((again.created, &again.stream, again.closed), (false, &stream, None), "a redelivery changes nothing");
    let without_id = repo.open_stream(s.id, None, at(6)).await.unwrap();
    assert_eq!((without_id.created, &without_id.stream), (false, &stream), "the open stream is the one");

    let closed = repo.close_stream(s.id, at(3_600), StreamEnd::Offline).await.unwrap().unwrap();
    assert_eq!((closed.id, closed.ended_at, closed.ended_by), (stream.id, Some(at(3_600)), Some(StreamEnd::Offline)));
    assert_eq!(repo.stream(s.id, stream.id).await.unwrap(), Some(closed.clone()));
    assert_eq!(repo.close_stream(s.id, at(3_700), StreamEnd::Offline).await.unwrap(), None, "nothing open");
    let late = repo.open_stream(s.id, Some("40001"), at(3_800)).await.unwrap();
    assert_eq!((late.created, &late.stream), (false, &closed), "a late redelivery does not reopen it");
}

pub(super) async fn a_new_stream_closes_the_one_left_open_and_open_streams_are_listed(repo: &dyn Repository) {
    let s = repo.create_streamer(&new_streamer()).await.unwrap().streamer;
    let first = repo.open_stream(s.id, Some("1"), at(0)).await.unwrap().stream;
    let second = repo.open_stream(s.id, Some("2"), at(100)).await.unwrap();
    assert!(second.created);
    let closed = second.closed.expect("the first stream is closed");
    assert_eq!(
        (closed.id, closed.ended_at, closed.ended_by),
        (first.id, Some(at(100)), Some(StreamEnd::Reconciliation))
    );

    let open: Vec<_> = repo.open_streams().await.unwrap().into_iter().filter(|(st, _)| st.streamer == s.id).collect();
    assert_eq!(open, vec![(second.stream.clone(), s.twitch_user_id.clone())]);

    // Closing never ends a stream before it started.
    let ended = repo.close_stream(s.id, at(50), StreamEnd::Reconciliation).await.unwrap().unwrap();
    assert_eq!(ended.ended_at, Some(at(100)));
    assert!(repo.open_streams().await.unwrap().iter().all(|(st, _)| st.streamer != s.id));
}

pub(super) async fn opening_a_stream_for_an_unknown_streamer_is_not_found(repo: &dyn Repository) {
    let unknown = StreamerId::generate();
    let result = repo.open_stream(unknown, Some("9"), at(0)).await;
    assert!(matches!(result, Err(RepositoryError::NotFound(_))), "got {result:?}");
    assert_eq!(repo.streams_of(unknown, Page::new(1, 10)).await.unwrap().total, 0);
    assert_eq!(repo.close_stream(unknown, at(1), StreamEnd::Offline).await.unwrap(), None);
}

pub(super) async fn streams_are_listed_newest_first_in_pages_and_only_the_streamers_own(repo: &dyn Repository) {
    let s = repo.create_streamer(&new_streamer()).await.unwrap().streamer;
    let other = repo.create_streamer(&new_streamer()).await.unwrap().streamer;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(repo.open_stream(s.id, Some(&format!("{i}")), at(i * 1_000)).await.unwrap().stream.id);
    }
    repo.open_stream(other.id, Some("0"), at(0)).await.unwrap();
    ids.reverse();
    let first = repo.streams_of(s.id, Page::new(1, 2)).await.unwrap();
    assert_eq!(first.total, 5);
    assert_eq!(first.items.iter().map(|st| st.id).collect::<Vec<_>>(), ids[..2].to_vec());
    let last = repo.streams_of(s.id, Page::new(3, 2)).await.unwrap();
    assert_eq!(last.items.iter().map(|st| st.id).collect::<Vec<_>>(), ids[4..].to_vec());
    assert!(repo.streams_of(s.id, Page::new(4, 2)).await.unwrap().items.is_empty());
    assert_eq!(repo.stream(other.id, ids[0]).await.unwrap(), None, "another streamer's stream is not found");
    assert_eq!(repo.stream(s.id, StreamId::generate()).await.unwrap(), None);
}

pub(super) async fn a_bucket_is_written_once_and_tagged_with_the_stream_open_at_its_start(repo: &dyn Repository) {
    let s = repo.create_streamer(&new_streamer()).await.unwrap().streamer;
    let stream = repo.open_stream(s.id, Some("77"), at(1_005)).await.unwrap().stream;
    let before = bucket(s.id, at(980), 1, 5.0);
    let straddling = bucket(s.id, at(1_000), 2, 20.0);
    let inside = HistoryBucket { value_min: -12.5, votes_against: 4, ..bucket(s.id, at(1_010), 7, 35.5) };
    let stranger = bucket(StreamerId::generate(), at(1_000), 1, 1.0);
    let written = repo.save_buckets(&[before.clone(), straddling.clone(), inside.clone(), stranger]).await.unwrap();
    assert_eq!(written, 3, "the unknown streamer's bucket is skipped");

    let changed = HistoryBucket { value_close: -90.0, votes_for: 99, ..inside.clone() };
    assert_eq!(repo.save_buckets(&[changed.clone(), changed]).await.unwrap(), 0, "written once");

    let tagged = |b: &HistoryBucket| HistoryBucket { stream: Some(stream.id), ..b.clone() };
    assert_eq!(repo.stream_buckets(s.id, stream.id).await.unwrap(), vec![tagged(&straddling), tagged(&inside)]);
    assert_eq!(
        repo.buckets(s.id, at(980), at(1_010)).await.unwrap(),
        vec![before, tagged(&straddling)],
        "[from, to), oldest first"
    );
    let other = repo.create_streamer(&new_streamer()).await.unwrap().streamer;
    assert!(repo.stream_buckets(other.id, stream.id).await.unwrap().is_empty());
    assert_eq!(repo.save_buckets(&[]).await.unwrap(), 0);

    // A stream given explicitly is kept; another streamer's stream is not.
    let theirs = repo.open_stream(other.id, Some("5"), at(0)).await.unwrap().stream;
    let given = HistoryBucket { stream: Some(theirs.id), ..bucket(s.id, at(2_000), 1, 1.0) };
    repo.save_buckets(&[given]).await.unwrap();
    let read = repo.buckets(s.id, at(2_000), at(2_010)).await.unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].stream, None);
}

pub(super) async fn moments_are_stored_listed_newest_first_and_their_outcomes_recorded(repo: &dyn Repository) {
    let s = repo.create_streamer(&new_streamer()).await.unwrap().streamer;
    let stream = repo.open_stream(s.id, Some("3"), at(0)).await.unwrap().stream;
    let burst = Moment { stream: Some(stream.id), ..moment(s.id, at(10), MomentKind::Burst) };
    let swing = Moment { stream: Some(stream.id), ..moment(s.id, at(20), MomentKind::Swing) };
    let loose = moment(s.id, at(5_000), MomentKind::Burst);
    for m in [&burst, &swing, &loose] {
        repo.save_moment(m).await.unwrap();
    }
    let all = repo.moments_of(s.id, &MomentFilter::default(), Page::new(1, 10)).await.unwrap();
    assert_eq!(all.total, 3);
    assert_eq!(all.items, vec![loose.clone(), swing.clone(), burst.clone()]);

    let of_stream = MomentFilter { stream: Some(stream.id), ..MomentFilter::default() };
    let page = repo.moments_of(s.id, &of_stream, Page::new(2, 1)).await.unwrap();
    assert_eq!((page.total, page.items), (2, vec![burst.clone()]));
    let range = MomentFilter { from: Some(at(10)), to: Some(at(20)), stream: None };
    assert_eq!(repo.moments_of(s.id, &range, Page::new(1, 10)).await.unwrap().items, vec![burst.clone()]);

    let created = ActionOutcome::created("marker-123");
    assert!(repo.set_moment_action(burst.id, MomentAction::Marker, &created).await.unwrap());
    let failed = ActionOutcome::failed("403: missing scope");
    assert!(repo.set_moment_action(burst.id, MomentAction::Clip, &failed).await.unwrap());
    assert!(!repo.set_moment_action(MomentId::generate(), MomentAction::Clip, &failed).await.unwrap());
    let read = repo.moments_of(s.id, &of_stream, Page::new(2, 1)).await.unwrap().items;
    assert_eq!(read, vec![Moment { marker: created, clip: failed, ..burst.clone() }]);

    let other = repo.create_streamer(&new_streamer()).await.unwrap().streamer;
    assert_eq!(repo.moments_of(other.id, &MomentFilter::default(), Page::new(1, 10)).await.unwrap().total, 0);
}

pub(super) async fn a_moment_of_an_unknown_streamer_or_a_taken_id_is_refused(repo: &dyn Repository) {
    let unknown = moment(StreamerId::generate(), at(0), MomentKind::Swing);
    let result = repo.save_moment(&unknown).await;
    assert!(matches!(result, Err(RepositoryError::NotFound(_))), "got {result:?}");

    let s = repo.create_streamer(&new_streamer()).await.unwrap().streamer;
    let m = moment(s.id, at(0), MomentKind::Swing);
    repo.save_moment(&m).await.unwrap();
    let twice = repo.save_moment(&Moment { at: at(9), ..m.clone() }).await;
    assert!(matches!(twice, Err(RepositoryError::Conflict(_))), "got {twice:?}");
    assert_eq!(repo.moments_of(s.id, &MomentFilter::default(), Page::new(1, 10)).await.unwrap().items, vec![m]);
}

pub(super) async fn the_retention_sweep_deletes_only_what_is_older_than_the_cutoff(repo: &dyn Repository) {
    // In 2001, before any other test's rows.
    let old = |secs: i64| OffsetDateTime::from_unix_timestamp(978_307_200 + secs).unwrap();
    let s = repo.create_streamer(&new_streamer()).await.unwrap().streamer;
    let ended = repo.open_stream(s.id, Some("a"), old(0)).await.unwrap().stream;
    repo.close_stream(s.id, old(100), StreamEnd::Offline).await.unwrap();
    let kept = repo.open_stream(s.id, Some("b"), old(150)).await.unwrap().stream;
    repo.close_stream(s.id, old(300), StreamEnd::Offline).await.unwrap();
    let open = repo.open_stream(s.id, Some("c"), old(10)).await.unwrap().stream;
    repo.save_buckets(&[bucket(s.id, old(0), 1, 1.0), bucket(s.id, old(190), 1, 1.0), bucket(s.id, old(200), 1, 1.0)])
        .await
        .unwrap();
    for secs in [0, 199, 200] {
        repo.save_moment(&moment(s.id, old(secs), MomentKind::Burst)).await.unwrap();
    }

    let deleted = repo.delete_history_before(old(200)).await.unwrap();
    assert_eq!((deleted.streams, deleted.buckets, deleted.moments), (1, 2, 2));
    assert_eq!(repo.stream(s.id, ended.id).await.unwrap(), None);
    assert!(repo.stream(s.id, kept.id).await.unwrap().is_some(), "ended after the cutoff");
    assert!(repo.stream(s.id, open.id).await.unwrap().is_some(), "open streams stay");
    let left = repo.buckets(s.id, old(0), old(0) + TimeDuration::days(1)).await.unwrap();
    assert_eq!(left.iter().map(|b| b.start).collect::<Vec<_>>(), vec![old(200)]);
    let moments = repo.moments_of(s.id, &MomentFilter::default(), Page::new(1, 10)).await.unwrap();
    assert_eq!(moments.items.iter().map(|m| m.at).collect::<Vec<_>>(), vec![old(200)]);
}

pub(super) async fn removing_a_streamer_removes_their_history(repo: &dyn Repository) {
    let s = repo.create_streamer(&new_streamer()).await.unwrap().streamer;
    let stream = repo.open_stream(s.id, Some("z"), at(0)).await.unwrap().stream;
    repo.save_buckets(&[bucket(s.id, at(0), 1, 1.0)]).await.unwrap();
    repo.save_moment(&moment(s.id, at(0), MomentKind::Burst)).await.unwrap();
    assert!(repo.remove_streamer(&s.twitch_user_id).await.unwrap());
    assert_eq!(repo.stream(s.id, stream.id).await.unwrap(), None);
    assert!(repo.buckets(s.id, at(0), at(10)).await.unwrap().is_empty());
    assert_eq!(repo.moments_of(s.id, &MomentFilter::default(), Page::new(1, 10)).await.unwrap().total, 0);
    assert!(repo.open_streams().await.unwrap().iter().all(|(st, _)| st.streamer != s.id));
}
