//! The retention sweep: the leader deletes history older than
//! `HISTORY_RETENTION_DAYS` (streams that ended before the cutoff, buckets
//! and moments before it) and keeps the rest, open streams included.

use chatpulse::domain::history::{ActionOutcome, Moment, MomentDetail, MomentId};

use super::*;

fn bucket(streamer: StreamerId, at: OffsetDateTime) -> HistoryBucket {
    HistoryBucket {
        streamer,
        stream: None,
        start: at,
        value_open: 0.0,
        value_close: 10.0,
        value_min: 0.0,
        value_max: 10.0,
        votes_for: 1,
        votes_against: 0,
        voters: 1,
    }
}

/// A whole 10-second boundary `ago` before now.
fn ago(ago: time::Duration) -> OffsetDateTime {
    let t = (OffsetDateTime::now_utc() - ago).unix_timestamp();
    OffsetDateTime::from_unix_timestamp(t - t.rem_euclid(10)).unwrap()
}

both_modes! {
async fn the_leader_deletes_history_older_than_the_retention() {
    let app = TestApp::builder()
        .configure(|c| {
            c.history_retention_days = 2;
            c.tuning.history_upkeep_interval = Duration::from_millis(300);
        })
        .start()
        .await;
    let streamer = app.add_streamer().await.streamer.id;
    let (old_start, old_end) = (ago(time::Duration::days(4)), ago(time::Duration::days(3)));
    let old = app.repo.open_stream(streamer, Some("70001"), old_start).await.unwrap().stream.id;
    app.repo.save_buckets(&[bucket(streamer, old_start + time::Duration::minutes(1))]).await.unwrap();
    let moment = Moment {
        id: MomentId::generate(),
        streamer,
        stream: Some(old),
        at: old_start + time::Duration::minutes(2),
        kind: MomentKind::Swing,
        detail: MomentDetail::Swing { from: 60.0, to: -60.0, millis: 10_000 },
        marker: ActionOutcome::status(ActionStatus::NoScope),
        clip: ActionOutcome::status(ActionStatus::NoScope),
    };
    app.repo.save_moment(&moment).await.unwrap();
    app.repo.close_stream(streamer, old_end, StreamEnd::Offline).await.unwrap().expect("closed");
    // A recent stream, still open, with a bucket: kept.
    let recent_start = ago(time::Duration::hours(1));
    let recent = app.repo.open_stream(streamer, Some("70002"), recent_start).await.unwrap().stream.id;
    app.repo.save_buckets(&[bucket(streamer, recent_start + time::Duration::minutes(1))]).await.unwrap();

    let swept = eventually(BUCKET_WAIT, || async { streams(&*app.repo, streamer).await.len() == 1 });
    assert!(swept.await, "{:?}", streams(&*app.repo, streamer).await);
    assert_eq!(streams(&*app.repo, streamer).await[0].id, recent);
    let everything = app.repo.buckets(streamer, ago(time::Duration::days(10)), OffsetDateTime::now_utc()).await.unwrap();
    assert_eq!(everything.len(), 1, "only the recent bucket is left: {everything:?}");
    let moments = app.repo.moments_of(streamer, &MomentFilter::default(), Page::new(1, 10)).await.unwrap();
    assert_eq!(moments.total, 0, "the old moment is gone");
}
}
