//! Several instances, one history: two instances hold overlays of the same
//! session and take its buckets from the shared Redis; each bucket is
//! written once, whole, by one of them (a bucket split between the two
//! would lose votes to the table's one-row-per-bucket rule).

use super::*;

fn instance<'a>(db: &str, redis: &str) -> Builder<'a> {
    TestApp::builder().distributed(db, redis).configure(fast_history)
}

async fn written(app: &TestApp) -> f64 {
    app.metric("chatpulse_history_buckets_written_total").await
}

#[tokio::test]
async fn two_instances_holding_one_session_write_each_bucket_once() {
    let Some((db, redis)) = distributed_urls().await else { return eprintln!("SKIPPED: distributed URLs unset") };
    let one = instance(&db, &redis).start().await;
    let two = instance(&db, &redis).start().await;
    let s = one.add_streamer().await;
    let broadcaster = &s.streamer.twitch_user_id;
    let _on_one = one.connect(&s.streamer.overlay_id).await;
    let _on_two = two.connect(&s.streamer.overlay_id).await;
    assert_eq!(one.deliver(&stream_delivery(broadcaster.as_str(), Some("60001"))).await.status(), 204);
    let stream = streams(&*one.repo, s.streamer.id).await[0].id;

    // Votes through both instances, in two buckets at least.
    let mut expected = (0, 0);
    for round in 0..2 {
        until_bucket_phase(2_000).await;
        for i in 0..6u32 {
            let (app, text) = if i % 2 == 0 { (&one, "yes") } else { (&two, "no") };
            assert_eq!(app.chat(broadcaster, &format!("4{round}{i:02}"), text).await, 204);
            if text == "yes" { expected.0 += 1 } else { expected.1 += 1 }
        }
    }
    let buckets = || async { one.repo.stream_buckets(s.streamer.id, stream).await.unwrap() };
    assert!(eventually(BUCKET_WAIT, || async { votes(&buckets().await) == expected }).await, "{:?}", buckets().await);
    let rows = buckets().await;
    assert!(rows.len() >= 2, "{rows:?}");
    assert!(rows.iter().all(|b| b.voters == b.votes_for + b.votes_against), "whole buckets: {rows:?}");
    let total = written(&one).await + written(&two).await;
    assert_eq!(total, rows.len() as f64, "each row written by one instance, once");
}
